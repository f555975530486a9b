"""Pooling geometry shared by the backends: argument checks and window tables.

Every 2-D pooling layer (max, average, adaptive max, adaptive average) is described, per
spatial axis, by a table of windows: output position ``o`` reads the input positions
``start[o] + j * step`` for ``j`` in ``[0, count[o])``, skipping those outside
``[0, size)`` (padding). The rust and cuda kernels take these tables, so the output-size
rules of PyTorch live in one place (here); the numpy backend computes the same layers
its own, more literal way, and the tests compare the two.

* max_pool2d: ``start = o * stride - padding``, ``count = kernel_size``, ``step = dilation``;
  output size ``floor_or_ceil((size + 2 p - d (k - 1) - 1) / s) + 1``, and with ceil_mode
  the last window must start inside the input or the left padding (PyTorch's rule).
* avg_pool2d: the same with ``step = 1``; the divisor per axis (``factor``) is the window
  clipped to the padded input (count_include_pad) or to the input.
* adaptive pools: ``start = floor(o * size / out)``, ``end = ceil((o + 1) * size / out)``,
  ``count = end - start``, ``step = 1`` (windows may overlap; out may exceed size).
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ._validate import INT64_MAX, check_fits_memory, pair


#: the largest size argument: sizes cross into the kernels as int64


def stride_pair(stride, kernel_size) -> Tuple[int, int]:
    """stride as (h, w); None (or an empty sequence) means kernel_size, as in PyTorch."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel_size
    return pair(stride, "stride", 1)


def check_input4d(shape, name: str = "input") -> None:
    if len(shape) != 4:
        raise ValueError(f"{name}: expected a 4-D array (N, C, H, W), got shape {tuple(shape)}")
    if shape[2] == 0 or shape[3] == 0:
        raise ValueError(f"{name}: expected non-zero spatial sizes, got shape {tuple(shape)}")


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape for one axis (before the 'too small' check)."""
    num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1  # floor division rounds towards -inf, like div_rtn
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window would start in the right padding
    return out


@dataclass(frozen=True, eq=False)
class Axis:
    """Window table of one spatial axis (see the module docstring). Tables are cached
    (one object per geometry) and read-only; backends may keep derived data in ``cache``
    (hashing and equality are by identity)."""

    size: int
    start: np.ndarray   # int64, one per output position
    count: np.ndarray   # int64
    step: int
    factor: np.ndarray  # int64, average pools' divisor along this axis (unused by max)
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for a in (self.start, self.count, self.factor):
            a.flags.writeable = False

    @property
    def out(self) -> int:
        return int(self.start.shape[0])

    def inverse(self) -> Tuple[np.ndarray, np.ndarray]:
        """For each input position i: the outputs [lo[i], hi[i]) whose window span
        [start, start + (count - 1) * step] contains i (start and span end never decrease
        with o, so that set is a range). Used by gather-style backward kernels."""
        end = self.start + np.maximum(self.count - 1, 0) * self.step
        i = np.arange(self.size)
        lo = np.searchsorted(end, i, side="left")
        hi = np.searchsorted(self.start, i, side="right")
        return lo.astype(np.int64), np.maximum(hi, lo).astype(np.int64)


def pool_axes(shape, kernel_size, stride, padding, dilation, ceil_mode: bool,
              count_include_pad: bool = True, kind: str = "max") -> Tuple[Axis, Axis]:
    """Window tables (rows, cols) of max_pool2d / avg_pool2d on an (N, C, H, W) input.

    Checks what PyTorch checks: padding at most half the kernel, and an output of at least
    one element. ``kind`` ("max" or "avg") only changes the error messages' layer name."""
    check_input4d(shape)
    k = pair(kernel_size, "kernel_size", 1)
    s = stride_pair(stride, kernel_size)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    return _pool_axes(tuple(int(v) for v in shape[2:]), k, s, p, d, bool(ceil_mode),
                      bool(count_include_pad), kind)


