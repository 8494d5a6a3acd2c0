/* SPDX-License-Identifier: MIT
 * export-tensors.c - the tensors an export writes (names, dtypes, shapes, in file order) and the bytes
 * of each layer's tensor (export-internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export-internal.h"
#include "qd-check.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "qd-qformat-awq.h"
#include "qd-qformat-ct.h"
#include "qd-qformat-gptq.h"

static int is_gptq(qd_export_format f) { return f == QD_EXPORT_GPTQ || f == QD_EXPORT_GPTQ_V2; }

/* ---- the list ---------------------------------------------------------------------------------- */

static qd_status push(qd_xlist *l, const char *prefix, const char *suffix, qd_xkind kind, qd_dtype dt, long layer,
                      long plain, int ndim, int64_t d0, int64_t d1) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        qd_xtensor *nt = realloc(l->t, cap * sizeof *nt);
        if (!nt) return qd_fail(QD_ERR_NOMEM, "export: out of memory listing %zu tensors", cap);
        l->t = nt;
        l->cap = cap;
    }
    qd_xtensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    size_t len = strlen(prefix) + strlen(suffix) + 1;
    t->name = malloc(len);
    if (!t->name) return qd_fail(QD_ERR_NOMEM, "export: out of memory naming %s%s", prefix, suffix);
    snprintf(t->name, len, "%s%s", prefix, suffix);
    t->kind = kind;
    t->dtype = dt;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->nbytes = (uint64_t)d0 * (ndim > 1 ? (uint64_t)d1 : 1) * (qd_dtype_bits(dt) / 8);
    t->layer = layer;
    t->plain = plain;
    l->n++;
    return QD_OK;
}

static qd_status push_plain(qd_xlist *l, const qd_plain_info *pi, long i) {
    QD_CHECK(push(l, pi->name, "", QD_XT_PLAIN, pi->dtype, -1, i, 0, 0, 0));
    qd_xtensor *t = &l->t[l->n - 1];
    t->ndim = pi->ndim;
    for (int d = 0; d < pi->ndim && d < 8; d++) t->shape[d] = pi->shape[d];
    t->nbytes = pi->nbytes;
    return QD_OK;
}

/* plain tensor index of name, or -1 */
static long plain_find(const qd_qsource *src, const char *name) {
    size_t n = src->iface->n_plain(src->ctx);
    for (size_t i = 0; i < n; i++) {
        qd_plain_info pi;
        if (src->iface->plain_info(src->ctx, i, &pi) == QD_OK && strcmp(pi.name, name) == 0) return (long)i;
    }
    return -1;
}

/* the layer's bias converted to dt after its weights (GPTQ, AWQ), when the source has one */
static qd_status push_bias(qd_xlist *l, const qd_qsource *src, const qd_xlayer *x, long li, qd_dtype dt) {
    char name[QD_QNAME_MAX + 16];
    snprintf(name, sizeof name, "%s.bias", x->name);
    long bi = plain_find(src, name);
    if (bi < 0) return QD_OK;
    qd_plain_info pi;
    QD_CHECK(src->iface->plain_info(src->ctx, (size_t)bi, &pi));
    if (pi.ndim != 1 || pi.shape[0] != x->N || !qd_dtype_is_float(pi.dtype))
        return qd_fail(QD_ERR_FORMAT, "export: %s must be a float vector of %d elements", name, x->N);
    return push(l, x->name, ".bias", QD_XT_BIAS, dt, li, bi, 1, x->N, 0);
}

