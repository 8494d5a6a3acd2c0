/* SPDX-License-Identifier: MIT
 * qd-st-planned.h - safetensors shards whose layout is fixed before any data is written, so that
 * several threads can write tensors (or parts of them) at their final offsets at once.
 *
 * Declare every tensor in file order (qd_stpl_declare), fix the layout (qd_stpl_layout: the shards
 * are cut exactly where qd_stw_add would cut them, the headers written), then write each tensor's
 * bytes with qd_stpl_write from any thread, in any order, in one or several pieces. qd_stpl_finish
 * checks that every byte was written once, fsyncs each shard once, writes the index and fsyncs the
 * directory. For the same tensors and bytes the files equal those of qd_stw_* (qd-st-writer.h); the
 * shards carry their final names at once, so write into a qd_outdir (the directory appears only
 * when complete).
 */
#ifndef QD_ST_PLANNED_H
#define QD_ST_PLANNED_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-status.h"

typedef struct qd_stpl qd_stpl;

qd_status qd_stpl_open(const char *dir, const char *prefix, uint64_t max_shard_bytes, qd_stpl **out);
/* Appends a tensor (the name is copied); *index identifies it in qd_stpl_write. Before the layout only. */
qd_status qd_stpl_declare(qd_stpl *w, const char *name, qd_dtype dtype, int ndim, const int64_t *shape,
                          uint64_t nbytes, size_t *index);
/* Cuts the shards, creates them and writes their headers. */
qd_status qd_stpl_layout(qd_stpl *w);
int qd_stpl_nshards(const qd_stpl *w);
/* Bytes [offset, offset + len) of tensor index. Thread-safe after qd_stpl_layout. */
qd_status qd_stpl_write(qd_stpl *w, size_t index, uint64_t offset, const void *data, size_t len);
qd_status qd_stpl_finish(qd_stpl *w); /* checks, fsyncs, writes the index; frees w */
void qd_stpl_abort(qd_stpl *w);       /* frees w, leaves files for qd_outdir_abort to remove */

#endif
