"""Shape and placement ops: reshape, permute/transpose, flatten, and moving between backends."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np

from ..autograd.engine import Function
from ..autograd.rules import full_shape, sum_to
from ._checks import normalize_dim


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = tuple(x.shape)
        return ctx.backend.reshape(x, shape)

    @staticmethod
    def backward(ctx, gy):
        return ctx.backend.reshape(gy, ctx.in_shape)

    @staticmethod
    def jvp(ctx, out, v):
        return ctx.backend.reshape(v, tuple(out.shape))

    @staticmethod
    def backward_graph(ctx, inputs, g):
        return g.reshape(*ctx.in_shape) if ctx.in_shape else g.reshape(())


class Permute(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.inverse = tuple(int(i) for i in np.argsort(axes))
        return ctx.backend.permute(x, axes)

    @staticmethod
    def backward(ctx, gy):
        return ctx.backend.permute(gy, ctx.inverse)

    @staticmethod
    def jvp(ctx, out, v):
        return ctx.backend.permute(v, tuple(int(i) for i in np.argsort(ctx.inverse)))

    @staticmethod
    def backward_graph(ctx, inputs, g):
        from .. import functional as F

        return F.permute(g, ctx.inverse)


class ToBackend(Function):
    @staticmethod
    def forward(ctx, x, target):
        ctx.output_backend = target  # the engine wraps the output on this backend
        return target.from_numpy(np.require(ctx.backend.to_numpy(x), requirements="C"))

    @staticmethod
    def backward(ctx, gy):
        # gy lives on the target backend; bring it back to the source
        return ctx.backend.from_numpy(np.require(ctx.output_backend.to_numpy(gy), requirements="C"))

    @staticmethod
    def jvp(ctx, out, v):
        return ctx.output_backend.from_numpy(np.require(ctx.backend.to_numpy(v), requirements="C"))


class ToDtype(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.in_dtype = np.dtype(x.dtype)
        return _cast(ctx.backend, x, dtype)

    @staticmethod
    def backward(ctx, gy):
        return _cast(ctx.backend, gy, ctx.in_dtype)

    @staticmethod
    def jvp(ctx, out, v):
        return _cast(ctx.backend, v, np.dtype(out.dtype))

    @staticmethod
    def backward_graph(ctx, inputs, g):
        return g.to(dtype=ctx.in_dtype)


def _cast(backend, x, dtype):
    """x as ``dtype`` (through the host: numpy and rust arrays are host arrays, and the
    cuda backend's contract has float32 only, so it refuses float64 in from_numpy)."""
    return backend.from_numpy(np.require(np.asarray(backend.to_numpy(x)).astype(dtype), requirements="C"))


def to_dtype(x, dtype):
    """x converted to ``dtype`` (float32, float64 or int64). Between floats it is
    differentiable (the gradient is cast back); to int64 the result is a constant, as in
    PyTorch (values truncated toward zero)."""
    from ..tensor import Tensor

    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return Tensor._wrap(_cast(x.backend, x.data, dtype), x.backend)
    return ToDtype.apply(x, dtype)


def _resolve_shape(shape: Sequence[int], size: int) -> Tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    unknown = [i for i, d in enumerate(shape) if d == -1]
    if len(unknown) > 1 or any(d < -1 for d in shape):
        raise ValueError(f"shape: expected non-negative sizes and at most one -1, got {shape}")
    known = math.prod(d for d in shape if d != -1)  # Python ints: no overflow, and cheap
    if unknown:
        if known == 0 or size % known:
            raise ValueError(f"shape: {shape} is invalid for a tensor of {size} elements")
        shape = shape[:unknown[0]] + (size // known,) + shape[unknown[0] + 1:]
    elif known != size:
        raise ValueError(f"shape: {shape} is invalid for a tensor of {size} elements")
    return shape


def reshape(x, shape):
    return Reshape.apply(x, _resolve_shape(shape, x.size))


def permute(x, dims):
    axes = tuple(normalize_dim(d, x.ndim, "dims") for d in dims)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"dims: expected a permutation of {x.ndim} dimensions, got {tuple(dims)}")
    return Permute.apply(x, axes)


def transpose(x, dim0: int, dim1: int):
    axes = list(range(x.ndim))
    a, b = normalize_dim(dim0, x.ndim, "dim0"), normalize_dim(dim1, x.ndim, "dim1")
    axes[a], axes[b] = axes[b], axes[a]
    return Permute.apply(x, tuple(axes))


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = normalize_dim(start_dim, x.ndim, "start_dim"), normalize_dim(end_dim, x.ndim, "end_dim")
    if s > e:
        raise ValueError(f"start_dim: expected <= end_dim, got {start_dim} > {end_dim}")
    n = int(np.prod(x.shape[s:e + 1], dtype=np.int64))
    return reshape(x, x.shape[:s] + (n,) + x.shape[e + 1:])


class Expand(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = tuple(x.shape)
        return ctx.backend.expand(x, shape)

    @staticmethod
    def backward(ctx, gy):
        return ctx.backend.sum_to_shape(gy, ctx.in_shape)

    @staticmethod
    def jvp(ctx, out, v):
        return full_shape(ctx.backend, v, tuple(out.shape))

    @staticmethod
    def backward_graph(ctx, inputs, g):
        return sum_to(g, ctx.in_shape)


def expand(x, shape):
    """x broadcast to ``shape`` (numpy rules; -1 keeps that axis's size, as in PyTorch);
    backward sums over the broadcast axes."""
    shape = tuple(int(d) for d in shape)
    lead = len(shape) - x.ndim
    shape = tuple(x.shape[i - lead] if d == -1 and i >= lead else d for i, d in enumerate(shape))
    try:
        if tuple(np.broadcast_shapes(x.shape, shape)) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"shape: cannot expand a tensor of shape {x.shape} to {shape}") from None
    return x if x.shape == shape else Expand.apply(x, shape)


# ------------------------------------------------- shape ops built on reshape/permute/expand
def squeeze(x, dim=None):
    """x without size-1 dimensions (all of them, or those of ``dim``: an int or a tuple;
    a named dimension of another size stays, as in PyTorch)."""
    if dim is None:
        dims = [i for i, n in enumerate(x.shape) if n == 1]
    else:
        dims = [normalize_dim(d, x.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
    shape = tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))
    return x if shape == x.shape else reshape(x, shape)


def unsqueeze(x, dim: int):
    """x with a new size-1 dimension at ``dim`` (in [-ndim - 1, ndim])."""
    d = normalize_dim(dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def movedim(x, source, destination):
    """The dimensions ``source`` moved to ``destination`` (ints or equal-length tuples),
    the others in their order (torch.movedim)."""
    src = tuple(source) if isinstance(source, (tuple, list)) else (source,)
    dst = tuple(destination) if isinstance(destination, (tuple, list)) else (destination,)
    if len(src) != len(dst):
        raise ValueError(f"destination: expected as many dimensions as source ({len(src)}), "
                         f"got {len(dst)}")
    src = tuple(normalize_dim(d, x.ndim, "source") for d in src)
    dst = tuple(normalize_dim(d, x.ndim, "destination") for d in dst)
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ValueError(f"source, destination: expected distinct dimensions, got {source} "
                         f"and {destination}")
    order = [None] * x.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(x.ndim) if i not in src)
    return permute(x, tuple(o if o is not None else next(rest) for o in order))


def unflatten(x, dim: int, sizes):
    """Dimension ``dim`` split into ``sizes`` (one of them may be -1)."""
    d = normalize_dim(dim, x.ndim)
    sizes = _resolve_shape(tuple(sizes), x.shape[d])
    return reshape(x, x.shape[:d] + sizes + x.shape[d + 1:])


def repeat(x, *sizes):
    """x tiled ``sizes`` times along each dimension (torch.Tensor.repeat: at least x.ndim
    sizes; extra ones add leading dimensions)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) < x.ndim or any(isinstance(r, bool) or not isinstance(r, int) or r < 0
                                  for r in sizes):
        raise ValueError(f"sizes: expected at least {x.ndim} non-negative ints (one per "
                         f"dimension), got {sizes}")
    shape = (1,) * (len(sizes) - x.ndim) + x.shape
    # (1, n0, 1, n1, ...) expanded to (r0, n0, r1, n1, ...), then merged pairwise
    inter = tuple(v for n in shape for v in (1, n))
    target = tuple(v for r, n in zip(sizes, shape) for v in (r, n))
    out = reshape(expand(reshape(x, inter), target), tuple(r * n for r, n in zip(sizes, shape)))
    return out
