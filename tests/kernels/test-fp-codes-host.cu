/* SPDX-License-Identifier: MIT
 * test-fp-codes-host.cu - the CUDA GPTQ sweep's E4M3 and E2M1 codecs (kernels/cuda/fp-codes.cuh)
 * compiled for the host by nvcc and run without a GPU. Encoding must equal, bit for bit, the host's
 * qd_f32_to_e4m3 / qd_f32_to_e2m1 (src/core) and NVIDIA's own conversions (cuda_fp8.h
 * __nv_cvt_float_to_fp8 saturating to finite, cuda_fp4.h __nv_cvt_float_to_fp4, nearest even) with
 * qdist's two rules for E2M1 (NaN and -0.0 give code 0, qd-fp4.h); every code's value must equal the
 * host's decode and NVIDIA's. Values: every fp32 of the E4M3 subnormal and saturation binades and of
 * E2M1's range, every sign / exponent / kept mantissa with the bits that decide the rounding, and the
 * specials. The device's own build (its bit casts are the intrinsics) runs only in backend-compare. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cuda_fp4.hpp's host path, under -Wextra */
#include <cuda_fp4.h>
#pragma GCC diagnostic pop
#include <cuda_fp8.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fp-codes.cuh"

extern "C" {
#include "qd-fp4.h"
#include "qd-fp8.h"
}

#include "qd-test.h"

/* a NaN keeps its sign in qdist's code (0x7F / 0xFF, both E4M3's NaN); NVIDIA's gives 0x7F for either */
static uint32_t ref_e4m3(float x) {
    uint32_t c = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
    return isnan(x) ? (qd_f32_bits(x) >> 24 & 0x80u) | c : c;
}

static uint32_t ref_e2m1(float x) {
    if (isnan(x) || x == 0.0f) return 0;
    return (uint32_t)__nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest);
}

typedef struct {
    const char *what;
    size_t n, dev_host, host_ref;
} tally;

static void one(tally *t, int fp4, uint32_t u) {
    float x = qd_f32_of_bits(u);
    uint32_t d = fp4 ? dev_e2m1(x) : dev_e4m3(x), h = fp4 ? qd_f32_to_e2m1(x) : qd_f32_to_e4m3(x);
    uint32_t r = fp4 ? ref_e2m1(x) : ref_e4m3(x);
    t->n++;
    if (d != h && t->dev_host++ < 5) fprintf(stderr, "  %s: x=0x%08x (%.9g): device 0x%x, host 0x%x\n", t->what, u, x, d, h);
    if (h != r && t->host_ref++ < 5) fprintf(stderr, "  %s: x=0x%08x (%.9g): host 0x%x, reference 0x%x\n", t->what, u, x, h, r);
}

static void report(const tally *t) {
    fprintf(stderr, "%-44s %10zu values: device != host %zu, host != reference %zu\n", t->what, t->n, t->dev_host,
            t->host_ref);
    QD_EXPECT(t->n > 0);
    QD_EXPECT_EQ_INT(t->dev_host, 0);
    QD_EXPECT_EQ_INT(t->host_ref, 0);
}

/* every u in [lo, hi), both signs */
static void range(const char *what, int fp4, float lo, float hi) {
    tally t = {what, 0, 0, 0};
    for (uint32_t u = qd_f32_bits(lo); u < qd_f32_bits(hi); u++) one(&t, fp4, u), one(&t, fp4, u | 0x80000000u);
    report(&t);
}

/* the top 12 bits (sign, exponent, E4M3's 3 kept mantissa bits) with the low 20 that decide the rounding */
static void rounding_bits(const char *what, int fp4) {
    static const uint32_t low20[] = {0x00000, 0x00001, 0x7ffff, 0x80000, 0x80001, 0xfffff, 0x40000, 0xc0000};
    tally t = {what, 0, 0, 0};
    for (uint32_t hi = 0; hi < 4096; hi++)
        for (size_t l = 0; l < sizeof low20 / sizeof low20[0]; l++) one(&t, fp4, hi << 20 | low20[l]);
    report(&t);
}

