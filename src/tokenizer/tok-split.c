/* SPDX-License-Identifier: MIT
 * The split regexes of GPT-2, Llama-3 and Qwen2 as scanners over code-point classes (the approach
 * of llama.cpp's unicode.cpp). Each alternative of the regex is tried in order at the current
 * position, exactly as a backtracking engine would; comments quote the alternative.
 *   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Qwen2:   as Llama-3 with \p{N} (one digit a piece).
 * Every code point is matched by some alternative, so the pieces tile the input. */
#include <stdlib.h>

#include "qd-check.h"
#include "tok-internal.h"
#include "tok-unicode.h"

enum { F_END = 0x80 }; /* past the end of the piece: no class, and not "other" either */

static qd_status ensure(qd_tokenizer *t, size_t n) {
    if (n + 2 <= t->scratch_cap) return QD_OK;
    size_t cap = t->scratch_cap ? t->scratch_cap : 256;
    while (cap < n + 2) cap *= 2;
    free(t->cps); free(t->flags); free(t->offs); free(t->ends);
    t->cps = malloc(cap * sizeof *t->cps);
    t->flags = malloc(cap);
    t->offs = malloc(cap * sizeof *t->offs);
    t->ends = malloc(cap * sizeof *t->ends);
    t->scratch_cap = cap;
    if (!t->cps || !t->flags || !t->offs || !t->ends) {
        t->scratch_cap = 0;
        return qd_fail(QD_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte piece", n);
    }
    return QD_OK;
}

static inline int lower_eq(uint32_t c, char want, int fold) {
    if (c == (uint32_t)want) return 1;
    if (!fold) return 0;
    if (c == (uint32_t)want - 32) return 1;
    return want == 's' && c == 0x17F; /* LATIN SMALL LETTER LONG S folds to 's' */
}

#define OTHER(f) ((f) == 0)
#define IS(f, x) ((f) & (x))

static size_t split_cps(const uint32_t *cp, const uint8_t *fl, size_t n, int kind, uint32_t *ends) {
    size_t np = 0, pos = 0;
    int fold = kind != QD_SPLIT_GPT2;
#define EMIT(p) (ends[np++] = (uint32_t)(p))
    while (pos < n) {
        uint32_t c = cp[pos];
        unsigned f = fl[pos];
        /* contractions */
        if (c == '\'' && pos + 1 < n) {
            uint32_t c1 = cp[pos + 1];
            if (lower_eq(c1, 's', fold) || lower_eq(c1, 't', fold) || lower_eq(c1, 'm', fold) ||
                lower_eq(c1, 'd', fold)) {
                pos += 2; EMIT(pos); continue;
            }
            if (pos + 2 < n) {
                uint32_t c2 = cp[pos + 2];
                if ((lower_eq(c1, 'r', fold) && lower_eq(c2, 'e', fold)) ||
                    (lower_eq(c1, 'v', fold) && lower_eq(c2, 'e', fold)) ||
                    (lower_eq(c1, 'l', fold) && lower_eq(c2, 'l', fold))) {
                    pos += 3; EMIT(pos); continue;
                }
            }
        }
        if (kind == QD_SPLIT_GPT2) {
            unsigned f2 = c == ' ' ? fl[pos + 1] : f;
            if (IS(f2, QD_UC_LETTER) || IS(f2, QD_UC_NUMBER)) { /*  ?\p{L}+ |  ?\p{N}+ */
                unsigned cls = f2 & (QD_UC_LETTER | QD_UC_NUMBER);
                pos += (c == ' ');
                while (fl[pos] & cls) pos++;
                EMIT(pos); continue;
            }
            if (OTHER(f2)) { /*  ?[^\s\p{L}\p{N}]+ */
                pos += (c == ' ');
                while (OTHER(fl[pos])) pos++;
                EMIT(pos); continue;
            }
        } else {
            /* [^\r\n\p{L}\p{N}]?\p{L}+ */
            if (!(c == '\r' || c == '\n' || IS(f, QD_UC_NUMBER)) &&
                (IS(f, QD_UC_LETTER) || IS(fl[pos + 1], QD_UC_LETTER))) {
                pos++;
                while (IS(fl[pos], QD_UC_LETTER)) pos++;
                EMIT(pos); continue;
            }
            /* \p{N}{1,3} or \p{N} */
            if (IS(f, QD_UC_NUMBER)) {
                size_t maxrun = kind == QD_SPLIT_QWEN2 ? 1 : 3, run = 0;
                while (IS(fl[pos], QD_UC_NUMBER)) {
                    pos++;
                    if (++run == maxrun) { EMIT(pos); run = 0; }
                }
                if (run) EMIT(pos);
                continue;
            }
            /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
            unsigned f2 = c == ' ' ? fl[pos + 1] : f;
            if (OTHER(f2)) {
                pos += (c == ' ');
                while (OTHER(fl[pos])) pos++;
                while (pos < n && (cp[pos] == '\r' || cp[pos] == '\n')) pos++;
                EMIT(pos); continue;
            }
            /* \s*[\r\n]+ */
            size_t k = pos, last_nl = 0;
            while (IS(fl[k], QD_UC_SPACE)) {
                if (cp[k] == '\r' || cp[k] == '\n') last_nl = k + 1;
                k++;
            }
            if (last_nl) { pos = last_nl; EMIT(pos); continue; }
        }
        size_t nws = 0;
        while (IS(fl[pos + nws], QD_UC_SPACE)) nws++;
        if (nws > 1 && pos + nws < n) { pos += nws - 1; EMIT(pos); continue; } /* \s+(?!\S) */
        if (nws > 0) { pos += nws; EMIT(pos); continue; }                     /* \s+ */
        pos++; EMIT(pos); /* not reached with these regexes; keeps the tiling total */
    }
#undef EMIT
    return np;
}

qd_status qd_pretok_split(qd_tokenizer *t, int kind, const char *str, size_t n, size_t *npieces) {
    QD_CHECK(ensure(t, n));
    const unsigned char *s = (const unsigned char *)str;
    size_t m = 0, i = 0;
    static const uint8_t ascii_flags[128] = {
        ['\t'] = QD_UC_SPACE, ['\n'] = QD_UC_SPACE, [0x0B] = QD_UC_SPACE, [0x0C] = QD_UC_SPACE,
        ['\r'] = QD_UC_SPACE, [' '] = QD_UC_SPACE,
        ['0'] = 2, ['1'] = 2, ['2'] = 2, ['3'] = 2, ['4'] = 2, ['5'] = 2, ['6'] = 2, ['7'] = 2, ['8'] = 2, ['9'] = 2,
        ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
        ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
        ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
        ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
        ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
        ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
    };
    while (i < n) {
        t->offs[m] = (uint32_t)i;
        if (s[i] < 0x80) {
            t->cps[m] = s[i];
            t->flags[m] = ascii_flags[s[i]];
            i++;
        } else {
            uint32_t c = qd_utf8_next(s, n, &i);
            t->cps[m] = c;
            t->flags[m] = (uint8_t)qd_uc_flags(c);
        }
        m++;
    }
    t->offs[m] = (uint32_t)n;
    t->cps[m] = 0;
    t->flags[m] = F_END;
    t->cps[m + 1] = 0;
    t->flags[m + 1] = F_END;
    size_t np = split_cps(t->cps, t->flags, m, kind, t->ends);
    for (size_t k = 0; k < np; k++) t->ends[k] = t->offs[t->ends[k]];
    *npieces = np;
    return QD_OK;
}
