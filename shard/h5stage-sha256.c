/* SPDX-License-Identifier: MIT
 * qd_sha256_hex: the one-shot digest the fingerprint uses, over src/core's streaming SHA-256. */
#include "qd-h5stage.h"
#include "qd-sha256.h"

void qd_sha256_hex(const void *data, size_t len, char out[65]) {
    qd_sha256_ctx c;
    uint8_t digest[32];
    qd_sha256_init(&c);
    qd_sha256_update(&c, data, len);
    qd_sha256_final(&c, digest);
    qd_sha256_to_hex(digest, out);
}
