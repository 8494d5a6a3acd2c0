/* SPDX-License-Identifier: MIT
 * test-scale-stored-host.cu - the CUDA quantizer's scale rounding (kernels/cuda/scale-stored.cuh,
 * qd_scale_stored_dev) compiled for the host by nvcc and run without a GPU. It must equal, bit for
 * bit, the CPU backend's qd_scale_stored (kernels/cpu/quant.c) and a reference built here on NVIDIA's
 * own conversions (cuda_fp16.h __float2half_rn, cuda_bf16.h __float2bfloat16_rn: nearest even) with
 * the contract's rules for 0, Inf and NaN (kernels/qd-backend.h). Values: every fp32 of the binades
 * where F16 turns subnormal or overflows and where BF16 meets FLT_MIN or FLT_MAX; every sign, exponent
 * and high mantissa with the low bits that decide the rounding (ties, one below, one above); and
 * named points whose stored value is written out here from the IEEE rules. The device's own build of
 * the same source (its bit casts are the intrinsics) runs only in backend-compare on a GPU. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "scale-stored.cuh"

extern "C" {
#include "qd-backend.h"
}

#include "qd-test.h"

static float ref_stored(qd_dtype dt, float s) {
    float r;
    if (dt == QD_DT_F16) r = __half2float(__float2half_rn(s));
    else if (dt == QD_DT_BF16) r = __bfloat162float(__float2bfloat16_rn(s));
    else return s;
    if (!isfinite(r)) return s;
    if (r == 0.0f) return dt == QD_DT_F16 ? ldexpf(1.0f, -24) : FLT_MIN;
    return r;
}

typedef struct {
    const char *what;
    size_t n, dev_cpu, cpu_ref;
} tally;

static void one(tally *t, qd_dtype dt, uint32_t u) {
    float s = qd_f32_of_bits(u);
    uint32_t d = qd_f32_bits(qd_scale_stored_dev(dt, s)), c = qd_f32_bits(qd_scale_stored(dt, s)), r = qd_f32_bits(ref_stored(dt, s));
    t->n++;
    if (d != c && t->dev_cpu++ < 5)
        fprintf(stderr, "  %s: s=0x%08x (%.9g): device 0x%08x, cpu 0x%08x\n", t->what, u, s, d, c);
    if (c != r && t->cpu_ref++ < 5)
        fprintf(stderr, "  %s: s=0x%08x (%.9g): cpu 0x%08x, reference 0x%08x\n", t->what, u, s, c, r);
}

static void report(const tally *t) {
    fprintf(stderr, "%-40s %11zu values: device != cpu %zu, cpu != reference %zu\n", t->what, t->n, t->dev_cpu,
            t->cpu_ref);
    QD_EXPECT(t->n > 0);
    QD_EXPECT_EQ_INT(t->dev_cpu, 0);
    QD_EXPECT_EQ_INT(t->cpu_ref, 0);
}

/* every u in [lo, hi) */
static void range(const char *what, qd_dtype dt, uint32_t lo, uint32_t hi) {
    tally t = {what, 0, 0, 0};
    for (uint32_t u = lo; u < hi; u++) one(&t, dt, u);
    report(&t);
}

/* the low 16 bits that decide F16 (bit 13 the last kept, 12 the first dropped) and BF16 (bits 16 / 15)
 * rounding, under every one of the 65536 sign / exponent / high mantissa patterns */
static void rounding_bits(const char *what, qd_dtype dt) {
    static const uint32_t low13[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff};
    tally t = {what, 0, 0, 0};
    for (uint32_t hi = 0; hi < 65536; hi++)
        for (uint32_t b = 0; b < 8; b++)
            for (size_t l = 0; l < sizeof low13 / sizeof low13[0]; l++) one(&t, dt, hi << 16 | b << 13 | low13[l]);
    report(&t);
}

static void test_f16(void) {
    range("f16: every fp32 in [2^-26, 2^-13)", QD_DT_F16, qd_f32_bits(0x1p-26f), qd_f32_bits(0x1p-13f));
    range("f16: every fp32 in [2^15, 2^17)", QD_DT_F16, qd_f32_bits(0x1p15f), qd_f32_bits(0x1p17f));
    range("f16: every fp32 below 2^-126 (fp32 subnormal)", QD_DT_F16, 0, 0x00800000u);
    rounding_bits("f16: rounding bits, all exponents, signs", QD_DT_F16);
}

static void test_bf16(void) {
    range("bf16: every fp32 below 2^-124", QD_DT_BF16, 0, qd_f32_bits(0x1p-124f));
    range("bf16: every fp32 in [2^127, Inf]", QD_DT_BF16, qd_f32_bits(0x1p127f), 0x7f800001u);
    range("bf16: every fp32 in [1, 4)", QD_DT_BF16, qd_f32_bits(1.0f), qd_f32_bits(4.0f));
    rounding_bits("bf16: rounding bits, all exponents, signs", QD_DT_BF16);
}

