/* SPDX-License-Identifier: MIT
 * h5stage-internal.h - what the h5stage*.c files share and nobody else sees: the stage handle and
 * the block file naming (DIR/block-NNNNN.h5 plus a suffix such as ".tmp"). */
#ifndef QD_H5STAGE_INTERNAL_H
#define QD_H5STAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "qd-h5stage.h"
#include "qd-status.h"

struct qd_stage {
    char dir[4096];
    int lock_fd; /* DIR/lock, flock'ed by rank 0 for the whole run; -1 elsewhere */
};

qd_status qd__stage_block_path(const char *dir, int64_t block, const char *suffix, char *out, size_t cap);

/* Validate one module / tensor / block in memory (h5stage-check.c). where prefixes the message (the
 * block being written, or the staged file and dataset being read). with_codes = 0: the block was read
 * without its codes (they are NULL and not checked). */
qd_status qd__stage_check_module(const char *where, const struct qd_staged_module *m, int with_codes);
qd_status qd__stage_check_tensor(const char *where, const struct qd_staged_tensor *t);
qd_status qd__stage_check_block(const char *where, const struct qd_staged_block *b, int with_codes);

#endif
