/* SPDX-License-Identifier: MIT
 * qd-fp8-dequant.c - e4m3 codes times their block scales into fp32 on the host (qd-fp8.h). */
#include <stddef.h>

#include "qd-fp8.h"
#include "qd-rows.h"

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* rows [r0, r1) of one dequantization, bn x bk codes sharing one scale (a row of the scale grid has
 * cdiv(K, bk) entries; each scale taken once per row); bad receives the part's first NaN code, or -1 */
typedef struct {
    const uint8_t *codes;
    const float *scale;
    float lut[256]; /* the decode of every code: one load per element instead of a decode */
    float *out;
    int64_t K, bn, bk;
    int64_t bad[QD_ROWS_MAX_PARTS];
} deq_job;

static void deq_rows(void *arg, int part, size_t r0, size_t r1) {
    deq_job *j = arg;
    int64_t K = j->K, cols = cdiv(K, j->bk);
    j->bad[part] = -1;
    for (int64_t n = (int64_t)r0; n < (int64_t)r1; n++) {
        const float *srow = j->scale + (n / j->bn) * cols;
        const uint8_t *c = j->codes + n * K;
        float *o = j->out + n * K;
        unsigned nan = 0;
        for (int64_t cb = 0; cb < cols; cb++) {
            int64_t k0 = cb * j->bk, k1 = k0 + j->bk < K ? k0 + j->bk : K;
            float sc = srow[cb];
            for (int64_t k = k0; k < k1; k++) {
                nan |= (c[k] & 0x7f) == 0x7f;
                o[k] = j->lut[c[k]] * sc;
            }
        }
        if (nan) { /* the rest of the part is not needed: the caller fails on the first NaN */
            for (int64_t k = 0; k < K && j->bad[part] < 0; k++)
                if ((c[k] & 0x7f) == 0x7f) j->bad[part] = n * K + k;
            return;
        }
    }
}

int64_t qd_fp8_dequant(const uint8_t *codes, const float *scale, int64_t N, int64_t K, int64_t bn, int64_t bk,
                       float *out) {
    if (N <= 0 || K <= 0) return -1; /* a [N, 0] weight has no scale columns */
    deq_job j = {.codes = codes, .scale = scale, .out = out, .K = K, .bn = bn, .bk = bk};
    for (int c = 0; c < 256; c++) j.lut[c] = qd_e4m3_to_f32((uint8_t)c);
    qd_rows_run((size_t)N, (size_t)K, deq_rows, &j);
    for (int t = 0; t < qd_rows_parts((size_t)N, (size_t)K); t++)
        if (j.bad[t] >= 0) return j.bad[t]; /* parts are in row order: the first part's NaN is the first */
    return -1;
}
