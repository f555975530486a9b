"""The rust backend: indexing's strided reads and writes (rust_core/src/ops/indexing.rs:
rows copied in parallel; the view is checked to lie inside the buffer and, for writes,
never to name a position twice). int64 arrays take the numpy backend's copies."""

from __future__ import annotations

import numpy as np

from ..numpy.indexing import IndexingKernels as _NumpyIndexing
from ._extension import _core
from .arrays import _in_place

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class IndexingKernels:
    """The rust backend's strided gather and copy (basic indexing, narrow, split, cat)."""

    def gather_strided(self, x, shape, strides, offset):
        if np.dtype(x.dtype) not in _FLOATS:
            return _NumpyIndexing.gather_strided(self, x, shape, strides, offset)
        return _core.gather_strided(x, [int(d) for d in shape], [int(s) for s in strides],
                                    int(offset))

    def copy_strided(self, dst, src, strides, offset):
        if np.dtype(dst.dtype) not in _FLOATS:
            return _NumpyIndexing.copy_strided(self, dst, src, strides, offset)
        with _in_place(dst) as (d,):
            _core.copy_strided(d, np.asarray(src, dtype=d.dtype), [int(s) for s in strides],
                               int(offset))
