/* SPDX-License-Identifier: MIT
 * qd-qsource-stage.h - the quantization source backed by the HDF5 staging of a distributed run.
 *
 * Layers come from DIR/block-NNNNN.h5 (shard/qd-h5stage.h) for blocks 0..nlayers-1, in block order
 * and, inside a block, in staged order; prefix "model.layers.<b>.<module>". Plain tensors come from
 * the source checkpoint, except that a tensor the block staged under /tensors (AWQ-rescaled norms,
 * biases, Linears left unquantized) overrides the source's value, converted back to the source dtype.
 * A block file that is missing is an error naming it (the export needs every block staged).
 * Blocks are read one at a time (HDF5 is serial) and the last three are cached (qsource-stage.c):
 * memory stays at a few blocks' codes.
 */
#ifndef QD_QSOURCE_STAGE_H
#define QD_QSOURCE_STAGE_H

#include "qd-qsource.h"
#include "qd-h5stage.h"
#include "qd-safetensors.h"

/* ck: the source checkpoint, opened with its data by the caller (the run's model handle), read
 * through and not closed: it must outlive the source. nblocks: the model's transformer blocks (every
 * one must be staged); meta_dir: directory holding config.json, tokenizer files and qdist_report.json
 * for the export. */
qd_status qd_qsource_open_stage(const char *staging_dir, const qd_checkpoint *ck, int nblocks, const char *meta_dir,
                                const qd_qrun *run, qd_qsource *out);

/* A planned source, for an export streamed during the run: the layers are heads[0..n) (full names
 * "model.layers.<b>.<module>", in block order; shapes and scheme from the recipe) with nonseq[i] = 1
 * where act-order g_idx is expected, before their blocks exist. A block is read from memory once put
 * (borrowed, read-only, until dropped), else from the staging once qd_qsource_stage_use_files was
 * called; before that a read of it is an internal error, so that no export thread touches HDF5 while
 * the run uses it. */
qd_status qd_qsource_open_planned(const char *staging_dir, const qd_checkpoint *ck, int nblocks, const char *meta_dir,
                                  const qd_qrun *run, const qd_qlinear *heads, const int *nonseq, size_t n,
                                  qd_qsource *out);
/* 1 when b's quantized modules are the planned ones of its block: names in order, N, K, G, bits, group
 * size, sym, and whether g_idx is sequential. */
int qd_qsource_stage_matches(const qd_qsource *src, const qd_staged_block *b);
qd_status qd_qsource_stage_put(const qd_qsource *src, const qd_staged_block *b); /* at most 4 at once */
void qd_qsource_stage_drop(const qd_qsource *src, int64_t block);
void qd_qsource_stage_use_files(const qd_qsource *src);
/* Block `block` read from the staging (without codes) and compared as qd_qsource_stage_matches. */
qd_status qd_qsource_stage_check_file(const qd_qsource *src, int block, int *match);

#endif
