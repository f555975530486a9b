"""The tape engine: define-by-run reverse-mode autograd shared by every backend.

Each differentiable op is a ``Function`` subclass with ``forward(ctx, *arrays)`` and
``backward(ctx, *grad_arrays)`` that call the backend's kernels on native arrays.
``Function.apply`` runs forward and, when grad mode is on and an input requires grad,
records a ``Node`` on the output tensors. ``backward`` walks the nodes reachable from the
root in reverse topological order, calls each node's backward once with the summed
gradients of its outputs, accumulates leaf gradients into ``.grad`` and frees what the
node saved unless ``retain_graph`` is set.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
from typing import Any, List, Optional, Sequence, Tuple

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def _set_grad_enabled(flag: bool) -> None:
    _state.enabled = flag


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        self.prev = is_grad_enabled()
        _set_grad_enabled(self.enabled)
        return self

    def __exit__(self, *exc):
        _set_grad_enabled(self.prev)
        return False


def no_grad() -> _GradMode:
    """Context manager / decorator under which ops record nothing."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    return _GradMode(True)


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self, backend, needs_input_grad: Tuple[bool, ...], saving: bool = True):
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        #: whether what forward saves will be read: autograd records the op, or
        #: fg.autograd.jvp pushes tangents through it. A forward may skip work that only
        #: feeds its saved arrays when it is False (relu's mask: ops/activation.py).
        self.saving = saving
        self.saved: Optional[Tuple[Any, ...]] = ()

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved = arrays

    @property
    def saved_arrays(self) -> Tuple[Any, ...]:
        if self.saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or to use saved "
                "arrays after they were freed): call backward(retain_graph=True) the first "
                "time if you need to backward twice")
        return self.saved


class Node:
    """One recorded op: its Function, context and the input tensors that need grad."""

    __slots__ = ("function", "ctx", "inputs", "n_outputs", "freed", "__weakref__")

    def __init__(self, function, ctx: Context, inputs: List[Any], n_outputs: int):
        self.function = function
        self.ctx = ctx
        self.inputs = inputs  # per forward Tensor argument: the Tensor if it needs grad, else None
        self.n_outputs = n_outputs
        self.freed = False

    @property
    def name(self) -> str:
        return self.function.__name__ + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Function:
    """Base class of differentiable ops. Subclasses define forward and backward as staticmethods.

    forward(ctx, *args) receives backend arrays in place of Tensor arguments (other
    arguments pass through) and returns an array or a tuple of arrays. backward(ctx,
    *grad_outputs) returns one gradient array (or None) per Tensor argument of forward,
    in order.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, *grad_outputs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    #: forward-mode rule ``jvp(ctx, out, *tangents)`` -> output tangent(s), or None: this
    #: op has none and ``fg.autograd.jvp`` through it raises naming it (see autograd.rules)
    jvp = None
    #: differentiable backward ``backward_graph(ctx, inputs, *grad_outputs)`` for
    #: ``backward(create_graph=True)``, or None: this op has none (see autograd.rules)
    backward_graph = None

    @classmethod
    def apply(cls, *args: Any):
        Tensor = _tensor_class()
        tensors = [a for a in args if isinstance(a, Tensor)]
        if not tensors:
            raise TypeError(f"{cls.__name__}: expected at least one Tensor argument")
        backend = tensors[0].backend
        for t in tensors[1:]:
            if t.backend is not backend:
                raise ValueError(_mixed_backends(cls, args, Tensor))
        needs = tuple(t.requires_grad for t in tensors)
        record = is_grad_enabled() and any(needs)
        probe = getattr(_state, "probe", None)
        if probe is not None and any(needs):
            probe[0] = True  # checkpoint: this region touches a tensor that requires grad
        ad = forward_ad_enabled()
        ctx = Context(backend, needs, saving=record or ad)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = cls.forward(ctx, *raw)
        multi = isinstance(out, tuple)
        outs = tuple(_native(o) for o in (out if multi else (out,)))
        touts = _forward_tangents(cls, ctx, tensors, out, multi, len(outs)) if ad else None
        node = None
        if record:
            node = Node(cls, ctx, [t if t.requires_grad else None for t in tensors], len(outs))
        out_backend = getattr(ctx, "output_backend", backend)  # set by ops that move data
        results = tuple(
            Tensor._wrap(o, out_backend, requires_grad=record, node=node, index=i)
            for i, o in enumerate(outs))
        if touts is not None:
            for r, tan in zip(results, touts):
                if tan is not None:
                    r._tangent = _native(tan)
        return results if multi else results[0]


def _mixed_backends(cls, args, Tensor) -> str:
    """Which tensor argument (in call order) is on which backend: a mixed-backend op's error."""
    names = [a.backend.name for a in args if isinstance(a, Tensor)]
    odd = ", ".join(f"tensor argument {i + 1} on {n!r}" for i, n in enumerate(names) if n != names[0])
    return (f"{cls.__name__}: expected all tensors on one backend; tensor argument 1 is on "
            f"{names[0]!r}, {odd} (move it with .to({names[0]!r}))")


