/* SPDX-License-Identifier: MIT
 * qd-quant.h - quantizing one Linear (RTN, GPTQ) over the backend; AWQ works per block (awq.c).
 *
 * The weight W [N, K] lives in a device buffer and is overwritten with its dequantized value (fp32
 * scales, original column order); the result (codes, scales, zeros, g_idx on the host) goes to *out
 * (q.name = name). A group size that does not divide K is refused naming the module and both sizes;
 * NaN/Inf in W or H stops naming the module (its prefix names the block).
 *
 * GPTQ (docs/reference/algorithms.md section 1): dead columns (diag H == 0: H_ii = 1, W[:, i] = 0), act-order
 * (stable descending sort of diag H), static groups (parameters of each group from the W after
 * dead-column zeroing, before permutation), damping d * mean(diag H) with the schedule
 * d, d + 0.0015 * i (i = 1..10), then doubling while < 1 (docs/numerics.md); if every attempt fails,
 * the sweep runs with Hinv = I (RTN with the same group semantics) and out->fallback says so. H is
 * consumed (clobbered).
 */
#ifndef QD_QUANT_H
#define QD_QUANT_H

#include <math.h>
#include <stddef.h>

#include "qd-backend.h"
#include "qd-qlayer.h"

typedef enum { QD_METHOD_RTN, QD_METHOD_GPTQ, QD_METHOD_AWQ } qd_method;
const char *qd_method_name(qd_method m);

typedef struct qd_qspec {
    qd_method method;
    int bits;          /* 2, 3, 4, 8 */
    int group_size;    /* > 0, or -1: one group of K */
    int sym;
    int act_order;     /* gptq */
    int static_groups; /* gptq */
    double damp;       /* gptq: fraction of mean(diag H), 0.01 */
    int mse;           /* MSE clip grid in the min-max quantizer (rtn, gptq) */
    int skip;          /* leave this Linear unquantized */
    qd_scheme scheme;  /* qd-scheme.h; fp8/fp4 are round to nearest (qd_float_rtn_layer) or GPTQ with
                        * the same scales (qd_scheme_gptq_targets) */
    qd_dtype scale_dtype; /* the dtype the export stores scales in (qd_qctx_spec sets it from the run's one
                           * place, qd_quantize_opts.scale_dtype): fp8 and integer scales are rounded to it
                           * before the codes are chosen (qd_qspec_qcfg passes it to the backend) */
    float fp4_global;     /* nvfp4: the Linear's global scale, set for every nvfp4 Linear of a run's block
                           * (qd__fp4_fuse_globals: its own weight's, or its fused group's), which
                           * data-parallel GPTQ's rows share; 0: from the weight given (quant-layer) */
    float fp8_tensor_scale; /* fp8-static: the Linear's one scale, likewise; 0: from the weight given */
} qd_qspec;

/* Sets the fields a scheme fixes (qd-scheme.h): fp8: method rtn, 8 bits, sym, group -1 (fp8-block
 * 128), no act-order; w8a8-int8: 8 bits, sym, group -1. wna16: nothing. fp8-dynamic by GPTQ is the
 * caller's choice afterwards (an explicit method gptq: the recipe and flag readers set it back). */
void qd_qspec_apply_scheme(qd_qspec *s);
/* A resolved spec whose fields contradict its scheme (an override setting bits on an fp8 base):
 * a usage error naming the module (who: " (module X ...)"). */
qd_status qd_qspec_check_scheme(const qd_qspec *s, const char *who);
/* the group count, or a refusal naming the module and both sizes */
qd_status qd_qspec_groups(const qd_qspec *s, const char *name, size_t K, size_t *G);
qd_qcfg qd_qspec_qcfg(const qd_qspec *s); /* the backend quantizer config (min-max for rtn/gptq) */

qd_status qd_rtn_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                       qd_qresult *out);
/* The float schemes (fp8-dynamic / fp8-block / fp8-static: E4M3; nvfp4a16 / nvfp4 / mxfp4 /
 * mxfp4-w4a4: E2M1) by round to nearest: the group scales of qd_float_scales, then each value's code
 * (ties to even, saturating; qd-fp8.h, qd-fp4.h) with its group's scale; out->q.global_scale set for
 * nvfp4. Runs on the host (rows over threads): W is downloaded and left as it was; the caller installs
 * the result. Loss as RTN's. */
qd_status qd_float_rtn_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                             qd_qresult *out);
/* The scales [G][N] (qd_qspec_groups' G) a float scheme uses for host W [N][K], by fp8.c's or fp4.c's
 * rules; returns nvfp4's global scale (0 for the others). */
