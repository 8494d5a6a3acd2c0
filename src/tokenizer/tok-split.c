/* SPDX-License-Identifier: MIT
 * The split regexes of GPT-2, Llama-3 and Qwen2 as scanners over code-point classes (the approach
 * of llama.cpp's unicode.cpp). Each alternative of the regex is tried in order at the current
 * position, exactly as a backtracking engine would; comments quote the alternative.
 *   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Qwen2:   as Llama-3 with \p{N} (one digit a piece).
 *   o200k:   [^\r\n\p{L}\p{N}]?U*L+C?|[^\r\n\p{L}\p{N}]?U+L*C?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|
 *            \s*[\r\n]+|\s+(?!\S)|\s+  with U = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], L = [\p{Ll}\p{Lm}\p{Lo}\p{M}],
 *            C = (?i:'s|'t|'re|'ve|'m|'ll|'d) (GPT-4o's tiktoken pattern, used by Phi-4-mini).
 *   Tekken:  o200k without the C? suffixes and with \p{N} (Mistral's tiktoken-style pattern).
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

/* [^\s\p{L}\p{N}] (marks included), never past the end */
#define OTHER(f) (((f) & (QD_UC_LETTER | QD_UC_NUMBER | QD_UC_SPACE | F_END)) == 0)
#define IS(f, x) ((f) & (x))

/* length of (?i:'s|'t|'re|'ve|'m|'ll|'d) at pos, 0 if none */
static size_t contraction(const uint32_t *cp, size_t n, size_t pos) {
    if (pos + 1 >= n || cp[pos] != '\'') return 0;
    uint32_t c1 = cp[pos + 1];
    if (lower_eq(c1, 's', 1) || lower_eq(c1, 't', 1) || lower_eq(c1, 'm', 1) || lower_eq(c1, 'd', 1)) return 2;
    if (pos + 2 >= n) return 0;
    uint32_t c2 = cp[pos + 2];
    if ((lower_eq(c1, 'r', 1) && lower_eq(c2, 'e', 1)) || (lower_eq(c1, 'v', 1) && lower_eq(c2, 'e', 1)) ||
        (lower_eq(c1, 'l', 1) && lower_eq(c2, 'l', 1)))
        return 3;
    return 0;
}

/* U*L+C? from q: the engine backs off the greedy U* until L+ can start (U and L share Lm, Lo, M) */
static long o200k_alt1(const uint32_t *cp, const uint8_t *fl, size_t n, size_t q, int suffix) {
    size_t maxu = 0;
    while (fl[q + maxu] & QD_UC_UPPERISH) maxu++;
    for (size_t k = maxu + 1; k-- > 0;) {
        if (!(fl[q + k] & QD_UC_LOWERISH)) continue;
        size_t end = q + k;
        while (fl[end] & QD_UC_LOWERISH) end++;
        return (long)(end + (suffix ? contraction(cp, n, end) : 0));
    }
    return -1;
}

/* U+L*C? from q */
static long o200k_alt2(const uint32_t *cp, const uint8_t *fl, size_t n, size_t q, int suffix) {
    if (!(fl[q] & QD_UC_UPPERISH)) return -1;
    size_t end = q;
    while (fl[end] & QD_UC_UPPERISH) end++;
    while (fl[end] & QD_UC_LOWERISH) end++;
    return (long)(end + (suffix ? contraction(cp, n, end) : 0));
}

static size_t split_cps(const uint32_t *cp, const uint8_t *fl, size_t n, int kind, uint32_t *ends) {
    size_t np = 0, pos = 0;
    int fold = kind != QD_SPLIT_GPT2;
#define EMIT(p) (ends[np++] = (uint32_t)(p))
    while (pos < n) {
        uint32_t c = cp[pos];
        unsigned f = fl[pos];
        int tiktoken = kind == QD_SPLIT_O200K || kind == QD_SPLIT_TEKKEN;
        if (tiktoken) {
            /* [^\r\n\p{L}\p{N}]? tried with the character first, then without, for each alternative */
            int p_ok = c != '\r' && c != '\n' && !(f & (QD_UC_LETTER | QD_UC_NUMBER | F_END));
            int sfx = kind == QD_SPLIT_O200K;
            long e = p_ok ? o200k_alt1(cp, fl, n, pos + 1, sfx) : -1;
            if (e < 0) e = o200k_alt1(cp, fl, n, pos, sfx);
            if (e < 0 && p_ok) e = o200k_alt2(cp, fl, n, pos + 1, sfx);
            if (e < 0) e = o200k_alt2(cp, fl, n, pos, sfx);
            if (e > 0) { pos = (size_t)e; EMIT(pos); continue; }
        }
        /* contractions */
        if (!tiktoken && c == '\'' && pos + 1 < n) {
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
            /* [^\r\n\p{L}\p{N}]?\p{L}+ (o200k's letter alternatives were tried above) */
            if (!tiktoken && !(c == '\r' || c == '\n' || IS(f, QD_UC_NUMBER)) &&
                (IS(f, QD_UC_LETTER) || IS(fl[pos + 1], QD_UC_LETTER))) {
                pos++;
                while (IS(fl[pos], QD_UC_LETTER)) pos++;
                EMIT(pos); continue;
            }
            /* \p{N}{1,3} or \p{N} */
            if (IS(f, QD_UC_NUMBER)) {
                size_t maxrun = (kind == QD_SPLIT_QWEN2 || kind == QD_SPLIT_TEKKEN) ? 1 : 3, run = 0;
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
                while (pos < n && (cp[pos] == '\r' || cp[pos] == '\n' || (tiktoken && cp[pos] == '/')))
                    pos++;
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
        ['A'] = 9, ['B'] = 9, ['C'] = 9, ['D'] = 9, ['E'] = 9, ['F'] = 9, ['G'] = 9, ['H'] = 9, ['I'] = 9,
        ['J'] = 9, ['K'] = 9, ['L'] = 9, ['M'] = 9, ['N'] = 9, ['O'] = 9, ['P'] = 9, ['Q'] = 9, ['R'] = 9,
        ['S'] = 9, ['T'] = 9, ['U'] = 9, ['V'] = 9, ['W'] = 9, ['X'] = 9, ['Y'] = 9, ['Z'] = 9,
        ['a'] = 17, ['b'] = 17, ['c'] = 17, ['d'] = 17, ['e'] = 17, ['f'] = 17, ['g'] = 17, ['h'] = 17, ['i'] = 17,
        ['j'] = 17, ['k'] = 17, ['l'] = 17, ['m'] = 17, ['n'] = 17, ['o'] = 17, ['p'] = 17, ['q'] = 17, ['r'] = 17,
        ['s'] = 17, ['t'] = 17, ['u'] = 17, ['v'] = 17, ['w'] = 17, ['x'] = 17, ['y'] = 17, ['z'] = 17,
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
