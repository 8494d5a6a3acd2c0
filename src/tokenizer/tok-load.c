/* SPDX-License-Identifier: MIT
 * qd_tokenizer_load: finds tokenizer.json, reads the BPE model (vocab, merges, flags) and the added
 * tokens, and builds the maps the encoder uses. The components around the model are read by
 * tok-load-pipeline.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-json.h"
#include "tok-internal.h"
#include "tok-load.h"
#include "tok-unicode.h"

enum { MAX_TOKENIZER_JSON = 512u << 20 };
#define QD_TOK_MAX_ID 1000000000 /* a token id; the tables are sized by the largest */

/* model-space key of a vocab string: byte-level strings map back to bytes (returns 0 when a
 * character is outside the byte map: such a token cannot come out of the byte-level model) */
static int model_key(const qd_tokenizer *t, const char *tok, size_t len, char *out, size_t *out_len) {
    if (!t->byte_level) {
        memcpy(out, tok, len);
        *out_len = len;
        return 1;
    }
    size_t i = 0, j = 0;
    while (i < len) {
        uint32_t cp = qd_utf8_next((const unsigned char *)tok, len, &i);
        int b = qd_cp_to_byte(cp);
        if (b < 0) return 0;
        out[j++] = (char)b;
    }
    *out_len = j;
    return 1;
}

static qd_status read_vocab(qd_tokenizer *t, const cJSON *vocab, const cJSON *added) {
    if (!cJSON_IsObject(vocab)) return qd_fail(QD_ERR_FORMAT, "%s: model.vocab: expected an object", t->path);
    int32_t maxid = -1;
    size_t count = 0, bytes = 0;
    const cJSON *e;
    int id, i = 0;
    cJSON_ArrayForEach(e, vocab) {
        qd_json_at at = {t->path, "model.vocab"};
        QD_CHECK(qd_json_int_v(at, e->string, e, 0, QD_TOK_MAX_ID, QD_JSON_REQ_INT, &id));
        if (id > maxid) maxid = id;
        count++;
        bytes += strlen(e->string);
    }
    cJSON_ArrayForEach(e, added) {
        char obj[32];
        snprintf(obj, sizeof obj, "added_tokens[%d]", i++);
        QD_CHECK(qd_json_int((qd_json_at){t->path, obj}, e, "id", 0, QD_TOK_MAX_ID, QD_JSON_REQ_INT, &id));
        if (id > maxid) maxid = id;
    }
    t->nvocab = maxid + 1;
    QD_ALLOC(t->id_tok, t->nvocab);
    QD_ALLOC(t->id_len, t->nvocab);
    QD_ALLOC(t->is_special, t->nvocab);
    QD_ALLOC(t->keys, bytes + 1);
    QD_CHECK(qd_strmap_init(&t->vocab, count));
    size_t off = 0;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble;
        size_t len = strlen(e->string), klen;
        if (t->id_tok[id]) continue; /* a repeated id: the first token keeps it */
        QD_ALLOC(t->id_tok[id], len + 1);
        memcpy(t->id_tok[id], e->string, len);
        t->id_len[id] = (uint32_t)len;
        if (model_key(t, e->string, len, t->keys + off, &klen)) {
            if (qd_strmap_put(&t->vocab, t->keys + off, klen, id)) off += klen;
        }
    }
    return QD_OK;
}

/* "a b" or ["a", "b"] -> the two strings (pointers into the JSON, or into buf) */
static qd_status merge_parts(const qd_tokenizer *t, const cJSON *m, size_t idx, char *buf, size_t cap,
                             const char **a, size_t *alen, const char **b, size_t *blen) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return qd_fail(QD_ERR_FORMAT, "%s: model.merges[%zu] '%s': expected two tokens separated by one space",
                           t->path, idx, s);
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = strlen(sp + 1);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        *a = cJSON_GetArrayItem(m, 0)->valuestring;
        *b = cJSON_GetArrayItem(m, 1)->valuestring;
        *alen = strlen(*a);
        *blen = strlen(*b);
    } else
        return qd_fail(QD_ERR_FORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", t->path, idx);
    if (*alen + *blen + 1 > cap)
        return qd_fail(QD_ERR_FORMAT, "%s: model.merges[%zu]: token longer than %zu bytes", t->path, idx, cap);
    (void)buf;
    return QD_OK;
}

