// SGEMMs: C[b] = op(A[b]) @ op(B[b]) (+ bias per column), row-major, op = optional
// transpose read through the indexing (never copied). CudaBackend._gemm_plan picks the
// kernel: `gemm` (64x64 tiles, for thin problems), `gemm128_*` (128x128 tiles, float4
// loads) or `gemm_tf32_*` (tensor cores, when allowed); the first two can split K
// (partial sums in a workspace, added by gemm_splitk_reduce).
//
// `gemm`: 64x64 tiles of C per block of 256 threads, 16-deep K slices staged in shared
// memory, 4x4 outputs per thread.
#include "common.cuh"

#define BM 64
#define BN 64
#define BK 16

// What blockIdx.z means for a GEMM block. kchunk == 0: a batch index (A, B and C advance
// by their strides; the block sums all of K). kchunk > 0 (split K, for problems with few
// tiles and a long K): block z sums k in [z kchunk, (z + 1) kchunk) into its own slice
// C + z stride_c of a workspace that gemm_splitk_reduce adds up.
__device__ __forceinline__ void gemm_block_z(const float*& A, const float*& B, float*& C, int K,
                                             long long stride_a, long long stride_b,
                                             long long stride_c, int kchunk, int& kbeg, int& kend) {
    kbeg = 0;
    kend = K;
    if (kchunk > 0) {
        kbeg = blockIdx.z * kchunk;
        kend = min(K, kbeg + kchunk);
    } else {
        A += blockIdx.z * stride_a;
        B += blockIdx.z * stride_b;
    }
    C += blockIdx.z * stride_c;
}

