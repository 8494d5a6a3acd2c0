/* SPDX-License-Identifier: MIT
 * qlayer.c - freeing a quantized-Linear result. */
#include "qd-qlayer.h"

void qd_qresult_free(qd_qresult *r) {
    if (r) qd_qlinear_free(&r->q);
}
