/* SPDX-License-Identifier: MIT */
#include "qd-qformat-gptq.h"

#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qformat-bits.h"

int qd_gptq_packable(int n, int bits) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) return 0;
    return n > 0 && ((long)n * bits) % 32 == 0;
}

static qd_status check_shape(const char *what, int n, int bits) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return qd_fail(QD_ERR_UNSUPPORTED, "gptq: %d-bit codes cannot be packed; GPTQ packs 2, 3, 4 or 8 bits",
                       bits);
    if (!qd_gptq_packable(n, bits))
        return qd_fail(QD_ERR_UNSUPPORTED, "gptq: %s = %d does not fill whole 32-bit words at %d bits "
                       "(needs a multiple of %d)", what, n, bits, bits == 3 ? 32 : 32 / bits);
    return QD_OK;
}

qd_status qd_pack_gptq_qweight(const uint8_t *codes, int N, int K, int bits, int32_t *out) {
    QD_CHECK(check_shape("K (in_features)", K, bits));
    if (N <= 0) return qd_fail(QD_ERR_FORMAT, "gptq: N = %d, expected > 0", N);
    uint32_t maxq = (1u << bits) - 1u;
    long rows = (long)K * bits / 32;
    uint8_t high = 0; /* a branch-free pass the compiler vectorises; the slow one only finds the culprit */
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++) high |= (uint8_t)(codes[i] >> bits);
    for (int n = 0; high && n < N; n++)
        for (int k = 0; k < K; k++)
            if (codes[(size_t)n * K + k] > maxq)
                return qd_fail(QD_ERR_FORMAT, "gptq: code %u at [%d][%d] exceeds %u for %d bits",
                               codes[(size_t)n * K + k], n, k, maxq, bits);
    if (bits == 4) { /* 8 codes < 16 in 8 bytes (little-endian) -> 8 nibbles: fold the bytes pairwise */
        for (int n = 0; n < N; n++) {
            const uint8_t *row = codes + (size_t)n * K;
            for (long w = 0; w < rows; w++) {
                uint64_t x;
                memcpy(&x, row + w * 8, 8);
                x = (x | x >> 4) & 0x00FF00FF00FF00FFull;
                x = (x | x >> 8) & 0x0000FFFF0000FFFFull;
                x = (x | x >> 16) & 0x00000000FFFFFFFFull;
                out[(size_t)w * N + n] = (int32_t)(uint32_t)x;
            }
        }
        return QD_OK;
    }
    if (32 % bits == 0) { /* whole fields per word: build each word once from consecutive codes */
        int per = 32 / bits;
        for (int n = 0; n < N; n++) {
            const uint8_t *row = codes + (size_t)n * K;
            for (long w = 0; w < rows; w++) {
                uint32_t word = 0;
                for (int j = 0; j < per; j++) word |= (uint32_t)row[w * per + j] << (j * bits);
                out[(size_t)w * N + n] = (int32_t)word;
            }
        }
        return QD_OK;
    }
    memset(out, 0, sizeof(int32_t) * (size_t)rows * (size_t)N);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) qd__bits_put(out + n, N, k, bits, codes[(size_t)n * K + k]);
    return QD_OK;
}

qd_status qd_unpack_gptq_qweight(const int32_t *qweight, int N, int K, int bits, uint8_t *codes) {
    QD_CHECK(check_shape("K (in_features)", K, bits));
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) codes[(size_t)n * K + k] = (uint8_t)qd__bits_get(qweight + n, N, k, bits);
    return QD_OK;
}

qd_status qd_pack_gptq_qzeros(const int32_t *zeros, int G, int N, int bits, int v1, int32_t *out) {
    QD_CHECK(check_shape("N (out_features)", N, bits));
    int32_t maxq = (1 << bits) - 1;
    long cols = (long)N * bits / 32;
    memset(out, 0, sizeof(int32_t) * (size_t)G * (size_t)cols);
    for (int g = 0; g < G; g++)
        for (int n = 0; n < N; n++) {
            int32_t z = zeros[(size_t)g * N + n];
            if (z < 0 || z > maxq)
                return qd_fail(QD_ERR_FORMAT, "gptq: zero point %d at [%d][%d] outside 0..%d", z, g, n, maxq);
            if (v1 && z == 0)
                return qd_fail(QD_ERR_UNSUPPORTED, "gptq: zero point 0 at group %d, column %d cannot be stored "
                               "in GPTQ v1 (it stores z-1); use --format gptq_v2 or compressed-tensors, or "
                               "quantize with zero points clamped to >= 1", g, n);
            uint32_t field = (uint32_t)(v1 ? z - 1 : z) & (uint32_t)maxq;
            qd__bits_put(out + (size_t)g * cols, 1, n, bits, field);
        }
    return QD_OK;
}

qd_status qd_unpack_gptq_qzeros(const int32_t *qzeros, int G, int N, int bits, int v1, int32_t *zeros) {
    QD_CHECK(check_shape("N (out_features)", N, bits));
    long cols = (long)N * bits / 32;
    for (int g = 0; g < G; g++)
        for (int n = 0; n < N; n++) {
            uint32_t f = qd__bits_get(qzeros + (size_t)g * cols, 1, n, bits);
            /* v1 readers add 1 to the field (vLLM adds 1 after extracting): z = field + 1 */
            zeros[(size_t)g * N + n] = (int32_t)f + (v1 ? 1 : 0);
        }
    return QD_OK;
}
