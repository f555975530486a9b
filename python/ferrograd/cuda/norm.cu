// Normalization kernels: layer_norm / group_norm ("rows") and batch_norm ("channels").
//
// Layout: x is a row-major (N, C, HW) array. Rows mode: row r = (n, g) is the contiguous
// run of L = Cg * HW elements of group g of sample n; element j of row r belongs to
// channel c = (r % G) * Cg + j / HW (layer_norm: G = 1, HW = 1, C = L). Channels mode
// (batch_norm): channel c owns the N spans x[n, c, :] of HW elements.
//
// Statistics are stable for large means:
// * rows: one block per row; the exact two-pass formula (mean, then the sum of squared
//   deviations with its rounding correction) over the row, whose second read hits L1/L2,
//   so DRAM sees one read. Register-cached rows (VPT float4 per thread) when they fit.
// * channels: each thread folds groups of V (4 with 16-byte loads, else 1) values into a
//   running (count, mean, M2) with Chan's merge (exact within a group); threads merge by
//   warp shuffles, blocks write partials, one thread per channel merges the partials.
// The backward kernels use deviations from the saved mean, never sum(x*gy) - mean*sum(gy).
#include "common.cuh"

struct Moments {
    float n, mean, m2;
};

__device__ __forceinline__ Moments fg_merge(Moments a, Moments b) {
    if (b.n == 0.0f) return a;
    if (a.n == 0.0f) return b;
    float n = a.n + b.n;
    float d = b.mean - a.mean;
    float f = b.n / n;
    Moments r;
    r.n = n;
    r.mean = a.mean + d * f;
    r.m2 = a.m2 + b.m2 + d * d * a.n * f;
    return r;
}

__device__ __forceinline__ Moments fg_warp_merge(Moments m) {
    for (int o = 16; o > 0; o >>= 1) {
        Moments b;
        b.n = __shfl_xor_sync(0xffffffffu, m.n, o);
        b.mean = __shfl_xor_sync(0xffffffffu, m.mean, o);
        b.m2 = __shfl_xor_sync(0xffffffffu, m.m2, o);
        m = fg_merge(m, b);
    }
    return m;
}

// Merge over the block (blockDim.x a multiple of 32); thread 0 gets the result.
__device__ __forceinline__ Moments fg_block_merge(Moments m) {
    __shared__ float sn[32], smean[32], sm2[32];
    m = fg_warp_merge(m);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
        sn[warp] = m.n;
        smean[warp] = m.mean;
        sm2[warp] = m.m2;
    }
    __syncthreads();
    if (warp == 0) {
        Moments w = {0.0f, 0.0f, 0.0f};
        if (lane < (int)(blockDim.x >> 5)) {
            w.n = sn[lane];
            w.mean = smean[lane];
            w.m2 = sm2[lane];
        }
        m = fg_warp_merge(w);
    }
    return m;
}

// Two sums over the block at once; every thread gets both.
__device__ __forceinline__ float2 fg_block_sum2(float a, float b) {
    __shared__ float pa[32], pb[32];
    __shared__ float2 total;
    a = fg_warp_sum(a);
    b = fg_warp_sum(b);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
        pa[warp] = a;
        pb[warp] = b;
    }
    __syncthreads();
    if (warp == 0) {
        bool on = lane < (int)(blockDim.x >> 5);
        float wa = fg_warp_sum(on ? pa[lane] : 0.0f);
        float wb = fg_warp_sum(on ? pb[lane] : 0.0f);
        if (lane == 0) total = make_float2(wa, wb);
    }
    __syncthreads();
    return total;
}

// parameter index of element j of a row that starts at channel c0
__device__ __forceinline__ long long fg_chan(long long c0, long long j, long long hw) {
    return c0 + (hw == 1 ? j : j / hw);
}

