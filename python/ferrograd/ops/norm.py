"""Normalization: layer_norm, group_norm, instance_norm and batch_norm (PyTorch's
functional signatures), as autograd Functions over the backends' fused kernels.

Each Function's forward calls ``<family>_forward`` once, which returns the output and the
statistics it used (mean and rstd = 1 / sqrt(var + eps)); backward hands those to
``<family>_backward``, which returns (gx, gweight, gbias) in one fused pass set.
Running statistics are not differentiable: they are passed to the kernels as arrays and
updated in place (batch_norm) or replaced (instance_norm).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd.engine import Function, no_grad
from ..autograd.rules import norm_tangent
from ._checks import require_float, require_same_dtype


def _affine_grads(ctx, gx, gw, gb):
    """One gradient per Tensor argument of forward: x, then weight and bias if given."""
    grads = [gx]
    if ctx.has_weight:
        grads.append(gw)
    if ctx.has_bias:
        grads.append(gb)
    return tuple(grads)


class LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, normalized_ndim, eps):
        y, mean, rstd = ctx.backend.layer_norm_forward(x, weight, bias, normalized_ndim, eps)
        ctx.normalized_ndim = normalized_ndim
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, rstd = ctx.saved_arrays
        gx, gw, gb = ctx.backend.layer_norm_backward(x, weight, mean, rstd, gy, ctx.normalized_ndim)
        return _affine_grads(ctx, gx, gw, gb)

    @staticmethod
    def jvp(ctx, out, *tangents):
        be = ctx.backend
        x, _, mean, rstd = ctx.saved_arrays
        xh = be.to_numpy(x)
        lead = xh.shape[:xh.ndim - ctx.normalized_ndim]
        rows = int(np.prod(lead, dtype=np.int64))
        x2 = xh.reshape(rows, -1)
        m = be.to_numpy(mean).astype(np.float64).reshape(rows, 1)
        r = be.to_numpy(rstd).astype(np.float64).reshape(rows, 1)
        return norm_tangent(ctx, tangents, x2, m, r, (1,), lambda a: a, (1, x2.shape[1]))


class GroupNorm(Function):
    """Outputs (y, mean, rstd); mean and rstd are for instance_norm's running statistics
    and carry no gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps):
        y, mean, rstd = ctx.backend.group_norm_forward(x, weight, bias, num_groups, eps)
        ctx.num_groups = num_groups
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        ctx.save_for_backward(x, weight, mean, rstd)
        return y, mean, rstd

    @staticmethod
    def backward(ctx, gy, _gmean=None, _grstd=None):
        x, weight, mean, rstd = ctx.saved_arrays
        if gy is None:  # only the statistics were used: they carry no gradient
            gy = ctx.backend.full(x.shape, 0.0, x.dtype)
        gx, gw, gb = ctx.backend.group_norm_backward(x, weight, mean, rstd, gy, ctx.num_groups)
        return _affine_grads(ctx, gx, gw, gb)

    @staticmethod
    def jvp(ctx, out, *tangents):
        be = ctx.backend
        x, _, mean, rstd = ctx.saved_arrays
        xh = be.to_numpy(x)
        n, c = xh.shape[:2]
        g = ctx.num_groups
        xg = xh.reshape(n, g, -1)
        m = be.to_numpy(mean).astype(np.float64).reshape(n, g, 1)
        r = be.to_numpy(rstd).astype(np.float64).reshape(n, g, 1)
        ty = norm_tangent(ctx, tangents, xg, m, r, (2,), lambda a: a.reshape(n, c, -1), (1, c, 1))
        return ty, None, None


class BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        y, mean, rstd = ctx.backend.batch_norm_forward(x, weight, bias, running_mean, running_var,
                                                       training, momentum, eps)
        ctx.training = training
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, rstd = ctx.saved_arrays
        gx, gw, gb = ctx.backend.batch_norm_backward(x, weight, mean, rstd, gy, ctx.training)
        return _affine_grads(ctx, gx, gw, gb)

    @staticmethod
    def jvp(ctx, out, *tangents):
        be = ctx.backend
        x, _, mean, rstd = ctx.saved_arrays
        xh = be.to_numpy(x)
        n, c = xh.shape[:2]
        x3 = xh.reshape(n, c, -1)
        m = be.to_numpy(mean).astype(np.float64).reshape(1, c, 1)
        r = be.to_numpy(rstd).astype(np.float64).reshape(1, c, 1)
        return norm_tangent(ctx, tangents, x3, m, r, (0, 2) if ctx.training else None,
                             lambda a: a, (1, c, 1))


# ---------------------------------------------------------------- argument checks
def _check_eps(eps) -> float:
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps: expected a non-negative number, got {eps!r}")
    return float(eps)


def _check_momentum(momentum) -> float:
    if not isinstance(momentum, numbers.Real) or isinstance(momentum, bool) or not 0 <= momentum <= 1:
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    return float(momentum)


def _check_param(p, shape, name, x):
    if p is None:
        return
    from ..tensor import Tensor
    if not isinstance(p, Tensor):
        raise TypeError(f"{name}: expected a Tensor or None, got {type(p).__name__}")
    require_same_dtype(x, p, "input", name)
    if p.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {p.shape}")
    if p.backend is not x.backend:
        raise ValueError(f"{name}: expected a tensor on backend {x.backend.name!r} like input, got "
                         f"one on {p.backend.name!r} (move it with .to({x.backend.name!r}))")


