/* SPDX-License-Identifier: MIT
 * quant.c - the group quantizer (GPTQ min-max with optional MSE grid, AWQ's) and the quantize op.
 * Arithmetic follows the reference tools in fp32: x / scale (a division, not a reciprocal product),
 * round half to even (torch.round), clamp, scale * (q - zero). With cfg->scale_dtype the scale is
 * rounded to its stored dtype before the zero and the codes are found against it (qd-backend.h). */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "cpu-ops.h"
#include "qd-check.h"
#include "qd-log.h"

static void minmax_of(const float *x, size_t n, size_t stride, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        float v = x[i * stride];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *mn = lo;
    *mx = hi;
}

float qd_scale_stored(qd_dtype dt, float s) {
    float r;
    if (dt == QD_DT_F16) r = qd_f16_to_f32(qd_f32_to_f16(s));
    else if (dt == QD_DT_BF16) r = qd_bf16_to_f32(qd_f32_to_bf16(s));
    else return s;
    if (!isfinite(r)) return s;                        /* refused later, naming the module */
    if (r == 0.0f) return dt == QD_DT_F16 ? 0x1p-24f : FLT_MIN; /* underflow: the smallest positive */
    return r;
}

void qd_cpu_qparams(const qd_qcfg *cfg, const float *x, size_t n, size_t stride, float *scale, float *zero) {
    float maxq = (float)((1 << cfg->bits) - 1);
    float xmin, xmax;
    minmax_of(x, n, stride, &xmin, &xmax);
    if (cfg->kind == QD_QZ_AWQ) {
        if (cfg->sym) {
            float am = fmaxf(fabsf(xmin), fabsf(xmax));
            am = am < 1e-5f ? 1e-5f : am;
            *scale = qd_scale_stored(cfg->scale_dtype, am / (float)((1 << (cfg->bits - 1)) - 1));
            *zero = (float)(1 << (cfg->bits - 1));
        } else {
            float r = xmax - xmin;
            *scale = qd_scale_stored(cfg->scale_dtype, (r < 1e-5f ? 1e-5f : r) / maxq);
            float z = -nearbyintf(xmin / *scale);
            *zero = z < 0 ? 0 : (z > maxq ? maxq : z);
        }
        return;
    }
    xmin = fminf(xmin, 0.0f);
    xmax = fmaxf(xmax, 0.0f);
    if (cfg->sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float symzero = (maxq + 1.0f) / 2.0f;
    *scale = qd_scale_stored(cfg->scale_dtype, (xmax - xmin) / maxq);
    /* at most maxq: a scale rounded down (BF16 with 8 bits, an F16 subnormal) can put it past maxq */
    *zero = cfg->sym ? symzero : fminf(nearbyintf(-xmin / *scale), maxq);
    if (!cfg->mse) return;
    /* IST's grid: shrink the range by p, keep the p with the smallest sum |Q(x) - x|^norm */
    double best = INFINITY;
    int steps = (int)(cfg->mse_maxshrink * (float)cfg->mse_grid);
    for (int i = 0; i < steps; i++) {
        float p = (float)(1.0 - (double)i / cfg->mse_grid);
        float xmin1 = p * xmin, xmax1 = p * xmax;
        float scale1 = qd_scale_stored(cfg->scale_dtype, (xmax1 - xmin1) / maxq);
        float zero1 = cfg->sym ? symzero : fminf(nearbyintf(-xmin1 / scale1), maxq);
        double err = 0;
        for (size_t k = 0; k < n; k++) {
            float v = x[k * stride];
            float d = fabsf(qd_cpu_qvalue(v, scale1, zero1, maxq, NULL) - v);
            err += pow((double)d, (double)cfg->mse_norm);
        }
        if (err < best) {
            best = err;
            *scale = scale1;
            *zero = zero1;
        }
    }
}

qd_status qd_cpu_quantize(qd_backend_t be, const struct qd_quantize_args *a) {
    (void)be;
    size_t gs = a->group_size && a->group_size < a->K ? a->group_size : a->K;
    size_t G = a->K / gs;
    float maxq = (float)((1 << a->cfg.bits) - 1);
    const float *W = qd_ref_f32(a->W);
    float *Q = a->Q.buf ? qd_ref_f32(a->Q) : NULL;
    int32_t *codes = a->codes.buf ? qd_ref_i32(a->codes) : NULL;
    float *S = a->scales.buf ? qd_ref_f32(a->scales) : NULL;
    int32_t *Z = a->zeros.buf ? qd_ref_i32(a->zeros) : NULL;
    for (size_t n = 0; n < a->N; n++) {
        for (size_t g = 0; g < G; g++) {
            const float *x = W + n * a->ldw + g * gs;
            float scale, zero;
            if (a->params_in) {
                scale = S[g * a->N + n];
                zero = (float)Z[g * a->N + n];
            } else {
                qd_cpu_qparams(&a->cfg, x, gs, 1, &scale, &zero);
                if (S) S[g * a->N + n] = scale;
                if (Z) Z[g * a->N + n] = (int32_t)zero;
            }
            if (!Q && !codes) continue;
            for (size_t k = 0; k < gs; k++) {
                int32_t c;
                float v = qd_cpu_qvalue(x[k], scale, zero, maxq, &c);
                if (Q) Q[n * a->ldw + g * gs + k] = v;
                if (codes) codes[n * a->K + g * gs + k] = c;
            }
        }
    }
    return QD_OK;
}