// (v - mean) * rstd * w[c] + b[c] for the 4 elements j0.. of a row
__device__ __forceinline__ float4 fg_affine4(float4 v, long long j0, long long c0, long long hw,
                                             float m, float rs, const float* __restrict__ w,
                                             const float* __restrict__ b) {
    float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        long long c = fg_chan(c0, j0 + t, hw);
        float sc = w ? w[c] * rs : rs;
        e[t] = (e[t] - m) * sc + (b ? b[c] : 0.0f);
    }
    return make_float4(e[0], e[1], e[2], e[3]);
}

// ------------------------------------------------------------------ rows forward
// One block per row. VEC: the row is read as float4 (L % 4 == 0). CACHE > 0: each thread
// keeps its CACHE float4 of the row in registers (L <= 4 * CACHE * blockDim).
template <bool VEC, int CACHE>
__device__ void rows_forward_impl(float* __restrict__ y, float* __restrict__ mean_out,
                                  float* __restrict__ rstd_out, const float* __restrict__ x,
                                  const float* __restrict__ w, const float* __restrict__ b,
                                  long long L, long long G, long long Cg, long long HW, float eps) {
    long long r = blockIdx.x;
    const float* xr = x + r * L;
    float* yr = y + r * L;
    long long c0 = (r % G) * Cg;
    long long L4 = L >> 2;
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    float4 cache[CACHE > 0 ? CACHE : 1];

    // pass 1: mean
    float s = 0.0f;
    if (VEC) {
        if (CACHE > 0) {
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                long long i = threadIdx.x + (long long)k * blockDim.x;
                cache[k] = i < L4 ? x4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
                s += (cache[k].x + cache[k].y) + (cache[k].z + cache[k].w);
            }
        } else {
            for (long long i = threadIdx.x; i < L4; i += blockDim.x) {
                float4 v = x4[i];
                s += (v.x + v.y) + (v.z + v.w);
            }
        }
    } else {
        for (long long j = threadIdx.x; j < L; j += blockDim.x) s += xr[j];
    }
    float m = fg_block_sum(s) / (float)L;

    // pass 2: squared deviations (and their sum, the rounding correction of the mean)
    float d1 = 0.0f, d2 = 0.0f;
    if (VEC) {
        if (CACHE > 0) {
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                long long i = threadIdx.x + (long long)k * blockDim.x;
                if (i < L4) {
                    float4 v = cache[k];
                    float a0 = v.x - m, a1 = v.y - m, a2 = v.z - m, a3 = v.w - m;
                    d1 += (a0 + a1) + (a2 + a3);
                    d2 += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3);
                }
            }
        } else {
            for (long long i = threadIdx.x; i < L4; i += blockDim.x) {
                float4 v = x4[i];
                float a0 = v.x - m, a1 = v.y - m, a2 = v.z - m, a3 = v.w - m;
                d1 += (a0 + a1) + (a2 + a3);
                d2 += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3);
            }
        }
    } else {
        for (long long j = threadIdx.x; j < L; j += blockDim.x) {
            float a = xr[j] - m;
            d1 += a;
            d2 += a * a;
        }
    }
    float2 d = fg_block_sum2(d1, d2);
    float var = fmaxf((d.y - d.x * d.x / (float)L) / (float)L, 0.0f);
    m += d.x / (float)L;
    float rs = rsqrtf(var + eps);
    if (threadIdx.x == 0) {
        mean_out[r] = m;
        rstd_out[r] = rs;
    }

    // pass 3: y = (x - mean) * rstd * w + b
    if (VEC) {
        float4* y4 = reinterpret_cast<float4*>(yr);
        if (CACHE > 0) {
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                long long i = threadIdx.x + (long long)k * blockDim.x;
                if (i < L4) y4[i] = fg_affine4(cache[k], 4 * i, c0, HW, m, rs, w, b);
            }
        } else {
            for (long long i = threadIdx.x; i < L4; i += blockDim.x)
                y4[i] = fg_affine4(x4[i], 4 * i, c0, HW, m, rs, w, b);
        }
    } else {
        for (long long j = threadIdx.x; j < L; j += blockDim.x) {
            long long c = fg_chan(c0, j, HW);
            float sc = w ? w[c] * rs : rs;
            yr[j] = (xr[j] - m) * sc + (b ? b[c] : 0.0f);
        }
    }
}

