"""The numpy backend: activation kernels."""

from __future__ import annotations

import math

import numpy as np

from .._validate import (
    check_float, check_gelu_approximate, check_prelu_weight, check_same_shape, check_sign_mask
)


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


class ActivationKernels:
    """The numpy backend's activation kernels."""

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
