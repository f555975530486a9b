"""Indexing and joining: basic indexing (``t[i, 1:5:2, None, ...]``), narrow, split,
chunk, unbind, cat and stack, with PyTorch's semantics and gradients.

Each is a strided view of a C-contiguous array, read by the contract's ``gather_strided``
or written by ``copy_strided`` (``backends/base.py``, "indexing"): the view is computed
here, once, and every kernel just walks it. Backward of a read is the write into zeros;
backward of cat is a read per input. Integer-array and boolean-mask indexing are not
here yet and raise NotImplementedError naming themselves.
"""

from __future__ import annotations

import numbers
from typing import List, Tuple

import numpy as np

from ..autograd.engine import Function
from ..backends.base import contiguous_strides
from ._checks import normalize_dim, require_tensor

View = Tuple[Tuple[int, ...], Tuple[int, ...], int]  # shape, element strides, offset


class IndexOutOfBoundsError(IndexError):
    """An index or range outside a tensor: PyTorch's IndexError (``except IndexError``
    catches it), a class of its own so that a stray IndexError from a bug is not
    mistaken for it (the fuzz test allows this one only)."""


def _dim_of_tensor(x, dim, op: str) -> int:
    """``dim`` of x for an op that needs at least one dimension (a 0-d tensor has none to
    split, narrow or join along, as PyTorch says too)."""
    if x.ndim == 0:
        raise ValueError(f"input: {op} expects a tensor of at least 1 dimension, got a 0-d "
                         f"tensor")
    return normalize_dim(dim, x.ndim)


class Index(Function):
    """A strided read (the view is computed by the caller)."""

    @staticmethod
    def forward(ctx, x, view: View):
        ctx.view, ctx.in_shape, ctx.dtype = view, tuple(x.shape), x.dtype
        shape, strides, offset = view
        return ctx.backend.gather_strided(x, shape, strides, offset)

    @staticmethod
    def backward(ctx, gy):
        be = ctx.backend
        g = be.full(ctx.in_shape, 0.0, ctx.dtype)
        _, strides, offset = ctx.view
        be.copy_strided(g, gy, strides, offset)
        return g

    @staticmethod
    def jvp(ctx, out, v):
        shape, strides, offset = ctx.view
        return ctx.backend.gather_strided(v, shape, strides, offset)


class Cat(Function):
    @staticmethod
    def forward(ctx, *args):
        *arrays, dim = args
        be = ctx.backend
        shape = list(arrays[0].shape)
        sizes = [int(a.shape[dim]) for a in arrays]
        shape[dim] = sum(sizes)
        ctx.dim, ctx.sizes, ctx.out_shape = dim, sizes, tuple(shape)
        out = be.full(tuple(shape), 0.0, arrays[0].dtype)
        for a, view in zip(arrays, _cat_views(ctx.out_shape, dim, sizes)):
            be.copy_strided(out, a, view[1], view[2])
        return out

    @staticmethod
    def backward(ctx, gy):
        be = ctx.backend
        return tuple(be.gather_strided(gy, *view) if need else None
                     for view, need in zip(_cat_views(ctx.out_shape, ctx.dim, ctx.sizes),
                                           ctx.needs_input_grad))

    @staticmethod
    def jvp(ctx, out, *tangents):
        be = ctx.backend
        t = be.full(ctx.out_shape, 0.0, out.dtype)
        for v, view in zip(tangents, _cat_views(ctx.out_shape, ctx.dim, ctx.sizes)):
            if v is not None:
                be.copy_strided(t, v, view[1], view[2])
        return t


def _cat_views(out_shape, dim: int, sizes: List[int]) -> List[View]:
    """The view of the output that each input of cat fills."""
    strides = contiguous_strides(out_shape)
    views, start = [], 0
    for n in sizes:
        shape = tuple(out_shape[:dim]) + (n,) + tuple(out_shape[dim + 1:])
        views.append((shape, strides, start * strides[dim] if n else 0))
        start += n
    return views


# ------------------------------------------------------------------ basic indexing
def _basic_view(shape: Tuple[int, ...], key) -> View:
    """The strided view ``x[key]`` of a C-contiguous x of ``shape``, PyTorch's rules: ints
    (negative from the end; out of range is IndexError), slices with positive steps,
    None (a new axis of size 1) and one Ellipsis."""
    if not isinstance(key, tuple):
        key = (key,)
    for k in key:
        if isinstance(k, (bool, np.bool_)) or not (
                k is None or k is Ellipsis or isinstance(k, (slice, numbers.Integral))):
            kind = type(k).__name__
            raise NotImplementedError(
                f"index: integer-array and boolean-mask indexing are not supported yet; "
                f"expected ints, slices, None or Ellipsis, got a {kind}")
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexOutOfBoundsError("index: an index can only have a single ellipsis ('...')")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > len(shape):
        raise IndexOutOfBoundsError(f"index: too many indices for tensor of dimension {len(shape)} "
                         f"(got {used})")
    if Ellipsis in key:
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - used) + key[i + 1:]
    else:
        key = key + (slice(None),) * (len(shape) - used)
    strides = contiguous_strides(shape)
    out_shape, out_strides, offset, axis = [], [], 0, 0
    for k in key:
        if k is None:
            out_shape.append(1)
            out_strides.append(0)
            continue
        n, s = shape[axis], strides[axis]
        if isinstance(k, slice):
            if k.step is not None and k.step <= 0:
                raise ValueError(f"index: step must be greater than zero, got {k.step}")
            start, stop, step = k.indices(n)
            length = len(range(start, stop, step))
            if length:
                offset += start * s
            out_shape.append(length)
            out_strides.append(s * step)
        else:
            i = int(k)
            if not -n <= i < n:
                raise IndexOutOfBoundsError(f"index: index {i} is out of bounds for dimension {axis} "
                                 f"with size {n}")
            offset += (i % n) * s
        axis += 1
    if 0 in out_shape:
        offset = 0
    return tuple(out_shape), tuple(out_strides), offset


