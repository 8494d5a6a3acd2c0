/* SPDX-License-Identifier: MIT
 * static-scales.c - fp8-static's activation scales (quantize-internal.h): one forward of the quantized
 * block over every calibration sequence, each Linear's input observed as the runtime will see it
 * (the chain's input, the block's quantized weights, an MoE expert's routed rows), amax per input (the
 * Linears sharing an input share it) maximised over chunks and ranks (order-free: any rank count gives
 * the same scales); input_scale = max(amax / 448, fp32 eps), as compressed-tensors' calculate_qparams for
 * a symmetric float8 observer, rounded to the scale dtype. nvfp4's input_global_scale (in the same field) is
 * compressed-tensors' generate_gparam of that amax: fp32(448 * 6 / amax), 1 where that is not finite. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "qd-act-observe.h"
#include "qd-check.h"
#include "qd-fp4.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "quantize-internal.h"

typedef struct {
    qd_qctx *c;
    const qd_block_w *w;
    qd_act_obs *obs; /* [nh], per tensor */
} obs_cap;

static qd_status obs_cb(void *user, int l, qd_ref x, size_t rows) {
    obs_cap *o = user;
    int key = o->w->lin[l].hkey;
    if (key < 0 || key >= o->c->nh) return QD_OK;
    size_t K = o->w->n_in[l];
    return qd_act_obs_add(o->c->be, &o->obs[key], x, rows, K, K);
}

int qd__wants_static_scales(const qd_block_w *w, const qd_qspec *specs) {
    for (int l = 0; l < w->nlin; l++)
        if (!specs[l].skip && qd_scheme_static_act(specs[l].scheme)) return 1;
    return 0;
}

qd_status qd__static_input_scales(qd_qctx *c, const qd_block_w *w, qd_buf_t in, const qd_qspec *specs,
                                  qd_qresult *results) {
    if (!c->fwd || !in) {
        int l = 0;
        while (l + 1 < w->nlin && (specs[l].skip || !qd_scheme_static_act(specs[l].scheme))) l++;
        return qd_fail(QD_ERR_USAGE, "block %d: scheme %s calibrates its activation scales: give --calib",
                       w->index, qd_scheme_name(specs[l].scheme));
    }
    size_t rows = c->o.nseq * c->o.seq_len, H = (size_t)c->cfg->hidden, nh = (size_t)c->nh;
    if (!c->fp_out) QD_CHECK(qd_buf_alloc(c->be, rows * H + 1, &c->fp_out));
    qd_act_obs *obs = calloc(nh, sizeof *obs);
    double *amax = calloc(nh, sizeof *amax);
    qd_status st = obs && amax ? QD_OK : qd_fail(QD_ERR_NOMEM, "block %d: out of memory for %zu observers", w->index, nh);
    obs_cap cap = {.c = c, .w = w, .obs = obs};
    if (st == QD_OK) st = qd__forward_all(c, w, in, c->fp_out, obs_cb, &cap, -1);
    for (size_t k = 0; st == QD_OK && k < nh; k++) amax[k] = obs[k].amax;
    if (st == QD_OK) st = qd_act_amax_reduce(amax, nh, c->coll);
    for (int l = 0; st == QD_OK && l < w->nlin; l++) {
        if (specs[l].skip || !qd_scheme_static_act(specs[l].scheme) || !results[l].q.codes) continue;
        double a = amax[w->lin[l].hkey], s = a / QD_E4M3_MAX;
        if (specs[l].scheme == QD_SCHEME_NVFP4) {
            float g = (float)(QD_E4M3_MAX * QD_E2M1_MAX) / (float)(a > FLT_MIN ? a : FLT_MIN); /* fp32, as torch */
            results[l].q.input_scale = isfinite(g) ? g : 1.0f;
        } else {
            results[l].q.input_scale = qd_scale_round(c->o.scale_dtype, (float)(s > FLT_EPSILON ? s : FLT_EPSILON));
        }
        qd_info("%s: %s input amax %.6g, input scale %.6g", results[l].q.name, qd_scheme_name(specs[l].scheme), a,
                (double)results[l].q.input_scale);
    }
    free(obs), free(amax);
    return st;
}
