/* SPDX-License-Identifier: MIT
 * export-fake.c - the fake-quant format (qd-export.h, QD_EXPORT_FAKE): every quantized Linear as its
 * dequantised F32 weight plus its codes, scales, zeros and g_idx, read from a quantization source.
 *
 * The tensors are written in the source checkpoint's order, block by block (block 0's tensors, then
 * block 1's, ...), then the tensors outside the blocks: the order the one-process loop of 9db6005 wrote
 * them in, so its bytes stay the same. The dequantised weight uses the scales rounded to the run's
 * scale dtype, the same single multiply as the quantizer's install (qd-qlayer.h), so it equals the
 * weight the next block was computed with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-export.h"
#include "export-internal.h"
#include "qd-log.h"
#include "qd-meta-files.h"
#include "qd-safetensors.h"
#include "qd-st-writer.h"

/* the block of a tensor from its Hugging Face name, -1 outside the blocks (as qsource-stage.c) */
static int block_of(const char *name) {
    int block = -1, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &block, &used) < 1 || used == 0) return -1;
    return block;
}

/* the prefix of "<prefix>.weight" when the source quantized it, else "" */
static void quantized_prefix(const qd_qsource *src, const char *name, char prefix[QD_QNAME_MAX]) {
    size_t len = strlen(name);
    prefix[0] = 0;
    if (len <= 7 || len - 7 >= QD_QNAME_MAX || strcmp(name + len - 7, ".weight") != 0) return;
    snprintf(prefix, QD_QNAME_MAX, "%.*s", (int)(len - 7), name);
    if (src->iface->find_layer(src->ctx, prefix) < 0) prefix[0] = 0;
}

typedef struct {
    const qd_qsource *src;
    const qd_checkpoint *ck;
    qd_qrun run;
    size_t nplain, plain_at; /* plain_at: where the last name lookup ended (the order is mostly shared) */
    qd_stw *stw;
    size_t nquant;
} fake_writer;

static qd_status find_plain(fake_writer *f, const char *name, size_t *index, qd_plain_info *info) {
    for (size_t n = 0; n < f->nplain; n++) {
        size_t i = (f->plain_at + n) % f->nplain;
        QD_CHECK(f->src->iface->plain_info(f->src->ctx, i, info));
        if (strcmp(info->name, name) == 0) {
            *index = i;
            f->plain_at = i + 1;
            return QD_OK;
        }
    }
    return qd_fail(QD_ERR_INTERNAL, "export fake: tensor %s is neither quantized nor plain in the source", name);
}

static qd_status write_plain(fake_writer *f, const char *name) {
    size_t i = 0;
    qd_plain_info info;
    QD_CHECK(find_plain(f, name, &i, &info));
    const void *data = f->src->iface->plain_map(f->src->ctx, i);
    void *buf = NULL;
    if (!data) {
        buf = malloc(info.nbytes + 1);
        if (!buf) return qd_fail(QD_ERR_NOMEM, "export fake: out of memory reading %s", name);
        qd_status st = f->src->iface->plain_read(f->src->ctx, i, buf);
        if (st != QD_OK) {
            free(buf);
            return st;
        }
        data = buf;
    }
    qd_status st = qd_stw_add(f->stw, info.name, info.dtype, info.ndim, info.shape, data, (size_t)info.nbytes);
    free(buf);
    return st;
}

