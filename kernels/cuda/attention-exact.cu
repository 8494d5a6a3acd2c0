/* SPDX-License-Identifier: MIT
 * attention-exact.cu - causal GQA attention in exact numerics (exact.cuh), the same arithmetic as
 * kernels/cpu/exact.c: one warp per query row, two passes over its visible keys (no score matrix):
 *   1. lane j scores keys j, j+32, ...: qd_exact_score (fp64 dot product in d order, then * scale and
 *      one rounding to fp32); the warp takes the max (order-free);
 *   2. the scores again (the same code gives the same bits), p = qd_exact_softmax_num(score, max), and
 *      in key order - each p broadcast from its lane - sum += p and acc_d += p v_d in fp64 (lane l
 *      owns dims l, l+32, ...); out_d = (float)(acc_d / sum).
 * The per-element orders are the CPU's, so the bits are too. Speed is secondary (fp64). */
#include "exact.cuh"

#define AX_WARPS 8

template <int DPL>
__global__ void __launch_bounds__(AX_WARPS * 32) k_attn_exact(float *out, const float *q, const float *k,
                                                              const float *v, int T, int heads, int kvh, int D,
                                                              int window, float scale) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int t = blockIdx.x * AX_WARPS + warp, h = blockIdx.y, s = blockIdx.z;
    if (t >= T) return; /* whole warps only: no block-wide barrier below */
    int kh = h / (heads / kvh);
    size_t qld = (size_t)heads * D, kld = (size_t)kvh * D;
    const float *qt = q + ((size_t)s * T + t) * qld + (size_t)h * D;
    const float *kb = k + (size_t)s * T * kld + (size_t)kh * D;
    const float *vb = v + (size_t)s * T * kld + (size_t)kh * D;
    int lo = window > 0 && t + 1 > window ? t + 1 - window : 0;
    float mx = -INFINITY;
    for (int c0 = lo; c0 <= t; c0 += 32) {
        int c = c0 + lane;
        if (c <= t) mx = fmaxf(mx, qd_exact_score(qt, kb + (size_t)c * kld, (size_t)D, scale));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double sum = 0.0, acc[DPL];
#pragma unroll
    for (int b = 0; b < DPL; b++) acc[b] = 0.0;
    for (int c0 = lo; c0 <= t; c0 += 32) {
        int c = c0 + lane;
        float p = c <= t ? qd_exact_softmax_num(qd_exact_score(qt, kb + (size_t)c * kld, (size_t)D, scale), mx) : 0.0f;
        int cnt = t - c0 + 1 < 32 ? t - c0 + 1 : 32; /* the same for every lane */
        for (int j = 0; j < cnt; j++) {
            double pj = (double)__shfl_sync(0xffffffffu, p, j);
            const float *vr = vb + (size_t)(c0 + j) * kld;
            sum = __dadd_rn(sum, pj);
#pragma unroll
            for (int b = 0; b < DPL; b++) {
                int d = lane + 32 * b;
                if (d < D) acc[b] = fma(pj, (double)vr[d], acc[b]); /* exact product: = acc + p*v rounded once */
            }
        }
    }
    float *ot = out + ((size_t)s * T + t) * qld + (size_t)h * D;
#pragma unroll
    for (int b = 0; b < DPL; b++) {
        int d = lane + 32 * b;
        if (d < D) ot[d] = (float)__ddiv_rn(acc[b], sum);
    }
}

template <int DPL>
static qd_status launch(struct qd_cuda_ctx *c, const struct qd_attention_args *a) {
    dim3 grid((unsigned)((a->seq_len + AX_WARPS - 1) / AX_WARPS), (unsigned)a->heads, (unsigned)a->nseq);
    k_attn_exact<DPL><<<grid, AX_WARPS * 32, 0, c->stream>>>(QD_CU_F32(a->out), QD_CU_F32(a->q), QD_CU_F32(a->k),
                                                             QD_CU_F32(a->v), (int)a->seq_len, (int)a->heads,
                                                             (int)a->kv_heads, (int)a->head_dim, (int)a->window,
                                                             a->scale);
    QD_LAUNCH_CHECK("attention (exact)");
    return QD_OK;
}

qd_status qd_cu_attention_exact(qd_backend_t be, const struct qd_attention_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (a->nseq > 65535) return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: attention: %zu sequences > 65535", a->nseq);
    if (a->head_dim <= 32) return launch<1>(c, a);
    if (a->head_dim <= 64) return launch<2>(c, a);
    if (a->head_dim <= 128) return launch<4>(c, a);
    if (a->head_dim <= 256) return launch<8>(c, a);
    return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: attention: head_dim %zu > 256", a->head_dim);
}
