"""Reductions: sum and mean over any set of dimensions."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from ..autograd.engine import Function
from ._checks import normalize_dim, require_float

Dims = Optional[Union[int, Sequence[int]]]


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.in_shape = tuple(x.shape)
        ctx.kept_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        return ctx.backend.sum_forward(x, axes, keepdims)

    @staticmethod
    def backward(ctx, gy):
        be = ctx.backend
        g = be.reshape(gy, ctx.kept_shape)
        return be.copy(be.expand(g, ctx.in_shape))

    @staticmethod
    def jvp(ctx, out, v):
        be = ctx.backend
        axes = tuple(i for i, k in enumerate(ctx.kept_shape) if k == 1)
        return be.reshape(be.sum_forward(v, axes, True), tuple(out.shape))

    @staticmethod
    def backward_graph(ctx, inputs, g):
        from .. import functional as F

        return F.expand(g.reshape(*ctx.kept_shape) if ctx.kept_shape else g.reshape(()), ctx.in_shape)


def _axes(x, dim: Dims) -> Tuple[int, ...]:
    if dim is None:
        return tuple(range(x.ndim))
    dims = [dim] if not isinstance(dim, (tuple, list)) else list(dim)
    axes = sorted({normalize_dim(d, x.ndim) for d in dims})
    if len(axes) != len(dims):
        raise ValueError(f"dim: expected distinct dimensions, got {dim}")
    if x.ndim == 0:  # a 0-d tensor takes dim 0 or -1, as in PyTorch: nothing to reduce
        return ()
    return tuple(axes)


def sum(x, dim: Dims = None, keepdim: bool = False):  # noqa: A001 - the op's name
    """Sum over ``dim`` (all dimensions when None), as torch.sum."""
    require_float(x, "input")
    return Sum.apply(x, _axes(x, dim), bool(keepdim))


def mean(x, dim: Dims = None, keepdim: bool = False):
    """Mean over ``dim``; the mean of zero elements is NaN, as in PyTorch."""
    axes = _axes(x, dim)
    n = 1
    for a in axes:
        n *= x.shape[a]
    s = sum(x, axes, keepdim)
    return s * (1.0 / n) if n else s * float("nan")
