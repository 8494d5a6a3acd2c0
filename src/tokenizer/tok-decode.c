/* SPDX-License-Identifier: MIT
 * Decoding: ids -> token strings (special tokens dropped when asked) -> the decoder chain, each
 * step mapping a list of strings to a new list as in the tokenizers library -> concatenation.
 * Without a decoder the tokens are joined with single spaces, as that library does. */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "tok-internal.h"
#include "tok-unicode.h"

typedef struct {
    char **s;
    size_t *len;
    size_t n;
} strlist;

static void sl_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->len);
    l->s = NULL;
    l->len = NULL;
    l->n = 0;
}

static qd_status sl_init(strlist *l, size_t cap) {
    l->n = 0;
    l->s = calloc(cap ? cap : 1, sizeof *l->s);
    l->len = calloc(cap ? cap : 1, sizeof *l->len);
    if (!l->s || !l->len) {
        free(l->s);
        free(l->len);
        return qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory decoding %zu tokens", cap);
    }
    return QD_OK;
}

/* takes ownership of s */
static void sl_add(strlist *l, char *s, size_t n) {
    l->s[l->n] = s;
    l->len[l->n++] = n;
}

static qd_status dup_n(const char *s, size_t n, char **out) {
    char *o;
    QD_ALLOC(o, n + 1);
    memcpy(o, s, n);
    *out = o;
    return QD_OK;
}

static qd_status concat(const strlist *l, const char *sep, char **out, size_t *out_len) {
    size_t total = 0, sl = strlen(sep);
    for (size_t i = 0; i < l->n; i++) total += l->len[i] + sl;
    char *o;
    QD_ALLOC(o, total + 1);
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (i && sl) { memcpy(o + j, sep, sl); j += sl; }
        memcpy(o + j, l->s[i], l->len[i]);
        j += l->len[i];
    }
    o[j] = 0;
    *out = o;
    *out_len = j;
    return QD_OK;
}

static qd_status replace_tok(const char *s, size_t n, const char *a, size_t alen, const char *b, size_t blen,
                             char **out, size_t *out_len) {
    char *o;
    QD_ALLOC(o, n * (blen > alen ? blen : 1) + 1);
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

/* <0xXX> -> the byte, else -1 */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static qd_status flush_bytes(strlist *out, unsigned char *bytes, size_t *nb) {
    if (!*nb) return QD_OK;
    if (qd_utf8_valid_prefix(bytes, *nb) == *nb) {
        char *s;
        QD_CHECK(dup_n((const char *)bytes, *nb, &s));
        sl_add(out, s, *nb);
    } else
        for (size_t k = 0; k < *nb; k++) { /* one U+FFFD per byte, as the ByteFallback decoder does */
            char *s;
            QD_CHECK(dup_n("\xEF\xBF\xBD", 3, &s));
            sl_add(out, s, 3);
        }
    *nb = 0;
    return QD_OK;
}

static qd_status step(const qd_dec_step *d, strlist *in, strlist *out) {
    QD_CHECK(sl_init(out, in->n + 1));
    if (d->kind == QD_DEC_FUSE || d->kind == QD_DEC_BYTELEVEL) {
        char *s;
        size_t n;
        if (d->kind == QD_DEC_FUSE) QD_CHECK(concat(in, "", &s, &n));
        else {
            size_t total = 0;
            for (size_t i = 0; i < in->n; i++) total += in->len[i];
            unsigned char *raw;
            QD_ALLOC(raw, total + 1);
            size_t j = 0;
            for (size_t i = 0; i < in->n; i++) {
                /* a token with a character outside the byte map contributes its UTF-8 as is */
                size_t p = 0, j0 = j;
                const unsigned char *tk = (const unsigned char *)in->s[i];
                int ok = 1;
                while (p < in->len[i]) {
                    int b = qd_cp_to_byte(qd_utf8_next(tk, in->len[i], &p));
                    if (b < 0) { ok = 0; break; }
                    raw[j++] = (unsigned char)b;
                }
                if (!ok) {
                    j = j0;
                    memcpy(raw + j, tk, in->len[i]);
                    j += in->len[i];
                }
            }
            qd_status st = qd_utf8_sanitize(raw, j, &s, &n, NULL);
            free(raw);
            QD_CHECK(st);
        }
        sl_add(out, s, n);
        return QD_OK;
    }
    if (d->kind == QD_DEC_BYTEFALLBACK) {
        unsigned char *bytes;
        size_t nb = 0;
        QD_ALLOC(bytes, in->n + 1);
        qd_status st = QD_OK;
        /* the output can hold more entries than the input (one U+FFFD per byte) */
        free(out->s);
        free(out->len);
        if ((st = sl_init(out, in->n * 1 + in->n + 1)) != QD_OK) { free(bytes); return st; }
        for (size_t i = 0; i < in->n && st == QD_OK; i++) {
            int b = byte_token(in->s[i], in->len[i]);
            if (b >= 0) { bytes[nb++] = (unsigned char)b; continue; }
            st = flush_bytes(out, bytes, &nb);
            if (st == QD_OK) { sl_add(out, in->s[i], in->len[i]); in->s[i] = NULL; }
        }
        if (st == QD_OK) st = flush_bytes(out, bytes, &nb);
        free(bytes);
        return st;
    }
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->s[i];
        size_t n = in->len[i], a = 0, b = n;
        char *o;
        size_t olen;
        switch (d->kind) {
        case QD_DEC_REPLACE:
            QD_CHECK(replace_tok(s, n, d->a, d->alen, d->b, d->blen, &o, &olen));
            break;
        case QD_DEC_METASPACE: /* the first token loses every replacement char unless the scheme is never */
            QD_CHECK(replace_tok(s, n, d->a, d->alen, (i == 0 && d->start != QD_PREPEND_NEVER) ? "" : " ",
                                 (i == 0 && d->start != QD_PREPEND_NEVER) ? 0 : 1, &o, &olen));
            break;
        default: /* STRIP: up to `start` leading and `stop` trailing copies of the content character */
            for (int k = 0; k < d->start && a + d->alen <= b && memcmp(s + a, d->a, d->alen) == 0; k++) a += d->alen;
            for (int k = 0; k < d->stop && b >= a + d->alen && memcmp(s + b - d->alen, d->a, d->alen) == 0; k++)
                b -= d->alen;
            QD_CHECK(dup_n(s + a, b - a, &o));
            olen = b - a;
            break;
        }
        sl_add(out, o, olen);
    }
    return QD_OK;
}

qd_status qd_tokenizer_decode(const qd_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out,
                              size_t *out_len) {
    strlist cur;
    QD_CHECK(sl_init(&cur, n));
    qd_status st = QD_OK;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->nvocab || !t->id_tok[id]) {
            st = qd_fail(QD_ERR_FORMAT, "tokenizer: id %d at position %zu is not in the vocabulary (size %d)", id, i,
                         t->nvocab);
            goto done;
        }
        if (skip_special && t->is_special[id]) continue;
        char *s;
        QD_CHECK_GOTO(dup_n(t->id_tok[id], t->id_len[id], &s), st, done);
        sl_add(&cur, s, t->id_len[id]);
    }
    if (!t->has_decoder) {
        st = concat(&cur, " ", out, out_len);
        goto done;
    }
    for (int k = 0; k < t->ndec; k++) {
        strlist next = {0};
        st = step(&t->dec[k], &cur, &next);
        sl_free(&cur);
        cur = next;
        if (st != QD_OK) goto done;
    }
    st = concat(&cur, "", out, out_len);
done:
    sl_free(&cur);
    return st;
}
