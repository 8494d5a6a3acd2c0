/* SPDX-License-Identifier: MIT
 * model-tensors.c - which part of the model a tensor name belongs to.
 *
 * The four supported architectures share the Llama naming (model.embed_tokens, model.layers.<i>.*,
 * model.norm, lm_head), so the mapping needs the config only to bound the block index.
 */
#include "qd-model.h"

#include <stdio.h>
#include <string.h>

static void set_module(char *module, size_t cap, const char *s) {
    if (module && cap) snprintf(module, cap, "%s", s);
}

qd_part qd_model_classify(const qd_model_cfg *cfg, const char *tensor_name, int *block, char *module,
                          size_t module_cap) {
    static const char layers[] = "model.layers.";
    if (block) *block = -1;
    set_module(module, module_cap, "");
    if (strncmp(tensor_name, "model.embed_tokens.", 19) == 0) {
        set_module(module, module_cap, tensor_name + 6);
        return QD_PART_EMBED;
    }
    if (strncmp(tensor_name, "model.norm.", 11) == 0) {
        set_module(module, module_cap, tensor_name + 6);
        return QD_PART_FINAL_NORM;
    }
    if (strncmp(tensor_name, "lm_head.", 8) == 0) {
        set_module(module, module_cap, tensor_name);
        return QD_PART_LM_HEAD;
    }
    if (strncmp(tensor_name, layers, sizeof layers - 1) == 0) {
        const char *p = tensor_name + sizeof layers - 1;
        long idx = 0;
        int digits = 0;
        /* plain decimal only: "01" or "+1" are not names transformers writes */
        while (*p >= '0' && *p <= '9' && digits < 9) {
            idx = idx * 10 + (*p - '0');
            p++;
            digits++;
        }
        if (digits == 0 || *p != '.' || p[1] == '\0' || (digits > 1 && tensor_name[sizeof layers - 1] == '0'))
            return QD_PART_OTHER;
        if (cfg && idx >= cfg->nlayers) return QD_PART_OTHER;
        if (block) *block = (int)idx;
        set_module(module, module_cap, p + 1);
        return QD_PART_BLOCK;
    }
    set_module(module, module_cap, tensor_name);
    return QD_PART_OTHER;
}
