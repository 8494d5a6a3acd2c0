/* SPDX-License-Identifier: MIT
 * qlayer.c - freeing a quantized-Linear result. */
#include "qd-qlayer.h"

#include "qd-backend.h"

void qd_qresult_free(qd_qresult *r) {
    if (!r) return;
    qd_qlinear_free(&r->q);
    qd_buf_free(r->dev_codes);
    r->dev_codes = NULL;
}
