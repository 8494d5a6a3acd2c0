/* SPDX-License-Identifier: MIT
 * qd-sha256.h - SHA-256 (FIPS 180-4), streaming. Used for a run's fingerprint: the calibration token
 * ids (so two runs can be proven to have used the same calibration) and the model's safetensors
 * headers and .json files (shard/h5stage-fingerprint.c); the digest of the same bytes equals
 * Python's hashlib.sha256. Init, update any number of times, then final (which writes 32 bytes).
 */
#ifndef QD_SHA256_H
#define QD_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t buf[64];
    size_t nbuf;
} qd_sha256_ctx;

void qd_sha256_init(qd_sha256_ctx *c);
void qd_sha256_update(qd_sha256_ctx *c, const void *data, size_t n);
void qd_sha256_final(qd_sha256_ctx *c, uint8_t out[32]);
/* the digest as 64 lowercase hex digits + NUL (a one-shot qd_sha256_hex lives in shard/qd-h5stage.h) */
void qd_sha256_to_hex(const uint8_t digest[32], char hex[65]);

#endif
