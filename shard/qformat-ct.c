/* SPDX-License-Identifier: MIT */
#include "qd-qformat-ct.h"

#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qformat-bits.h"

static qd_status check_bits(int bits) {
    if (bits != 2 && bits != 4 && bits != 8)
        return qd_fail(QD_ERR_UNSUPPORTED, "compressed-tensors: %d-bit values cannot be packed into int32 "
                       "words evenly; compressed-tensors packs 2, 4 or 8 bits (GPTQ also packs 3 bits)", bits);
    return QD_OK;
}

static qd_status check_unpack_bits(int bits) {
    if (bits < 1 || bits > 8)
        return qd_fail(QD_ERR_FORMAT, "compressed-tensors: %d-bit values: pack-quantized holds 1..8 bits", bits);
    return QD_OK;
}

int qd_ct_packed_cols(int K, int bits) { return (int)(((long)K * bits + 31) / 32); }

qd_status qd_pack_ct_weight(const uint8_t *codes, int N, int K, int bits, int32_t *out) {
    QD_CHECK(check_bits(bits));
    uint32_t maxq = (1u << bits) - 1u;
    int cols = qd_ct_packed_cols(K, bits);
    memset(out, 0, sizeof(int32_t) * (size_t)N * (size_t)cols);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            uint8_t c = codes[(size_t)n * K + k];
            if (c > maxq)
                return qd_fail(QD_ERR_FORMAT, "compressed-tensors: code %u at [%d][%d] exceeds %u for %d bits", c,
                               n, k, maxq, bits);
            qd__bits_put(out + (size_t)n * cols, 1, k, bits, c);
        }
    return QD_OK;
}

qd_status qd_unpack_ct_weight(const int32_t *packed, int N, int K, int bits, uint8_t *codes) {
    QD_CHECK(check_unpack_bits(bits));
    int cols = qd_ct_packed_cols(K, bits);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            codes[(size_t)n * K + k] = (uint8_t)qd__bits_get(packed + (size_t)n * cols, 1, k, bits);
    return QD_OK;
}

qd_status qd_pack_ct_zero_point(const int32_t *zeros, int G, int N, int bits, int32_t *out) {
    QD_CHECK(check_bits(bits));
    int32_t maxq = (1 << bits) - 1;
    int rows = qd_ct_packed_cols(N, bits);
    memset(out, 0, sizeof(int32_t) * (size_t)rows * (size_t)G);
    for (int g = 0; g < G; g++)
        for (int n = 0; n < N; n++) {
            int32_t z = zeros[(size_t)g * N + n];
            if (z < 0 || z > maxq)
                return qd_fail(QD_ERR_FORMAT, "compressed-tensors: zero point %d at [%d][%d] outside 0..%d", z, g,
                               n, maxq);
            /* stream along n in column g of a [rows][G] array: stride G */
            qd__bits_put(out + g, G, n, bits, (uint32_t)z);
        }
    return QD_OK;
}

qd_status qd_unpack_ct_zero_point(const int32_t *packed, int G, int N, int bits, int32_t *zeros) {
    QD_CHECK(check_unpack_bits(bits));
    for (int g = 0; g < G; g++)
        for (int n = 0; n < N; n++) zeros[(size_t)g * N + n] = (int32_t)qd__bits_get(packed + g, G, n, bits);
    return QD_OK;
}

qd_status qd_ct_naive_weight(const uint8_t *codes, int N, int K, int bits, int8_t *out) {
    if (bits < 2 || bits > 8)
        return qd_fail(QD_ERR_UNSUPPORTED, "compressed-tensors: naive-quantized holds 2..8-bit values, not %d", bits);
    int half = 1 << (bits - 1);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        if (codes[i] >= 2 * half)
            return qd_fail(QD_ERR_FORMAT, "compressed-tensors: code %u at flat index %zu exceeds %d", codes[i], i,
                           2 * half - 1);
        out[i] = (int8_t)((int)codes[i] - half);
    }
    return QD_OK;
}

qd_status qd_ct_naive_zero_point(const int32_t *zeros, int G, int N, int bits, int8_t *out) {
    if (bits < 2 || bits > 8)
        return qd_fail(QD_ERR_UNSUPPORTED, "compressed-tensors: naive-quantized holds 2..8-bit values, not %d", bits);
    int half = 1 << (bits - 1);
    for (int g = 0; g < G; g++)
        for (int n = 0; n < N; n++) {
            int32_t z = zeros[(size_t)g * N + n];
            if (z < 0 || z >= 2 * half)
                return qd_fail(QD_ERR_FORMAT, "compressed-tensors: zero point %d at [%d][%d] outside 0..%d", z, g,
                               n, 2 * half - 1);
            out[(size_t)n * G + g] = (int8_t)(z - half);
        }
    return QD_OK;
}