static void test_e4m3(void) {
    range("e4m3: every fp32 in +-[2^-12, 2^-5)", 0, 0x1p-12f, 0x1p-5f); /* subnormal codes, first normals */
    range("e4m3: every fp32 in +-[256, 1024)", 0, 256.0f, 1024.0f);    /* top binade, saturation at 448 */
    range("e4m3: every fp32 in +-[1, 2)", 0, 1.0f, 2.0f);
    rounding_bits("e4m3: rounding bits, all exponents, signs", 0);
    const uint32_t sp[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u};
    tally t = {"e4m3: 0, Inf, NaN", 0, 0, 0};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) one(&t, 0, sp[i]);
    report(&t);
    int bad = 0; /* decode: every code, the NaN codes included */
    for (uint32_t b = 0; b < 256; b++) {
        float d = dev_e4m3_value(b), h = qd_e4m3_to_f32((uint8_t)b);
        __half_raw hr = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
        float r = __half2float(__half(hr));
        if (isnan(h) ? !isnan(d) || !isnan(r) : qd_f32_bits(d) != qd_f32_bits(h) || qd_f32_bits(h) != qd_f32_bits(r)) {
            bad++;
            fprintf(stderr, "  e4m3 decode 0x%02x: device %g, host %g, reference %g\n", b, d, h, r);
        }
    }
    QD_EXPECT_EQ_INT(bad, 0);
}

static void test_e2m1(void) {
    range("e2m1: every fp32 in +-[2^-4, 16)", 1, 0x1p-4f, 16.0f);
    rounding_bits("e2m1: rounding bits, all exponents, signs", 1);
    const uint32_t sp[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x00000001u,
                           0x80000001u};
    tally t = {"e2m1: 0, -0, Inf, NaN, denormals", 0, 0, 0};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) one(&t, 1, sp[i]);
    report(&t);
    int bad = 0;
    for (uint32_t c = 0; c < 16; c++) {
        float d = dev_e2m1_value(c), h = qd_e2m1_to_f32((uint8_t)c);
        __half_raw hr = __nv_cvt_fp4_to_halfraw((__nv_fp4_storage_t)c, __NV_E2M1);
        float r = __half2float(__half(hr));
        if (qd_f32_bits(d) != qd_f32_bits(h) || qd_f32_bits(h) != qd_f32_bits(r)) {
            bad++;
            fprintf(stderr, "  e2m1 decode 0x%x: device %g, host %g, reference %g\n", c, d, h, r);
        }
    }
    QD_EXPECT_EQ_INT(bad, 0);
}

/* named points from the formats' definitions (OCP MX / NVIDIA: E4M3 max 448, E2M1 {0, .5, 1, 1.5, 2, 3, 4, 6}) */
static void test_named(void) {
    QD_EXPECT_EQ_INT(dev_e4m3(448.0f), 0x7E);
    QD_EXPECT_EQ_INT(dev_e4m3(464.0f), 0x7E);           /* the tie above 448: saturates */
    QD_EXPECT_EQ_INT(dev_e4m3(1.0f + 0x1p-4f), 0x38);   /* tie between 1 and 1.125: even, 1.0 */
    QD_EXPECT_EQ_INT(dev_e4m3(1.0f + 3 * 0x1p-4f), 0x3A); /* tie: even, 1.25 */
    QD_EXPECT_EQ_INT(dev_e4m3(-0x1p-10f), 0x80);        /* a tie with 0 in the subnormals: -0 */
    QD_EXPECT_EQ_INT(dev_e4m3(3 * 0x1p-10f), 0x02);     /* 1.5 x 2^-9: even, 2 x 2^-9 */
    QD_EXPECT(isnan(dev_e4m3_value(dev_e4m3(NAN))));
    QD_EXPECT(dev_e4m3_value(0x7E) == 448.0f && dev_e4m3_value(0x01) == 0x1p-9f);
    QD_EXPECT_EQ_INT(dev_e2m1(0.25f), 0);
    QD_EXPECT_EQ_INT(dev_e2m1(0.75f), 2);               /* tie between 0.5 and 1: even code, 1.0 */
    QD_EXPECT_EQ_INT(dev_e2m1(2.5f), 4);
    QD_EXPECT_EQ_INT(dev_e2m1(5.0f), 6);
    QD_EXPECT_EQ_INT(dev_e2m1(-7.0f), 15);
    QD_EXPECT_EQ_INT(dev_e2m1(-0.0f), 0);
}

int main(void) {
    QD_RUN(test_named);
    QD_RUN(test_e4m3);
    QD_RUN(test_e2m1);
    return QD_TEST_END();
}
