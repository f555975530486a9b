"""The numpy backend: Conv2d (its algorithms)."""

from __future__ import annotations

from .. import _conv


class ConvKernels:
    """The numpy backend's Conv2d (its algorithms)."""

    # The four algorithms, written to be read, live in _conv.py (shared with the rust
    # backend, which swaps numpy's matmul for the Rust GEMM).
    def conv2d_forward(self, x, weight, bias, stride, padding, dilation, groups, algo="auto"):
        return _conv.cpu_forward(x, weight, bias, stride, padding, dilation, groups, algo)

    def conv2d_backward(self, x, weight, gy, stride, padding, dilation, groups, algo="auto",
                        has_bias=True):
        return _conv.cpu_backward(x, weight, gy, stride, padding, dilation, groups, algo,
                                  bool(has_bias))
