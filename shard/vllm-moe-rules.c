/* SPDX-License-Identifier: MIT
 * vllm-moe-rules.c - vLLM's fused-MoE rules for one routed-expert Linear (contract in qd-vllm-rules.h).
 *
 * Sources (vllm-project/vllm, v0.9-v0.11 and main as of 2026):
 * - fused_moe/layer.py FusedMoE.__init__: intermediate_size_per_partition = intermediate_size // tp_size;
 *   FusedMoEParallelConfig.make (fused_moe/config.py): with enable_expert_parallel the experts are
 *   spread over ep_size = tp_size * dp_size ranks and the experts' own tp_size becomes 1 (no split of I).
 *   w13 = gate+up [2*I_part, H] (gate/up/w1/w3 split along their N = I), w2 = down [H, I_part] (K = I).
 * - quantization/utils/marlin_utils.py check_moe_marlin_supports_layer: Marlin MoE needs
 *   hidden_size % 128 == 0, intermediate_size_per_partition % max(64, group_size) == 0 and group_size in
 *   {-1, 32, 64, 128}; gptq_marlin.py / awq_marlin.py get_quant_method fall back to
 *   MoeWNA16Config (moe_wna16.py) when it fails, compressed_tensors_moe.py to
 *   CompressedTensorsWNA16MoEMethod (Triton).
 * - moe_wna16.py MoeWNA16Method.create_weights: halves the group size until it divides both
 *   intermediate_size_per_partition and hidden_size, asserting it stays >= 32.
 * - compressed_tensors_moe_wna16.py CompressedTensorsWNA16MoEMethod: symmetric only; w2 scales have
 *   intermediate_size_per_partition // group_size groups and w13 hidden_size // group_size.
 * - Packed int32 words (GPTQ/compressed-tensors K of w2, AWQ N of gate/up) must not straddle shards:
 *   I_part % (32 / bits) == 0.
 * - fp8 block MoE (fp8.py Fp8MoEMethod.create_weights): intermediate_size_per_partition % block_n and
 *   % block_k == 0 when tp > 1. */
#include <stdio.h>
#include <string.h>

#include "qd-log.h"
#include "qd-vllm-rules.h"

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

qd_vllm_role qd_vllm_role_of(const char *prefix) {
    const char *e = strstr(prefix, ".experts.");
    if (e && e[9] >= '0' && e[9] <= '9') { /* ".shared_experts." never matches: '_' precedes "experts." */
        if (ends_with(prefix, ".down_proj") || ends_with(prefix, ".w2")) return QD_VLLM_EXPERT_W2;
        if (ends_with(prefix, ".gate_proj") || ends_with(prefix, ".up_proj") || ends_with(prefix, ".w1") ||
            ends_with(prefix, ".w3"))
            return QD_VLLM_EXPERT_W13;
    }
    /* routers (mlp.gate, block_sparse_moe.gate) and Qwen2-MoE's shared_expert_gate: ReplicatedLinear */
    if ((strstr(prefix, ".mlp.") || strstr(prefix, ".block_sparse_moe.")) &&
        (ends_with(prefix, ".gate") || ends_with(prefix, ".shared_expert_gate")))
        return QD_VLLM_ROUTER;
    return QD_VLLM_DENSE;
}

static int marlin_group(int gs) { return gs == -1 || gs == 32 || gs == 64 || gs == 128; }

/* the WNA16 fallback: moe_wna16 (GPTQ, AWQ) or compressed-tensors' Triton WNA16 MoE; 1 if it loads */
static int fallback_loads(qd_qformat_kind kind, const qd_qlinear_info *info, long H, long I_part, char *why,
                          size_t cap) {
    int b = info->bits, gs = info->group_size, pf = 32 / (b > 0 ? b : 4);
    if (b != 4 && b != 8) return snprintf(why, cap, "%d-bit experts have no vLLM MoE kernel", b), 0;
    if (I_part % pf != 0)
        return snprintf(why, cap, "I per shard %% %d != 0 splits packed words", pf), 0;
    if (kind == QD_QF_CT) {
        if (!info->sym) return snprintf(why, cap, "the Triton WNA16 MoE takes symmetric experts only"), 0;
        if (gs > 0 && (I_part % gs != 0 || H % gs != 0))
            return snprintf(why, cap, "the Triton WNA16 MoE needs I per shard and H %% group %d == 0", gs), 0;
        return 1;
    }
    if (kind == QD_QF_GPTQ && info->act_order)
        return snprintf(why, cap, "moe_wna16 takes no act-order (desc_act) checkpoints"), 0;
    if (gs > 0) {
        int g = gs;
        while (g >= 32 && (I_part % g != 0 || H % g != 0)) g /= 2;
        if (g < 32)
            return snprintf(why, cap, "moe_wna16 finds no group >= 32 dividing I per shard and H (group %d)", gs), 0;
    }
    return 1;
}

