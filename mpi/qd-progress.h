/* SPDX-License-Identifier: MIT
 * qd-progress.h - rank 0's aggregated progress of a distributed run.
 *
 * Progress is read from the staging directory, which every rank writes to and which is shared
 * across nodes: a thread on rank 0 polls DIR/block-NNNNN.h5 (see shard/qd-h5stage.h) and reports
 * blocks done per rank, calibration tokens/s and an ETA. No MPI traffic is involved, so ranks never
 * wait for the reporter and MPI needs no thread support. Modes: a redrawn bar on a terminal, plain
 * lines otherwise (one per finished block), one JSON object per line (--progress json), or nothing
 * (--quiet). Blocks already staged when the run starts (--resume) count as done but not towards speed.
 */
#ifndef QD_PROGRESS_H
#define QD_PROGRESS_H

#include "qd-plan.h"
#include "qd-status.h"

typedef enum { QD_PROGRESS_AUTO, QD_PROGRESS_BAR, QD_PROGRESS_LINES, QD_PROGRESS_JSON, QD_PROGRESS_QUIET } qd_progress_mode;

typedef struct qd_progress qd_progress;

/* tokens_per_block: calibration tokens pushed through each block (for tokens/s). */
qd_status qd_progress_start(const char *staging_dir, const qd_plan *plan, double tokens_per_block,
                            qd_progress_mode mode, qd_progress **out);
/* Final report and join; NULL is a no-op. */
void qd_progress_stop(qd_progress *p);

#endif
