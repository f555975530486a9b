"""The cuda backend: dropout, its random stream, DropBlock masks."""

from __future__ import annotations

import numpy as np

from .. import _dropout
from .runtime import _F32, _check_f32


class DropoutKernels:
    """The cuda backend's dropout, its random stream, DropBlock masks."""

    # cuda/dropout.cu: the same Philox stream as numpy and Rust, one call per 4 elements.
    @staticmethod
    def _stream_args(seed, offset):
        _dropout.check_stream(seed, offset)
        return (np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32),
                np.uint32(offset & 0xFFFFFFFF), np.uint32(offset >> 32))

    def philox_words(self, seed, offset, first_block, n_blocks):
        k0, k1, o0, o1 = self._stream_args(seed, offset)
        out = self.empty((int(n_blocks), 4), np.uint32)
        self._launch("dropout", "philox_words", int(n_blocks), self._ptr(out), np.int64(n_blocks),
                     np.uint64(int(first_block) % 2**64), k0, k1, o0, o1)
        return out

    def _dropout_apply(self, x, p, seed, offset, name):
        _check_f32(x, name)
        p = _dropout.check_p(p)
        k0, k1, o0, o1 = self._stream_args(seed, offset)
        y = self.empty(x.shape)
        if x.size:
            blocks = (x.size + 3) // 4
            grid = (max(1, min((blocks + 255) // 256, self._max_blocks)), 1)
            self._prepared("dropout", "dropout_apply", "PPqIIIIIf").prepared_call(
                grid, (256, 1, 1), self._ptr(y), self._ptr(x), np.int64(x.size), k0, k1, o0, o1,
                np.uint32(_dropout.threshold(p)), np.float32(_dropout.scale(p)))
        return y

    def dropout_forward(self, x, p, seed, offset):
        return self._dropout_apply(x, p, seed, offset, "x")

    def dropout_backward(self, gy, p, seed, offset):
        return self._dropout_apply(gy, p, seed, offset, "gy")

    def dropblock_mask(self, shape, dtype, gamma, block_size, seed, offset):
        shape = tuple(int(v) for v in shape)
        _dropout.check_block_shape(shape, block_size)
        if np.dtype(dtype) != _F32:
            raise TypeError(f"dtype: the cuda backend computes in float32, got {np.dtype(dtype)}")
        gamma = _dropout.check_p(min(float(gamma), 1.0), "gamma")
        k0, k1, o0, o1 = self._stream_args(seed, offset)
        n = int(np.prod(shape, dtype=np.int64))
        m = self.empty(shape)
        if n == 0:
            return m
        h, w, b = shape[2], shape[3], int(block_size)
        seeds = self.empty((n,), np.uint8)
        kept = self._gpuarray.zeros((1,), np.uint64)
        self._launch("dropout", "dropblock_seeds", n, self._ptr(seeds), np.int64(n), np.int32(h),
                     np.int32(w), np.int32(b), k0, k1, o0, o1,
                     np.uint32(_dropout.threshold(gamma)))
        self._launch("dropout", "dropblock_keep", n, self._ptr(m), self._ptr(kept), self._ptr(seeds),
                     np.int64(n), np.int32(h), np.int32(w), np.int32(b))
        self._launch("dropout", "dropblock_scale", n, self._ptr(m), np.int64(n), self._ptr(kept))
        return m
