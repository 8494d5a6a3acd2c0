/* SPDX-License-Identifier: MIT
 * reduce.cu - scalar reductions (double accumulation, two deterministic passes: per-block partials,
 * then one block in order) and the AWQ column statistics. */
#include "exact.cuh"

#define RED_BLOCKS 512
#define RED_THREADS 256

__device__ __forceinline__ double red_op(int kind, double a, double b) {
    return kind == QD_RED_ABSMAX ? fmax(a, b) : a + b;
}

__global__ void k_reduce_part(int kind, const float *x, const float *y, size_t n, double *part) {
    __shared__ double sh[RED_THREADS];
    double acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        double v;
        switch (kind) {
        case QD_RED_SQDIFF: { double d = (double)x[i] - (double)y[i]; v = d * d; } break;
        case QD_RED_SUMSQ: v = (double)x[i] * (double)x[i]; break;
        case QD_RED_NONFINITE: v = isfinite(x[i]) ? 0.0 : 1.0; break;
        default: v = fabs((double)x[i]); if (v != v) v = 0; break;
        }
        acc = red_op(kind, acc, v);
    }
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] = red_op(kind, sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

__global__ void k_reduce_final(int kind, double *part, int n) {
    __shared__ double sh[RED_THREADS];
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc = red_op(kind, acc, part[i]);
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] = red_op(kind, sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0) part[0] = sh[0];
}

/* exact numerics: thread i sums chunk i (QD_EXACT_CHUNK elements) in order, then one thread sums the
 * partials in order - kernels/cpu/exact.c's order, with its rounding steps spelled out */
__global__ void k_reduce_chunks(int kind, const float *x, const float *y, size_t n, double *part) {
    size_t ch = blockIdx.x * (size_t)blockDim.x + threadIdx.x, c0 = ch * QD_EXACT_CHUNK;
    if (c0 >= n) return;
    size_t c1 = c0 + QD_EXACT_CHUNK < n ? c0 + QD_EXACT_CHUNK : n;
    double acc = 0;
    for (size_t i = c0; i < c1; i++) {
        switch (kind) {
        case QD_RED_SQDIFF: { double d = __dsub_rn((double)x[i], (double)y[i]); acc = __dadd_rn(acc, __dmul_rn(d, d)); } break;
        case QD_RED_SUMSQ: acc = __dadd_rn(acc, (double)x[i] * (double)x[i]); break;
        case QD_RED_NONFINITE: acc += isfinite(x[i]) ? 0.0 : 1.0; break;
        default: { double v = fabs((double)x[i]); if (v > acc) acc = v; } break;
        }
    }
    part[ch] = acc;
}

__global__ void k_reduce_seq(int kind, double *part, size_t n) {
    double acc = 0;
    for (size_t i = 0; i < n; i++) acc = kind == QD_RED_ABSMAX ? (part[i] > acc ? part[i] : acc) : __dadd_rn(acc, part[i]);
    part[0] = acc;
}

