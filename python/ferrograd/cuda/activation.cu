// Activations, forward and backward (backward takes the forward input x, as the kernel
// contract says, except sigmoid and tanh: their output y). Bandwidth-bound: float4 loads and stores when the pointers allow,
// a grid-stride loop, one scalar parameter p (negative_slope, beta) where needed.
#include "common.cuh"

__device__ __forceinline__ float relu_f(float x, float) { return x < 0.0f ? 0.0f : x; }
__device__ __forceinline__ float relu_b(float x, float g, float) { return x > 0.0f ? g : 0.0f; }

__device__ __forceinline__ float leaky_relu_f(float x, float a) { return x > 0.0f ? x : a * x; }
__device__ __forceinline__ float leaky_relu_b(float x, float g, float a) { return x > 0.0f ? g : a * g; }

__device__ __forceinline__ float sigmoid_f(float x, float) { return fg_sigmoid(x); }
// sigmoid and tanh backward take the forward's output y (see backends/base.py)
__device__ __forceinline__ float sigmoid_b(float y, float g, float) { return g * y * (1.0f - y); }

__device__ __forceinline__ float tanh_f(float x, float) { return tanhf(x); }
__device__ __forceinline__ float tanh_b(float y, float g, float) { return g * (1.0f - y * y); }

// exact GELU: x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (accurate in the left tail)
__device__ __forceinline__ float gelu_f(float x, float) { return x * 0.5f * erfcf(-x * 0.70710678118654752f); }
__device__ __forceinline__ float gelu_b(float x, float g, float) {
    float cdf = 0.5f * erfcf(-x * 0.70710678118654752f);
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return g * (cdf + x * pdf);
}

// tanh GELU through sigmoid(2u) and sigmoid(2u) sigmoid(-2u), from e = exp(-2|u|) <= 1:
// no cancellation in 1 + tanh(u) or 1 - tanh(u)^2 (same formulation in numpy and Rust)
__device__ __forceinline__ void gelu_tanh_parts(float x, float* s, float* s1ms) {
    float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    float e = expf(-2.0f * fabsf(u));
    float r = 1.0f / (1.0f + e);
    *s = u < 0.0f ? e * r : r;
    *s1ms = e * r * r;
}
__device__ __forceinline__ float gelu_tanh_f(float x, float) {
    float s, q;
    gelu_tanh_parts(x, &s, &q);
    return x * s;
}
__device__ __forceinline__ float gelu_tanh_b(float x, float g, float) {
    float s, q;
    gelu_tanh_parts(x, &s, &q);
    // q is exactly 0 from |x| ~ 22 on, where x * dinner can overflow (0 * inf = NaN): the
    // factor's x is capped (ternaries, not fminf/fmaxf, so that NaN passes)
    float xc = x < -30.0f ? -30.0f : (x > 30.0f ? 30.0f : x);
    float dinner = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * xc * xc);
    return g * (s + 2.0f * xc * q * dinner);
}

__device__ __forceinline__ float swish_f(float x, float beta) { return x * fg_sigmoid(beta * x); }
__device__ __forceinline__ float swish_b(float x, float g, float beta) {
    float bx = beta * x;
    float s = fg_sigmoid(bx);
    // s (1 - s) is exactly 0 past |beta x| ~ 104, where beta x may be inf (inf * 0 = NaN)
    float bxc = bx < -1000.0f ? -1000.0f : (bx > 1000.0f ? 1000.0f : bx);
    return g * (s + bxc * s * (1.0f - s));
}

// The float4s are taken in tiles of FG_MAP_UNROLL * blockDim.x, one tile per block (a
// grid-stride loop over tiles where the grid is smaller): thread t of a tile handles
// float4s t, t + blockDim.x, ..., all loaded before any is stored. That keeps four loads
// in flight per thread and each block on one contiguous stretch of memory, as PyTorch's
// elementwise kernels do (the launcher makes one block per tile).
#define FG_MAP_UNROLL 4

