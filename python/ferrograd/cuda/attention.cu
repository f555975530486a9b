// Flash attention (tiled, online softmax) forward and backward, float32.
//
// Layouts (C-contiguous): q (B, H, Lq, D), k (B, Hk, Lk, D), v (B, Hk, Lk, Dv),
// out/gout (B, H, Lq, Dv), lse (B, H, Lq); query head h reads key/value head
// h / (H / Hk). mask is null or additive, read at b * msb + h * msh + i * Lk + j (msb/msh
// are 0 for a broadcast batch/head). Causal hides key j from query i when j > i.
// A row whose keys are all hidden gets out = 0, lse = -inf and zero gradients.
//
// One thread owns one query row (forward, dq) or one key row (dk, dv); the other operand
// is staged tile by tile in shared memory, so memory stays linear in the lengths. Head
// dims are at most FG_ATT_MAXD (the Python side checks).
#include "common.cuh"

#define FG_ATT_MAXD 128
#define FG_ATT_TILE 32

template <int DC>
__device__ __forceinline__ float fg_att_score(const float* qr, const float* kt, int D_, float scale,
                                              const float* mask, long long mrow, int j) {
    const int D = DC > 0 ? DC : D_;
    float s = 0.0f;
    _Pragma("unroll") for (int d = 0; d < D; ++d) s += qr[d] * kt[d];
    s *= scale;
    if (mask) s += mask[mrow + j];
    return s;
}

// Keys past this end are hidden from every query row of the block (causal: the block's
// last row; one thread per query row, rows blockIdx.x * blockDim.x ..).
__device__ __forceinline__ int fg_att_query_key_end(int Lq, int Lk, int causal) {
    if (!causal) return Lk;
    const int last = min(Lq - 1, (int)(blockIdx.x * blockDim.x + blockDim.x - 1));
    return min(Lk, last + 1);
}

// Stage n key rows (from j0) and their value rows in shared memory; the barriers keep the
// previous tile's readers and this tile's writers apart.
__device__ __forceinline__ void fg_att_stage_keys(float* ks, float* vs, const float* kb, const float* vb,
                                                  int j0, int n, int D, int Dv) {
    __syncthreads();
    for (int t = threadIdx.x; t < n * D; t += blockDim.x) ks[t] = kb[(long long)j0 * D + t];
    for (int t = threadIdx.x; t < n * Dv; t += blockDim.x) vs[t] = vb[(long long)j0 * Dv + t];
    __syncthreads();
}

// grid (ceil(Lq / blockDim.x), B * H)
template <int DC>
__device__ __forceinline__ void attention_forward_body(float* out, float* lse, const float* q, const float* k,
                                             const float* v, const float* mask, long long msb,
                                             long long msh, int H, int Hk, int Lq, int Lk, int D_,
                                             int Dv_, float scale, int causal) {
    const int D = DC > 0 ? DC : D_, Dv = DC > 0 ? DC : Dv_;
    __shared__ float ks[FG_ATT_TILE * FG_ATT_MAXD];
    __shared__ float vs[FG_ATT_TILE * FG_ATT_MAXD];
    const int bh = blockIdx.y, b = bh / H, h = bh % H, hk = h / (H / Hk);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool row = i < Lq;
    const float* kb = k + ((long long)b * Hk + hk) * Lk * D;
    const float* vb = v + ((long long)b * Hk + hk) * Lk * Dv;
    const long long mrow = mask ? b * msb + h * msh + (long long)(row ? i : 0) * Lk : 0;
    float qr[FG_ATT_MAXD], acc[FG_ATT_MAXD];
    if (row) {
        const float* qp = q + ((long long)bh * Lq + i) * D;
        _Pragma("unroll") for (int d = 0; d < D; ++d) qr[d] = qp[d];
    }
    _Pragma("unroll") for (int d = 0; d < Dv; ++d) acc[d] = 0.0f;
    float m = FG_NEG_INF, l = 0.0f;
    const int kend = fg_att_query_key_end(Lq, Lk, causal);
    for (int j0 = 0; j0 < kend; j0 += FG_ATT_TILE) {
        const int n = min(FG_ATT_TILE, Lk - j0);
        fg_att_stage_keys(ks, vs, kb, vb, j0, n, D, Dv);
        if (!row) continue;
        for (int jj = 0; jj < n; ++jj) {
            const int j = j0 + jj;
            if (causal && j > i) break;
            const float s = fg_att_score<DC>(qr, ks + jj * D, D, scale, mask, mrow, j);
            if (s == FG_NEG_INF) continue;
            if (s > m) {  // a new running max: rescale what was summed so far
                const float c = expf(m - s);
                l *= c;
                _Pragma("unroll") for (int d = 0; d < Dv; ++d) acc[d] *= c;
                m = s;
            }
            const float p = expf(s - m);
            l += p;
            const float* vt = vs + jj * Dv;
            _Pragma("unroll") for (int d = 0; d < Dv; ++d) acc[d] += p * vt[d];
        }
    }
    if (!row) return;
    float* op = out + ((long long)bh * Lq + i) * Dv;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    _Pragma("unroll") for (int d = 0; d < Dv; ++d) op[d] = acc[d] * inv;
    lse[(long long)bh * Lq + i] = l > 0.0f ? m + logf(l) : FG_NEG_INF;
}

// gq; grid (ceil(Lq / blockDim.x), B * H)
template <int DC>
__device__ __forceinline__ void attention_backward_dq_body(float* gq, const float* q, const float* k,
                                                 const float* v, const float* mask, long long msb,
                                                 long long msh, const float* out, const float* lse,
                                                 const float* gout, int H, int Hk, int Lq, int Lk,
                                                 int D_, int Dv_, float scale, int causal) {
    const int D = DC > 0 ? DC : D_, Dv = DC > 0 ? DC : Dv_;
    __shared__ float ks[FG_ATT_TILE * FG_ATT_MAXD];
    __shared__ float vs[FG_ATT_TILE * FG_ATT_MAXD];
    const int bh = blockIdx.y, b = bh / H, h = bh % H, hk = h / (H / Hk);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool row = i < Lq;
    const float* kb = k + ((long long)b * Hk + hk) * Lk * D;
    const float* vb = v + ((long long)b * Hk + hk) * Lk * Dv;
    const long long mrow = mask ? b * msb + h * msh + (long long)(row ? i : 0) * Lk : 0;
    float qr[FG_ATT_MAXD], gr[FG_ATT_MAXD], dq[FG_ATT_MAXD];
    float delta = 0.0f, li = FG_NEG_INF;
    if (row) {
        const float* qp = q + ((long long)bh * Lq + i) * D;
        _Pragma("unroll") for (int d = 0; d < D; ++d) qr[d] = qp[d];
        const float* gp = gout + ((long long)bh * Lq + i) * Dv;
        const float* op = out + ((long long)bh * Lq + i) * Dv;
        _Pragma("unroll") for (int d = 0; d < Dv; ++d) {
            gr[d] = gp[d];
            delta += gp[d] * op[d];
        }
        li = lse[(long long)bh * Lq + i];
    }
    _Pragma("unroll") for (int d = 0; d < D; ++d) dq[d] = 0.0f;
    const int kend = fg_att_query_key_end(Lq, Lk, causal);
    for (int j0 = 0; j0 < kend; j0 += FG_ATT_TILE) {
        const int n = min(FG_ATT_TILE, Lk - j0);
        fg_att_stage_keys(ks, vs, kb, vb, j0, n, D, Dv);
        if (!row || li == FG_NEG_INF) continue;
        for (int jj = 0; jj < n; ++jj) {
            const int j = j0 + jj;
            if (causal && j > i) break;
            const float s = fg_att_score<DC>(qr, ks + jj * D, D, scale, mask, mrow, j);
            if (s == FG_NEG_INF) continue;
            const float p = expf(s - li);
            const float* vt = vs + jj * Dv;
            float dp = 0.0f;
            _Pragma("unroll") for (int d = 0; d < Dv; ++d) dp += gr[d] * vt[d];
            const float ds = p * (dp - delta);
            const float* kt = ks + jj * D;
            _Pragma("unroll") for (int d = 0; d < D; ++d) dq[d] += ds * kt[d];
        }
    }
    if (!row) return;
    float* gp = gq + ((long long)bh * Lq + i) * D;
    _Pragma("unroll") for (int d = 0; d < D; ++d) gp[d] = scale * dq[d];
}

