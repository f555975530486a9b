"""ferrograd: deep-learning layers on numpy, Rust and CUDA backends with tape autograd.

    import ferrograd as fg
    x = fg.tensor(np.random.rand(4, 3), backend="rust", requires_grad=True)
    loss = fg.functional.relu(x).sum()
    loss.backward()
    x.grad
"""

from . import autograd, functional, nn, optim, random
from .autograd import enable_grad, gradcheck, no_grad
from .backends import available_backends, get_backend, set_default_backend
from ._determinism import are_deterministic_algorithms_enabled, use_deterministic_algorithms
from .random import get_rng_state, initial_seed, manual_seed, set_rng_state
from .ops.elementwise import (  # torch.abs, torch.clamp ...: the math ops at the top level
    abs, clamp, clip, cos, exp, log, maximum, minimum, rsqrt, sin, sqrt)
from .tensor import Tensor, full, ones, rand, randn, tensor, zeros

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "zeros", "ones", "full", "rand", "randn", "manual_seed",
    "initial_seed", "get_rng_state", "set_rng_state", "random",
    "abs", "sqrt", "rsqrt", "sin", "cos", "exp", "log", "maximum", "minimum", "clamp", "clip",
    "use_deterministic_algorithms", "are_deterministic_algorithms_enabled",
    "no_grad", "enable_grad", "gradcheck", "autograd", "functional", "nn", "optim",
    "get_backend", "available_backends", "set_default_backend",
]
