"""Helpers shared by the ops' derivative rules (their ``jvp`` and ``backward_graph``
staticmethods, which live in each op's Function class in ``ferrograd.ops``).

``jvp(ctx, out, *tangents)`` is an op's forward-mode rule: the output tangent ``J v``
from its inputs' tangents (``None`` for an input without one), computed with the
backends' kernels, so it runs on numpy, rust and cuda alike. ``backward_graph(ctx,
inputs, *grad_outputs)`` is its differentiable backward, used by
``backward(create_graph=True)``: the gradient written with ferrograd's differentiable ops
on Tensors, so that it is itself recorded. A Function whose class leaves either as
``None`` has no such rule, and the engine says so naming the op.
"""

from __future__ import annotations

import numpy as np


def full_shape(be, a, shape):
    """``a`` broadcast to ``shape`` as a new contiguous array (no copy if it already fits)."""
    if tuple(a.shape) == tuple(shape):
        return a
    return be.copy(be.expand(a, tuple(shape)))


def add_tangents(be, a, b):
    if a is None:
        return b
    if b is None:
        return a
    return be.binary_forward("add", a, b)


def reduce_like(be, prod, reduction, keep_axes_sum):
    if reduction == "none":
        return keep_axes_sum(prod)
    return be.sum_forward(prod, tuple(range(len(prod.shape))), False)


def gather_planes(ctx, out, v, idx):
    """The tangent at each output's argmax: flat ``h * W + w`` indices per (n, c) plane."""
    be = ctx.backend
    vh = be.to_numpy(v)
    n, c = vh.shape[:2]
    ih = be.to_numpy(idx).reshape(n, c, -1)
    g = np.take_along_axis(vh.reshape(n, c, -1), ih, axis=2).reshape(tuple(out.shape))
    return be.from_numpy(np.require(g, requirements="C"))


def norm_tangent(ctx, tangents, x3, mean, rstd, stat_axes, to_x, w_shape):
    """Output tangent of a normalization: x̂ = (x - μ) r, y = x̂ w + b. With statistics
    over ``stat_axes`` of the view ``x3`` (None: fixed statistics, batch_norm in eval),
    d x̂ = r (dx - mean(dx) - x̂ mean(x̂ dx)); dy = d x̂ w + x̂ dw + db. Computed on the host
    in float64 from the saved statistics (any backend), cast back to x's dtype."""
    be = ctx.backend
    it = iter(tangents)
    vx = next(it)
    vw = next(it) if ctx.has_weight else None
    vb = next(it) if ctx.has_bias else None
    x3 = x3.astype(np.float64)
    xhat = to_x((x3 - mean) * rstd)
    out = np.zeros_like(xhat)
    if vx is not None:
        v3 = be.to_numpy(vx).astype(np.float64).reshape(x3.shape)
        if stat_axes is None:
            d = v3 * rstd
        else:
            xh3 = (x3 - mean) * rstd
            d = rstd * (v3 - v3.mean(axis=stat_axes, keepdims=True)
                        - xh3 * (xh3 * v3).mean(axis=stat_axes, keepdims=True))
        d = to_x(d)
        if ctx.has_weight:
            d = d * be.to_numpy(ctx.saved_arrays[1]).astype(np.float64).reshape(w_shape)
        out += d
    if vw is not None:
        out += xhat * be.to_numpy(vw).astype(np.float64).reshape(w_shape)
    if vb is not None:
        out += be.to_numpy(vb).astype(np.float64).reshape(w_shape)
    x = ctx.saved_arrays[0]
    return be.from_numpy(np.require(out.reshape(x.shape), x.dtype, requirements="C"))


def const(like, array):
    from ..tensor import Tensor

    return Tensor._wrap(like.backend.from_numpy(np.require(array, like.dtype, requirements="C")), like.backend)


def sum_to(g, shape):
    """g summed over the axes that broadcasting added or stretched, reshaped to ``shape``."""
    from .. import functional as F

    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    s = F.sum(g, axes, keepdim=True) if axes else g
    return s.reshape(*shape) if shape else s.reshape(())