// gk, gv (summed over the query heads of a key/value head); grid (ceil(Lk / blockDim.x), B * Hk)
template <int DC>
__device__ __forceinline__ void attention_backward_dkdv_body(float* gk, float* gv, const float* q,
                                                   const float* k, const float* v, const float* mask,
                                                   long long msb, long long msh, const float* out,
                                                   const float* lse, const float* gout, int H,
                                                   int Hk, int Lq, int Lk, int D_, int Dv_,
                                                   float scale, int causal) {
    const int D = DC > 0 ? DC : D_, Dv = DC > 0 ? DC : Dv_;
    __shared__ float qs[FG_ATT_TILE * FG_ATT_MAXD];
    __shared__ float gs[FG_ATT_TILE * FG_ATT_MAXD];
    __shared__ float ls[FG_ATT_TILE];
    __shared__ float ds_[FG_ATT_TILE];
    const int bhk = blockIdx.y, b = bhk / Hk, hk = bhk % Hk, group = H / Hk;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const bool col = j < Lk;
    float kr[FG_ATT_MAXD], vr[FG_ATT_MAXD], dk[FG_ATT_MAXD], dv[FG_ATT_MAXD];
    if (col) {
        const float* kp = k + ((long long)bhk * Lk + j) * D;
        const float* vp = v + ((long long)bhk * Lk + j) * Dv;
        _Pragma("unroll") for (int d = 0; d < D; ++d) kr[d] = kp[d];
        _Pragma("unroll") for (int d = 0; d < Dv; ++d) vr[d] = vp[d];
    }
    _Pragma("unroll") for (int d = 0; d < D; ++d) dk[d] = 0.0f;
    _Pragma("unroll") for (int d = 0; d < Dv; ++d) dv[d] = 0.0f;
    // causal: queries before the block's first key see none of its keys
    const int first = causal ? (int)(blockIdx.x * blockDim.x) / FG_ATT_TILE * FG_ATT_TILE : 0;
    for (int h = hk * group; h < (hk + 1) * group; ++h) {
        const long long bh = (long long)b * H + h;
        const long long mbase = mask ? b * msb + h * msh : 0;
        for (int i0 = first; i0 < Lq; i0 += FG_ATT_TILE) {
            const int n = min(FG_ATT_TILE, Lq - i0);
            __syncthreads();
            for (int t = threadIdx.x; t < n * D; t += blockDim.x) qs[t] = q[(bh * Lq + i0) * D + t];
            for (int t = threadIdx.x; t < n * Dv; t += blockDim.x) gs[t] = gout[(bh * Lq + i0) * Dv + t];
            for (int t = threadIdx.x; t < n; t += blockDim.x) {
                const float* gp = gout + (bh * Lq + i0 + t) * Dv;
                const float* op = out + (bh * Lq + i0 + t) * Dv;
                float s = 0.0f;
                _Pragma("unroll") for (int d = 0; d < Dv; ++d) s += gp[d] * op[d];
                ds_[t] = s;
                ls[t] = lse[bh * Lq + i0 + t];
            }
            __syncthreads();
            if (!col) continue;
            for (int ii = 0; ii < n; ++ii) {
                const int i = i0 + ii;
                if ((causal && j > i) || ls[ii] == FG_NEG_INF) continue;
                const float* qt = qs + ii * D;
                const float s = fg_att_score<DC>(qt, kr, D, scale, mask, mbase + (long long)i * Lk, j);
                if (s == FG_NEG_INF) continue;
                const float p = expf(s - ls[ii]);
                const float* gt = gs + ii * Dv;
                float dp = 0.0f;
                _Pragma("unroll") for (int d = 0; d < Dv; ++d) {
                    dv[d] += p * gt[d];
                    dp += gt[d] * vr[d];
                }
                const float dsv = p * (dp - ds_[ii]);
                _Pragma("unroll") for (int d = 0; d < D; ++d) dk[d] += dsv * qt[d];
            }
        }
    }
    if (!col) return;
    float* kp = gk + ((long long)bhk * Lk + j) * D;
    float* vp = gv + ((long long)bhk * Lk + j) * Dv;
    _Pragma("unroll") for (int d = 0; d < D; ++d) kp[d] = scale * dk[d];
    _Pragma("unroll") for (int d = 0; d < Dv; ++d) vp[d] = dv[d];
}

// Entry points: the generic kernels (any head dims up to FG_ATT_MAXD) and copies for
// D = Dv = 32 or 64 whose per-row arrays live in registers (loops fully unrolled).
#define FG_ATT_ARGS_FWD                                                                       \
    float *out, float *lse, const float *q, const float *k, const float *v, const float *mask, \
        long long msb, long long msh, int H, int Hk, int Lq, int Lk, int D, int Dv, float scale, \
        int causal
#define FG_ATT_ARGS_DQ                                                                        \
    float *gq, const float *q, const float *k, const float *v, const float *mask, long long msb, \
        long long msh, const float *out, const float *lse, const float *gout, int H, int Hk,     \
        int Lq, int Lk, int D, int Dv, float scale, int causal
#define FG_ATT_ARGS_DKDV                                                                      \
    float *gk, float *gv, const float *q, const float *k, const float *v, const float *mask,   \
        long long msb, long long msh, const float *out, const float *lse, const float *gout,   \
        int H, int Hk, int Lq, int Lk, int D, int Dv, float scale, int causal
#define FG_ATT_KERNELS(SUFFIX, DC)                                                            \
    extern "C" __global__ void attention_forward##SUFFIX(FG_ATT_ARGS_FWD) {                    \
        attention_forward_body<DC>(out, lse, q, k, v, mask, msb, msh, H, Hk, Lq, Lk, D, Dv,    \
                                   scale, causal);                                             \
    }                                                                                          \
    extern "C" __global__ void attention_backward_dq##SUFFIX(FG_ATT_ARGS_DQ) {                 \
        attention_backward_dq_body<DC>(gq, q, k, v, mask, msb, msh, out, lse, gout, H, Hk, Lq, \
                                       Lk, D, Dv, scale, causal);                              \
    }                                                                                          \
    extern "C" __global__ void attention_backward_dkdv##SUFFIX(FG_ATT_ARGS_DKDV) {             \
        attention_backward_dkdv_body<DC>(gk, gv, q, k, v, mask, msb, msh, out, lse, gout, H,   \
                                         Hk, Lq, Lk, D, Dv, scale, causal);                    \
    }