extern "C" __global__ void __launch_bounds__(256)
gemm(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,
     int trans_a, int trans_b, long long stride_a, long long stride_b, long long stride_c,
     int kchunk) {
    int kbeg, kend;
    gemm_block_z(A, B, C, K, stride_a, stride_b, stride_c, kchunk, kbeg, kend);
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    const int t = threadIdx.x;
    const int tx = t % 16, ty = t / 16;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    float acc[4][4] = {};
    for (int k0 = kbeg; k0 < kend; k0 += BK) {
        // consecutive threads read consecutive addresses in either layout (coalesced)
        for (int i = t; i < BM * BK; i += 256) {
            int m, k;
            if (trans_a) { m = i % BM; k = i / BM; } else { k = i % BK; m = i / BK; }
            int gm = row0 + m, gk = k0 + k;
            float v = 0.0f;
            if (gm < M && gk < kend) v = trans_a ? A[(long long)gk * M + gm] : A[(long long)gm * K + gk];
            As[k][m] = v;
        }
        for (int i = t; i < BK * BN; i += 256) {
            int n, k;
            if (trans_b) { k = i % BK; n = i / BK; } else { n = i % BN; k = i / BN; }
            int gk = k0 + k, gn = col0 + n;
            float v = 0.0f;
            if (gk < kend && gn < N) v = trans_b ? B[(long long)gn * K + gk] : B[(long long)gk * N + gn];
            Bs[k][n] = v;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int r = row0 + ty + 16 * i;
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int c = col0 + tx + 16 * j;
            if (c < N) C[(long long)r * N + c] = acc[i][j] + (bias ? bias[c] : 0.0f);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The large-problem SGEMM: 128x128 tiles of C per block of 256 threads, 8-deep K slices,
// 8x8 outputs per thread (two 4x4 quadrants 64 apart, so that a warp's shared-memory
// reads are float4 and conflict-free), 16-byte global loads, and double buffering: the
// next slice is fetched into registers while the current one is multiplied, so one
// __syncthreads per slice. VEC (the host checks it) means every row of A and B in memory
// is a whole number of float4s and the base addresses are 16-byte aligned; then a float4
// never straddles a matrix edge, and edge tiles load whole float4s or zeros.
#define G_BM 128
#define G_BN 128
#define G_BK 8

template <bool VEC>
__device__ __forceinline__ float4 gemm_load4(const float* p, long long ld, int r, int c, int rows,
                                             int cols) {
    // four consecutive elements (r, c..c+3) of a row-major rows x cols matrix
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r >= rows) return v;
    const float* q = p + (long long)r * ld + c;
    if (VEC) {
        if (c < cols) v = *reinterpret_cast<const float4*>(q);
    } else {
        if (c < cols) v.x = q[0];
        if (c + 1 < cols) v.y = q[1];
        if (c + 2 < cols) v.z = q[2];
        if (c + 3 < cols) v.w = q[3];
    }
    return v;
}

// A tile (TBM x BK of op(A)) as smem As[k][m]; B tile (BK x BN of op(B)) as Bs[k][n].
// Threads t < 2 TBM move one float4 of A per slice (all 256 when TBM = 128), every thread
// one float4 of B.
template <bool TA, bool VEC, int TBM>
__device__ __forceinline__ float4 gemm_fetch_a(const float* A, int M, int K, int kend, int row0, int k0,
                                               int t) {
    // op(A) = A (M x K, row-major): a float4 runs along k; op(A) = A^T: A is K x M, runs along m.
    // Columns k >= kend read as zeros (the end of this block's K range).
    return TA ? gemm_load4<VEC>(A, M, k0 + t / (TBM / 4), row0 + (t % (TBM / 4)) * 4, kend, M)
              : gemm_load4<VEC>(A, K, row0 + t / 2, k0 + (t % 2) * 4, M, kend);
}
template <bool TA, int TBM>
__device__ __forceinline__ void gemm_stash_a(float (*As)[TBM + 4], float4 v, int t) {
    if (TA) {
        *reinterpret_cast<float4*>(&As[t / (TBM / 4)][(t % (TBM / 4)) * 4]) = v;
    } else {
        const int m = t / 2, k = (t % 2) * 4;
        As[k][m] = v.x; As[k + 1][m] = v.y; As[k + 2][m] = v.z; As[k + 3][m] = v.w;
    }
}
template <bool TB, bool VEC>
__device__ __forceinline__ float4 gemm_fetch_b(const float* B, int N, int K, int kend, int col0, int k0,
                                               int t) {
    // op(B) = B (K x N): a float4 runs along n; op(B) = B^T: B is N x K, runs along k
    return TB ? gemm_load4<VEC>(B, K, col0 + t / 2, k0 + (t % 2) * 4, N, kend)
              : gemm_load4<VEC>(B, N, k0 + t / 32, col0 + (t % 32) * 4, kend, N);
}
template <bool TB>
__device__ __forceinline__ void gemm_stash_b(float (*Bs)[G_BN], float4 v, int t) {
    if (TB) {
        const int n = t / 2, k = (t % 2) * 4;
        Bs[k][n] = v.x; Bs[k + 1][n] = v.y; Bs[k + 2][n] = v.z; Bs[k + 3][n] = v.w;
    } else {
        *reinterpret_cast<float4*>(&Bs[t / 32][(t % 32) * 4]) = v;
    }
}

// blockIdx.z: see gemm_block_z (kchunk is a multiple of G_BK).
template <bool TA, bool TB, bool VEC, int TBM>
__device__ __forceinline__ void gemm128_body(float* C, const float* A, const float* B,
                                             const float* bias, int M, int N, int K,
                                             long long stride_a, long long stride_b,
                                             long long stride_c, int kchunk) {
    int kbeg, kend;
    gemm_block_z(A, B, C, K, stride_a, stride_b, stride_c, kchunk, kbeg, kend);
    __shared__ __align__(16) float As[2][G_BK][TBM + 4];  // +4: the transposing stores hit 32 banks
    __shared__ __align__(16) float Bs[2][G_BK][G_BN];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    constexpr int RM = TBM / 16;  // rows per thread: 4 + 4 rows 64 apart (TBM 128), or 4
    const bool loads_a = TBM == 128 || t < 2 * TBM;
    const int row0 = blockIdx.y * TBM, col0 = blockIdx.x * G_BN;
    float acc[RM][8];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    float4 ra = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (loads_a) ra = gemm_fetch_a<TA, VEC, TBM>(A, M, K, kend, row0, kbeg, t);
    float4 rb = gemm_fetch_b<TB, VEC>(B, N, K, kend, col0, kbeg, t);
    if (loads_a) gemm_stash_a<TA, TBM>(As[0], ra, t);
    gemm_stash_b<TB>(Bs[0], rb, t);
    __syncthreads();
    int buf = 0;
    for (int k0 = kbeg; k0 < kend; k0 += G_BK) {
        const bool more = k0 + G_BK < kend;
        if (more) {  // in flight while this slice is multiplied
            if (loads_a) ra = gemm_fetch_a<TA, VEC, TBM>(A, M, K, kend, row0, k0 + G_BK, t);
            rb = gemm_fetch_b<TB, VEC>(B, N, K, kend, col0, k0 + G_BK, t);
        }
#pragma unroll
        for (int k = 0; k < G_BK; ++k) {
            float a[RM], b[8];
            *reinterpret_cast<float4*>(a) = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4]);
            if (RM == 8)
                *reinterpret_cast<float4*>(a + 4 * (RM / 8)) =
                    *reinterpret_cast<const float4*>(&As[buf][k][ty * 4 + 64 * (RM / 8)]);
            *reinterpret_cast<float4*>(b) = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4]);
            *reinterpret_cast<float4*>(b + 4) = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4 + 64]);
