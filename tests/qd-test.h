/* SPDX-License-Identifier: MIT
 * qd-test.h - assertion macros for the C tests (print both operands, count failures).
 *
 * A test file defines main(), runs its cases with QD_RUN(fn) and returns QD_TEST_END(). A test built
 * from several files defines QD_TEST_SHARED_COUNTERS before including this header in each of them and
 * defines the two counters in one (tests/kernels/backend-ops-util.c).
 * qd_fixture(buf, cap, rel) resolves <repo>/fixtures/<rel> (repo: env QD_REPO, else the source tree
 * the tests were built from); a missing fixture is a broken checkout, so it counts as a failed check.
 */
#ifndef QD_TEST_H
#define QD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef QD_TEST_SHARED_COUNTERS /* a test made of several files counts once: one file defines these */
extern int qd_test_failures, qd_test_checks;
#else
static int qd_test_failures __attribute__((unused));
static int qd_test_checks __attribute__((unused));
#endif

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

#ifndef QD_TEST_SOURCE_DIR /* set by tests/CMakeLists.txt (qd_test_util) */
#define QD_TEST_SOURCE_DIR "."
#endif

/* Path of a fixture of the repository, or NULL (a failed check, with a message) when it is missing. */
static inline const char *qd_fixture(char *buf, size_t cap, const char *rel) {
    const char *repo = getenv("QD_REPO");
    if (!repo || !*repo) repo = QD_TEST_SOURCE_DIR;
    snprintf(buf, cap, "%s/fixtures/%s", repo, rel);
    FILE *f = fopen(buf, "rb");
    qd_test_checks++;
    if (!f) {
        fprintf(stderr, "fixture %s missing from the repository\n", buf);
        qd_test_failures++;
        return NULL;
    }
    fclose(f);
    return buf;
}

#endif
