/* SPDX-License-Identifier: MIT
 * qd-check.h - propagation macros.
 *
 * QD_CHECK(expr): return the status of expr if it failed (the failure was already reported).
 * QD_CHECK_GOTO(expr, st, label): store it in st and jump to a cleanup label.
 * QD_ALLOC(ptr, n): calloc n elements or fail with QD_ERR_NOMEM naming the expression.
 * QD_FOREIGN_CHECK(call, ok, to_str, status): one macro under QD_CUDA_CHECK / QD_CUBLAS_CHECK /
 * QD_CUSOLVER_CHECK (kernels/cuda/cuda-common.cuh) and QD_NCCL_CHECK (mpi/transport-nccl.c), defined
 * where those headers are included, that reports the foreign message once with file and line, then
 * converts it to a qd_status. (HDF5 calls go through shard/h5stage-h5.h's QD_H5_CHECK, which names
 * the file; MPI calls are compared with MPI_SUCCESS where they are made, in mpi/.)
 */
#ifndef QD_CHECK_H
#define QD_CHECK_H

#include <stdlib.h>
#include "qd-log.h"

#define QD_CHECK(expr)                 \
    do {                               \
        qd_status qd__st = (expr);     \
        if (qd__st != QD_OK) return qd__st; \
    } while (0)

#define QD_CHECK_GOTO(expr, st, label) \
    do {                               \
        (st) = (expr);                 \
        if ((st) != QD_OK) goto label; \
    } while (0)

#define QD_ALLOC(ptr, n)                                                                         \
    do {                                                                                         \
        size_t qd__n = (size_t)(n);                                                              \
        (ptr) = calloc(qd__n ? qd__n : 1, sizeof *(ptr));                                        \
        if (!(ptr))                                                                              \
            return qd_fail(QD_ERR_NOMEM, "out of memory allocating %zu x %zu bytes for %s (%s:%d)", \
                           qd__n, sizeof *(ptr), #ptr, __FILE__, __LINE__);                      \
    } while (0)

#define QD_FOREIGN_CHECK(call, ok, to_str, status)                                        \
    do {                                                                                  \
        int qd__rc = (int)(call);                                                         \
        if (qd__rc != (int)(ok))                                                          \
            return qd_fail((status), "%s failed: %s (%s:%d)", #call, to_str(qd__rc),      \
                           __FILE__, __LINE__);                                           \
    } while (0)

#endif
