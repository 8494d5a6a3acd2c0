/* SPDX-License-Identifier: MIT
 * export-plan.c - the export plan (export-internal.h): every Linear of the model with the decision
 * taken for it, from a source's data or, for an export streamed during the run, from the recipe's
 * headers before any block is quantized. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export-internal.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-qformat-gptq.h"

static int is_gptq(qd_export_format f) { return f == QD_EXPORT_GPTQ || f == QD_EXPORT_GPTQ_V2; }

static int shape_packable(const qd_xplan *p, const qd_xlayer *l, char *why, size_t cap) {
    if (is_gptq(p->fmt)) {
        if (!qd_gptq_packable(l->K, l->bits) || !qd_gptq_packable(l->N, l->bits)) {
            snprintf(why, cap, "GPTQ packs K*bits and N*bits in whole 32-bit words (K=%d, N=%d, %d bits)", l->K, l->N,
                     l->bits);
            return 0;
        }
    } else if (p->fmt == QD_EXPORT_AWQ) {
        if (l->N % 8 != 0 || l->group_size <= 0 || l->K % l->group_size != 0) {
            snprintf(why, cap, "AWQ GEMM needs N %% 8 == 0 and K %% group == 0 (N=%d, K=%d, group %d)", l->N, l->K,
                     l->group_size);
            return 0;
        }
    }
    return 1;
}

static qd_status add_layer(qd_xplan *p, size_t *cap, const char *name, long src_index) {
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->layers[i].name, name) == 0) {
            if (src_index >= 0) p->layers[i].src_index = src_index;
            return QD_OK;
        }
    if (p->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        qd_xlayer *nl = realloc(p->layers, nc * sizeof *nl);
        if (!nl) return qd_fail(QD_ERR_NOMEM, "export: out of memory planning %zu layers", nc);
        p->layers = nl;
        *cap = nc;
    }
    qd_xlayer *l = &p->layers[p->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->src_index = src_index;
    return QD_OK;
}

/* most common (bits, gs, sym, nonseq) among converted layers */
static void pick_default(qd_xplan *p) {
    int best = -1;
    for (size_t i = 0; i < p->n; i++) {
        const qd_xlayer *a = &p->layers[i];
        if (!a->converted) continue;
        int count = 0;
        for (size_t j = 0; j < p->n; j++) {
            const qd_xlayer *b = &p->layers[j];
            count += b->converted && b->bits == a->bits && b->group_size == a->group_size && b->sym == a->sym &&
                     b->nonseq == a->nonseq && b->scheme == a->scheme;
        }
        if (count > best) {
            best = count;
            p->d_bits = a->bits;
            p->d_gs = a->group_size;
            p->d_sym = a->sym;
            p->d_nonseq = a->nonseq;
        }
    }
    p->any_converted = best > 0;
}

/* The decision for layer l (its header filled): the format's scheme, a shape it can pack, AWQ's one
 * group size; lm_head stays dequantised without --lm-head. */
static qd_status plan_layer(const qd_export_opts *o, qd_xplan *p, qd_xlayer *l, int *awq_gs, int *seen_lm_head) {
    int is_lm = strcmp(l->name, "lm_head") == 0;
    *seen_lm_head |= is_lm;
    if (is_lm && !o->lm_head) {
        qd_warn("export: lm_head was quantized by the run but --lm-head was not given: it is written "
                "dequantised in the model dtype");
        return QD_OK;
    }
    char who[QD_QNAME_MAX + 32];
    snprintf(who, sizeof who, " (module %s)", l->name);
    if (l->scheme != QD_SCHEME_WNA16) QD_CHECK(qd_export_check_qscheme(o->format, l->scheme, who));
    else QD_CHECK(qd_export_check_module_scheme(o->format, o->ct_naive, l->bits, l->group_size, l->sym, l->nonseq, who));
    char why[256];
    if (!shape_packable(p, l, why, sizeof why)) {
        qd_warn("export: %s is written unquantized (dequantised, model dtype): %s", l->name, why);
        return QD_OK;
    }
    l->converted = 1;
    if (o->format == QD_EXPORT_AWQ) {
        if (*awq_gs && *awq_gs != l->group_size)
            return qd_fail(QD_ERR_UNSUPPORTED, "export: awq has one group size per checkpoint, but module %s "
                           "uses %d and others %d; use --format gptq or compressed-tensors (per-module "
                           "overrides)", l->name, l->group_size, *awq_gs);
        *awq_gs = l->group_size;
    }
    return QD_OK;
}

