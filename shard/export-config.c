/* SPDX-License-Identifier: MIT
 * export-config.c - the quantization_config dict of each export format (formats.md B, C, D): the
 * default scheme plus per-module overrides in each format's own way. Module patterns are anchored
 * regular expressions with escaped dots; where every member of a module group that vLLM fuses
 * (q/k/v -> qkv_proj, gate/up -> gate_up_proj) has the same override, the fused name gets it too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export-internal.h"
#include "qd-check.h"
#include "qd-log.h"

#define CT_VERSION "0.20.0"

static const char *fused_groups[][4] = {
    {"self_attn.qkv_proj", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
    {"mlp.gate_up_proj", "mlp.gate_proj", "mlp.up_proj", NULL},
};

static void regex_escape(const char *name, char *out, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; name[i] && j + 3 < cap; i++) {
        if (strchr(".[]()*+?^$|\\{}", name[i])) out[j++] = '\\';
        out[j++] = name[i];
    }
    out[j] = '\0';
}

static const qd_xlayer *find(const qd_xplan *p, const char *name) {
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->layers[i].name, name) == 0) return &p->layers[i];
    return NULL;
}

/* an override key: "" = default scheme, "-" = unconverted, else "bits/gs/sym/nonseq" */
static void override_key(const qd_xplan *p, const qd_xlayer *l, char *key, size_t cap) {
    if (!l->converted) snprintf(key, cap, "-");
    else if (l->bits == p->d_bits && l->group_size == p->d_gs && l->sym == p->d_sym && l->nonseq == p->d_nonseq)
        key[0] = '\0';
    else snprintf(key, cap, "%d/%d/%d/%d", l->bits, l->group_size, l->sym, l->nonseq);
}

/* For layer l that is the LAST member of a fused group whose members all share its key, write the
 * fused module name into fused (else ""). */
static void fused_alias(const qd_xplan *p, const qd_xlayer *l, char *fused, size_t cap) {
    fused[0] = '\0';
    const char *dot = NULL;
    for (size_t g = 0; g < sizeof fused_groups / sizeof *fused_groups; g++) {
        const char *last = fused_groups[g][2] && fused_groups[g][3] ? fused_groups[g][3] : fused_groups[g][2];
        size_t ln = strlen(l->name), sl = strlen(last);
        if (ln <= sl || strcmp(l->name + ln - sl, last) != 0 || l->name[ln - sl - 1] != '.') continue;
        dot = l->name + ln - sl;
        char base[QD_QNAME_MAX], key0[64], key[64], member[QD_QNAME_MAX + 32];
        snprintf(base, sizeof base, "%.*s", (int)(dot - l->name), l->name);
        override_key(p, l, key0, sizeof key0);
        int all = 1;
        for (int m = 1; m < 4 && fused_groups[g][m]; m++) {
            snprintf(member, sizeof member, "%s%s", base, fused_groups[g][m]);
            const qd_xlayer *o = find(p, member);
            if (!o) { all = 0; break; }
            override_key(p, o, key, sizeof key);
            if (strcmp(key, key0) != 0) { all = 0; break; }
        }
        if (all) snprintf(fused, cap, "%s%s", base, fused_groups[g][0]);
        return;
    }
}

/* "model.layers.<i>.<suffix>": block i and the suffix, else -1 */
static int split_block(const char *name, const char **suffix) {
    if (strncmp(name, "model.layers.", 13) != 0) return -1;
    char *end;
    long b = strtol(name + 13, &end, 10);
    if (end == name + 13 || *end != '.') return -1;
    *suffix = end + 1;
    return (int)b;
}

/* transformers' GPTQ loader (optimum) ignores "dynamic"; what it understands is one list of the
 * quantized modules of a block, the same for every block. Written when the unquantized modules are
 * the same in every block (per-module bits/group overrides stay for vLLM and GPTQModel only). */
