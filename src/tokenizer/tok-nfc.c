/* SPDX-License-Identifier: MIT
 * NFC: full canonical decomposition (tables + Hangul arithmetic), canonical ordering by combining
 * class, then canonical composition with the primary composites. Runs of code points below U+0300
 * are already NFC and are copied without work, so ASCII text costs one scan. */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "tok-unicode.h"

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21,
       TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int find_decomp(uint32_t cp) {
    int lo = 0, hi = qd_uc_ndecomp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (qd_uc_decomp[mid][0] == cp) return mid;
        if (qd_uc_decomp[mid][0] < cp) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

static uint32_t find_comp(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = qd_uc_ncomp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uint32_t *e = qd_uc_comp[mid];
        if (e[0] == a && e[1] == b) return e[2];
        if (e[0] < a || (e[0] == a && e[1] < b)) lo = mid + 1; else hi = mid - 1;
    }
    return 0;
}

/* append the full decomposition of cp to buf (capacity checked by caller: at most 18 per cp) */
static size_t decompose(uint32_t cp, uint32_t *buf) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE, t = s % TCOUNT;
        buf[0] = LBASE + s / NCOUNT;
        buf[1] = VBASE + (s % NCOUNT) / TCOUNT;
        if (t) { buf[2] = TBASE + t; return 3; }
        return 2;
    }
    int k = cp < 0xC0 ? -1 : find_decomp(cp);
    if (k < 0) { buf[0] = cp; return 1; }
    size_t m = decompose(qd_uc_decomp[k][1], buf);
    if (qd_uc_decomp[k][2]) m += decompose(qd_uc_decomp[k][2], buf + m);
    return m;
}

qd_status qd_nfc(const char *str, size_t n, char **out, size_t *out_len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n && s[i] < 0xCC) i++; /* U+0300 is 0xCC 0x80: lead bytes below are all < U+0300 */
    char *o;
    if (i == n) {
        QD_ALLOC(o, n + 1);
        memcpy(o, s, n);
        *out = o;
        *out_len = n;
        return QD_OK;
    }
    /* decompose everything into code points (NFC never needs more than 3x the decomposed length) */
    uint32_t *cps;
    size_t cap = n * 4 + 16, m = 0;
    QD_ALLOC(cps, cap);
    size_t p = 0;
    while (p < n) {
        uint32_t cp = qd_utf8_next(s, n, &p);
        if (m + 18 > cap) {
            cap *= 2;
            uint32_t *t = realloc(cps, cap * sizeof *cps);
            if (!t) { free(cps); return qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory in NFC"); }
            cps = t;
        }
        m += decompose(cp, cps + m);
    }
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t a = 1; a < m; a++) {
        unsigned ca = qd_uc_ccc(cps[a]);
        if (!ca) continue;
        size_t b = a;
        uint32_t v = cps[a];
        while (b > 0 && qd_uc_ccc(cps[b - 1]) > ca) { cps[b] = cps[b - 1]; b--; }
        cps[b] = v;
    }
    /* canonical composition */
    size_t w = 0;
    long starter = -1;
    unsigned last_ccc = 0;
    for (size_t a = 0; a < m; a++) {
        uint32_t c = cps[a];
        unsigned cc = qd_uc_ccc(c);
        if (starter >= 0) {
            int blocked = (w > (size_t)starter + 1) && (last_ccc == 0 || last_ccc >= cc);
            if (!blocked) {
                uint32_t comp = find_comp(cps[starter], c);
                if (comp) { cps[starter] = comp; continue; }
            }
        }
        if (cc == 0) { starter = (long)w; last_ccc = 0; }
        else last_ccc = cc;
        cps[w++] = c;
    }
    QD_ALLOC(o, w * 4 + 1);
    size_t j = 0;
    for (size_t a = 0; a < w; a++) j += qd_utf8_put(cps[a], (unsigned char *)o + j);
    o[j] = 0;
    free(cps);
    *out = o;
    *out_len = j;
    return QD_OK;
}
