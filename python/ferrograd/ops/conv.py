"""2-D convolution (torch.nn.functional.conv2d) with a choice of algorithm.

``conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, algo="auto")``:
input (N, C, H, W) or unbatched (C, H, W), weight (O, C / groups, KH, KW) (PyTorch's
layout, so weights load from PyTorch one to one), bias (O,). ``padding`` is an int, a pair,
"valid" (0) or "same" (stride 1 only, as in PyTorch; ferrograd pads symmetrically, so
"same" needs an even total padding ``dilation * (kernel - 1)`` per axis and raises
ValueError otherwise, where PyTorch would pad one extra row/column at the end).
``algo`` (a ferrograd extension) picks "naive", "im2col", "winograd" (3x3, stride 1,
dilation 1) or "fft"; "auto" chooses by shape (ferrograd/backends/_conv.py states the rule).
"""

from __future__ import annotations

from ..autograd.engine import Function
from ..backends import _conv
from ._checks import require_float, require_same_dtype


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, geom):
        ctx.geom, ctx.has_bias = geom, bias is not None
        ctx.save_for_backward(x, weight)
        return ctx.backend.conv2d_forward(x, weight, bias, *geom)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_arrays
        gx, gw, gb = ctx.backend.conv2d_backward(x, weight, gy, *ctx.geom, has_bias=ctx.has_bias)
        needs = ctx.needs_input_grad  # one entry per Tensor argument (bias only if given)
        grads = (gx if needs[0] else None, gw if needs[1] else None)
        return grads + ((gb if needs[2] else None),) if ctx.has_bias else grads


def _padding(padding, weight_shape, stride, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return 0
        if padding != "same":
            raise ValueError(f"padding: expected an int, a pair of ints, 'valid' or 'same', got {padding!r}")
        s = _conv.pair(stride, "stride", 1)
        if s != (1, 1):
            raise ValueError(f"padding: 'same' is not supported for strided convolutions, got stride {stride!r}")
        d = _conv.pair(dilation, "dilation", 1)
        pads = []
        for ax, (k, dd) in enumerate(zip(weight_shape[2:], d)):
            total = dd * (k - 1)
            if total % 2:
                raise ValueError(
                    f"padding: 'same' with kernel {tuple(weight_shape[2:])} and dilation {d} needs "
                    f"an odd total padding {total} on axis {ax}; ferrograd pads symmetrically "
                    "(pad the input yourself or pass explicit padding)")
            pads.append(total // 2)
        return tuple(pads)
    return padding


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, algo="auto"):
    """2-D cross-correlation with torch.nn.functional.conv2d's arguments (see module doc)."""
    require_float(input, "input")
    require_same_dtype(input, weight, "input", "weight")
    if bias is not None:
        require_same_dtype(input, bias, "input", "bias")
    _conv.check_algo(algo)
    if input.ndim not in (3, 4):
        raise ValueError(f"input: expected a 3-D (C, H, W) or 4-D (N, C, H, W) tensor, got shape {input.shape}")
    squeeze = input.ndim == 3
    x4 = input.reshape((1,) + tuple(input.shape)) if squeeze else input
    if weight.ndim != 4:
        raise ValueError(f"weight: expected a 4-D (out_channels, in_channels / groups, KH, KW) "
                         f"tensor, got shape {weight.shape}")
    padding = _padding(padding, weight.shape, stride, dilation)
    s, p, d, g, _ = _conv.geometry(x4.shape, weight.shape, None if bias is None else bias.shape,
                                   stride, padding, dilation, groups)
    _conv.resolve_algo(algo, x4.shape, weight.shape, s, p, d, g)  # checks "winograd" applies
    y = Conv2d.apply(x4, weight, bias, (s, p, d, g, algo))
    return y.reshape(tuple(y.shape[1:])) if squeeze else y
