/* SPDX-License-Identifier: MIT
 * Known answers from outside qdist: stories260K's ids documented in fixtures/SOURCES.md
 * (llama2.c's encoder), NFC examples of Unicode Standard Annex #15, UTF-8 repair per the Unicode
 * "maximal subpart" practice (the same bytes tests/py/test_tokenizer_cli.py checks against Python).
 * The broad comparison with the `tokenizers` library is tests/py/test_tokenizer_exact.py. */
#include <stdlib.h>
#include <string.h>

#include "qd-log.h"
#include "qd-test.h"
#include "qd-tokenizer.h"
#include "tok-unicode.h"

static void test_stories260k(void) {
    char path[1024];
    if (!qd_fixture(path, sizeof path, "stories260K-hf/tokenizer.json")) return;
    qd_tokenizer *t;
    QD_EXPECT_EQ_INT(qd_tokenizer_load(path, &t), QD_OK);
    if (!t) return;
    qd_ids ids = {0};
    /* SOURCES.md: "<s> Once upon a time" -> [1, 403, 407, 261, 378], i.e. BOS + the text */
    const char *text = "Once upon a time";
    QD_EXPECT_EQ_INT(qd_tokenizer_encode(t, text, strlen(text), 1, &ids), QD_OK);
    static const int32_t want[] = {1, 403, 407, 261, 378};
    QD_EXPECT_EQ_INT(ids.n, 5);
    QD_EXPECT(ids.n == 5 && memcmp(ids.ids, want, sizeof want) == 0);
    char *back;
    size_t blen;
    QD_EXPECT_EQ_INT(qd_tokenizer_decode(t, ids.ids, ids.n, 1, &back, &blen), QD_OK);
    QD_EXPECT_STR_CONTAINS(back, "Once upon a time");
    free(back);
    QD_EXPECT_EQ_INT(qd_tokenizer_vocab_size(t), 512);
    QD_EXPECT_EQ_INT(qd_tokenizer_bos_id(t), 1);
    QD_EXPECT_EQ_INT(qd_tokenizer_token_to_id(t, "</s>"), 2);
    qd_ids_free(&ids);
    qd_tokenizer_free(t);
}

static void nfc_is(const char *in, const char *want) {
    char *out;
    size_t n;
    QD_EXPECT_EQ_INT(qd_nfc(in, strlen(in), &out, &n), QD_OK);
    QD_EXPECT_EQ_INT(n, strlen(want));
    QD_EXPECT(n == strlen(want) && memcmp(out, want, n) == 0);
    free(out);
}

static void test_nfc_uax15(void) {
    nfc_is("e\xCC\x81", "\xC3\xA9");                           /* e + acute -> é */
    nfc_is("\xE2\x84\xAB", "\xC3\x85");                         /* ANGSTROM SIGN -> Å (singleton) */
    nfc_is("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"); /* Hangul L V T -> 각 */
    nfc_is("\xE1\xB8\x8B\xCC\xA3", "\xE1\xB8\x8D\xCC\x87");     /* d-dot-above + dot-below -> d-dot-below + dot-above */
    nfc_is("q\xCC\x87\xCC\xA3", "q\xCC\xA3\xCC\x87");           /* reordered, no composite */
    nfc_is("\xEF\xAC\x81", "\xEF\xAC\x81");                     /* ﬁ: compatibility only, kept */
    nfc_is("plain ascii", "plain ascii");
}

static void repair_is(const char *in, size_t n, const char *want, size_t nbad_want) {
    char *out;
    size_t len, nbad;
    QD_EXPECT_EQ_INT(qd_utf8_sanitize((const unsigned char *)in, n, &out, &len, &nbad), QD_OK);
    QD_EXPECT(len == strlen(want) && memcmp(out, want, len) == 0);
    QD_EXPECT_EQ_INT(nbad, nbad_want);
    free(out);
}

#define R "\xEF\xBF\xBD"
static void test_utf8_repair(void) {
    repair_is("ab", 2, "ab", 0);
    repair_is("a\xFF" "b", 3, "a" R "b", 1);
    repair_is("\xF0\x9F\x98", 3, R, 1);                      /* truncated 4-byte sequence: one */
    repair_is("\xC0\xAF", 2, R R, 2);                         /* overlong: each byte */
    repair_is("\xED\xA0\x80", 3, R R R, 3);                   /* UTF-8 encoded surrogate: each byte */
    repair_is("\xE2\x82" "x", 3, R "x", 1);
    repair_is("\xF4\x90\x80\x80", 4, R R R R, 4);             /* above U+10FFFF */
    QD_EXPECT_EQ_INT(qd_utf8_valid_prefix((const unsigned char *)"ok\xC3\xA9\xFF", 5), 4);
}

static void test_refusals(void) {
    qd_tokenizer *t = NULL;
    qd_clear_error();
    QD_EXPECT(qd_tokenizer_load("/nonexistent/model", &t) != QD_OK);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "/nonexistent/model does not exist");
    QD_EXPECT(t == NULL);
}

int main(void) {
    QD_RUN(test_stories260k);
    QD_RUN(test_nfc_uax15);
    QD_RUN(test_utf8_repair);
    QD_RUN(test_refusals);
    return QD_TEST_END();
}
