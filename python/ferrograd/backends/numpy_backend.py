"""The numpy backend: every kernel of the contract written to be read.

This is the reference the other backends are tested against, so clarity wins over speed
here; numerically delicate spots (sigmoid, softmax, cross-entropy) still use the stable
formulations, since the reference must be right for large |x| too.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from . import base
from ._validate import (
    check_binary_op,
    check_fits_memory,
    check_float,
    check_gelu_approximate,
    check_linear,
    check_matmul,
    check_prelu_weight,
    check_reduction,
    check_same_shape,
    check_sign_mask,
    check_targets,
    check_unary_op,
)
from ._validate import check_batch_norm, check_batch_norm_backward, check_eps, check_group_norm, check_layer_norm
from . import _attention, _conv, _dropout, _pool, _rnn
from ._exact import exact_nonfinite

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

try:  # scipy is a dependency; the fallback keeps the reference importable without it
    from scipy.special import erf as _erf  # type: ignore
except Exception:  # pragma: no cover - depends on the environment
    _erf = np.vectorize(math.erf, otypes=[np.float64])


def _erf_like(x: np.ndarray) -> np.ndarray:
    return np.asarray(_erf(x), dtype=np.float64).astype(x.dtype, copy=False)


def _tanh_gelu_parts(x: np.ndarray):
    """For the tanh GELU, with u = sqrt(2/pi) (x + 0.044715 x^3): 0.5 (1 + tanh u) equals
    sigmoid(2u) and (1 - tanh(u)^2) / 4 equals sigmoid(2u) sigmoid(-2u). Computed from
    e = exp(-2|u|) <= 1 they avoid the cancellation of 1 + tanh(u) and 1 - tanh(u)^2 in
    float32 tails. Returns (sigmoid(2u), sigmoid(2u) * sigmoid(-2u))."""
    with np.errstate(over="ignore", invalid="ignore"):
        u = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        e = np.exp(-2 * np.abs(u))
    r = 1 / (1 + e)
    return np.where(u < 0, e * r, r), e * r * r


def sum_to_shape(g: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum the leading axes broadcasting added and the size-1 axes it stretched."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


class NumpyBackend(base.Backend):
    name = "numpy"

    # ------------------------------------------------------------------ arrays
    def from_numpy(self, a):
        return np.asarray(a)

    def to_numpy(self, x):
        return np.asarray(x)

    def full(self, shape, value, dtype):
        return np.full(tuple(shape), value, dtype=dtype)

    def copy(self, x):
        return np.array(x, order="C", copy=True)

    def reshape(self, x, shape):
        return np.reshape(x, tuple(shape))

    def permute(self, x, axes: Sequence[int]):
        return np.transpose(x, tuple(axes))

    def expand(self, x, shape):
        return np.broadcast_to(x, tuple(shape))

    def sum_to_shape(self, g, shape):
        return sum_to_shape(g, shape)

    # ------------------------------------------------- elementwise arithmetic
    def binary_forward(self, op, a, b):
        check_binary_op(op)
        check_float(a, "a")
        check_float(b, "b")
        shape = np.broadcast_shapes(a.shape, b.shape)
        check_fits_memory(math.prod(shape), np.result_type(a, b).itemsize, f"{op} of shape {shape}")
        with np.errstate(all="ignore"):
            if op == "add":
                return a + b
            if op == "sub":
                return a - b
            if op == "mul":
                return a * b
            if op == "div":
                return a / b
            return np.power(a, b)

    def binary_backward(self, op, a, b, gy):
        check_binary_op(op)
        with np.errstate(all="ignore"):
            if op == "add":
                ga, gb = gy, gy
            elif op == "sub":
                ga, gb = gy, -gy
            elif op == "mul":
                ga, gb = gy * b, gy * a
            elif op == "div":
                ga = gy / b
                gb = -gy * a / (b * b)
            else:  # pow: d/da = b a^(b-1), 0 where b == 0; d/db = a^b log a, 0 where
                # a == 0 and b >= 0 (PyTorch's masks: 0^0 and 0^b have gradient 0; 0^-1
                # gives inf * log 0 = -inf; a negative a gives NaN, as log a is)
                ga = gy * b * np.power(a, b - 1)
                ga = np.where(b == 0, np.zeros_like(ga), ga)
                gb = gy * np.power(a, b) * np.log(a)
                gb = np.where((a == 0) & (b >= 0), np.zeros_like(gb), gb)
        return (np.require(sum_to_shape(ga, a.shape), requirements="C"),
                np.require(sum_to_shape(gb, b.shape), requirements="C"))

    def unary_forward(self, op, x):
        check_unary_op(op)
        check_float(x, "x")
        check_fits_memory(x.size, x.itemsize, f"{op} of shape {x.shape}")
        with np.errstate(all="ignore"):
            if op == "neg":
                return -x
            if op == "exp":
                return np.exp(x)
            return np.log(x)

    def unary_backward(self, op, x, gy):
        check_unary_op(op)
        with np.errstate(all="ignore"):
            if op == "neg":
                return -gy
            if op == "exp":
                return gy * np.exp(x)
            return gy / x

    # -------------------------------------------------------------- activations
    def relu_forward(self, x):
        check_float(x, "x")
        # NaN and -0.0 come out as they go in, as PyTorch's relu gives them: maximum returns
        # its second operand for those (maximum(x, 0) gives +0.0 for -0.0, and np.where is
        # 10x slower)
        return np.maximum(x.dtype.type(0), x).astype(x.dtype, copy=False)

    def relu_backward(self, x, gy):
        check_same_shape(x, gy, "x", "gy")
        return np.where(x > 0, gy, 0).astype(x.dtype, copy=False)

    @staticmethod
    def _sign_mask(x):
        """x > 0 packed 8 to a byte, least significant bit first (``base.py``, MASK)."""
        return np.packbits(x > 0, axis=None, bitorder="little")

    @staticmethod
    def _unpack_sign_mask(mask, gy):
        check_float(gy, "gy")
        check_sign_mask(mask, gy)
        bits = np.unpackbits(mask, count=gy.size, bitorder="little")
        return bits.view(bool).reshape(gy.shape)

    def relu_forward_mask(self, x):
        return self.relu_forward(x), self._sign_mask(x)

    def relu_backward_mask(self, mask, gy):
        keep = self._unpack_sign_mask(mask, gy)
        return np.where(keep, gy, 0).astype(gy.dtype, copy=False)

    def leaky_relu_forward_mask(self, x, negative_slope):
        return self.leaky_relu_forward(x, negative_slope), self._sign_mask(x)

    def leaky_relu_backward_mask(self, mask, gy, negative_slope):
        keep = self._unpack_sign_mask(mask, gy)
        return np.where(keep, gy, gy * gy.dtype.type(negative_slope)).astype(gy.dtype, copy=False)

    def leaky_relu_forward(self, x, negative_slope):
        check_float(x, "x")
        return np.where(x > 0, x, x * x.dtype.type(negative_slope)).astype(x.dtype, copy=False)

    def leaky_relu_backward(self, x, gy, negative_slope):
        check_same_shape(x, gy, "x", "gy")
        return np.where(x > 0, gy, gy * x.dtype.type(negative_slope)).astype(x.dtype, copy=False)

    @staticmethod
    def _prelu_alpha(x, weight):
        """weight reshaped to broadcast along axis 1 of x (or a scalar alpha)."""
        if weight.shape[0] == 1:
            return weight.reshape(())
        return weight.reshape((1, -1) + (1,) * (x.ndim - 2))

    def prelu_forward(self, x, weight):
        check_float(x, "x")
        check_prelu_weight(x, weight)
        alpha = self._prelu_alpha(x, weight)
        return np.where(x > 0, x, alpha * x).astype(x.dtype, copy=False)

    def prelu_backward(self, x, weight, gy):
        check_prelu_weight(x, weight)
        check_same_shape(x, gy, "x", "gy")
        alpha = self._prelu_alpha(x, weight)
        gx = np.where(x > 0, gy, alpha * gy).astype(x.dtype, copy=False)
        contrib = np.where(x > 0, 0, x * gy)
        if weight.shape[0] == 1:
            gw = np.asarray(contrib.sum(), dtype=x.dtype).reshape(1)
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            gw = contrib.sum(axis=axes).astype(x.dtype, copy=False)
        return gx, gw

    def sigmoid_forward(self, x):
        check_float(x, "x")
        # exp of a non-positive number never overflows: split on the sign of x
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    def sigmoid_backward(self, y, gy):
        check_same_shape(y, gy, "y", "gy")
        return gy * y * (1 - y)

    def tanh_forward(self, x):
        check_float(x, "x")
        return np.tanh(x)

    def tanh_backward(self, y, gy):
        check_same_shape(y, gy, "y", "gy")
        return gy * (1 - y * y)

    def gelu_forward(self, x, approximate):
        check_float(x, "x")
        check_gelu_approximate(approximate)
        if approximate == "tanh":
            s, _ = _tanh_gelu_parts(x)
            return (x * s).astype(x.dtype, copy=False)
        return (0.5 * x * (1 + _erf_like(x * _INV_SQRT_2))).astype(x.dtype, copy=False)

    def gelu_backward(self, x, gy, approximate):
        check_same_shape(x, gy, "x", "gy")
        check_gelu_approximate(approximate)
        if approximate == "tanh":
            s, s_1ms = _tanh_gelu_parts(x)
            # s_1ms is exactly 0 from |x| ~ 22 on, where x * dinner can overflow (0 * inf
            # = NaN): the factor's x is capped there, which changes nothing else
            xc = np.clip(x, -30, 30)
            dinner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * xc * xc)
            d = s + 2 * xc * s_1ms * dinner
        else:
            cdf = 0.5 * (1 + _erf_like(x * _INV_SQRT_2))
            pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
            d = cdf + x * pdf
        return (gy * d).astype(x.dtype, copy=False)

    def swish_forward(self, x, beta):
        check_float(x, "x")
        return (x * self.sigmoid_forward(x * x.dtype.type(beta))).astype(x.dtype, copy=False)

    def swish_backward(self, x, gy, beta):
        check_same_shape(x, gy, "x", "gy")
        beta = x.dtype.type(beta)
        bx = x * beta
        s = self.sigmoid_forward(bx)
        # s (1 - s) is exactly 0 past |beta x| ~ 745, where beta x may overflow (inf * 0)
        bxc = np.clip(bx, -1000, 1000)
        return (gy * (s + bxc * s * (1 - s))).astype(x.dtype, copy=False)

    # ------------------------------------------------------ reductions, softmax
    def sum_forward(self, x, axes, keepdims):
        check_float(x, "x")
        return np.asarray(np.sum(x, axis=tuple(axes), keepdims=keepdims), dtype=x.dtype)

    def softmax_forward(self, x):
        check_float(x, "x")
        if x.size == 0:  # an empty tensor's softmax is empty (np.max of nothing raises)
            return np.empty_like(x)
        z = x - np.max(x, axis=-1, keepdims=True)
        e = np.exp(z)
        return e / np.sum(e, axis=-1, keepdims=True)

    def softmax_backward(self, y, gy):
        check_same_shape(y, gy, "y", "gy")
        return y * (gy - np.sum(gy * y, axis=-1, keepdims=True))

    def log_softmax_forward(self, x):
        check_float(x, "x")
        if x.size == 0:
            return np.empty_like(x)
        z = x - np.max(x, axis=-1, keepdims=True)
        return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))

    def log_softmax_backward(self, y, gy):
        check_same_shape(y, gy, "y", "gy")
        return gy - np.exp(y) * np.sum(gy, axis=-1, keepdims=True)

    # ----------------------------------------------------------- linear algebra
    def matmul(self, a, b, transpose_a=False, transpose_b=False):
        check_matmul(a, b, transpose_a, transpose_b)
        if transpose_a:
            a = np.swapaxes(a, -1, -2)
        if transpose_b:
            b = np.swapaxes(b, -1, -2)
        y = np.matmul(a, b)
        if y.dtype == np.float32 and y.ndim >= 2 and not np.isfinite(y).all():
            # overflowing products summed exactly (kernel contract, backends/_exact.py)
            a, b = (np.broadcast_to(a, y.shape[:-2] + a.shape[-2:]),
                    np.broadcast_to(b, y.shape[:-2] + b.shape[-2:]))
            for i in np.ndindex(*y.shape[:-2]):
                exact_nonfinite(y[i], a[i], b[i])
        return y

    def linear_forward(self, x, weight, bias):
        check_linear(x, weight, bias)
        y = x @ weight.T
        if bias is not None:
            y = y + bias
        # overflowing products summed exactly (kernel contract, backends/_exact.py)
        exact_nonfinite(y.reshape(-1, y.shape[-1]), x.reshape(-1, x.shape[-1]), weight.T, bias)
        return y

    def linear_backward(self, x, weight, gy, has_bias):
        gx = exact_nonfinite(gy @ weight, gy, weight)
        gw = exact_nonfinite(gy.T @ x, gy.T, x)
        gb = gy.sum(axis=0) if has_bias else None
        return gx, gw, gb

    # ------------------------------------------------------------------ losses
    @staticmethod
    def _reduce(v, reduction):
        if reduction == "mean":
            return np.asarray(v.mean(), dtype=v.dtype)
        if reduction == "sum":
            return np.asarray(v.sum(), dtype=v.dtype)
        return v

    def mse_loss_forward(self, x, target, reduction):
        check_reduction(reduction)
        check_same_shape(x, target, "input", "target")
        d = x - target
        return self._reduce(d * d, reduction)

    def mse_loss_backward(self, x, target, gy, reduction):
        check_reduction(reduction)
        # an empty input has an empty gradient (its mean loss is NaN, as in PyTorch)
        scale = 2.0 / max(x.size, 1) if reduction == "mean" else 2.0
        return (x.dtype.type(scale) * (x - target) * gy).astype(x.dtype, copy=False)

    def cross_entropy_forward(self, logits, target, reduction):
        check_reduction(reduction)
        check_targets(logits, target)
        logp = self.log_softmax_forward(logits)
        nll = -logp[np.arange(logits.shape[0]), target]
        return self._reduce(nll, reduction)

    def cross_entropy_backward(self, logits, target, gy, reduction):
        check_reduction(reduction)
        check_targets(logits, target)
        n = logits.shape[0]
        g = self.softmax_forward(logits)
        g[np.arange(n), target] -= 1
        if reduction == "none":
            return g * gy.reshape(n, 1)
        scale = gy / n if reduction == "mean" else gy
        return (g * scale).astype(logits.dtype, copy=False)

    # -------------------------------------------------------- optimizer steps
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening,
                 weight_decay, nesterov, first_step):
        g = grad + weight_decay * param if weight_decay else grad
        if momentum:
            if first_step:
                momentum_buffer[...] = g
            else:
                momentum_buffer *= momentum
                momentum_buffer += (1 - dampening) * g
            g = g + momentum * momentum_buffer if nesterov else momentum_buffer
        param -= lr * g

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                  weight_decay, decoupled):
        if decoupled:
            param *= 1 - lr * weight_decay
            g = grad
        else:
            g = grad + weight_decay * param if weight_decay else grad
        exp_avg *= beta1
        exp_avg += (1 - beta1) * g
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * g * g
        bias1 = 1 - beta1 ** step
        bias2 = 1 - beta2 ** step
        denom = np.sqrt(exp_avg_sq / bias2) + eps
        param -= (lr / bias1) * exp_avg / denom

    # ------------------------------------------------------------ normalization
    # The reference works on a (outer, groups, inner) view of x: statistics in float64
    # with the two-pass formula (mean, then the mean of squared deviations), the clearest
    # stable form. Every norm reduces to "statistics over some axes of a 3-D view":
    #   layer_norm:  (R, 1, M)      stats over axis 2, weight indexed by the M columns
    #   group_norm:  (N, G, Cg*HW)  stats over axis 2, weight indexed by channel
    #   batch_norm:  (N, C, HW)     stats over axes (0, 2), weight indexed by channel
    @staticmethod
    def _stats(x64, axes, eps):
        mean = x64.mean(axis=axes, keepdims=True)
        var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
        return mean, 1.0 / np.sqrt(var + eps), var

    @staticmethod
    def _backward(xc, rstd, g, axes):
        """gx for y = (x - mean) * rstd with batch statistics over ``axes``; xc = x - mean,
        g = gy * weight (all broadcast to x's view)."""
        xhat = xc * rstd
        return rstd * (g - g.mean(axis=axes, keepdims=True)
                       - xhat * (g * xhat).mean(axis=axes, keepdims=True))

    def layer_norm_forward(self, x, weight, bias, normalized_ndim, eps):
        check_layer_norm(x, weight, bias, normalized_ndim)
        check_eps(eps)
        lead = tuple(x.shape[:x.ndim - normalized_ndim])
        m = int(np.prod(x.shape[x.ndim - normalized_ndim:], dtype=np.int64))
        x64 = x.reshape(-1, m).astype(np.float64) if x.size else np.zeros((0, m))
        mean, rstd, _ = self._stats(x64, 1, eps)
        y = (x64 - mean) * rstd
        if weight is not None:
            y = y * weight.reshape(1, m)
        if bias is not None:
            y = y + bias.reshape(1, m)
        dt = x.dtype
        return (y.astype(dt).reshape(x.shape), mean.astype(dt).reshape(lead),
                rstd.astype(dt).reshape(lead))

    def layer_norm_backward(self, x, weight, mean, rstd, gy, normalized_ndim):
        check_layer_norm(x, weight, None, normalized_ndim)
        check_same_shape(x, gy, "input", "gy")
        m = int(np.prod(x.shape[x.ndim - normalized_ndim:], dtype=np.int64))
        x64 = x.reshape(-1, m).astype(np.float64)
        g64 = gy.reshape(-1, m).astype(np.float64)
        xc = x64 - mean.reshape(-1, 1)
        r = rstd.reshape(-1, 1).astype(np.float64)
        w = weight.reshape(1, m) if weight is not None else 1.0
        dt = x.dtype
        gx = self._backward(xc, r, g64 * w, 1).astype(dt).reshape(x.shape)
        if weight is None:
            return gx, None, None
        pshape = tuple(x.shape[x.ndim - normalized_ndim:])
        gw = (g64 * xc * r).sum(axis=0).astype(dt).reshape(pshape)
        gb = g64.sum(axis=0).astype(dt).reshape(pshape)
        return gx, gw, gb

    @staticmethod
    def _nc_view(x):
        """x (N, C, *) as a float64 (N, C, HW) array."""
        n, c = x.shape[:2]
        hw = int(np.prod(x.shape[2:], dtype=np.int64))
        return x.astype(np.float64).reshape(n, c, hw)

    @staticmethod
    def _channel(p):
        return p.astype(np.float64).reshape(1, -1, 1)

    def group_norm_forward(self, x, weight, bias, num_groups, eps):
        check_group_norm(x, weight, bias, num_groups)
        check_eps(eps)
        x3 = self._nc_view(x)
        n, c, hw = x3.shape
        xg = x3.reshape(n, num_groups, (c // num_groups) * hw)
        mean, rstd, _ = self._stats(xg, 2, eps)
        y = ((xg - mean) * rstd).reshape(n, c, hw)
        if weight is not None:
            y = y * self._channel(weight)
        if bias is not None:
            y = y + self._channel(bias)
        dt = x.dtype
        return (y.astype(dt).reshape(x.shape), mean.astype(dt).reshape(n, num_groups),
                rstd.astype(dt).reshape(n, num_groups))

    def group_norm_backward(self, x, weight, mean, rstd, gy, num_groups):
        check_group_norm(x, weight, None, num_groups)
        check_same_shape(x, gy, "input", "gy")
        x3 = self._nc_view(x)
        n, c, hw = x3.shape
        g3 = self._nc_view(gy)
        w = self._channel(weight) if weight is not None else 1.0
        shape_g = (n, num_groups, (c // num_groups) * hw)
        xc = x3.reshape(shape_g) - mean.astype(np.float64).reshape(n, num_groups, 1)
        r = rstd.astype(np.float64).reshape(n, num_groups, 1)
        g = (g3 * w).reshape(shape_g)
        dt = x.dtype
        gx = self._backward(xc, r, g, 2).astype(dt).reshape(x.shape)
        if weight is None:
            return gx, None, None
        xhat = (xc * r).reshape(n, c, hw)
        return gx, (g3 * xhat).sum(axis=(0, 2)).astype(dt), g3.sum(axis=(0, 2)).astype(dt)

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training,
                           momentum, eps):
        check_batch_norm(x, weight, bias, running_mean, running_var, training)
        check_eps(eps)
        x3 = self._nc_view(x)
        n, c, hw = x3.shape
        if training:
            mean, rstd, var = self._stats(x3, (0, 2), eps)
            if running_mean is not None:
                count = n * hw
                unbiased = var.reshape(c) * (count / (count - 1))
                running_mean *= 1 - momentum
                running_mean += (momentum * mean.reshape(c)).astype(running_mean.dtype)
                running_var *= 1 - momentum
                running_var += (momentum * unbiased).astype(running_var.dtype)
        else:
            mean = self._channel(running_mean)
            rstd = 1.0 / np.sqrt(self._channel(running_var) + eps)
        y = (x3 - mean) * rstd
        if weight is not None:
            y = y * self._channel(weight)
        if bias is not None:
            y = y + self._channel(bias)
        dt = x.dtype
        return y.astype(dt).reshape(x.shape), mean.astype(dt).reshape(c), rstd.astype(dt).reshape(c)

    def batch_norm_backward(self, x, weight, mean, rstd, gy, training):
        check_batch_norm_backward(x, weight, mean, rstd)
        check_same_shape(x, gy, "input", "gy")
        x3 = self._nc_view(x)
        n, c, hw = x3.shape
        g3 = self._nc_view(gy)
        xc = x3 - self._channel(mean)
        r = self._channel(rstd)
        w = self._channel(weight) if weight is not None else 1.0
        dt = x.dtype
        if training:
            gx = self._backward(xc, r, g3 * w, (0, 2))
        else:
            gx = g3 * w * r
        gx = gx.astype(dt).reshape(x.shape)
        if weight is None:
            return gx, None, None
        return gx, (g3 * xc * r).sum(axis=(0, 2)).astype(dt), g3.sum(axis=(0, 2)).astype(dt)
    # ------------------------------------------------------------------ pooling
    # Written from PyTorch's definitions (padded copies and strided views, one per
    # kernel offset), independently of the window tables the rust and cuda kernels use;
    # only the output sizes and argument checks come from _pool.
    @staticmethod
    def _reach(rows, cols, k, s, d, p, shape):
        """Per axis, the kernel offsets [lo, hi) that can touch the input, and the input
        position the padded copy starts at. Offset i reads positions o * s + i * d - p;
        offsets whose positions are all < 0 or all >= size see only padding (which never
        wins a max and adds 0 to a sum; avg's divisor comes from the full kernel). A
        kernel of 2**62 with padding 2**61 on a 2x2 input then loops over a few offsets
        and pads a few rows, not 2**61."""
        reach = []
        for out, kk, ss, dd, pp, size in zip((rows.out, cols.out), k, s, d, p, shape[2:]):
            last = (out - 1) * ss - pp                        # offset 0's last position
            lo = max(0, -(-(-last) // dd)) if last < 0 else 0  # ceil(-last / d)
            hi = min(kk, (size + pp + dd - 1) // dd)
            reach.append((lo, max(hi, lo), min(0, lo * dd - pp)))
        return reach

    @staticmethod
    def _padded(x, fill, reach, s, d, p, out):
        """x inside a ``fill``-padded copy holding every position the reached offsets
        read; the copy starts at input position ``origin`` (<= 0) per axis. Also the input
        row/col each padded row/col holds (negative or >= size: padding)."""
        n, c, h, w = x.shape
        need = [max((o - 1) * ss + (hi - 1) * dd - pp - org + 1, size - org, 1)
                for (lo, hi, org), o, ss, dd, pp, size in zip(reach, out, s, d, p, (h, w))]
        (_, _, oh), (_, _, ow) = reach
        xp = np.full((n, c, need[0], need[1]), fill, dtype=x.dtype)
        xp[:, :, -oh:-oh + h, -ow:-ow + w] = x
        return xp, np.arange(need[0]) + oh, np.arange(need[1]) + ow

    @staticmethod
    def _offsets(reach, out, s, d, p):
        """(row slice, col slice) of every reached kernel offset, in row-major order."""
        (lo_h, hi_h, oh), (lo_w, hi_w, ow) = reach
        for i in range(lo_h, hi_h):
            r0 = i * d[0] - p[0] - oh
            for j in range(lo_w, hi_w):
                c0 = j * d[1] - p[1] - ow
                yield (slice(r0, r0 + (out[0] - 1) * s[0] + 1, s[0]),
                       slice(c0, c0 + (out[1] - 1) * s[1] + 1, s[1]))

    def max_pool2d_forward(self, x, kernel_size, stride, padding, dilation, ceil_mode,
                           return_indices):
        check_float(x, "x")
        rows, cols = _pool.pool_axes(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        k = _pool.pair(kernel_size, "kernel_size", 1)
        s = _pool.stride_pair(stride, kernel_size)
        p, d = _pool.pair(padding, "padding", 0), _pool.pair(dilation, "dilation", 1)
        h, w = x.shape[2:]
        out = (rows.out, cols.out)
        reach = self._reach(rows, cols, k, s, d, p, x.shape)
        xp, in_h, in_w = self._padded(x, -np.inf, reach, s, d, p, out)
        y = np.full(x.shape[:2] + out, -np.inf, dtype=x.dtype)
        idx = np.full(y.shape, -1, dtype=np.int64)
        for hs, ws in self._offsets(reach, out, s, d, p):
            v = xp[:, :, hs, ws]
            hh, ww = in_h[hs][:, None], in_w[ws][None, :]
            valid = (hh >= 0) & (hh < h) & (ww >= 0) & (ww < w)
            # PyTorch's rule: the first valid element, then anything larger or NaN
            take = valid & ((idx < 0) | (v > y) | np.isnan(v))
            y = np.where(take, v, y)
            idx = np.where(take, hh * w + ww, idx)
        return y, (idx if return_indices else None)

    @staticmethod
    def _scatter_indices(gy, indices, input_shape):
        n, c, h, w = input_shape
        _pool.check_indices(indices, gy.shape)
        planes = n * c
        gx = np.zeros((planes, h * w), dtype=gy.dtype)
        per_plane = int(np.prod(gy.shape[2:], dtype=np.int64))
        g = gy.reshape(planes, per_plane)  # explicit: -1 is ambiguous for empty batches
        ind = indices.reshape(planes, per_plane)
        if ind.size and ind.max() >= h * w:
            raise ValueError(f"indices: expected flat indices in [0, {h * w}), got {ind.max()}")
        plane = np.broadcast_to(np.arange(planes)[:, None], ind.shape)
        keep = ind >= 0
        np.add.at(gx, (plane[keep], ind[keep]), g[keep])
        return gx.reshape(input_shape)

    def max_pool2d_backward(self, gy, indices, input_shape, kernel_size, stride, padding,
                            dilation, ceil_mode):
        check_float(gy, "gy")
        rows, cols = _pool.pool_axes(tuple(input_shape), kernel_size, stride, padding,
                                     dilation, ceil_mode)
        _pool.check_grad_shape(gy, tuple(input_shape[:2]) + (rows.out, cols.out))
        return self._scatter_indices(gy, indices, tuple(input_shape))

    def _avg_divisor(self, shape, rows, cols, k, s, p, count_include_pad, divisor_override):
        """(OH, OW) divisors, as PyTorch's avg_pool2d computes them."""
        if divisor_override:
            return np.full((rows.out, cols.out), divisor_override, dtype=np.int64)
        sizes = []
        for o, kk, ss, pp, size in ((rows.out, k[0], s[0], p[0], shape[2]),
                                    (cols.out, k[1], s[1], p[1], shape[3])):
            start = np.arange(o) * ss - pp
            end = np.minimum(start + kk, size + pp)
            if count_include_pad:
                sizes.append(end - start)
            else:
                sizes.append(np.minimum(end, size) - np.maximum(start, 0))
        return sizes[0][:, None] * sizes[1][None, :]

    def _avg_setup(self, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                   divisor_override):
        rows, cols = _pool.pool_axes(shape, kernel_size, stride, padding, 1, ceil_mode,
                                     count_include_pad, kind="avg")
        divisor = _pool.check_divisor(divisor_override)
        k = _pool.pair(kernel_size, "kernel_size", 1)
        s = _pool.stride_pair(stride, kernel_size)
        p = _pool.pair(padding, "padding", 0)
        div = self._avg_divisor(shape, rows, cols, k, s, p, count_include_pad, divisor)
        return rows, cols, k, s, p, div

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override):
        check_float(x, "x")
        rows, cols, k, s, p, div = self._avg_setup(x.shape, kernel_size, stride, padding,
                                                   ceil_mode, count_include_pad, divisor_override)
        out = (rows.out, cols.out)
        reach = self._reach(rows, cols, k, s, (1, 1), p, x.shape)
        xp, _, _ = self._padded(x, 0, reach, s, (1, 1), p, out)
        total = np.zeros(x.shape[:2] + out, dtype=x.dtype)
        for hs, ws in self._offsets(reach, out, s, (1, 1), p):
            total += xp[:, :, hs, ws]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(div == 0, 0, total / div.astype(x.dtype)).astype(x.dtype, copy=False)

    def avg_pool2d_backward(self, gy, input_shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override):
        check_float(gy, "gy")
        shape = tuple(input_shape)
        rows, cols, k, s, p, div = self._avg_setup(shape, kernel_size, stride, padding,
                                                   ceil_mode, count_include_pad, divisor_override)
        _pool.check_grad_shape(gy, shape[:2] + (rows.out, cols.out))
        with np.errstate(invalid="ignore", divide="ignore"):
            g = np.where(div == 0, 0, gy / div.astype(gy.dtype)).astype(gy.dtype, copy=False)
        out = (rows.out, cols.out)
        reach = self._reach(rows, cols, k, s, (1, 1), p, shape)
        gp, _, _ = self._padded(np.zeros(shape, gy.dtype), 0, reach, s, (1, 1), p, out)
        for hs, ws in self._offsets(reach, out, s, (1, 1), p):
            gp[:, :, hs, ws] += g
        (h, w), (_, _, oh), (_, _, ow) = shape[2:], *reach
        return np.ascontiguousarray(gp[:, :, -oh:-oh + h, -ow:-ow + w])

    @staticmethod
    def _adaptive_windows(size, out):
        """[(start, end)] of PyTorch's adaptive pooling along one axis."""
        return [((o * size) // out, -((-(o + 1) * size) // out)) for o in range(out)]

    def adaptive_avg_pool2d_forward(self, x, output_size):
        check_float(x, "x")
        oh, ow = _pool.adaptive_output_size(x.shape, output_size)
        y = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        for r, (h0, h1) in enumerate(self._adaptive_windows(x.shape[2], oh)):
            for c, (w0, w1) in enumerate(self._adaptive_windows(x.shape[3], ow)):
                win = x[:, :, h0:h1, w0:w1]
                y[:, :, r, c] = win.mean(axis=(2, 3))
                if not np.isfinite(y[:, :, r, c]).all():
                    # an overflowing sum depends on the order: the row-major running sum
                    # of rust, cuda and PyTorch (3e38 + 3e38 + -inf is NaN there), not
                    # numpy's pairwise one
                    with np.errstate(over="ignore", invalid="ignore"):
                        run = np.cumsum(win.reshape(win.shape[:2] + (-1,)), axis=-1, dtype=x.dtype)
                        y[:, :, r, c] = run[..., -1] / x.dtype.type(win.shape[2] * win.shape[3])
        return y

    def adaptive_avg_pool2d_backward(self, gy, input_shape):
        check_float(gy, "gy")
        shape = tuple(input_shape)
        _pool.check_input4d(shape, "input_shape")
        n, c, oh, ow = gy.shape if len(gy.shape) == 4 else (None,) * 4
        _pool.check_grad_shape(gy, shape[:2] + (oh, ow))
        gx = np.zeros(shape, dtype=gy.dtype)
        for r, (h0, h1) in enumerate(self._adaptive_windows(shape[2], oh)):
            for cc, (w0, w1) in enumerate(self._adaptive_windows(shape[3], ow)):
                area = (h1 - h0) * (w1 - w0)
                gx[:, :, h0:h1, w0:w1] += (gy[:, :, r, cc] / gy.dtype.type(area))[:, :, None, None]
        return gx

    def adaptive_max_pool2d_forward(self, x, output_size, return_indices):
        check_float(x, "x")
        oh, ow = _pool.adaptive_output_size(x.shape, output_size)
        w_in = x.shape[3]
        y = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        idx = np.empty(y.shape, dtype=np.int64)
        for r, (h0, h1) in enumerate(self._adaptive_windows(x.shape[2], oh)):
            for c, (w0, w1) in enumerate(self._adaptive_windows(w_in, ow)):
                win = x[:, :, h0:h1, w0:w1].reshape(x.shape[:2] + ((h1 - h0) * (w1 - w0),))
                # first maximum, or the last NaN (PyTorch takes every NaN it meets)
                nan = np.isnan(win)
                last_nan = win.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
                a = np.where(nan.any(axis=-1), last_nan, np.argmax(np.where(nan, -np.inf, win), axis=-1))
                y[:, :, r, c] = np.take_along_axis(win, a[..., None], axis=-1)[..., 0]
                idx[:, :, r, c] = (h0 + a // (w1 - w0)) * w_in + w0 + a % (w1 - w0)
        return y, (idx if return_indices else None)

    def adaptive_max_pool2d_backward(self, gy, indices, input_shape):
        check_float(gy, "gy")
        _pool.check_input4d(tuple(input_shape), "input_shape")
        if len(gy.shape) != 4 or tuple(gy.shape[:2]) != tuple(input_shape[:2]):
            raise ValueError(f"gy: expected shape ({input_shape[0]}, {input_shape[1]}, OH, OW), "
                             f"got {tuple(gy.shape)}")
        return self._scatter_indices(gy, indices, tuple(input_shape))

    # ------------------------------------------------------------------ dropout
    def philox_words(self, seed, offset, first_block, n_blocks):
        return _dropout.philox_words(seed, offset, first_block, n_blocks)

    def _multiplier(self, x, p, seed, offset):
        """m: 1 / (1 - p) where the stream keeps the element, 0 where it drops it."""
        p = _dropout.check_p(p)
        _dropout.check_stream(seed, offset)
        words = _dropout.stream(int(np.prod(x.shape, dtype=np.int64)), seed, offset)
        keep = (words >> np.uint32(8)) >= _dropout.threshold(p)
        m = np.where(keep, x.dtype.type(_dropout.scale(p)), x.dtype.type(0))
        return m.reshape(x.shape)

    def dropout_forward(self, x, p, seed, offset):
        check_float(x, "x")
        return x * self._multiplier(x, p, seed, offset)

    def dropout_backward(self, gy, p, seed, offset):
        check_float(gy, "gy")
        return gy * self._multiplier(gy, p, seed, offset)

    def dropblock_mask(self, shape, dtype, gamma, block_size, seed, offset):
        shape = tuple(int(v) for v in shape)
        _dropout.check_block_shape(shape, block_size)
        gamma = _dropout.check_p(min(float(gamma), 1.0), "gamma")
        _dropout.check_stream(seed, offset)
        dtype = np.dtype(dtype)
        n, c, h, w = shape
        b = int(block_size)
        words = _dropout.stream(n * c * h * w, seed, offset).reshape(shape)
        seeds = (words >> np.uint32(8)) < _dropout.threshold(gamma)
        seeds[:, :, h - b + 1:, :] = False   # a seed's block must fit in the input
        seeds[:, :, :, w - b + 1:] = False
        dropped = np.zeros(shape, dtype=bool)  # OR over the b x b blocks ending here
        for di in range(b):
            for dj in range(b):
                dropped[:, :, di:, dj:] |= seeds[:, :, :h - di, :w - dj]
        kept = int((~dropped).sum())
        s = dtype.type(n * c * h * w / kept) if kept else dtype.type(0)
        return np.where(dropped, dtype.type(0), s)

    # ---------------------------------------------------------------- attention
    # the plain algorithm (whole score matrix): the oracle. _attention.tiled_* is the
    # readable flash version the tests compare with it.
    def attention_forward(self, q, k, v, mask, scale, is_causal):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        return _attention.plain_forward(q, k, v, mask, float(scale), bool(is_causal))

    def attention_backward(self, q, k, v, mask, scale, is_causal, out, lse, gout):
        _attention.check_attention(q, k, v, mask, scale, is_causal)
        _attention.check_saved(q, v, out, lse, gout)
        return _attention.plain_backward(q, k, v, mask, float(scale), bool(is_causal), out, lse, gout)
    # ------------------------------------------------------------------ convolution
    # The four algorithms, written to be read, live in _conv.py (shared with the rust
    # backend, which swaps numpy's matmul for the Rust GEMM).
    def conv2d_forward(self, x, weight, bias, stride, padding, dilation, groups, algo="auto"):
        return _conv.cpu_forward(x, weight, bias, stride, padding, dilation, groups, algo)

    def conv2d_backward(self, x, weight, gy, stride, padding, dilation, groups, algo="auto",
                        has_bias=True):
        return _conv.cpu_backward(x, weight, gy, stride, padding, dilation, groups, algo,
                                  bool(has_bias))
    # ---------------------------------------------------------------- recurrent
    # The readable reference: the sequence's input projection as one matmul, then per step
    # one matmul of the state with all gates of w_hh and the pointwise gate update.
    @staticmethod
    def _rnn_sigmoid(a):
        e = np.exp(-np.abs(a))
        return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)

    @staticmethod
    def _rnn_steps(t, reverse):
        return range(t - 1, -1, -1) if reverse else range(t)

    @staticmethod
    def _rnn_prev_states(y, h0, reverse):
        """(T, N, H): the state each step started from."""
        if reverse:
            return np.concatenate([y[1:], h0[None]], axis=0)
        return np.concatenate([h0[None], y[:-1]], axis=0)

    @staticmethod
    def _rnn_projection(x2, w_ih, bias):
        """x2 (T*N, I) @ w_ih^T + bias: the whole sequence's input projection, overflowing
        products summed exactly with the bias inside the sum (linear's rule, _exact.py)."""
        xp = x2 @ w_ih.T
        if bias is not None:
            xp += bias
        return exact_nonfinite(xp, x2, w_ih.T, bias)

    def lstm_forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
        bias = None if b_ih is None else b_ih + b_hh
        xp = self._rnn_projection(x.reshape(t * n, i), w_ih, bias).reshape(t, n, 4 * hs)
        y = np.empty((t, n, hs), x.dtype)
        cells = np.empty((t, n, hs), x.dtype)
        gates = np.empty((t, n, 4 * hs), x.dtype)
        h, c = h0, c0
        for s in self._rnn_steps(t, reverse):
            a = xp[s] + h @ w_hh.T
            ig = self._rnn_sigmoid(a[:, :hs])
            fg = self._rnn_sigmoid(a[:, hs:2 * hs])
            gg = np.tanh(a[:, 2 * hs:3 * hs])
            og = self._rnn_sigmoid(a[:, 3 * hs:])
            c = fg * c + ig * gg
            h = og * np.tanh(c)
            gates[s] = np.concatenate([ig, fg, gg, og], axis=1)
            cells[s], y[s] = c, h
        return y, np.array(h), np.array(c), gates, cells

    def lstm_backward(self, x, h0, c0, w_ih, w_hh, y, gates, cells, gy, gh_n, gc_n,
                      has_bias, reverse):
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("lstm", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs),
                                                "cells": (cells, hs)},
                                {"gy": gy, "gh_n": gh_n, "gc_n": gc_n})
        c_prev_all = self._rnn_prev_states(cells, c0, reverse)
        g_pre = np.empty((t, n, 4 * hs), x.dtype)  # gradients of the gate pre-activations
        dh, dc = gh_n, gc_n
        for s in self._rnn_steps(t, not reverse):
            dh = dh + gy[s]
            ig, fg, gg, og = (gates[s, :, k * hs:(k + 1) * hs] for k in range(4))
            tc = np.tanh(cells[s])
            dc = dc + dh * og * (1 - tc * tc)
            g_pre[s] = np.concatenate([dc * gg * ig * (1 - ig), dc * c_prev_all[s] * fg * (1 - fg),
                                       dc * ig * (1 - gg * gg), dh * tc * og * (1 - og)], axis=1)
            dc = dc * fg
            dh = g_pre[s] @ w_hh
        g2 = g_pre.reshape(t * n, 4 * hs)
        gx = (g2 @ w_ih).reshape(t, n, i)
        gw_ih = g2.T @ x.reshape(t * n, i)
        gw_hh = g2.T @ self._rnn_prev_states(y, h0, reverse).reshape(t * n, hs)
        gb = g2.sum(axis=0) if has_bias else None
        return gx, np.array(dh), np.array(dc), gw_ih, gw_hh, gb

    def gru_forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, b_ih, b_hh)
        x2 = x.reshape(t * n, i)  # overflowing products summed exactly (_exact.py)
        xp = self._rnn_projection(x2, w_ih, b_ih).reshape(t, n, 3 * hs)
        y = np.empty((t, n, hs), x.dtype)
        gates = np.empty((t, n, 4 * hs), x.dtype)
        h = h0
        for s in self._rnn_steps(t, reverse):
            hp = h @ w_hh.T
            if b_hh is not None:
                hp = hp + b_hh
            r = self._rnn_sigmoid(xp[s, :, :hs] + hp[:, :hs])
            z = self._rnn_sigmoid(xp[s, :, hs:2 * hs] + hp[:, hs:2 * hs])
            hn = hp[:, 2 * hs:]
            nn_ = np.tanh(xp[s, :, 2 * hs:] + r * hn)
            h = (1 - z) * nn_ + z * h
            gates[s] = np.concatenate([r, z, nn_, hn], axis=1)
            y[s] = h
        return y, np.array(h), gates

    def gru_backward(self, x, h0, w_ih, w_hh, y, gates, gy, gh_n, has_bias, reverse):
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("gru", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs)},
                                {"gy": gy, "gh_n": gh_n})
        h_prev_all = self._rnn_prev_states(y, h0, reverse)
        gi = np.empty((t, n, 3 * hs), x.dtype)  # gradients of the input-side pre-activations
        gh = np.empty((t, n, 3 * hs), x.dtype)  # and of the hidden-side ones (W_hh h + b_hh)
        dh = gh_n
        for s in self._rnn_steps(t, not reverse):
            dh = dh + gy[s]
            r, z, nn_, hn = (gates[s, :, k * hs:(k + 1) * hs] for k in range(4))
            dan = dh * (1 - z) * (1 - nn_ * nn_)
            daz = dh * (h_prev_all[s] - nn_) * z * (1 - z)
            dar = dan * hn * r * (1 - r)
            gi[s] = np.concatenate([dar, daz, dan], axis=1)
            gh[s] = np.concatenate([dar, daz, dan * r], axis=1)
            dh = dh * z + gh[s] @ w_hh
        gi2, gh2 = gi.reshape(t * n, 3 * hs), gh.reshape(t * n, 3 * hs)
        gx = (gi2 @ w_ih).reshape(t, n, i)
        gw_ih = gi2.T @ x.reshape(t * n, i)
        gw_hh = gh2.T @ h_prev_all.reshape(t * n, hs)
        gb_ih, gb_hh = (gi2.sum(axis=0), gh2.sum(axis=0)) if has_bias else (None, None)
        return gx, np.array(dh), gw_ih, gw_hh, gb_ih, gb_hh

    def rnn_concat_cols(self, arrays):
        return np.concatenate(list(arrays), axis=1)

    def rnn_split_cols(self, a, sizes):
        edges = np.cumsum([0] + [int(s) for s in sizes])
        if len(a.shape) != 2 or edges[-1] != a.shape[1]:
            raise ValueError(f"sizes: expected column counts summing to a.shape[1] of a 2-D "
                             f"array, got {list(sizes)} for shape {tuple(a.shape)}")
        return tuple(np.ascontiguousarray(a[:, lo:hi]) for lo, hi in zip(edges[:-1], edges[1:]))
