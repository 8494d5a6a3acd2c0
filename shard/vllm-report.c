/* SPDX-License-Identifier: MIT
 * vllm-report.c - qd_vllm_report: the Marlin check over every Linear of a checkpoint (qd-vllm-rules.h). */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-esc.h"
#include "qd-log.h"
#include "qd-safetensors.h"
#include "qd-vllm-rules.h"

static int suffix_prefix(const char *name, const char *suffix, char *prefix, size_t cap) {
    size_t n = strlen(name), m = strlen(suffix);
    if (n <= m || strcmp(name + n - m, suffix) != 0 || n - m >= cap) return 0;
    memcpy(prefix, name, n - m);
    prefix[n - m] = '\0';
    return 1;
}

/* the Linear prefix a tensor names, or 0 */
static int linear_prefix(const qd_checkpoint *ck, const qd_st_tensor *t, char *prefix, size_t cap) {
    if (suffix_prefix(t->name, ".qweight", prefix, cap) || suffix_prefix(t->name, ".weight_packed", prefix, cap))
        return 1;
    if (!suffix_prefix(t->name, ".weight", prefix, cap) || t->ndim != 2) return 0;
    char sc[1100];
    snprintf(sc, sizeof sc, "%s.weight_scale", prefix);
    if (t->dtype == QD_DT_I8) return qd_ckpt_find(ck, sc) != NULL;
    return (qd_dtype_is_float(t->dtype) || t->dtype == QD_DT_F8_E4M3) &&
           (strncmp(prefix, "model.layers.", 13) == 0 || strcmp(prefix, "lm_head") == 0);
}

/* "...experts.<n>.rest" -> "...experts.*.rest": all experts of a block share one shape and one verdict */
static void expert_group(const char *prefix, char *out, size_t cap) {
    const char *e = strstr(prefix, ".experts.") + 9, *d = e;
    while (*d >= '0' && *d <= '9') d++;
    snprintf(out, cap, "%.*s*%s", (int)(e - prefix), prefix, d);
}

/* 1 the first time group is seen (then remembered in *seen), 0 after; -1 out of memory */
static int first_of_group(const char *group, char ***seen, size_t *n) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*seen)[i], group) == 0) return 0;
    char **grown = realloc(*seen, (*n + 1) * sizeof *grown);
    if (!grown) return -1;
    *seen = grown;
    if (!(grown[*n] = strdup(group))) return -1;
    (*n)++;
    return 1;
}

qd_status qd_vllm_report(const char *model_dir, int tp, int ep, FILE *out, int *n_fallback, int *n_unloadable) {
    qd_checkpoint *ck;
    QD_CHECK(qd_ckpt_open(model_dir, 0, &ck));
    qd_qformat *qf;
    qd_status st = qd_qformat_open(model_dir, &qf);
    if (st != QD_OK) {
        qd_ckpt_close(ck);
        return st;
    }
    int nlin = 0, nfb = 0, nbad = 0;
    char prefix[1024], group[1024];
    char **seen = NULL;
    size_t nseen = 0;
    for (size_t i = 0; st == QD_OK && i < ck->ntensors; i++) {
        if (!linear_prefix(ck, ck->tensors[i], prefix, sizeof prefix)) continue;
        qd_qlinear_info info;
        qd_vllm_verdict v;
        st = qd_qformat_linear_info(qf, ck, prefix, &info);
        /* a quant_method "fp8" source: the TP split alone (compressed-tensors FP8 has its scheme's rules) */
        if (ck->tensors[i]->dtype == QD_DT_F8_E4M3 && qd_qformat_kind_of(qf) == QD_QF_FP8) info.quantized = 0;
        qd_vllm_role role = qd_vllm_role_of(prefix);
        if (st == QD_OK && role == QD_VLLM_ROUTER) { /* ReplicatedLinear, kept in full precision */
            nlin++;
            continue;
        }
        int expert = role == QD_VLLM_EXPERT_W13 || role == QD_VLLM_EXPERT_W2;
        if (st == QD_OK)
            st = expert ? qd_vllm_check_expert(qd_qformat_kind_of(qf), prefix, &info, tp, ep, &v)
                        : qd_vllm_check(qd_qformat_kind_of(qf), prefix, &info, tp, &v);
        if (st != QD_OK) break;
        nlin++;
        int show = 1;
        if (expert && (!v.loadable || (info.quantized && !v.marlin))) {
            expert_group(prefix, group, sizeof group);
            show = first_of_group(group, &seen, &nseen);
            if (show < 0) {
                st = qd_fail(QD_ERR_NOMEM, "inspect --vllm-tp: out of memory grouping the experts");
                break;
            }
        }
        const char *name = expert ? group : prefix;
        if (!info.quantized) {
            if (!v.loadable) {
                nbad++;
                if (show) fprintf(out, "%s: unquantized: %s\n", QD_ESC(name), QD_ESC(v.reason));
            }
            continue;
        }
        if (!v.marlin) {
            nfb++;
            nbad += !v.loadable;
            if (show)
                fprintf(out, "%s: %s%s: %s\n", QD_ESC(name), v.kernel, v.loadable ? "" : " (does not load)",
                        QD_ESC(v.reason));
        }
    }
    if (st == QD_OK)
        fprintf(out, "vLLM at tp=%d%s (%s): %d Linear modules, %d miss Marlin, %d do not load\n", tp,
                ep ? " with expert parallelism" : "", qd_qformat_name(qf), nlin, nfb, nbad);
    for (size_t i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
    if (n_fallback) *n_fallback = nfb;
    if (n_unloadable) *n_unloadable = nbad;
    qd_qformat_close(qf);
    qd_ckpt_close(ck);
    return st;
}
