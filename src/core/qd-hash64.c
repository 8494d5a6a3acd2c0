/* SPDX-License-Identifier: MIT
 * qd-hash64.c - see qd-hash64.h. */
#include "qd-hash64.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t lane(uint64_t h, uint64_t w) { return rotl(h + w * P2, 31) * P1; }

static uint64_t load64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w); /* unaligned, native order: hashes compare on one machine's files */
    return w;
}

uint64_t qd_hash64(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h[4] = {P1 + P2, P2, 0, 0 - P1}, len = (uint64_t)n;
    for (; n >= 32; p += 32, n -= 32)
        for (int i = 0; i < 4; i++) h[i] = lane(h[i], load64(p + 8 * i));
    uint64_t x = rotl(h[0], 1) + rotl(h[1], 7) + rotl(h[2], 12) + rotl(h[3], 18) + len;
    for (int i = 0; i < 4; i++) x = (x ^ lane(0, h[i])) * P1 + P3;
    for (; n >= 8; p += 8, n -= 8) x = rotl(x ^ lane(0, load64(p)), 27) * P1 + P3;
    for (; n > 0; p++, n--) x = rotl(x ^ (*p * P3), 11) * P1;
    x ^= x >> 33, x *= P2, x ^= x >> 29, x *= P3, x ^= x >> 32;
    return x;
}
