"""Activations: relu, leaky_relu, prelu, sigmoid, tanh, gelu (exact and tanh), silu, swish.

Each forward/backward pair maps to the backend kernels ``<name>_forward(x, *params)`` and
``<name>_backward(x, gy, *params)``; backward recomputes from the saved input, except
sigmoid and tanh, which save their output, and relu and leaky_relu, which save a packed
mask of x > 0 (``<name>_forward_mask`` / ``<name>_backward_mask``, see ``_sign_masked``).
"""

from __future__ import annotations

import numbers

from ..autograd.engine import Function
from ..autograd.rules import add_tangents
from ..backends.base import GELU_APPROXIMATIONS
from ._checks import require_float, require_same_dtype


def _pointwise(kernel: str, saves_output: bool = False, graph_rule=None) -> type:
    """A Function class for the parameter-free-or-scalar activation ``kernel``.

    With ``saves_output`` the backward kernel is given the forward's output y instead of
    its input x (sigmoid and tanh, whose backward kernels take y, as PyTorch's do)."""

    def forward(ctx, x, *params):
        ctx.params = params
        y = getattr(ctx.backend, kernel + "_forward")(x, *params)
        ctx.save_for_backward(y if saves_output else x)
        return y

    def backward(ctx, gy):
        (x,) = ctx.saved_arrays
        return getattr(ctx.backend, kernel + "_backward")(x, gy, *ctx.params)

    return _function_class(kernel, forward, backward, graph_rule)


def _function_class(kernel: str, forward, backward, backward_graph=None) -> type:
    """A Function subclass named after ``kernel`` (relu -> Relu, leaky_relu -> LeakyRelu).

    Its forward-mode rule is its backward applied to the tangent: an activation's Jacobian
    is diagonal, so J v is the backward kernel with v as the output gradient.
    ``backward_graph`` is its differentiable backward (None: create_graph through it
    raises, naming it)."""
    name = "".join(p.capitalize() for p in kernel.split("_"))

    def jvp(ctx, out, v):
        return backward(ctx, v)

    return type(name, (Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
        "backward_graph": None if backward_graph is None else staticmethod(backward_graph)})


def _sign_masked(kernel: str) -> type:
    """A Function class for relu or leaky_relu, whose backward needs only the sign of x.

    When the saved arrays will be read (``ctx.saving``: autograd records the op, or
    ``fg.autograd.jvp`` runs it), the forward kernel ``<kernel>_forward_mask`` writes a
    packed mask of x > 0 next to y, one bit per element, and the backward reads that
    instead of a tensor: 1/32 of the bytes of a float32 tensor to keep and to read back
    (PyTorch keeps the output). Measured on 4M float32 elements, rust kernels on the 2-core
    VM: the backward took 0.42 ms from the mask against 1.0 ms from the output. Without
    autograd the plain forward runs and no mask is made."""

    def forward(ctx, x, *params):
        ctx.params = params
        if not ctx.saving:
            return getattr(ctx.backend, kernel + "_forward")(x, *params)
        y, mask = getattr(ctx.backend, kernel + "_forward_mask")(x, *params)
        ctx.save_for_backward(mask)
        return y

    def backward(ctx, gy):
        (mask,) = ctx.saved_arrays
        return getattr(ctx.backend, kernel + "_backward_mask")(mask, gy, *ctx.params)

    def backward_graph(ctx, inputs, g):
        # the slope (1 or the negative slope) is piecewise constant: a constant factor,
        # as PyTorch takes it
        from ..tensor import Tensor

        (x,) = inputs
        be = x.backend
        ones = be.full(x.shape, 1.0, x.dtype)
        slope = getattr(be, kernel + "_backward")(x.data, ones, *ctx.params)
        return g * Tensor._wrap(slope, be)

    return _function_class(kernel, forward, backward, backward_graph)


# differentiable backwards (create_graph=True), written with the differentiable ops
def _sigmoid_graph(ctx, inputs, g):
    s = sigmoid(inputs[0])
    return g * s * (1.0 - s)


def _tanh_graph(ctx, inputs, g):
    t = tanh(inputs[0])
    return g * (1.0 - t * t)


def _swish_graph(ctx, inputs, g):
    (x,) = inputs
    (beta,) = ctx.params
    s = sigmoid(x * beta)
    return g * (s + x * s * (1.0 - s) * beta)


Relu = _sign_masked("relu")
LeakyRelu = _sign_masked("leaky_relu")
# their backward kernels take the output (gy y (1 - y), gy (1 - y^2))
Sigmoid = _pointwise("sigmoid", saves_output=True, graph_rule=_sigmoid_graph)
Tanh = _pointwise("tanh", saves_output=True, graph_rule=_tanh_graph)
Gelu = _pointwise("gelu")  # no differentiable backward yet: create_graph through it raises
Swish = _pointwise("swish", graph_rule=_swish_graph)


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
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate: expected one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    return Gelu.apply(x, approximate)


def swish(x, beta: float = 1.0):
    """x * sigmoid(beta * x) (Ramachandran et al.); beta = 1 is SiLU."""
    require_float(x, "input")
    return Swish.apply(x, _number(beta, "beta"))


def silu(x):
    return swish(x, 1.0)
