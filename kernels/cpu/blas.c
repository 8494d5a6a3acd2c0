/* SPDX-License-Identifier: MIT
 * blas.c - the O(n^3) ops through OpenBLAS and LAPACK: GEMM, the Hessian (SYRK) and GPTQ's
 * inverse-Cholesky factor. */
#include <cblas.h>
#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"
#include "qd-log.h"

qd_status qd_cpu_gemm(qd_backend_t be, const struct qd_gemm_args *a) {
    if (a->K == 0) {
        /* BLAS leaves C untouched when K = 0 only for beta = 1; make beta explicit */
        float *C = qd_ref_f32(a->C);
        for (size_t i = 0; i < a->M; i++)
            for (size_t j = 0; j < a->N; j++) C[i * a->ldc + j] = a->beta == 0.0f ? 0.0f : a->beta * C[i * a->ldc + j];
        return QD_OK;
    }
    if (qd_cpu_exact(be)) return qd_cpu_gemm_exact(be, a);
    cblas_sgemm(CblasRowMajor, a->trans_a ? CblasTrans : CblasNoTrans, a->trans_b ? CblasTrans : CblasNoTrans,
                (int)a->M, (int)a->N, (int)a->K, a->alpha, qd_ref_f32(a->A), (int)a->lda, qd_ref_f32(a->B),
                (int)a->ldb, a->beta, qd_ref_f32(a->C), (int)a->ldc);
    return QD_OK;
}

/* lower triangle <- upper (row-major), in 64 x 64 tiles so that the column-wise side stays in cache */
static void mirror_upper(float *A, size_t n) {
    const size_t B = 64;
    for (size_t i0 = 0; i0 < n; i0 += B)
        for (size_t j0 = i0; j0 < n; j0 += B)
            for (size_t i = i0; i < i0 + B && i < n; i++)
                for (size_t j = j0 > i + 1 ? j0 : i + 1; j < j0 + B && j < n; j++) A[j * n + i] = A[i * n + j];
}

qd_status qd_cpu_symmetrize(qd_backend_t be, const struct qd_symmetrize_args *a) {
    (void)be;
    mirror_upper(qd_ref_f32(a->A), a->n);
    return QD_OK;
}

qd_status qd_cpu_hessian(qd_backend_t be, const struct qd_hessian_args *a) {
    float *H = qd_ref_f32(a->H);
    if (a->T == 0) {
        if (a->beta != 1.0f)
            for (size_t i = 0; i < a->K * a->K; i++) H[i] = a->beta == 0.0f ? 0.0f : a->beta * H[i];
        return QD_OK;
    }
    if (qd_cpu_exact(be)) return qd_cpu_hessian_exact(be, a);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)a->K, (int)a->T, a->alpha, qd_ref_f32(a->X),
                (int)a->ldx, a->beta, H, (int)a->K);
    if (!a->upper_only) mirror_upper(H, a->K);
    return QD_OK;
}

/* GPTQ's Hinv in double precision: the damped Hessians of real activations reach condition numbers
 * near 1e5, where an fp32 factorisation moves U's diagonal (and GPTQ's reported loss) by ~1e-3.
 *
 * Fast numerics: one factorisation and one triangular inverse (2/3 n^3 flops). With J the index
 * reversal, J A J = L L^T (lower Cholesky), so A = R R^T with R = J L J upper and
 * A^-1 = (R^-1)^T R^-1: U = R^-1 = J L^-1 J, upper with a positive diagonal, hence THE factor.
 * J A J of a row-major symmetric A is the reversed element array (D[k] = A[n*n-1-k]), and the
 * column-major L^-1 element (r, c) sits at D[c*n + r], so U[i][j] = D[n*n-1-(j*n+i)].
 * Exact numerics keep the older potrf -> potri -> potrf (4/3 n^3 flops) so that their output stays
 * what it was. The matrix is symmetric, so a row-major upper triangle is LAPACK's column-major lower
 * one; calling LAPACK column-major avoids LAPACKE's transposing copies. */
static lapack_int chol_inv_rev(const float *A, double *D, size_t n) {
    lapack_int ln = (lapack_int)n;
    for (size_t k = 0; k < n * n; k++) D[k] = A[n * n - 1 - k];
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', ln, D, ln);
    if (info == 0) info = LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', ln, D, ln);
    return info;
}

static lapack_int chol_inv_twice(const float *A, double *D, size_t n) {
    lapack_int ln = (lapack_int)n;
    for (size_t i = 0; i < n * n; i++) D[i] = A[i];
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', ln, D, ln);
    if (info == 0) info = LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', ln, D, ln);
    if (info == 0) {
        /* col-major lower = row-major upper holds the inverse: complete it, factor again */
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++) D[j * n + i] = D[i * n + j];
        info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', ln, D, ln);
    }
    return info;
}

qd_status qd_cpu_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a) {
    float *A = qd_ref_f32(a->A);
    size_t n = a->n;
    int exact = qd_cpu_exact(be);
    double *D = malloc(n * n * sizeof *D);
    if (!D) return qd_fail(QD_ERR_NOMEM, "cpu backend: chol_inv: out of memory for %zu x %zu", n, n);
    lapack_int info = exact ? chol_inv_twice(A, D, n) : chol_inv_rev(A, D, n);
    qd_status st = QD_OK;
    if (info > 0) {
        st = QD_ERR_NUMERIC; /* not positive definite: the caller retries, no message */
    } else if (info < 0) {
        st = qd_fail(QD_ERR_INTERNAL, "cpu backend: LAPACK argument %d invalid", (int)-info);
    } else if (exact) {
        /* row-major upper now holds L^T = U with Hinv = U^T U; the rest is cleared */
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) A[i * n + j] = j < i ? 0.0f : (float)D[i * n + j];
    } else {
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) A[i * n + j] = j < i ? 0.0f : (float)D[n * n - 1 - (j * n + i)];
    }
    free(D);
    return st;
}
