/* SPDX-License-Identifier: MIT
 * tok-load.h - helpers shared by the two halves of the tokenizer.json reader (tok-load.c reads
 * the model and added tokens, tok-load-pipeline.c the components around them). */
#ifndef QD_TOK_LOAD_H
#define QD_TOK_LOAD_H

#include <cjson/cJSON.h>
#include "tok-internal.h"

const char *qd_tok_type(const cJSON *o);
/* key of o: true or false, dflt when absent or null; another type fails naming the file and where.key */
qd_status qd_tok_bool(const qd_tokenizer *t, const cJSON *o, const char *key, const char *where, int dflt, int *out);
qd_status qd_tok_strdup(const qd_tokenizer *t, const cJSON *o, const char *key, const char *where, char **out,
                        size_t *len);
/* normalizer + pre_tokenizer (read first: they decide whether the vocab is byte-level) */
qd_status qd_tok_load_pipeline_pre(qd_tokenizer *t, const cJSON *root);
/* post_processor + decoder (read after the vocab: they name token ids) */
qd_status qd_tok_load_pipeline_post(qd_tokenizer *t, const cJSON *root);
/* normalise s[0..n) with the file's normalizer into a malloc'd string (tok-encode.c) */
qd_status qd_tok_normalize(const qd_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len);

#endif
