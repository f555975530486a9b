"""Forward mode: ``jvp(f, primals, tangents)`` pushes tangents through ``f`` with the ops.

Inside ``jvp`` every op (``Function.apply``) computes, next to its output, the output
tangent ``J v`` from its inputs' tangents with the op's forward rule: the ``jvp``
staticmethod of its Function class, ``jvp(ctx, out, *tangents)`` (``None`` for an input
without a tangent), kept beside the op's forward and backward in ``ferrograd.ops``. The
rules reuse the backends' kernels, so they run on numpy, rust and cuda alike:

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

Ops whose class has ``jvp = None`` (Conv2d, SDPA, LSTM/GRU, a user's own Function
without one) raise NotImplementedError naming them.
``jvp`` returns ``(outputs, output_tangents)`` like ``torch.func.jvp``; the reverse-mode
graph is recorded as usual, so ``backward`` still works on the outputs.
"""

from __future__ import annotations

from typing import Any

from . import engine


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
