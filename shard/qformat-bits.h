/* SPDX-License-Identifier: MIT
 * qformat-bits.h - (internal to shard/qformat-*.c) little-endian bit streams of b-bit fields over
 * 32-bit words: field i occupies stream bits [i*b, i*b+b), word (i*b)/32, and may straddle two words.
 * Words are handled as uint32 and stored as int32 (safetensors I32).
 */
#ifndef QD_QFORMAT_BITS_H
#define QD_QFORMAT_BITS_H

#include <stdint.h>

/* OR value v (< 2^b) into the stream `words` (stride between consecutive words) at field i */
static inline void qd__bits_put(int32_t *words, long stride, long i, int b, uint32_t v) {
    long bit = i * (long)b;
    long w = bit / 32;
    int off = (int)(bit % 32);
    uint32_t *p = (uint32_t *)&words[w * stride];
    *p |= v << off;
    if (off + b > 32) {
        uint32_t *q = (uint32_t *)&words[(w + 1) * stride];
        *q |= v >> (32 - off);
    }
}

static inline uint32_t qd__bits_get(const int32_t *words, long stride, long i, int b) {
    long bit = i * (long)b;
    long w = bit / 32;
    int off = (int)(bit % 32);
    uint32_t mask = (b == 32) ? 0xffffffffu : ((1u << b) - 1u);
    uint64_t v = (uint32_t)words[w * stride];
    if (off + b > 32) v |= (uint64_t)(uint32_t)words[(w + 1) * stride] << 32;
    return (uint32_t)(v >> off) & mask;
}

#endif
