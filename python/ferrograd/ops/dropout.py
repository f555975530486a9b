"""Dropout, DropConnect's weight dropout and DropBlock2d.

Masks come from one counter-based stream shared by every backend (Philox4x32-10; see
backends/base.py): each training-mode call takes a fresh ``(seed, offset)`` from
``fg.manual_seed``'s generator, so the same seed gives the same masks, bit for bit, on
numpy, rust and cuda. Dropout's backward regenerates its mask from ``(seed, offset)``
instead of storing it. An element is dropped when its uniform u < p.
"""

from __future__ import annotations

import numbers

from ..autograd.engine import Function
from ..backends import _dropout
from ._checks import require_float


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p, seed, offset):
        ctx.stream = (p, seed, offset)
        return ctx.backend.dropout_forward(x, p, seed, offset)

    @staticmethod
    def backward(ctx, gy):
        return ctx.backend.dropout_backward(gy, *ctx.stream)

    @staticmethod
    def jvp(ctx, out, v):
        return ctx.backend.dropout_backward(v, *ctx.stream)


def _check_training(training) -> bool:
    if not isinstance(training, (bool, int)) or isinstance(training, float):
        raise TypeError(f"training: expected a bool, got {training!r}")
    return bool(training)


def dropout(input, p: float = 0.5, training: bool = True):
    """Zeroes each element with probability p and scales the others by 1 / (1 - p)
    (torch.nn.functional.dropout). Identity when not training or when p = 0; p = 1 gives
    zeros (times the input, so NaN stays NaN, as in PyTorch). Every training-mode call
    consumes one offset of the stream, p = 0 included."""
    require_float(input, "input")
    p = _dropout.check_p(p)
    if not _check_training(training):
        return input
    from ..random import philox_next

    seed, offset = philox_next()
    if p == 0.0:
        return input
    return Dropout.apply(input, p, seed, offset)


def dropblock2d(input, p: float = 0.1, block_size: int = 7, training: bool = True):
    """DropBlock (Ghiasi et al. 2018) as torchvision.ops.drop_block2d: on an (N, C, H, W)
    input, with b = min(block_size, H, W), block seeds are drawn with probability
    gamma = p * H * W / (b^2 * (H - b + 1) * (W - b + 1)) where a b x b block fits, each
    seed zeroes its block, and the result is rescaled by numel / count(kept) (the mask is
    all zeros, and so the output, when nothing is kept). Identity when not training or
    when p = 0."""
    require_float(input, "input")
    p = _dropout.check_p(p)
    if not isinstance(block_size, numbers.Integral) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size: expected a positive int, got {block_size!r}")
    if input.ndim != 4:
        raise ValueError(f"input: expected a 4-D tensor (N, C, H, W), got shape {input.shape}")
    if not _check_training(training):
        return input
    from ..random import philox_next
    from ..tensor import Tensor

    seed, offset = philox_next()
    if p == 0.0 or input.size == 0:
        return input
    n, c, h, w = input.shape
    b = min(int(block_size), h, w)
    gamma = p * h * w / (b * b * (h - b + 1) * (w - b + 1))
    be = input.backend
    m = Tensor._wrap(be.dropblock_mask(input.shape, input.dtype, gamma, b, seed, offset), be)
    return input * m