static qd_status push_layer(const qd_xplan *p, const qd_qsource *src, long li, qd_xlist *l) {
    const qd_xlayer *x = &p->layers[li];
    const char *n = x->name;
    int64_t N = x->N, K = x->K, G = x->G, b = x->bits;
    if (!x->converted) return push(l, n, ".weight", QD_XT_DEQUANT, p->model_dtype, li, -1, 2, N, K);
    if (is_gptq(p->fmt)) {
        QD_CHECK(push(l, n, ".qweight", QD_XT_GPTQ_QWEIGHT, QD_DT_I32, li, -1, 2, K * b / 32, N));
        QD_CHECK(push(l, n, ".qzeros", QD_XT_GPTQ_QZEROS, QD_DT_I32, li, -1, 2, G, N * b / 32));
    } else if (p->fmt == QD_EXPORT_AWQ) {
        QD_CHECK(push(l, n, ".qweight", QD_XT_AWQ_QWEIGHT, QD_DT_I32, li, -1, 2, K, N / 8));
        QD_CHECK(push(l, n, ".qzeros", QD_XT_AWQ_QZEROS, QD_DT_I32, li, -1, 2, G, N / 8));
    }
    if (p->fmt != QD_EXPORT_CT) {
        QD_CHECK(push(l, n, ".scales", QD_XT_SCALES, QD_DT_F16, li, -1, 2, G, N));
        if (is_gptq(p->fmt)) QD_CHECK(push(l, n, ".g_idx", QD_XT_G_IDX, QD_DT_I32, li, -1, 1, K, 0));
        return push_bias(l, src, x, li, QD_DT_F16);
    }
    /* compressed-tensors: the bias stays a plain tensor (model dtype) */
    if (qd_scheme_is_fp4(x->scheme)) { /* nvfp4 / mxfp4-pack-quantized (compressed-tensors' NVFP4PackedCompressor) */
        QD_CHECK(push(l, n, ".weight_packed", QD_XT_CT_FP4, QD_DT_U8, li, -1, 2, N, K / 2));
        QD_CHECK(push(l, n, ".weight_scale", QD_XT_FP4_SCALES, qd_scheme_is_mxfp4(x->scheme) ? QD_DT_U8 : QD_DT_F8_E4M3,
                      li, -1, 2, N, G));
        if (qd_scheme_is_nvfp4(x->scheme))
            QD_CHECK(push(l, n, ".weight_global_scale", QD_XT_GLOBAL_SCALE, QD_DT_F32, li, -1, 1, 1, 0));
        if (qd_scheme_static_act(x->scheme)) /* nvfp4 (preset NVFP4): the static activation global scale */
            QD_CHECK(push(l, n, ".input_global_scale", QD_XT_INPUT_SCALE, QD_DT_F32, li, -1, 1, 1, 0));
        return QD_OK;
    }
    if (x->scheme != QD_SCHEME_WNA16) { /* float-quantized / int-quantized: unpacked, symmetric */
        int64_t B = QD_FP8_BLOCK_SIZE;
        if (qd_scheme_is_fp8(x->scheme)) QD_CHECK(push(l, n, ".weight", QD_XT_CT_FP8, QD_DT_F8_E4M3, li, -1, 2, N, K));
        else QD_CHECK(push(l, n, ".weight", QD_XT_CT_NAIVE, QD_DT_I8, li, -1, 2, N, K));
        if (x->scheme == QD_SCHEME_FP8_STATIC) { /* llm-compressor's FP8 preset: per-tensor weight and input */
            QD_CHECK(push(l, n, ".weight_scale", QD_XT_TENSOR_SCALE, p->scale_dtype, li, -1, 1, 1, 0));
            return push(l, n, ".input_scale", QD_XT_INPUT_SCALE, p->scale_dtype, li, -1, 1, 1, 0);
        }
        if (x->scheme == QD_SCHEME_FP8_BLOCK)
            return push(l, n, ".weight_scale", QD_XT_BLOCK_SCALES, p->scale_dtype, li, -1, 2, (N + B - 1) / B, G);
        return push(l, n, ".weight_scale", QD_XT_SCALES_T, p->scale_dtype, li, -1, 2, N, G);
    }
    if (p->ct_naive) QD_CHECK(push(l, n, ".weight", QD_XT_CT_NAIVE, QD_DT_I8, li, -1, 2, N, K));
    else QD_CHECK(push(l, n, ".weight_packed", QD_XT_CT_PACKED, QD_DT_I32, li, -1, 2, N, qd_ct_packed_cols(x->K, x->bits)));
    QD_CHECK(push(l, n, ".weight_scale", QD_XT_SCALES_T, p->scale_dtype, li, -1, 2, N, G));
    if (!p->ct_naive) QD_CHECK(push(l, n, ".weight_shape", QD_XT_CT_SHAPE, QD_DT_I64, li, -1, 1, 2, 0));
    if (!x->sym && p->ct_naive) QD_CHECK(push(l, n, ".weight_zero_point", QD_XT_CT_ZP_NAIVE, QD_DT_I8, li, -1, 2, N, G));
    if (!x->sym && !p->ct_naive)
        QD_CHECK(push(l, n, ".weight_zero_point", QD_XT_CT_ZP_PACKED, QD_DT_I32, li, -1, 2,
                      qd_ct_packed_cols(x->N, x->bits), G));
    if (x->nonseq) QD_CHECK(push(l, n, ".weight_g_idx", QD_XT_G_IDX, QD_DT_I32, li, -1, 1, K, 0));
    return QD_OK;
}

