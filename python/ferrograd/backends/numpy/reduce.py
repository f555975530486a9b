"""The numpy backend: reductions (sum over axes)."""

from __future__ import annotations

import numpy as np

from .._validate import check_float


class ReduceKernels:
    """The numpy backend's reductions (sum over axes)."""

    def sum_forward(self, x, axes, keepdims):
        check_float(x, "x")
        return np.asarray(np.sum(x, axis=tuple(axes), keepdims=keepdims), dtype=x.dtype)
