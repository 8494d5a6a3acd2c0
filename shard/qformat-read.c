/* SPDX-License-Identifier: MIT
 * qformat-read.c - dequantise-on-load for GPTQ, AWQ and compressed-tensors (contract in
 * qd-qformat-read.h). */
#include "qd-qformat-read.h"

#include <cJSON.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-json.h"
#include "qd-log.h"
#include "qd-qformat-awq.h"
#include "qd-qformat-ct.h"
#include "qd-qformat-fp8.h"
#include "qd-qformat-gptq.h"
#include "qformat-read-internal.h"


struct qd_qformat {
    qd_qformat_kind kind;
    char name[32];
    int gptq_v2;
    int awq_group_size;
    int fp8_block[2]; /* weight_block_size of an FP8 source; {0, 0} when absent */
    int ngroups;
    ct_group *groups;
    char path[4200];
};

qd_qformat_kind qd_qformat_kind_of(const qd_qformat *qf) { return qf->kind; }
const char *qd_qformat_name(const qd_qformat *qf) { return qf->name; }

void qd_qformat_close(qd_qformat *qf) {
    if (!qf) return;
    qd__ct_groups_free(qf->groups, qf->ngroups);
    free(qf);
}

/* quantization_config of cfg, each field through qd-json.h's strict readers */
static qd_status read_method(qd_qformat *qf, const cJSON *cfg) {
    qd_json_at at = {qf->path, "quantization_config"};
    const cJSON *q;
    const char *meth, *cf;
    QD_CHECK(qd_json_node((qd_json_at){qf->path, ""}, cfg, "quantization_config", cJSON_Object, 0, &q));
    QD_CHECK(qd_json_str(at, q, "quant_method", 0, &meth));
    if (!meth) return QD_OK;
    if (strcmp(meth, "gptq") == 0) {
        QD_CHECK(qd_json_str(at, q, "checkpoint_format", 0, &cf));
        qf->kind = QD_QF_GPTQ;
        qf->gptq_v2 = cf && strcmp(cf, "gptq_v2") == 0;
        snprintf(qf->name, sizeof qf->name, "%s", qf->gptq_v2 ? "gptq_v2" : "gptq");
    } else if (strcmp(meth, "awq") == 0) {
        qf->kind = QD_QF_AWQ;
        QD_CHECK(qd_json_int(at, q, "group_size", -1, INT_MAX, 0, &qf->awq_group_size));
        snprintf(qf->name, sizeof qf->name, "awq");
    } else if (strcmp(meth, "compressed-tensors") == 0) {
        qf->kind = QD_QF_CT;
        snprintf(qf->name, sizeof qf->name, "compressed-tensors");
        return qd__ct_groups_parse(q, qf->path, &qf->groups, &qf->ngroups);
    } else if (strcmp(meth, "fp8") == 0) {
        qf->kind = QD_QF_FP8;
        snprintf(qf->name, sizeof qf->name, "fp8");
        return qd_json_pair(at, q, "weight_block_size", 1, 65536, 0, qf->fp8_block);
    } else {
        qf->kind = QD_QF_OTHER;
        snprintf(qf->name, sizeof qf->name, "%.31s", meth);
    }
    return QD_OK;
}

qd_status qd_qformat_open(const char *model_dir, qd_qformat **out) {
    *out = NULL;
    qd_qformat *qf;
    QD_ALLOC(qf, 1);
    snprintf(qf->name, sizeof qf->name, "none");
    qd_status st = qd_path_join(qf->path, sizeof qf->path, model_dir, "config.json");
    char *text = NULL;
    size_t len;
    if (st == QD_OK) st = qd_read_file(qf->path, 16u << 20, &text, &len);
    if (st != QD_OK) {
        free(qf);
        return st;
    }
    cJSON *cfg = NULL;
    st = qd_json_parse(text, len, qf->path, &cfg);
    free(text);
    if (st == QD_OK && !cJSON_IsObject(cfg)) st = qd_fail(QD_ERR_FORMAT, "%s: not a JSON object", qf->path);
    if (st == QD_OK) st = read_method(qf, cfg);
    cJSON_Delete(cfg);
    if (st != QD_OK) {
        qd_qformat_close(qf);
        return st;
    }
    *out = qf;
    return QD_OK;
}

