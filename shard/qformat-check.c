/* SPDX-License-Identifier: MIT
 * qformat-check.c - the checks every checkpoint reader shares (qformat-read-internal.h): a scale's
 * values finite, and a compressed-tensors config group held against the tensors of the Linear it
 * targets, for every format (float-quantized FP8, int-quantized / naive-quantized int8, pack-quantized,
 * nvfp4 and mxfp4): vLLM and compressed-tensors read the config, qdist reads the tensors, so where the
 * two disagree the checkpoint is refused rather than evaluated as something it does not say it is. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "qd-check.h"
#include "qd-dtype.h"
#include "qd-fp8.h"
#include "qformat-read-internal.h"

const char *qd__tensor_file(const qd_checkpoint *ck, const qd_st_tensor *t) {
    return t->file_index >= 0 && t->file_index < ck->nfiles ? ck->files[t->file_index]->path : ck->dir;
}

qd_status qd__scales_check(const qd_checkpoint *ck, const qd_st_tensor *t, const float *v, size_t n, int nonneg) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || (nonneg && v[i] < 0))
            return qd_fail(QD_ERR_FORMAT, "%s: scale '%s' element %zu is %g; scales must be finite%s",
                           qd__tensor_file(ck, t), t->name, i, (double)v[i], nonneg ? " and >= 0" : "");
    return QD_OK;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static const char *const kind_name[] = {"fp8 (an F8_E4M3 weight)", "int8 (an I8 weight)",
                                        "packed int (an I32 weight_packed)", "nvfp4 (E2M1 codes, E4M3 scales)",
                                        "mxfp4 (E2M1 codes, E8M0 scales)"};
static const char *const kind_format[][2] = {{"float-quantized", "naive-quantized"},
                                             {"int-quantized", "naive-quantized"},
                                             {"pack-quantized", NULL},
                                             {"nvfp4-pack-quantized", NULL},
                                             {"mxfp4-pack-quantized", NULL}};

/* one line: "DIR/config.json: the quantization_config group of 'P' says <says>, but its tensors are <kind>: <why>" */
static qd_status contradiction(const qd_checkpoint *ck, const char *prefix, qd_ct_kind kind, const char *says,
                               const char *why, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, why);
    vsnprintf(buf, sizeof buf, why, ap);
    va_end(ap);
    return qd_fail(QD_ERR_FORMAT, "%s/config.json: the quantization_config group of '%s' says %s, but its tensors are "
                   "%s: %s", ck->dir, prefix, says, kind_name[kind], buf);
}

/* the scale's shape read as [R, C] ([] and [x] as [1, 1] and [x, 1]); 0 when it has more dims */
static int scale_rc(const qd_st_tensor *ts, int64_t *R, int64_t *C) {
    *R = ts->ndim >= 1 ? ts->shape[0] : 1;
    *C = ts->ndim == 2 ? ts->shape[1] : 1;
    return ts->ndim <= 2 && (int64_t)ts->numel == *R * *C;
}

/* without a config group: the scale's shape decides (FP8: per row, per tensor, else 128 x 128 blocks) */
static qd_status by_shape(const qd_checkpoint *ck, qd_ct_kind kind, int64_t N, int64_t K, const qd_st_tensor *ts,
                          int64_t *bn, int64_t *bk) {
    int64_t R, C;
    int ok = scale_rc(ts, &R, &C);
    if (kind != QD_CT_FP8) {
        if (!ok || ts->ndim != 2 || R != N || C < 1 || C > (K > 0 ? K : 1))
            return qd_fail(QD_ERR_FORMAT, "%s: '%s' has %d dims, expected [N=%lld, G] (one scale per row and group)",
                           qd__tensor_file(ck, ts), ts->name, ts->ndim, (long long)N);
        *bn = 1, *bk = cdiv(K, C);
        return QD_OK;
    }
    if (ok && R == N && C == 1) *bn = 1, *bk = K;
    else if (ok && R * C == 1) *bn = N, *bk = K;
    else if (ok && R == cdiv(N, QD_FP8_BLOCK_SIZE) && C == cdiv(K, QD_FP8_BLOCK_SIZE))
        *bn = QD_FP8_BLOCK_SIZE, *bk = QD_FP8_BLOCK_SIZE;
    else
        return qd_fail(QD_ERR_FORMAT, "%s: '%s' has shape [%lld,%lld], which is neither per-tensor [1,1], per-channel "
                       "[%lld,1] nor 128 x 128 blocks [%lld,%lld] of the weight [%lld,%lld]", qd__tensor_file(ck, ts),
                       ts->name, (long long)R, (long long)C, (long long)N, (long long)cdiv(N, 128),
                       (long long)cdiv(K, 128), (long long)N, (long long)K);
    return QD_OK;
}