static void add_modules_in_block(const qd_xplan *p, cJSON *q) {
    const char *s0;
    int first = -1;
    for (size_t i = 0; i < p->n && first < 0; i++) first = split_block(p->layers[i].name, &s0);
    if (first < 0) return;
    /* every block must convert exactly the suffixes block `first` converts */
    for (size_t i = 0; i < p->n; i++) {
        const char *si;
        if (split_block(p->layers[i].name, &si) < 0) continue;
        for (size_t j = 0; j < p->n; j++) {
            const char *sj;
            int bj = split_block(p->layers[j].name, &sj);
            if (bj == first && strcmp(si, sj) == 0 && p->layers[j].converted != p->layers[i].converted) return;
        }
    }
    cJSON *outer = cJSON_AddArrayToObject(q, "modules_in_block_to_quantize");
    cJSON *inner = cJSON_CreateArray();
    cJSON_AddItemToArray(outer, inner);
    for (size_t j = 0; j < p->n; j++) {
        const char *sj;
        if (split_block(p->layers[j].name, &sj) == first && p->layers[j].converted)
            cJSON_AddItemToArray(inner, cJSON_CreateString(sj));
    }
}

void qd_export_warn_fused(const qd_xplan *p) {
    size_t mixed = 0;
    const char *example = NULL;
    for (size_t i = 0; i < p->n; i++) {
        const qd_xlayer *l = &p->layers[i];
        for (size_t g = 0; g < sizeof fused_groups / sizeof *fused_groups; g++) {
            const char *m1 = fused_groups[g][1];
            size_t ln = strlen(l->name), sl = strlen(m1);
            if (ln <= sl || strcmp(l->name + ln - sl, m1) != 0 || l->name[ln - sl - 1] != '.') continue;
            char base[QD_QNAME_MAX], key0[64], key[64], member[QD_QNAME_MAX + 32];
            snprintf(base, sizeof base, "%.*s", (int)(ln - sl), l->name);
            override_key(p, l, key0, sizeof key0);
            for (int m = 2; m < 4 && fused_groups[g][m]; m++) {
                snprintf(member, sizeof member, "%s%s", base, fused_groups[g][m]);
                const qd_xlayer *o = find(p, member);
                if (!o) continue;
                override_key(p, o, key, sizeof key);
                if (strcmp(key, key0) != 0) {
                    mixed++;
                    if (!example) example = l->name;
                    break;
                }
            }
        }
    }
    if (mixed)
        qd_warn("export: %zu module groups that vLLM fuses (q/k/v -> qkv_proj, gate/up -> gate_up_proj) mix schemes "
                "or quantized and unquantized members (first: %s); vLLM needs one scheme per fused module, "
                "transformers and GPTQModel load it", mixed, example);
}

static cJSON *gptq_config(const qd_xplan *p) {
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "gptq");
    cJSON_AddNumberToObject(q, "bits", p->d_bits);
    cJSON_AddNumberToObject(q, "group_size", p->d_gs);
    cJSON_AddBoolToObject(q, "desc_act", p->d_nonseq);
    cJSON_AddBoolToObject(q, "sym", p->d_sym);
    cJSON_AddBoolToObject(q, "lm_head", p->lm_head_quant);
    cJSON_AddStringToObject(q, "checkpoint_format", p->fmt == QD_EXPORT_GPTQ_V2 ? "gptq_v2" : "gptq");
    cJSON_AddStringToObject(q, "pack_dtype", "int32");
    if (p->run.damp >= 0) cJSON_AddNumberToObject(q, "damp_percent", p->run.damp);
    cJSON_AddBoolToObject(q, "true_sequential", p->run.true_sequential);
    cJSON_AddBoolToObject(q, "static_groups", p->run.static_groups);
    cJSON *dyn = cJSON_CreateObject();
    for (size_t i = 0; i < p->n; i++) {
        const qd_xlayer *l = &p->layers[i];
        if (strcmp(l->name, "lm_head") == 0) continue; /* "lm_head": true/false says it */
        char key[64], names[2][QD_QNAME_MAX + 32];
        override_key(p, l, key, sizeof key);
        if (!key[0]) continue;
        snprintf(names[0], sizeof names[0], "%s", l->name);
        fused_alias(p, l, names[1], sizeof names[1]);
        for (int a = 0; a < 2; a++) {
            if (!names[a][0]) continue;
            char esc[2 * QD_QNAME_MAX + 80], pat[2 * QD_QNAME_MAX + 96];
            regex_escape(names[a], esc, sizeof esc);
            snprintf(pat, sizeof pat, "%s:^%s$", l->converted ? "+" : "-", esc);
            cJSON *o = cJSON_CreateObject();
            if (l->converted) {
                cJSON_AddNumberToObject(o, "bits", l->bits);
                cJSON_AddNumberToObject(o, "group_size", l->group_size);
                cJSON_AddBoolToObject(o, "sym", l->sym);
                cJSON_AddBoolToObject(o, "desc_act", l->nonseq);
            }
            cJSON_AddItemToObject(dyn, pat, o);
        }
    }
    if (cJSON_GetArraySize(dyn) > 0) {
        cJSON_AddItemToObject(q, "dynamic", dyn);
        add_modules_in_block(p, q);
    } else {
        cJSON_Delete(dyn);
    }
    cJSON *meta = cJSON_AddObjectToObject(q, "meta");
    cJSON *quantizer = cJSON_AddArrayToObject(meta, "quantizer");
    cJSON_AddItemToArray(quantizer, cJSON_CreateString("qdist:" QD_VERSION));
    return q;
}

