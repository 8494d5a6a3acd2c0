/* SPDX-License-Identifier: MIT
 * qd-qformat-gptq.h - GPTQ (v1 "gptq" and "gptq_v2") packing of integer codes, on plain arrays.
 *
 * Layout (docs/reference/formats.md section B): codes of a Linear W[N][K] are packed along K into
 * qweight I32 [K*b/32][N]; zero points along N into qzeros I32 [G][N*b/32]. Both are one little-endian
 * bit stream per column (qweight) or row (qzeros): value i sits at stream bit i*b, word (i*b)/32.
 * For b in {2,4,8} that is "code i mod pf of word i/pf"; for b = 3 it is GPTQModel's 10-1-10-1-10
 * layout (32 values over 3 words, values 10 and 21 straddle a word boundary).
 * Shapes: K*b and N*b must be multiples of 32 (3-bit: K % 32 == 0, N % 32 == 0).
 * v1 stores z-1 field by field ((z-1) & mask, no borrow); a v1 zero point of 0 cannot be stored and
 * is refused (QD_ERR_UNSUPPORTED naming the group; gptq_v2 stores the true z). Unpackers add 1 back.
 * Codes outside 0..2^b-1 are refused (QD_ERR_FORMAT). Every function reports its own failure.
 */
#ifndef QD_QFORMAT_GPTQ_H
#define QD_QFORMAT_GPTQ_H

#include <stdint.h>

#include "qd-status.h"

/* 1 if bits is one GPTQ can pack (2, 3, 4, 8) and n values pack into whole words */
int qd_gptq_packable(int n, int bits);

/* codes [N][K] (row-major, original input order) -> out [K*bits/32][N] */
qd_status qd_pack_gptq_qweight(const uint8_t *codes, int N, int K, int bits, int32_t *out);
/* qweight [K*bits/32][N] -> codes [N][K] */
qd_status qd_unpack_gptq_qweight(const int32_t *qweight, int N, int K, int bits, uint8_t *codes);

/* zeros [G][N] (true zero points) -> out [G][N*bits/32]; v1 = 1 writes z-1 per field */
qd_status qd_pack_gptq_qzeros(const int32_t *zeros, int G, int N, int bits, int v1, int32_t *out);
/* qzeros [G][N*bits/32] -> zeros [G][N] (true zero points: +1 for v1) */
qd_status qd_unpack_gptq_qzeros(const int32_t *qzeros, int G, int N, int bits, int v1, int32_t *zeros);

#endif
