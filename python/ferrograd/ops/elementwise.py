"""Elementwise arithmetic (add, sub, mul, div, pow with broadcasting) and math (neg, exp, log)."""

from __future__ import annotations

from ..autograd.engine import Function
from ..backends.base import BINARY_OPS, UNARY_OPS
from ._checks import broadcast_shape, require_float, require_same_dtype


class Binary(Function):
    @staticmethod
    def forward(ctx, a, b, op):
        ctx.op = op
        ctx.save_for_backward(a, b)
        return ctx.backend.binary_forward(op, a, b)

    @staticmethod
    def backward(ctx, gy):
        a, b = ctx.saved_arrays
        ga, gb = ctx.backend.binary_backward(ctx.op, a, b, gy)
        return (ga if ctx.needs_input_grad[0] else None,
                gb if ctx.needs_input_grad[1] else None)


class Unary(Function):
    @staticmethod
    def forward(ctx, x, op):
        ctx.op = op
        ctx.save_for_backward(x)
        return ctx.backend.unary_forward(op, x)

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_arrays
        return ctx.backend.unary_backward(ctx.op, x, gy)


def binary(op: str, a, b):
    """``op`` (one of add, sub, mul, div, pow) of two tensors, broadcast together."""
    if op not in BINARY_OPS:
        raise ValueError(f"op: expected one of {BINARY_OPS}, got {op!r}")
    require_float(a, "input")
    require_float(b, "other")
    require_same_dtype(a, b, "input", "other")
    broadcast_shape(a, b, "input", "other")
    return Binary.apply(a, b, op)


def unary(op: str, x):
    if op not in UNARY_OPS:
        raise ValueError(f"op: expected one of {UNARY_OPS}, got {op!r}")
    require_float(x, "input")
    return Unary.apply(x, op)


def add(a, b): return a + b
def sub(a, b): return a - b
def mul(a, b): return a * b
def div(a, b): return a / b
def pow(a, b): return a ** b  # noqa: A001 - the op's name
def neg(x): return unary("neg", x)
def exp(x): return unary("exp", x)
def log(x): return unary("log", x)
