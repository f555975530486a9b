"""The cuda backend: Conv2d (its algorithms)."""

from __future__ import annotations

import numpy as np

from .. import _conv
from .runtime import _F32, _check_f32


class ConvKernels:
    """The cuda backend's Conv2d (its algorithms)."""

    # Every algo runs as im2col (cuda/conv.cu) + linear.cu's SGEMM batched over groups;
    # "winograd" and "fft" are accepted (and checked) for API parity and give the same
    # result by this path. The input gradient folds the columns back with a gathering
    # col2im (no atomics).
    def _conv_geom_args(self, x, w, s, p, d, out):
        n, c, h, wd = (int(v) for v in x.shape)
        kh, kw = int(w.shape[2]), int(w.shape[3])
        vals = (n, c, h, wd, kh, kw, out[0], out[1], s[0], s[1], p[0], p[1], d[0], d[1])
        return tuple(np.int32(v) for v in vals)

    #: arrays below this many elements use conv.cu's int-index kernels (tests lower it)
    _CONV_I32_LIMIT = 1 << 30

    def _conv_kernel(self, name: str, *arrays) -> str:
        """conv.cu's int-index copy of a kernel when every array involved has fewer than
        2^30 elements (its per-element divisions are several times cheaper)."""
        return name + "_i32" if max(int(a.size) for a in arrays) < self._CONV_I32_LIMIT else name

    def _conv_rows_grid_ok(self, x, rows: int, cols_size: int) -> bool:
        """conv_im2col_rows fits: a grid of (images, rows) and 31-bit indices."""
        return rows <= 65535 and max(int(x.size), cols_size) < self._CONV_I32_LIMIT

    def _conv_cols(self, x, w, s, p, d, g, out, per_image: bool = False):
        """im2col: (G, C/G KH KW, N L), or with per_image (N, C KH KW, L) (groups == 1 and
        conv_im2col_rows' grid limits only: see conv2d_forward)."""
        n, c = int(x.shape[0]), int(x.shape[1])
        kh, kw = int(w.shape[2]), int(w.shape[3])
        rows, L = c * kh * kw, out[0] * out[1]
        cols = self.empty((n, rows, L) if per_image else (g, rows // g, n * L))
        if cols.size == 0:
            return cols
        if self._conv_rows_grid_ok(x, rows, int(cols.size)):
            self._prepared("conv", "conv_im2col_rows", "PP" + "i" * 15).prepared_call(
                (n, rows), (256, 1, 1), self._ptr(cols), self._ptr(x),
                *(int(v) for v in self._conv_geom_args(x, w, s, p, d, out)), int(per_image))
        else:
            self._launch("conv", self._conv_kernel("conv_im2col", cols, x), cols.size,
                         self._ptr(cols), self._ptr(x), *self._conv_geom_args(x, w, s, p, d, out))
        return cols

    def conv2d_forward(self, x, weight, bias, stride, padding, dilation, groups, algo="auto"):
        s, p, d, g, out, _ = _conv.prepare(x, weight, bias, None, stride, padding, dilation,
                                           groups, algo)
        _check_f32(x, "input")
        n, o = int(x.shape[0]), int(weight.shape[0])
        k = int(weight.shape[1]) * int(weight.shape[2]) * int(weight.shape[3])
        y = self.empty((n, o, out[0], out[1]))
        L = out[0] * out[1]
        if g == 1 and y.size and k:
            # one GEMM batched over images writes y (N, O, L): y[n] = W @ X_n, X_n = x[n]
            # itself for a 1x1 / stride 1 / no padding kernel, else its columns; then the bias
            pointwise = (int(weight.shape[2]) == int(weight.shape[3]) == 1 and s == (1, 1)
                         and p == (0, 0))
            if pointwise:
                b_src = x
            elif self._conv_rows_grid_ok(x, k, n * k * L):
                b_src = self._conv_cols(x, weight, s, p, d, g, out, per_image=True)
            else:
                b_src = None
            if b_src is not None:
                self._gemm_launch(self._ptr(y), self._ptr(weight), self._ptr(b_src), np.uintp(0),
                                  o, L, k, False, False, 0, k * L, o * L, n)
                if bias is not None and n * o <= 2**31 - 1:
                    self._prepared("conv", "conv_add_bias", "PPii").prepared_call(
                        (n * o, 1), (256, 1, 1), self._ptr(y), self._ptr(bias), o, L)
                elif bias is not None:
                    y = self.binary_forward("add", y, bias.reshape((1, o, 1, 1)))
                return y
        cols = self._conv_cols(x, weight, s, p, d, g, out)
        yg = self._gemm(weight.reshape(g, o // g, k), cols, False, False)  # (G, Og, N * L)
        self._launch("conv", self._conv_kernel("conv_ungroup", y), y.size, self._ptr(y), self._ptr(yg), self._ptr(bias),
                     np.int32(n), np.int32(o), np.int64(L))
        return y

    def conv2d_backward(self, x, weight, gy, stride, padding, dilation, groups, algo="auto",
                        has_bias=True):
        s, p, d, g, out, _ = _conv.prepare(x, weight, None, gy, stride, padding, dilation,
                                           groups, algo)
        _check_f32(x, "input")
        n, o = int(x.shape[0]), int(weight.shape[0])
        k = int(weight.shape[1]) * int(weight.shape[2]) * int(weight.shape[3])
        L = out[0] * out[1]
        gyg = self.empty((g, o // g, n * L))
        self._launch("conv", self._conv_kernel("conv_group", gyg), gyg.size, self._ptr(gyg), self._ptr(gy),
                     np.int32(n), np.int32(o), np.int64(L))
        cols = self._conv_cols(x, weight, s, p, d, g, out)
        gw = self._gemm(gyg, cols, False, True).reshape(tuple(int(v) for v in weight.shape))
        gcols = self._gemm(weight.reshape(g, o // g, k), gyg, True, False)  # (G, K, N * L)
        gx = self.empty(tuple(int(v) for v in x.shape))
        self._launch("conv", self._conv_kernel("conv_col2im", gx, gcols), gx.size, self._ptr(gx), self._ptr(gcols),
                     *self._conv_geom_args(x, weight, s, p, d, out))
        if not has_bias:
            gb = None
        elif gy.size == 0:  # an empty batch: nothing to sum
            gb = self.full((o,), 0.0, _F32)
        else:
            gb = self._sum_axes(gy, (0, 2, 3))
        return gx, gw, gb
