// 2-D pooling over (planes, H, W) float32 inputs, driven by window tables (see
// ferrograd/backends/_pool.py): output (r, c) of a plane reads rows start_h[r] + i*step_h,
// i < count_h[r], and cols start_w[c] + j*step_w, j < count_w[c], skipping positions
// outside the input (padding).
//
// tab (int64): start_h[OH] count_h[OH] factor_h[OH] start_w[OW] count_w[OW] factor_w[OW]
// inv (int64): lo_h[H] hi_h[H] lo_w[W] hi_w[W], the outputs whose window span covers an
//              input row / col (backward gathers over them: no atomics, deterministic).
//
// Forward kernels: one thread per output (small windows) or one warp per output (large
// windows, e.g. global pooling). grid.y runs over planes, grid.x over a plane's outputs;
// a plane has fewer than 2^31 elements (checked on the host), indices within it are int.
//
// Max rule (PyTorch's): take an element when it is the window's first valid one, larger
// than the max so far, or NaN; the index is h * W + w in the plane (-1: no valid element).
#include "common.cuh"

struct PoolTab {
    const long long* sh;
    const long long* ch;
    const long long* fh;
    const long long* sw;
    const long long* cw;
    const long long* fw;
};

__device__ __forceinline__ PoolTab pool_tab(const long long* tab, int OH, int OW) {
    PoolTab t;
    t.sh = tab;
    t.ch = tab + OH;
    t.fh = tab + 2 * OH;
    t.sw = tab + 3 * OH;
    t.cw = tab + 3 * OH + OW;
    t.fw = tab + 3 * OH + 2 * OW;
    return t;
}

__device__ __forceinline__ float pool_divisor(const PoolTab& t, int r, int c, long long divisor) {
    long long d = divisor != 0 ? divisor : t.fh[r] * t.fw[c];
    return (float)d;
}

// max rule on (value, index) pairs; combines two partial results of one window scanned
// in index order (b after a when both valid): NaN with the larger index, else the larger
// value, ties to the smaller index, -1 (nothing yet) loses to anything.
__device__ __forceinline__ void max_combine(float& m, int& mi, float v, int vi) {
    if (vi < 0) return;
    if (mi < 0) { m = v; mi = vi; return; }
    bool mn = m != m, vn = v != v;
    if (vn || mn) {
        if (vn && (!mn || vi > mi)) { m = v; mi = vi; }
        return;
    }
    if (v > m || (v == m && vi < mi)) { m = v; mi = vi; }
}

extern "C" __global__ void pool_max_forward(float* __restrict__ y, long long* __restrict__ idx,
                                            const float* __restrict__ x, long long planes, int H, int W,
                                            int OH, int OW, const long long* __restrict__ tab,
                                            int step_h, int step_w) {
    PoolTab t = pool_tab(tab, OH, OW);
    int ohw = OH * OW;
    for (long long p = blockIdx.y; p < planes; p += gridDim.y) {
        const float* xp = x + p * (long long)H * W;
        for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < ohw; o += gridDim.x * blockDim.x) {
            int r = o / OW, c = o - r * OW;
            int h0 = (int)t.sh[r], nh = (int)t.ch[r], w0 = (int)t.sw[c], nw = (int)t.cw[c];
            float m = FG_NEG_INF;
            int mi = -1;
            for (int i = 0; i < nh; ++i) {
                int hh = h0 + i * step_h;
                if (hh < 0 || hh >= H) continue;
                const float* row = xp + (long long)hh * W;
                for (int j = 0; j < nw; ++j) {
                    int ww = w0 + j * step_w;
                    if (ww < 0 || ww >= W) continue;
                    float v = __ldg(row + ww);
                    if (mi < 0 || v > m || v != v) { m = v; mi = hh * W + ww; }
                }
            }
            long long oi = p * ohw + o;
            y[oi] = m;
            if (idx) idx[oi] = mi;
        }
    }
}

extern "C" __global__ void pool_avg_forward(float* __restrict__ y, const float* __restrict__ x,
                                            long long planes, int H, int W, int OH, int OW,
                                            const long long* __restrict__ tab, long long divisor) {
    PoolTab t = pool_tab(tab, OH, OW);
    int ohw = OH * OW;
    for (long long p = blockIdx.y; p < planes; p += gridDim.y) {
        const float* xp = x + p * (long long)H * W;
        for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < ohw; o += gridDim.x * blockDim.x) {
            int r = o / OW, c = o - r * OW;
            int h0 = (int)t.sh[r], nh = (int)t.ch[r], w0 = (int)t.sw[c], nw = (int)t.cw[c];
            float s = 0.0f;
            for (int i = 0; i < nh; ++i) {
                int hh = h0 + i;
                if (hh < 0 || hh >= H) continue;
                const float* row = xp + (long long)hh * W;
                for (int j = 0; j < nw; ++j) {
                    int ww = w0 + j;
                    if (ww < 0 || ww >= W) continue;
                    s += __ldg(row + ww);
                }
            }
            float d = pool_divisor(t, r, c, divisor);
            y[p * ohw + o] = d == 0.0f ? 0.0f : s / d;
        }
    }
}

