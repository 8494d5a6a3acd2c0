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
#include "qd-safetensors.h"

/* ck: the source checkpoint, opened with its data by the caller (the run's model handle), read
 * through and not closed: it must outlive the source. nblocks: the model's transformer blocks (every
 * one must be staged); meta_dir: directory holding config.json, tokenizer files and qdist_report.json
 * for the export. */
qd_status qd_qsource_open_stage(const char *staging_dir, const qd_checkpoint *ck, int nblocks, const char *meta_dir,
                                const qd_qrun *run, qd_qsource *out);

#endif
