"""The numpy backend: indexing's strided reads and writes (the contract's "indexing")."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def _view(flat: np.ndarray, shape, strides, offset: int, writeable: bool) -> np.ndarray:
    # a view from the offset on; the caller guarantees every position is inside flat
    return as_strided(flat[offset:], tuple(shape), tuple(s * flat.itemsize for s in strides),
                      writeable=writeable)


class IndexingKernels:
    """The numpy backend's strided gather and copy (basic indexing, narrow, split, cat)."""

    def gather_strided(self, x, shape, strides, offset):
        flat = np.ascontiguousarray(x).reshape(-1)
        return np.array(_view(flat, shape, strides, offset, writeable=False), order="C", copy=True)

    def copy_strided(self, dst, src, strides, offset):
        if not (dst.flags.c_contiguous and dst.flags.writeable):
            raise ValueError("dst: expected a C-contiguous writable array (written in place)")
        _view(dst.reshape(-1), src.shape, strides, offset, writeable=True)[...] = src