static void test_other_dtypes(void) { /* fp32 scales: s itself, NaN bits included */
    static const qd_dtype dts[] = {QD_DT_F32, QD_DT_BOOL, QD_DT_F64, QD_DT_F8_E4M3};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        size_t bad = 0;
        for (uint32_t hi = 0; hi < 65536; hi++) {
            uint32_t u = hi << 16 | 0x9001u;
            bad += qd_f32_bits(qd_scale_stored_dev(dts[i], qd_f32_of_bits(u))) != u || qd_f32_bits(qd_scale_stored(dts[i], qd_f32_of_bits(u))) != u;
        }
        QD_EXPECT_EQ_INT(bad, 0);
    }
}

/* named points, their stored value from the IEEE rules (nearest, ties to even) and the contract */
static void test_named(void) {
    const float h = 0x1p-24f; /* F16's smallest subnormal */
    struct { qd_dtype dt; float s, want; } c[] = {
        {QD_DT_F16, 65504.0f, 65504.0f},                     /* F16 max */
        {QD_DT_F16, 65519.996f, 65504.0f},                   /* below the midpoint to 65536 */
        {QD_DT_F16, 65520.0f, 65520.0f},                     /* rounds to Inf: kept, refused later */
        {QD_DT_F16, 1e30f, 1e30f},
        {QD_DT_F16, 1.0f + 0x1p-11f, 1.0f},                  /* tie, to the even 1.0 */
        {QD_DT_F16, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-9f},    /* tie, to the even 1 + 2^-9 */
        {QD_DT_F16, 1.0f + 0x1p-11f + 0x1p-23f, 1.0f + 0x1p-10f},
        {QD_DT_F16, 0x1p-14f - 0x1p-26f, 0x1p-14f},          /* the largest subnormal rounds up to normal */
        {QD_DT_F16, 1.5f * h, 2 * h},                        /* subnormal tie, to even */
        {QD_DT_F16, 2.5f * h, 2 * h},
        {QD_DT_F16, 0.5f * h, h},                            /* tie to 0: underflow, the smallest positive */
        {QD_DT_F16, 0.49f * h, h},
        {QD_DT_F16, 0.0f, h},
        {QD_DT_F16, 1e-5f / 7, 1.430511474609375e-06f},      /* AWQ's smallest w3 scale: 24 x 2^-24 */
        {QD_DT_F16, 0.1f, 0.0999755859375f},
        {QD_DT_BF16, 1.0f + 0x1p-8f, 1.0f},                  /* tie, to even */
        {QD_DT_BF16, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-6f},
        {QD_DT_BF16, 0.1f, 0.10009765625f},
        {QD_DT_BF16, 3.3895313892515355e38f, 3.3895313892515355e38f}, /* BF16 max */
        {QD_DT_BF16, FLT_MAX, FLT_MAX},                      /* rounds to Inf: kept */
        {QD_DT_BF16, 0.0f, FLT_MIN},
        {QD_DT_BF16, 0x1p-134f, FLT_MIN},                    /* tie to 0: underflow */
        {QD_DT_BF16, 0x1p-133f, 0x1p-133f},                  /* BF16's smallest subnormal */
        {QD_DT_F32, 0.1f, 0.1f},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        float d = qd_scale_stored_dev(c[i].dt, c[i].s), p = qd_scale_stored(c[i].dt, c[i].s);
        if (qd_f32_bits(d) != qd_f32_bits(c[i].want) || qd_f32_bits(p) != qd_f32_bits(c[i].want))
            fprintf(stderr, "  named %zu: %s s=%.9g: want %.9g, device %.9g, cpu %.9g\n", i,
                    c[i].dt == QD_DT_F16 ? "f16" : c[i].dt == QD_DT_BF16 ? "bf16" : "f32", c[i].s, c[i].want, d, p);
        QD_EXPECT(qd_f32_bits(d) == qd_f32_bits(c[i].want));
        QD_EXPECT(qd_f32_bits(p) == qd_f32_bits(c[i].want));
    }
    /* NaN and Inf: s itself, bit for bit */
    const uint32_t keep[] = {0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7f800000u, 0xff800000u};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        for (int dt = 0; dt < 2; dt++) {
            qd_dtype t = dt ? QD_DT_BF16 : QD_DT_F16;
            QD_EXPECT(qd_f32_bits(qd_scale_stored_dev(t, qd_f32_of_bits(keep[i]))) == keep[i]);
            QD_EXPECT(qd_f32_bits(qd_scale_stored(t, qd_f32_of_bits(keep[i]))) == keep[i]);
        }
}

int main(void) {
    QD_RUN(test_named);
    QD_RUN(test_f16);
    QD_RUN(test_bf16);
    QD_RUN(test_other_dtypes);
    return QD_TEST_END();
}
