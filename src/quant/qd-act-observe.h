/* SPDX-License-Identifier: MIT
 * qd-act-observe.h - activation statistics observed during calibration forwards: the absolute maximum
 * of captured activations, per channel (SmoothQuant's max|X_j|) and per tensor (static fp8 input
 * scales; a KV-cache observer takes k/v outputs the same way).
 *
 * An observer is fed any number of [rows, cols] slices (row stride ld) in any order; max is order-free,
 * so the result does not depend on how the calibration is cut into chunks. qd_act_obs_reduce takes the
 * maximum over data-parallel ranks (an all-gather of every rank's maxima, then max): every rank ends
 * with the same bits whatever the rank count. Non-finite values are not filtered: callers check inputs.
 */
#ifndef QD_ACT_OBSERVE_H
#define QD_ACT_OBSERVE_H

#include <stddef.h>

#include "qd-backend.h"
#include "qd-collective.h"

typedef struct qd_act_obs {
    size_t cols;       /* channels observed per channel; 0: per tensor only */
    double *chan_amax; /* [cols] max |x[:, j]|, or NULL when cols is 0 */
    double amax;       /* max |x| over everything fed */
    size_t rows_seen;  /* rows fed on this rank (after reduce: the sum over ranks) */
    float *host;       /* download scratch (per-channel statistics are made on the host) */
    size_t host_cap;
} qd_act_obs;

/* zeroed statistics; cols 0 observes only the per-tensor maximum (on the device, no download) */
qd_status qd_act_obs_init(qd_act_obs *o, size_t cols);
/* add x [rows, cols] (row stride ld >= cols; per tensor only: cols any width, ld == cols) */
qd_status qd_act_obs_add(qd_backend_t be, qd_act_obs *o, qd_ref x, size_t rows, size_t cols, size_t ld);
/* the maxima over every rank of coll (NULL: nothing to do); every rank must call it */
qd_status qd_act_obs_reduce(qd_act_obs *o, const qd_collective *coll);
void qd_act_obs_free(qd_act_obs *o); /* NULL-safe; leaves o zeroed */
/* amax [n] (host) replaced by its elementwise maximum over the ranks of coll (NULL: unchanged), in one
 * all-gather: for many per-tensor observers at once */
qd_status qd_act_amax_reduce(double *amax, size_t n, const qd_collective *coll);

#endif