def getitem(x, key):
    """``x[key]`` for basic indices: a copy (ferrograd materializes views), with gradient."""
    require_tensor(x, "input")
    return Index.apply(x, _basic_view(x.shape, key))


def narrow(x, dim: int, start: int, length: int):
    """The ``length`` elements of ``dim`` from ``start`` (torch.narrow)."""
    require_tensor(x, "input")
    d = _dim_of_tensor(x, dim, "narrow")
    n = x.shape[d]
    for name, v in (("start", start), ("length", length)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name}: expected an integer, got {v!r}")
    start = int(start) + n if -n <= start < 0 else int(start)
    if not 0 <= start <= n or length < 0 or start + length > n:
        raise IndexOutOfBoundsError(f"start: narrow({start}, {length}) runs outside dimension {d} of "
                         f"size {n}")
    return getitem(x, (slice(None),) * d + (slice(start, start + int(length)),))


def split(x, split_size_or_sections, dim: int = 0):
    """torch.split: chunks of ``split_size`` along ``dim`` (the last one smaller), or
    pieces of the listed sizes (which must add up to the dimension)."""
    require_tensor(x, "input")
    d = _dim_of_tensor(x, dim, "split")
    n = x.shape[d]
    s = split_size_or_sections
    if isinstance(s, numbers.Integral) and not isinstance(s, bool):
        if s <= 0 and not (s == 0 and n == 0):
            raise ValueError(f"split_size: expected a positive size, got {s}")
        sizes = [min(int(s), n - i) for i in range(0, n, int(s))] if n else [0]
    elif isinstance(s, (list, tuple)) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in s):
        sizes = [int(v) for v in s]
        if sum(sizes) != n:
            raise ValueError(f"split_size_or_sections: sizes {list(s)} add up to {sum(sizes)}, "
                             f"expected dimension {d}'s size {n}")
    else:
        raise TypeError(f"split_size_or_sections: expected a positive int or a list of "
                        f"non-negative ints, got {s!r}")
    out, start = [], 0
    for size in sizes:
        out.append(narrow(x, d, start, size))
        start += size
    return tuple(out)


def chunk(x, chunks: int, dim: int = 0):
    """torch.chunk: at most ``chunks`` pieces of ceil(size / chunks) along ``dim``."""
    if isinstance(chunks, bool) or not isinstance(chunks, numbers.Integral) or chunks <= 0:
        raise ValueError(f"chunks: expected a positive integer, got {chunks!r}")
    require_tensor(x, "input")
    n = x.shape[_dim_of_tensor(x, dim, "chunk")]
    return split(x, max(1, -(-n // int(chunks))), dim)


def unbind(x, dim: int = 0):
    """The slices of ``dim``, each without it (torch.unbind)."""
    require_tensor(x, "input")
    d = _dim_of_tensor(x, dim, "unbind")
    return tuple(getitem(x, (slice(None),) * d + (i,)) for i in range(x.shape[d]))


def cat(tensors, dim: int = 0):
    """Join tensors along an existing ``dim`` (torch.cat): same ndim, dtype and backend,
    equal sizes but in ``dim``."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise ValueError(f"tensors: expected a non-empty list of Tensors, got {tensors!r}")
    for i, t in enumerate(tensors):
        require_tensor(t, f"tensors[{i}]")
    first = tensors[0]
    d = _dim_of_tensor(first, dim, "cat")
    for i, t in enumerate(tensors[1:], 1):
        if t.dtype != first.dtype:
            raise TypeError(f"tensors[{i}]: expected dtype {first.dtype} like tensors[0], "
                            f"got {t.dtype}")
        if t.ndim != first.ndim or any(a != b for j, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if j != d):
            raise ValueError(f"tensors[{i}]: sizes must match except in dimension {d}: "
                             f"expected shape like {first.shape}, got {t.shape}")
    return Cat.apply(*tensors, d)


def stack(tensors, dim: int = 0):
    """Join equal-shaped tensors along a new ``dim`` (torch.stack)."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise ValueError(f"tensors: expected a non-empty list of Tensors, got {tensors!r}")
    for i, t in enumerate(tensors):
        require_tensor(t, f"tensors[{i}]")
        if t.shape != tensors[0].shape:
            raise ValueError(f"tensors[{i}]: stack expects each tensor to be equal size, "
                             f"got {t.shape} and {tensors[0].shape} at entry 0")
    d = normalize_dim(dim, tensors[0].ndim + 1)
    return cat([getitem(t, (slice(None),) * d + (None,)) for t in tensors], d)
