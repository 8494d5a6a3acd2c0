/* SPDX-License-Identifier: MIT
 * qd-quantize.h - the per-block quantization driver: the entry point the single-process model loop
 * and the MPI pipeline both call, one block at a time, in order.
 *
 * qd_quantize_block(ctx, w, inputs, outputs, results): inputs are the block's calibration inputs
 * [nseq*seq_len, hidden] on the device; outputs receive the next block's inputs. GPTQ and RTN feed
 * forward the output of the QUANTIZED block (weights dequantized with scales rounded to the export's
 * scale dtype, so the chain sees what the exported model computes); AWQ feeds forward the
 * full-precision output (its reference behaviour). GPTQ collects Hessians true-sequentially
 * ([q,k,v] -> [o] -> [gate,up] -> [down], each from a forward through the already-quantized earlier
 * groups) unless true_sequential is off (one forward, all four Hessians; an MoE block always collects
 * them stage by stage, each expert's gate/up and down with Hessians of their own). w is modified in place:
 * quantized Linears hold their dequantized weights, AWQ also rescales norms / previous Linears.
 * results[l].q.codes is NULL for Linears left unquantized (recipe "skip").
 * RTN needs no calibration: inputs/outputs may be NULL (nseq 0); nothing reads the block again then, so
 * its quantized Linears keep their source weights (no install: the staging and the export take results).
 */
#ifndef QD_QUANTIZE_H
#define QD_QUANTIZE_H

#include "qd-forward.h"
#include "qd-quant.h"
#include "qd-recipe.h"

#include <cjson/cJSON.h>

typedef enum { QD_SMOOTH_OFF = 0, QD_SMOOTH_FIXED, QD_SMOOTH_AUTO } qd_smooth;

typedef struct qd_quantize_opts {
    qd_qspec base;          /* run-wide spec; per-module specs come from the recipe */
    const qd_recipe *recipe; /* optional */
    int true_sequential;
    size_t nseq, seq_len;   /* calibration shape (nseq 0: no calibration, RTN only) */
    size_t chunk_tokens;    /* tokens per forward pass (0: 8192) */
    qd_dtype scale_dtype;   /* scales as the export stores them: F16 (default), BF16 or F32 */
    size_t resident_max_bytes; /* GPTQ keeps a block's intermediate activations when they fit (0: 6 GiB);
                              * above it, each group's inputs are recomputed by a forward (same results).
                              * The distributed run derives it from its memory budget (--gpu-mem). */
    /* Data-parallel ranks (qd-collective.h; NULL: this process holds every sequence). The block's
     * inputs/outputs then hold only this rank's sequences [seq_first, seq_first + seq_count) of nseq,
     * whole chunks (qd_quantize_chunk_seqs); GPTQ reduces its Hessians over the ranks and splits each
     * Linear's sweep by output rows, so every rank installs the same quantized weights. */
    const struct qd_collective *coll;
    size_t seq_first, seq_count;
    /* Mixture-of-experts blocks (--moe-calibration, --moe-min-tokens): the block's output always uses
     * the model's routing. moe_all 0 (routed): an expert's Hessians come from the tokens routed to it;
     * one with fewer than moe_min_tokens routed tokens (over every rank) takes the all-token ones
     * instead, which the report lists as its fallback. moe_all 1: every token goes through every
     * expert for the Hessians. */
    int moe_all;
    size_t moe_min_tokens;
    /* --expert-parallel: with data-parallel ranks, each expert's Hessians accumulated and solved whole
     * by one owner rank, its routed rows sent there (src/quant/moe-ep.c); 1 on, -1 off, 0 auto (by the
     * bytes one block moves). The checkpoint is the same either way. */
    int expert_parallel;
    int moe_model;          /* the model has MoE blocks (the report and fingerprint then name the two above) */
    size_t moe_hess_bytes;  /* MoE GPTQ: backend bytes of expert Hessians held at once; the experts of a stage
                             * are solved in batches that fit (at least one expert each; the results do not
                             * depend on it). 0: every expert at once. The run sets it (qd_run_plan_memory). */
    /* SmoothQuant (--smoothquant ALPHA|auto, smooth.c): per block, before GPTQ/RTN, the input norm ->
     * q/k/v and post-attention norm -> MLP input Linears smoothed with strength smooth_alpha, or the
     * strength searched per block and mapping (QD_SMOOTH_AUTO). Needs calibration. */
    qd_smooth smooth;
    double smooth_alpha;
    /* --kv-cache: 0 off; QD_KV_FP8_TENSOR / QD_KV_FP8_HEAD: each block's largest |post-rope key| and
     * |value| per KV head over the calibration, before the block is quantized (kv-observe.c) */
    int kv_cache;
} qd_quantize_opts;
enum { QD_KV_OFF = 0, QD_KV_FP8_TENSOR = 1, QD_KV_FP8_HEAD = 2 };

/* Sequences per forward pass (a chunk: chunk_tokens / seq_len, at least 1, at most nseq); the unit
 * data-parallel ranks share the calibration in and the slab of an exact-numerics Hessian reduction. */
size_t qd_quantize_chunk_seqs(const qd_quantize_opts *o);

typedef struct qd_qctx qd_qctx;
qd_status qd_qctx_create(qd_backend_t be, const qd_model_cfg *cfg, const qd_quantize_opts *opts, qd_qctx **out);
void qd_qctx_free(qd_qctx *ctx);

/* results: w->nlin entries, indexed like w->lin */
qd_status qd_quantize_block(qd_qctx *ctx, qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs, qd_qresult *results);

/* --kv-cache: [2 * nkv] the last block's key maxima per KV head, then the value maxima (the same on
 * every data-parallel rank); NULL before the first block or without --kv-cache */
const double *qd_qctx_kv_amax(const qd_qctx *ctx);

/* Memory planning, in bytes: what GPTQ's one-forward resident path keeps for a block (compare with
 * resident_max_bytes), and an estimate of everything else the driver holds on the backend at once
 * (block weights, Hessians, forward scratch, the largest layer's temporaries, AWQ's caches). */
size_t qd_quantize_resident_bytes(const qd_model_cfg *cfg, const qd_quantize_opts *o);
size_t qd_quantize_work_bytes(const qd_model_cfg *cfg, const qd_quantize_opts *o);
/* Every routed expert's gate/up and down Hessians with their fp64 sums at once (fast numerics): what
 * moe_hess_bytes bounds (0 for a dense model). */
size_t qd_quantize_moe_hess_bytes(const qd_model_cfg *cfg);

/* The spec of Linear module of block b ("model.layers.<b>.<module>"); name receives the prefix. A
 * Linear the architecture keeps in full precision (qd_linear.quantize 0) is always skipped. */
void qd_qctx_spec(const qd_qctx *ctx, int block, const qd_linear *lin, qd_qspec *out, char *name, size_t cap);

/* Adds the run's "settings" object (method, bits, group size, ... scale dtype) to a report root and
 * returns it (NULL when out of memory), for callers to append their own keys. */
cJSON *qd_quantize_settings_json(cJSON *root, const qd_quantize_opts *q);

#endif
