"""softmax and log_softmax along any dimension (kernels work on the last axis)."""

from __future__ import annotations

from ..autograd.engine import Function
from ._checks import normalize_dim, require_float
from .layout import transpose


class Softmax(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.softmax_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_arrays
        return ctx.backend.softmax_backward(y, gy)

    @staticmethod
    def jvp(ctx, out, v):
        (y,) = ctx.saved_arrays
        return ctx.backend.softmax_backward(y, v)


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.log_softmax_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_arrays
        return ctx.backend.log_softmax_backward(y, gy)

    @staticmethod
    def jvp(ctx, out, v):
        be = ctx.backend
        (y,) = ctx.saved_arrays
        last = len(y.shape) - 1
        s = be.unary_forward("exp", y)
        dot = be.sum_forward(be.binary_forward("mul", s, v), (last,), True)
        return be.binary_forward("sub", v, dot)


def _along(fn, x, dim):
    require_float(x, "input")
    if x.ndim == 0:
        return fn.apply(x.reshape(1)).reshape(())
    d = normalize_dim(dim, x.ndim)
    if d == x.ndim - 1:
        return fn.apply(x)
    # move dim last, apply, move it back: the kernels only reduce the last axis
    return transpose(fn.apply(transpose(x, d, -1)), d, -1)


def softmax(x, dim: int = -1):
    """exp(x) / sum(exp(x)) along ``dim``, computed with the max subtracted."""
    return _along(Softmax, x, dim)


def log_softmax(x, dim: int = -1):
    return _along(LogSoftmax, x, dim)
