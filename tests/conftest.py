"""Shared fixtures: hypothesis profiles and the backend parameter.

HYPOTHESIS_PROFILE selects the profile: "ci" (deterministic, modest), "dev" (the
default) or "thorough" (many examples, for local runs).

Every op test runs on each backend through the ``backend`` fixture:
* "numpy": the reference, always there;
* "rust": the package always builds ferrograd._core, so a missing extension is a
  failure, never a skip;
* "cuda": marked ``cuda``; skipped, with the reason, when ``fg.get_backend("cuda")`` raises
  (no PyCUDA or no GPU).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import ferrograd as fg

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=20, print_blob=True, **_common)
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

BACKENDS = ["numpy", "rust", pytest.param("cuda", marks=pytest.mark.cuda)]
#: backends that run float64 gradcheck (cuda gradients are compared with numpy instead)
CPU_BACKENDS = ["numpy", "rust"]
FLOAT_DTYPES = [np.float32, np.float64]


def require_backend(name: str) -> str:
    """Return ``name`` if that backend can run here; skip cuda, fail rust otherwise."""
    try:
        fg.get_backend(name)
    except Exception as exc:  # noqa: BLE001 - the reason goes into the report
        if name == "cuda":
            pytest.skip(f"cuda backend unavailable: {type(exc).__name__}: {exc}")
        pytest.fail(f"{name} backend unavailable (it is always built with the package): "
                    f"{type(exc).__name__}: {exc}", pytrace=False)
    return name


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """The name of a backend that can run here (see the module docstring)."""
    return require_backend(request.param)


@pytest.fixture(scope="session", params=CPU_BACKENDS)
def cpu_backend(request) -> str:
    """numpy or rust: the backends whose gradients are checked with float64 gradcheck."""
    return require_backend(request.param)


@pytest.fixture(scope="session", params=FLOAT_DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def dtype_backend_ok(backend: str, dtype) -> None:
    """cuda is float32-only by the contract ("float64 too in numpy and rust")."""
    if backend == "cuda" and np.dtype(dtype) == np.float64:
        pytest.skip("cuda backend: float64 is not part of its contract")
