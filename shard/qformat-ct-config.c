/* SPDX-License-Identifier: MIT
 * qformat-ct-config.c - a compressed-tensors quantization_config's config_groups as the readers need
 * them (ct_group, qformat-read-internal.h): the weights' num_bits, type, strategy, group_size,
 * block_structure, the group's format and whether its input activations are static. Every field is read
 * with qd-json.h's strict readers: a mistyped one (num_bits "8", group_size 16.5) is an error naming it. */
#include <cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-json.h"
#include "qd-log.h"
#include "qformat-read-internal.h"

/* an optional string field into dst ("" when absent) */
static qd_status copy_str(qd_json_at at, const cJSON *o, const char *key, char *dst, size_t n) {
    const char *v;
    QD_CHECK(qd_json_str(at, o, key, 0, &v));
    if (v) snprintf(dst, n, "%s", v);
    return QD_OK;
}

static qd_status parse_weights(ct_group *cg, qd_json_at at, const cJSON *w) {
    /* num_bits 1..64 and group_size from -1 (GPTQModel's "none") here: what a group may say is qformat-check.c's */
    QD_CHECK(qd_json_int(at, w, "num_bits", 1, 64, 0, &cg->bits));
    QD_CHECK(qd_json_int(at, w, "group_size", -1, INT_MAX, -1, &cg->group_size));
    QD_CHECK(qd_json_bool(at, w, "symmetric", 1, &cg->sym));
    QD_CHECK(copy_str(at, w, "type", cg->type, sizeof cg->type));
    cg->is_float = strcmp(cg->type, "float") == 0;
    QD_CHECK(copy_str(at, w, "strategy", cg->strategy, sizeof cg->strategy));
    cg->block = strcmp(cg->strategy, "block") == 0;
    return qd_json_pair(at, w, "block_structure", 1, 65536, QD_JSON_PAIR_RXC, cg->block_structure);
}

/* input_activations: absent / null (weight-only), or an object whose "dynamic" is true, false or "local" */
static qd_status parse_act(ct_group *cg, qd_json_at at, const cJSON *g) {
    const cJSON *act, *dyn;
    QD_CHECK(qd_json_node(at, g, "input_activations", cJSON_Object, 0, &act));
    cg->has_act = act != NULL;
    if (!act) return QD_OK;
    dyn = cJSON_GetObjectItemCaseSensitive(act, "dynamic");
    cg->act_static = cJSON_IsFalse(dyn);
    cg->act_local = cJSON_IsString(dyn) && strcmp(dyn->valuestring, "local") == 0;
    if (dyn && !cJSON_IsNull(dyn) && !cJSON_IsBool(dyn) && !cg->act_local)
        return qd_json_bad(at, "input_activations.dynamic", dyn, "true, false or \"local\"");
    return QD_OK;
}

static qd_status parse_group(ct_group *cg, const char *file, const char *top_format, const cJSON *g) {
    char obj[320], wobj[340];
    snprintf(obj, sizeof obj, "quantization_config.config_groups.%.200s", g->string ? g->string : "?");
    snprintf(wobj, sizeof wobj, "%s.weights", obj);
    qd_json_at at = {file, obj};
    if (!cJSON_IsObject(g))
        return qd_json_bad((qd_json_at){file, "quantization_config.config_groups"}, g->string, g, "an object");
    const cJSON *w;
    QD_CHECK(qd_json_node(at, g, "weights", cJSON_Object, 0, &w));
    QD_CHECK(parse_weights(cg, (qd_json_at){file, wobj}, w));
    QD_CHECK(parse_act(cg, at, g));
    /* a group's own format, else the checkpoint's: "mixed-precision" says only that groups differ */
    if (top_format && strcmp(top_format, "mixed-precision") != 0)
        snprintf(cg->format, sizeof cg->format, "%s", top_format);
    QD_CHECK(copy_str(at, g, "format", cg->format, sizeof cg->format));
    const cJSON *targets, *t;
    QD_CHECK(qd_json_node(at, g, "targets", cJSON_Array, 0, &targets));
    int nt = cJSON_GetArraySize(targets), i = 0;
    cg->targets = calloc(nt ? (size_t)nt : 1, sizeof *cg->targets);
    if (!cg->targets) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for targets", file);
    cJSON_ArrayForEach(t, targets) {
        if (!cJSON_IsString(t)) {
            char name[32];
            snprintf(name, sizeof name, "targets[%d]", i);
            return qd_json_bad(at, name, t, "a string (a module name, \"re:<regex>\" or a class name)");
        }
        cg->targets[cg->ntargets] = strdup(t->valuestring);
        if (!cg->targets[cg->ntargets]) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for targets", file);
        cg->ntargets++, i++;
    }
    return QD_OK;
}

qd_status qd__ct_groups_parse(const cJSON *q, const char *path, ct_group **out, int *nout) {
    qd_json_at at = {path, "quantization_config"};
    const cJSON *groups, *g;
    const char *top;
    *out = NULL, *nout = 0;
    QD_CHECK(qd_json_node(at, q, "config_groups", cJSON_Object, 0, &groups));
    QD_CHECK(qd_json_str(at, q, "format", 0, &top));
    int n = cJSON_GetArraySize(groups);
    ct_group *gs = calloc(n ? (size_t)n : 1, sizeof *gs);
    *out = gs;
    if (!gs) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for %d config groups", path, n);
    cJSON_ArrayForEach(g, groups) QD_CHECK(parse_group(&gs[(*nout)++], path, top, g));
    return QD_OK;
}

void qd__ct_groups_free(ct_group *gs, int n) {
    for (int g = 0; gs && g < n; g++) {
        for (int t = 0; t < gs[g].ntargets; t++) free(gs[g].targets[t]);
        free(gs[g].targets);
    }
    free(gs);
}
