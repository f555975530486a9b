// Optimizer steps in place, with torch.optim's rules (see the kernel contract).
#include "common.cuh"

extern "C" __global__ void sgd_step(float* p, const float* g, float* buf, long long n, float lr,
                                    float momentum, float dampening, float weight_decay,
                                    int nesterov, int first_step) {
    FG_GRID_LOOP(i, n) {
        float d = g[i] + weight_decay * p[i];
        if (buf) {
            float b = first_step ? d : momentum * buf[i] + (1.0f - dampening) * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}

// decay_param = 1 - lr*wd for AdamW (else 1); decay_grad = wd for Adam (else 0)
extern "C" __global__ void adam_step(float* p, const float* g, float* m, float* v, long long n,
                                     float step_size, float beta1, float beta2, float eps,
                                     float inv_bias2, float decay_param, float decay_grad) {
    FG_GRID_LOOP(i, n) {
        float w = p[i] * decay_param;
        float gi = g[i] + decay_grad * w;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = w - step_size * mi / (sqrtf(vi * inv_bias2) + eps);
    }
}
