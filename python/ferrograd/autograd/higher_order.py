"""Differentiable backward rules for ``backward(create_graph=True)`` (higher-order gradients).

With ``create_graph=True`` the engine calls, for each recorded node, its Function's
``backward_graph(ctx, inputs, *grad_outputs)``: the same gradient as ``backward`` but
written with ferrograd's differentiable ops on Tensors, so that the gradients themselves
are recorded (reverse over reverse) and carry tangents inside ``fg.autograd.jvp``
(forward over reverse). ``inputs`` holds the forward's Tensor arguments: the graph tensor
where it requires grad, else a constant wrapping the saved array.

Rules exist for the elementwise ops (add, sub, mul, div, pow, neg, exp, log), the cheap
activations (relu, leaky_relu, sigmoid, tanh, silu/swish), sum/mean, the layout ops
(reshape, permute/transpose, expand) and matmul/linear, so that a Hessian-vector product
of an MLP-like function can be formed. Other ops raise NotImplementedError naming
themselves. Piecewise-constant factors (relu's mask, pow's zero-base guards) are taken as
constants, as PyTorch does. Following PyTorch, pow's d/db at a == 0 and d/da at b == 0
are 0.
"""

from __future__ import annotations

import numpy as np

_installed = False


def _const(like, array):
    from ..tensor import Tensor

    return Tensor._wrap(like.backend.from_numpy(np.require(array, like.dtype, requirements="C")), like.backend)


def sum_to(g, shape):
    """g summed over the axes that broadcasting added or stretched, reshaped to ``shape``."""
    from .. import functional as F

    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    s = F.sum(g, axes, keepdim=True) if axes else g
    return s.reshape(*shape) if shape else s.reshape(())


def _binary(ctx, inputs, g):
    from .. import functional as F

    a, b = inputs
    op = ctx.op
    need_a, need_b = ctx.needs_input_grad
    if op == "add":
        ga, gb = g, g
    elif op == "sub":
        ga, gb = g, -g
    elif op == "mul":
        ga, gb = g * b, g * a
    elif op == "div":
        ga = g / b
        gb = -(g * a) / (b * b)
    else:  # pow
        ah, bh = a.numpy(), b.numpy()
        ga = gb = None
        if need_a:
            ga = g * b * (a ** (b - 1.0)) * _const(b, np.broadcast_to(bh != 0, bh.shape))
        if need_b:
            safe = _const(a, np.where(ah == 0, 1.0, ah))
            ga_mask = _const(a, ah != 0)
            gb = g * (a ** b) * F.log(safe) * ga_mask
    return (sum_to(ga, a.shape) if need_a else None, sum_to(gb, b.shape) if need_b else None)


def _unary(ctx, inputs, g):
    from .. import functional as F

    (x,) = inputs
    if ctx.op == "neg":
        return -g
    if ctx.op == "exp":
        return g * F.exp(x)
    return g / x


def _mask_rule(kernel):
    def rule(ctx, inputs, g):
        (x,) = inputs
        be = x.backend
        ones = be.full(x.shape, 1.0, x.dtype)
        from ..tensor import Tensor
        slope = Tensor._wrap(getattr(be, kernel + "_backward")(x.data, ones, *ctx.params), be)
        return g * slope
    return rule


def _sigmoid(ctx, inputs, g):
    from .. import functional as F

    s = F.sigmoid(inputs[0])
    return g * s * (1.0 - s)


def _tanh(ctx, inputs, g):
    from .. import functional as F

    t = F.tanh(inputs[0])
    return g * (1.0 - t * t)


def _swish(ctx, inputs, g):
    from .. import functional as F

    (x,) = inputs
    (beta,) = ctx.params
    s = F.sigmoid(x * beta)
    return g * (s + x * s * (1.0 - s) * beta)


def _sum(ctx, inputs, g):
    from .. import functional as F

    return F.expand(g.reshape(*ctx.kept_shape) if ctx.kept_shape else g.reshape(()), ctx.in_shape)


def _reshape(ctx, inputs, g):
    return g.reshape(*ctx.in_shape) if ctx.in_shape else g.reshape(())


def _permute(ctx, inputs, g):
    from .. import functional as F

    return F.permute(g, ctx.inverse)


def _expand(ctx, inputs, g):
    return sum_to(g, ctx.in_shape)


def _matmul(ctx, inputs, g):
    from .. import functional as F

    a, b = inputs
    ga = F.matmul(g, F.transpose(b, -1, -2)) if ctx.needs_input_grad[0] else None
    gb = F.matmul(F.transpose(a, -1, -2), g) if ctx.needs_input_grad[1] else None
    return ga, gb


def _linear(ctx, inputs, g):
    from .. import functional as F

    x, w = inputs[0], inputs[1]
    needs = ctx.needs_input_grad
    gx = F.matmul(g, w) if needs[0] else None
    gw = F.matmul(F.transpose(g, 0, 1), x) if needs[1] else None
    if ctx.has_bias:
        return gx, gw, (F.sum(g, 0) if needs[2] else None)
    return gx, gw


def install() -> None:
    global _installed
    if _installed:
        return
    from ..ops import activation, elementwise, layout, linear, reduce

    rules = {
        elementwise.Binary: _binary, elementwise.Unary: _unary,
        activation.Relu: _mask_rule("relu"), activation.LeakyRelu: _mask_rule("leaky_relu"),
        activation.Sigmoid: _sigmoid, activation.Tanh: _tanh, activation.Swish: _swish,
        reduce.Sum: _sum,
        layout.Reshape: _reshape, layout.Permute: _permute, layout.Expand: _expand,
        linear.Matmul: _matmul, linear.Linear: _linear,
    }
    for cls, rule in rules.items():
        if "backward_graph" not in cls.__dict__:
            cls.backward_graph = staticmethod(rule)
    _installed = True