FG_ATT_KERNELS(, 0)
FG_ATT_KERNELS(_d32, 32)
FG_ATT_KERNELS(_d64, 64)

// Constants of the wide forward below (scores kept in base 2).
#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f

// ---------------------------------------------------------------------------------------
// attention_forward_wide_*: the forward for D = Dv = DC in {32, 64}. A block of 128
// threads (8 x 16) owns 128 query rows; per 64-key tile each thread computes an 8x8 block
// of S = Q K^T (rows 8 ty.., keys 8 tx..), updates the running max / sum of its rows (the
// 8 threads sharing ty hold a row between them: shuffles), writes P = exp(S - m) to shared
// memory and adds P V into its 8 x DC/8 block of O: each float4 read from shared memory
// feeds 16 FMAs (4 in attention_forward). Scores are kept in base 2 (exp2). Shared memory
// (dynamic, 96 KB for DC = 64): Q^T (DC x 128) and K^T (DC x 64), transposed so that a
// thread's rows / keys are float4s, V (64 x DC) and P^T (64 x 128, float4 columns
// XOR-swizzled by j / 4 so that the stores spread over all banks). Key and value tiles
// are read coalesced (a warp reads whole rows). Same results and lse as attention_forward
// (online softmax; fully hidden rows give 0 and -inf).
#define FW_BR 128
#define FW_BC 64

__device__ __forceinline__ float fw_oct_max(float v) {
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float fw_oct_sum(float v) {
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// 2^x by the special-function unit alone (2^-inf = 0; about 2 ulp, well inside the
// kernels' reduction tolerance; exp2f adds denormal handling around the same instruction)
__device__ __forceinline__ float fw_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Score x (base 2) of query i and key j with the additive mask (to base 2) added, or -inf
// where the key is hidden from the query (past Lk, or causal and j > i).
__device__ __forceinline__ float fa_masked_score(float x, const float* mb, int i, int j, int Lq, int Lk,
                                                 int causal) {
    if (mb && i < Lq && j < Lk) x = fmaf(mb[(long long)i * Lk + j], FA_LOG2E, x);
    return (j >= Lk || (causal && j > i)) ? FG_NEG_INF : x;
}

// The backward's recomputed probability 2^(score - lse2) (lse2 = lse in base 2): 0 for a
// hidden key, a padding row (i >= Lq) and a row with every key hidden (lse = -inf).
__device__ __forceinline__ float fa_prob(float x, const float* mb, int i, int j, int Lq, int Lk, int causal,
                                         float lse2) {
    if (i >= Lq || lse2 == FG_NEG_INF) return 0.0f;
    return fw_exp2(fa_masked_score(x, mb, i, j, Lq, Lk, causal) - lse2);
}

// index of P^T[j][4 q .. 4 q + 3] in the swizzled layout (32 float4s per row of 128)
__device__ __forceinline__ int fw_pt_at(int j, int q) { return j * FW_BR + ((q ^ ((j >> 2) & 7)) << 2); }
// index of K^T[d][4 g .. 4 g + 3] (g = a float4 of keys) in the swizzled layout: the
// float4s of row d are permuted by d / 4, so that the transposing stores of a warp's
// coalesced key loads spread over the banks while a row still reads as whole float4s
__device__ __forceinline__ int fw_kt_at(int d, int g) { return d * FW_BC + ((g ^ ((d >> 2) & 15)) << 2); }
// key (or output column) c of thread tx: c < 4 -> 4 tx + c, else 32 + 4 tx + c - 4, so that
// a warp's eight threads read two runs of eight consecutive float4s (one bank wavefront each)
__device__ __forceinline__ int fw_col(int tx, int c) { return (c < 4 ? 0 : 28) + 4 * tx + c; }

template <int DC>
__device__ __forceinline__ void attention_forward_wide_body(float* out, float* lse, const float* q,
                                                            const float* k, const float* v,
                                                            const float* mask, long long msb,
                                                            long long msh, int H, int Hk, int Lq,
                                                            int Lk, float scale, int causal) {
    constexpr int OC = DC / 8;  // output columns per thread
    constexpr int NT = 128;
    extern __shared__ __align__(16) float fw_smem[];
    float* qs = fw_smem;                 // qs[d][i], DC x 128
    float* ks = qs + DC * FW_BR;         // ks[d][j], DC x 64
    float* vs = ks + DC * FW_BC;         // vs[j][d], 64 x DC
    float* ps = vs + FW_BC * DC;         // P^T, 64 x 128 (swizzled)
    const int t = threadIdx.x, tx = t % 8, ty = t / 8;
    const int bh = blockIdx.y, b = bh / H, h = bh % H, hk = h / (H / Hk);
    const int i0 = blockIdx.x * FW_BR;
    const float* qb = q + ((long long)bh * Lq + i0) * DC;
    const float* kb = k + ((long long)b * Hk + hk) * Lk * DC;
    const float* vb = v + ((long long)b * Hk + hk) * Lk * DC;
    const float* mb = mask ? mask + b * msb + h * msh : nullptr;
    const float sc2 = scale * FA_LOG2E;
    for (int f = t; f < FW_BR * DC / 4; f += NT) {
        const int i = f % FW_BR, d = (f / FW_BR) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i0 + i < Lq) x = *reinterpret_cast<const float4*>(qb + (long long)i * DC + d);
        // scaled once here rather than every score: S comes out in base 2
        qs[d * FW_BR + i] = x.x * sc2; qs[(d + 1) * FW_BR + i] = x.y * sc2;
        qs[(d + 2) * FW_BR + i] = x.z * sc2; qs[(d + 3) * FW_BR + i] = x.w * sc2;
    }
    float o[8][OC], m[8], l[8];
#pragma unroll
    for (int r = 0; r < 8; ++r) {
        m[r] = FG_NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < OC; ++c) o[r][c] = 0.0f;
    }
    int kend = Lk;
    if (causal) kend = min(Lk, min(Lq, i0 + FW_BR));
    for (int j0 = 0; j0 < kend; j0 += FW_BC) {
        __syncthreads();  // the previous tile's K^T, V and P^T are no longer read
        for (int f = t; f < FW_BC * DC / 4; f += NT) {
            // consecutive threads read consecutive float4s of a key row (coalesced)
            const int j = f / (DC / 4), d = (f % (DC / 4)) * 4;
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f), y = x;
            if (j0 + j < Lk) {
                x = *reinterpret_cast<const float4*>(kb + (long long)(j0 + j) * DC + d);
                y = *reinterpret_cast<const float4*>(vb + (long long)(j0 + j) * DC + d);
            }
            const int g = j >> 2, e = j & 3;
            ks[fw_kt_at(d, g) + e] = x.x; ks[fw_kt_at(d + 1, g) + e] = x.y;
            ks[fw_kt_at(d + 2, g) + e] = x.z; ks[fw_kt_at(d + 3, g) + e] = x.w;
            *reinterpret_cast<float4*>(vs + j * DC + d) = y;
        }
        __syncthreads();
        float s[8][8];
#pragma unroll
        for (int r = 0; r < 8; ++r)
#pragma unroll
            for (int c = 0; c < 8; ++c) s[r][c] = 0.0f;
#pragma unroll 2
        for (int d = 0; d < DC; ++d) {
            const float4 a0 = *reinterpret_cast<const float4*>(qs + d * FW_BR + ty * 8);
            const float4 a1 = *reinterpret_cast<const float4*>(qs + d * FW_BR + ty * 8 + 4);
            const float4 b0 = *reinterpret_cast<const float4*>(ks + fw_kt_at(d, tx));
            const float4 b1 = *reinterpret_cast<const float4*>(ks + fw_kt_at(d, 8 + tx));
            const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int r = 0; r < 8; ++r)
#pragma unroll
                for (int c = 0; c < 8; ++c) s[r][c] = fmaf(av[r], bv[c], s[r][c]);
        }
        // S is already in base 2 (Q was scaled by scale * log2 e); tiles with no mask, no
        // causal cut and no keys past Lk skip the per-element checks
        if (mb || causal || j0 + FW_BC > Lk) {
#pragma unroll
            for (int r = 0; r < 8; ++r) {
                const int i = i0 + ty * 8 + r;
#pragma unroll
                for (int c = 0; c < 8; ++c) {
                    s[r][c] = fa_masked_score(s[r][c], mb, i, j0 + fw_col(tx, c), Lq, Lk, causal);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            float tmax = FG_NEG_INF;
#pragma unroll
            for (int c = 0; c < 8; ++c) tmax = fmaxf(tmax, s[r][c]);
            tmax = fw_oct_max(tmax);
            const float mnew = fmaxf(m[r], tmax);
            // while every key so far is hidden (mnew = -inf) subtract 0 instead: p = 2^-inf
            // = 0 and corr = 0 leave l and o at 0, with no inf - inf
            const float mref = mnew == FG_NEG_INF ? 0.0f : mnew;
            const float corr = fw_exp2(m[r] - mref);
            float rsum = 0.0f;
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                s[r][c] = fw_exp2(s[r][c] - mref);  // s := p
                rsum += s[r][c];
            }
            l[r] = l[r] * corr + fw_oct_sum(rsum);
            m[r] = mnew;
#pragma unroll
            for (int c = 0; c < OC; ++c) o[r][c] *= corr;
        }
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int j = fw_col(tx, c);
            *reinterpret_cast<float4*>(ps + fw_pt_at(j, ty * 2)) =
                make_float4(s[0][c], s[1][c], s[2][c], s[3][c]);
            *reinterpret_cast<float4*>(ps + fw_pt_at(j, ty * 2 + 1)) =
                make_float4(s[4][c], s[5][c], s[6][c], s[7][c]);
        }
        __syncthreads();
