"""The cuda backend: reductions (sum over axes)."""

from __future__ import annotations

from .runtime import _check_f32


class ReduceKernels:
    """The cuda backend's reductions (sum over axes)."""

    def sum_forward(self, x, axes, keepdims):
        _check_f32(x, "x")
        axes = tuple(int(a) for a in axes)
        s = self._sum_axes(x, axes)
        if keepdims:
            s = s.reshape(tuple(1 if a in axes else n for a, n in enumerate(x.shape)))
        return s
