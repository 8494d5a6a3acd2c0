/* SPDX-License-Identifier: MIT */
#include "qd-qformat-awq.h"

#include <string.h>

#include "qd-check.h"
#include "qd-log.h"

static const int awq_reverse[8] = {0, 4, 1, 5, 2, 6, 3, 7}; /* nibble holding value n % 8 */

static qd_status check_n(int N) {
    if (N <= 0 || N % 8 != 0)
        return qd_fail(QD_ERR_UNSUPPORTED, "awq: N (out_features) = %d is not a multiple of 8, which AWQ GEMM "
                       "packing needs", N);
    return QD_OK;
}

/* pack one row of N values (any stride) into N/8 words */
static qd_status pack_row(const uint8_t *v8, const int32_t *v32, long stride, int N, int32_t *out, long r) {
    for (int j = 0; j < N / 8; j++) {
        uint32_t w = 0;
        for (int t = 0; t < 8; t++) {
            int n = 8 * j + t;
            long val = v8 ? v8[(size_t)n * stride] : v32[(size_t)n * stride];
            if (val < 0 || val > 15)
                return qd_fail(QD_ERR_FORMAT, "awq: value %ld at row %ld, column %d outside 0..15", val, r, n);
            w |= (uint32_t)val << (4 * awq_reverse[t]);
        }
        out[j] = (int32_t)w;
    }
    return QD_OK;
}

#define K_TILE 64 /* columns of codes packed at once: one cache line of each of 8 rows */

qd_status qd_pack_awq_qweight(const uint8_t *codes, int N, int K, int32_t *out) {
    QD_CHECK(check_n(N));
    uint8_t high = 0; /* a branch-free pass the compiler vectorises; pack_row only finds the culprit */
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++) high |= (uint8_t)(codes[i] >> 4);
    for (int k = 0; high && k < K; k++) QD_CHECK(pack_row(codes + k, NULL, K, N, out + (size_t)k * (N / 8), k));
    for (int k0 = 0; k0 < K; k0 += K_TILE) {
        int kt = K - k0 < K_TILE ? K - k0 : K_TILE;
        for (int j = 0; j < N / 8; j++) {
            uint32_t w[K_TILE] = {0};
            for (int t = 0; t < 8; t++) {
                const uint8_t *src = codes + (size_t)(8 * j + t) * K + k0;
                int shift = 4 * awq_reverse[t];
                for (int kk = 0; kk < kt; kk++) w[kk] |= (uint32_t)src[kk] << shift;
            }
            for (int kk = 0; kk < kt; kk++) out[(size_t)(k0 + kk) * (N / 8) + j] = (int32_t)w[kk];
        }
    }
    return QD_OK;
}

qd_status qd_unpack_awq_qweight(const int32_t *qweight, int N, int K, uint8_t *codes) {
    QD_CHECK(check_n(N));
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++) {
            uint32_t w = (uint32_t)qweight[(size_t)k * (N / 8) + n / 8];
            codes[(size_t)n * K + k] = (uint8_t)((w >> (4 * awq_reverse[n % 8])) & 0xF);
        }
    return QD_OK;
}

qd_status qd_pack_awq_qzeros(const int32_t *zeros, int G, int N, int32_t *out) {
    QD_CHECK(check_n(N));
    for (int g = 0; g < G; g++) QD_CHECK(pack_row(NULL, zeros + (size_t)g * N, 1, N, out + (size_t)g * (N / 8), g));
    return QD_OK;
}

qd_status qd_unpack_awq_qzeros(const int32_t *qzeros, int G, int N, int32_t *zeros) {
    QD_CHECK(check_n(N));
    for (int g = 0; g < G; g++)
        for (int n = 0; n < N; n++) {
            uint32_t w = (uint32_t)qzeros[(size_t)g * (N / 8) + n / 8];
            zeros[(size_t)g * N + n] = (int32_t)((w >> (4 * awq_reverse[n % 8])) & 0xF);
        }
    return QD_OK;
}
