/* SPDX-License-Identifier: MIT
 * qformat-read-fp8.c - compressed-tensors float-quantized Linears (qd-qformat-read.h): an F8_E4M3
 * weight and its per-tensor, per-channel or per-block scale, dequantised as e4m3(q) * s in fp32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "qformat-read-internal.h"

qd_status qd__read_ct_fp8(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, float **w, int64_t *pN,
                          int64_t *pK, qd_qlinear_info *info) {
    char name[1100];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const qd_st_tensor *tw = qd_ckpt_find(ck, name);
    snprintf(name, sizeof name, "%s.weight_scale", prefix);
    const qd_st_tensor *ts = qd_ckpt_find(ck, name);
    if (!tw || !ts || tw->ndim != 2 || tw->dtype != QD_DT_F8_E4M3)
        return qd_fail(QD_ERR_FORMAT, "%s: float-quantized module '%s' needs a 2-D F8_E4M3 weight and a weight_scale",
                       ck->dir, prefix);
    if (!qd_dtype_is_float(ts->dtype))
        return qd_fail(QD_ERR_FORMAT, "%s: '%s' is %s, expected a float type", ck->dir, ts->name,
                       qd_dtype_name(ts->dtype));
    int64_t N = tw->shape[0], K = tw->shape[1];
    int64_t R = ts->ndim == 2 ? ts->shape[0] : 1, C = ts->ndim == 2 ? ts->shape[1] : 1;
    int64_t bn = 0, bk = 0; /* rows and columns one scale covers */
    int block = cg ? cg->block : !(R == N && C == 1) && !(R == 1 && C == 1);
    if (ts->ndim > 2 || (int64_t)ts->numel != R * C) {
        bn = -1;
    } else if (block) {
        bn = QD_FP8_BLOCK_SIZE, bk = QD_FP8_BLOCK_SIZE;
        if (R != (N + bn - 1) / bn || C != (K + bk - 1) / bk) bn = -1;
    } else if (R == N && C == 1) {
        bn = 1, bk = K;
    } else if (R * C == 1) {
        bn = N, bk = K;
    } else {
        bn = -1;
    }
    if (bn <= 0)
        return qd_fail(QD_ERR_FORMAT, "%s: '%s' has shape [%lld,%lld], which is neither per-tensor [1,1], per-channel "
                       "[%lld,1] nor 128 x 128 blocks [%lld,%lld] of the weight [%lld,%lld]", ck->dir, ts->name,
                       (long long)R, (long long)C, (long long)N, (long long)((N + 127) / 128),
                       (long long)((K + 127) / 128), (long long)N, (long long)K);
    *pN = N, *pK = K;
    if (info) {
        info->quantized = 1, info->N = N, info->K = K, info->bits = 8, info->sym = 1;
        info->group_size = block ? QD_FP8_BLOCK_SIZE : -1;
        info->scheme = block ? QD_SCHEME_FP8_BLOCK : QD_SCHEME_FP8_DYNAMIC;
        snprintf(name, sizeof name, "%s.input_scale", prefix); /* a static input scale: llm-compressor's FP8 */
        if (!block && R * C == 1 && qd_ckpt_find(ck, name)) info->scheme = QD_SCHEME_FP8_STATIC;
    }
    if (!w) return QD_OK;
    uint8_t *q = malloc((size_t)(N * K) + 1);
    float *s = malloc(sizeof *s * (size_t)(R * C) + 1), *out = malloc(sizeof *out * (size_t)(N * K) + 1);
    qd_status st = q && s && out ? QD_OK : qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantising '%s'", ck->dir, prefix);
    if (st == QD_OK) st = qd_ckpt_read_raw(ck, tw, q);
    if (st == QD_OK) st = qd_ckpt_read_f32(ck, ts, s);
    for (int64_t n = 0; st == QD_OK && n < N; n++)
        for (int64_t k = 0; k < K; k++)
            out[n * K + k] = qd_e4m3_to_f32(q[n * K + k]) * s[(n / bn) * C + k / bk];
    free(q);
    free(s);
    if (st != QD_OK) {
        free(out);
        return st;
    }
    *w = out;
    return QD_OK;
}
