/* SPDX-License-Identifier: MIT
 * qd-qformat-awq.h - AutoAWQ "gemm" packing (4-bit only), on plain arrays.
 *
 * Layout (docs/reference/formats.md section C): packed along N in interleaved order
 * ORDER = {0,2,4,6,1,3,5,7}: nibble i of word [r][j] holds value [r][8j + ORDER[i]]. The same scheme
 * serves qweight (codes transposed: I32 [K][N/8], rows = input features) and qzeros (true zero
 * points 0..15: I32 [G][N/8], one row per group). Readers take value n from nibble REVERSE[n % 8]
 * with REVERSE = {0,4,1,5,2,6,3,7}. N must be a multiple of 8; values outside 0..15 are refused.
 */
#ifndef QD_QFORMAT_AWQ_H
#define QD_QFORMAT_AWQ_H

#include <stdint.h>

#include "qd-status.h"

/* codes [N][K] -> qweight [K][N/8] */
qd_status qd_pack_awq_qweight(const uint8_t *codes, int N, int K, int32_t *out);
/* qweight [K][N/8] -> codes [N][K] */
qd_status qd_unpack_awq_qweight(const int32_t *qweight, int N, int K, uint8_t *codes);
/* zeros [G][N] -> qzeros [G][N/8] */
qd_status qd_pack_awq_qzeros(const int32_t *zeros, int G, int N, int32_t *out);
/* qzeros [G][N/8] -> zeros [G][N] */
qd_status qd_unpack_awq_qzeros(const int32_t *qzeros, int G, int N, int32_t *zeros);

#endif