// One warp per output (large windows): lanes stride over the window's elements.
extern "C" __global__ void pool_max_forward_warp(float* __restrict__ y, long long* __restrict__ idx,
                                                 const float* __restrict__ x, long long planes, int H,
                                                 int W, int OH, int OW, const long long* __restrict__ tab,
                                                 int step_h, int step_w) {
    PoolTab t = pool_tab(tab, OH, OW);
    long long ohw = (long long)OH * OW, total = planes * ohw;
    int lane = threadIdx.x & 31;
    long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long o = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; o < total; o += warps) {
        long long p = o / ohw;
        int q = (int)(o - p * ohw), r = q / OW, c = q - r * OW;
        int h0 = (int)t.sh[r], nh = (int)t.ch[r], w0 = (int)t.sw[c], nw = (int)t.cw[c];
        const float* xp = x + p * (long long)H * W;
        float m = FG_NEG_INF;
        int mi = -1;
        for (int e = lane; e < nh * nw; e += 32) {
            int i = e / nw, j = e - i * nw;
            int hh = h0 + i * step_h, ww = w0 + j * step_w;
            if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
            float v = __ldg(xp + (long long)hh * W + ww);
            max_combine(m, mi, v, hh * W + ww);
        }
        for (int off = 16; off > 0; off >>= 1) {
            float v = __shfl_xor_sync(0xffffffffu, m, off);
            int vi = __shfl_xor_sync(0xffffffffu, mi, off);
            max_combine(m, mi, v, vi);
        }
        if (lane == 0) {
            y[o] = m;
            if (idx) idx[o] = mi;
        }
    }
}

extern "C" __global__ void pool_avg_forward_warp(float* __restrict__ y, const float* __restrict__ x,
                                                 long long planes, int H, int W, int OH, int OW,
                                                 const long long* __restrict__ tab, long long divisor) {
    PoolTab t = pool_tab(tab, OH, OW);
    long long ohw = (long long)OH * OW, total = planes * ohw;
    int lane = threadIdx.x & 31;
    long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long o = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; o < total; o += warps) {
        long long p = o / ohw;
        int q = (int)(o - p * ohw), r = q / OW, c = q - r * OW;
        int h0 = (int)t.sh[r], nh = (int)t.ch[r], w0 = (int)t.sw[c], nw = (int)t.cw[c];
        const float* xp = x + p * (long long)H * W;
        float s = 0.0f;
        for (int e = lane; e < nh * nw; e += 32) {
            int i = e / nw, j = e - i * nw;
            int hh = h0 + i, ww = w0 + j;
            if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
            s += __ldg(xp + (long long)hh * W + ww);
        }
        s = fg_warp_sum(s);
        if (lane == 0) {
            float d = pool_divisor(t, r, c, divisor);
            y[o] = d == 0.0f ? 0.0f : s / d;
        }
    }
}

