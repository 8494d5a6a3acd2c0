/* SPDX-License-Identifier: MIT
 * qsource-stage.c - the quantization source backed by the HDF5 staging (qd-qsource-stage.h). */
#include "qd-qsource-stage.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-h5stage.h"
#include "qd-qformat-fp8.h"
#include "qd-safetensors.h"

struct layer_ref {
    int block;
    int module; /* index inside the staged block */
    qd_qlinear head; /* header fields only (arrays NULL) */
    int nonseq;      /* planned: act-order g_idx expected (a planned source only) */
};

struct plain_ref {
    const qd_st_tensor *t;
    int block;      /* block whose staging may override it, -1 for the model's ends */
    int fp8;        /* an FP8 weight after the decoder (MTP): given as bf16, dequantized with its scale */
    int staged_only; /* not in the source (--kv-cache's k_scale / v_scale): the staging must hold it */
};

/* The export's workers take layers in order, so the layers in flight span two or three blocks. */
#define CACHE_SLOTS 3
/* Blocks a streamed export holds in memory (it keeps at most two in flight). */
#define LIVE_SLOTS 4

struct cache_slot {
    int block;      /* -1 when empty */
    int with_codes; /* read with the codes (else shapes, scales, zeros, g_idx and tensors only) */
    unsigned long used;
    qd_staged_block *b;
};

struct stage_src {
    char dir[4096], meta[4096];
    qd_qrun run;
    int nblocks;
    const qd_checkpoint *ck; /* the caller's, mapped */
    size_t nlayers;
    struct layer_ref *layers;
    size_t nplain;
    struct plain_ref *plain;
    qd_st_tensor *kv;   /* --kv-cache: [2 * nblocks] the k_scale / v_scale each block stages */
    char (*kv_names)[96];
    pthread_mutex_t lock; /* the cache, and HDF5 (a serial build: one call at a time) */
    unsigned long clock;
    struct cache_slot cache[CACHE_SLOTS];
    int planned;  /* layers from the caller's plan, blocks put in memory or read once files_ok */
    int files_ok; /* a planned source may read the staging files (HDF5 is free) */
    const qd_staged_block *live[LIVE_SLOTS];
};

/* Block b from the cache or the staging; call with s->lock held. The block stays valid until the
 * lock is released. */
static qd_status get_block(struct stage_src *s, int b, int with_codes, qd_staged_block **out) {
    for (int i = 0; i < LIVE_SLOTS; i++)
        if (s->live[i] && s->live[i]->block == b) {
            *out = (qd_staged_block *)s->live[i]; /* read only: the caller copies what it keeps */
            return QD_OK;
        }
    if (s->planned && !s->files_ok)
        return qd_fail(QD_ERR_INTERNAL, "%s: block %d read before the run staged it", s->dir, b);
    struct cache_slot *slot = NULL;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_slot *c = &s->cache[i];
        if (c->block == b && (c->with_codes || !with_codes)) {
            c->used = ++s->clock;
            *out = c->b;
            return QD_OK;
        }
        if (c->block == b) slot = c; /* the same block without codes: replace it */
    }
    if (!slot) { /* the least recently used slot; an empty one has used = 0 */
        slot = &s->cache[0];
        for (int i = 1; i < CACHE_SLOTS; i++)
            if (s->cache[i].used < slot->used) slot = &s->cache[i];
    }
    qd_staged_block_free(slot->b);
    slot->b = NULL;
    slot->block = -1;
    slot->used = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/block-%05d.h5", s->dir, b);
    QD_CHECK(qd_stage_read_block_file_opt(path, with_codes, &slot->b));
    slot->block = b;
    slot->with_codes = with_codes;
    slot->used = ++s->clock;
    *out = slot->b;
    return QD_OK;
}

static size_t st_n_layers(void *ctx) { return ((struct stage_src *)ctx)->nlayers; }

/* out (r->head) gets its own copy of the staged arrays: the cached block outlives this call only
 * while the lock is held */
static qd_status copy_layer(struct stage_src *s, const struct layer_ref *r, int with_codes, qd_qlinear *out) {
    qd_staged_block *blk;
    QD_CHECK(get_block(s, r->block, with_codes, &blk));
    if ((size_t)r->module >= blk->nmodules)
        return qd_fail(QD_ERR_FORMAT, "%s/block-%05d.h5: module %s is not staged", s->dir, r->block, r->head.name);
    out->global_scale = blk->modules[r->module].q.global_scale; /* data of the run, not of the plan */
    return qd_qlinear_copy_arrays(out, &blk->modules[r->module].q, with_codes);
}

