/* SPDX-License-Identifier: MIT
 * backend.c - the public wrappers of qd-backend.h: check each call's arguments once (handles, bounds,
 * size consistency), then dispatch through the backend's table. A failed check is a bug in the caller
 * and is reported as QD_ERR_INTERNAL naming the op and the operand. */
#include <stdlib.h>
#include <string.h>

#include "qd-backend-impl.h"
#include "qd-check.h"
#include "qd-log.h"

qd_status qd_backend_new(const struct qd_backend_i *iface, void *ctx, qd_backend_t *out) {
    if (!iface || !iface->buf_alloc || !iface->buf_free || !iface->upload || !iface->download ||
        !iface->copy || !iface->fill || !iface->gemm || !iface->hessian || !iface->symmetrize || !iface->diag_add || !iface->acc64 ||
        !iface->chol_inv || !iface->permute || !iface->ewise || !iface->rows || !iface->rmsnorm || !iface->rope ||
        !iface->attention || !iface->cross_entropy || !iface->reduce || !iface->colstat ||
        !iface->quantize || !iface->gptq_sweep || !iface->awq_clip || !iface->fp8_dequant)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: incomplete op table", iface ? iface->name : "?");
    qd_backend_t be;
    QD_ALLOC(be, 1);
    be->iface = iface;
    be->ctx = ctx;
    qd__backend_prof_attach(be);
    *out = be;
    return QD_OK;
}

const char *qd_be_name(qd_backend_t be) { return be ? be->iface->name : "(none)"; }

void qd_be_free(qd_backend_t be) {
    if (!be) return;
    qd__backend_prof_report(be);
    qd__backend_prof_detach(be);
    if (be->iface->free) be->iface->free(be);
    free(be);
}

qd_status qd_be_synchronize(qd_backend_t be) {
    if (!be) return qd_fail(QD_ERR_INTERNAL, "backend: synchronize on a NULL backend");
    return be->iface->synchronize ? be->iface->synchronize(be) : QD_OK;
}

qd_status qd_buf_alloc(qd_backend_t be, size_t n, qd_buf_t *out) {
    if (!be || !out) return qd_fail(QD_ERR_INTERNAL, "backend: buf_alloc without a backend");
    qd_buf_t b;
    QD_ALLOC(b, 1);
    qd_status st = be->iface->buf_alloc(be, n ? n : 1, &b->ptr);
    if (st != QD_OK) {
        free(b);
        return st;
    }
    b->owner = be;
    b->n = n;
    *out = b;
    return QD_OK;
}

void qd_buf_free(qd_buf_t buf) {
    if (!buf) return;
    buf->owner->iface->buf_free(buf->owner, buf->ptr);
    free(buf);
}

size_t qd_buf_len(qd_buf_t buf) { return buf ? buf->n : 0; }

qd_status qd_be_set_numerics(qd_backend_t be, qd_numerics mode) {
    if (!be || (mode != QD_NUMERICS_FAST && mode != QD_NUMERICS_EXACT))
        return qd_fail(QD_ERR_INTERNAL, "backend: set_numerics(%d) without a backend or with an unknown mode", (int)mode);
    be->numerics = mode;
    return QD_OK;
}

qd_numerics qd_be_numerics(qd_backend_t be) { return be ? be->numerics : QD_NUMERICS_FAST; }

/* ---- argument checks ---- */

/* A ref must name a buffer of this backend holding `extent` elements from its offset. */
static qd_status ref_ok(qd_backend_t be, const char *op, const char *what, qd_ref r, size_t extent) {
    if (!r.buf) return qd_fail(QD_ERR_INTERNAL, "backend %s: %s: operand %s is NULL", be->iface->name, op, what);
    if (r.buf->owner != be)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: %s: operand %s belongs to backend %s",
                       be->iface->name, op, what, r.buf->owner->iface->name);
    if (r.off > r.buf->n || extent > r.buf->n - r.off)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: %s: operand %s needs elements [%zu, %zu) of a buffer of %zu",
                       be->iface->name, op, what, r.off, r.off + extent, r.buf->n);
    return QD_OK;
}

