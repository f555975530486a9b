"""Optimizers: SGD (momentum, dampening, Nesterov, weight decay), Adam and AdamW.

Each step calls the backend's fused in-place kernel (sgd_step / adam_step) once per
parameter, so the update runs in Rust or on the GPU without temporaries in Python.
"""

from __future__ import annotations

import numbers
from typing import Dict, Iterable, List

import numpy as np

from .tensor import Tensor


def _check_float(value, name, low=0.0, high=None, closed_high=False):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    if value < low or (high is not None and (value > high if closed_high else value >= high)):
        bound = f"[{low}, {high}{']' if closed_high else ')'}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: expected a value in {bound}, got {value}")
    return float(value)


def _betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
    return (_check_float(betas[0], "betas[0]", 0.0, 1.0), _check_float(betas[1], "betas[1]", 0.0, 1.0))


def _param_list(params, where: str) -> List:
    """A group's parameters as a list (PyTorch's rules: an iterable, not one Tensor)."""
    if isinstance(params, Tensor):
        raise TypeError(f"{where}: params argument given to the optimizer should be an iterable "
                        f"of Tensors or dicts, but got a Tensor (wrap it in a list)")
    try:
        return list(params)
    except TypeError:
        raise TypeError(f"{where}: params argument given to the optimizer should be an iterable "
                        f"of Tensors or dicts, but got {type(params).__name__}") from None


class Optimizer:
    def __init__(self, params: Iterable, defaults: Dict):
        params = _param_list(params, "params")
        if not params:
            raise ValueError("params: expected at least one parameter, got an empty list")
        if all(isinstance(g, dict) for g in params):
            groups = params
        elif any(isinstance(g, dict) for g in params):
            raise TypeError("params: expected Tensors or parameter-group dicts, not a mix of both")
        else:
            groups = [{"params": params}]
        self.defaults = defaults
        self.param_groups: List[Dict] = []
        for gi, g in enumerate(groups):
            if "params" not in g:
                raise ValueError(f"params[{gi}]: parameter group didn't specify a value of required "
                                 f"optimization parameter params")
            group = dict(defaults)
            group.update(g)
            where = f"params[{gi}]['params']" if groups is params else "params"
            group["params"] = _param_list(group["params"], where)
            for i, p in enumerate(group["params"]):
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise TypeError(f"{where}[{i}]: expected a Tensor with requires_grad=True, "
                                    f"got {type(p).__name__}")
            self.param_groups.append(group)
        self.state: Dict[int, Dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = Tensor(p.backend.full(p.shape, 0.0, p.dtype), p.backend)

    def _params_with_grad(self, group):
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.backend is not p.backend:
                raise ValueError("a parameter and its gradient are on different backends; "
                                 "call zero_grad() after moving the model")
            # host arrays: the step updates them in place (a GPUArray has no writeable flag)
            if isinstance(p.data, np.ndarray) and not p.data.flags.writeable:
                raise ValueError(f"params: expected writable parameters (updated in place), got a "
                                 f"read-only array of shape {tuple(p.shape)}")
            yield p, self.state.setdefault(id(p), {})

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        lr = _check_float(lr, "lr")
        momentum = _check_float(momentum, "momentum")
        dampening = _check_float(dampening, "dampening")
        weight_decay = _check_float(weight_decay, "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov: requires momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=bool(nesterov)))

    def step(self) -> None:
        for group in self.param_groups:
            for p, state in self._params_with_grad(group):
                buf = None
                first = False
                if group["momentum"]:
                    if "momentum_buffer" not in state or state["momentum_buffer"] is None:
                        state["momentum_buffer"] = p.backend.full(p.shape, 0.0, p.dtype)
                        first = True
                    buf = state["momentum_buffer"]
                p.backend.sgd_step(p.data, p.grad.data, buf, group["lr"], group["momentum"],
                                   group["dampening"], group["weight_decay"], group["nesterov"], first)


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        lr = _check_float(lr, "lr")
        b1, b2 = _betas(betas)
        eps = _check_float(eps, "eps")
        weight_decay = _check_float(weight_decay, "weight_decay")
        super().__init__(params, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay))

    def step(self) -> None:
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p, state in self._params_with_grad(group):
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = p.backend.full(p.shape, 0.0, p.dtype)
                    state["exp_avg_sq"] = p.backend.full(p.shape, 0.0, p.dtype)
                state["step"] += 1
                p.backend.adam_step(p.data, p.grad.data, state["exp_avg"], state["exp_avg_sq"],
                                    state["step"], group["lr"], b1, b2, group["eps"],
                                    group["weight_decay"], self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter); weight_decay defaults to 0.01."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