static int is_converted_bias(const qd_xplan *p, const char *name) {
    if (p->fmt == QD_EXPORT_CT) return 0;
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 5, ".bias") != 0) return 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->layers[i].converted && strlen(p->layers[i].name) == n - 5 &&
            strncmp(p->layers[i].name, name, n - 5) == 0)
            return 1;
    return 0;
}

typedef struct item {
    const char *key; /* tensor name, or "<prefix>.weight" for a layer */
    long plain; /* plain index or -1 */
    long layer; /* plan index or -1 */
} item;

static int item_cmp(const void *a, const void *b) { return strcmp(((const item *)a)->key, ((const item *)b)->key); }

qd_status qd_export_list(const qd_xplan *p, const qd_qsource *src, qd_xlist *out) {
    memset(out, 0, sizeof *out);
    size_t np = src->iface->n_plain(src->ctx), n = 0, nlayer = 0;
    item *items = calloc(np + p->n + 1, sizeof *items);
    char (*keys)[QD_QNAME_MAX + 16] = calloc(p->n + 1, sizeof *keys);
    qd_status st = items && keys ? QD_OK : qd_fail(QD_ERR_NOMEM, "export: out of memory listing tensors");
    for (size_t i = 0; i < np && st == QD_OK; i++) {
        qd_plain_info pi;
        st = src->iface->plain_info(src->ctx, i, &pi);
        if (st == QD_OK && !is_converted_bias(p, pi.name)) items[n++] = (item){pi.name, (long)i, -1};
    }
    for (size_t i = 0; i < p->n && st == QD_OK; i++) {
        if (p->layers[i].src_index < 0) continue; /* unquantized by the run: its weight is plain */
        snprintf(keys[nlayer], sizeof keys[nlayer], "%s.weight", p->layers[i].name);
        items[n++] = (item){keys[nlayer++], -1, (long)i};
    }
    if (st == QD_OK) qsort(items, n, sizeof *items, item_cmp);
    for (size_t i = 0; i < n && st == QD_OK; i++) {
        if (items[i].plain < 0) {
            st = push_layer(p, src, items[i].layer, out);
            continue;
        }
        qd_plain_info pi;
        st = src->iface->plain_info(src->ctx, (size_t)items[i].plain, &pi);
        if (st == QD_OK) st = push_plain(out, &pi, items[i].plain);
    }
    free(items);
    free(keys);
    if (st != QD_OK) qd_export_list_free(out);
    return st;
}

void qd_export_list_free(qd_xlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->t[i].name);
    free(l->t);
    memset(l, 0, sizeof *l);
}

/* ---- the bytes --------------------------------------------------------------------------------- */

/* scales [G][N] fp32 -> dt, transposed to [N][G] when transpose; counts inexact conversions */
static qd_status scales_bytes(const qd_qlinear *l, qd_dtype dt, int transpose, qd_xstats *stats, unsigned char *buf) {
    size_t n = (size_t)l->G * l->N;
    float *tmp = malloc(n ? n * sizeof *tmp : 1), *back = malloc(n ? n * sizeof *back : 1);
    if (!tmp || !back) {
        free(tmp);
        free(back);
        return qd_fail(QD_ERR_NOMEM, "export: out of memory converting scales of %s", l->name);
    }
    for (int g = 0; g < l->G; g++)
        for (int i = 0; i < l->N; i++)
            tmp[transpose ? (size_t)i * l->G + g : (size_t)g * l->N + i] = l->scales[(size_t)g * l->N + i];
    qd_from_f32(dt, tmp, buf, n);
    qd_to_f32(dt, buf, back, n);
    for (size_t i = 0; i < n; i++)
        if (back[i] != tmp[i]) {
            stats->scales_inexact++;
            double rel = tmp[i] != 0 ? (back[i] - tmp[i]) / (double)tmp[i] : 1.0;
            rel = rel < 0 ? -rel : rel;
            if (rel > stats->scales_max_rel) stats->scales_max_rel = rel;
        }
    free(tmp);
    free(back);
    return QD_OK;
}

