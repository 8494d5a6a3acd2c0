/* SPDX-License-Identifier: MIT
 * awq-dp.c - AWQ over data-parallel ranks (quantize-internal.h): the activation means and the loss of
 * each candidate scale are sums over tokens, so each rank sums its own and the sums are reduced; the
 * clip search's sampled tokens are gathered so every rank searches the same inputs. With --numerics
 * exact every sum is made per slab (chunk) and folded in slab order, so the result does not depend on
 * the rank count; else each rank folds its slabs in fp64 and the ranks' sums are all-reduced (fp64), which
 * depends on the rank count only through fp64 rounding.
 */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "quantize-internal.h"

size_t qd__dp_local_slabs(const qd_qctx *c) { return c->chunk_seqs ? (c->o.nseq + c->chunk_seqs - 1) / c->chunk_seqs : 0; }

int qd__dp_exact(const qd_qctx *c) { return c->coll && qd_be_numerics(c->be) == QD_NUMERICS_EXACT; }

qd_status qd__dp_sum(qd_qctx *c, const double *in, size_t nslabs, size_t n, double *out) {
    const qd_collective *cl = c->coll;
    if (!qd__dp_exact(c)) { /* this rank's slabs in order, then the ranks' sums all-reduced (fp64) */
        memset(out, 0, n * sizeof *out);
        for (size_t s = 0; s < nslabs; s++)
            for (size_t i = 0; i < n; i++) out[i] += in[s * n + i];
        if (!cl) return QD_OK;
        qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
        qd_status st = cl->allreduce_f64(cl, out, n);
        qd_phase_set(c->be, prev);
        return st;
    }
    size_t *counts = calloc((size_t)cl->size, sizeof *counts), total = 0;
    if (!counts) return qd_fail(QD_ERR_NOMEM, "awq: out of memory");
    for (int r = 0; r < cl->size; r++) {
        size_t first, count;
        qd_collective_share(c->nseq_total, c->chunk_seqs, r, cl->size, &first, &count);
        counts[r] = (count + c->chunk_seqs - 1) / c->chunk_seqs * n * sizeof(double);
        total += counts[r];
    }
    qd_status st = QD_OK;
    qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
    double *all = malloc(total + 1);
    if (!all) st = qd_fail(QD_ERR_NOMEM, "awq: out of memory for %zu bytes of slab sums", total);
    if (st == QD_OK && counts[cl->rank] != nslabs * n * sizeof(double))
        st = qd_fail(QD_ERR_INTERNAL, "awq: %zu slabs here, the share says %zu", nslabs, counts[cl->rank] / n / sizeof(double));
    if (st == QD_OK) st = cl->allgatherv(cl, in, counts, all);
    if (st == QD_OK) { /* ranks hold contiguous slabs in rank order: the gather is in slab order */
        memset(out, 0, n * sizeof *out);
        for (size_t s = 0; s < total / sizeof(double) / n; s++)
            for (size_t i = 0; i < n; i++) out[i] = out[i] + all[s * n + i];
    }
    free(all), free(counts);
    qd_phase_set(c->be, prev);
    return st;
}

qd_status qd__dp_clip_tokens(qd_qctx *c, const qd__awq_in *a, size_t step, size_t T, qd_buf_t X) {
    const qd_collective *cl = c->coll;
    size_t K = a->K, n = (size_t)cl->size;
    size_t *counts = calloc(n, sizeof *counts), mine_first = 0, mine = 0;
    double *rows = calloc(n, sizeof *rows), here = (double)a->rows;
    size_t *ones = calloc(n, sizeof *ones);
    if (!counts || !rows || !ones) {
        free(counts), free(rows), free(ones);
        return qd_fail(QD_ERR_NOMEM, "awq: out of memory");
    }
    for (size_t r = 0; r < n; r++) ones[r] = sizeof(double);
    qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
    qd_status st = cl->allgatherv(cl, &here, ones, rows); /* every rank's row count: where its rows start */
    qd_phase_set(c->be, prev);
    for (size_t r = 0, r0 = 0; st == QD_OK && r < n; r++) { /* the sampled rows t * step in rank r's */
        size_t r1 = r0 + (size_t)rows[r], t0 = (r0 + step - 1) / step, t1 = (r1 + step - 1) / step;
        if (t1 > T) t1 = T;
        if (t0 > t1) t0 = t1;
        counts[r] = (t1 - t0) * K * sizeof(float);
        if ((int)r == cl->rank) mine_first = t0 * step - r0, mine = t1 - t0;
        r0 = r1;
    }
    free(rows), free(ones);
    float *h = malloc(mine * K * sizeof *h + 1), *all = malloc(T * K * sizeof *all + 1);
    qd_buf_t loc = NULL;
    if (st == QD_OK && (!h || !all)) st = qd_fail(QD_ERR_NOMEM, "awq: out of memory for %zu clip tokens", T);
    if (st == QD_OK && mine) {
        st = qd_buf_alloc(c->be, mine * K, &loc);
        if (st == QD_OK)
            st = qd_be_copy(c->be, &(struct qd_copy_args){.dst = QD_REF(loc, 0), .src = QD_REF(a->buf, mine_first * K),
                                                          .rows = mine, .cols = K, .ldd = K, .lds = step * K});
        if (st == QD_OK) st = qd_be_download(c->be, &(struct qd_download_args){.src = QD_REF(loc, 0), .dst = h, .n = mine * K});
    }
    prev = qd_phase_set(c->be, QD_PH_REDUCE);
    if (st == QD_OK) st = cl->allgatherv(cl, h, counts, all);
    qd_phase_set(c->be, prev);
    if (st == QD_OK)
        st = qd_be_upload(c->be, &(struct qd_upload_args){.dst = QD_REF(X, 0), .src = all, .src_dtype = QD_DT_F32, .n = T * K});
    qd_buf_free(loc);
    free(h), free(all), free(counts);
    return st;
}
