/* SPDX-License-Identifier: MIT
 * qd-backend.h - the compute interface the algorithms (src/forward, src/quant, src/eval) are written
 * against, once, for every backend (CPU = the reference; CUDA must reproduce it).
 *
 * A backend (qd_backend_t, opaque) owns device buffers (qd_buf_t, opaque) of 4-byte elements: fp32
 * data or int32 indices/codes, as each op states. Matrices are row-major; an operand is a qd_ref =
 * {buffer, element offset} plus the op's sizes and leading dimensions (row strides, in elements).
 * Every op is one function taking one args struct (fields may grow without touching call sites that
 * use designated initializers); the wrappers below check handles, sizes and buffer bounds once and
 * report misuse as QD_ERR_INTERNAL, so backends see valid arguments only.
 *
 * Ops run in issue order. Ops that return a host value (download, reduce, gptq_sweep's loss,
 * cross_entropy) complete before returning; the others may be asynchronous until qd_be_synchronize.
 * Numeric failures an algorithm can recover from (Cholesky of a non-PD matrix) return QD_ERR_NUMERIC
 * WITHOUT printing, so the caller can retry with more damping; every other failure is reported once.
 * Backends are created by name through kernels/registry (qd-backends.h).
 */
#ifndef QD_BACKEND_H
#define QD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-status.h"

typedef struct qd_backend *qd_backend_t;
typedef struct qd_buf *qd_buf_t;

/* An operand: elements [off, off + extent) of buf, where the op's sizes define the extent. */
typedef struct qd_ref {
    qd_buf_t buf;
    size_t off;
} qd_ref;
#define QD_REF(b, o) ((qd_ref){(b), (size_t)(o)})

/* ---- backend and buffers ---- */
const char *qd_be_name(qd_backend_t be);
void qd_be_free(qd_backend_t be);
qd_status qd_be_synchronize(qd_backend_t be);
/* n elements of 4 bytes, zero-filled. */
qd_status qd_buf_alloc(qd_backend_t be, size_t n, qd_buf_t *out);
void qd_buf_free(qd_buf_t buf); /* NULL is a no-op */
size_t qd_buf_len(qd_buf_t buf);

/* Numerics mode, chosen when the backend is created (kernels/registry: "cpu+exact", "cuda:0+exact"):
 * FAST (the default): each backend's own fast arithmetic (OpenBLAS / cuBLAS orders, libm / CUDA exp);
 *   results agree across backends to ~1e-6 relative, not bit for bit.
 * EXACT: the GEMM, Hessian, GPTQ sweep's lazy update, AWQ clip GEMMs, attention, SwiGLU, RMSNorm's
 *   sum, column statistics and reductions use one fixed order of fp64 accumulation of exact products,
 *   rounded to fp32 once, and one exp (kernels/qd-exact.h), so the CPU and CUDA backends compute the
 *   same bits (docs/cuda.md, "Exact numerics"). Slower (fp64, no BLAS on the CPU). chol_inv is fp64 in
 *   both modes (LAPACK / cuSOLVER: equal to ~1e-12 before the fp32 rounding, not bit for bit). */
typedef enum { QD_NUMERICS_FAST = 0, QD_NUMERICS_EXACT = 1 } qd_numerics;
qd_status qd_be_set_numerics(qd_backend_t be, qd_numerics mode);

/* GEMM math of a GPU backend in FAST numerics (the CPU backend is fp32 whatever this says; EXACT
 * numerics ignore it). AUTO is resolved from the checkpoint's dtype before a backend is opened
 * (qd_backend_spec_set_math): BF16 for bf16/fp16 weights (tensor cores, fp32 accumulation), else FP32.
 * TF32: fp32 data on tensor cores. docs/cuda.md gives each mode's cost and accuracy. */
typedef enum { QD_MATH_AUTO = 0, QD_MATH_FP32, QD_MATH_TF32, QD_MATH_BF16 } qd_math;
qd_numerics qd_be_numerics(qd_backend_t be);

/* Host -> device: n elements of src_dtype (F32/I32/U32 copied bit for bit; F16/BF16/F64 converted to
 * fp32) into dst. */
