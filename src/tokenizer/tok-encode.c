/* SPDX-License-Identifier: MIT
 * The encode pipeline, in the tokenizers library's order: split out added tokens that match the raw
 * text (leftmost-longest), normalise each remaining piece, split out the added tokens that match
 * normalised text, pre-tokenise (split steps applied in turn), BPE each pre-token, and add the
 * post-processor's special tokens. */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "tok-internal.h"
#include "tok-load.h"
#include "tok-unicode.h"

void qd_ids_free(qd_ids *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

qd_status qd_ids_push(qd_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory for %zu token ids", cap);
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return QD_OK;
}

/* ---- normalizer ---- */

static qd_status replace_all(const char *s, size_t n, const char *a, size_t alen, const char *b, size_t blen,
                             char **out, size_t *out_len) {
    size_t count = 0;
    for (size_t i = 0; i + alen <= n;) {
        if (memcmp(s + i, a, alen) == 0) { count++; i += alen; } else i++;
    }
    char *o;
    QD_ALLOC(o, n + count * blen + 1);
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        if (i + alen <= n && memcmp(s + i, a, alen) == 0) {
            memcpy(o + j, b, blen);
            j += blen;
            i += alen;
        } else o[j++] = s[i++];
    }
    o[j] = 0;
    *out = o;
    *out_len = j;
    return QD_OK;
}

qd_status qd_tok_normalize(const qd_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len) {
    char *cur;
    QD_ALLOC(cur, n + 1);
    memcpy(cur, s, n);
    size_t len = n;
    for (int k = 0; k < t->nnorm; k++) {
        const qd_norm_step *st = &t->norm[k];
        char *next = NULL;
        size_t nlen = 0;
        qd_status rc = QD_OK;
        if (st->kind == QD_NORM_NFC) rc = qd_nfc(cur, len, &next, &nlen);
        else if (st->kind == QD_NORM_REPLACE) rc = replace_all(cur, len, st->a, st->alen, st->b, st->blen, &next, &nlen);
        else if (len == 0) continue; /* Prepend leaves an empty string empty */
        else {
            next = malloc(st->alen + len + 1);
            if (!next) rc = qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory normalising %zu bytes", len);
            else {
                memcpy(next, st->a, st->alen);
                memcpy(next + st->alen, cur, len);
                nlen = st->alen + len;
                next[nlen] = 0;
            }
        }
        free(cur);
        if (rc != QD_OK) return rc;
        cur = next;
        len = nlen;
    }
    *out = cur;
    *out_len = len;
    return QD_OK;
}

/* ---- pre-tokenizer steps, applied depth-first so no list of pieces is ever built ---- */

static qd_status pre_step(qd_tokenizer *t, int k, const char *s, size_t n, int first, qd_ids *out);

static qd_status split_then(qd_tokenizer *t, int k, int kind, const char *s, size_t n, int first, qd_ids *out) {
    size_t np;
    QD_CHECK(qd_pretok_split(t, kind, s, n, &np));
    uint32_t *ends = t->ends, *copy = NULL;
    if (k + 1 < t->npre) { /* a later step may split again and reuse t->ends */
        QD_ALLOC(copy, np);
        memcpy(copy, t->ends, np * sizeof *copy);
        ends = copy;
    }
    qd_status st = QD_OK;
    size_t start = 0;
    for (size_t p = 0; p < np && st == QD_OK; p++) {
        st = pre_step(t, k + 1, s + start, ends[p] - start, first && start == 0, out);
        start = ends[p];
    }
    free(copy);
    return st;
}

