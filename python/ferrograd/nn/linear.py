"""Linear (fully connected) layer."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..backends import get_backend
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x W^T + b, with PyTorch's weight shape (out_features, in_features) and init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 backend=None, dtype=np.float32):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.in_features = in_features
        self.out_features = out_features
        be = get_backend(backend)
        w_bound = init.kaiming_uniform_bound(in_features)
        self.weight = Parameter(Tensor(be.from_numpy(init.uniform((out_features, in_features), w_bound, dtype)), be))
        if bias:
            b_bound = 1.0 / math.sqrt(in_features)
            self.bias = Parameter(Tensor(be.from_numpy(init.uniform((out_features,), b_bound, dtype)), be))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
