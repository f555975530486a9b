"""Input checks shared by the Python-side backends (numpy, and the cuda wrappers).

Each check raises ValueError/TypeError naming the argument, what was expected and what
was received. The Rust crate has its own checks (rust_core/src/error.rs) because its
functions can be called directly.
"""

from __future__ import annotations

import numpy as np

from .base import BINARY_OPS, GELU_APPROXIMATIONS, REDUCTIONS, UNARY_OPS

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float(x, name: str) -> None:
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {x.dtype}")


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_b}: expected the shape of {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")
    if np.dtype(a.dtype) != np.dtype(b.dtype):
        raise TypeError(f"{name_b}: expected dtype {a.dtype} like {name_a}, got {b.dtype}")


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
