"""Elementwise ops on the two generic kernels of the contract, ``binary_*`` (add, sub, mul,
div, pow, maximum, minimum, clamp_min, clamp_max, with broadcasting) and ``unary_*`` (neg,
exp, log, abs, sqrt, rsqrt, sin, cos): a new pointwise op is a formula in each backend's
generic kernel and a line here, not a kernel pair per backend."""

from __future__ import annotations

import numpy as np

from ..autograd.engine import Function
from ..autograd.rules import add_tangents, const, full_shape, sum_to
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

    @staticmethod
    def jvp(ctx, out, va, vb):
        be = ctx.backend
        a, b = ctx.saved_arrays
        shape = tuple(out.shape)
        A, B = full_shape(be, a, shape), full_shape(be, b, shape)
        t = None
        if va is not None:
            t = be.binary_backward(ctx.op, A, B, full_shape(be, va, shape))[0]
        if vb is not None:
            t = add_tangents(be, t, be.binary_backward(ctx.op, A, B, full_shape(be, vb, shape))[1])
        return t

    @staticmethod
    def backward_graph(ctx, inputs, g):
        from .. import functional as F

        a, b = inputs
        op = ctx.op
        need_a, need_b = ctx.needs_input_grad
        if op == "add":
            ga, gb = g, g
        elif op == "sub":
            ga, gb = g, -g
        elif op == "mul":
            ga, gb = g * b, g * a
        elif op == "div":
            ga = g / b
            gb = -(g * a) / (b * b)
        elif op in ("maximum", "minimum", "clamp_min", "clamp_max"):
            # piecewise: each operand's share of g (0, 1/2 or 1) is a constant factor
            be = a.backend
            shape = np.broadcast_shapes(a.shape, b.shape)
            ones = be.full(shape, 1.0, a.dtype)
            share_a, share_b = be.binary_backward(op, be.expand(a.data, shape),
                                                  be.expand(b.data, shape), ones)
            ga = g * const(a, be.to_numpy(share_a))
            gb = g * const(b, be.to_numpy(share_b))
        else:  # pow
            ah, bh = a.numpy(), b.numpy()
            ga = gb = None
            if need_a:
                ga = g * b * (a ** (b - 1.0)) * const(b, np.broadcast_to(bh != 0, bh.shape))
            if need_b:
                safe = const(a, np.where(ah == 0, 1.0, ah))
                ga_mask = const(a, ah != 0)
                gb = g * (a ** b) * F.log(safe) * ga_mask
        return (sum_to(ga, a.shape) if need_a else None, sum_to(gb, b.shape) if need_b else None)


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

    @staticmethod
    def jvp(ctx, out, v):
        (x,) = ctx.saved_arrays
        return ctx.backend.unary_backward(ctx.op, x, v)

    @staticmethod
    def backward_graph(ctx, inputs, g):
        from .. import functional as F

        (x,) = inputs
        op = ctx.op
        if op == "neg":
            return -g
        if op == "exp":
            return g * F.exp(x)
        if op == "log":
            return g / x
        if op == "abs":  # sign(x) is piecewise constant
            return g * const(x, np.sign(x.numpy()))
        if op == "sqrt":
            return g * 0.5 / sqrt(x)
        if op == "rsqrt":
            r = rsqrt(x)
            return g * -0.5 * r * r * r
        if op == "sin":
            return g * cos(x)
        return -(g * sin(x))  # cos


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


def maximum(input, other):
    """The larger of the two elementwise, broadcast (torch.maximum): NaN if either is NaN;
    the gradient goes to the larger, half to each on a tie."""
    return binary("maximum", input, other)


def minimum(input, other):
    """The smaller of the two elementwise, broadcast (torch.minimum)."""
    return binary("minimum", input, other)


def clamp(input, min=None, max=None):  # noqa: A002 - PyTorch's argument names
    """``input`` clamped to [min, max] (torch.clamp): each bound a number or a tensor that
    broadcasts with input, at least one given. PyTorch's gradients: with a number bound,
    only where input lies strictly inside (0 at the bound); with a tensor bound, that of
    maximum / minimum (a tie splits it between input and bound)."""
    require_float(input, "input")
    if min is None and max is None:
        raise ValueError("clamp: expected at least one of min and max, got neither")
    out = input
    for bound, name, as_tensor, as_number in ((min, "min", "maximum", "clamp_min"),
                                              (max, "max", "minimum", "clamp_max")):
        if bound is not None:
            op = as_tensor if hasattr(bound, "backend") else as_number
            out = binary(op, out, input._operand(bound, name))
    return out


def clamp_min(input, min):  # noqa: A002
    return clamp(input, min=min)


def clamp_max(input, max):  # noqa: A002
    return clamp(input, max=max)


clip = clamp


def add(a, b): return a + b
def sub(a, b): return a - b
def mul(a, b): return a * b
def div(a, b): return a / b
def pow(a, b): return a ** b  # noqa: A001 - the op's name
def neg(x): return unary("neg", x)
def exp(x): return unary("exp", x)
def log(x): return unary("log", x)
def abs(x): return unary("abs", x)  # noqa: A001 - torch.abs
def sqrt(x): return unary("sqrt", x)
def rsqrt(x): return unary("rsqrt", x)
def sin(x): return unary("sin", x)
def cos(x): return unary("cos", x)
