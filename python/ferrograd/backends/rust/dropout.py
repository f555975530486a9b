"""The rust backend: dropout, its random stream, DropBlock masks."""

from __future__ import annotations

import numpy as np

from .. import _dropout
from ._extension import _core


class DropoutKernels:
    """The rust backend's dropout, its random stream, DropBlock masks."""

    def philox_words(self, seed, offset, first_block, n_blocks):
        _dropout.check_stream(seed, offset)
        return _core.philox_words(int(seed), int(offset), int(first_block) % 2**64, int(n_blocks))

    def dropout_forward(self, x, p, seed, offset):
        _dropout.check_stream(seed, offset)
        return _core.dropout_apply(x, _dropout.check_p(p), int(seed), int(offset))

    def dropout_backward(self, gy, p, seed, offset):
        _dropout.check_stream(seed, offset)
        return _core.dropout_apply(gy, _dropout.check_p(p), int(seed), int(offset))

    def dropblock_mask(self, shape, dtype, gamma, block_size, seed, offset):
        shape = tuple(int(v) for v in shape)
        _dropout.check_block_shape(shape, block_size)
        _dropout.check_stream(seed, offset)
        return _core.dropblock_mask(list(shape), np.dtype(dtype).name, min(float(gamma), 1.0),
                                    int(block_size), int(seed), int(offset))
