// 2-D convolution by im2col + the project's SGEMM (linear.cu's gemm), float32.
//
// Layouts (see ferrograd/backends/_conv.py for the semantics):
//   x (N, C, H, W), weight (O, C/G, KH, KW), y (N, O, OH, OW).
//   cols (C * KH * KW, N * OH * OW) = (G, C/G * KH * KW, N * L), L = OH * OW:
//     cols[(c * KH + a) * KW + b][n * L + i * OW + j] = x_pad[n, c, i*sh + a*dh, j*sw + b*dw]
//   so that y_g (O/G, N * L) = w_g (O/G, C/G * KH * KW) @ cols_g: one GEMM per group,
//   batched over G by linear.cu's gemm (grid.z).
// col2im gathers (one thread per input element, no atomics, deterministic): an input
// element (n, c, h, w) receives every column entry (a, b, i, j) with h + ph = i*sh + a*dh
// and w + pw = j*sw + b*dw.
#include "common.cuh"

// The geometry travels as 14 int arguments (in this order) and is read through `g.`.
struct ConvGeom {
    int N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw;
};
#define CONV_GEOM_ARGS                                                               \
    int N, int C, int H, int W, int KH, int KW, int OH, int OW, int sh, int sw, int ph, \
        int pw, int dh, int dw
#define CONV_GEOM_MAKE ConvGeom g = {N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw}

extern "C" __global__ void conv_im2col(float* __restrict__ cols, const float* __restrict__ x,
                                       CONV_GEOM_ARGS) {
    CONV_GEOM_MAKE;
    const long long L = (long long)g.OH * g.OW;
    const long long NL = (long long)g.N * L;
    const long long total = (long long)g.C * g.KH * g.KW * NL;
    FG_GRID_LOOP(idx, total) {
        long long col = idx % NL;
        long long row = idx / NL;
        int b = (int)(row % g.KW);
        int a = (int)((row / g.KW) % g.KH);
        int c = (int)(row / ((long long)g.KW * g.KH));
        int n = (int)(col / L);
        int ij = (int)(col % L);
        int i = ij / g.OW, j = ij % g.OW;
        int h = i * g.sh + a * g.dh - g.ph;
        int w = j * g.sw + b * g.dw - g.pw;
        float v = 0.0f;
        if (h >= 0 && h < g.H && w >= 0 && w < g.W)
            v = x[(((long long)n * g.C + c) * g.H + h) * g.W + w];
        cols[idx] = v;
    }
}

extern "C" __global__ void conv_col2im(float* __restrict__ gx, const float* __restrict__ gcols,
                                       CONV_GEOM_ARGS) {
    CONV_GEOM_MAKE;
    const long long L = (long long)g.OH * g.OW;
    const long long NL = (long long)g.N * L;
    const long long total = (long long)g.N * g.C * g.H * g.W;
    FG_GRID_LOOP(idx, total) {
        int w = (int)(idx % g.W);
        int h = (int)((idx / g.W) % g.H);
        int c = (int)((idx / ((long long)g.W * g.H)) % g.C);
        int n = (int)(idx / ((long long)g.W * g.H * g.C));
        float acc = 0.0f;
        for (int a = 0; a < g.KH; ++a) {
            int hi = h + g.ph - a * g.dh;
            if (hi < 0 || hi % g.sh) continue;
            int i = hi / g.sh;
            if (i >= g.OH) continue;
            for (int b = 0; b < g.KW; ++b) {
                int wi = w + g.pw - b * g.dw;
                if (wi < 0 || wi % g.sw) continue;
                int j = wi / g.sw;
                if (j >= g.OW) continue;
                long long row = ((long long)c * g.KH + a) * g.KW + b;
                acc += gcols[row * NL + (long long)n * L + (long long)i * g.OW + j];
            }
        }
        gx[idx] = acc;
    }
}

// (G, Og, N, L) -> (N, G*Og, L), adding bias[o] when bias is not null (the GEMM's output
// back to NCHW).
extern "C" __global__ void conv_ungroup(float* __restrict__ y, const float* __restrict__ yg,
                                        const float* __restrict__ bias, int N, int O,
                                        long long L) {
    const long long total = (long long)N * O * L;
    FG_GRID_LOOP(idx, total) {
        long long l = idx % L;
        int o = (int)((idx / L) % O);
        int n = (int)(idx / (L * O));
        float v = yg[((long long)o * N + n) * L + l];
        if (bias) v += bias[o];
        y[idx] = v;
    }
}

// (N, O, L) -> (O, N, L): gy in the GEMM's layout (G, Og, N * L).
extern "C" __global__ void conv_group(float* __restrict__ out, const float* __restrict__ gy,
                                      int N, int O, long long L) {
    const long long total = (long long)N * O * L;
    FG_GRID_LOOP(idx, total) {
        long long l = idx % L;
        int n = (int)((idx / L) % N);
        int o = (int)(idx / (L * N));
        out[idx] = gy[((long long)n * O + o) * L + l];
    }
}
