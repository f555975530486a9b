"""ferrograd.native: a model's training step run by the Rust crate's own tape.

``NativeSequential(model, loss, reduction)`` reads a model made of supported modules
(an ``nn.Sequential``, possibly nested, or one module) and runs forward, loss, backward
and the optimizer step in one Rust call (``rust_core::autograd::tape``, a Wengert list
over the same kernels as the rust backend), with no Python between ops. The model's
parameter arrays (and the norms' running statistics) are used and updated in place, so
the model and the native runner stay in sync. Gradients equal the Python engine's (same
kernels; tests/test_native.py checks it on random models).

Supported modules:

* Linear (on (N, F) or (*, F) inputs), Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
  Flatten;
* ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Swish;
* BatchNorm1d, BatchNorm2d, InstanceNorm2d (4-D input), LayerNorm (up to 4 normalized
  dimensions), GroupNorm: train and eval mode read from each module's ``training`` flag
  at every call, as its forward would. In training, BatchNorm normalizes with the batch
  statistics and moves running_mean / running_var (and num_batches_tracked, which sets
  the factor when momentum is None) exactly as PyTorch and the Python engine do;
  InstanceNorm2d with track_running_stats moves them the same way too;
* Dropout: in training each call draws ``(seed, offset)`` from ``fg.manual_seed``'s
  Philox stream in module order, as the Python forward does, so the same seed gives the
  same masks (and gradients) on both engines; eval is the identity;
* LSTM and GRU (any num_layers, bidirectional, bias, batch_first, dropout between layers,
  3-D batched input) from zero initial states. **Rule:** where PyTorch's module returns
  ``(output, h_n[, c_n])``, a recurrent layer inside NativeSequential passes on
  ``output`` only (what ``lambda out: out[0]`` would), e.g. ``Sequential(LSTM(4, 8,
  batch_first=True), Flatten(), Linear(T * 8, 3))``;
* TransformerEncoderLayer (post-norm or norm_first, relu or gelu, bias or not,
  batch_first or not, dropout) and TransformerEncoder (its layers, then its norm), on a
  3-D batched input without masks: self-attention runs the flash kernels, or, in training
  with attention dropout, the composed path with the Python engine's Philox masks. The
  layer's own ``training`` flag sets all of its dropouts.

Losses ``"mse"`` and ``"cross_entropy"`` with reduction ``"mean"`` or ``"sum"``, and
plain SGD (``step(x, target, lr)``). Any other module raises TypeError naming it (as
does a Conv2d with string padding, a pooling layer with return_indices, or a
TransformerEncoderLayer with a callable activation). A bare MultiheadAttention takes
(query, key, value) and returns a tuple, so it is not a Sequential layer (use it through
TransformerEncoderLayer).
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


_SUPPORTED = ("Sequential, Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, "
              "ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Swish, BatchNorm1d, BatchNorm2d, "
              "InstanceNorm2d, LayerNorm, GroupNorm, Dropout, LSTM, GRU, TransformerEncoderLayer, "
              "TransformerEncoder")

# modules whose spec depends on the call (train/eval, running statistics, random streams)
_DYNAMIC = (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.Dropout, nn.LSTM, nn.GRU,
            nn.TransformerEncoderLayer)


def _affine(m) -> List:
    return [p for p in (m.weight, m.bias) if p is not None]


def _layer_specs(model) -> Tuple[List[Tuple[str, List[float]]], List, List[Tuple[int, object]]]:
    """(specs, params, dynamic): one spec per layer, the parameters in the order the
    layers take them (model.parameters() order), and (spec index, module) for the layers
    whose spec is made at each call (``_call_spec``)."""
    modules = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    specs, params, dynamic = [], [], []
    for i, m in enumerate(modules):
        where = f"model[{i}]" if isinstance(model, nn.Sequential) else "model"
        if type(m) is nn.TransformerEncoder:  # its layers, then its final norm
            m = nn.Sequential(*m.layers.children(), *([m.norm] if m.norm is not None else []))
        if isinstance(m, nn.Sequential):
            sub_specs, sub_params, sub_dynamic = _layer_specs(m)
            dynamic += [(j + len(specs), mod) for j, mod in sub_dynamic]
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
        elif type(m) is nn.AdaptiveAvgPool2d:
            size = m.output_size
            size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
            if len(size) != 2 or not all(v is None or (isinstance(v, numbers.Integral)
                                                       and not isinstance(v, bool) and v >= 1)
                                         for v in size):
                raise ValueError(f"{where}: AdaptiveAvgPool2d output_size: expected an int >= 1 or "
                                 f"a pair of them (None keeps the input size), got {m.output_size!r}")
            specs.append(("adaptive_avg_pool2d", [0.0 if v is None else float(v) for v in size]))
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
        elif type(m) is nn.LayerNorm:
            if len(m.normalized_shape) > 4:
                raise TypeError(f"{where}: LayerNorm with more than 4 normalized dimensions is not "
                                "supported by ferrograd.native")
            specs.append(("layer_norm", [m.eps, float(m.weight is not None), float(m.bias is not None),
                                         float(len(m.normalized_shape)),
                                         *map(float, m.normalized_shape)]))
            params += _affine(m)
        elif type(m) is nn.GroupNorm:
            specs.append(("group_norm", [float(m.num_groups), float(m.num_channels),
                                         float(m.affine), m.eps]))
            params += _affine(m)
        elif type(m) in _DYNAMIC:
            dynamic.append((len(specs), m))
            specs.append(None)  # made at each call
            if type(m) in (nn.LSTM, nn.GRU):
                params += m._flat_weights
            elif type(m) is nn.TransformerEncoderLayer:
                if m.activation not in ("relu", "gelu"):
                    raise TypeError(f"{where}: TransformerEncoderLayer with a callable activation is "
                                    "not supported by ferrograd.native (use 'relu' or 'gelu')")
                params += list(m.parameters())
            elif type(m) is not nn.Dropout:
                params += _affine(m)
        else:
            raise TypeError(f"{where}: {type(m).__name__} is not supported by ferrograd.native "
                            f"(supported: {_SUPPORTED})")
    return specs, params, dynamic


def _call_spec(m, buffers: List, streams: List) -> Tuple[str, List[float]]:
    """The spec of a train/eval-dependent module for this call, with the side effects of
    its Python forward: num_batches_tracked counts, random streams are drawn (in module
    order, as the forward draws them), and the running statistics to update in place are
    appended to ``buffers``."""
    from .random import philox_next

    if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
        factor = 0.0 if m.momentum is None else m.momentum
        if m.training and m.track_running_stats:
            factor = m._count_batch()
        batch_stats = m.training or m.running_mean is None
        running = (not m.training or m.track_running_stats) and m.running_mean is not None
        if running:
            buffers += [m.running_mean.data, m.running_var.data]
        kind = "batch_norm2d" if type(m) is nn.BatchNorm2d else "batch_norm1d"
        return kind, [float(m.num_features), float(m.affine), float(running), float(batch_stats),
                      float(factor), m.eps]
    if type(m) is nn.InstanceNorm2d:
        factor = 0.0 if m.momentum is None else m.momentum
        input_stats = m.training or not m.track_running_stats
        running = m.running_mean is not None
        if running:
            buffers += [m.running_mean.data, m.running_var.data]
        return "instance_norm2d", [float(m.num_features), float(m.affine), float(running),
                                   float(input_stats), float(factor), m.eps]
    if type(m) is nn.Dropout:
        if m.training:
            streams.append(philox_next())
        return "dropout", [m.p, float(m.training)]
    if type(m) is nn.TransformerEncoderLayer:
        # the streams its forward draws: the attention weights' dropout (when p > 0), then
        # dropout1, dropout, dropout2 (a training-mode Dropout draws even with p = 0)
        a = m.self_attn
        if m.training:
            streams += [philox_next() for _ in range(4 if a.dropout > 0 else 3)]
        return "transformer_encoder_layer", [
            float(a.num_heads), float(m.norm_first), float(m.activation == "gelu"),
            float(m.batch_first), float(m.linear1.bias is not None), m.norm1.eps, m.norm2.eps,
            a.dropout, m.dropout.p, m.dropout1.p, m.dropout2.p, float(m.training)]
    # LSTM / GRU: one stream per layer boundary when dropout applies (ops/rnn.py's rule)
    if m.training and m.dropout > 0 and m.num_layers > 1:
        streams += [philox_next() for _ in range(m.num_layers - 1)]
    kind = "lstm" if type(m) is nn.LSTM else "gru"
    return kind, [float(m.num_layers), float(m.bidirectional), float(m.bias), float(m.batch_first),
                  m.dropout, float(m.training)]


class NativeSequential:
    """Runs ``model``'s training step on the native Rust tape (see the module docstring)."""

    def __init__(self, model, loss: str = "cross_entropy", reduction: str = "mean"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        if loss not in _LOSSES:
            raise ValueError(f"loss: expected one of {_LOSSES}, got {loss!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.specs, self.params, self.dynamic = _layer_specs(model)
        for p in self.params:
            if p.backend.name not in ("numpy", "rust"):
                raise ValueError(
                    f"model: expected parameters on the 'rust' or 'numpy' backend (host arrays), "
                    f"got one on {p.backend.name!r} (move the model with .to('rust'))")
        self.model, self.loss, self.reduction = model, loss, reduction

    def _args(self, x, target):
        xs = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
        # the Python engine's first checks (the first layer's), in its order and words
        if xs.dtype not in (np.float32, np.float64):
            raise TypeError(f"input: expected a float32 or float64 tensor, got dtype {xs.dtype}")
        if self.params and self.params[0].dtype != xs.dtype:
            raise TypeError(f"weight: expected dtype {xs.dtype} like input, got {self.params[0].dtype} "
                            f"(convert one with fg.tensor(x.numpy(), dtype=...))")
        if xs.ndim not in (1, 2, 3, 4):
            raise ValueError(f"x: expected a 1-D (features), 2-D (batch, features), 3-D "
                             f"(sequence) or 4-D (N, C, H, W) input, got shape {xs.shape}")
        dtype = self.params[0].dtype if self.params else xs.dtype
        xs = np.require(xs, dtype, requirements="C")
        t = target.numpy() if isinstance(target, Tensor) else np.asarray(target)
        if self.loss == "cross_entropy":
            if t.dtype.kind not in "iu":
                raise TypeError(f"target: expected integer class indices, got dtype {t.dtype}")
            t = np.require(t, np.int64, requirements="C")
        else:
            t = np.require(t, dtype, requirements="C")
        if xs.ndim == 1 and self.loss == "cross_entropy":
            # the Python engine's cross_entropy takes (N, C) logits only
            raise ValueError(f"input: expected logits of shape (N, C), got a 1-D output (an "
                             f"unbatched input of shape {xs.shape})")
        if xs.ndim == 1:
            # one unbatched sample, as nn.Linear takes it (PyTorch too): a batch of one,
            # its target with it (the mean over the same elements gives the same loss)
            xs, t = xs[None], t[None]
        return xs, t

    def _call(self, x, target, lr):
        from .backends import get_backend

        get_backend("rust")  # checks the CPU before loading the extension
        from . import _core

        xs, t = self._args(x, target)
        arrays = [p.data for p in self.params]
        buffers, streams = [], []
        for i, m in self.dynamic:
            self.specs[i] = _call_spec(m, buffers, streams)
        return _core.native_sequential_step(self.specs, arrays, xs, t, self.loss, self.reduction, lr,
                                            buffers, streams)

    def grads(self, x, target):
        """``(loss, [grad per parameter])`` as numpy arrays; parameters unchanged (as
        in a forward of the model, training-mode norms move their running statistics and
        dropout draws from the random stream)."""
        return self._call(x, target, None)

    def step(self, x, target, lr: float) -> float:
        """One SGD step (``p -= lr * grad``, in place, in Rust); returns the loss before it."""
        if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not lr >= 0:
            raise ValueError(f"lr: expected a non-negative number, got {lr!r}")
        return self._call(x, target, float(lr))[0]
