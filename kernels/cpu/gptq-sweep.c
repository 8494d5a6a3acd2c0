/* SPDX-License-Identifier: MIT
 * gptq-sweep.c - GPTQ's column sweep (docs/reference/algorithms.md section 1) on the CPU: columns in blocks of
 * block_size, the in-block error feedback as rank-1 row updates, and the lazy update of the
 * remaining columns as one GEMM per block. Group parameters are taken from the global W, which holds
 * the updates of earlier blocks only (the in-block work happens on a copy, W1), as IST and GPTQModel do. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"
#include "qd-check.h"
#include "qd-log.h"

qd_status qd_cpu_gptq_sweep(qd_backend_t be, const struct qd_gptq_sweep_args *a) {
    size_t N = a->N, K = a->K, B = a->block_size;
    int grouped = a->group_size > 0 && a->group_size < K;
    size_t gs = grouped ? a->group_size : K;
    int stat = a->static_groups; /* one group (gs <= 0): g is always 0 */
    float maxq = (float)((1 << a->cfg.bits) - 1);
    int fp8 = a->cfg.kind == QD_QZ_FP8, fp4 = a->cfg.kind == QD_QZ_FP4;
    if ((fp8 || fp4) && !stat)
        return qd_fail(QD_ERR_UNSUPPORTED, "cpu backend: gptq_sweep: %s targets take given (static) scales",
                       fp8 ? "fp8" : "fp4");
    float *W = qd_ref_f32(a->W);
    const float *U = qd_ref_f32(a->U);
    int32_t *codes = qd_ref_i32(a->codes);
    float *S = qd_ref_f32(a->scales);
    int32_t *Z = qd_ref_i32(a->zeros);
    const int32_t *perm = a->perm.buf ? qd_ref_i32(a->perm) : NULL;

    float *W1 = malloc(N * B * sizeof *W1), *E1 = malloc(N * B * sizeof *E1);
    float *scale = malloc(N * sizeof *scale), *zero = malloc(N * sizeof *zero);
    if (!W1 || !E1 || !scale || !zero) {
        free(W1), free(E1), free(scale), free(zero);
        return qd_fail(QD_ERR_NOMEM, "cpu backend: gptq_sweep: out of memory for a %zu x %zu block", N, B);
    }
    if (!grouped && !stat) {
        /* one parameter set from the whole (prepared) W, before the sweep */
        for (size_t n = 0; n < N; n++) {
            qd_cpu_qparams(&a->cfg, W + n * K, K, 1, &scale[n], &zero[n]);
            S[n] = scale[n];
            Z[n] = (int32_t)zero[n];
        }
    }
    double loss = 0;
    for (size_t i1 = 0; i1 < K; i1 += B) {
        size_t i2 = i1 + B < K ? i1 + B : K, cnt = i2 - i1;
        for (size_t n = 0; n < N; n++) memcpy(W1 + n * cnt, W + n * K + i1, cnt * sizeof *W1);
        for (size_t i = 0; i < cnt; i++) {
            size_t c = i1 + i;
            if (stat) {
                size_t g = (perm ? (size_t)perm[c] : c) / gs;
                for (size_t n = 0; n < N; n++) {
                    scale[n] = S[g * N + n];
                    zero[n] = (float)Z[g * N + n];
                }
            } else if (grouped && c % gs == 0) {
                size_t g = c / gs;
                for (size_t n = 0; n < N; n++) {
                    qd_cpu_qparams(&a->cfg, W + n * K + c, gs, 1, &scale[n], &zero[n]);
                    S[g * N + n] = scale[n];
                    Z[g * N + n] = (int32_t)zero[n];
                }
            }
            float d = U[c * K + c];
            const float *urow = U + c * K + i1; /* U[c, i1:i2] */
            for (size_t n = 0; n < N; n++) {
                float *wr = W1 + n * cnt;
                float w = wr[i];
                int32_t code;
                float q = fp8   ? qd_cpu_qvalue_fp8(w, scale[n], &code)
                          : fp4 ? qd_cpu_qvalue_fp4(w, scale[n], &code)
                                : qd_cpu_qvalue(w, scale[n], zero[n], maxq, &code);
                codes[n * K + c] = code;
                float diff = w - q;
                loss += (double)diff * diff / ((double)d * d);
                float e = diff / d;
                E1[n * cnt + i] = e;
                wr[i] = q;
                for (size_t j = i + 1; j < cnt; j++) wr[j] -= e * urow[j];
            }
        }
        /* the block is final: its dequantized values replace W[:, i1:i2] */
        for (size_t n = 0; n < N; n++) memcpy(W + n * K + i1, W1 + n * cnt, cnt * sizeof *W1);
        if (i2 < K && qd_cpu_exact(be)) {
            /* exact numerics: W[:, i2:] = (float)(W - E1 U[i1:i2, i2:]) in fp64, k in order */
            qd_cpu_xg g = {.M = N, .N = K - i2, .K = cnt, .A = E1, .lda = cnt, .B = U + i1 * K + i2, .ldb = K,
                              .C = W + i2, .ldc = K, .alpha = -1.0, .beta = 1.0};
            qd_status st = qd_cpu_xgemm(((qd_cpu_ctx *)be->ctx)->nthreads, &g);
            if (st != QD_OK) {
                free(W1), free(E1), free(scale), free(zero);
                return st;
            }
        } else if (i2 < K)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)(K - i2), (int)cnt, -1.0f, E1,
                        (int)cnt, U + i1 * K + i2, (int)K, 1.0f, W + i2, (int)K);
    }
    *a->loss_out = loss / 2;
    free(W1), free(E1), free(scale), free(zero);
    return QD_OK;
}
