/* SPDX-License-Identifier: MIT
 * test-qformat.c - the packers against the test vectors of docs/reference/formats.md section E and
 * the 3-bit layout of GPTQModel's _pack_rows_3 (bit positions written out here by hand), plus
 * pack/unpack round trips on random codes for every bit width and the refusals. */
#include <stdint.h>
#include <string.h>

#include "qd-log.h"
#include "qd-qformat-awq.h"
#include "qd-qformat-ct.h"
#include "qd-qformat-gptq.h"
#include "qd-test.h"

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* q_s = -8..-1 at k = 0..7 (codes 0..7 with 4 bits) -> 0x76543210 in GPTQ and compressed-tensors */
static void test_vectors_gptq_ct(void) {
    uint8_t codes[8];
    for (int k = 0; k < 8; k++) codes[k] = (uint8_t)(-8 + k + 8);
    int32_t qw[1] = {0};
    QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, 1, 8, 4, qw), QD_OK);
    QD_EXPECT_EQ_INT((uint32_t)qw[0], 0x76543210u);
    int32_t ct[1] = {0};
    QD_EXPECT_EQ_INT(qd_pack_ct_weight(codes, 1, 8, 4, ct), QD_OK);
    QD_EXPECT_EQ_INT((uint32_t)ct[0], 0x76543210u);
    int8_t naive[8];
    QD_EXPECT_EQ_INT(qd_ct_naive_weight(codes, 1, 8, 4, naive), QD_OK);
    QD_EXPECT_EQ_INT(naive[0], -8);
    QD_EXPECT_EQ_INT(naive[7], -1);
}

/* AWQ: codes 0..7 in columns 0..7 -> 0x75316420 */
static void test_vectors_awq(void) {
    uint8_t codes[8];
    for (int n = 0; n < 8; n++) codes[n] = (uint8_t)n; /* N = 8, K = 1: codes[n][0] */
    int32_t qw[1];
    QD_EXPECT_EQ_INT(qd_pack_awq_qweight(codes, 8, 1, qw), QD_OK);
    QD_EXPECT_EQ_INT((uint32_t)qw[0], 0x75316420u);
    int32_t z[8], qz[1];
    for (int n = 0; n < 8; n++) z[n] = n;
    QD_EXPECT_EQ_INT(qd_pack_awq_qzeros(z, 1, 8, qz), QD_OK);
    QD_EXPECT_EQ_INT((uint32_t)qz[0], 0x75316420u);
}

/* symmetric qzeros words of section B */
static void test_sym_qzeros(void) {
    const int bits[3] = {4, 8, 2};
    const uint32_t v1[3] = {0x77777777u, 0x7F7F7F7Fu, 0x55555555u};
    const uint32_t v2[3] = {0x88888888u, 0x80808080u, 0xAAAAAAAAu};
    for (int i = 0; i < 3; i++) {
        int32_t z[16], out[1];
        int n = 32 / bits[i];
        for (int j = 0; j < n; j++) z[j] = 1 << (bits[i] - 1);
        QD_EXPECT_EQ_INT(qd_pack_gptq_qzeros(z, 1, n, bits[i], 1, out), QD_OK);
        QD_EXPECT_EQ_INT((uint32_t)out[0], v1[i]);
        QD_EXPECT_EQ_INT(qd_pack_gptq_qzeros(z, 1, n, bits[i], 0, out), QD_OK);
        QD_EXPECT_EQ_INT((uint32_t)out[0], v2[i]);
    }
}

/* v1 with z = 0 is refused; z-1 is written field by field (no borrow into neighbours) */
static void test_v1_zero(void) {
    int32_t z[8] = {1, 2, 3, 4, 5, 6, 7, 15}, out[1];
    QD_EXPECT_EQ_INT(qd_pack_gptq_qzeros(z, 1, 8, 4, 1, out), QD_OK);
    QD_EXPECT_EQ_INT((uint32_t)out[0], 0xE6543210u);
    z[3] = 0;
    QD_EXPECT_EQ_INT(qd_pack_gptq_qzeros(z, 1, 8, 4, 1, out), QD_ERR_UNSUPPORTED);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "gptq_v2");
    QD_EXPECT_EQ_INT(qd_pack_gptq_qzeros(z, 1, 8, 4, 0, out), QD_OK);
}

