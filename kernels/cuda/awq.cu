/* SPDX-License-Identifier: MIT
 * awq.cu - AWQ's clip search batched over the grid: per input-channel group, the reference output
 * W_g X_g^T (one GEMM), every candidate's Q(clamp(W_g, -m_i, m_i)) stacked as [steps * rows, gs] and
 * multiplied by X_g^T in one GEMM, then one kernel per row chunk takes each candidate's mean squared
 * output error (double, as the CPU), keeps the first best and clamps W. Rows are chunked so the
 * candidate outputs stay under 1 GiB of scratch. */
#include "exact.cuh"
#include "quant-common.cuh"

__global__ void k_omax(const float *W, size_t K, size_t gs, size_t g, size_t rows, float *omax) {
    size_t n = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    if (n >= rows) return;
    int lane = threadIdx.x & 31;
    const float *w = W + n * K + g * gs;
    float m = 0;
    for (size_t k = lane; k < gs; k += 32) m = fmaxf(m, fabsf(w[k]));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) omax[n] = m;
}

/* one warp per (step, row): Qall[(i * rows + n) * gs + k] */
__global__ void k_candidates(qd_qcfg cfg, const float *W, size_t K, size_t gs, size_t g, size_t rows, int steps,
                             int grid, const float *omax, float *Qall) {
    size_t wid = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    if (wid >= rows * (size_t)steps) return;
    int lane = threadIdx.x & 31;
    int i = (int)(wid / rows);
    size_t n = wid % rows;
    float f = (float)(1.0 - (double)i / grid);
    float m = __fmul_rn(omax[n], f);
    const float *w = W + n * K + g * gs;
    float *q = Qall + wid * gs;
    for (size_t k = lane; k < gs; k += 32) {
        float v = w[k];
        q[k] = v > m ? m : (v < -m ? -m : v);
    }
    __syncwarp();
    float scale, zero, maxq = (float)((1 << cfg.bits) - 1);
    qd_qparams_warp(cfg, q, (int)gs, &scale, &zero);
    for (size_t k = lane; k < gs; k += 32) q[k] = qd_qv(q[k], scale, zero, maxq, NULL);
}

/* one block per row: errors of every step, first best, clamp */
__global__ void k_pick(float *W, size_t K, size_t gs, size_t g, size_t G, size_t rows, size_t T, int steps, int grid,
                       const float *omax, const float *org, const float *cur, float *best_out) {
    __shared__ double sh[256];
    __shared__ float bm;
    size_t n = blockIdx.x;
    double berr = INFINITY;
    float bmax = omax[n];
    for (int i = 0; i < steps; i++) {
        const float *cr = cur + ((size_t)i * rows + n) * T, *orr = org + n * T;
        double e = 0;
        for (size_t t = threadIdx.x; t < T; t += blockDim.x) {
            double d = (double)cr[t] - orr[t];
            e += d * d;
        }
        sh[threadIdx.x] = e;
        __syncthreads();
        for (int s = 128; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
            __syncthreads();
        }
        e = sh[0] / (double)T;
        __syncthreads();
        if (e < berr) {
            berr = e;
            bmax = __fmul_rn(omax[n], (float)(1.0 - (double)i / grid));
        }
    }
    if (threadIdx.x == 0) bm = bmax;
    __syncthreads();
    float m = bm;
    float *w = W + n * K + g * gs;
    for (size_t k = threadIdx.x; k < gs; k += blockDim.x) w[k] = w[k] > m ? m : (w[k] < -m ? -m : w[k]);
    if (best_out && threadIdx.x == 0) best_out[n * G + g] = m;
}

/* ---- exact numerics: the CPU's arithmetic (kernels/cpu/awq-clip.c with exact.c's GEMM) ----
 * org and the candidates' outputs in fp64 from the fixed-order GEMM, each candidate's error summed
 * over t in order by one thread, then one thread per row takes the first best in step order. */
__global__ void k_err_exact(const double *org, const double *cur, size_t rows, size_t T, int steps, double *err) {
    size_t id = blockIdx.x * (size_t)blockDim.x + threadIdx.x; /* = i * rows + n */
    if (id >= rows * (size_t)steps) return;
    size_t n = id % rows;
    const double *cr = cur + id * T, *orr = org + n * T;
    double e = 0;
    for (size_t t = 0; t < T; t++) {
        double d = __dsub_rn(cr[t], orr[t]);
        e = __dadd_rn(e, __dmul_rn(d, d));
    }
    err[id] = __ddiv_rn(e, (double)T);
}

__global__ void k_pick_exact(float *W, size_t K, size_t gs, size_t g, size_t G, size_t rows, int steps, int grid,
                             const float *omax, const double *err, float *best_out) {
    size_t n = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (n >= rows) return;
    double berr = INFINITY;
    float m = omax[n];
    for (int i = 0; i < steps; i++) {
        double e = err[(size_t)i * rows + n];
        if (e < berr) {
            berr = e;
            m = __fmul_rn(omax[n], (float)(1.0 - (double)i / grid));
        }
    }
    float *w = W + n * K + g * gs;
    for (size_t k = 0; k < gs; k++) w[k] = w[k] > m ? m : (w[k] < -m ? -m : w[k]);
    if (best_out) best_out[n * G + g] = m;
}

