/* SPDX-License-Identifier: MIT
 * qd-backend-cpu.h - creation of the CPU backend (kernels/cpu/), the reference every other backend
 * reproduces. GEMM, SYRK and Cholesky go through OpenBLAS/LAPACK (threads: nthreads > 0 sets
 * OpenBLAS's thread count, 0 leaves its default); the other ops are plain loops, with attention
 * split over threads.
 */
#ifndef QD_BACKEND_CPU_H
#define QD_BACKEND_CPU_H

#include "qd-backend.h"

qd_status qd_backend_cpu_create(int nthreads, qd_backend_t *out);

#endif
