// TF32 GEMM on Hopper's warpgroup tensor cores (wgmma), compiled for sm_90a only (the
// cuda backend loads this file on compute capability 9.0 devices). Used when the user
// allows TF32 (fg.backends.cuda.matmul.allow_tf32, as PyTorch's allow_tf32) for GEMMs
// with at least a wave of 128x256 tiles; CudaBackend._gemm_plan picks it.
//
// wgmma's TF32 form reads both operands K-major (k contiguous) from shared memory, so
// C = A B^T with A (M x K) and B (N x K) row-major; other layouts are transposed first
// (gemm_transpose below: a small part of a large GEMM's time, benches/README.md). Each block of two warpgroups owns
// a 128x256 tile of C (a warpgroup 64x256: wgmma.m64n256k8, 128 accumulators per
// thread). K advances in 32-deep slices through a four-stage cp.async ring (192 KB of
// dynamic shared memory): rows of 32 floats are 128 bytes, stored in the 128-byte swizzle
// that the descriptors declare (16-byte chunk c of row r at c ^ (r % 8)), so neither the
// copies nor the tensor cores' reads conflict on banks. One wgmma group stays in flight
// while the next slice is issued; a stage is refilled only after every warpgroup has
// waited for the group that read it (the barrier at the top of the next iteration).
// Inputs are read as TF32 by truncation (the top 19 bits), like linear.cu's gemm_tf32.
#include "common.cuh"

#define WG_BM 128
#define WG_BN 256
#define WG_BK 32
#define WG_ST 4
#define WG_SA (WG_BM * WG_BK)  // floats per stage of A
#define WG_SB (WG_BN * WG_BK)  // floats per stage of B

__device__ __forceinline__ void wg_cp_async16(unsigned smem, const float* gmem, bool pred) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(pred ? 16 : 0));
}

// shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart
__device__ __forceinline__ unsigned long long wg_desc(unsigned smem) {
    return (unsigned long long)((smem & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
           (1ull << 62);
}

__device__ __forceinline__ void wg_mma_m64n256k8(float* d, unsigned long long da, unsigned long long db) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, "
        "%128, %129, p, 1, 1;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db));
}

// rows [row0, row0 + rows) of a row-major (.. x K) operand, k in [k0, k0 + 32), into one
// stage (byte address s) in the swizzled layout; zero-filled past the edges
template <int ROWS>
__device__ __forceinline__ void wg_load(unsigned s, const float* X, int nrows, int K, int row0, int k0, int t) {
#pragma unroll
    for (int h = 0; h < ROWS * 8 / 256; ++h) {
        const int f = t + h * 256, r = f / 8, c = f % 8;
        const bool ok = row0 + r < nrows && k0 + 4 * c < K;
        wg_cp_async16(s + r * 128 + ((c ^ (r & 7)) << 4), ok ? X + (long long)(row0 + r) * K + k0 + 4 * c : X, ok);
    }
}

// C[z] (M x N) = A[z] (M x K) @ B[z]^T (B: N x K) (+ bias per column); grid
// (ceil(N / 256), ceil(M / 128), batch), 256 threads; K and the strides multiples of 4
extern "C" __global__ void __launch_bounds__(256, 1)
gemm_wgmma_tf32_nt(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,
                   long long stride_a, long long stride_b, long long stride_c) {
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
    extern __shared__ __align__(16) unsigned char wg_smem_raw[];
    // the swizzle is a function of address bits 4..9: stages start on 1024-byte boundaries
    const unsigned raw = (unsigned)__cvta_generic_to_shared(wg_smem_raw);
    const unsigned base = (raw + 1023u) & ~1023u;
    const unsigned sa = base, sb = base + WG_ST * WG_SA * 4;
    const int t = threadIdx.x, wg = t / 128, warp = (t % 128) / 32, lane = t % 32;
    const int g = lane / 4, tq = lane % 4;
    const int row0 = blockIdx.y * WG_BM, col0 = blockIdx.x * WG_BN;
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) d[i] = 0.0f;

    const int nk = (K + WG_BK - 1) / WG_BK;
#pragma unroll
    for (int s = 0; s < WG_ST - 2; ++s) {
        if (s < nk) {
            wg_load<WG_BM>(sa + s * WG_SA * 4, A, M, K, row0, s * WG_BK, t);
            wg_load<WG_BN>(sb + s * WG_SB * 4, B, N, K, col0, s * WG_BK, t);
        }
        asm volatile("cp.async.commit_group;\n" ::);
    }
    for (int kt = 0; kt < nk; ++kt) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(WG_ST - 3));  // slice kt landed (mine)
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // visible to wgmma
        __syncthreads();  // everyone's slice kt landed; group kt - 2 finished everywhere
        const int pf = kt + WG_ST - 2;
        if (pf < nk) {  // into the stage group kt - 2 read
            wg_load<WG_BM>(sa + (pf % WG_ST) * WG_SA * 4, A, M, K, row0, pf * WG_BK, t);
            wg_load<WG_BN>(sb + (pf % WG_ST) * WG_SB * 4, B, N, K, col0, pf * WG_BK, t);
        }
        asm volatile("cp.async.commit_group;\n" ::);
        const unsigned a_s = sa + (kt % WG_ST) * WG_SA * 4 + wg * 64 * 128, b_s = sb + (kt % WG_ST) * WG_SB * 4;
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int ks = 0; ks < WG_BK / 8; ++ks)  // 8 k (32 bytes) per instruction
            wg_mma_m64n256k8(d, wg_desc(a_s + 32 * ks), wg_desc(b_s + 32 * ks));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    asm volatile("cp.async.wait_group 0;\n" ::);
    // d[4 j + e]: row 16 warp + g (+ 8 for e >= 2) of the warpgroup's 64, column
    // 8 j + 2 tq (+ 1 for odd e)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int r = row0 + wg * 64 + warp * 16 + g + 8 * h;
        if (r >= M) continue;
        float* cr = C + (long long)r * N;
#pragma unroll
        for (int j = 0; j < 32; ++j) {
            const int c = col0 + 8 * j + 2 * tq;  // N is a multiple of 4: c < N covers c + 1
            if (c >= N) continue;
            float2 y = make_float2(d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
            if (bias) { y.x += bias[c]; y.y += bias[c + 1]; }
            *reinterpret_cast<float2*>(cr + c) = y;
        }
    }
}

// out[z] (cols x rows) = in[z]^T (in: rows x cols), through 32x32 shared tiles (both sides
// coalesced); grid (ceil(cols / 32), ceil(rows / 32), batch), block (32, 8)
extern "C" __global__ void gemm_transpose(float* out, const float* in, int rows, int cols,
                                          long long stride_in, long long stride_out) {
    __shared__ float tile[32][33];
    in += blockIdx.z * stride_in;
    out += blockIdx.z * stride_out;
    const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int i = threadIdx.y; i < 32; i += 8)
        if (r0 + i < rows && c0 + threadIdx.x < cols) tile[i][threadIdx.x] = in[(long long)(r0 + i) * cols + c0 + threadIdx.x];
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8)
        if (c0 + i < cols && r0 + threadIdx.x < rows) out[(long long)(c0 + i) * rows + r0 + threadIdx.x] = tile[threadIdx.x][i];
}