@functools.lru_cache(maxsize=256)
def _pool_axes(hw, k, s, p, d, ceil_mode, count_include_pad, kind):
    shape = (0, 0) + hw
    for i in range(2):
        if p[i] > k[i] // 2:
            raise ValueError(
                f"padding: expected at most half of kernel_size ({k} // 2 = "
                f"({k[0] // 2}, {k[1] // 2})), got {p}")
    axes = []
    for i, size in enumerate(shape[2:]):
        out = pool_output_size(size, k[i], s[i], p[i], d[i], ceil_mode)
        if out < 1:
            raise ValueError(
                f"kernel_size: {kind}_pool2d of input spatial size {tuple(shape[2:])} with "
                f"kernel_size={k}, stride={s}, padding={p}, dilation={d} gives an empty "
                f"output (the kernel is larger than the padded input)")
        start = np.arange(out, dtype=np.int64) * s[i] - p[i]
        count = np.full(out, k[i], dtype=np.int64)
        if count_include_pad:  # window clipped to the padded input
            factor = np.minimum(start + k[i], size + p[i]) - start
        else:  # window clipped to the input
            factor = np.minimum(start + k[i], size) - np.maximum(start, 0)
        axes.append(Axis(int(size), start, count, d[i], factor.astype(np.int64)))
    return axes[0], axes[1]


def adaptive_output_size(shape, output_size) -> Tuple[int, int]:
    """output_size as (oh, ow): an int, or a pair whose None entries keep the input size."""
    check_input4d(shape)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size: expected an int or a pair, got {tuple(output_size)!r}")
        items = tuple(output_size)
    else:
        items = (output_size, output_size)
    out = []
    for v, size in zip(items, shape[2:]):
        if v is None:
            v = size
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise TypeError(f"output_size: expected ints (or None), got {output_size!r}")
        if not 1 <= v <= INT64_MAX:
            raise ValueError(f"output_size: expected sizes in [1, 2**63 - 1], got {output_size!r}")
        out.append(int(v))
    # float32 at least: an impossible output is a MemoryError before any table is built
    check_fits_memory(int(shape[0]) * int(shape[1]) * out[0] * out[1], 4,
                      f"adaptive pool output of {out[0]}x{out[1]}")
    return out[0], out[1]


def adaptive_axis(size: int, out: int) -> Axis:
    o = np.arange(out, dtype=np.int64)
    start = (o * size) // out
    end = -((-(o + 1) * size) // out)  # ceil((o + 1) * size / out)
    count = end - start
    return Axis(int(size), start, count, 1, count.copy())


def adaptive_axes(shape, output_size) -> Tuple[Axis, Axis]:
    oh, ow = adaptive_output_size(shape, output_size)
    return _adaptive_axis(int(shape[2]), oh), _adaptive_axis(int(shape[3]), ow)


_adaptive_axis = functools.lru_cache(maxsize=256)(adaptive_axis)


def check_divisor(divisor_override: Optional[int]) -> int:
    """0 for None, else the divisor (a non-zero int, as PyTorch requires)."""
    if divisor_override is None:
        return 0
    if not isinstance(divisor_override, numbers.Integral) or isinstance(divisor_override, bool):
        raise TypeError(f"divisor_override: expected an int or None, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError("divisor_override: expected a non-zero int, got 0")
    return int(divisor_override)


def check_grad_shape(gy, shape, name: str = "gy") -> None:
    if tuple(gy.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(gy.shape)}")


def check_indices(indices, y_shape) -> None:
    if tuple(indices.shape) != tuple(y_shape):
        raise ValueError(f"indices: expected shape {tuple(y_shape)}, got {tuple(indices.shape)}")
    if np.dtype(indices.dtype) != np.dtype(np.int64):
        raise TypeError(f"indices: expected int64, got dtype {indices.dtype}")


def clipped(axis: Axis) -> Tuple[np.ndarray, np.ndarray]:
    """(start, count) of each window cut down to the positions inside the input: the
    same positions in the same order, but a kernel's loop over a window is never longer
    than the axis (kernel_size may be 2**62 where the window is clipped to a 4-pixel
    input), and every value fits the int32 the cuda kernels index with. A window with no
    position inside gets count 0. The Axis itself is unchanged (``inverse`` needs the
    unclipped spans, whose ends never decrease)."""
    hit = axis.cache.get("clipped")
    if hit is None:
        st, n, step = axis.start, axis.count, axis.step
        first = np.where(st >= 0, 0, -(st // step))            # ceil(-start / step)
        room = np.maximum(axis.size - st, 0)
        end = np.minimum(n, -(-room // step))                   # ceil((size - start) / step)
        count = np.maximum(end - first, 0)
        start = np.where(count > 0, st + first * step, 0)
        hit = axis.cache["clipped"] = (start.astype(np.int64), count.astype(np.int64))
    return hit


def table(axis: Axis):
    """An Axis as the (start, count, step, factor) lists the Rust kernels take, windows
    clipped to the input (see ``clipped``)."""
    t = axis.cache.get("table")
    if t is None:
        start, count = clipped(axis)
        t = axis.cache["table"] = (start.tolist(), count.tolist(), int(axis.step),
                                   axis.factor.tolist())
    return t
