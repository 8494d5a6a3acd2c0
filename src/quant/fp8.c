/* SPDX-License-Identifier: MIT
 * fp8.c - the scales of the E4M3 schemes (qd-quant.h): per row (fp8-dynamic), per 128 x 128 block
 * (fp8-block) or per tensor (fp8-static), amax / 448 rounded to the stored dtype, or with --mse the
 * best shrink of it. Round-to-nearest with them is float-rtn.c's, GPTQ's sweep with them gptq.c's. */
#include <float.h>
#include <math.h>

#include "qd-fp8.h"
#include "qd-quant.h"
#include "qd-rows.h"

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
    for (size_t n = t.n0; n < t.n1; n++) {
        float r = qd_absmax(W + n * K + t.k0, t.k1 - t.k0);
        amax = r > amax ? r : amax;
    }
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

void qd_fp8_tile(qd_scheme sc, size_t N, size_t K, size_t *rows, size_t *cols) {
    *rows = sc == QD_SCHEME_FP8_BLOCK ? QD_FP8_BLOCK_SIZE : sc == QD_SCHEME_FP8_STATIC ? N : 1;
    *cols = sc == QD_SCHEME_FP8_BLOCK ? QD_FP8_BLOCK_SIZE : K;
}

typedef struct {
    const float *W;
    const qd_qspec *s;
    qd_qcfg cfg;
    float *scales;
    size_t N, K, rows, cols;
} scales_job;

/* the tiles of tile rows [t0, t1): each tile's scale is its own, so any split gives the same bits */
static void scales_rows(void *arg, int part, size_t t0, size_t t1) {
    (void)part;
    const scales_job *j = arg;
    size_t N = j->N, K = j->K;
    for (size_t n0 = t0 * j->rows; n0 < t1 * j->rows && n0 < N; n0 += j->rows)
        for (size_t k0 = 0, g = 0; k0 < K; k0 += j->cols, g++) {
            tile t = {n0, n0 + j->rows < N ? n0 + j->rows : N, k0, k0 + j->cols < K ? k0 + j->cols : K};
            float sc = j->s->scheme == QD_SCHEME_FP8_STATIC && j->s->fp8_tensor_scale > 0
                           ? j->s->fp8_tensor_scale
                           : tile_scale(j->W, K, t, &j->cfg, j->s->scale_dtype);
            for (size_t n = t.n0; n < t.n1; n++) j->scales[g * N + n] = sc;
        }
}

void qd_fp8_scales(const float *W, size_t N, size_t K, const qd_qspec *s, float *scales) {
    scales_job j = {.W = W, .s = s, .cfg = qd_qspec_qcfg(s), .scales = scales, .N = N, .K = K};
    qd_fp8_tile(s->scheme, N, K, &j.rows, &j.cols);
    qd_rows_run((N + j.rows - 1) / j.rows, j.rows * K, scales_rows, &j); /* rows of tiles over threads */
}