/* fp8-block: the scale of block (r, g) is that of its first row (every row of a block holds it) */
static qd_status block_scales_bytes(const qd_qlinear *l, qd_dtype dt, qd_xstats *stats, unsigned char *buf) {
    int R = (l->N + QD_FP8_BLOCK_SIZE - 1) / QD_FP8_BLOCK_SIZE;
    qd_qlinear c = qd_qlinear_header(l);
    c.N = R; /* a [G][R] view, transposed by scales_bytes to [R][G] */
    c.scales = malloc((size_t)R * l->G * sizeof *c.scales + 1);
    if (!c.scales) return qd_fail(QD_ERR_NOMEM, "export: out of memory for the block scales of %s", l->name);
    for (int g = 0; g < l->G; g++)
        for (int r = 0; r < R; r++)
            c.scales[(size_t)g * R + r] = l->scales[(size_t)g * l->N + (size_t)r * QD_FP8_BLOCK_SIZE];
    qd_status st = scales_bytes(&c, dt, 1, stats, buf);
    free(c.scales);
    return st;
}

/* E2M1 codes (one a byte) two a byte along K: element 2j in the low nibble, 2j+1 in the high one, as
 * compressed-tensors' pack_fp4_to_uint8 */
static void fp4_packed_bytes(const qd_qlinear *l, unsigned char *buf) {
    size_t n = (size_t)l->N * l->K / 2;
    for (size_t j = 0; j < n; j++) buf[j] = (unsigned char)((l->codes[2 * j] & 15) | (l->codes[2 * j + 1] & 15) << 4);
}

/* the group scales [N][G] as the checkpoint holds them: E4M3 local scales (effective * global, exact:
 * qd_qlinear_nvfp4_local) or E8M0 exponents of the power-of-two scales */
static qd_status fp4_scales_bytes(const qd_qlinear *l, unsigned char *buf) {
    for (int n = 0; n < l->N; n++)
        for (int g = 0; g < l->G; g++) {
            float s = l->scales[(size_t)g * l->N + n];
            unsigned char b;
            if (qd_scheme_is_nvfp4(l->scheme)) {
                b = qd_qlinear_nvfp4_local(l, s);
                if (qd_e4m3_to_f32(b) / l->global_scale != s)
                    return qd_fail(QD_ERR_FORMAT, "export: %s: scale of row %d, group %d (%g) is not an E4M3 value "
                                   "over the global scale %g", l->name, n, g, (double)s, (double)l->global_scale);
            } else {
                int e = s > 0 && isfinite(s) ? ilogbf(s) : -1000;
                if (e < -127 || e > 127 || ldexpf(1.0f, e) != s)
                    return qd_fail(QD_ERR_FORMAT, "export: %s: scale of row %d, group %d (%g) is not a power of two "
                                   "an E8M0 byte holds", l->name, n, g, (double)s);
                b = (unsigned char)(e + 127);
            }
            buf[(size_t)n * l->G + g] = b;
        }
    return QD_OK;
}

static qd_status bias_bytes(const qd_qsource *src, const qd_xtensor *t, unsigned char *buf) {
    qd_plain_info pi;
    QD_CHECK(src->iface->plain_info(src->ctx, (size_t)t->plain, &pi));
    size_t N = (size_t)t->shape[0];
    unsigned char *raw = malloc(pi.nbytes ? pi.nbytes : 1);
    float *f = malloc(N * sizeof *f + 1);
    qd_status st = raw && f ? QD_OK : qd_fail(QD_ERR_NOMEM, "export: out of memory for %s", t->name);
    if (st == QD_OK) st = src->iface->plain_read(src->ctx, (size_t)t->plain, raw);
    if (st == QD_OK) {
        qd_to_f32(pi.dtype, raw, f, N);
        qd_from_f32(t->dtype, f, buf, N);
    }
    free(raw);
    free(f);
    return st;
}