static const char *aux_suffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx", ".weight_packed", ".weight_scale",
                                     ".weight_shape", ".weight_zero_point", ".weight_g_idx", ".weight_scale_inv",
                                     ".weight_global_scale"};

int qd_qformat_is_aux_tensor(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof aux_suffixes / sizeof *aux_suffixes; i++) {
        size_t sl = strlen(aux_suffixes[i]);
        if (n > sl && strcmp(name + n - sl, aux_suffixes[i]) == 0) return 1;
    }
    return 0;
}

/* ---- tensor access ------------------------------------------------------------------------------ */

static const qd_st_tensor *find(const qd_checkpoint *ck, const char *prefix, const char *suffix) {
    char name[1024];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    return qd_ckpt_find(ck, name);
}

static qd_status expect(const qd_checkpoint *ck, const qd_st_tensor *t, qd_dtype dt, int ndim) {
    if (t->dtype != dt || t->ndim != ndim)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' is %s with %d dims, expected %s with %d", ck->dir, t->name,
                       qd_dtype_name(t->dtype), t->ndim, qd_dtype_name(dt), ndim);
    return QD_OK;
}

static qd_status raw(const qd_checkpoint *ck, const qd_st_tensor *t, void **out) {
    unsigned char *b;
    QD_ALLOC(b, t->nbytes);
    qd_status st = qd_ckpt_read_raw(ck, t, b);
    if (st != QD_OK) {
        free(b);
        return st;
    }
    *out = b;
    return QD_OK;
}

static qd_status floats(const qd_checkpoint *ck, const qd_st_tensor *t, float **out) {
    if (!qd_dtype_is_float(t->dtype))
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' is %s, expected a float type", ck->dir, t->name,
                       qd_dtype_name(t->dtype));
    float *f;
    QD_ALLOC(f, t->numel);
    qd_status st = qd_ckpt_read_f32(ck, t, f);
    if (st != QD_OK) {
        free(f);
        return st;
    }
    *out = f;
    return QD_OK;
}

/* W[n][k] = (q[n][k] - z[g][n]) * s[g][n], g = g_idx[k] (or k / gs) */
static qd_status dequant(int64_t N, int64_t K, int64_t G, const uint8_t *q, const int32_t *z, const float *s,
                         const int32_t *g_idx, int gs, float **w) {
    float *out;
    QD_ALLOC(out, (size_t)N * (size_t)K);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int64_t g = g_idx ? g_idx[k] : (gs > 0 ? k / gs : 0);
            if (g < 0 || g >= G) {
                free(out);
                return qd_fail(QD_ERR_FORMAT, "dequantise: group %lld of column %lld outside 0..%lld", (long long)g,
                               (long long)k, (long long)G - 1);
            }
            out[n * K + k] = (float)((int)q[n * K + k] - z[g * N + n]) * s[g * N + n];
        }
    *w = out;
    return QD_OK;
}

static void fill_info(qd_qlinear_info *info, int64_t N, int64_t K, int64_t G, int bits, int gs, const int32_t *z,
                      const int32_t *g_idx) {
    if (!info) return;
    info->quantized = 1;
    info->N = N;
    info->K = K;
    info->bits = bits;
    info->group_size = gs > 0 && G > 1 ? gs : -1;
    info->sym = 1;
    for (int64_t i = 0; z && i < G * N; i++)
        if (z[i] != (1 << (bits - 1))) info->sym = 0;
    info->act_order = 0;
    for (int64_t k = 0; g_idx && k < K; k++)
        if (g_idx[k] != (gs > 0 ? k / gs : 0)) info->act_order = 1;
}

/* ---- formats ------------------------------------------------------------------------------------ */

