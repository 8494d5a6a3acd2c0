/* SPDX-License-Identifier: MIT
 * quantize-check.c - every module's resolved spec against the method and the format, before any work
 * (qd-quantize-check.h). Without it a recipe override the format cannot store was found only at
 * export, after the whole search. */
#include <stdio.h>
#include <string.h>

#include "qd-check.h"
#include "qd-export.h"
#include "qd-forward.h"
#include "qd-quantize-check.h"

static size_t in_features(const qd_model_cfg *cfg, int l) {
    return (size_t)(l == QD_LIN_O ? cfg->nheads * cfg->head_dim : l == QD_LIN_DOWN ? cfg->intermediate : cfg->hidden);
}

/* " (module M; recipe R: overrides[i] "match": "P" sets bits)" or " (module M, the run's settings)" */
static void who(const qd_recipe *r, const char *module, char *buf, size_t n) {
    char why[1024];
    if (qd_recipe_describe(r, module, why, sizeof why) > 0)
        snprintf(buf, n, " (module %s; %s: %s)", module, qd_recipe_path(r), why);
    else
        snprintf(buf, n, " (module %s, the run's settings)", module);
}

qd_status qd_quantize_check_specs(const qd_model_cfg *cfg, const qd_qspec *base, const qd_recipe *recipe,
                                  const char *format) {
    int fake = strcmp(format, "fake") == 0;
    qd_export_format f = QD_EXPORT_GPTQ;
    if (!fake) QD_CHECK(qd_export_format_parse(format, &f));
    const char *names[QD_MAX_LINEARS];
    int groups[QD_MAX_LINEARS];
    int n = qd_model_linear_names(cfg, names, groups);
    int awq_gs = 0;
    char awq_gs_module[160] = "";
    for (int layer = 0; layer < cfg->nlayers; layer++)
        for (int l = 0; l < n && l < QD_NLIN; l++) {
            char module[160], w[1400];
            qd_qspec s;
            snprintf(module, sizeof module, "model.layers.%d.%s", layer, names[l]);
            qd_recipe_resolve(recipe, base, module, &s);
            if (s.skip) continue;
            size_t K = in_features(cfg, l);
            if (s.bits < 2 || s.bits > 8) {
                who(recipe, module, w, sizeof w);
                return qd_fail(QD_ERR_USAGE, "quantize: %d bits%s: %s quantizes 2..8 bits", s.bits, w,
                               qd_method_name(s.method));
            }
            if (s.group_size > 0 && (size_t)s.group_size != K && K % (size_t)s.group_size) {
                who(recipe, module, w, sizeof w);
                return qd_fail(QD_ERR_USAGE, "quantize: group_size %d does not divide the %zu input features%s",
                               s.group_size, K, w);
            }
            if (fake) continue;
            who(recipe, module, w, sizeof w);
            QD_CHECK(qd_export_check_module_scheme(f, 0, s.bits, s.group_size, s.sym, s.act_order && !s.static_groups,
                                                   w));
            if (f == QD_EXPORT_AWQ) {
                if (!awq_gs) {
                    awq_gs = s.group_size;
                    snprintf(awq_gs_module, sizeof awq_gs_module, "%s", module);
                } else if (s.group_size != awq_gs)
                    return qd_fail(QD_ERR_UNSUPPORTED, "quantize: awq has one group size per checkpoint, but %s has "
                                   "%d and group_size %d is set%s; use --format gptq or compressed-tensors",
                                   awq_gs_module, awq_gs, s.group_size, w);
            }
        }
    return QD_OK;
}
