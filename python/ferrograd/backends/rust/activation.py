"""The rust backend: activation kernels."""

from __future__ import annotations

from .._validate import check_prelu_weight
from ._extension import _core


class ActivationKernels:
    """The rust backend's activation kernels."""

    def relu_forward(self, x):
        return _core.relu_forward(x)

    def relu_backward(self, x, gy):
        return _core.relu_backward(x, gy)

    def relu_forward_mask(self, x):
        return _core.relu_forward_mask(x)

    def relu_backward_mask(self, mask, gy):
        return _core.relu_backward_mask(mask, gy)

    def leaky_relu_forward_mask(self, x, negative_slope):
        return _core.leaky_relu_forward_mask(x, float(negative_slope))

    def leaky_relu_backward_mask(self, mask, gy, negative_slope):
        return _core.leaky_relu_backward_mask(mask, gy, float(negative_slope))

    def leaky_relu_forward(self, x, negative_slope):
        return _core.leaky_relu_forward(x, float(negative_slope))

    def leaky_relu_backward(self, x, gy, negative_slope):
        return _core.leaky_relu_backward(x, gy, float(negative_slope))

    def prelu_forward(self, x, weight):
        check_prelu_weight(x, weight)
        return _core.prelu_forward(x, weight)

    def prelu_backward(self, x, weight, gy):
        check_prelu_weight(x, weight)
        return _core.prelu_backward(x, weight, gy)

    def sigmoid_forward(self, x):
        return _core.sigmoid_forward(x)

    def sigmoid_backward(self, y, gy):
        return _core.sigmoid_backward(y, gy)

    def tanh_forward(self, x):
        return _core.tanh_forward(x)

    def tanh_backward(self, y, gy):
        return _core.tanh_backward(y, gy)

    def gelu_forward(self, x, approximate):
        return _core.gelu_forward(x, approximate)

    def gelu_backward(self, x, gy, approximate):
        return _core.gelu_backward(x, gy, approximate)

    def swish_forward(self, x, beta):
        return _core.swish_forward(x, float(beta))

    def swish_backward(self, x, gy, beta):
        return _core.swish_backward(x, gy, float(beta))
