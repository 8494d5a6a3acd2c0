/* SPDX-License-Identifier: MIT
 * qformat-read-fp4.c - compressed-tensors nvfp4-pack-quantized / mxfp4-pack-quantized Linears
 * (qd-qformat-read.h): weight_packed U8 [N][K/2] (E2M1 codes, low nibble first), weight_scale [N][G]
 * as F8_E4M3 local scales with an F32 weight_global_scale [1] (NVFP4) or as U8 E8M0 exponents (MXFP4).
 * Dequantised as e2m1(q) * (e4m3(local) / global) or e2m1(q) * 2^(e - 127) in fp32: the products
 * compressed-tensors' NVFP4PackedCompressor forms before its final cast to bfloat16. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "qd-check.h"
#include "qd-fp4.h"
#include "qd-fp8.h"
#include "qformat-read-internal.h"

qd_status qd__read_ct_fp4(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, float **w, int64_t *pN,
                          int64_t *pK, qd_qlinear_info *info) {
    char name[1100];
    snprintf(name, sizeof name, "%s.weight_packed", prefix);
    const qd_st_tensor *tw = qd_ckpt_find(ck, name);
    snprintf(name, sizeof name, "%s.weight_scale", prefix);
    const qd_st_tensor *ts = qd_ckpt_find(ck, name);
    snprintf(name, sizeof name, "%s.weight_global_scale", prefix);
    const qd_st_tensor *tg = qd_ckpt_find(ck, name);
    if (!tw || !ts || tw->ndim != 2 || tw->dtype != QD_DT_U8 || ts->ndim != 2 ||
        (ts->dtype != QD_DT_F8_E4M3 && ts->dtype != QD_DT_U8))
        return qd_fail(QD_ERR_FORMAT, "%s: fp4 module '%s' needs a 2-D U8 weight_packed and a 2-D F8_E4M3 or U8 "
                       "weight_scale", ck->dir, prefix);
    int nv = ts->dtype == QD_DT_F8_E4M3;
    int64_t N = tw->shape[0], K = 2 * tw->shape[1], G = ts->shape[1];
    if (ts->shape[0] != N || G < 1 || K % G || K / G != (nv ? 16 : 32))
        return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_scale' has shape [%lld,%lld], expected [%lld,%lld] (groups of "
                       "%d along the %lld input features)", ck->dir, prefix, (long long)ts->shape[0],
                       (long long)ts->shape[1], (long long)N, (long long)(K / (nv ? 16 : 32)), nv ? 16 : 32,
                       (long long)K);
    int64_t bn, bk; /* the config is what vLLM and compressed-tensors read: it must describe these tensors */
    QD_CHECK(qd__ct_layout(cg, ck, prefix, nv ? QD_CT_NVFP4 : QD_CT_MXFP4, 4, N, K, ts, &bn, &bk));
    if (nv && (!tg || tg->numel != 1 || tg->dtype != QD_DT_F32))
        return qd_fail(QD_ERR_FORMAT, "%s: nvfp4 module '%s' needs an F32 weight_global_scale of one element", ck->dir,
                       prefix);
    *pN = N, *pK = K;
    if (info) {
        info->quantized = 1, info->N = N, info->K = K, info->bits = 4, info->sym = 1;
        info->group_size = (int)(K / G);
        int act = cg && cg->has_act; /* the activations are the runtime's: read as weight-only */
        info->scheme = nv ? (act ? QD_SCHEME_NVFP4 : QD_SCHEME_NVFP4A16) : act ? QD_SCHEME_MXFP4_W4A4 : QD_SCHEME_MXFP4;
    }
    if (!w) return QD_OK;
    uint8_t *q = malloc((size_t)(N * K / 2) + 1), *sb = malloc((size_t)(N * G) + 1);
    float *out = malloc(sizeof *out * (size_t)(N * K) + 1), global = 1, *sf = malloc(sizeof *sf * (size_t)(N * G) + 1);
    qd_status st = q && sb && out && sf ? QD_OK
                                        : qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantising '%s'", ck->dir, prefix);
    if (st == QD_OK) st = qd_ckpt_read_raw(ck, tw, q);
    if (st == QD_OK) st = qd_ckpt_read_raw(ck, ts, sb);
    for (int64_t i = 0; st == QD_OK && i < N * G; i++) sf[i] = nv ? qd_e4m3_to_f32(sb[i]) : qd_e8m0_to_f32(sb[i]);
    if (st == QD_OK) st = qd__scales_check(ck, ts, sf, (size_t)(N * G), 0); /* e4m3 0x7f, e8m0 0xff: NaN */
    if (st == QD_OK && nv) st = qd_ckpt_read_f32(ck, tg, &global);
    if (st == QD_OK && nv && !(global > 0 && isfinite(global)))
        st = qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_global_scale' is %g, not a positive finite number",
                     qd__tensor_file(ck, tg), prefix,
                     (double)global);
    for (int64_t n = 0; st == QD_OK && n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            uint8_t c = q[(n * K + k) / 2];
            float s = nv ? sf[n * G + k / (K / G)] / global : sf[n * G + k / (K / G)];
            out[n * K + k] = qd_e2m1_to_f32(k % 2 ? (uint8_t)(c >> 4) : (uint8_t)(c & 15)) * s;
        }
    free(q);
    free(sb);
    free(sf);
    if (st != QD_OK) {
        free(out);
        return st;
    }
    *w = out;
    return QD_OK;
}
