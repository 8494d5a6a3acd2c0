/* SPDX-License-Identifier: MIT
 * fp8.c - round-to-nearest into E4M3 with per-row (fp8-dynamic), per-128x128-block (fp8-block) or
 * per-tensor (fp8-static) scales (qd-quant.h). The weight is brought to the host: E4M3 rounding is a few integer operations
 * per value (qd-fp8.h) and the same bits on every backend. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd-check.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "qd-quant.h"

/* one tile of W: rows [n0, n1), columns [k0, k1) */
typedef struct {
    size_t n0, n1, k0, k1;
} tile;

static double tile_err(const float *W, size_t K, tile t, float scale, double norm) {
    double e = 0;
    for (size_t n = t.n0; n < t.n1; n++)
        for (size_t k = t.k0; k < t.k1; k++) {
            float w = W[n * K + k], q = qd_e4m3_to_f32(qd_f32_to_e4m3(w / scale)) * scale;
            e += pow(fabs((double)w - q), norm);
        }
    return e;
}

/* the scale of a tile: amax / 448 rounded to the stored dtype, or with mse the best shrink of it */
static float tile_scale(const float *W, size_t K, tile t, const qd_qcfg *cfg, qd_dtype dt) {
    float amax = 0;
    for (size_t n = t.n0; n < t.n1; n++)
        for (size_t k = t.k0; k < t.k1; k++) amax = fmaxf(amax, fabsf(W[n * K + k]));
    if (amax == 0) return 1.0f; /* an all-zero tile: codes 0 whatever the scale */
    float best = qd_scale_round(dt, amax / QD_E4M3_MAX);
    if (!(best > 0)) best = dt == QD_DT_F16 ? 0x1p-24f : FLT_MIN; /* amax / 448 underflowed the dtype */
    if (!cfg->mse) return best;
    double best_err = tile_err(W, K, t, best, cfg->mse_norm);
    int steps = (int)(cfg->mse_maxshrink * cfg->mse_grid);
    for (int i = 1; i < steps; i++) {
        float s = qd_scale_round(dt, (1.0f - (float)i / (float)cfg->mse_grid) * amax / QD_E4M3_MAX);
        if (!s) continue;
        double e = tile_err(W, K, t, s, cfg->mse_norm);
        if (e < best_err) best_err = e, best = s;
    }
    return best;
}

void qd_fp8_row_scales(const float *W, size_t N, size_t K, const qd_qspec *s, qd_dtype dt, float *scales) {
    qd_qcfg cfg = qd_qspec_qcfg(s);
    for (size_t n = 0; n < N; n++) scales[n] = tile_scale(W, K, (tile){n, n + 1, 0, K}, &cfg, dt);
}

qd_status qd_fp8_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_dtype scale_dtype, qd_buf_t W,
                       size_t N, size_t K, qd_qresult *out) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!qd_scheme_is_fp8(s->scheme))
        return qd_fail(QD_ERR_INTERNAL, "%s: scheme %s is not an fp8 scheme", name, qd_scheme_name(s->scheme));
    QD_CHECK(qd_check_finite(be, W, 0, N * K, "the weight", name));
    size_t G, bs = s->scheme == QD_SCHEME_FP8_BLOCK ? QD_FP8_BLOCK_SIZE : 0;
    QD_CHECK(qd_qspec_groups(s, name, K, &G));
    float *w = malloc(N * K * sizeof *w);
    if (!w) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for the fp8 weight (%zu x %zu)", name, N, K);
    qd_status st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(W, 0), .dst = w, .n = N * K});
    if (st == QD_OK) st = qd_qresult_alloc(s, name, N, K, G, out);
    if (st != QD_OK) {
        free(w);
        return st;
    }
    qd_qlinear *q = &out->q;
    qd_qcfg cfg = qd_qspec_qcfg(s);
    size_t rows = bs ? bs : s->scheme == QD_SCHEME_FP8_STATIC ? N : 1, cols = bs ? bs : K; /* static: one tile */
    double sq = 0;
    for (size_t n0 = 0; n0 < N; n0 += rows)
        for (size_t k0 = 0, g = 0; k0 < K; k0 += cols, g++) {
            tile t = {n0, n0 + rows < N ? n0 + rows : N, k0, k0 + cols < K ? k0 + cols : K};
            float sc = tile_scale(w, K, t, &cfg, scale_dtype);
            for (size_t n = t.n0; n < t.n1; n++) {
                q->scales[g * N + n] = sc;
                q->zeros[g * N + n] = 0;
                for (size_t k = t.k0; k < t.k1; k++) {
                    uint8_t c = qd_f32_to_e4m3(w[n * K + k] / sc);
                    float d = qd_e4m3_to_f32(c) * sc;
                    sq += ((double)w[n * K + k] - d) * ((double)w[n * K + k] - d);
                    q->codes[n * K + k] = c;
                    w[n * K + k] = d;
                }
            }
        }
    for (size_t k = 0; k < K; k++) q->g_idx[k] = bs ? (int32_t)(k / bs) : 0;
    st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(W, 0), .src = w, .src_dtype = QD_DT_F32, .n = N * K});
    free(w);
    if (st != QD_OK) {
        qd_qlinear_free(q);
        return st;
    }
    out->s.loss = sq / 2;
    out->s.damp = -1;
    out->s.fallback[0] = 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->s.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return QD_OK;
}
