/* SPDX-License-Identifier: MIT
 * attention-tc.cu - causal GQA attention on tensor cores, for QD_CUDA_MATH=bf16 only (attention.cu
 * picks it; QD_CUDA_ATTN=fp32 forces the CUDA-core kernel). Flash-style: no seq_len x seq_len score
 * matrix exists. A CTA takes BQ = 64 queries of one (sequence, head); each of its 4 warps owns 16 of
 * them. It walks 64-key tiles of K and V, converted from fp32 to bf16 as they are staged in shared
 * memory. Per tile and warp:
 *   S = Q K^T       wmma m16n16k16, bf16 operands, fp32 accumulation (4 fragments of 16 x 16 keys)
 *   softmax         S goes through the warp's shared scratch (the accumulator layout is opaque), two
 *                   lanes per query row: scale, causal / window mask, running max and sum in fp32
 *                   (exp2 of log2e-scaled scores), P rounded to bf16 in place of S
 *   O = O c + P V   O stays in accumulator fragments across tiles; the per-row rescale c needs each
 *                   element's row, found once by loading a fragment from a matrix of row numbers.
 * Only head_dim 64 and 128 (multiples of 16 whose fragments fit the registers); q/k/v must be 16-byte
 * aligned for the float4 loads. attention.cu falls back to the fp32 kernel otherwise.
 * Precision: bf16 operands (8 significant bits) for Q, K, P and V, fp32 elsewhere; the op test holds it
 * to 2e-2 relative max error against the CPU's fp32 attention. */
#include <cuda_bf16.h>
#include <mma.h>

#include "cuda-common.cuh"

using namespace nvcuda;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc_t;

#define TC_BQ 64
#define TC_BK 64
#define TC_WARPS 4
#define TC_LDS 68 /* fp32 score row stride: a multiple of 4 (wmma), 272 bytes like the bf16 rows */
#define TC_LDP 136 /* the same rows read as bf16 P (272 bytes): P[r] overwrites the first half of S[r] */

/* bf16 row stride of Q/K/V tiles: D + 8 elements, so that the 16-byte rows of a fragment load start 4
 * banks apart (272 or 144 bytes), and 16 rows are a multiple of 32 bytes (wmma pointers must be
 * 256-bit aligned; every fragment starts at a row that is a multiple of 16) */
template <int D> struct tc_dims {
    static constexpr int LD = D + 8;
    static constexpr int NF = D / 16; /* output fragments per warp */
    static constexpr size_t tile_bytes = (size_t)TC_BQ * LD * 2;
    static constexpr size_t smem = 3 * tile_bytes                        /* Q, K, V */
                                   + (size_t)TC_WARPS * 16 * TC_LDS * 4 /* per-warp S / P scratch */
                                   + (size_t)TC_WARPS * 16 * 4 * 2;     /* per-warp row factors, 1/l */
};

/* rows [r0, r0 + 64) of a [T, ld] fp32 matrix (columns col0 .. col0 + D) -> bf16 tile [64][LD]; rows at
 * or past T are zero. float4 loads: ld and col0 are multiples of 4 and the base is 16-byte aligned. */
template <int D>
__device__ __forceinline__ void tc_load_tile(__nv_bfloat16 *dst, const float *src, size_t ld, int r0, int T) {
    constexpr int C4 = D / 4, LD = tc_dims<D>::LD;
    /* 4 loads in flight per thread: enough to cover latency with 3 CTAs per SM, few registers */
#pragma unroll 4
    for (int i = threadIdx.x; i < TC_BQ * C4; i += TC_WARPS * 32) {
        int r = i / C4, c = (i % C4) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r0 + r < T) x = *(const float4 *)(src + (size_t)(r0 + r) * ld + c);
        __nv_bfloat162 lo = __floats2bfloat162_rn(x.x, x.y), hi = __floats2bfloat162_rn(x.z, x.w);
        uint2 u;
        u.x = *(unsigned *)&lo;
        u.y = *(unsigned *)&hi;
        *(uint2 *)(dst + r * LD + c) = u; /* 8-byte aligned: LD * 2 and c * 2 are multiples of 8 */
    }
}

