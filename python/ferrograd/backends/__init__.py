"""Backend registry: ``get_backend("numpy" | "rust" | "cuda")``.

Backends are created lazily and once per process, so importing ferrograd never needs
the Rust extension or a GPU; asking for a backend that cannot run raises an error that
says why.
"""

from __future__ import annotations

from typing import Dict, List

from .base import Backend

BACKEND_NAMES = ("numpy", "rust", "cuda")

_instances: Dict[str, Backend] = {}


class _MatmulFlags:
    """``fg.backends.cuda.matmul.allow_tf32`` (default False, as PyTorch's
    ``torch.backends.cuda.matmul.allow_tf32``): when True, the cuda backend's GEMMs
    (matmul, Linear, the convolutions and recurrent layers built on them) and flash
    attention (forward for head dims 32 and 64, backward for 64) take their inputs as TF32
    (10-bit mantissa) and run on tensor cores, summing in float32.
    Relative error grows to about 1e-3 per product; leave it off for float32 accuracy."""

    allow_tf32 = False


class _CudaFlags:
    matmul = _MatmulFlags()


#: ``fg.backends.cuda.matmul.allow_tf32``: see :class:`_MatmulFlags`.
cuda = _CudaFlags()


class _RustMemory:
    """``fg.backends.rust``: the rust backend's cache of large freed buffers.

    Buffers of 1 MiB and more that the Rust kernels allocate are kept when freed, up to a
    byte limit (default 256 MiB), and handed back to the next request of their size, the
    block freed last first (``rust_core/src/buffer_cache.rs``): an op repeated on
    same-sized tensors writes into memory that is still in cache, as PyTorch's CUDA
    caching allocator does on the GPU. The cached memory stays with the process until it
    is emptied or the limit is lowered."""

    @staticmethod
    def _core():
        from .. import _core  # ImportError (no extension) reaches the caller as it is

        return _core

    def cache_info(self) -> dict:
        """cached_bytes, cached_blocks, limit_bytes, and the large requests served from
        the cache (hits) or not (misses)."""
        return dict(self._core().buffer_cache_info())

    def set_cache_limit(self, limit_bytes: int) -> None:
        """Keep at most ``limit_bytes`` of free buffers (0 turns the cache off)."""
        if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 0:
            raise ValueError(f"limit_bytes: expected a non-negative int, got {limit_bytes!r}")
        self._core().set_buffer_cache_limit(limit_bytes)

    def empty_cache(self) -> None:
        """Return every cached free buffer to the system."""
        self._core().empty_buffer_cache()


#: ``fg.backends.rust.empty_cache()`` and friends: see :class:`_RustMemory`.
rust = _RustMemory()
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
            from .numpy_backend import NumpyBackend
            inst = NumpyBackend()
        elif name == "rust":
            try:
                from .rust_backend import RustBackend
            except ImportError as exc:
                raise RuntimeError(
                    f"rust backend unavailable: the extension ferrograd._core could not be "
                    f"imported ({exc}); install the package with `pip install .`") from exc
            inst = RustBackend()
        else:
            from .cuda_backend import CudaBackend  # raises RuntimeError saying why if unusable
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