static qd_status awq_clip_exact(struct qd_cuda_ctx *c, const struct qd_awq_clip_args *a) {
    size_t N = a->N, K = a->K, T = a->T;
    size_t gs = a->group_size && a->group_size < K ? a->group_size : K, G = K / gs;
    int steps = (int)(a->max_shrink * (float)a->grid);
    if (steps < 0) steps = 0; /* no candidate: every group keeps its own max, as on the CPU */
    float *W = QD_CU_F32(a->W);
    const float *X = QD_CU_F32(a->X);
    float *best = a->best_out.buf ? QD_CU_F32(a->best_out) : NULL;
    /* bytes per row: org, the candidates' outputs and errors (fp64), the candidates and omax (fp32) */
    size_t per_row = 8 * (T + (size_t)steps * T + (size_t)steps) + 4 * ((size_t)steps * gs + 1);
    size_t rows = ((size_t)1 << 30) / per_row;
    if (rows < 1) rows = 1;
    if (rows > N) rows = N;
    void *ws;
    QD_CHECK(qd_cu_ws(c, rows * per_row + 1024, &ws));
    double *org = (double *)ws, *cur = org + rows * T, *err = cur + rows * (size_t)steps * T;
    float *Qall = (float *)(err + rows * (size_t)steps), *omax = Qall + rows * (size_t)steps * gs;
    for (size_t g = 0; g < G; g++) {
        for (size_t n0 = 0; n0 < N; n0 += rows) {
            size_t nr = N - n0 < rows ? N - n0 : rows, nc = nr * (size_t)steps;
            float *Wc = W + n0 * K;
            struct qd_cu_xg go = {.tb = 1, .M = nr, .N = T, .K = gs, .A = Wc + g * gs, .B = X + g * gs, .lda = K,
                                  .ldb = K, .Cd = org, .ldcd = T};
            QD_CHECK(qd_cu_xgemm(c, &go));
            k_omax<<<(unsigned)((nr * 32 + 255) / 256), 256, 0, c->stream>>>(Wc, K, gs, g, nr, omax);
            QD_LAUNCH_CHECK("awq_clip (exact)");
            if (nc) {
                k_candidates<<<(unsigned)((nc * 32 + 255) / 256), 256, 0, c->stream>>>(a->cfg, Wc, K, gs, g, nr, steps,
                                                                                      a->grid, omax, Qall);
                QD_LAUNCH_CHECK("awq_clip (exact)");
                struct qd_cu_xg gc = {.tb = 1, .M = nc, .N = T, .K = gs, .A = Qall, .B = X + g * gs, .lda = gs,
                                      .ldb = K, .Cd = cur, .ldcd = T};
                QD_CHECK(qd_cu_xgemm(c, &gc));
                k_err_exact<<<(unsigned)((nc + 127) / 128), 128, 0, c->stream>>>(org, cur, nr, T, steps, err);
                QD_LAUNCH_CHECK("awq_clip (exact)");
            }
            k_pick_exact<<<(unsigned)((nr + 127) / 128), 128, 0, c->stream>>>(Wc, K, gs, g, G, nr, steps, a->grid,
                                                                             omax, err, best ? best + n0 * G : NULL);
            QD_LAUNCH_CHECK("awq_clip (exact)");
        }
    }
    return QD_OK;
}

extern "C" qd_status qd_cu_awq_clip(qd_backend_t be, const struct qd_awq_clip_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (qd_cu_exact(be)) return awq_clip_exact(c, a);
    size_t N = a->N, K = a->K, T = a->T;
    size_t gs = a->group_size && a->group_size < K ? a->group_size : K, G = K / gs;
    int steps = (int)(a->max_shrink * (float)a->grid);
    if (steps <= 0) steps = 1;
    float *W = QD_CU_F32(a->W);
    const float *X = QD_CU_F32(a->X);
    float *best = a->best_out.buf ? QD_CU_F32(a->best_out) : NULL;
    size_t per_row = (size_t)steps * (T + gs) + T + 1; /* floats of scratch per row */
    size_t rows = ((size_t)256 << 20) / per_row;
    if (rows < 1) rows = 1;
    if (rows > N) rows = N;
    void *ws;
    QD_CHECK(qd_cu_ws(c, rows * per_row * 4 + 1024, &ws));
    float *org = (float *)ws, *cur = org + rows * T, *Qall = cur + rows * (size_t)steps * T,
          *omax = Qall + rows * (size_t)steps * gs;
    for (size_t g = 0; g < G; g++) {
        for (size_t n0 = 0; n0 < N; n0 += rows) {
            size_t nr = N - n0 < rows ? N - n0 : rows;
            float *Wc = W + n0 * K;
            QD_CHECK(qd_cu_sgemm(c, 0, 1, nr, T, gs, 1.0f, Wc + g * gs, K, X + g * gs, K, 0.0f, org, T));
            k_omax<<<(unsigned)((nr * 32 + 255) / 256), 256, 0, c->stream>>>(Wc, K, gs, g, nr, omax);
            QD_LAUNCH_CHECK("awq_clip");
            k_candidates<<<(unsigned)((nr * steps * 32 + 255) / 256), 256, 0, c->stream>>>(a->cfg, Wc, K, gs, g, nr,
                                                                                          steps, a->grid, omax, Qall);
            QD_LAUNCH_CHECK("awq_clip");
            QD_CHECK(qd_cu_sgemm(c, 0, 1, nr * (size_t)steps, T, gs, 1.0f, Qall, gs, X + g * gs, K, 0.0f, cur, T));
            k_pick<<<(unsigned)nr, 256, 0, c->stream>>>(Wc, K, gs, g, G, nr, T, steps, a->grid, omax, org, cur,
                                                        best ? best + n0 * G : NULL);
            QD_LAUNCH_CHECK("awq_clip");
        }
    }
    return QD_OK;
}
