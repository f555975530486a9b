"""Helpers for testing ferrograd and layers built on it.

* ``tolerances``: the suite's tolerances by dtype and ``assert_close``.
* ``strategies``: hypothesis strategies (shapes, broadcastable pairs, bounded floats).
* ``run_op`` / ``check_against_numpy``: run a function of Tensors forward and backward on
  a backend and compare values and gradients with the numpy reference backend.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .tolerances import TOLERANCES, Tolerance, assert_close, tolerance

__all__ = ["TOLERANCES", "Tolerance", "assert_close", "tolerance", "run_op",
           "check_against_numpy", "upstream_gradient"]


def upstream_gradient(shape, dtype, seed: int = 0) -> np.ndarray:
    """A deterministic random output gradient of ``shape`` and ``dtype``."""
    rng = np.random.default_rng(seed)
    return np.asarray(rng.standard_normal(shape)).astype(dtype)


def run_op(fn: Callable, arrays: Sequence, backend, grad: bool = True,
           requires_grad: Optional[Sequence[bool]] = None, seed: int = 0
           ) -> Tuple[np.ndarray, List[Optional[np.ndarray]]]:
    """``fn(*tensors)`` on ``backend`` from numpy ``arrays``; returns the output and, when
    ``grad``, the gradient of every float input for a random upstream gradient (None for
    inputs that do not require grad)."""
    import ferrograd as fg

    if requires_grad is None:
        requires_grad = [np.asarray(a).dtype.kind == "f" for a in arrays]
    tensors = [fg.tensor(np.asarray(a), backend=backend, requires_grad=bool(grad and rg))
               for a, rg in zip(arrays, requires_grad)]
    y = fn(*tensors)
    out = y.numpy().copy()
    grads: List[Optional[np.ndarray]] = [None] * len(tensors)
    if grad and y.requires_grad:
        gy = upstream_gradient(y.shape, y.dtype, seed)
        y.backward(fg.tensor(gy, backend=backend))
        grads = [t.grad.numpy().copy() if t.grad is not None else None for t in tensors]
    return out, grads


def check_against_numpy(fn: Callable, arrays: Sequence, backend, kind: str = "elementwise",
                        grad_kind: Optional[str] = None, grad: bool = True,
                        scale: Optional[float] = None, grad_scale: Optional[float] = None,
                        requires_grad: Optional[Sequence[bool]] = None):
    """Compare ``fn`` on ``backend`` with the numpy backend: output shape, dtype and values,
    and each input's gradient (shape and values). Returns ``(output, grads)`` of ``backend``."""
    y, gs = run_op(fn, arrays, backend, grad, requires_grad)
    y0, g0 = run_op(fn, arrays, "numpy", grad, requires_grad)
    name = getattr(backend, "name", backend)
    dtype = y0.dtype
    assert y.dtype == y0.dtype, f"{name}: output dtype {y.dtype}, numpy gives {y0.dtype}"
    assert_close(y, y0, dtype, kind, scale=scale, msg=f"{name} forward vs numpy")
    for i, (g, e) in enumerate(zip(gs, g0)):
        if e is None:
            assert g is None, f"{name}: input {i} got a gradient, numpy gives none"
            continue
        assert g is not None, f"{name}: input {i} got no gradient"
        assert g.shape == np.shape(arrays[i]), \
            f"{name}: gradient of input {i} has shape {g.shape}, input has {np.shape(arrays[i])}"
        assert g.dtype == e.dtype, f"{name}: gradient {i} dtype {g.dtype}, numpy gives {e.dtype}"
        assert_close(g, e, dtype, grad_kind or kind, scale=grad_scale,
                     msg=f"{name} gradient of input {i} vs numpy")
    return y, gs
