/* SPDX-License-Identifier: MIT
 * rope.c - RoPE cos/sin tables as transformers computes them (modeling_rope_utils.py): inv_freq in
 * fp32 from base^(2i/d), llama3 / linear scaling applied to inv_freq, angle = fp32(pos * inv_freq). */
#include <math.h>

#include "qd-forward.h"
#include "qd-log.h"

qd_status qd_rope_tables(const qd_model_cfg *cfg, size_t seq_len, float *cos_out, float *sin_out) {
    size_t d = (size_t)cfg->head_dim, half = d / 2;
    if (d % 2) return qd_fail(QD_ERR_UNSUPPORTED, "rope: odd head_dim %zu", d);
    const qd_rope *r = &cfg->rope;
    for (size_t i = 0; i < half; i++) {
        float inv = 1.0f / powf((float)r->theta, (float)(2 * i) / (float)d);
        if (r->type == QD_ROPE_LINEAR) {
            inv = inv / (float)r->factor;
        } else if (r->type == QD_ROPE_LLAMA3) {
            float orig = (float)r->original_max_pos, lo = (float)r->low_freq_factor, hi = (float)r->high_freq_factor;
            float factor = (float)r->factor;
            float low_wl = orig / lo, high_wl = orig / hi;
            float wl = (float)(2 * M_PI) / inv;
            float scaled = wl > low_wl ? inv / factor : inv;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                float s = (orig / wl - lo) / (hi - lo);
                scaled = (1 - s) * scaled / factor + s * scaled;
            }
            inv = scaled;
        }
        for (size_t p = 0; p < seq_len; p++) {
            float ang = (float)p * inv;
            cos_out[p * half + i] = (float)cos((double)ang);
            sin_out[p * half + i] = (float)sin((double)ang);
        }
    }
    return QD_OK;
}
