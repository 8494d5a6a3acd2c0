/* SPDX-License-Identifier: MIT */
#include "qd-replay.h"

#include "qd-check.h"
#include "quantize-internal.h"

int qd_qctx_fp_chain(const qd_qctx *ctx) { return ctx->o.base.method == QD_METHOD_AWQ; }

qd_status qd_block_replay(qd_qctx *ctx, qd_block_w *w, qd_qresult *results, qd_buf_t inputs,
                          qd_buf_t outputs) {
    if (!qd_qctx_fp_chain(ctx))
        for (int l = 0; l < w->nlin; l++)
            if (results[l].q.codes) QD_CHECK(qd__install(ctx, w, l, &results[l]));
    return qd__forward_all(ctx, w, inputs, outputs, NULL, NULL, -1);
}
