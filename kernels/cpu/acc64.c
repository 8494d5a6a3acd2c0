/* SPDX-License-Identifier: MIT
 * acc64.c - the CPU backend's fp64 sums of fp32 terms (qd-backend.h, qd_be_acc64). */
#include <string.h>

#include "cpu-ops.h"

qd_status qd_cpu_acc64(qd_backend_t be, const struct qd_acc64_args *a) {
    (void)be;
    double *acc = (double *)qd_ref_f32(a->acc); /* 2n 4-byte elements hold n doubles */
    float *x = qd_ref_f32(a->x);
    size_t K = a->upper_k, rows = K ? K : 1, cols = K ? K : a->n;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = K ? i : 0; j < cols; j++) {
            size_t e = i * cols + j;
            if (a->kind == QD_ACC64_ADD) acc[e] += (double)x[e];
            else x[e] = (float)acc[e];
        }
    return QD_OK;
}
