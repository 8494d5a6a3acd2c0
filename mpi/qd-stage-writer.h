/* SPDX-License-Identifier: MIT
 * qd-stage-writer.h - staging a finished block on an I/O thread, so the HDF5 write and its fsync
 * (about a second for a Llama-3-8B block) overlap the next block's compute.
 *
 * One block is in flight at a time: submit waits for the previous write first. The writer owns what
 * it is given and frees it after writing (release). A block counts as staged only once its file is
 * renamed into place (qd-h5stage.h), so a crash while a write is in flight loses that block and
 * --resume quantizes it again, with the same result. HDF5 is the non-thread-safe build: every other
 * staging call in the process (reads for replay and the report) must come after qd_stage_writer_flush.
 * A failed write is reported once by the writer (naming the file); submit and flush return its status.
 */
#ifndef QD_STAGE_WRITER_H
#define QD_STAGE_WRITER_H

#include "qd-h5stage.h"

typedef struct qd_stage_writer qd_stage_writer;

qd_status qd_stage_writer_start(qd_stage *stage, qd_stage_writer **out);
/* Waits for the previous write, then hands b over: release(b) runs after b is written (or failed). */
qd_status qd_stage_writer_submit(qd_stage_writer *w, qd_staged_block *b, void (*release)(qd_staged_block *b));
/* Waits until nothing is in flight; returns the first failure of any write so far. */
qd_status qd_stage_writer_flush(qd_stage_writer *w);
/* Seconds the writer spent writing (overlapped with compute). */
double qd_stage_writer_busy_s(qd_stage_writer *w);
/* Flushes and ends the thread (NULL is a no-op). */
void qd_stage_writer_stop(qd_stage_writer *w);

#endif
