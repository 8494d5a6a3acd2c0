/* SPDX-License-Identifier: MIT
 * qd-st-writer.h - writing a checkpoint directory atomically: sharded safetensors + index.
 *
 * qd_outdir_begin creates DIR.qdist-tmp-<host>-<pid> beside DIR holding the marker DIR/.qdist-output;
 * everything is written there; qd_outdir_commit fsyncs and renames it into place, so no crash leaves
 * a DIR that looks complete. qd_outdir_abort removes the temporary directory.
 * qd_outdir_check (called by begin; call it also before any work): DIR may be missing or empty; a
 * non-empty DIR is replaced only with overwrite and only when it carries the marker (qdist wrote it);
 * one without the marker is refused either way. Also refuses a name too long for the temporary names.
 * qd_outdir_clean_stale removes DIR.qdist-tmp-<host>-<pid> directories of this host whose pid no
 * longer runs (a run killed while writing DIR), and only those that carry the marker or are empty.
 *
 * qd_stw_* streams tensors into shards of at most max_shard_bytes (a lone tensor larger than that
 * gets a shard of its own). Each shard's header is padded with spaces to a multiple of 8 and carries
 * __metadata__ {"format":"pt"}; tensors keep the order they were added in. qd_stw_finish names the
 * shards model-0000i-of-0000n.safetensors and writes model.safetensors.index.json
 * ({"metadata":{"total_size":N},"weight_map":{...}}), or a single model.safetensors with no index.
 */
#ifndef QD_ST_WRITER_H
#define QD_ST_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-status.h"

#define QD_DEFAULT_MAX_SHARD_BYTES (5ull * 1000 * 1000 * 1000)

#define QD_OUTDIR_MARKER ".qdist-output" /* {"tool": "qdist", "version": ...} */

typedef struct qd_outdir qd_outdir;
qd_status qd_outdir_check(const char *final_dir, int overwrite);
void qd_outdir_clean_stale(const char *final_dir);
int qd_outdir_has_marker(const char *dir);
size_t qd_outdir_reserve(void); /* bytes qdist appends to DIR's name for its temporary and staging names */
qd_status qd_outdir_begin(const char *final_dir, int overwrite, qd_outdir **out);
const char *qd_outdir_path(const qd_outdir *o); /* the temporary directory to write into */
qd_status qd_outdir_commit(qd_outdir *o);        /* frees o */
void qd_outdir_abort(qd_outdir *o);              /* frees o */

typedef struct qd_stw qd_stw;
/* prefix: "model" gives model.safetensors / model-00001-of-00002.safetensors */
qd_status qd_stw_open(const char *dir, const char *prefix, uint64_t max_shard_bytes, qd_stw **out);
/* Copies data (nbytes must equal numel*bits/8). */
qd_status qd_stw_add(qd_stw *w, const char *name, qd_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, size_t nbytes);
qd_status qd_stw_finish(qd_stw *w); /* flushes, names shards, writes the index; frees w */
void qd_stw_abort(qd_stw *w);       /* frees w, leaves files for qd_outdir_abort to remove */

#endif
