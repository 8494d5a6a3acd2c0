/* SPDX-License-Identifier: MIT
 * qd-hash64.h - a fast 64-bit non-cryptographic hash of a byte range (four 64-bit lanes, multiply and
 * rotate, in the manner of xxHash64; not xxHash64's exact values). Used to notice that tensor bytes
 * changed between a staged block and a --resume: fast enough (several GB/s) to run over every byte a
 * rank reads. Not a defence against a deliberate collision.
 */
#ifndef QD_HASH64_H
#define QD_HASH64_H

#include <stddef.h>
#include <stdint.h>

uint64_t qd_hash64(const void *data, size_t n);

#endif