static qd_status read_gptq(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix, float **w, int64_t *pN,
                           int64_t *pK, qd_qlinear_info *info) {
    const qd_st_tensor *tw = find(ck, prefix, ".qweight"), *tz = find(ck, prefix, ".qzeros"),
                       *ts = find(ck, prefix, ".scales"), *tg = find(ck, prefix, ".g_idx");
    if (!tz || !ts || !tg)
        return qd_fail(QD_ERR_FORMAT, "%s: GPTQ module '%s' lacks qzeros, scales or g_idx", ck->dir, prefix);
    QD_CHECK(expect(ck, tw, QD_DT_I32, 2));
    QD_CHECK(expect(ck, tz, QD_DT_I32, 2));
    QD_CHECK(expect(ck, tg, QD_DT_I32, 1));
    int64_t K = tg->shape[0], N = tw->shape[1], G = ts->shape[0];
    int64_t bits = K > 0 ? tw->shape[0] * 32 / K : 0;
    if (K <= 0 || tw->shape[0] * 32 != bits * K || (bits != 2 && bits != 3 && bits != 4 && bits != 8) ||
        ts->ndim != 2 || ts->shape[1] != N || tz->shape[0] != G || tz->shape[1] * 32 != N * bits)
        return qd_fail(QD_ERR_FORMAT, "%s: GPTQ module '%s': shapes qweight [%lld,%lld], qzeros [%lld,%lld], scales "
                       "[%lld,%lld], g_idx [%lld] do not fit any of 2/3/4/8 bits", ck->dir, prefix,
                       (long long)tw->shape[0], (long long)tw->shape[1], (long long)tz->shape[0],
                       (long long)tz->shape[1], (long long)ts->shape[0], (long long)(ts->ndim > 1 ? ts->shape[1] : 0),
                       (long long)K);
    int32_t *qw = NULL, *qz = NULL, *gi = NULL, *z = NULL;
    uint8_t *q = NULL;
    float *s = NULL;
    qd_status st = w ? raw(ck, tw, (void **)&qw) : QD_OK; /* w == NULL: description only */
    if (st == QD_OK) st = raw(ck, tz, (void **)&qz);
    if (st == QD_OK) st = raw(ck, tg, (void **)&gi);
    if (st == QD_OK) st = floats(ck, ts, &s);
    if (st == QD_OK && w) st = qd__scales_check(ck, ts, s, (size_t)ts->numel, 0);
    if (st == QD_OK && ((w && !(q = malloc((size_t)(N * K)))) || !(z = malloc(sizeof *z * (size_t)(G * N)))))
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantising '%s'", ck->dir, prefix);
    if (st == QD_OK && w) st = qd_unpack_gptq_qweight(qw, (int)N, (int)K, (int)bits, q);
    if (st == QD_OK) st = qd_unpack_gptq_qzeros(qz, (int)G, (int)N, (int)bits, !qf || !qf->gptq_v2, z);
    if (st == QD_OK && w) st = dequant(N, K, G, q, z, s, gi, 0, w);
    if (st == QD_OK) {
        *pN = N;
        *pK = K;
        int gs = 0;
        for (int64_t k = 0; k < K; k++) gs += gi[k] == 0;
        fill_info(info, N, K, G, (int)bits, G > 1 ? gs : -1, z, gi);
    }
    free(qw);
    free(qz);
    free(gi);
    free(z);
    free(q);
    free(s);
    return st;
}

