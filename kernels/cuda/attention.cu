/* SPDX-License-Identifier: MIT
 * attention.cu - causal GQA attention, flash-style: a block takes 32 queries of one (sequence, head)
 * and walks 32-key tiles of K and V through shared memory with an online fp32 softmax, so no
 * seq_len x seq_len score matrix exists. 8 warps x 4 queries; in the score phase lane j owns key j
 * of the tile (a full head_dim dot product in 16-byte loads, K padded against bank conflicts), in the P V phase lane
 * l owns dims l, l+32, ... of the output. Sliding window: keys t - window < k <= t. Under QD_CUDA_MATH=bf16
 * (unless QD_CUDA_ATTN=fp32) head_dim 64/128 go to the tensor-core kernel of attention-tc.cu; exact numerics
 * to attention-exact.cu. */
#include "exact.cuh"

#define AT_BQ 32
#define AT_BK 32
#define AT_WARPS 8
#define AT_QPW (AT_BQ / AT_WARPS)

/* K rows are padded to KP floats: D + 4 with 16-byte loads (D % 4 == 0: 8 lanes of a load phase hit
 * banks 4 apart), else D + 1 */
template <int DPL, bool VEC>
__global__ void __launch_bounds__(AT_WARPS * 32) k_attn(float *out, const float *q, const float *k, const float *v,
                                                        int T, int heads, int kvh, int D, int window, float scale) {
    extern __shared__ float4 sm4[];
    float *sm = (float *)sm4;
    const int KP = VEC ? D + 4 : D + 1;
    float *Qs = sm;                      /* [BQ][D] */
    float *Ks = Qs + AT_BQ * D;          /* [BK][KP] */
    float *Vs = Ks + AT_BK * KP;         /* [BK][D] */
    int qt = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
    int kh = h / (heads / kvh);
    size_t qld = (size_t)heads * D, kld = (size_t)kvh * D;
    const float *qb = q + (size_t)s * T * qld + (size_t)h * D;
    const float *kb = k + (size_t)s * T * kld + (size_t)kh * D;
    const float *vb = v + (size_t)s * T * kld + (size_t)kh * D;
    float *ob = out + (size_t)s * T * qld + (size_t)h * D;
    int q0 = qt * AT_BQ, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int i = tid; i < AT_BQ * D; i += blockDim.x) {
        int r = i / D, d = i % D;
        Qs[i] = q0 + r < T ? qb[(size_t)(q0 + r) * qld + d] : 0.0f;
    }
    float m[AT_QPW], l[AT_QPW], acc[AT_QPW][DPL];
#pragma unroll
    for (int a = 0; a < AT_QPW; a++) {
        m[a] = -INFINITY;
        l[a] = 0;
#pragma unroll
        for (int b = 0; b < DPL; b++) acc[a][b] = 0;
    }
    int qlast = min(q0 + AT_BQ, T) - 1;
    int kstart = 0;
    if (window > 0 && q0 - window + 1 > 0) kstart = (q0 - window + 1) / AT_BK * AT_BK;
    for (int k0 = kstart; k0 <= qlast; k0 += AT_BK) {
        __syncthreads();
        for (int i = tid; i < AT_BK * D; i += blockDim.x) {
            int r = i / D, d = i % D;
            bool ok = k0 + r < T;
            Ks[r * KP + d] = ok ? kb[(size_t)(k0 + r) * kld + d] : 0.0f;
            Vs[r * D + d] = ok ? vb[(size_t)(k0 + r) * kld + d] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int a = 0; a < AT_QPW; a++) {
            int qi = warp * AT_QPW + a, tq = q0 + qi;
            if (tq >= T) continue;
            int kj = k0 + lane;
            bool valid = kj <= tq && (window <= 0 || tq - kj < window);
            float dot = 0;
            const float *qr = Qs + qi * D, *kr = Ks + lane * KP;
            if (VEC) {
                const float4 *q4 = (const float4 *)qr, *k4 = (const float4 *)kr;
                for (int d = 0; d < D / 4; d++) {
                    float4 a4 = q4[d], b4 = k4[d];
                    dot = fmaf(a4.x, b4.x, dot);
                    dot = fmaf(a4.y, b4.y, dot);
                    dot = fmaf(a4.z, b4.z, dot);
                    dot = fmaf(a4.w, b4.w, dot);
                }
            } else {
                for (int d = 0; d < D; d++) dot = fmaf(qr[d], kr[d], dot);
            }
            float sc = valid ? dot * scale : -INFINITY;
            float tm = sc;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, o));
            float mn = fmaxf(m[a], tm);
            if (mn == -INFINITY) continue; /* nothing visible yet for this query */
            float corr = expf(m[a] - mn);
            float p = valid ? expf(sc - mn) : 0.0f;
            float ps = p;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
            l[a] = l[a] * corr + ps;
            m[a] = mn;
