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
#include "qd-json.h"
#include "qd-log.h"
#include "qd-model-json.h"
#include "qd-model.h"

static qd_status fp8_method(const cJSON *q, const char *path, qd_model_cfg *c) {
    qd_json_at at = {path, "quantization_config"};
    const char *fmt, *sf;
    QD_CHECK(qd_json_str(at, q, "fmt", 0, &fmt));
    if (fmt && strcmp(fmt, "e4m3") != 0)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: quantization_config.fmt must be \"e4m3\" for an FP8 source", path);
    QD_CHECK(qd_json_str(at, q, "scale_fmt", 0, &sf));
    if (sf && strcmp(sf, "float") != 0 && strcmp(sf, "ue8m0") != 0)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: quantization_config.scale_fmt must be \"float\" or \"ue8m0\"", path);
    QD_CHECK(qd_json_pair(at, q, "weight_block_size", 1, 65536, 0, c->fp8_block));
    c->fp8_source = 1;
    return QD_OK;
}

/* compressed-tensors: an FP8 source when every group's weights are 8-bit floats; the block of a
 * "block" strategy from its block_structure (one block size for the model). The fields are typed as
 * shard/qformat-ct-config.c reads them, so both give the same line for a mistyped one. */
static qd_status ct_method(const cJSON *q, const char *path, qd_model_cfg *c) {
    const cJSON *groups, *g;
    QD_CHECK(qd_json_node((qd_json_at){path, "quantization_config"}, q, "config_groups", cJSON_Object, 0, &groups));
    int n = 0, fp8 = 0;
    cJSON_ArrayForEach(g, groups) {
        char obj[320], wobj[340];
        snprintf(obj, sizeof obj, "quantization_config.config_groups.%.200s", g->string);
        snprintf(wobj, sizeof wobj, "%s.weights", obj);
        if (!cJSON_IsObject(g))
            return qd_json_bad((qd_json_at){path, "quantization_config.config_groups"}, g->string, g, "an object");
        const cJSON *w;
        const char *t, *s;
        int bits;
        qd_json_at at = {path, wobj};
        QD_CHECK(qd_json_node((qd_json_at){path, obj}, g, "weights", cJSON_Object, 0, &w));
        QD_CHECK(qd_json_str(at, w, "type", 0, &t));
        QD_CHECK(qd_json_int(at, w, "num_bits", 1, 64, 0, &bits));
        QD_CHECK(qd_json_str(at, w, "strategy", 0, &s));
        n++;
        if (!(t && strcmp(t, "float") == 0 && bits == 8)) continue;
        fp8++;
        if (s && strcmp(s, "block") == 0) {
            int blk[2];
            QD_CHECK(qd_json_pair(at, w, "block_structure", 1, 65536, QD_JSON_REQUIRED | QD_JSON_PAIR_RXC, blk));
            if (c->fp8_block[0] && (blk[0] != c->fp8_block[0] || blk[1] != c->fp8_block[1]))
                return qd_fail(QD_ERR_UNSUPPORTED, "%s: FP8 config groups with different block_structure", path);
            c->fp8_block[0] = blk[0], c->fp8_block[1] = blk[1];
        } else if (s && strcmp(s, "tensor") != 0 && strcmp(s, "channel") != 0) {
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: FP8 weights with strategy '%.32s' (supported: tensor, channel, "
                           "block)", path, s);
        }
    }
    /* a mix of FP8 and integer groups (a recipe's export) is a quantized checkpoint: read by eval and
     * inspect, refused as a source by quantize */
    c->fp8_source = fp8 > 0 && fp8 == n;
    return QD_OK;
}

qd_status qd_cfg_fp8_source(const cJSON *q, const char *path, qd_model_cfg *c) {
    c->fp8_block[0] = c->fp8_block[1] = 0;
    const char *m;
    QD_CHECK(qd_json_str((qd_json_at){path, "quantization_config"}, q, "quant_method", 0, &m));
    if (m && strcmp(m, "fp8") == 0) QD_CHECK(fp8_method(q, path, c));
    else if (m && strcmp(m, "compressed-tensors") == 0) QD_CHECK(ct_method(q, path, c));
    if (c->fp8_source) c->quantized = 0;
    return QD_OK;
}
