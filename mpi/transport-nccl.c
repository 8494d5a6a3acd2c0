/* SPDX-License-Identifier: MIT
 * NCCL transport: device-to-device send/recv between ranks on distinct GPUs, one communicator over
 * all ranks, bootstrapped by broadcasting the ncclUniqueId from rank 0 (qd_mpi_bcast). Each transfer
 * runs on the transport's own stream and records an event; wait synchronises on that event only, so
 * compute streams keep running. NVLink multicast (NVLS) is never requested. */
#ifdef QD_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-transport.h"

#define QD_CUDA_CHECK(call) QD_FOREIGN_CHECK(call, cudaSuccess, cuda_err_str, QD_ERR_CUDA)
#define QD_NCCL_CHECK(call) QD_FOREIGN_CHECK(call, ncclSuccess, nccl_err_str, QD_ERR_CUDA)

static const char *cuda_err_str(int rc) { return cudaGetErrorString((cudaError_t)rc); }
static const char *nccl_err_str(int rc) { return ncclGetErrorString((ncclResult_t)rc); }

struct nccl_ctx {
    ncclComm_t comm;
    cudaStream_t stream;
};

static int nccl_can_connect(const struct qd_transport_probe *p) {
    return p->backend_is_gpu && p->device_buffers && !p->same_device;
}

static qd_status nccl_create(const struct qd_transport_probe *p, void **out) {
    (void)p;
    int rank = qd_mpi_rank(), size = qd_mpi_size();
    ncclUniqueId id;
    if (rank == 0) QD_NCCL_CHECK(ncclGetUniqueId(&id));
    QD_CHECK(qd_mpi_bcast(&id, sizeof id));
    struct nccl_ctx *c = calloc(1, sizeof *c);
    if (!c) return qd_fail(QD_ERR_NOMEM, "transport nccl: out of memory");
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    ncclResult_t nr = ncclCommInitRankConfig(&c->comm, size, id, rank, &cfg);
    if (nr != ncclSuccess) {
        free(c);
        return qd_fail(QD_ERR_CUDA, "transport nccl: ncclCommInitRank failed on rank %d: %s", rank,
                       ncclGetErrorString(nr));
    }
    cudaError_t ce = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (ce != cudaSuccess) {
        ncclCommDestroy(c->comm);
        free(c);
        return qd_fail(QD_ERR_CUDA, "transport nccl: cudaStreamCreate failed: %s", cudaGetErrorString(ce));
    }
    *out = c;
    return QD_OK;
}

static qd_status nccl_post(struct nccl_ctx *c, void *buf, size_t bytes, int peer, qd_xfer *x, int is_send) {
    cudaEvent_t ev;
    QD_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    ncclResult_t nr = is_send ? ncclSend(buf, bytes, ncclUint8, peer, c->comm, c->stream)
                              : ncclRecv(buf, bytes, ncclUint8, peer, c->comm, c->stream);
    if (nr != ncclSuccess) {
        cudaEventDestroy(ev);
        return qd_fail(QD_ERR_CUDA, "transport nccl: %s of %zu bytes with rank %d failed: %s",
                       is_send ? "send" : "receive", bytes, peer, ncclGetErrorString(nr));
    }
    QD_CUDA_CHECK(cudaEventRecord(ev, c->stream));
    x->impl = ev;
    x->active = 1;
    return QD_OK;
}

static qd_status nccl_isend(void *ctx, const void *buf, size_t bytes, int peer, int tag, qd_xfer *x) {
    (void)tag; /* NCCL orders p2p operations per pair; the pipeline posts them in tag order */
    return nccl_post(ctx, (void *)buf, bytes, peer, x, 1);
}

static qd_status nccl_irecv(void *ctx, void *buf, size_t bytes, int peer, int tag, qd_xfer *x) {
    (void)tag;
    return nccl_post(ctx, buf, bytes, peer, x, 0);
}

static qd_status nccl_wait(void *ctx, qd_xfer *x) {
    (void)ctx;
    cudaEvent_t ev = x->impl;
    cudaError_t ce = cudaEventSynchronize(ev);
    cudaEventDestroy(ev);
    x->impl = NULL;
    x->active = 0;
    if (ce != cudaSuccess) return qd_fail(QD_ERR_CUDA, "transport nccl: transfer failed: %s", cudaGetErrorString(ce));
    return QD_OK;
}

static void nccl_destroy(void *ctx) {
    struct nccl_ctx *c = ctx;
    if (!c) return;
    cudaStreamDestroy(c->stream);
    ncclCommDestroy(c->comm);
    free(c);
}

const struct qd_transport_i qd_transport_nccl = {
    .name = "nccl",
    .device_buffers = 1,
    .can_connect = nccl_can_connect,
    .create = nccl_create,
    .isend = nccl_isend,
    .irecv = nccl_irecv,
    .wait = nccl_wait,
    .destroy = nccl_destroy,
};
#else
/* Built without CUDA: the NCCL transport does not exist (ISO C forbids an empty unit). */
typedef int qd_transport_nccl_absent;
#endif
