"""Activation checkpointing: ``checkpoint(fn, *args)`` recomputes ``fn`` during backward.

The forward runs ``fn`` under ``no_grad`` and records one node that keeps only the
arrays of ``fn``'s Tensor arguments; the intermediate results that ``fn``'s ops would
have saved for backward are dropped. When backward reaches that node it runs ``fn``
again, with grad enabled, on fresh leaves holding the saved inputs, backpropagates the
incoming gradients through that recomputed graph (which accumulates into the ``.grad``
of any parameter ``fn`` uses, as in PyTorch), and passes the leaves' gradients on to the
rest of the graph. Gradients are identical to running ``fn`` directly (same kernels in
the same order); memory for the region drops from all its intermediates to its inputs,
at the price of a second forward. ``fg.autograd.saved_bytes`` measures it.

Choices, following ``torch.utils.checkpoint.checkpoint``:
- the dropout stream is restored for the recomputation (``preserve_rng_state=True``), so
  a region with dropout draws the same masks twice;
- the node is recorded when any op inside ``fn`` touches a tensor that requires grad,
  also when no argument does (PyTorch's non-reentrant variant): parameters of layers
  called inside ``fn`` get their gradients even when the input is plain data;
- tensors that require grad must reach ``fn`` as positional arguments or as leaves it
  closes over (parameters); keyword arguments pass through unchanged and may not be
  tensors that require grad (their gradient would be lost).
"""

from __future__ import annotations

from typing import Any

from . import engine
from .engine import Context, Function, Node, enable_grad, is_grad_enabled, no_grad


def _as_outputs(out, what: str):
    from ..tensor import Tensor

    if isinstance(out, Tensor):
        return (out,), False
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, Tensor) for o in out):
        return tuple(out), True
    raise TypeError(
        f"checkpoint: {what} must return a Tensor or a non-empty tuple of Tensors, "
        f"got {type(out).__name__}")


class Checkpoint(Function):
    """The recorded node of a checkpointed region (built by ``checkpoint``, not applied)."""

    @staticmethod
    def forward(ctx, *args):  # pragma: no cover - checkpoint() records the node itself
        raise RuntimeError("Checkpoint is recorded by fg.autograd.checkpoint, not applied")

    @staticmethod
    def backward(ctx: Context, *grad_outputs):
        from ..random import philox_replay
        from ..tensor import Tensor

        arrays = ctx.saved_arrays
        leaves = [Tensor._wrap(a, ctx.backend, requires_grad=need)
                  for a, need in zip(arrays, ctx.needs_input_grad)]
        it = iter(leaves)
        args = [next(it) if is_t else a for a, is_t in zip(ctx.args, ctx.is_tensor)]
        with philox_replay(ctx.philox_offset), enable_grad():
            outs, _ = _as_outputs(ctx.fn(*args, **ctx.kwargs), "fn")
        if len(outs) != len(grad_outputs):
            raise RuntimeError(
                f"checkpoint: fn returned {len(outs)} outputs when recomputed, "
                f"{len(grad_outputs)} in the forward (fn must be deterministic)")
        roots, seeds = [], []
        for o, g in zip(outs, grad_outputs):
            if g is None or not o.requires_grad:
                continue
            roots.append(o)
            seeds.append(Tensor._wrap(g, o.backend))
        if roots:
            engine.backward(roots, seeds)
        return tuple(leaf.grad.data if (need and leaf.grad is not None) else None
                     for leaf, need in zip(leaves, ctx.needs_input_grad))


def checkpoint(fn, *args: Any, **kwargs: Any):
    """Run ``fn(*args, **kwargs)`` without keeping its intermediates; recompute them in
    backward (``torch.utils.checkpoint.checkpoint`` with ``use_reentrant=False`` and
    ``preserve_rng_state=True``). Returns what ``fn`` returns: a Tensor or a tuple of
    Tensors. Outside grad mode it is just ``fn(*args, **kwargs)``."""
    from ..random import philox_offset
    from ..tensor import Tensor

    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    for k, v in kwargs.items():
        if isinstance(v, Tensor) and v.requires_grad:
            raise ValueError(
                f"checkpoint: keyword argument {k!r} is a Tensor that requires grad; "
                "expected it as a positional argument (keyword arguments pass through "
                "without gradients)")
    if not is_grad_enabled():
        return fn(*args, **kwargs)
    tensors = [a for a in args if isinstance(a, Tensor)]
    backends = {id(t.backend) for t in tensors}
    if len(backends) > 1:
        raise ValueError(
            "checkpoint: expected all tensor arguments on one backend, got "
            f"{sorted({t.backend.name for t in tensors})}")
    offset = philox_offset()
    probe = [any(t.requires_grad for t in tensors)]
    prev = getattr(engine._state, "probe", None)
    engine._state.probe = probe
    try:
        with no_grad():
            outs, multi = _as_outputs(fn(*args, **kwargs), "fn")
    finally:
        engine._state.probe = prev
    if prev is not None and probe[0]:
        prev[0] = True  # a checkpoint nested in another one's forward
    if not probe[0]:
        return outs if multi else outs[0]
    backend = outs[0].backend
    ctx = Context(tensors[0].backend if tensors else backend,
                  tuple(t.requires_grad for t in tensors))
    ctx.save_for_backward(*(t.data for t in tensors))
    ctx.fn, ctx.kwargs = fn, kwargs
    ctx.args = [None if isinstance(a, Tensor) else a for a in args]
    ctx.is_tensor = [isinstance(a, Tensor) for a in args]
    ctx.philox_offset = offset
    node = Node(Checkpoint, ctx, [t if t.requires_grad else None for t in tensors], len(outs))
    results = tuple(Tensor._wrap(o.data, o.backend, requires_grad=True, node=node, index=i)
                    for i, o in enumerate(outs))
    for r, o in zip(results, outs):  # forward mode (fg.autograd.jvp) through the region
        if getattr(o, "_tangent", None) is not None:
            r._tangent = o._tangent
    return results if multi else results[0]
