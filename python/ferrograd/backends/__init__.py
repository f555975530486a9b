"""Backend registry: ``get_backend("numpy" | "rust" | "cuda")``.

Backends are created lazily and once per process, so importing ferrograd never needs
the Rust extension or a GPU; asking for a backend that cannot run raises an error that
says why.
"""

from __future__ import annotations

from typing import Dict, List

# the packages, not the backends (those load on first use): fg.backends.cuda.matmul.allow_tf32
# and fg.backends.rust.cache_info() work before any backend exists
from . import cuda, rust  # noqa: F401
from .base import Backend

BACKEND_NAMES = ("numpy", "rust", "cuda")

_instances: Dict[str, Backend] = {}
_default = "numpy"


def get_backend(name) -> Backend:
    """The backend called ``name`` (a Backend instance is returned as it is)."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = _default
    if not isinstance(name, str) or name not in BACKEND_NAMES:
        raise ValueError(f"backend: expected one of {BACKEND_NAMES}, got {name!r}")
    inst = _instances.get(name)
    if inst is None:
        if name == "numpy":
            from .numpy import NumpyBackend
            inst = NumpyBackend()
        elif name == "rust":
            try:
                from .rust.backend import RustBackend
            except ImportError as exc:
                raise RuntimeError(
                    f"rust backend unavailable: the extension ferrograd._core could not be "
                    f"imported ({exc}); install the package with `pip install .`") from exc
            inst = RustBackend()
        else:
            from .cuda.backend import CudaBackend  # raises RuntimeError saying why if unusable
            inst = CudaBackend()
        _instances[name] = inst
    return inst


def available_backends() -> List[str]:
    """Names of the backends that can run in this process."""
    names = []
    for name in BACKEND_NAMES:
        try:
            get_backend(name)
        except Exception:
            continue
        names.append(name)
    return names


def set_default_backend(name: str) -> None:
    """Backend used by fg.tensor and the layers when none is named."""
    global _default
    get_backend(name)
    _default = name


def default_backend_name() -> str:
    return _default
