"""The numpy backend: normalization kernels (batch, layer, group norm)."""

from __future__ import annotations

import numpy as np

from .._validate import (
    check_batch_norm, check_batch_norm_backward, check_eps, check_group_norm, check_layer_norm,
    check_same_shape
)


class NormKernels:
    """The numpy backend's normalization kernels (batch, layer, group norm)."""

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
