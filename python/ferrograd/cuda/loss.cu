// Losses: the elementwise parts of MSE and cross-entropy (reductions use sum_rows).
// A reduced loss's upstream gradient stays on the GPU: kernels read gy[0].
#include "common.cuh"

extern "C" __global__ void mse_elements(float* out, const float* x, const float* t, long long n) {
    FG_GRID_LOOP(i, n) {
        float d = x[i] - t[i];
        out[i] = d * d;
    }
}

// gx = scale * (x - t) * (per_element ? gy[i] : gy[0])
extern "C" __global__ void mse_backward(float* gx, const float* x, const float* t, const float* gy,
                                        long long n, float scale, int per_element) {
    FG_GRID_LOOP(i, n) gx[i] = scale * (x[i] - t[i]) * (per_element ? gy[i] : gy[0]);
}

// out[i] = -logp[i, target[i]]
extern "C" __global__ void nll_gather(float* out, const float* logp, const long long* target,
                                      long long n, long long c) {
    FG_GRID_LOOP(i, n) out[i] = -logp[i * c + target[i]];
}

// in place on g = softmax(logits): (g - onehot) * s_i, s_i = gy[i] (mode 0, 'none'),
// gy[0] (mode 1, 'sum') or gy[0] / n (mode 2, 'mean')
extern "C" __global__ void cross_entropy_backward(float* g, const long long* target, const float* gy,
                                                  long long n, long long c, int mode) {
    FG_GRID_LOOP(idx, n * c) {
        long long i = idx / c, j = idx % c;
        float s = mode == 0 ? gy[i] : (mode == 1 ? gy[0] : gy[0] / (float)n);
        float v = g[idx] - (j == target[i] ? 1.0f : 0.0f);
        g[idx] = v * s;
    }
}