_TENSOR = None


def _tensor_class():
    """ferrograd.tensor.Tensor (imported on first use: tensor.py imports this module). A
    module-level cache: an import statement inside apply() ran the import machinery on
    every op, a tenth of a small op's time."""
    global _TENSOR
    if _TENSOR is None:
        from ..tensor import Tensor

        _TENSOR = Tensor
    return _TENSOR


def forward_ad_enabled() -> bool:
    """True inside ``fg.autograd.jvp``: ops then also push tangents forward."""
    return getattr(_state, "forward_ad", 0) > 0


def _forward_tangents(cls, ctx, tensors, out, multi, n_outputs):
    """The output tangents of one op (forward mode), or None when no input carries one."""
    tangents = [getattr(t, "_tangent", None) for t in tensors]
    if all(t is None for t in tangents):
        return None
    rule = getattr(cls, "jvp", None)
    if rule is None:
        raise NotImplementedError(
            f"fg.autograd.jvp: {cls.__name__} has no forward-mode rule (a jvp staticmethod); "
            "differentiate it in reverse mode instead")
    tout = rule(ctx, out, *tangents)
    return tuple(tout) if multi else (tout,) + (None,) * (n_outputs - 1)


def _native(a):
    """numpy arithmetic on 0-d arrays returns numpy scalars: keep them arrays."""
    if isinstance(a, np.generic):
        return np.asarray(a)
    return a


def _topological_order(roots: Sequence[Node]) -> List[Node]:
    """Nodes reachable from roots, each after every node that consumes its outputs."""
    order: List[Node] = []
    visited = set()
    for root in roots:
        if id(root) in visited:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for t in node.inputs:
                if t is not None and t._node is not None and id(t._node) not in visited:
                    stack.append((t._node, False))
    order.reverse()  # post-order reversed: consumers before producers
    return order


def backward(tensors, grad_tensors=None, retain_graph: Optional[bool] = None,
             create_graph: bool = False) -> None:
    """Accumulate d(sum of tensors * grad_tensors)/d(leaf) into each leaf's ``.grad``.

    ``create_graph=True`` records the backward itself (each op's ``backward_graph``), so
    the ``.grad`` tensors can be differentiated again; ``retain_graph`` then defaults to
    True, as in PyTorch.
    """
    Tensor = _tensor_class()
    if retain_graph is None:
        retain_graph = bool(create_graph)

    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors)
    if len(grad_tensors) != len(tensors):
        raise ValueError(
            f"grad_tensors: expected {len(tensors)} gradients, got {len(grad_tensors)}")

    seeds = []  # (output, its gradient)
    for t, g in zip(tensors, grad_tensors):
        if not t.requires_grad:
            raise RuntimeError(
                "element 0 of tensors does not require grad and does not have a grad_fn: "
                "call backward on a result of ops on tensors with requires_grad=True")
        if g is None:
            if t.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; got shape "
                    f"{t.shape}: pass gradient= with that shape")
            garr = t.backend.full(t.shape, 1.0, t.dtype)
        else:
            if not isinstance(g, Tensor):
                raise TypeError(f"gradient: expected a Tensor, got {type(g).__name__}")
            if tuple(g.shape) != tuple(t.shape):
                raise ValueError(f"gradient: expected shape {t.shape}, got {g.shape}")
            if g.backend is not t.backend:
                raise ValueError(f"gradient: expected a tensor on backend {t.backend.name!r} like "
                                 f"the output, got one on {g.backend.name!r}")
            garr = g.data
            if g.dtype != t.dtype:  # PyTorch casts the seed to the output's dtype
                garr = t.backend.from_numpy(np.asarray(g.numpy(), dtype=t.dtype))
        if create_graph:  # the walk is recorded: its seed is a Tensor
            seeds.append((t, g if g is not None else Tensor._wrap(garr, t.backend)))
        else:
            seeds.append((t, garr))

    if create_graph:
        with enable_grad():
            _walk(seeds, _GraphGradients(), retain_graph)
    else:
        _walk(seeds, _ArrayGradients(), retain_graph)


class _ArrayGradients:
    """Plain backward: gradients are backend arrays, each node's ``Function.backward``."""

    rule = "backward"

    @staticmethod
    def add(backend, current, new):
        return new if current is None else backend.binary_forward("add", current, new)

    @staticmethod
    def input_grads(node, slots):
        # an output that received no gradient passes None; Functions with several
        # outputs treat None as zero
        return node.function.backward(node.ctx, *slots)

    @staticmethod
    def native(g):
        return _native(g)

    @staticmethod
    def to_leaf(t, g) -> None:
        t._accumulate_grad(g)


