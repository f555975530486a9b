// Shared helpers for ferrograd's CUDA kernels (float32; sizes as long long so tensors
// past 2^31 elements work). Included by every <family>.cu.
#pragma once

#define FG_THREADS 256
// -inf without math.h (NVRTC has none)
#define FG_NEG_INF (__int_as_float(0xff800000))

// grid-stride loop over [0, n)
#define FG_GRID_LOOP(i, n)                                                       \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ float fg_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float fg_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        // NaN wins so that a NaN anywhere in a row makes the row NaN
        v = (w > v || w != w) ? w : v;
    }
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float fg_block_sum(float v) {
    __shared__ float partial[32];
    __shared__ float total;
    v = fg_warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < (blockDim.x >> 5) ? partial[lane] : 0.0f;
        w = fg_warp_sum(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    return total;
}

__device__ __forceinline__ float fg_block_max(float v) {
    __shared__ float partial[32];
    __shared__ float total;
    v = fg_warp_max(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < (blockDim.x >> 5) ? partial[lane] : FG_NEG_INF;
        w = fg_warp_max(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    return total;
}

// sigmoid without overflow trouble: expf(-x) -> inf gives the right limit 0
__device__ __forceinline__ float fg_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