#pragma unroll
            for (int i = 0; i < RM; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) {
            // the other buffer was last read before the previous slice's barrier
            if (loads_a) gemm_stash_a<TA, TBM>(As[buf ^ 1], ra, t);
            gemm_stash_b<TB>(Bs[buf ^ 1], rb, t);
            __syncthreads();
            buf ^= 1;
        }
    }
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int r = row0 + ty * 4 + (i % 4) + (i / 4) * 64;
        if (r >= M) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int c = col0 + tx * 4 + h * 64;
            float4 v = make_float4(acc[i][4 * h], acc[i][4 * h + 1], acc[i][4 * h + 2], acc[i][4 * h + 3]);
            if (bias) {
                if (c < N) v.x += bias[c];
                if (c + 1 < N) v.y += bias[c + 1];
                if (c + 2 < N) v.z += bias[c + 2];
                if (c + 3 < N) v.w += bias[c + 3];
            }
            float* out = C + (long long)r * N + c;
            if (VEC && (N % 4 == 0) && c < N) {
                *reinterpret_cast<float4*>(out) = v;
            } else {
                if (c < N) out[0] = v.x;
                if (c + 1 < N) out[1] = v.y;
                if (c + 2 < N) out[2] = v.z;
                if (c + 3 < N) out[3] = v.w;
            }
        }
    }
}

#define FG_GEMM128(name, TA, TB, VEC, TBM)                                                      \
    extern "C" __global__ void __launch_bounds__(256, 2)                                       \
    name(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,     \
         long long stride_a, long long stride_b, long long stride_c, int kchunk) {             \
        gemm128_body<TA, TB, VEC, TBM>(C, A, B, bias, M, N, K, stride_a, stride_b, stride_c,    \
                                      kchunk);                                                 \
    }
// gemm128_*: 128x128 tiles; gemm64x128_*: 64x128 tiles (4x8 per thread) for problems with
// 64 or fewer rows (a convolution's output channels), which would leave half of a
// 128-row tile idle. _v: float4 loads.
FG_GEMM128(gemm128_nn_v, false, false, true, 128)
FG_GEMM128(gemm128_nt_v, false, true, true, 128)
FG_GEMM128(gemm128_tn_v, true, false, true, 128)
FG_GEMM128(gemm128_tt_v, true, true, true, 128)
FG_GEMM128(gemm128_nn, false, false, false, 128)
FG_GEMM128(gemm128_nt, false, true, false, 128)
FG_GEMM128(gemm128_tn, true, false, false, 128)
FG_GEMM128(gemm128_tt, true, true, false, 128)
FG_GEMM128(gemm64x128_nn_v, false, false, true, 64)
FG_GEMM128(gemm64x128_nt_v, false, true, true, 64)
FG_GEMM128(gemm64x128_tn_v, true, false, true, 64)
FG_GEMM128(gemm64x128_tt_v, true, true, true, 64)
FG_GEMM128(gemm64x128_nn, false, false, false, 64)
FG_GEMM128(gemm64x128_nt, false, true, false, 64)
FG_GEMM128(gemm64x128_tn, true, false, false, 64)
FG_GEMM128(gemm64x128_tt, true, true, false, 64)

