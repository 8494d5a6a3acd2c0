/* SPDX-License-Identifier: MIT
 * backend-compare-fp8.c - part of tests/kernels/test-backend-ops (backend-compare-util.h): fp8_dequant
 * of the backend under test against the CPU backend's, bit for bit, and the same first NaN index. The
 * shapes of an FP8 source (block 128 x 128 with ragged edges, one scale per row, one per tensor), every
 * code with subnormal, zero and overflowing products, NaN codes, an offset destination; on a CUDA
 * device also a Linear of more than one 64 MiB upload chunk (kernels/cuda/fp8.cu), NaN in the second. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend-compare-util.h"
#include "qd-backend.h"

static void fp8_case(const char *name, const uint8_t *codes, const float *scale, size_t N, size_t K, size_t bn,
                     size_t bk, size_t off) {
    pbuf w = P(NULL, N * K + off);
    int64_t at[2] = {-2, -2};
    BOTH(qd_be_fp8_dequant(be, &(struct qd_fp8_dequant_args){.dst = QD_REF(w.b[i], off), .codes = codes, .scale = scale,
                                                             .N = N, .K = K, .bn = bn, .bk = bk, .nan_at = &at[i]}));
    char what[128];
    snprintf(what, sizeof what, "fp8_dequant %s [%zu, %zu]/[%zu, %zu]", name, N, K, bn, bk);
    if (at[0] < 0) cmpi(what, w, 1); /* with a NaN code W is unspecified: the index is the result */
    fprintf(stderr, "  %-60s NaN at %lld / %lld\n", what, (long long)at[0], (long long)at[1]);
    QD_EXPECT(at[0] == at[1]);
    pfree(w);
}

static uint8_t *codes_rand(size_t n) {
    uint8_t *c = malloc(n);
    for (size_t i = 0; i < n; i++) {
        c[i] = (uint8_t)(urand() * 256);
        if ((c[i] & 0x7f) == 0x7f) c[i] ^= 1;
    }
    return c;
}

static float *scales_rand(size_t n) {
    float *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = (float)(0.5 + urand()) * (i % 3 ? 1e-3f : 0x1p-100f);
    return s;
}

static void test_fp8_dequant(void) {
    uint8_t all[256];
    float one = 1.0f, tiny = 0x1p-120f, zero = 0.0f, huge = 3e38f;
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)((i & 0x7f) == 0x7f ? 0x80 : i);
    fp8_case("every code, scale 1", all, &one, 16, 16, 16, 16, 0);
    fp8_case("every code, scale 2^-120", all, &tiny, 16, 16, 16, 16, 0);
    fp8_case("every code, scale 0", all, &zero, 16, 16, 16, 16, 0);
    fp8_case("every code, scale 3e38", all, &huge, 16, 16, 16, 16, 0);
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    fp8_case("every code, both NaNs", all, &one, 16, 16, 16, 16, 0);

    size_t N = 300, K = 259;
    uint8_t *c = codes_rand(N * K);
    float *s = scales_rand(N);
    fp8_case("block, ragged", c, s, N, K, 128, 128, 0);
    fp8_case("block, ragged, offset 7", c, s, N, K, 128, 128, 7);
    s[2] = 0, s[5] = huge;
    fp8_case("block, zero and huge scales", c, s, N, K, 128, 128, 0);
    fp8_case("per row", c, s, N, K, 1, K, 0);
    fp8_case("per tensor", c, s, N, K, N, K, 0);
    c[200 * K + 258] = 0x7f, c[299 * K] = 0xff;
    fp8_case("block, two NaNs", c, s, N, K, 128, 128, 0);
    free(c), free(s);

    if (DEV.kind != QD_BACKEND_CUDA) return; /* the chunking below is the CUDA backend's */
    N = 9000, K = 7500; /* 67.5 MB of codes: two chunks, rows cut at a row that is not a block edge */
    c = codes_rand(N * K);
    s = scales_rand(71 * 59);
    fp8_case("two upload chunks", c, s, N, K, 128, 128, 0);
    c[(size_t)8950 * K + 11] = 0x7f, c[(size_t)8990 * K] = 0xff;
    fp8_case("two upload chunks, NaNs in the second", c, s, N, K, 128, 128, 0);
    free(c), free(s);
}

void qd_test_compare_fp8(void) { QD_RUN(test_fp8_dequant); }