static qd_status check_kind(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, qd_ct_kind kind,
                            int bits) {
    char says[96];
    const char *const *fm = kind_format[kind];
    if (cg->format[0] && strcmp(cg->format, fm[0]) != 0 && (!fm[1] || strcmp(cg->format, fm[1]) != 0)) {
        snprintf(says, sizeof says, "format \"%s\"", cg->format);
        return contradiction(ck, prefix, kind, says, "compressed-tensors writes them as \"%s\"%s%s%s", fm[0],
                             fm[1] ? " or \"" : "", fm[1] ? fm[1] : "", fm[1] ? "\"" : "");
    }
    int want_float = kind == QD_CT_FP8 || kind == QD_CT_NVFP4 || kind == QD_CT_MXFP4;
    const char *type = cg->type[0] ? cg->type : "int"; /* compressed-tensors' default */
    if (strcmp(type, want_float ? "float" : "int") != 0) {
        snprintf(says, sizeof says, "type \"%s\"%s", cg->type, cg->type[0] ? "" : " (absent: int)");
        return contradiction(ck, prefix, kind, says, "expected type \"%s\"", want_float ? "float" : "int");
    }
    int lo = kind == QD_CT_FP8 ? 8 : want_float ? 4 : kind == QD_CT_INT8 ? 1 : bits;
    int hi = kind == QD_CT_FP8 ? 8 : want_float ? 4 : kind == QD_CT_INT8 ? 8 : bits;
    if (cg->bits && (cg->bits < lo || cg->bits > hi)) {
        snprintf(says, sizeof says, "num_bits %d", cg->bits);
        return lo == hi ? contradiction(ck, prefix, kind, says, "%d bits", lo)
                        : contradiction(ck, prefix, kind, says, "%d to %d bits", lo, hi);
    }
    return QD_OK;
}

/* a static input scale where the group's activations are static (vLLM loads it; a checkpoint without
 * one is refused there) */
static qd_status check_input_scale(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, qd_ct_kind kind) {
    const char *sfx = cg->act_static && (kind == QD_CT_FP8 || kind == QD_CT_INT8) ? ".input_scale"
                    : cg->act_local && kind == QD_CT_NVFP4                     ? ".input_global_scale"
                                                                               : NULL;
    char name[1100];
    snprintf(name, sizeof name, "%s%s", prefix, sfx ? sfx : "");
    if (sfx && !qd_ckpt_find(ck, name))
        return contradiction(ck, prefix, kind, cg->act_static ? "static input activations (\"dynamic\": false)"
                                                              : "input activations \"dynamic\": \"local\"",
                             "tensor '%s' is missing", name);
    return QD_OK;
}

qd_status qd__ct_layout(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, qd_ct_kind kind, int bits,
                        int64_t N, int64_t K, const qd_st_tensor *ts, int64_t *bn, int64_t *bk) {
    if (!cg) return by_shape(ck, kind, N, K, ts, bn, bk);
    QD_CHECK(check_kind(cg, ck, prefix, kind, bits));
    const char *st = cg->strategy;
    int gs = cg->group_size;
    if (!st[0]) /* older configs: a group size or a block says it; else the shape does */
        st = gs > 0 ? "group" : cg->block_structure[0] ? "block" : NULL;
    if (!st) return by_shape(ck, kind, N, K, ts, bn, bk);
    char says[96];
    snprintf(says, sizeof says, "strategy \"%s\"", st);
    static const char *const known[] = {"tensor", "channel", "group", "block", "tensor_group"};
    int s = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(st, known[i]) == 0) s = i;
    if (s < 0) return contradiction(ck, prefix, kind, says, "a weight strategy is tensor, channel, group, block or "
                                    "tensor_group");
    static const char *const allowed[] = {"tensor, channel or block", "channel or group", "channel or group",
                                          "tensor_group", "group"};
    static const unsigned mask[] = {1u | 2u | 8u, 2u | 4u, 2u | 4u, 16u, 4u};
    if (!(mask[kind] & (1u << s)))
        return contradiction(ck, prefix, kind, says, "qdist reads them with strategy %s", allowed[kind]);
    int64_t R, C, eR, eC;
    int ok = scale_rc(ts, &R, &C), grouped = s == 2 || s == 4;
    if (grouped && gs < 1) {
        snprintf(says, sizeof says, "strategy \"%s\", group_size %d", st, gs);
        return contradiction(ck, prefix, kind, says, "a grouped strategy needs a group_size >= 1");
    }
    if (!grouped && gs > 0) {
        snprintf(says, sizeof says, "strategy \"%s\" with group_size %d", st, gs);
        return contradiction(ck, prefix, kind, says, "only group and tensor_group take a group_size");
    }
    if (s == 3 && !cg->block_structure[0])
        return contradiction(ck, prefix, kind, "strategy \"block\" without a block_structure [rows, columns]",
                             "weight_scale has shape [%lld,%lld]", (long long)R, (long long)C);
    switch (s) {
    case 0: eR = 1, eC = 1, *bn = N, *bk = K; break;
    case 1: eR = N, eC = 1, *bn = 1, *bk = K; break;
    case 3:
        *bn = cg->block_structure[0], *bk = cg->block_structure[1];
        eR = cdiv(N, *bn), eC = cdiv(K, *bk);
        snprintf(says, sizeof says, "strategy \"block\", block_structure [%d, %d]", cg->block_structure[0],
                 cg->block_structure[1]);
        break;
    default:
        *bn = 1, *bk = gs, eR = N, eC = cdiv(K, gs);
        snprintf(says, sizeof says, "strategy \"%s\", group_size %d", st, gs);
    }
    /* fp4 groups split K exactly (the packed codes are read in whole groups) */
    int fp4_rest = (kind == QD_CT_NVFP4 || kind == QD_CT_MXFP4) && K % gs;
    if (!ok || R != eR || C != eC || fp4_rest)
        return contradiction(ck, prefix, kind, says, "'%s' has shape [%lld,%lld], where the weight [%lld,%lld] needs "
                             "[%lld,%lld]%s", ts->name, (long long)R, (long long)C, (long long)N, (long long)K,
                             (long long)eR, (long long)eC, fp4_rest ? " and groups that divide the columns" : "");
    return QD_OK;
}

