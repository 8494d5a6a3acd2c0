/* SPDX-License-Identifier: MIT
 * qd-eval.h - perplexity by the GPTQ/AWQ papers' protocol (docs/reference/algorithms.md section 5).
 *
 * The text is tokenised once (with the model's tokenizer.json, special tokens added as transformers'
 * tokenizer(text) does: one BOS at the start of the stream for Llama-style tokenizers), cut into
 * non-overlapping windows of seqlen tokens (remainder dropped, no per-window BOS), and
 * ppl = exp(sum of next-token nll over the seqlen-1 shifted positions of every window / their count).
 * seqlen 0 means min(2048, max_position_embeddings). Works on any checkpoint the forward reads
 * (original, fake-quant output).
 */
#ifndef QD_EVAL_H
#define QD_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "qd-backend.h"

struct qd_eval_opts {
    size_t seqlen;      /* 0: default */
    size_t max_windows; /* 0: all */
    const char *logits_dir; /* optional: write the first window's logits ("logits" F32 [seqlen-1, vocab])
                               and ids ("ids" I32 [seqlen]) to DIR/logits.safetensors, for tests */
    const char *data_name;  /* optional: the text's file, named in errors about it */
};

struct qd_eval_result {
    double ppl;
    double mean_nll;
    size_t seqlen;
    size_t windows;
    size_t scored_tokens; /* windows * (seqlen - 1) */
    size_t text_tokens;   /* tokens of the whole text */
    double seconds;
};

qd_status qd_eval_ppl_ids(qd_backend_t be, const char *model_dir, const int32_t *ids, size_t n,
                          const struct qd_eval_opts *opts, struct qd_eval_result *out);
/* Reads data_path (UTF-8 text: a NUL byte or an invalid sequence is refused with its offset), tokenises it with model_dir's tokenizer, then as above. */
qd_status qd_eval_ppl_file(qd_backend_t be, const char *model_dir, const char *data_path,
                           const struct qd_eval_opts *opts, struct qd_eval_result *out);

#endif
