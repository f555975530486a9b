// 2-D convolution by im2col + the project's SGEMM (linear.cu's gemm), float32.
//
// Layouts (see ferrograd/backends/_conv.py for the semantics):
//   x (N, C, H, W), weight (O, C/G, KH, KW), y (N, O, OH, OW).
//   cols (C * KH * KW, N * OH * OW) = (G, C/G * KH * KW, N * L), L = OH * OW:
//     cols[(c * KH + a) * KW + b][n * L + i * OW + j] = x_pad[n, c, i*sh + a*dh, j*sw + b*dw]
//   so that y_g (O/G, N * L) = w_g (O/G, C/G * KH * KW) @ cols_g: one GEMM per group,
//   batched over G by linear.cu's gemm (grid.z).
// Every kernel has a 64-bit-index entry point and an `_i32` one (int index arithmetic,
// several times cheaper in the per-element divisions) that the host picks when every
// index fits in 31 bits.
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

template <typename I>
__device__ __forceinline__ void conv_im2col_body(float* __restrict__ cols, const float* __restrict__ x,
                                       CONV_GEOM_ARGS) {
    CONV_GEOM_MAKE;
    const I L = (I)g.OH * g.OW;
    const I NL = (I)g.N * L;
    const I total = (I)g.C * g.KH * g.KW * NL;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I col = idx % NL;
        I row = idx / NL;
        int b = (int)(row % g.KW);
        int a = (int)((row / g.KW) % g.KH);
        int c = (int)(row / ((I)g.KW * g.KH));
        int n = (int)(col / L);
        int ij = (int)(col % L);
        int i = ij / g.OW, j = ij % g.OW;
        int h = i * g.sh + a * g.dh - g.ph;
        int w = j * g.sw + b * g.dw - g.pw;
        float v = 0.0f;
        if (h >= 0 && h < g.H && w >= 0 && w < g.W)
            v = x[(((I)n * g.C + c) * g.H + h) * g.W + w];
        cols[idx] = v;
    }
}
extern "C" __global__ void conv_im2col(float* __restrict__ cols, const float* __restrict__ x,
                                       CONV_GEOM_ARGS) {
    conv_im2col_body<long long>(cols, x, N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}
extern "C" __global__ void conv_im2col_i32(float* __restrict__ cols, const float* __restrict__ x,
                                       CONV_GEOM_ARGS) {
    conv_im2col_body<int>(cols, x, N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}

template <typename I>
__device__ __forceinline__ void conv_col2im_body(float* __restrict__ gx, const float* __restrict__ gcols,
                                       CONV_GEOM_ARGS) {
    CONV_GEOM_MAKE;
    const I L = (I)g.OH * g.OW;
    const I NL = (I)g.N * L;
    const I total = (I)g.N * g.C * g.H * g.W;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        int w = (int)(idx % g.W);
        int h = (int)((idx / g.W) % g.H);
        int c = (int)((idx / ((I)g.W * g.H)) % g.C);
        int n = (int)(idx / ((I)g.W * g.H * g.C));
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
                I row = ((I)c * g.KH + a) * g.KW + b;
                acc += gcols[row * NL + (I)n * L + (I)i * g.OW + j];
            }
        }
        gx[idx] = acc;
    }
}
extern "C" __global__ void conv_col2im(float* __restrict__ gx, const float* __restrict__ gcols,
                                       CONV_GEOM_ARGS) {
    conv_col2im_body<long long>(gx, gcols, N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}
extern "C" __global__ void conv_col2im_i32(float* __restrict__ gx, const float* __restrict__ gcols,
                                       CONV_GEOM_ARGS) {
    conv_col2im_body<int>(gx, gcols, N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}

// (G, Og, N, L) -> (N, G*Og, L), adding bias[o] when bias is not null (the GEMM's output
// back to NCHW).
template <typename I>
__device__ __forceinline__ void conv_ungroup_body(float* __restrict__ y, const float* __restrict__ yg,
                                        const float* __restrict__ bias, int N, int O,
                                        long long L_) {
    const I L = (I)L_;
    const I total = (I)N * O * L;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I l = idx % L;
        int o = (int)((idx / L) % O);
        int n = (int)(idx / (L * O));
        float v = yg[((I)o * N + n) * L + l];
        if (bias) v += bias[o];
        y[idx] = v;
    }
}
extern "C" __global__ void conv_ungroup(float* __restrict__ y, const float* __restrict__ yg,
                                        const float* __restrict__ bias, int N, int O,
                                        long long L) {
    conv_ungroup_body<long long>(y, yg, bias, N, O, L);
}
extern "C" __global__ void conv_ungroup_i32(float* __restrict__ y, const float* __restrict__ yg,
                                        const float* __restrict__ bias, int N, int O,
                                        long long L) {
    conv_ungroup_body<int>(y, yg, bias, N, O, L);
}

// (N, O, L) -> (O, N, L): gy in the GEMM's layout (G, Og, N * L).
template <typename I>
__device__ __forceinline__ void conv_group_body(float* __restrict__ out, const float* __restrict__ gy,
                                      int N, int O, long long L_) {
    const I L = (I)L_;
    const I total = (I)N * O * L;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I l = idx % L;
        int n = (int)((idx / L) % N);
        int o = (int)(idx / (L * N));
        out[idx] = gy[((I)n * O + o) * L + l];
    }
}
extern "C" __global__ void conv_group(float* __restrict__ out, const float* __restrict__ gy,
                                      int N, int O, long long L) {
    conv_group_body<long long>(out, gy, N, O, L);
}
extern "C" __global__ void conv_group_i32(float* __restrict__ out, const float* __restrict__ gy,
                                      int N, int O, long long L) {
    conv_group_body<int>(out, gy, N, O, L);
}

