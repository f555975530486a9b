"""The cuda backend: the GEMM planner: which kernel, tile and split for a product."""

from __future__ import annotations

from . import matmul as matmul_flags  # allow_tf32 is read at each call
from .runtime import _F32, _WithSharedMemory


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


class GemmPlanner:
    """The cuda backend's the GEMM planner: which kernel, tile and split for a product."""

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
        if matmul_flags.allow_tf32 and vec and not long_k:
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