#define FG_ROWS_FORWARD(NAME, VEC, CACHE)                                                    \
    extern "C" __global__ void NAME(float* __restrict__ y, float* __restrict__ mean,          \
                                    float* __restrict__ rstd, const float* __restrict__ x,    \
                                    const float* __restrict__ w, const float* __restrict__ b, \
                                    long long L, long long G, long long Cg, long long HW,     \
                                    float eps) {                                              \
        rows_forward_impl<VEC, CACHE>(y, mean, rstd, x, w, b, L, G, Cg, HW, eps);             \
    }

FG_ROWS_FORWARD(rows_forward_scalar, false, 0)
FG_ROWS_FORWARD(rows_forward_vec, true, 0)
FG_ROWS_FORWARD(rows_forward_vec_c1, true, 1)
FG_ROWS_FORWARD(rows_forward_vec_c2, true, 2)
FG_ROWS_FORWARD(rows_forward_vec_c4, true, 4)
FG_ROWS_FORWARD(rows_forward_vec_c8, true, 8)

// ----------------------------------------------------------------- rows backward: gx
// One block per row: A = sum w gy, B = sum w gy (x - mean) over the row, then
// gx = rstd (w gy - A / L - rstd^2 B / L (x - mean)). The subtraction comes before the
// scaling by rstd (up to 1/sqrt(eps) = 316), and w gy is formed as in the sums with
// __fmul_rn (the compiler may not fuse it into an FMA with the subtraction, which would
// leave the product's rounding error), so a row of one element gets exactly 0. The
// second read of the row hits L1/L2.
extern "C" __global__ void rows_backward(float* __restrict__ gx, const float* __restrict__ x,
                                         const float* __restrict__ w,
                                         const float* __restrict__ mean,
                                         const float* __restrict__ rstd,
                                         const float* __restrict__ gy, long long L, long long G,
                                         long long Cg, long long HW, int vec) {
    long long r = blockIdx.x;
    const float* xr = x + r * L;
    const float* gr = gy + r * L;
    float* gxr = gx + r * L;
    long long c0 = (r % G) * Cg;
    float m = mean[r], rs = rstd[r];
    float a = 0.0f, bsum = 0.0f;
    long long L4 = L >> 2;
    if (vec) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        const float4* g4 = reinterpret_cast<const float4*>(gr);
        for (long long i = threadIdx.x; i < L4; i += blockDim.x) {
            float4 xv = x4[i], gv = g4[i];
            float xe[4] = {xv.x, xv.y, xv.z, xv.w}, ge[4] = {gv.x, gv.y, gv.z, gv.w};
#pragma unroll
            for (int t = 0; t < 4; ++t) {
                float wg = __fmul_rn(w ? w[fg_chan(c0, 4 * i + t, HW)] : 1.0f, ge[t]);
                a += wg;
                bsum += wg * (xe[t] - m);
            }
        }
    } else {
        for (long long j = threadIdx.x; j < L; j += blockDim.x) {
            float wg = __fmul_rn(w ? w[fg_chan(c0, j, HW)] : 1.0f, gr[j]);
            a += wg;
            bsum += wg * (xr[j] - m);
        }
    }
    float2 s = fg_block_sum2(a, bsum);
    float kb = rs * rs * s.y / (float)L;
    float ma = s.x / (float)L;
    if (vec) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        const float4* g4 = reinterpret_cast<const float4*>(gr);
        float4* o4 = reinterpret_cast<float4*>(gxr);
        for (long long i = threadIdx.x; i < L4; i += blockDim.x) {
            float4 xv = x4[i], gv = g4[i];
            float xe[4] = {xv.x, xv.y, xv.z, xv.w}, ge[4] = {gv.x, gv.y, gv.z, gv.w};
#pragma unroll
            for (int t = 0; t < 4; ++t) {
                float wg = __fmul_rn(w ? w[fg_chan(c0, 4 * i + t, HW)] : 1.0f, ge[t]);
                xe[t] = rs * ((wg - ma) - kb * (xe[t] - m));
            }
            o4[i] = make_float4(xe[0], xe[1], xe[2], xe[3]);
        }
    } else {
        for (long long j = threadIdx.x; j < L; j += blockDim.x) {
            float wg = __fmul_rn(w ? w[fg_chan(c0, j, HW)] : 1.0f, gr[j]);
            gxr[j] = rs * ((wg - ma) - kb * (xr[j] - m));
        }
    }
}

