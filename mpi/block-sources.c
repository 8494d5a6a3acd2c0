/* SPDX-License-Identifier: MIT
 * block-sources.c - hashes of a block's source tensors, recorded at staging and checked at resume
 * (contract in qd-block-sources.h). */
#include "qd-block-sources.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-hash64.h"
#include "qd-log.h"

qd_status qd_block_sources(const qd_model_cfg *cfg, const qd_checkpoint *ck, int b, char **text) {
    *text = NULL;
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (!out) return qd_fail(QD_ERR_NOMEM, "block %d: out of memory for its source hashes", b);
    out[0] = '\0';
    for (size_t i = 0; i < ck->ntensors; i++) { /* ck->tensors is sorted by name */
        const qd_st_tensor *t = ck->tensors[i];
        int tb = -1;
        if (qd_model_classify(cfg, t->name, &tb, NULL, 0) != QD_PART_BLOCK || tb != b) continue;
        const void *data = qd_ckpt_data(ck, t);
        if (!data && t->nbytes) {
            free(out);
            return qd_fail(QD_ERR_INTERNAL, "%s: checkpoint opened without its data", ck->dir);
        }
        size_t need = len + strlen(t->name) + 20;
        if (need > cap) {
            size_t nc = need > 2 * cap ? need : 2 * cap;
            char *p = realloc(out, nc);
            if (!p) {
                free(out);
                return qd_fail(QD_ERR_NOMEM, "block %d: out of memory for its source hashes", b);
            }
            out = p, cap = nc;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s %016" PRIx64 "\n", t->name,
                                qd_hash64(data, (size_t)t->nbytes));
    }
    *text = out;
    return QD_OK;
}

struct qd_block_sources_job {
    const qd_model_cfg *cfg;
    const qd_checkpoint *ck;
    int block, started;
    pthread_t thread;
    char *text;
    qd_status st;
};

static void *hash_job(void *arg) {
    qd_block_sources_job *j = arg;
    j->st = qd_block_sources(j->cfg, j->ck, j->block, &j->text);
    return NULL;
}

qd_status qd_block_sources_start(const qd_model_cfg *cfg, const qd_checkpoint *ck, int b, qd_block_sources_job **out) {
    qd_block_sources_job *j = calloc(1, sizeof *j);
    *out = j;
    if (!j) return qd_fail(QD_ERR_NOMEM, "block %d: out of memory for its source hashes", b);
    *j = (qd_block_sources_job){.cfg = cfg, .ck = ck, .block = b};
    j->started = pthread_create(&j->thread, NULL, hash_job, j) == 0; /* else computed at join */
    return QD_OK;
}

qd_status qd_block_sources_join(qd_block_sources_job *j, char **text) {
    *text = NULL;
    if (!j) return QD_OK;
    if (j->started) pthread_join(j->thread, NULL);
    else hash_job(j);
    qd_status st = j->st;
    if (st == QD_OK) *text = j->text;
    else free(j->text);
    free(j);
    return st;
}

/* the tensor name of the line at p (up to the space), into buf */
static const char *line_name(const char *p, char *buf, size_t cap) {
    size_t n = strcspn(p, " \n");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static const char *file_of(const qd_checkpoint *ck, const char *name) {
    const qd_st_tensor *t = qd_ckpt_find(ck, name);
    if (!t || t->file_index < 0 || t->file_index >= ck->nfiles) return ck->dir;
    return ck->files[t->file_index]->path;
}

qd_status qd_block_sources_check(const qd_checkpoint *ck, int b, const char *staged, const char *now,
                                 const char *stage_dir) {
    if (!staged)
        return qd_fail(QD_ERR_MISMATCH, "%s/block-%05d.h5 records no hashes of its source tensors (staged by an "
                       "older qdist?); remove the staging directory to start over", stage_dir, b);
    const char *a = staged, *c = now;
    char name[512];
    while (*a || *c) {
        size_t la = strcspn(a, "\n"), lc = strcspn(c, "\n");
        if (la != lc || memcmp(a, c, la) != 0) {
            size_t na = strcspn(a, " \n"), nc = strcspn(c, " \n");
            int cmp = !*a ? 1 : !*c ? -1 : strncmp(a, c, na < nc ? na : nc);
            if (cmp == 0 && na != nc) cmp = na < nc ? -1 : 1;
            if (cmp == 0) {
                line_name(c, name, sizeof name);
                return qd_fail(QD_ERR_MISMATCH, "%s: tensor %s changed since block %d was staged in %s; --resume "
                               "continues only from the weights the staged blocks were quantized from (restore "
                               "them, or remove the staging directory to start over)", file_of(ck, name), name, b,
                               stage_dir);
            }
            if (cmp < 0) {
                line_name(a, name, sizeof name);
                return qd_fail(QD_ERR_MISMATCH, "%s: tensor %s of block %d is gone since the block was staged in "
                               "%s; remove the staging directory to start over", ck->dir, name, b, stage_dir);
            }
            line_name(c, name, sizeof name);
            return qd_fail(QD_ERR_MISMATCH, "%s: tensor %s of block %d is new since the block was staged in %s; "
                           "remove the staging directory to start over", file_of(ck, name), name, b, stage_dir);
        }
        a += la + (a[la] == '\n'), c += lc + (c[lc] == '\n');
    }
    return QD_OK;
}
