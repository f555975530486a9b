"""Activation modules (thin wrappers over ferrograd.functional)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backends import get_backend
from ..backends._validate import check_gelu_approximate
from ..tensor import Tensor
from .module import Module, Parameter


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class PReLU(Module):
    """Learnable leaky slope: one alpha (num_parameters=1) or one per channel (axis 1)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, backend=None, dtype=np.float32):
        super().__init__()
        if not isinstance(num_parameters, int) or num_parameters <= 0:
            raise ValueError(f"num_parameters: expected a positive integer, got {num_parameters!r}")
        self.num_parameters = num_parameters
        be = get_backend(backend)
        self.weight = Parameter(Tensor(be.full((num_parameters,), init, np.dtype(dtype)), be))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        check_gelu_approximate(approximate)  # at construction, where the mistake is made
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    def forward(self, x):
        return F.silu(x)


class Swish(Module):
    """x * sigmoid(beta * x) with a fixed beta (beta = 1 is SiLU)."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return F.swish(x, self.beta)

    def extra_repr(self):
        return f"beta={self.beta}"


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.log_softmax(x, self.dim)
