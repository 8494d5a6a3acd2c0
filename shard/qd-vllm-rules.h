/* SPDX-License-Identifier: MIT
 * qd-vllm-rules.h - would vLLM run this quantized Linear on Marlin at tensor-parallel size tp, and if
 * not, what does it fall back to? (`qdist inspect --vllm-tp N`; rules of docs/reference/formats.md
 * sections B-D, GPU compute capability >= 8.0 assumed.)
 *
 * Sharding: q/k/v/gate/up (and any module not named o_proj / down_proj) are column-parallel (N split
 * by tp); o_proj and down_proj are row-parallel (K split). Marlin needs per shard N_part % 64 == 0,
 * K_part % 128 == 0 and K_part % group == 0, plus a scheme it implements: GPTQ (4|8 bits, symmetric),
 * AWQ (4 bits with zero point), compressed-tensors WNA16 (4|8 bits); group in {-1, 32, 64, 128}.
 * Otherwise: GPTQ -> the plain "gptq" (exllama) kernel, AWQ -> the "awq" GEMM kernel,
 * compressed-tensors -> vLLM's other mixed-precision kernels (machete on Hopper, exllama); each still
 * needs K_part % group == 0 and N_part a multiple of the pack factor, else the layer does not load.
 *
 * W8A8 schemes (qd_qlinear_info.scheme): fp8 / int8 scaled-mm kernels, no Marlin and no fallback;
 * fp8-block needs K_part % 128 and, column-parallel, N_part % 128 (except the last member of a merged
 * q/k/v or gate/up at tp 1); `marlin` then means "runs on its kernel". NVFP4 / MXFP4 (FP4 Marlin, or
 * the FP4 GEMMs on Blackwell): K_part a multiple of the group (16 / 32; routed experts: H and I_part).
 *
 * Mixture-of-experts (qd_vllm_check_expert, vllm-moe-rules.c, vLLM sources cited there): a routed
 * expert's gate/up (w1/w3) and down (w2) go to vLLM's fused MoE, which splits the intermediate I of
 * every expert (I_part = I / tp) or, with expert parallelism (ep), spreads whole experts and splits
 * nothing. Marlin MoE needs H % 128, I_part % max(64, group), group in {-1, 32, 64, 128}; otherwise
 * moe_wna16 (GPTQ/AWQ) or the Triton WNA16 MoE (compressed-tensors). Routers (mlp.gate,
 * shared_expert_gate) are replicated, unsplit; shared experts are dense MLPs (qd_vllm_check).
 *
 * Not modelled: KV-head replication when num_key_value_heads < tp (vLLM then gives each rank whole
 * heads, so k/v shards are larger than N/tp), and kernels needing compute capability > 8.0.
 *
 * inspect (qd_vllm_report, vllm-report.c): for every Linear, qd_qformat_linear_info(qf, ck, prefix, &info)
 * (qd-qformat-read.h: the small tensors only)
 * then qd_vllm_check(qd_qformat_kind_of(qf), prefix, &info, tp, &v); print v.reason for !v.marlin.
 */
#ifndef QD_VLLM_RULES_H
#define QD_VLLM_RULES_H

#include <stdio.h>

#include "qd-qformat-read.h"
#include "qd-status.h"

typedef struct qd_vllm_verdict {
    int row_parallel;  /* K split across ranks (o_proj, down_proj) */
    long N_part, K_part;
    int marlin;        /* 1: Marlin runs it */
    int loadable;      /* 0: not even the fallback kernel accepts the shard shapes */
    const char *kernel; /* "gptq_marlin", "gptq", "awq_marlin", "awq", "marlin (wNa16)", "machete/exllama", "unquantized" */
    char reason[256];  /* the first rule broken ("" when Marlin runs it) */
} qd_vllm_verdict;

/* kind: the checkpoint's format; info from qd_qformat_read_linear. tp >= 1. */
qd_status qd_vllm_check(qd_qformat_kind kind, const char *prefix, const qd_qlinear_info *info, int tp,
                        qd_vllm_verdict *out);

typedef enum { QD_VLLM_DENSE, QD_VLLM_ROUTER, QD_VLLM_EXPERT_W13, QD_VLLM_EXPERT_W2 } qd_vllm_role;

/* How vLLM builds the Linear named prefix: ".experts.<n>." gate_proj/up_proj/w1/w3 -> EXPERT_W13,
 * down_proj/w2 -> EXPERT_W2; ".gate" / ".shared_expert_gate" under .mlp. or .block_sparse_moe. ->
 * ROUTER; everything else (shared experts included) DENSE. */
qd_vllm_role qd_vllm_role_of(const char *prefix);

/* The fused-MoE verdict for one routed-expert Linear at tensor-parallel size tp; ep != 0: vLLM's
 * --enable-expert-parallel (experts not split). QD_ERR_USAGE for tp < 1 or a prefix not EXPERT_*. */
qd_status qd_vllm_check_expert(qd_qformat_kind kind, const char *prefix, const qd_qlinear_info *info, int tp,
                               int ep, qd_vllm_verdict *out);

/* The whole check for `qdist inspect --vllm-tp N`: every Linear of the checkpoint in model_dir
 * (tensors *.qweight, *.weight_packed, I8 *.weight with *.weight_scale, and 2-D float *.weight under
 * model.layers. / lm_head), described with qd_qformat_linear_info (no dequantisation), checked with
 * qd_vllm_check (routers skipped, routed experts through qd_vllm_check_expert with ep); one line per
 * layer that misses Marlin ("<prefix>: <kernel>: <reason>") to out, the experts of one block and
 * projection on one line ("...experts.*.down_proj"), then a summary line. *n_fallback / *n_unloadable
 * count the layers, each expert Linear once (may be NULL). */
qd_status qd_vllm_report(const char *model_dir, int tp, int ep, FILE *out, int *n_fallback, int *n_unloadable);

#endif