static qd_status w8a8_expert(const qd_qlinear_info *info, long H, long I_part, int split, qd_vllm_verdict *v) {
    if (qd_scheme_is_fp4(info->scheme)) { /* fused MoE fp4 (marlin / cutlass): whole groups per expert shard */
        int g = qd_scheme_is_nvfp4(info->scheme) ? 16 : 32;
        v->kernel = qd_scheme_is_nvfp4(info->scheme) ? "fused moe nvfp4" : "fused moe mxfp4";
        if (H % g != 0 || I_part % g != 0)
            snprintf(v->reason, sizeof v->reason, "H = %ld and I per shard = %ld must be multiples of the fp4 group "
                     "of %d", H, I_part, g);
        v->loadable = v->marlin = v->reason[0] == '\0';
        if (!v->loadable) v->kernel = "none";
        return QD_OK;
    }
    int block = info->scheme == QD_SCHEME_FP8_BLOCK;
    v->kernel = block ? "fused moe fp8 block" : info->scheme == QD_SCHEME_W8A8_INT8 ? "fused moe int8" : "fused moe fp8";
    if (block && H % 128 != 0)
        snprintf(v->reason, sizeof v->reason, "hidden size H = %ld is not a multiple of the 128 x 128 blocks", H);
    else if (block && split && I_part % 128 != 0)
        snprintf(v->reason, sizeof v->reason, "I per shard = %ld is not a multiple of the 128 x 128 blocks", I_part);
    v->loadable = v->marlin = v->reason[0] == '\0';
    if (!v->loadable) v->kernel = "none";
    return QD_OK;
}

qd_status qd_vllm_check_expert(qd_qformat_kind kind, const char *prefix, const qd_qlinear_info *info, int tp,
                               int ep, qd_vllm_verdict *v) {
    memset(v, 0, sizeof *v);
    if (tp < 1) return qd_fail(QD_ERR_USAGE, "vllm rules: tensor-parallel size %d, expected >= 1", tp);
    qd_vllm_role role = qd_vllm_role_of(prefix);
    if (role != QD_VLLM_EXPERT_W13 && role != QD_VLLM_EXPERT_W2)
        return qd_fail(QD_ERR_USAGE, "vllm rules: %s is not a routed-expert gate/up/down Linear", prefix);
    int w13 = role == QD_VLLM_EXPERT_W13, et = ep ? 1 : tp; /* the experts' own tensor-parallel size */
    long H = w13 ? (long)info->K : (long)info->N, I = w13 ? (long)info->N : (long)info->K;
    v->row_parallel = !w13;
    v->loadable = 1;
    if (I % et != 0) {
        v->loadable = 0;
        v->kernel = "none";
        snprintf(v->reason, sizeof v->reason, "moe intermediate I = %ld is not divisible by tp = %d", I, et);
        return QD_OK;
    }
    long I_part = I / et;
    v->N_part = w13 ? I_part : H;
    v->K_part = w13 ? H : I_part;
    if (!info->quantized || kind == QD_QF_NONE || kind == QD_QF_OTHER) {
        v->kernel = "unquantized";
        return QD_OK;
    }
    if (info->scheme != QD_SCHEME_WNA16) return w8a8_expert(info, H, I_part, et > 1, v);
    int gs = info->group_size, b = info->bits;
    int scheme_ok = marlin_group(gs) && (kind == QD_QF_AWQ ? (b == 4 && !info->sym)
                                         : kind == QD_QF_GPTQ ? ((b == 4 || b == 8) && info->sym)
                                                              : (b == 4 || b == 8));
    long need = gs > 64 ? gs : 64;
    if (!scheme_ok)
        snprintf(v->reason, sizeof v->reason, "%d-bit %s group %d is not a Marlin MoE scheme", b,
                 info->sym ? "symmetric" : "asymmetric", gs);
    else if (H % 128 != 0)
        snprintf(v->reason, sizeof v->reason, "hidden size H = %ld is not a multiple of 128 (Marlin MoE)", H);
    else if (I_part % need != 0)
        snprintf(v->reason, sizeof v->reason, "I per shard = %ld is not a multiple of %ld (Marlin MoE: max(64, group))",
                 I_part, need);
    v->marlin = v->reason[0] == '\0';
    if (v->marlin) {
        v->kernel = kind == QD_QF_GPTQ ? "gptq_marlin moe" : kind == QD_QF_AWQ ? "awq_marlin moe" : "marlin moe (wNa16)";
        return QD_OK;
    }
    v->kernel = kind == QD_QF_CT ? "triton wNa16 moe" : "moe_wna16";
    char why[160];
    if (!fallback_loads(kind, info, H, I_part, why, sizeof why)) {
        v->loadable = 0;
        size_t n = strlen(v->reason);
        snprintf(v->reason + n, sizeof v->reason - n, "; %s: the layer does not load", why);
    }
    return QD_OK;
}
