/* SPDX-License-Identifier: MIT
 * qd-status.h - the one status type every qdist function returns.
 *
 * Functions return qd_status; results come back through pointers. The code that detects a failure
 * reports it once (qd_fail in qd-log.h) with the file/tensor/module it concerns; callers only
 * propagate the code. qd_status_exit_code maps a status to the process exit code (0, 1, 2).
 */
#ifndef QD_STATUS_H
#define QD_STATUS_H

#define QD_STATUS_MAP(XX)                                                        \
    XX(OK, 0, "success")                                                         \
    XX(ERR_USAGE, 1, "usage error")                                              \
    XX(ERR_IO, 2, "i/o error")                                                   \
    XX(ERR_FORMAT, 3, "malformed input")                                         \
    XX(ERR_UNSUPPORTED, 4, "unsupported")                                        \
    XX(ERR_NOMEM, 5, "out of memory")                                            \
    XX(ERR_NUMERIC, 6, "numerical failure")                                      \
    XX(ERR_REMOTE, 7, "failure on another rank")                                 \
    XX(ERR_MISMATCH, 9, "mismatch")                                              \
    XX(ERR_NOSPACE, 10, "not enough disk space")                                 \
    XX(ERR_MPI, 11, "MPI error")                                                 \
    XX(ERR_CUDA, 12, "CUDA error")                                               \
    XX(ERR_HDF5, 13, "HDF5 error")                                               \
    XX(ERR_INTERNAL, 14, "internal error")

typedef enum {
#define QD_STATUS_ENUM(name, val, str) QD_##name = val,
    QD_STATUS_MAP(QD_STATUS_ENUM)
#undef QD_STATUS_ENUM
} qd_status;

const char *qd_status_str(qd_status st);  /* "malformed input" */
const char *qd_status_name(qd_status st); /* "ERR_FORMAT" */
int qd_status_exit_code(qd_status st);    /* 0 ok, 2 usage, 1 anything else */

#endif
