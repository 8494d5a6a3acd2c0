/* SPDX-License-Identifier: MIT
 * export-kv.c - --kv-cache in the compressed-tensors config: "kv_cache_scheme", the QuantizationArgs
 * llm-compressor writes for an fp8 KV cache (num_bits 8, type float, symmetric, strategy "tensor" or
 * "attn_head", dynamic false), with the observer named: "static_minmax", the max over every
 * calibration token, which is what qdist computes (the scales are the tensors
 * model.layers.N.self_attn.k_scale / v_scale, planned by the staging source). */
#include <string.h>

#include "export-internal.h"
#include "qd-check.h"

cJSON *qd_export_kv_scheme(const qd_qrun *run) {
    if (!run->kv_cache) return cJSON_CreateNull();
    cJSON *a = cJSON_CreateObject();
    if (!a) return NULL;
    cJSON_AddNumberToObject(a, "num_bits", 8);
    cJSON_AddStringToObject(a, "type", "float");
    cJSON_AddBoolToObject(a, "symmetric", 1);
    cJSON_AddNullToObject(a, "group_size");
    cJSON_AddStringToObject(a, "strategy", run->kv_cache == 2 ? "attn_head" : "tensor");
    cJSON_AddBoolToObject(a, "dynamic", 0);
    cJSON_AddStringToObject(a, "observer", "static_minmax");
    return a;
}

qd_status qd_export_kv_check(const qd_qrun *run, qd_export_format fmt) {
    if (!run->kv_cache || fmt == QD_EXPORT_CT) return QD_OK;
    return qd_fail(QD_ERR_USAGE, "export: the run calibrated fp8 KV-cache scales (--kv-cache), which only "
                   "--format compressed-tensors carries (vLLM reads k_scale/v_scale with its kv_cache_scheme)");
}
