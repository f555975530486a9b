// Dropout and DropBlock from the stream shared by every backend: Philox4x32-10 with
// key (lo32(seed), hi32(seed)); element i of a call with offset o takes word i % 4 of
// philox(ctr = (lo32(i / 4), hi32(i / 4), lo32(o), hi32(o)), key). An element is dropped
// when (word >> 8) < threshold = ceil(p * 2^24) (computed on the host). The mapping from
// element to counter is pure, so the launch configuration never changes a mask.
#include "common.cuh"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

__device__ __forceinline__ uint4 philox_round(uint4 c, unsigned int k0, unsigned int k1) {
    unsigned int hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
    unsigned int hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
    return make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
}

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, unsigned int k0, unsigned int k1) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        c = philox_round(c, k0, k1);
    }
    return c;
}

__device__ __forceinline__ uint4 block_words(unsigned long long b, unsigned int off_lo, unsigned int off_hi,
                                             unsigned int k0, unsigned int k1) {
    return philox4x32_10(make_uint4((unsigned int)b, (unsigned int)(b >> 32), off_lo, off_hi), k0, k1);
}

extern "C" __global__ void philox_words(unsigned int* __restrict__ out, long long n_blocks,
                                        unsigned long long first, unsigned int k0, unsigned int k1,
                                        unsigned int off_lo, unsigned int off_hi) {
    FG_GRID_LOOP(i, n_blocks) {
        uint4 w = block_words(first + (unsigned long long)i, off_lo, off_hi, k0, k1);
        reinterpret_cast<uint4*>(out)[i] = w;
    }
}

__device__ __forceinline__ float keep_mul(unsigned int w, unsigned int threshold, float scale) {
    return (w >> 8) >= threshold ? scale : 0.0f;
}

// y = x * m (m = scale where kept, 0 where dropped): dropout forward on x, backward on gy.
// One Philox call per 4 elements, float4 loads and stores when the pointers allow.
extern "C" __global__ void dropout_apply(float* __restrict__ y, const float* __restrict__ x, long long n,
                                         unsigned int k0, unsigned int k1, unsigned int off_lo,
                                         unsigned int off_hi, unsigned int threshold, float scale) {
    bool aligned = ((((unsigned long long)x) | ((unsigned long long)y)) & 15) == 0;
    long long nb = (n + 3) / 4;
    FG_GRID_LOOP(b, nb) {
        uint4 w = block_words((unsigned long long)b, off_lo, off_hi, k0, k1);
        float m0 = keep_mul(w.x, threshold, scale), m1 = keep_mul(w.y, threshold, scale);
        float m2 = keep_mul(w.z, threshold, scale), m3 = keep_mul(w.w, threshold, scale);
        long long i = b * 4;
        if (aligned && i + 3 < n) {
            float4 v = __ldg(reinterpret_cast<const float4*>(x) + b);
            reinterpret_cast<float4*>(y)[b] = make_float4(v.x * m0, v.y * m1, v.z * m2, v.w * m3);
        } else {
            float m[4] = {m0, m1, m2, m3};
            for (int k = 0; k < 4 && i + k < n; ++k) y[i + k] = x[i + k] * m[k];
        }
    }
}

// DropBlock, step 1: seeds[e] = 1 where element e = (plane, i, j) may start a block
// (i <= H - b, j <= W - b) and the stream drops it with probability gamma.
extern "C" __global__ void dropblock_seeds(unsigned char* __restrict__ seeds, long long n, int H, int W,
                                           int b, unsigned int k0, unsigned int k1, unsigned int off_lo,
                                           unsigned int off_hi, unsigned int threshold) {
    long long hw = (long long)H * W;
    FG_GRID_LOOP(e, n) {
        long long q = e % hw;
        int i = (int)(q / W), j = (int)(q - (long long)i * W);
        unsigned char s = 0;
        if (i <= H - b && j <= W - b) {
            uint4 w = block_words((unsigned long long)e >> 2, off_lo, off_hi, k0, k1);
            int k = (int)(e & 3);
            unsigned int word = k == 0 ? w.x : (k == 1 ? w.y : (k == 2 ? w.z : w.w));
            s = (word >> 8) < threshold;
        }
        seeds[e] = s;
    }
}

// Step 2: m[e] = 1 unless a seed in the b x b window ending at e drops it; counts the
// kept elements (one atomic per block).
extern "C" __global__ void dropblock_keep(float* __restrict__ m, unsigned long long* __restrict__ kept,
                                          const unsigned char* __restrict__ seeds, long long n, int H,
                                          int W, int b) {
    long long hw = (long long)H * W;
    unsigned long long mine = 0;
    FG_GRID_LOOP(e, n) {
        long long q = e % hw, base = e - q;
        int i = (int)(q / W), j = (int)(q - (long long)i * W);
        bool dropped = false;
        for (int r = max(0, i - b + 1); r <= i && !dropped; ++r)
            for (int c = max(0, j - b + 1); c <= j; ++c)
                if (seeds[base + (long long)r * W + c]) { dropped = true; break; }
        m[e] = dropped ? 0.0f : 1.0f;
        mine += dropped ? 0 : 1;
    }
    // block total of the kept counts, then one atomic
    __shared__ unsigned long long partial[32];
    for (int o = 16; o > 0; o >>= 1) mine += __shfl_xor_sync(0xffffffffu, mine, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = mine;
    __syncthreads();
    if (warp == 0) {
        unsigned long long v = lane < (blockDim.x >> 5) ? partial[lane] : 0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0 && v) atomicAdd(kept, v);
    }
}

// Step 3: m *= n / kept (0 when nothing is kept), the scale computed as numpy does:
// the float64 quotient rounded to float32.
extern "C" __global__ void dropblock_scale(float* __restrict__ m, long long n,
                                           const unsigned long long* __restrict__ kept) {
    unsigned long long k = *kept;
    float s = k ? (float)((double)n / (double)k) : 0.0f;
    FG_GRID_LOOP(e, n) m[e] *= s;
}