float qd_float_scales(const float *W, size_t N, size_t K, const qd_qspec *s, float *scales);
/* the columns one scale covers: 128 (fp8-block), 16 / 32 (fp4), K (per row or per tensor) */
size_t qd_float_group(const qd_qspec *s, size_t K);
/* fp8 scales, amax / 448 rounded to s->scale_dtype BEFORE the weights are encoded (so the stored
 * scale is the one used), or with s->mse the best shrink of it (the min-max quantizer's grid, error
 * norm 2.4), one per tile: a row (fp8-dynamic), a 128 x 128 block (fp8-block; partial at the edges),
 * the tensor (fp8-static; s->fp8_tensor_scale when > 0); expanded to [G][N] */
void qd_fp8_scales(const float *W, size_t N, size_t K, const qd_qspec *s, float *scales);
/* max |x[i]| over n values, NaN skipped (what fmaxf gives for finite and NaN values), 0 for none;
 * written so that the compiler vectorizes it: the float schemes' scales take it over every weight */
static inline float qd_absmax(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m;
}
/* an fp8 scheme's tile: rows x cols of W that share one scale */
void qd_fp8_tile(qd_scheme sc, size_t N, size_t K, size_t *rows, size_t *cols);
/* The effective group scales [K / group][N] of host W [N][K] for fp4 scheme sc (fp4.c's rules), with
 * nvfp4a16's global scale `global` when > 0, else W's own (a Linear quantized alone: quant-layer);
 * returns the global scale used (0 for mxfp4). K must be a multiple of the group (qd_fp4_check_shape). */
float qd_fp4_scales(const float *W, size_t N, size_t K, qd_scheme sc, float global, float *scales);
/* nvfp4a16's global scale from amax = max |W|: 448 * 6 / amax (1 for a zero or tiny amax) */
float qd_fp4_global_of_amax(float amax);
/* a refusal naming the module when the scheme's fp4 group does not divide K; QD_OK otherwise */
qd_status qd_fp4_check_shape(qd_scheme sc, const char *name, size_t K);
qd_status qd_gptq_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                        qd_buf_t H, qd_qresult *out);

/* GPTQ in two parts, so that the Linears that share a Hessian (q/k/v, gate/up) share one factorization.
 * Everything below depends only on H and on the spec's damp and act_order: the dead columns
 * (H_ii == 0: H_ii = 1 here, W[:, i] = 0 in each module), act-order's permutation (stable descending
 * sort of diag H), the damping from mean(diag H) with its retry schedule and the RTN fallback.
 * qd_gptq_factor consumes H: without act-order U is made in H's own memory (f->U == H, not owned by f,
 * so H must outlive f); with act-order in the permuted copy, owned by f. qd_gptq_apply prepares one module's W and runs its sweep with
 * f->U (read only), giving the same bits as qd_gptq_layer. qd_gptq_fac_fits says whether f was made
 * for a spec's damp and act_order (modules of one group with other settings need their own). */
typedef struct qd_gptq_fac {
    size_t K, ndead;
    int act_order;
    double damp_first;       /* the spec's damp it was made for */
    double damp;             /* the damp that factorized, -1 for the RTN fallback */
    char fallback[QD_FALLBACK_MAX]; /* as qd_qstats.fallback */
    qd_buf_t keep;           /* fp32 [K] column keep-mask (0 = dead), when ndead */
    qd_buf_t perm, invperm;  /* int32 [K], act-order only */
    int32_t *hinvperm;       /* host copy of invperm (g_idx) */
    qd_buf_t U;              /* [K, K] upper Cholesky factor of the damped inverse, in perm order */
    int own_U;               /* U is f's (act-order), else it is the caller's H */
} qd_gptq_fac;
qd_status qd_gptq_factor(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t H, size_t K, qd_gptq_fac *f);
int qd_gptq_fac_fits(const qd_gptq_fac *f, const qd_qspec *s);
qd_status qd_gptq_apply(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                        const qd_gptq_fac *f, qd_qresult *out);
void qd_gptq_fac_free(qd_gptq_fac *f); /* NULL-safe; leaves f zeroed */
/* out->q's header from the spec (name, method, bits, group size, sym) and its arrays for N x K, G groups */
qd_status qd_qresult_alloc(const qd_qspec *s, const char *name, size_t N, size_t K, size_t G, qd_qresult *out);
/* Fills the host result from device codes [N,K] (int32), scales, zeros and a host g_idx; on a backend
 * with the u8_codes op out->dev_codes also keeps the byte codes on the device for the install
 * (qd-qlayer.h; whoever holds the result frees it, qd_qresult_free). */
qd_status qd_qresult_fetch(qd_backend_t be, const qd_qspec *s, const char *name, qd_buf_t codes, qd_buf_t scales,
                           qd_buf_t zeros, const int32_t *g_idx, size_t N, size_t K, size_t G, qd_qresult *out);
/* status of a NaN/Inf check of n elements of buf: QD_ERR_NUMERIC naming what */
qd_status qd_check_finite(qd_backend_t be, qd_buf_t buf, size_t off, size_t n, const char *what, const char *name);

#endif