static qd_status st_load_layer(void *ctx, size_t i, int with_codes, qd_qlinear *out) {
    struct stage_src *s = ctx;
    const struct layer_ref *r = &s->layers[i];
    *out = r->head; /* header fields only: its arrays are NULL */
    pthread_mutex_lock(&s->lock);
    qd_status st = copy_layer(s, r, with_codes, out);
    pthread_mutex_unlock(&s->lock);
    return st;
}

static long st_find_layer(void *ctx, const char *prefix) {
    struct stage_src *s = ctx;
    for (size_t i = 0; i < s->nlayers; i++)
        if (strcmp(s->layers[i].head.name, prefix) == 0) return (long)i;
    return -1;
}

static size_t st_n_plain(void *ctx) { return ((struct stage_src *)ctx)->nplain; }

static qd_status st_plain_info(void *ctx, size_t i, qd_plain_info *out) {
    const struct plain_ref *p = &((struct stage_src *)ctx)->plain[i];
    qd_plain_info_of(p->t, out);
    if (p->fp8) out->dtype = QD_DT_BF16, out->nbytes = p->t->numel * 2;
    return QD_OK;
}

/* an FP8 weight after the decoder as bf16: dequantized in fp32 (code x scale), rounded to nearest even */
static qd_status fp8_plain_read(const struct stage_src *s, const qd_st_tensor *t, void *dst) {
    char prefix[QD_QNAME_MAX];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(t->name) - strlen(".weight")), t->name);
    float *w = NULL;
    int64_t N, K;
    QD_CHECK(qd_fp8_linear_read(s->ck, prefix, s->run.fp8_block, &w, &N, &K));
    qd_from_f32(QD_DT_BF16, w, dst, (size_t)N * (size_t)K);
    free(w);
    return QD_OK;
}

/* *found = 1 when block p->block staged the tensor (then written to dst); call with s->lock held */
static qd_status staged_plain(struct stage_src *s, const struct plain_ref *p, void *dst, int *found) {
    *found = 0;
    qd_staged_block *blk;
    QD_CHECK(get_block(s, p->block, 0, &blk));
    for (size_t k = 0; k < blk->ntensors; k++) {
        const qd_staged_tensor *t = &blk->tensors[k];
        if (strcmp(t->name, p->t->name) != 0) continue;
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
        if (numel != p->t->numel)
            return qd_fail(QD_ERR_FORMAT, "%s/block-%05d.h5: staged tensor %s has %llu elements, the model %llu",
                           s->dir, p->block, t->name, (unsigned long long)numel, (unsigned long long)p->t->numel);
        if (!qd_dtype_is_float(p->t->dtype))
            return qd_fail(QD_ERR_FORMAT, "%s: staged tensor %s has non-float source dtype %s", s->dir, t->name,
                           qd_dtype_name(p->t->dtype));
        qd_from_f32(p->t->dtype, t->data, dst, numel);
        *found = 1;
        return QD_OK;
    }
    return QD_OK;
}

static qd_status st_plain_read(void *ctx, size_t i, void *dst) {
    struct stage_src *s = ctx;
    const struct plain_ref *p = &s->plain[i];
    if (p->fp8) return fp8_plain_read(s, p->t, dst);
    if (p->block >= 0) {
        int found;
        pthread_mutex_lock(&s->lock);
        qd_status st = staged_plain(s, p, dst, &found);
        pthread_mutex_unlock(&s->lock);
        if (st != QD_OK || found) return st;
        if (p->staged_only)
            return qd_fail(QD_ERR_FORMAT, "%s/block-%05d.h5: %s is not staged (a staging made without --kv-cache?)",
                           s->dir, p->block, p->t->name);
    }
    return qd_ckpt_read_raw(s->ck, p->t, dst);
}

static const void *st_plain_map(void *ctx, size_t i) {
    struct stage_src *s = ctx;
    const struct plain_ref *p = &s->plain[i];
    return p->block >= 0 || p->fp8 ? NULL : qd_ckpt_data(s->ck, p->t); /* a block's tensor may be staged over */
}

static const char *st_meta_dir(void *ctx) { return ((struct stage_src *)ctx)->meta; }

static void st_run(void *ctx, qd_qrun *out) { *out = ((struct stage_src *)ctx)->run; }

static void st_free(void *ctx) {
    struct stage_src *s = ctx;
    if (!s) return;
    for (int i = 0; i < CACHE_SLOTS; i++) qd_staged_block_free(s->cache[i].b);
    pthread_mutex_destroy(&s->lock);
    free(s->layers);
    free(s->plain);
    free(s->kv), free(s->kv_names);
    free(s);
}