static qd_status metaspace(qd_tokenizer *t, int k, const char *s, size_t n, int first, qd_ids *out) {
    const qd_pre_step *ps = &t->pre[k];
    char *r;
    size_t rn;
    QD_CHECK(replace_all(s, n, " ", 1, ps->repl, ps->repl_len, &r, &rn));
    int starts = rn >= ps->repl_len && memcmp(r, ps->repl, ps->repl_len) == 0;
    if (!starts && (ps->prefix_space == QD_PREPEND_ALWAYS || (ps->prefix_space == QD_PREPEND_FIRST && first))) {
        char *p = malloc(rn + ps->repl_len + 1);
        if (!p) { free(r); return qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory"); }
        memcpy(p, ps->repl, ps->repl_len);
        memcpy(p + ps->repl_len, r, rn + 1);
        free(r);
        r = p;
        rn += ps->repl_len;
    }
    qd_status st = QD_OK;
    if (!ps->split) st = pre_step(t, k + 1, r, rn, first, out);
    else { /* each replacement character starts a new piece (MergedWithNext) */
        size_t start = 0;
        for (size_t i = 1; i <= rn && st == QD_OK; i++) {
            if (i == rn || (i + ps->repl_len <= rn && memcmp(r + i, ps->repl, ps->repl_len) == 0)) {
                st = pre_step(t, k + 1, r + start, i - start, first && start == 0, out);
                start = i;
            }
        }
    }
    free(r);
    return st;
}

/* Digits: numbers (\p{N}, Rust's char::is_numeric) isolated one by one, or as contiguous runs */
static qd_status digits(qd_tokenizer *t, int k, const char *s, size_t n, int first, qd_ids *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, i = 0;
    int prev_num = -1;
    while (i < n) {
        size_t at = i;
        uint32_t cp = u[i] < 0x80 ? u[i++] : qd_utf8_next(u, n, &i);
        int num = cp < 0x80 ? (cp >= '0' && cp <= '9') : (qd_uc_flags(cp) & QD_UC_NUMBER) != 0;
        if (at > start && (num != prev_num || (num && t->pre[k].split))) {
            QD_CHECK(pre_step(t, k + 1, s + start, at - start, first && start == 0, out));
            start = at;
        }
        prev_num = num;
    }
    return pre_step(t, k + 1, s + start, n - start, first && start == 0, out);
}

/* Split by a literal: the matches and the gaps between them tile the piece (invert swaps which is
 * which); the behavior then merges or drops matches exactly as NormalizedString::split does. */
typedef struct {
    size_t a, b;
    int match;
} seg;

static qd_status split_literal(qd_tokenizer *t, int k, const char *s, size_t n, int first, qd_ids *out) {
    const qd_pre_step *ps = &t->pre[k];
    seg *v;
    QD_ALLOC(v, 2 * n + 2);
    size_t m = 0, prev = 0;
    const char *p = s;
    while (ps->pat_len && (p = memmem(p, n - (size_t)(p - s), ps->pat, ps->pat_len))) {
        size_t at = (size_t)(p - s);
        if (at > prev) v[m++] = (seg){prev, at, 0};
        v[m++] = (seg){at, at + ps->pat_len, 1};
        prev = at + ps->pat_len;
        p = s + prev;
    }
    if (prev < n) v[m++] = (seg){prev, n, 0};
    if (ps->invert)
        for (size_t i = 0; i < m; i++) v[i].match = !v[i].match;
    /* w[] holds the pieces to emit; keep marks pieces not removed */
    size_t w = 0;
    int prev_match = 0;
    if (ps->behavior == QD_SPLIT_MERGED_NEXT) { /* folded from the right, as the library does */
        size_t r = m;
        for (size_t i = m; i-- > 0;) {
            int is_match = v[i].match;
            if (is_match && !prev_match && r < m) v[r].a = v[i].a;
            else {
                v[--r] = v[i];
                v[r].match = 0;
            }
            prev_match = is_match;
        }
        memmove(v, v + r, (m - r) * sizeof *v);
        w = m - r;
    } else {
        for (size_t i = 0; i < m; i++) {
            int merge = 0;
            if (ps->behavior == QD_SPLIT_MERGED_PREV) merge = v[i].match && !prev_match && w > 0;
            else if (ps->behavior == QD_SPLIT_CONTIGUOUS) merge = v[i].match == prev_match && w > 0;
            prev_match = v[i].match;
            if (merge) v[w - 1].b = v[i].b;
            else {
                int removed = ps->behavior == QD_SPLIT_REMOVED && v[i].match;
                v[w] = v[i];
                v[w++].match = removed;
            }
        }
    }
    qd_status st = QD_OK;
    for (size_t i = 0; i < w && st == QD_OK; i++)
        if (!v[i].match) st = pre_step(t, k + 1, s + v[i].a, v[i].b - v[i].a, first && v[i].a == 0, out);
    free(v);
    return st;
}

static qd_status pre_step(qd_tokenizer *t, int k, const char *s, size_t n, int first, qd_ids *out) {
    if (n == 0) return QD_OK; /* empty pieces are dropped between steps */
    if (k == t->npre) return qd_bpe_word(t, s, n, out);
    const qd_pre_step *ps = &t->pre[k];
    switch (ps->kind) {
    case QD_PRE_SPLIT:
        return split_then(t, k, ps->split, s, n, first, out);
    case QD_PRE_METASPACE:
        return metaspace(t, k, s, n, first, out);
    case QD_PRE_DIGITS:
        return digits(t, k, s, n, first, out);
    case QD_PRE_SPLIT_STR:
        return split_literal(t, k, s, n, first, out);
    default: /* BYTELEVEL: bytes are already the model's alphabet */
        if (ps->prefix_space && s[0] != ' ') {
            char *p = malloc(n + 2);
            if (!p) return qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory");
            p[0] = ' ';
            memcpy(p + 1, s, n);
            p[n + 1] = 0;
            qd_status st = ps->split ? split_then(t, k, QD_SPLIT_GPT2, p, n + 1, first, out)
                                     : pre_step(t, k + 1, p, n + 1, first, out);
            free(p);
            return st;
        }
        return ps->split ? split_then(t, k, QD_SPLIT_GPT2, s, n, first, out) : pre_step(t, k + 1, s, n, first, out);
    }
}

/* ---- added tokens ---- */

static int is_ws(const char *s, size_t n, size_t i, size_t *len) {
    size_t j = i;
    uint32_t cp = qd_utf8_next((const unsigned char *)s, n, &j);
    *len = j - i;
    return (qd_uc_flags(cp) & QD_UC_SPACE) != 0;
}

/* leftmost-longest match of an added token of class `normalized` at or after `from` */
static int next_added(const qd_tokenizer *t, int normalized, const char *s, size_t n, size_t from, size_t *mst,
                      size_t *men, int32_t *id) {
    const uint8_t *first = t->added_first[normalized];
    for (size_t i = from; i < n; i++) {
        if (!first[(unsigned char)s[i]]) continue;
        size_t best = 0;
        for (int k = 0; k < t->nadded; k++) {
            const qd_added_token *a = &t->added[k];
            if (a->normalized != normalized || a->len <= best || a->len > n - i) continue;
            if (memcmp(s + i, a->content, a->len) == 0) { best = a->len; *id = a->id; }
        }
        if (best) {
            *mst = i;
            *men = i + best;
            return 1;
        }
    }
    return 0;
}

static const qd_added_token *added_by_id(const qd_tokenizer *t, int32_t id, int normalized) {
    for (int k = 0; k < t->nadded; k++)
        if (t->added[k].id == id && t->added[k].normalized == normalized) return &t->added[k];
    return NULL;
}

typedef qd_status (*piece_fn)(qd_tokenizer *t, const char *s, size_t n, int first, qd_ids *out);

static qd_status split_added(qd_tokenizer *t, int normalized, const char *s, size_t n, int first, piece_fn fn,
                             qd_ids *out) {
    size_t pos = 0, st0, en;
    int32_t id;
    while (pos < n && next_added(t, normalized, s, n, pos, &st0, &en, &id)) {
        const qd_added_token *a = added_by_id(t, id, normalized);
        size_t l;
        if (a->lstrip)
            while (st0 > pos) { /* step back over whole white-space characters */
                size_t b = st0 - 1;
                while (b > pos && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
                if (!is_ws(s, n, b, &l)) break;
                st0 = b;
            }
        if (a->rstrip)
            while (en < n && is_ws(s, n, en, &l)) en += l;
        if (st0 > pos) QD_CHECK(fn(t, s + pos, st0 - pos, first && pos == 0, out));
        QD_CHECK(qd_ids_push(out, id));
        pos = en;
    }
    if (pos < n) QD_CHECK(fn(t, s + pos, n - pos, first && pos == 0, out));
    return QD_OK;
}

static qd_status pretok_piece(qd_tokenizer *t, const char *s, size_t n, int first, qd_ids *out) {
    return pre_step(t, 0, s, n, first, out);
}

static qd_status normalize_piece(qd_tokenizer *t, const char *s, size_t n, int first, qd_ids *out) {
    if (!t->nnorm) {
        if (t->has_norm_added) return split_added(t, 1, s, n, first, pretok_piece, out);
        return pre_step(t, 0, s, n, first, out);
    }
    char *norm;
    size_t nlen;
    QD_CHECK(qd_tok_normalize(t, s, n, &norm, &nlen));
    qd_status st = t->has_norm_added ? split_added(t, 1, norm, nlen, first, pretok_piece, out)
                                     : pre_step(t, 0, norm, nlen, first, out);
    free(norm);
    return st;
}

qd_status qd_tokenizer_encode(qd_tokenizer *t, const char *text, size_t len, int add_special, qd_ids *out) {
    char *fixed = NULL;
    if (qd_utf8_valid_prefix((const unsigned char *)text, len) != len) {
        size_t flen;
        QD_CHECK(qd_utf8_sanitize((const unsigned char *)text, len, &fixed, &flen, NULL));
        text = fixed;
        len = flen;
    }
    qd_status st = QD_OK;
    if (add_special)
        for (int k = 0; k < t->ntmpl_pre && st == QD_OK; k++) st = qd_ids_push(out, t->tmpl_pre[k]);
    if (st == QD_OK) {
        if (t->has_raw_added) st = split_added(t, 0, text, len, 1, normalize_piece, out);
        else st = normalize_piece(t, text, len, 1, out);
    }
    if (add_special)
        for (int k = 0; k < t->ntmpl_post && st == QD_OK; k++) st = qd_ids_push(out, t->tmpl_post[k]);
    free(fixed);
    return st;
}
