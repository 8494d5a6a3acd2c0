/* SPDX-License-Identifier: MIT
 * test-transport.c - which transport the probe chooses (mpi/transport.c): host buffers go over MPI
 * whatever the backend; device buffers go only to a transport that moves device pointers (NCCL, when
 * built), and never between two ranks on the same GPU; with no such transport the choice fails with
 * one line naming both ranks. Also runs under mpirun (tests/mpi/CMakeLists.txt): the checks are
 * rank-local, none creates an NCCL communicator. */
#include <string.h>

#include "qd-bootstrap.h"
#include "qd-log.h"
#include "qd-pipeline.h"
#include "qd-test.h"
#include "qd-transport.h"

static void test_host_buffers_take_mpi(void) {
    for (int gpu = 0; gpu < 2; gpu++) {
        struct qd_transport_probe p = {.rank = 0, .peer = 1, .backend_is_gpu = gpu, .device_buffers = 0};
        qd_transport *t = NULL;
        QD_EXPECT_EQ_INT(qd_transport_select(&p, &t), QD_OK);
        QD_EXPECT(t && strcmp(t->iface->name, "mpi") == 0);
        qd_transport_free(t);
    }
    /* the pipeline hands host buffers today, so the probe it feeds says so */
    QD_EXPECT_EQ_INT(qd_pipeline_device_buffers(), 0);
}

static void test_device_buffers_never_take_mpi(void) {
    QD_EXPECT_EQ_INT(qd_transport_mpi.device_buffers, 0);
    struct qd_transport_probe p = {.rank = 2, .peer = 3, .backend_is_gpu = 0, .device_buffers = 1};
    qd_transport *t = NULL;
    QD_EXPECT_EQ_INT(qd_transport_select(&p, &t), QD_ERR_UNSUPPORTED);
    QD_EXPECT(t == NULL);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "rank 2 with rank 3 (device buffers)");
}

static void test_nccl_probe(void) {
#ifdef QD_HAVE_CUDA
    const struct qd_transport_i *n = &qd_transport_nccl;
    QD_EXPECT_EQ_INT(n->device_buffers, 1);
    struct qd_transport_probe p = {.rank = 0, .peer = 1, .backend_is_gpu = 1, .device_buffers = 1};
    QD_EXPECT(n->can_connect(&p));
    p.same_device = 1;
    QD_EXPECT(!n->can_connect(&p));
    p.same_device = 0, p.backend_is_gpu = 0;
    QD_EXPECT(!n->can_connect(&p));
    p.backend_is_gpu = 1, p.device_buffers = 0;
    QD_EXPECT(!n->can_connect(&p));
#else
    fprintf(stderr, "  no NCCL transport in this build\n");
#endif
}

int main(int argc, char **argv) {
    if (qd_mpi_start(&argc, &argv) != QD_OK) return 1;
    qd_log_set_level(QD_LOG_ERROR);
    QD_RUN(test_host_buffers_take_mpi);
    QD_RUN(test_device_buffers_never_take_mpi);
    QD_RUN(test_nccl_probe);
    int rc = QD_TEST_END();
    qd_mpi_stop();
    return rc;
}
