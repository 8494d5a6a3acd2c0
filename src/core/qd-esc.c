/* SPDX-License-Identifier: MIT */
#include "qd-esc.h"

#include <string.h>

/* length of the valid UTF-8 sequence at s (1..4), 0 when invalid; C1 controls count as invalid */
static size_t utf8_ok(const unsigned char *s) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (!n || c > 0xF4) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 2 && c == 0xC2 && s[1] < 0xA0) return 0;                 /* U+0080..U+009F */
    if (n == 3 && ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))) return 0; /* overlong, surrogate */
    if (n == 4 && ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))) return 0;
    return n;
}

const char *qd_esc(const char *s, char *buf, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    if (!s) s = "(null)";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p) {
        size_t n = utf8_ok(p);
        int ctl = n == 1 && (*p < 0x20 || *p == 0x7F);
        size_t need = n && !ctl ? n : 4;
        if (o + need + 4 > cap) { /* room for "..." and the NUL */
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (n && !ctl) {
            memcpy(buf + o, p, n);
            o += n;
            p += n;
        } else {
            buf[o++] = '\\', buf[o++] = 'x', buf[o++] = hex[*p >> 4], buf[o++] = hex[*p & 15];
            p++;
        }
    }
    buf[o] = 0;
    return buf;
}
