/* SPDX-License-Identifier: MIT
 * qd-qlayer.h - the result of quantizing one Linear: shard/qd-qsource.h's qd_qlayer (codes uint8
 * [N][K] in the ORIGINAL column order, scales fp32 [G][N], true zero points int32 [G][N], g_idx [K];
 * W[n][k] = (code - zero[g][n]) * scale[g][n], g = g_idx[k]) plus how it was obtained.
 *
 * Checkpoints store scales as F16/BF16, so the fake-quant model (and the weights propagated to the
 * next block) use qd_qlayer_dequant_rounded with the export's scale dtype: eval of the fake-quant
 * model then equals eval of the export.
 */
#ifndef QD_QLAYER_H
#define QD_QLAYER_H

#include <stddef.h>

#include "qd-dtype.h"
#include "qd-qsource.h"

typedef struct qd_qresult {
    qd_qlayer q;           /* q.name is the module prefix, q.method "rtn" / "gptq" / "awq" */
    double loss;           /* gptq: sum (w-q)^2/d^2/2; rtn/awq: sum (w-q)^2/2 over the weight */
    double damp;           /* gptq: the damping fraction that succeeded; else -1 */
    char fallback[160];    /* "" or what happened instead (e.g. RTN after Cholesky failures) */
    double seconds;
    size_t calib_tokens;
} qd_qresult;

void qd_qresult_free(qd_qresult *r);
/* x rounded to the dtype scales are stored in (F16, BF16; F32 unchanged), back in fp32 */
float qd_scale_round(qd_dtype dt, float x);
/* w [N][K] = (code - zero) * qd_scale_round(scale_dtype, scale); scale_dtype F32 gives qd_qlayer_dequant. */
void qd_qlayer_dequant_rounded(const qd_qlayer *l, qd_dtype scale_dtype, float *w);
/* Allocate the arrays of l for N, K, G (codes included). */
qd_status qd_qlayer_alloc(qd_qlayer *l, int N, int K, int G);

#endif