struct qd_upload_args {
    qd_ref dst;
    const void *src;
    qd_dtype src_dtype;
    size_t n;
};
qd_status qd_be_upload(qd_backend_t be, const struct qd_upload_args *a);
/* Device -> host: n 4-byte elements copied bit for bit; complete on return. */
struct qd_download_args {
    qd_ref src;
    void *dst;
    size_t n;
};
qd_status qd_be_download(qd_backend_t be, const struct qd_download_args *a);
/* Copy a rows x cols block: dst[r*ldd + c] = src[r*lds + c] (plain copy: rows 1, cols n). */
struct qd_copy_args {
    qd_ref dst, src;
    size_t rows, cols, ldd, lds;
};
qd_status qd_be_copy(qd_backend_t be, const struct qd_copy_args *a);
/* dst[0..n) = value (bit pattern of the float; use 0 for int32 zero). */
struct qd_fill_args {
    qd_ref dst;
    size_t n;
    float value;
};
qd_status qd_be_fill(qd_backend_t be, const struct qd_fill_args *a);

/* ---- dense linear algebra ---- */
/* C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, fp32, row-major; op(X) = X or X^T.
 * A is stored M x K (K x M when trans_a) with row stride lda; likewise B and C. beta = 0 ignores C. */
struct qd_gemm_args {
    int trans_a, trans_b;
    size_t M, N, K;
    float alpha, beta;
    qd_ref A, B, C;
    size_t lda, ldb, ldc;
};
qd_status qd_be_gemm(qd_backend_t be, const struct qd_gemm_args *a);

/* H[K,K] = beta * H + alpha * X^T X for X [T,K] (row stride ldx); H is complete (both triangles)
 * on return. The GPTQ Hessian is beta = 1, alpha = 2/n_total accumulated over batches.
 * upper_only: only the upper triangle (j >= i, row-major) need be computed, about half the work; the
 * strict lower triangle is then unspecified (a backend may still fill it) until qd_be_symmetrize
 * completes H. Accumulating calls keep upper_only alike; qd_gptq_factor symmetrizes before it reads. */
struct qd_hessian_args {
    qd_ref H, X;
    size_t T, K, ldx;
    float alpha, beta;
    int upper_only;
};
qd_status qd_be_hessian(qd_backend_t be, const struct qd_hessian_args *a);

/* The n x n matrix A (row stride n) made symmetric from its upper triangle: A[i][j] = A[j][i] for
 * i > j. Bit copies: a matrix already symmetric is unchanged. */
struct qd_symmetrize_args {
    qd_ref A;
    size_t n;
};
qd_status qd_be_symmetrize(qd_backend_t be, const struct qd_symmetrize_args *a);

/* fp64 sums of fp32 terms, for a sum whose value must not depend on the order of its terms at fp32
 * precision (a Hessian summed over calibration chunks and data-parallel ranks): acc holds n fp64
 * values in 2n elements (host byte order, as a double array). ADD: acc[i] += (double)x[i];
 * ROUND: x[i] = (float)acc[i], to nearest. upper_k > 0: the n = upper_k^2 values are a row-major
 * matrix of which only the upper triangle (column >= row) is touched. */
typedef enum { QD_ACC64_ADD, QD_ACC64_ROUND } qd_acc64_kind;
struct qd_acc64_args {
    qd_acc64_kind kind;
    qd_ref acc, x;
    size_t n, upper_k;
};
qd_status qd_be_acc64(qd_backend_t be, const struct qd_acc64_args *a);

/* A[i][i] += scalar + (v ? v[i] : 0) for the n x n matrix A (row stride n). */
struct qd_diag_add_args {
    qd_ref A;
    size_t n;
    float scalar;
    qd_buf_t v; /* optional: n fp32 elements from offset v_off */
    size_t v_off;
};
qd_status qd_be_diag_add(qd_backend_t be, const struct qd_diag_add_args *a);

/* In place on the SPD n x n matrix A (both triangles read: complete it first): A <- U, the upper
 * Cholesky factor of A^-1 (A^-1 = U^T U), the strict lower triangle set to 0. GPTQ's "Hinv". FAST
 * numerics: one potrf and one trtri of the reversed matrix (2/3 n^3); EXACT: potrf, potri, potrf
 * (4/3 n^3), as before. The CPU backend factorises in fp64 (see blas.c);
 * other backends must match it to ~1e-5 relative on U. Non-PD A: QD_ERR_NUMERIC, nothing printed, A
 * left unchanged (GPTQ factors in place and retries with more damping after restoring the diagonal;
 * both backends factor an fp64 copy and write A only on success). */