qd_status qd_qformat_check_linear(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix) {
    if (!qf || qd_qformat_kind_of(qf) != QD_QF_CT) return QD_OK;
    const ct_group *cg = qd__ct_group_for(qf, prefix);
    char name[1100];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const qd_st_tensor *tw = qd_ckpt_find(ck, name), *tp, *ts;
    snprintf(name, sizeof name, "%s.weight_packed", prefix);
    tp = qd_ckpt_find(ck, name);
    snprintf(name, sizeof name, "%s.weight_scale", prefix);
    ts = qd_ckpt_find(ck, name);
    int64_t N, K, bn, bk;
    int quantized = (tw && !qd_dtype_is_float(tw->dtype)) || tp;
    if (!cg && quantized) /* vLLM would build it as a float Linear and find no .weight to load */
        return qd_fail(QD_ERR_FORMAT, "%s/config.json: no quantization_config group targets '%s' (neither \"Linear\" "
                       "nor a name or re: pattern), but its tensors are quantized (%s)", ck->dir, prefix,
                       tw && !qd_dtype_is_float(tw->dtype) ? tw->name : tp->name);
    /* the weight's reader first (its config), then what only the runtime reads: the static input scale */
    if (tw && tw->dtype == QD_DT_F8_E4M3) {
        QD_CHECK(qd__read_ct_fp8(cg, ck, prefix, NULL, &N, &K, NULL));
        return check_input_scale(cg, ck, prefix, QD_CT_FP8);
    }
    if (tp && tp->dtype == QD_DT_U8) {
        QD_CHECK(qd__read_ct_fp4(cg, ck, prefix, NULL, &N, &K, NULL));
        return check_input_scale(cg, ck, prefix, ts && ts->dtype == QD_DT_F8_E4M3 ? QD_CT_NVFP4 : QD_CT_MXFP4);
    }
    int naive = tw && tw->dtype == QD_DT_I8;
    if (!naive && !(tp && tp->dtype == QD_DT_I32)) return QD_OK; /* a float weight, or the reader's to refuse */
    const qd_st_tensor *q = naive ? tw : tp;
    if (!ts)
        return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_scale' is missing; the %s weight '%s' needs one (config.json: "
                       "compressed-tensors)", qd__tensor_file(ck, q), prefix, qd_dtype_name(q->dtype), q->name);
    if (q->ndim != 2) return QD_OK; /* the reader names it */
    N = q->shape[0], K = naive ? q->shape[1] : 0;
    int bits = cg && cg->bits ? cg->bits : 0;
    if (!naive) { /* K is weight_shape's second value (16 bytes read); the reader names a bad one */
        snprintf(name, sizeof name, "%s.weight_shape", prefix);
        const qd_st_tensor *tshape = qd_ckpt_find(ck, name);
        int64_t shp[2] = {0, 0};
        int32_t s32[2] = {0, 0};
        if (!tshape || tshape->numel != 2 || (tshape->dtype != QD_DT_I64 && tshape->dtype != QD_DT_I32)) return QD_OK;
        QD_CHECK(qd_ckpt_read_raw(ck, tshape, tshape->dtype == QD_DT_I64 ? (void *)shp : (void *)s32));
        K = tshape->dtype == QD_DT_I64 ? shp[1] : s32[1];
        if (K <= 0) return QD_OK;
        if (bits && (K * bits + 31) / 32 != q->shape[1]) {
            snprintf(name, sizeof name, "num_bits %d", bits);
            return contradiction(ck, prefix, QD_CT_PACKED, name, "'%s' has %lld columns for %lld input features, "
                                 "not %lld", q->name, (long long)q->shape[1], (long long)K, (long long)((K * bits + 31) / 32));
        }
    }
    QD_CHECK(qd__ct_layout(cg, ck, prefix, naive ? QD_CT_INT8 : QD_CT_PACKED, bits, N, K, ts, &bn, &bk));
    return check_input_scale(cg, ck, prefix, naive ? QD_CT_INT8 : QD_CT_PACKED);
}
