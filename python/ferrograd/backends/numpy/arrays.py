"""The numpy backend: array plumbing (creation, copies, views, undoing broadcasts)."""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def sum_to_shape(g: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum the leading axes broadcasting added and the size-1 axes it stretched."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


class ArrayKernels:
    """The numpy backend's array plumbing (creation, copies, views, undoing broadcasts)."""

    def from_numpy(self, a):
        return np.asarray(a)

    def to_numpy(self, x):
        return np.asarray(x)

    def full(self, shape, value, dtype):
        return np.full(tuple(shape), value, dtype=dtype)

    def copy(self, x):
        return np.array(x, order="C", copy=True)

    def reshape(self, x, shape):
        return np.reshape(x, tuple(shape))

    def permute(self, x, axes: Sequence[int]):
        return np.transpose(x, tuple(axes))

    def expand(self, x, shape):
        return np.broadcast_to(x, tuple(shape))

    def sum_to_shape(self, g, shape):
        return sum_to_shape(g, shape)
