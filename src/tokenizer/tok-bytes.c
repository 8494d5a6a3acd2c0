/* SPDX-License-Identifier: MIT
 * The GPT-2 byte <-> unicode map: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * take U+0100.. in ascending order (space -> U+0120 'Ġ', newline -> U+010A 'Ċ'). */
#include "tok-internal.h"

static int self_mapped(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t qd_byte_to_cp(uint8_t b) {
    if (self_mapped(b)) return b;
    uint32_t n = 0;
    for (unsigned k = 0; k < b; k++) n += !self_mapped(k);
    return 256 + n;
}

int qd_cp_to_byte(uint32_t cp) {
    if (cp < 256) return self_mapped(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (unsigned k = 0; k < 256; k++)
        if (!self_mapped(k) && n-- == 0) return (int)k;
    return -1;
}
