/* SPDX-License-Identifier: MIT
 * qd-qlinear.h - one quantized Linear and how it was obtained: the record the algorithms produce,
 * the staging stores, the export reads and the report summarises (no other copy of these fields).
 *
 * A quantized Linear W[N][K] (N = out_features) is codes [N][K] in 0..2^bits-1 in the ORIGINAL column
 * order, scales [G][N] (fp32), true zero points [G][N], g_idx [K] (group of each input column).
 * Dequantisation: W[n][k] = (code - zero[g][n]) * scale[g][n] with g = g_idx[k], in fp32; for the fp8
 * schemes (qd-scheme.h) codes are E4M3 bytes and W[n][k] = e4m3(code) * scale[g][n] (zeros 0). fp8-block
 * keeps its [ceil(N/128)][ceil(K/128)] block scales expanded to [G][N] (group_size 128, G = ceil(K/128),
 * every row of a block holding the block's scale), so staging and gathers see one layout.
 * For the fp4 schemes codes are E2M1 nibbles (qd-fp4.h, one a byte) and W[n][k] = e2m1(code) *
 * scale[g][n]: mxfp4's scales are the E8M0 powers of two; nvfp4a16's are the effective scales
 * e4m3(local) / global_scale (fp32 division, as compressed-tensors' dequantize), from which the export
 * recovers the E4M3 local scale exactly (qd_qlinear_nvfp4_local). Their scales are already what the
 * checkpoint stores, so the rounding to a scale dtype leaves them alone.
 * group_size is -1 for one group spanning K. The arrays belong to whoever holds the record
 * (qd_qlinear_free); moving the struct moves them.
 *
 * Checkpoints store scales as F16/BF16, so the fake-quant weights (and the weights propagated to the
 * next block) use qd_qlinear_dequant_rounded with the export's scale dtype: eval of the fake-quant
 * model then equals eval of the export.
 */
#ifndef QD_QLINEAR_H
#define QD_QLINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-scheme.h"
#include "qd-status.h"

#define QD_QNAME_MAX 256     /* a Linear's name, NUL included */
#define QD_FALLBACK_MAX 160  /* a fallback text, NUL included (staging, report and algorithms alike) */

typedef struct qd_qlinear {
    char name[QD_QNAME_MAX]; /* Linear prefix, e.g. "model.layers.0.self_attn.q_proj" (staging: "self_attn.q_proj") */
    int N, K, G;
    int bits;
    int group_size;          /* -1: one group of K */
    int sym;
    qd_scheme scheme;        /* what codes mean (QD_SCHEME_WNA16: integers) and the activations declared */
    float global_scale;      /* nvfp4a16: the Linear's fp32 global scale (448 * 6 / amax); else 0 */
    char method[16];         /* "gptq", "awq", "rtn", ... (informational; not staged) */
    uint8_t *codes;          /* [N][K]; NULL when loaded without codes */
    float *scales;           /* [G][N] */
    int32_t *zeros;          /* [G][N] */
    int32_t *g_idx;          /* [K] */
    float input_scale;       /* fp8-static: the static activation scale (amax / 448 of the calibration
                              * inputs, rounded to the scale dtype); nvfp4: the input_global_scale
                              * (fp32 448 * 6 / amax); 0 for every other scheme */
} qd_qlinear;

/* How a Linear was quantized. */
typedef struct qd_qstats {
    double loss;                    /* gptq: sum (w-q)^2/d^2/2; rtn/awq: sum (w-q)^2/2 over the weight */
    double damp;                    /* gptq: the damping fraction that succeeded; else -1 */
    char fallback[QD_FALLBACK_MAX]; /* "" or what happened instead (e.g. RTN after Cholesky failures) */
    double seconds;                 /* wall time of this Linear */
    size_t calib_tokens;            /* calibration tokens seen (not staged: 0 when read back) */
    int expert;                     /* a routed expert's Linear: its index + 1; else 0 */
    size_t expert_tokens;           /* the tokens the model's routing sent to that expert */
} qd_qstats;

/* What a run's report says of one quantized Linear: plain bytes (no pointers), so that ranks can
 * send their records to rank 0 as they are. */
typedef struct qd_qrecord {
    int block, rank;
    char name[64]; /* relative to the block, e.g. "self_attn.q_proj" */
    int bits, group_size, sym;
    int scheme; /* qd_scheme */
    int64_t N, K;
    qd_qstats s;
} qd_qrecord;

/* The record of Linear q (q->name relative to its block) of block `block`, quantized by `rank`. */
qd_qrecord qd_qrecord_of(int block, int rank, const qd_qlinear *q, const qd_qstats *s);

/* Allocate the arrays of l for N, K, G (codes included); on failure nothing stays allocated. */
qd_status qd_qlinear_alloc(qd_qlinear *l, int N, int K, int G);
void qd_qlinear_free(qd_qlinear *l); /* frees the arrays (NULL after), keeps the header */
/* l with its arrays NULL: the header (name, shape, scheme, method) alone, owning nothing */
qd_qlinear qd_qlinear_header(const qd_qlinear *l);
/* dst's arrays become copies of src's (sized by src's N, K, G), codes only when with_codes (else NULL),
 * and dst->input_scale src's; dst's header is left as it is. On failure dst owns no arrays. */
qd_status qd_qlinear_copy_arrays(qd_qlinear *dst, const qd_qlinear *src, int with_codes);
/* 1 when g_idx[k] == k / group_size for every k (always for group_size -1 with g_idx all 0) */
int qd_qlinear_g_idx_sequential(const qd_qlinear *l);
/* Round scales in place to dt (F16/BF16; F32/F64 unchanged) - see qd_qrun.scales_rounded */
void qd_qlinear_round_scales(qd_qlinear *l, qd_dtype dt);
/* QD_OK when every scale is finite and stays finite once stored as dt;
 * else one error naming `what` (the format or flag that picked dt), the module, the group, the value
 * and the dtype. GPTQ/AWQ readers (vLLM, transformers) hold scales in F16 only, compressed-tensors in
 * the model dtype, so no wider dtype can be chosen silently: the run is refused instead. */
qd_status qd_qlinear_check_scales(const qd_qlinear *l, qd_dtype dt, const char *what);
/* the value code [nk] (flat n*K + k) stands for before scaling, gi = g_idx[k]*N + n: code - zero, or
 * the E4M3 value for the fp8 schemes */
float qd_qlinear_code_value(const qd_qlinear *l, size_t nk, size_t gi);
/* nvfp4a16: the E4M3 byte of the local scale behind effective scale s (s * global_scale, exact) */
uint8_t qd_qlinear_nvfp4_local(const qd_qlinear *l, float s);
/* W[N][K] fp32 from codes/scales/zeros/g_idx (l loaded with codes) */
void qd_qlinear_dequant(const qd_qlinear *l, float *w);
/* x rounded to the dtype scales are stored in (F16, BF16; F32 unchanged), back in fp32 */
float qd_scale_round(qd_dtype dt, float x);
/* w [N][K] = (code - zero) * qd_scale_round(scale_dtype, scale); scale_dtype F32 gives qd_qlinear_dequant. */
void qd_qlinear_dequant_rounded(const qd_qlinear *l, qd_dtype scale_dtype, float *w);

#endif
