/* SPDX-License-Identifier: MIT
 * calib-internal.h - the pieces of the calibration pipeline: a document reader that streams a
 * file and hands out one tokenised document at a time, the chat templates, and the RNG. */
#ifndef QD_CALIB_INTERNAL_H
#define QD_CALIB_INTERNAL_H

#include <stdio.h>
#include "qd-calib.h"

/* xoshiro256** seeded through splitmix64: the same seed gives the same stream everywhere */
typedef struct {
    uint64_t s[4];
} qd_rng;
void qd_rng_seed(qd_rng *r, uint64_t seed);
uint64_t qd_rng_next(qd_rng *r);
/* uniform in [0, n), n >= 1, without modulo bias */
uint64_t qd_rng_below(qd_rng *r, uint64_t n);

typedef struct {
    const qd_calib_opts *opts;
    qd_tokenizer *tok;
    FILE *f;
    int jsonl;
    unsigned char *in;       /* read buffer: the sniffed head is its first fill, so no byte is read twice */
    size_t in_len, in_pos;
    int in_eof;
    char *line;              /* the current line, without its '\n', NUL-terminated */
    size_t line_cap;
    long lineno;
    long skipped, first_skipped;
    qd_chat_template chat;   /* resolved on the first "messages" line */
    int chat_resolved;
    char *bos, *eos;         /* from tokenizer_config.json (Llama-2 template), may be NULL */
    char *default_system;    /* ChatML: the system line the model's template adds when none is given */
    char *txt_buf;           /* .txt: the piece being built */
    size_t txt_len, txt_cap;
    int eof;
} qd_doc_reader;

qd_status qd_doc_reader_open(qd_doc_reader *r, const qd_calib_opts *opts, qd_tokenizer *tok);
/* next document's ids into *ids (reset first); *got = 0 at the end of the file */
qd_status qd_doc_reader_next(qd_doc_reader *r, qd_ids *ids, int *got);
void qd_doc_reader_close(qd_doc_reader *r);

/* the template a tokenizer_config.json chat_template string matches (NONE when none matches) */
qd_chat_template qd_chat_detect(const char *jinja);
/* ChatML templates that write a fixed system message when the conversation has none (Qwen2 / Qwen2.5:
 * '<|im_start|>system\nYou are ...<|im_end|>\n' as one string literal): that text, malloc'd into *out; *out
 * NULL when the template has no such literal (Qwen3, plain ChatML) or it holds escapes or expressions. */
qd_status qd_chat_default_system(const char *jinja, char **out);
/* render messages (a cJSON array) with template t into a malloc'd string; default_system (ChatML, may be
 * NULL) is rendered first when the first message is not a system one */
struct cJSON;
qd_status qd_chat_render(qd_chat_template t, const struct cJSON *messages, const char *bos, const char *eos,
                         const char *default_system, const char *where, char **out, size_t *len);

#endif
