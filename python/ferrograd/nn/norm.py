"""Normalization layers with PyTorch's names, defaults, parameters and buffers:
BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, InstanceNorm2d."""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from ..backends import get_backend
from ..tensor import Tensor
from .module import Module, Parameter


def _positive_int(v, name):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def _eps(eps):
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps: expected a non-negative number, got {eps!r}")
    return float(eps)


def _momentum(momentum, allow_none=True):
    if momentum is None and allow_none:
        return None
    if not isinstance(momentum, numbers.Real) or isinstance(momentum, bool) or not 0 <= momentum <= 1:
        raise ValueError(f"momentum: expected a number in [0, 1] or None, got {momentum!r}")
    return float(momentum)


def _full(shape, value, be, dtype):
    return Tensor(be.full(tuple(shape), value, np.dtype(dtype)), be)


class _NormBase(Module):
    """Shared by BatchNorm and InstanceNorm: affine parameters (weight = 1, bias = 0) and,
    with track_running_stats, the buffers running_mean (0), running_var (1) and
    num_batches_tracked (int64 0)."""

    def __init__(self, num_features, eps, momentum, affine, track_running_stats, backend, dtype):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        self.eps = _eps(eps)
        self.momentum = _momentum(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        be = get_backend(backend)
        c = self.num_features
        if self.affine:
            self.weight = Parameter(_full((c,), 1.0, be, dtype))
            self.bias = Parameter(_full((c,), 0.0, be, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", _full((c,), 0.0, be, dtype))
            self.register_buffer("running_var", _full((c,), 1.0, be, dtype))
            self.register_buffer("num_batches_tracked",
                                 Tensor(be.from_numpy(np.array(0, dtype=np.int64)), be))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            be, dt = self.running_mean.backend, self.running_mean.dtype
            c = self.num_features
            self.running_mean = _full((c,), 0.0, be, dt)
            self.running_var = _full((c,), 1.0, be, dt)
            self.num_batches_tracked = Tensor(be.from_numpy(np.array(0, dtype=np.int64)), be)

    def _count_batch(self) -> float:
        """Add one to num_batches_tracked; the averaging factor PyTorch uses for this step
        (momentum, or 1 / num_batches_tracked for a cumulative average when momentum is None)."""
        t = self.num_batches_tracked
        count = int(t.numpy().reshape(())) + 1
        t.data = t.backend.from_numpy(np.array(count, dtype=np.int64))
        return 1.0 / count if self.momentum is None else self.momentum

    def _check_input_dim(self, x) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, backend=None, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, backend, dtype)

    def forward(self, x):
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"input: expected {self.num_features} channels (num_features) at "
                             f"axis 1, got input of shape {x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            factor = self._count_batch()
        # batch statistics in training, and in eval when there are no running statistics
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch, factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs (torch.nn.BatchNorm1d)."""

    def _check_input_dim(self, x):
        if x.ndim not in (2, 3):
            raise ValueError(f"input: expected 2D or 3D input (N, C) or (N, C, L), got {x.ndim}D "
                             f"input of shape {x.shape}")


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs (torch.nn.BatchNorm2d)."""

    def _check_input_dim(self, x):
        if x.ndim != 4:
            raise ValueError(f"input: expected 4D input (N, C, H, W), got {x.ndim}D input of "
                             f"shape {x.shape}")


class InstanceNorm2d(_NormBase):
    """Instance normalization of (N, C, H, W) or (C, H, W) inputs (torch.nn.InstanceNorm2d):
    affine=False and track_running_stats=False by default, as in PyTorch."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = False,
                 track_running_stats: bool = False, backend=None, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, backend, dtype)

    def _check_input_dim(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"input: expected 3D (C, H, W) or 4D (N, C, H, W) input, got "
                             f"{x.ndim}D input of shape {x.shape}")

    def forward(self, x):
        self._check_input_dim(x)
        if x.ndim == 3:
            return self.forward(x.reshape((1,) + x.shape)).reshape(x.shape)
        if x.shape[1] != self.num_features:
            raise ValueError(f"input: expected {self.num_features} channels (num_features) at "
                             f"axis 1, got input of shape {x.shape}")
        # as PyTorch: InstanceNorm does not count batches (momentum=None averages nothing)
        factor = 0.0 if self.momentum is None else self.momentum
        use_input_stats = self.training or not self.track_running_stats
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               use_input_stats, factor, self.eps)


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` (torch.nn.LayerNorm):
    elementwise_affine gives weight (1) and, with bias=True, bias (0) of that shape."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, backend=None, dtype=np.float32):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)):
            raise TypeError(f"normalized_shape: expected an int or a sequence of ints, got "
                            f"{type(normalized_shape).__name__} {normalized_shape!r}")
        shape = tuple(normalized_shape)
        if not shape:
            raise ValueError("normalized_shape: expected at least one dimension, got ()")
        self.normalized_shape = tuple(_positive_int(d, "normalized_shape") for d in shape)
        self.eps = _eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        be = get_backend(backend)
        if self.elementwise_affine:
            self.weight = Parameter(_full(self.normalized_shape, 1.0, be, dtype))
            if bias:
                self.bias = Parameter(_full(self.normalized_shape, 0.0, be, dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Group normalization (torch.nn.GroupNorm): num_channels split into num_groups groups
    of consecutive channels; per-channel weight (1) and bias (0) when affine."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 backend=None, dtype=np.float32):
        super().__init__()
        self.num_groups = _positive_int(num_groups, "num_groups")
        self.num_channels = _positive_int(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_groups: expected a divisor of num_channels "
                             f"({self.num_channels}), got {self.num_groups}")
        self.eps = _eps(eps)
        self.affine = bool(affine)
        be = get_backend(backend)
        if self.affine:
            self.weight = Parameter(_full((self.num_channels,), 1.0, be, dtype))
            self.bias = Parameter(_full((self.num_channels,), 0.0, be, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"input: expected shape (N, {self.num_channels}, *), got {x.shape}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