// ------------------------------------------ layer_norm backward: parameter gradients
// Column partial sums over a chunk of rows: block (32, 8) covers 32 columns and
// rows [blockIdx.y * chunk, ...); out[2 * (blockIdx.y * L + j)] = (sum gy (x - mean) rstd,
// sum gy). Coalesced along the columns.
extern "C" __global__ void ln_param_partials(float* __restrict__ part, const float* __restrict__ x,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ rstd,
                                             const float* __restrict__ gy, long long R, long long L,
                                             long long chunk) {
    __shared__ float sw[8][33], sb[8][33];
    long long j = (long long)blockIdx.x * 32 + threadIdx.x;
    long long r0 = (long long)blockIdx.y * chunk;
    long long r1 = min(r0 + chunk, R);
    float aw = 0.0f, ab = 0.0f;
    if (j < L) {
        for (long long r = r0 + threadIdx.y; r < r1; r += 8) {
            float g = gy[r * L + j];
            aw += g * (x[r * L + j] - mean[r]) * rstd[r];
            ab += g;
        }
    }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && j < L) {
        float tw = 0.0f, tb = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            tw += sw[k][threadIdx.x];
            tb += sb[k][threadIdx.x];
        }
        part[2 * ((long long)blockIdx.y * L + j)] = tw;
        part[2 * ((long long)blockIdx.y * L + j) + 1] = tb;
    }
}

// gw[j], gb[j] = sums of the chunks' partials
extern "C" __global__ void ln_param_finish(float* __restrict__ gw, float* __restrict__ gb,
                                           const float* __restrict__ part, long long chunks,
                                           long long L) {
    FG_GRID_LOOP(j, L) {
        float tw = 0.0f, tb = 0.0f;
        for (long long k = 0; k < chunks; ++k) {
            tw += part[2 * (k * L + j)];
            tb += part[2 * (k * L + j) + 1];
        }
        gw[j] = tw;
        gb[j] = tb;
    }
}

