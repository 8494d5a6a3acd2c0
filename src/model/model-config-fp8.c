/* SPDX-License-Identifier: MIT
 * model-config-fp8.c - is a quantization_config an FP8 source (docs/formats.md "FP8 sources")?
 * transformers' FineGrainedFP8Config (quant_method "fp8": DeepSeek-V3, Qwen3-FP8, vLLM / AutoFP8) and
 * compressed-tensors float-quantized (llm-compressor's FP8 schemes: every config group's weights
 * {"type": "float", "num_bits": 8}, strategy tensor, channel or block; a mix with integer groups is a
 * quantized checkpoint, not a source). Their e4m3 weights are
 * dequantized on load, so for the rest of qdist the model is a float source. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-model-json.h"
#include "qd-model.h"

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNull(v) ? NULL : v;
}

/* [rows, cols], two integers in 1..65536, into block */
static qd_status block_of(const cJSON *bs, const char *what, const char *path, int block[2]) {
    int ok = cJSON_IsArray(bs) && cJSON_GetArraySize(bs) == 2;
    for (int i = 0; ok && i < 2; i++) {
        const cJSON *v = cJSON_GetArrayItem(bs, i);
        ok = cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 65536 &&
             (double)(int)v->valuedouble == v->valuedouble;
        if (ok) block[i] = (int)v->valuedouble;
    }
    if (!ok) return qd_fail(QD_ERR_FORMAT, "%s: %s must be [rows, cols], two integers in 1..65536", path, what);
    return QD_OK;
}

static qd_status fp8_method(const cJSON *q, const char *path, qd_model_cfg *c) {
    const cJSON *fmt = field(q, "fmt");
    if (fmt && !(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "e4m3") == 0))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: quantization_config.fmt must be \"e4m3\" for an FP8 source", path);
    const cJSON *sf = field(q, "scale_fmt");
    if (sf && !(cJSON_IsString(sf) && (strcmp(sf->valuestring, "float") == 0 || strcmp(sf->valuestring, "ue8m0") == 0)))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: quantization_config.scale_fmt must be \"float\" or \"ue8m0\"", path);
    const cJSON *bs = field(q, "weight_block_size");
    if (bs) QD_CHECK(block_of(bs, "quantization_config.weight_block_size", path, c->fp8_block));
    c->fp8_source = 1;
    return QD_OK;
}

/* compressed-tensors: an FP8 source when every group's weights are 8-bit floats; the block of a
 * "block" strategy from its block_structure (one block size for the model) */
static qd_status ct_method(const cJSON *q, const char *path, qd_model_cfg *c) {
    const cJSON *groups = field(q, "config_groups"), *g;
    int n = 0, fp8 = 0;
    cJSON_ArrayForEach(g, groups) {
        const cJSON *w = field(g, "weights"), *t = field(w, "type"), *b = field(w, "num_bits"), *s = field(w, "strategy");
        n++;
        if (!(cJSON_IsString(t) && strcmp(t->valuestring, "float") == 0 && cJSON_IsNumber(b) && b->valuedouble == 8))
            continue;
        fp8++;
        if (cJSON_IsString(s) && strcmp(s->valuestring, "block") == 0) {
            int blk[2];
            QD_CHECK(block_of(field(w, "block_structure"), "config_groups weights.block_structure", path, blk));
            if (c->fp8_block[0] && (blk[0] != c->fp8_block[0] || blk[1] != c->fp8_block[1]))
                return qd_fail(QD_ERR_UNSUPPORTED, "%s: FP8 config groups with different block_structure", path);
            c->fp8_block[0] = blk[0], c->fp8_block[1] = blk[1];
        } else if (cJSON_IsString(s) && strcmp(s->valuestring, "tensor") != 0 && strcmp(s->valuestring, "channel") != 0) {
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: FP8 weights with strategy '%.32s' (supported: tensor, channel, "
                           "block)", path, s->valuestring);
        }
    }
    /* a mix of FP8 and integer groups (a recipe's export) is a quantized checkpoint: read by eval and
     * inspect, refused as a source by quantize */
    c->fp8_source = fp8 > 0 && fp8 == n;
    return QD_OK;
}

qd_status qd_cfg_fp8_source(const cJSON *q, const char *path, qd_model_cfg *c) {
    c->fp8_block[0] = c->fp8_block[1] = 0;
    const cJSON *m = field(q, "quant_method");
    if (cJSON_IsString(m) && strcmp(m->valuestring, "fp8") == 0) QD_CHECK(fp8_method(q, path, c));
    else if (cJSON_IsString(m) && strcmp(m->valuestring, "compressed-tensors") == 0) QD_CHECK(ct_method(q, path, c));
    if (c->fp8_source) c->quantized = 0;
    return QD_OK;
}