static qd_status read_awq(const qd_checkpoint *ck, const char *prefix, float **w, int64_t *pN, int64_t *pK,
                          qd_qlinear_info *info) {
    const qd_st_tensor *tw = find(ck, prefix, ".qweight"), *tz = find(ck, prefix, ".qzeros"),
                       *ts = find(ck, prefix, ".scales");
    if (!tz || !ts) return qd_fail(QD_ERR_FORMAT, "%s: AWQ module '%s' lacks qzeros or scales", ck->dir, prefix);
    QD_CHECK(expect(ck, tw, QD_DT_I32, 2));
    QD_CHECK(expect(ck, tz, QD_DT_I32, 2));
    int64_t K = tw->shape[0], N = tw->shape[1] * 8, G = tz->shape[0];
    if (G <= 0 || K % G != 0 || tz->shape[1] * 8 != N || ts->ndim != 2 || ts->shape[0] != G || ts->shape[1] != N)
        return qd_fail(QD_ERR_FORMAT, "%s: AWQ module '%s': shapes qweight [%lld,%lld], qzeros [%lld,%lld], scales "
                       "[%lld,%lld] disagree (expected [K,N/8], [K/gs,N/8], [K/gs,N])", ck->dir, prefix,
                       (long long)tw->shape[0], (long long)tw->shape[1], (long long)tz->shape[0],
                       (long long)tz->shape[1], (long long)ts->shape[0], (long long)(ts->ndim > 1 ? ts->shape[1] : 0));
    int gs = (int)(K / G);
    int32_t *qw = NULL, *qz = NULL, *z = NULL;
    uint8_t *q = NULL;
    float *s = NULL;
    qd_status st = w ? raw(ck, tw, (void **)&qw) : QD_OK; /* w == NULL: description only */
    if (st == QD_OK) st = raw(ck, tz, (void **)&qz);
    if (st == QD_OK) st = floats(ck, ts, &s);
    if (st == QD_OK && w) st = qd__scales_check(ck, ts, s, (size_t)ts->numel, 0);
    if (st == QD_OK && ((w && !(q = malloc((size_t)(N * K)))) || !(z = malloc(sizeof *z * (size_t)(G * N)))))
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantising '%s'", ck->dir, prefix);
    if (st == QD_OK && w) st = qd_unpack_awq_qweight(qw, (int)N, (int)K, q);
    if (st == QD_OK) st = qd_unpack_awq_qzeros(qz, (int)G, (int)N, z);
    if (st == QD_OK && w) st = dequant(N, K, G, q, z, s, NULL, gs, w);
    if (st == QD_OK) {
        *pN = N;
        *pK = K;
        fill_info(info, N, K, G, 4, gs, z, NULL);
    }
    free(qw);
    free(qz);
    free(z);
    free(q);
    free(s);
    return st;
}

/* a compressed-tensors target: "re:<regex>" (Python re.match: anchored at the start; POSIX ERE here,
 * which covers the escaped-dot names qdist and llm-compressor write) or an exact module name */