/* 3-bit: 32 values over 3 words, 10 | 1 | 10 | 1 | 10 (value 10 straddles words 0/1, value 21 1/2) */
static void test_3bit_layout(void) {
    uint8_t codes[32];
    for (int k = 0; k < 32; k++) codes[k] = (uint8_t)(rnd() & 7);
    int32_t qw[3];
    QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, 1, 32, 3, qw), QD_OK);
    uint32_t A = 0, B = 0, C = 0;
    for (int i = 0; i < 10; i++) A |= (uint32_t)codes[i] << (3 * i);
    A |= ((uint32_t)codes[10] << 30);
    B = (codes[10] >> 2) & 1u;
    for (int i = 0; i < 10; i++) B |= (uint32_t)codes[11 + i] << (3 * i + 1);
    B |= (uint32_t)codes[21] << 31;
    C = (codes[21] >> 1) & 3u;
    for (int i = 0; i < 10; i++) C |= (uint32_t)codes[22 + i] << (3 * i + 2);
    QD_EXPECT_EQ_INT((uint32_t)qw[0], A);
    QD_EXPECT_EQ_INT((uint32_t)qw[1], B);
    QD_EXPECT_EQ_INT((uint32_t)qw[2], C);
}

static void test_round_trips(void) {
    enum { N = 64, K = 96, G = 3 };
    static uint8_t codes[N * K], back[N * K];
    static int32_t zeros[G * N], zback[G * N], words[N * K];
    const int bits[4] = {2, 3, 4, 8};
    for (int bi = 0; bi < 4; bi++) {
        int b = bits[bi], maxq = (1 << b) - 1;
        for (int i = 0; i < N * K; i++) codes[i] = (uint8_t)(rnd() % (unsigned)(maxq + 1));
        for (int i = 0; i < G * N; i++) zeros[i] = 1 + (int32_t)(rnd() % (unsigned)maxq);
        QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, N, K, b, words), QD_OK);
        QD_EXPECT_EQ_INT(qd_unpack_gptq_qweight(words, N, K, b, back), QD_OK);
        QD_EXPECT(memcmp(codes, back, sizeof codes) == 0);
        for (int v1 = 0; v1 < 2; v1++) {
            QD_EXPECT_EQ_INT(qd_pack_gptq_qzeros(zeros, G, N, b, v1, words), QD_OK);
            QD_EXPECT_EQ_INT(qd_unpack_gptq_qzeros(words, G, N, b, v1, zback), QD_OK);
            QD_EXPECT(memcmp(zeros, zback, sizeof zeros) == 0);
        }
        if (b != 3) {
            /* odd K and N to exercise the zero-padded tail words */
            int n2 = N - 3, k2 = K - 5;
            QD_EXPECT_EQ_INT(qd_pack_ct_weight(codes, n2, k2, b, words), QD_OK);
            QD_EXPECT_EQ_INT(qd_unpack_ct_weight(words, n2, k2, b, back), QD_OK);
            QD_EXPECT(memcmp(codes, back, (size_t)n2 * k2) == 0);
            QD_EXPECT_EQ_INT(qd_pack_ct_zero_point(zeros, G, n2, b, words), QD_OK);
            QD_EXPECT_EQ_INT(qd_unpack_ct_zero_point(words, G, n2, b, zback), QD_OK);
            QD_EXPECT(memcmp(zeros, zback, sizeof(int32_t) * G * n2) == 0);
        } else {
            QD_EXPECT_EQ_INT(qd_pack_ct_weight(codes, N, K, b, words), QD_ERR_UNSUPPORTED);
        }
        if (b == 4) {
            QD_EXPECT_EQ_INT(qd_pack_awq_qweight(codes, N, K, words), QD_OK);
            QD_EXPECT_EQ_INT(qd_unpack_awq_qweight(words, N, K, back), QD_OK);
            QD_EXPECT(memcmp(codes, back, sizeof codes) == 0);
            QD_EXPECT_EQ_INT(qd_pack_awq_qzeros(zeros, G, N, words), QD_OK);
            QD_EXPECT_EQ_INT(qd_unpack_awq_qzeros(words, G, N, zback), QD_OK);
            QD_EXPECT(memcmp(zeros, zback, sizeof zeros) == 0);
        }
    }
}

static void test_refusals(void) {
    uint8_t codes[172 * 4] = {0};
    int32_t out[1024];
    QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, 4, 172, 4, out), QD_ERR_UNSUPPORTED); /* 172 % 8 != 0 */
    QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, 4, 64, 3, out), QD_OK);
    QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, 4, 48, 3, out), QD_ERR_UNSUPPORTED);  /* 3-bit: K % 32 */
    QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, 4, 64, 5, out), QD_ERR_UNSUPPORTED);
    QD_EXPECT_EQ_INT(qd_pack_awq_qweight(codes, 12, 8, out), QD_ERR_UNSUPPORTED);      /* N % 8 */
    codes[3] = 16;
    QD_EXPECT_EQ_INT(qd_pack_gptq_qweight(codes, 1, 8, 4, out), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_pack_awq_qweight(codes, 8, 1, out), QD_ERR_FORMAT);
}

int main(void) {
    QD_RUN(test_vectors_gptq_ct);
    QD_RUN(test_vectors_awq);
    QD_RUN(test_sym_qzeros);
    QD_RUN(test_v1_zero);
    QD_RUN(test_3bit_layout);
    QD_RUN(test_round_trips);
    QD_RUN(test_refusals);
    return QD_TEST_END();
}