// ---------------------------------------------------------------------------------------
// The TF32 tensor-core GEMM (used only when the user allows TF32, as PyTorch's
// allow_tf32): mma.sync m16n8k8 reads the top 19 bits of each float32 input (TF32,
// truncated to a 10-bit mantissa: rounding first with cvt.rna would cost an instruction
// per fragment element) and sums the products in float32. 128x128 tiles per block of 8 warps, each warp
// 64x32 (4x4 mma tiles); 16-deep K slices copied global -> shared by cp.async (16 bytes,
// zero-filled past the edges) in two stages, so the next slice streams in while this one
// is multiplied (deeper slices were slower: benches/README.md, "Measurements behind the code").
// Shared layouts keep each operand's contiguous memory axis contiguous (A: k-major rows
// when not transposed, m-major when transposed; B likewise), padded so that the fragment
// reads of a warp hit 32 distinct banks. Needs VEC's conditions (the host checks them).
#define T_BM 128
#define T_BN 128
#define T_BK 16
#define T_STAGE 2560  // floats per operand per stage: max(128 * (16 + 4), 16 * (128 + 8))

__device__ __forceinline__ void tf32_cp_async16(float* smem, const float* gmem, bool pred) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    const int bytes = pred ? 16 : 0;  // 0: nothing is read and the 16 bytes are zero-filled
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}


template <bool TA, bool TB>
__device__ __forceinline__ void tf32_load_stage(float* As, float* Bs, const float* A, const float* B,
                                                int M, int N, int K, int row0, int col0, int k0, int t) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int f = t + h * 256;  // 512 float4s per operand tile
        if (!TA) {  // A is M x K: As[m][k], row length T_BK + 4
            const int m = f / 4, k = (f % 4) * 4;
            const bool ok = row0 + m < M && k0 + k < K;
            tf32_cp_async16(As + m * (T_BK + 4) + k, ok ? A + (long long)(row0 + m) * K + k0 + k : A, ok);
        } else {  // A is K x M: As[k][m], row length T_BM + 8
            const int k = f / 32, m = (f % 32) * 4;
            const bool ok = k0 + k < K && row0 + m < M;
            tf32_cp_async16(As + k * (T_BM + 8) + m, ok ? A + (long long)(k0 + k) * M + row0 + m : A, ok);
        }
        if (TB) {  // B is N x K: Bs[n][k]
            const int n = f / 4, k = (f % 4) * 4;
            const bool ok = col0 + n < N && k0 + k < K;
            tf32_cp_async16(Bs + n * (T_BK + 4) + k, ok ? B + (long long)(col0 + n) * K + k0 + k : B, ok);
        } else {  // B is K x N: Bs[k][n]
            const int k = f / 32, n = (f % 32) * 4;
            const bool ok = k0 + k < K && col0 + n < N;
            tf32_cp_async16(Bs + k * (T_BN + 8) + n, ok ? B + (long long)(k0 + k) * N + col0 + n : B, ok);
        }
    }
}

