/* SPDX-License-Identifier: MIT
 * rope.c - RoPE cos/sin tables as transformers computes them (modeling_rope_utils.py): inv_freq in
 * fp32 from base^(2i/d), llama3 / linear / yarn scaling applied to inv_freq, angle = fp32(pos * inv_freq);
 * yarn's attention_factor multiplies cos and sin in fp32. */
#include <math.h>

#include "qd-forward.h"
#include "qd-log.h"

/* _compute_yarn_parameters: the fp32 ramp between interpolation and extrapolation over dims [low, high] */
static void yarn_inv_freq(const qd_rope *r, size_t d, float *inv) {
    size_t half = d / 2;
    double base = r->theta, orig = r->original_max_pos;
    double low = d * log(orig / (r->beta_fast * 2 * M_PI)) / (2 * log(base));
    double high = d * log(orig / (r->beta_slow * 2 * M_PI)) / (2 * log(base));
    if (r->truncate) low = floor(low), high = ceil(high);
    if (low < 0) low = 0;
    if (high > (double)(d - 1)) high = (double)(d - 1);
    if (low == high) high += 0.001; /* transformers' guard against a zero-width ramp */
    float fmin = (float)low, span = (float)(high - low), factor = (float)r->factor;
    for (size_t i = 0; i < half; i++) {
        float pos = powf((float)base, (float)(2 * i) / (float)d);
        float extra = 1.0f / pos, inter = 1.0f / (factor * pos);
        float ramp = ((float)i - fmin) / span;
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float ef = 1.0f - ramp;
        inv[i] = inter * (1.0f - ef) + extra * ef;
    }
}

qd_status qd_rope_tables_dim(const qd_rope *r, size_t d, size_t seq_len, float *cos_out, float *sin_out) {
    size_t half = d / 2;
    if (d % 2 || d == 0 || half > 2048) /* config heads are <= 4096 wide (qd-model.h) */
        return qd_fail(QD_ERR_UNSUPPORTED, "rope: rotary dimension %zu is not an even number in 2..4096", d);
    float yinv[2048];
    if (r->type == QD_ROPE_YARN) yarn_inv_freq(r, d, yinv);
    float att = r->type == QD_ROPE_YARN ? (float)r->attention_factor : 1.0f;
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
        } else if (r->type == QD_ROPE_YARN) {
            inv = yinv[i];
        }
        for (size_t p = 0; p < seq_len; p++) {
            float ang = (float)p * inv;
            cos_out[p * half + i] = (float)cos((double)ang);
            sin_out[p * half + i] = (float)sin((double)ang);
            if (r->type == QD_ROPE_YARN) cos_out[p * half + i] *= att, sin_out[p * half + i] *= att;
        }
    }
    return QD_OK;
}

qd_status qd_rope_tables(const qd_model_cfg *cfg, size_t seq_len, float *cos_out, float *sin_out) {
    return qd_rope_tables_dim(&cfg->rope, (size_t)cfg->head_dim, seq_len, cos_out, sin_out);
}
