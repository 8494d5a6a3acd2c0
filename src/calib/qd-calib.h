/* SPDX-License-Identifier: MIT
 * qd-calib.h - calibration token sequences from a user's file, in one streaming pass.
 *
 * Sources (the format: JSONL for a .jsonl/.json name, plain text for .txt/.text/.raw/.md, otherwise by
 * content - JSONL when the first non-blank character is '{' or '[' - so a pipe such as <(cat x.jsonl)
 * reads as JSONL; the file is read once, front to back, so pipes and FIFOs work):
 *   .jsonl lines {"text": "..."}                  -> encoded with the tokenizer's special tokens (BOS);
 *   .jsonl lines {"messages": [{role, content}]}  -> rendered with a built-in chat template (ChatML,
 *       Llama-3, Llama-2) picked by matching tokenizer_config.json's chat_template, or opts.chat;
 *       the rendered text carries its own BOS, so it is encoded without adding special tokens,
 *       as transformers' apply_chat_template(tokenize=True) does;
 *   .jsonl lines [id, id, ...]                    -> pre-tokenised, used as they are;
 *   any other file: plain UTF-8 text, read as one long document in pieces of about 1 MiB cut at
 *       line ends (each piece encoded with special tokens, as one `tokenizer(text)` call would).
 * Sampling (deterministic for a seed, the file is never held whole):
 *   QD_CALIB_RANDOM (GPTQ): each of nsamples windows of seqlen tokens comes from a uniformly random
 *       document among those with >= seqlen tokens (with replacement, as GPTQ's loop does), at a
 *       uniformly random offset: nsamples independent one-slot reservoirs over the documents.
 *   QD_CALIB_CONCAT (AWQ): documents in a uniformly random order (random keys; only the shortest
 *       prefix of that order holding nsamples*seqlen tokens is kept) are concatenated and cut into
 *       nsamples blocks of seqlen; the rest is dropped.
 * Errors (reported once, naming the file): binary (NUL bytes) or empty file, a line longer than
 * QD_CALIB_MAX_LINE_BYTES (named with its line number; tokenising one costs ~50 bytes of memory per
 * byte, and positions are int32), no usable document,
 * too few tokens (the message says how many were found). Malformed .jsonl lines are skipped and
 * counted: one warning gives the count and the first line number, and the set records both.
 * sha256_hex is SHA-256 of the nseq*seqlen ids as int32 little-endian bytes, row after row.
 */
#ifndef QD_CALIB_H
#define QD_CALIB_H

#include <stdint.h>
#include "qd-status.h"
#include "qd-tokenizer.h"

/* the longest line (one JSONL document, or one line of a text file) a calibration file may hold */
#define QD_CALIB_MAX_LINE_BYTES ((size_t)16 << 20)

typedef enum { QD_CALIB_RANDOM, QD_CALIB_CONCAT } qd_calib_mode;
typedef enum { QD_CHAT_AUTO, QD_CHAT_NONE, QD_CHAT_CHATML, QD_CHAT_LLAMA3, QD_CHAT_LLAMA2 } qd_chat_template;

typedef struct {
    const char *path;       /* the calibration file */
    const char *model_dir;  /* for tokenizer_config.json (chat template, bos/eos); may be NULL */
    int nsamples;           /* sequences wanted (>= 1) */
    int seqlen;             /* tokens per sequence (>= 1) */
    uint64_t seed;
    qd_calib_mode mode;
    qd_chat_template chat;  /* QD_CHAT_AUTO: from tokenizer_config.json; NONE joins contents with "\n" */
} qd_calib_opts;

typedef struct {
    int nseq;
    int seqlen;
    int32_t *ids;           /* nseq * seqlen, row-major */
    char sha256_hex[65];
    long skipped_lines;     /* malformed .jsonl lines */
    long first_skipped_line;/* 1-based, 0 if none */
    long docs_read;         /* documents seen */
    long docs_eligible;     /* random: documents with >= seqlen tokens; concat: non-empty ones */
    uint64_t tokens_read;   /* tokens in all documents seen */
    qd_chat_template chat;  /* the template used (NONE when no "messages" line was read) */
} qd_calib_set;

qd_status qd_calib_load(const qd_calib_opts *opts, qd_tokenizer *tok, qd_calib_set *out);
void qd_calib_free(qd_calib_set *set);

/* "chatml" etc. and back; parse returns -1 for an unknown name */
const char *qd_chat_template_name(qd_chat_template t);
int qd_chat_template_parse(const char *name, qd_chat_template *out);

#endif
