"""Activations: relu, leaky_relu, prelu, sigmoid, tanh, gelu (exact and tanh), silu, swish.

Each Function calls its kernels by name (``ctx.backend.gelu_forward`` ...: "go to
definition" leads to the contract in ``backends/base.py`` and the kernels in
``backends/<numpy|rust|cuda>/activation.py``). Backward recomputes from the saved input,
except sigmoid and tanh, which save their output, and relu and leaky_relu, which save a
packed mask of x > 0 (``relu_forward_mask`` / ``relu_backward_mask``).

An activation's Jacobian is diagonal, so its forward-mode rule is its backward applied to
the tangent: ``jvp(ctx, out, v) = backward(ctx, v)``.
"""

from __future__ import annotations

import numbers

from ..autograd.engine import Function
from ..autograd.rules import add_tangents
from ..backends._validate import check_gelu_approximate
from ._checks import require_float, require_same_dtype


def _slope_graph(ctx, x, g, slope_kernel, *params):
    """The differentiable backward of relu and leaky_relu: the slope (1 or the negative
    slope) is piecewise constant, a constant factor, as PyTorch takes it."""
    from ..tensor import Tensor

    be = x.backend
    ones = be.full(x.shape, 1.0, x.dtype)
    return g * Tensor._wrap(slope_kernel(x.data, ones, *params), be)


# relu and leaky_relu: when the saved arrays will be read (``ctx.saving``: autograd records
# the op, or ``fg.autograd.jvp`` runs it), the ``*_forward_mask`` kernel writes a packed
# mask of x > 0 next to y, one bit per element, and backward reads that instead of a
# tensor: 1/32 of the bytes of a float32 tensor to keep and to read back (PyTorch keeps
# the output). Without autograd the plain forward runs and no mask is made.
class Relu(Function):
    @staticmethod
    def forward(ctx, x):
        if not ctx.saving:
            return ctx.backend.relu_forward(x)
        y, mask = ctx.backend.relu_forward_mask(x)
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, gy):
        (mask,) = ctx.saved_arrays
        return ctx.backend.relu_backward_mask(mask, gy)

    @staticmethod
    def jvp(ctx, out, v):
        return Relu.backward(ctx, v)

    @staticmethod
    def backward_graph(ctx, inputs, g):
        return _slope_graph(ctx, inputs[0], g, inputs[0].backend.relu_backward)


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, x, negative_slope):
        ctx.negative_slope = negative_slope
        if not ctx.saving:
            return ctx.backend.leaky_relu_forward(x, negative_slope)
        y, mask = ctx.backend.leaky_relu_forward_mask(x, negative_slope)
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, gy):
        (mask,) = ctx.saved_arrays
        return ctx.backend.leaky_relu_backward_mask(mask, gy, ctx.negative_slope)

    @staticmethod
    def jvp(ctx, out, v):
        return LeakyRelu.backward(ctx, v)

    @staticmethod
    def backward_graph(ctx, inputs, g):
        return _slope_graph(ctx, inputs[0], g, inputs[0].backend.leaky_relu_backward,
                            ctx.negative_slope)


# sigmoid and tanh: their backward kernels take the output (gy y (1 - y), gy (1 - y^2)),
# as PyTorch's do
class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.sigmoid_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_arrays
        return ctx.backend.sigmoid_backward(y, gy)

    @staticmethod
    def jvp(ctx, out, v):
        return Sigmoid.backward(ctx, v)

    @staticmethod
    def backward_graph(ctx, inputs, g):
        s = sigmoid(inputs[0])
        return g * s * (1.0 - s)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.tanh_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_arrays
        return ctx.backend.tanh_backward(y, gy)

    @staticmethod
    def jvp(ctx, out, v):
        return Tanh.backward(ctx, v)

    @staticmethod
    def backward_graph(ctx, inputs, g):
        t = tanh(inputs[0])
        return g * (1.0 - t * t)


class Gelu(Function):
    # no differentiable backward yet (backward_graph stays None): create_graph through it
    # raises, naming it
    @staticmethod
    def forward(ctx, x, approximate):
        ctx.approximate = approximate
        ctx.save_for_backward(x)
        return ctx.backend.gelu_forward(x, approximate)

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_arrays
        return ctx.backend.gelu_backward(x, gy, ctx.approximate)

    @staticmethod
    def jvp(ctx, out, v):
        return Gelu.backward(ctx, v)


class Swish(Function):
    @staticmethod
    def forward(ctx, x, beta):
        ctx.beta = beta
        ctx.save_for_backward(x)
        return ctx.backend.swish_forward(x, beta)

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_arrays
        return ctx.backend.swish_backward(x, gy, ctx.beta)

    @staticmethod
    def jvp(ctx, out, v):
        return Swish.backward(ctx, v)

    @staticmethod
    def backward_graph(ctx, inputs, g):
        (x,) = inputs
        s = sigmoid(x * ctx.beta)
        return g * (s + x * s * (1.0 - s) * ctx.beta)


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

    @staticmethod
    def jvp(ctx, out, vx, vw):
        be = ctx.backend
        x, w = ctx.saved_arrays
        t = None
        if vx is not None:
            t = be.prelu_backward(x, w, vx)[0]  # diagonal in x: slope 1 or alpha per element
        if vw is not None:
            neg = be.binary_forward("sub", x, be.relu_forward(x))  # min(x, 0)
            nd = len(x.shape)
            if w.shape[0] == 1 or nd < 2:
                shape = (1,) * nd
            else:
                shape = (1, w.shape[0]) + (1,) * (nd - 2)
            t = add_tangents(be, t, be.binary_forward("mul", neg, be.reshape(vw, shape)))
        return t


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
    check_gelu_approximate(approximate)
    return Gelu.apply(x, approximate)


def swish(x, beta: float = 1.0):
    """x * sigmoid(beta * x) (Ramachandran et al.); beta = 1 is SiLU."""
    require_float(x, "input")
    return Swish.apply(x, _number(beta, "beta"))


def silu(x):
    return swish(x, 1.0)
