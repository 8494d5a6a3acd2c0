/* SPDX-License-Identifier: MIT
 * qd-tokenizer.h - Hugging Face tokenizer.json in C: load, encode, decode.
 *
 * Contract: qd_tokenizer_encode returns exactly the ids of the `tokenizers` library's
 * Tokenizer.encode(text, add_special_tokens) for every tokenizer.json qd_tokenizer_load accepts;
 * qd_tokenizer_decode returns Tokenizer.decode(ids, skip_special_tokens). A file using a component
 * or option qdist does not implement is refused at load with a message naming it, so nothing is
 * ever tokenised differently in silence. Supported: BPE models (byte-level: GPT-2 / Llama-3 / Qwen2
 * splits; SentencePiece style: Prepend/Replace normalizers or Metaspace, byte_fallback, unk,
 * fuse_unk, ignore_merges), NFC, added tokens (normalized, lstrip, rstrip), TemplateProcessing and
 * ByteLevel post-processors, and the ByteLevel / Metaspace / Replace / ByteFallback / Fuse / Strip
 * decoders (docs/tokenizer.md lists the details).
 *
 * Invalid UTF-8 handed to encode is repaired first: each maximal invalid subsequence becomes
 * U+FFFD, as Python's bytes.decode("utf-8", "replace") would before the text reached `tokenizers`.
 *
 * A qd_tokenizer holds a cache of recent words: use one per thread (load is the costly part).
 */
#ifndef QD_TOKENIZER_H
#define QD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "qd-status.h"

typedef struct qd_tokenizer qd_tokenizer;

/* The longest pre-tokenised word BPE accepts (bytes after normalisation): BPE holds ~50 bytes per byte
 * of a word, and positions are int32. A longer word fails encode with a message giving its size and
 * this cap. (Tokenizers without a pre-tokenizer, e.g. Llama-2's, make each text between added
 * tokens one word.) */
#define QD_TOK_MAX_WORD_BYTES ((size_t)64 << 20)

/* path: a model directory holding tokenizer.json, or the tokenizer.json file itself. */
qd_status qd_tokenizer_load(const char *path, qd_tokenizer **out);
void qd_tokenizer_free(qd_tokenizer *tok);

/* Growable id buffer the encoder appends to; zero-initialise, free with qd_ids_free. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} qd_ids;
void qd_ids_free(qd_ids *v);
qd_status qd_ids_push(qd_ids *v, int32_t id);

/* Encode text[0..len) (UTF-8; repaired if invalid) and APPEND its ids to out. add_special adds the
 * post-processor's tokens (BOS etc.), like add_special_tokens=True in `tokenizers`. */
qd_status qd_tokenizer_encode(qd_tokenizer *tok, const char *text, size_t len, int add_special, qd_ids *out);

/* Decode ids into a malloc'd NUL-terminated UTF-8 string; an id outside the vocabulary fails. */
qd_status qd_tokenizer_decode(const qd_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                              char **out, size_t *out_len);

/* Vocabulary size (largest id + 1) and lookups; token_to_id returns -1 when absent. */
int32_t qd_tokenizer_vocab_size(const qd_tokenizer *tok);
int32_t qd_tokenizer_token_to_id(const qd_tokenizer *tok, const char *token);
/* The BOS / EOS the post-processor adds (-1 when it adds none). */
int32_t qd_tokenizer_bos_id(const qd_tokenizer *tok);
int32_t qd_tokenizer_eos_id(const qd_tokenizer *tok);

#endif
