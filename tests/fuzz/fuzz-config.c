/* SPDX-License-Identifier: MIT
 * libFuzzer target: config.json parsing (qd_model_cfg_parse) and tensor-name classification.
 * An accepted config must carry the invariants the rest of qdist relies on (positive sizes, heads
 * divisible by kv heads, even head_dim, a known rope type).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qd-model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = '\0';
    qd_model_cfg c;
    if (qd_model_cfg_parse(json, "fuzz/config.json", &c) == QD_OK) {
        if (c.hidden <= 0 || c.intermediate <= 0 || c.nlayers <= 0 || c.nheads <= 0 || c.nkv <= 0 || c.vocab <= 0)
            abort();
        if (c.nheads % c.nkv != 0 || c.head_dim <= 0 || c.head_dim % 2 != 0) abort();
        if (!(c.rope.theta > 0) || !(c.rms_eps > 0)) abort();
        if (c.rope.type != QD_ROPE_DEFAULT && c.rope.type != QD_ROPE_LINEAR && c.rope.type != QD_ROPE_LLAMA3) abort();
        if (c.arch_name[0] == '\0') abort();
        /* names derived from the input exercise the classifier's bounds on the block index */
        char mod[64];
        int b;
        if (qd_model_classify(&c, json, &b, mod, sizeof mod) == QD_PART_BLOCK && (b < 0 || b >= c.nlayers)) abort();
    }
    char mod[8];
    int b;
    qd_model_classify(NULL, json, &b, mod, sizeof mod);
    free(json);
    return 0;
}