static qd_status dequant_bytes(const qd_qlinear *l, qd_dtype dt, unsigned char *buf) {
    size_t n = (size_t)l->N * l->K;
    float *w;
    QD_ALLOC(w, n);
    qd_qlinear_dequant(l, w);
    qd_from_f32(dt, w, buf, n);
    free(w);
    return QD_OK;
}

qd_status qd_export_tensor_bytes(const qd_xplan *p, const qd_qsource *src, const qd_qlinear *l, const qd_xtensor *t,
                                 qd_xstats *stats, void **out) {
    *out = NULL;
    unsigned char *buf = calloc(t->nbytes + 1, 1);
    if (!buf) return qd_fail(QD_ERR_NOMEM, "export: out of memory for %s (%llu bytes)", t->name,
                             (unsigned long long)t->nbytes);
    int N = l->N, K = l->K, G = l->G, b = l->bits;
    int32_t *w = (int32_t *)buf;
    qd_status st = QD_OK;
    switch (t->kind) {
    case QD_XT_DEQUANT: st = dequant_bytes(l, t->dtype, buf); break;
    case QD_XT_GPTQ_QWEIGHT: st = qd_pack_gptq_qweight(l->codes, N, K, b, w); break;
    case QD_XT_GPTQ_QZEROS: st = qd_pack_gptq_qzeros(l->zeros, G, N, b, p->fmt == QD_EXPORT_GPTQ, w); break;
    case QD_XT_AWQ_QWEIGHT: st = qd_pack_awq_qweight(l->codes, N, K, w); break;
    case QD_XT_AWQ_QZEROS: st = qd_pack_awq_qzeros(l->zeros, G, N, w); break;
    case QD_XT_CT_PACKED: st = qd_pack_ct_weight(l->codes, N, K, b, w); break;
    case QD_XT_CT_NAIVE: st = qd_ct_naive_weight(l->codes, N, K, b, (int8_t *)buf); break;
    case QD_XT_CT_ZP_PACKED: st = qd_pack_ct_zero_point(l->zeros, G, N, b, w); break;
    case QD_XT_CT_ZP_NAIVE: st = qd_ct_naive_zero_point(l->zeros, G, N, b, (int8_t *)buf); break;
    case QD_XT_CT_FP8: memcpy(buf, l->codes, (size_t)N * K); break;
    case QD_XT_BLOCK_SCALES: st = block_scales_bytes(l, t->dtype, stats, buf); break;
    case QD_XT_CT_FP4: fp4_packed_bytes(l, buf); break;
    case QD_XT_FP4_SCALES: st = fp4_scales_bytes(l, buf); break;
    case QD_XT_GLOBAL_SCALE: memcpy(buf, &l->global_scale, 4); break;
    case QD_XT_CT_SHAPE: memcpy(buf, (int64_t[2]){N, K}, 16); break;
    case QD_XT_SCALES: st = scales_bytes(l, t->dtype, 0, stats, buf); break;
    case QD_XT_SCALES_T: st = scales_bytes(l, t->dtype, 1, stats, buf); break;
    case QD_XT_TENSOR_SCALE: qd_from_f32(t->dtype, l->scales, buf, 1); break;
    case QD_XT_INPUT_SCALE:
        if (!(l->input_scale > 0)) st = qd_fail(QD_ERR_FORMAT, "export: %s has no static input scale (%s)", l->name,
                                                 qd_scheme_name(l->scheme));
        else qd_from_f32(t->dtype, &l->input_scale, buf, 1);
        break;
    case QD_XT_G_IDX: memcpy(buf, l->g_idx, (size_t)K * sizeof *l->g_idx); break;
    case QD_XT_BIAS: st = bias_bytes(src, t, buf); break;
    case QD_XT_PLAIN: st = qd_fail(QD_ERR_INTERNAL, "export: %s is a source tensor, not a layer's", t->name); break;
    }
    if (st != QD_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return QD_OK;
}
