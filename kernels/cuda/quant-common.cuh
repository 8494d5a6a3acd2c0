/* SPDX-License-Identifier: MIT
 * quant-common.cuh - the group quantizer on the device, the same arithmetic as the CPU's
 * qd_cpu_qparams / qd_cpu_qvalue (kernels/cpu/quant.c): fp32 division x / scale, round half to even
 * (rintf), clamp, scale * (q - zero), no fused multiply-add; scales rounded to cfg.scale_dtype first
 * (scale-stored.cuh). One warp computes one group's parameters (min / max are order-free; the MSE
 * grid's error is a double sum per lane, then across the warp). */
#ifndef QD_QUANT_COMMON_CUH
#define QD_QUANT_COMMON_CUH

#include "cuda-common.cuh"
#include "scale-stored.cuh"

__device__ __forceinline__ float qd_qv(float x, float scale, float zero, float maxq, int32_t *code) {
    float q = __fadd_rn(rintf(__fdiv_rn(x, scale)), zero);
    q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
    if (code) *code = (int32_t)q;
    return __fmul_rn(scale, __fsub_rn(q, zero));
}

/* Parameters of the n values x[0..n) (contiguous) computed by the whole warp; every lane gets them. */
__device__ __forceinline__ void qd_qparams_warp(const qd_qcfg &cfg, const float *x, int n, float *scale_out,
                                                float *zero_out) {
    int lane = threadIdx.x & 31;
    float maxq = (float)((1 << cfg.bits) - 1);
    float lo = INFINITY, hi = -INFINITY;
    for (int k = lane; k < n; k += 32) {
        float v = x[k];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float a = __shfl_xor_sync(0xffffffffu, lo, o), b = __shfl_xor_sync(0xffffffffu, hi, o);
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
    }
    float xmin = lo, xmax = hi, scale, zero;
    if (cfg.kind == QD_QZ_AWQ) {
        if (cfg.sym) {
            float am = fmaxf(fabsf(xmin), fabsf(xmax));
            am = am < 1e-5f ? 1e-5f : am;
            scale = qd_scale_stored_dev(cfg.scale_dtype, __fdiv_rn(am, (float)((1 << (cfg.bits - 1)) - 1)));
            zero = (float)(1 << (cfg.bits - 1));
        } else {
            float r = __fsub_rn(xmax, xmin);
            scale = qd_scale_stored_dev(cfg.scale_dtype, __fdiv_rn(r < 1e-5f ? 1e-5f : r, maxq));
            float z = -rintf(__fdiv_rn(xmin, scale));
            zero = z < 0 ? 0 : (z > maxq ? maxq : z);
        }
        *scale_out = scale;
        *zero_out = zero;
        return;
    }
    xmin = fminf(xmin, 0.0f);
    xmax = fmaxf(xmax, 0.0f);
    if (cfg.sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float symzero = (maxq + 1.0f) / 2.0f;
    scale = qd_scale_stored_dev(cfg.scale_dtype, __fdiv_rn(__fsub_rn(xmax, xmin), maxq));
    zero = cfg.sym ? symzero : fminf(rintf(__fdiv_rn(-xmin, scale)), maxq); /* qd_cpu_qparams: <= maxq */
    if (cfg.mse) {
        double best = INFINITY;
        int steps = (int)(cfg.mse_maxshrink * (float)cfg.mse_grid);
        for (int i = 0; i < steps; i++) {
            float p = (float)(1.0 - (double)i / cfg.mse_grid);
            float xmin1 = __fmul_rn(p, xmin), xmax1 = __fmul_rn(p, xmax);
            float scale1 = qd_scale_stored_dev(cfg.scale_dtype, __fdiv_rn(__fsub_rn(xmax1, xmin1), maxq));
            float zero1 = cfg.sym ? symzero : fminf(rintf(__fdiv_rn(-xmin1, scale1)), maxq);
            double err = 0;
            for (int k = lane; k < n; k += 32) {
                float v = x[k];
                float d = fabsf(__fsub_rn(qd_qv(v, scale1, zero1, maxq, NULL), v));
                err += pow((double)d, (double)cfg.mse_norm);
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) err += __shfl_xor_sync(0xffffffffu, err, o);
            if (err < best) {
                best = err;
                scale = scale1;
                zero = zero1;
            }
        }
    }
    *scale_out = scale;
    *zero_out = zero;
}

/* Parameters of groups [g0, g1) of W (row stride ldw, group g = columns [g*gs, (g+1)*gs)) for all N
 * rows into S[g*N + n], Z[g*N + n] (quantize.cu). */
qd_status qd_cu_qparams_groups(struct qd_cuda_ctx *c, const qd_qcfg *cfg, const float *W, size_t ldw, size_t N,
                               size_t gs, size_t g0, size_t g1, float *S, int32_t *Z);

#endif
