"""The cuda backend: softmax and log_softmax over the last axis."""

from __future__ import annotations

import numpy as np

from .._validate import check_same_shape
from .runtime import _check_f32


class SoftmaxKernels:
    """The cuda backend's softmax and log_softmax over the last axis."""

    def _row_kernel(self, name: str, out, args, shape, log_mode: int):
        """Launch softmax.cu's ``name`` with one block per row of the last axis."""
        cols = int(shape[-1]) if len(shape) else 1
        rows = out.size // cols if cols else 0
        if rows and cols:
            block = 32 if cols <= 32 else (128 if cols <= 1024 else 256)
            self._fn("softmax", name)(self._ptr(out), *[self._ptr(a) for a in args], np.int64(cols),
                                      np.int32(log_mode), block=(block, 1, 1), grid=(rows, 1))
        return out

    def _softmax(self, x, log_mode: int):
        _check_f32(x, "x")
        return self._row_kernel("softmax_forward", self.empty(x.shape), [x], x.shape, log_mode)

    def _softmax_bwd(self, y, gy, log_mode: int):
        check_same_shape(y, gy, "y", "gy")
        return self._row_kernel("softmax_backward", self.empty(y.shape), [y, gy], y.shape, log_mode)

    def softmax_forward(self, x):
        return self._softmax(x, 0)

    def softmax_backward(self, y, gy):
        return self._softmax_bwd(y, gy, 0)

    def log_softmax_forward(self, x):
        return self._softmax(x, 1)

    def log_softmax_backward(self, y, gy):
        return self._softmax_bwd(y, gy, 1)