// One block per output (very large windows, e.g. global pooling of big planes).
extern "C" __global__ void pool_max_forward_block(float* __restrict__ y, long long* __restrict__ idx,
                                                  const float* __restrict__ x, long long planes, int H,
                                                  int W, int OH, int OW, const long long* __restrict__ tab,
                                                  int step_h, int step_w) {
    __shared__ float sm[32];
    __shared__ int si[32];
    PoolTab t = pool_tab(tab, OH, OW);
    long long ohw = (long long)OH * OW, total = planes * ohw;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (long long o = blockIdx.x; o < total; o += gridDim.x) {
        long long p = o / ohw;
        int q = (int)(o - p * ohw), r = q / OW, c = q - r * OW;
        int h0 = (int)t.sh[r], nh = (int)t.ch[r], w0 = (int)t.sw[c], nw = (int)t.cw[c];
        const float* xp = x + p * (long long)H * W;
        float m = FG_NEG_INF;
        int mi = -1;
        for (int e = threadIdx.x; e < nh * nw; e += blockDim.x) {
            int i = e / nw, j = e - i * nw;
            int hh = h0 + i * step_h, ww = w0 + j * step_w;
            if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
            max_combine(m, mi, __ldg(xp + (long long)hh * W + ww), hh * W + ww);
        }
        for (int off = 16; off > 0; off >>= 1) {
            float v = __shfl_xor_sync(0xffffffffu, m, off);
            int vi = __shfl_xor_sync(0xffffffffu, mi, off);
            max_combine(m, mi, v, vi);
        }
        __syncthreads();  // sm/si may still be read for the previous output
        if (lane == 0) { sm[warp] = m; si[warp] = mi; }
        __syncthreads();
        if (warp == 0) {
            m = lane < nwarps ? sm[lane] : FG_NEG_INF;
            mi = lane < nwarps ? si[lane] : -1;
            for (int off = 16; off > 0; off >>= 1) {
                float v = __shfl_xor_sync(0xffffffffu, m, off);
                int vi = __shfl_xor_sync(0xffffffffu, mi, off);
                max_combine(m, mi, v, vi);
            }
            if (lane == 0) {
                y[o] = m;
                if (idx) idx[o] = mi;
            }
        }
    }
}

extern "C" __global__ void pool_avg_forward_block(float* __restrict__ y, const float* __restrict__ x,
                                                  long long planes, int H, int W, int OH, int OW,
                                                  const long long* __restrict__ tab, long long divisor) {
    PoolTab t = pool_tab(tab, OH, OW);
    long long ohw = (long long)OH * OW, total = planes * ohw;
    for (long long o = blockIdx.x; o < total; o += gridDim.x) {
        long long p = o / ohw;
        int q = (int)(o - p * ohw), r = q / OW, c = q - r * OW;
        int h0 = (int)t.sh[r], nh = (int)t.ch[r], w0 = (int)t.sw[c], nw = (int)t.cw[c];
        const float* xp = x + p * (long long)H * W;
        float s = 0.0f;
        for (int e = threadIdx.x; e < nh * nw; e += blockDim.x) {
            int i = e / nw, j = e - i * nw;
            int hh = h0 + i, ww = w0 + j;
            if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
            s += __ldg(xp + (long long)hh * W + ww);
        }
        s = fg_block_sum(s);
        if (threadIdx.x == 0) {
            float d = pool_divisor(t, r, c, divisor);
            y[o] = d == 0.0f ? 0.0f : s / d;
        }
    }
}

// Fast path for the commonest layer, 2x2 windows with stride 2 and no padding over even
// H and W (every input in exactly one window): a thread per output, float2 loads of the
// window's two rows (W even keeps them 8-byte aligned). Same rules and summation order
// as the generic kernels. mode 0: max (indices when idx is not null), 1: average.
template <typename I>
__device__ __forceinline__ void pool2x2_forward_impl(float* __restrict__ y, long long* __restrict__ idx,
                                                     const float* __restrict__ x, I n_out, I W, I OH,
                                                     I OW, int mode, float divisor) {
    for (I o = (I)blockIdx.x * blockDim.x + threadIdx.x; o < n_out; o += (I)gridDim.x * blockDim.x) {
        I q = o / OW, c = o - q * OW;  // q = plane * OH + r; the window's top row is 2q
        I top = 2 * q * W + 2 * c;
        float2 a = __ldg(reinterpret_cast<const float2*>(x + top));
        float2 b = __ldg(reinterpret_cast<const float2*>(x + top + W));
        if (mode == 0) {
            float m = a.x;
            int k = 0;
            if (a.y > m || a.y != a.y) { m = a.y; k = 1; }
            if (b.x > m || b.x != b.x) { m = b.x; k = 2; }
            if (b.y > m || b.y != b.y) { m = b.y; k = 3; }
            y[o] = m;
            if (idx) {
                I r = q % OH;
                idx[o] = (long long)(2 * r + (k >> 1)) * (long long)W + 2 * c + (k & 1);
            }
        } else {
            float s = a.x;
            s += a.y;
            s += b.x;
            s += b.y;
            y[o] = s / divisor;
        }
    }
}

extern "C" __global__ void pool2x2_forward(float* __restrict__ y, long long* __restrict__ idx,
                                           const float* __restrict__ x, long long n_out, int W, int OH,
                                           int OW, int mode, float divisor) {
    if (4 * n_out < 2147483647LL)
        pool2x2_forward_impl<unsigned int>(y, idx, x, (unsigned int)n_out, W, OH, OW, mode, divisor);
    else
        pool2x2_forward_impl<long long>(y, idx, x, n_out, W, OH, OW, mode, divisor);
}

