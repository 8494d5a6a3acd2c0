/* SPDX-License-Identifier: MIT
 * qd-qformat-ct.h - compressed-tensors "pack-quantized" and "naive-quantized" weights, on plain arrays.
 *
 * Layout (docs/reference/formats.md section D): values are signed q_s = code - 2^(b-1), stored
 * unsigned u = q_s + 2^(b-1) (= the code). pack-quantized: row n of W[N][K] becomes weight_packed
 * I32 [N][ceil(K/pf)], element k at bits (k % pf)*b of word k/pf (pf = 32/b, tail bits zero).
 * Asymmetric zero points are packed along the OUTPUT dim: weight_zero_point I32 [ceil(N/pf)][G],
 * zero point of (n, g) at bits (n % pf)*b of word [n/pf][g]. naive-quantized stores weight I8 [N][K]
 * = q_s unpacked (and an I8 zero point [N][G] = z - 2^(b-1) when asymmetric).
 * Packers take 2, 4 or 8 bits (what vLLM's WNA16 kernels load); unpackers take 1..8 bits as
 * compressed-tensors >= 0.20 writes them: one dense little-endian stream per row, element i at bit
 * i*b, ceil(K*b/32) words (identical to the layout above for 2/4/8). Codes/zeros outside 0..2^b-1
 * are refused.
 */
#ifndef QD_QFORMAT_CT_H
#define QD_QFORMAT_CT_H

#include <stdint.h>

#include "qd-status.h"

int qd_ct_packed_cols(int K, int bits); /* ceil(K*bits/32) (= ceil(K/pf) for 2/4/8) */

/* codes [N][K] -> weight_packed [N][ceil(K/pf)] */
qd_status qd_pack_ct_weight(const uint8_t *codes, int N, int K, int bits, int32_t *out);
qd_status qd_unpack_ct_weight(const int32_t *packed, int N, int K, int bits, uint8_t *codes);
/* zeros [G][N] (true zero points, unsigned) -> weight_zero_point [ceil(N/pf)][G] */
qd_status qd_pack_ct_zero_point(const int32_t *zeros, int G, int N, int bits, int32_t *out);
qd_status qd_unpack_ct_zero_point(const int32_t *packed, int G, int N, int bits, int32_t *zeros);
/* naive-quantized: codes [N][K] -> int8 q_s [N][K]; zeros [G][N] -> int8 [N][G] */
qd_status qd_ct_naive_weight(const uint8_t *codes, int N, int K, int bits, int8_t *out);
qd_status qd_ct_naive_zero_point(const int32_t *zeros, int G, int N, int bits, int8_t *out);

#endif