static qd_status write_quantized(fake_writer *f, const char *weight_name, const char *prefix) {
    qd_qlinear l = {0};
    int found = 0;
    QD_CHECK(qd_qsource_get(f->src, prefix, 1, &l, &found));
    size_t N = (size_t)l.N, K = (size_t)l.K, G = (size_t)l.G;
    float *w = malloc(N * K * sizeof *w), *rounded = malloc(G * N * sizeof *rounded);
    qd_status st = QD_OK;
    if (!found || !w || !rounded) {
        st = found ? qd_fail(QD_ERR_NOMEM, "export fake: out of memory writing %s", weight_name)
                   : qd_fail(QD_ERR_INTERNAL, "export fake: layer %s vanished from the source", prefix);
        goto done;
    }
    memcpy(rounded, l.scales, G * N * sizeof *rounded);
    qd_qlinear r = l;
    r.scales = rounded;
    if (f->run.scales_rounded) qd_qlinear_round_scales(&r, f->run.scale_dtype);
    qd_qlinear_dequant(&r, w);
    int64_t nk[2] = {(int64_t)N, (int64_t)K}, gn[2] = {(int64_t)G, (int64_t)N}, k1[1] = {(int64_t)K};
    char name[QD_QNAME_MAX + 16];
    QD_CHECK_GOTO(qd_stw_add(f->stw, weight_name, QD_DT_F32, 2, nk, w, N * K * 4), st, done);
    snprintf(name, sizeof name, "%s.qd_codes", prefix);
    QD_CHECK_GOTO(qd_stw_add(f->stw, name, QD_DT_U8, 2, nk, l.codes, N * K), st, done);
    snprintf(name, sizeof name, "%s.qd_scales", prefix);
    QD_CHECK_GOTO(qd_stw_add(f->stw, name, QD_DT_F32, 2, gn, l.scales, G * N * 4), st, done);
    snprintf(name, sizeof name, "%s.qd_zeros", prefix);
    QD_CHECK_GOTO(qd_stw_add(f->stw, name, QD_DT_I32, 2, gn, l.zeros, G * N * 4), st, done);
    snprintf(name, sizeof name, "%s.qd_g_idx", prefix);
    QD_CHECK_GOTO(qd_stw_add(f->stw, name, QD_DT_I32, 1, k1, l.g_idx, K * 4), st, done);
    if (qd_scheme_static_act(l.scheme)) {
        int64_t one[1] = {1};
        snprintf(name, sizeof name, "%s.qd_input_scale", prefix);
        QD_CHECK_GOTO(qd_stw_add(f->stw, name, QD_DT_F32, 1, one, &l.input_scale, 4), st, done);
    }
    if (qd_scheme_is_nvfp4(l.scheme)) { /* the scales are local / global: the export needs both */
        int64_t one[1] = {1};
        snprintf(name, sizeof name, "%s.qd_global_scale", prefix);
        QD_CHECK_GOTO(qd_stw_add(f->stw, name, QD_DT_F32, 1, one, &l.global_scale, 4), st, done);
    }
    f->nquant++;
done:
    free(w), free(rounded);
    qd_qlinear_free(&l);
    return st;
}

/* 1 for an FP8 source's scale of a Linear the source quantized (replaced, as its weight is) or of an FP8
 * weight it gives in bf16 (the multi-token prediction block's) */
static int replaced_scale(const qd_qsource *src, const qd_checkpoint *ck, const char *name) {
    static const char *const sfx[] = {".weight_scale_inv", ".weight_scale", ".input_scale"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        size_t sl = strlen(sfx[i]);
        if (len <= sl || len - sl >= QD_QNAME_MAX || strcmp(name + len - sl, sfx[i]) != 0) continue;
        char prefix[QD_QNAME_MAX];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(len - sl), name);
        char wname[QD_QNAME_MAX + 8];
        snprintf(wname, sizeof wname, "%s.weight", prefix);
        const qd_st_tensor *w = qd_ckpt_find(ck, wname);
        return src->iface->find_layer(src->ctx, prefix) >= 0 || (w && w->dtype == QD_DT_F8_E4M3);
    }
    return 0;
}

static qd_status write_tensor(fake_writer *f, const char *name) {
    char prefix[QD_QNAME_MAX];
    if (replaced_scale(f->src, f->ck, name)) return QD_OK;
    quantized_prefix(f->src, name, prefix);
    return prefix[0] ? write_quantized(f, name, prefix) : write_plain(f, name);
}

