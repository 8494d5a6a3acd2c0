/* SPDX-License-Identifier: MIT
 * qd-range.h - numeric bounds written as text "MIN..MAX" (both inclusive; MIN and MAX are C numbers,
 * MAX may carry a size suffix where the caller parses sizes). One text per bound is shared by the
 * option tables, --help and the recipe reader, so a bound is stated once. qd_range_parse splits on
 * the first ".." (a number like "0." never swallows it) and returns 0, or -1 for a malformed spec.
 */
#ifndef QD_RANGE_H
#define QD_RANGE_H

/* each bound is parsed by num(text, out) -> 0 on success; NULL = strtod on the whole text */
int qd_range_parse(const char *spec, int (*num)(const char *text, double *out), double *lo, double *hi);

#endif
