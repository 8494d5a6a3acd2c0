/* SPDX-License-Identifier: MIT
 * Open-addressing maps for the vocab and the merges (linear probing, power-of-two tables). */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "tok-hash.h"

static size_t table_size(size_t expected) {
    size_t n = 16;
    while (n < expected * 2 + 1) n <<= 1;
    return n;
}

qd_status qd_strmap_init(qd_strmap *m, size_t expected) {
    size_t n = table_size(expected);
    QD_ALLOC(m->slots, n);
    m->mask = n - 1;
    return QD_OK;
}

void qd_strmap_free(qd_strmap *m) {
    free(m->slots);
    m->slots = NULL;
}

int qd_strmap_put(qd_strmap *m, const char *key, size_t len, int32_t val) {
    size_t i = qd_hash_bytes(key, len) & m->mask;
    for (;;) {
        qd_strmap_slot *s = &m->slots[i];
        if (!s->key) {
            s->key = key;
            s->len = (uint32_t)len;
            s->val = val;
            return 1;
        }
        if (s->len == len && memcmp(s->key, key, len) == 0) return 0;
        i = (i + 1) & m->mask;
    }
}

qd_status qd_pairmap_init(qd_pairmap *m, size_t expected) {
    size_t n = table_size(expected);
    QD_ALLOC(m->slots, n);
    m->mask = n - 1;
    return QD_OK;
}

void qd_pairmap_free(qd_pairmap *m) {
    free(m->slots);
    m->slots = NULL;
}

void qd_pairmap_put(qd_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = qd_hash_u64(k) & m->mask;
    for (;;) {
        qd_pairmap_slot *s = &m->slots[i];
        if (!s->key) {
            s->key = k;
            s->rank = rank;
            s->id = id;
            return;
        }
        if (s->key == k) { /* a repeated merge: the later one wins, as in the tokenizers library */
            s->rank = rank;
            s->id = id;
            return;
        }
        i = (i + 1) & m->mask;
    }
}
