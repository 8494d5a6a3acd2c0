/* SPDX-License-Identifier: MIT
 * Float conversions checked against values whose bit patterns are fixed by IEEE 754 / bfloat16. */
#include <math.h>

#include "qd-dtype.h"
#include "qd-fp8.h"
#include "qd-status.h"
#include "qd-test.h"

static void test_bf16(void) {
    QD_EXPECT_EQ_INT(qd_f32_to_bf16(1.0f), 0x3f80);
    QD_EXPECT_EQ_INT(qd_f32_to_bf16(-2.0f), 0xc000);
    /* 1 + 2^-8 is exactly half-way between two bf16 values: ties to even (down to 1.0) */
    QD_EXPECT_EQ_INT(qd_f32_to_bf16(1.00390625f), 0x3f80);
    /* 1 + 3*2^-8 is half-way too: ties to even rounds up to 1 + 2^-6 */
    QD_EXPECT_EQ_INT(qd_f32_to_bf16(1.01171875f), 0x3f82);
    QD_EXPECT_NEAR(qd_bf16_to_f32(0x4049), 3.140625, 0);
    QD_EXPECT(isnan(qd_bf16_to_f32(qd_f32_to_bf16(NAN))));
    QD_EXPECT(isinf(qd_bf16_to_f32(qd_f32_to_bf16(INFINITY))));
}

static void test_f16(void) {
    QD_EXPECT_EQ_INT(qd_f32_to_f16(1.0f), 0x3c00);
    QD_EXPECT_EQ_INT(qd_f32_to_f16(-2.0f), 0xc000);
    QD_EXPECT_EQ_INT(qd_f32_to_f16(65504.0f), 0x7bff);
    QD_EXPECT_EQ_INT(qd_f32_to_f16(65520.0f), 0x7c00);     /* rounds to infinity */
    QD_EXPECT_EQ_INT(qd_f32_to_f16(5.9604644775390625e-08f), 0x0001); /* smallest subnormal 2^-24 */
    QD_EXPECT_EQ_INT(qd_f32_to_f16(2.98023223876953125e-08f), 0x0000); /* 2^-25: tie to even -> 0 */
    QD_EXPECT_EQ_INT(qd_f32_to_f16(6.103515625e-05f), 0x0400);         /* smallest normal 2^-14 */
    QD_EXPECT_NEAR(qd_f16_to_f32(0x0001), 5.9604644775390625e-08, 0);
    QD_EXPECT_NEAR(qd_f16_to_f32(0x3555), 0.333251953125, 0);
    /* every finite half round-trips exactly */
    int bad = 0;
    for (unsigned h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (qd_f32_to_f16(qd_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    QD_EXPECT_EQ_INT(bad, 0);
}

static void test_names(void) {
    qd_dtype dt;
    QD_EXPECT_EQ_INT(qd_dtype_from_name("BF16", &dt), 0);
    QD_EXPECT_EQ_INT(dt, QD_DT_BF16);
    QD_EXPECT_EQ_INT(qd_dtype_from_name("F8_E4M3FNUZ", &dt), 0);
    QD_EXPECT_EQ_INT(qd_dtype_bits(dt), 8);
    QD_EXPECT_EQ_INT(qd_dtype_from_name("bf16", &dt), -1);
    QD_EXPECT_EQ_INT(qd_status_exit_code(QD_ERR_USAGE), 2);
    QD_EXPECT_EQ_INT(qd_status_exit_code(QD_ERR_FORMAT), 1);
}

/* float8_e4m3fn from its bit layout (OCP FP8 E4M3: sign, 4 exponent bits with bias 7, 3 mantissa bits,
 * subnormals at exponent 0, no infinities, S.1111.111 the only NaN), in double arithmetic */
static double e4m3_reference(unsigned code) {
    int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e == 0 ? (m / 8.0) * pow(2.0, -6) : (1.0 + m / 8.0) * pow(2.0, e - 7);
    return sign ? -v : v;
}

static void test_f8_e4m3(void) {
    int bad = 0, nans = 0;
    for (unsigned c = 0; c < 256; c++) {
        double want = e4m3_reference(c);
        float got = qd_e4m3_to_f32((uint8_t)c);
        if (isnan(want)) nans += isnan(got);
        else if ((double)got != want || !signbit(got) != !signbit(want)) bad++;
    }
    QD_EXPECT_EQ_INT(bad, 0);
    QD_EXPECT_EQ_INT(nans, 2);
    /* values fixed by the format (torch.finfo(torch.float8_e4m3fn): max 448, tiny 2^-6, smallest subnormal 2^-9) */
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0x7e), 448.0, 0);
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0xfe), -448.0, 0);
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0x38), 1.0, 0);
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0x08), 0.015625, 0);
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0x01), 0.001953125, 0);
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0x77), 240.0, 0);
    QD_EXPECT(signbit(qd_e4m3_to_f32(0x80)) && qd_e4m3_to_f32(0x80) == 0.0f);
    /* positive codes 0..0x7e increase strictly */
    int mono = 1;
    for (unsigned c = 1; c < 0x7f; c++) mono &= qd_e4m3_to_f32((uint8_t)c) > qd_e4m3_to_f32((uint8_t)(c - 1));
    QD_EXPECT(mono);
    /* qd_to_f32 decodes F8_E4M3 and F8_E8M0 element by element */
    const uint8_t codes[3] = {0x38, 0xc4, 0x7f};
    float out[3];
    qd_to_f32(QD_DT_F8_E4M3, codes, out, 3);
    QD_EXPECT_NEAR(out[0], 1.0, 0);
    QD_EXPECT_NEAR(out[1], -3.0, 0);
    QD_EXPECT(isnan(out[2]));
    const uint8_t e8[3] = {127, 120, 0xff};
    qd_to_f32(QD_DT_F8_E8M0, e8, out, 3);
    QD_EXPECT_NEAR(out[0], 1.0, 0);
    QD_EXPECT_NEAR(out[1], 1.0 / 128, 0);
    QD_EXPECT(isnan(out[2]));
}

int main(void) {
    QD_RUN(test_f8_e4m3);
    QD_RUN(test_bf16);
    QD_RUN(test_f16);
    QD_RUN(test_names);
    return QD_TEST_END();
}
