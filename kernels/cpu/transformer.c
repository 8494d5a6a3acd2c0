/* SPDX-License-Identifier: MIT
 * transformer.c - RMSNorm, RoPE, causal GQA attention and the token cross-entropy on the CPU.
 * Attention runs one (sequence, head) at a time: S = Q K^T through BLAS, causal fp32 softmax, O = P V;
 * memory is one seq_len x seq_len score matrix. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"
#include "qd-check.h"
#include "qd-log.h"

qd_status qd_cpu_rmsnorm(qd_backend_t be, const struct qd_rmsnorm_args *a) {
    (void)be;
    const float *w = a->weight.buf ? qd_ref_f32(a->weight) : NULL;
    for (size_t r = 0; r < a->rows; r++) {
        const float *x = qd_ref_f32(a->x) + r * a->ld;
        float *o = qd_ref_f32(a->out) + r * a->ld;
        double ss = 0;
        for (size_t c = 0; c < a->dim; c++) ss += (double)x[c] * x[c];
        float var = (float)(ss / (double)a->dim);
        float inv = 1.0f / sqrtf(var + a->eps);
        for (size_t c = 0; c < a->dim; c++) {
            float n = x[c] * inv;
            o[c] = w ? w[c] * n : n;
        }
    }
    return QD_OK;
}

qd_status qd_cpu_rope(qd_backend_t be, const struct qd_rope_args *a) {
    (void)be;
    size_t half = a->head_dim / 2;
    const float *cs = qd_ref_f32(a->cos), *sn = qd_ref_f32(a->sin);
    for (size_t r = 0; r < a->rows; r++) {
        size_t pos = r % a->seq_len;
        const float *c = cs + pos * half, *s = sn + pos * half;
        for (size_t h = 0; h < a->heads; h++) {
            float *x = qd_ref_f32(a->x) + r * a->ld + h * a->head_dim;
            for (size_t i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * c[i] - x2 * s[i];
                x[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
    return QD_OK;
}

qd_status qd_cpu_attention(qd_backend_t be, const struct qd_attention_args *a) {
    (void)be;
    size_t T = a->seq_len, hd = a->head_dim, group = a->heads / a->kv_heads;
    size_t qld = a->heads * hd, kld = a->kv_heads * hd;
    float *S;
    QD_ALLOC(S, T * T);
    for (size_t s = 0; s < a->nseq; s++) {
        for (size_t h = 0; h < a->heads; h++) {
            size_t kh = h / group;
            const float *q = qd_ref_f32(a->q) + s * T * qld + h * hd;
            const float *k = qd_ref_f32(a->k) + s * T * kld + kh * hd;
            const float *v = qd_ref_f32(a->v) + s * T * kld + kh * hd;
            float *o = qd_ref_f32(a->out) + s * T * qld + h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, a->scale, q, (int)qld, k,
                        (int)kld, 0.0f, S, (int)T);
            for (size_t i = 0; i < T; i++) {
                float *row = S + i * T;
                size_t j0 = a->window && i + 1 > a->window ? i + 1 - a->window : 0;
                float m = -INFINITY;
                for (size_t j = j0; j <= i; j++) m = row[j] > m ? row[j] : m; /* no libm call in the hot loop */
                double sum = 0;
                for (size_t j = j0; j <= i; j++) {
                    row[j] = expf(row[j] - m);
                    sum += row[j];
                }
                float inv = (float)(1.0 / sum);
                for (size_t j = 0; j < j0; j++) row[j] = 0;
                for (size_t j = j0; j <= i; j++) row[j] *= inv;
                for (size_t j = i + 1; j < T; j++) row[j] = 0;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, S, (int)T, v,
                        (int)kld, 0.0f, o, (int)qld);
        }
    }
    free(S);
    return QD_OK;
}

qd_status qd_cpu_cross_entropy(qd_backend_t be, const struct qd_xent_args *a) {
    (void)be;
    const float *L = qd_ref_f32(a->logits);
    const int32_t *t = qd_ref_i32(a->targets);
    double total = 0;
    for (size_t r = 0; r < a->rows; r++) {
        const float *row = L + r * a->vocab;
        if (t[r] < 0 || (size_t)t[r] >= a->vocab)
            return qd_fail(QD_ERR_INTERNAL, "cpu backend: cross_entropy: target %d outside vocab %zu", t[r], a->vocab);
        float m = -INFINITY;
        for (size_t c = 0; c < a->vocab; c++) m = fmaxf(m, row[c]);
        double s = 0;
        for (size_t c = 0; c < a->vocab; c++) s += exp((double)row[c] - m);
        total += log(s) + m - row[t[r]];
    }
    *a->sum_out = total;
    return QD_OK;
}
