"""Input checks shared by the Python-side backends (numpy, and the cuda wrappers).

Each check raises ValueError/TypeError naming the argument, what was expected and what
was received. The Rust crate has its own checks (rust_core/src/error.rs) because its
functions can be called directly.
"""

from __future__ import annotations

import functools
import numbers
from typing import Optional, Tuple

import numpy as np

from .base import BINARY_OPS, GELU_APPROXIMATIONS, REDUCTIONS, UNARY_OPS

#: every backend takes sizes as int64 (PyTorch too)
INT64_MAX = 2**63 - 1

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@functools.lru_cache(maxsize=1)
def _memory_limit() -> Optional[int]:
    """The machine's RAM plus swap in bytes (/proc/meminfo; None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            kib = {line.split(":")[0]: int(line.split()[1]) for line in f if line[:4] in ("MemT", "Swap")}
        return (kib["MemTotal"] + kib.get("SwapTotal", 0)) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


def check_fits_memory(numel: int, itemsize: int, what: str) -> None:
    """MemoryError for a result larger than the machine's memory. Under
    vm.overcommit_memory = 1 (common on GPU hosts) the kernel grants such a request lazily
    and kills the process when its pages are touched; the default heuristic mode refuses
    it, which this does everywhere (rust_core's alloc.rs applies the same rule)."""
    limit = _memory_limit()
    nbytes = int(numel) * int(itemsize)
    if limit is not None and nbytes > limit:
        raise MemoryError(f"{what}: cannot allocate {int(numel)} elements ({nbytes / 2**30:.3g} GiB) "
                          f"for the result, more than this machine's {limit / 2**30:.3g} GiB")


def check_float(x, name: str) -> None:
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {x.dtype}")


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_b}: expected the shape of {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")
    if np.dtype(a.dtype) != np.dtype(b.dtype):
        raise TypeError(f"{name_b}: expected dtype {a.dtype} like {name_a}, got {b.dtype}")


def check_sign_mask(mask, gy) -> None:
    """A packed mask of x > 0 (``base.py``) for the ``gy.size`` elements of gy."""
    ndim = len(mask.shape)
    if np.dtype(mask.dtype) != np.dtype(np.uint8) or ndim != 1:
        raise TypeError(
            f"mask: expected a 1-D uint8 array (from a *_forward_mask kernel), got a "
            f"{ndim}-D array of dtype {mask.dtype}")
    want = -(-int(gy.size) // 8)
    if mask.shape[0] != want:
        raise ValueError(
            f"mask: expected {want} bytes (one bit per element of gy, {gy.size} elements), "
            f"got {mask.shape[0]}")


def check_binary_op(op: str) -> None:
    if op not in BINARY_OPS:
        raise ValueError(f"op: expected one of {BINARY_OPS}, got {op!r}")


def check_unary_op(op: str) -> None:
    if op not in UNARY_OPS:
        raise ValueError(f"op: expected one of {UNARY_OPS}, got {op!r}")


def check_gelu_approximate(approximate: str) -> None:
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate: expected one of {GELU_APPROXIMATIONS}, got {approximate!r}")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")


def check_prelu_weight(x, weight) -> None:
    if len(weight.shape) != 1:
        raise ValueError(f"weight: expected a 1-D array of alphas, got shape {tuple(weight.shape)}")
    n = weight.shape[0]
    if n != 1:
        if len(x.shape) < 2 or x.shape[1] != n:
            got = x.shape[1] if len(x.shape) >= 2 else "no channel axis"
            raise ValueError(
                f"weight: expected 1 alpha or one per channel (x.shape[1] = {got}), got {n}")
    if np.dtype(weight.dtype) != np.dtype(x.dtype):
        raise TypeError(f"weight: expected dtype {x.dtype} like x, got {weight.dtype}")


def check_matmul(a, b, transpose_a: bool, transpose_b: bool) -> None:
    check_float(a, "a")
    check_float(b, "b")
    if len(a.shape) not in (2, 3) or len(a.shape) != len(b.shape):
        raise ValueError(
            f"b: expected a and b both 2-D or both 3-D, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a.shape) == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"b: expected batch size {a.shape[0]} like a, got {b.shape[0]}")
    ka = a.shape[-2] if transpose_a else a.shape[-1]
    kb = b.shape[-1] if transpose_b else b.shape[-2]
    if ka != kb:
        raise ValueError(
            f"b: inner dimensions differ: a gives {ka}, b gives {kb} "
            f"(shapes {tuple(a.shape)} and {tuple(b.shape)})")
    if np.dtype(a.dtype) != np.dtype(b.dtype):
        raise TypeError(f"b: expected dtype {a.dtype} like a, got {b.dtype}")


def check_linear(x, weight, bias) -> None:
    check_float(x, "input")
    if len(x.shape) != 2:
        raise ValueError(f"input: expected shape (N, in_features), got {tuple(x.shape)}")
    if len(weight.shape) != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight: expected shape (out_features, {x.shape[1]}), got {tuple(weight.shape)}")
    if np.dtype(weight.dtype) != np.dtype(x.dtype):
        raise TypeError(f"weight: expected dtype {x.dtype} like input, got {weight.dtype}")
    if bias is not None:
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if np.dtype(bias.dtype) != np.dtype(x.dtype):
            raise TypeError(f"bias: expected dtype {x.dtype} like input, got {bias.dtype}")


def check_targets(logits, target) -> None:
    check_float(logits, "input")
    if len(logits.shape) != 2:
        raise ValueError(f"input: expected logits of shape (N, C), got {tuple(logits.shape)}")
    if np.dtype(target.dtype) != np.dtype(np.int64):
        raise TypeError(f"target: expected int64 class indices, got dtype {target.dtype}")
    if tuple(target.shape) != (logits.shape[0],):
        raise ValueError(f"target: expected shape ({logits.shape[0]},), got {tuple(target.shape)}")
    if isinstance(target, np.ndarray) and target.size:
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= logits.shape[1]:
            bad = lo if lo < 0 else hi
            raise ValueError(f"target: expected class indices in [0, {logits.shape[1]}), got {bad}")


# ------------------------------------------------------------------ normalization
def _check_param(p, shape, name: str, like) -> None:
    if p is None:
        return
    if tuple(p.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(p.shape)}")
    if np.dtype(p.dtype) != np.dtype(like.dtype):
        raise TypeError(f"{name}: expected dtype {like.dtype} like input, got {p.dtype}")


def check_eps(eps) -> None:
    if not isinstance(eps, (int, float, np.floating)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps: expected a non-negative number, got {eps!r}")


def check_layer_norm(x, weight, bias, normalized_ndim: int) -> None:
    check_float(x, "input")
    nd = len(x.shape)
    if not isinstance(normalized_ndim, (int, np.integer)) or not 1 <= normalized_ndim <= nd:
        raise ValueError(f"normalized_ndim: expected an integer in [1, {nd}] for an input of "
                         f"shape {tuple(x.shape)}, got {normalized_ndim!r}")
    shape = tuple(x.shape[nd - normalized_ndim:])
    _check_param(weight, shape, "weight", x)
    _check_param(bias, shape, "bias", x)


def check_group_norm(x, weight, bias, num_groups: int) -> None:
    check_float(x, "input")
    if len(x.shape) < 2:
        raise ValueError(f"input: expected shape (N, C, *), got {tuple(x.shape)}")
    c = x.shape[1]
    if not isinstance(num_groups, (int, np.integer)) or isinstance(num_groups, bool) or num_groups <= 0:
        raise ValueError(f"num_groups: expected a positive integer, got {num_groups!r}")
    if c % num_groups:
        raise ValueError(f"num_groups: expected a divisor of the number of channels {c}, "
                         f"got {num_groups}")
    _check_param(weight, (c,), "weight", x)
    _check_param(bias, (c,), "bias", x)


def check_batch_norm(x, weight, bias, running_mean, running_var, training: bool) -> None:
    check_float(x, "input")
    if len(x.shape) < 2:
        raise ValueError(f"input: expected shape (N, C, *), got {tuple(x.shape)}")
    c = x.shape[1]
    for p, name in ((weight, "weight"), (bias, "bias"), (running_mean, "running_mean"),
                    (running_var, "running_var")):
        _check_param(p, (c,), name, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_var: expected running_mean and running_var both given or both None")
    if training:
        per_channel = int(np.prod(x.shape, dtype=np.int64)) // c if c else 0
        if per_channel <= 1:
            raise ValueError(f"input: expected more than 1 value per channel when training, got "
                             f"input of shape {tuple(x.shape)}")
    elif running_mean is None:
        raise ValueError("running_mean: expected running statistics when training=False, got None")


def check_batch_norm_backward(x, weight, mean, rstd) -> None:
    check_float(x, "input")
    if len(x.shape) < 2:
        raise ValueError(f"input: expected shape (N, C, *), got {tuple(x.shape)}")
    c = x.shape[1]
    for p, name in ((weight, "weight"), (mean, "mean"), (rstd, "rstd")):
        _check_param(p, (c,), name, x)


def pair(value, name: str, minimum: int) -> Tuple[int, int]:
    """An int or a pair of ints as (h, w), each >= minimum and <= 2**63 - 1 (kernel sizes,
    strides, padding, dilation of conv and pooling); TypeError/ValueError otherwise."""
    # fast paths first: this runs on every pooling call (ABC isinstance checks are slow)
    if type(value) is int and minimum <= value <= INT64_MAX:
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int \
            and type(value[1]) is int and minimum <= value[0] <= INT64_MAX \
            and minimum <= value[1] <= INT64_MAX:
        return value
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = (value[0], value[0])
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {tuple(value)!r}")
        items = tuple(value)
    else:
        items = (value, value)
    for v in items:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
        if v > INT64_MAX:  # every backend takes sizes as int64 (PyTorch too)
            raise ValueError(f"{name}: expected values <= 2**63 - 1, got {value!r}")
    return int(items[0]), int(items[1])
