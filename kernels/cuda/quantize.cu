/* SPDX-License-Identifier: MIT
 * quantize.cu - group-wise quantization (parameters computed or given, fake-quantized values and
 * codes): one warp per (row, group). */
#include "quant-common.cuh"

#define QZ_WARPS 8

__global__ void k_quantize(qd_qcfg cfg, const float *W, float *Q, int32_t *codes, float *S, int32_t *Z, size_t N,
                           size_t K, size_t ldw, size_t gs, size_t g0, size_t G, int params_in) {
    size_t wid = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    if (wid >= N * G) return; /* whole warps leave together */
    int lane = threadIdx.x & 31;
    size_t n = wid / G, g = g0 + wid % G;
    const float *x = W + n * ldw + g * gs;
    float maxq = (float)((1 << cfg.bits) - 1), scale, zero;
    if (params_in) {
        scale = S[g * N + n];
        zero = (float)Z[g * N + n];
    } else {
        qd_qparams_warp(cfg, x, (int)gs, &scale, &zero);
        if (lane == 0) {
            if (S) S[g * N + n] = scale;
            if (Z) Z[g * N + n] = (int32_t)zero;
        }
    }
    if (!Q && !codes) return;
    for (size_t k = lane; k < gs; k += 32) {
        int32_t cd;
        float v = qd_qv(x[k], scale, zero, maxq, &cd);
        if (Q) Q[n * ldw + g * gs + k] = v;
        if (codes) codes[n * K + g * gs + k] = cd;
    }
}

static unsigned warp_blocks(size_t warps) { return (unsigned)((warps + QZ_WARPS - 1) / QZ_WARPS); }

qd_status qd_cu_qparams_groups(struct qd_cuda_ctx *c, const qd_qcfg *cfg, const float *W, size_t ldw, size_t N,
                               size_t gs, size_t g0, size_t g1, float *S, int32_t *Z) {
    if (g1 <= g0) return QD_OK;
    k_quantize<<<warp_blocks(N * (g1 - g0)), QZ_WARPS * 32, 0, c->stream>>>(*cfg, W, NULL, NULL, S, Z, N, 0, ldw, gs,
                                                                            g0, g1 - g0, 0);
    QD_LAUNCH_CHECK("qparams");
    return QD_OK;
}

extern "C" qd_status qd_cu_quantize(qd_backend_t be, const struct qd_quantize_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    size_t gs = a->group_size && a->group_size < a->K ? a->group_size : a->K, G = a->K / gs;
    k_quantize<<<warp_blocks(a->N * G), QZ_WARPS * 32, 0, c->stream>>>(
        a->cfg, QD_CU_F32(a->W), a->Q.buf ? QD_CU_F32(a->Q) : NULL, a->codes.buf ? QD_CU_I32(a->codes) : NULL,
        a->scales.buf ? QD_CU_F32(a->scales) : NULL, a->zeros.buf ? QD_CU_I32(a->zeros) : NULL, a->N, a->K, a->ldw, gs,
        0, G, a->params_in);
    QD_LAUNCH_CHECK("quantize");
    return QD_OK;
}
