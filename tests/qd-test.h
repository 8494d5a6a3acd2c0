/* SPDX-License-Identifier: MIT
 * qd-test.h - assertion macros for the C tests (print both operands, count failures).
 *
 * A test file defines main(), runs its cases with QD_RUN(fn) and returns QD_TEST_END().
 * QD_FIXTURE(path_out, rel) resolves ../shared/fixtures/<rel>; tests that need it skip (exit 77,
 * which CTest reports as skipped where SKIP_RETURN_CODE is set) with a message when it is absent.
 */
#ifndef QD_TEST_H
#define QD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qd_test_failures __attribute__((unused));
static int qd_test_checks __attribute__((unused));

#define QD_EXPECT(cond)                                                           \
    do {                                                                          \
        qd_test_checks++;                                                         \
        if (!(cond)) {                                                            \
            qd_test_failures++;                                                   \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                         \
    } while (0)

#define QD_EXPECT_EQ_INT(a, b)                                                                 \
    do {                                                                                       \
        long long qa = (long long)(a), qb = (long long)(b);                                    \
        qd_test_checks++;                                                                      \
        if (qa != qb) {                                                                        \
            qd_test_failures++;                                                                \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, qa, qb); \
        }                                                                                      \
    } while (0)

#define QD_EXPECT_STR_CONTAINS(hay, needle)                                                    \
    do {                                                                                       \
        const char *qh = (hay), *qn = (needle);                                                \
        qd_test_checks++;                                                                      \
        if (!qh || !strstr(qh, qn)) {                                                          \
            qd_test_failures++;                                                                \
            fprintf(stderr, "%s:%d: '%s' does not contain '%s'\n", __FILE__, __LINE__, qh ? qh : "(null)", qn); \
        }                                                                                      \
    } while (0)

#define QD_EXPECT_NEAR(a, b, tol)                                                              \
    do {                                                                                       \
        double qa = (double)(a), qb = (double)(b);                                             \
        qd_test_checks++;                                                                      \
        if (!(fabs(qa - qb) <= (tol))) {                                                       \
            qd_test_failures++;                                                                \
            fprintf(stderr, "%s:%d: |%s - %s| = |%.9g - %.9g| > %g\n", __FILE__, __LINE__, #a, #b, qa, qb, (double)(tol)); \
        }                                                                                      \
    } while (0)

#define QD_RUN(fn)                                          \
    do {                                                    \
        int before = qd_test_failures;                      \
        fn();                                               \
        fprintf(stderr, "%s %s\n", qd_test_failures == before ? "ok  " : "FAIL", #fn); \
    } while (0)

#define QD_TEST_END()                                                                         \
    (fprintf(stderr, "%d checks, %d failed\n", qd_test_checks, qd_test_failures), qd_test_failures ? 1 : 0)

/* Path of a shared fixture or NULL (with a message) when ../shared/fixtures is absent. */
static inline const char *qd_fixture(char *buf, size_t cap, const char *rel) {
    const char *root = getenv("QD_SHARED_FIXTURES");
    if (!root) root = "../shared/fixtures";
    snprintf(buf, cap, "%s/%s", root, rel);
    FILE *f = fopen(buf, "rb");
    if (!f) {
        fprintf(stderr, "skip: fixture %s not found (../shared/fixtures absent?)\n", buf);
        return NULL;
    }
    fclose(f);
    return buf;
}

#endif