#pragma unroll 2
        for (int j = 0; j < FW_BC; ++j) {
            float vv[OC];
            // output columns fw_col(tx, c): 4 tx.. (and 32 + 4 tx.. when DC = 64)
            const float4 y0 = *reinterpret_cast<const float4*>(vs + j * DC + tx * 4);
            vv[0] = y0.x; vv[1] = y0.y; vv[2] = y0.z; vv[3] = y0.w;
            if (OC == 8) {
                const float4 y1 = *reinterpret_cast<const float4*>(vs + j * DC + 32 + tx * 4);
                vv[4 % OC] = y1.x; vv[5 % OC] = y1.y; vv[6 % OC] = y1.z; vv[7 % OC] = y1.w;
            }
            const float4 p0 = *reinterpret_cast<const float4*>(ps + fw_pt_at(j, ty * 2));
            const float4 p1 = *reinterpret_cast<const float4*>(ps + fw_pt_at(j, ty * 2 + 1));
            const float pv[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
#pragma unroll
            for (int r = 0; r < 8; ++r)
#pragma unroll
                for (int c = 0; c < OC; ++c) o[r][c] = fmaf(pv[r], vv[c], o[r][c]);
        }
    }
#pragma unroll
    for (int r = 0; r < 8; ++r) {
        const int i = i0 + ty * 8 + r;
        if (i >= Lq) continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        float* op = out + ((long long)bh * Lq + i) * DC;
#pragma unroll
        for (int c = 0; c < OC; ++c) op[fw_col(tx, c)] = o[r][c] * inv;
        if (tx == 0)
            lse[(long long)bh * Lq + i] = l[r] > 0.0f ? (m[r] + log2f(l[r])) * FA_LN2 : FG_NEG_INF;
    }
}

#define FG_ATT_WIDE(SUFFIX, DC)                                                               \
    extern "C" __global__ void __launch_bounds__(128, 2) attention_forward_wide##SUFFIX(       \
        float* out, float* lse, const float* q, const float* k, const float* v,                \
        const float* mask, long long msb, long long msh, int H, int Hk, int Lq, int Lk,        \
        float scale, int causal) {                                                             \
        attention_forward_wide_body<DC>(out, lse, q, k, v, mask, msb, msh, H, Hk, Lq, Lk,      \
                                        scale, causal);                                        \
    }
FG_ATT_WIDE(_d32, 32)
FG_ATT_WIDE(_d64, 64)

// ---------------------------------------------------------------------------------------
// attention_forward_tf32_*: the forward on tensor cores (mma.sync m16n8k8, TF32 inputs
// rounded with cvt.rna, float32 sums), used only when fg.backends.cuda.matmul.allow_tf32
// is set, for D = Dv = DC in {32, 64}. A block of 4 warps owns 64 query rows, a warp 16 of
// them; per 64-key tile a warp computes its 16 x 64 block of S = Q K^T (8 mma tiles),
// the online softmax of its rows in registers, and O += P V (DC / 8 mma tiles).
//
// Two choices keep the shuffles and shared-memory traffic down:
// * The reduction index of an mma may be permuted at will, as long as A and B agree. For
//   Q K^T, fragment column tq (and tq + 4) of k-step s within a 16-wide slice c stands
//   for head dim 16 c + 4 tq + 2 s (and + 1): a thread's four dims are one float4, for Q
//   (loaded once into registers) and for K (one LDS.128 per slice and key tile).
// * For P V, fragment column tq (tq + 4) of key step j stands for key 8 j + 2 tq (+ 1):
//   exactly the keys of S's accumulators c0 / c1 (rows g) and c2 / c3 (rows g + 8), so P
//   goes from the S accumulators to the A operand without moving.
// Shared rows are padded (K: DC + 16 floats, V: DC + 4) so that those reads are one bank
// wavefront. Same results (to TF32 rounding) and lse as attention_forward.
#define FT_BR 64
#define FT_BC 64