template <int D>
__global__ void __launch_bounds__(TC_WARPS * 32, 3)
    k_attn_tc(float *out, const float *q, const float *k, const float *v, int T, int heads, int kvh, int window,
              float scale_log2) {
    using dims = tc_dims<D>;
    constexpr int LD = dims::LD, NF = dims::NF;
    extern __shared__ __align__(128) unsigned char tc_sm[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)tc_sm;
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)(tc_sm + dims::tile_bytes);
    __nv_bfloat16 *Vs = (__nv_bfloat16 *)(tc_sm + 2 * dims::tile_bytes);
    float *Sall = (float *)(tc_sm + 3 * dims::tile_bytes);
    float *fac_all = Sall + TC_WARPS * 16 * TC_LDS; /* [warp][16] row factor c, then [warp][16] 1/l */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Sw = Sall + warp * 16 * TC_LDS;
    __nv_bfloat16 *Pw = (__nv_bfloat16 *)Sw;
    float *corr_w = fac_all + warp * 16, *linv_w = fac_all + TC_WARPS * 16 + warp * 16;

    /* the heaviest (last) query tiles first, so the causal imbalance does not make a tail */
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, s = blockIdx.z;
    const int kh = h / (heads / kvh);
    const size_t qld = (size_t)heads * D, kld = (size_t)kvh * D;
    const float *qb = q + (size_t)s * T * qld + (size_t)h * D;
    const float *kb = k + (size_t)s * T * kld + (size_t)kh * D;
    const float *vb = v + (size_t)s * T * kld + (size_t)kh * D;
    float *ob = out + (size_t)s * T * qld + (size_t)h * D;
    const int q0 = qt * TC_BQ;

    tc_load_tile<D>(Qs, qb, qld, q0, T);

    /* the row of each accumulator element: load a fragment from a 16 x 16 matrix whose entries are
     * their row numbers (same fragment type as O, so the same element -> position map) */
    for (int i = lane; i < 16 * 16; i += 32) Sw[(i / 16) * TC_LDS + i % 16] = (float)(i / 16);
    __syncwarp();
    acc_t rowf;
    wmma::load_matrix_sync(rowf, Sw, TC_LDS, wmma::mem_row_major);
    __syncwarp();

    acc_t o[NF];
#pragma unroll
    for (int f = 0; f < NF; f++) wmma::fill_fragment(o[f], 0.0f);

    /* softmax state of row r = lane / 2 (both lanes of the row keep the same copy); lane & 1 takes the
     * odd or even key columns, so the two lanes of a row read neighbouring words */
    const int r = lane >> 1, hcol = lane & 1, tq = q0 + warp * 16 + r;
    float m_run = -INFINITY, l_run = 0.0f;

    const int qlast = min(q0 + TC_BQ, T) - 1;
    int kstart = 0;
    if (window > 0 && q0 - window + 1 > 0) kstart = (q0 - window + 1) / TC_BK * TC_BK;
    for (int k0 = kstart; k0 <= qlast; k0 += TC_BK) {
        __syncthreads(); /* every warp is done with the previous K/V tile (and, first time, Qs is written) */
        tc_load_tile<D>(Ks, kb, kld, k0, T);
        tc_load_tile<D>(Vs, vb, kld, k0, T);
        __syncthreads();

        /* S = Q K^T for this warp's 16 rows x 64 keys. K [key][d] row-major is K^T column-major. */
        acc_t sacc[4];
#pragma unroll
        for (int n = 0; n < 4; n++) wmma::fill_fragment(sacc[n], 0.0f);
#pragma unroll 1 /* a full unroll hoists every K fragment load and spills */
        for (int kd = 0; kd < NF; kd++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qa;
            wmma::load_matrix_sync(qa, Qs + (warp * 16) * LD + kd * 16, LD);
#pragma unroll
            for (int n = 0; n < 4; n++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, Ks + (n * 16) * LD + kd * 16, LD);
                wmma::mma_sync(sacc[n], qa, kf, sacc[n]);
            }
        }
#pragma unroll
        for (int n = 0; n < 4; n++) wmma::store_matrix_sync(Sw + n * 16, sacc[n], TC_LDS, wmma::mem_row_major);
        __syncwarp();

        /* online softmax of row r over its 32 columns c = 2 j + hcol, in log2 units: one pass for the
         * max, a second (S re-read, fewer live registers) for P, kept as packed bf16 pairs */
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            int c = 2 * j + hcol, kj = k0 + c;
            bool ok = kj <= tq && kj < T && (window <= 0 || tq - kj < window);
            if (ok) mx = fmaxf(mx, Sw[r * TC_LDS + c] * scale_log2);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float mn = fmaxf(m_run, mx);
        /* mn == -inf: no key visible to this row yet; O and l are still 0, so any factor will do */
        const float corr = mn == -INFINITY ? 1.0f : exp2f(m_run - mn);
        float sum = 0.0f;
        __nv_bfloat162 pp[16];
