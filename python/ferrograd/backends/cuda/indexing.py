"""The cuda backend: indexing's strided reads and writes (the contract's "indexing")."""

from __future__ import annotations

import numpy as np

from .runtime import _check_f32


class IndexingKernels:
    """The cuda backend's strided gather and copy (basic indexing, narrow, split, cat):
    elementwise.cu's strided_gather / strided_scatter from the view's first element (the
    offset moves the base pointer, so the kernels take shape and strides only)."""

    def _strided_launch(self, kernel: str, out, x, shape, strides, offset):
        n = int(np.prod(shape, dtype=np.int64))
        if n == 0:
            return
        meta = self._meta(tuple(shape) + tuple(strides))
        base = np.uintp(int(x.gpudata) + int(offset) * x.dtype.itemsize)
        if kernel == "strided_gather":
            dst, src = self._ptr(out), base
        else:  # strided_scatter: out is the source, x the destination
            dst, src = base, self._ptr(out)
        self._launch("elementwise", kernel, n, dst, src, np.int64(n), np.int32(len(shape)),
                     self._ptr(meta))

    def gather_strided(self, x, shape, strides, offset):
        _check_f32(x, "x")
        y = self.empty(tuple(shape), x.dtype)
        self._strided_launch("strided_gather", y, x, tuple(shape), strides, offset)
        return y

    def copy_strided(self, dst, src, strides, offset):
        _check_f32(dst, "dst")
        _check_f32(src, "src")
        self._strided_launch("strided_scatter", src, dst, tuple(src.shape), strides, offset)
