"""Losses: mse_loss and cross_entropy (from logits, with the log-sum-exp trick)."""

from __future__ import annotations

import numpy as np

from ..autograd.engine import Function
from ..autograd.rules import reduce_like
from ..backends.base import REDUCTIONS
from ._checks import require_float, require_same_dtype


class MseLoss(Function):
    @staticmethod
    def forward(ctx, x, target, reduction):
        ctx.reduction = reduction
        ctx.save_for_backward(x, target)
        return ctx.backend.mse_loss_forward(x, target, reduction)

    @staticmethod
    def backward(ctx, gy):
        x, target = ctx.saved_arrays
        gx = ctx.backend.mse_loss_backward(x, target, gy, ctx.reduction)
        gt = ctx.backend.unary_forward("neg", gx) if ctx.needs_input_grad[1] else None
        return (gx if ctx.needs_input_grad[0] else None), gt

    @staticmethod
    def jvp(ctx, out, vx, vt):
        be = ctx.backend
        x, target = ctx.saved_arrays
        seed = be.full(tuple(out.shape), 1.0, x.dtype)
        g = be.mse_loss_backward(x, target, seed, ctx.reduction)  # d loss / dx, x's shape
        d = vx if vt is None else (be.unary_forward("neg", vt) if vx is None
                                   else be.binary_forward("sub", vx, vt))
        return reduce_like(be, be.binary_forward("mul", g, d), ctx.reduction, lambda p: p)


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, target, reduction):
        ctx.reduction = reduction
        ctx.save_for_backward(logits, target)
        return ctx.backend.cross_entropy_forward(logits, target, reduction)

    @staticmethod
    def backward(ctx, gy):
        logits, target = ctx.saved_arrays
        return ctx.backend.cross_entropy_backward(logits, target, gy, ctx.reduction), None

    @staticmethod
    def jvp(ctx, out, vz, _vt=None):
        be = ctx.backend
        logits, target = ctx.saved_arrays
        seed = be.full(tuple(out.shape), 1.0, logits.dtype)
        g = be.cross_entropy_backward(logits, target, seed, ctx.reduction)
        return reduce_like(be, be.binary_forward("mul", g, vz), ctx.reduction,
                            lambda p: be.sum_forward(p, (1,), False))


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")


def mse_loss(input, target, reduction: str = "mean"):
    """Mean (or summed, or elementwise) squared error; shapes must match exactly."""
    from ..tensor import Tensor
    _check_reduction(reduction)
    require_float(input, "input")
    if not isinstance(target, Tensor):
        target = Tensor._wrap(input.backend.from_numpy(np.asarray(target, dtype=input.dtype)), input.backend)
    require_same_dtype(input, target, "input", "target")
    if input.shape != target.shape:
        raise ValueError(f"target: expected the input's shape {input.shape}, got {target.shape}")
    return MseLoss.apply(input, target, reduction)


def cross_entropy(input, target, reduction: str = "mean"):
    """Cross-entropy between (N, C) logits and N class indices in [0, C), as PyTorch's."""
    from ..tensor import Tensor
    _check_reduction(reduction)
    require_float(input, "input")
    if input.ndim != 2:
        raise ValueError(f"input: expected logits of shape (N, C), got {input.shape}")
    if isinstance(target, Tensor):
        host = target.numpy()
    else:
        host = np.asarray(target)
    if host.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices, got dtype {host.dtype}")
    if host.shape != (input.shape[0],):
        raise ValueError(f"target: expected shape ({input.shape[0]},), got {host.shape}")
    if host.size and (host.min() < 0 or host.max() >= input.shape[1]):
        bad = host.min() if host.min() < 0 else host.max()
        raise ValueError(f"target: expected class indices in [0, {input.shape[1]}), got {bad}")
    if not (isinstance(target, Tensor) and target.dtype == np.int64 and target.backend is input.backend):
        target = Tensor._wrap(input.backend.from_numpy(np.require(host, np.int64, requirements="C")), input.backend)
    return CrossEntropy.apply(input, target, reduction)