struct qd_chol_inv_args {
    qd_ref A;
    size_t n;
};
qd_status qd_be_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a);

/* Gather with 4-byte elements of a rows x cols matrix (row stride cols), dst != src:
 * QD_PERM_COLS: dst[r][j] = src[r][perm[j]]; QD_PERM_ROWS: dst[i][c] = src[perm[i]][c];
 * QD_PERM_SYM (rows == cols): dst[i][j] = src[perm[i]][perm[j]]. perm: int32 on the device. */
typedef enum { QD_PERM_COLS, QD_PERM_ROWS, QD_PERM_SYM } qd_perm_kind;
struct qd_permute_args {
    qd_perm_kind kind;
    qd_ref dst, src, perm;
    size_t rows, cols;
};
qd_status qd_be_permute(qd_backend_t be, const struct qd_permute_args *a);

/* ---- elementwise, fp32, on a rows x cols matrix with row stride ld (x, y and out share it) ----
 * ADD:      out = x + y                      MUL:     out = x * y
 * SWIGLU:   out = silu(x) * y                (x = gate, y = up; silu(x) = x / (1 + exp(-x)))
 * ADD_ROWV: out[r][c] = x[r][c] + v[c]       (bias)
 * MUL_COLV: out[r][c] = x[r][c] * v[c]       DIV_COLV: out[r][c] = x[r][c] / v[c]   (AWQ scales)
 * MUL_ROWV: out[r][c] = x[r][c] * v[r]       DIV_ROWV: out[r][c] = x[r][c] / v[r]
 * SCALE:    out = x * scalar
 * out may alias x (in place). y is used by ADD/MUL/SWIGLU, v (cols or rows fp32) by the *V kinds. */
typedef enum {
    QD_EW_ADD, QD_EW_MUL, QD_EW_SWIGLU, QD_EW_ADD_ROWV, QD_EW_MUL_COLV, QD_EW_DIV_COLV,
    QD_EW_MUL_ROWV, QD_EW_DIV_ROWV, QD_EW_SCALE
} qd_ew_kind;
struct qd_ewise_args {
    qd_ew_kind kind;
    qd_ref out, x, y, v;
    size_t rows, cols, ld;
    float scalar;
};
qd_status qd_be_ewise(qd_backend_t be, const struct qd_ewise_args *a);

/* ---- rows by index (the mixture-of-experts dispatch), fp32 ----
 * GATHER:      out[i][c] = x[idx[i]][c]              (x has rows rows, out n)
 * SCATTER_ADD: out[idx[i]][c] += w[i] * x[i][c]       (x has n rows, out rows); the n indices of one
 *              call are distinct (one expert's tokens), so rows are updated independently
 * idx: n int32 row indices < rows; w: n fp32 weights (SCATTER_ADD only); every row has cols elements. */
typedef enum { QD_ROWS_GATHER, QD_ROWS_SCATTER_ADD } qd_rows_kind;
struct qd_rows_args {
    qd_rows_kind kind;
    qd_ref out, x, idx, w;
    size_t n, rows, cols;
};
qd_status qd_be_rows(qd_backend_t be, const struct qd_rows_args *a);

/* ---- transformer ops, fp32 ---- */
/* HF RMSNorm per row of x [rows, dim] (row stride ld, same for out; out may alias x):
 * out = x * rsqrt(mean(x^2) + eps) * weight (weight optional: NULL buf = no weight). Per-head norm
 * (Qwen3 q/k norm) is rows = T * heads, dim = ld = head_dim on a contiguous [T, heads*head_dim]. */
struct qd_rmsnorm_args {
    qd_ref out, x, weight;
    size_t rows, dim, ld;
    float eps;
};
qd_status qd_be_rmsnorm(qd_backend_t be, const struct qd_rmsnorm_args *a);

/* Half-split RoPE in place on x [rows, heads * head_dim] (row stride ld): row r has position
 * r % seq_len; cos/sin tables are [seq_len, head_dim/2] (precomputed by the caller from the model's
 * rope, llama3 scaling included). x1 = x[:half], x2 = x[half:]: x1' = x1 cos - x2 sin,
 * x2' = x2 cos + x1 sin. */
