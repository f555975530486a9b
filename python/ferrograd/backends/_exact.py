"""One answer for matrix products whose float32 terms overflow (the kernel contract's rule,
shared with rust_core's ``ops::linear::exact_nonfinite``).

A product of two finite float32 values can overflow (1e10 * -1e30), and what the sum
then becomes depends on the BLAS's accumulation order and its use of FMA: with an
accumulator already at +inf, fma(1e10, -1e30, inf) stays inf; an accumulator that reached
-inf first gives inf - inf = NaN; a row whose exact sum is -inf can come out +inf.
OpenBLAS orders differently by shape (the same row gives NaN as a (1,3)@(3,1) product and
inf inside a (2,3)@(3,2) one). In float64 no product of float32 values overflows, so the
float64 sum rounded to float32 is the one order-independent answer: finite, ±inf with the
exact sum's sign, or NaN for genuine +inf and -inf terms or 0 * inf. So every non-finite
output whose row and column hold no NaN is recomputed that way; the rest pay one
``isfinite`` scan of the output.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def exact_nonfinite(out: np.ndarray, a: np.ndarray, b: np.ndarray,
                    init: Optional[np.ndarray] = None) -> np.ndarray:
    """Fixes ``out`` (m, n) = init + a (m, k) @ b (k, n) in place (see the module
    docstring) and returns it; ``init`` broadcasts to (m, n) (a bias row) or is None.
    float32 only: float64 products of float64 values overflow only past 1e154."""
    if out.dtype != np.float32 or out.size == 0 or a.shape[1] == 0:
        return out
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    rows, cols = np.nonzero(bad)
    a_rows = a[rows].astype(np.float64)            # (nbad, k)
    b_cols = b[:, cols].T.astype(np.float64)       # (nbad, k)
    genuine_nan = np.isnan(a_rows).any(axis=1) | np.isnan(b_cols).any(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        exact = (a_rows * b_cols).sum(axis=1)
        if init is not None:
            exact = exact + np.broadcast_to(init, out.shape)[rows, cols].astype(np.float64)
        keep = ~genuine_nan
        out[rows[keep], cols[keep]] = exact[keep].astype(np.float32)
    return out
