// Recurrent layers: the fused pointwise kernels of one LSTM / GRU time step (forward and
// backward). The GEMMs (the input projection of the whole sequence, the per-step hidden
// projection with all gates fused, the weight gradients) run on linear.cu's gemm; each
// step is one GEMM plus one launch of the kernels below, one thread per (row, unit).
// Gate order is PyTorch's: LSTM i, f, g, o; GRU r, z, n (b_hn inside the reset product).
#include "common.cuh"

__device__ __forceinline__ float rnn_sigmoid(float a) {
    // exp of a non-positive number never overflows
    float e = expf(-fabsf(a));
    return a >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

// xp: (N, 4H) input projection of this step with both biases; hp: (N, 4H) h_prev @ w_hh^T;
// c_prev: (N, H). Writes gates (N, 4H) = [i, f, g, o], c and h (N, H).
extern "C" __global__ void lstm_step_forward(const float* __restrict__ xp,
                                             const float* __restrict__ hp,
                                             const float* __restrict__ c_prev,
                                             float* __restrict__ gates, float* __restrict__ c,
                                             float* __restrict__ h, long long n, int hs) {
    FG_GRID_LOOP(idx, n * hs) {
        long long row = idx / hs;
        int j = (int)(idx - row * hs);
        long long g0 = row * 4 * hs + j;
        float ig = rnn_sigmoid(xp[g0] + hp[g0]);
        float fg = rnn_sigmoid(xp[g0 + hs] + hp[g0 + hs]);
        float gg = tanhf(xp[g0 + 2 * hs] + hp[g0 + 2 * hs]);
        float og = rnn_sigmoid(xp[g0 + 3 * hs] + hp[g0 + 3 * hs]);
        float cv = fg * c_prev[idx] + ig * gg;
        gates[g0] = ig;
        gates[g0 + hs] = fg;
        gates[g0 + 2 * hs] = gg;
        gates[g0 + 3 * hs] = og;
        c[idx] = cv;
        h[idx] = og * tanhf(cv);
    }
}

// dh: (N, H) gradient reaching h_t through the recurrence (G_{t+1} @ w_hh, or gh_n);
// gy: (N, H) gradient of the output y_t; dc: (N, H) carried cell gradient, updated in place
// to the gradient of c_{t-1}. Writes g_pre (N, 4H), the gradients of the gate
// pre-activations.
extern "C" __global__ void lstm_step_backward(const float* __restrict__ gates,
                                              const float* __restrict__ c,
                                              const float* __restrict__ c_prev,
                                              const float* __restrict__ dh,
                                              const float* __restrict__ gy,
                                              float* __restrict__ dc,
                                              float* __restrict__ g_pre, long long n, int hs) {
    FG_GRID_LOOP(idx, n * hs) {
        long long row = idx / hs;
        int j = (int)(idx - row * hs);
        long long g0 = row * 4 * hs + j;
        float ig = gates[g0], fg = gates[g0 + hs], gg = gates[g0 + 2 * hs], og = gates[g0 + 3 * hs];
        float d_h = dh[idx] + gy[idx];
        float tc = tanhf(c[idx]);
        float d_c = dc[idx] + d_h * og * (1.0f - tc * tc);
        g_pre[g0] = d_c * gg * ig * (1.0f - ig);
        g_pre[g0 + hs] = d_c * c_prev[idx] * fg * (1.0f - fg);
        g_pre[g0 + 2 * hs] = d_c * ig * (1.0f - gg * gg);
        g_pre[g0 + 3 * hs] = d_h * tc * og * (1.0f - og);
        dc[idx] = d_c * fg;
    }
}

// xp: (N, 3H) input projection with b_ih; hp: (N, 3H) h_prev @ w_hh^T + b_hh; h_prev (N, H).
// Writes gates (N, 4H) = [r, z, n, hp_n] and h (N, H).
extern "C" __global__ void gru_step_forward(const float* __restrict__ xp,
                                            const float* __restrict__ hp,
                                            const float* __restrict__ h_prev,
                                            float* __restrict__ gates, float* __restrict__ h,
                                            long long n, int hs) {
    FG_GRID_LOOP(idx, n * hs) {
        long long row = idx / hs;
        int j = (int)(idx - row * hs);
        long long p0 = row * 3 * hs + j, g0 = row * 4 * hs + j;
        float r = rnn_sigmoid(xp[p0] + hp[p0]);
        float z = rnn_sigmoid(xp[p0 + hs] + hp[p0 + hs]);
        float hn = hp[p0 + 2 * hs];
        float nv = tanhf(xp[p0 + 2 * hs] + r * hn);
        gates[g0] = r;
        gates[g0 + hs] = z;
        gates[g0 + 2 * hs] = nv;
        gates[g0 + 3 * hs] = hn;
        h[idx] = (1.0f - z) * nv + z * h_prev[idx];
    }
}

// The gradient reaching h_t is dz_carry + dmm + gy (dz_carry: the direct z * dh path of
// the step after, dmm: G_h @ w_hh of the step after). Writes gi, gh (N, 3H): gradients of
// the input-side and hidden-side pre-activations, and dz_carry := dh_t * z (in place).
extern "C" __global__ void gru_step_backward(const float* __restrict__ gates,
                                             const float* __restrict__ h_prev,
                                             const float* __restrict__ dmm,
                                             const float* __restrict__ gy,
                                             float* __restrict__ dz_carry,
                                             float* __restrict__ gi, float* __restrict__ gh,
                                             long long n, int hs) {
    FG_GRID_LOOP(idx, n * hs) {
        long long row = idx / hs;
        int j = (int)(idx - row * hs);
        long long p0 = row * 3 * hs + j, g0 = row * 4 * hs + j;
        float r = gates[g0], z = gates[g0 + hs], nv = gates[g0 + 2 * hs], hn = gates[g0 + 3 * hs];
        float d_h = dz_carry[idx] + dmm[idx] + gy[idx];
        float dan = d_h * (1.0f - z) * (1.0f - nv * nv);
        float daz = d_h * (h_prev[idx] - nv) * z * (1.0f - z);
        float dar = dan * hn * r * (1.0f - r);
        gi[p0] = dar;
        gi[p0 + hs] = daz;
        gi[p0 + 2 * hs] = dan;
        gh[p0] = dar;
        gh[p0 + hs] = daz;
        gh[p0 + 2 * hs] = dan * r;
        dz_carry[idx] = d_h * z;
    }
}

// Column block copy: dst[r, dst_off + c] = src[r, src_off + c] for r < rows, c < width
// (concatenating and splitting arrays side by side).
extern "C" __global__ void copy_cols(float* __restrict__ dst, const float* __restrict__ src,
                                     long long rows, long long width, long long dst_cols,
                                     long long dst_off, long long src_cols, long long src_off) {
    FG_GRID_LOOP(idx, rows * width) {
        long long r = idx / width, col = idx - r * width;
        dst[r * dst_cols + dst_off + col] = src[r * src_cols + src_off + col];
    }
}
