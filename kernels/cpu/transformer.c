/* SPDX-License-Identifier: MIT
 * transformer.c - RMSNorm, RoPE, causal GQA attention and the token cross-entropy on the CPU.
 * Attention runs one (sequence, head) at a time in query tiles, causal part only; memory is one
 * QD_ATT_TILE x seq_len score block. */
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

/* One (sequence, head) at a time: query tiles of QD_ATT_TILE rows; S = Q_tile K^T over the keys the
 * tile can see (the causal upper-right blocks are never computed), fp32 softmax with the causal
 * mask, O_tile = P V, both products through BLAS (whose threads do the parallel work: running items
 * on threads of our own on top of OpenBLAS's oversubscribes a small machine badly). */
#define QD_ATT_TILE 128

typedef struct {
    const struct qd_attention_args *a;
} attn_job;

static qd_status attn_item(void *arg, size_t item) {
    const attn_job *j = arg;
    const struct qd_attention_args *a = j->a;
    size_t T = a->seq_len, hd = a->head_dim, group = a->heads / a->kv_heads;
    size_t qld = a->heads * hd, kld = a->kv_heads * hd;
    size_t s = item / a->heads, h = item % a->heads, kh = h / group;
    const float *q = qd_ref_f32(a->q) + s * T * qld + h * hd;
    const float *k = qd_ref_f32(a->k) + s * T * kld + kh * hd;
    const float *v = qd_ref_f32(a->v) + s * T * kld + kh * hd;
    float *o = qd_ref_f32(a->out) + s * T * qld + h * hd;
    size_t tile = T < QD_ATT_TILE ? T : QD_ATT_TILE;
    float *S = malloc(tile * T * sizeof *S);
    if (!S) return qd_fail(QD_ERR_NOMEM, "cpu backend: attention: out of memory for %zu positions", T);
    for (size_t i0 = 0; i0 < T; i0 += tile) {
        size_t i1 = i0 + tile < T ? i0 + tile : T, m = i1 - i0;
        size_t j0 = a->window && i0 + 1 > a->window ? i0 + 1 - a->window : 0, n = i1 - j0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)hd, a->scale, q + i0 * qld,
                    (int)qld, k + j0 * kld, (int)kld, 0.0f, S, (int)n);
        for (size_t r = 0; r < m; r++) {
            size_t i = i0 + r;
            float *row = S + r * n;
            size_t lo = a->window && i + 1 > a->window ? i + 1 - a->window : 0; /* first visible key */
            size_t b = lo - j0, e = i - j0;                                       /* [b, e] in the row */
            float mx = row[b];
            for (size_t c = b + 1; c <= e; c++) mx = row[c] > mx ? row[c] : mx; /* no libm call */
            double sum = 0;
            for (size_t c = b; c <= e; c++) {
                row[c] = expf(row[c] - mx);
                sum += row[c];
            }
            float inv = (float)(1.0 / sum);
            for (size_t c = 0; c < b; c++) row[c] = 0;
            for (size_t c = b; c <= e; c++) row[c] *= inv;
            for (size_t c = e + 1; c < n; c++) row[c] = 0;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)hd, (int)n, 1.0f, S, (int)n,
                    v + j0 * kld, (int)kld, 0.0f, o + i0 * qld, (int)qld);
    }
    free(S);
    return QD_OK;
}

qd_status qd_cpu_attention(qd_backend_t be, const struct qd_attention_args *a) {
    attn_job j = {.a = a};
    if (qd_cpu_exact(be)) return qd_cpu_attention_exact(be, a);
    for (size_t i = 0; i < a->nseq * a->heads; i++) QD_CHECK(attn_item(&j, i));
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