static qd_status opt_ref_ok(qd_backend_t be, const char *op, const char *what, qd_ref r, size_t extent) {
    return r.buf ? ref_ok(be, op, what, r, extent) : QD_OK;
}

/* elements spanned by a rows x cols matrix with row stride ld */
static size_t span(size_t rows, size_t cols, size_t ld) { return rows && cols ? (rows - 1) * ld + cols : 0; }

static qd_status be_ok(qd_backend_t be, const void *a, const char *op) {
    if (!be || !a) return qd_fail(QD_ERR_INTERNAL, "backend: %s called without a backend or arguments", op);
    return QD_OK;
}

static qd_status ld_ok(qd_backend_t be, const char *op, const char *what, size_t ld, size_t cols) {
    if (ld < cols)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: %s: row stride of %s (%zu) < its columns (%zu)",
                       be->iface->name, op, what, ld, cols);
    return QD_OK;
}

qd_status qd_be_upload(qd_backend_t be, const struct qd_upload_args *a) {
    QD_CHECK(be_ok(be, a, "upload"));
    if (!a->src && a->n) return qd_fail(QD_ERR_INTERNAL, "backend %s: upload from NULL", be->iface->name);
    unsigned bits = qd_dtype_bits(a->src_dtype);
    if (!(qd_dtype_is_float(a->src_dtype) || bits == 32))
        return qd_fail(QD_ERR_INTERNAL, "backend %s: upload of dtype %s (float or 32-bit types only)",
                       be->iface->name, qd_dtype_name(a->src_dtype));
    QD_CHECK(ref_ok(be, "upload", "dst", a->dst, a->n));
    return a->n ? be->iface->upload(be, a) : QD_OK;
}

qd_status qd_be_download(qd_backend_t be, const struct qd_download_args *a) {
    QD_CHECK(be_ok(be, a, "download"));
    if (!a->dst && a->n) return qd_fail(QD_ERR_INTERNAL, "backend %s: download to NULL", be->iface->name);
    QD_CHECK(ref_ok(be, "download", "src", a->src, a->n));
    return a->n ? be->iface->download(be, a) : QD_OK;
}

qd_status qd_be_copy(qd_backend_t be, const struct qd_copy_args *a) {
    QD_CHECK(be_ok(be, a, "copy"));
    QD_CHECK(ld_ok(be, "copy", "dst", a->ldd, a->cols));
    QD_CHECK(ld_ok(be, "copy", "src", a->lds, a->cols));
    QD_CHECK(ref_ok(be, "copy", "dst", a->dst, span(a->rows, a->cols, a->ldd)));
    QD_CHECK(ref_ok(be, "copy", "src", a->src, span(a->rows, a->cols, a->lds)));
    return a->rows && a->cols ? be->iface->copy(be, a) : QD_OK;
}

qd_status qd_be_fill(qd_backend_t be, const struct qd_fill_args *a) {
    QD_CHECK(be_ok(be, a, "fill"));
    QD_CHECK(ref_ok(be, "fill", "dst", a->dst, a->n));
    return a->n ? be->iface->fill(be, a) : QD_OK;
}

qd_status qd_be_gemm(qd_backend_t be, const struct qd_gemm_args *a) {
    QD_CHECK(be_ok(be, a, "gemm"));
    size_t ar = a->trans_a ? a->K : a->M, ac = a->trans_a ? a->M : a->K;
    size_t br = a->trans_b ? a->N : a->K, bc = a->trans_b ? a->K : a->N;
    QD_CHECK(ld_ok(be, "gemm", "A", a->lda, ac));
    QD_CHECK(ld_ok(be, "gemm", "B", a->ldb, bc));
    QD_CHECK(ld_ok(be, "gemm", "C", a->ldc, a->N));
    QD_CHECK(ref_ok(be, "gemm", "A", a->A, span(ar, ac, a->lda)));
    QD_CHECK(ref_ok(be, "gemm", "B", a->B, span(br, bc, a->ldb)));
    QD_CHECK(ref_ok(be, "gemm", "C", a->C, span(a->M, a->N, a->ldc)));
    return a->M && a->N ? be->iface->gemm(be, a) : QD_OK;
}

