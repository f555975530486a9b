"""The rust backend: reductions (sum over axes)."""

from __future__ import annotations

from ._extension import _core


class ReduceKernels:
    """The rust backend's reductions (sum over axes)."""

    def sum_forward(self, x, axes, keepdims):
        return _core.sum_forward(x, [int(a) for a in axes], bool(keepdims))
