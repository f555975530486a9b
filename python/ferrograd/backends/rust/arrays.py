"""The rust backend: array plumbing (creation, copies, views, undoing broadcasts)."""

from __future__ import annotations

import contextlib

import numpy as np

from ._extension import _core


@contextlib.contextmanager
def _in_place(*arrays):
    """The arrays a kernel updates in place (parameters, optimizer state, running
    statistics), as the Rust kernels need them: C-contiguous, aligned, native byte order.
    numpy accepts any layout for an in-place update, so does this backend: an array in
    another layout is worked on as a copy, written back when the kernel returns. A
    read-only array is a ValueError here, as numpy's own in-place update raises."""
    work = []
    for a in arrays:
        if isinstance(a, np.ndarray):
            if not a.flags.writeable:
                raise ValueError(f"expected a writable array of shape {a.shape} (updated in "
                                 f"place), got a read-only one")
            if not (a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative):
                a = np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)
        work.append(a)
    yield tuple(work)
    for original, copy in zip(arrays, work):
        if copy is not original:
            np.copyto(original, copy)


class ArrayKernels:
    """The rust backend's array plumbing (creation, copies, views, undoing broadcasts)."""

    def num_threads(self) -> int:
        return _core.num_threads()

    # sum_to_shape is a reduction: Rust's pairwise sums, in parallel
    def sum_to_shape(self, g, shape):
        shape = tuple(shape)
        if tuple(g.shape) == shape:
            return g
        return _core.sum_to_shape(g, list(shape))