// The TF32 kernels' common start: operands of batch blockIdx.z, accumulators zeroed.
__device__ __forceinline__ void tf32_batch(const float*& A, const float*& B, float*& C, long long stride_a,
                                           long long stride_b, long long stride_c) {
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
}
template <int I, int J>
__device__ __forceinline__ void tf32_zero(float (&acc)[I][J][4]) {
#pragma unroll
    for (int i = 0; i < I; ++i)
#pragma unroll
        for (int j = 0; j < J; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
}

template <bool TA, bool TB>
__device__ __forceinline__ void gemm_tf32_body(float* C, const float* A, const float* B,
                                               const float* bias, int M, int N, int K,
                                               long long stride_a, long long stride_b,
                                               long long stride_c) {
    tf32_batch(A, B, C, stride_a, stride_b, stride_c);
    __shared__ __align__(16) float As[2][T_STAGE];
    __shared__ __align__(16) float Bs[2][T_STAGE];
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const int g = lane / 4, tq = lane % 4;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    const int row0 = blockIdx.y * T_BM, col0 = blockIdx.x * T_BN;
    float acc[4][4][4];
    tf32_zero(acc);

    const int nk = (K + T_BK - 1) / T_BK;
    tf32_load_stage<TA, TB>(As[0], Bs[0], A, B, M, N, K, row0, col0, 0, t);
    asm volatile("cp.async.commit_group;\n" ::);
    for (int kt = 0; kt < nk; ++kt) {
        const int s = kt & 1;
        if (kt + 1 < nk)
            tf32_load_stage<TA, TB>(As[s ^ 1], Bs[s ^ 1], A, B, M, N, K, row0, col0, (kt + 1) * T_BK, t);
        asm volatile("cp.async.commit_group;\n" ::);
        asm volatile("cp.async.wait_group 1;\n" ::);  // slice kt has landed (this thread's part)
        __syncthreads();                              // ... and everyone else's
        const float* as = As[s];
        const float* bs = Bs[s];
#pragma unroll
        for (int kk = 0; kk < T_BK; kk += 8) {
            unsigned a[4][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int r = wm + i * 16 + g;
#define FG_AS(m, k) (TA ? as[(k) * (T_BM + 8) + (m)] : as[(m) * (T_BK + 4) + (k)])
                a[i][0] = __float_as_uint(FG_AS(r, kk + tq));
                a[i][1] = __float_as_uint(FG_AS(r + 8, kk + tq));
                a[i][2] = __float_as_uint(FG_AS(r, kk + tq + 4));
                a[i][3] = __float_as_uint(FG_AS(r + 8, kk + tq + 4));
#undef FG_AS
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int c = wn + j * 8 + g;
#define FG_BS(k, n) (TB ? bs[(n) * (T_BK + 4) + (k)] : bs[(k) * (T_BN + 8) + (n)])
                b[j][0] = __float_as_uint(FG_BS(kk + tq, c));
                b[j][1] = __float_as_uint(FG_BS(kk + tq + 4, c));
#undef FG_BS
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    asm volatile(
                        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                        : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
                        : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]),
                          "r"(b[j][1]));
        }
        __syncthreads();  // the next iteration's copies overwrite this stage
    }
    asm volatile("cp.async.wait_group 0;\n" ::);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                // accumulator e of tile (i, j): row g (+8 for e >= 2), column 2 tq (+1 for odd e)
                const int r = row0 + wm + i * 16 + g + (e >= 2 ? 8 : 0);
                const int c = col0 + wn + j * 8 + 2 * tq + (e & 1);
                if (r < M && c < N) C[(long long)r * N + c] = acc[i][j][e] + (bias ? bias[c] : 0.0f);
            }
}

#define FG_GEMM_TF32(name, TA, TB)                                                             \
    extern "C" __global__ void __launch_bounds__(256)                                          \
    name(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,     \
         long long stride_a, long long stride_b, long long stride_c) {                         \
        gemm_tf32_body<TA, TB>(C, A, B, bias, M, N, K, stride_a, stride_b, stride_c);           \
    }
FG_GEMM_TF32(gemm_tf32_nn, false, false)
FG_GEMM_TF32(gemm_tf32_nt, false, true)
FG_GEMM_TF32(gemm_tf32_tn, true, false)
FG_GEMM_TF32(gemm_tf32_tt, true, true)

// ---------------------------------------------------------------------------------------
// gemm_tf32w_nt / _tt: the TF32 GEMM for large C (at least a wave of 128x256 tiles) when
// B is N x K (k-contiguous rows: Linear's x @ W^T). 128x256 tiles per block of 8 warps,
// each warp 64x64 (4x8 mma tiles), 32-deep K slices in a three-stage cp.async pipeline
// (144 KB of dynamic shared memory), one barrier per slice. It beats gemm_tf32 for an
// N x K B only; with a K x N B, read as [k][n] tiles, it was slower, so gemm_tf32 stays
// in use there (benches/README.md, "Measurements behind the code").
//
// Fragments are read as float4s (a quarter of gemm_tf32's shared-memory instructions per
// mma), using two freedoms of a GEMM:
// * the reduction index may be permuted as long as A and B agree: mma column tq (tq + 4)
//   of k-step s in a 16-deep slice stands for k = 4 tq + 2 s (+ 1), so a thread's four k
//   of a row are one float4 wherever k is the contiguous axis in shared memory;
// * rows of A may be permuted if C is stored through the same map: where m is the
//   contiguous axis (A transposed), mma row g (+ 8 h) of tile i stands for m = 8 g + 2 i
//   + h, so the 8 rows a thread needs are two float4s.
// Shared layouts: k-contiguous operands are kept as [row][32 k], their float4 chunks
// XOR-ed by row parity; a transposed A as [k][128 m], chunks XOR-ed by bits 2 and 3 of k.
// Both make every quarter-warp's float4 reads and cp.async writes one bank wavefront.
// Needs VEC's conditions (the host checks them).
#define TW_BM 128
#define TW_BN 256
#define TW_BK 32
#define TW_ST 3
#define TW_SA (TW_BM * TW_BK)
#define TW_SB (TW_BN * TW_BK)