static const qd_qsource_i stage_iface = {
    .n_layers = st_n_layers,
    .load_layer = st_load_layer,
    .find_layer = st_find_layer,
    .n_plain = st_n_plain,
    .plain_info = st_plain_info,
    .plain_read = st_plain_read,
    .plain_map = st_plain_map,
    .meta_dir = st_meta_dir,
    .run = st_run,
    .free = st_free,
};

/* Index every staged block: the layers' headers, in block order. */
static qd_status index_layers(struct stage_src *s) {
    size_t cap = 0;
    for (int b = 0; b < s->nblocks; b++) {
        qd_staged_block *blk;
        QD_CHECK(get_block(s, b, 0, &blk)); /* single-threaded here: no lock needed */
        for (size_t m = 0; m < blk->nmodules; m++) {
            if (s->nlayers == cap) {
                cap = cap ? 2 * cap : 64;
                struct layer_ref *n = realloc(s->layers, cap * sizeof *n);
                if (!n) return qd_fail(QD_ERR_NOMEM, "%s: out of memory indexing staged layers", s->dir);
                s->layers = n;
            }
            const qd_staged_module *sm = &blk->modules[m];
            struct layer_ref *r = &s->layers[s->nlayers++];
            memset(r, 0, sizeof *r);
            r->block = b;
            r->module = (int)m;
            r->head = qd_qlinear_header(&sm->q); /* the staged name is relative to the block */
            int w = snprintf(r->head.name, sizeof r->head.name, "model.layers.%d.%.200s", b, sm->q.name);
            if (w < 0 || (size_t)w >= sizeof r->head.name)
                return qd_fail(QD_ERR_FORMAT, "%s/block-%05d.h5: module name too long", s->dir, b);
            snprintf(r->head.method, sizeof r->head.method, "%s", s->run.method);
        }
    }
    return QD_OK;
}

/* A tensor t of a block after the decoder: *fp8 = 1 for an FP8 Linear weight (".weight", its scale
 * checked), given as bf16; *scale_of_fp8 = 1 for the scale of one (dropped). Another FP8 tensor there is
 * refused in one line. */
static qd_status mtp_fp8(const struct stage_src *s, const qd_st_tensor *t, int *fp8, int *scale_of_fp8) {
    static const char *const sfx[] = {".weight_scale_inv", ".weight_scale", ".input_scale"};
    size_t len = strlen(t->name);
    *fp8 = *scale_of_fp8 = 0;
    for (size_t r = 0; r < sizeof sfx / sizeof *sfx; r++) {
        size_t sl = strlen(sfx[r]);
        if (len <= sl || len - sl + 8 >= QD_QNAME_MAX || strcmp(t->name + len - sl, sfx[r]) != 0) continue;
        char wname[QD_QNAME_MAX];
        snprintf(wname, sizeof wname, "%.*s.weight", (int)(len - sl), t->name);
        const qd_st_tensor *w = qd_ckpt_find(s->ck, wname);
        *scale_of_fp8 = w && w->dtype == QD_DT_F8_E4M3;
        return QD_OK;
    }
    if (t->dtype != QD_DT_F8_E4M3) return QD_OK;
    if (len <= 7 || len >= QD_QNAME_MAX || strcmp(t->name + len - 7, ".weight") != 0 || t->ndim != 2)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: %s is an FP8 tensor of a block after the decoder's %d (DeepSeek-V3's "
                       "multi-token prediction block) that is not a 2-D Linear weight; no export carries FP8: "
                       "store it in bf16 first", s->dir, t->name, s->nblocks);
    char prefix[QD_QNAME_MAX];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(len - 7), t->name);
    int64_t N, K;
    QD_CHECK(qd_fp8_scale_values_check(s->ck, prefix, s->run.fp8_block)); /* before any work: one line */
    QD_CHECK(qd_fp8_linear_check(s->ck, prefix, s->run.fp8_block, &N, &K));
    *fp8 = 1;
    return QD_OK;
}

/* --kv-cache: each block's self_attn.k_scale and v_scale, [1] per tensor or [kv_heads, 1, 1] per head
 * (compressed-tensors' shapes), read from the staging only */