// ------------------------------------------------ layer_norm backward, fused
// Persistent blocks: block p handles rows p, p + gridDim.x, ...; thread t always owns the
// same float4 columns i = t + k * blockDim (k < CACHE), so it keeps the weight and its
// columns' partial gweight / gbias in registers across rows. Per row: x and gy are read
// once (into registers), A and B are block sums, gx is written. At the end each block
// writes its partials: partw / partb[p * L + j]; ln_param_reduce sums them over p.
// Requires weight, L % 4 == 0 and L / 4 <= CACHE * blockDim (CACHE <= 4, blockDim <= 256).
template <int CACHE>
__device__ void ln_backward_fused_impl(float* __restrict__ gx, float* __restrict__ partw,
                                       float* __restrict__ partb, const float* __restrict__ x,
                                       const float* __restrict__ w,
                                       const float* __restrict__ mean,
                                       const float* __restrict__ rstd,
                                       const float* __restrict__ gy, long long R, long long L) {
    long long L4 = L >> 2;
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4 wv[CACHE], pw[CACHE], pb[CACHE];
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int k = 0; k < CACHE; ++k) {
        long long i = threadIdx.x + (long long)k * blockDim.x;
        wv[k] = i < L4 ? w4[i] : zero;
        pw[k] = zero;
        pb[k] = zero;
    }
    float inv_l = 1.0f / (float)L;
    for (long long r = blockIdx.x; r < R; r += gridDim.x) {
        const float4* x4 = reinterpret_cast<const float4*>(x + r * L);
        const float4* g4 = reinterpret_cast<const float4*>(gy + r * L);
        float4* o4 = reinterpret_cast<float4*>(gx + r * L);
        float m = mean[r], rs = rstd[r];
        float4 xc[CACHE], gc[CACHE];
        float a = 0.0f, b = 0.0f;
#pragma unroll
        for (int k = 0; k < CACHE; ++k) {
            long long i = threadIdx.x + (long long)k * blockDim.x;
            xc[k] = zero;
            gc[k] = zero;
            if (i < L4) {
                xc[k] = x4[i];
                gc[k] = g4[i];
            }
            float4 d = make_float4(xc[k].x - m, xc[k].y - m, xc[k].z - m, xc[k].w - m);
            float4 wg = make_float4(__fmul_rn(wv[k].x, gc[k].x), __fmul_rn(wv[k].y, gc[k].y),
                                    __fmul_rn(wv[k].z, gc[k].z), __fmul_rn(wv[k].w, gc[k].w));
            a += (wg.x + wg.y) + (wg.z + wg.w);
            b += (wg.x * d.x + wg.y * d.y) + (wg.z * d.z + wg.w * d.w);
            pw[k].x += gc[k].x * d.x * rs;
            pw[k].y += gc[k].y * d.y * rs;
            pw[k].z += gc[k].z * d.z * rs;
            pw[k].w += gc[k].w * d.w * rs;
            pb[k].x += gc[k].x;
            pb[k].y += gc[k].y;
            pb[k].z += gc[k].z;
            pb[k].w += gc[k].w;
        }
        float2 s = fg_block_sum2(a, b);
        float kb = rs * rs * s.y * inv_l;  // as rows_backward: subtract, then scale by rstd
        float ma = s.x * inv_l;
#pragma unroll
        for (int k = 0; k < CACHE; ++k) {
            long long i = threadIdx.x + (long long)k * blockDim.x;
            if (i < L4) {
                float4 o;
                o.x = rs * ((__fmul_rn(wv[k].x, gc[k].x) - ma) - kb * (xc[k].x - m));
                o.y = rs * ((__fmul_rn(wv[k].y, gc[k].y) - ma) - kb * (xc[k].y - m));
                o.z = rs * ((__fmul_rn(wv[k].z, gc[k].z) - ma) - kb * (xc[k].z - m));
                o.w = rs * ((__fmul_rn(wv[k].w, gc[k].w) - ma) - kb * (xc[k].w - m));
                o4[i] = o;
            }
        }
    }
    float4* pw4 = reinterpret_cast<float4*>(partw + (long long)blockIdx.x * L);
    float4* pb4 = reinterpret_cast<float4*>(partb + (long long)blockIdx.x * L);
#pragma unroll
    for (int k = 0; k < CACHE; ++k) {
        long long i = threadIdx.x + (long long)k * blockDim.x;
        if (i < L4) {
            pw4[i] = pw[k];
            pb4[i] = pb[k];
        }
    }
}

#define FG_LN_BACKWARD_FUSED(NAME, CACHE)                                                     \
    extern "C" __global__ void NAME(float* __restrict__ gx, float* __restrict__ partw,         \
                                    float* __restrict__ partb, const float* __restrict__ x,    \
                                    const float* __restrict__ w, const float* __restrict__ mean, \
                                    const float* __restrict__ rstd, const float* __restrict__ gy, \
                                    long long R, long long L) {                                \
        ln_backward_fused_impl<CACHE>(gx, partw, partb, x, w, mean, rstd, gy, R, L);           \
    }

