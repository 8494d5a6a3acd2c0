/* SPDX-License-Identifier: MIT
 * quant-common.cuh - the group quantizer on the device, the same arithmetic as the CPU's
 * qd_cpu_qparams / qd_cpu_qvalue (kernels/cpu/quant.c): fp32 division x / scale, round half to even
 * (rintf), clamp, scale * (q - zero), no fused multiply-add; scales rounded to cfg.scale_dtype first. One warp computes one group's parameters
 * (min / max are order-free; the MSE grid's error is a double sum per lane, then across the warp). */
#ifndef QD_QUANT_COMMON_CUH
#define QD_QUANT_COMMON_CUH

#include "cuda-common.cuh"

/* qd_e4m3_to_f32 (src/core/qd-fp8.c), exact (8 + m or m scaled by a power of two), for every code but the
 * NaN ones (0x7F / 0xFF), which the encoder never writes and fp8_dequant reports instead of using */
__device__ __forceinline__ float dev_e4m3_value(uint32_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    float v = e ? ldexpf((float)(8 + m), e - 10) : ldexpf((float)m, -9);
    return (b & 0x80u) ? -v : v;
}

__device__ __forceinline__ float qd_qv(float x, float scale, float zero, float maxq, int32_t *code) {
    float q = __fadd_rn(rintf(__fdiv_rn(x, scale)), zero);
    q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
    if (code) *code = (int32_t)q;
    return __fmul_rn(scale, __fsub_rn(q, zero));
}

/* qd_scale_stored (kernels/cpu/quant.c) with the same bit operations as qd_f32_to_f16 /
 * qd_f32_to_bf16 and back (src/core/qd-dtype.c): round to nearest even, an underflow to 0 gives the
 * dtype's smallest positive value, an overflow keeps s. */
__device__ __forceinline__ float qd_scale_stored_dev(qd_dtype dt, float s) {
    uint32_t u = __float_as_uint(s), r;
    if (dt == QD_DT_BF16) {
        if ((u & 0x7fffffffu) > 0x7f800000u) return s;
        r = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) << 16;
        if ((r & 0x7fffffffu) >= 0x7f800000u) return s;
        if ((r & 0x7fffffffu) == 0) return 1.17549435e-38f; /* FLT_MIN */
        return __uint_as_float(r);
    }
    if (dt != QD_DT_F16) return s;
    uint32_t au = u & 0x7fffffffu;
    if (au >= 0x477ff000u) return s; /* NaN, or >= 65520: Inf in F16 */
    float out;
    if (au < 0x38800000u) { /* an F16 subnormal or 0: a multiple of 2^-24 */
        float m = rintf(__fmul_rn(__uint_as_float(au), 16777216.0f));
        out = __fmul_rn(m, 5.9604644775390625e-8f); /* exact: m <= 1024 */
    } else {
        uint32_t h = (au + 0xfffu + ((au >> 13) & 1u)) >> 13; /* the F16 bits without the sign, rebased below */
        out = __uint_as_float((h << 13));
    }
    if (out == 0.0f) return 5.9604644775390625e-8f; /* 2^-24 */
    return (u & 0x80000000u) ? -out : out;
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
    zero = cfg.sym ? symzero : rintf(__fdiv_rn(-xmin, scale));
    if (cfg.mse) {
        double best = INFINITY;
        int steps = (int)(cfg.mse_maxshrink * (float)cfg.mse_grid);
        for (int i = 0; i < steps; i++) {
            float p = (float)(1.0 - (double)i / cfg.mse_grid);
            float xmin1 = __fmul_rn(p, xmin), xmax1 = __fmul_rn(p, xmax);
            float scale1 = qd_scale_stored_dev(cfg.scale_dtype, __fdiv_rn(__fsub_rn(xmax1, xmin1), maxq));
            float zero1 = cfg.sym ? symzero : rintf(__fdiv_rn(-xmin1, scale1));
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
