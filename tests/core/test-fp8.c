/* SPDX-License-Identifier: MIT
 * E4M3 (qd-fp8.h) against values whose encodings follow from the format's definition. With two
 * arguments, `core-test-fp8 IN OUT` encodes the fp32 values of file IN into bytes in OUT, and
 * tests/py/test_fp8_codec.py compares them with torch.float8_e4m3fn on many values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "qd-fp8.h"
#include "qd-test.h"

static void test_encode(void) {
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(0.0f), 0x00);
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(-0.0f), 0x80);
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(1.0f), 0x38);      /* exponent 7 (bias 7), mantissa 0 */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(-1.5f), 0xBC);
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(448.0f), 0x7E);    /* largest finite */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(1000.0f), 0x7E);   /* saturates */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(-INFINITY), 0xFE);
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(NAN) & 0x7F, 0x7F);
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(0x1p-6f), 0x08);   /* smallest normal */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(0x1p-9f), 0x01);   /* smallest subnormal */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(0x1p-10f), 0x00);  /* half of it: tie to even, 0 */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(0x3p-10f), 0x02);  /* 1.5 subnormal steps: tie to even, 2 */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(0xFp-10f), 0x08);  /* 7.5 steps: tie rounds up into the normals */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(1.0625f), 0x38);   /* 1 + 1/16, half-way to 1.125: to even (1.0) */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(1.1875f), 0x3A);   /* 1 + 3/16, half-way: to even (1.25) */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(1.07f), 0x39);     /* above the tie: up */
    QD_EXPECT_EQ_INT(qd_f32_to_e4m3(15.5f), 0x58);     /* half-way 15 (odd) and 16 = 2^4: to even, a carry into the exponent */
}

static void test_decode(void) {
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0x7E), 448.0, 0);
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0x01), 0x1p-9, 0);
    QD_EXPECT_NEAR(qd_e4m3_to_f32(0xBC), -1.5, 0);
    QD_EXPECT(isnan(qd_e4m3_to_f32(0x7F)) && isnan(qd_e4m3_to_f32(0xFF)));
    int bad = 0; /* every finite code round-trips */
    for (unsigned b = 0; b < 256; b++)
        if ((b & 0x7F) != 0x7F && qd_f32_to_e4m3(qd_e4m3_to_f32((uint8_t)b)) != b) bad++;
    QD_EXPECT_EQ_INT(bad, 0);
}

static int convert(const char *in, const char *out) {
    FILE *f = fopen(in, "rb"), *g = fopen(out, "wb");
    if (!f || !g) {
        fprintf(stderr, "core-test-fp8: cannot open %s or %s\n", in, out);
        return 1;
    }
    float x;
    while (fread(&x, sizeof x, 1, f) == 1) fputc(qd_f32_to_e4m3(x), g);
    int bad = ferror(f) || fclose(g) != 0;
    fclose(f);
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 3) return convert(argv[1], argv[2]);
    QD_RUN(test_encode);
    QD_RUN(test_decode);
    return QD_TEST_END();
}