struct qd_rope_args {
    qd_ref x, cos, sin;
    size_t rows, heads, head_dim, ld, seq_len;
};
qd_status qd_be_rope(qd_backend_t be, const struct qd_rope_args *a);

/* Causal GQA attention over nseq independent sequences of seq_len tokens each:
 * q [nseq*seq_len, heads*head_dim], k and v [nseq*seq_len, kv_heads*head_dim], out like q (contiguous
 * rows). Query head h reads kv head h / (heads / kv_heads); scores * scale, causal mask (and a
 * sliding window of `window` keys when window > 0), softmax in fp32. */
struct qd_attention_args {
    qd_ref out, q, k, v;
    size_t nseq, seq_len, heads, kv_heads, head_dim, window;
    float scale;
};
qd_status qd_be_attention(qd_backend_t be, const struct qd_attention_args *a);

/* Mean token negative log-likelihood pieces: for each row r of logits [rows, vocab] (row stride
 * vocab), nll_r = logsumexp(logits[r]) - logits[r][target[r]] in fp32/fp64; *sum_out = sum of nll_r
 * (double, complete on return). targets: int32 on the device. */
struct qd_xent_args {
    qd_ref logits, targets;
    size_t rows, vocab;
    double *sum_out;
};
qd_status qd_be_cross_entropy(qd_backend_t be, const struct qd_xent_args *a);

/* Reductions over n fp32 elements, result in double on the host, complete on return:
 * SQDIFF: sum (a-b)^2; SUMSQ: sum a^2; NONFINITE: count of NaN/Inf in a; ABSMAX: max |a|. */
typedef enum { QD_RED_SQDIFF, QD_RED_SUMSQ, QD_RED_NONFINITE, QD_RED_ABSMAX } qd_red_kind;
struct qd_reduce_args {
    qd_red_kind kind;
    qd_ref a, b;
    size_t n;
    double *out;
};
qd_status qd_be_reduce(qd_backend_t be, const struct qd_reduce_args *a);

/* Column statistics of src [rows, cols] (row stride ld) into out[cols] (accumulate: add to out):
 * ABS_SUM:        out[c] (+)= sum_r |src[r][c]|                       (AWQ x_mean, divide by T)
 * GROUP_NORM_SUM: out[c] (+)= sum_r |src[r][c]| / (max_{c' in group(c)} |src[r][c']| + 1e-6)
 *                 with groups of group_size columns (AWQ w_mean, divide by total rows). */
typedef enum { QD_COLSTAT_ABS_SUM, QD_COLSTAT_GROUP_NORM_SUM } qd_colstat_kind;
struct qd_colstat_args {
    qd_colstat_kind kind;
    qd_ref out, src;
    size_t rows, cols, ld, group_size;
    int accumulate;
};
qd_status qd_be_colstat(qd_backend_t be, const struct qd_colstat_args *a);

/* ---- quantization ---- */
/* How group parameters are found from a row's values x over the group's columns, maxq = 2^bits - 1:
 * QD_QZ_MINMAX (GPTQ): xmin = min(min x, 0), xmax = max(max x, 0); sym: xmax = max(|xmin|, xmax),
 *   xmin = -xmax, scale = 2 xmax / maxq, zero = (maxq + 1) / 2; asym: scale = (xmax - xmin) / maxq,
 *   zero = min(round(-xmin / scale), maxq) (the bound acts only on a scale rounded down to scale_dtype,
 *   below); xmin == xmax == 0 uses [-1, 1]. mse: IST's grid search (p = 1 - i/grid,
 *   i < maxshrink*grid, keep per row the p minimising sum |Q(x) - x|^norm).
 * QD_QZ_AWQ: range not widened; asym: scale = max(xmax - xmin, 1e-5) / maxq,
 *   zero = clamp(-round(xmin / scale), 0, maxq); sym: scale = max(max|x|, 1e-5) / (2^(bits-1) - 1),
 *   zero = 2^(bits-1).
 * Codes q = clamp(round(x / scale) + zero, 0, maxq) (round half to even, as torch.round);
 * dequant = scale * (q - zero).
 * scale_dtype F16 / BF16 (MINMAX and AWQ): every scale found (each MSE candidate too) is first rounded
 *   to the dtype the checkpoint stores it in, and the zero and codes are found against that rounded
 *   scale, so stored scale x (code - zero) is the quantizer's own dequant (qd_scale_stored); any
 *   other value (0 included) keeps fp32 scales. Given parameters (params_in, static groups) are used as
 *   they are. */
