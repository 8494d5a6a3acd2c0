/* SPDX-License-Identifier: MIT
 * checkpoint.c - a model directory: model.safetensors, or shards listed by
 * model.safetensors.index.json. The index and the shards must agree exactly: a tensor the index maps
 * to a shard that lacks it, or a tensor in a shard the index does not map there, is an error (vLLM
 * would load the wrong bytes or garbage). Pickled checkpoints are refused, never opened.
 */
#include "qd-safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-json.h"
#include "qd-log.h"

#define QD_INDEX_NAME "model.safetensors.index.json"
#define QD_SINGLE_NAME "model.safetensors"
#define QD_MAX_INDEX_BYTES (256u << 20)
#define QD_READ_CHUNK (16u << 20)

static int cmp_tensor_ptr(const void *a, const void *b) {
    const qd_st_tensor *x = *(const qd_st_tensor *const *)a, *y = *(const qd_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* A directory with pickled weights only: say why we do not read them. */
static qd_status refuse_or_missing(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return qd_fail(QD_ERR_IO, "%s: cannot open model directory: %s", dir, strerror(errno));
    char pickle[256] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (ends_with(e->d_name, ".bin") || ends_with(e->d_name, ".bin.index.json") || ends_with(e->d_name, ".pt") ||
            ends_with(e->d_name, ".pth") || ends_with(e->d_name, ".ckpt")) {
            snprintf(pickle, sizeof pickle, "%s", e->d_name);
            break;
        }
    closedir(d);
    if (pickle[0])
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: only pickled weights (%s) found; qdist never unpickles (pickles can "
                       "execute code): convert the model to safetensors first", dir, pickle);
    return qd_fail(QD_ERR_IO, "%s: no %s or %s in the model directory", dir, QD_SINGLE_NAME, QD_INDEX_NAME);
}

static qd_status add_file(qd_checkpoint *c, const char *path, int map_data) {
    qd_st_file **nf = realloc(c->files, (size_t)(c->nfiles + 1) * sizeof *nf);
    if (!nf) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", path);
    c->files = nf;
    qd_st_file *f;
    QD_CHECK(qd_st_open(path, map_data, &f));
    for (size_t i = 0; i < f->ntensors; i++) f->tensors[i].file_index = c->nfiles;
    c->files[c->nfiles++] = f;
    return QD_OK;
}

static qd_status build_table(qd_checkpoint *c) {
    size_t n = 0;
    for (int i = 0; i < c->nfiles; i++) n += c->files[i]->ntensors;
    QD_ALLOC(c->tensors, n);
    for (int i = 0; i < c->nfiles; i++)
        for (size_t k = 0; k < c->files[i]->ntensors; k++) c->tensors[c->ntensors++] = &c->files[i]->tensors[k];
    qsort(c->tensors, c->ntensors, sizeof *c->tensors, cmp_tensor_ptr);
    for (size_t i = 1; i < c->ntensors; i++)
        if (strcmp(c->tensors[i - 1]->name, c->tensors[i]->name) == 0)
            return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' is stored in both %s and %s", c->dir, c->tensors[i]->name,
                           c->files[c->tensors[i - 1]->file_index]->path, c->files[c->tensors[i]->file_index]->path);
    return QD_OK;
}

static int shard_name_ok(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static qd_status open_sharded(qd_checkpoint *c, const char *index_path, int map_data) {
    char *text;
    size_t len;
    QD_CHECK(qd_read_file(index_path, QD_MAX_INDEX_BYTES, &text, &len));
    cJSON *root;
    qd_status st = qd_json_parse(text, len, index_path, &root);
    free(text);
    if (st != QD_OK) return st;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        st = qd_fail(QD_ERR_FORMAT, "%s: expected an object with a \"weight_map\" object", index_path);
        goto out;
    }
    size_t nmap = (size_t)cJSON_GetArraySize(wm), k = 0;
    const char **names = calloc(nmap ? nmap : 1, sizeof *names);
    if (!names) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory", index_path);
        goto out;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            free(names);
            st = qd_fail(QD_ERR_FORMAT, "%s: weight_map entry for tensor '%s' must be a file name in the model "
                         "directory", index_path, e->string);
            goto out;
        }
        names[k++] = e->valuestring;
    }
    /* open each distinct shard once, in name order (model-00001-of-... first) */
    qsort(names, nmap, sizeof *names, cmp_cstr);
    for (size_t i = 0; i < nmap && st == QD_OK; i++) {
        if (i > 0 && strcmp(names[i - 1], names[i]) == 0) continue;
        char path[4096];
        st = qd_path_join(path, sizeof path, c->dir, names[i]);
        if (st == QD_OK && !qd_path_exists(path))
            st = qd_fail(QD_ERR_IO, "%s: shard '%s' named in the index is missing", index_path, names[i]);
        if (st == QD_OK) st = add_file(c, path, map_data);
    }
    free(names);
    if (st != QD_OK) goto out;
    QD_CHECK_GOTO(build_table(c), st, out);
    /* the index and the shards must agree both ways */
    size_t mapped = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        mapped++;
        const qd_st_tensor *t = qd_ckpt_find(c, e->string);
        const char *fname = t ? strrchr(c->files[t->file_index]->path, '/') + 1 : NULL;
        if (!t || strcmp(fname, e->valuestring) != 0) {
            st = qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': the index maps it to %s, which does not hold it%s%s", index_path,
                         e->string, e->valuestring, t ? "; it is in " : "", t ? fname : "");
            goto out;
        }
    }
    if (mapped != c->ntensors) {
        /* some shard holds a tensor the index does not list: name it */
        for (size_t i = 0; i < c->ntensors; i++)
            if (!cJSON_GetObjectItemCaseSensitive(wm, c->tensors[i]->name)) {
                st = qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': stored in %s but not listed in the index's weight_map",
                             index_path, c->tensors[i]->name, c->files[c->tensors[i]->file_index]->path);
                goto out;
            }
        st = qd_fail(QD_ERR_FORMAT, "%s: the weight_map lists %zu tensors but the shards hold %zu", index_path, mapped,
                     c->ntensors);
    }
