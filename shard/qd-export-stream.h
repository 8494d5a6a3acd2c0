/* SPDX-License-Identifier: MIT
 * qd-export-stream.h - the checkpoint export written while the run quantizes (gptq, gptq_v2, awq,
 * compressed-tensors; the bytes are those of qd_export_run over the finished staging).
 *
 * qd_xstream_begin plans the export from the recipe's headers before any block exists (the same plan,
 * tensor list and refusals as qd_export_run; GPTQ v1's zero points, which need the data, are checked
 * as each layer is packed, with the same message), checks the disk, begins the atomic output
 * directory, lays the shards out and starts the export threads, which write the tensors outside the
 * blocks at once. Each block the run finishes is handed over in memory (qd_xstream_block) and packed
 * into its final place while later blocks are computed; at most two blocks are held at once (the
 * caller waits). qd_xstream_finish exports the blocks it was not given (other ranks', resumed ones)
 * from the staging, fsyncs the shards, writes the index, the metadata files and the configs, and
 * commits the directory. Any failure removes the directory in progress; the staging is not touched.
 */
#ifndef QD_EXPORT_STREAM_H
#define QD_EXPORT_STREAM_H

#include <stddef.h>

#include "qd-export.h"
#include "qd-h5stage.h"
#include "qd-qsource.h"
#include "qd-safetensors.h"

typedef struct qd_xstream qd_xstream;

/* o: the export's options (o->out_dir must outlive the stream); staging: the run's staging directory;
 * ck: the source checkpoint (mapped, outlives the stream); meta: the directory holding config.json and
 * the other metadata files (qdist_report.json is copied from it at the finish); heads / nonseq / n: the
 * quantized Linears as qd_qsource_open_planned takes them. */
qd_status qd_xstream_begin(const qd_export_opts *o, const char *staging, const qd_checkpoint *ck, int nblocks,
                           const char *meta, const qd_qrun *run, const qd_qlinear *heads, const int *nonseq, size_t n,
                           qd_xstream **out);
/* Block b, finished in memory: release(b) is called once the export is done with it, or at once when
 * it is not taken (it differs from the plan, or the stream already failed). Never fails: a failure is
 * kept for qd_xstream_finish. */
void qd_xstream_block(qd_xstream *x, qd_staged_block *b, void (*release)(qd_staged_block *b));
/* After every block is staged, with no other thread of the process using HDF5. Frees x. *fallback = 1
 * (with QD_OK) when a block differed from the plan: nothing was committed, and the caller exports from
 * the staging instead (qd_export_run). *streamed: blocks that were exported from memory. */
qd_status qd_xstream_finish(qd_xstream *x, int *fallback, int *streamed);
/* Stops the threads and removes the output in progress; NULL is fine. Frees x. */
void qd_xstream_abort(qd_xstream *x);

#endif
