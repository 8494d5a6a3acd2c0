/* SPDX-License-Identifier: MIT
 * qdist inspect MODEL_DIR [--json] - what a model directory holds, read from headers only.
 *
 * Nothing is printed until config.json and every safetensors header have been validated, so a bad
 * input yields exactly one error line. Blocks with the layout of the block before them are folded
 * into one line ("blocks 1..79: same layout as block 0") so that an 80-block model stays readable;
 * --json lists every tensor for scripts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qd-vllm-rules.h"

#include "qd-args.h"
#include "qd-check.h"
#include "qd-commands.h"
#include "qd-esc.h"
#include "qd-fs.h"
#include "qd-log.h"
#include "qd-model-ckpt.h"

typedef struct ins_tensor {
    const qd_st_tensor *t;
    qd_part part;
    int block;
    char module[256];
} ins_tensor;

typedef struct inspect_ctx {
    const char *dir;
    qd_model_cfg cfg;
    qd_checkpoint *ck;
    cJSON *qcfg; /* quantization_config, or NULL */
    ins_tensor *ts;
    uint64_t params, bytes;
    int name_w;
} inspect_ctx;

static const char *part_name(qd_part p) {
    switch (p) {
    case QD_PART_EMBED: return "embed";
    case QD_PART_BLOCK: return "block";
    case QD_PART_FINAL_NORM: return "final_norm";
    case QD_PART_LM_HEAD: return "lm_head";
    case QD_PART_OTHER: break;
    }
    return "other";
}

static const char *rope_name(qd_rope_type t) {
    return t == QD_ROPE_LLAMA3 ? "llama3" : t == QD_ROPE_LINEAR ? "linear" : t == QD_ROPE_YARN ? "yarn" : "default";
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void shape_str(const qd_st_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* quantization_config is kept verbatim: inspect shows what the file says, not our reading of it */
static qd_status load_qcfg(inspect_ctx *c) {
    char path[4096], *text;
    size_t len;
    QD_CHECK(qd_path_join(path, sizeof path, c->dir, "config.json"));
    QD_CHECK(qd_read_file(path, 16u << 20, &text, &len));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return qd_fail(QD_ERR_FORMAT, "%s: not valid JSON", path);
    cJSON *q = cJSON_DetachItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON_Delete(root);
    if (q && !cJSON_IsNull(q)) c->qcfg = q;
    else cJSON_Delete(q);
    return QD_OK;
}

static qd_status classify_all(inspect_ctx *c) {
    QD_ALLOC(c->ts, c->ck->ntensors);
    for (size_t i = 0; i < c->ck->ntensors; i++) {
        ins_tensor *it = &c->ts[i];
        it->t = c->ck->tensors[i];
        it->part = qd_model_classify(&c->cfg, it->t->name, &it->block, it->module, sizeof it->module);
        c->params += it->t->numel;
        c->bytes += it->t->nbytes;
        int w = (int)strlen(it->t->name);
        if (w > c->name_w) c->name_w = w < 64 ? w : 64;
    }
    return QD_OK;
}

static void print_tensor(const inspect_ctx *c, const qd_st_tensor *t, int indent) {
    char shape[160];
    shape_str(t, shape, sizeof shape);
    printf("%*s%-*s  %-11s %-16s %12llu B\n", indent, "", c->name_w + 4 - indent, QD_ESC(t->name), qd_dtype_name(t->dtype), shape,
           (unsigned long long)t->nbytes);
}

/* blocks a and b hold the same modules with the same dtypes and shapes */
static int same_layout(const inspect_ctx *c, const ins_tensor **ba, size_t na, const ins_tensor **bb, size_t nb) {
    (void)c;
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++) {
        const qd_st_tensor *x = ba[i]->t, *y = bb[i]->t;
        if (strcmp(ba[i]->module, bb[i]->module) != 0 || x->dtype != y->dtype || x->ndim != y->ndim ||
            memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim) != 0)
            return 0;
    }
    return 1;
}

static int cmp_module(const void *a, const void *b) {
    return strcmp((*(const ins_tensor *const *)a)->module, (*(const ins_tensor *const *)b)->module);
}

