/* SPDX-License-Identifier: MIT
 * qformat-fp8.c - every F8_E4M3 Linear dequantized to fp32: FP8 source checkpoints (quant_method "fp8",
 * contract in qd-qformat-fp8.h) and compressed-tensors float-quantized ones (qd__read_ct_fp8,
 * qformat-read-internal.h). The two find the scale's layout their own way (weight_block_size; the
 * config group or the scale's shape) and share the rest: the scale values checked finite and >= 0,
 * W = e4m3(q) x scale of the code's block (qd_fp8_dequant, qd-fp8.h), a NaN code refused naming the
 * tensor. qd_fp8_codes_open hands the checked codes and scales to a backend's fp8_dequant instead. */
#include "qd-qformat-fp8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-dtype.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "qd-qformat-read.h"
#include "qformat-read-internal.h"

static const qd_st_tensor *find(const qd_checkpoint *ck, const char *prefix, const char *suffix) {
    char name[1024];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    return qd_ckpt_find(ck, name);
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* the scale tensor of prefix, its layout checked against [N, K] and the block */
static qd_status scale_of(const qd_checkpoint *ck, const char *prefix, const int block[2], int64_t N, int64_t K,
                          const qd_st_tensor **out) {
    int blocked = block && block[0] > 0 && block[1] > 0;
    const qd_st_tensor *s = find(ck, prefix, ".weight_scale_inv");
    if (!s) s = find(ck, prefix, ".weight_scale");
    if (!s)
        return qd_fail(QD_ERR_FORMAT, "%s: FP8 Linear '%s' has no .weight_scale_inv or .weight_scale (config.json's "
                       "quantization_config is FP8)", ck->dir, prefix);
    if (!qd_dtype_is_float(s->dtype) && s->dtype != QD_DT_F8_E8M0)
        return qd_fail(QD_ERR_FORMAT, "%s: FP8 scale '%s' has dtype %s; expected F32, BF16, F16 or F8_E8M0", ck->dir,
                       s->name, qd_dtype_name(s->dtype));
    if (blocked) {
        int64_t r = cdiv(N, block[0]), c = cdiv(K, block[1]);
        if (s->ndim != 2 || s->shape[0] != r || s->shape[1] != c)
            return qd_fail(QD_ERR_FORMAT, "%s: FP8 scale '%s' must be [%lld, %lld] (weight [%lld, %lld] in blocks of "
                           "[%d, %d])", ck->dir, s->name, (long long)r, (long long)c, (long long)N, (long long)K,
                           block[0], block[1]);
    } else {
        int per_tensor = s->numel == 1 && s->ndim <= 2;
        int per_row = (s->ndim == 1 && s->shape[0] == N) || (s->ndim == 2 && s->shape[0] == N && s->shape[1] == 1);
        if (!per_tensor && !per_row)
            return qd_fail(QD_ERR_FORMAT, "%s: FP8 scale '%s' must hold one value or one per row ([%lld] or [%lld, 1]); "
                           "quantization_config has no weight_block_size", ck->dir, s->name, (long long)N, (long long)N);
    }
    *out = s;
    return QD_OK;
}

/* the scale's values as fp32 (malloc'ed into *out), each finite and >= 0, else one line naming it */
static qd_status scale_values(const qd_checkpoint *ck, const qd_st_tensor *s, float **out) {
    size_t ns = (size_t)s->numel;
    uint8_t *raw = malloc(s->nbytes + 1);
    float *v = malloc(sizeof *v * ns + 1);
    qd_status st = raw && v ? qd_ckpt_read_raw(ck, s, raw)
                            : qd_fail(QD_ERR_NOMEM, "%s: out of memory reading FP8 scale '%s'", ck->dir, s->name);
    if (st == QD_OK) qd_to_f32(s->dtype, raw, v, ns);
    if (st == QD_OK) st = qd__scales_check(ck, s, v, ns, 1);
    free(raw);
    if (st != QD_OK) {
        free(v);
        return st;
    }
    *out = v;
    return QD_OK;
}

qd_status qd_fp8_scale_values_check(const qd_checkpoint *ck, const char *prefix, const int block[2]) {
    int64_t N, K;
    const qd_st_tensor *s;
    float *v;
    QD_CHECK(qd_fp8_linear_check(ck, prefix, block, &N, &K));
    QD_CHECK(scale_of(ck, prefix, block, N, K, &s));
    QD_CHECK(scale_values(ck, s, &v));
    free(v);
    return QD_OK;
}

qd_status qd_fp8_ct_scale_values_check(const qd_checkpoint *ck, const char *prefix) {
    const qd_st_tensor *s = find(ck, prefix, ".weight_scale");
    float *v;
    if (!s)
        return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_scale' is missing; an F8_E4M3 weight of a compressed-tensors "
                       "checkpoint needs one (config.json)", ck->dir, prefix);
    if (!qd_dtype_is_float(s->dtype))
        return qd_fail(QD_ERR_FORMAT, "%s: '%s' is %s, expected a float type", ck->dir, s->name, qd_dtype_name(s->dtype));
    QD_CHECK(scale_values(ck, s, &v));
    free(v);
    return QD_OK;
}

