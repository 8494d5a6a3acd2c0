/* SPDX-License-Identifier: MIT
 * qd-qlayer.h - the result of quantizing one Linear: the Linear (src/core/qd-qlinear.h, q.name the
 * module prefix, q.method "rtn" / "gptq" / "awq") plus how it was obtained (loss, damping, fallback).
 */
#ifndef QD_QLAYER_H
#define QD_QLAYER_H

#include <stddef.h>

#include "qd-qlinear.h"

typedef struct qd_qresult {
    qd_qlayer q;           /* q.name is the module prefix, q.method "rtn" / "gptq" / "awq" */
    double loss;           /* gptq: sum (w-q)^2/d^2/2; rtn/awq: sum (w-q)^2/2 over the weight */
    double damp;           /* gptq: the damping fraction that succeeded; else -1 */
    char fallback[160];    /* "" or what happened instead (e.g. RTN after Cholesky failures) */
    double seconds;
    size_t calib_tokens;
} qd_qresult;

void qd_qresult_free(qd_qresult *r);

#endif