/* bytes the output takes: the quantized Linears as qd_export_linear_bytes counts them, the rest as stored */
static qd_status output_bytes(const qd_qsource *src, const qd_checkpoint *ck, uint64_t *out) {
    *out = 1u << 20; /* configs, tokenizer, index */
    for (size_t i = 0; i < ck->ntensors; i++) {
        const qd_st_tensor *t = ck->tensors[i];
        char prefix[QD_QNAME_MAX];
        quantized_prefix(src, t->name, prefix);
        if (!prefix[0]) {
            *out += t->dtype == QD_DT_F8_E4M3 ? 2 * t->nbytes : t->nbytes; /* an FP8 one is given in bf16 */
            continue;
        }
        qd_qlinear l = {0};
        int found = 0;
        QD_CHECK(qd_qsource_get(src, prefix, 0, &l, &found));
        *out += qd_export_linear_bytes(QD_EXPORT_FAKE, 0, l.N, l.K, l.bits, l.group_size, l.sym, 1, 4);
        qd_qlinear_free(&l);
    }
    return QD_OK;
}

qd_status qd_export_fake(const qd_export_opts *o, const qd_qsource *src, const qd_checkpoint *ck) {
    if (!o->out_dir || !o->out_dir[0]) return qd_fail(QD_ERR_USAGE, "export: no output directory");
    QD_CHECK(qd_outdir_check(o->out_dir, o->overwrite));
    qd_outdir_clean_stale(o->out_dir);
    const char *meta = src->iface->meta_dir(src->ctx);
    QD_CHECK(qd_meta_files_copy(meta, NULL, NULL)); /* a file that will be refused: before any work */
    fake_writer f = {.src = src, .ck = ck, .nplain = src->iface->n_plain(src->ctx)};
    src->iface->run(src->ctx, &f.run);
    int nblocks = 0;
    for (size_t i = 0; i < ck->ntensors; i++)
        if (block_of(ck->tensors[i]->name) + 1 > nblocks) nblocks = block_of(ck->tensors[i]->name) + 1;
    uint64_t need = 0;
    qd_outdir *od = NULL;
    qd_status st = output_bytes(src, ck, &need);
    if (st == QD_OK) st = qd_export_check_space(o->out_dir, need);
    if (st == QD_OK) st = qd_outdir_begin(o->out_dir, o->overwrite, &od);
    if (st != QD_OK) goto done;
    const char *tmp = qd_outdir_path(od);
    uint64_t max_shard = o->max_shard_bytes ? o->max_shard_bytes : QD_DEFAULT_MAX_SHARD_BYTES;
    QD_CHECK_GOTO(qd_stw_open(tmp, "model", max_shard, &f.stw), st, done);
    for (int b = 0; b < nblocks; b++)
        for (size_t i = 0; i < ck->ntensors; i++)
            if (block_of(ck->tensors[i]->name) == b) QD_CHECK_GOTO(write_tensor(&f, ck->tensors[i]->name), st, done);
    for (size_t i = 0; i < ck->ntensors; i++)
        if (block_of(ck->tensors[i]->name) < 0) QD_CHECK_GOTO(write_tensor(&f, ck->tensors[i]->name), st, done);
    st = qd_stw_finish(f.stw);
    f.stw = NULL;
    if (st != QD_OK) goto done;
    /* the source's files as they are: config.json unchanged (no quantization_config), the report */
    QD_CHECK_GOTO(qd_meta_files_copy(meta, tmp, NULL), st, done);
    QD_CHECK_GOTO(qd_meta_files_copy(meta, tmp, (const char *const[]){"config.json", NULL}), st, done);
    QD_CHECK_GOTO(qd_export_drop_source_quant_config(meta, tmp), st, done);
    st = qd_outdir_commit(od);
    od = NULL;
    if (st == QD_OK)
        qd_info("export: wrote %s (fake, %zu quantized Linear modules, %.1f MB)", o->out_dir, f.nquant, need / 1e6);
done:
    if (f.stw) qd_stw_abort(f.stw);
    if (od) qd_outdir_abort(od);
    return st;
}