qd_status qd_fp8_linear_check(const qd_checkpoint *ck, const char *prefix, const int block[2], int64_t *N,
                              int64_t *K) {
    const qd_st_tensor *w = find(ck, prefix, ".weight"), *s;
    if (!w) return qd_fail(QD_ERR_FORMAT, "%s: FP8 Linear '%s' has no .weight", ck->dir, prefix);
    if (w->dtype != QD_DT_F8_E4M3 || w->ndim != 2)
        return qd_fail(QD_ERR_FORMAT, "%s: '%s' is %s with %d dims; an FP8 source Linear is F8_E4M3 [N, K]", ck->dir,
                       w->name, qd_dtype_name(w->dtype), w->ndim);
    *N = w->shape[0];
    *K = w->shape[1];
    return scale_of(ck, prefix, block, *N, *K, &s);
}

qd_status qd_fp8_nan_fail(const qd_checkpoint *ck, const char *weight, int64_t K, int64_t at) {
    return qd_fail(QD_ERR_FORMAT, "%s: FP8 weight '%s' holds a NaN at [%lld, %lld]", ck->dir, weight,
                   (long long)(at / K), (long long)(at % K));
}

/* the codes of tw where the checkpoint is mapped, else read into *copy (malloc'ed) */
static qd_status codes_of(const qd_checkpoint *ck, const qd_st_tensor *tw, const uint8_t **codes, uint8_t **copy) {
    *copy = NULL;
    *codes = qd_ckpt_data(ck, tw);
    if (*codes) return QD_OK;
    uint8_t *c = malloc((size_t)tw->nbytes + 1);
    if (!c) return qd_fail(QD_ERR_NOMEM, "%s: out of memory reading FP8 weight '%s'", ck->dir, tw->name);
    qd_status st = qd_ckpt_read_raw(ck, tw, c);
    if (st != QD_OK) {
        free(c);
        return st;
    }
    *codes = *copy = c;
    return QD_OK;
}

/* the fp32 weight [N][K] of codes tw with scales s, bn x bk codes to a scale (malloc'ed into *w) */
static qd_status dequant(const qd_checkpoint *ck, const qd_st_tensor *tw, const qd_st_tensor *s, int64_t bn,
                         int64_t bk, float **w) {
    int64_t N = tw->shape[0], K = tw->shape[1];
    const uint8_t *codes = NULL;
    uint8_t *copy = NULL;
    float *scale = NULL, *out = malloc(sizeof *out * (size_t)(N * K) + 1);
    qd_status st = out ? QD_OK : qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantizing FP8 weight '%s'", ck->dir, tw->name);
    if (st == QD_OK) st = scale_values(ck, s, &scale);
    if (st == QD_OK) st = codes_of(ck, tw, &codes, &copy);
    if (st == QD_OK) {
        int64_t at = qd_fp8_dequant(codes, scale, N, K, bn, bk, out);
        if (at >= 0) st = qd_fp8_nan_fail(ck, tw->name, K, at);
    }
    free(copy);
    free(scale);
    if (st != QD_OK) {
        free(out);
        return st;
    }
    *w = out;
    return QD_OK;
}

/* the rows and columns one scale of prefix covers: the block, else the whole tensor or one row */
static void block_of(const qd_st_tensor *s, const int block[2], int64_t N, int64_t K, int64_t *bn, int64_t *bk) {
    int blocked = block && block[0] > 0 && block[1] > 0;
    *bn = blocked ? block[0] : s->numel == 1 ? N : 1;
    *bk = blocked ? block[1] : K;
}

