/* SPDX-License-Identifier: MIT
 * gemm-exact.cu - the fixed-order fp64 GEMM of exact numerics (exact.cuh). A 256-thread block owns a
 * 64 x 64 tile of C; each thread owns 4 x 4 elements (rows ty + 16r, columns tx + 16c) and walks k in
 * order through 16-deep shared-memory slabs of op(A) and op(B), accumulating fma((double)a, (double)b,
 * acc). The product of two floats is exact in double, so the FMA rounds exactly as the CPU's acc + a*b;
 * the zero padding past K adds +0.0, which leaves acc unchanged. No cuBLAS: its order is its own. */
#include "exact.cuh"

#define XG_B 64
#define XG_K 16

__global__ void __launch_bounds__(256) k_xgemm(struct qd_cu_xg g, size_t m_off) {
    __shared__ float As[XG_K][XG_B + 1]; /* As[kk][i] = op(A)[i0 + i][k0 + kk] */
    __shared__ float Bs[XG_K][XG_B + 1]; /* Bs[kk][j] = op(B)[k0 + kk][j0 + j] */
    int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    size_t i0 = m_off + (size_t)blockIdx.y * XG_B, j0 = (size_t)blockIdx.x * XG_B;
    if (g.upper && j0 + XG_B <= i0) return; /* the whole tile lies below the diagonal (uniform per block) */
    double acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[r][c] = 0.0;
    for (size_t k0 = 0; k0 < g.K; k0 += XG_K) {
#pragma unroll
        for (int q = 0; q < 4; q++) {
            int idx = tid + 256 * q; /* 0 .. 1023: one 64 x 16 slab of each operand */
            int i, j, ka, kb;
            /* the index order follows the storage so that neighbouring threads read neighbouring words */
            if (g.ta) ka = idx / XG_B, i = idx % XG_B;
            else i = idx / XG_K, ka = idx % XG_K;
            if (g.tb) j = idx / XG_K, kb = idx % XG_K;
            else kb = idx / XG_B, j = idx % XG_B;
            size_t gi = i0 + i, gj = j0 + j, gka = k0 + ka, gkb = k0 + kb;
            As[ka][i] = gi < g.M && gka < g.K ? (g.ta ? g.A[gka * g.lda + gi] : g.A[gi * g.lda + gka]) : 0.0f;
            Bs[kb][j] = gj < g.N && gkb < g.K ? (g.tb ? g.B[gj * g.ldb + gkb] : g.B[gkb * g.ldb + gj]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < XG_K; kk++) {
            double a[4], b[4];
#pragma unroll
            for (int r = 0; r < 4; r++) a[r] = (double)As[kk][ty + 16 * r];
#pragma unroll
            for (int c = 0; c < 4; c++) b[c] = (double)Bs[kk][tx + 16 * c];
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[r][c] = fma(a[r], b[c], acc[r][c]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        size_t i = i0 + ty + 16 * r;
        if (i >= g.M) continue;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            size_t j = j0 + tx + 16 * c;
            if (j >= g.N || (g.upper && j < i)) continue;
            if (g.Cd) {
                g.Cd[i * g.ldcd + j] = acc[r][c];
            } else {
                float *p = g.C + i * g.ldc + j;
                *p = qd_exact_out(acc[r][c], g.alpha, g.beta, g.beta != 0.0 ? *p : 0.0f);
            }
        }
    }
}

qd_status qd_cu_xgemm(struct qd_cuda_ctx *c, const struct qd_cu_xg *g) {
    if (!g->M || !g->N) return QD_OK;
    size_t nbx = (g->N + XG_B - 1) / XG_B, rows_per_launch = (size_t)65535 * XG_B;
    for (size_t m0 = 0; m0 < g->M; m0 += rows_per_launch) {
        size_t mr = g->M - m0 < rows_per_launch ? g->M - m0 : rows_per_launch;
        dim3 grid((unsigned)nbx, (unsigned)((mr + XG_B - 1) / XG_B));
        k_xgemm<<<grid, 256, 0, c->stream>>>(*g, m0);
        QD_LAUNCH_CHECK("exact gemm");
    }
    return QD_OK;
}
