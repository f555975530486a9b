"""Tensor creation beyond ``fg.tensor``, with PyTorch's names and defaults: ranges, the
identity, ``*_like``, random integers and permutations, and zero-copy construction from
NumPy or DLPack. Values are made on the host and moved to the backend once; random draws
come from ``ferrograd.random``'s host generator (``fg.manual_seed``).
"""

from __future__ import annotations

import numbers

import numpy as np

from .backends import get_backend
from .random import host_generator
from .tensor import _FLOAT_DTYPES, Tensor, _normalize_dtype, _shape_arg

#: PyTorch's dtype names (numpy dtypes here: ferrograd's arrays are numpy's or PyCUDA's)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)


def _make(arr: np.ndarray, backend, requires_grad: bool) -> Tensor:
    be = get_backend(backend)
    return Tensor(be.from_numpy(np.require(arr, requirements="C")), be, requires_grad=requires_grad)


def _number(value, name: str):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return value


def arange(start, end=None, step=1, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    """Values from start (inclusive) to end (exclusive) by step (torch.arange): int64 when
    start, end and step are all integers, float32 otherwise (unless ``dtype``)."""
    if end is None:
        start, end = 0, start
    start, end, step = _number(start, "start"), _number(end, "end"), _number(step, "step")
    if step == 0:
        raise ValueError("step: expected a non-zero step, got 0")
    if (end - start) * step < 0:
        raise ValueError(f"end: expected the range [{start}, {end}) to be walkable by step "
                         f"{step}, got an empty direction (PyTorch raises here too)")
    ints = all(isinstance(v, int) for v in (start, end, step))
    dt = _normalize_dtype(dtype) or (int64 if ints else float32)
    n = int(np.ceil((end - start) / step))
    arr = (start + step * np.arange(n, dtype=np.float64 if dt.kind == "f" else np.int64)).astype(dt)
    return _make(arr, backend, requires_grad)


def linspace(start, end, steps: int, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    """``steps`` evenly spaced values from start to end, both included (torch.linspace)."""
    start, end = _number(start, "start"), _number(end, "end")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {steps!r}")
    dt = _normalize_dtype(dtype) or float32
    return _make(np.linspace(start, end, int(steps), dtype=np.float64).astype(dt), backend,
                 requires_grad)


def eye(n: int, m=None, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    """The n x m identity (m defaults to n), float32 by default (torch.eye)."""
    n = _shape_arg((n,))[0]
    m = n if m is None else _shape_arg((m,))[0]
    return _make(np.eye(n, m, dtype=_normalize_dtype(dtype) or float32), backend, requires_grad)


def empty(*shape, dtype=None, backend=None, requires_grad=False) -> Tensor:
    """A tensor of ``shape`` whose values are unspecified (here: zeros)."""
    dt = _normalize_dtype(dtype) or float32
    return _make(np.zeros(_shape_arg(shape), dtype=dt), backend, requires_grad)


def _like(input, dtype, backend, name):
    if not isinstance(input, Tensor):
        raise TypeError(f"input: expected a Tensor, got {type(input).__name__} ({name})")
    dt = _normalize_dtype(dtype) or input.dtype
    return input.shape, dt, input.backend if backend is None else backend


def zeros_like(input, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    shape, dt, be = _like(input, dtype, backend, "zeros_like")
    return _make(np.zeros(shape, dt), be, requires_grad)


def ones_like(input, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    shape, dt, be = _like(input, dtype, backend, "ones_like")
    return _make(np.ones(shape, dt), be, requires_grad)


def full_like(input, fill_value, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    shape, dt, be = _like(input, dtype, backend, "full_like")
    if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real):
        raise TypeError(f"fill_value: expected a real number, got {fill_value!r}")
    return _make(np.full(shape, fill_value, dt), be, requires_grad)


def empty_like(input, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    return zeros_like(input, dtype=dtype, backend=backend, requires_grad=requires_grad)


def rand_like(input, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    shape, dt, be = _like(input, dtype, backend, "rand_like")
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"dtype: rand_like needs a float dtype, got {dt}")
    return _make(host_generator().random(shape).astype(dt), be, requires_grad)


def randn_like(input, *, dtype=None, backend=None, requires_grad=False) -> Tensor:
    shape, dt, be = _like(input, dtype, backend, "randn_like")
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"dtype: randn_like needs a float dtype, got {dt}")
    return _make(host_generator().standard_normal(shape).astype(dt), be, requires_grad)


def randint(low, high=None, size=None, *, dtype=None, backend=None) -> Tensor:
    """Integers uniform in [low, high) (torch.randint(low=0, high, size)), int64."""
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    low, high = _number(low, "low"), _number(high, "high")
    if not isinstance(low, int) or not isinstance(high, int):
        raise TypeError(f"low, high: expected integers, got {low!r} and {high!r}")
    if high <= low:
        raise ValueError(f"high: expected high > low, got low={low}, high={high}")
    if size is None:
        raise TypeError("size: expected a tuple of sizes, got none")
    shape = _shape_arg((size,) if not isinstance(size, (tuple, list)) else (tuple(size),))
    dt = _normalize_dtype(dtype) or int64
    return _make(host_generator().integers(low, high, size=shape).astype(dt), backend, False)


def randperm(n: int, *, dtype=None, backend=None) -> Tensor:
    """A random permutation of 0 .. n-1 (torch.randperm), int64."""
    n = _shape_arg((n,))[0]
    dt = _normalize_dtype(dtype) or int64
    return _make(host_generator().permutation(n).astype(dt), backend, False)


def from_numpy(array: np.ndarray, *, backend=None) -> Tensor:
    """A tensor that shares ``array``'s memory on the numpy and rust backends (writes to
    one show in the other, as torch.from_numpy); copied to the GPU on cuda. The dtype must
    be float32, float64 or int64."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array: expected a numpy.ndarray, got {type(array).__name__}")
    _normalize_dtype(array.dtype)  # TypeError for any other dtype
    be = get_backend(backend)
    return Tensor(be.from_numpy(array), be)


def from_dlpack(obj, *, backend=None) -> Tensor:
    """A tensor sharing the memory of a DLPack producer on the CPU (a torch CPU tensor, a
    numpy array, another ferrograd tensor), as torch.from_dlpack."""
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"obj: expected an object with __dlpack__, got {type(obj).__name__}")
    return from_numpy(np.from_dlpack(obj), backend=backend)
