/* SPDX-License-Identifier: MIT
 * The "settings" object of qdist_report.json: one writer for the one-process loop and the
 * distributed run, so both reports describe a run the same way. */
#include "qd-quantize.h"

cJSON *qd_quantize_settings_json(cJSON *root, const qd_quantize_opts *q) {
    const qd_qspec *s = &q->base;
    cJSON *set = cJSON_AddObjectToObject(root, "settings");
    if (!set) return NULL;
    cJSON_AddStringToObject(set, "method", qd_method_name(s->method));
    cJSON_AddNumberToObject(set, "bits", s->bits);
    cJSON_AddNumberToObject(set, "group_size", s->group_size);
    cJSON_AddBoolToObject(set, "sym", s->sym);
    if (s->scheme != QD_SCHEME_WNA16) cJSON_AddStringToObject(set, "scheme", qd_scheme_name(s->scheme));
    cJSON_AddBoolToObject(set, "act_order", s->act_order);
    cJSON_AddBoolToObject(set, "static_groups", s->static_groups);
    cJSON_AddNumberToObject(set, "damp", s->damp);
    cJSON_AddBoolToObject(set, "mse", s->mse);
    cJSON_AddBoolToObject(set, "true_sequential", q->true_sequential);
    cJSON_AddStringToObject(set, "scale_dtype", qd_dtype_name(q->scale_dtype));
    if (q->smooth == QD_SMOOTH_AUTO) cJSON_AddStringToObject(set, "smoothquant", "auto");
    else if (q->smooth) cJSON_AddNumberToObject(set, "smoothquant", q->smooth_alpha);
    if (q->kv_cache) cJSON_AddStringToObject(set, "kv_cache", q->kv_cache == QD_KV_FP8_HEAD ? "fp8-head" : "fp8");
    return set;
}
