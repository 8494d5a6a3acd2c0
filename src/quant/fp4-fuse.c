/* SPDX-License-Identifier: MIT
 * fp4-fuse.c - the one place a run finds nvfp4's weight global scale (448 * 6 / amax, fp4.c's rule), for
 * every nvfp4 Linear of a block, from its weight on the device before any method changes it. Each group
 * of Linears that vLLM loads as one fused layer - q/k/v, gate/up (w1/w3 in Mixtral's experts) and MLA's
 * q_a_proj/kv_a_proj_with_mqa under one parent module - shares one: vLLM's compressed-tensors NVFP4
 * layer keeps a single weight_global_scale per fused layer (the largest of its parts'), so a part
 * quantized with a global of its own would be dequantized there with another's. The group's global is
 * llm-compressor's (its fuse_weight_observers): over the largest |w| of all the group's nvfp4 members.
 * Every other nvfp4 Linear has its own. Data-parallel GPTQ's row split relies on it being set.
 */
#include <string.h>

#include "qd-check.h"
#include "quantize-internal.h"

static const char *const FUSED[][4] = {
    {"q_proj", "k_proj", "v_proj", NULL},
    {"gate_proj", "up_proj", NULL, NULL},
    {"w1", "w3", NULL, NULL},
    {"q_a_proj", "kv_a_proj_with_mqa", NULL, NULL},
};
enum { NFUSED = sizeof FUSED / sizeof FUSED[0] };

/* the fused group of a Linear's name (its last component), -1 for none; *parent_len: the length of
 * the name up to that component */
static int fused_group(const char *name, size_t *parent_len) {
    const char *dot = strrchr(name, '.');
    const char *leaf = dot ? dot + 1 : name;
    *parent_len = (size_t)(leaf - name);
    for (int g = 0; g < NFUSED; g++)
        for (int m = 0; m < 4 && FUSED[g][m]; m++)
            if (strcmp(leaf, FUSED[g][m]) == 0) return g;
    return -1;
}

/* 1 when Linear m takes l's global scale: m is a quantized nvfp4 Linear, and l itself or a member of
 * l's fused group under the same parent module */
static int shares_global(const qd_qspec *specs, char (*names)[128], int l, int m) {
    if (specs[m].skip || !qd_scheme_is_nvfp4(specs[m].scheme)) return 0;
    if (m == l) return 1;
    size_t plen, mlen;
    int g = fused_group(names[l], &plen);
    return g >= 0 && fused_group(names[m], &mlen) == g && mlen == plen && strncmp(names[m], names[l], plen) == 0;
}

qd_status qd__fp4_fuse_globals(qd_qctx *c, const qd_block_w *w, qd_qspec *specs, char (*names)[128]) {
    for (int l = 0; l < w->nlin; l++) {
        if (specs[l].fp4_global > 0 || !shares_global(specs, names, l, l)) continue;
        double amax = 0; /* l is the first of its group: the later members come after it */
        for (int m = l; m < w->nlin; m++) {
            if (!shares_global(specs, names, l, m)) continue;
            double a;
            QD_CHECK(qd_be_reduce(c->be, &(struct qd_reduce_args){.kind = QD_RED_ABSMAX, .a = QD_REF(w->w[m], 0),
                                                                  .n = w->n_out[m] * w->n_in[m], .out = &a}));
            amax = a > amax ? a : amax;
        }
        float global = qd_fp4_global_of_amax((float)amax); /* a max of floats: exact, the host's own */
        for (int m = l; m < w->nlin; m++)
            if (shares_global(specs, names, l, m)) specs[m].fp4_global = global;
    }
    return QD_OK;
}