/* QD_QZ_FP8 (GPTQ with fp8 targets, the gptq sweep only): static parameters always given (one
 *   scale per row, or per row and group of columns for fp8-block; zero unused); code = E4M3 byte of
 *   x / scale (qd-fp8.h: ties to even, saturating), dequant = e4m3(code) * scale. */
/* QD_QZ_FP4 (GPTQ with nvfp4a16 / mxfp4 targets, the gptq sweep only): static
 *   group parameters always given (the effective scales, zero unused); code = E2M1 nibble of x / scale
 *   (qd-fp4.h), dequant = e2m1(code) * scale. */
typedef enum { QD_QZ_MINMAX, QD_QZ_AWQ, QD_QZ_FP8, QD_QZ_FP4 } qd_qz_kind;
typedef struct qd_qcfg {
    qd_qz_kind kind;
    int bits;
    int sym;
    int mse;          /* MINMAX only */
    float mse_norm;   /* 2.4 */
    int mse_grid;     /* 100 */
    float mse_maxshrink; /* 0.8 */
    qd_dtype scale_dtype; /* F16 / BF16: scales rounded to it before the codes (above); else fp32 */
} qd_qcfg;

/* A found scale s > 0 as the checkpoint stores it in dt (F16 / BF16; any other dt: s): round to
 * nearest even (qd_f32_to_f16 / qd_f32_to_bf16); one that underflows to 0 becomes the dtype's smallest
 * positive value as fp8's scales do (F16 2^-24, BF16 FLT_MIN), one that overflows stays s (the run then
 * refuses it, qd_qlinear_check_scales). The CUDA quantizer does the same bit operations. */
float qd_scale_stored(qd_dtype dt, float s);

/* Group-wise quantization of W [N, K] (row stride ldw) with groups of group_size consecutive columns
 * (K when group_size <= 0; G = K / group_size). Parameters: computed from W when params_in == 0, else
 * read from scales/zeros. Outputs, each optional: Q (fake-quantized W, may alias W), codes (int32
 * [N, K]), scales (fp32 [G, N]) and zeros (int32 [G, N]) - the latter two written when computed. */
struct qd_quantize_args {
    qd_qcfg cfg;
    qd_ref W, Q, codes, scales, zeros;
    size_t N, K, ldw, group_size;
    int params_in;
};
qd_status qd_be_quantize(qd_backend_t be, const struct qd_quantize_args *a);

/* The GPTQ column sweep (docs/reference/algorithms.md section 1) over W [N, K] (contiguous, already prepared: dead
 * columns zeroed, permuted for act-order) with U [K, K] the upper Cholesky factor of the damped inverse
 * Hessian, in blocks of block_size columns with the lazy update of the remaining columns as a GEMM.
 * On return W holds the dequantized weights (in the processed column order), codes int32 [N, K] (same
 * order), scales fp32 [G, N], zeros int32 [G, N] and *loss_out = sum (w - q)^2 / d^2 / 2.
 * group_size <= 0: one parameter set from the whole W before the sweep (G = 1). Otherwise, without
 * static_groups, parameters of group c / group_size are computed at column c from the current global W
 * (which holds the updates of earlier blocks only) and stored at scales[c / group_size]. With
 * static_groups the caller filled scales/zeros (from the original W, original group order) and column
 * c uses group g = (perm ? perm[c] : c) / group_size, or g = 0 when group_size <= 0 (the caller then
 * supplies the single parameter set); static groups may leave a partial last group (G = ceil(K /
 * group_size): fp8-block's edge blocks), dynamic ones must divide K. The CUDA backend takes block sizes
 * up to 384 (a row's block in one warp's registers) and refuses larger ones; qdist's own is 128. */
struct qd_gptq_sweep_args {
    qd_qcfg cfg;
    qd_ref W, U, codes, scales, zeros;
    qd_ref perm; /* int32 [K]; optional (NULL buf), used only with static_groups */
    size_t N, K, group_size, block_size;
    int static_groups;
    double *loss_out;
};
qd_status qd_be_gptq_sweep(qd_backend_t be, const struct qd_gptq_sweep_args *a);

