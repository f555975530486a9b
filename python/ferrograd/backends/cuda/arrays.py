"""The cuda backend: array plumbing (creation, copies, views, undoing broadcasts)."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..base import contiguous_strides
from .runtime import _F32, _I64, _check_f32


class ArrayKernels:
    """The cuda backend's array plumbing (creation, copies, views, undoing broadcasts)."""

    def from_numpy(self, a):
        a = np.asarray(a)
        if a.dtype not in (_F32, _I64, np.dtype(np.bool_)):
            raise TypeError(f"data: the cuda backend holds float32 (int64 indices, bool masks), "
                            f"got dtype {a.dtype}; use the numpy or rust backend for float64")
        if a.size == 0:  # PyCUDA cannot copy zero bytes
            return self.empty(a.shape, a.dtype)
        return self._gpuarray.to_gpu(np.require(a, requirements="C"), allocator=self._pool.allocate)

    def to_numpy(self, x):
        return np.empty(x.shape, x.dtype) if x.size == 0 else x.get()

    def full(self, shape, value, dtype):
        dtype = np.dtype(dtype)
        if dtype != _F32:
            return self.from_numpy(np.full(tuple(shape), value, dtype=dtype))
        y = self.empty(shape)
        self._launch("elementwise", "fill", y.size, self._ptr(y), np.float32(value), np.int64(y.size))
        return y

    def copy(self, x):
        return self.empty(x.shape, x.dtype) if x.size == 0 else x.copy()

    def reshape(self, x, shape):
        shape = tuple(int(d) for d in shape)
        if x.size == 0:  # PyCUDA cannot view an empty array (it has no device pointer)
            if -1 in shape:
                raise ValueError(f"shape: cannot infer -1 for an empty array, got {shape}")
            if int(np.prod(shape, dtype=np.int64)) != 0:
                raise ValueError(f"shape: expected a shape with 0 elements, got {shape}")
            return self.empty(shape, x.dtype)
        return x.reshape(shape)

    def _gather(self, x, out_shape, in_strides):
        y = self.empty(out_shape, x.dtype)
        if y.size:
            nd = len(out_shape)
            meta = self._meta(tuple(out_shape) + tuple(in_strides))
            self._launch("elementwise", "strided_gather", y.size, self._ptr(y), self._ptr(x),
                         np.int64(y.size), np.int32(nd), self._ptr(meta))
        return y

    def permute(self, x, axes):
        _check_f32(x, "x")
        axes = tuple(int(a) for a in axes)
        strides = contiguous_strides(x.shape)
        return self._gather(x, tuple(x.shape[a] for a in axes), tuple(strides[a] for a in axes))

    def expand(self, x, shape):
        _check_f32(x, "x")
        shape = tuple(int(d) for d in shape)
        np.broadcast_shapes(tuple(x.shape), shape)  # raises ValueError if incompatible
        lead = len(shape) - len(x.shape)
        src = contiguous_strides(x.shape)
        strides = (0,) * lead + tuple(0 if n == 1 else s for n, s in zip(x.shape, src))
        return self._gather(x, shape, strides)

    def _sum_rows(self, x, rows: int, cols: int):
        """(rows,) sums of a contiguous (rows, cols) float32 array."""
        out = self.empty((rows,))
        if rows == 0:
            return out
        if cols == 0:
            self._launch("elementwise", "fill", rows, self._ptr(out), np.float32(0), np.int64(rows))
            return out
        # split long rows so that about 2 * max_blocks blocks share the work
        chunks = 1
        if rows < self._max_blocks and cols > 8192:
            chunks = min(65535, max(1, (2 * self._max_blocks) // rows), (cols + 4095) // 4096)
        chunk = (cols + chunks - 1) // chunks
        chunks = (cols + chunk - 1) // chunk
        partial = out if chunks == 1 else self.empty((rows, chunks))
        block = 256 if chunk >= 256 else (128 if chunk >= 128 else 32)
        self._fn("reduce", "sum_rows")(self._ptr(partial), self._ptr(x), np.int64(rows), np.int64(cols),
                                       np.int64(chunk), block=(block, 1, 1), grid=(rows, chunks))
        return out if chunks == 1 else self._sum_rows(partial, rows, chunks)

    def _sum_axes(self, x, axes: Tuple[int, ...]):
        """Sum over ``axes``; the result has the kept axes, in order."""
        shape = tuple(x.shape)
        nd = len(shape)
        kept = [a for a in range(nd) if a not in axes]
        kept_shape = tuple(shape[a] for a in kept)
        if not axes:
            return self.copy(x)
        trailing = tuple(axes) == tuple(range(nd - len(axes), nd))
        t = nd
        while t > 0 and (t - 1) in axes:
            t -= 1
        if not trailing and t < nd:
            # sum the reduced trailing axes in place first (a conv bias gradient: (N, C, L)
            # -> (N, C)), then the rest on the much smaller array
            lead = tuple(shape[:t])
            part = self._sum_rows(x, int(np.prod(lead, dtype=np.int64)),
                                  int(np.prod(shape[t:], dtype=np.int64))).reshape(lead)
            return self._sum_axes(part, tuple(a for a in axes if a < t))
        src = x if trailing else self.permute(x, kept + list(axes))
        rows = int(np.prod(kept_shape, dtype=np.int64))
        cols = int(np.prod([shape[a] for a in axes], dtype=np.int64))
        return self._sum_rows(src, rows, cols).reshape(kept_shape)

    def sum_to_shape(self, g, shape):
        shape = tuple(int(d) for d in shape)
        if tuple(g.shape) == shape:
            return g
        lead = len(g.shape) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
        return self._sum_axes(g, axes).reshape(shape)
