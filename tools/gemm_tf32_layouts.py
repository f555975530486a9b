"""Time linear.cu's two TF32 GEMM kernels at 8192^3 for each operand layout (GPU machine).

    python tools/gemm_tf32_layouts.py

gemm_tf32_* (128x128 tiles) runs every layout; gemm_tf32w_* (128x256 tiles, float4
fragment reads) the two with B transposed; on Hopper, linear_sm90.cu's
gemm_wgmma_tf32_nt every layout (the others transposed first, included in its time). Prints milliseconds (median of 7 timed calls,
CUDA events) and the largest difference from gemm_tf32_nn's result, which shows that the
kernels agree to TF32 rounding. CudaBackend._gemm_plan's choice rests on these figures.
"""

from __future__ import annotations

import statistics

import numpy as np

import ferrograd as fg


def main(n: int = 8192) -> None:
    import pycuda.driver as drv

    be = fg.get_backend("cuda")
    rng = np.random.default_rng(0)
    a_host = rng.standard_normal((n, n)).astype(np.float32)
    b_host = rng.standard_normal((n, n)).astype(np.float32)
    ops = {"a": be.from_numpy(a_host), "b": be.from_numpy(b_host),
           "at": be.from_numpy(np.ascontiguousarray(a_host.T)),
           "bt": be.from_numpy(np.ascontiguousarray(b_host.T))}
    c = be.empty((n, n))
    ref = None

    def timed(launch) -> float:
        launch()
        times = []
        for _ in range(7):
            s, e = drv.Event(), drv.Event()
            s.record()
            launch()
            e.record()
            e.synchronize()
            times.append(s.time_till(e))
        return statistics.median(times)

    for kind in ("nn", "nt", "tn", "tt"):
        a = ops["at" if kind[0] == "t" else "a"]
        b = ops["bt" if kind[1] == "t" else "b"]
        kernels = [(f"gemm_tf32_{kind}", be._prepared("linear", f"gemm_tf32_{kind}", "PPPPiiiqqq"),
                    (n // 128, n // 128, 1))]
        if kind[1] == "t":
            kernels.append((f"gemm_tf32w_{kind}", be._tf32_wide(kind), (n // 256, n // 128, 1)))
        if be._wgmma:
            from ferrograd.backends.cuda.gemm import _HopperTf32Gemm

            kernels.append(("gemm_wgmma_tf32 " + kind, _HopperTf32Gemm(be, kind[0] == "t", kind[1] == "t"),
                            (n // 256, n // 128, 1)))
        for name, f, grid in kernels:
            ms = timed(lambda: f.prepared_call(grid, (256, 1, 1), be._ptr(c), be._ptr(a), be._ptr(b), 0,
                                               n, n, n, 0, 0, 0))
            got = c.get()
            if ref is None:
                ref = got
            print(f"{name:16s} {ms:7.3f} ms  {2 * n ** 3 / ms / 1e9:6.1f} TFLOP/s  "
                  f"max |diff| vs gemm_tf32_nn {float(np.abs(got - ref).max()):.2e}")


if __name__ == "__main__":
    main()
