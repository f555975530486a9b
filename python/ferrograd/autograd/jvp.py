"""Forward mode: ``jvp(f, primals, tangents)`` pushes tangents through ``f`` with the ops.

Inside ``jvp`` every op (``Function.apply``) computes, next to its output, the output
tangent ``J v`` from its inputs' tangents with the op's forward rule, a ``jvp``
staticmethod ``jvp(ctx, out, *tangents)`` (``None`` for an input without a tangent).
The rules below reuse the backends' kernels, so they run on numpy, rust and cuda alike:

* diagonal Jacobians (unary math, activations, dropout): ``J v`` is the backward kernel
  applied to ``v``; softmax's Jacobian is symmetric, so the same holds;
* binary ops broadcast the operands and tangents to the output shape and take the
  elementwise partials from ``binary_backward`` (its conventions at 0 ** 0, log 0...);
* linear ops (layout, sum, matmul, linear, average pools): the op applied to the tangent
  (product rule for the bilinear ones);
* log_softmax: ``v - sum(softmax * v)``; losses: the gradient with a unit seed, times
  ``v``, reduced as the loss; max pools: the tangent gathered at the maxima's indices;
* normalizations (layer, group, instance, batch norm): the closed form from the saved
  statistics, computed on the host in float64 (a round trip for cuda arrays).

Ops without a rule (a user's own Function without ``jvp``) raise NotImplementedError
naming them.
``jvp`` returns ``(outputs, output_tangents)`` like ``torch.func.jvp``; the reverse-mode
graph is recorded as usual, so ``backward`` still works on the outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import engine

_installed = False


# ----------------------------------------------------------------------- helpers
def _full_shape(be, a, shape):
    """``a`` broadcast to ``shape`` as a new contiguous array (no copy if it already fits)."""
    if tuple(a.shape) == tuple(shape):
        return a
    return be.copy(be.expand(a, tuple(shape)))


def _add(be, a, b):
    if a is None:
        return b
    if b is None:
        return a
    return be.binary_forward("add", a, b)


# ----------------------------------------------------------------------- rules
def _binary(ctx, out, va, vb):
    be = ctx.backend
    a, b = ctx.saved_arrays
    shape = tuple(out.shape)
    A, B = _full_shape(be, a, shape), _full_shape(be, b, shape)
    t = None
    if va is not None:
        t = be.binary_backward(ctx.op, A, B, _full_shape(be, va, shape))[0]
    if vb is not None:
        t = _add(be, t, be.binary_backward(ctx.op, A, B, _full_shape(be, vb, shape))[1])
    return t


def _unary(ctx, out, v):
    (x,) = ctx.saved_arrays
    return ctx.backend.unary_backward(ctx.op, x, v)


def _pointwise(kernel):
    def rule(ctx, out, v):
        (x,) = ctx.saved_arrays
        return getattr(ctx.backend, kernel + "_backward")(x, v, *ctx.params)
    return rule


def _sign_masked(kernel):
    """relu / leaky_relu: the tangent through the saved mask of x > 0."""
    def rule(ctx, out, v):
        (mask,) = ctx.saved_arrays
        return getattr(ctx.backend, kernel + "_backward_mask")(mask, v, *ctx.params)
    return rule


def _prelu(ctx, out, vx, vw):
    be = ctx.backend
    x, w = ctx.saved_arrays
    t = None
    if vx is not None:
        t = be.prelu_backward(x, w, vx)[0]  # diagonal in x: slope 1 or alpha per element
    if vw is not None:
        neg = be.binary_forward("sub", x, be.relu_forward(x))  # min(x, 0)
        nd = len(x.shape)
        if w.shape[0] == 1 or nd < 2:
            shape = (1,) * nd
        else:
            shape = (1, w.shape[0]) + (1,) * (nd - 2)
        t = _add(be, t, be.binary_forward("mul", neg, be.reshape(vw, shape)))
    return t


def _dropout(ctx, out, v):
    return ctx.backend.dropout_backward(v, *ctx.stream)


def _sum(ctx, out, v):
    be = ctx.backend
    axes = tuple(i for i, k in enumerate(ctx.kept_shape) if k == 1)
    return be.reshape(be.sum_forward(v, axes, True), tuple(out.shape))


def _reshape(ctx, out, v):
    return ctx.backend.reshape(v, tuple(out.shape))


def _permute(ctx, out, v):
    return ctx.backend.permute(v, tuple(int(i) for i in np.argsort(ctx.inverse)))


def _expand(ctx, out, v):
    return _full_shape(ctx.backend, v, tuple(out.shape))


def _to_backend(ctx, out, v):
    return ctx.output_backend.from_numpy(np.require(ctx.backend.to_numpy(v), requirements="C"))


def _matmul(ctx, out, va, vb):
    be = ctx.backend
    a, b = ctx.saved_arrays
    t = be.matmul(va, b) if va is not None else None
    return _add(be, t, be.matmul(a, vb) if vb is not None else None)


def _linear(ctx, out, vx, vw, vb=None):
    be = ctx.backend
    x, w = ctx.saved_arrays
    t = be.linear_forward(vx, w, vb) if vx is not None else None
    if vw is not None:
        t = _add(be, t, be.linear_forward(x, vw, vb if vx is None else None))
    elif vx is None:  # only the bias moves
        t = _full_shape(be, vb, tuple(out.shape))
    return t


def _softmax(ctx, out, v):
    (y,) = ctx.saved_arrays
    return ctx.backend.softmax_backward(y, v)  # J = diag(y) - y y^T is symmetric


def _log_softmax(ctx, out, v):
    be = ctx.backend
    (y,) = ctx.saved_arrays
    last = len(y.shape) - 1
    s = be.unary_forward("exp", y)
    dot = be.sum_forward(be.binary_forward("mul", s, v), (last,), True)
    return be.binary_forward("sub", v, dot)


def _reduce_like(be, prod, reduction, keep_axes_sum):
    if reduction == "none":
        return keep_axes_sum(prod)
    return be.sum_forward(prod, tuple(range(len(prod.shape))), False)


def _mse(ctx, out, vx, vt):
    be = ctx.backend
    x, target = ctx.saved_arrays
    seed = be.full(tuple(out.shape), 1.0, x.dtype)
    g = be.mse_loss_backward(x, target, seed, ctx.reduction)  # d loss / dx, x's shape
    d = vx if vt is None else (be.unary_forward("neg", vt) if vx is None
                               else be.binary_forward("sub", vx, vt))
    return _reduce_like(be, be.binary_forward("mul", g, d), ctx.reduction, lambda p: p)


def _cross_entropy(ctx, out, vz, _vt=None):
    be = ctx.backend
    logits, target = ctx.saved_arrays
    seed = be.full(tuple(out.shape), 1.0, logits.dtype)
    g = be.cross_entropy_backward(logits, target, seed, ctx.reduction)
    return _reduce_like(be, be.binary_forward("mul", g, vz), ctx.reduction,
                        lambda p: be.sum_forward(p, (1,), False))


def _avg_pool(ctx, out, v):
    return ctx.backend.avg_pool2d_forward(v, *ctx.geom)


def _adaptive_avg_pool(ctx, out, v):
    return ctx.backend.adaptive_avg_pool2d_forward(v, tuple(out.shape[-2:]))


def _gather_planes(ctx, out, v, idx):
    """The tangent at each output's argmax: flat ``h * W + w`` indices per (n, c) plane."""
    be = ctx.backend
    vh = be.to_numpy(v)
    n, c = vh.shape[:2]
    ih = be.to_numpy(idx).reshape(n, c, -1)
    g = np.take_along_axis(vh.reshape(n, c, -1), ih, axis=2).reshape(tuple(out.shape))
    return be.from_numpy(np.require(g, requirements="C"))