static int32_t lookup_json_token(const qd_tokenizer *t, const char *s, size_t n, char *scratch) {
    size_t klen;
    if (!model_key(t, s, n, scratch, &klen)) return -1;
    return qd_strmap_get(&t->vocab, scratch, klen);
}

static qd_status read_merges(qd_tokenizer *t, const cJSON *merges) {
    if (merges && !cJSON_IsArray(merges)) return qd_fail(QD_ERR_FORMAT, "%s: model.merges: expected an array", t->path);
    size_t n = merges ? (size_t)cJSON_GetArraySize(merges) : 0, idx = 0;
    QD_CHECK(qd_pairmap_init(&t->merges, n));
    enum { CAP = 4096 };
    char *both, *scratch;
    QD_ALLOC(both, CAP);
    QD_ALLOC(scratch, CAP);
    qd_status st = QD_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        QD_CHECK_GOTO(merge_parts(t, m, idx, both, CAP, &a, &alen, &b, &blen), st, out);
        memcpy(both, a, alen);
        memcpy(both + alen, b, blen);
        int32_t ia = lookup_json_token(t, a, alen, scratch);
        int32_t ib = lookup_json_token(t, b, blen, scratch);
        int32_t iab = lookup_json_token(t, both, alen + blen, scratch);
        if (ia < 0 || ib < 0 || iab < 0) {
            st = qd_fail(QD_ERR_FORMAT, "%s: model.merges[%zu] '%.*s %.*s': a token or the merged token is not in "
                         "the vocab", t->path, idx, (int)alen, a, (int)blen, b);
            goto out;
        }
        qd_pairmap_put(&t->merges, ia, ib, (int32_t)idx, iab);
        idx++;
    }
out:
    free(both);
    free(scratch);
    return st;
}

static qd_status read_model(qd_tokenizer *t, const cJSON *model, const cJSON *added) {
    const char *ty = qd_tok_type(model);
    if (!cJSON_IsObject(model)) return qd_fail(QD_ERR_FORMAT, "%s: no \"model\" object", t->path);
    if (ty && strcmp(ty, "BPE") != 0)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (only BPE)", t->path, ty);
    if (!ty && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: model has no type and no merges: only BPE is supported", t->path);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: model.dropout %g is not supported (random at encode time)", t->path,
                       dropout->valuedouble);
    static const char *const unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, unsupported[k]);
        if (cJSON_IsString(v) && v->valuestring[0])
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: model.%s '%s' is not supported", t->path, unsupported[k],
                           v->valuestring);
    }
    int b;
    QD_CHECK(qd_tok_bool(t, model, "byte_fallback", "model", 0, &b));
    t->byte_fallback = b;
    QD_CHECK(qd_tok_bool(t, model, "fuse_unk", "model", 0, &b));
    t->fuse_unk = b;
    QD_CHECK(qd_tok_bool(t, model, "ignore_merges", "model", 0, &b));
    t->ignore_merges = b;
    QD_CHECK(read_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added));
    QD_CHECK(read_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges")));
    t->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        char scratch[256];
        size_t n = strlen(unk->valuestring);
        if (n < sizeof scratch) t->unk_id = lookup_json_token(t, unk->valuestring, n, scratch);
        if (t->unk_id < 0)
            return qd_fail(QD_ERR_FORMAT, "%s: model.unk_token '%s' is not in the vocab", t->path, unk->valuestring);
    }
    for (int b = 0; b < 256; b++) {
        if (t->byte_level) {
            char c = (char)b;
            t->byte_id[b] = qd_strmap_get(&t->vocab, &c, 1);
        } else {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_id[b] = t->byte_fallback ? qd_strmap_get(&t->vocab, name, 6) : -1;
        }
    }
    return QD_OK;
}

