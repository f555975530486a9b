// Elementwise arithmetic with numpy broadcasting. One op code selects the formula (a
// switch per element costs nothing next to the memory traffic); broadcasting reads each
// operand through its own strides (0 on broadcast axes), passed in `meta`.
#include "common.cuh"

#define FG_MAX_DIMS 8

// forward: y = op(a, b); backward formulas take (a, b, g)
enum {
    OP_ADD = 0, OP_SUB = 1, OP_MUL = 2, OP_DIV = 3, OP_POW = 4, OP_MAX = 5, OP_MIN = 6,
    GRAD_COPY = 10, GRAD_NEG = 11, GRAD_MUL_A = 12, GRAD_MUL_B = 13, GRAD_DIV_A = 14,
    GRAD_DIV_B = 15, GRAD_POW_A = 16, GRAD_POW_B = 17,
    // maximum / minimum: the winner takes g, a tie halves it, a NaN compares false both
    // ways so both operands take g; clamp_min / clamp_max (number bounds): g only where a
    // is strictly inside (PyTorch)
    GRAD_MAX_A = 18, GRAD_MAX_B = 19, GRAD_MIN_A = 20, GRAD_MIN_B = 21,
    GRAD_CLAMP_MIN_A = 22, GRAD_CLAMP_MIN_B = 23, GRAD_CLAMP_MAX_A = 24, GRAD_CLAMP_MAX_B = 25
};