static qd_status index_kv(struct stage_src *s) {
    if (!s->run.kv_cache) return QD_OK;
    size_t n = 2 * (size_t)s->nblocks;
    s->kv = calloc(n + 1, sizeof *s->kv);
    s->kv_names = calloc(n + 1, sizeof *s->kv_names);
    if (!s->kv || !s->kv_names) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", s->dir);
    int head = s->run.kv_cache == 2;
    for (size_t i = 0; i < n; i++) {
        qd_st_tensor *t = &s->kv[i];
        snprintf(s->kv_names[i], sizeof s->kv_names[i], "model.layers.%zu.self_attn.%s", i / 2,
                 i % 2 ? "v_scale" : "k_scale");
        t->name = s->kv_names[i];
        t->dtype = s->run.kv_dtype;
        t->ndim = head ? 3 : 1;
        t->shape[0] = head ? s->run.kv_heads : 1;
        t->shape[1] = t->shape[2] = 1;
        t->numel = (uint64_t)t->shape[0];
        t->nbytes = t->numel * qd_dtype_bits(t->dtype) / 8;
        s->plain[s->nplain++] = (struct plain_ref){.t = t, .block = (int)(i / 2), .staged_only = 1};
    }
    return QD_OK;
}

static qd_status index_plain(struct stage_src *s) {
    s->plain = calloc(s->ck->ntensors + 1 + 2 * (size_t)s->nblocks, sizeof *s->plain);
    if (!s->plain) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", s->dir);
    for (size_t i = 0; i < s->ck->ntensors; i++) {
        const qd_st_tensor *t = s->ck->tensors[i];
        size_t len = strlen(t->name);
        /* "<prefix>.weight" of a quantized Linear is replaced by its quantization data, and so are an FP8
         * source's scales of it */
        static const char *const replaced[] = {".weight", ".weight_scale_inv", ".weight_scale", ".input_scale"};
        int skip = 0;
        for (size_t r = 0; r < sizeof replaced / sizeof *replaced && !skip; r++) {
            size_t sl = strlen(replaced[r]);
            if (len <= sl || strcmp(t->name + len - sl, replaced[r]) != 0) continue;
            char prefix[QD_QNAME_MAX];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(len - sl), t->name);
            skip = st_find_layer(s, prefix) >= 0;
        }
        if (skip) continue;
        int layer = 0, at = 0, fp8 = 0;
        if (sscanf(t->name, "model.layers.%d.%n", &layer, &at) >= 1 && at > 0 && layer >= s->nblocks) { /* after the decoder: FP8 weights are carried as bf16, their scales dropped */
            int weight_fp8 = 0;
            QD_CHECK(mtp_fp8(s, t, &fp8, &weight_fp8));
            if (weight_fp8) continue;
        }
        if (t->dtype == QD_DT_F8_E4M3 && !fp8)
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: %s is an FP8 source weight that was not quantized (a recipe skip?); "
                           "the export cannot carry FP8 weights: quantize every FP8 Linear", s->dir, t->name);
        /* the block a tensor belongs to, from its HF name (shard/ stays below src/model) */
        int block = -1, used = 0;
        if (sscanf(t->name, "model.layers.%d.%n", &block, &used) < 1 || used == 0) block = -1;
        if (block >= s->nblocks) block = -1; /* after the decoder (DeepSeek-V3's MTP block): the source's bytes */
        s->plain[s->nplain].t = t;
        s->plain[s->nplain].block = block;
        s->plain[s->nplain].fp8 = fp8;
        s->nplain++;
    }
    return index_kv(s);
}

static qd_status new_src(const char *staging_dir, const qd_checkpoint *ck, int nblocks, const char *meta_dir,
                         const qd_qrun *run, struct stage_src **out) {
    struct stage_src *s;
    QD_ALLOC(s, 1);
    snprintf(s->dir, sizeof s->dir, "%s", staging_dir);
    snprintf(s->meta, sizeof s->meta, "%s", meta_dir);
    s->run = *run;
    for (int i = 0; i < CACHE_SLOTS; i++) s->cache[i].block = -1;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return qd_fail(QD_ERR_NOMEM, "%s: cannot create a mutex", staging_dir);
    }
    s->nblocks = nblocks;
    s->ck = ck;
    *out = s;
    return QD_OK;
}

qd_status qd_qsource_open_stage(const char *staging_dir, const qd_checkpoint *ck, int nblocks, const char *meta_dir,
                                const qd_qrun *run, qd_qsource *out) {
    out->iface = NULL;
    out->ctx = NULL;
    struct stage_src *s;
    QD_CHECK(new_src(staging_dir, ck, nblocks, meta_dir, run, &s));
    qd_status st;
    QD_CHECK_GOTO(index_layers(s), st, fail);
    QD_CHECK_GOTO(index_plain(s), st, fail);
    out->iface = &stage_iface;
    out->ctx = s;
    return QD_OK;
fail:
    st_free(s);
    return st;
}

