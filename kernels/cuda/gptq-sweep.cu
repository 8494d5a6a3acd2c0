/* SPDX-License-Identifier: MIT
 * gptq-sweep.cu - GPTQ's column sweep: per block of block_size columns, (1) the parameters of the
 * groups that start in the block, from the global W (which holds earlier blocks' updates only, as the
 * CPU), (2) ONE fused kernel that walks the block's columns with the in-block error feedback (one
 * warp per row, the row's block tile in the lanes' registers, U rows read by the lanes), writing the
 * dequantized values, the codes and the scaled errors E (column-major, [cnt][N]), (3) the lazy update
 * W[:, i2:] -= E^T U[i1:i2, i2:] as one cuBLAS GEMM. Three launches per block, none per column.
 * The in-block arithmetic is the CPU's (kernels/cpu/gptq-sweep.c) without fused multiply-add.
 * Float targets (QD_QZ_FP8: E4M3, QD_QZ_FP4: E2M1; given static scales: one group or groups along K)
 * take the same walk with the codec of qd-fp8.h / qd-fp4.h, written bit for bit as the host's in fp-codes.cuh. */
#include <stdlib.h>

#include "exact.cuh"
#include "fp-codes.cuh"
#include "quant-common.cuh"

#define SW_WARPS 8 /* rows per block, one warp each */
#define SW_MAXB 384 /* the largest block size: 12 columns per lane */

enum { TGT_INT = 0, TGT_E4M3 = 1, TGT_E2M1 = 2 };

/* one value of the sweep: the code and its dequantized value, for the target kind */
__device__ __forceinline__ float sweep_qv(int tgt, float x, float scale, float zero, float maxq, int32_t *code) {
    if (tgt == TGT_INT) return qd_qv(x, scale, zero, maxq, code);
    float y = __fdiv_rn(x, scale);
    uint32_t c = tgt == TGT_E4M3 ? dev_e4m3(y) : dev_e2m1(y);
    *code = (int32_t)c;
    return __fmul_rn(tgt == TGT_E4M3 ? dev_e4m3_value(c) : dev_e2m1_value(c), scale);
}

/* One warp per row: lane l holds the row's block columns l, l + 32, ... (NS of them) in registers.
 * Column i's value is broadcast from its lane, every lane quantizes it (the same bits), and each lane
 * updates its own later columns - the element-wise order of the one-thread-per-row walk, so the same
 * results, with the 32-fold shorter dependency chain per column. E goes out through shared memory,
 * SW_WARPS rows of a column side by side. */
template <int NS>
__global__ void __launch_bounds__(SW_WARPS * 32) k_sweep_rows(float *W, const float *U, int32_t *codes, const float *S,
                                                              const int32_t *Z, const int32_t *perm, float *E,
                                                              double *lossp, int N, int K, int i1, int cnt, int gs,
                                                              int grouped, int stat, float maxq, int tgt) {
    __shared__ float Es[NS * 32 * SW_WARPS]; /* [cnt][SW_WARPS] */
    const unsigned full = 0xffffffffu;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r0 = blockIdx.x * SW_WARPS, n = r0 + warp;
    if (n < N) { /* the whole warp shares n: its shuffles see every lane */
        float *wrow = W + (size_t)n * K + i1;
        int32_t *crow = codes + (size_t)n * K + i1;
        float wv[NS];
        int32_t cv[NS];
#pragma unroll
        for (int t = 0; t < NS; t++) {
            int j = t * 32 + lane;
            wv[t] = j < cnt ? wrow[j] : 0.0f;
            cv[t] = 0;
        }
        double loss = 0;
        float scale = 0, zero = 0;
        int gcur = -1;
        if (!grouped) {
            scale = S[n];
            zero = (float)Z[n];
        }
#pragma unroll
        for (int s = 0; s < NS; s++) {
            int olim = cnt - s * 32 < 32 ? cnt - s * 32 : 32; /* <= 0 past the block's end */
            for (int o = 0; o < olim; o++) {
                int i = s * 32 + o;
                int c = i1 + i;
                if (grouped) {
                    int g = (stat && perm ? perm[c] : c) / gs;
                    if (g != gcur) {
                        scale = S[(size_t)g * N + n];
                        zero = (float)Z[(size_t)g * N + n];
                        gcur = g;
                    }
                }
                float d = __ldg(U + (size_t)c * K + c);
                float w = __shfl_sync(full, wv[s], o);
                int32_t code;
                float q = sweep_qv(tgt, w, scale, zero, maxq, &code);
                float diff = __fsub_rn(w, q);
                float e = __fdiv_rn(diff, d);
                if (lane == o) wv[s] = q, cv[s] = code;
                if (lane == 0) {
                    loss += (double)diff * diff / ((double)d * d);
                    Es[i * SW_WARPS + warp] = e;
                }
                const float *ur = U + (size_t)c * K + i1;
#pragma unroll
                for (int t = s; t < NS; t++) {
                    int j = t * 32 + lane;
                    if (j > i && j < cnt) wv[t] = __fsub_rn(wv[t], __fmul_rn(e, __ldg(ur + j)));
                }
            }
        }
#pragma unroll
        for (int t = 0; t < NS; t++) {
            int j = t * 32 + lane;
            if (j < cnt) wrow[j] = wv[t], crow[j] = cv[t];
        }
        if (lane == 0) lossp[n] += loss;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < cnt * SW_WARPS; idx += blockDim.x) {
        int i = idx / SW_WARPS, r = idx % SW_WARPS;
        if (r0 + r < N) E[(size_t)i * N + r0 + r] = Es[idx];
    }
}

