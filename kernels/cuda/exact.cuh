/* SPDX-License-Identifier: MIT
 * exact.cuh - internal to kernels/cuda: the exact numerics mode (qd-backend.h QD_NUMERICS_EXACT,
 * kernels/qd-exact.h) on the device. qd_cu_xgemm is the fixed-order fp64 GEMM the exact gemm,
 * Hessian, GPTQ lazy update and AWQ clip GEMMs run on: element (i, j) is
 * sum over k = 0, 1, ..., K-1 of (double)op(A)[i][k] * (double)op(B)[k][j], from 0.0, one add per term,
 * exactly as kernels/cpu/exact.c computes it, so the two backends produce the same bits.
 */
#ifndef QD_CUDA_EXACT_CUH
#define QD_CUDA_EXACT_CUH

#include "cuda-common.cuh"
#include "qd-exact.h"

static inline int qd_cu_exact(qd_backend_t be) { return be->numerics == QD_NUMERICS_EXACT; }

/* Row-major C[M,N] from op(A) [M,K] and op(B) [K,N] (op = transpose when ta/tb): into Cd (double, row
 * stride ldcd) when Cd is set, else into C as (float)(alpha * acc + beta * C) (beta == 0 ignores C).
 * upper: only j >= i is written (the Hessian's upper triangle). */
struct qd_cu_xg {
    int ta = 0, tb = 0, upper = 0;
    size_t M = 0, N = 0, K = 0;
    const float *A = nullptr, *B = nullptr;
    size_t lda = 0, ldb = 0;
    float *C = nullptr;
    size_t ldc = 0;
    double alpha = 1.0, beta = 0.0;
    double *Cd = nullptr;
    size_t ldcd = 0;
};
qd_status qd_cu_xgemm(struct qd_cuda_ctx *c, const struct qd_cu_xg *g);

qd_status qd_cu_attention_exact(qd_backend_t be, const struct qd_attention_args *a);

#endif
