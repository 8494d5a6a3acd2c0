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

qd_status qd_vllm_report(const char *model_dir, int tp, FILE *out, int *n_fallback, int *n_unloadable) {
    qd_checkpoint *ck;
    QD_CHECK(qd_ckpt_open(model_dir, 0, &ck));
    qd_qformat *qf;
    qd_status st = qd_qformat_open(model_dir, &qf);
    if (st != QD_OK) {
        qd_ckpt_close(ck);
        return st;
    }
    int nlin = 0, nfb = 0, nbad = 0;
    char prefix[1024];
    for (size_t i = 0; st == QD_OK && i < ck->ntensors; i++) {
        if (!linear_prefix(ck, ck->tensors[i], prefix, sizeof prefix)) continue;
        qd_qlinear_info info;
        qd_vllm_verdict v;
        st = qd_qformat_linear_info(qf, ck, prefix, &info);
        /* a quant_method "fp8" source: the TP split alone (compressed-tensors FP8 has its scheme's rules) */
        if (ck->tensors[i]->dtype == QD_DT_F8_E4M3 && qd_qformat_kind_of(qf) == QD_QF_FP8) info.quantized = 0;
        if (st == QD_OK) st = qd_vllm_check(qd_qformat_kind_of(qf), prefix, &info, tp, &v);
        if (st != QD_OK) break;
        nlin++;
        if (!info.quantized) {
            if (!v.loadable) {
                nbad++;
                fprintf(out, "%s: unquantized: %s\n", QD_ESC(prefix), QD_ESC(v.reason));
            }
            continue;
        }
        if (!v.marlin) {
            nfb++;
            nbad += !v.loadable;
            fprintf(out, "%s: %s%s: %s\n", QD_ESC(prefix), v.kernel, v.loadable ? "" : " (does not load)", QD_ESC(v.reason));
        }
    }
    if (st == QD_OK)
        fprintf(out, "vLLM at tp=%d (%s): %d Linear modules, %d miss Marlin, %d do not load\n", tp,
                qd_qformat_name(qf), nlin, nfb, nbad);
    if (n_fallback) *n_fallback = nfb;
    if (n_unloadable) *n_unloadable = nbad;
    qd_qformat_close(qf);
    qd_ckpt_close(ck);
    return st;
}
