"""The numpy backend: softmax and log_softmax over the last axis."""

from __future__ import annotations

import numpy as np

from .._validate import check_float, check_same_shape


class SoftmaxKernels:
    """The numpy backend's softmax and log_softmax over the last axis."""

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