typedef void (*sweep_kernel)(float *, const float *, int32_t *, const float *, const int32_t *, const int32_t *, float *,
                             double *, int, int, int, int, int, int, int, float, int);

/* the instance whose registers hold cnt columns */
static sweep_kernel kernel_for(size_t cnt) {
    return cnt <= 128 ? k_sweep_rows<4> : cnt <= 256 ? k_sweep_rows<8> : k_sweep_rows<12>;
}

extern "C" qd_status qd_cu_gptq_sweep(qd_backend_t be, const struct qd_gptq_sweep_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    size_t N = a->N, K = a->K, B = a->block_size;
    int grouped = a->group_size > 0 && a->group_size < K;
    size_t gs = grouped ? a->group_size : K;
    int stat = a->static_groups && grouped;
    float maxq = (float)((1 << a->cfg.bits) - 1);
    float *W = QD_CU_F32(a->W), *S = QD_CU_F32(a->scales);
    const float *U = QD_CU_F32(a->U);
    int32_t *codes = QD_CU_I32(a->codes), *Z = QD_CU_I32(a->zeros);
    const int32_t *perm = a->perm.buf ? QD_CU_I32(a->perm) : NULL;
    int tgt = a->cfg.kind == QD_QZ_FP8 ? TGT_E4M3 : a->cfg.kind == QD_QZ_FP4 ? TGT_E2M1 : TGT_INT;
    /* float targets come with their parameters (as on the CPU backend) */
    if (tgt != TGT_INT && !a->static_groups)
        return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: gptq_sweep: %s targets take given (static) scales",
                       tgt == TGT_E4M3 ? "fp8" : "fp4");
    if (B > K) B = K;
    if (B > SW_MAXB)
        return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: gptq_sweep: block size %zu too large (at most %d)", B, SW_MAXB);
    void *ws;
    size_t ebytes = (B * N * 4 + 255) / 256 * 256;
    QD_CHECK(qd_cu_ws(c, ebytes + N * sizeof(double), &ws));
    float *E = (float *)ws;
    double *lossp = (double *)((char *)ws + ebytes);
    QD_CUDA_CHECK(cudaMemsetAsync(lossp, 0, N * sizeof(double), c->stream));
    /* one group: its parameters from the whole W before the sweep, unless the caller gave them
     * (static_groups: GPTQ finds them before zeroing dead columns, as the CPU backend expects) */
    if (!grouped && !a->static_groups) QD_CHECK(qd_cu_qparams_groups(c, &a->cfg, W, K, N, K, 0, 1, S, Z));
    unsigned nb = (unsigned)((N + SW_WARPS - 1) / SW_WARPS);
    for (size_t i1 = 0; i1 < K; i1 += B) {
        size_t i2 = i1 + B < K ? i1 + B : K, cnt = i2 - i1;
        if (grouped && !stat) /* groups starting in [i1, i2) */
            QD_CHECK(qd_cu_qparams_groups(c, &a->cfg, W, K, N, gs, (i1 + gs - 1) / gs, (i2 + gs - 1) / gs, S, Z));
        kernel_for(cnt)<<<nb, SW_WARPS * 32, 0, c->stream>>>(W, U, codes, S, Z, perm, E, lossp, (int)N, (int)K, (int)i1,
                                                            (int)cnt, (int)gs, grouped, stat, maxq, tgt);
        QD_LAUNCH_CHECK("gptq_sweep");
        if (i2 < K && qd_cu_exact(be)) { /* W[:, i2:] = (float)(W - E^T U) in the CPU's fixed fp64 order */
            struct qd_cu_xg g = {.ta = 1, .tb = 0, .M = N, .N = K - i2, .K = cnt, .A = E, .B = U + i1 * K + i2, .lda = N,
                                 .ldb = K, .C = W + i2, .ldc = K, .alpha = -1.0, .beta = 1.0};
            QD_CHECK(qd_cu_xgemm(c, &g));
        } else if (i2 < K) {
            QD_CHECK(qd_cu_sgemm(c, 1, 0, N, K - i2, cnt, -1.0f, E, N, U + i1 * K + i2, K, 1.0f, W + i2, K));
        }
    }
    double *hl = (double *)malloc(N * sizeof(double));
    if (!hl) return qd_fail(QD_ERR_NOMEM, "cuda backend: gptq_sweep: out of host memory for %zu losses", N);
    cudaError_t e = cudaMemcpyAsync(hl, lossp, N * sizeof(double), cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        free(hl);
        return qd_fail(QD_ERR_CUDA, "cuda backend: gptq_sweep: reading the loss back failed: %s", cudaGetErrorString(e));
    }
    double loss = 0;
    for (size_t n = 0; n < N; n++) loss += hl[n];
    free(hl);
    *a->loss_out = loss / 2;
    return QD_OK;
}