static cJSON *not_converted_list(const qd_xplan *p, int with_lm_head, int with_fused) {
    cJSON *arr = cJSON_CreateArray();
    if (with_lm_head && !p->lm_head_quant) cJSON_AddItemToArray(arr, cJSON_CreateString("lm_head"));
    for (size_t i = 0; i < p->n; i++) {
        const qd_xlayer *l = &p->layers[i];
        if (l->converted || strcmp(l->name, "lm_head") == 0) continue;
        cJSON_AddItemToArray(arr, cJSON_CreateString(l->name));
        char fused[QD_QNAME_MAX + 32];
        fused_alias(p, l, fused, sizeof fused);
        if (with_fused && fused[0]) cJSON_AddItemToArray(arr, cJSON_CreateString(fused));
    }
    return arr;
}

static cJSON *awq_config(const qd_xplan *p) {
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "awq");
    cJSON_AddBoolToObject(q, "zero_point", 1);
    cJSON_AddNumberToObject(q, "group_size", p->d_gs);
    cJSON_AddNumberToObject(q, "bits", 4);
    cJSON_AddStringToObject(q, "version", "gemm");
    cJSON *nc = not_converted_list(p, 0, 1);
    if (cJSON_GetArraySize(nc) > 0) cJSON_AddItemToObject(q, "modules_to_not_convert", nc);
    else {
        cJSON_Delete(nc);
        cJSON_AddNullToObject(q, "modules_to_not_convert");
    }
    return q;
}

static cJSON *ct_weights(const qd_xplan *p, int bits, int gs, int sym, int nonseq) {
    cJSON *w = cJSON_CreateObject();
    cJSON_AddNumberToObject(w, "num_bits", bits);
    cJSON_AddStringToObject(w, "type", "int");
    cJSON_AddBoolToObject(w, "symmetric", sym);
    if (gs > 0) {
        cJSON_AddStringToObject(w, "strategy", "group");
        cJSON_AddNumberToObject(w, "group_size", gs);
    } else {
        cJSON_AddStringToObject(w, "strategy", "channel");
        cJSON_AddNullToObject(w, "group_size");
    }
    cJSON_AddNullToObject(w, "block_structure");
    cJSON_AddBoolToObject(w, "dynamic", 0);
    if (nonseq) cJSON_AddStringToObject(w, "actorder", "group");
    else if (p->run.act_order) cJSON_AddStringToObject(w, "actorder", "weight");
    else cJSON_AddNullToObject(w, "actorder");
    cJSON_AddStringToObject(w, "observer", "minmax");
    cJSON_AddObjectToObject(w, "observer_kwargs");
    return w;
}

/* quantization args of the fp8 / w8a8 schemes as llm-compressor's presets FP8_DYNAMIC, FP8_BLOCK, FP8
 * and W8A8 serialise them (compressed-tensors quant_scheme.py); observer NULL: "minmax", none if dynamic */
static cJSON *ct_args(const char *type, const char *strategy, int group_size, int block, int dynamic,
                      const char *observer) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "num_bits", 8);
    cJSON_AddStringToObject(a, "type", type);
    cJSON_AddBoolToObject(a, "symmetric", 1);
    if (group_size > 0) cJSON_AddNumberToObject(a, "group_size", group_size);
    else cJSON_AddNullToObject(a, "group_size");
    cJSON_AddStringToObject(a, "strategy", strategy);
    if (block) {
        cJSON *bs = cJSON_AddArrayToObject(a, "block_structure");
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(QD_FP8_BLOCK_SIZE));
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(QD_FP8_BLOCK_SIZE));
    } else {
        cJSON_AddNullToObject(a, "block_structure");
    }
    cJSON_AddBoolToObject(a, "dynamic", dynamic);
    cJSON_AddNullToObject(a, "actorder");
    if (observer) cJSON_AddStringToObject(a, "observer", observer);
    else if (dynamic) cJSON_AddNullToObject(a, "observer");
    else cJSON_AddStringToObject(a, "observer", "minmax");
    cJSON_AddObjectToObject(a, "observer_kwargs");
    return a;
}

