// Batched SGEMM: C[b] = op(A[b]) @ op(B[b]) (+ bias per column), row-major, op = optional
// transpose read through the indexing (never copied). 64x64 tiles of C per block of 256
// threads, 16-deep K slices staged in shared memory, 4x4 outputs per thread.
#include "common.cuh"

#define BM 64
#define BN 64
#define BK 16

extern "C" __global__ void __launch_bounds__(256)
gemm(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,
     int trans_a, int trans_b, long long stride_a, long long stride_b, long long stride_c) {
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    const int t = threadIdx.x;
    const int tx = t % 16, ty = t / 16;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += BK) {
        // consecutive threads read consecutive addresses in either layout (coalesced)
        for (int i = t; i < BM * BK; i += 256) {
            int m, k;
            if (trans_a) { m = i % BM; k = i / BM; } else { k = i % BK; m = i / BK; }
            int gm = row0 + m, gk = k0 + k;
            float v = 0.0f;
            if (gm < M && gk < K) v = trans_a ? A[(long long)gk * M + gm] : A[(long long)gm * K + gk];
            As[k][m] = v;
        }
        for (int i = t; i < BK * BN; i += 256) {
            int n, k;
            if (trans_b) { k = i % BK; n = i / BK; } else { n = i % BN; k = i / BN; }
            int gk = k0 + k, gn = col0 + n;
            float v = 0.0f;
            if (gk < K && gn < N) v = trans_b ? B[(long long)gn * K + gk] : B[(long long)gk * N + gn];
            Bs[k][n] = v;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int r = row0 + ty + 16 * i;
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int c = col0 + tx + 16 * j;
            if (c < N) C[(long long)r * N + c] = acc[i][j] + (bias ? bias[c] : 0.0f);
        }
    }
}
