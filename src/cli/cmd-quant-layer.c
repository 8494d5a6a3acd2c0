/* SPDX-License-Identifier: MIT
 * qdist quant-layer - quantize one Linear from a safetensors file, for the independent reference
 * tests: input "weight" F32 [N,K] and "inputs" F32 [T,K] (H = 2/T X^T X, computed by the backend);
 * output "codes" I32 [N,K], "scales" F32 [G,N], "zeros" I32 [G,N], "g_idx" I32 [K], "loss" F32 [1],
 * "damp" F32 [1] (-1 for rtn), "dequant" F32 [N,K] (fp32 scales). --scheme quantizes to a scheme's
 * grid instead (fp8 / fp4 codes are their bytes; fp32 scales), by rtn or gptq as in a run. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-args.h"
#include "qd-backends.h"
#include "qd-cli-numerics.h"
#include "qd-check.h"
#include "qd-commands.h"
#include "qd-paths.h"
#include "qd-qbounds.h"
#include "qd-quant.h"
#include "qd-safetensors.h"
#include "qd-st-writer.h"

static qd_status read_2d(const qd_st_file *f, const char *name, int64_t *rows, int64_t *cols, float **out) {
    const qd_st_tensor *t = qd_st_find(f, name);
    if (!t) return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' is missing", f->path, name);
    if (t->dtype != QD_DT_F32 || t->ndim != 2)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' must be F32 with 2 dimensions", f->path, name);
    *rows = t->shape[0], *cols = t->shape[1];
    float *d = malloc(t->numel * sizeof *d + 1);
    if (!d) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for '%s'", f->path, name);
    memcpy(d, f->map + t->file_offset, t->nbytes);
    *out = d;
    return QD_OK;
}

static qd_status write_result(const char *path, const qd_qresult *r, const float *dequant) {
    char dirbuf[4096], basebuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    snprintf(basebuf, sizeof basebuf, "%s", path);
    const char *dir = dirname(dirbuf);
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", basename(basebuf));
    size_t pl = strlen(prefix);
    if (pl < 12 || strcmp(prefix + pl - 12, ".safetensors") != 0)
        return qd_fail(QD_ERR_USAGE, "quant-layer: --output %s must end in .safetensors", path);
    prefix[pl - 12] = 0;
    const qd_qlinear *l = &r->q;
    size_t N = (size_t)l->N, K = (size_t)l->K, G = (size_t)l->G;
    int32_t *codes = malloc(N * K * sizeof *codes);
    if (!codes) return qd_fail(QD_ERR_NOMEM, "quant-layer: out of memory");
    for (size_t i = 0; i < N * K; i++) codes[i] = l->codes[i];
    float loss = (float)r->s.loss, damp = (float)r->s.damp;
    qd_stw *w;
    qd_status st = qd_stw_open(dir, prefix, UINT64_MAX / 2, &w);
    if (st != QD_OK) {
        free(codes);
        return st;
    }
    int64_t s_nk[2] = {(int64_t)N, (int64_t)K}, s_gn[2] = {(int64_t)G, (int64_t)N}, s_k[1] = {(int64_t)K}, s1[1] = {1};
    QD_CHECK_GOTO(qd_stw_add(w, "codes", QD_DT_I32, 2, s_nk, codes, N * K * 4), st, fail);
    QD_CHECK_GOTO(qd_stw_add(w, "scales", QD_DT_F32, 2, s_gn, l->scales, G * N * 4), st, fail);
    QD_CHECK_GOTO(qd_stw_add(w, "zeros", QD_DT_I32, 2, s_gn, l->zeros, G * N * 4), st, fail);
    QD_CHECK_GOTO(qd_stw_add(w, "g_idx", QD_DT_I32, 1, s_k, l->g_idx, K * 4), st, fail);
    QD_CHECK_GOTO(qd_stw_add(w, "loss", QD_DT_F32, 1, s1, &loss, 4), st, fail);
    QD_CHECK_GOTO(qd_stw_add(w, "damp", QD_DT_F32, 1, s1, &damp, 4), st, fail);
    QD_CHECK_GOTO(qd_stw_add(w, "dequant", QD_DT_F32, 2, s_nk, dequant, N * K * 4), st, fail);
    free(codes);
    return qd_stw_finish(w);
fail:
    free(codes);
    qd_stw_abort(w);
    return st;
}

qd_status qd_cmd_quant_layer(int argc, char **argv) {
    const char *input = NULL, *output = NULL, *method = "gptq", *backend = "cpu", *numerics = "fast", *math = "auto",
               *scheme = "wna16";
    int bits = 4, group_size = 128, sym = 0, asym = 0, act = 0, stat = 0, mse = 0;
    double damp = 0.01;
    const qd_opt opts[] = {
        {"input", QD_OPT_STR, &input, "L.safetensors", "\"weight\" F32 [N,K] and \"inputs\" F32 [T,K]", NULL, NULL},
        {"output", QD_OPT_STR, &output, "R.safetensors", "where to write the result tensors", NULL, NULL},
        {"method", QD_OPT_CHOICE, &method, "M", "quantization method", "rtn|gptq", NULL},
        {"bits", QD_OPT_INT, &bits, "B", "bits per weight", QD_RANGE_BITS, NULL},
        {"group-size", QD_OPT_INT, &group_size, "G", "columns per group, -1 for one group", QD_RANGE_GROUP_SIZE, NULL},
        {"sym", QD_OPT_FLAG, &sym, NULL, "symmetric (default)", NULL, NULL},
        {"asym", QD_OPT_FLAG, &asym, NULL, "asymmetric", NULL, NULL},
        {"act-order", QD_OPT_FLAG, &act, NULL, "GPTQ: columns in descending diag(H) order", NULL, NULL},
        {"static-groups", QD_OPT_FLAG, &stat, NULL, "GPTQ: group parameters from the original weight", NULL, NULL},
        {"damp", QD_OPT_DOUBLE, &damp, "D", "GPTQ damping fraction of mean(diag H)", QD_RANGE_DAMP, NULL},
        {"mse", QD_OPT_FLAG, &mse, NULL, "MSE clip grid search in the quantizer", NULL, NULL},
        {"scheme", QD_OPT_CHOICE, &scheme, "S", "the codes' scheme (qdist quantize --scheme); a non-wna16 one fixes "
         "bits, group size and sym (fp32 scales)", QD_SCHEME_CHOICES, NULL},
        {"backend", QD_OPT_STR, &backend, "NAME", "compute backend: cpu, cuda, auto", NULL, NULL},
        {"numerics", QD_OPT_CHOICE, &numerics, "MODE", QD_NUMERICS_HELP, "fast|exact", NULL},
        {"math", QD_OPT_CHOICE, &math, "M", QD_MATH_HELP, "auto|fp32|tf32|bf16", NULL},
    };
    const char *pos_names[] = {NULL};
    const char *pos[1] = {NULL};
    qd_cmd_spec spec = {"quant-layer", "--input L.safetensors --output R.safetensors [--method rtn|gptq] [options]",
                        "quantize one Linear from a safetensors file (reference tests)", opts,
                        (int)(sizeof opts / sizeof opts[0]), pos_names, pos, 0};
    int help = 0;
    QD_CHECK(qd_args_parse(&spec, argc, argv, &help));
    if (help) return QD_OK;
    if (!input || !output) return qd_fail(QD_ERR_USAGE, "quant-layer: --input and --output are required");
    if (qd_same_file(input, output))
        return qd_fail(QD_ERR_USAGE, "quant-layer: --output %s is the same file as --input %s; write somewhere else",
                       output, input);
    if (sym && asym) return qd_fail(QD_ERR_USAGE, "quant-layer: --sym and --asym exclude each other");
    if (group_size == 0 || group_size < -1) return qd_fail(QD_ERR_USAGE, "quant-layer: --group-size must be > 0 or -1");
    qd_qspec s = {.method = strcmp(method, "rtn") == 0 ? QD_METHOD_RTN : QD_METHOD_GPTQ, .bits = bits,
                  .group_size = group_size, .sym = !asym, .act_order = act, .static_groups = stat, .damp = damp,
                  .mse = mse};
    if (qd_scheme_parse(scheme, &s.scheme) != 0)
        return qd_fail(QD_ERR_USAGE, "quant-layer: --scheme '%s' is unknown; expected %s", scheme, QD_SCHEME_CHOICES);
    if (s.scheme != QD_SCHEME_WNA16) {
        qd_qspec_apply_scheme(&s);
        s.method = strcmp(method, "rtn") == 0 ? QD_METHOD_RTN : QD_METHOD_GPTQ;
        s.scale_dtype = QD_DT_F32;
    }
    qd_st_file *f;
    QD_CHECK(qd_st_open(input, 1, &f));
    float *W = NULL, *X = NULL, *deq = NULL;
    int64_t N, K, T, K2;
    qd_backend_t be = NULL;
    qd_buf_t bW = NULL, bX = NULL, bH = NULL;
    qd_qresult r = {0};
    qd_status st;
    QD_CHECK_GOTO(read_2d(f, "weight", &N, &K, &W), st, done);
    QD_CHECK_GOTO(read_2d(f, "inputs", &T, &K2, &X), st, done);
    if (K2 != K || T < 1) {
        st = qd_fail(QD_ERR_FORMAT, "%s: inputs [%lld, %lld] do not match weight [%lld, %lld]", input, (long long)T,
                     (long long)K2, (long long)N, (long long)K);
        goto done;
    }
    qd_backend_spec bs;
    QD_CHECK_GOTO(qd_backend_spec_parse(backend, numerics, &bs), st, done);
    QD_CHECK_GOTO(qd_backend_spec_set_math(&bs, math, QD_DT_F32), st, done); /* its tensors are F32 */
    QD_CHECK_GOTO(qd_backend_open(&bs, &be), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, (size_t)(N * K), &bW), st, done);
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bW, 0), .src = W, .src_dtype = QD_DT_F32,
                                                            .n = (size_t)(N * K)}), st, done);
    if (s.method == QD_METHOD_GPTQ) {
        QD_CHECK_GOTO(qd_buf_alloc(be, (size_t)(T * K), &bX), st, done);
        QD_CHECK_GOTO(qd_buf_alloc(be, (size_t)(K * K), &bH), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bX, 0), .src = X, .src_dtype = QD_DT_F32,
                                                                .n = (size_t)(T * K)}), st, done);
        QD_CHECK_GOTO(qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(bH, 0), .X = QD_REF(bX, 0), .T = (size_t)T,
                                                                  .K = (size_t)K, .ldx = (size_t)K,
                                                                  .alpha = (float)(2.0 / (double)T), .beta = 0}),
                      st, done);
        QD_CHECK_GOTO(qd_gptq_layer(be, "layer", &s, bW, (size_t)N, (size_t)K, bH, &r), st, done);
    } else if (qd_scheme_is_float(s.scheme)) {
        QD_CHECK_GOTO(qd_float_rtn_layer(be, "layer", &s, bW, (size_t)N, (size_t)K, &r), st, done);
    } else {
        QD_CHECK_GOTO(qd_rtn_layer(be, "layer", &s, bW, (size_t)N, (size_t)K, &r), st, done);
    }
    deq = malloc((size_t)(N * K) * sizeof *deq);
    if (!deq) {
        st = qd_fail(QD_ERR_NOMEM, "quant-layer: out of memory");
        goto done;
    }
    qd_qlinear_dequant(&r.q, deq);
    QD_CHECK_GOTO(write_result(output, &r, deq), st, done);
done:
    qd_qresult_free(&r);
    qd_buf_free(bW), qd_buf_free(bX), qd_buf_free(bH);
    qd_be_free(be);
    free(W), free(X), free(deq);
    qd_st_close(f);
    return st;
}