static int target_matches(const char *target, const char *prefix) {
    if (strncmp(target, "re:", 3) != 0) return strcmp(target, prefix) == 0;
    char anchored[1100];
    snprintf(anchored, sizeof anchored, "^(%s)", target + 3);
    regex_t re;
    if (regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB) != 0) return 0;
    int ok = regexec(&re, prefix, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* the config group for prefix: a name or regex target first, then the class "Linear" */
const ct_group *qd__ct_group_for(const qd_qformat *qf, const char *prefix) {
    if (!qf) return NULL;
    for (int g = 0; g < qf->ngroups; g++)
        for (int t = 0; t < qf->groups[g].ntargets; t++)
            if (strcmp(qf->groups[g].targets[t], "Linear") != 0 && target_matches(qf->groups[g].targets[t], prefix))
                return &qf->groups[g];
    for (int g = 0; g < qf->ngroups; g++)
        for (int t = 0; t < qf->groups[g].ntargets; t++)
            if (strcmp(qf->groups[g].targets[t], "Linear") == 0) return &qf->groups[g];
    return NULL;
}

static qd_status read_ct(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix, int naive, float **w,
                         int64_t *pN, int64_t *pK, qd_qlinear_info *info) {
    const qd_st_tensor *ts = find(ck, prefix, ".weight_scale"), *tz = find(ck, prefix, ".weight_zero_point"),
                       *tg = find(ck, prefix, ".weight_g_idx");
    const qd_st_tensor *tw = naive ? find(ck, prefix, ".weight") : find(ck, prefix, ".weight_packed");
    const qd_st_tensor *tshape = find(ck, prefix, ".weight_shape");
    if (!ts) return qd_fail(QD_ERR_FORMAT, "%s: compressed-tensors module '%s' lacks weight_scale", ck->dir, prefix);
    QD_CHECK(expect(ck, tw, naive ? QD_DT_I8 : QD_DT_I32, 2));
    int64_t N = tw->shape[0], K = tw->shape[1];
    if (!naive) {
        if (!tshape) return qd_fail(QD_ERR_FORMAT, "%s: module '%s' lacks weight_shape", ck->dir, prefix);
        if (tshape->numel != 2 || (tshape->dtype != QD_DT_I64 && tshape->dtype != QD_DT_I32))
            return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_shape' must hold 2 integers", ck->dir, prefix);
        int64_t shp[2] = {0, 0};
        if (tshape->dtype == QD_DT_I64) QD_CHECK(qd_ckpt_read_raw(ck, tshape, shp));
        else {
            int32_t s32[2];
            QD_CHECK(qd_ckpt_read_raw(ck, tshape, s32));
            shp[0] = s32[0];
            shp[1] = s32[1];
        }
        if (shp[0] != N || shp[1] <= 0)
            return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_shape' = [%lld,%lld] disagrees with weight_packed [%lld,%lld]",
                           ck->dir, prefix, (long long)shp[0], (long long)shp[1], (long long)N, (long long)K);
        K = shp[1];
    }
    const ct_group *cg = qd__ct_group_for(qf, prefix);
    int bits = cg && cg->bits ? cg->bits : 0;
    int64_t bn, bk; /* the config group against these tensors (bits: the packing's, checked below) */
    QD_CHECK(qd__ct_layout(cg, ck, prefix, naive ? QD_CT_INT8 : QD_CT_PACKED, bits, N, K, ts, &bn, &bk));
    if (ts->ndim != 2 || ts->shape[0] != N)
        return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_scale' must be [N=%lld, G]", ck->dir, prefix, (long long)N);
    int64_t G = ts->shape[1];
    if (!naive && !bits) /* infer: the b with ceil(K*b/32) == packed columns, if unique */
        for (int b = 1; b <= 8; b++)
            if ((K * b + 31) / 32 == tw->shape[1]) {
                if (bits) return qd_fail(QD_ERR_FORMAT, "%s: '%s': bit width ambiguous from shapes and no config "
                                         "group targets it", ck->dir, prefix);
                bits = b;
            }
    if (naive && !bits) bits = 8;
    if (bits < 1 || bits > 8 || (!naive && (K * bits + 31) / 32 != tw->shape[1]))
        return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_packed' has %lld columns, which does not fit K = %lld at %d bits",
                       ck->dir, prefix, (long long)tw->shape[1], (long long)K, bits);
    int gs = cg && cg->group_size > 0 ? cg->group_size : (G > 1 ? (int)((K + G - 1) / G) : -1);
    int half = 1 << (bits - 1);
    uint8_t *q = NULL;
    int32_t *z = NULL, *gi = NULL;
    float *s = NULL, *sT = NULL;
    void *wraw = NULL, *zraw = NULL;
    qd_status st = w ? raw(ck, tw, &wraw) : QD_OK; /* w == NULL: description only */
    if (st == QD_OK && w && !(q = malloc((size_t)(N * K) + 1)))
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantising '%s'", ck->dir, prefix);
    if (st == QD_OK && !(z = malloc(sizeof *z * (size_t)(G * N) + 1)))
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantising '%s'", ck->dir, prefix);
    if (st == QD_OK && w) {
        if (naive)
            for (int64_t i = 0; i < N * K; i++) q[i] = (uint8_t)(((int8_t *)wraw)[i] + half);
        else st = qd_unpack_ct_weight(wraw, (int)N, (int)K, bits, q);
    }
    if (st == QD_OK) {
        if (!tz)
            for (int64_t i = 0; i < G * N; i++) z[i] = half;
        else if (naive) {
            st = expect(ck, tz, QD_DT_I8, 2);
            if (st == QD_OK && (tz->shape[0] != N || tz->shape[1] != G))
                st = qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_zero_point' must be [%lld,%lld]", ck->dir, prefix,
                             (long long)N, (long long)G);
            if (st == QD_OK) st = raw(ck, tz, &zraw);
            for (int64_t n = 0; st == QD_OK && n < N; n++)
                for (int64_t g = 0; g < G; g++) z[g * N + n] = ((int8_t *)zraw)[n * G + g] + half;
        } else {
            st = expect(ck, tz, QD_DT_I32, 2);
            if (st == QD_OK && (tz->shape[0] != (N * bits + 31) / 32 || tz->shape[1] != G))
                st = qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_zero_point' must be [%lld,%lld]", ck->dir, prefix,
                             (long long)((N * bits + 31) / 32), (long long)G);
            if (st == QD_OK) st = raw(ck, tz, &zraw);
            if (st == QD_OK) st = qd_unpack_ct_zero_point(zraw, (int)G, (int)N, bits, z);
        }
    }
    if (st == QD_OK && tg) {
        st = expect(ck, tg, QD_DT_I32, 1);
        if (st == QD_OK && tg->shape[0] != K)
            st = qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_g_idx' must have %lld elements", ck->dir, prefix, (long long)K);
        if (st == QD_OK) st = raw(ck, tg, (void **)&gi);
    }
    if (st == QD_OK) st = floats(ck, ts, &sT);
    if (st == QD_OK && w) st = qd__scales_check(ck, ts, sT, (size_t)(G * N), 0);
    if (st == QD_OK && !(s = malloc(sizeof *s * (size_t)(G * N) + 1)))
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory dequantising '%s'", ck->dir, prefix);
    if (st == QD_OK) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t g = 0; g < G; g++) s[g * N + n] = sT[n * G + g];
        if (w) st = dequant(N, K, G, q, z, s, gi, gs, w);
    }
    if (st == QD_OK) {
        *pN = N;
        *pK = K;
        fill_info(info, N, K, G, bits, gs, z, gi);
        if (info && naive && bits == 8 && cg && cg->has_act && !cg->is_float) info->scheme = QD_SCHEME_W8A8_INT8;
    }
    free(q);
    free(z);
    free(gi);
    free(s);
    free(sT);
    free(wraw);
    free(zraw);
    return st;
}