static qd_status print_blocks(const inspect_ctx *c) {
    int nb = c->cfg.nlayers;
    size_t n = c->ck->ntensors;
    size_t *count, *start;
    const ins_tensor **by;
    QD_ALLOC(count, (size_t)nb + 1);
    QD_ALLOC(start, (size_t)nb + 1);
    by = calloc(n ? n : 1, sizeof *by);
    if (!by) {
        free(count);
        free(start);
        return qd_fail(QD_ERR_NOMEM, "inspect: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        if (c->ts[i].part == QD_PART_BLOCK) count[c->ts[i].block]++;
    for (int b = 1; b <= nb; b++) start[b] = start[b - 1] + count[b - 1];
    size_t *fill = count; /* reuse as a cursor */
    memset(fill, 0, sizeof *fill * ((size_t)nb + 1));
    for (size_t i = 0; i < n; i++)
        if (c->ts[i].part == QD_PART_BLOCK) by[start[c->ts[i].block] + fill[c->ts[i].block]++] = &c->ts[i];
    for (int b = 0; b < nb; b++) qsort(by + start[b], fill[b], sizeof *by, cmp_module);
    for (int b = 0; b < nb;) {
        int e = b + 1;
        while (e < nb && same_layout(c, by + start[b], fill[b], by + start[e], fill[e])) e++;
        if (fill[b] == 0) printf("  block %d: no tensors\n", b);
        else {
            printf("  block %d (%zu tensors):\n", b, fill[b]);
            for (size_t k = 0; k < fill[b]; k++) print_tensor(c, by[start[b] + k]->t, 4);
        }
        if (e - b == 2) printf("  block %d: same layout as block %d\n", b + 1, b);
        else if (e - b > 2) printf("  blocks %d..%d: same layout as block %d\n", b + 1, e - 1, b);
        b = e;
    }
    free(count);
    free(start);
    free(by);
    return QD_OK;
}

static void print_part(const inspect_ctx *c, qd_part p, const char *title) {
    int first = 1;
    for (size_t i = 0; i < c->ck->ntensors; i++)
        if (c->ts[i].part == p) {
            if (title && first) printf("  %s:\n", title);
            first = 0;
            print_tensor(c, c->ts[i].t, title ? 4 : 2);
        }
}

static qd_status print_text(const inspect_ctx *c) {
    const qd_model_cfg *m = &c->cfg;
    uint64_t file_bytes = 0;
    for (int i = 0; i < c->ck->nfiles; i++) file_bytes += c->ck->files[i]->file_size;
    printf("model         %s\n", QD_ESC(c->dir));
    printf("architecture  %s (model_type %s)\n", QD_ESC(m->arch_name), m->model_type[0] ? QD_ESC(m->model_type) : "?");
    printf("sizes         hidden %d, intermediate %d, heads %d, kv heads %d, head_dim %d, vocab %d, max positions %d\n",
           m->hidden, m->intermediate, m->nheads, m->nkv, m->head_dim, m->vocab, m->max_pos);
    printf("              rms_norm_eps %g, rope %s theta %g", m->rms_eps, rope_name(m->rope.type), m->rope.theta);
    if (m->rope.type != QD_ROPE_DEFAULT) printf(" factor %g", m->rope.factor);
    if (m->rope.type == QD_ROPE_LLAMA3)
        printf(" low %g high %g original max positions %d", m->rope.low_freq_factor, m->rope.high_freq_factor,
               m->rope.original_max_pos);
    if (m->rope.type == QD_ROPE_YARN)
        printf(" original max positions %d beta_fast %g beta_slow %g attention_factor %g softmax mscale %g",
               m->rope.original_max_pos, m->rope.beta_fast, m->rope.beta_slow, m->rope.attention_factor,
               qd_rope_softmax_mscale(&m->rope));
    printf("\n              tied embeddings %s, attention bias %s, mlp bias %s, qk norm %s, dtype %s\n",
           m->tie_embed ? "yes" : "no", m->attn_bias ? "yes" : "no", m->mlp_bias ? "yes" : "no", m->qk_norm ? "yes" : "no",
           qd_dtype_name(m->dtype));
    if (m->fp8_source && m->fp8_block[0])
        printf("source        FP8 (e4m3, scale per %dx%d block), dequantized on load: quantized as a %s model\n",
               m->fp8_block[0], m->fp8_block[1], qd_dtype_name(m->dtype));
    else if (m->fp8_source)
        printf("source        FP8 (e4m3, scale per tensor or row), dequantized on load: quantized as a %s model\n",
               qd_dtype_name(m->dtype));
    if (c->ck->sharded)
        printf("files         %d shards via model.safetensors.index.json, %llu bytes\n", c->ck->nfiles,
               (unsigned long long)file_bytes);
    else
        printf("files         %s, %llu bytes\n", QD_ESC(base_name(c->ck->files[0]->path)), (unsigned long long)file_bytes);
    printf("blocks        %d\n\ntensors (%zu):\n", m->nlayers, c->ck->ntensors);
    print_part(c, QD_PART_EMBED, NULL);
    QD_CHECK(print_blocks(c));
    print_part(c, QD_PART_FINAL_NORM, NULL);
    print_part(c, QD_PART_LM_HEAD, NULL);
    print_part(c, QD_PART_OTHER, "outside the blocks");
    printf("\ntotal parameters  %llu (%.2f M), %llu bytes of tensor data\n", (unsigned long long)c->params,
           (double)c->params / 1e6, (unsigned long long)c->bytes);
    if (c->qcfg) {
        char *q = cJSON_PrintUnformatted(c->qcfg);
        if (!q) return qd_fail(QD_ERR_NOMEM, "inspect: out of memory");
        printf("quantization_config  %s\n", q);
        free(q);
    } else {
        printf("quantization_config  none\n");
    }
    return QD_OK;
}

static cJSON *json_config(const qd_model_cfg *m) {
    cJSON *o = cJSON_CreateObject(), *r = cJSON_CreateObject();
    if (!o || !r) {
        cJSON_Delete(o);
        cJSON_Delete(r);
        return NULL;
    }
    cJSON_AddNumberToObject(o, "hidden_size", m->hidden);
    cJSON_AddNumberToObject(o, "intermediate_size", m->intermediate);
    cJSON_AddNumberToObject(o, "num_hidden_layers", m->nlayers);
    cJSON_AddNumberToObject(o, "num_attention_heads", m->nheads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", m->nkv);
    cJSON_AddNumberToObject(o, "head_dim", m->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", m->vocab);
    cJSON_AddNumberToObject(o, "max_position_embeddings", m->max_pos);
    cJSON_AddNumberToObject(o, "rms_norm_eps", m->rms_eps);
    cJSON_AddStringToObject(r, "rope_type", rope_name(m->rope.type));
    cJSON_AddNumberToObject(r, "rope_theta", m->rope.theta);
    if (m->rope.type != QD_ROPE_DEFAULT) cJSON_AddNumberToObject(r, "factor", m->rope.factor);
    if (m->rope.type == QD_ROPE_YARN) {
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", m->rope.original_max_pos);
        cJSON_AddNumberToObject(r, "beta_fast", m->rope.beta_fast);
        cJSON_AddNumberToObject(r, "beta_slow", m->rope.beta_slow);
        cJSON_AddNumberToObject(r, "attention_factor", m->rope.attention_factor);
        cJSON_AddNumberToObject(r, "softmax_mscale", qd_rope_softmax_mscale(&m->rope));
    }
    if (m->rope.type == QD_ROPE_LLAMA3) {
        cJSON_AddNumberToObject(r, "low_freq_factor", m->rope.low_freq_factor);
        cJSON_AddNumberToObject(r, "high_freq_factor", m->rope.high_freq_factor);
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", m->rope.original_max_pos);
    }
    cJSON_AddItemToObject(o, "rope", r);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", m->tie_embed);
    cJSON_AddBoolToObject(o, "attention_bias", m->attn_bias);
    cJSON_AddBoolToObject(o, "o_proj_bias", m->o_bias);
    cJSON_AddBoolToObject(o, "mlp_bias", m->mlp_bias);
    cJSON_AddBoolToObject(o, "qk_norm", m->qk_norm);
    cJSON_AddNumberToObject(o, "sliding_window", m->sliding_window);
    cJSON_AddStringToObject(o, "dtype", qd_dtype_name(m->dtype));
    if (m->fp8_source) {
        cJSON *b = cJSON_AddArrayToObject(o, "fp8_source_block");
        for (int i = 0; b && i < 2; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber(m->fp8_block[i]));
    }
    return o;
}

static qd_status print_json(inspect_ctx *c) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return qd_fail(QD_ERR_NOMEM, "inspect: out of memory");
    cJSON_AddStringToObject(root, "model_dir", c->dir);
    cJSON_AddStringToObject(root, "architecture", c->cfg.arch_name);
    cJSON_AddStringToObject(root, "model_type", c->cfg.model_type);
    cJSON_AddItemToObject(root, "config", json_config(&c->cfg));
    cJSON_AddNumberToObject(root, "blocks", c->cfg.nlayers);
    cJSON_AddBoolToObject(root, "sharded", c->ck->sharded);
    cJSON *files = cJSON_AddArrayToObject(root, "files");
    for (int i = 0; files && i < c->ck->nfiles; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", base_name(c->ck->files[i]->path));
        cJSON_AddNumberToObject(f, "bytes", (double)c->ck->files[i]->file_size);
        cJSON_AddNumberToObject(f, "tensors", (double)c->ck->files[i]->ntensors);
        cJSON_AddItemToArray(files, f);
    }
    cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; ts && i < c->ck->ntensors; i++) {
        const ins_tensor *it = &c->ts[i];
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        cJSON_AddStringToObject(t, "name", it->t->name);
        cJSON_AddStringToObject(t, "dtype", qd_dtype_name(it->t->dtype));
        for (int d = 0; d < it->t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)it->t->shape[d]));
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddNumberToObject(t, "bytes", (double)it->t->nbytes);
        cJSON_AddStringToObject(t, "part", part_name(it->part));
        if (it->part == QD_PART_BLOCK) cJSON_AddNumberToObject(t, "block", it->block);
        cJSON_AddStringToObject(t, "file", base_name(c->ck->files[it->t->file_index]->path));
        cJSON_AddItemToArray(ts, t);
    }
    cJSON_AddNumberToObject(root, "total_parameters", (double)c->params);
    cJSON_AddNumberToObject(root, "total_bytes", (double)c->bytes);
    if (c->qcfg) {
        cJSON_AddItemToObject(root, "quantization_config", c->qcfg);
        c->qcfg = NULL; /* owned by root now */
    } else {
        cJSON_AddNullToObject(root, "quantization_config");
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return qd_fail(QD_ERR_NOMEM, "inspect: out of memory printing JSON");
    printf("%s\n", text);
    free(text);
    return QD_OK;
}

qd_status qd_cmd_inspect(int argc, char **argv) {
    int json = 0, vllm_tp = 0, vllm_ep = 0;
    const char *pos_names[] = {"MODEL_DIR", NULL};
    const char *pos[1] = {NULL};
    const qd_opt opts[] = {
        {"json", QD_OPT_FLAG, &json, NULL, "print one JSON object instead of text", NULL, NULL},
        {"vllm-tp", QD_OPT_INT, &vllm_tp, "N", "report every layer that breaks vLLM's Marlin shape rules at tensor "
                                               "parallel size N, and the kernel vLLM falls back to (routed experts: "
                                               "vLLM's fused-MoE rules, their intermediate size split by N)",
         "1..1024", NULL},
        {"vllm-ep", QD_OPT_FLAG, &vllm_ep, NULL, "with --vllm-tp N: as vLLM's --enable-expert-parallel, whole experts "
                                                 "spread over the N ranks instead of split (dense layers still split)",
         NULL, NULL},
    };
    const qd_cmd_spec spec = {
        .name = "inspect",
        .usage = "MODEL_DIR [--json] [--vllm-tp N [--vllm-ep]]",
        .summary = "Show a model directory's architecture, blocks, tensors (dtype, shape, bytes), total parameters\n"
                   "and quantization_config. Reads config.json and the safetensors headers only.",
        .opts = opts,
        .nopts = (int)(sizeof opts / sizeof opts[0]),
        .positional_names = pos_names,
        .positionals = pos,
        .min_positionals = 1,
    };
    int help = 0;
    QD_CHECK(qd_args_parse(&spec, argc, argv, &help));
    if (help) return QD_OK;
    if (vllm_ep && vllm_tp <= 0)
        return qd_fail(QD_ERR_USAGE, "inspect: --vllm-ep needs --vllm-tp N (the ranks the experts are spread over)");

    inspect_ctx c = {.dir = pos[0], .name_w = 24};
    qd_status st = qd_model_cfg_load(c.dir, &c.cfg);
    if (st == QD_OK) st = load_qcfg(&c);
    if (st == QD_OK) st = qd_ckpt_open(c.dir, 0, &c.ck);
    /* a mismatch with the config is a warning and the listing is still shown; an error (qd_fail: an FP8
     * Linear without its scale) is shown too, but is the exit status, and once (no vLLM report) */
    qd_status bad = QD_OK;
    if (st == QD_OK) {
        qd_clear_error();
        bad = qd_model_check_ckpt(&c.cfg, c.ck, 1);
        if (!qd_last_error()[0]) bad = QD_OK;
    }
    if (st == QD_OK) st = classify_all(&c);
    if (st == QD_OK) st = json ? print_json(&c) : print_text(&c);
    if (st == QD_OK) st = bad;
    if (st == QD_OK && vllm_tp > 0) {
        if (!json) printf("\nvLLM at tensor parallel size %d%s:\n", vllm_tp, vllm_ep ? ", expert parallel" : "");
        st = qd_vllm_report(c.dir, vllm_tp, vllm_ep, json ? stderr : stdout, NULL, NULL);
    }
    if (st == QD_OK && fflush(stdout) != 0) st = qd_fail(QD_ERR_IO, "inspect: writing to stdout failed");
    cJSON_Delete(c.qcfg);
    free(c.ts);
    qd_ckpt_close(c.ck);
    return st;
}
