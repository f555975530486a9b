"""The cuda backend: hand-written kernels (``ferrograd/cuda/<family>.cu``) launched with
PyCUDA on GPUArrays.

* Sources ship inside the package; each family is compiled once per process (PyCUDA also
  keeps compiled binaries in its disk cache) for the GPU in use.
* The backend runs in the device's primary context, the one PyTorch and CuPy use, so a
  GPUArray can be viewed by torch without a copy (``__cuda_array_interface__``).
* Outputs come from a memory pool: no cudaMalloc per op.
* float32 only (float64 raises TypeError); class indices are int64.
* Without PyCUDA or a GPU, creating the backend raises RuntimeError saying which.

Layout: ``runtime.py`` (PyCUDA, the module cache, prepared launches, pooled memory),
``gemm.py`` (the GEMM planner every product goes through), then one module per op family,
each a mixin class; :class:`CudaBackend` is in ``backend.py``, imported on first use so
that ``import ferrograd`` never needs PyCUDA.

This package is also ``fg.backends.cuda``, home of ``fg.backends.cuda.matmul.allow_tf32``
(PyTorch's ``torch.backends.cuda.matmul.allow_tf32``).
"""

from __future__ import annotations


class _MatmulFlags:
    """``fg.backends.cuda.matmul.allow_tf32`` (default False, as PyTorch's
    ``torch.backends.cuda.matmul.allow_tf32``): when True, the cuda backend's GEMMs
    (matmul, Linear, the convolutions and recurrent layers built on them) and flash
    attention (forward for head dims 32 and 64, backward for 64) take their inputs as TF32
    (10-bit mantissa) and run on tensor cores, summing in float32.
    Relative error grows to about 1e-3 per product; leave it off for float32 accuracy."""

    allow_tf32 = False


#: ``fg.backends.cuda.matmul.allow_tf32``: see :class:`_MatmulFlags`.
matmul = _MatmulFlags()