static qd_status read_added(qd_tokenizer *t, const cJSON *added) {
    int n = cJSON_GetArraySize(added), k = 0;
    if (n == 0) return QD_OK;
    QD_ALLOC(t->added, n);
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        qd_added_token *a = &t->added[k];
        char where[32];
        int b[5];
        snprintf(where, sizeof where, "added_tokens[%d]", k);
        QD_CHECK(qd_tok_strdup(t, e, "content", "added_tokens", &a->content, &a->len));
        t->nadded = k + 1; /* freed with the tokenizer from here on */
        a->id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble; /* checked by read_vocab */
        QD_CHECK(qd_tok_bool(t, e, "special", where, 0, &b[0]));
        QD_CHECK(qd_tok_bool(t, e, "normalized", where, !b[0], &b[1]));
        QD_CHECK(qd_tok_bool(t, e, "lstrip", where, 0, &b[2]));
        QD_CHECK(qd_tok_bool(t, e, "rstrip", where, 0, &b[3]));
        QD_CHECK(qd_tok_bool(t, e, "single_word", where, 0, &b[4]));
        a->special = b[0], a->normalized = b[1], a->lstrip = b[2], a->rstrip = b[3];
        t->nadded = ++k;
        if (b[4])
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: added token '%s': single_word is not supported", t->path,
                           a->content);
        if (a->len == 0) return qd_fail(QD_ERR_FORMAT, "%s: added_tokens: an empty token", t->path);
        /* decode shows the added token's own text; it also wins over a model token with that id */
        free(t->id_tok[a->id]);
        QD_ALLOC(t->id_tok[a->id], a->len + 1);
        memcpy(t->id_tok[a->id], a->content, a->len);
        t->id_len[a->id] = (uint32_t)a->len;
        t->is_special[a->id] = (uint8_t)a->special;
        if (a->normalized && t->nnorm) {
            char *norm;
            size_t nlen;
            QD_CHECK(qd_tok_normalize(t, a->content, a->len, &norm, &nlen));
            free(a->content);
            a->content = norm;
            a->len = nlen;
            if (!nlen) return qd_fail(QD_ERR_FORMAT, "%s: added token normalises to nothing", t->path);
        }
        if (a->normalized) t->has_norm_added = 1;
        else t->has_raw_added = 1;
        t->added_first[a->normalized][(unsigned char)a->content[0]] = 1;
    }
    return QD_OK;
}

static qd_status find_file(const char *path, char *out, size_t cap) {
    if (!qd_is_dir(path)) {
        if (!qd_path_exists(path))
            return qd_fail(QD_ERR_IO, "tokenizer: %s does not exist (expected a model directory or a tokenizer.json)",
                           path);
        if (snprintf(out, cap, "%s", path) >= (int)cap) return qd_fail(QD_ERR_USAGE, "tokenizer: path too long: %s", path);
        return QD_OK;
    }
    QD_CHECK(qd_path_join(out, cap, path, "tokenizer.json"));
    if (qd_path_exists(out)) return QD_OK;
    char other[1024];
    const char *note = "";
    if (qd_path_join(other, sizeof other, path, "tokenizer.model") == QD_OK && qd_path_exists(other))
        note = "; tokenizer.model (SentencePiece protobuf) is present but qdist reads only tokenizer.json: convert "
               "it with transformers (AutoTokenizer.from_pretrained(dir).save_pretrained(dir))";
    else if (qd_path_join(other, sizeof other, path, "vocab.json") == QD_OK && qd_path_exists(other))
        note = "; vocab.json/merges.txt are present but qdist reads only tokenizer.json: convert them with "
               "transformers (AutoTokenizer.from_pretrained(dir).save_pretrained(dir))";
    return qd_fail(QD_ERR_IO, "tokenizer: no tokenizer.json in %s (looked for %s)%s", path, out, note);
}