/* ---- a planned source (a streamed export) ---- */

/* The planned layers, each under its block, numbered inside the block in the order given. */
static qd_status plan_layers(struct stage_src *s, const qd_qlinear *heads, const int *nonseq, size_t n) {
    s->layers = calloc(n + 1, sizeof *s->layers);
    if (!s->layers) return qd_fail(QD_ERR_NOMEM, "%s: out of memory planning %zu layers", s->dir, n);
    for (size_t i = 0; i < n; i++) {
        int b = -1, used = 0;
        if (sscanf(heads[i].name, "model.layers.%d.%n", &b, &used) < 1 || used == 0 || b < 0 || b >= s->nblocks ||
            (i && b < s->layers[i - 1].block))
            return qd_fail(QD_ERR_INTERNAL, "export: planned layer '%s' is not in block order", heads[i].name);
        struct layer_ref *r = &s->layers[s->nlayers++];
        r->block = b;
        r->module = i && s->layers[i - 1].block == b ? s->layers[i - 1].module + 1 : 0;
        r->head = qd_qlinear_header(&heads[i]);
        snprintf(r->head.method, sizeof r->head.method, "%s", s->run.method);
        r->nonseq = nonseq[i];
    }
    return QD_OK;
}

qd_status qd_qsource_open_planned(const char *staging_dir, const qd_checkpoint *ck, int nblocks, const char *meta_dir,
                                  const qd_qrun *run, const qd_qlinear *heads, const int *nonseq, size_t n,
                                  qd_qsource *out) {
    out->iface = NULL;
    out->ctx = NULL;
    struct stage_src *s;
    QD_CHECK(new_src(staging_dir, ck, nblocks, meta_dir, run, &s));
    s->planned = 1;
    qd_status st;
    QD_CHECK_GOTO(plan_layers(s, heads, nonseq, n), st, fail);
    QD_CHECK_GOTO(index_plain(s), st, fail);
    out->iface = &stage_iface;
    out->ctx = s;
    return QD_OK;
fail:
    st_free(s);
    return st;
}

int qd_qsource_stage_matches(const qd_qsource *src, const qd_staged_block *b) {
    const struct stage_src *s = src->ctx;
    size_t m = 0;
    for (size_t i = 0; i < s->nlayers; i++) {
        const struct layer_ref *r = &s->layers[i];
        if (r->block != b->block) continue;
        if (m >= b->nmodules) return 0;
        const qd_qlinear *q = &b->modules[m++].q, *h = &r->head;
        const char *rel = strchr(h->name + strlen("model.layers."), '.');
        if (!rel || strcmp(rel + 1, q->name) != 0 || q->N != h->N || q->K != h->K || q->G != h->G ||
            q->bits != h->bits || q->group_size != h->group_size || q->sym != h->sym || q->scheme != h->scheme || !q->g_idx ||
            r->nonseq != !qd_qlinear_g_idx_sequential(q))
            return 0;
    }
    return m == b->nmodules;
}

qd_status qd_qsource_stage_put(const qd_qsource *src, const qd_staged_block *b) {
    struct stage_src *s = src->ctx;
    pthread_mutex_lock(&s->lock);
    int i = 0;
    while (i < LIVE_SLOTS && s->live[i]) i++;
    if (i < LIVE_SLOTS) s->live[i] = b;
    pthread_mutex_unlock(&s->lock);
    return i < LIVE_SLOTS ? QD_OK : qd_fail(QD_ERR_INTERNAL, "export: more than %d blocks in memory", LIVE_SLOTS);
}

void qd_qsource_stage_drop(const qd_qsource *src, int64_t block) {
    struct stage_src *s = src->ctx;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < LIVE_SLOTS; i++)
        if (s->live[i] && s->live[i]->block == block) s->live[i] = NULL;
    pthread_mutex_unlock(&s->lock);
}

void qd_qsource_stage_use_files(const qd_qsource *src) {
    struct stage_src *s = src->ctx;
    pthread_mutex_lock(&s->lock);
    s->files_ok = 1;
    pthread_mutex_unlock(&s->lock);
}

qd_status qd_qsource_stage_check_file(const qd_qsource *src, int block, int *match) {
    struct stage_src *s = src->ctx;
    qd_staged_block *blk;
    pthread_mutex_lock(&s->lock);
    qd_status st = get_block(s, block, 0, &blk);
    if (st == QD_OK) *match = qd_qsource_stage_matches(src, blk);
    pthread_mutex_unlock(&s->lock);
    return st;
}
