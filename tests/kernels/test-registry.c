/* SPDX-License-Identifier: MIT
 * test-registry.c - the backend choice as a struct (kernels/registry, qd-backends.h): names and
 * --numerics parsed once into {kind, device, numerics, math} (--math resolved from the dtype), refusals as usage errors, the name written
 * back, and the device list (the CPU first, with its memory). */
#include <string.h>

#include "qd-backends.h"
#include "qd-log.h"
#include "qd-test.h"

static void parses(const char *name, const char *numerics, qd_backend_kind kind, int device, qd_numerics num) {
    qd_backend_spec s = {.kind = (qd_backend_kind)-1};
    QD_EXPECT_EQ_INT(qd_backend_spec_parse(name, numerics, &s), QD_OK);
    QD_EXPECT_EQ_INT(s.kind, kind);
    QD_EXPECT_EQ_INT(s.device, device);
    QD_EXPECT_EQ_INT(s.numerics, num);
}

static void refused(const char *name, const char *numerics, const char *says) {
    qd_backend_spec s = {0};
    QD_EXPECT_EQ_INT(qd_backend_spec_parse(name, numerics, &s), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), says);
}

static void test_parse(void) {
    parses("cpu", NULL, QD_BACKEND_CPU, QD_DEVICE_ANY, QD_NUMERICS_FAST);
    parses(NULL, NULL, QD_BACKEND_CPU, QD_DEVICE_ANY, QD_NUMERICS_FAST);
    parses("cpu", "exact", QD_BACKEND_CPU, QD_DEVICE_ANY, QD_NUMERICS_EXACT);
    parses("cpu+exact", NULL, QD_BACKEND_CPU, QD_DEVICE_ANY, QD_NUMERICS_EXACT);
    parses("cpu+exact+fast", "fast", QD_BACKEND_CPU, QD_DEVICE_ANY, QD_NUMERICS_FAST);
    parses("auto", NULL, QD_BACKEND_AUTO, QD_DEVICE_ANY, QD_NUMERICS_FAST);
    parses("auto:3", "exact", QD_BACKEND_AUTO, 3, QD_NUMERICS_EXACT);
#ifdef QD_HAVE_CUDA
    parses("cuda", NULL, QD_BACKEND_CUDA, QD_DEVICE_ANY, QD_NUMERICS_FAST);
    parses("cuda:1+exact", NULL, QD_BACKEND_CUDA, 1, QD_NUMERICS_EXACT);
    refused("cuda:", NULL, "unknown backend 'cuda:'");
    refused("cuda:x", NULL, "this build offers: cpu, cuda, auto");
#else
    refused("cuda", NULL, "this build offers: cpu, auto");
#endif
    refused("gpu", NULL, "unknown backend 'gpu'");
    refused("auto:-1", NULL, "unknown backend");
    refused("cpu+quick", NULL, "+exact");
    refused("cpu+bf1", NULL, "+bf16");
    refused("cpu", "fastest", "numerics 'fastest'");
}

static void test_name_round_trip(void) {
    const char *names[] = {"cpu", "cpu+exact", "auto", "auto:2+exact", "auto+bf16", "cpu+exact+tf32"
#ifdef QD_HAVE_CUDA
                           , "cuda", "cuda:7", "cuda:1+exact"
#endif
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        qd_backend_spec s, t;
        char buf[64];
        QD_EXPECT_EQ_INT(qd_backend_spec_parse(names[i], NULL, &s), QD_OK);
        QD_EXPECT(strcmp(qd_backend_spec_name(&s, buf, sizeof buf), names[i]) == 0);
        QD_EXPECT_EQ_INT(qd_backend_spec_parse(buf, NULL, &t), QD_OK);
        QD_EXPECT(memcmp(&s, &t, sizeof s) == 0);
    }
}

