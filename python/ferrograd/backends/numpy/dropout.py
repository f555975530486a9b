"""The numpy backend: dropout, its random stream, DropBlock masks."""

from __future__ import annotations

import numpy as np

from .. import _dropout
from .._validate import check_float


class DropoutKernels:
    """The numpy backend's dropout, its random stream, DropBlock masks."""

    def philox_words(self, seed, offset, first_block, n_blocks):
        return _dropout.philox_words(seed, offset, first_block, n_blocks)

    def _multiplier(self, x, p, seed, offset):
        """m: 1 / (1 - p) where the stream keeps the element, 0 where it drops it."""
        p = _dropout.check_p(p)
        _dropout.check_stream(seed, offset)
        words = _dropout.stream(int(np.prod(x.shape, dtype=np.int64)), seed, offset)
        keep = (words >> np.uint32(8)) >= _dropout.threshold(p)
        m = np.where(keep, x.dtype.type(_dropout.scale(p)), x.dtype.type(0))
        return m.reshape(x.shape)

    def dropout_forward(self, x, p, seed, offset):
        check_float(x, "x")
        return x * self._multiplier(x, p, seed, offset)

    def dropout_backward(self, gy, p, seed, offset):
        check_float(gy, "gy")
        return gy * self._multiplier(gy, p, seed, offset)

    def dropblock_mask(self, shape, dtype, gamma, block_size, seed, offset):
        shape = tuple(int(v) for v in shape)
        _dropout.check_block_shape(shape, block_size)
        gamma = _dropout.check_p(min(float(gamma), 1.0), "gamma")
        _dropout.check_stream(seed, offset)
        dtype = np.dtype(dtype)
        n, c, h, w = shape
        b = int(block_size)
        words = _dropout.stream(n * c * h * w, seed, offset).reshape(shape)
        seeds = (words >> np.uint32(8)) < _dropout.threshold(gamma)
        seeds[:, :, h - b + 1:, :] = False   # a seed's block must fit in the input
        seeds[:, :, :, w - b + 1:] = False
        dropped = np.zeros(shape, dtype=bool)  # OR over the b x b blocks ending here
        for di in range(b):
            for dj in range(b):
                dropped[:, :, di:, dj:] |= seeds[:, :, :h - di, :w - dj]
        kept = int((~dropped).sum())
        s = dtype.type(n * c * h * w / kept) if kept else dtype.type(0)
        return np.where(dropped, dtype.type(0), s)
