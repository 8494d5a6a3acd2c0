/* SPDX-License-Identifier: MIT
 * qd-rows.h - host loops split by rows over threads. fn(ctx, t, r0, r1) does rows [r0, r1) as part t;
 * the parts are contiguous and in order (part t's results may be combined in t order). One part below
 * QD_ROWS_MIN_VALUES values; else the CPUs, at most QD_ROWS_MAX_PARTS and never more than rows. A part
 * whose thread does not start runs on the calling thread, so the call cannot fail. */
#ifndef QD_ROWS_H
#define QD_ROWS_H

#include <stddef.h>

#define QD_ROWS_MAX_PARTS 16
#define QD_ROWS_MIN_VALUES ((size_t)4 << 20)

typedef void (*qd_rows_fn)(void *ctx, int part, size_t r0, size_t r1);

/* the number of parts qd_rows_run uses for rows x cols values */
int qd_rows_parts(size_t rows, size_t cols);
void qd_rows_run(size_t rows, size_t cols, qd_rows_fn fn, void *ctx);

#endif