static const char *ct_group_format(const qd_xplan *p, qd_scheme sc) {
    if (qd_scheme_is_fp8(sc)) return "float-quantized";
    if (qd_scheme_is_nvfp4(sc)) return "nvfp4-pack-quantized";
    if (qd_scheme_is_mxfp4(sc)) return "mxfp4-pack-quantized";
    if (sc == QD_SCHEME_W8A8_INT8) return "int-quantized";
    return p->ct_naive ? "naive-quantized" : "pack-quantized";
}

static void scheme_key(const qd_xlayer *l, char *key, size_t n) {
    snprintf(key, n, "%d/%d/%d/%d/%d", l->bits, l->group_size, l->sym, l->nonseq, (int)l->scheme);
}

/* the weights of llm-compressor's presets NVFP4A16 (tensor_group 16, E4M3 scales) and MXFP4A16 / MXFP4
 * (group 32, E8M0 scales held as uint8), as compressed-tensors' QuantizationArgs serialise them */
static cJSON *ct_fp4_weights(qd_scheme sc) {
    int nv = qd_scheme_is_nvfp4(sc);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "num_bits", 4);
    cJSON_AddStringToObject(a, "type", "float");
    cJSON_AddBoolToObject(a, "symmetric", 1);
    cJSON_AddNumberToObject(a, "group_size", qd_scheme_fp4_group(sc));
    cJSON_AddStringToObject(a, "strategy", nv ? "tensor_group" : "group");
    cJSON_AddNullToObject(a, "block_structure");
    cJSON_AddBoolToObject(a, "dynamic", 0);
    cJSON_AddNullToObject(a, "actorder");
    cJSON_AddStringToObject(a, "scale_dtype", nv ? "torch.float8_e4m3fn" : "torch.uint8");
    cJSON_AddStringToObject(a, "zp_dtype", nv ? "torch.float8_e4m3fn" : "torch.uint8");
    cJSON_AddStringToObject(a, "observer", "minmax");
    cJSON_AddObjectToObject(a, "observer_kwargs");
    return a;
}

static void ct_group_schemes(const qd_xplan *p, cJSON *g, int bits, int gs, int sym, int nonseq, qd_scheme sc) {
    int fp8 = qd_scheme_is_fp8(sc), block = sc == QD_SCHEME_FP8_BLOCK;
    if (sc == QD_SCHEME_MXFP4_W4A4) { /* preset MXFP4: e2m1 activations, dynamic per group of 32 */
        cJSON *a = ct_fp4_weights(sc);
        cJSON_ReplaceItemInObject(a, "dynamic", cJSON_CreateTrue());
        cJSON_ReplaceItemInObject(a, "observer", cJSON_CreateNull());
        cJSON_AddItemToObject(g, "input_activations", a);
    }
    if (sc == QD_SCHEME_NVFP4) { /* preset NVFP4: e2m1 activations, local scales dynamic per 16, global static */
        cJSON *a = ct_fp4_weights(sc);
        cJSON_ReplaceItemInObject(a, "dynamic", cJSON_CreateString("local"));
        cJSON_ReplaceItemInObject(a, "observer", cJSON_CreateString("static_minmax"));
        cJSON_AddItemToObject(g, "input_activations", a);
    }
    if (qd_scheme_is_fp4(sc)) {
        if (sc != QD_SCHEME_MXFP4_W4A4 && sc != QD_SCHEME_NVFP4) cJSON_AddNullToObject(g, "input_activations");
        cJSON_AddNullToObject(g, "output_activations");
        cJSON_AddStringToObject(g, "format", ct_group_format(p, sc));
        cJSON_AddItemToObject(g, "weights", ct_fp4_weights(sc));
        return;
    }
    if (sc == QD_SCHEME_WNA16) {
        cJSON_AddNullToObject(g, "input_activations");
        cJSON_AddNullToObject(g, "output_activations");
        cJSON_AddStringToObject(g, "format", ct_group_format(p, sc));
        cJSON_AddItemToObject(g, "weights", ct_weights(p, bits, gs, sym, nonseq));
        return;
    }
    int stat = sc == QD_SCHEME_FP8_STATIC; /* preset FP8: per-tensor weights, static per-tensor inputs */
    cJSON_AddItemToObject(g, "input_activations",
                          ct_args(fp8 ? "float" : "int", stat ? "tensor" : block ? "group" : "token",
                                  block ? QD_FP8_BLOCK_SIZE : 0, 0, !stat, stat ? "static_minmax" : NULL));
    cJSON_AddNullToObject(g, "output_activations");
    cJSON_AddStringToObject(g, "format", ct_group_format(p, sc));
    cJSON_AddItemToObject(g, "weights", ct_args(fp8 ? "float" : "int", stat ? "tensor" : block ? "block" : "channel",
                                                0, block, 0, NULL));
}

