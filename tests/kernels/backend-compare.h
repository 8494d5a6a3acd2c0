/* SPDX-License-Identifier: MIT
 * backend-compare.h - the cross-backend half of tests/kernels/test-backend-ops (backend-compare.c):
 * every backend the registry offers against the CPU backend. Returns 0 when every check passed. */
#ifndef QD_TEST_BACKEND_COMPARE_H
#define QD_TEST_BACKEND_COMPARE_H

#include <stdint.h>

int qd_test_backend_compare(uint64_t seed);

#endif
