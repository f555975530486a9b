"""2-D pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d.

Inputs are (N, C, H, W) or (C, H, W) as in PyTorch; arguments, defaults, output sizes and
errors follow torch.nn.functional. Max pools save the int64 indices of the maxima (flat
``h * W + w`` in each plane) for backward; forward-only calls (no_grad, or an input that
does not require grad) skip computing them unless ``return_indices`` asks for them.
"""

from __future__ import annotations

from ..autograd.engine import Function, forward_ad_enabled, is_grad_enabled
from ..autograd.rules import gather_planes
from ..backends import _pool
from ._checks import require_float


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, geom, return_indices, holder):
        need = return_indices or (ctx.needs_input_grad[0] and is_grad_enabled()) or forward_ad_enabled()
        y, idx = ctx.backend.max_pool2d_forward(x, *geom, need)
        ctx.geom, ctx.input_shape = geom, tuple(x.shape)
        ctx.save_for_backward(idx)
        holder.append(idx)
        return y

    @staticmethod
    def backward(ctx, gy):
        (idx,) = ctx.saved_arrays
        return ctx.backend.max_pool2d_backward(gy, idx, ctx.input_shape, *ctx.geom)

    @staticmethod
    def jvp(ctx, out, v, *_):
        (idx,) = ctx.saved_arrays
        return gather_planes(ctx, out, v, idx)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, geom):
        ctx.geom, ctx.input_shape = geom, tuple(x.shape)
        return ctx.backend.avg_pool2d_forward(x, *geom)

    @staticmethod
    def backward(ctx, gy):
        return ctx.backend.avg_pool2d_backward(gy, ctx.input_shape, *ctx.geom)

    @staticmethod
    def jvp(ctx, out, v):
        return ctx.backend.avg_pool2d_forward(v, *ctx.geom)


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.input_shape = tuple(x.shape)
        return ctx.backend.adaptive_avg_pool2d_forward(x, output_size)

    @staticmethod
    def backward(ctx, gy):
        return ctx.backend.adaptive_avg_pool2d_backward(gy, ctx.input_shape)

    @staticmethod
    def jvp(ctx, out, v):
        return ctx.backend.adaptive_avg_pool2d_forward(v, tuple(out.shape[-2:]))


class AdaptiveMaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size, return_indices, holder):
        need = return_indices or (ctx.needs_input_grad[0] and is_grad_enabled()) or forward_ad_enabled()
        y, idx = ctx.backend.adaptive_max_pool2d_forward(x, output_size, need)
        ctx.input_shape = tuple(x.shape)
        ctx.save_for_backward(idx)
        holder.append(idx)
        return y

    @staticmethod
    def backward(ctx, gy):
        (idx,) = ctx.saved_arrays
        return ctx.backend.adaptive_max_pool2d_backward(gy, idx, ctx.input_shape)

    @staticmethod
    def jvp(ctx, out, v, *_):
        (idx,) = ctx.saved_arrays
        return gather_planes(ctx, out, v, idx)


def _as_4d(x):
    """(x as (N, C, H, W), whether a batch axis was added)."""
    require_float(x, "input")
    if x.ndim == 3:
        return x.reshape((1,) + x.shape), True
    if x.ndim != 4:
        raise ValueError(f"input: expected a 3-D (C, H, W) or 4-D (N, C, H, W) tensor, got shape {x.shape}")
    return x, False


def _unbatch(t, squeeze):
    return t.reshape(t.shape[1:]) if squeeze else t


def _indices_tensor(idx, x, squeeze):
    from ..tensor import Tensor

    t = Tensor._wrap(idx, x.backend)
    return _unbatch(t, squeeze)


_GEOMETRY = {}  # (shape, arguments) -> checked (h, w) pairs: a dict lookup per call


def _pool_geometry(x4, kernel_size, stride, padding, dilation, ceil_mode, kind,
                   count_include_pad=True):
    """Checks the arguments (PyTorch's rules) and returns them as (h, w) pairs."""
    key = (x4.shape, kernel_size, stride, padding, dilation, ceil_mode, kind, count_include_pad)
    try:
        hit = _GEOMETRY.get(key)
    except TypeError:  # lists among the arguments: not cached
        key, hit = None, None
    if hit is None:
        hit = _check_geometry(x4, kernel_size, stride, padding, dilation, ceil_mode, kind,
                              count_include_pad)
        if key is not None and len(_GEOMETRY) < 4096:
            _GEOMETRY[key] = hit
    return hit


def _check_geometry(x4, kernel_size, stride, padding, dilation, ceil_mode, kind,
                    count_include_pad):
    k = _pool.pair(kernel_size, "kernel_size", 1)
    s = _pool.stride_pair(stride, k)
    p = _pool.pair(padding, "padding", 0)
    d = _pool.pair(dilation, "dilation", 1)
    _pool.pool_axes(x4.shape, k, s, p, d, bool(ceil_mode), count_include_pad, kind=kind)
    return k, s, p, d


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over kernel_size windows (torch.nn.functional.max_pool2d). With
    ``return_indices`` returns ``(output, indices)``, indices int64 flat ``h * W + w``."""
    x4, squeeze = _as_4d(input)
    k, s, p, d = _pool_geometry(x4, kernel_size, stride, padding, dilation, ceil_mode, "max")
    holder = []
    y = MaxPool2d.apply(x4, (k, s, p, d, bool(ceil_mode)), bool(return_indices), holder)
    y = _unbatch(y, squeeze)
    return (y, _indices_tensor(holder[0], input, squeeze)) if return_indices else y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over kernel_size windows (torch.nn.functional.avg_pool2d)."""
    x4, squeeze = _as_4d(input)
    k, s, p, _ = _pool_geometry(x4, kernel_size, stride, padding, 1, ceil_mode, "avg",
                                bool(count_include_pad))
    div = _pool.check_divisor(divisor_override)
    geom = (k, s, p, bool(ceil_mode), bool(count_include_pad), div or None)
    return _unbatch(AvgPool2d.apply(x4, geom), squeeze)


def adaptive_avg_pool2d(input, output_size):
    """Mean over PyTorch's adaptive windows: output o of an axis of length L pooled to O
    covers [floor(o L / O), ceil((o + 1) L / O)). ``output_size`` 1 is global average
    pooling."""
    x4, squeeze = _as_4d(input)
    out = _pool.adaptive_output_size(x4.shape, output_size)
    return _unbatch(AdaptiveAvgPool2d.apply(x4, out), squeeze)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over the adaptive windows (indices as max_pool2d's)."""
    x4, squeeze = _as_4d(input)
    out = _pool.adaptive_output_size(x4.shape, output_size)
    holder = []
    y = _unbatch(AdaptiveMaxPool2d.apply(x4, out, bool(return_indices), holder), squeeze)
    return (y, _indices_tensor(holder[0], input, squeeze)) if return_indices else y
