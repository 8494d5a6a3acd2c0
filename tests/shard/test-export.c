/* SPDX-License-Identifier: MIT
 * test-export.c - the export's up-front refusals: scheme checks the quantize command calls before any
 * work, the disk-space check with its numbers, format names, and the size estimate of a packed Linear. */
#include <stdint.h>

#include "qd-export.h"
#include "qd-log.h"
#include "qd-test.h"

static void test_formats(void) {
    qd_export_format f;
    QD_EXPECT_EQ_INT(qd_export_format_parse("gptq_v2", &f), QD_OK);
    QD_EXPECT_EQ_INT(f, QD_EXPORT_GPTQ_V2);
    QD_EXPECT_EQ_INT(qd_export_format_parse("compressed-tensors", &f), QD_OK);
    QD_EXPECT_EQ_INT(f, QD_EXPORT_CT);
    QD_EXPECT_EQ_INT(qd_export_format_parse("exl2", &f), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "gptq, gptq_v2, awq, compressed-tensors or fake");
    /* fake is an export format too, and stores every scheme */
    QD_EXPECT_EQ_INT(qd_export_format_parse("fake", &f), QD_OK);
    QD_EXPECT_EQ_INT(f, QD_EXPORT_FAKE);
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_FAKE, 0, 3, -1, 1, 1), QD_OK);
    QD_EXPECT_EQ_INT(qd_export_linear_bytes(QD_EXPORT_FAKE, 0, 8, 256, 4, 128, 1, 1, 2),
                     (uint64_t)(8 * 256 * 4 + 8 * 256 + 8 * 2 * 8 + 4 * 256));
}

static void test_schemes(void) {
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_AWQ, 0, 4, 128, 0, 0), QD_OK);
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_AWQ, 0, 3, 128, 0, 0), QD_ERR_UNSUPPORTED);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "--format gptq");
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_AWQ, 0, 4, 128, 1, 0), QD_ERR_UNSUPPORTED);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "zero point");
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_AWQ, 0, 4, -1, 0, 0), QD_ERR_UNSUPPORTED);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "compressed-tensors");
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_AWQ, 0, 4, 128, 0, 1), QD_ERR_UNSUPPORTED);
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_GPTQ, 0, 3, 128, 1, 1), QD_OK);
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_GPTQ, 0, 5, 128, 1, 0), QD_ERR_UNSUPPORTED);
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_CT, 0, 3, 128, 1, 0), QD_ERR_UNSUPPORTED);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "gptq");
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_CT, 1, 3, 128, 1, 0), QD_OK);
    QD_EXPECT_EQ_INT(qd_export_check_scheme(QD_EXPORT_CT, 0, 4, 128, 1, 1), QD_ERR_UNSUPPORTED);
}

static void test_space(void) {
    QD_EXPECT_EQ_INT(qd_export_check_space(".", 1000), QD_OK);
    QD_EXPECT_EQ_INT(qd_export_check_space("./not-there-yet/out", (uint64_t)1 << 62), QD_ERR_NOSPACE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "GB");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "are free");
}

static void test_sizes(void) {
    /* 4096 x 4096 at 4 bits, group 128: qweight 8 MiB, qzeros 32*4096/2, scales 32*4096*2, g_idx 4*4096 */
    uint64_t g = qd_export_linear_bytes(QD_EXPORT_GPTQ, 0, 4096, 4096, 4, 128, 1, 0, 2);
    QD_EXPECT_EQ_INT(g, 4096ull * 4096 / 2 + 32 * 4096 / 2 + 32 * 4096 * 2 + 4 * 4096);
    uint64_t a = qd_export_linear_bytes(QD_EXPORT_AWQ, 0, 4096, 4096, 4, 128, 0, 0, 2);
    QD_EXPECT_EQ_INT(a, 4096ull * 4096 / 2 + 32 * 4096 / 2 + 32 * 4096 * 2);
    uint64_t c = qd_export_linear_bytes(QD_EXPORT_CT, 0, 4096, 4096, 4, 128, 1, 0, 2);
    QD_EXPECT_EQ_INT(c, 4096ull * 4096 / 2 + 4096 * 32 * 2 + 16);
}

int main(void) {
    QD_RUN(test_formats);
    QD_RUN(test_schemes);
    QD_RUN(test_space);
    QD_RUN(test_sizes);
    return QD_TEST_END();
}
