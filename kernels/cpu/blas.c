/* SPDX-License-Identifier: MIT
 * blas.c - the O(n^3) ops through OpenBLAS and LAPACK: GEMM, the Hessian (SYRK) and GPTQ's
 * inverse-Cholesky factor. */
#include <cblas.h>
#include <lapacke.h>
#include <string.h>

#include "cpu-ops.h"
#include "qd-log.h"

qd_status qd_cpu_gemm(qd_backend_t be, const struct qd_gemm_args *a) {
    (void)be;
    if (a->K == 0) {
        /* BLAS leaves C untouched when K = 0 only for beta = 1; make beta explicit */
        float *C = qd_ref_f32(a->C);
        for (size_t i = 0; i < a->M; i++)
            for (size_t j = 0; j < a->N; j++) C[i * a->ldc + j] = a->beta == 0.0f ? 0.0f : a->beta * C[i * a->ldc + j];
        return QD_OK;
    }
    cblas_sgemm(CblasRowMajor, a->trans_a ? CblasTrans : CblasNoTrans, a->trans_b ? CblasTrans : CblasNoTrans,
                (int)a->M, (int)a->N, (int)a->K, a->alpha, qd_ref_f32(a->A), (int)a->lda, qd_ref_f32(a->B),
                (int)a->ldb, a->beta, qd_ref_f32(a->C), (int)a->ldc);
    return QD_OK;
}

/* lower triangle <- upper (row-major) */
static void mirror_upper(float *A, size_t n) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) A[j * n + i] = A[i * n + j];
}

qd_status qd_cpu_hessian(qd_backend_t be, const struct qd_hessian_args *a) {
    (void)be;
    float *H = qd_ref_f32(a->H);
    if (a->T == 0) {
        if (a->beta != 1.0f)
            for (size_t i = 0; i < a->K * a->K; i++) H[i] = a->beta == 0.0f ? 0.0f : a->beta * H[i];
        return QD_OK;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)a->K, (int)a->T, a->alpha, qd_ref_f32(a->X),
                (int)a->ldx, a->beta, H, (int)a->K);
    mirror_upper(H, a->K);
    return QD_OK;
}

/* The matrix is symmetric, so a row-major upper triangle is LAPACK's column-major lower one; calling
 * LAPACK column-major avoids LAPACKE's transposing copies. */
qd_status qd_cpu_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a) {
    (void)be;
    float *A = qd_ref_f32(a->A);
    lapack_int n = (lapack_int)a->n, info;
    info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', n, A, n);
    if (info > 0) return QD_ERR_NUMERIC; /* not positive definite: the caller retries, no message */
    if (info < 0) return qd_fail(QD_ERR_INTERNAL, "cpu backend: spotrf argument %d invalid", (int)-info);
    info = LAPACKE_spotri_work(LAPACK_COL_MAJOR, 'L', n, A, n);
    if (info > 0) return QD_ERR_NUMERIC;
    if (info < 0) return qd_fail(QD_ERR_INTERNAL, "cpu backend: spotri argument %d invalid", (int)-info);
    /* col-major lower = row-major upper holds the inverse: complete it, factor again */
    mirror_upper(A, a->n);
    info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', n, A, n);
    if (info > 0) return QD_ERR_NUMERIC;
    if (info < 0) return qd_fail(QD_ERR_INTERNAL, "cpu backend: spotrf argument %d invalid", (int)-info);
    /* row-major upper now holds L^T = U with Hinv = U^T U; clear the rest */
    for (size_t i = 0; i < a->n; i++) memset(A + i * a->n, 0, i * sizeof *A);
    return QD_OK;
}
