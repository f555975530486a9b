"""Activations: relu, leaky_relu, prelu, sigmoid, tanh, gelu (exact and tanh), silu, swish.

Each forward/backward pair maps to the backend kernels ``<name>_forward(x, *params)`` and
``<name>_backward(x, gy, *params)``; backward recomputes from the saved input, except
relu, leaky_relu with a non-negative slope, sigmoid and tanh, which save their output
(see ``_pointwise``).
"""

from __future__ import annotations

import numbers

from ..autograd.engine import Function
from ..backends.base import GELU_APPROXIMATIONS
from ._checks import require_float, require_same_dtype


def _pointwise(kernel: str, saves_output=None) -> type:
    """A Function class for the parameter-free-or-scalar activation ``kernel``.

    ``saves_output(*params)`` says when the backward kernel is given the forward's output
    y instead of its input x: always for sigmoid and tanh, whose backward kernels take y;
    for relu and leaky_relu when y > 0 exactly where x > 0 (their backward only tests the
    sign of its first argument). This is what PyTorch does for the three. Two reasons: the
    output is usually kept anyway (the next layer saves it as its input), so the input
    can be freed; and it is the buffer written last, so the backward finds more of it in
    cache. Measured on 4M float32 elements, the kernels alone: relu forward then backward
    from x 1.42-1.48 ms, from y as fast as torch's 1.24-1.27 (the backward alone takes
    the same time either way)."""

    def forward(ctx, x, *params):
        ctx.params = params
        y = getattr(ctx.backend, kernel + "_forward")(x, *params)
        ctx.save_for_backward(y if saves_output is not None and saves_output(*params) else x)
        return y

    def backward(ctx, gy):
        (x,) = ctx.saved_arrays
        return getattr(ctx.backend, kernel + "_backward")(x, gy, *ctx.params)

    name = "".join(p.capitalize() for p in kernel.split("_"))
    return type(name, (Function,), {"forward": staticmethod(forward),
                                    "backward": staticmethod(backward)})


Relu = _pointwise("relu", saves_output=lambda: True)
# a negative slope maps x < 0 to y > 0: then the input is kept
LeakyRelu = _pointwise("leaky_relu", saves_output=lambda negative_slope: negative_slope >= 0)
# their backward kernels take the output (gy y (1 - y), gy (1 - y^2))
Sigmoid = _pointwise("sigmoid", saves_output=lambda: True)
Tanh = _pointwise("tanh", saves_output=lambda: True)
Gelu = _pointwise("gelu")
Swish = _pointwise("swish")


class Prelu(Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return ctx.backend.prelu_forward(x, weight)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_arrays
        gx, gw = ctx.backend.prelu_backward(x, weight, gy)
        return (gx if ctx.needs_input_grad[0] else None,
                gw if ctx.needs_input_grad[1] else None)


def _number(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    return float(value)


def relu(x):
    require_float(x, "input")
    return Relu.apply(x)


def leaky_relu(x, negative_slope: float = 0.01):
    require_float(x, "input")
    return LeakyRelu.apply(x, _number(negative_slope, "negative_slope"))


def prelu(x, weight):
    """x where x > 0 else weight * x; weight has 1 element or x.shape[1] elements."""
    require_float(x, "input")
    require_same_dtype(x, weight, "input", "weight")
    if weight.ndim != 1:
        raise ValueError(f"weight: expected a 1-D tensor of alphas, got shape {weight.shape}")
    n = weight.shape[0]
    if n != 1 and (x.ndim < 2 or x.shape[1] != n):
        got = x.shape[1] if x.ndim >= 2 else "none"
        raise ValueError(f"weight: expected 1 alpha or one per channel (input.shape[1] = {got}), got {n}")
    return Prelu.apply(x, weight)


def sigmoid(x):
    require_float(x, "input")
    return Sigmoid.apply(x)


def tanh(x):
    require_float(x, "input")
    return Tanh.apply(x)


def gelu(x, approximate: str = "none"):
    require_float(x, "input")
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate: expected one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    return Gelu.apply(x, approximate)


def swish(x, beta: float = 1.0):
    """x * sigmoid(beta * x) (Ramachandran et al.); beta = 1 is SiLU."""
    require_float(x, "input")
    return Swish.apply(x, _number(beta, "beta"))


def silu(x):
    return swish(x, 1.0)
