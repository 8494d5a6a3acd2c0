/* SPDX-License-Identifier: MIT
 * tok-internal.h - the loaded tokenizer, shared by the loader, encoder and decoder files.
 *
 * "Model space" is what the BPE model sees: raw UTF-8 bytes for byte-level tokenizers (vocab
 * strings are mapped back through the GPT-2 byte<->unicode table at load) and the normalised
 * text itself for SentencePiece-style ones. The vocab map is keyed in model space.
 */
#ifndef QD_TOK_INTERNAL_H
#define QD_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "qd-tokenizer.h"
#include "tok-hash.h"

enum { QD_NORM_NFC, QD_NORM_PREPEND, QD_NORM_REPLACE };
typedef struct {
    int kind;
    char *a, *b; /* PREPEND: a; REPLACE: a -> b */
    size_t alen, blen;
} qd_norm_step;

enum { QD_SPLIT_GPT2, QD_SPLIT_LLAMA3, QD_SPLIT_QWEN2, QD_SPLIT_O200K, QD_SPLIT_TEKKEN };
enum { QD_PRE_SPLIT, QD_PRE_BYTELEVEL, QD_PRE_METASPACE, QD_PRE_DIGITS, QD_PRE_SPLIT_STR };
/* SplitDelimiterBehavior of the tokenizers library */
enum { QD_SPLIT_REMOVED, QD_SPLIT_ISOLATED, QD_SPLIT_MERGED_PREV, QD_SPLIT_MERGED_NEXT, QD_SPLIT_CONTIGUOUS };
enum { QD_PREPEND_NEVER, QD_PREPEND_FIRST, QD_PREPEND_ALWAYS };
typedef struct {
    int kind;
    int split;        /* SPLIT: QD_SPLIT_*; BYTELEVEL: use_regex (GPT-2 split); METASPACE: split;
                         DIGITS: individual_digits */
    int prefix_space; /* BYTELEVEL: add_prefix_space; METASPACE: prepend scheme */
    char repl[8];     /* METASPACE replacement character as UTF-8 */
    size_t repl_len;
    char *pat;        /* SPLIT_STR: the literal pattern, its behavior and invert flag */
    size_t pat_len;
    int behavior, invert;
} qd_pre_step;

enum { QD_DEC_BYTELEVEL, QD_DEC_REPLACE, QD_DEC_BYTEFALLBACK, QD_DEC_FUSE, QD_DEC_STRIP, QD_DEC_METASPACE };
typedef struct {
    int kind;
    char *a, *b; /* REPLACE a -> b; STRIP: a = content; METASPACE: a = replacement */
    size_t alen, blen;
    int start, stop; /* STRIP; METASPACE: start = prepend scheme */
} qd_dec_step;

typedef struct {
    char *content; /* as written in the file (normalised form for normalized tokens) */
    size_t len;
    int32_t id;
    int special, normalized, lstrip, rstrip;
} qd_added_token;

/* word cache: direct-mapped, short words with few ids only */
enum { QD_CACHE_SLOTS = 1 << 14, QD_CACHE_KEY = 30, QD_CACHE_IDS = 7 };
typedef struct {
    uint64_t hash;
    uint8_t klen, nids;
    char key[QD_CACHE_KEY];
    int32_t ids[QD_CACHE_IDS];
} qd_cache_slot;

struct qd_tokenizer {
    char path[1024];
    /* model */
    int byte_level;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    int32_t nvocab;
    char **id_tok;      /* token text per id (NULL for holes); decode reads these */
    uint32_t *id_len;
    char *keys;         /* model-space keys of the vocab, the strmap points into it */
    qd_strmap vocab;
    qd_pairmap merges;
    int32_t byte_id[256];     /* byte-level: id of each single byte; else the <0xXX> ids (or -1) */
    /* pipeline */
    qd_norm_step *norm;
    int nnorm;
    qd_pre_step *pre;
    int npre;
    qd_added_token *added;
    int nadded;
    int has_raw_added, has_norm_added;
    uint8_t added_first[2][256]; /* [normalized] first-byte filter for the added-token search */
    int32_t *tmpl_pre, *tmpl_post; /* TemplateProcessing single: ids before and after $A */
    int ntmpl_pre, ntmpl_post;
    int32_t bos_id, eos_id;
    qd_dec_step *dec;
    int ndec;
    int has_decoder;
    uint8_t *is_special; /* per id */
    /* encode scratch (why not thread-safe) */
    qd_cache_slot *cache;
    uint32_t *cps;
    uint8_t *flags;
    uint32_t *offs, *ends;
    size_t scratch_cap;
    void *heap;
    void *syms;
    size_t sym_cap;
};

/* tok-bpe.c: BPE one pre-token given in model space, appending ids */
qd_status qd_bpe_word(qd_tokenizer *t, const char *s, size_t n, qd_ids *out);
/* tok-split.c: split s[0..n) (valid UTF-8) by one of the regexes; ends[k] = byte end of piece k */
qd_status qd_pretok_split(qd_tokenizer *t, int kind, const char *s, size_t n, size_t *npieces);
/* tok-bytes.c: the GPT-2 byte <-> unicode map */
uint32_t qd_byte_to_cp(uint8_t b);
int qd_cp_to_byte(uint32_t cp); /* -1 if cp is not one of the 256 */

#endif