static qd_status reduce_exact(struct qd_cuda_ctx *c, const struct qd_reduce_args *a) {
    size_t nch = (a->n + QD_EXACT_CHUNK - 1) / QD_EXACT_CHUNK;
    void *ws;
    QD_CHECK(qd_cu_ws(c, nch * sizeof(double), &ws));
    double *part = (double *)ws;
    k_reduce_chunks<<<(unsigned)((nch + 127) / 128), 128, 0, c->stream>>>((int)a->kind, QD_CU_F32(a->a),
                                                                         a->b.buf ? QD_CU_F32(a->b) : NULL, a->n, part);
    QD_LAUNCH_CHECK("reduce (exact)");
    k_reduce_seq<<<1, 1, 0, c->stream>>>((int)a->kind, part, nch);
    QD_LAUNCH_CHECK("reduce (exact)");
    QD_CUDA_CHECK(cudaMemcpyAsync(a->out, part, sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

extern "C" qd_status qd_cu_reduce(qd_backend_t be, const struct qd_reduce_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (qd_cu_exact(be)) return reduce_exact(c, a);
    void *ws;
    QD_CHECK(qd_cu_ws(c, RED_BLOCKS * sizeof(double), &ws));
    double *part = (double *)ws;
    unsigned nb = qd_cu_blocks(a->n, RED_THREADS);
    if (nb > RED_BLOCKS) nb = RED_BLOCKS;
    k_reduce_part<<<nb, RED_THREADS, 0, c->stream>>>((int)a->kind, QD_CU_F32(a->a), a->b.buf ? QD_CU_F32(a->b) : NULL,
                                                     a->n, part);
    QD_LAUNCH_CHECK("reduce");
    k_reduce_final<<<1, RED_THREADS, 0, c->stream>>>((int)a->kind, part, (int)nb);
    QD_LAUNCH_CHECK("reduce");
    QD_CUDA_CHECK(cudaMemcpyAsync(a->out, part, sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

/* ABS_SUM: per column in double (as the CPU), rows split into chunks of partials summed in order */
#define CS_CHUNKS 64
__global__ void k_abssum_part(const float *s, size_t rows, size_t cols, size_t ld, size_t chunk, double *part) {
    size_t c = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (c >= cols) return;
    size_t r0 = blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    double acc = 0;
    for (size_t r = r0; r < r1; r++) acc += fabs((double)s[r * ld + c]);
    part[blockIdx.y * cols + c] = acc;
}

__global__ void k_abssum_final(float *out, const double *part, size_t cols, int nchunks, int accumulate) {
    size_t c = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double acc = 0;
    for (int k = 0; k < nchunks; k++) acc += part[(size_t)k * cols + c];
    out[c] = accumulate ? out[c] + (float)acc : (float)acc;
}

/* GROUP_NORM_SUM: one thread per column, rows in order, fp32 sums as the CPU */
__global__ void k_gnorm(float *out, const float *s, size_t rows, size_t cols, size_t ld, size_t gs, int accumulate) {
    size_t c = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (c >= cols) return;
    size_t g0 = c / gs * gs;
    float acc = accumulate ? out[c] : 0.0f;
    for (size_t r = 0; r < rows; r++) {
        const float *row = s + r * ld;
        float m = 0;
        for (size_t k = g0; k < g0 + gs; k++) m = fmaxf(m, fabsf(row[k]));
        acc = __fadd_rn(acc, __fdiv_rn(fabsf(row[c]), __fadd_rn(m, 1e-6f)));
    }
    out[c] = acc;
}

/* GROUP_NORM_SUM in exact numerics: the CPU's fp64 accumulation (fp32 quotients), rows in order */
__global__ void k_gnorm_exact(float *out, const float *s, size_t rows, size_t cols, size_t ld, size_t gs, int accumulate) {
    size_t c = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (c >= cols) return;
    size_t g0 = c / gs * gs;
    double acc = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *row = s + r * ld;
        float m = 0;
        for (size_t k = g0; k < g0 + gs; k++) m = fmaxf(m, fabsf(row[k]));
        acc = __dadd_rn(acc, (double)__fdiv_rn(fabsf(row[c]), __fadd_rn(m, 1e-6f)));
    }
    out[c] = accumulate ? __fadd_rn(out[c], (float)acc) : (float)acc;
}

extern "C" qd_status qd_cu_colstat(qd_backend_t be, const struct qd_colstat_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    unsigned nb = (unsigned)((a->cols + 127) / 128);
    if (a->kind == QD_COLSTAT_GROUP_NORM_SUM && qd_cu_exact(be)) {
        k_gnorm_exact<<<nb, 128, 0, c->stream>>>(QD_CU_F32(a->out), QD_CU_F32(a->src), a->rows, a->cols, a->ld,
                                                 a->group_size, a->accumulate);
        QD_LAUNCH_CHECK("colstat (exact)");
        return QD_OK;
    }
    if (a->kind == QD_COLSTAT_ABS_SUM) {
        /* exact numerics: one chunk, i.e. every column summed down its rows in order, as the CPU */
        size_t chunks = qd_cu_exact(be) ? 1 : a->rows < CS_CHUNKS ? (a->rows ? a->rows : 1) : CS_CHUNKS;
        size_t chunk = (a->rows + chunks - 1) / chunks;
        if (!chunk) chunk = 1;
        void *ws;
        QD_CHECK(qd_cu_ws(c, chunks * a->cols * sizeof(double), &ws));
        k_abssum_part<<<dim3(nb, (unsigned)chunks), 128, 0, c->stream>>>(QD_CU_F32(a->src), a->rows, a->cols, a->ld,
                                                                        chunk, (double *)ws);
        QD_LAUNCH_CHECK("colstat");
        k_abssum_final<<<nb, 128, 0, c->stream>>>(QD_CU_F32(a->out), (const double *)ws, a->cols, (int)chunks,
                                                  a->accumulate);
        QD_LAUNCH_CHECK("colstat");
        return QD_OK;
    }
    k_gnorm<<<nb, 128, 0, c->stream>>>(QD_CU_F32(a->out), QD_CU_F32(a->src), a->rows, a->cols, a->ld, a->group_size,
                                       a->accumulate);
    QD_LAUNCH_CHECK("colstat");
    return QD_OK;
}