__device__ __forceinline__ unsigned ft_tf32(float x) {
    unsigned y;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ void ft_mma(float* c, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                       unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ float ft_quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float ft_quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

template <int DC>
__device__ __forceinline__ void attention_forward_tf32_body(float* out, float* lse, const float* q,
                                                            const float* k, const float* v,
                                                            const float* mask, long long msb,
                                                            long long msh, int H, int Hk, int Lq,
                                                            int Lk, float scale, int causal) {
    constexpr int KS = DC + 16, VS = DC + 4;  // padded row lengths (see above)
    constexpr int NC = DC / 16;               // 16-wide head-dim slices
    constexpr int OT = DC / 8;                // output mma tiles per warp
    __shared__ __align__(16) float ks[FT_BC * KS];
    __shared__ __align__(16) float vs[FT_BC * VS];
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const int g = lane / 4, tq = lane % 4;
    const int bh = blockIdx.y, b = bh / H, h = bh % H, hk = h / (H / Hk);
    const int i0 = blockIdx.x * FT_BR;
    const int r0 = i0 + warp * 16 + g, r1 = r0 + 8;  // this thread's two query rows
    const float* kb = k + ((long long)b * Hk + hk) * Lk * DC;
    const float* vb = v + ((long long)b * Hk + hk) * Lk * DC;
    const float* mb = mask ? mask + b * msb + h * msh : nullptr;
    const float sc2 = scale * FA_LOG2E;  // scores in base 2

    // Q fragments: qa[c][0] row r0, qa[c][1] row r1, dims 16 c + 4 tq .. + 3, pre-scaled
    unsigned qa[NC][2][4];
#pragma unroll
    for (int c = 0; c < NC; ++c)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const int r = hh ? r1 : r0;
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (r < Lq) x = *reinterpret_cast<const float4*>(q + ((long long)bh * Lq + r) * DC + 16 * c + 4 * tq);
            qa[c][hh][0] = ft_tf32(x.x * sc2); qa[c][hh][1] = ft_tf32(x.y * sc2);
            qa[c][hh][2] = ft_tf32(x.z * sc2); qa[c][hh][3] = ft_tf32(x.w * sc2);
        }
    float o[OT][4], m[2] = {FG_NEG_INF, FG_NEG_INF}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int d = 0; d < OT; ++d)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[d][e] = 0.0f;

    int kend = Lk;
    if (causal) kend = min(Lk, min(Lq, i0 + FT_BR));
    for (int j0 = 0; j0 < kend; j0 += FT_BC) {
        __syncthreads();  // the previous tile is no longer read
        for (int f = t; f < FT_BC * DC / 4; f += 128) {
            const int j = f / (DC / 4), d = (f % (DC / 4)) * 4;
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f), y = x;
            if (j0 + j < Lk) {
                x = *reinterpret_cast<const float4*>(kb + (long long)(j0 + j) * DC + d);
                y = *reinterpret_cast<const float4*>(vb + (long long)(j0 + j) * DC + d);
            }
            // rounded to TF32 once here instead of at every fragment read
            *reinterpret_cast<uint4*>(ks + j * KS + d) = make_uint4(ft_tf32(x.x), ft_tf32(x.y), ft_tf32(x.z), ft_tf32(x.w));
            *reinterpret_cast<uint4*>(vs + j * VS + d) = make_uint4(ft_tf32(y.x), ft_tf32(y.y), ft_tf32(y.z), ft_tf32(y.w));
        }
        __syncthreads();
        // S: s[j] is the mma tile of keys 8 j ..: s[j][0..1] row r0, keys 8 j + 2 tq (+1);
        // s[j][2..3] row r1, the same keys
        float s[8][4];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const uint4 kv = *reinterpret_cast<const uint4*>(ks + (8 * j + g) * KS + 16 * c + 4 * tq);
                ft_mma(s[j], qa[c][0][0], qa[c][1][0], qa[c][0][1], qa[c][1][1], kv.x, kv.y);
                ft_mma(s[j], qa[c][0][2], qa[c][1][2], qa[c][0][3], qa[c][1][3], kv.z, kv.w);
            }
        }
        if (mb || causal || j0 + FT_BC > Lk) {
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = e < 2 ? r0 : r1, key = j0 + 8 * j + 2 * tq + (e & 1);
                    s[j][e] = fa_masked_score(s[j][e], mb, i, key, Lq, Lk, causal);
                }
        }
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            float tmax = FG_NEG_INF;
#pragma unroll
            for (int j = 0; j < 8; ++j) tmax = fmaxf(tmax, fmaxf(s[j][2 * hh], s[j][2 * hh + 1]));
            const float mnew = fmaxf(m[hh], ft_quad_max(tmax));
            // while every key so far is hidden (mnew = -inf) subtract 0 instead: p = 0 and
            // corr = 0 leave l and o at 0, with no inf - inf
            const float mref = mnew == FG_NEG_INF ? 0.0f : mnew;
            const float corr = fw_exp2(m[hh] - mref);
            float rsum = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                s[j][2 * hh] = fw_exp2(s[j][2 * hh] - mref);
                s[j][2 * hh + 1] = fw_exp2(s[j][2 * hh + 1] - mref);
                rsum += s[j][2 * hh] + s[j][2 * hh + 1];
            }
            l[hh] = l[hh] * corr + ft_quad_sum(rsum);
            m[hh] = mnew;
#pragma unroll
            for (int d = 0; d < OT; ++d) {
                o[d][2 * hh] *= corr;
                o[d][2 * hh + 1] *= corr;
            }
        }
        // O += P V: key step j's A fragment is s[j] in the order (r0, 2tq), (r1, 2tq),
        // (r0, 2tq + 1), (r1, 2tq + 1)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const unsigned p0 = ft_tf32(s[j][0]), p1 = ft_tf32(s[j][2]);
            const unsigned p2 = ft_tf32(s[j][1]), p3 = ft_tf32(s[j][3]);
            const float* v0 = vs + (8 * j + 2 * tq) * VS + g;
#pragma unroll
            for (int d = 0; d < OT; ++d)
                ft_mma(o[d], p0, p1, p2, p3, __float_as_uint(v0[8 * d]), __float_as_uint(v0[VS + 8 * d]));
        }
    }
    // o[d][0..1]: row r0, output columns 8 d + 2 tq (+1); o[d][2..3]: row r1
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
        const int i = hh ? r1 : r0;
        if (i >= Lq) continue;
        const float inv = l[hh] > 0.0f ? 1.0f / l[hh] : 0.0f;
        float* op = out + ((long long)bh * Lq + i) * DC;
#pragma unroll
        for (int d = 0; d < OT; ++d)
            *reinterpret_cast<float2*>(op + 8 * d + 2 * tq) = make_float2(o[d][2 * hh] * inv, o[d][2 * hh + 1] * inv);
        if (tq == 0)
            lse[(long long)bh * Lq + i] = l[hh] > 0.0f ? (m[hh] + log2f(l[hh])) * FA_LN2 : FG_NEG_INF;
    }
}

#define FG_ATT_TF32(SUFFIX, DC)                                                               \
    extern "C" __global__ void __launch_bounds__(128) attention_forward_tf32##SUFFIX(          \
        float* out, float* lse, const float* q, const float* k, const float* v,                \
        const float* mask, long long msb, long long msh, int H, int Hk, int Lq, int Lk,        \
        float scale, int causal) {                                                             \
        attention_forward_tf32_body<DC>(out, lse, q, k, v, mask, msb, msh, H, Hk, Lq, Lk,      \
                                        scale, causal);                                        \
    }
