/* SPDX-License-Identifier: MIT
 * backend-prof.c - QD_OP_PROFILE: the time of every backend op, by op and by GEMM shape, printed when
 * the backend is freed. A table of its own stands in front of the backend's: each entry synchronizes,
 * times the backend's own entry and synchronizes again, so each op's time is its device time plus one
 * launch (the run is slower while this is on). A diagnostic: the numbers are for finding where a run's
 * device time goes, not for the performance tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-backend-impl.h"
#include "qd-clock.h"
#include "qd-log.h"
#include "qd-param.h"

#define OPS(X)                                                                                                   \
    X(upload, qd_upload_args, 0) X(download, qd_download_args, 0) X(copy, qd_copy_args, 0)                       \
    X(fill, qd_fill_args, 0) X(gemm, qd_gemm_args, 2.0 * a->M * a->N * a->K)                                     \
    X(hessian, qd_hessian_args, (a->upper_only ? 1.0 : 2.0) * a->T * a->K * a->K)                                \
    X(symmetrize, qd_symmetrize_args, 0) X(diag_add, qd_diag_add_args, 0) X(acc64, qd_acc64_args, 0)             \
    X(chol_inv, qd_chol_inv_args, 0) X(permute, qd_permute_args, 0) X(ewise, qd_ewise_args, 0)                   \
    X(rows, qd_rows_args, 0) X(rmsnorm, qd_rmsnorm_args, 0) X(rope, qd_rope_args, 0)                             \
    X(attention, qd_attention_args, 0) X(cross_entropy, qd_xent_args, 0) X(reduce, qd_reduce_args, 0)            \
    X(colstat, qd_colstat_args, 0) X(quantize, qd_quantize_args, 0) X(gptq_sweep, qd_gptq_sweep_args, 0)         \
    X(awq_clip, qd_awq_clip_args, 0) X(fp8_dequant, qd_fp8_dequant_args, 0) X(u8_codes, qd_u8_codes_args, 0)

enum {
#define OP_ENUM(op, T, flops) OP_##op,
    OPS(OP_ENUM)
#undef OP_ENUM
    OP_N
};

#define NSHAPES 64 /* GEMM shapes kept apart; the rest are summed as "other" */

typedef struct {
    double s, flops;
    size_t calls;
} tally;

typedef struct {
    int ta, tb, mlog; /* M as its power-of-two bucket (routed expert GEMMs vary in M) */
    size_t N, K;
    tally t;
} shape;

struct qd_op_prof {
    const struct qd_backend_i *real;
    struct qd_backend_i table;
    tally by_op[OP_N];
    shape shapes[NSHAPES];
    int nshapes;
    tally other_shapes;
};

static double begin(qd_backend_t be) {
    if (be->prof->real->synchronize) (void)be->prof->real->synchronize(be); /* earlier work is not this op's */
    return qd_clock_s();
}

static double end(qd_backend_t be, double t0) {
    if (be->prof->real->synchronize) (void)be->prof->real->synchronize(be);
    return qd_clock_s() - t0;
}

static void add(tally *t, double s, double flops) { t->s += s, t->flops += flops, t->calls++; }

static void add_shape(struct qd_op_prof *p, const struct qd_gemm_args *a, double s, double flops) {
    int mlog = 0;
    while (mlog < 62 && ((size_t)1 << mlog) < a->M) mlog++;
    for (int i = 0; i < p->nshapes; i++) {
        shape *h = &p->shapes[i];
        if (h->ta == a->trans_a && h->tb == a->trans_b && h->mlog == mlog && h->N == a->N && h->K == a->K) {
            add(&h->t, s, flops);
            return;
        }
    }
    if (p->nshapes == NSHAPES) {
        add(&p->other_shapes, s, flops);
        return;
    }
    p->shapes[p->nshapes] = (shape){.ta = a->trans_a, .tb = a->trans_b, .mlog = mlog, .N = a->N, .K = a->K};
    add(&p->shapes[p->nshapes++].t, s, flops);
}

#define OP_FN(op, T, flops_of)                                                                                   \
    static qd_status prof_##op(qd_backend_t be, const struct T *a) {                                          \
        double t0 = begin(be);                                                                                   \
        qd_status st = be->prof->real->op(be, a);                                                                \
        double s = end(be, t0), flops = (flops_of);                                                              \
        add(&be->prof->by_op[OP_##op], s, flops);                                                                   \
        if (OP_##op == OP_gemm) add_shape(be->prof, (const void *)a, s, flops);                                  \
        return st;                                                                                               \
    }
OPS(OP_FN)
#undef OP_FN

void qd__backend_prof_attach(qd_backend_t be) {
    if (!qd_param_str(QD_PARAM_OP_PROFILE)) return;
    struct qd_op_prof *p = calloc(1, sizeof *p);
    if (!p) {
        qd_warn("QD_OP_PROFILE: out of memory for the op profile; the run goes on without it");
        return;
    }
    p->real = be->iface;
    p->table = *be->iface;
#define OP_SET(op, T, flops) if (p->table.op) p->table.op = prof_##op;
    OPS(OP_SET)
#undef OP_SET
    be->prof = p;
    be->iface = &p->table;
}

static const char *const op_names[OP_N] = {
#define OP_NAME(op, T, flops) #op,
    OPS(OP_NAME)
#undef OP_NAME
};

static int by_time_desc(const void *x, const void *y) {
    double a = ((const tally *)x)->s, b = ((const tally *)y)->s;
    return a < b ? 1 : a > b ? -1 : 0;
}

static int shape_by_time_desc(const void *x, const void *y) {
    return by_time_desc(&((const shape *)x)->t, &((const shape *)y)->t);
}

static void line(const char *what, const tally *t) {
    char rate[48] = "";
    if (t->flops > 0 && t->s > 0) snprintf(rate, sizeof rate, ", %.1f TFLOP/s", t->flops / t->s / 1e12);
    qd_info("op profile: %-48s %9zu calls %10.3f s%s", what, t->calls, t->s, rate);
}

void qd__backend_prof_report(qd_backend_t be) {
    struct qd_op_prof *p = be->prof;
    if (!p) return;
    struct { tally t; int op; } rows[OP_N];
    for (int i = 0; i < OP_N; i++) rows[i].t = p->by_op[i], rows[i].op = i;
    qsort(rows, OP_N, sizeof rows[0], by_time_desc); /* tally is the first member */
    qd_info("op profile (QD_OP_PROFILE, backend %s): each op timed between two synchronizations", p->real->name);
    for (int i = 0; i < OP_N && rows[i].t.calls; i++) line(op_names[rows[i].op], &rows[i].t);
    qsort(p->shapes, (size_t)p->nshapes, sizeof p->shapes[0], shape_by_time_desc);
    for (int i = 0; i < p->nshapes; i++) {
        const shape *h = &p->shapes[i];
        char what[96];
        snprintf(what, sizeof what, "gemm%s%s M<=2^%d N=%zu K=%zu", h->ta ? " A^T" : "", h->tb ? " B^T" : "", h->mlog,
                 h->N, h->K);
        line(what, &h->t);
    }
    if (p->other_shapes.calls) line("gemm, other shapes", &p->other_shapes);
}

void qd__backend_prof_detach(qd_backend_t be) {
    if (!be->prof) return;
    be->iface = be->prof->real;
    free(be->prof);
    be->prof = NULL;
}