template <float (*F)(float, float)>
__device__ __forceinline__ void map1(float* __restrict__ y, const float* __restrict__ x, long long n, float p) {
    bool aligned = ((((unsigned long long)x) | ((unsigned long long)y)) & 15) == 0;
    long long n4 = aligned ? n / 4 : 0;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    const long long tile = (long long)FG_MAP_UNROLL * blockDim.x;
    for (long long base = blockIdx.x * tile; base < n4; base += (long long)gridDim.x * tile) {
        float4 v[FG_MAP_UNROLL];
#pragma unroll
        for (int u = 0; u < FG_MAP_UNROLL; ++u) {
            long long i = base + u * blockDim.x + threadIdx.x;
            if (i < n4) v[u] = x4[i];
        }
#pragma unroll
        for (int u = 0; u < FG_MAP_UNROLL; ++u) {
            long long i = base + u * blockDim.x + threadIdx.x;
            if (i < n4) y4[i] = make_float4(F(v[u].x, p), F(v[u].y, p), F(v[u].z, p), F(v[u].w, p));
        }
    }
    for (long long j = n4 * 4 + (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n;
         j += (long long)gridDim.x * blockDim.x)
        y[j] = F(x[j], p);
}

template <float (*B)(float, float, float)>
__device__ __forceinline__ void map2(float* __restrict__ gx, const float* __restrict__ x,
                                     const float* __restrict__ gy, long long n, float p) {
    bool aligned = ((((unsigned long long)x) | ((unsigned long long)gy) | ((unsigned long long)gx)) & 15) == 0;
    long long n4 = aligned ? n / 4 : 0;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* g4 = reinterpret_cast<const float4*>(gy);
    float4* o4 = reinterpret_cast<float4*>(gx);
    const long long tile = (long long)FG_MAP_UNROLL * blockDim.x;
    for (long long base = blockIdx.x * tile; base < n4; base += (long long)gridDim.x * tile) {
        float4 v[FG_MAP_UNROLL], g[FG_MAP_UNROLL];
#pragma unroll
        for (int u = 0; u < FG_MAP_UNROLL; ++u) {
            long long i = base + u * blockDim.x + threadIdx.x;
            if (i < n4) {
                v[u] = x4[i];
                g[u] = g4[i];
            }
        }
#pragma unroll
        for (int u = 0; u < FG_MAP_UNROLL; ++u) {
            long long i = base + u * blockDim.x + threadIdx.x;
            if (i < n4)
                o4[i] = make_float4(B(v[u].x, g[u].x, p), B(v[u].y, g[u].y, p),
                                    B(v[u].z, g[u].z, p), B(v[u].w, g[u].w, p));
        }
    }
    for (long long j = n4 * 4 + (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n;
         j += (long long)gridDim.x * blockDim.x)
        gx[j] = B(x[j], gy[j], p);
}

#define FG_ACTIVATION(name)                                                                        \
    extern "C" __global__ void name##_forward(float* y, const float* x, long long n, float p) {    \
        map1<name##_f>(y, x, n, p);                                                                \
    }                                                                                              \
    extern "C" __global__ void name##_backward(float* gx, const float* x, const float* gy,         \
                                               long long n, float p) {                             \
        map2<name##_b>(gx, x, gy, n, p);                                                           \
    }

// Packed sign masks (relu and leaky_relu under autograd; base.py, MASK): bit i % 8 of byte
// i / 8 is x[i] > 0. Thread t of a tile step handles the 4 elements of group g (one float4
// where aligned); groups 2k and 2k + 1 sit on adjacent lanes, and the even lane writes byte
// k from both nibbles (one shuffle).
template <float (*F)(float, float)>
__device__ __forceinline__ void map1_mask(float* __restrict__ y, unsigned char* __restrict__ mask,
                                          const float* __restrict__ x, long long n, float p) {
    const long long groups = (n + 3) / 4;
    const bool aligned = ((((unsigned long long)x) | ((unsigned long long)y)) & 15) == 0;
    const long long tile = (long long)FG_MAP_UNROLL * blockDim.x;
    // base and u depend on the block only, so every lane of a warp reaches the shuffle
    for (long long base = blockIdx.x * tile; base < groups; base += (long long)gridDim.x * tile) {
#pragma unroll
        for (int u = 0; u < FG_MAP_UNROLL; ++u) {
            long long g = base + u * blockDim.x + threadIdx.x;
            unsigned nib = 0;
            if (g < groups) {
                long long j = g * 4;
                if (aligned && j + 3 < n) {
                    float4 v = reinterpret_cast<const float4*>(x)[g];
                    reinterpret_cast<float4*>(y)[g] = make_float4(F(v.x, p), F(v.y, p), F(v.z, p), F(v.w, p));
                    nib = (unsigned)(v.x > 0.0f) | (unsigned)(v.y > 0.0f) << 1 |
                          (unsigned)(v.z > 0.0f) << 2 | (unsigned)(v.w > 0.0f) << 3;
                } else {
                    for (int k = 0; k < 4 && j + k < n; ++k) {
                        float v = x[j + k];
                        y[j + k] = F(v, p);
                        nib |= (unsigned)(v > 0.0f) << k;
                    }
                }
            }
            unsigned high = __shfl_down_sync(0xffffffffu, nib, 1);
            // g is even exactly on even lanes (tile and blockDim.x are even)
            if (g < groups && (g & 1) == 0) mask[g >> 1] = (unsigned char)(nib | (high << 4));
        }
    }
}

