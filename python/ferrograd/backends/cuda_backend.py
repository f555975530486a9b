"""The cuda backend: hand-written kernels (``ferrograd/cuda/<family>.cu``) launched with
PyCUDA on GPUArrays.

* Sources ship inside the package; each family is compiled once per process (PyCUDA also
  keeps compiled binaries in its disk cache) for the GPU in use.
* The backend runs in the device's primary context, the one PyTorch and CuPy use, so a
  GPUArray can be viewed by torch without a copy (``__cuda_array_interface__``).
* Outputs come from a memory pool: no cudaMalloc per op.
* float32 only (float64 raises TypeError); class indices are int64.
* Without PyCUDA or a GPU, creating the backend raises RuntimeError saying which.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .._determinism import are_deterministic_algorithms_enabled
from . import _attention, _dropout, _pool, base
from . import _conv, _dropout, _pool, base
from . import _dropout, _pool, _rnn, base
from ._validate import (
    check_binary_op,
    check_gelu_approximate,
    check_linear,
    check_matmul,
    check_prelu_weight,
    check_reduction,
    check_same_shape,
    check_sign_mask,
    check_targets,
    check_unary_op,
)
from ._validate import (check_batch_norm, check_batch_norm_backward, check_eps,
                        check_group_norm, check_layer_norm)

CUDA_SOURCES = Path(__file__).resolve().parent.parent / "cuda"
_F32 = np.dtype(np.float32)
#: grid cap of the activation kernels: one block per tile of the array (activation.cu's
#: map1/map2) up to the grid's x limit, instead of a grid-stride loop over fewer blocks
_TILE_BLOCKS = 2**31 - 1
_I64 = np.dtype(np.int64)

_BINARY_CODES = {"add": 0, "sub": 1, "mul": 2, "div": 3, "pow": 4}
# (ga formula, gb formula) codes of elementwise.cu's binary_apply
_BINARY_GRAD_CODES = {"add": (10, 10), "sub": (10, 11), "mul": (12, 13), "div": (14, 15),
                      "pow": (16, 17)}
_UNARY_CODES = {"neg": 0, "exp": 1, "log": 2}


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


def _contiguous_strides(shape: Sequence[int]) -> Tuple[int, ...]:
    strides, s = [], 1
    for n in reversed(shape):
        strides.append(s)
        s *= n
    return tuple(reversed(strides))


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


class _HopperTf32Gemm:
    """linear_sm90.cu's gemm_wgmma_tf32_nt behind the GEMM plan's launch signature
    ``(grid, block, c, a, b, bias, m, n, k, stride_a, stride_b, stride_c)``: an A given
    as K x M or a B given as K x N is transposed first into a pooled buffer (wgmma reads
    TF32 operands k-contiguous only)."""

    name = "gemm_wgmma_tf32_nt"

    def __init__(self, backend, trans_a: bool, trans_b: bool):
        self.be, self.trans_a, self.trans_b = backend, trans_a, trans_b
        self.f, self.smem = backend._wgmma_kernel()
        self.transpose = backend._prepared("linear_sm90", "gemm_transpose", "PPiiqq")

    def _k_major(self, ptr, rows: int, cols: int, stride: int, batch: int):
        """(batch, cols, rows) copy of the (batch, rows, cols) operand at ptr."""
        out = self.be.empty((batch, cols, rows))
        self.transpose.prepared_call(((cols + 31) // 32, (rows + 31) // 32, batch), (32, 8, 1),
                                     self.be._ptr(out), ptr, rows, cols, stride, rows * cols)
        return out

    def prepared_call(self, grid, block, c, a, b, bias, m, n, k, sa, sb, sc):
        batch = grid[2]
        keep = []
        if self.trans_a:  # A is K x M
            keep.append(self._k_major(a, k, m, sa, batch))
            a, sa = self.be._ptr(keep[-1]), m * k if batch > 1 else 0
        if not self.trans_b:  # B is K x N
            keep.append(self._k_major(b, k, n, sb, batch))
            b, sb = self.be._ptr(keep[-1]), n * k if batch > 1 else 0
        # the buffers go back to the pool here: later launches run after this one (one stream)
        self.f.prepared_call(grid, block, c, a, b, bias, m, n, k, sa, sb, sc, shared_size=self.smem)


class CudaBackend(base.Backend):
    name = "cuda"

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

    # ------------------------------------------------------------ plumbing
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
        np.uintp), or None if one has no struct code. A prepared call packs its arguments with one struct format instead of
        inspecting each argument on every launch: measured on the H100, a 4M-element relu
        through the layer API took 32 us per call, of which the plain call's argument
        handling was a quarter. Each launcher is its own PyCUDA function object, so
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

    # ------------------------------------------------------------------ arrays
    def from_numpy(self, a):
        a = np.asarray(a)
        if a.dtype not in (_F32, _I64):
            raise TypeError(f"data: the cuda backend holds float32 (or int64 indices), got dtype "
                            f"{a.dtype}; use the numpy or rust backend for float64")
        if a.size == 0:  # PyCUDA cannot copy zero bytes
            return self.empty(a.shape, a.dtype)
        return self._gpuarray.to_gpu(np.require(a, requirements="C"), allocator=self._pool.allocate)

    def to_numpy(self, x):
        return np.empty(x.shape, x.dtype) if x.size == 0 else x.get()

    def full(self, shape, value, dtype):
        dtype = np.dtype(dtype)
        if dtype != _F32:
            return self.from_numpy(np.full(tuple(shape), value, dtype=dtype))
        y = self.empty(shape)
        self._launch("elementwise", "fill", y.size, self._ptr(y), np.float32(value), np.int64(y.size))
        return y

    def copy(self, x):
        return self.empty(x.shape, x.dtype) if x.size == 0 else x.copy()

    def reshape(self, x, shape):
        shape = tuple(int(d) for d in shape)
        if x.size == 0:  # PyCUDA cannot view an empty array (it has no device pointer)
            if -1 in shape:
                raise ValueError(f"shape: cannot infer -1 for an empty array, got {shape}")
            if int(np.prod(shape, dtype=np.int64)) != 0:
                raise ValueError(f"shape: expected a shape with 0 elements, got {shape}")
            return self.empty(shape, x.dtype)
        return x.reshape(shape)

    def _gather(self, x, out_shape, in_strides):
        y = self.empty(out_shape, x.dtype)
        if y.size:
            nd = len(out_shape)
            meta = self._meta(tuple(out_shape) + tuple(in_strides))
            self._launch("elementwise", "strided_gather", y.size, self._ptr(y), self._ptr(x),
                         np.int64(y.size), np.int32(nd), self._ptr(meta))
        return y

    def permute(self, x, axes):
        _check_f32(x, "x")
        axes = tuple(int(a) for a in axes)
        strides = _contiguous_strides(x.shape)
        return self._gather(x, tuple(x.shape[a] for a in axes), tuple(strides[a] for a in axes))

    def expand(self, x, shape):
        _check_f32(x, "x")
        shape = tuple(int(d) for d in shape)
        np.broadcast_shapes(tuple(x.shape), shape)  # raises ValueError if incompatible
        lead = len(shape) - len(x.shape)
        src = _contiguous_strides(x.shape)
        strides = (0,) * lead + tuple(0 if n == 1 else s for n, s in zip(x.shape, src))
        return self._gather(x, shape, strides)

    def _sum_rows(self, x, rows: int, cols: int):
        """(rows,) sums of a contiguous (rows, cols) float32 array."""
        out = self.empty((rows,))
        if rows == 0:
            return out
        if cols == 0:
            self._launch("elementwise", "fill", rows, self._ptr(out), np.float32(0), np.int64(rows))
            return out
        # split long rows so that about 2 * max_blocks blocks share the work
        chunks = 1
        if rows < self._max_blocks and cols > 8192:
            chunks = min(65535, max(1, (2 * self._max_blocks) // rows), (cols + 4095) // 4096)
        chunk = (cols + chunks - 1) // chunks
        chunks = (cols + chunk - 1) // chunk
        partial = out if chunks == 1 else self.empty((rows, chunks))
        block = 256 if chunk >= 256 else (128 if chunk >= 128 else 32)
        self._fn("reduce", "sum_rows")(self._ptr(partial), self._ptr(x), np.int64(rows), np.int64(cols),
                                       np.int64(chunk), block=(block, 1, 1), grid=(rows, chunks))
        return out if chunks == 1 else self._sum_rows(partial, rows, chunks)

    def _sum_axes(self, x, axes: Tuple[int, ...]):
        """Sum over ``axes``; the result has the kept axes, in order."""
        shape = tuple(x.shape)
        nd = len(shape)
        kept = [a for a in range(nd) if a not in axes]
        kept_shape = tuple(shape[a] for a in kept)
        if not axes:
            return self.copy(x)
        trailing = tuple(axes) == tuple(range(nd - len(axes), nd))
        t = nd
        while t > 0 and (t - 1) in axes:
            t -= 1
        if not trailing and t < nd:
            # sum the reduced trailing axes in place first (a conv bias gradient: (N, C, L)
            # -> (N, C)), then the rest on the much smaller array
            lead = tuple(shape[:t])
            part = self._sum_rows(x, int(np.prod(lead, dtype=np.int64)),
                                  int(np.prod(shape[t:], dtype=np.int64))).reshape(lead)
            return self._sum_axes(part, tuple(a for a in axes if a < t))
        src = x if trailing else self.permute(x, kept + list(axes))
        rows = int(np.prod(kept_shape, dtype=np.int64))
        cols = int(np.prod([shape[a] for a in axes], dtype=np.int64))
        return self._sum_rows(src, rows, cols).reshape(kept_shape)

    def sum_to_shape(self, g, shape):
        shape = tuple(int(d) for d in shape)
        if tuple(g.shape) == shape:
            return g
        lead = len(g.shape) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
        return self._sum_axes(g, axes).reshape(shape)

    # ------------------------------------------------- elementwise arithmetic
    def _binary(self, code: int, a, b, g, out_shape):
        """binary_apply(code) over the broadcast shape (g is None or has out_shape)."""
        y = self.empty(out_shape)
        n = y.size
        if n == 0:
            return y
        if tuple(a.shape) == tuple(b.shape) == tuple(out_shape):
            self._launch("elementwise", "binary_same", n, np.int32(code), self._ptr(y), self._ptr(a),
                         self._ptr(b), self._ptr(g), np.int64(n))
            return y
        nd = len(out_shape)

        def strides(shape):
            src = _contiguous_strides(shape)
            pad = nd - len(shape)
            return (0,) * pad + tuple(0 if d == 1 else s for d, s in zip(shape, src))

        meta = self._meta(tuple(out_shape) + strides(a.shape) + strides(b.shape)
                          + _contiguous_strides(out_shape))
        self._launch("elementwise", "binary_broadcast", n, np.int32(code), self._ptr(y), self._ptr(a),
                     self._ptr(b), self._ptr(g), np.int64(n), np.int32(nd), self._ptr(meta))
        return y

    @staticmethod
    def _broadcast(a, b):
        try:
            return tuple(np.broadcast_shapes(tuple(a.shape), tuple(b.shape)))
        except ValueError:
            raise ValueError(f"b: shape {tuple(b.shape)} does not broadcast with a's shape "
                             f"{tuple(a.shape)}") from None

    def binary_forward(self, op, a, b):
        check_binary_op(op)
        _check_f32(a, "a")
        _check_f32(b, "b")
        return self._binary(_BINARY_CODES[op], a, b, None, self._broadcast(a, b))

    def binary_backward(self, op, a, b, gy):
        check_binary_op(op)
        shape = self._broadcast(a, b)
        code_a, code_b = _BINARY_GRAD_CODES[op]
        ga = self._binary(code_a, a, b, gy, shape)
        gb = self._binary(code_b, a, b, gy, shape)
        return self.sum_to_shape(ga, a.shape), self.sum_to_shape(gb, b.shape)

    def unary_forward(self, op, x):
        check_unary_op(op)
        _check_f32(x, "x")
        y = self.empty(x.shape)
        self._launch("elementwise", "unary_forward", x.size, np.int32(_UNARY_CODES[op]),
                     self._ptr(y), self._ptr(x), np.int64(x.size))
        return y

    def unary_backward(self, op, x, gy):
        check_unary_op(op)
        check_same_shape(x, gy, "x", "gy")
        g = self.empty(x.shape)
        self._launch("elementwise", "unary_backward", x.size, np.int32(_UNARY_CODES[op]),
                     self._ptr(g), self._ptr(x), self._ptr(gy), np.int64(x.size))
        return g

    # -------------------------------------------------------------- activations
    def _act_forward(self, kernel: str, x, p: float = 0.0):
        _check_f32(x, "x")
        y = self.empty(x.shape)
        self._launch("activation", kernel + "_forward", x.size, self._ptr(y), self._ptr(x),
                     np.int64(x.size), np.float32(p), per_thread=16, max_blocks=_TILE_BLOCKS)
        return y

    def _act_backward(self, kernel: str, x, gy, p: float = 0.0):
        check_same_shape(x, gy, "x", "gy")
        g = self.empty(x.shape)
        self._launch("activation", kernel + "_backward", x.size, self._ptr(g), self._ptr(x),
                     self._ptr(gy), np.int64(x.size), np.float32(p), per_thread=16, max_blocks=_TILE_BLOCKS)
        return g

    def _act_forward_mask(self, kernel: str, x, p: float = 0.0):
        """(y, packed mask of x > 0): 4 elements per thread step (one nibble of the mask)."""
        _check_f32(x, "x")
        y = self.empty(x.shape)
        mask = self.empty(((x.size + 7) // 8,), np.uint8)
        self._launch("activation", kernel + "_forward_mask", (x.size + 3) // 4, self._ptr(y),
                     self._ptr(mask), self._ptr(x), np.int64(x.size), np.float32(p),
                     per_thread=4, max_blocks=_TILE_BLOCKS)
        return y, mask

    def _act_backward_mask(self, kernel: str, mask, gy, p: float = 0.0):
        _check_f32(gy, "gy")
        check_sign_mask(mask, gy)
        g = self.empty(gy.shape)
        self._launch("activation", kernel + "_backward_mask", (gy.size + 3) // 4, self._ptr(g),
                     self._ptr(mask), self._ptr(gy), np.int64(gy.size), np.float32(p),
                     per_thread=4, max_blocks=_TILE_BLOCKS)
        return g

    def relu_forward(self, x):
        return self._act_forward("relu", x)

    def relu_forward_mask(self, x):
        return self._act_forward_mask("relu", x)

    def relu_backward_mask(self, mask, gy):
        return self._act_backward_mask("relu", mask, gy)

    def leaky_relu_forward_mask(self, x, negative_slope):
        return self._act_forward_mask("leaky_relu", x, negative_slope)

    def leaky_relu_backward_mask(self, mask, gy, negative_slope):
        return self._act_backward_mask("leaky_relu", mask, gy, negative_slope)

    def relu_backward(self, x, gy):
        return self._act_backward("relu", x, gy)

    def leaky_relu_forward(self, x, negative_slope):
        return self._act_forward("leaky_relu", x, negative_slope)

    def leaky_relu_backward(self, x, gy, negative_slope):
        return self._act_backward("leaky_relu", x, gy, negative_slope)

    def sigmoid_forward(self, x):
        return self._act_forward("sigmoid", x)

    def sigmoid_backward(self, y, gy):
        return self._act_backward("sigmoid", y, gy)

    def tanh_forward(self, x):
        return self._act_forward("tanh", x)

    def tanh_backward(self, y, gy):
        return self._act_backward("tanh", y, gy)

    def gelu_forward(self, x, approximate):
        check_gelu_approximate(approximate)
        return self._act_forward("gelu_tanh" if approximate == "tanh" else "gelu", x)

    def gelu_backward(self, x, gy, approximate):
        check_gelu_approximate(approximate)
        return self._act_backward("gelu_tanh" if approximate == "tanh" else "gelu", x, gy)

    def swish_forward(self, x, beta):
        return self._act_forward("swish", x, beta)

    def swish_backward(self, x, gy, beta):
        return self._act_backward("swish", x, gy, beta)

    @staticmethod
    def _prelu_layout(x, weight):
        c = int(weight.shape[0])
        inner = int(np.prod(x.shape[2:], dtype=np.int64)) if len(x.shape) > 2 else 1
        return c, inner

    def prelu_forward(self, x, weight):
        _check_f32(x, "x")
        check_prelu_weight(x, weight)
        c, inner = self._prelu_layout(x, weight)
        y = self.empty(x.shape)
        self._launch("activation", "prelu_forward", x.size, self._ptr(y), self._ptr(x), self._ptr(weight),
                     np.int64(x.size), np.int64(c), np.int64(inner))
        return y

    def prelu_backward(self, x, weight, gy):
        check_prelu_weight(x, weight)
        check_same_shape(x, gy, "x", "gy")
        c, inner = self._prelu_layout(x, weight)
        gx, contrib = self.empty(x.shape), self.empty(x.shape)
        self._launch("activation", "prelu_backward", x.size, self._ptr(gx), self._ptr(contrib),
                     self._ptr(x), self._ptr(weight), self._ptr(gy), np.int64(x.size), np.int64(c),
                     np.int64(inner))
        if c == 1:
            gw = self._sum_rows(contrib.reshape(1, x.size), 1, x.size) if x.size else self.full((1,), 0, _F32)
        else:
            gw = self._sum_axes(contrib.reshape(x.shape[0], c, inner), (0, 2))
        return gx, gw.reshape(weight.shape)

    # ------------------------------------------------------ reductions, softmax
    def sum_forward(self, x, axes, keepdims):
        _check_f32(x, "x")
        axes = tuple(int(a) for a in axes)
        s = self._sum_axes(x, axes)
        if keepdims:
            s = s.reshape(tuple(1 if a in axes else n for a, n in enumerate(x.shape)))
        return s

    def _row_kernel(self, name: str, out, args, shape, log_mode: int):
        """Launch softmax.cu's ``name`` with one block per row of the last axis."""
        cols = int(shape[-1]) if len(shape) else 1
        rows = out.size // cols if cols else 0
        if rows and cols:
            block = 32 if cols <= 32 else (128 if cols <= 1024 else 256)
            self._fn("softmax", name)(self._ptr(out), *[self._ptr(a) for a in args], np.int64(cols),
                                      np.int32(log_mode), block=(block, 1, 1), grid=(rows, 1))
        return out

    def _softmax(self, x, log_mode: int):
        _check_f32(x, "x")
        return self._row_kernel("softmax_forward", self.empty(x.shape), [x], x.shape, log_mode)

    def _softmax_bwd(self, y, gy, log_mode: int):
        check_same_shape(y, gy, "y", "gy")
        return self._row_kernel("softmax_backward", self.empty(y.shape), [y, gy], y.shape, log_mode)

    def softmax_forward(self, x):
        return self._softmax(x, 0)

    def softmax_backward(self, y, gy):
        return self._softmax_bwd(y, gy, 0)

    def log_softmax_forward(self, x):
        return self._softmax(x, 1)

    def log_softmax_backward(self, y, gy):
        return self._softmax_bwd(y, gy, 1)

    # ----------------------------------------------------------- linear algebra
    def _gemm(self, a, b, trans_a: bool, trans_b: bool, bias=None):
        batched = len(a.shape) == 3
        batch = a.shape[0] if batched else 1
        ra, ca = a.shape[-2:]
        rb, cb = b.shape[-2:]
        m, k = (ca, ra) if trans_a else (ra, ca)
        n = rb if trans_b else cb
        y = self.empty((batch, m, n) if batched else (m, n))
        if y.size == 0:
            return y
        if k == 0:
            return self.full(y.shape, 0.0, _F32)
        self._gemm_launch(self._ptr(y), self._ptr(a), self._ptr(b), self._ptr(bias), m, n, k,
                          trans_a, trans_b, ra * ca, rb * cb, m * n, batch)
        return y

    def _gemm_plan(self, m, n, k, trans_a, trans_b, aligned, batch=1, strides=(0, 0, 0)):
        """How linear.cu computes C[z] = op(A[z]) @ op(B[z]) with C m x n, as (prepared
        kernel, grid, the arguments after the four pointers, splits). ``aligned``: the
        pointers are 16-byte aligned and the batch strides multiples of 4. In order:

        * fewer 128-wide tiles than SMs and a long K (a convolution's or recurrent
          layer's weight gradient): split K. ``splits`` blocks per tile each sum a K
          range into a workspace slice and gemm_splitk_reduce adds the slices;
        * else TF32 tensor cores when ``fg.backends.cuda.matmul.allow_tf32`` is set and
          every row is a whole number of aligned float4s. With at least as many 128x256
          tiles as SMs: on Hopper the warpgroup kernel ``gemm_wgmma_tf32_nt``
          (linear_sm90.cu; other layouts transposed first), elsewhere ``gemm_tf32w_*``
          when B is transposed (N x K). Otherwise 128x128 tiles (``gemm_tf32_*``);
        * at least one tile per SM: the SIMT kernel with 128x128 tiles (``gemm128_*``),
          or 64x128 (``gemm64x128_*``) when C has at most 64 rows, float4 loads when
          aligned;
        * else the 64x64-tile kernel (split K when that keeps more SMs busy: the
          recurrent layers' per-step GEMMs).
        """
        from . import cuda as flags

        sa, sb, sc = strides
        ta, tb = int(bool(trans_a)), int(bool(trans_b))
        contig_a = m if trans_a else k
        contig_b = k if trans_b else n
        vec = aligned and contig_a % 4 == 0 and contig_b % 4 == 0
        kind = "nt"[ta] + "nt"[tb]
        sm = self._sm_count
        rows = 64 if m <= 64 else 128  # 64x128 tiles when C has at most 64 rows
        g128 = ((n + 127) // 128, (m + rows - 1) // rows)
        t128 = g128[0] * g128[1] * batch
        k128 = ("gemm128_" if rows == 128 else "gemm64x128_") + kind + ("_v" if vec else "")
        long_k = batch == 1 and t128 < sm and m >= 16 and n >= 128 and k >= 1024
        if flags.matmul.allow_tf32 and vec and not long_k:
            gw = ((n + 255) // 256, (m + 127) // 128, batch)
            if gw[0] * gw[1] * batch >= sm:  # a wave of 128x256 tiles at least
                if self._wgmma:
                    return _HopperTf32Gemm(self, ta, tb), gw, (m, n, k, sa, sb, sc), 0
                if tb:
                    return self._tf32_wide(kind), gw, (m, n, k, sa, sb, sc), 0
            return (self._prepared("linear", f"gemm_tf32_{kind}", "PPPPiiiqqq"),
                    ((n + 127) // 128, (m + 127) // 128, batch), (m, n, k, sa, sb, sc), 0)
        if t128 >= sm:
            return self._prepared("linear", k128, "PPPPiiiqqqi"), g128 + (batch,), (m, n, k, sa, sb, sc, 0), 0
        g64 = ((n + 63) // 64, (m + 63) // 64)
        t64 = g64[0] * g64[1] * batch
        if long_k:
            # two resident blocks per SM: whole waves (a last partial wave costs a full one)
            splits = max(2, min(2 * sm // t128, k // 256))
            chunk = -(-(-(-k // splits)) // 8) * 8  # whole 8-deep slices
            splits = -(-k // chunk)
            return (self._prepared("linear", k128, "PPPPiiiqqqi"), g128 + (splits,),
                    (m, n, k, 0, 0, m * n, chunk), splits)
        if batch == 1 and t64 < sm // 2 and k >= 128:
            splits = min(-(-sm // t64), k // 64)
            if splits >= 2:
                chunk = -(-(-(-k // splits)) // 16) * 16  # whole 16-deep slices
                splits = -(-k // chunk)
                return (self._prepared("linear", "gemm", "PPPPiiiiiqqqi"), g64 + (splits,),
                        (m, n, k, ta, tb, 0, 0, m * n, chunk), splits)
        return (self._prepared("linear", "gemm", "PPPPiiiiiqqqi"), g64 + (batch,),
                (m, n, k, ta, tb, sa, sb, sc, 0), 0)

    def _tf32_wide(self, kind: str):
        """gemm_tf32w_{kind}, prepared, launched with the 144 KB of dynamic shared memory
        its three pipeline stages need (past the 48 KB default, so allowed once)."""
        key = ("linear", f"gemm_tf32w_{kind}", "smem")
        hit = self._functions.get(key)
        if hit is None:
            f = self._prepared("linear", f"gemm_tf32w_{kind}", "PPPPiiiqqq")
            smem = 3 * (128 + 256) * 32 * 4  # TW_ST x (TW_SA + TW_SB) floats
            f.set_attribute(self._drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            hit = self._functions[key] = _WithSharedMemory(f, smem, f"gemm_tf32w_{kind}")
        return hit

    def _wgmma_kernel(self):
        """linear_sm90.cu's gemm_wgmma_tf32_nt, prepared, with its dynamic shared memory
        (four stages of 128x32 and 256x32 floats, plus 1 KB to align them) allowed."""
        key = ("linear_sm90", "gemm_wgmma_tf32_nt", "smem")
        hit = self._functions.get(key)
        if hit is None:
            f = self._prepared("linear_sm90", "gemm_wgmma_tf32_nt", "PPPPiiiqqq")
            smem = 4 * (128 + 256) * 32 * 4 + 1024
            f.set_attribute(self._drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            hit = self._functions[key] = (f, smem)
        return hit

    def _gemm_reduce(self, c_ptr, work_ptr, bias_ptr, splits, mn, n):
        self._prepared("linear", "gemm_splitk_reduce", "PPPiqi").prepared_call(
            (max(1, min((mn + 255) // 256, self._max_blocks)), 1), (256, 1, 1), c_ptr, work_ptr,
            bias_ptr, splits, mn, n)

    def _gemm_launch(self, c_ptr, a_ptr, b_ptr, bias_ptr, m, n, k, trans_a, trans_b,
                     stride_a=0, stride_b=0, stride_c=0, batch=1):
        """C[z] = op(A[z]) @ op(B[z]) (+ bias per column) for z < batch, on raw pointers,
        row-major (k == 0 writes the bias or zeros); the kernel from :meth:`_gemm_plan`."""
        aligned = (stride_a % 4 == 0 and stride_b % 4 == 0 and int(a_ptr) % 16 == 0
                   and int(b_ptr) % 16 == 0)
        f, grid, tail, splits = self._gemm_plan(m, n, k, trans_a, trans_b, aligned, batch,
                                                (stride_a, stride_b, stride_c))
        if not splits:
            f.prepared_call(grid, (256, 1, 1), c_ptr, a_ptr, b_ptr, bias_ptr, *tail)
            return
        work = self.empty((splits, m, n))
        f.prepared_call(grid, (256, 1, 1), self._ptr(work), a_ptr, b_ptr, 0, *tail)
        self._gemm_reduce(c_ptr, self._ptr(work), bias_ptr, splits, m * n, n)

    def _gemm_stepper(self, m, n, k, trans_a, trans_b, aligned):
        """A launcher ``call(c, a, b, bias=0)`` (int pointers) of one GEMM shape, planned
        once (with its split-K workspace): the recurrent layers run one per time step,
        where Python's per-launch cost is much of the time."""
        if m == 0 or n == 0:
            return lambda c, a, b, bias=0: None
        f, grid, tail, splits = self._gemm_plan(m, n, k, trans_a, trans_b, aligned)
        block = (256, 1, 1)
        if not splits:
            def call(c, a, b, bias=0):
                f.prepared_call(grid, block, c, a, b, bias, *tail)
            return call
        work = self.empty((splits, m, n))
        work_p = int(self._ptr(work))
        reduce_f = self._prepared("linear", "gemm_splitk_reduce", "PPPiqi")
        rgrid = (max(1, min((m * n + 255) // 256, self._max_blocks)), 1)

        def call_split(c, a, b, bias=0, _keep=work):
            f.prepared_call(grid, block, work_p, a, b, 0, *tail)
            reduce_f.prepared_call(rgrid, block, c, work_p, bias, splits, m * n, n)
        return call_split

    def matmul(self, a, b, transpose_a=False, transpose_b=False):
        check_matmul(a, b, transpose_a, transpose_b)
        _check_f32(a, "a")
        return self._gemm(a, b, bool(transpose_a), bool(transpose_b))

    def linear_forward(self, x, weight, bias):
        check_linear(x, weight, bias)
        _check_f32(x, "input")
        return self._gemm(x, weight, False, True, bias)

    def linear_backward(self, x, weight, gy, has_bias):
        gx = self._gemm(gy, weight, False, False)
        gw = self._gemm(gy, x, True, False)
        gb = self._sum_axes(gy, (0,)) if has_bias else None
        return gx, gw, gb

    # ------------------------------------------------------------------ losses
    def _reduce(self, v, reduction):
        if reduction == "none":
            return v
        s = self._sum_rows(v.reshape(1, v.size), 1, v.size).reshape(()) if v.size else \
            self.full((), 0.0, _F32)
        if reduction == "mean":
            out = self.empty(())
            self._launch("elementwise", "scale", 1, self._ptr(out), self._ptr(s),
                         np.float32(1.0 / v.size if v.size else np.nan), np.int64(1))
            return out
        return s

    def mse_loss_forward(self, x, target, reduction):
        check_reduction(reduction)
        check_same_shape(x, target, "input", "target")
        _check_f32(x, "input")
        d = self.empty(x.shape)
        self._launch("loss", "mse_elements", x.size, self._ptr(d), self._ptr(x), self._ptr(target),
                     np.int64(x.size))
        return self._reduce(d, reduction)

    def mse_loss_backward(self, x, target, gy, reduction):
        check_reduction(reduction)
        scale = 2.0 / x.size if (reduction == "mean" and x.size) else 2.0
        g = self.empty(x.shape)
        self._launch("loss", "mse_backward", x.size, self._ptr(g), self._ptr(x), self._ptr(target),
                     self._ptr(gy), np.int64(x.size), np.float32(scale), np.int32(reduction == "none"))
        return g

    def _targets(self, logits, target):
        host = target if isinstance(target, np.ndarray) else target.get()
        check_targets(logits, host)
        return target if not isinstance(target, np.ndarray) else self.from_numpy(host)

    def cross_entropy_forward(self, logits, target, reduction):
        check_reduction(reduction)
        _check_f32(logits, "input")
        target = self._targets(logits, target)
        n, c = logits.shape
        logp = self._softmax(logits, 1)
        nll = self.empty((n,))
        self._launch("loss", "nll_gather", n, self._ptr(nll), self._ptr(logp), self._ptr(target),
                     np.int64(n), np.int64(c))
        return self._reduce(nll, reduction)

    def cross_entropy_backward(self, logits, target, gy, reduction):
        check_reduction(reduction)
        target = self._targets(logits, target)
        n, c = logits.shape
        g = self._softmax(logits, 0)
        mode = {"none": 0, "sum": 1, "mean": 2}[reduction]
        self._launch("loss", "cross_entropy_backward", n * c, self._ptr(g), self._ptr(target),
                     self._ptr(gy), np.int64(n), np.int64(c), np.int32(mode))
        return g

    # -------------------------------------------------------- optimizer steps
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,
                 nesterov, first_step):
        _check_f32(param, "param")
        buf = momentum_buffer if momentum else None
        self._launch("optim", "sgd_step", param.size, self._ptr(param), self._ptr(grad), self._ptr(buf),
                     np.int64(param.size), np.float32(lr), np.float32(momentum),
                     np.float32(dampening), np.float32(weight_decay), np.int32(bool(nesterov)),
                     np.int32(bool(first_step)))

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                  weight_decay, decoupled):
        _check_f32(param, "param")
        bias1 = 1 - beta1 ** step
        bias2 = 1 - beta2 ** step
        decay_param = 1 - lr * weight_decay if decoupled else 1.0
        decay_grad = 0.0 if decoupled else weight_decay
        self._launch("optim", "adam_step", param.size, self._ptr(param), self._ptr(grad),
                     self._ptr(exp_avg), self._ptr(exp_avg_sq), np.int64(param.size),
                     np.float32(lr / bias1), np.float32(beta1), np.float32(beta2),
                     np.float32(eps), np.float32(1.0 / bias2), np.float32(decay_param),
                     np.float32(decay_grad))

    # ------------------------------------------------------------ normalization
    # norm.cu. layer_norm and group_norm run one block per row (n, group) with the row's
    # float4s cached in registers when it fits; batch_norm reduces each channel with
    # (channel, chunk) blocks, merges the partial moments per channel, then applies an
    # elementwise float4 pass. See norm.cu for the numerics.
    def _rows_forward(self, x, weight, bias, n, c, hw, groups, eps):
        rows, cg = n * groups, c // groups
        L = cg * hw
        y, mean, rstd = self.empty(x.shape), self.empty((rows,)), self.empty((rows,))
        if rows == 0 or L == 0:
            if rows:
                self._launch("elementwise", "fill", rows, self._ptr(mean), np.float32(np.nan), np.int64(rows))
                self._launch("elementwise", "fill", rows, self._ptr(rstd), np.float32(np.nan), np.int64(rows))
            return y, mean, rstd
        if L % 4 == 0:
            fit = self._row_cache(L // 4)
            name, block = (f"rows_forward_vec_c{fit[0]}", fit[1]) if fit else ("rows_forward_vec", 512)
        else:
            name, block = "rows_forward_scalar", min(512, max(32, (L // 4 + 31) // 32 * 32))
        self._fn("norm", name)(self._ptr(y), self._ptr(mean), self._ptr(rstd), self._ptr(x),
                               self._ptr(weight), self._ptr(bias), np.int64(L), np.int64(groups),
                               np.int64(cg), np.int64(hw), np.float32(eps),
                               block=(block, 1, 1), grid=(rows, 1))
        return y, mean, rstd

    def _rows_backward_gx(self, x, weight, mean, rstd, gy, n, c, hw, groups):
        rows, cg = n * groups, c // groups
        L = cg * hw
        gx = self.empty(x.shape)
        if rows and L:
            vec = L % 4 == 0
            block = min(512, max(32, ((L // 4 if vec else L) // 4 + 31) // 32 * 32))
            self._fn("norm", "rows_backward")(self._ptr(gx), self._ptr(x), self._ptr(weight),
                                              self._ptr(mean), self._ptr(rstd), self._ptr(gy),
                                              np.int64(L), np.int64(groups), np.int64(cg),
                                              np.int64(hw), np.int32(vec),
                                              block=(block, 1, 1), grid=(rows, 1))
        return gx

    def layer_norm_forward(self, x, weight, bias, normalized_ndim, eps):
        check_layer_norm(x, weight, bias, normalized_ndim)
        check_eps(eps)
        _check_f32(x, "input")
        lead = tuple(x.shape[:len(x.shape) - normalized_ndim])
        m = int(np.prod(x.shape[len(x.shape) - normalized_ndim:], dtype=np.int64))
        rows = int(np.prod(lead, dtype=np.int64))
        y, mean, rstd = self._rows_forward(x, weight, bias, rows, m, 1, 1, eps)
        return y, mean.reshape(lead), rstd.reshape(lead)

    @staticmethod
    def _row_cache(n4: int):
        """(cache, block) of a register-cached row of n4 float4s, or None if it is too long."""
        for cache in (1, 2, 4, 8):
            b = max(32, ((-(-n4 // cache)) + 31) // 32 * 32)
            if b <= 256 or (cache == 8 and b <= 512):
                return cache, b
        return None

    def layer_norm_backward(self, x, weight, mean, rstd, gy, normalized_ndim):
        check_layer_norm(x, weight, None, normalized_ndim)
        check_same_shape(x, gy, "input", "gy")
        pshape = tuple(x.shape[len(x.shape) - normalized_ndim:])
        m = int(np.prod(pshape, dtype=np.int64))
        rows = x.size // m if m else 0
        fit = self._row_cache(m // 4) if m % 4 == 0 else None
        if weight is not None and rows and fit and fit[0] <= 4:
            # one fused pass: gx and per-block parameter partials, then a small reduction
            # (at most 4 cached float4 per thread: x, gy, weight and two partials stay in
            # registers at 256 threads)
            cache, block = fit
            p = min(rows, 2 * (self._max_blocks // 32))
            gx, gw, gb = self.empty(x.shape), self.empty(pshape), self.empty(pshape)
            partw, partb = self.empty((p, m)), self.empty((p, m))
            self._fn("norm", f"ln_backward_fused_c{cache}")(
                self._ptr(gx), self._ptr(partw), self._ptr(partb), self._ptr(x), self._ptr(weight),
                self._ptr(mean), self._ptr(rstd), self._ptr(gy), np.int64(rows), np.int64(m),
                block=(block, 1, 1), grid=(p, 1))
            self._fn("norm", "ln_param_reduce")(self._ptr(gw), self._ptr(gb), self._ptr(partw),
                                                self._ptr(partb), np.int64(p), np.int64(m),
                                                block=(32, 8, 1), grid=((m + 31) // 32, 1))
            return gx, gw, gb
        gx = self._rows_backward_gx(x, weight, mean, rstd, gy, rows, m, 1, 1)
        if weight is None:
            return gx, None, None
        gw, gb = self.empty(pshape), self.empty(pshape)
        if rows == 0:
            return gx, self.full(pshape, 0.0, _F32), self.full(pshape, 0.0, _F32)
        # rows too long for registers (or of odd length): column partial sums over row chunks
        chunk = max(64, -(-rows // 128))
        chunks = -(-rows // chunk)
        part = self.empty((chunks, m, 2))
        self._fn("norm", "ln_param_partials")(self._ptr(part), self._ptr(x), self._ptr(mean),
                                              self._ptr(rstd), self._ptr(gy), np.int64(rows),
                                              np.int64(m), np.int64(chunk),
                                              block=(32, 8, 1), grid=((m + 31) // 32, chunks))
        self._launch("norm", "ln_param_finish", m, self._ptr(gw), self._ptr(gb), self._ptr(part),
                     np.int64(chunks), np.int64(m))
        return gx, gw, gb

    @staticmethod
    def _nc(x):
        return int(x.shape[0]), int(x.shape[1]), int(np.prod(x.shape[2:], dtype=np.int64))

    def group_norm_forward(self, x, weight, bias, num_groups, eps):
        check_group_norm(x, weight, bias, num_groups)
        check_eps(eps)
        _check_f32(x, "input")
        n, c, hw = self._nc(x)
        y, mean, rstd = self._rows_forward(x, weight, bias, n, c, hw, int(num_groups), eps)
        return y, mean.reshape(n, num_groups), rstd.reshape(n, num_groups)

    def group_norm_backward(self, x, weight, mean, rstd, gy, num_groups):
        check_group_norm(x, weight, None, num_groups)
        check_same_shape(x, gy, "input", "gy")
        n, c, hw = self._nc(x)
        g = int(num_groups)
        gx = self._rows_backward_gx(x, weight, mean, rstd, gy, n, c, hw, g)
        if weight is None:
            return gx, None, None
        if n * c * hw == 0:
            return gx, self.full((c,), 0.0, _F32), self.full((c,), 0.0, _F32)
        sums = self.empty((n, c, 2))
        block = min(256, max(32, (hw // 4 + 31) // 32 * 32))
        self._fn("norm", "gn_channel_sums")(self._ptr(sums), self._ptr(x), self._ptr(mean),
                                            self._ptr(gy), np.int64(c), np.int64(c // g),
                                            np.int64(hw), block=(block, 1, 1), grid=(n * c, 1))
        gw, gb = self.empty((c,)), self.empty((c,))
        self._launch("norm", "gn_param_finish", c, self._ptr(gw), self._ptr(gb), self._ptr(sums),
                     self._ptr(rstd), np.int64(n), np.int64(c), np.int64(c // g))
        return gx, gw, gb

    def _bn_split(self, n, c, hw):
        """(vec, HW / V, chunk, S): V-vectors per channel split into S chunks so that
        about 2 * max_blocks blocks share a reduction."""
        vec = hw % 4 == 0
        hwv = hw // 4 if vec else hw
        total = n * hwv
        s = max(1, min(65535, -(-2 * self._max_blocks // max(c, 1)), -(-total // 1024)))
        chunk = max(1, -(-total // s))
        s = max(1, -(-total // chunk))
        return vec, hwv, chunk, s

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training,
                           momentum, eps):
        check_batch_norm(x, weight, bias, running_mean, running_var, training)
        check_eps(eps)
        _check_f32(x, "input")
        n, c, hw = self._nc(x)
        y, mean, rstd = self.empty(x.shape), self.empty((c,)), self.empty((c,))
        if c == 0:
            return y, mean, rstd
        vec, hwv, chunk, s = self._bn_split(n, c, hw)
        if training:
            part = self.empty((c, s, 3))
            self._fn("norm", "bn_partial_stats")(self._ptr(part), self._ptr(x), np.int64(n),
                                                 np.int64(c), np.int64(hw), np.int64(chunk),
                                                 np.int32(vec), block=(256, 1, 1), grid=(c, s))
            self._launch("norm", "bn_finish_stats", c, self._ptr(mean), self._ptr(rstd),
                         self._ptr(running_mean), self._ptr(running_var), self._ptr(part),
                         np.int64(c), np.int64(s), np.float32(momentum), np.float32(eps))
        else:
            self._launch("norm", "bn_eval_stats", c, self._ptr(mean), self._ptr(rstd),
                         self._ptr(running_mean), self._ptr(running_var), np.int64(c),
                         np.float32(eps))
        total_v = x.size // 4 if vec else x.size
        self._launch("norm", "bn_apply", total_v, self._ptr(y), self._ptr(x), self._ptr(mean),
                     self._ptr(rstd), self._ptr(weight), self._ptr(bias), np.int64(total_v),
                     np.int64(c), np.int64(hwv), np.int32(vec))
        return y, mean, rstd

    def batch_norm_backward(self, x, weight, mean, rstd, gy, training):
        check_batch_norm_backward(x, weight, mean, rstd)
        check_same_shape(x, gy, "input", "gy")
        n, c, hw = self._nc(x)
        gx = self.empty(x.shape)
        if c == 0:
            return gx, (None if weight is None else self.empty((0,))), (None if weight is None else self.empty((0,)))
        vec, hwv, chunk, s = self._bn_split(n, c, hw)
        need_sums = (training or weight is not None) and x.size > 0
        part = None
        if need_sums:
            part = self.empty((c, s, 2))
            self._fn("norm", "bn_partial_grads")(self._ptr(part), self._ptr(x), self._ptr(gy),
                                                 self._ptr(mean), np.int64(n), np.int64(c),
                                                 np.int64(hw), np.int64(chunk), np.int32(vec),
                                                 block=(256, 1, 1), grid=(c, s))
        coef = self.empty((c, 3))
        gw = self.empty((c,)) if weight is not None else None
        gb = self.empty((c,)) if weight is not None else None
        count = n * hw
        self._launch("norm", "bn_finish_grads", c, self._ptr(coef), self._ptr(gw), self._ptr(gb),
                     self._ptr(part), self._ptr(weight), self._ptr(rstd), np.int64(c),
                     np.int64(s if need_sums else 0), np.float32(1.0 / max(count, 1)),
                     np.int32(bool(training)))
        total_v = x.size // 4 if vec else x.size
        self._launch("norm", "bn_backward_apply", total_v, self._ptr(gx), self._ptr(x),
                     self._ptr(gy), self._ptr(mean), self._ptr(coef), np.int64(total_v),
                     np.int64(c), np.int64(hwv), np.int32(vec))
        return gx, gw, gb
    # ------------------------------------------------------------------ pooling
    # window tables from _pool (PyTorch's rules) go to the device once (cached by value);
    # kernels in cuda/pool.cu. Small windows: a thread per output; large ones (global
    # pooling): a warp per output. Backward gathers per input element (no atomics).
    _WARP_WINDOW = 64  # window elements from which a warp per output pays off
    _BLOCK_WINDOW = 2048  # and a block of 256 threads per output

    def _pool_planes(self, shape):
        n, c, h, w = (int(v) for v in shape)
        if h * w >= 2 ** 31:
            raise ValueError(f"input: the cuda pooling kernels take planes of fewer than 2^31 "
                             f"elements, got H * W = {h * w}")
        return n * c, h, w

    def _pool_tables(self, rows, cols):
        """(tab, inv) device arrays of a geometry; Axis objects are cached per geometry
        and hash by identity, so this dict keeps one entry per geometry used."""
        cache = self.__dict__.setdefault("_pool_cache", {})
        hit = cache.get((rows, cols))
        if hit is None:
            (rs, rc), (cs, cc) = _pool.clipped(rows), _pool.clipped(cols)
            tab = self._gpuarray.to_gpu(np.concatenate([rs, rc, rows.factor, cs, cc, cols.factor]))
            (lh, hh), (lw, hw) = rows.inverse(), cols.inverse()
            inv = self._gpuarray.to_gpu(np.concatenate([lh, hh, lw, hw]))
            hit = cache[(rows, cols)] = (tab, inv, int(rc.max()) * int(cc.max()),
                                         self._is_2x2(rows) and self._is_2x2(cols)
                                         and cols.size % 2 == 0)
        return hit

    @staticmethod
    def _is_2x2(axis):
        """2-wide windows, stride 2, no padding, covering an even axis exactly (the
        pool2x2 kernels' case)."""
        return (axis.step == 1 and axis.size == 2 * axis.out and bool(np.all(axis.count == 2))
                and np.array_equal(axis.start, 2 * np.arange(axis.out)))

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

    def _pool2x2_forward(self, y, idx, x, n_out, h, w, mode, divisor):
        grid = (max(1, min((n_out + 255) // 256, self._max_blocks)), 1)
        self._prepared("pool", "pool2x2_forward", "PPPqiiiif").prepared_call(
            grid, (256, 1, 1), self._ptr(y), self._ptr(idx), self._ptr(x), n_out, w, h // 2,
            w // 2, 0 if mode == "max" else 1, float(divisor or 4))

    def _pool2x2_backward(self, gx, gy, idx, h, w, mode, divisor):
        n_out = gy.size
        grid = (max(1, min((n_out + 255) // 256, self._max_blocks)), 1)
        self._prepared("pool", "pool2x2_backward", "PPPqiiiif").prepared_call(
            grid, (256, 1, 1), self._ptr(gx), self._ptr(gy), self._ptr(idx), n_out, w, h // 2,
            w // 2, 0 if mode == "max" else 1, float(divisor or 4))

    @staticmethod
    def _plane_grid(planes, per_plane, block=256):
        return (max(1, min((per_plane + block - 1) // block, 4096)), max(1, min(planes, 65535)))

    def _pool_forward(self, x, rows, cols, mode: str, with_indices: bool, divisor: int = 0):
        _check_f32(x, "x")
        planes, h, w = self._pool_planes(x.shape)
        oh, ow = rows.out, cols.out
        y = self.empty((x.shape[0], x.shape[1], oh, ow))
        idx = self.empty(y.shape, _I64) if with_indices else None
        if y.size == 0:
            return y, idx
        tab, _, window, fast = self._pool_tables(rows, cols)
        if fast:
            self._pool2x2_forward(y, idx, x, y.size, h, w, mode, divisor)
            return y, idx
        geo = (np.int64(planes), np.int32(h), np.int32(w), np.int32(oh), np.int32(ow), self._ptr(tab))
        if window >= self._BLOCK_WINDOW:  # a block per output
            grid = (max(1, min(planes * oh * ow, self._max_blocks * 4)), 1)
            suffix = "_block"
        elif window >= self._WARP_WINDOW:  # a warp per output
            warps = planes * oh * ow
            grid = (max(1, min((warps * 32 + 255) // 256, self._max_blocks)), 1)
            suffix = "_warp"
        else:
            grid = self._plane_grid(planes, oh * ow)
            suffix = ""
        if mode == "max":
            self._prepared("pool", "pool_max_forward" + suffix, "PPPqiiiiPii").prepared_call(
                grid, (256, 1, 1), self._ptr(y), self._ptr(idx), self._ptr(x), *geo,
                np.int32(rows.step), np.int32(cols.step))
        else:
            self._prepared("pool", "pool_avg_forward" + suffix, "PPqiiiiPq").prepared_call(
                grid, (256, 1, 1), self._ptr(y), self._ptr(x), *geo, np.int64(divisor))
        return y, idx

    def _pool_max_backward(self, gy, indices, input_shape, rows, cols):
        _check_f32(gy, "gy")
        _pool.check_indices(indices, gy.shape)
        shape = tuple(int(v) for v in input_shape)
        _pool.check_grad_shape(gy, shape[:2] + (rows.out, cols.out))
        planes, h, w = self._pool_planes(shape)
        gx = self.empty(shape)
        if gx.size == 0:
            return gx
        _, inv, _, fast = self._pool_tables(rows, cols)
        if fast:
            self._pool2x2_backward(gx, gy, indices, h, w, "max", 0)
            return gx
        self._prepared("pool", "pool_max_backward", "PPPqiiiiP").prepared_call(
            self._plane_grid(planes, h * w), (256, 1, 1), self._ptr(gx), self._ptr(gy),
            self._ptr(indices), np.int64(planes), np.int32(h), np.int32(w),
            np.int32(rows.out), np.int32(cols.out), self._ptr(inv))
        return gx

    def _pool_avg_backward(self, gy, input_shape, rows, cols, divisor: int):
        _check_f32(gy, "gy")
        shape = tuple(int(v) for v in input_shape)
        _pool.check_grad_shape(gy, shape[:2] + (rows.out, cols.out))
        planes, h, w = self._pool_planes(shape)
        gx = self.empty(shape)
        if gx.size == 0:
            return gx
        tab, inv, _, fast = self._pool_tables(rows, cols)
        if fast:
            self._pool2x2_backward(gx, gy, None, h, w, "avg", divisor)
            return gx
        self._prepared("pool", "pool_avg_backward", "PPqiiiiPPq").prepared_call(
            self._plane_grid(planes, h * w), (256, 1, 1), self._ptr(gx), self._ptr(gy),
            np.int64(planes), np.int32(h), np.int32(w), np.int32(rows.out),
            np.int32(cols.out), self._ptr(tab), self._ptr(inv), np.int64(divisor))
        return gx

    def _axes(self, kind, shape, *args):
        """pool_axes / the avg variant, memoised on the raw arguments (one dict lookup on
        the hot path; unhashable arguments such as lists just skip the memo)."""
        plans = self.__dict__.setdefault("_pool_plans", {})
        key = (kind, tuple(shape)) + args
        try:
            hit = plans.get(key)
        except TypeError:
            key, hit = None, None
        if hit is None:
            if kind == "max":
                hit = _pool.pool_axes(tuple(shape), *args)
            else:
                k, s, p, ceil, cip, div = args
                rows, cols = _pool.pool_axes(tuple(shape), k, s, p, 1, ceil, cip, kind="avg")
                hit = rows, cols, _pool.check_divisor(div)
            if key is not None and len(plans) < 4096:
                plans[key] = hit
        return hit

    def max_pool2d_forward(self, x, kernel_size, stride, padding, dilation, ceil_mode,
                           return_indices):
        rows, cols = self._axes("max", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        return self._pool_forward(x, rows, cols, "max", bool(return_indices))

    def max_pool2d_backward(self, gy, indices, input_shape, kernel_size, stride, padding,
                            dilation, ceil_mode):
        rows, cols = self._axes("max", input_shape, kernel_size, stride, padding, dilation,
                                ceil_mode)
        return self._pool_max_backward(gy, indices, input_shape, rows, cols)

    def _avg_axes(self, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                  divisor_override):
        return self._axes("avg", shape, kernel_size, stride, padding, ceil_mode,
                          count_include_pad, divisor_override)

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override):
        rows, cols, div = self._avg_axes(x.shape, kernel_size, stride, padding, ceil_mode,
                                         count_include_pad, divisor_override)
        return self._pool_forward(x, rows, cols, "avg", False, div)[0]

    def avg_pool2d_backward(self, gy, input_shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override):
        rows, cols, div = self._avg_axes(input_shape, kernel_size, stride, padding, ceil_mode,
                                         count_include_pad, divisor_override)
        return self._pool_avg_backward(gy, input_shape, rows, cols, div)

    def adaptive_avg_pool2d_forward(self, x, output_size):
        rows, cols = _pool.adaptive_axes(x.shape, output_size)
        return self._pool_forward(x, rows, cols, "avg", False)[0]

    def adaptive_avg_pool2d_backward(self, gy, input_shape):
        if len(gy.shape) != 4:
            raise ValueError(f"gy: expected a 4-D array, got shape {tuple(gy.shape)}")
        rows, cols = _pool.adaptive_axes(tuple(input_shape), tuple(gy.shape[2:]))
        return self._pool_avg_backward(gy, input_shape, rows, cols, 0)

    def adaptive_max_pool2d_forward(self, x, output_size, return_indices):
        rows, cols = _pool.adaptive_axes(x.shape, output_size)
        return self._pool_forward(x, rows, cols, "max", bool(return_indices))

    def adaptive_max_pool2d_backward(self, gy, indices, input_shape):
        if len(gy.shape) != 4:
            raise ValueError(f"gy: expected a 4-D array, got shape {tuple(gy.shape)}")
        rows, cols = _pool.adaptive_axes(tuple(input_shape), tuple(gy.shape[2:]))
        return self._pool_max_backward(gy, indices, input_shape, rows, cols)

    # ------------------------------------------------------------------ dropout
    # cuda/dropout.cu: the same Philox stream as numpy and Rust, one call per 4 elements.
    @staticmethod
    def _stream_args(seed, offset):
        _dropout.check_stream(seed, offset)
        return (np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32),
                np.uint32(offset & 0xFFFFFFFF), np.uint32(offset >> 32))

    def philox_words(self, seed, offset, first_block, n_blocks):
        k0, k1, o0, o1 = self._stream_args(seed, offset)
        out = self.empty((int(n_blocks), 4), np.uint32)
        self._launch("dropout", "philox_words", int(n_blocks), self._ptr(out), np.int64(n_blocks),
                     np.uint64(int(first_block) % 2**64), k0, k1, o0, o1)
        return out

    def _dropout_apply(self, x, p, seed, offset, name):
        _check_f32(x, name)
        p = _dropout.check_p(p)
        k0, k1, o0, o1 = self._stream_args(seed, offset)
        y = self.empty(x.shape)
        if x.size:
            blocks = (x.size + 3) // 4
            grid = (max(1, min((blocks + 255) // 256, self._max_blocks)), 1)
            self._prepared("dropout", "dropout_apply", "PPqIIIIIf").prepared_call(
                grid, (256, 1, 1), self._ptr(y), self._ptr(x), np.int64(x.size), k0, k1, o0, o1,
                np.uint32(_dropout.threshold(p)), np.float32(_dropout.scale(p)))
        return y

    def dropout_forward(self, x, p, seed, offset):
        return self._dropout_apply(x, p, seed, offset, "x")

    def dropout_backward(self, gy, p, seed, offset):
        return self._dropout_apply(gy, p, seed, offset, "gy")

    def dropblock_mask(self, shape, dtype, gamma, block_size, seed, offset):
        shape = tuple(int(v) for v in shape)
        _dropout.check_block_shape(shape, block_size)
        if np.dtype(dtype) != _F32:
            raise TypeError(f"dtype: the cuda backend computes in float32, got {np.dtype(dtype)}")
        gamma = _dropout.check_p(min(float(gamma), 1.0), "gamma")
        k0, k1, o0, o1 = self._stream_args(seed, offset)
        n = int(np.prod(shape, dtype=np.int64))
        m = self.empty(shape)
        if n == 0:
            return m
        h, w, b = shape[2], shape[3], int(block_size)
        seeds = self.empty((n,), np.uint8)
        kept = self._gpuarray.zeros((1,), np.uint64)
        self._launch("dropout", "dropblock_seeds", n, self._ptr(seeds), np.int64(n), np.int32(h),
                     np.int32(w), np.int32(b), k0, k1, o0, o1,
                     np.uint32(_dropout.threshold(gamma)))
        self._launch("dropout", "dropblock_keep", n, self._ptr(m), self._ptr(kept), self._ptr(seeds),
                     np.int64(n), np.int32(h), np.int32(w), np.int32(b))
        self._launch("dropout", "dropblock_scale", n, self._ptr(m), np.int64(n), self._ptr(kept))
        return m

    # ---------------------------------------------------------------- attention
    # attention.cu: flash attention. Forward for head dims 32 and 64: 128-row query tiles
    # per block (attention_forward_wide_*), or on tensor cores when TF32 is allowed
    # (attention_forward_tf32_*). Backward for head dim 64: 64-key tiles per block
    # (attention_backward_wide_d64, or attention_backward_tf32_d64); other head dims (up to 128) and the backward:
    # one thread per query (or key) row, the other side staged tile by tile in shared memory.
    _ATT_THREADS = 64

    def _attention_args(self, q, k, v, mask, scale, is_causal):
        b, h, hk, lq, lk, d, dv = _attention.check_attention(q, k, v, mask, scale, is_causal)
        _check_f32(q, "q")
        for name, n in (("q", d), ("v", dv)):
            if n > 128:
                raise ValueError(f"{name}: the cuda attention kernel takes head dims up to 128, got {n}")
        if b * max(h, hk) > 65535:
            raise ValueError(f"q: the cuda attention kernel takes batch * heads up to 65535, got {b * h}")
        msb = msh = 0
        if mask is not None:
            msb = int(mask.shape[1]) * lq * lk if mask.shape[0] != 1 else 0
            msh = lq * lk if mask.shape[1] != 1 else 0
        tail = (np.int32(h), np.int32(hk), np.int32(lq), np.int32(lk), np.int32(d), np.int32(dv),
                np.float32(scale), np.int32(bool(is_causal)))
        return (b, h, hk, lq, lk, d, dv), (self._ptr(mask), np.int64(msb), np.int64(msh)), tail

    @staticmethod
    def _attention_suffix(d: int, dv: int) -> str:
        """The kernels specialized for D = Dv = 32 / 64 (per-row arrays in registers)."""
        return f"_d{d}" if d == dv and d in (32, 64) else ""

    def _attention_wide(self, d: int):
        """attention_forward_wide_d{d}, prepared, with the dynamic shared memory it needs
        (Q^T, K^T, V and P^T tiles: 96 KB for d = 64, past the 48 KB default) allowed."""
        key = ("attention", f"wide{d}", "smem")
        hit = self._functions.get(key)
        if hit is None:
            f = self._prepared("attention", f"attention_forward_wide_d{d}", "PPPPPPqqiiiifi")
            smem = 4 * (d * 128 + d * 64 + 64 * d + 64 * 128)
            f.set_attribute(self._drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            hit = self._functions[key] = (f, smem)
        return hit

    def attention_forward(self, q, k, v, mask, scale, is_causal):
        (b, h, hk, lq, lk, d, dv), margs, tail = self._attention_args(q, k, v, mask, scale, is_causal)
        out = self.empty((b, h, lq, dv))
        lse = self.empty((b, h, lq))
        if b * h * lq == 0:
            return out, lse
        if lk == 0:  # no key: every row is hidden
            return self.full(out.shape, 0.0, _F32), self.full(lse.shape, -math.inf, _F32)
        if dv == 0:  # no value column: run with one zero column to get lse
            _, lse = self.attention_forward(q, k, self.full(tuple(v.shape[:3]) + (1,), 0.0, _F32),
                                            mask, scale, is_causal)
            return out, lse
        from . import cuda as flags

        if d == dv and d in (32, 64) and flags.matmul.allow_tf32:
            # tensor cores (TF32), only when allowed: 64 query rows per block of 4 warps
            self._prepared("attention", f"attention_forward_tf32_d{d}", "PPPPPPqqiiiifi").prepared_call(
                ((lq + 63) // 64, b * h), (128, 1, 1), self._ptr(out), self._ptr(lse), self._ptr(q),
                self._ptr(k), self._ptr(v), *margs, h, hk, lq, lk, float(tail[6]), int(tail[7]))
            return out, lse
        if d == dv and d in (32, 64):
            # the wide kernel: 128 query rows per block of 128 threads (see attention.cu)
            f, smem = self._attention_wide(d)
            f.prepared_call(((lq + 127) // 128, b * h), (128, 1, 1), self._ptr(out), self._ptr(lse),
                            self._ptr(q), self._ptr(k), self._ptr(v), *margs, h, hk, lq, lk,
                            float(tail[6]), int(tail[7]), shared_size=smem)
            return out, lse
        t = self._ATT_THREADS
        self._fn("attention", "attention_forward" + self._attention_suffix(d, dv))(
            self._ptr(out), self._ptr(lse), self._ptr(q), self._ptr(k), self._ptr(v), *margs, *tail,
            block=(t, 1, 1), grid=((lq + t - 1) // t, b * h))
        return out, lse

    def attention_backward(self, q, k, v, mask, scale, is_causal, out, lse, gout):
        (b, h, hk, lq, lk, d, dv), margs, tail = self._attention_args(q, k, v, mask, scale, is_causal)
        _attention.check_saved(q, v, out, lse, gout)
        if b * h * lq == 0 or lk == 0 or dv == 0:  # nothing flows back
            return (self.full(q.shape, 0.0, _F32), self.full(k.shape, 0.0, _F32),
                    self.full(v.shape, 0.0, _F32))
        # the d=64 kernels sum dQ with float atomics (not deterministic): deterministic
        # mode takes the row kernels below instead (see ferrograd/_determinism.py)
        if d == dv == 64 and not are_deterministic_algorithms_enabled():
            return self._attention_backward_wide(q, k, v, margs, tail, lse, out, gout)
        gq, gk, gv = self.empty(q.shape), self.empty(k.shape), self.empty(v.shape)
        t = self._ATT_THREADS
        saved = (self._ptr(out), self._ptr(lse), self._ptr(gout))
        suffix = self._attention_suffix(d, dv)
        self._fn("attention", "attention_backward_dq" + suffix)(
            self._ptr(gq), self._ptr(q), self._ptr(k), self._ptr(v), *margs, *saved, *tail,
            block=(t, 1, 1), grid=((lq + t - 1) // t, b * h))
        self._fn("attention", "attention_backward_dkdv" + suffix)(
            self._ptr(gk), self._ptr(gv), self._ptr(q), self._ptr(k), self._ptr(v), *margs, *saved,
            *tail, block=(t, 1, 1), grid=((lk + t - 1) // t, b * hk))
        return gq, gk, gv
    def _attention_backward_wide(self, q, k, v, margs, tail, lse, out, gout):
        """attention_backward_wide_d64 (or attention_backward_tf32_d64 on tensor cores when
        TF32 is allowed): delta = rowsum(gout * out) first, then one block per 64 keys of a
        key/value head computes gk and gv and adds into gq (zeroed)."""
        from . import cuda as flags

        b, h, lq, _ = (int(s) for s in q.shape)
        hk, lk = int(k.shape[1]), int(k.shape[2])
        delta = self.empty((b, h, lq))
        self._launch("attention", "attention_backward_rowdot", b * h * lq, self._ptr(delta), self._ptr(out),
                     self._ptr(gout), np.int64(b * h * lq), np.int32(64))
        gq = self.full(q.shape, 0.0, _F32)
        gk, gv = self.empty(k.shape), self.empty(v.shape)
        tf32 = bool(flags.matmul.allow_tf32)
        name = "attention_backward_tf32_d64" if tf32 else "attention_backward_wide_d64"
        key = ("attention", name, "smem")
        hit = self._functions.get(key)
        if hit is None:
            f = self._prepared("attention", name, "PPPPPPPqqPPPiiiifi")
            if tf32:  # Q, dO twice (rows of 80 and 68), K (72), dS (68), lse, delta
                smem = 4 * (2 * 64 * 80 + 3 * 64 * 68 + 64 * 72 + 2 * 64)
            else:  # K, V, Q, dO as [d][row] and [row][d] but V, P^T and dS^T, dS, lse, delta
                smem = 4 * (7 * 64 * 64 + 2 * 64 * 68 + 64 * 64 + 2 * 64)
            f.set_attribute(self._drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            hit = self._functions[key] = (f, smem)
        f, smem = hit
        f.prepared_call(((lk + 63) // 64, b * hk), (128 if tf32 else 256, 1, 1), self._ptr(gq), self._ptr(gk), self._ptr(gv),
                        self._ptr(q), self._ptr(k), self._ptr(v), *margs, self._ptr(lse), self._ptr(delta),
                        self._ptr(gout), h, hk, lq, lk, float(tail[6]), int(tail[7]), shared_size=smem)
        return gq, gk, gv

    # ------------------------------------------------------------------ convolution
    # Every algo runs as im2col (cuda/conv.cu) + linear.cu's SGEMM batched over groups;
    # "winograd" and "fft" are accepted (and checked) for API parity and give the same
    # result by this path. The input gradient folds the columns back with a gathering
    # col2im (no atomics).
    def _conv_geom_args(self, x, w, s, p, d, out):
        n, c, h, wd = (int(v) for v in x.shape)
        kh, kw = int(w.shape[2]), int(w.shape[3])
        vals = (n, c, h, wd, kh, kw, out[0], out[1], s[0], s[1], p[0], p[1], d[0], d[1])
        return tuple(np.int32(v) for v in vals)

    #: arrays below this many elements use conv.cu's int-index kernels (tests lower it)
    _CONV_I32_LIMIT = 1 << 30

    def _conv_kernel(self, name: str, *arrays) -> str:
        """conv.cu's int-index copy of a kernel when every array involved has fewer than
        2^30 elements (its per-element divisions are several times cheaper)."""
        return name + "_i32" if max(int(a.size) for a in arrays) < self._CONV_I32_LIMIT else name

    def _conv_rows_grid_ok(self, x, rows: int, cols_size: int) -> bool:
        """conv_im2col_rows fits: a grid of (images, rows) and 31-bit indices."""
        return rows <= 65535 and max(int(x.size), cols_size) < self._CONV_I32_LIMIT

    def _conv_cols(self, x, w, s, p, d, g, out, per_image: bool = False):
        """im2col: (G, C/G KH KW, N L), or with per_image (N, C KH KW, L) (groups == 1 and
        conv_im2col_rows' grid limits only: see conv2d_forward)."""
        n, c = int(x.shape[0]), int(x.shape[1])
        kh, kw = int(w.shape[2]), int(w.shape[3])
        rows, L = c * kh * kw, out[0] * out[1]
        cols = self.empty((n, rows, L) if per_image else (g, rows // g, n * L))
        if cols.size == 0:
            return cols
        if self._conv_rows_grid_ok(x, rows, int(cols.size)):
            self._prepared("conv", "conv_im2col_rows", "PP" + "i" * 15).prepared_call(
                (n, rows), (256, 1, 1), self._ptr(cols), self._ptr(x),
                *(int(v) for v in self._conv_geom_args(x, w, s, p, d, out)), int(per_image))
        else:
            self._launch("conv", self._conv_kernel("conv_im2col", cols, x), cols.size,
                         self._ptr(cols), self._ptr(x), *self._conv_geom_args(x, w, s, p, d, out))
        return cols

    def conv2d_forward(self, x, weight, bias, stride, padding, dilation, groups, algo="auto"):
        s, p, d, g, out, _ = _conv.prepare(x, weight, bias, None, stride, padding, dilation,
                                           groups, algo)
        _check_f32(x, "input")
        n, o = int(x.shape[0]), int(weight.shape[0])
        k = int(weight.shape[1]) * int(weight.shape[2]) * int(weight.shape[3])
        y = self.empty((n, o, out[0], out[1]))
        L = out[0] * out[1]
        if g == 1 and y.size and k:
            # one GEMM batched over images writes y (N, O, L): y[n] = W @ X_n, X_n = x[n]
            # itself for a 1x1 / stride 1 / no padding kernel, else its columns; then the bias
            pointwise = (int(weight.shape[2]) == int(weight.shape[3]) == 1 and s == (1, 1)
                         and p == (0, 0))
            if pointwise:
                b_src = x
            elif self._conv_rows_grid_ok(x, k, n * k * L):
                b_src = self._conv_cols(x, weight, s, p, d, g, out, per_image=True)
            else:
                b_src = None
            if b_src is not None:
                self._gemm_launch(self._ptr(y), self._ptr(weight), self._ptr(b_src), np.uintp(0),
                                  o, L, k, False, False, 0, k * L, o * L, n)
                if bias is not None and n * o <= 2**31 - 1:
                    self._prepared("conv", "conv_add_bias", "PPii").prepared_call(
                        (n * o, 1), (256, 1, 1), self._ptr(y), self._ptr(bias), o, L)
                elif bias is not None:
                    y = self.binary_forward("add", y, bias.reshape((1, o, 1, 1)))
                return y
        cols = self._conv_cols(x, weight, s, p, d, g, out)
        yg = self._gemm(weight.reshape(g, o // g, k), cols, False, False)  # (G, Og, N * L)
        self._launch("conv", self._conv_kernel("conv_ungroup", y), y.size, self._ptr(y), self._ptr(yg), self._ptr(bias),
                     np.int32(n), np.int32(o), np.int64(L))
        return y

    def conv2d_backward(self, x, weight, gy, stride, padding, dilation, groups, algo="auto",
                        has_bias=True):
        s, p, d, g, out, _ = _conv.prepare(x, weight, None, gy, stride, padding, dilation,
                                           groups, algo)
        _check_f32(x, "input")
        n, o = int(x.shape[0]), int(weight.shape[0])
        k = int(weight.shape[1]) * int(weight.shape[2]) * int(weight.shape[3])
        L = out[0] * out[1]
        gyg = self.empty((g, o // g, n * L))
        self._launch("conv", self._conv_kernel("conv_group", gyg), gyg.size, self._ptr(gyg), self._ptr(gy),
                     np.int32(n), np.int32(o), np.int64(L))
        cols = self._conv_cols(x, weight, s, p, d, g, out)
        gw = self._gemm(gyg, cols, False, True).reshape(tuple(int(v) for v in weight.shape))
        gcols = self._gemm(weight.reshape(g, o // g, k), gyg, True, False)  # (G, K, N * L)
        gx = self.empty(tuple(int(v) for v in x.shape))
        self._launch("conv", self._conv_kernel("conv_col2im", gx, gcols), gx.size, self._ptr(gx), self._ptr(gcols),
                     *self._conv_geom_args(x, weight, s, p, d, out))
        if not has_bias:
            gb = None
        elif gy.size == 0:  # an empty batch: nothing to sum
            gb = self.full((o,), 0.0, _F32)
        else:
            gb = self._sum_axes(gy, (0, 2, 3))
        return gx, gw, gb
    # ---------------------------------------------------------------- recurrent
    # rnn.cu's fused step kernels plus linear.cu's gemm, called on raw pointers so that the
    # steps of one sequence read and write slices of the (T, N, *) arrays without views.
    def _rnn_gemm(self, c_ptr, a_ptr, b_ptr, bias_ptr, m, n, k, trans_a, trans_b):
        """C (m x n) = op(A) @ op(B) (+ bias per column); pointers as np.uintp."""
        if m == 0 or n == 0:
            return
        self._gemm_launch(c_ptr, a_ptr, b_ptr, bias_ptr, m, n, k, trans_a, trans_b)

    def _rnn_contig(self, *arrays):
        return [a if a is None or a.flags.c_contiguous else self.copy(a) for a in arrays]

    def _rnn_copy_rows(self, dst, dst_elem, src, src_elem, count):
        if count:
            self._drv.memcpy_dtod(int(dst.gpudata) + 4 * dst_elem,
                                  int(src.gpudata) + 4 * src_elem, 4 * count)

    def _rnn_prev_states(self, y, h0, t, n, hs, reverse):
        """(T, N, H): the state each step started from (h0 at the first step)."""
        prev = self.empty((t, n, hs))
        step = n * hs
        if reverse:
            self._rnn_copy_rows(prev, 0, y, step, (t - 1) * step)
            self._rnn_copy_rows(prev, (t - 1) * step, h0, 0, step)
        else:
            self._rnn_copy_rows(prev, 0, h0, 0, step)
            self._rnn_copy_rows(prev, step, y, 0, (t - 1) * step)
        return prev

    def _rnn_last(self, y, t, n, hs, reverse):
        out = self.empty((n, hs))
        self._rnn_copy_rows(out, 0, y, (0 if reverse else t - 1) * n * hs, n * hs)
        return out

    def _rnn_pointwise(self, name: str, types: str, count: int):
        """A prepared launcher of rnn.cu's step kernel ``name`` over count items."""
        if count == 0:
            return lambda *args: None
        f = self._prepared("rnn", name, types)
        grid = (max(1, min((count + 255) // 256, self._max_blocks)), 1)
        block = (256, 1, 1)
        return lambda *args: f.prepared_call(grid, block, *args)

    @staticmethod
    def _rnn_aligned(n: int, hs: int) -> bool:
        """Every step's slice of a (T, N, H) array starts 16-byte aligned."""
        return (n * hs) % 4 == 0

    @staticmethod
    def _rnn_steps(t, reverse):
        return range(t - 1, -1, -1) if reverse else range(t)

    def lstm_forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
        x, h0, c0, w_ih, w_hh, b_ih, b_hh = self._rnn_contig(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        g = 4 * hs
        bias = self.binary_forward("add", b_ih, b_hh) if b_ih is not None else None
        xp = self.empty((t, n, g))
        self._rnn_gemm(self._ptr(xp), self._ptr(x), self._ptr(w_ih), self._ptr(bias), t * n, g, i, 0, 1)
        y, cells, gates = self.empty((t, n, hs)), self.empty((t, n, hs)), self.empty((t, n, g))
        hp = self.empty((n, g))
        # per step: hp = h_prev @ w_hh^T, then the fused gate kernel; launchers planned once
        # and pointers kept as ints (Python's per-launch cost is most of a step's time)
        gemm = self._gemm_stepper(n, g, hs, False, True, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("lstm_step_forward", "PPPPPPqi", n * hs)
        y_p, c_p, xp_p, g_p, hp_p = (int(self._ptr(a)) for a in (y, cells, xp, gates, hp))
        w_p = int(self._ptr(w_hh))
        h_prev, c_prev = int(self._ptr(h0)), int(self._ptr(c0))
        for s in self._rnn_steps(t, reverse):
            h_s, c_s = y_p + 4 * s * n * hs, c_p + 4 * s * n * hs
            gemm(hp_p, h_prev, w_p)
            step(xp_p + 4 * s * n * g, hp_p, c_prev, g_p + 4 * s * n * g, c_s, h_s, n, hs)
            h_prev, c_prev = h_s, c_s
        return (y, self._rnn_last(y, t, n, hs, reverse), self._rnn_last(cells, t, n, hs, reverse),
                gates, cells)

    def lstm_backward(self, x, h0, c0, w_ih, w_hh, y, gates, cells, gy, gh_n, gc_n, has_bias,
                      reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("lstm", x, (h0, c0), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("lstm", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs),
                                                "cells": (cells, hs)},
                                {"gy": gy, "gh_n": gh_n, "gc_n": gc_n})
        x, h0, c0, w_ih, w_hh, y, gates, cells, gy = self._rnn_contig(
            x, h0, c0, w_ih, w_hh, y, gates, cells, gy)
        g = 4 * hs
        dh, dc = self.copy(gh_n), self.copy(gc_n)
        g_pre = self.empty((t, n, g))
        # per step (latest first): the fused gate backward, then dh = g_pre_s @ w_hh
        gemm = self._gemm_stepper(n, hs, g, False, False, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("lstm_step_backward", "PPPPPPPqi", n * hs)
        gates_p, c_p, gy_p, gp_p = (int(self._ptr(a)) for a in (gates, cells, gy, g_pre))
        dh_p, dc_p, w_p, c0_p = int(self._ptr(dh)), int(self._ptr(dc)), int(self._ptr(w_hh)), int(self._ptr(c0))
        prev_of = (lambda s: s + 1) if reverse else (lambda s: s - 1)
        for s in self._rnn_steps(t, not reverse):
            p = prev_of(s)
            c_prev = c0_p if not 0 <= p < t else c_p + 4 * p * n * hs
            gp_s = gp_p + 4 * s * n * g
            step(gates_p + 4 * s * n * g, c_p + 4 * s * n * hs, c_prev, dh_p,
                 gy_p + 4 * s * n * hs, dc_p, gp_s, n, hs)
            gemm(dh_p, gp_s, w_p)
        gx = self.empty((t, n, i))
        self._rnn_gemm(self._ptr(gx), self._ptr(g_pre), self._ptr(w_ih), np.uintp(0), t * n, i, g, 0, 0)
        gw_ih, gw_hh = self.empty((g, i)), self.empty((g, hs))
        self._rnn_gemm(self._ptr(gw_ih), self._ptr(g_pre), self._ptr(x), np.uintp(0), g, i, t * n, 1, 0)
        h_prev = self._rnn_prev_states(y, h0, t, n, hs, reverse)
        self._rnn_gemm(self._ptr(gw_hh), self._ptr(g_pre), self._ptr(h_prev), np.uintp(0), g, hs,
                       t * n, 1, 0)
        gb = self._sum_axes(g_pre.reshape(t * n, g), (0,)).reshape(g) if has_bias else None
        return gx, dh, dc, gw_ih, gw_hh, gb

    def gru_forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, b_ih, b_hh)
        x, h0, w_ih, w_hh, b_ih, b_hh = self._rnn_contig(x, h0, w_ih, w_hh, b_ih, b_hh)
        g = 3 * hs
        xp = self.empty((t, n, g))
        self._rnn_gemm(self._ptr(xp), self._ptr(x), self._ptr(w_ih), self._ptr(b_ih), t * n, g, i, 0, 1)
        y, gates, hp = self.empty((t, n, hs)), self.empty((t, n, 4 * hs)), self.empty((n, g))
        gemm = self._gemm_stepper(n, g, hs, False, True, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("gru_step_forward", "PPPPPqi", n * hs)
        y_p, xp_p, g_p, hp_p = (int(self._ptr(a)) for a in (y, xp, gates, hp))
        w_p, b_p = int(self._ptr(w_hh)), int(self._ptr(b_hh))
        h_prev = int(self._ptr(h0))
        for s in self._rnn_steps(t, reverse):
            h_s = y_p + 4 * s * n * hs
            gemm(hp_p, h_prev, w_p, b_p)
            step(xp_p + 4 * s * n * g, hp_p, h_prev, g_p + 4 * s * n * 4 * hs, h_s, n, hs)
            h_prev = h_s
        return y, self._rnn_last(y, t, n, hs, reverse), gates

    def gru_backward(self, x, h0, w_ih, w_hh, y, gates, gy, gh_n, has_bias, reverse):
        _check_f32(x, "x")
        t, n, i, hs = _rnn.check_rnn("gru", x, (h0,), w_ih, w_hh, None, None)
        _rnn.check_rnn_backward("gru", x, hs, {"y": (y, hs), "gates": (gates, 4 * hs)},
                                {"gy": gy, "gh_n": gh_n})
        x, h0, w_ih, w_hh, y, gates, gy = self._rnn_contig(x, h0, w_ih, w_hh, y, gates, gy)
        g = 3 * hs
        dz, dmm = self.copy(gh_n), self.full((n, hs), 0.0, _F32)
        gi, gh = self.empty((t, n, g)), self.empty((t, n, g))
        gemm = self._gemm_stepper(n, hs, g, False, False, self._rnn_aligned(n, hs))
        step = self._rnn_pointwise("gru_step_backward", "PPPPPPPqi", n * hs)
        gates_p, y_p, gy_p, gi_p, gh_p = (int(self._ptr(a)) for a in (gates, y, gy, gi, gh))
        dz_p, dmm_p, w_p, h0_p = int(self._ptr(dz)), int(self._ptr(dmm)), int(self._ptr(w_hh)), int(self._ptr(h0))
        prev_of = (lambda s: s + 1) if reverse else (lambda s: s - 1)
        for s in self._rnn_steps(t, not reverse):
            p = prev_of(s)
            h_prev = h0_p if not 0 <= p < t else y_p + 4 * p * n * hs
            gh_s = gh_p + 4 * s * n * g
            step(gates_p + 4 * s * n * 4 * hs, h_prev, dmm_p, gy_p + 4 * s * n * hs, dz_p,
                 gi_p + 4 * s * n * g, gh_s, n, hs)
            gemm(dmm_p, gh_s, w_p)
        gh0 = self.binary_forward("add", dz, dmm)
        gx = self.empty((t, n, i))
        self._rnn_gemm(self._ptr(gx), self._ptr(gi), self._ptr(w_ih), np.uintp(0), t * n, i, g, 0, 0)
        gw_ih, gw_hh = self.empty((g, i)), self.empty((g, hs))
        self._rnn_gemm(self._ptr(gw_ih), self._ptr(gi), self._ptr(x), np.uintp(0), g, i, t * n, 1, 0)
        h_prev = self._rnn_prev_states(y, h0, t, n, hs, reverse)
        self._rnn_gemm(self._ptr(gw_hh), self._ptr(gh), self._ptr(h_prev), np.uintp(0), g, hs,
                       t * n, 1, 0)
        gb_ih = gb_hh = None
        if has_bias:
            gb_ih = self._sum_axes(gi.reshape(t * n, g), (0,)).reshape(g)
            gb_hh = self._sum_axes(gh.reshape(t * n, g), (0,)).reshape(g)
        return gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh

    def rnn_concat_cols(self, arrays):
        arrays = self._rnn_contig(*arrays)
        for a in arrays:
            _check_f32(a, "arrays")
        rows = int(arrays[0].shape[0])
        if any(len(a.shape) != 2 or a.shape[0] != rows for a in arrays):
            raise ValueError(f"arrays: expected 2-D arrays with {rows} rows, got shapes "
                             f"{[tuple(a.shape) for a in arrays]}")
        total = sum(int(a.shape[1]) for a in arrays)
        out = self.empty((rows, total))
        off = 0
        for a in arrays:
            w = int(a.shape[1])
            self._launch("rnn", "copy_cols", rows * w, self._ptr(out), self._ptr(a), np.int64(rows),
                         np.int64(w), np.int64(total), np.int64(off), np.int64(w), np.int64(0))
            off += w
        return out

    def rnn_split_cols(self, a, sizes):
        _check_f32(a, "a")
        (a,) = self._rnn_contig(a)
        sizes = [int(s) for s in sizes]
        if len(a.shape) != 2 or sum(sizes) != a.shape[1]:
            raise ValueError(f"sizes: expected column counts summing to a.shape[1] of a 2-D "
                             f"array, got {sizes} for shape {tuple(a.shape)}")
        rows, cols = int(a.shape[0]), int(a.shape[1])
        out, off = [], 0
        for w in sizes:
            p = self.empty((rows, w))
            self._launch("rnn", "copy_cols", rows * w, self._ptr(p), self._ptr(a), np.int64(rows),
                         np.int64(w), np.int64(w), np.int64(0), np.int64(cols), np.int64(off))
            out.append(p)
            off += w
        return tuple(out)