FG_ATT_TF32(_d32, 32)
FG_ATT_TF32(_d64, 64)

// ---------------------------------------------------------------------------------------
// attention_backward_wide_d64: the backward for D = Dv = 64 in one kernel (FlashAttention-2's
// loop order). A block of 256 threads (16 x 16) owns a tile of 64 keys of one key/value
// head; it keeps K, V and its dK, dV accumulators for the whole run and walks the query
// tiles (64 rows) of every query head that reads the key head. Per query tile, with
// scores recomputed:
//   P^T  = exp(K Q^T * scale + mask - lse)   (64 keys x 64 queries, 4 x 4 per thread)
//   dP^T = V dO^T,  dS^T = P^T (dP^T - delta), delta = rowsum(dO o O) (precomputed)
//   dV += P^T dO,  dK += dS^T Q,  dQ += dS K  (dQ: atomicAdd into a zeroed gq).
// Operands of the score-like products are staged transposed (d-major) so that a thread's
// four keys / queries are one float4; those of the accumulating products row-major. 162.5
// KB of dynamic shared memory. Same gradients (to rounding; dQ's atomic sums are unordered) as
// the one-thread-per-row kernels, which remain for other head dims.
#define FB_T 64   // keys per block, queries per tile
#define FB_D 64
#define FB_P 68   // padded row length of the P^T / dS^T tiles (spreads their stores)

// delta[r] = sum_d gout[r][d] * out[r][d] for every row r < rows
extern "C" __global__ void attention_backward_rowdot(float* delta, const float* out, const float* gout,
                                                     long long rows, int Dv) {
    FG_GRID_LOOP(r, rows) {
        const float* o = out + r * Dv;
        const float* g = gout + r * Dv;
        float s = 0.0f;
        for (int d = 0; d < Dv; ++d) s += o[d] * g[d];
        delta[r] = s;
    }
}

__device__ __forceinline__ void fb_fma44(float (&acc)[4][4], float4 a, float4 b) {
    const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(av[r], bv[c], acc[r][c]);
}

// The first 64 rows of two row-major (rows x 64) operands a and b (zero from row `valid`
// on) into shared memory: transposed ([d][row]) always, row-major where ra / rb are given.
__device__ __forceinline__ void fb_stage(float* ra, float* ta, float* rb, float* tb, const float* a,
                                         const float* b, int valid) {
    for (int f = threadIdx.x; f < FB_T * FB_D / 4; f += blockDim.x) {
        const int r = f / 16, d = (f % 16) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f), y = x;
        if (r < valid) {
            x = *reinterpret_cast<const float4*>(a + (long long)r * FB_D + d);
            y = *reinterpret_cast<const float4*>(b + (long long)r * FB_D + d);
        }
        if (ra) *reinterpret_cast<float4*>(ra + r * FB_D + d) = x;
        if (rb) *reinterpret_cast<float4*>(rb + r * FB_D + d) = y;
        ta[d * FB_T + r] = x.x; ta[(d + 1) * FB_T + r] = x.y; ta[(d + 2) * FB_T + r] = x.z; ta[(d + 3) * FB_T + r] = x.w;
        tb[d * FB_T + r] = y.x; tb[(d + 1) * FB_T + r] = y.y; tb[(d + 2) * FB_T + r] = y.z; tb[(d + 3) * FB_T + r] = y.w;
    }
}

extern "C" __global__ void __launch_bounds__(256) attention_backward_wide_d64(
    float* gq, float* gk, float* gv, const float* q, const float* k, const float* v, const float* mask,
    long long msb, long long msh, const float* lse, const float* delta, const float* gout, int H, int Hk,
    int Lq, int Lk, float scale, int causal) {
    extern __shared__ __align__(16) float fb_smem[];
    float* kT = fb_smem;               // [d][key]
    float* vT = kT + FB_D * FB_T;      // [d][key]
    float* kR = vT + FB_D * FB_T;      // [key][d]
    float* qT = kR + FB_T * FB_D;      // [d][query]
    float* qR = qT + FB_D * FB_T;      // [query][d]
    float* gT = qR + FB_T * FB_D;      // dO: [d][query]
    float* gR = gT + FB_D * FB_T;      // dO: [query][d]
    float* pq = gR + FB_T * FB_D;      // P^T as [query][key] (rows FB_P long)
    float* sq = pq + FB_T * FB_P;      // dS^T as [query][key]
    float* sk = sq + FB_T * FB_P;      // dS^T as [key][query]
    float* lq = sk + FB_T * FB_T;      // lse * log2 e of the tile's queries
    float* dl = lq + FB_T;             // delta of the tile's queries
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int bhk = blockIdx.y, b = bhk / Hk, hk = bhk % Hk, group = H / Hk;
    const int j0 = blockIdx.x * FB_T;
    const float sc2 = scale * FA_LOG2E;
    const float* kb = k + ((long long)bhk * Lk + j0) * FB_D;
    const float* vb = v + ((long long)bhk * Lk + j0) * FB_D;
    fb_stage(kR, kT, nullptr, vT, kb, vb, Lk - j0);
    float dk[4][4], dv[4][4];  // rows: keys 4 ty.., columns: dims 4 tx..
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) dk[r][c] = dv[r][c] = 0.0f;
    // causal: queries before the block's first key see none of its keys
    const int first = causal ? j0 : 0;
    for (int h = hk * group; h < (hk + 1) * group; ++h) {
        const long long bh = (long long)b * H + h;
        const float* mb = mask ? mask + b * msb + h * msh : nullptr;
        for (int i0 = first; i0 < Lq; i0 += FB_T) {
            __syncthreads();  // the previous tile's operands are no longer read
            const float* qb = q + (bh * Lq + i0) * FB_D;
            const float* gb = gout + (bh * Lq + i0) * FB_D;
            fb_stage(qR, qT, gR, gT, qb, gb, Lq - i0);
            if (t < FB_T) {
                const bool in = i0 + t < Lq;
                lq[t] = in ? lse[bh * Lq + i0 + t] * FA_LOG2E : FG_NEG_INF;
                dl[t] = in ? delta[bh * Lq + i0 + t] : 0.0f;
            }
            __syncthreads();
            // S^T and dP^T: keys 4 ty + r, queries 4 tx + c
            float s[4][4], dp[4][4];
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[r][c] = dp[r][c] = 0.0f;
#pragma unroll 4
            for (int d = 0; d < FB_D; ++d) {
                fb_fma44(s, *reinterpret_cast<const float4*>(kT + d * FB_T + 4 * ty),
                         *reinterpret_cast<const float4*>(qT + d * FB_T + 4 * tx));
                fb_fma44(dp, *reinterpret_cast<const float4*>(vT + d * FB_T + 4 * ty),
                         *reinterpret_cast<const float4*>(gT + d * FB_T + 4 * tx));
            }
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int j = j0 + 4 * ty + r;
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int ii = 4 * tx + c, i = i0 + ii;
                    const float p = fa_prob(s[r][c] * sc2, mb, i, j, Lq, Lk, causal, lq[ii]);
                    s[r][c] = p;
                    dp[r][c] = p * (dp[r][c] - dl[ii]);  // dS^T
                }
            }
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int ii = 4 * tx + c;
                *reinterpret_cast<float4*>(pq + ii * FB_P + 4 * ty) = make_float4(s[0][c], s[1][c], s[2][c], s[3][c]);
                *reinterpret_cast<float4*>(sq + ii * FB_P + 4 * ty) = make_float4(dp[0][c], dp[1][c], dp[2][c], dp[3][c]);
            }