// float offset of chunk c (4 floats) of row r in a [rows][32] k-contiguous tile
__device__ __forceinline__ int tw_kc_at(int r, int c) { return r * TW_BK + ((c ^ ((r & 1) << 2)) << 2); }
// float offset of chunk c of row k in the [32][128] tile of a transposed A: q = bits 2, 3
// of k (the reading thread's tq) spreads the quarter-warps' reads over the banks
__device__ __forceinline__ int tw_mn_at(int k, int c) {
    const int q = (k >> 2) & 3;
    return k * TW_BM + ((c ^ ((q & 1) | ((q >> 1) << 2))) << 2);
}

template <bool TA>
__device__ __forceinline__ void tw_load_stage(float* As, float* Bs, const float* A, const float* B,
                                              int M, int N, int K, int row0, int col0, int k0, int t) {
#pragma unroll
    for (int h = 0; h < TW_SA / 4 / 256; ++h) {  // 4 chunks of A per thread
        const int f = t + h * 256;
        if (!TA) {  // A is M x K
            const int r = f / 8, c = f % 8;
            const bool ok = row0 + r < M && k0 + 4 * c < K;
            tf32_cp_async16(As + tw_kc_at(r, c), ok ? A + (long long)(row0 + r) * K + k0 + 4 * c : A, ok);
        } else {  // A is K x M
            const int kk = f / (TW_BM / 4), c = f % (TW_BM / 4);
            const bool ok = k0 + kk < K && row0 + 4 * c < M;
            tf32_cp_async16(As + tw_mn_at(kk, c), ok ? A + (long long)(k0 + kk) * M + row0 + 4 * c : A, ok);
        }
    }
#pragma unroll
    for (int h = 0; h < TW_SB / 4 / 256; ++h) {  // 8 chunks of B (N x K) per thread
        const int f = t + h * 256;
        const int r = f / 8, c = f % 8;
        const bool ok = col0 + r < N && k0 + 4 * c < K;
        tf32_cp_async16(Bs + tw_kc_at(r, c), ok ? B + (long long)(col0 + r) * K + k0 + 4 * c : B, ok);
    }
}

template <bool TA>
__device__ __forceinline__ void gemm_tf32w_body(float* C, const float* A, const float* B,
                                                const float* bias, int M, int N, int K,
                                                long long stride_a, long long stride_b,
                                                long long stride_c) {
    tf32_batch(A, B, C, stride_a, stride_b, stride_c);
    extern __shared__ __align__(16) float tw_smem[];
    float* As = tw_smem;                // TW_ST x TW_SA
    float* Bs = tw_smem + TW_ST * TW_SA;  // TW_ST x TW_SB
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const int g = lane / 4, tq = lane % 4;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 64;
    const int row0 = blockIdx.y * TW_BM, col0 = blockIdx.x * TW_BN;
    float acc[4][8][4];
    tf32_zero(acc);

    const int nk = (K + TW_BK - 1) / TW_BK;
#pragma unroll
    for (int s = 0; s < TW_ST - 1; ++s) {
        if (s < nk) tw_load_stage<TA>(As + s * TW_SA, Bs + s * TW_SB, A, B, M, N, K, row0, col0, s * TW_BK, t);
        asm volatile("cp.async.commit_group;\n" ::);
    }
    for (int kt = 0; kt < nk; ++kt) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(TW_ST - 2));  // slice kt landed (mine)
        __syncthreads();  // ... everyone's; and slice kt - 1's stage is free to refill
        const int pf = kt + TW_ST - 1, ps = pf % TW_ST;
        if (pf < nk) tw_load_stage<TA>(As + ps * TW_SA, Bs + ps * TW_SB, A, B, M, N, K, row0, col0, pf * TW_BK, t);
        asm volatile("cp.async.commit_group;\n" ::);
        const float* as = As + (kt % TW_ST) * TW_SA;
        const float* bs = Bs + (kt % TW_ST) * TW_SB;
