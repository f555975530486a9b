"""The cuda backend: the PyCUDA runtime: module cache, prepared launches, pooled memory."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


CUDA_SOURCES = Path(__file__).resolve().parents[2] / "cuda"
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)


def _load_pycuda():
    """Import PyCUDA and make the primary context current, or say why not."""
    try:
        import pycuda.driver as drv
        import pycuda.gpuarray as gpuarray
        from pycuda.compiler import SourceModule
        from pycuda.tools import DeviceMemoryPool
    except Exception as exc:  # ImportError, or the driver library missing
        raise RuntimeError(
            "cuda backend unavailable: PyCUDA could not be imported "
            f"({type(exc).__name__}: {exc}); it needs an NVIDIA GPU, its driver and "
            "`pip install pycuda` (the `cuda` extra)") from exc
    try:
        drv.init()
        if drv.Device.count() == 0:
            raise RuntimeError("the driver reports no CUDA device")
        import pycuda.autoprimaryctx  # noqa: F401 - makes the primary context current
    except Exception as exc:
        raise RuntimeError(f"cuda backend unavailable: no usable NVIDIA GPU ({exc})") from exc
    return drv, gpuarray, SourceModule, DeviceMemoryPool


def _check_f32(x, name: str) -> None:
    if np.dtype(x.dtype) != _F32:
        raise TypeError(f"{name}: the cuda backend computes in float32, got dtype {x.dtype} "
                        "(use the numpy or rust backend for float64)")


#: struct codes of kernel arguments by numpy scalar type, for prepared launches
#: (np.uintp, the pointer type, is np.uint64 on 64-bit platforms)
_ARG_CODES = {np.uintp: "P", np.int64: "q", np.int32: "i", np.uint32: "I", np.float32: "f",
              np.float64: "d"}
#: kernel families compiled for a specific architecture (others: the device's own)
_FAMILY_ARCH = {"linear_sm90": "sm_90a"}


class _WithSharedMemory:
    """A prepared kernel whose every launch asks for ``smem`` bytes of dynamic shared
    memory (so that callers of :meth:`CudaBackend._gemm_plan` launch every plan alike)."""

    def __init__(self, f, smem: int, name: str):
        self.f, self.smem, self.name = f, smem, name

    def prepared_call(self, grid, block, *args):
        self.f.prepared_call(grid, block, *args, shared_size=self.smem)


class Runtime:
    """The cuda backend's the PyCUDA runtime: module cache, prepared launches, pooled memory."""

    def __init__(self):
        self._drv, self._gpuarray, self._SourceModule, Pool = _load_pycuda()
        self._pool = Pool()
        self._modules: Dict[str, object] = {}
        self._functions: Dict[Tuple[str, str], object] = {}
        # _launch's prepared kernels, by (family, name, argument types)
        self._launchers: Dict[tuple, object] = {}
        self._meta_cache: Dict[Tuple[int, ...], object] = {}
        dev = self._drv.Context.get_device()
        self.device_name = dev.name()
        sms = dev.get_attribute(self._drv.device_attribute.MULTIPROCESSOR_COUNT)
        self._max_blocks = sms * 32  # enough resident blocks to saturate memory
        self._sm_count = sms
        # Hopper (sm_90a): linear_sm90.cu's warpgroup (wgmma) TF32 GEMM
        self._wgmma = tuple(dev.compute_capability()) == (9, 0)

    def _fn(self, family: str, name: str):
        key = (family, name)
        f = self._functions.get(key)
        if f is None:
            mod = self._modules.get(family)
            if mod is None:
                src = (CUDA_SOURCES / f"{family}.cu").read_text()
                arch = {"arch": _FAMILY_ARCH[family]} if family in _FAMILY_ARCH else {}
                mod = self._SourceModule(src, no_extern_c=True, include_dirs=[str(CUDA_SOURCES)],
                                         options=["-O3", "-std=c++17"], **arch)
                self._modules[family] = mod
            f = self._functions[key] = mod.get_function(name)
        return f

    def _launch(self, family: str, name: str, n: int, *args, per_thread: int = 1, block: int = 256,
                max_blocks: Optional[int] = None):
        """Launch a grid-stride kernel over n items (per_thread items per thread-step), with
        at most ``max_blocks`` blocks (default: enough resident blocks to fill the GPU)."""
        if n == 0:
            return
        work = (n + per_thread - 1) // per_thread
        grid = max(1, min((work + block - 1) // block, max_blocks or self._max_blocks))
        f = self._launcher(family, name, args)
        if f is None:  # an argument without a struct code (a GPUArray): PyCUDA's plain call
            self._fn(family, name)(*args, block=(block, 1, 1), grid=(grid, 1))
        else:
            f.prepared_call((grid, 1), (block, 1, 1), *args)

    def _launcher(self, family: str, name: str, args):
        """The kernel prepared for these arguments' types (numpy scalars, pointers as
        np.uintp), or None if one has no struct code. A prepared call packs its arguments
        with one struct format instead of inspecting each argument on every launch, which
        was a quarter of a small op's time (benches/README.md). Each launcher is its own PyCUDA function object, so
        preparing it does not touch the one ``_fn`` hands out."""
        key = (family, name, *map(type, args))
        try:
            return self._launchers[key]
        except KeyError:
            pass
        codes = [_ARG_CODES.get(type(a)) for a in args]
        f = None
        if None not in codes:
            self._fn(family, name)  # compiles the family if needed
            f = self._modules[family].get_function(name)
            f.prepare("".join(codes))
        self._launchers[key] = f
        return f

    def empty(self, shape, dtype=_F32):
        return self._gpuarray.empty(tuple(int(d) for d in shape), np.dtype(dtype),
                                    allocator=self._pool.allocate)

    @staticmethod
    def _ptr(x):
        """A kernel pointer argument. GPUArray views (reshape) hold their address as a
        plain int, which PyCUDA does not accept as an argument: always pass np.uintp."""
        return np.uintp(0) if x is None or x.size == 0 else np.uintp(int(x.gpudata))

    def _meta(self, values: Sequence[int]):
        """A small int64 device array of shapes/strides, cached by value."""
        key = tuple(int(v) for v in values)
        arr = self._meta_cache.get(key)
        if arr is None:
            arr = self._gpuarray.to_gpu(np.array(key, dtype=np.int64))
            self._meta_cache[key] = arr
        return arr

    def synchronize(self) -> None:
        self._drv.Context.synchronize()

    def _prepared(self, family: str, name: str, types: str):
        """A kernel with its argument types declared once (PyCUDA's prepared_call packs
        arguments faster than a plain call)."""
        key = (family, name, types)
        f = self._functions.get(key)
        if f is None:
            f = self._fn(family, name)
            f.prepare(types)
            self._functions[key] = f
        return f
