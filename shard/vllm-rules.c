/* SPDX-License-Identifier: MIT
 * vllm-rules.c - vLLM's Marlin shape rules per tensor-parallel shard (contract in qd-vllm-rules.h). */
#include "qd-vllm-rules.h"

#include <stdio.h>
#include <string.h>

#include "qd-log.h"

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static int marlin_group(int gs) { return gs == -1 || gs == 32 || gs == 64 || gs == 128; }

/* W8A8 (fp8 / int8 weights and activations): vLLM's scaled-mm kernels take any shard shape; the fp8
 * block kernels need whole 128-blocks per shard (validate_fp8_block_shape: K_part for row-parallel,
 * N_part for column-parallel when split by tp or when a merged q/k/v or gate/up member is followed by
 * another) and K % 128 for the activations' groups. The shard split itself was checked by the caller. */
static qd_status w8a8_check(const char *prefix, const qd_qlinear_info *info, int tp, qd_vllm_verdict *v) {
    int block = info->scheme == QD_SCHEME_FP8_BLOCK;
    v->kernel = block ? "fp8 block (w8a8_block_fp8)" : info->scheme == QD_SCHEME_W8A8_INT8 ? "int8 scaled_mm" : "fp8 scaled_mm";
    int last_of_merge = ends_with(prefix, "v_proj") || ends_with(prefix, "up_proj");
    if (block && v->K_part % 128 != 0)
        snprintf(v->reason, sizeof v->reason, "K per shard = %ld is not a multiple of the 128 x 128 blocks", v->K_part);
    else if (block && !v->row_parallel && v->N_part % 128 != 0 && (tp > 1 || !last_of_merge))
        snprintf(v->reason, sizeof v->reason, "N per shard = %ld is not a multiple of the 128 x 128 blocks (vLLM "
                 "needs whole blocks per shard and per merged q/k/v, gate/up member)", v->N_part);
    v->loadable = v->reason[0] == '\0';
    v->marlin = v->loadable; /* no fallback: it runs on the scheme's kernel or not at all */
    if (!v->loadable) v->kernel = "none";
    return QD_OK;
}

/* NVFP4 / MXFP4 weights (compressed-tensors W4A16 Fp4 schemes): vLLM runs them on FP4 Marlin
 * (marlin_utils_fp4.py: groups of 16 / 32 along K, N padded to Marlin's tile of 64) or, NVFP4 on
 * Blackwell, its FP4 GEMMs; the group scales [N][K / group] are split with the weight, so a group must not
 * straddle two shards: K per shard % group == 0. */
static qd_status fp4_check(const qd_qlinear_info *info, qd_vllm_verdict *v) {
    int nv = qd_scheme_is_nvfp4(info->scheme), g = nv ? 16 : 32;
    v->kernel = nv ? "nvfp4 (fp4 marlin / cutlass fp4)" : "mxfp4 (fp4 marlin)";
    if (v->K_part % g != 0)
        snprintf(v->reason, sizeof v->reason, "K per shard = %ld is not a multiple of the %s group of %d", v->K_part,
                 nv ? "nvfp4" : "mxfp4", g);
    v->loadable = v->marlin = v->reason[0] == '\0';
    if (!v->loadable) v->kernel = "none";
    return QD_OK;
}

qd_status qd_vllm_check(qd_qformat_kind kind, const char *prefix, const qd_qlinear_info *info, int tp,
                        qd_vllm_verdict *v) {
    memset(v, 0, sizeof *v);
    if (tp < 1) return qd_fail(QD_ERR_USAGE, "vllm rules: tensor-parallel size %d, expected >= 1", tp);
    v->row_parallel = ends_with(prefix, "o_proj") || ends_with(prefix, "down_proj");
    long N = (long)info->N, K = (long)info->K;
    v->loadable = 1;
    if (!info->quantized || kind == QD_QF_NONE || kind == QD_QF_OTHER) {
        v->kernel = "unquantized";
        v->N_part = v->row_parallel ? N : N / tp;
        v->K_part = v->row_parallel ? K / tp : K;
        if ((v->row_parallel ? K : N) % tp != 0) {
            v->loadable = 0;
            snprintf(v->reason, sizeof v->reason, "%s = %ld is not divisible by tp = %d", v->row_parallel ? "K" : "N",
                     v->row_parallel ? K : N, tp);
        }
        return QD_OK;
    }
    long split = v->row_parallel ? K : N;
    if (split % tp != 0) {
        v->loadable = 0;
        v->kernel = "none";
        snprintf(v->reason, sizeof v->reason, "%s = %ld is not divisible by tp = %d", v->row_parallel ? "K" : "N",
                 split, tp);
        return QD_OK;
    }
    v->N_part = v->row_parallel ? N : N / tp;
    v->K_part = v->row_parallel ? K / tp : K;
    if (qd_scheme_is_fp4(info->scheme)) return fp4_check(info, v);
    if (info->scheme != QD_SCHEME_WNA16) return w8a8_check(prefix, info, tp, v);
    int gs = info->group_size, b = info->bits;
    /* scheme */
    const char *marlin_name = kind == QD_QF_GPTQ ? "gptq_marlin" : kind == QD_QF_AWQ ? "awq_marlin" : "marlin (wNa16)";
    const char *fallback = kind == QD_QF_GPTQ ? "gptq" : kind == QD_QF_AWQ ? "awq" : "machete/exllama";
    int scheme_ok = marlin_group(gs) && (kind == QD_QF_AWQ ? (b == 4 && !info->sym)
                                         : kind == QD_QF_GPTQ ? ((b == 4 || b == 8) && info->sym)
                                                              : (b == 4 || b == 8));
    if (!scheme_ok)
        snprintf(v->reason, sizeof v->reason, "%d-bit %s group %d is not a Marlin scheme", b,
                 info->sym ? "symmetric" : "asymmetric", gs);
    else if (v->N_part % 64 != 0)
        snprintf(v->reason, sizeof v->reason, "N per shard = %ld is not a multiple of 64", v->N_part);
    else if (v->K_part % 128 != 0)
        snprintf(v->reason, sizeof v->reason, "K per shard = %ld is not a multiple of 128", v->K_part);
    else if (gs > 0 && v->K_part % gs != 0)
        snprintf(v->reason, sizeof v->reason, "K per shard = %ld is not a multiple of the group size %d", v->K_part, gs);
    v->marlin = v->reason[0] == '\0';
    v->kernel = v->marlin ? marlin_name : fallback;
    if (!v->marlin) {
        int pf = b == 3 ? 32 : 32 / (b > 0 ? b : 4);
        long packed_dim = kind == QD_QF_CT ? v->K_part : v->N_part; /* CT packs along K, GPTQ qzeros/AWQ along N */
        if (gs > 0 && v->K_part % gs != 0) {
            v->loadable = 0;
            size_t n = strlen(v->reason);
            snprintf(v->reason + n, sizeof v->reason - n, "; the %s kernel also needs K per shard %% group == 0: the "
                     "layer does not load", fallback);
        } else if (kind != QD_QF_CT && packed_dim % pf != 0) {
            v->loadable = 0;
            size_t n = strlen(v->reason);
            snprintf(v->reason + n, sizeof v->reason - n, "; N per shard %% %d != 0: the layer does not load", pf);
        }
    }
    return QD_OK;
}
