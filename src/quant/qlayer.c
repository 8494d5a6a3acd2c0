/* SPDX-License-Identifier: MIT
 * qlayer.c - quantized-Linear results: allocation and dequantisation with stored-dtype scales. */
#include <stdlib.h>
#include <string.h>

#include "qd-log.h"
#include "qd-qlayer.h"

void qd_qresult_free(qd_qresult *r) {
    if (r) qd_qlayer_free(&r->q);
}

qd_status qd_qlayer_alloc(qd_qlayer *l, int N, int K, int G) {
    l->N = N, l->K = K, l->G = G;
    l->codes = malloc((size_t)N * K);
    l->scales = malloc((size_t)G * N * sizeof *l->scales);
    l->zeros = malloc((size_t)G * N * sizeof *l->zeros);
    l->g_idx = malloc((size_t)K * sizeof *l->g_idx);
    if (!l->codes || !l->scales || !l->zeros || !l->g_idx) {
        qd_qlayer_free(l);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory for quantization results (%d x %d)", l->name, N, K);
    }
    return QD_OK;
}

float qd_scale_round(qd_dtype dt, float x) {
    switch (dt) {
    case QD_DT_F16: return qd_f16_to_f32(qd_f32_to_f16(x));
    case QD_DT_BF16: return qd_bf16_to_f32(qd_f32_to_bf16(x));
    default: return x;
    }
}

void qd_qlayer_dequant_rounded(const qd_qlayer *l, qd_dtype scale_dtype, float *w) {
    for (int n = 0; n < l->N; n++)
        for (int k = 0; k < l->K; k++) {
            size_t gi = (size_t)l->g_idx[k] * l->N + n;
            w[(size_t)n * l->K + k] =
                (float)((int)l->codes[(size_t)n * l->K + k] - l->zeros[gi]) * qd_scale_round(scale_dtype, l->scales[gi]);
        }
}
