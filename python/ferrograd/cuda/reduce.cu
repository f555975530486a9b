// Row sums: out[r * nchunks + c] = sum of x[r, c*chunk : (c+1)*chunk] for a row-major
// (rows, cols) matrix. One block per (row, chunk): rows on grid x (no 65535 limit),
// chunks on grid y; the host calls it again on the partial sums until one chunk per
// row is left, so long rows use the whole GPU.
#include "common.cuh"

extern "C" __global__ void sum_rows(float* out, const float* x, long long rows, long long cols,
                                    long long chunk) {
    long long r = blockIdx.x;
    long long c = blockIdx.y;
    long long start = c * chunk;
    long long stop = min(start + chunk, cols);
    const float* row = x + r * cols;
    float acc = 0.0f;
    for (long long j = start + threadIdx.x; j < stop; j += blockDim.x) acc += row[j];
    acc = fg_block_sum(acc);
    if (threadIdx.x == 0) out[r * gridDim.y + c] = acc;
}
