/* SPDX-License-Identifier: MIT
 * backend-ops-util.h - what the files of tests/kernels/test-backend-ops share: one set of check
 * counters (qd-test.h's, here shared by the files instead of one set per file), one random stream
 * (splitmix64; the seed is printed and QD_TEST_SEED replays a run), and the entry of each half. The
 * naive half (test-backend-ops.c, backend-naive-quant.c; backend-naive.h) checks the CPU backend
 * against loops written in the test; the cross-backend half (backend-compare*.c;
 * backend-compare-util.h) checks every backend the registry offers against the CPU backend.
 * Include this header instead of qd-test.h. */
#ifndef QD_TEST_BACKEND_OPS_UTIL_H
#define QD_TEST_BACKEND_OPS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define QD_TEST_SHARED_COUNTERS /* defined once, in backend-ops-util.c */
#include "qd-test.h"

void qd_test_seed(uint64_t seed);
double urand(void);             /* uniform in [0, 1) */
float nrand(void);              /* standard normal */
float *rvec(size_t n, float s); /* n draws of s * nrand() */
/* A random SPD n x n matrix (fp32, exactly symmetric) Q diag(d) Q^T with Q a random orthogonal
 * matrix (Gram-Schmidt in fp64) and d log-spaced from 1 down to 1/cond. */
float *spd_matrix(size_t n, double cond);

/* the cross-backend half (backend-compare.c): prints its own count line; 0 when every check passed */
int qd_test_backend_compare(void);

#endif