#pragma unroll
            for (int r = 0; r < 4; ++r)
                *reinterpret_cast<float4*>(sk + (4 * ty + r) * FB_T + 4 * tx) = make_float4(dp[r][0], dp[r][1], dp[r][2], dp[r][3]);
            __syncthreads();
            // dV += P^T dO, dK += dS^T Q (keys 4 ty.., dims 4 tx..); dQ = dS K (queries 4 ty.., dims 4 tx..)
            float dq[4][4];
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int c = 0; c < 4; ++c) dq[r][c] = 0.0f;
#pragma unroll 4
            for (int ii = 0; ii < FB_T; ++ii) {
                fb_fma44(dv, *reinterpret_cast<const float4*>(pq + ii * FB_P + 4 * ty),
                         *reinterpret_cast<const float4*>(gR + ii * FB_D + 4 * tx));
                fb_fma44(dk, *reinterpret_cast<const float4*>(sq + ii * FB_P + 4 * ty),
                         *reinterpret_cast<const float4*>(qR + ii * FB_D + 4 * tx));
                fb_fma44(dq, *reinterpret_cast<const float4*>(sk + ii * FB_T + 4 * ty),
                         *reinterpret_cast<const float4*>(kR + ii * FB_D + 4 * tx));
            }
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int i = i0 + 4 * ty + r;
                if (i >= Lq) continue;
                float* gp = gq + (bh * Lq + i) * FB_D + 4 * tx;
#pragma unroll
                for (int c = 0; c < 4; ++c) atomicAdd(gp + c, scale * dq[r][c]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int j = j0 + 4 * ty + r;
        if (j >= Lk) continue;
        *reinterpret_cast<float4*>(gk + ((long long)bhk * Lk + j) * FB_D + 4 * tx) =
            make_float4(scale * dk[r][0], scale * dk[r][1], scale * dk[r][2], scale * dk[r][3]);
        *reinterpret_cast<float4*>(gv + ((long long)bhk * Lk + j) * FB_D + 4 * tx) =
            make_float4(dv[r][0], dv[r][1], dv[r][2], dv[r][3]);
    }
}

// ---------------------------------------------------------------------------------------
// attention_backward_tf32_d64: the backward of attention_backward_wide_d64 on tensor cores
// (mma.sync m16n8k8, TF32 inputs rounded with cvt.rna, float32 sums), used only when
// fg.backends.cuda.matmul.allow_tf32 is set. A block of 4 warps owns 64 keys, a warp 16 of
// them, with K and V in registers as A fragments and dK, dV accumulators. Per query tile
// (64 rows) a warp computes S^T = K Q^T and dP^T = V dO^T for its keys, P^T and dS^T in
// registers, then dV += P^T dO and dK += dS^T Q with P^T / dS^T going from accumulators
// straight to A fragments (attention_forward_tf32's reduction-index permutation); dS^T
// goes through shared memory once so that each warp can compute dQ = dS K for 16 queries
// (atomicAdd). Q and dO are staged twice, padded for the two ways they are read (float4
// rows for the score products, one bank wavefront for the accumulating ones).
#define BT_KS 80  // Q / dO rows read as float4 k-slices
#define BT_VS 68  // Q / dO rows read as B of the accumulating products; dS rows
#define BT_KK 72  // K rows read as B of dQ

extern "C" __global__ void __launch_bounds__(128) attention_backward_tf32_d64(
    float* gq, float* gk, float* gv, const float* q, const float* k, const float* v, const float* mask,
    long long msb, long long msh, const float* lse, const float* delta, const float* gout, int H, int Hk,
    int Lq, int Lk, float scale, int causal) {
    constexpr int DC = 64, NC = DC / 16, OT = DC / 8;
    extern __shared__ __align__(16) float bt_smem[];
    float* qk = bt_smem;             // Q  [query][d], rows BT_KS
    float* gk_ = qk + 64 * BT_KS;    // dO [query][d], rows BT_KS
    float* qv = gk_ + 64 * BT_KS;    // Q  [query][d], rows BT_VS
    float* gv_ = qv + 64 * BT_VS;    // dO [query][d], rows BT_VS
    float* ks = gv_ + 64 * BT_VS;    // K  [key][d],   rows BT_KK
    float* dss = ks + 64 * BT_KK;    // dS [query][key], rows BT_VS
    float* lq = dss + 64 * BT_VS;    // lse * log2 e per query of the tile
    float* dl = lq + 64;             // delta per query of the tile
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const int g = lane / 4, tq = lane % 4;
    const int bhk = blockIdx.y, b = bhk / Hk, hk = bhk % Hk, group = H / Hk;
    const int j0 = blockIdx.x * 64;
    const int kr0 = j0 + warp * 16 + g, kr1 = kr0 + 8;  // this thread's two keys
    const float sc2 = scale * FA_LOG2E;
    const float* kb = k + (long long)bhk * Lk * DC;
    const float* vb = v + (long long)bhk * Lk * DC;
    // K (pre-scaled: S^T in base 2) and V as A fragments: rows kr0 / kr1, dims 16 c + 4 tq ..
    unsigned ka[NC][2][4], va[NC][2][4];
#pragma unroll
    for (int c = 0; c < NC; ++c)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const int r = hh ? kr1 : kr0;
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f), y = x;
            if (r < Lk) {
                x = *reinterpret_cast<const float4*>(kb + (long long)r * DC + 16 * c + 4 * tq);
                y = *reinterpret_cast<const float4*>(vb + (long long)r * DC + 16 * c + 4 * tq);
            }
            ka[c][hh][0] = ft_tf32(x.x * sc2); ka[c][hh][1] = ft_tf32(x.y * sc2);
            ka[c][hh][2] = ft_tf32(x.z * sc2); ka[c][hh][3] = ft_tf32(x.w * sc2);
            va[c][hh][0] = ft_tf32(y.x); va[c][hh][1] = ft_tf32(y.y);
            va[c][hh][2] = ft_tf32(y.z); va[c][hh][3] = ft_tf32(y.w);
        }
    for (int f = t; f < 64 * DC / 4; f += 128) {
        const int j = f / (DC / 4), d = (f % (DC / 4)) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (j0 + j < Lk) x = *reinterpret_cast<const float4*>(kb + (long long)(j0 + j) * DC + d);
        *reinterpret_cast<uint4*>(ks + j * BT_KK + d) = make_uint4(ft_tf32(x.x), ft_tf32(x.y), ft_tf32(x.z), ft_tf32(x.w));
    }
    float dk[OT][4], dv[OT][4];