def _affine_args(x, weight, bias):
    """(weight, bias) for the kernels: a ones weight when only a bias is given (the
    kernels compute parameter gradients when weight is present)."""
    if weight is None and bias is not None:
        from ..tensor import Tensor
        weight = Tensor._wrap(x.backend.full(bias.shape, 1.0, x.dtype), x.backend)
    return weight, bias


def _args(*tensors):
    return tuple(t for t in tensors if t is not None)


# ------------------------------------------------------------------ functional
def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """torch.nn.functional.layer_norm: normalize over the trailing ``normalized_shape``
    axes with the biased variance, then scale by weight and shift by bias (both of shape
    normalized_shape, optional)."""
    require_float(input, "input")
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if k == 0 or any(not isinstance(d, numbers.Integral) or d <= 0 for d in normalized_shape):
        raise ValueError(f"normalized_shape: expected a non-empty shape of positive sizes, got "
                         f"{normalized_shape}")
    if input.ndim < k or input.shape[input.ndim - k:] != normalized_shape:
        raise ValueError(f"input: expected trailing dimensions {normalized_shape} (normalized_shape), "
                         f"got input of shape {input.shape}")
    eps = _check_eps(eps)
    _check_param(weight, normalized_shape, "weight", input)
    _check_param(bias, normalized_shape, "bias", input)
    weight, bias = _affine_args(input, weight, bias)
    return LayerNorm.apply(input, weight, bias, k, eps)


def _check_nc(input, name="input"):
    require_float(input, name)
    if input.ndim < 2:
        raise ValueError(f"{name}: expected shape (N, C, *), got {input.shape}")


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """torch.nn.functional.group_norm: input (N, C, *); statistics per sample over each of
    num_groups groups of C / num_groups consecutive channels; per-channel weight and bias."""
    _check_nc(input)
    if not isinstance(num_groups, numbers.Integral) or isinstance(num_groups, bool) or num_groups <= 0:
        raise ValueError(f"num_groups: expected a positive integer, got {num_groups!r}")
    c = input.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups: expected a divisor of the number of channels "
                         f"(input.shape[1] = {c}), got {num_groups}")
    eps = _check_eps(eps)
    _check_param(weight, (c,), "weight", input)
    _check_param(bias, (c,), "bias", input)
    weight, bias = _affine_args(input, weight, bias)
    y, _, _ = GroupNorm.apply(input, weight, bias, int(num_groups), eps)
    return y


def _running(t, name, x):
    if t is None:
        return None
    _check_param(t, (x.shape[1],), name, x)
    return t


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5):
    """torch.nn.functional.batch_norm: input (N, C, *), statistics per channel over the
    batch and spatial axes. training=True normalizes with the batch statistics (biased
    variance) and updates running_mean / running_var in place when given (with the
    unbiased variance); training=False normalizes with the running statistics."""
    _check_nc(input)
    eps = _check_eps(eps)
    momentum = _check_momentum(momentum)
    running_mean = _running(running_mean, "running_mean", input)
    running_var = _running(running_var, "running_var", input)
    c = input.shape[1]
    _check_param(weight, (c,), "weight", input)
    _check_param(bias, (c,), "bias", input)
    weight, bias = _affine_args(input, weight, bias)
    rm = None if running_mean is None else running_mean.data
    rv = None if running_var is None else running_var.data
    return BatchNorm.apply(input, weight, bias, rm, rv, bool(training), momentum, eps)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5):
    """torch.nn.functional.instance_norm: input (N, C, *), statistics per (sample,
    channel) over the spatial axes (group_norm with one channel per group).

    With use_input_stats=True the running statistics, when given, move towards the batch
    average of the per-instance mean and unbiased variance (as PyTorch); with
    use_input_stats=False the running statistics normalize (batch_norm in eval mode)."""
    _check_nc(input)
    eps = _check_eps(eps)
    momentum = _check_momentum(momentum)
    running_mean = _running(running_mean, "running_mean", input)
    running_var = _running(running_var, "running_var", input)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_var: expected running_mean and running_var both given or both None")
    n, c = input.shape[:2]
    spatial = int(np.prod(input.shape[2:], dtype=np.int64))
    if not use_input_stats:
        if running_mean is None:
            raise ValueError("running_mean: expected running statistics when use_input_stats=False")
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    if spatial <= 1:
        raise ValueError(f"input: expected more than 1 spatial element when training, got input "
                         f"of shape {input.shape}")
    _check_param(weight, (c,), "weight", input)
    _check_param(bias, (c,), "bias", input)
    weight, bias = _affine_args(input, weight, bias)
    y, mean, rstd = GroupNorm.apply(input, weight, bias, c, eps)
    if running_mean is not None:
        be = input.backend
        with no_grad():
            m = be.to_numpy(mean.data).astype(np.float64).reshape(n, c)
            r = be.to_numpy(rstd.data).astype(np.float64).reshape(n, c)
            var = np.maximum(1.0 / (r * r) - eps, 0.0) * (spatial / (spatial - 1))
            for t, batch_value in ((running_mean, m.mean(axis=0)), (running_var, var.mean(axis=0))):
                new = (1 - momentum) * be.to_numpy(t.data).astype(np.float64) + momentum * batch_value
                t.data = be.from_numpy(np.ascontiguousarray(new.astype(t.dtype)))
    return y
