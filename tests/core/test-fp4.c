/* SPDX-License-Identifier: MIT
 * E2M1 and the E8M0 MX scale (qd-fp4.h) against values that follow from the formats' definitions.
 * With three arguments, `core-test-fp4 e2m1|mx IN OUT` encodes the fp32 values of IN into bytes in
 * OUT (E2M1 codes, or the E8M0 scale of each value taken as a group maximum), and
 * tests/py/test_fp4_codec.py compares them with compressed-tensors' own functions on many values. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qd-fp4.h"
#include "qd-test.h"

static void test_e2m1(void) {
    static const float grid[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 16; c++) { /* every code round-trips, the sign in bit 3 */
        QD_EXPECT_NEAR(qd_e2m1_to_f32((uint8_t)c), (c & 8 ? -1 : 1) * grid[c & 7], 0);
        QD_EXPECT_EQ_INT(qd_f32_to_e2m1(qd_e2m1_to_f32((uint8_t)c)), c == 8 ? 0 : c); /* -0.0 encodes as 0 */
    }
    /* ties go to the even code: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4 */
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(0.25f), 0);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(0.2501f), 1);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(0.75f), 2);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(1.25f), 2);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(1.75f), 4);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(2.5f), 4);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(3.5f), 6);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(5.0f), 6);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(5.01f), 7);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(-1e30f), 15); /* saturates */
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(INFINITY), 7);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(-0.1f), 8);   /* rounds to zero, the sign kept */
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(-0.0f), 0);
    QD_EXPECT_EQ_INT(qd_f32_to_e2m1(NAN), 0);
}

static void test_mx(void) {
    QD_EXPECT_EQ_INT(qd_mx_scale_e8m0(6.0f), 127);       /* 6 -> 4 -> 2^2, minus 2: 2^0 */
    QD_EXPECT_EQ_INT(qd_mx_scale_e8m0(1.0f), 125);
    QD_EXPECT_EQ_INT(qd_mx_scale_e8m0(1.74f), 125);      /* mantissa below 1.75: down to 1 */
    QD_EXPECT_EQ_INT(qd_mx_scale_e8m0(1.75f), 126);      /* from 1.75: up to 2 */
    QD_EXPECT_EQ_INT(qd_mx_scale_e8m0(0.0f), 0);
    QD_EXPECT_EQ_INT(qd_mx_scale_e8m0(0x1.8p100f), 225); /* 1.5 * 2^100: 2^(100 - 2) */
    QD_EXPECT_EQ_INT(qd_mx_scale_e8m0(0x1p-140f), 0);    /* clamped at 2^-127 */
    QD_EXPECT_NEAR(qd_e8m0_to_f32(127), 1.0, 0);
    QD_EXPECT_NEAR(qd_e8m0_to_f32(0), 0x1p-127, 0);
    QD_EXPECT(isnan(qd_e8m0_to_f32(255)));
}

static int convert(const char *kind, const char *in, const char *out) {
    int mx = strcmp(kind, "mx") == 0;
    FILE *f = fopen(in, "rb"), *g = fopen(out, "wb");
    if (!f || !g) {
        fprintf(stderr, "core-test-fp4: cannot open %s or %s\n", in, out);
        if (f) fclose(f);
        if (g) fclose(g);
        return 1;
    }
    float x;
    while (fread(&x, sizeof x, 1, f) == 1) fputc(mx ? qd_mx_scale_e8m0(x) : qd_f32_to_e2m1(x), g);
    int bad = ferror(f) || fclose(g) != 0;
    fclose(f);
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 4) return convert(argv[1], argv[2], argv[3]);
    QD_RUN(test_e2m1);
    QD_RUN(test_mx);
    return QD_TEST_END();
}
