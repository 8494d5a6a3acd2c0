/* SPDX-License-Identifier: MIT
 * tok-hash.h - the two open-addressing maps BPE needs: byte string -> token id (vocab) and
 * token pair -> (merge rank, merged id). Keys are borrowed: the string map stores pointers into
 * memory the caller keeps alive. Tables are sized once (load <= 1/2) and never grow.
 */
#ifndef QD_TOK_HASH_H
#define QD_TOK_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "qd-status.h"

typedef struct {
    const char *key;
    uint32_t len;
    int32_t val;
} qd_strmap_slot;

typedef struct {
    qd_strmap_slot *slots;
    size_t mask;
} qd_strmap;

typedef struct {
    uint64_t key; /* (a << 32 | b) + 1, 0 = empty */
    int32_t rank;
    int32_t id;
} qd_pairmap_slot;

typedef struct {
    qd_pairmap_slot *slots;
    size_t mask;
} qd_pairmap;

static inline uint64_t qd_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}
static inline uint64_t qd_hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

qd_status qd_strmap_init(qd_strmap *m, size_t expected);
void qd_strmap_free(qd_strmap *m);
/* Inserts or keeps the first value: returns 1 if the key was new. */
int qd_strmap_put(qd_strmap *m, const char *key, size_t len, int32_t val);
static inline int32_t qd_strmap_get(const qd_strmap *m, const void *key, size_t len) {
    size_t i = qd_hash_bytes(key, len) & m->mask;
    for (;;) {
        const qd_strmap_slot *s = &m->slots[i];
        if (!s->key) return -1;
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->val;
        i = (i + 1) & m->mask;
    }
}

qd_status qd_pairmap_init(qd_pairmap *m, size_t expected);
void qd_pairmap_free(qd_pairmap *m);
/* A pair listed twice keeps the later rank, as the tokenizers library's merge map does. */
void qd_pairmap_put(qd_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
static inline const qd_pairmap_slot *qd_pairmap_get(const qd_pairmap *m, int32_t a, int32_t b) {
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = qd_hash_u64(k) & m->mask;
    for (;;) {
        const qd_pairmap_slot *s = &m->slots[i];
        if (!s->key) return NULL;
        if (s->key == k) return s;
        i = (i + 1) & m->mask;
    }
}

#endif