qd_status qd_tokenizer_load(const char *path, qd_tokenizer **out) {
    *out = NULL;
    qd_tokenizer *t;
    QD_ALLOC(t, 1);
    qd_status st = QD_OK;
    char *text = NULL;
    size_t len;
    cJSON *root = NULL;
    QD_CHECK_GOTO(find_file(path, t->path, sizeof t->path), st, fail);
    QD_CHECK_GOTO(qd_read_file(t->path, MAX_TOKENIZER_JSON, &text, &len), st, fail);
    QD_CHECK_GOTO(qd_json_parse(text, len, t->path, &root), st, fail);
    if (!cJSON_IsObject(root)) {
        st = qd_fail(QD_ERR_FORMAT, "%s: expected a JSON object", t->path);
        goto fail;
    }
    static const char *const unsupported[] = {"truncation", "padding"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, unsupported[k]);
        if (v && !cJSON_IsNull(v)) {
            st = qd_fail(QD_ERR_UNSUPPORTED, "%s: \"%s\" is set; qdist supports only \"%s\": null", t->path,
                         unsupported[k], unsupported[k]);
            goto fail;
        }
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        st = qd_fail(QD_ERR_FORMAT, "%s: added_tokens: expected an array", t->path);
        goto fail;
    }
    QD_CHECK_GOTO(qd_tok_load_pipeline_pre(t, root), st, fail);
    QD_CHECK_GOTO(read_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), added), st, fail);
    QD_CHECK_GOTO(read_added(t, added), st, fail);
    QD_CHECK_GOTO(qd_tok_load_pipeline_post(t, root), st, fail);
    t->cache = calloc(QD_CACHE_SLOTS, sizeof *t->cache);
    if (!t->cache) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory for the word cache", t->path);
        goto fail;
    }
    cJSON_Delete(root);
    free(text);
    *out = t;
    return QD_OK;
fail:
    cJSON_Delete(root);
    free(text);
    qd_tokenizer_free(t);
    return st;
}

void qd_tokenizer_free(qd_tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; t->id_tok && i < t->nvocab; i++) free(t->id_tok[i]);
    free(t->id_tok);
    free(t->id_len);
    free(t->is_special);
    free(t->keys);
    qd_strmap_free(&t->vocab);
    qd_pairmap_free(&t->merges);
    for (int i = 0; i < t->nnorm; i++) { free(t->norm[i].a); free(t->norm[i].b); }
    free(t->norm);
    for (int i = 0; i < t->npre; i++) free(t->pre[i].pat);
    free(t->pre);
    for (int i = 0; i < t->nadded; i++) free(t->added[i].content);
    free(t->added);
    free(t->tmpl_pre);
    free(t->tmpl_post);
    for (int i = 0; i < t->ndec; i++) { free(t->dec[i].a); free(t->dec[i].b); }
    free(t->dec);
    free(t->cache);
    free(t->cps);
    free(t->flags);
    free(t->offs);
    free(t->ends);
    free(t->heap);
    free(t->syms);
    free(t);
}

int32_t qd_tokenizer_vocab_size(const qd_tokenizer *t) { return t->nvocab; }
int32_t qd_tokenizer_bos_id(const qd_tokenizer *t) { return t->bos_id; }
int32_t qd_tokenizer_eos_id(const qd_tokenizer *t) { return t->eos_id; }

int32_t qd_tokenizer_token_to_id(const qd_tokenizer *t, const char *token) {
    size_t n = strlen(token), klen;
    for (int i = 0; i < t->nadded; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, token, n) == 0) return t->added[i].id;
    char *key = malloc(n + 1);
    if (!key) return -1;
    int32_t id = model_key(t, token, n, key, &klen) ? qd_strmap_get(&t->vocab, key, klen) : -1;
    free(key);
    return id;
}