// the larger / smaller of a and b, NaN if either is (fmaxf would drop a NaN)
__device__ __forceinline__ float max_nan(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float min_nan(float a, float b) { return (a < b || a != a) ? a : b; }
__device__ __forceinline__ float tie_share(bool loses, bool tie, float g) {
    return loses ? 0.0f : (tie ? 0.5f * g : g);
}

__device__ __forceinline__ float binary_apply(int op, float a, float b, float g) {
    switch (op) {
        case OP_ADD: return a + b;
        case OP_SUB: return a - b;
        case OP_MUL: return a * b;
        case OP_DIV: return a / b;
        case OP_POW: return powf(a, b);
        case OP_MAX: return max_nan(a, b);
        case OP_MIN: return min_nan(a, b);
        case GRAD_COPY: return g;
        case GRAD_NEG: return -g;
        case GRAD_MUL_A: return g * b;
        case GRAD_MUL_B: return g * a;
        case GRAD_DIV_A: return g / b;
        case GRAD_DIV_B: return -g * a / (b * b);
        // d/da = b a^(b-1), 0 where b == 0; d/db = a^b log a, 0 where a == 0 (PyTorch)
        case GRAD_POW_A: return b == 0.0f ? 0.0f : g * b * powf(a, b - 1.0f);
        case GRAD_POW_B: return (a == 0.0f && b >= 0.0f) ? 0.0f : g * powf(a, b) * logf(a);  // PyTorch's mask
        case GRAD_MAX_A: return tie_share(a < b, a == b, g);
        case GRAD_MAX_B: return tie_share(a > b, a == b, g);
        case GRAD_MIN_A: return tie_share(a > b, a == b, g);
        case GRAD_MIN_B: return tie_share(a < b, a == b, g);
        case GRAD_CLAMP_MIN_A: return a > b ? g : 0.0f;
        case GRAD_CLAMP_MIN_B: return a < b ? g : 0.0f;
        case GRAD_CLAMP_MAX_A: return a < b ? g : 0.0f;
        case GRAD_CLAMP_MAX_B: return a > b ? g : 0.0f;
    }
    return 0.0f;
}

// same shapes, contiguous
extern "C" __global__ void binary_same(int op, float* y, const float* a, const float* b,
                                       const float* g, long long n) {
    FG_GRID_LOOP(i, n) y[i] = binary_apply(op, a[i], b[i], g ? g[i] : 0.0f);
}

// meta: shape[ndim], stride_a[ndim], stride_b[ndim], stride_g[ndim] (element strides)
extern "C" __global__ void binary_broadcast(int op, float* y, const float* a, const float* b,
                                            const float* g, long long n, int ndim,
                                            const long long* __restrict__ meta) {
    FG_GRID_LOOP(i, n) {
        long long rem = i, oa = 0, ob = 0, og = 0;
        for (int d = ndim - 1; d >= 0; --d) {
            long long len = meta[d];
            long long k = rem % len;
            rem /= len;
            oa += k * meta[ndim + d];
            ob += k * meta[2 * ndim + d];
            og += k * meta[3 * ndim + d];
        }
        y[i] = binary_apply(op, a[oa], b[ob], g ? g[og] : 0.0f);
    }
}

enum { U_NEG = 0, U_EXP = 1, U_LOG = 2, U_ABS = 3, U_SQRT = 4, U_RSQRT = 5, U_SIN = 6, U_COS = 7 };

__device__ __forceinline__ float unary_apply(int op, float v) {
    switch (op) {
        case U_NEG: return -v;
        case U_EXP: return expf(v);
        case U_LOG: return logf(v);
        case U_ABS: return fabsf(v);
        case U_SQRT: return sqrtf(v);
        case U_RSQRT: return 1.0f / sqrtf(v);  // not rsqrtf: an approximation
        case U_SIN: return sinf(v);
        case U_COS: return cosf(v);
    }
    return 0.0f;
}

// the gradient of unary_apply(op, v) times g (the contract's rules: abs' is sign(v), NaN
// at NaN; sqrt' and rsqrt' are inf at 0)
__device__ __forceinline__ float unary_grad(int op, float v, float g) {
    switch (op) {
        case U_NEG: return -g;
        case U_EXP: return g * expf(v);
        case U_LOG: return g / v;
        case U_ABS: return v > 0.0f ? g : (v < 0.0f ? -g : (v != v ? v : g * 0.0f));
        case U_SQRT: return g / (2.0f * sqrtf(v));
        case U_RSQRT: {
            float r = 1.0f / sqrtf(v);
            return -0.5f * g * (r * r * r);
        }
        case U_SIN: return g * cosf(v);
        case U_COS: return -g * sinf(v);
    }
    return 0.0f;
}

extern "C" __global__ void unary_forward(int op, float* y, const float* x, long long n) {
    FG_GRID_LOOP(i, n) y[i] = unary_apply(op, x[i]);
}

extern "C" __global__ void unary_backward(int op, float* gx, const float* x, const float* gy,
                                          long long n) {
    FG_GRID_LOOP(i, n) gx[i] = unary_grad(op, x[i], gy[i]);
}

// y[i] = x[offset(i)], offset through per-axis strides of x (0 to broadcast): the copy
// behind permute (transposed strides) and expand (zero strides).
// meta: out_shape[ndim], in_stride[ndim]
// the offset of element i of a strided view; meta: shape[ndim], stride[ndim]
__device__ __forceinline__ long long strided_offset(long long i, int ndim,
                                                    const long long* __restrict__ meta) {
    long long rem = i, off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
        long long len = meta[d];
        off += (rem % len) * meta[ndim + d];
        rem /= len;
    }
    return off;
}

extern "C" __global__ void strided_gather(float* y, const float* x, long long n, int ndim,
                                          const long long* __restrict__ meta) {
    FG_GRID_LOOP(i, n) y[i] = x[strided_offset(i, ndim, meta)];
}

// The transpose: dst[offset(i)] = src[i], into a strided view of dst (indexing's backward,
// cat's forward). The views never name one position twice: plain stores, no atomics.
// meta: src_shape[ndim], dst_stride[ndim]
extern "C" __global__ void strided_scatter(float* dst, const float* src, long long n, int ndim,
                                           const long long* __restrict__ meta) {
    FG_GRID_LOOP(i, n) dst[strided_offset(i, ndim, meta)] = src[i];
}

extern "C" __global__ void fill(float* y, float value, long long n) {
    FG_GRID_LOOP(i, n) y[i] = value;
}

extern "C" __global__ void scale(float* y, const float* x, float s, long long n) {
    FG_GRID_LOOP(i, n) y[i] = x[i] * s;
}