out:
    cJSON_Delete(root);
    return st;
}

qd_status qd_ckpt_open(const char *dir, int map_data, qd_checkpoint **out) {
    *out = NULL;
    if (!qd_is_dir(dir)) return qd_fail(QD_ERR_IO, "%s: not a directory (expected a model directory)", dir);
    qd_checkpoint *c;
    QD_ALLOC(c, 1);
    qd_status st = QD_OK;
    c->dir = strdup(dir);
    if (!c->dir) {
        free(c);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory", dir);
    }
    char single[4096], index[4096];
    QD_CHECK_GOTO(qd_path_join(single, sizeof single, dir, QD_SINGLE_NAME), st, fail);
    QD_CHECK_GOTO(qd_path_join(index, sizeof index, dir, QD_INDEX_NAME), st, fail);
    /* transformers prefers the single file when both are present; so do we */
    if (qd_path_exists(single)) {
        QD_CHECK_GOTO(add_file(c, single, map_data), st, fail);
        QD_CHECK_GOTO(build_table(c), st, fail);
    } else if (qd_path_exists(index)) {
        c->sharded = 1;
        QD_CHECK_GOTO(open_sharded(c, index, map_data), st, fail);
    } else {
        st = refuse_or_missing(dir);
        goto fail;
    }
    *out = c;
    return QD_OK;
fail:
    qd_ckpt_close(c);
    return st;
}

void qd_ckpt_close(qd_checkpoint *c) {
    if (!c) return;
    for (int i = 0; i < c->nfiles; i++) qd_st_close(c->files[i]);
    free(c->files);
    free(c->tensors);
    free(c->dir);
    free(c);
}

const qd_st_tensor *qd_ckpt_find(const qd_checkpoint *c, const char *name) {
    size_t lo = 0, hi = c->ntensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->tensors[mid]->name, name);
        if (r == 0) return c->tensors[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const void *qd_ckpt_data(const qd_checkpoint *c, const qd_st_tensor *t) {
    const qd_st_file *f = c->files[t->file_index];
    return f->map ? f->map + t->file_offset : NULL;
}

static qd_status read_range(const qd_st_file *f, uint64_t off, void *dst, size_t len) {
    if (f->map) {
        memcpy(dst, f->map + off, len);
        return QD_OK;
    }
    unsigned char *p = dst;
    while (len > 0) {
        ssize_t r = pread(f->fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return qd_fail(QD_ERR_IO, "%s: read failed at byte %llu: %s", f->path, (unsigned long long)off, strerror(errno));
        if (r == 0)
            return qd_fail(QD_ERR_IO, "%s: file shrank while reading (byte %llu)", f->path, (unsigned long long)off);
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return QD_OK;
}

qd_status qd_ckpt_read_raw(const qd_checkpoint *c, const qd_st_tensor *t, void *dst) {
    return read_range(c->files[t->file_index], t->file_offset, dst, (size_t)t->nbytes);
}

qd_status qd_ckpt_read_f32(const qd_checkpoint *c, const qd_st_tensor *t, float *dst) {
    const qd_st_file *f = c->files[t->file_index];
    if (!qd_dtype_is_float(t->dtype))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be converted to F32 (float types only)",
                       f->path, t->name, qd_dtype_name(t->dtype));
    if (f->map) {
        qd_to_f32(t->dtype, f->map + t->file_offset, dst, (size_t)t->numel);
        return QD_OK;
    }
    /* meta-only: convert in bounded chunks rather than holding a second copy of a large tensor */
    size_t esz = qd_dtype_bits(t->dtype) / 8;
    size_t per = QD_READ_CHUNK / esz;
    unsigned char *buf = malloc(per * esz);
    if (!buf) return qd_fail(QD_ERR_NOMEM, "%s: out of memory reading tensor '%s'", f->path, t->name);
    qd_status st = QD_OK;
    for (uint64_t i = 0; i < t->numel && st == QD_OK; i += per) {
        size_t n = (size_t)(t->numel - i < per ? t->numel - i : per);
        st = read_range(f, t->file_offset + i * esz, buf, n * esz);
        if (st == QD_OK) qd_to_f32(t->dtype, buf, dst + i, n);
    }
    free(buf);
    return st;
}