// im2col on an (N, C * KH * KW) grid: block (n, row) fills one row (c, a, b) of image n's
// columns, its threads striding over the output pixels. A thread does one division per
// pixel (-> i, j) instead of six, writes are coalesced and neighbouring threads read
// neighbouring input pixels (stride 1); a block has L / 256 pixels each (one per block
// made the block scheduler the bottleneck). per_image == 0: conv_im2col's layout
// (C KH KW, N L); 1: (N, C KH KW, L), each image's columns a matrix of its own (the batched
// forward GEMM writes y directly). The host uses it when rows fit the grid's y (65535) and
// every index fits in 31 bits.
extern "C" __global__ void conv_im2col_rows(float* __restrict__ cols, const float* __restrict__ x,
                                            CONV_GEOM_ARGS, int per_image) {
    CONV_GEOM_MAKE;
    const int L = g.OH * g.OW;
    const int n = blockIdx.x, row = blockIdx.y;
    const int b = row % g.KW, a = (row / g.KW) % g.KH, c = row / (g.KW * g.KH);
    const float* xc = x + (n * g.C + c) * g.H * g.W;
    float* out = cols + (per_image ? n * (int)gridDim.y + row : row * g.N + n) * L;
    for (int p = threadIdx.x; p < L; p += blockDim.x) {
        const int i = p / g.OW, j = p - i * g.OW;
        const int h = i * g.sh + a * g.dh - g.ph;
        const int w = j * g.sw + b * g.dw - g.pw;
        out[p] = (h >= 0 && h < g.H && w >= 0 && w < g.W) ? xc[h * g.W + w] : 0.0f;
    }
}

// y (N, O, L) += bias[o], in place (the batched forward GEMM adds a bias per column, and
// a convolution's is per row); a (N * O) grid, threads over the L pixels of one row.
extern "C" __global__ void conv_add_bias(float* __restrict__ y, const float* __restrict__ bias,
                                         int O, int L) {
    const float bo = bias[blockIdx.x % O];
    float* row = y + (long long)blockIdx.x * L;
    for (int p = threadIdx.x; p < L; p += blockDim.x) row[p] += bo;
}