/* --math: auto follows the checkpoint's dtype (bf16/fp16 weights -> bf16 tensor cores, else fp32); an
 * explicit value or a "+fp32"-style option in the name wins over the dtype */
static void math_is(const char *name, const char *flag, qd_dtype weights, qd_math want) {
    qd_backend_spec s;
    QD_EXPECT_EQ_INT(qd_backend_spec_parse(name, NULL, &s), QD_OK);
    QD_EXPECT_EQ_INT(qd_backend_spec_set_math(&s, flag, weights), QD_OK);
    QD_EXPECT_EQ_INT(s.math, want);
}

static void test_math(void) {
    math_is("auto", NULL, QD_DT_BF16, QD_MATH_BF16);
    math_is("auto", "auto", QD_DT_F16, QD_MATH_BF16);
    math_is("auto", NULL, QD_DT_F32, QD_MATH_FP32);
    math_is("auto", "fp32", QD_DT_BF16, QD_MATH_FP32);
    math_is("cpu", "tf32", QD_DT_BF16, QD_MATH_TF32);
    math_is("auto+fp32", NULL, QD_DT_BF16, QD_MATH_FP32);
    math_is("auto+fp32", "bf16", QD_DT_F32, QD_MATH_BF16);
    qd_backend_spec s;
    QD_EXPECT_EQ_INT(qd_backend_spec_parse("auto", NULL, &s), QD_OK);
    QD_EXPECT_EQ_INT(qd_backend_spec_set_math(&s, "fp16", QD_DT_BF16), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "--math: 'fp16'");
    QD_EXPECT_EQ_INT(qd_backend_spec_set_math(&s, "bf16x", QD_DT_BF16), QD_ERR_USAGE);
    QD_EXPECT(strcmp(qd_math_name(QD_MATH_BF16), "bf16") == 0);
}

static void test_open(void) {
    qd_backend_spec s = {.kind = QD_BACKEND_CPU, .device = QD_DEVICE_ANY, .numerics = QD_NUMERICS_EXACT};
    qd_backend_t be = NULL;
    QD_EXPECT_EQ_INT(qd_backend_open(&s, &be), QD_OK);
    if (!be) return;
    QD_EXPECT(strcmp(qd_be_name(be), "cpu") == 0);
    QD_EXPECT_EQ_INT(qd_be_numerics(be), QD_NUMERICS_EXACT);
    QD_EXPECT_EQ_INT(qd_backend_spec_is_gpu(&s), 0);
    qd_be_free(be);
    s.kind = QD_BACKEND_AUTO; /* on the GPU exactly when the build has CUDA and a device answers */
    QD_EXPECT_EQ_INT(qd_backend_spec_is_gpu(&s), qd_backend_gpu_count() > 0);
}

static void test_devices(void) {
    qd_device_info d[16];
    int n = -1;
    QD_EXPECT_EQ_INT(qd_backend_devices(d, 16, &n), QD_OK);
    QD_EXPECT_EQ_INT(n, 1 + qd_backend_gpu_count());
    QD_EXPECT_EQ_INT(d[0].kind, QD_BACKEND_CPU);
    QD_EXPECT(d[0].total_bytes > 0 && d[0].free_bytes <= d[0].total_bytes);
    for (int i = 1; i < n; i++) {
        QD_EXPECT_EQ_INT(d[i].kind, QD_BACKEND_CUDA);
        QD_EXPECT_EQ_INT(d[i].device, i - 1);
        QD_EXPECT(d[i].total_bytes > 0);
    }
    QD_EXPECT_EQ_INT(qd_backend_devices(d, 1, &n), QD_OK);
    QD_EXPECT_EQ_INT(n, 1);
}

int main(void) {
    qd_log_set_level(QD_LOG_ERROR);
    QD_RUN(test_parse);
    QD_RUN(test_name_round_trip);
    QD_RUN(test_math);
    QD_RUN(test_open);
    QD_RUN(test_devices);
    return QD_TEST_END();
}