FG_LN_BACKWARD_FUSED(ln_backward_fused_c1, 1)
FG_LN_BACKWARD_FUSED(ln_backward_fused_c2, 2)
FG_LN_BACKWARD_FUSED(ln_backward_fused_c4, 4)

// gw[j] = sum_p partw[p, j], gb[j] = sum_p partb[p, j]: block (32, 8) per 32 columns,
// the 8 rows of threads stride over p, then a shared-memory sum.
extern "C" __global__ void ln_param_reduce(float* __restrict__ gw, float* __restrict__ gb,
                                           const float* __restrict__ partw,
                                           const float* __restrict__ partb, long long P,
                                           long long L) {
    __shared__ float sw[8][33], sb[8][33];
    long long j = (long long)blockIdx.x * 32 + threadIdx.x;
    float aw = 0.0f, ab = 0.0f;
    if (j < L) {
        for (long long p = threadIdx.y; p < P; p += 8) {
            aw += partw[p * L + j];
            ab += partb[p * L + j];
        }
    }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && j < L) {
        float tw = 0.0f, tb = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            tw += sw[k][threadIdx.x];
            tb += sb[k][threadIdx.x];
        }
        gw[j] = tw;
        gb[j] = tb;
    }
}

// --------------------------------------- group_norm backward: parameter gradients
// One block per (n, c): ds = sum gy (x - mean[n, g]), db = sum gy over the HW span.
extern "C" __global__ void gn_channel_sums(float* __restrict__ sums, const float* __restrict__ x,
                                           const float* __restrict__ mean,
                                           const float* __restrict__ gy, long long C,
                                           long long Cg, long long HW) {
    long long nc = blockIdx.x;
    long long n = nc / C, c = nc % C;
    float m = mean[n * (C / Cg) + c / Cg];
    const float* xs = x + nc * HW;
    const float* gs = gy + nc * HW;
    float ds = 0.0f, db = 0.0f;
    for (long long j = threadIdx.x; j < HW; j += blockDim.x) {
        float g = gs[j];
        db += g;
        ds += g * (xs[j] - m);
    }
    float2 t = fg_block_sum2(ds, db);
    if (threadIdx.x == 0) {
        sums[2 * nc] = t.x;
        sums[2 * nc + 1] = t.y;
    }
}

// gw[c] = sum_n ds[n, c] rstd[n, g], gb[c] = sum_n db[n, c]
extern "C" __global__ void gn_param_finish(float* __restrict__ gw, float* __restrict__ gb,
                                           const float* __restrict__ sums,
                                           const float* __restrict__ rstd, long long N,
                                           long long C, long long Cg) {
    FG_GRID_LOOP(c, C) {
        float tw = 0.0f, tb = 0.0f;
        long long G = C / Cg;
        for (long long n = 0; n < N; ++n) {
            tw += sums[2 * (n * C + c)] * rstd[n * G + c / Cg];
            tb += sums[2 * (n * C + c) + 1];
        }
        gw[c] = tw;
        gb[c] = tb;
    }
}

// ------------------------------------------------------------------- batch norm
// Element e of channel c's virtual (N * HW / V) sequence of V-vectors.
__device__ __forceinline__ long long bn_offset(long long e, long long c, long long C,
                                               long long HWv) {
    long long n = e / HWv, h = e - n * HWv;
    return (n * C + c) * HWv + h;
}

