"""Comparisons, logic and selection: ``== != < <= > >=`` to bool tensors, logical_and /
or / xor / not, isnan / isinf / isfinite, any / all, where and masked_fill, with
PyTorch's semantics. Comparisons and logic have no gradient (their results are bool);
``where`` and ``masked_fill`` pass the gradient to the values they select.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd.engine import Function
from ._checks import broadcast_shape, require_float, require_tensor

_BOOL = np.dtype(np.bool_)


def _wrap(backend, array):
    from ..tensor import Tensor

    return Tensor._wrap(array, backend)


def _operand(like, value, name: str):
    """A Tensor operand for ``like``: a Tensor as it is, a number as a 0-d tensor of like's
    dtype (a Python bool is a bool tensor), anything else a TypeError naming it."""
    from ..tensor import Tensor

    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, np.bool_)):
        return Tensor._wrap(like.backend.full((), bool(value), _BOOL), like.backend)
    if isinstance(value, numbers.Real):
        dt = like.dtype if like.dtype.kind == "f" else np.dtype(np.float32)
        return Tensor._wrap(like.backend.full((), float(value), dt), like.backend)
    raise TypeError(f"{name}: expected a Tensor or a number, got {type(value).__name__}")


def _same_backend(a, b, name_a: str, name_b: str) -> None:
    if a.backend is not b.backend:
        raise ValueError(f"{name_b}: expected a tensor on backend {a.backend.name!r} like "
                         f"{name_a}, got one on {b.backend.name!r}")


def compare(op: str, input, other):
    """``op`` (eq, ne, lt, le, gt, ge) of input and other broadcast, a bool tensor."""
    require_tensor(input, "input")
    other = _operand(input, other, "other")
    _same_backend(input, other, "input", "other")
    if (input.dtype == _BOOL) != (other.dtype == _BOOL) or (
            input.dtype.kind == "f" and other.dtype.kind == "f" and input.dtype != other.dtype):
        raise TypeError(f"other: expected dtype {input.dtype} like input, got {other.dtype}")
    broadcast_shape(input, other, "input", "other")
    a, b = input.data, other.data
    if input.dtype != other.dtype:  # int64 against a float: as the float (PyTorch promotes)
        from .layout import _cast

        if input.dtype.kind == "f":
            b = _cast(input.backend, b, input.dtype)
        else:
            a = _cast(input.backend, a, other.dtype)
    return _wrap(input.backend, input.backend.compare(op, a, b))


def eq(input, other): return compare("eq", input, other)
def ne(input, other): return compare("ne", input, other)
def lt(input, other): return compare("lt", input, other)
def le(input, other): return compare("le", input, other)
def gt(input, other): return compare("gt", input, other)
def ge(input, other): return compare("ge", input, other)


def _require_bool(t, name: str) -> None:
    require_tensor(t, name)
    if t.dtype != _BOOL:
        raise TypeError(f"{name}: expected a bool tensor, got dtype {t.dtype}")


def _logical(op: str, input, other=None):
    _require_bool(input, "input")
    if other is None:
        return _wrap(input.backend, input.backend.logical(op, input.data))
    other = _operand(input, other, "other")
    _require_bool(other, "other")
    _same_backend(input, other, "input", "other")
    broadcast_shape(input, other, "input", "other")
    return _wrap(input.backend, input.backend.logical(op, input.data, other.data))


def logical_and(input, other): return _logical("and", input, other)
def logical_or(input, other): return _logical("or", input, other)
def logical_xor(input, other): return _logical("xor", input, other)
def logical_not(input): return _logical("not", input)


def _predicate(op: str, input):
    require_float(input, "input")
    return _wrap(input.backend, input.backend.predicate(op, input.data))


def isnan(input): return _predicate("isnan", input)
def isinf(input): return _predicate("isinf", input)
def isfinite(input): return _predicate("isfinite", input)


def _any_all(op: str, input, dim=None, keepdim: bool = False):
    from .reduce import _axes

    _require_bool(input, "input")
    axes = _axes(input, dim)
    return _wrap(input.backend, input.backend.any_all(op, input.data, axes, bool(keepdim)))


def any(input, dim=None, keepdim: bool = False):  # noqa: A001 - torch.any
    return _any_all("any", input, dim, keepdim)


def all(input, dim=None, keepdim: bool = False):  # noqa: A001 - torch.all
    return _any_all("all", input, dim, keepdim)


class Where(Function):
    @staticmethod
    def forward(ctx, a, b, cond):
        ctx.cond, ctx.shapes = cond, (tuple(a.shape), tuple(b.shape))
        return ctx.backend.where(cond, a, b)

    @staticmethod
    def backward(ctx, gy):
        be = ctx.backend
        zero = be.full((), 0.0, gy.dtype)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = be.sum_to_shape(be.where(ctx.cond, gy, zero), ctx.shapes[0])
        if ctx.needs_input_grad[1]:
            gb = be.sum_to_shape(be.where(ctx.cond, zero, gy), ctx.shapes[1])
        return ga, gb

    @staticmethod
    def jvp(ctx, out, va, vb):
        be = ctx.backend
        zero = be.full((), 0.0, out.dtype)
        return be.where(ctx.cond, zero if va is None else va, zero if vb is None else vb)


def where(condition, input, other):
    """input where condition else other (torch.where), the three broadcast together;
    the gradient goes to the value each position took."""
    _require_bool(condition, "condition")
    if not hasattr(input, "backend"):
        require_tensor(other, "other")
        input = _operand(other, input, "input")
    other = _operand(input, other, "other")
    require_float(input, "input")
    require_float(other, "other")
    if input.dtype != other.dtype:
        raise TypeError(f"other: expected dtype {input.dtype} like input, got {other.dtype}")
    _same_backend(input, other, "input", "other")
    _same_backend(input, condition, "input", "condition")
    shape = broadcast_shape(input, other, "input", "other")
    try:
        np.broadcast_shapes(shape, condition.shape)
    except ValueError:
        raise ValueError(f"condition: shape {condition.shape} cannot be broadcast with the "
                         f"values' shape {shape}") from None
    return Where.apply(input, other, condition.data)


def masked_fill(input, mask, value):
    """input with ``value`` where mask is True (torch.masked_fill; mask broadcasts to
    input's shape); the gradient flows to the positions kept."""
    require_float(input, "input")
    _require_bool(mask, "mask")
    try:
        if tuple(np.broadcast_shapes(input.shape, mask.shape)) != input.shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"mask: shape {mask.shape} does not broadcast to input's shape "
                         f"{input.shape}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) and not hasattr(value, "backend"):
        raise TypeError(f"value: expected a number or a 0-d tensor, got {value!r}")
    return where(mask, _operand(input, value, "value"), input)
