/* SPDX-License-Identifier: MIT
 * qd-qlinear.c - a quantized Linear's arrays: allocation, scale rounding and checks, dequantisation. */
#include "qd-qlinear.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-fp4.h"
#include "qd-fp8.h"
#include "qd-hugemem.h"
#include "qd-log.h"
#include "qd-rows.h"

qd_status qd_qlinear_alloc(qd_qlinear *l, int N, int K, int G) {
    l->N = N, l->K = K, l->G = G;
    /* a device backend writes the codes in one download right after this: huge pages from 2 MiB */
    l->codes = qd_hugemem_alloc((size_t)N * K, (size_t)2 << 20);
    l->scales = malloc((size_t)G * N * sizeof *l->scales);
    l->zeros = malloc((size_t)G * N * sizeof *l->zeros);
    l->g_idx = malloc((size_t)K * sizeof *l->g_idx);
    if (!l->codes || !l->scales || !l->zeros || !l->g_idx) {
        qd_qlinear_free(l);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory for quantization results (%d x %d)", l->name, N, K);
    }
    return QD_OK;
}

void qd_qlinear_free(qd_qlinear *l) {
    free(l->codes);
    free(l->scales);
    free(l->zeros);
    free(l->g_idx);
    l->codes = NULL;
    l->scales = NULL;
    l->zeros = NULL;
    l->g_idx = NULL;
}

qd_qlinear qd_qlinear_header(const qd_qlinear *l) {
    qd_qlinear h = *l;
    h.codes = NULL, h.scales = NULL, h.zeros = NULL, h.g_idx = NULL;
    return h;
}

qd_status qd_qlinear_copy_arrays(qd_qlinear *dst, const qd_qlinear *src, int with_codes) {
    size_t gn = (size_t)src->G * (size_t)src->N, nk = (size_t)src->N * (size_t)src->K;
    dst->codes = with_codes ? malloc(nk ? nk : 1) : NULL;
    dst->scales = malloc(gn * sizeof *dst->scales);
    dst->zeros = malloc(gn * sizeof *dst->zeros);
    dst->g_idx = malloc((size_t)src->K * sizeof *dst->g_idx);
    dst->input_scale = src->input_scale; /* data measured with the arrays, not a planned header field */
    if (!dst->scales || !dst->zeros || !dst->g_idx || (with_codes && !dst->codes)) {
        qd_qlinear_free(dst);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory copying a quantized layer", dst->name);
    }
    memcpy(dst->scales, src->scales, gn * sizeof *dst->scales);
    memcpy(dst->zeros, src->zeros, gn * sizeof *dst->zeros);
    memcpy(dst->g_idx, src->g_idx, (size_t)src->K * sizeof *dst->g_idx);
    if (with_codes) memcpy(dst->codes, src->codes, nk);
    return QD_OK;
}

qd_qrecord qd_qrecord_of(int block, int rank, const qd_qlinear *q, const qd_qstats *s) {
    qd_qrecord r;
    memset(&r, 0, sizeof r); /* the padding too: records travel as bytes */
    r.block = block, r.rank = rank;
    snprintf(r.name, sizeof r.name, "%.63s", q->name);
    r.bits = q->bits, r.group_size = q->group_size, r.sym = q->sym, r.scheme = (int)q->scheme;
    r.N = q->N, r.K = q->K;
    r.s = *s;
    return r;
}

int qd_qlinear_g_idx_sequential(const qd_qlinear *l) {
    for (int k = 0; k < l->K; k++) {
        int expect = l->group_size > 0 ? k / l->group_size : 0;
        if (l->g_idx[k] != expect) return 0;
    }
    return 1;
}

void qd_qlinear_round_scales(qd_qlinear *l, qd_dtype dt) {
    if (!l->scales || qd_scheme_is_fp4(l->scheme) || !qd_dtype_is_float(dt) || dt == QD_DT_F32 || dt == QD_DT_F64) return;
    size_t n = (size_t)l->G * l->N;
    for (size_t i = 0; i < n; i++) {
        unsigned char b[8];
        qd_from_f32(dt, &l->scales[i], b, 1);
        qd_to_f32(dt, b, &l->scales[i], 1);
    }
}

qd_status qd_qlinear_check_scales(const qd_qlinear *l, qd_dtype dt, const char *what) {
    if (!l->scales) return QD_OK;
    for (int g = 0; g < l->G; g++)
        for (int n = 0; n < l->N; n++) {
            float s = l->scales[(size_t)g * l->N + n], r = s;
            if (qd_dtype_is_float(dt) && dt != QD_DT_F32 && dt != QD_DT_F64 && !qd_scheme_is_fp4(l->scheme)) {
                unsigned char b[8];
                qd_from_f32(dt, &s, b, 1);
                qd_to_f32(dt, b, &r, 1);
            }
            if (!isfinite(s))
                return qd_fail(QD_ERR_NUMERIC, "%s: scale of row %d, group %d is %g (not finite)",
                               l->name, n, g, (double)s);
            if (!isfinite(r))
                return qd_fail(QD_ERR_NUMERIC, "%s: scale of row %d, group %d is %g, which does not fit %s (%s "
                               "stores scales as %s)", l->name, n, g, (double)s, qd_dtype_name(dt),
                               what, qd_dtype_name(dt));
        }
    return QD_OK;
}

float qd_qlinear_code_value(const qd_qlinear *l, size_t nk, size_t gi) {
    if (qd_scheme_is_fp8(l->scheme)) return qd_e4m3_to_f32(l->codes[nk]);
    if (qd_scheme_is_fp4(l->scheme)) return qd_e2m1_to_f32(l->codes[nk]);
    return (float)((int)l->codes[nk] - l->zeros[gi]);
}

void qd_qlinear_dequant(const qd_qlinear *l, float *w) { qd_qlinear_dequant_rounded(l, QD_DT_F32, w); }

float qd_scale_round(qd_dtype dt, float x) {
    switch (dt) {
    case QD_DT_F16: return qd_f16_to_f32(qd_f32_to_f16(x));
    case QD_DT_BF16: return qd_bf16_to_f32(qd_f32_to_bf16(x));
    default: return x;
    }
}

uint8_t qd_qlinear_nvfp4_local(const qd_qlinear *l, float s) { return qd_f32_to_e4m3(s * l->global_scale); }

typedef struct {
    const qd_qlinear *l;
    qd_dtype dt;
    float *w;
} deq_job;

static void deq_rows(void *arg, int part, size_t r0, size_t r1) {
    (void)part;
    const deq_job *j = arg;
    const qd_qlinear *l = j->l;
    for (size_t n = r0; n < r1; n++)
        for (size_t k = 0; k < (size_t)l->K; k++) {
            size_t gi = (size_t)l->g_idx[k] * l->N + n, nk = n * l->K + k;
            j->w[nk] = qd_qlinear_code_value(l, nk, gi) * qd_scale_round(j->dt, l->scales[gi]);
        }
}

void qd_qlinear_dequant_rounded(const qd_qlinear *l, qd_dtype scale_dtype, float *w) {
    if (qd_scheme_is_fp4(l->scheme)) scale_dtype = QD_DT_F32; /* the stored scales are the checkpoint's */
    /* each value computed alone: the same bits for any number of threads */
    qd_rows_run((size_t)l->N, (size_t)l->K, deq_rows, &(deq_job){.l = l, .dt = scale_dtype, .w = w});
}
