"""The rust backend: softmax and log_softmax over the last axis."""

from __future__ import annotations

from ._extension import _core


class SoftmaxKernels:
    """The rust backend's softmax and log_softmax over the last axis."""

    def softmax_forward(self, x):
        return _core.softmax_forward(x)

    def softmax_backward(self, y, gy):
        return _core.softmax_backward(y, gy)

    def log_softmax_forward(self, x):
        return _core.log_softmax_forward(x)

    def log_softmax_backward(self, y, gy):
        return _core.log_softmax_backward(y, gy)
