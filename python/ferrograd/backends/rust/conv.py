"""The rust backend: Conv2d (its algorithms)."""

from __future__ import annotations

from .. import _conv
from ._extension import _core


class ConvKernels:
    """The rust backend's Conv2d (its algorithms)."""

    # Every algorithm runs in rust_core/src/conv: naive (direct loops), im2col (rayon
    # im2col, the gemm crate per group, a gathering col2im), Winograd F(2x2, 3x3) and
    # F(4x4, 3x3) (winograd.rs), FFT (rustfft, fft.rs). "auto" picks by measured
    # crossovers, separately for forward and backward (_conv.resolve_rust_algo states the
    # rule; benches/README.md has the numbers).
    def conv2d_forward(self, x, weight, bias, stride, padding, dilation, groups, algo="auto"):
        s, p, d, g, out, _ = _conv.prepare(x, weight, bias, None, stride, padding, dilation,
                                           groups, algo)
        kernel = _conv.resolve_rust_algo(algo, weight.shape, s, d, g, out, backward=False)
        return _core.conv2d_forward(x, weight, bias, s, p, d, g, kernel)

    def conv2d_backward(self, x, weight, gy, stride, padding, dilation, groups, algo="auto",
                        has_bias=True):
        s, p, d, g, out, _ = _conv.prepare(x, weight, None, gy, stride, padding, dilation,
                                           groups, algo)
        kernel = _conv.resolve_rust_algo(algo, weight.shape, s, d, g, out, backward=True)
        return _core.conv2d_backward(x, weight, gy, s, p, d, g, bool(has_bias), kernel)