#pragma unroll
            for (int b = 0; b < DPL; b++) acc[a][b] *= corr;
            for (int j = 0; j < AT_BK; j++) {
                float pj = __shfl_sync(0xffffffffu, p, j);
                const float *vr = Vs + j * D;
#pragma unroll
                for (int b = 0; b < DPL; b++) {
                    int d = lane + 32 * b;
                    if (d < D) acc[a][b] = fmaf(pj, vr[d], acc[a][b]);
                }
            }
        }
    }
#pragma unroll
    for (int a = 0; a < AT_QPW; a++) {
        int tq = q0 + warp * AT_QPW + a;
        if (tq >= T) continue;
        float inv = l[a] > 0 ? 1.0f / l[a] : 0.0f;
#pragma unroll
        for (int b = 0; b < DPL; b++) {
            int d = lane + 32 * b;
            if (d < D) ob[(size_t)tq * qld + d] = acc[a][b] * inv;
        }
    }
}

template <int DPL, bool VEC>
static qd_status launch_v(struct qd_cuda_ctx *c, const struct qd_attention_args *a) {
    int D = (int)a->head_dim, KP = VEC ? D + 4 : D + 1;
    size_t smem = (size_t)(AT_BQ * D + AT_BK * KP + AT_BK * D) * sizeof(float);
    QD_CUDA_CHECK(cudaFuncSetAttribute(k_attn<DPL, VEC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)((a->seq_len + AT_BQ - 1) / AT_BQ), (unsigned)a->heads, (unsigned)a->nseq);
    k_attn<DPL, VEC><<<grid, AT_WARPS * 32, smem, c->stream>>>(QD_CU_F32(a->out), QD_CU_F32(a->q), QD_CU_F32(a->k),
                                                         QD_CU_F32(a->v), (int)a->seq_len, (int)a->heads,
                                                         (int)a->kv_heads, D, (int)a->window, a->scale);
    QD_LAUNCH_CHECK("attention");
    return QD_OK;
}

template <int DPL>
static qd_status launch(struct qd_cuda_ctx *c, const struct qd_attention_args *a) {
    return a->head_dim % 4 == 0 ? launch_v<DPL, true>(c, a) : launch_v<DPL, false>(c, a);
}

extern "C" qd_status qd_cu_attention(qd_backend_t be, const struct qd_attention_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (qd_cu_exact(be)) return qd_cu_attention_exact(be, a); /* attention-exact.cu */
    if (c->math == QD_CU_BF16 && !c->attn_fp32) { /* tensor cores, bf16 operands (attention-tc.cu) */
        int done = 0;
        QD_CHECK(qd_cu_attention_tc(c, a, &done));
        if (done) return QD_OK;
    }
    if (a->head_dim <= 32) return launch<1>(c, a);
    if (a->head_dim <= 64) return launch<2>(c, a);
    if (a->head_dim <= 128) return launch<4>(c, a);
    if (a->head_dim <= 256) return launch<8>(c, a);
    return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: attention: head_dim %zu > 256", a->head_dim);
}