qd_status qd_qformat_linear_info(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix,
                                 qd_qlinear_info *info) {
    int64_t N, K;
    return qd_qformat_read_linear(qf, ck, prefix, NULL, &N, &K, info);
}

int qd_qformat_fp8_source(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix, const int **block) {
    const qd_st_tensor *tw = find(ck, prefix, ".weight");
    *block = qf ? qf->fp8_block : NULL;
    /* a compressed-tensors float-quantized weight, or one with vLLM's .weight_scale, is not an FP8 source's */
    return tw && tw->dtype == QD_DT_F8_E4M3 && !(qf && qf->kind == QD_QF_CT) && !find(ck, prefix, ".weight_scale");
}

qd_status qd_qformat_read_linear(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix, float **w,
                                 int64_t *N, int64_t *K, qd_qlinear_info *info) {
    if (w) *w = NULL;
    if (info) memset(info, 0, sizeof *info);
    const qd_st_tensor *tw = find(ck, prefix, ".weight");
    if (tw && qd_dtype_is_float(tw->dtype) && !find(ck, prefix, ".weight_scale")) {
        if (tw->ndim != 2)
            return qd_fail(QD_ERR_FORMAT, "%s: '%s' is not 2-D", ck->dir, tw->name);
        if (w) QD_CHECK(floats(ck, tw, w));
        *N = tw->shape[0];
        *K = tw->shape[1];
        if (info) {
            info->N = *N;
            info->K = *K;
        }
        return QD_OK;
    }
    const int *fp8_block;
    if (qd_qformat_fp8_source(qf, ck, prefix, &fp8_block)) return qd_fp8_linear(ck, prefix, fp8_block, w, N, K, info);
    if (tw && tw->dtype == QD_DT_F8_E4M3)
        return qd__read_ct_fp8(qd__ct_group_for(qf, prefix), ck, prefix, w, N, K, info);
    if (tw && tw->dtype == QD_DT_I8 && !find(ck, prefix, ".weight_scale"))
        return qd_fail(QD_ERR_FORMAT, "%s: '%s.weight_scale' is missing; the I8 weight '%s' (int-quantized) needs one",
                       ck->dir, prefix, tw->name);
    if (tw && tw->dtype == QD_DT_I8) return read_ct(qf, ck, prefix, 1, w, N, K, info);
    const qd_st_tensor *tp = find(ck, prefix, ".weight_packed");
    if (tp && tp->dtype == QD_DT_U8)
        return qd__read_ct_fp4(qd__ct_group_for(qf, prefix), ck, prefix, w, N, K, info);
    if (tp) return read_ct(qf, ck, prefix, 0, w, N, K, info);
    if (find(ck, prefix, ".qweight")) {
        int awq = qf ? qf->kind == QD_QF_AWQ : !find(ck, prefix, ".g_idx");
        return awq ? read_awq(ck, prefix, w, N, K, info) : read_gptq(qf, ck, prefix, w, N, K, info);
    }
    return qd_fail(QD_ERR_FORMAT, "%s: no weight for Linear '%s' (looked for .weight, .qweight, .weight_packed)",
                   ck->dir, prefix);
}
