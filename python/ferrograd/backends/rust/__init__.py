"""The rust backend: every compute kernel of the contract runs in ``ferrograd._core``.

Arrays are numpy arrays, as on the numpy backend, so the array plumbing (from_numpy,
reshape, permute, expand...) is inherited from the numpy backend; each kernel calls the
Rust function of the same name. The extension reads C-contiguous inputs in place,
releases the GIL while it computes, and raises ValueError/TypeError for bad input
(RuntimeError if a Rust panic, i.e. a bug, happens). One module per op family, each a
mixin class; :class:`RustBackend` is in ``backend.py`` (imported on first use, so that
``import ferrograd`` never needs the extension).

This package is also ``fg.backends.rust``, the rust backend's cache of large freed
buffers: buffers of 1 MiB and more that the Rust kernels allocate are kept when freed, up
to a byte limit (default 256 MiB), and handed back to the next request of their size, the
block freed last first (``rust_core/src/buffer_cache.rs``): an op repeated on same-sized
tensors writes into memory that is still in cache, as PyTorch's CUDA caching allocator
does on the GPU. The cached memory stays with the process until it is emptied or the
limit is lowered.
"""

from __future__ import annotations


def _core():
    from ._extension import _core  # ImportError (no extension) reaches the caller as it is

    return _core


def cache_info() -> dict:
    """cached_bytes, cached_blocks, limit_bytes, and the large requests served from the
    cache (hits) or not (misses)."""
    return dict(_core().buffer_cache_info())


def set_cache_limit(limit_bytes: int) -> None:
    """Keep at most ``limit_bytes`` of free buffers (0 turns the cache off)."""
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 0:
        raise ValueError(f"limit_bytes: expected a non-negative int, got {limit_bytes!r}")
    _core().set_buffer_cache_limit(limit_bytes)


def empty_cache() -> None:
    """Return every cached free buffer to the system."""
    _core().empty_buffer_cache()
