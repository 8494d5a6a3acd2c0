/* SPDX-License-Identifier: MIT
 * gptq-sweep.cu - GPTQ's column sweep: per block of block_size columns, (1) the parameters of the
 * groups that start in the block, from the global W (which holds earlier blocks' updates only, as the
 * CPU), (2) ONE fused kernel that walks the block's columns with the in-block error feedback (one
 * thread per row, the row's block tile in shared memory, U read as broadcasts), writing the
 * dequantized values, the codes and the scaled errors E (column-major, [cnt][N]), (3) the lazy update
 * W[:, i2:] -= E^T U[i1:i2, i2:] as one cuBLAS GEMM. Three launches per block, none per column.
 * The in-block arithmetic is the CPU's (kernels/cpu/gptq-sweep.c) without fused multiply-add.
 * Float targets (QD_QZ_FP8: E4M3, QD_QZ_FP4: E2M1; given static scales: one group or groups along K)
 * take the same walk with the codec of qd-fp8.h / qd-fp4.h, written bit for bit as the host's in fp-codes.cuh. */
#include <stdlib.h>

#include "exact.cuh"
#include "fp-codes.cuh"
#include "quant-common.cuh"

#define SW_R 32 /* rows (threads) per block: one warp, so small layers still fill the GPU */

enum { TGT_INT = 0, TGT_E4M3 = 1, TGT_E2M1 = 2 };

/* one value of the sweep: the code and its dequantized value, for the target kind */
__device__ __forceinline__ float sweep_qv(int tgt, float x, float scale, float zero, float maxq, int32_t *code) {
    if (tgt == TGT_INT) return qd_qv(x, scale, zero, maxq, code);
    float y = __fdiv_rn(x, scale);
    uint32_t c = tgt == TGT_E4M3 ? dev_e4m3(y) : dev_e2m1(y);
    *code = (int32_t)c;
    return __fmul_rn(tgt == TGT_E4M3 ? dev_e4m3_value(c) : dev_e2m1_value(c), scale);
}

__global__ void __launch_bounds__(SW_R) k_sweep_block(float *W, const float *U, int32_t *codes, const float *S,
                                                      const int32_t *Z, const int32_t *perm, float *E, double *lossp,
                                                      int N, int K, int i1, int cnt, int gs, int grouped, int stat,
                                                      float maxq, int tgt) {
    extern __shared__ float sm[];
    int ld = cnt + 1;
    float *W1 = sm;
    int32_t *C1 = (int32_t *)(sm + SW_R * ld);
    int r0 = blockIdx.x * SW_R, tid = threadIdx.x;
    for (int idx = tid; idx < SW_R * cnt; idx += blockDim.x) {
        int r = idx / cnt, j = idx % cnt;
        W1[r * ld + j] = r0 + r < N ? W[(size_t)(r0 + r) * K + i1 + j] : 0.0f;
    }
    __syncthreads();
    int n = r0 + tid;
    if (n < N) {
        float *wr = W1 + tid * ld;
        int32_t *cr = C1 + tid * ld;
        double loss = 0;
        float scale = 0, zero = 0;
        int gcur = -1;
        if (!grouped) {
            scale = S[n];
            zero = (float)Z[n];
        }
        for (int i = 0; i < cnt; i++) {
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
            float w = wr[i];
            int32_t code;
            float q = sweep_qv(tgt, w, scale, zero, maxq, &code);
            cr[i] = code;
            float diff = __fsub_rn(w, q);
            loss += (double)diff * diff / ((double)d * d);
            float e = __fdiv_rn(diff, d);
            E[(size_t)i * N + n] = e;
            wr[i] = q;
            const float *ur = U + (size_t)c * K + i1;
            for (int j = i + 1; j < cnt; j++) wr[j] = __fsub_rn(wr[j], __fmul_rn(e, __ldg(ur + j)));
        }
        lossp[n] += loss;
    }
    __syncthreads();
    for (int idx = tid; idx < SW_R * cnt; idx += blockDim.x) {
        int r = idx / cnt, j = idx % cnt;
        if (r0 + r < N) {
            W[(size_t)(r0 + r) * K + i1 + j] = W1[r * ld + j];
            codes[(size_t)(r0 + r) * K + i1 + j] = C1[r * ld + j];
        }
    }
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
    size_t smem = (size_t)SW_R * (B + 1) * 8;
    if (smem > 200 * 1024)
        return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: gptq_sweep: block size %zu too large (at most 384)", B);
    void *ws;
    size_t ebytes = (B * N * 4 + 255) / 256 * 256;
    QD_CHECK(qd_cu_ws(c, ebytes + N * sizeof(double), &ws));
    float *E = (float *)ws;
    double *lossp = (double *)((char *)ws + ebytes);
    QD_CUDA_CHECK(cudaMemsetAsync(lossp, 0, N * sizeof(double), c->stream));
    QD_CUDA_CHECK(cudaFuncSetAttribute(k_sweep_block, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    /* one group: its parameters from the whole W before the sweep, unless the caller gave them
     * (static_groups: GPTQ finds them before zeroing dead columns, as the CPU backend expects) */
    if (!grouped && !a->static_groups) QD_CHECK(qd_cu_qparams_groups(c, &a->cfg, W, K, N, K, 0, 1, S, Z));
    unsigned nb = (unsigned)((N + SW_R - 1) / SW_R);
    for (size_t i1 = 0; i1 < K; i1 += B) {
        size_t i2 = i1 + B < K ? i1 + B : K, cnt = i2 - i1;
        if (grouped && !stat) /* groups starting in [i1, i2) */
            QD_CHECK(qd_cu_qparams_groups(c, &a->cfg, W, K, N, gs, (i1 + gs - 1) / gs, (i2 + gs - 1) / gs, S, Z));
        k_sweep_block<<<nb, SW_R, (size_t)SW_R * (cnt + 1) * 8, c->stream>>>(
            W, U, codes, S, Z, perm, E, lossp, (int)N, (int)K, (int)i1, (int)cnt, (int)gs, grouped, stat, maxq, tgt);
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
