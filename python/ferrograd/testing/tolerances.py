"""Tolerances by dtype, stated once for the whole test suite (and for users' own tests).

| dtype    | elementwise                | reductions / GEMM (normwise)     |
| -------- | -------------------------- | -------------------------------- |
| float64  | rtol 1e-10, atol 1e-12     | rtol 1e-10 of max(abs(expected)) |
| float32  | rtol 1e-5,  atol 1e-6      | rtol 1e-4 of max(abs(expected))  |
| tf32     | rtol 1e-3,  atol 1e-3      | rtol 1e-3 of max(abs(expected))  |

"elementwise" bounds each element on its own: ``|a - e| <= atol + rtol * |e|``.
"reduction" (also spelled "gemm") is for results that sum many terms, where cancellation
makes an element's own relative error meaningless: the bound is normwise,
``|a - e| <= atol + rtol * |e| + rtol * scale`` with ``scale`` the largest magnitude in
``expected`` (or a larger magnitude the caller passes, e.g. the sum of ``|x|`` that fed a sum).

NaN must meet NaN and ±inf must meet the same infinity: a backend may not turn an
overflow into a finite number or a finite result into NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

KINDS = ("elementwise", "reduction", "gemm")


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    normwise: bool


#: dtype name -> kind -> Tolerance. The only place the suite's tolerances are written down.
TOLERANCES = {
    "float64": {
        "elementwise": Tolerance(rtol=1e-10, atol=1e-12, normwise=False),
        "reduction": Tolerance(rtol=1e-10, atol=1e-12, normwise=True),
    },
    "float32": {
        "elementwise": Tolerance(rtol=1e-5, atol=1e-6, normwise=False),
        "reduction": Tolerance(rtol=1e-4, atol=1e-5, normwise=True),
    },
    # TensorFloat-32 GEMMs (10-bit mantissa inputs) on GPUs
    "tf32": {
        "elementwise": Tolerance(rtol=1e-3, atol=1e-3, normwise=False),
        "reduction": Tolerance(rtol=1e-3, atol=1e-3, normwise=True),
    },
}


def _dtype_name(dtype) -> str:
    if isinstance(dtype, str) and dtype == "tf32":
        return "tf32"
    name = np.dtype(dtype).name
    if name not in TOLERANCES:
        raise ValueError(f"dtype: expected float32, float64 or 'tf32', got {dtype!r}")
    return name


def tolerance(dtype, kind: str = "elementwise") -> Tolerance:
    """The Tolerance for ``dtype`` (numpy dtype or "tf32") and ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if kind == "gemm":
        kind = "reduction"
    return TOLERANCES[_dtype_name(dtype)][kind]


def assert_close(actual, expected, dtype=None, kind: str = "elementwise",
                 scale: Optional[float] = None, msg: str = "") -> None:
    """Assert ``actual`` matches ``expected`` within the suite's tolerance for ``dtype``.

    ``dtype`` defaults to ``expected``'s dtype. Shapes must match exactly; NaN must match
    NaN and infinities must match in sign. Raises AssertionError describing the worst
    element otherwise.
    """
    a = np.asarray(actual)
    e = np.asarray(expected)
    if dtype is None:
        dtype = e.dtype
    tol = tolerance(dtype, kind)
    prefix = f"{msg}: " if msg else ""
    if a.shape != e.shape:
        raise AssertionError(f"{prefix}shape mismatch: actual {a.shape}, expected {e.shape}")
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    nan_a, nan_e = np.isnan(a64), np.isnan(e64)
    if not np.array_equal(nan_a, nan_e):
        idx = np.argwhere(nan_a != nan_e)[0]
        raise AssertionError(
            f"{prefix}NaN mismatch at {tuple(idx)}: actual {a64[tuple(idx)]!r}, "
            f"expected {e64[tuple(idx)]!r}")
    inf_a, inf_e = np.isinf(a64), np.isinf(e64)
    if not np.array_equal(np.where(inf_a, np.sign(a64), 0), np.where(inf_e, np.sign(e64), 0)):
        idx = np.argwhere((inf_a != inf_e) | (inf_a & (np.sign(a64) != np.sign(e64))))[0]
        raise AssertionError(
            f"{prefix}inf mismatch at {tuple(idx)}: actual {a64[tuple(idx)]!r}, "
            f"expected {e64[tuple(idx)]!r}")
    finite = np.isfinite(e64)
    if not finite.any():
        return
    diff = np.zeros_like(e64)
    diff[finite] = np.abs(a64[finite] - e64[finite])
    bound = tol.atol + tol.rtol * np.abs(np.where(finite, e64, 0.0))
    if tol.normwise:
        s = float(np.max(np.abs(e64[finite])))
        if scale is not None:
            s = max(s, float(scale))
        bound = bound + tol.rtol * s
    bad = finite & (diff > bound)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        worst = tuple(np.unravel_index(np.argmax(np.where(finite, diff - bound, -np.inf)), e64.shape))
        raise AssertionError(
            f"{prefix}{int(bad.sum())} of {e64.size} elements differ beyond "
            f"{np.dtype(dtype).name if dtype != 'tf32' else 'tf32'} {kind} tolerance "
            f"(rtol={tol.rtol}, atol={tol.atol}, normwise={tol.normwise}); first at {idx}: "
            f"actual {a64[idx]!r}, expected {e64[idx]!r}; worst at {worst}: actual "
            f"{a64[worst]!r}, expected {e64[worst]!r} (|diff| {diff[worst]:.3e} > {bound[worst]:.3e})")
