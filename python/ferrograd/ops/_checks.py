"""Tensor-level argument checks shared by the op families."""

from __future__ import annotations

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def require_tensor(t, name: str) -> None:
    # duck-typed (a Tensor has both): this module must not import tensor.py
    if not (hasattr(t, "backend") and hasattr(t, "dtype")):
        raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__} "
                        f"(make one with fg.tensor(...))")


def require_float(t, name: str) -> None:
    require_tensor(t, name)
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected a float32 or float64 tensor, got dtype {t.dtype}")


def require_same_dtype(a, b, name_a: str, name_b: str) -> None:
    require_tensor(a, name_a)
    require_tensor(b, name_b)
    if a.dtype != b.dtype:
        raise TypeError(
            f"{name_b}: expected dtype {a.dtype} like {name_a}, got {b.dtype} "
            f"(convert one with fg.tensor(x.numpy(), dtype=...))")


def broadcast_shape(a, b, name_a: str = "a", name_b: str = "b"):
    try:
        return tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise ValueError(
            f"{name_b}: shape {b.shape} cannot be broadcast with {name_a}'s shape {a.shape}") from None


def normalize_dim(dim: int, ndim: int, name: str = "dim") -> int:
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}: expected an integer, got {dim!r}")
    lo, hi = (-ndim, ndim - 1) if ndim else (-1, 0)
    if not lo <= dim <= hi:
        raise ValueError(f"{name}: expected a dimension in [{lo}, {hi}], got {dim}")
    return int(dim) % ndim if ndim else 0