qd_status qd_be_hessian(qd_backend_t be, const struct qd_hessian_args *a) {
    QD_CHECK(be_ok(be, a, "hessian"));
    QD_CHECK(ld_ok(be, "hessian", "X", a->ldx, a->K));
    QD_CHECK(ref_ok(be, "hessian", "H", a->H, a->K * a->K));
    QD_CHECK(ref_ok(be, "hessian", "X", a->X, span(a->T, a->K, a->ldx)));
    return a->K ? be->iface->hessian(be, a) : QD_OK;
}

qd_status qd_be_symmetrize(qd_backend_t be, const struct qd_symmetrize_args *a) {
    QD_CHECK(be_ok(be, a, "symmetrize"));
    QD_CHECK(ref_ok(be, "symmetrize", "A", a->A, a->n * a->n));
    return a->n > 1 ? be->iface->symmetrize(be, a) : QD_OK;
}

qd_status qd_be_diag_add(qd_backend_t be, const struct qd_diag_add_args *a) {
    QD_CHECK(be_ok(be, a, "diag_add"));
    QD_CHECK(ref_ok(be, "diag_add", "A", a->A, a->n * a->n));
    if (a->v) QD_CHECK(ref_ok(be, "diag_add", "v", QD_REF(a->v, a->v_off), a->n));
    return a->n ? be->iface->diag_add(be, a) : QD_OK;
}

qd_status qd_be_acc64(qd_backend_t be, const struct qd_acc64_args *a) {
    QD_CHECK(be_ok(be, a, "acc64"));
    if (a->upper_k && a->upper_k * a->upper_k != a->n)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: acc64: upper_k %zu is not the side of %zu values",
                       be->iface->name, a->upper_k, a->n);
    if (a->acc.off % 2) /* the doubles must be 8-byte aligned */
        return qd_fail(QD_ERR_INTERNAL, "backend %s: acc64: acc at odd element %zu", be->iface->name, a->acc.off);
    QD_CHECK(ref_ok(be, "acc64", "acc", a->acc, 2 * a->n));
    QD_CHECK(ref_ok(be, "acc64", "x", a->x, a->n));
    return a->n ? be->iface->acc64(be, a) : QD_OK;
}

qd_status qd_be_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a) {
    QD_CHECK(be_ok(be, a, "chol_inv"));
    QD_CHECK(ref_ok(be, "chol_inv", "A", a->A, a->n * a->n));
    return a->n ? be->iface->chol_inv(be, a) : QD_OK;
}

qd_status qd_be_permute(qd_backend_t be, const struct qd_permute_args *a) {
    QD_CHECK(be_ok(be, a, "permute"));
    size_t np = a->kind == QD_PERM_ROWS ? a->rows : a->cols;
    if (a->kind == QD_PERM_SYM && a->rows != a->cols)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: permute: symmetric gather of a %zu x %zu matrix",
                       be->iface->name, a->rows, a->cols);
    if (a->dst.buf == a->src.buf)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: permute: dst and src are the same buffer", be->iface->name);
    QD_CHECK(ref_ok(be, "permute", "dst", a->dst, a->rows * a->cols));
    QD_CHECK(ref_ok(be, "permute", "src", a->src, a->rows * a->cols));
    QD_CHECK(ref_ok(be, "permute", "perm", a->perm, np));
    return a->rows && a->cols ? be->iface->permute(be, a) : QD_OK;
}