// Backward of the fast path: a thread per output writes its 2x2 block of gx (float2
// stores): max routes gy to the recorded index, average spreads gy / divisor.
template <typename I>
__device__ __forceinline__ void pool2x2_backward_impl(float* __restrict__ gx, const float* __restrict__ gy,
                                                      const long long* __restrict__ idx, I n_out, I W,
                                                      I OH, I OW, int mode, float divisor) {
    for (I o = (I)blockIdx.x * blockDim.x + threadIdx.x; o < n_out; o += (I)gridDim.x * blockDim.x) {
        I q = o / OW, c = o - q * OW;
        I top = 2 * q * W + 2 * c;
        float g = __ldg(gy + o);
        float2 a, b;
        if (mode == 0) {
            I r = q % OH;
            long long k = __ldg(idx + o) - ((long long)(2 * r) * (long long)W + 2 * c);
            // k is 0, 1, W or W + 1 for an index inside the window
            a = make_float2(k == 0 ? g : 0.0f, k == 1 ? g : 0.0f);
            b = make_float2(k == (long long)W ? g : 0.0f, k == (long long)W + 1 ? g : 0.0f);
        } else {
            float v = g / divisor;
            a = make_float2(v, v);
            b = a;
        }
        reinterpret_cast<float2*>(gx + top)[0] = a;
        reinterpret_cast<float2*>(gx + top + W)[0] = b;
    }
}

extern "C" __global__ void pool2x2_backward(float* __restrict__ gx, const float* __restrict__ gy,
                                            const long long* __restrict__ idx, long long n_out, int W,
                                            int OH, int OW, int mode, float divisor) {
    if (4 * n_out < 2147483647LL)
        pool2x2_backward_impl<unsigned int>(gx, gy, idx, (unsigned int)n_out, W, OH, OW, mode, divisor);
    else
        pool2x2_backward_impl<long long>(gx, gy, idx, n_out, W, OH, OW, mode, divisor);
}

// Backward, one thread per input element: gather the gradients of the outputs whose
// windows cover it.
extern "C" __global__ void pool_max_backward(float* __restrict__ gx, const float* __restrict__ gy,
                                             const long long* __restrict__ idx, long long planes,
                                             int H, int W, int OH, int OW,
                                             const long long* __restrict__ inv) {
    const long long *lo_h = inv, *hi_h = inv + H, *lo_w = inv + 2 * H, *hi_w = inv + 2 * H + W;
    int hw = H * W;
    long long ohw = (long long)OH * OW;
    for (long long p = blockIdx.y; p < planes; p += gridDim.y) {
        const float* gp = gy + p * ohw;
        const long long* ip = idx + p * ohw;
        for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < hw; e += gridDim.x * blockDim.x) {
            int hh = e / W, ww = e - hh * W;
            int r1 = (int)hi_h[hh], c0 = (int)lo_w[ww], c1 = (int)hi_w[ww];
            float acc = 0.0f;
            for (int r = (int)lo_h[hh]; r < r1; ++r)
                for (int c = c0; c < c1; ++c) {
                    int o = r * OW + c;
                    if (__ldg(ip + o) == e) acc += __ldg(gp + o);
                }
            gx[p * hw + e] = acc;
        }
    }
}

extern "C" __global__ void pool_avg_backward(float* __restrict__ gx, const float* __restrict__ gy,
                                             long long planes, int H, int W, int OH, int OW,
                                             const long long* __restrict__ tab,
                                             const long long* __restrict__ inv, long long divisor) {
    PoolTab t = pool_tab(tab, OH, OW);
    const long long *lo_h = inv, *hi_h = inv + H, *lo_w = inv + 2 * H, *hi_w = inv + 2 * H + W;
    int hw = H * W;
    long long ohw = (long long)OH * OW;
    for (long long p = blockIdx.y; p < planes; p += gridDim.y) {
        const float* gp = gy + p * ohw;
        for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < hw; e += gridDim.x * blockDim.x) {
            int hh = e / W, ww = e - hh * W;
            int r1 = (int)hi_h[hh], c0 = (int)lo_w[ww], c1 = (int)hi_w[ww];
            float acc = 0.0f;
            for (int r = (int)lo_h[hh]; r < r1; ++r)
                for (int c = c0; c < c1; ++c) {
                    float d = pool_divisor(t, r, c, divisor);
                    if (d != 0.0f) acc += __ldg(gp + r * OW + c) / d;
                }
            gx[p * hw + e] = acc;
        }
    }
}
