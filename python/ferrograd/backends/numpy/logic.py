"""The numpy backend: comparisons, logic, predicates, where and any/all (the contract's
"comparison, logic"), the reference, and the host half of the cuda backend's."""

from __future__ import annotations

import numpy as np

from ..base import COMPARE_OPS, LOGICAL_OPS, PREDICATES

_COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
            "gt": np.greater, "ge": np.greater_equal}
_LOGICAL = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}
_PREDICATE = {"isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite}


def _bool(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.bool_:
        raise TypeError(f"{name}: expected a bool array, got dtype {x.dtype}")
    return x


class LogicKernels:
    """The numpy backend's comparisons, logic, predicates, where and any/all."""

    def compare(self, op, a, b):
        if op not in COMPARE_OPS:
            raise ValueError(f"op: expected one of {COMPARE_OPS}, got {op!r}")
        with np.errstate(invalid="ignore"):
            return np.require(_COMPARE[op](a, b), requirements="C")

    def logical(self, op, a, b=None):
        if op not in LOGICAL_OPS:
            raise ValueError(f"op: expected one of {LOGICAL_OPS}, got {op!r}")
        if op == "not":
            return np.logical_not(_bool(a, "a"))
        return np.require(_LOGICAL[op](_bool(a, "a"), _bool(b, "b")), requirements="C")

    def predicate(self, op, x):
        if op not in PREDICATES:
            raise ValueError(f"op: expected one of {PREDICATES}, got {op!r}")
        return _PREDICATE[op](x)

    def where(self, cond, a, b):
        return np.require(np.where(_bool(cond, "condition"), a, b), requirements="C")

    def any_all(self, op, x, axes, keepdims):
        if op not in ("any", "all"):
            raise ValueError(f"op: expected 'any' or 'all', got {op!r}")
        f = np.any if op == "any" else np.all
        return np.asarray(f(_bool(x, "input"), axis=tuple(axes), keepdims=keepdims))