def _max_pool(ctx, out, v, *_):
    (idx,) = ctx.saved_arrays
    return _gather_planes(ctx, out, v, idx)


def _norm_tangent(ctx, tangents, x3, mean, rstd, stat_axes, to_x, w_shape):
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


def _layer_norm(ctx, out, *tangents):
    be = ctx.backend
    x, _, mean, rstd = ctx.saved_arrays
    xh = be.to_numpy(x)
    lead = xh.shape[:xh.ndim - ctx.normalized_ndim]
    rows = int(np.prod(lead, dtype=np.int64))
    x2 = xh.reshape(rows, -1)
    m = be.to_numpy(mean).astype(np.float64).reshape(rows, 1)
    r = be.to_numpy(rstd).astype(np.float64).reshape(rows, 1)
    return _norm_tangent(ctx, tangents, x2, m, r, (1,), lambda a: a, (1, x2.shape[1]))


def _group_norm(ctx, out, *tangents):
    be = ctx.backend
    x, _, mean, rstd = ctx.saved_arrays
    xh = be.to_numpy(x)
    n, c = xh.shape[:2]
    g = ctx.num_groups
    xg = xh.reshape(n, g, -1)
    m = be.to_numpy(mean).astype(np.float64).reshape(n, g, 1)
    r = be.to_numpy(rstd).astype(np.float64).reshape(n, g, 1)
    ty = _norm_tangent(ctx, tangents, xg, m, r, (2,), lambda a: a.reshape(n, c, -1), (1, c, 1))
    return ty, None, None  # the statistics outputs carry no tangent (no gradient either)