// Block (c, s): Moments of the V-vectors [s * chunk, (s + 1) * chunk) of channel c;
// part[3 * (c * S + s) + {0, 1, 2}] = (n, mean, M2).
extern "C" __global__ void bn_partial_stats(float* __restrict__ part, const float* __restrict__ x,
                                            long long N, long long C, long long HW,
                                            long long chunk, int vec) {
    long long c = blockIdx.x, s = blockIdx.y;
    long long V = vec ? 4 : 1;
    long long HWv = HW / V;
    long long total = N * HWv;
    long long e0 = s * chunk, e1 = min(e0 + chunk, total);
    Moments acc = {0.0f, 0.0f, 0.0f};
    for (long long e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        long long o = bn_offset(e, c, C, HWv);
        Moments g;
        if (vec) {
            float4 v = reinterpret_cast<const float4*>(x)[o];
            float mm = ((v.x + v.y) + (v.z + v.w)) * 0.25f;
            float a0 = v.x - mm, a1 = v.y - mm, a2 = v.z - mm, a3 = v.w - mm;
            g.n = 4.0f;
            g.mean = mm;
            g.m2 = (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3);
        } else {
            g.n = 1.0f;
            g.mean = x[o];
            g.m2 = 0.0f;
        }
        acc = fg_merge(acc, g);
    }
    acc = fg_block_merge(acc);
    if (threadIdx.x == 0) {
        long long p = 3 * (c * gridDim.y + s);
        part[p] = acc.n;
        part[p + 1] = acc.mean;
        part[p + 2] = acc.m2;
    }
}

// One thread per channel: merge the S partials, write mean and rstd, update the running
// statistics in place (momentum, unbiased variance) when given.
extern "C" __global__ void bn_finish_stats(float* __restrict__ mean, float* __restrict__ rstd,
                                           float* __restrict__ run_mean, float* __restrict__ run_var,
                                           const float* __restrict__ part, long long C, long long S,
                                           float momentum, float eps) {
    FG_GRID_LOOP(c, C) {
        Moments acc = {0.0f, 0.0f, 0.0f};
        for (long long s = 0; s < S; ++s) {
            const float* p = part + 3 * (c * S + s);
            Moments b = {p[0], p[1], p[2]};
            acc = fg_merge(acc, b);
        }
        float var = acc.n > 0.0f ? fmaxf(acc.m2 / acc.n, 0.0f) : 0.0f;
        mean[c] = acc.mean;
        rstd[c] = rsqrtf(var + eps);
        if (run_mean) {
            float unbiased = acc.n > 1.0f ? acc.m2 / (acc.n - 1.0f) : var;
            run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * acc.mean;
            run_var[c] = (1.0f - momentum) * run_var[c] + momentum * unbiased;
        }
    }
}

// eval: mean = running_mean, rstd = 1 / sqrt(running_var + eps)
extern "C" __global__ void bn_eval_stats(float* __restrict__ mean, float* __restrict__ rstd,
                                         const float* __restrict__ run_mean,
                                         const float* __restrict__ run_var, long long C, float eps) {
    FG_GRID_LOOP(c, C) {
        mean[c] = run_mean[c];
        rstd[c] = rsqrtf(run_var[c] + eps);
    }
}

// y = (x - mean[c]) * rstd[c] * w[c] + b[c] over every V-vector (grid-stride)
extern "C" __global__ void bn_apply(float* __restrict__ y, const float* __restrict__ x,
                                    const float* __restrict__ mean, const float* __restrict__ rstd,
                                    const float* __restrict__ w, const float* __restrict__ b,
                                    long long total_v, long long C, long long HWv, int vec) {
    FG_GRID_LOOP(i, total_v) {
        long long c = (i / HWv) % C;
        float m = mean[c];
        float sc = w ? w[c] * rstd[c] : rstd[c];
        float sh = b ? b[c] : 0.0f;
        if (vec) {
            float4 v = reinterpret_cast<const float4*>(x)[i];
            v.x = (v.x - m) * sc + sh;
            v.y = (v.y - m) * sc + sh;
            v.z = (v.z - m) * sc + sh;
            v.w = (v.w - m) * sc + sh;
            reinterpret_cast<float4*>(y)[i] = v;
        } else {
            y[i] = (x[i] - m) * sc + sh;
        }
    }
}