template <bool LEAKY>
__device__ __forceinline__ void map2_mask(float* __restrict__ gx, const unsigned char* __restrict__ mask,
                                          const float* __restrict__ gy, long long n, float p) {
    const long long groups = (n + 3) / 4;
    const bool aligned = ((((unsigned long long)gy) | ((unsigned long long)gx)) & 15) == 0;
    const long long tile = (long long)FG_MAP_UNROLL * blockDim.x;
    for (long long base = blockIdx.x * tile; base < groups; base += (long long)gridDim.x * tile) {
#pragma unroll
        for (int u = 0; u < FG_MAP_UNROLL; ++u) {
            long long g = base + u * blockDim.x + threadIdx.x;
            if (g >= groups) continue;
            unsigned nib = (unsigned)mask[g >> 1] >> ((g & 1) * 4);
            long long j = g * 4;
            if (aligned && j + 3 < n) {
                float4 v = reinterpret_cast<const float4*>(gy)[g];
                float4 o;
                o.x = (nib & 1) ? v.x : (LEAKY ? p * v.x : 0.0f);
                o.y = (nib & 2) ? v.y : (LEAKY ? p * v.y : 0.0f);
                o.z = (nib & 4) ? v.z : (LEAKY ? p * v.z : 0.0f);
                o.w = (nib & 8) ? v.w : (LEAKY ? p * v.w : 0.0f);
                reinterpret_cast<float4*>(gx)[g] = o;
            } else {
                for (int k = 0; k < 4 && j + k < n; ++k) {
                    float v = gy[j + k];
                    gx[j + k] = ((nib >> k) & 1) ? v : (LEAKY ? p * v : 0.0f);
                }
            }
        }
    }
}

extern "C" __global__ void relu_forward_mask(float* y, unsigned char* mask, const float* x, long long n, float p) {
    map1_mask<relu_f>(y, mask, x, n, p);
}
extern "C" __global__ void relu_backward_mask(float* gx, const unsigned char* mask, const float* gy, long long n,
                                              float p) {
    map2_mask<false>(gx, mask, gy, n, p);
}
extern "C" __global__ void leaky_relu_forward_mask(float* y, unsigned char* mask, const float* x, long long n,
                                                   float p) {
    map1_mask<leaky_relu_f>(y, mask, x, n, p);
}
extern "C" __global__ void leaky_relu_backward_mask(float* gx, const unsigned char* mask, const float* gy,
                                                    long long n, float p) {
    map2_mask<true>(gx, mask, gy, n, p);
}

FG_ACTIVATION(relu)
FG_ACTIVATION(leaky_relu)
FG_ACTIVATION(sigmoid)
FG_ACTIVATION(tanh)
FG_ACTIVATION(gelu)
FG_ACTIVATION(gelu_tanh)
FG_ACTIVATION(swish)

// PReLU: alpha per channel (axis 1), channel of element i = (i / inner) % channels;
// channels == 1 means one alpha for all.
extern "C" __global__ void prelu_forward(float* y, const float* x, const float* w, long long n,
                                         long long channels, long long inner) {
    FG_GRID_LOOP(i, n) {
        float a = w[channels == 1 ? 0 : (i / inner) % channels];
        float v = x[i];
        y[i] = v > 0.0f ? v : a * v;
    }
}

// gx, and contrib = x * gy where x <= 0 (summed per channel afterwards for gweight)
extern "C" __global__ void prelu_backward(float* gx, float* contrib, const float* x, const float* w,
                                          const float* gy, long long n, long long channels,
                                          long long inner) {
    FG_GRID_LOOP(i, n) {
        float a = w[channels == 1 ? 0 : (i / inner) % channels];
        float v = x[i], g = gy[i];
        bool pos = v > 0.0f;
        gx[i] = pos ? g : a * g;
        contrib[i] = pos ? 0.0f : v * g;
    }
}