#pragma unroll
        for (int j = 0; j < 32; j++) {
            int c = 2 * j + hcol, kj = k0 + c;
            bool ok = kj <= tq && kj < T && (window <= 0 || tq - kj < window);
            /* ok implies mn is finite */
            __nv_bfloat16 pb = __float2bfloat16_rn(ok ? exp2f(Sw[r * TC_LDS + c] * scale_log2 - mn) : 0.0f);
            sum += __bfloat162float(pb); /* the value P V will use, so l sums the same */
            if (j & 1)
                pp[j >> 1].y = pb;
            else
                pp[j >> 1].x = pb;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l_run = l_run * corr + sum;
        m_run = mn;
        if (hcol == 0) corr_w[r] = corr;
        __syncwarp(); /* both lanes of every row have read S[r] before P[r] overwrites its first half */
#pragma unroll
        for (int j = 0; j < 32; j++) Pw[r * TC_LDP + 2 * j + hcol] = (j & 1) ? pp[j >> 1].y : pp[j >> 1].x;
        __syncwarp();

        /* O = O * c[row] + P V */
        float cf[acc_t::num_elements];
#pragma unroll
        for (int i = 0; i < acc_t::num_elements; i++) cf[i] = corr_w[(int)rowf.x[i]];
#pragma unroll
        for (int f = 0; f < NF; f++)
#pragma unroll
            for (int i = 0; i < acc_t::num_elements; i++) o[f].x[i] *= cf[i];
#pragma unroll 1 /* likewise for the V fragments */
        for (int kk = 0; kk < TC_BK / 16; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pa;
            wmma::load_matrix_sync(pa, Pw + kk * 16, TC_LDP);
#pragma unroll
            for (int f = 0; f < NF; f++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
                wmma::load_matrix_sync(vf, Vs + (kk * 16) * LD + f * 16, LD);
                wmma::mma_sync(o[f], pa, vf, o[f]);
            }
        }
        /* the next tile's S store into Sw comes after the loop-top __syncthreads, so every lane has
         * finished reading P by then */
    }

    /* out = O / l, one 16 x 16 fragment at a time through the warp's scratch */
    if (hcol == 0) linv_w[r] = l_run > 0.0f ? 1.0f / l_run : 0.0f;
    __syncwarp(); /* P reads are done before the scratch is overwritten; linv_w is visible */
#pragma unroll
    for (int f = 0; f < NF; f++) {
        wmma::store_matrix_sync(Sw, o[f], TC_LDS, wmma::mem_row_major);
        __syncwarp();
        for (int i = lane; i < 16 * 16; i += 32) {
            int rr = i / 16, cc = i % 16, t = q0 + warp * 16 + rr;
            if (t < T) ob[(size_t)t * qld + f * 16 + cc] = Sw[rr * TC_LDS + cc] * linv_w[rr];
        }
        __syncwarp();
    }
}

template <int D> static qd_status launch_tc(struct qd_cuda_ctx *c, const struct qd_attention_args *a) {
    const size_t smem = tc_dims<D>::smem;
    QD_CUDA_CHECK(cudaFuncSetAttribute(k_attn_tc<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)((a->seq_len + TC_BQ - 1) / TC_BQ), (unsigned)a->heads, (unsigned)a->nseq);
    k_attn_tc<D><<<grid, TC_WARPS * 32, smem, c->stream>>>(QD_CU_F32(a->out), QD_CU_F32(a->q), QD_CU_F32(a->k),
                                                           QD_CU_F32(a->v), (int)a->seq_len, (int)a->heads,
                                                           (int)a->kv_heads, (int)a->window,
                                                           a->scale * 1.4426950408889634f /* log2 e */);
    QD_LAUNCH_CHECK("attention (bf16 tensor cores)");
    return QD_OK;
}

/* 1 when launched; 0 when the shape is not one it takes (the caller then runs the fp32 kernel) */
qd_status qd_cu_attention_tc(struct qd_cuda_ctx *c, const struct qd_attention_args *a, int *done) {
    *done = 0;
    size_t D = a->head_dim;
    if (D != 64 && D != 128) return QD_OK;
    if ((uintptr_t)QD_CU_F32(a->q) % 16 || (uintptr_t)QD_CU_F32(a->k) % 16 || (uintptr_t)QD_CU_F32(a->v) % 16)
        return QD_OK;
    if (a->seq_len > (size_t)INT32_MAX || a->heads > 65535 || a->nseq > 65535) return QD_OK;
    *done = 1;
    return D == 64 ? launch_tc<64>(c, a) : launch_tc<128>(c, a);
}