qd_status qd_be_ewise(qd_backend_t be, const struct qd_ewise_args *a) {
    QD_CHECK(be_ok(be, a, "ewise"));
    QD_CHECK(ld_ok(be, "ewise", "x", a->ld, a->cols));
    size_t ext = span(a->rows, a->cols, a->ld);
    QD_CHECK(ref_ok(be, "ewise", "out", a->out, ext));
    QD_CHECK(ref_ok(be, "ewise", "x", a->x, ext));
    switch (a->kind) {
    case QD_EW_ADD: case QD_EW_MUL: case QD_EW_SWIGLU:
        QD_CHECK(ref_ok(be, "ewise", "y", a->y, ext));
        break;
    case QD_EW_ADD_ROWV: case QD_EW_MUL_COLV: case QD_EW_DIV_COLV:
        QD_CHECK(ref_ok(be, "ewise", "v", a->v, a->cols));
        break;
    case QD_EW_MUL_ROWV: case QD_EW_DIV_ROWV:
        QD_CHECK(ref_ok(be, "ewise", "v", a->v, a->rows));
        break;
    case QD_EW_SCALE:
        break;
    default:
        return qd_fail(QD_ERR_INTERNAL, "backend %s: ewise: unknown kind %d", be->iface->name, (int)a->kind);
    }
    return ext ? be->iface->ewise(be, a) : QD_OK;
}

qd_status qd_be_rows(qd_backend_t be, const struct qd_rows_args *a) {
    QD_CHECK(be_ok(be, a, "rows"));
    int gather = a->kind == QD_ROWS_GATHER;
    if (!gather && a->kind != QD_ROWS_SCATTER_ADD)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: rows: unknown kind %d", be->iface->name, (int)a->kind);
    QD_CHECK(ref_ok(be, "rows", "out", a->out, (gather ? a->n : a->rows) * a->cols));
    QD_CHECK(ref_ok(be, "rows", "x", a->x, (gather ? a->rows : a->n) * a->cols));
    QD_CHECK(ref_ok(be, "rows", "idx", a->idx, a->n));
    if (!gather) QD_CHECK(ref_ok(be, "rows", "w", a->w, a->n));
    return a->n && a->cols ? be->iface->rows(be, a) : QD_OK;
}

qd_status qd_be_rmsnorm(qd_backend_t be, const struct qd_rmsnorm_args *a) {
    QD_CHECK(be_ok(be, a, "rmsnorm"));
    QD_CHECK(ld_ok(be, "rmsnorm", "x", a->ld, a->dim));
    QD_CHECK(ref_ok(be, "rmsnorm", "out", a->out, span(a->rows, a->dim, a->ld)));
    QD_CHECK(ref_ok(be, "rmsnorm", "x", a->x, span(a->rows, a->dim, a->ld)));
    QD_CHECK(opt_ref_ok(be, "rmsnorm", "weight", a->weight, a->dim));
    return a->rows && a->dim ? be->iface->rmsnorm(be, a) : QD_OK;
}

qd_status qd_be_rope(qd_backend_t be, const struct qd_rope_args *a) {
    QD_CHECK(be_ok(be, a, "rope"));
    if (a->head_dim % 2 || !a->seq_len)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: rope: head_dim %zu must be even, seq_len %zu > 0",
                       be->iface->name, a->head_dim, a->seq_len);
    QD_CHECK(ld_ok(be, "rope", "x", a->ld, a->heads * a->head_dim));
    QD_CHECK(ref_ok(be, "rope", "x", a->x, span(a->rows, a->heads * a->head_dim, a->ld)));
    size_t tab = (a->rows < a->seq_len ? a->rows : a->seq_len) * (a->head_dim / 2);
    QD_CHECK(ref_ok(be, "rope", "cos", a->cos, tab));
    QD_CHECK(ref_ok(be, "rope", "sin", a->sin, tab));
    return a->rows ? be->iface->rope(be, a) : QD_OK;
}

