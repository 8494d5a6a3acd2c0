/* SPDX-License-Identifier: MIT
 * SHA-256 against the FIPS 180-2 appendix B test vectors (independent of qdist), including a
 * message fed in uneven pieces across block boundaries. tests/py/test_calib.py also checks the
 * calibration fingerprint against Python's hashlib. */
#include <string.h>

#include "qd-sha256.h"
#include "qd-test.h"

static void check(const char *msg, const char *want) {
    qd_sha256_ctx c;
    uint8_t d[32];
    char hex[65];
    qd_sha256_init(&c);
    qd_sha256_update(&c, msg, strlen(msg));
    qd_sha256_final(&c, d);
    qd_sha256_to_hex(d, hex);
    QD_EXPECT_STR_CONTAINS(hex, want);
}

static void test_vectors(void) {
    check("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a_in_pieces(void) {
    qd_sha256_ctx c;
    qd_sha256_init(&c);
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    size_t done = 0, step = 1;
    while (done < 1000000) {
        size_t n = step < 1000000 - done ? step : 1000000 - done;
        if (n > sizeof chunk) n = sizeof chunk;
        qd_sha256_update(&c, chunk, n);
        done += n;
        step = step * 7 % 997 + 1; /* uneven piece sizes */
    }
    uint8_t d[32];
    char hex[65];
    qd_sha256_final(&c, d);
    qd_sha256_to_hex(d, hex);
    QD_EXPECT_STR_CONTAINS(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void) {
    QD_RUN(test_vectors);
    QD_RUN(test_million_a_in_pieces);
    return QD_TEST_END();
}