static cJSON *ct_config(const qd_xplan *p) {
    /* distinct schemes; with a single one the group targets "Linear", else every group names its modules */
    char keys[64][64];
    int nkeys = 0, overflow = 0;
    const char *fmt = NULL;
    int mixed = 0;
    for (size_t i = 0; i < p->n; i++) {
        const qd_xlayer *l = &p->layers[i];
        if (!l->converted) continue;
        const char *f = ct_group_format(p, l->scheme);
        mixed |= fmt && strcmp(fmt, f) != 0;
        fmt = f;
        char key[64];
        scheme_key(l, key, sizeof key);
        int found = 0;
        for (int k = 0; k < nkeys; k++) found |= strcmp(keys[k], key) == 0;
        if (!found) {
            if (nkeys == 64) overflow = 1;
            else snprintf(keys[nkeys++], sizeof keys[0], "%s", key);
        }
    }
    (void)overflow; /* checked by the caller (at most 64 schemes) */
    if (!fmt) fmt = ct_group_format(p, QD_SCHEME_WNA16);
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
    /* one format per group; the checkpoint's is theirs, or "mixed-precision" (compressed-tensors' rule) */
    cJSON_AddStringToObject(q, "format", mixed ? "mixed-precision" : fmt);
    cJSON_AddStringToObject(q, "quantization_status", "compressed");
    cJSON_AddStringToObject(q, "version", CT_VERSION);
    cJSON_AddItemToObject(q, "ignore", not_converted_list(p, 1, 0));
    cJSON_AddItemToObject(q, "kv_cache_scheme", qd_export_kv_scheme(&p->run));
    cJSON_AddNullToObject(q, "global_compression_ratio");
    cJSON_AddObjectToObject(q, "sparsity_config");
    cJSON *groups = cJSON_AddObjectToObject(q, "config_groups");
    for (int k = 0; k < nkeys; k++) {
        int bits, gs, sym, nonseq, sc;
        sscanf(keys[k], "%d/%d/%d/%d/%d", &bits, &gs, &sym, &nonseq, &sc);
        char gname[32];
        snprintf(gname, sizeof gname, "group_%d", k);
        cJSON *g = cJSON_AddObjectToObject(groups, gname);
        cJSON *targets = cJSON_AddArrayToObject(g, "targets");
        if (nkeys == 1) cJSON_AddItemToArray(targets, cJSON_CreateString("Linear"));
        else
            for (size_t i = 0; i < p->n; i++) {
                const qd_xlayer *l = &p->layers[i];
                char key[64];
                scheme_key(l, key, sizeof key);
                if (!l->converted || strcmp(key, keys[k]) != 0) continue;
                char esc[2 * QD_QNAME_MAX + 80], pat[2 * QD_QNAME_MAX + 96];
                regex_escape(l->name, esc, sizeof esc);
                snprintf(pat, sizeof pat, "re:^%s$", esc);
                cJSON_AddItemToArray(targets, cJSON_CreateString(pat));
            }
        ct_group_schemes(p, g, bits, gs, sym, nonseq, (qd_scheme)sc);
    }
    return q;
}

qd_status qd_export_quant_config(const qd_xplan *p, cJSON **out) {
    switch (p->fmt) {
    case QD_EXPORT_GPTQ:
    case QD_EXPORT_GPTQ_V2: *out = gptq_config(p); break;
    case QD_EXPORT_AWQ: *out = awq_config(p); break;
    case QD_EXPORT_CT: *out = ct_config(p); break;
    case QD_EXPORT_FAKE: return qd_fail(QD_ERR_INTERNAL, "export: the fake format has no quantization_config");
    }
    if (!*out) return qd_fail(QD_ERR_NOMEM, "export: out of memory building quantization_config");
    return QD_OK;
}