qd_status qd_be_attention(qd_backend_t be, const struct qd_attention_args *a) {
    QD_CHECK(be_ok(be, a, "attention"));
    if (!a->kv_heads || a->heads % a->kv_heads)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: attention: %zu heads not a multiple of %zu kv heads",
                       be->iface->name, a->heads, a->kv_heads);
    size_t rows = a->nseq * a->seq_len;
    QD_CHECK(ref_ok(be, "attention", "out", a->out, rows * a->heads * a->head_dim));
    QD_CHECK(ref_ok(be, "attention", "q", a->q, rows * a->heads * a->head_dim));
    QD_CHECK(ref_ok(be, "attention", "k", a->k, rows * a->kv_heads * a->head_dim));
    QD_CHECK(ref_ok(be, "attention", "v", a->v, rows * a->kv_heads * a->head_dim));
    return rows ? be->iface->attention(be, a) : QD_OK;
}

qd_status qd_be_cross_entropy(qd_backend_t be, const struct qd_xent_args *a) {
    QD_CHECK(be_ok(be, a, "cross_entropy"));
    if (!a->sum_out) return qd_fail(QD_ERR_INTERNAL, "backend %s: cross_entropy without output", be->iface->name);
    QD_CHECK(ref_ok(be, "cross_entropy", "logits", a->logits, a->rows * a->vocab));
    QD_CHECK(ref_ok(be, "cross_entropy", "targets", a->targets, a->rows));
    *a->sum_out = 0;
    return a->rows ? be->iface->cross_entropy(be, a) : QD_OK;
}

qd_status qd_be_reduce(qd_backend_t be, const struct qd_reduce_args *a) {
    QD_CHECK(be_ok(be, a, "reduce"));
    if (!a->out) return qd_fail(QD_ERR_INTERNAL, "backend %s: reduce without output", be->iface->name);
    QD_CHECK(ref_ok(be, "reduce", "a", a->a, a->n));
    if (a->kind == QD_RED_SQDIFF) QD_CHECK(ref_ok(be, "reduce", "b", a->b, a->n));
    *a->out = 0;
    return a->n ? be->iface->reduce(be, a) : QD_OK;
}

qd_status qd_be_colstat(qd_backend_t be, const struct qd_colstat_args *a) {
    QD_CHECK(be_ok(be, a, "colstat"));
    QD_CHECK(ld_ok(be, "colstat", "src", a->ld, a->cols));
    if (a->kind == QD_COLSTAT_GROUP_NORM_SUM && (!a->group_size || a->cols % a->group_size))
        return qd_fail(QD_ERR_INTERNAL, "backend %s: colstat: group size %zu does not divide %zu columns",
                       be->iface->name, a->group_size, a->cols);
    QD_CHECK(ref_ok(be, "colstat", "out", a->out, a->cols));
    QD_CHECK(ref_ok(be, "colstat", "src", a->src, span(a->rows, a->cols, a->ld)));
    return a->cols ? be->iface->colstat(be, a) : QD_OK;
}

static qd_status qcfg_ok(qd_backend_t be, const char *op, const qd_qcfg *c) {
    /* fp8 codes exist only in the GPTQ sweep, with given scales */
    int fp8_ok = c->kind == QD_QZ_FP8 && strcmp(op, "gptq_sweep") == 0 && c->bits == 8;
    int fp4_ok = c->kind == QD_QZ_FP4 && strcmp(op, "gptq_sweep") == 0 && c->bits == 4;
    if (c->bits < 1 || c->bits > 8 || (c->kind != QD_QZ_MINMAX && c->kind != QD_QZ_AWQ && !fp8_ok && !fp4_ok))
        return qd_fail(QD_ERR_INTERNAL, "backend %s: %s: bad quantizer (kind %d, %d bits)", be->iface->name, op,
                       (int)c->kind, c->bits);
    if (c->mse && (c->mse_grid <= 0 || c->mse_norm <= 0 || c->mse_maxshrink <= 0 || c->mse_maxshrink > 1))
        return qd_fail(QD_ERR_INTERNAL, "backend %s: %s: bad MSE grid", be->iface->name, op);
    return QD_OK;
}