def _batch_norm(ctx, out, *tangents):
    be = ctx.backend
    x, _, mean, rstd = ctx.saved_arrays
    xh = be.to_numpy(x)
    n, c = xh.shape[:2]
    x3 = xh.reshape(n, c, -1)
    m = be.to_numpy(mean).astype(np.float64).reshape(1, c, 1)
    r = be.to_numpy(rstd).astype(np.float64).reshape(1, c, 1)
    return _norm_tangent(ctx, tangents, x3, m, r, (0, 2) if ctx.training else None,
                         lambda a: a, (1, c, 1))


def _install() -> None:
    """Attach the forward rules to the op Functions (once, on the first jvp call)."""
    global _installed
    if _installed:
        return
    from ..ops import activation, dropout, layout, linear, loss, norm, pool, reduce, softmax
    from ..ops import elementwise

    rules = {
        elementwise.Binary: _binary, elementwise.Unary: _unary,
        activation.Relu: _sign_masked("relu"), activation.LeakyRelu: _sign_masked("leaky_relu"),
        activation.Sigmoid: _pointwise("sigmoid"), activation.Tanh: _pointwise("tanh"),
        activation.Gelu: _pointwise("gelu"), activation.Swish: _pointwise("swish"),
        activation.Prelu: _prelu,
        dropout.Dropout: _dropout,
        reduce.Sum: _sum,
        layout.Reshape: _reshape, layout.Permute: _permute, layout.Expand: _expand,
        layout.ToBackend: _to_backend,
        linear.Matmul: _matmul, linear.Linear: _linear,
        softmax.Softmax: _softmax, softmax.LogSoftmax: _log_softmax,
        loss.MseLoss: _mse, loss.CrossEntropy: _cross_entropy,
        pool.AvgPool2d: _avg_pool, pool.AdaptiveAvgPool2d: _adaptive_avg_pool,
        pool.MaxPool2d: _max_pool, pool.AdaptiveMaxPool2d: _max_pool,
        norm.LayerNorm: _layer_norm, norm.GroupNorm: _group_norm, norm.BatchNorm: _batch_norm,
    }
    for cls, rule in rules.items():
        if "jvp" not in cls.__dict__:
            cls.jvp = staticmethod(rule)
    _installed = True


def _as_tuple(x, name):
    from ..tensor import Tensor

    if isinstance(x, Tensor):
        return (x,)
    if isinstance(x, (tuple, list)) and all(isinstance(t, Tensor) for t in x):
        return tuple(x)
    raise TypeError(f"{name}: expected a Tensor or a tuple of Tensors, got {type(x).__name__}")


def jvp(f, primals, tangents) -> Any:
    """``(f(*primals), J_f(primals) @ tangents)`` in one forward pass (torch.func.jvp's
    signature and result: a Tensor or a tuple of Tensors for each part; an output that
    does not depend on the primals gets a zero tangent)."""
    from ..tensor import Tensor

    if not callable(f):
        raise TypeError(f"f: expected a callable, got {type(f).__name__}")
    ps, ts = _as_tuple(primals, "primals"), _as_tuple(tangents, "tangents")
    if len(ps) != len(ts):
        raise ValueError(f"tangents: expected {len(ps)} tangents (one per primal), got {len(ts)}")
    for i, (p, t) in enumerate(zip(ps, ts)):
        if p.dtype.kind != "f":
            raise TypeError(f"primals[{i}]: expected a float tensor, got dtype {p.dtype}")
        if t.shape != p.shape or t.dtype != p.dtype or t.backend is not p.backend:
            raise ValueError(
                f"tangents[{i}]: expected shape {p.shape}, dtype {p.dtype} on backend "
                f"{p.backend.name!r}, got shape {t.shape}, dtype {t.dtype} on {t.backend.name!r}")
    if engine.forward_ad_enabled():
        raise NotImplementedError(
            "fg.autograd.jvp: nested jvp (forward over forward) is not supported: a tensor "
            "carries one tangent; for second derivatives use rust_core's nested Dual or "
            "reverse mode")
    _install()
    duals = []
    for p, t in zip(ps, ts):
        d = Tensor._wrap(p.data, p.backend, requires_grad=p.requires_grad)
        d._tangent = t.data
        duals.append(d)
    engine._state.forward_ad = getattr(engine._state, "forward_ad", 0) + 1
    try:
        out = f(*duals)
    finally:
        engine._state.forward_ad -= 1
    outs = _as_tuple(out, "f's result")
    touts = []
    for o in outs:
        tan = getattr(o, "_tangent", None)
        if tan is None:
            tan = o.backend.full(o.shape, 0.0, o.dtype)
        touts.append(Tensor._wrap(tan, o.backend))
        o.__dict__.pop("_tangent", None)
    if isinstance(out, Tensor):
        return outs[0], touts[0]
    return tuple(outs), tuple(touts)