#pragma unroll
    for (int n = 0; n < OT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.0f;
    const int first = causal ? j0 : 0;  // earlier queries see none of the block's keys
    for (int h = hk * group; h < (hk + 1) * group; ++h) {
        const long long bh = (long long)b * H + h;
        const float* mb = mask ? mask + b * msb + h * msh : nullptr;
        for (int i0 = first; i0 < Lq; i0 += 64) {
            __syncthreads();  // the previous tile's Q, dO and dS are no longer read
            for (int f = t; f < 64 * DC / 4; f += 128) {
                const int i = f / (DC / 4), d = (f % (DC / 4)) * 4;
                float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f), y = x;
                if (i0 + i < Lq) {
                    x = *reinterpret_cast<const float4*>(q + (bh * Lq + i0 + i) * DC + d);
                    y = *reinterpret_cast<const float4*>(gout + (bh * Lq + i0 + i) * DC + d);
                }
                const uint4 xr = make_uint4(ft_tf32(x.x), ft_tf32(x.y), ft_tf32(x.z), ft_tf32(x.w));
                const uint4 yr = make_uint4(ft_tf32(y.x), ft_tf32(y.y), ft_tf32(y.z), ft_tf32(y.w));
                *reinterpret_cast<uint4*>(qk + i * BT_KS + d) = xr;
                *reinterpret_cast<uint4*>(qv + i * BT_VS + d) = xr;
                *reinterpret_cast<uint4*>(gk_ + i * BT_KS + d) = yr;
                *reinterpret_cast<uint4*>(gv_ + i * BT_VS + d) = yr;
            }
            if (t < 64) {
                const bool in = i0 + t < Lq;
                lq[t] = in ? lse[bh * Lq + i0 + t] * FA_LOG2E : FG_NEG_INF;
                dl[t] = in ? delta[bh * Lq + i0 + t] : 0.0f;
            }
            __syncthreads();
            // s[j] / p[j]: S^T / dP^T tile of queries 8 j ..: [0..1] key kr0, queries
            // 8 j + 2 tq (+1); [2..3] key kr1
            float s[8][4], dp[8][4];
#pragma unroll
            for (int j = 0; j < 8; ++j) {
#pragma unroll
                for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
                for (int c = 0; c < NC; ++c) {
                    const uint4 qq = *reinterpret_cast<const uint4*>(qk + (8 * j + g) * BT_KS + 16 * c + 4 * tq);
                    const uint4 gg = *reinterpret_cast<const uint4*>(gk_ + (8 * j + g) * BT_KS + 16 * c + 4 * tq);
                    ft_mma(s[j], ka[c][0][0], ka[c][1][0], ka[c][0][1], ka[c][1][1], qq.x, qq.y);
                    ft_mma(s[j], ka[c][0][2], ka[c][1][2], ka[c][0][3], ka[c][1][3], qq.z, qq.w);
                    ft_mma(dp[j], va[c][0][0], va[c][1][0], va[c][0][1], va[c][1][1], gg.x, gg.y);
                    ft_mma(dp[j], va[c][0][2], va[c][1][2], va[c][0][3], va[c][1][3], gg.z, gg.w);
                }
            }
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int key = e < 2 ? kr0 : kr1, ii = 8 * j + 2 * tq + (e & 1), i = i0 + ii;
                    const float p = fa_prob(s[j][e], mb, i, key, Lq, Lk, causal, lq[ii]);
                    s[j][e] = p;                          // P^T
                    dp[j][e] = p * (dp[j][e] - dl[ii]);   // dS^T
                    dss[ii * BT_VS + warp * 16 + g + (e < 2 ? 0 : 8)] = dp[j][e];
                }
            // dV += P^T dO, dK += dS^T Q: query step j's A fragment is s[j] / dp[j] in the
            // order (kr0, 2tq), (kr1, 2tq), (kr0, 2tq + 1), (kr1, 2tq + 1)
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const unsigned p0 = ft_tf32(s[j][0]), p1 = ft_tf32(s[j][2]), p2 = ft_tf32(s[j][1]), p3 = ft_tf32(s[j][3]);
                const unsigned d0 = ft_tf32(dp[j][0]), d1 = ft_tf32(dp[j][2]), d2 = ft_tf32(dp[j][1]), d3 = ft_tf32(dp[j][3]);
                const float* g0 = gv_ + (8 * j + 2 * tq) * BT_VS + g;
                const float* q0 = qv + (8 * j + 2 * tq) * BT_VS + g;
#pragma unroll
                for (int n = 0; n < OT; ++n) {
                    ft_mma(dv[n], p0, p1, p2, p3, __float_as_uint(g0[8 * n]), __float_as_uint(g0[BT_VS + 8 * n]));
                    ft_mma(dk[n], d0, d1, d2, d3, __float_as_uint(q0[8 * n]), __float_as_uint(q0[BT_VS + 8 * n]));
                }
            }
            __syncthreads();  // dS of every warp's keys is in shared memory
            // dQ for queries 16 warp .. + 15 (rows g, g + 8): A = dS [query][key], B = K [key][d]
            float dq[OT][4];
#pragma unroll
            for (int n = 0; n < OT; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) dq[n][e] = 0.0f;
            const int qr = warp * 16 + g;
#pragma unroll
            for (int st = 0; st < 8; ++st) {  // keys 8 st ..
                const unsigned a0 = ft_tf32(dss[qr * BT_VS + 8 * st + tq]);
                const unsigned a1 = ft_tf32(dss[(qr + 8) * BT_VS + 8 * st + tq]);
                const unsigned a2 = ft_tf32(dss[qr * BT_VS + 8 * st + tq + 4]);
                const unsigned a3 = ft_tf32(dss[(qr + 8) * BT_VS + 8 * st + tq + 4]);
                const float* k0 = ks + (8 * st + tq) * BT_KK + g;
#pragma unroll
                for (int n = 0; n < OT; ++n)
                    ft_mma(dq[n], a0, a1, a2, a3, __float_as_uint(k0[8 * n]), __float_as_uint(k0[4 * BT_KK + 8 * n]));
            }
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int i = i0 + qr + 8 * hh;
                if (i >= Lq) continue;
                float* gp = gq + (bh * Lq + i) * DC;
#pragma unroll
                for (int n = 0; n < OT; ++n) {
                    atomicAdd(gp + 8 * n + 2 * tq, scale * dq[n][2 * hh]);
                    atomicAdd(gp + 8 * n + 2 * tq + 1, scale * dq[n][2 * hh + 1]);
                }
            }
        }
    }
    // dk[n] / dv[n]: [0..1] key kr0, dims 8 n + 2 tq (+1); [2..3] key kr1
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
        const int r = hh ? kr1 : kr0;
        if (r >= Lk) continue;
#pragma unroll
        for (int n = 0; n < OT; ++n) {
            *reinterpret_cast<float2*>(gk + ((long long)bhk * Lk + r) * DC + 8 * n + 2 * tq) =
                make_float2(scale * dk[n][2 * hh], scale * dk[n][2 * hh + 1]);
            *reinterpret_cast<float2*>(gv + ((long long)bhk * Lk + r) * DC + 8 * n + 2 * tq) =
                make_float2(dv[n][2 * hh], dv[n][2 * hh + 1]);
        }
    }
}
