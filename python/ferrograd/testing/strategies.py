"""Hypothesis strategies for ferrograd's tests, reusable in users' own property tests.

* ``shapes``: array shapes that favour the awkward cases (size-1 and odd sizes, 0-d).
* ``broadcastable_shapes``: two shapes that broadcast together (size-1 axes, missing
  leading axes), with their broadcast shape.
* ``float_arrays``: float32/float64 arrays with every |value| <= ``max_magnitude``,
  optionally kept away from a point (a kink such as relu's 0) by ``min_distance``.
* ``matmul_shapes``: operand shapes that torch.matmul accepts (1-D, 2-D, batched with
  broadcasting).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: sides drawn by default: 1 and odd sizes come up often, with a few even ones
_SIDES = (1, 1, 2, 3, 5, 7, 4)


def sides(max_side: int = 7, min_side: int = 1) -> st.SearchStrategy[int]:
    """An axis length, biased towards 1 and odd sizes."""
    favoured = [s for s in _SIDES if min_side <= s <= max_side]
    return st.one_of(st.sampled_from(favoured), st.integers(min_side, max_side)) \
        if favoured else st.integers(min_side, max_side)


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 6
           ) -> st.SearchStrategy[Tuple[int, ...]]:
    """A shape with ``min_dims``..``max_dims`` axes of ``min_side``..``max_side`` elements."""
    return st.lists(sides(max_side, min_side), min_size=min_dims, max_size=max_dims).map(tuple)


def broadcastable_shapes(max_dims: int = 4, max_side: int = 5, min_dims: int = 0
                         ) -> st.SearchStrategy[Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]:
    """``(shape_a, shape_b, result_shape)`` that broadcast with numpy's rules."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side
    ).map(lambda b: (tuple(b.input_shapes[0]), tuple(b.input_shapes[1]), tuple(b.result_shape)))


def float_dtypes() -> st.SearchStrategy[np.dtype]:
    return st.sampled_from(FLOAT_DTYPES)


def float_values(dtype, max_magnitude: float = 10.0, min_distance: float = 0.0,
                 center: float = 0.0, positive: bool = False) -> st.SearchStrategy[float]:
    """Finite floats of ``dtype`` in [center - max_magnitude, center + max_magnitude]
    (or (center, center + max_magnitude] when ``positive``), at least ``min_distance``
    away from ``center``."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    if width == 32:  # hypothesis wants bounds that float32 represents exactly
        center, min_distance, max_magnitude = (
            float(np.float32(v)) for v in (center, min_distance, max_magnitude))
    lo_gap = center + min_distance
    kw = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=width)
    upper = st.floats(min_value=lo_gap, max_value=center + max_magnitude,
                      exclude_min=min_distance == 0 and positive, **kw)
    if positive:
        return upper
    lower = st.floats(min_value=center - max_magnitude, max_value=center - min_distance, **kw)
    return st.one_of(upper, lower)


def float_arrays(shape, dtype=np.float64, max_magnitude: float = 10.0, min_distance: float = 0.0,
                 center: float = 0.0, positive: bool = False) -> st.SearchStrategy[np.ndarray]:
    """Arrays of ``shape`` (a tuple or a strategy of tuples) and ``dtype`` whose elements
    satisfy ``float_values``'s bounds."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    return hnp.arrays(dtype, shape, elements=float_values(
        dtype, max_magnitude, min_distance, center, positive))


@st.composite
def matmul_shapes(draw, max_batch_dims: int = 2, max_side: int = 6
                  ) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]:
    """``(shape_a, shape_b, result_shape)`` valid for torch.matmul: 1-D vectors, 2-D
    matrices and batched operands whose batch dimensions broadcast."""
    m, k, n = draw(sides(max_side)), draw(sides(max_side)), draw(sides(max_side))
    kind_a = draw(st.sampled_from(["vec", "mat", "batch"]))
    kind_b = draw(st.sampled_from(["vec", "mat", "batch"]))
    batch_a: Tuple[int, ...] = ()
    batch_b: Tuple[int, ...] = ()
    if kind_a == "batch" or kind_b == "batch":
        b = draw(broadcastable_shapes(max_dims=max_batch_dims, max_side=3, min_dims=0))
        batch_a = b[0] if kind_a == "batch" else ()
        batch_b = b[1] if kind_b == "batch" else ()
    a = (k,) if kind_a == "vec" else batch_a + (m, k)
    bb = (k,) if kind_b == "vec" else batch_b + (k, n)
    out_batch = tuple(np.broadcast_shapes(batch_a, batch_b))
    out = out_batch + ((m,) if kind_a != "vec" else ()) + ((n,) if kind_b != "vec" else ())
    return a, bb, out


def class_targets(n: int, num_classes: int) -> st.SearchStrategy[np.ndarray]:
    """(n,) int64 class indices in [0, num_classes)."""
    return hnp.arrays(np.int64, (n,), elements=st.integers(0, num_classes - 1))


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)


__all__ = ["sides", "shapes", "broadcastable_shapes", "float_dtypes", "float_values",
           "float_arrays", "matmul_shapes", "class_targets", "seeds"]
