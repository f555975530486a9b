"""matmul (with numpy/PyTorch batch broadcasting) and linear (x @ W.T + b)."""

from __future__ import annotations

import numpy as np

from ..autograd.engine import Function
from ..autograd.rules import add_tangents, full_shape
from ._checks import require_float, require_same_dtype
from .layout import expand


class Matmul(Function):
    """op on 2-D or same-batch 3-D arrays; matmul() below reduces every case to it."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.backend.matmul(a, b)

    @staticmethod
    def backward(ctx, gy):
        a, b = ctx.saved_arrays
        be = ctx.backend
        ga = be.matmul(gy, b, transpose_b=True) if ctx.needs_input_grad[0] else None
        gb = be.matmul(a, gy, transpose_a=True) if ctx.needs_input_grad[1] else None
        return ga, gb

    @staticmethod
    def jvp(ctx, out, va, vb):
        be = ctx.backend
        a, b = ctx.saved_arrays
        t = be.matmul(va, b) if va is not None else None
        return add_tangents(be, t, be.matmul(a, vb) if vb is not None else None)

    @staticmethod
    def backward_graph(ctx, inputs, g):
        from .. import functional as F

        a, b = inputs
        ga = F.matmul(g, F.transpose(b, -1, -2)) if ctx.needs_input_grad[0] else None
        gb = F.matmul(F.transpose(a, -1, -2), g) if ctx.needs_input_grad[1] else None
        return ga, gb


class Linear(Function):
    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return ctx.backend.linear_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_arrays
        gx, gw, gb = ctx.backend.linear_backward(x, weight, gy, ctx.has_bias)
        needs = ctx.needs_input_grad
        grads = (gx if needs[0] else None, gw if needs[1] else None)
        return grads + ((gb if needs[2] else None),) if ctx.has_bias else grads

    @staticmethod
    def jvp(ctx, out, vx, vw, vb=None):
        be = ctx.backend
        x, w = ctx.saved_arrays
        t = be.linear_forward(vx, w, vb) if vx is not None else None
        if vw is not None:
            t = add_tangents(be, t, be.linear_forward(x, vw, vb if vx is None else None))
        elif vx is None:  # only the bias moves
            t = full_shape(be, vb, tuple(out.shape))
        return t

    @staticmethod
    def backward_graph(ctx, inputs, g):
        from .. import functional as F

        x, w = inputs[0], inputs[1]
        needs = ctx.needs_input_grad
        gx = F.matmul(g, w) if needs[0] else None
        gw = F.matmul(F.transpose(g, 0, 1), x) if needs[1] else None
        if ctx.has_bias:
            return gx, gw, (F.sum(g, 0) if needs[2] else None)
        return gx, gw


def matmul(a, b):
    """Matrix product with torch.matmul's rules: 1-D operands are promoted and squeezed,
    batch dimensions broadcast."""
    require_float(a, "input")
    require_float(b, "other")
    require_same_dtype(a, b, "input", "other")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"other: matmul needs at least 1-D operands, got shapes {a.shape} and {b.shape}")
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    if a_vec:
        a = a.reshape(1, a.shape[0])
    if b_vec:
        b = b.reshape(b.shape[0], 1)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"other: inner dimensions differ: input has {a.shape[-1]} columns, other has "
            f"{b.shape[-2]} rows (shapes {a.shape} and {b.shape})")
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if b.ndim == 2:
        # (..., m, k) @ (k, n): fold the batch into the rows, one GEMM
        batch = a.shape[:-2]
        out = Matmul.apply(a.reshape(int(np.prod(batch)) * m, k), b).reshape(batch + (m, n))
    else:
        try:
            batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        except ValueError:
            raise ValueError(
                f"other: batch dimensions {b.shape[:-2]} do not broadcast with {a.shape[:-2]}") from None
        nb = int(np.prod(batch))  # explicit: reshape(-1, ...) is ambiguous for empty tensors
        a3 = expand(a, batch + (m, k)).reshape(nb, m, k)
        b3 = expand(b, batch + (k, n)).reshape(nb, k, n)
        out = Matmul.apply(a3, b3).reshape(batch + (m, n))
    if a_vec:
        out = out.reshape(out.shape[:-2] + (n,))
    if b_vec:
        out = out.reshape(out.shape[:-1])
    return out


def linear(x, weight, bias=None):
    """x @ weight.T + bias for x of shape (..., in_features), as torch.nn.functional.linear."""
    require_float(x, "input")
    require_same_dtype(x, weight, "input", "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight: expected shape (out_features, in_features), got {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"input: expected last dimension in_features = {weight.shape[1]}, got shape {x.shape}")
    if bias is not None:
        require_same_dtype(x, bias, "input", "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {bias.shape}")
    lead = x.shape[:-1]
    x2 = x if x.ndim == 2 else x.reshape(int(np.prod(lead)), x.shape[-1])
    args = (x2, weight) if bias is None else (x2, weight, bias)
    y = Linear.apply(*args)
    return y if x.ndim == 2 else y.reshape(lead + (weight.shape[0],))
