/* SPDX-License-Identifier: MIT
 * UTF-8 validation and the lossy repair used for input files and byte-level decoding.
 * "Maximal subpart" rule: a truncated but otherwise well-formed prefix of a sequence becomes one
 * U+FFFD; any other bad byte becomes one U+FFFD each (Unicode 3.9, what Python and Rust do). */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "tok-unicode.h"

int qd_utf8_put(uint32_t cp, unsigned char *o) {
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid sequence at s[i] (0 if invalid); *sub gets the length of the maximal
 * subpart to replace when invalid (>= 1). */
static size_t seq_at(const unsigned char *s, size_t n, size_t i, size_t *sub) {
    unsigned c = s[i];
    *sub = 1;
    if (c < 0x80) return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return 0;
    for (size_t k = 1; k <= need; k++) {
        if (i + k >= n) { *sub = k; return 0; }
        unsigned b = s[i + k];
        unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) { *sub = k; return 0; }
    }
    return need + 1;
}

size_t qd_utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0, sub;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t l = seq_at(s, n, i, &sub);
        if (!l) return i;
        i += l;
    }
    return n;
}

qd_status qd_utf8_sanitize(const unsigned char *s, size_t n, char **out, size_t *out_len, size_t *nbad) {
    size_t bad = 0, ok = qd_utf8_valid_prefix(s, n);
    unsigned char *o;
    /* worst case: every byte becomes 3 bytes of U+FFFD */
    QD_ALLOC(o, (ok == n ? n : n * 3) + 1);
    memcpy(o, s, ok);
    size_t j = ok, i = ok, sub;
    while (i < n) {
        size_t l = s[i] < 0x80 ? 1 : seq_at(s, n, i, &sub);
        if (l) { memcpy(o + j, s + i, l); j += l; i += l; continue; }
        o[j++] = 0xEF; o[j++] = 0xBF; o[j++] = 0xBD;
        bad++;
        i += sub;
    }
    o[j] = 0;
    *out = (char *)o;
    *out_len = j;
    if (nbad) *nbad = bad;
    return QD_OK;
}