/* AWQ clip search (auto_clip) on W [N, K] (contiguous) with inputs X [T, K] (the sampled tokens):
 * for each (row, group of group_size) with org_max = max |w|, try m = org_max * (1 - i / grid) for
 * i < max_shrink * grid, quantize clamp(w, -m, m) with cfg, err = mean over t of
 * (sum_k q[k] x[t][k] - sum_k w[k] x[t][k])^2, keep the best m per (row, group) (first on ties);
 * then W = clamp(W, -best, best) in place. best_out: optional fp32 [N, G]. */
struct qd_awq_clip_args {
    qd_qcfg cfg;
    qd_ref W, X, best_out;
    size_t N, K, T, group_size;
    int grid;
    float max_shrink;
};
qd_status qd_be_awq_clip(qd_backend_t be, const struct qd_awq_clip_args *a);

/* An FP8 (e4m3) weight dequantized where it is used: W[n][k] = e4m3(codes[n*K + k]) *
 * scale[(n / bn) * ceil(K / bk) + k / bk], one fp32 multiply, never contracted (qd_fp8_dequant in
 * qd-fp8.h is the definition: every backend gives its bits, subnormal codes and zero, huge or any finite
 * scale included). codes (N*K bytes, row-major) and scale (ceil(N/bn) x ceil(K/bk) fp32) are HOST
 * memory, read before the call returns; a GPU backend uploads the bytes, not fp32. bn, bk >= 1 (a
 * tensor scale is bn = N, bk = K; one per row bn = 1, bk = K). *nan_at: the flat index (row order) of
 * the first NaN code (0x7F / 0xFF), or -1; complete on return. W's values are then unspecified. */
struct qd_fp8_dequant_args {
    qd_ref dst;
    const uint8_t *codes;
    const float *scale;
    size_t N, K, bn, bk;
    int64_t *nan_at;
};
qd_status qd_be_fp8_dequant(qd_backend_t be, const struct qd_fp8_dequant_args *a);

/* The device address of r and the backend's compute stream (a cudaStream_t), for a transport that
 * moves device buffers itself (NCCL) in the backend's issue order (r.buf NULL: *ptr = NULL, the stream
 * alone). QD_ERR_UNSUPPORTED, without a message, on a host backend. */
qd_status qd_be_native(qd_backend_t be, qd_ref r, void **ptr, void **stream);

/* ---- optional ops: a backend may leave these out (qd_be_has says which it has); callers then do
 * the same work on the host. They exist so a GPU backend need not move fp32/int32 arrays where bytes
 * suffice. ---- */
typedef enum { QD_OPT_U8_CODES, QD_OPT_MEM_INFO } qd_opt_op;
int qd_be_has(qd_backend_t be, qd_opt_op op);

/* Codes as bytes, four to a 4-byte element (byte i of the stream is byte i % 4, little-endian, of
 * element i / 4). PACK: the n int32 codes of src (0..255) become the n bytes of dst ((n + 3) / 4
 * elements). DEQUANT: W[r][k] = (float)(byte[r*K + k] - zeros[g_idx[k]*N + r]) * scales[g_idx[k]*N + r]
 * with one fp32 multiply, exactly as qd_qlinear_dequant_rounded does on the host (the caller passes the
 * scales already rounded to their stored dtype). codes/W/scales/zeros/g_idx: [N*K bytes], [N,K] fp32,
 * [G,N] fp32, [G,N] int32, [K] int32 in [0, G). */
struct qd_u8_codes_args {
    int dequant;         /* 0: pack, 1: dequant */
    qd_ref dst, src;     /* pack: dst bytes <- src int32 */
    size_t n;            /* pack: codes */
    qd_ref W, codes, scales, zeros, g_idx; /* dequant */
    size_t N, K, G;      /* dequant */
};
qd_status qd_be_u8_codes(qd_backend_t be, const struct qd_u8_codes_args *a);

/* Device memory in bytes: free and total as the device reports them; reserved = what the backend
 * holds now (buffers, its cache of freed buffers, scratch), reserved_peak = the most it has held.
 * Without the op (host backends) qd_be_mem_info fills zeros and returns QD_OK. */
struct qd_mem_info {
    size_t free, total, reserved, reserved_peak;
};
qd_status qd_be_mem_info(qd_backend_t be, struct qd_mem_info *out);

#endif
