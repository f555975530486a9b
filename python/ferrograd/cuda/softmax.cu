// softmax / log_softmax over rows of length cols, one block per row (block reductions
// for the max and the sum of exponentials), and their backward formulas.
#include "common.cuh"

extern "C" __global__ void softmax_forward(float* y, const float* x, long long cols, int log_mode) {
    const float* xr = x + (long long)blockIdx.x * cols;
    float* yr = y + (long long)blockIdx.x * cols;
    float m = FG_NEG_INF;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = xr[j];
        m = (v > m || v != v) ? v : m;
    }
    m = fg_block_max(m);
    float s = 0.0f;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += expf(xr[j] - m);
    s = fg_block_sum(s);
    if (log_mode) {
        float lse = m + logf(s);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] - lse;
    } else {
        float inv = 1.0f / s;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - m) * inv;
    }
}

// softmax: gx = y (gy - sum(gy y)); log_softmax: gx = gy - exp(y) sum(gy)
extern "C" __global__ void softmax_backward(float* gx, const float* y, const float* gy,
                                           long long cols, int log_mode) {
    long long base = (long long)blockIdx.x * cols;
    float s = 0.0f;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x)
        s += log_mode ? gy[base + j] : gy[base + j] * y[base + j];
    s = fg_block_sum(s);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
        float yv = y[base + j], g = gy[base + j];
        gx[base + j] = log_mode ? g - expf(yv) * s : yv * (g - s);
    }
}
