"""gradcheck: analytic gradients against float64 central differences.

Same defaults as torch.autograd.gradcheck (eps 1e-6, atol 1e-5, rtol 1e-3). Works on any
function of Tensors on any backend, including a user's own layers: the Jacobian is
built column by column from perturbed forward passes and row by row from backward passes
with one-hot output gradients.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .engine import no_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def _outputs(fn, inputs):
    from ..tensor import Tensor
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor)]


def gradcheck(fn: Callable, inputs: Sequence, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """True if d fn(*inputs) / d inputs from backward matches central differences.

    Every input Tensor that requires grad must be float64 (float32 differences are too
    coarse for these tolerances). Non-Tensor inputs are passed through unchanged.
    """
    from ..tensor import Tensor

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("inputs: expected at least one Tensor with requires_grad=True")
    for i in diff:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"inputs[{i}]: expected float64 for gradcheck, got {inputs[i].dtype} "
                "(float32 central differences are too coarse)")

    def run(args):
        with no_grad():
            return [o.numpy().astype(np.float64).ravel() for o in _outputs(fn, args)]

    base_outs = run(inputs)
    n_out = sum(o.size for o in base_outs)

    # numerical Jacobian: one column per input element
    numerical = []
    for i in diff:
        t = inputs[i]
        host = t.numpy().astype(np.float64)
        cols = np.zeros((host.size, n_out))
        flat = host.ravel()
        for j in range(flat.size):
            vals = []
            for sign in (1.0, -1.0):
                pert = flat.copy()
                pert[j] += sign * eps
                moved = Tensor(t.backend.from_numpy(pert.reshape(host.shape)), t.backend)
                args = list(inputs)
                args[i] = moved
                vals.append(np.concatenate(run(args)) if n_out else np.zeros(0))
            cols[j] = (vals[0] - vals[1]) / (2 * eps)
        numerical.append(cols)

    # analytic Jacobian: one row per output element
    analytic = [np.zeros((inputs[i].size, n_out)) for i in diff]
    fresh = list(inputs)
    for i in diff:  # fresh leaves so gradients do not mix with any the caller holds
        fresh[i] = Tensor(inputs[i].data, inputs[i].backend, requires_grad=True)
    outs = _outputs(fn, fresh)
    col = 0
    for o in outs:
        for k in range(o.size):
            seed = np.zeros(o.size)
            seed[k] = 1.0
            for i in diff:
                fresh[i].grad = None
            g = Tensor(o.backend.from_numpy(seed.reshape(o.shape).astype(o.dtype)), o.backend)
            if o.requires_grad:
                o.backward(g, retain_graph=True)
            for slot, i in enumerate(diff):
                gr = fresh[i].grad
                if gr is not None:
                    analytic[slot][:, col] = gr.numpy().astype(np.float64).ravel()
            col += 1

    for slot, i in enumerate(diff):
        a, n = analytic[slot], numerical[slot]
        bad = ~np.isclose(a, n, rtol=rtol, atol=atol, equal_nan=False)
        if bad.any():
            j, c = np.argwhere(bad)[0]
            msg = (f"gradcheck: Jacobian mismatch for inputs[{i}] (element {j}, output {c}): "
                   f"analytic {a[j, c]!r}, numerical {n[j, c]!r}; max abs difference "
                   f"{np.nanmax(np.abs(a - n)):.3e} (atol={atol}, rtol={rtol})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
