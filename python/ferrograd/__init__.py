"""ferrograd: deep-learning layers on numpy, Rust and CUDA backends with tape autograd.

    import ferrograd as fg
    x = fg.tensor(np.random.rand(4, 3), backend="rust", requires_grad=True)
    loss = fg.functional.relu(x).sum()
    loss.backward()
    x.grad
"""

import numpy as np

from . import autograd, functional, nn, optim, random
from .autograd import enable_grad, gradcheck, no_grad
from .backends import available_backends, get_backend, set_default_backend
from ._determinism import are_deterministic_algorithms_enabled, use_deterministic_algorithms
from .random import get_rng_state, initial_seed, manual_seed, set_rng_state
from .ops.elementwise import (  # torch.abs, torch.clamp ...: the math ops at the top level
    abs, clamp, clip, cos, exp, log, maximum, minimum, rsqrt, sin, sqrt)
from .creation import (
    arange, empty, empty_like, eye, float32, float64, from_dlpack, from_numpy, full_like, int64,
    linspace, ones_like, rand_like, randint, randn_like, randperm, zeros_like)
from .ops.indexing import cat, chunk, narrow, split, stack, unbind
from .ops.logic import (  # noqa: A004 - torch.any, torch.all
    all, any, eq, ge, gt, isfinite, isinf, isnan, le, logical_and, logical_not, logical_or,
    logical_xor, lt, masked_fill, ne, where)
from .ops.reduce import mean, norm, std, sum, var  # noqa: A004 - torch.sum
from .ops.layout import flatten, movedim, permute, reshape, squeeze, transpose, unflatten, unsqueeze
from .tensor import Tensor, full, ones, rand, randn, tensor, zeros

#: PyTorch's dtype aliases (torch.float, torch.double, torch.long)
float = float32  # noqa: A001
double = float64
long = int64
bool = np.dtype(np.bool_)  # noqa: A001 - torch.bool

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "zeros", "ones", "full", "rand", "randn", "manual_seed",
    "initial_seed", "get_rng_state", "set_rng_state", "random",
    "abs", "sqrt", "rsqrt", "sin", "cos", "exp", "log", "maximum", "minimum", "clamp", "clip",
    "arange", "linspace", "eye", "empty", "zeros_like", "ones_like", "full_like", "empty_like",
    "rand_like", "randn_like", "randint", "randperm", "from_numpy", "from_dlpack",
    "float32", "float64", "int64", "float", "double", "long",
    "cat", "stack", "split", "chunk", "unbind", "narrow", "squeeze", "unsqueeze", "movedim",
    "unflatten", "reshape", "permute", "transpose", "flatten", "sum", "mean", "var", "std",
    "norm", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
    "logical_not", "isnan", "isinf", "isfinite", "any", "all", "where", "masked_fill", "bool",
    "use_deterministic_algorithms", "are_deterministic_algorithms_enabled",
    "no_grad", "enable_grad", "gradcheck", "autograd", "functional", "nn", "optim",
    "get_backend", "available_backends", "set_default_backend",
]
