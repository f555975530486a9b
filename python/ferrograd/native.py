"""ferrograd.native: a model's training step run by the Rust crate's own tape.

``NativeSequential(model, loss, reduction)`` reads a model made of supported modules
(``nn.Sequential`` of Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten, ReLU, LeakyReLU,
Sigmoid, Tanh, GELU, SiLU, Swish, or one such module) and runs forward, loss, backward and the optimizer step in one Rust call
(``rust_core::autograd::tape``, a Wengert list over the same kernels as the rust backend),
with no Python between ops. The model's parameter arrays are used and updated in place,
so the model and the native runner stay in sync. Gradients equal the Python engine's
(same kernels; tests/test_native.py checks it on random models).

Supported now: the modules above, losses ``"mse"`` and ``"cross_entropy"`` with
reduction ``"mean"`` or ``"sum"``, and plain SGD (``step(x, target, lr)``). Any other
module raises TypeError naming it (as does a Conv2d with string padding, or a pooling
layer with return_indices). Norm, adaptive pooling, dropout, recurrent and attention
layers are not in the native op set yet (each is one op variant on the tape).
"""

from __future__ import annotations

import numbers
from typing import List, Tuple

import numpy as np

from . import nn
from .backends import _pool
from .tensor import Tensor

_LOSSES = ("mse", "cross_entropy")
_REDUCTIONS = ("mean", "sum")


def _layer_specs(model) -> Tuple[List[Tuple[str, float]], List]:
    modules = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    specs, params = [], []
    for i, m in enumerate(modules):
        where = f"model[{i}]" if isinstance(model, nn.Sequential) else "model"
        if isinstance(m, nn.Sequential):
            sub_specs, sub_params = _layer_specs(m)
            specs += sub_specs
            params += sub_params
        elif type(m) in (nn.Linear, nn.Conv2d):
            if type(m) is nn.Linear:
                specs.append(("linear", [1.0 if m.bias is not None else 0.0]))
            else:
                padding = m.padding
                if isinstance(padding, str):
                    if padding != "valid":
                        raise TypeError(f"{where}: Conv2d with padding={padding!r} is not supported "
                                        "by ferrograd.native (use integer padding)")
                    padding = (0, 0)
                specs.append(("conv2d", [1.0 if m.bias is not None else 0.0, *map(float, m.stride),
                                         *map(float, padding), *map(float, m.dilation), float(m.groups)]))
            params.append(m.weight)
            if m.bias is not None:
                params.append(m.bias)
        elif type(m) in (nn.MaxPool2d, nn.AvgPool2d):
            name = type(m).__name__
            if getattr(m, "return_indices", False):
                raise TypeError(f"{where}: {name} with return_indices=True is not supported by "
                                "ferrograd.native")
            k = _pool.pair(m.kernel_size, "kernel_size", 1)
            st = _pool.stride_pair(m.stride, m.kernel_size)
            pd = _pool.pair(m.padding, "padding", 0)
            if type(m) is nn.MaxPool2d:
                d = _pool.pair(m.dilation, "dilation", 1)
                specs.append(("max_pool2d", [float(v) for v in (*k, *st, *pd, *d, bool(m.ceil_mode))]))
            else:
                div = _pool.check_divisor(m.divisor_override)
                specs.append(("avg_pool2d", [float(v) for v in (*k, *st, *pd, bool(m.ceil_mode),
                                                                bool(m.count_include_pad), div)]))
        elif type(m) is nn.Flatten:
            specs.append(("flatten", [float(m.start_dim), float(m.end_dim)]))
        elif type(m) is nn.ReLU:
            specs.append(("relu", []))
        elif type(m) is nn.LeakyReLU:
            specs.append(("leaky_relu", [float(m.negative_slope)]))
        elif type(m) is nn.Sigmoid:
            specs.append(("sigmoid", []))
        elif type(m) is nn.Tanh:
            specs.append(("tanh", []))
        elif type(m) is nn.GELU:
            specs.append(("gelu", [1.0 if m.approximate == "tanh" else 0.0]))
        elif type(m) is nn.SiLU:
            specs.append(("swish", [1.0]))
        elif type(m) is nn.Swish:
            specs.append(("swish", [float(m.beta)]))
        else:
            raise TypeError(
                f"{where}: {type(m).__name__} is not supported by ferrograd.native (supported: "
                "Sequential, Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten, ReLU, LeakyReLU, "
                "Sigmoid, Tanh, GELU, SiLU, Swish)")
    return specs, params


class NativeSequential:
    """Runs ``model``'s training step on the native Rust tape (see the module docstring)."""

    def __init__(self, model, loss: str = "cross_entropy", reduction: str = "mean"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        if loss not in _LOSSES:
            raise ValueError(f"loss: expected one of {_LOSSES}, got {loss!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.specs, self.params = _layer_specs(model)
        for p in self.params:
            if p.backend.name not in ("numpy", "rust"):
                raise ValueError(
                    f"model: expected parameters on the 'rust' or 'numpy' backend (host arrays), "
                    f"got one on {p.backend.name!r} (move the model with .to('rust'))")
        self.model, self.loss, self.reduction = model, loss, reduction

    def _args(self, x, target):
        xs = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
        if xs.ndim not in (2, 4):
            raise ValueError(f"x: expected a 2-D (batch, features) or 4-D (N, C, H, W) input, "
                             f"got shape {xs.shape}")
        dtype = self.params[0].dtype if self.params else xs.dtype
        xs = np.require(xs, dtype, requirements="C")
        t = target.numpy() if isinstance(target, Tensor) else np.asarray(target)
        if self.loss == "cross_entropy":
            if t.dtype.kind not in "iu":
                raise TypeError(f"target: expected integer class indices, got dtype {t.dtype}")
            t = np.require(t, np.int64, requirements="C")
        else:
            t = np.require(t, dtype, requirements="C")
        return xs, t

    def _call(self, x, target, lr):
        from .backends import get_backend

        get_backend("rust")  # checks the CPU before loading the extension
        from . import _core

        xs, t = self._args(x, target)
        arrays = [p.data for p in self.params]
        return _core.native_sequential_step(self.specs, arrays, xs, t, self.loss, self.reduction, lr)

    def grads(self, x, target):
        """``(loss, [grad per parameter])`` as numpy arrays; parameters unchanged."""
        return self._call(x, target, None)

    def step(self, x, target, lr: float) -> float:
        """One SGD step (``p -= lr * grad``, in place, in Rust); returns the loss before it."""
        if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not lr >= 0:
            raise ValueError(f"lr: expected a non-negative number, got {lr!r}")
        return self._call(x, target, float(lr))[0]
