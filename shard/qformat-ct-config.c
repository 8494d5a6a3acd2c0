/* SPDX-License-Identifier: MIT
 * qformat-ct-config.c - a compressed-tensors quantization_config's config_groups as the readers need
 * them (ct_group, qformat-read-internal.h): the weights' num_bits, type, strategy, group_size,
 * block_structure, the group's format and whether its input activations are static. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qformat-read-internal.h"

static void copy_str(const cJSON *v, char *dst, size_t n, const char *not_string) {
    if (cJSON_IsString(v)) snprintf(dst, n, "%s", v->valuestring);
    else if (v && !cJSON_IsNull(v)) snprintf(dst, n, "%s", not_string);
}

static void parse_weights(ct_group *cg, const cJSON *w) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(w, "num_bits");
    cg->bits = cJSON_IsNumber(v) ? v->valueint : 0;
    v = cJSON_GetObjectItemCaseSensitive(w, "group_size");
    cg->group_size = cJSON_IsNumber(v) ? v->valueint : -1;
    v = cJSON_GetObjectItemCaseSensitive(w, "symmetric");
    cg->sym = !cJSON_IsFalse(v);
    copy_str(cJSON_GetObjectItemCaseSensitive(w, "type"), cg->type, sizeof cg->type, "?");
    cg->is_float = strcmp(cg->type, "float") == 0;
    copy_str(cJSON_GetObjectItemCaseSensitive(w, "strategy"), cg->strategy, sizeof cg->strategy, "?");
    cg->block = strcmp(cg->strategy, "block") == 0;
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(w, "block_structure");
    for (int i = 0; i < 2 && cJSON_GetArraySize(bs) == 2; i++) {
        v = cJSON_GetArrayItem(bs, i);
        cg->block_structure[i] = cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 65536 ? v->valueint : 0;
    }
    if (!cg->block_structure[0] || !cg->block_structure[1]) cg->block_structure[0] = cg->block_structure[1] = 0;
}

qd_status qd__ct_groups_parse(const cJSON *q, const char *path, ct_group **out, int *nout) {
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(q, "config_groups");
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(q, "format");
    int n = cJSON_GetArraySize(groups);
    ct_group *gs = calloc(n ? (size_t)n : 1, sizeof *gs);
    *out = gs, *nout = 0;
    if (!gs) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for %d config groups", path, n);
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) {
        ct_group *cg = &gs[(*nout)++];
        parse_weights(cg, cJSON_GetObjectItemCaseSensitive(g, "weights"));
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(g, "input_activations");
        cg->has_act = cJSON_IsObject(act);
        const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(act, "dynamic");
        cg->act_static = cg->has_act && cJSON_IsFalse(dyn);
        cg->act_local = cg->has_act && cJSON_IsString(dyn) && strcmp(dyn->valuestring, "local") == 0;
        /* a group's own format, else the checkpoint's: "mixed-precision" says only that groups differ */
        copy_str(top, cg->format, sizeof cg->format, "?");
        if (strcmp(cg->format, "mixed-precision") == 0) cg->format[0] = 0;
        copy_str(cJSON_GetObjectItemCaseSensitive(g, "format"), cg->format, sizeof cg->format, "?");
        const cJSON *targets = cJSON_GetObjectItemCaseSensitive(g, "targets");
        int nt = cJSON_GetArraySize(targets);
        cg->targets = calloc(nt ? (size_t)nt : 1, sizeof *cg->targets);
        if (!cg->targets) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for targets", path);
        const cJSON *t;
        cJSON_ArrayForEach(t, targets) {
            if (!cJSON_IsString(t)) continue;
            cg->targets[cg->ntargets] = strdup(t->valuestring);
            if (!cg->targets[cg->ntargets]) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for targets", path);
            cg->ntargets++;
        }
    }
    return QD_OK;
}

void qd__ct_groups_free(ct_group *gs, int n) {
    for (int g = 0; gs && g < n; g++) {
        for (int t = 0; t < gs[g].ntargets; t++) free(gs[g].targets[t]);
        free(gs[g].targets);
    }
    free(gs);
}
