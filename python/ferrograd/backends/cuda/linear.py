"""The cuda backend: matmul and Linear."""

from __future__ import annotations

from .._validate import check_linear, check_matmul
from .runtime import _check_f32


class LinearKernels:
    """The cuda backend's matmul and Linear."""

    def matmul(self, a, b, transpose_a=False, transpose_b=False):
        check_matmul(a, b, transpose_a, transpose_b)
        _check_f32(a, "a")
        return self._gemm(a, b, bool(transpose_a), bool(transpose_b))

    def linear_forward(self, x, weight, bias):
        check_linear(x, weight, bias)
        _check_f32(x, "input")
        return self._gemm(x, weight, False, True, bias)

    def linear_backward(self, x, weight, gy, has_bias):
        gx = self._gemm(gy, weight, False, False)
        gw = self._gemm(gy, x, True, False)
        gb = self._sum_axes(gy, (0,)) if has_bias else None
        return gx, gw, gb