static qd_status groups_of(qd_backend_t be, const char *op, size_t K, size_t gs, size_t *G) {
    if (gs == 0 || gs >= K) {
        *G = 1;
        return QD_OK;
    }
    if (K % gs)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: %s: group size %zu does not divide %zu columns",
                       be->iface->name, op, gs, K);
    *G = K / gs;
    return QD_OK;
}

qd_status qd_be_quantize(qd_backend_t be, const struct qd_quantize_args *a) {
    QD_CHECK(be_ok(be, a, "quantize"));
    QD_CHECK(qcfg_ok(be, "quantize", &a->cfg));
    size_t G = 1;
    QD_CHECK(groups_of(be, "quantize", a->K, a->group_size, &G));
    QD_CHECK(ld_ok(be, "quantize", "W", a->ldw, a->K));
    QD_CHECK(ref_ok(be, "quantize", "W", a->W, span(a->N, a->K, a->ldw)));
    QD_CHECK(opt_ref_ok(be, "quantize", "Q", a->Q, span(a->N, a->K, a->ldw)));
    QD_CHECK(opt_ref_ok(be, "quantize", "codes", a->codes, a->N * a->K));
    if (a->params_in) {
        QD_CHECK(ref_ok(be, "quantize", "scales", a->scales, G * a->N));
        QD_CHECK(ref_ok(be, "quantize", "zeros", a->zeros, G * a->N));
    } else {
        QD_CHECK(opt_ref_ok(be, "quantize", "scales", a->scales, G * a->N));
        QD_CHECK(opt_ref_ok(be, "quantize", "zeros", a->zeros, G * a->N));
    }
    return a->N && a->K ? be->iface->quantize(be, a) : QD_OK;
}

qd_status qd_be_gptq_sweep(qd_backend_t be, const struct qd_gptq_sweep_args *a) {
    QD_CHECK(be_ok(be, a, "gptq_sweep"));
    QD_CHECK(qcfg_ok(be, "gptq_sweep", &a->cfg));
    size_t G = 1;
    if (a->static_groups && a->group_size > 0 && a->group_size < a->K) /* given: a partial last group is fine */
        G = (a->K + a->group_size - 1) / a->group_size;
    else QD_CHECK(groups_of(be, "gptq_sweep", a->K, a->group_size, &G));
    if (!a->loss_out || !a->block_size)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: gptq_sweep: needs loss_out and block_size", be->iface->name);
    QD_CHECK(ref_ok(be, "gptq_sweep", "W", a->W, a->N * a->K));
    QD_CHECK(ref_ok(be, "gptq_sweep", "U", a->U, a->K * a->K));
    QD_CHECK(ref_ok(be, "gptq_sweep", "codes", a->codes, a->N * a->K));
    QD_CHECK(ref_ok(be, "gptq_sweep", "scales", a->scales, G * a->N));
    QD_CHECK(ref_ok(be, "gptq_sweep", "zeros", a->zeros, G * a->N));
    QD_CHECK(opt_ref_ok(be, "gptq_sweep", "perm", a->perm, a->K));
    *a->loss_out = 0;
    return a->N && a->K ? be->iface->gptq_sweep(be, a) : QD_OK;
}

qd_status qd_be_awq_clip(qd_backend_t be, const struct qd_awq_clip_args *a) {
    QD_CHECK(be_ok(be, a, "awq_clip"));
    QD_CHECK(qcfg_ok(be, "awq_clip", &a->cfg));
    size_t G = 1;
    QD_CHECK(groups_of(be, "awq_clip", a->K, a->group_size, &G));
    if (a->grid <= 0 || a->max_shrink <= 0 || a->max_shrink > 1)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: awq_clip: bad grid", be->iface->name);
    QD_CHECK(ref_ok(be, "awq_clip", "W", a->W, a->N * a->K));
    QD_CHECK(ref_ok(be, "awq_clip", "X", a->X, a->T * a->K));
    QD_CHECK(opt_ref_ok(be, "awq_clip", "best_out", a->best_out, a->N * G));
    return a->N && a->K && a->T ? be->iface->awq_clip(be, a) : QD_OK;
}