qd_status qd_fp8_codes_open(const qd_checkpoint *ck, const char *prefix, const int block[2], qd_fp8_codes *out) {
    memset(out, 0, sizeof *out);
    const qd_st_tensor *s;
    QD_CHECK(qd_fp8_linear_check(ck, prefix, block, &out->N, &out->K));
    QD_CHECK(scale_of(ck, prefix, block, out->N, out->K, &s));
    const qd_st_tensor *tw = find(ck, prefix, ".weight");
    out->weight = tw->name;
    block_of(s, block, out->N, out->K, &out->bn, &out->bk);
    QD_CHECK(scale_values(ck, s, &out->scale));
    qd_status st = codes_of(ck, tw, &out->codes, &out->copy);
    if (st != QD_OK) qd_fp8_codes_close(out);
    return st;
}

void qd_fp8_codes_close(qd_fp8_codes *c) {
    if (!c) return;
    free(c->copy);
    free(c->scale);
    memset(c, 0, sizeof *c);
}

qd_status qd_fp8_linear_read(const qd_checkpoint *ck, const char *prefix, const int block[2], float **w,
                             int64_t *pN, int64_t *pK) {
    *w = NULL;
    int64_t N, K;
    const qd_st_tensor *s;
    QD_CHECK(qd_fp8_linear_check(ck, prefix, block, &N, &K));
    QD_CHECK(scale_of(ck, prefix, block, N, K, &s));
    int64_t bn, bk;
    block_of(s, block, N, K, &bn, &bk);
    QD_CHECK(dequant(ck, find(ck, prefix, ".weight"), s, bn, bk, w));
    *pN = N;
    *pK = K;
    return QD_OK;
}

qd_status qd_fp8_linear(const qd_checkpoint *ck, const char *prefix, const int block[2], float **w, int64_t *N,
                        int64_t *K, qd_qlinear_info *info) {
    static const int none[2] = {0, 0};
    if (!block) block = none;
    if (w) QD_CHECK(qd_fp8_linear_read(ck, prefix, block, w, N, K));
    else QD_CHECK(qd_fp8_linear_check(ck, prefix, block, N, K));
    if (info) {
        info->quantized = 1;
        info->N = *N;
        info->K = *K;
        info->bits = 8;
        info->group_size = block[1] > 0 ? block[1] : -1;
        info->sym = 1;
    }
    return QD_OK;
}

qd_status qd__read_ct_fp8(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, float **w, int64_t *pN,
                          int64_t *pK, qd_qlinear_info *info) {
    const qd_st_tensor *tw = find(ck, prefix, ".weight"), *ts = find(ck, prefix, ".weight_scale");
    if (!tw || tw->ndim != 2 || tw->dtype != QD_DT_F8_E4M3)
        return qd_fail(QD_ERR_FORMAT, "%s: float-quantized module '%s' needs a 2-D F8_E4M3 weight", ck->dir, prefix);
    if (!ts)
        return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_scale' is missing; the F8_E4M3 weight '%s' of a compressed-tensors "
                       "checkpoint needs one (config.json)", qd__tensor_file(ck, tw), prefix, tw->name);
    if (!qd_dtype_is_float(ts->dtype))
        return qd_fail(QD_ERR_FORMAT, "%s: '%s' is %s, expected a float type", qd__tensor_file(ck, ts), ts->name,
                       qd_dtype_name(ts->dtype));
    int64_t N = tw->shape[0], K = tw->shape[1], bn, bk; /* rows and columns one scale covers */
    QD_CHECK(qd__ct_layout(cg, ck, prefix, QD_CT_FP8, 8, N, K, ts, &bn, &bk));
    /* the group's strategy names the layout (one 128 x 128 block of a [128, 128] weight is a block, not a
     * tensor scale); without one, the shape does (qd__ct_layout's rule) */
    int by_block = cg && (cg->block || (!cg->strategy[0] && cg->group_size <= 0 && cg->block_structure[0]));
    int tensor = !by_block && bn == N && bk == K, row = !by_block && bn == 1 && bk == K;
    int block = by_block || (!cg && !tensor && !row);
    *pN = N, *pK = K;
    if (info) {
        info->quantized = 1, info->N = N, info->K = K, info->bits = 8, info->sym = 1;
        info->group_size = tensor || row ? -1 : (int)bk;
        info->scheme = block ? QD_SCHEME_FP8_BLOCK : QD_SCHEME_FP8_DYNAMIC;
        /* a static input scale: llm-compressor's FP8 */
        if (tensor && find(ck, prefix, ".input_scale")) info->scheme = QD_SCHEME_FP8_STATIC;
    }
    return w ? dequant(ck, tw, ts, bn, bk, w) : QD_OK;
}
