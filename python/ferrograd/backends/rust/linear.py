"""The rust backend: matmul and Linear."""

from __future__ import annotations

from .._validate import check_linear, check_matmul
from ._extension import _core


class LinearKernels:
    """The rust backend's matmul and Linear."""

    def matmul(self, a, b, transpose_a=False, transpose_b=False):
        check_matmul(a, b, transpose_a, transpose_b)
        return _core.matmul(a, b, bool(transpose_a), bool(transpose_b))

    def linear_forward(self, x, weight, bias):
        check_linear(x, weight, bias)
        return _core.linear_forward(x, weight, bias)

    def linear_backward(self, x, weight, gy, has_bias):
        return _core.linear_backward(x, weight, gy, bool(has_bias))