/* ---- optional ops ---- */

int qd_be_has(qd_backend_t be, qd_opt_op op) {
    if (!be) return 0;
    switch (op) {
    case QD_OPT_U8_CODES: return be->iface->u8_codes != NULL;
    case QD_OPT_MEM_INFO: return be->iface->mem_info != NULL;
    }
    return 0;
}

qd_status qd_be_u8_codes(qd_backend_t be, const struct qd_u8_codes_args *a) {
    QD_CHECK(be_ok(be, a, "u8_codes"));
    if (!be->iface->u8_codes)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: u8_codes is not implemented (check qd_be_has)", be->iface->name);
    if (!a->dequant) {
        QD_CHECK(ref_ok(be, "u8_codes", "dst", a->dst, (a->n + 3) / 4));
        QD_CHECK(ref_ok(be, "u8_codes", "src", a->src, a->n));
        return a->n ? be->iface->u8_codes(be, a) : QD_OK;
    }
    if (!a->G) return qd_fail(QD_ERR_INTERNAL, "backend %s: u8_codes: no groups", be->iface->name);
    QD_CHECK(ref_ok(be, "u8_codes", "W", a->W, a->N * a->K));
    QD_CHECK(ref_ok(be, "u8_codes", "codes", a->codes, (a->N * a->K + 3) / 4));
    QD_CHECK(ref_ok(be, "u8_codes", "scales", a->scales, a->G * a->N));
    QD_CHECK(ref_ok(be, "u8_codes", "zeros", a->zeros, a->G * a->N));
    QD_CHECK(ref_ok(be, "u8_codes", "g_idx", a->g_idx, a->K));
    return a->N && a->K ? be->iface->u8_codes(be, a) : QD_OK;
}

qd_status qd_be_fp8_dequant(qd_backend_t be, const struct qd_fp8_dequant_args *a) {
    QD_CHECK(be_ok(be, a, "fp8_dequant"));
    if (!a->nan_at) return qd_fail(QD_ERR_INTERNAL, "backend %s: fp8_dequant without nan_at", be->iface->name);
    *a->nan_at = -1;
    if (!a->bn || !a->bk)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: fp8_dequant: block [%zu, %zu] (each >= 1)", be->iface->name, a->bn,
                       a->bk);
    if (a->N && a->K && (!a->codes || !a->scale))
        return qd_fail(QD_ERR_INTERNAL, "backend %s: fp8_dequant from NULL codes or scales", be->iface->name);
    if (a->K && a->N > (size_t)INT64_MAX / a->K)
        return qd_fail(QD_ERR_INTERNAL, "backend %s: fp8_dequant: [%zu, %zu] overflows", be->iface->name, a->N, a->K);
    QD_CHECK(ref_ok(be, "fp8_dequant", "dst", a->dst, a->N * a->K));
    return a->N && a->K ? be->iface->fp8_dequant(be, a) : QD_OK;
}

qd_status qd_be_mem_info(qd_backend_t be, struct qd_mem_info *out) {
    QD_CHECK(be_ok(be, out, "mem_info"));
    *out = (struct qd_mem_info){0};
    return be->iface->mem_info ? be->iface->mem_info(be, out) : QD_OK;
}

qd_status qd_be_native(qd_backend_t be, qd_ref r, void **ptr, void **stream) {
    QD_CHECK(be_ok(be, ptr, "native"));
    if (!be->iface->stream) return QD_ERR_UNSUPPORTED;
    if (r.buf) QD_CHECK(ref_ok(be, "native", "buffer", r, 0));
    *ptr = r.buf ? (char *)r.buf->ptr + r.off * 4 : NULL;
    return be->iface->stream(be, stream);
}