#pragma unroll
        for (int kk = 0; kk < TW_BK; kk += 16) {
            // av[i][h][e]: A at mma row g + 8 h of tile i, k = kk + 4 tq + e
            // bv[j][e]:    B at mma column g of tile j,   k = kk + 4 tq + e
            float av[4][2][4], bv[8][4];
            if (!TA) {
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const float4 x = *reinterpret_cast<const float4*>(as + tw_kc_at(wm + 16 * i + 8 * h + g, kk / 4 + tq));
                        av[i][h][0] = x.x; av[i][h][1] = x.y; av[i][h][2] = x.z; av[i][h][3] = x.w;
                    }
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int k = kk + 4 * tq + e;
                    const float4 x = *reinterpret_cast<const float4*>(as + tw_mn_at(k, (wm + 8 * g) / 4));
                    const float4 y = *reinterpret_cast<const float4*>(as + tw_mn_at(k, (wm + 8 * g) / 4 + 1));
                    // m = wm + 8 g + 2 i + h
                    av[0][0][e] = x.x; av[0][1][e] = x.y; av[1][0][e] = x.z; av[1][1][e] = x.w;
                    av[2][0][e] = y.x; av[2][1][e] = y.y; av[3][0][e] = y.z; av[3][1][e] = y.w;
                }
            }
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const float4 x = *reinterpret_cast<const float4*>(bs + tw_kc_at(wn + 8 * j + g, kk / 4 + tq));
                bv[j][0] = x.x; bv[j][1] = x.y; bv[j][2] = x.z; bv[j][3] = x.w;
            }
#pragma unroll
            for (int s = 0; s < 2; ++s)
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 8; ++j)
                        asm volatile(
                            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                            : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
                            : "r"(__float_as_uint(av[i][0][2 * s])), "r"(__float_as_uint(av[i][1][2 * s])),
                              "r"(__float_as_uint(av[i][0][2 * s + 1])), "r"(__float_as_uint(av[i][1][2 * s + 1])),
                              "r"(__float_as_uint(bv[j][2 * s])), "r"(__float_as_uint(bv[j][2 * s + 1])));
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                // accumulator e of tile (i, j): mma row g (+ 8 for e >= 2), column 2 tq (+ 1
                // for odd e), rows mapped back through the transposed A's permutation
                const int h = e >> 1;
                const int r = row0 + wm + (TA ? 8 * g + 2 * i + h : 16 * i + 8 * h + g);
                const int c = col0 + wn + 8 * j + 2 * tq + (e & 1);
                if (r < M && c < N) C[(long long)r * N + c] = acc[i][j][e] + (bias ? bias[c] : 0.0f);
            }
}

#define FG_GEMM_TF32W(name, TA)                                                                \
    extern "C" __global__ void __launch_bounds__(256, 1)                                       \
    name(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,     \
         long long stride_a, long long stride_b, long long stride_c) {                         \
        gemm_tf32w_body<TA>(C, A, B, bias, M, N, K, stride_a, stride_b, stride_c);              \
    }
FG_GEMM_TF32W(gemm_tf32w_nt, false)
FG_GEMM_TF32W(gemm_tf32w_tt, true)

// C = sum over s < splits of W[s] (+ bias per column): the second half of a split-K GEMM.
extern "C" __global__ void gemm_splitk_reduce(float* __restrict__ C, const float* __restrict__ W,
                                              const float* __restrict__ bias, int splits,
                                              long long mn, int n) {
    FG_GRID_LOOP(i, mn) {
        float acc = bias ? bias[i % n] : 0.0f;
        for (int s = 0; s < splits; ++s) acc += W[s * mn + i];
        C[i] = acc;
    }
}
