/* SPDX-License-Identifier: MIT
 * fp8.c - the CPU backend's fp8_dequant: the host loop of qd-fp8.h straight into the buffer. */
#include "cpu-ops.h"

qd_status qd_cpu_fp8_dequant(qd_backend_t be, const struct qd_fp8_dequant_args *a) {
    (void)be;
    *a->nan_at = qd_fp8_dequant(a->codes, a->scale, (int64_t)a->N, (int64_t)a->K, (int64_t)a->bn, (int64_t)a->bk,
                                qd_ref_f32(a->dst));
    return QD_OK;
}