// Block (c, s): part[2 * (c * S + s)] = (sum gy, sum gy (x - mean[c])) over its chunk.
extern "C" __global__ void bn_partial_grads(float* __restrict__ part, const float* __restrict__ x,
                                            const float* __restrict__ gy,
                                            const float* __restrict__ mean, long long N,
                                            long long C, long long HW, long long chunk, int vec) {
    long long c = blockIdx.x, s = blockIdx.y;
    long long V = vec ? 4 : 1;
    long long HWv = HW / V;
    long long total = N * HWv;
    long long e0 = s * chunk, e1 = min(e0 + chunk, total);
    float m = mean[c];
    float db = 0.0f, ds = 0.0f;
    for (long long e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        long long o = bn_offset(e, c, C, HWv);
        if (vec) {
            float4 xv = reinterpret_cast<const float4*>(x)[o];
            float4 gv = reinterpret_cast<const float4*>(gy)[o];
            db += (gv.x + gv.y) + (gv.z + gv.w);
            ds += (gv.x * (xv.x - m) + gv.y * (xv.y - m)) + (gv.z * (xv.z - m) + gv.w * (xv.w - m));
        } else {
            float g = gy[o];
            db += g;
            ds += g * (x[o] - m);
        }
    }
    float2 t = fg_block_sum2(db, ds);
    if (threadIdx.x == 0) {
        long long p = 2 * (c * gridDim.y + s);
        part[p] = t.x;
        part[p + 1] = t.y;
    }
}

// One thread per channel: coef[3c..] = (k0, k1, k2) with gx = k0 gy + k1 (x - mean) + k2;
// gw, gb when given.
extern "C" __global__ void bn_finish_grads(float* __restrict__ coef, float* __restrict__ gw,
                                           float* __restrict__ gb, const float* __restrict__ part,
                                           const float* __restrict__ w,
                                           const float* __restrict__ rstd, long long C, long long S,
                                           float inv_count, int training) {
    FG_GRID_LOOP(c, C) {
        float db = 0.0f, ds = 0.0f;
        for (long long s = 0; s < S; ++s) {
            db += part[2 * (c * S + s)];
            ds += part[2 * (c * S + s) + 1];
        }
        float rs = rstd[c];
        float ws = (w ? w[c] : 1.0f) * rs;
        coef[3 * c] = ws;
        coef[3 * c + 1] = training ? -ws * rs * rs * ds * inv_count : 0.0f;
        coef[3 * c + 2] = training ? -ws * db * inv_count : 0.0f;
        if (gw) {
            gw[c] = ds * rs;
            gb[c] = db;
        }
    }
}

// gx = k0 gy + k1 (x - mean) + k2 over every V-vector
extern "C" __global__ void bn_backward_apply(float* __restrict__ gx, const float* __restrict__ x,
                                             const float* __restrict__ gy,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ coef, long long total_v,
                                             long long C, long long HWv, int vec) {
    FG_GRID_LOOP(i, total_v) {
        long long c = (i / HWv) % C;
        float m = mean[c], k0 = coef[3 * c], k1 = coef[3 * c + 1], k2 = coef[3 * c + 2];
        if (vec) {
            float4 xv = reinterpret_cast<const float4*>(x)[i];
            float4 gv = reinterpret_cast<const float4*>(gy)[i];
            float4 o;
            o.x = k0 * gv.x + k1 * (xv.x - m) + k2;
            o.y = k0 * gv.y + k1 * (xv.y - m) + k2;
            o.z = k0 * gv.z + k1 * (xv.z - m) + k2;
            o.w = k0 * gv.w + k1 * (xv.w - m) + k2;
            reinterpret_cast<float4*>(gx)[i] = o;
        } else {
            gx[i] = k0 * gy[i] + k1 * (x[i] - m) + k2;
        }
    }
}
