/* SPDX-License-Identifier: MIT
 * awq-internal.h - AWQ for one block (awq.c), called by the block driver (quantize.c): search the
 * scales and clips, install the quantized weights, and leave the full-precision block output in
 * outputs (AWQ hands on the unmodified chain, docs/numerics.md section 5). */
#ifndef QD_AWQ_INTERNAL_H
#define QD_AWQ_INTERNAL_H

#include "quantize-internal.h"

qd_status qd__awq_block(qd_qctx *c, qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs, qd_qresult *results);

#endif
