/* SPDX-License-Identifier: MIT
 * h5stage-test-util.h - what the staging tests (test-h5stage.c, test-h5stage-damage.c,
 * test-h5stage-fingerprint.c) share: a scratch directory per test process, a fixed-seed random
 * stream, random staged blocks and their comparison, and a small fingerprint. Built into each of
 * them by tests/shard/CMakeLists.txt. */
#ifndef QD_TEST_H5STAGE_UTIL_H
#define QD_TEST_H5STAGE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "qd-h5stage.h"

int h5t_begin(const char *tag); /* a fresh /tmp/qd-<tag>-XXXXXX; 0, or -1 after perror */
void h5t_end(void);             /* removes it */
void subdir(char *out, size_t cap, const char *name); /* <that directory>/name */

uint32_t rnd(void); /* a fixed-seed LCG: the same blocks every run */
/* a random module N x K with groups of gs columns (act-order g_idx when shuffle) */
void make_module(qd_staged_module *m, const char *name, int64_t N, int64_t K, int gs, int bits, int shuffle);
qd_staged_block make_block(int64_t index); /* 3 modules and 2 tensors; free with free_block */
void free_block(qd_staged_block *b);
int same_block(const qd_staged_block *a, const qd_staged_block *c); /* 1: same names, shapes, bytes */
void make_fingerprint(qd_fingerprint *fpr, const char *recipe); /* version, recipe, calibration hash */

#endif
