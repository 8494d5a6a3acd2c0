/* SPDX-License-Identifier: MIT
 * backend-naive.h - the naive half of test-backend-ops: the CPU backend under test and the helpers that
 * test-backend-ops.c (which defines them) and backend-naive-quant.c share. Not for backend-compare*.c:
 * there the backends are BE[] (backend-compare-util.h). */
#ifndef QD_TEST_BACKEND_NAIVE_H
#define QD_TEST_BACKEND_NAIVE_H

#include <stddef.h>

#include "qd-backend.h"

extern qd_backend_t be;                   /* the CPU backend, fast numerics, 1 thread */
float *rand_vec(size_t n);                /* n standard normal draws */
qd_buf_t up(const void *src, size_t n);   /* a new buffer of n floats on be, filled from src (or not) */
float *down(qd_buf_t b);                  /* the buffer's floats on the host (malloc'd) */

/* backend-naive-quant.c: the quantization ops against a reference quantizer written in the test */
void qd_test_naive_quant(void);
/* backend-naive-fp8.c: fp8_dequant against an E4M3 decode written in the test */
void qd_test_naive_fp8(void);

#endif
