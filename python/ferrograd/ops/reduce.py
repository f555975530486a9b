"""Reductions: sum and mean over any set of dimensions, and on them var, std and the
vector p-norms."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

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


def _count(x, axes) -> int:
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n


def var(x, dim: Dims = None, *, correction: float = 1, keepdim: bool = False):
    """Variance over ``dim`` with Bessel's ``correction`` (torch.var: the sum of squared
    deviations over N - correction; 0 / 0 is NaN, s / 0 is inf, as PyTorch gives)."""
    require_float(x, "input")
    if isinstance(correction, bool) or not isinstance(correction, (int, float)):
        raise TypeError(f"correction: expected a number, got {correction!r}")
    axes = _axes(x, dim)
    d = x - mean(x, axes, keepdim=True)
    denom = max(_count(x, axes) - correction, 0)
    ss = sum(d * d, axes, keepdim)
    from ..tensor import Tensor

    return ss / Tensor._wrap(x.backend.full((), float(denom), x.dtype), x.backend)


def std(x, dim: Dims = None, *, correction: float = 1, keepdim: bool = False):
    """sqrt(var) (torch.std)."""
    from .elementwise import sqrt

    return sqrt(var(x, dim, correction=correction, keepdim=keepdim))


def _nonzero(be, n):
    """n with its zeros replaced by 1 (the reduced norms, small: done on the host), so that
    x / norm is 0 for an all-zero slice instead of 0 / 0."""
    host = np.asarray(be.to_numpy(n))
    return be.from_numpy(np.require(np.where(host == 0, 1, host).astype(host.dtype),
                                    requirements="C"))


class Norm2(Function):
    """sqrt(sum x^2) over axes, with PyTorch's gradient g x / norm (0 where norm is 0)."""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        be = ctx.backend
        ctx.axes, ctx.keepdim, ctx.in_shape = axes, keepdim, tuple(x.shape)
        n = be.unary_forward("sqrt", be.sum_forward(be.binary_forward("mul", x, x), axes, True))
        ctx.save_for_backward(x, n)
        return n if keepdim else be.reshape(n, tuple(d for i, d in enumerate(x.shape)
                                                      if i not in axes))

    @staticmethod
    def backward(ctx, gy):
        be = ctx.backend
        x, n = ctx.saved_arrays
        safe = _nonzero(be, n)
        g = be.reshape(gy, tuple(n.shape))
        return be.binary_forward("mul", x, be.binary_forward("div", g, safe))

    @staticmethod
    def jvp(ctx, out, v):
        be = ctx.backend
        x, n = ctx.saved_arrays
        safe = _nonzero(be, n)
        t = be.binary_forward("div", be.sum_forward(be.binary_forward("mul", x, v), ctx.axes,
                                                    True), safe)
        return t if ctx.keepdim else be.reshape(t, tuple(out.shape))


def norm(x, p=2, dim: Dims = None, keepdim: bool = False):
    """The p-norm over ``dim`` (all of x when None; torch.norm / torch.linalg.vector_norm
    for p > 0): p = 2 with the gradient x / norm, 0 for an all-zero slice (PyTorch's);
    p = 1 the sum of |x|; other p > 0 (sum |x|^p)^(1/p). p = inf is not supported yet."""
    require_float(x, "input")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 < p < float("inf")):
        raise ValueError(f"p: expected a finite positive order, got {p!r} (inf and 0 are not "
                         "supported yet)")
    axes = _axes(x, dim)
    from .elementwise import abs as _abs

    if p == 2:
        return Norm2.apply(x, axes, bool(keepdim))
    if p == 1:
        return sum(_abs(x), axes, keepdim)
    return sum(_abs(x) ** float(p), axes, keepdim) ** (1.0 / p)
