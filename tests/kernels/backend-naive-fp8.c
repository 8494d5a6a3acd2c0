/* SPDX-License-Identifier: MIT
 * backend-naive-fp8.c - part of tests/kernels/test-backend-ops (backend-naive.h): the CPU backend's
 * fp8_dequant against a decode written here from the OCP E4M3 definition (1 sign, 4 exponent bits of
 * bias 7, 3 mantissa bits; exponent 0: m/8 x 2^-6; S.1111.111: NaN) times the block's scale in fp32.
 * Every code, block 128 x 128 with ragged edges, one scale per row and per tensor, zero and huge scales,
 * and the first NaN code's index over a matrix large enough to be split over threads. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-naive.h"
#include "backend-ops-util.h"

static double ref_e4m3(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
    return s ? -v : v;
}

static int is_nan_code(uint8_t b) { return (b & 0x7f) == 0x7f; }

/* W of the CPU backend against the reference: bits equal everywhere (no NaN code), or the reported
 * index equal to the first NaN code's in row order */
static void check(const char *name, const uint8_t *codes, const float *scale, size_t N, size_t K, size_t bn,
                  size_t bk) {
    size_t cols = (K + bk - 1) / bk, bad = 0;
    int64_t first = -1, at = -2;
    for (size_t i = 0; i < N * K && first < 0; i++)
        if (is_nan_code(codes[i])) first = (int64_t)i;
    qd_buf_t w = up(NULL, N * K + 5);
    QD_EXPECT_EQ_INT(qd_be_fp8_dequant(be, &(struct qd_fp8_dequant_args){.dst = QD_REF(w, 5), .codes = codes,
                                                                         .scale = scale, .N = N, .K = K, .bn = bn,
                                                                         .bk = bk, .nan_at = &at}),
                     QD_OK);
    float *got = down(w);
    if (first < 0)
        for (size_t n = 0; n < N; n++)
            for (size_t k = 0; k < K; k++) {
                float want = (float)ref_e4m3(codes[n * K + k]) * scale[(n / bn) * cols + k / bk];
                bad += memcmp(&want, &got[5 + n * K + k], 4) != 0;
            }
    fprintf(stderr, "  fp8_dequant %-34s [%zu, %zu] / [%zu, %zu]: %zu differ, NaN at %lld (want %lld)\n", name, N, K,
            bn, bk, bad, (long long)at, (long long)first);
    QD_EXPECT(bad == 0);
    QD_EXPECT(at == first);
    for (size_t i = 0; i < 5; i++) QD_EXPECT(got[i] == 0); /* nothing written before the offset */
    qd_buf_free(w);
    free(got);
}

static uint8_t *codes_rand(size_t n) {
    uint8_t *c = malloc(n);
    for (size_t i = 0; i < n; i++) {
        c[i] = (uint8_t)(urand() * 256);
        if (is_nan_code(c[i])) c[i] ^= 1; /* 0x7e / 0xfe: +-448 */
    }
    return c;
}

static float *scales_rand(size_t n) {
    float *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = (float)ldexp(0.5 + urand(), (int)(urand() * 40) - 30);
    return s;
}

static void test_fp8_dequant(void) {
    /* every code at once, per tensor: once with unit scale (the decode itself), once with a scale that
     * makes the subnormal codes' products fp32 subnormals */
    uint8_t all[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)(is_nan_code((uint8_t)i) ? 0x80 : i); /* -0 for the NaNs */
    float one = 1.0f, tiny = 0x1p-120f, zero = 0.0f, huge = 3e38f;
    check("every code, scale 1", all, &one, 16, 16, 16, 16);
    check("every code, scale 2^-120", all, &tiny, 16, 16, 16, 16);
    check("every code, scale 0", all, &zero, 16, 16, 16, 16);
    check("every code, scale 3e38 (overflow)", all, &huge, 16, 16, 16, 16);
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    check("every code with both NaNs", all, &one, 16, 16, 16, 16);

    size_t N = 300, K = 259, bn = 128, bk = 128;
    uint8_t *c = codes_rand(N * K);
    float *s = scales_rand(N > K ? N : K);
    check("block 128x128, ragged edges", c, s, N, K, bn, bk);
    s[4] = 0, s[7] = huge;
    check("block, a zero and a huge scale", c, s, N, K, bn, bk);
    check("block 1 x 32 (many columns)", c, s, 4, K, 1, 32);
    check("one scale per row", c, s, N, K, 1, K);
    check("one scale per tensor", c, s, N, K, N, K);
    c[131 * K + 200] = 0xff, c[250 * K + 3] = 0x7f;
    check("block, two NaN codes", c, s, N, K, bn, bk);
    free(c), free(s);

    /* above QD_ROWS_MIN_VALUES: split over threads; NaNs late in two rows, the first reported */
    N = 2048, K = 2304;
    c = codes_rand(N * K);
    s = scales_rand(16 * 18);
    check("threaded, no NaN", c, s, N, K, bn, bk);
    c[1900 * K + 7] = 0x7f, c[1500 * K + 2000] = 0xff;
    check("threaded, NaNs in rows 1500 and 1900", c, s, N, K, bn, bk);
    c[1500 * K + 2000] = 0;
    c[5] = 0x7f;
    check("threaded, NaNs in rows 0 and 1900", c, s, N, K, bn, bk);
    free(c), free(s);
}

void qd_test_naive_fp8(void) { QD_RUN(test_fp8_dequant); }