qd_status qd_export_check_v1_zeros(const qd_xplan *p, const qd_xlayer *l, const qd_qlinear *ql) {
    if (p->fmt != QD_EXPORT_GPTQ || l->sym || !l->converted) return QD_OK;
    for (size_t z = 0; z < (size_t)ql->G * ql->N; z++)
        if (ql->zeros[z] == 0)
            return qd_fail(QD_ERR_UNSUPPORTED, "export: module %s has an asymmetric zero point of 0 (group %zu, "
                           "column %zu), which GPTQ v1 cannot store (it stores z-1); use --format gptq_v2 or "
                           "compressed-tensors, or quantize for gptq with zero points clamped to >= 1", ql->name,
                           z / (size_t)ql->N, z % (size_t)ql->N);
    return QD_OK;
}

/* The Linear modules of a block: every 2-D "<prefix>.weight" under "model.layers." (norms are 1-D) */
qd_status qd_export_plan(const qd_export_opts *o, const qd_qsource *src, const qd_qlinear *heads, const int *nonseq,
                         qd_xplan *p) {
    size_t cap = 0;
    size_t np = src->iface->n_plain(src->ctx);
    for (size_t i = 0; i < np; i++) {
        qd_plain_info pi;
        QD_CHECK(src->iface->plain_info(src->ctx, i, &pi));
        size_t len = strlen(pi.name);
        if (pi.ndim != 2 || strncmp(pi.name, "model.layers.", 13) != 0 || len < 8 ||
            strcmp(pi.name + len - 7, ".weight") != 0 || len - 7 >= QD_QNAME_MAX)
            continue;
        char buf[QD_QNAME_MAX];
        snprintf(buf, sizeof buf, "%.*s", (int)(len - 7), pi.name);
        QD_CHECK(add_layer(p, &cap, buf, -1));
    }
    int seen_lm_head = 0, awq_gs = 0;
    size_t nl = src->iface->n_layers(src->ctx);
    for (size_t i = 0; i < nl; i++) {
        qd_qlinear ql;
        if (heads) ql = heads[i];
        else QD_CHECK(src->iface->load_layer(src->ctx, i, 0, &ql));
        qd_status st = add_layer(p, &cap, ql.name, (long)i);
        qd_xlayer *l = NULL;
        for (size_t j = 0; st == QD_OK && j < p->n; j++)
            if (strcmp(p->layers[j].name, ql.name) == 0) l = &p->layers[j];
        if (st != QD_OK || !l) {
            if (!heads) qd_qlinear_free(&ql);
            return st != QD_OK ? st : qd_fail(QD_ERR_INTERNAL, "export: layer '%s' lost in planning", ql.name);
        }
        l->N = ql.N;
        l->K = ql.K;
        l->G = ql.G;
        l->bits = ql.bits;
        l->group_size = ql.group_size;
        l->sym = ql.sym;
        l->scheme = ql.scheme;
        l->nonseq = heads ? nonseq[i] : !qd_qlinear_g_idx_sequential(&ql);
        st = plan_layer(o, p, l, &awq_gs, &seen_lm_head);
        /* GPTQ v1's zero points: from the data when it is here, else when the layer is packed */
        if (st == QD_OK && !heads && l->converted) st = qd_export_check_v1_zeros(p, l, &ql);
        if (!heads) qd_qlinear_free(&ql);
        if (st != QD_OK) return st;
    }
    p->zeros_at_pack = heads != NULL;
    if (o->lm_head && !seen_lm_head)
        return qd_fail(QD_ERR_USAGE, "export: --lm-head given but the run did not quantize lm_head");
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->layers[i].name, "lm_head") == 0 && p->layers[i].converted) p->lm_head_quant = 1;
    pick_default(p);
    qd_export_warn_fused(p);
    if (!p->any_converted) qd_warn("export: no layer is quantized in the %s export", qd_export_format_name(o->format));
    return QD_OK;
}

