/* SPDX-License-Identifier: MIT
 * qd-esc.h - a name read from a file (tensor names in a safetensors header, JSON keys, file names in a
 * model directory), made safe to print: control bytes (C0, DEL, the C1 range U+0080..U+009F) and bytes
 * that are not valid UTF-8 become \xHH, so an escape sequence in a name never reaches the terminal.
 * The result is written into buf (cap >= 8) and returned; a name too long for buf ends in "...".
 * QD_ESC(s) does the same into a buffer local to the enclosing statement's block: use it in a call's
 * arguments, e.g. qd_fail(..., "tensor '%s' ...", QD_ESC(name)). NULL prints as "(null)".
 */
#ifndef QD_ESC_H
#define QD_ESC_H

#include <stddef.h>

#define QD_ESC_CAP 512
const char *qd_esc(const char *s, char *buf, size_t cap);
#define QD_ESC(s) qd_esc((s), (char[QD_ESC_CAP]){0}, QD_ESC_CAP)

#endif
