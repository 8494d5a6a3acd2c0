/* SPDX-License-Identifier: MIT
 * awq-clip.c - AWQ's clip search (AutoAWQ auto_clip) on the CPU, one input-channel group at a time:
 * the reference output W_g X_g^T and each candidate's Q(clamp(W_g)) X_g^T are GEMMs, in fp64: the
 * errors compared are small differences of O(1) outputs, and in fp32 near-equal shrink candidates
 * would swap (a whole group's codes change when they do). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"
#include "qd-check.h"
#include "qd-log.h"

/* out[N, T] = rows[N, gs] X_g^T in fp64: OpenBLAS's dgemm, or in exact numerics the fixed-order one
 * (exact.c) that the CUDA backend reproduces */
static qd_status group_gemm(qd_backend_t be, const double *rowsd, const float *rows, const double *Xdg, const float *Xg,
                            size_t N, size_t T, size_t gs, size_t K, double *out) {
    if (qd_cpu_exact(be)) {
        qd_cpu_xg g = {.tb = 1, .M = N, .N = T, .K = gs, .A = rows, .lda = gs, .B = Xg, .ldb = K, .Cd = out, .ldcd = T};
        return qd_cpu_xgemm(((qd_cpu_ctx *)be->ctx)->nthreads, &g);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)T, (int)gs, 1.0, rowsd, (int)gs, Xdg, (int)K, 0.0,
                out, (int)T);
    return QD_OK;
}

qd_status qd_cpu_awq_clip(qd_backend_t be, const struct qd_awq_clip_args *a) {
    size_t N = a->N, K = a->K, T = a->T;
    size_t gs = a->group_size && a->group_size < K ? a->group_size : K, G = K / gs;
    float maxq = (float)((1 << a->cfg.bits) - 1);
    float *W = qd_ref_f32(a->W);
    const float *X = qd_ref_f32(a->X);
    float *best_out = a->best_out.buf ? qd_ref_f32(a->best_out) : NULL;
    double *org = malloc(N * T * sizeof *org), *cur = malloc(N * T * sizeof *cur);
    double *Xd = malloc(T * K * sizeof *Xd), *Wd = malloc(N * gs * sizeof *Wd), *Qd = malloc(N * gs * sizeof *Qd);
    float *Wg = malloc(N * gs * sizeof *Wg), *Qg = malloc(N * gs * sizeof *Qg);
    float *omax = malloc(N * sizeof *omax), *bmax = malloc(N * sizeof *bmax);
    double *berr = malloc(N * sizeof *berr);
    if (!org || !cur || !Xd || !Wd || !Qd || !Wg || !Qg || !omax || !bmax || !berr) {
        free(org), free(cur), free(Xd), free(Wd), free(Qd), free(Wg), free(Qg), free(omax), free(bmax), free(berr);
        return qd_fail(QD_ERR_NOMEM, "cpu backend: awq_clip: out of memory (%zu rows, %zu tokens)", N, T);
    }
    int steps = (int)(a->max_shrink * (float)a->grid);
    for (size_t i = 0; i < T * K; i++) Xd[i] = X[i];
    for (size_t g = 0; g < G; g++) {
        for (size_t n = 0; n < N; n++) {
            memcpy(Wg + n * gs, W + n * K + g * gs, gs * sizeof *Wg);
            float m = 0;
            for (size_t k = 0; k < gs; k++) m = fmaxf(m, fabsf(Wg[n * gs + k]));
            omax[n] = m;
            bmax[n] = m;
            berr[n] = INFINITY;
        }
        for (size_t i = 0; i < N * gs; i++) Wd[i] = Wg[i];
        qd_status st = group_gemm(be, Wd, Wg, Xd + g * gs, X + g * gs, N, T, gs, K, org);
        for (int i = 0; i < steps; i++) {
            float f = (float)(1.0 - (double)i / a->grid);
            for (size_t n = 0; n < N; n++) {
                float m = omax[n] * f;
                float *q = Qg + n * gs;
                for (size_t k = 0; k < gs; k++) {
                    float w = Wg[n * gs + k];
                    q[k] = w > m ? m : (w < -m ? -m : w);
                }
                float scale, zero;
                qd_cpu_qparams(&a->cfg, q, gs, 1, &scale, &zero);
                for (size_t k = 0; k < gs; k++) q[k] = qd_cpu_qvalue(q[k], scale, zero, maxq, NULL);
            }
            for (size_t i = 0; i < N * gs && st == QD_OK; i++) Qd[i] = Qg[i];
            if (st == QD_OK) st = group_gemm(be, Qd, Qg, Xd + g * gs, X + g * gs, N, T, gs, K, cur);
            if (st != QD_OK) break;
            for (size_t n = 0; n < N; n++) {
                double e = 0;
                for (size_t t = 0; t < T; t++) {
                    double d = cur[n * T + t] - org[n * T + t];
                    e += d * d;
                }
                e /= (double)T;
                if (e < berr[n]) {
                    berr[n] = e;
                    bmax[n] = omax[n] * f;
                }
            }
        }
        if (st != QD_OK) {
            free(org), free(cur), free(Xd), free(Wd), free(Qd), free(Wg), free(Qg), free(omax), free(bmax), free(berr);
            return st;
        }
        for (size_t n = 0; n < N; n++) {
            float m = bmax[n];
            float *w = W + n * K + g * gs;
            for (size_t k = 0; k < gs; k++) w[k] = w[k] > m ? m : (w[k] < -m ? -m : w[k]);
            if (best_out) best_out[n * G + g] = m;
        }
    }
    free(org), free(cur), free(Xd), free(Wd), free(Qd), free(Wg), free(Qg), free(omax), free(bmax), free(berr);
    return QD_OK;
}