class _GraphGradients:
    """``create_graph=True``: gradients are Tensors recorded on the tape, made by each
    node's ``backward_graph`` (written with differentiable ops), so ``.grad`` can be
    differentiated again."""

    rule = "backward_graph"

    @staticmethod
    def add(backend, current, new):
        return new if current is None else current + new

    @staticmethod
    def input_grads(node, slots):
        from ..tensor import Tensor

        rule = node.function.backward_graph
        if rule is None or node.n_outputs != 1:
            raise NotImplementedError(
                f"backward(create_graph=True): {node.function.__name__} has no differentiable "
                "backward rule (higher-order gradients cover elementwise ops, cheap "
                "activations, sum/mean, layout ops and matmul/linear)")
        ctx = node.ctx
        saved = ctx.saved_arrays
        inputs = [t if t is not None else
                  (Tensor._wrap(saved[i], ctx.backend) if i < len(saved) else None)
                  for i, t in enumerate(node.inputs)]
        return rule(ctx, inputs, slots[0])

    @staticmethod
    def native(g):
        return g

    @staticmethod
    def to_leaf(t, g) -> None:
        t.grad = g if t.grad is None else t.grad + g


def _walk(seeds, gradients, retain_graph: bool) -> None:
    """The one graph walk of backward: seed each output's node, then visit the nodes once
    in reverse topological order, each summing what its outputs received and handing its
    inputs their share. ``gradients`` says what a gradient is (an array, or a Tensor
    when the walk itself is recorded) and which rule of the op makes them."""
    grads = {}  # id(node) -> list of summed output gradients
    roots = []
    for t, g in seeds:
        if t._node is None:  # a leaf: its gradient is the seed itself
            gradients.to_leaf(t, g)
            continue
        slots = grads.setdefault(id(t._node), [None] * t._node.n_outputs)
        slots[t._index] = gradients.add(t.backend, slots[t._index], g)
        roots.append(t._node)

    for node in _topological_order(roots):
        if node.freed:
            raise RuntimeError(
                f"Trying to backward through the graph a second time ({node.name} was "
                "freed by an earlier backward): pass retain_graph=True to the first backward "
                "if you need to backward twice")
        slots = grads.pop(id(node), None)
        if slots is None:
            continue  # no gradient flows into this node
        ctx = node.ctx
        in_grads = gradients.input_grads(node, slots)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.inputs):
            raise RuntimeError(
                f"{node.name} returned {len(in_grads)} gradients, expected {len(node.inputs)}")
        for t, g in zip(node.inputs, in_grads):
            if t is None or g is None:
                continue
            g = gradients.native(g)
            if tuple(g.shape) != t.shape:
                raise RuntimeError(
                    f"{node.name} returned a gradient of shape {tuple(g.shape)} for an input "
                    f"of shape {t.shape} (a bug in that op's {gradients.rule})")
            if t._node is None:
                gradients.to_leaf(t, g)
            else:
                slots_in = grads.setdefault(id(t._node), [None] * t._node.n_outputs)
                slots_in[t._index] = gradients.add(ctx.backend, slots_in[t._index], g)
                if t._retains_grad:
                    gradients.to_leaf(t, g)
        if not retain_graph:
            ctx.saved = None
            node.freed = True


def _array_nbytes(a) -> int:
    n = getattr(a, "nbytes", None)
    return int(n) if isinstance(n, (int, np.integer)) else 0


def saved_bytes(*tensors) -> int:
    """Bytes of the arrays that the graph behind ``tensors`` keeps for its backward.

    Walks the recorded nodes reachable from the given tensors and adds up the ``nbytes`` of
    every distinct array saved with ``ctx.save_for_backward`` by a node not yet freed (an
    array saved by two nodes, e.g. a layer's output that the next layer saves as its
    input, counts once; parameters saved by a matmul count too, as PyTorch's
    saved-tensor hooks would see them). Small attributes (shapes, flags) are not counted.
    This is what ``checkpoint`` reduces: a checkpointed region keeps only its inputs.
    """
    roots = []
    for t in tensors:
        node = getattr(t, "_node", None)
        if node is None and not hasattr(t, "_node"):
            raise TypeError(f"saved_bytes: expected Tensors, got {type(t).__name__}")
        if node is not None:
            roots.append(node)
    seen = set()
    total = 0
    for node in _topological_order(roots):
        saved = node.ctx.saved
        if node.freed or not saved:
            continue
        for a in saved:
            if a is None or id(a) in seen:
                continue
            seen.add(id(a))
            total += _array_nbytes(a)
    return total
