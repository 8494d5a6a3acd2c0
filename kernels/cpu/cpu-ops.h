/* SPDX-License-Identifier: MIT
 * cpu-ops.h - the CPU backend's entries, one file per op family (blas.c, ewise.c, transformer.c,
 * quant.c, gptq-sweep.c, awq-clip.c, fp8.c; exact.c for the exact numerics), and the row quantizer they
 * share. Internal to kernels/cpu.
 */
#ifndef QD_CPU_OPS_H
#define QD_CPU_OPS_H

#include "qd-backend-impl.h"
#include "qd-fp4.h"
#include "qd-fp8.h"

/* the backend's state (threads are OpenBLAS's: see transformer.c for why there are no others) */
typedef struct qd_cpu_ctx {
    int nthreads;
} qd_cpu_ctx;

qd_status qd_cpu_gemm(qd_backend_t be, const struct qd_gemm_args *a);
qd_status qd_cpu_hessian(qd_backend_t be, const struct qd_hessian_args *a);
qd_status qd_cpu_symmetrize(qd_backend_t be, const struct qd_symmetrize_args *a);
qd_status qd_cpu_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a);

qd_status qd_cpu_upload(qd_backend_t be, const struct qd_upload_args *a);
qd_status qd_cpu_download(qd_backend_t be, const struct qd_download_args *a);
qd_status qd_cpu_copy(qd_backend_t be, const struct qd_copy_args *a);
qd_status qd_cpu_fill(qd_backend_t be, const struct qd_fill_args *a);
qd_status qd_cpu_diag_add(qd_backend_t be, const struct qd_diag_add_args *a);
qd_status qd_cpu_acc64(qd_backend_t be, const struct qd_acc64_args *a);
qd_status qd_cpu_permute(qd_backend_t be, const struct qd_permute_args *a);
qd_status qd_cpu_ewise(qd_backend_t be, const struct qd_ewise_args *a);
qd_status qd_cpu_rows(qd_backend_t be, const struct qd_rows_args *a);
qd_status qd_cpu_reduce(qd_backend_t be, const struct qd_reduce_args *a);
qd_status qd_cpu_colstat(qd_backend_t be, const struct qd_colstat_args *a);

qd_status qd_cpu_rmsnorm(qd_backend_t be, const struct qd_rmsnorm_args *a);
qd_status qd_cpu_rope(qd_backend_t be, const struct qd_rope_args *a);
qd_status qd_cpu_attention(qd_backend_t be, const struct qd_attention_args *a);
qd_status qd_cpu_cross_entropy(qd_backend_t be, const struct qd_xent_args *a);

qd_status qd_cpu_quantize(qd_backend_t be, const struct qd_quantize_args *a);
qd_status qd_cpu_gptq_sweep(qd_backend_t be, const struct qd_gptq_sweep_args *a);
qd_status qd_cpu_awq_clip(qd_backend_t be, const struct qd_awq_clip_args *a);
qd_status qd_cpu_fp8_dequant(qd_backend_t be, const struct qd_fp8_dequant_args *a);

/* ---- exact numerics (exact.c, kernels/qd-exact.h) ---- */
static inline int qd_cpu_exact(qd_backend_t be) { return be->numerics == QD_NUMERICS_EXACT; }
/* C[M,N] = sum over k in order of (double)op(A)[i][k] * (double)op(B)[k][j] (row-major, op = transpose
 * when ta/tb): into Cd (double, row stride ldcd) when Cd is set, else into C as
 * (float)(alpha * acc + beta * C) (beta == 0 ignores C). upper: only j >= i is written. */
typedef struct qd_cpu_xg {
    int ta, tb, upper;
    size_t M, N, K;
    const float *A, *B;
    size_t lda, ldb;
    float *C;
    size_t ldc;
    double alpha, beta;
    double *Cd;
    size_t ldcd;
} qd_cpu_xg;
qd_status qd_cpu_xgemm(int nthreads, const qd_cpu_xg *g);
qd_status qd_cpu_gemm_exact(qd_backend_t be, const struct qd_gemm_args *a);
qd_status qd_cpu_hessian_exact(qd_backend_t be, const struct qd_hessian_args *a);
qd_status qd_cpu_attention_exact(qd_backend_t be, const struct qd_attention_args *a);
qd_status qd_cpu_reduce_exact(qd_backend_t be, const struct qd_reduce_args *a);

/* Parameters of one group of n values x[0], x[stride], ... (qd-backend.h's qd_qcfg rules);
 * zero is an integer held in a float. */
void qd_cpu_qparams(const qd_qcfg *cfg, const float *x, size_t n, size_t stride, float *scale, float *zero);
/* One value of QD_QZ_FP8: the E4M3 code and its value times scale. */
static inline float qd_cpu_qvalue_fp8(float x, float scale, int32_t *code) {
    uint8_t c = qd_f32_to_e4m3(x / scale);
    *code = c;
    return qd_e4m3_to_f32(c) * scale;
}
/* One value of QD_QZ_FP4: the E2M1 code and its value times scale. */
static inline float qd_cpu_qvalue_fp4(float x, float scale, int32_t *code) {
    uint8_t c = qd_f32_to_e2m1(x / scale);
    *code = c;
    return qd_e2m1_to_f32(c) * scale;
}
/* One value: the code and the dequantized value. */
static inline float qd_cpu_qvalue(float x, float scale, float zero, float maxq, int32_t *code) {
    float q = __builtin_nearbyintf(x / scale) + zero;
    q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
    if (code) *code = (int32_t)q;
    return scale * (q - zero);
}

#endif
