/* SPDX-License-Identifier: MIT
 * BPE on one pre-token: initial symbols (bytes for byte-level, characters with byte fallback /
 * unk for SentencePiece style), then repeatedly merge the adjacent pair of lowest rank, leftmost
 * first - a binary heap of candidate merges over a linked list of symbols, as the tokenizers
 * library does. Results for short words go to a direct-mapped cache. */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "tok-internal.h"
#include "tok-unicode.h"

typedef struct {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int32_t alive;
} sym;

typedef struct {
    int32_t rank, pos, id;
} cand;

static inline int cand_less(const cand *a, const cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && cand_less(&h[r], best)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

static qd_status ensure_syms(qd_tokenizer *t, size_t n) {
    if (n <= t->sym_cap) return QD_OK;
    size_t cap = t->sym_cap ? t->sym_cap : 64;
    while (cap < n) cap *= 2;
    free(t->syms);
    free(t->heap);
    t->syms = malloc(cap * sizeof(sym));
    t->heap = malloc(cap * 3 * sizeof(cand)); /* n-1 initial pairs + 2 per merge */
    if (!t->syms || !t->heap) {
        t->sym_cap = 0;
        return qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory for a %zu-symbol word", n);
    }
    t->sym_cap = cap;
    return QD_OK;
}

static inline void try_pair(const qd_tokenizer *t, sym *sy, int32_t pos, cand *h, size_t *nh) {
    int32_t nx = sy[pos].next;
    if (nx < 0) return;
    const qd_pairmap_slot *m = qd_pairmap_get(&t->merges, sy[pos].id, sy[nx].id);
    if (m) heap_push(h, nh, (cand){m->rank, pos, m->id});
}

/* the initial symbols: returns the count in *ns */
static qd_status initial_symbols(qd_tokenizer *t, const unsigned char *s, size_t n, sym *sy, size_t *ns) {
    size_t k = 0, i = 0;
    int last_unk = 0;
    while (i < n) {
        int32_t id;
        size_t start = i;
        if (t->byte_level) {
            id = t->byte_id[s[i]];
            i++;
        } else {
            size_t l = (size_t)qd_utf8_len(s[i]);
            if (i + l > n) l = n - i;
            i += l;
            id = qd_strmap_get(&t->vocab, s + start, l);
        }
        if (id >= 0) {
            sy[k++] = (sym){id, 0, 0, 1};
            last_unk = 0;
            continue;
        }
        if (t->byte_fallback) {
            int all = 1;
            for (size_t b = start; b < i; b++) all &= t->byte_id[s[b]] >= 0;
            if (all) {
                for (size_t b = start; b < i; b++) sy[k++] = (sym){t->byte_id[s[b]], 0, 0, 1};
                last_unk = 0;
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (!(t->fuse_unk && last_unk)) sy[k++] = (sym){t->unk_id, 0, 0, 1};
            last_unk = 1;
        }
        /* no unk token: the character is dropped, as in the tokenizers library */
    }
    *ns = k;
    return QD_OK;
}

qd_status qd_bpe_word(qd_tokenizer *t, const char *str, size_t n, qd_ids *out) {
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return QD_OK;
    if (n > QD_TOK_MAX_WORD_BYTES)
        return qd_fail(QD_ERR_FORMAT, "tokenizer: a word of %zu bytes after pre-tokenization is longer than the %zu MiB "
                       "cap (QD_TOK_MAX_WORD_BYTES); split the text", n, QD_TOK_MAX_WORD_BYTES >> 20);
    if (t->ignore_merges) {
        int32_t id = qd_strmap_get(&t->vocab, s, n);
        if (id >= 0) return qd_ids_push(out, id);
    }
    uint64_t h = 0;
    qd_cache_slot *slot = NULL;
    if (n <= QD_CACHE_KEY && t->cache) {
        h = qd_hash_bytes(s, n);
        slot = &t->cache[h & (QD_CACHE_SLOTS - 1)];
        if (slot->hash == h && slot->klen == n && memcmp(slot->key, s, n) == 0) {
            for (int k = 0; k < slot->nids; k++) QD_CHECK(qd_ids_push(out, slot->ids[k]));
            return QD_OK;
        }
    }
    QD_CHECK(ensure_syms(t, n + 1)); /* at most one symbol per byte, byte fallback included */
    sym *sy = t->syms;
    cand *hp = t->heap;
    size_t ns = 0, nh = 0;
    QD_CHECK(initial_symbols(t, s, n, sy, &ns));
    for (size_t k = 0; k < ns; k++) {
        sy[k].prev = (int32_t)k - 1;
        sy[k].next = k + 1 < ns ? (int32_t)k + 1 : -1;
    }
    for (size_t k = 0; k + 1 < ns; k++) try_pair(t, sy, (int32_t)k, hp, &nh);
    while (nh) {
        cand c = heap_pop(hp, &nh);
        sym *a = &sy[c.pos];
        if (!a->alive || a->next < 0) continue;
        const qd_pairmap_slot *m = qd_pairmap_get(&t->merges, a->id, sy[a->next].id);
        if (!m || m->id != c.id) continue; /* stale: one side merged since */
        sym *b = &sy[a->next];
        a->id = c.id;
        b->alive = 0;
        a->next = b->next;
        if (b->next >= 0) sy[b->next].prev = c.pos;
        if (a->prev >= 0) try_pair(t, sy, a->prev, hp, &nh);
        try_pair(t, sy, c.pos, hp, &nh);
    }
    size_t before = out->n;
    for (int32_t k = ns ? 0 : -1; k >= 0; k = sy[k].next) QD_CHECK(qd_ids_push(out, sy[k].id));
    if (slot && out->n - before <= QD_CACHE_IDS) {
        slot->hash = h;
        slot->klen = (uint8_t)n;
        memcpy(slot->key, s, n);
        slot->nids = (uint8_t)(out->n - before);
        memcpy(slot->ids, out->ids + before, slot->nids * sizeof(int32_t));
    }
    return QD_OK;
}
