/* SPDX-License-Identifier: MIT
 * ewise.cu - the elementwise family (add, mul, SwiGLU, row/column vector ops, scale) on a
 * rows x cols matrix with row stride ld. Plain fp32 operations as the CPU writes them (expf, no
 * fused multiply-add where the CPU has none). */
#include "exact.cuh"

__global__ void k_ewise(int kind, float *o, const float *x, const float *y, const float *v, size_t rows, size_t cols,
                        size_t ld, float s, int exact) {
    size_t n = rows * cols;
    /* a dense matrix and an op without a row or column vector need no index split: a 64-bit division
     * per element would cost more than the element's memory traffic */
    int split = ld != cols || kind == QD_EW_ADD_ROWV || kind == QD_EW_MUL_COLV || kind == QD_EW_DIV_COLV ||
                kind == QD_EW_MUL_ROWV || kind == QD_EW_DIV_ROWV;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = 0, cc = 0, p = i;
        if (split) r = i / cols, cc = i - r * cols, p = r * ld + cc;
        float xv = x[p], out;
        switch (kind) {
        case QD_EW_ADD: out = __fadd_rn(xv, y[p]); break;
        case QD_EW_MUL: out = __fmul_rn(xv, y[p]); break;
        case QD_EW_SWIGLU:
            if (exact) { /* fp64 and qd_exact_exp, as the CPU in exact numerics */
                out = qd_exact_swiglu(xv, y[p]);
                break;
            }
            out = __fmul_rn(__fdiv_rn(xv, __fadd_rn(1.0f, expf(-xv))), y[p]); break;
        case QD_EW_ADD_ROWV: out = __fadd_rn(xv, v[cc]); break;
        case QD_EW_MUL_COLV: out = __fmul_rn(xv, v[cc]); break;
        case QD_EW_DIV_COLV: out = __fdiv_rn(xv, v[cc]); break;
        case QD_EW_MUL_ROWV: out = __fmul_rn(xv, v[r]); break;
        case QD_EW_DIV_ROWV: out = __fdiv_rn(xv, v[r]); break;
        default: out = __fmul_rn(xv, s); break;
        }
        o[p] = out;
    }
}

extern "C" qd_status qd_cu_ewise(qd_backend_t be, const struct qd_ewise_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    const float *y = a->y.buf ? QD_CU_F32(a->y) : NULL, *v = a->v.buf ? QD_CU_F32(a->v) : NULL;
    k_ewise<<<qd_cu_blocks(a->rows * a->cols, 256), 256, 0, c->stream>>>((int)a->kind, QD_CU_F32(a->out),
                                                                           QD_CU_F32(a->x), y, v, a->rows, a->cols,
                                                                           a->ld, a->scalar, qd_cu_exact(be));
    QD_LAUNCH_CHECK("ewise");
    return QD_OK;
}
