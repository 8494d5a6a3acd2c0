/* SPDX-License-Identifier: MIT
 * backend-compare-util.c - the backends, buffers, comparisons and quantizer settings of the
 * cross-backend half of test-backend-ops (backend-compare-util.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend-compare-util.h"

qd_backend_t BE[2];
qd_numerics BE1_NUMERICS;
qd_device_info DEV;

pbuf P(const void *host, size_t n) {
    pbuf p = {{NULL, NULL}, n};
    for (int i = 0; i < 2; i++) {
        if (qd_buf_alloc(BE[i], n, &p.b[i]) != QD_OK) exit(1);
        if (host && qd_be_upload(BE[i], &(struct qd_upload_args){.dst = R(p, i), .src = host, .src_dtype = QD_DT_F32, .n = n}) != QD_OK)
            exit(1);
    }
    return p;
}
void pfree(pbuf p) { qd_buf_free(p.b[0]), qd_buf_free(p.b[1]); }
void *dl(pbuf p, int i) {
    void *h = malloc(p.n * 4);
    if (qd_be_download(BE[i], &(struct qd_download_args){.src = R(p, i), .dst = h, .n = p.n}) != QD_OK) exit(1);
    return h;
}
/* max |test - cpu| / max |cpu| over the buffer, printed */
double cmpf(const char *what, pbuf p, double tol) {
    float *a = dl(p, 0), *b = dl(p, 1);
    double num = 0, den = 0;
    int nan = 0;
    for (size_t i = 0; i < p.n; i++) {
        if (isnan(a[i]) != isnan(b[i])) nan = 1;
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)a[i]));
    }
    double rel = num / (den > 0 ? den : 1);
    fprintf(stderr, "  %-34s rel err %.3g (tol %.0e)%s\n", what, rel, tol, nan ? " NaN MISMATCH" : "");
    QD_EXPECT(!nan && rel <= tol);
    free(a), free(b);
    return rel;
}
/* ||test - cpu|| / ||cpu|| (for outputs where a few flipped codes are allowed) */
double cmp_rms(const char *what, pbuf p, double tol) {
    float *a = dl(p, 0), *b = dl(p, 1);
    double num = 0, den = 0;
    for (size_t i = 0; i < p.n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)a[i] * a[i];
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    fprintf(stderr, "  %-34s rms rel err %.3g (tol %.0e)\n", what, rel, tol);
    QD_EXPECT(rel <= tol);
    free(a), free(b);
    return rel;
}
/* fraction of equal 4-byte elements */
double cmpi(const char *what, pbuf p, double min_frac) {
    uint32_t *a = dl(p, 0), *b = dl(p, 1);
    size_t same = 0;
    for (size_t i = 0; i < p.n; i++) same += a[i] == b[i];
    double f = (double)same / (double)p.n;
    fprintf(stderr, "  %-34s equal %.6f (%zu of %zu differ, need >= %.4f)\n", what, f, p.n - same, p.n, min_frac);
    QD_EXPECT(f >= min_frac);
    free(a), free(b);
    return f;
}

const qd_qcfg CFGS[QD_TEST_NCFGS] = {
    {.kind = QD_QZ_MINMAX, .bits = 4, .sym = 0},
    {.kind = QD_QZ_MINMAX, .bits = 4, .sym = 1},
    {.kind = QD_QZ_MINMAX, .bits = 3, .sym = 0, .mse = 1, .mse_norm = 2.4f, .mse_grid = 100, .mse_maxshrink = 0.8f},
    {.kind = QD_QZ_AWQ, .bits = 4, .sym = 0},
    {.kind = QD_QZ_AWQ, .bits = 4, .sym = 1},
    {.kind = QD_QZ_MINMAX, .bits = 8, .sym = 0},
    /* scales rounded to their stored dtype before the codes (indices 6-10): the device's bit operations
     * against qd_f32_to_f16 / qd_f32_to_bf16 */
    {.kind = QD_QZ_MINMAX, .bits = 8, .sym = 1, .scale_dtype = QD_DT_F16},
    {.kind = QD_QZ_MINMAX, .bits = 4, .sym = 0, .scale_dtype = QD_DT_BF16},
    {.kind = QD_QZ_MINMAX, .bits = 3, .sym = 0, .mse = 1, .mse_norm = 2.4f, .mse_grid = 100, .mse_maxshrink = 0.8f,
     .scale_dtype = QD_DT_F16},
    {.kind = QD_QZ_AWQ, .bits = 4, .sym = 0, .scale_dtype = QD_DT_F16},
    {.kind = QD_QZ_AWQ, .bits = 4, .sym = 1, .scale_dtype = QD_DT_BF16},
    /* 11, 12: a BF16 scale, or an F16 subnormal one, rounded down can put round(-xmin / scale) at
     * maxq + 1: the zero stays at maxq (test_quantize's rows 7 and 8) */
    {.kind = QD_QZ_MINMAX, .bits = 8, .sym = 0, .scale_dtype = QD_DT_BF16},
    {.kind = QD_QZ_MINMAX, .bits = 8, .sym = 0, .scale_dtype = QD_DT_F16},
};
const char *const CFGN[QD_TEST_NCFGS] = {"minmax w4 asym", "minmax w4 sym", "minmax w3 mse", "awq w4 asym", "awq w4 sym",
                                         "minmax w8", "minmax w8 sym f16", "minmax w4 asym bf16", "minmax w3 mse f16",
                                         "awq w4 asym f16", "awq w4 sym bf16", "minmax w8 asym bf16",
                                         "minmax w8 asym f16"};

/* a damped random Hessian's U, made on the CPU and uploaded to both */
float *make_U(size_t K) {
    size_t T = 2 * K;
    float *X = rvec(T * K, 1);
    for (size_t t = 0; t < T; t++)
        for (size_t k = 0; k < K; k++) X[t * K + k] *= 1.0f + (float)(k % 7); /* uneven channels */
    qd_backend_t cpu = BE[0];
    qd_buf_t x, h;
    if (qd_buf_alloc(cpu, T * K, &x) || qd_buf_alloc(cpu, K * K, &h)) exit(1);
    qd_be_upload(cpu, &(struct qd_upload_args){.dst = QD_REF(x, 0), .src = X, .src_dtype = QD_DT_F32, .n = T * K});
    qd_be_hessian(cpu, &(struct qd_hessian_args){.H = QD_REF(h, 0), .X = QD_REF(x, 0), .T = T, .K = K, .ldx = K, .alpha = 2.0f / T, .beta = 0});
    float *H = malloc(K * K * 4);
    qd_be_download(cpu, &(struct qd_download_args){.src = QD_REF(h, 0), .dst = H, .n = K * K});
    double mean = 0;
    for (size_t k = 0; k < K; k++) mean += H[k * K + k];
    mean /= K;
    qd_be_diag_add(cpu, &(struct qd_diag_add_args){.A = QD_REF(h, 0), .n = K, .scalar = (float)(0.01 * mean)});
    if (qd_be_chol_inv(cpu, &(struct qd_chol_inv_args){.A = QD_REF(h, 0), .n = K}) != QD_OK) exit(1);
    qd_be_download(cpu, &(struct qd_download_args){.src = QD_REF(h, 0), .dst = H, .n = K * K});
    qd_buf_free(x), qd_buf_free(h), free(X);
    return H;
}
