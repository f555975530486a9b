"""The cuda backend: activation kernels."""

from __future__ import annotations

import numpy as np

from .._validate import (
    check_gelu_approximate, check_prelu_weight, check_same_shape, check_sign_mask
)
from .runtime import _F32, _check_f32


#: grid cap of the activation kernels: one block per tile of the array (activation.cu's
#: map1/map2) up to the grid's x limit, instead of a grid-stride loop over fewer blocks
_TILE_BLOCKS = 2**31 - 1


class ActivationKernels:
    """The cuda backend's activation kernels."""

    # each kernel is named whole, so that a search for it finds its launch (activation.cu's
    # FG_ACTIVATION(relu) defines relu_forward and relu_backward); p is the kernel's scalar
    # (slope, beta) where it has one
    def _act_forward(self, kernel: str, x, p: float = 0.0):
        _check_f32(x, "x")
        y = self.empty(x.shape)
        self._launch("activation", kernel, x.size, self._ptr(y), self._ptr(x),
                     np.int64(x.size), np.float32(p), per_thread=16, max_blocks=_TILE_BLOCKS)
        return y

    def _act_backward(self, kernel: str, x, gy, p: float = 0.0):
        check_same_shape(x, gy, "x", "gy")
        g = self.empty(x.shape)
        self._launch("activation", kernel, x.size, self._ptr(g), self._ptr(x),
                     self._ptr(gy), np.int64(x.size), np.float32(p), per_thread=16, max_blocks=_TILE_BLOCKS)
        return g

    def _act_forward_mask(self, kernel: str, x, p: float = 0.0):
        """(y, packed mask of x > 0): 4 elements per thread step (one nibble of the mask)."""
        _check_f32(x, "x")
        y = self.empty(x.shape)
        mask = self.empty(((x.size + 7) // 8,), np.uint8)
        self._launch("activation", kernel, (x.size + 3) // 4, self._ptr(y),
                     self._ptr(mask), self._ptr(x), np.int64(x.size), np.float32(p),
                     per_thread=4, max_blocks=_TILE_BLOCKS)
        return y, mask

    def _act_backward_mask(self, kernel: str, mask, gy, p: float = 0.0):
        _check_f32(gy, "gy")
        check_sign_mask(mask, gy)
        g = self.empty(gy.shape)
        self._launch("activation", kernel, (gy.size + 3) // 4, self._ptr(g),
                     self._ptr(mask), self._ptr(gy), np.int64(gy.size), np.float32(p),
                     per_thread=4, max_blocks=_TILE_BLOCKS)
        return g

    def relu_forward(self, x):
        return self._act_forward("relu_forward", x)

    def relu_forward_mask(self, x):
        return self._act_forward_mask("relu_forward_mask", x)

    def relu_backward_mask(self, mask, gy):
        return self._act_backward_mask("relu_backward_mask", mask, gy)

    def leaky_relu_forward_mask(self, x, negative_slope):
        return self._act_forward_mask("leaky_relu_forward_mask", x, negative_slope)

    def leaky_relu_backward_mask(self, mask, gy, negative_slope):
        return self._act_backward_mask("leaky_relu_backward_mask", mask, gy, negative_slope)

    def relu_backward(self, x, gy):
        return self._act_backward("relu_backward", x, gy)

    def leaky_relu_forward(self, x, negative_slope):
        return self._act_forward("leaky_relu_forward", x, negative_slope)

    def leaky_relu_backward(self, x, gy, negative_slope):
        return self._act_backward("leaky_relu_backward", x, gy, negative_slope)

    def sigmoid_forward(self, x):
        return self._act_forward("sigmoid_forward", x)

    def sigmoid_backward(self, y, gy):
        return self._act_backward("sigmoid_backward", y, gy)

    def tanh_forward(self, x):
        return self._act_forward("tanh_forward", x)

    def tanh_backward(self, y, gy):
        return self._act_backward("tanh_backward", y, gy)

    def gelu_forward(self, x, approximate):
        check_gelu_approximate(approximate)
        kernel = "gelu_tanh_forward" if approximate == "tanh" else "gelu_forward"
        return self._act_forward(kernel, x)

    def gelu_backward(self, x, gy, approximate):
        check_gelu_approximate(approximate)
        kernel = "gelu_tanh_backward" if approximate == "tanh" else "gelu_backward"
        return self._act_backward(kernel, x, gy)

    def swish_forward(self, x, beta):
        return self._act_forward("swish_forward", x, beta)

    def swish_backward(self, x, gy, beta):
        return self._act_backward("swish_backward", x, gy, beta)

    @staticmethod
    def _prelu_layout(x, weight):
        c = int(weight.shape[0])
        inner = int(np.prod(x.shape[2:], dtype=np.int64)) if len(x.shape) > 2 else 1
        return c, inner

    def prelu_forward(self, x, weight):
        _check_f32(x, "x")
        check_prelu_weight(x, weight)
        c, inner = self._prelu_layout(x, weight)
        y = self.empty(x.shape)
        self._launch("activation", "prelu_forward", x.size, self._ptr(y), self._ptr(x), self._ptr(weight),
                     np.int64(x.size), np.int64(c), np.int64(inner))
        return y

    def prelu_backward(self, x, weight, gy):
        check_prelu_weight(x, weight)
        check_same_shape(x, gy, "x", "gy")
        c, inner = self._prelu_layout(x, weight)
        gx, contrib = self.empty(x.shape), self.empty(x.shape)
        self._launch("activation", "prelu_backward", x.size, self._ptr(gx), self._ptr(contrib),
                     self._ptr(x), self._ptr(weight), self._ptr(gy), np.int64(x.size), np.int64(c),
                     np.int64(inner))
        if c == 1:
            gw = self._sum_rows(contrib.reshape(1, x.size), 1, x.size) if x.size else self.full((1,), 0, _F32)
        else:
            gw = self._sum_axes(contrib.reshape(x.shape[0], c, inner), (0, 2))
        return gx, gw.reshape(weight.shape)
