/* SPDX-License-Identifier: MIT
 * qd-qlayer.h - the result of quantizing one Linear: the Linear (src/core/qd-qlinear.h, q.name the
 * module prefix, q.method "rtn" / "gptq" / "awq") plus how it was obtained (loss, damping, fallback).
 */
#ifndef QD_QLAYER_H
#define QD_QLAYER_H

#include <stddef.h>

#include "qd-qlinear.h"

typedef struct qd_qresult {
    qd_qlinear q; /* q.name is the module prefix, q.method "rtn" / "gptq" / "awq" */
    qd_qstats s;
} qd_qresult;

void qd_qresult_free(qd_qresult *r);

#endif
