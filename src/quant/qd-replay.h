/* SPDX-License-Identifier: MIT
 * qd-replay.h - a block's output recomputed from its quantization results alone.
 *
 * The staged driver (mpi/run-worker.c) calls it for a block that is already staged (resume); right
 * after quantizing, it hands on the output the per-block driver left, which is the same forward with
 * the same installed weights, so the next block gets the same bits either way (a resumed run is
 * byte-identical to an uninterrupted one). GPTQ/RTN: every Linear with codes gets its
 * dequantized weight (scales rounded to the export's dtype, as qd-qlayer.h), then the whole block
 * runs forward. AWQ (base method): the full-precision chain - the forward of the weights as passed
 * (the caller passes the original block), results untouched.
 */
#ifndef QD_REPLAY_H
#define QD_REPLAY_H

#include "qd-quantize.h"

qd_status qd_block_replay(qd_qctx *ctx, qd_block_w *w, qd_qresult *results, qd_buf_t inputs,
                          qd_buf_t outputs);
/* 1 when the run's chain is full precision (AWQ base method) */
int qd_qctx_fp_chain(const qd_qctx *ctx);

#endif
