"""The numpy backend: matmul and Linear."""

from __future__ import annotations

import numpy as np

from .._exact import exact_nonfinite
from .._validate import check_linear, check_matmul


class LinearKernels:
    """The numpy backend's matmul and Linear."""

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
