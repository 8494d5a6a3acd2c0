/* SPDX-License-Identifier: MIT
 * safetensors-read.c - open one safetensors file and validate its header (formats.md section A).
 *
 * The header is parsed from a heap copy (never from the mapping), so a file that changes under us
 * cannot turn a validated header into an out-of-bounds read. Every offset is checked against the file
 * size before anything trusts it; the data itself is mapped read-only and may be unaligned.
 */
#include "qd-safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-log.h"

#define QD_ST_MAX_HEADER 100000000ull
/* integers above 2^53 are not exact in cJSON's doubles; no real file comes near */
#define QD_ST_MAX_INT 9007199254740992.0

static uint64_t le_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* offset of the first byte that is not well-formed UTF-8, or n when all is well */
static size_t utf8_bad_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) { len = 2; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { len = 4; min = 0x10000; }
        else return i;
        if (i + len > n) return i;
        unsigned cp = c & (0xffu >> (len + 1));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= QD_ST_MAX_INT)) return -1;
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return -1;
    *out = u;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *dtype_list(void) {
    return "BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, C64, F8_E4M3, F8_E5M2, "
           "F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, F4, F6_E2M3, F6_E3M2";
}

static qd_status parse_tensor(const cJSON *e, const char *path, qd_st_tensor *t, uint64_t *begin,
                              uint64_t *end) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': header entry is not an object with dtype, shape, data_offsets",
                       path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (qd_dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'; expected one of %s", path, name,
                       dt->valuestring, dtype_list());
    if (!cJSON_IsArray(shape))
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > QD_ST_MAX_DIMS)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions; qdist supports at most %d", path, name,
                       ndim, QD_ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *d = shape->child; d; d = d->next, k++) {
        uint64_t v;
        if (json_u64(d, &v) != 0)
            return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, k);
        if (__builtin_mul_overflow(numel, v, &numel))
            return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': element count of the shape overflows 64 bits", path, name);
        t->shape[k] = (int64_t)v;
    }
    t->numel = numel;
    uint64_t bits;
    if (__builtin_mul_overflow(numel, (uint64_t)qd_dtype_bits(t->dtype), &bits))
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': byte size of the shape overflows 64 bits", path, name);
    if (bits % 8 != 0)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': %llu elements of %s do not fill whole bytes", path, name,
                       (unsigned long long)numel, qd_dtype_name(t->dtype));
    t->nbytes = bits / 8;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_u64(offs->child, begin) != 0 ||
        json_u64(offs->child->next, end) != 0)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with non-negative integers",
                       path, name);
    if (*end < *begin)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) end before they begin", path, name,
                       (unsigned long long)*begin, (unsigned long long)*end);
    if (*end - *begin != t->nbytes)
        return qd_fail(QD_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu) hold %llu bytes but %s with %llu elements needs %llu",
                       path, name, (unsigned long long)*begin, (unsigned long long)*end,
                       (unsigned long long)(*end - *begin), qd_dtype_name(t->dtype), (unsigned long long)numel,
                       (unsigned long long)t->nbytes);
    return QD_OK;
}

struct span {
    uint64_t begin, end;
    size_t idx;
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static qd_status parse_meta(const cJSON *m, const char *path, qd_st_file *f) {
    if (!cJSON_IsObject(m)) return qd_fail(QD_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
    size_t n = (size_t)cJSON_GetArraySize(m);
    QD_ALLOC(f->meta_keys, n);
    QD_ALLOC(f->meta_values, n);
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return qd_fail(QD_ERR_FORMAT, "%s: \"__metadata__\" value of '%s' is not a string", path, e->string);
        f->meta_keys[f->nmeta] = strdup(e->string);
        f->meta_values[f->nmeta] = strdup(e->valuestring);
        f->nmeta++;
        if (!f->meta_keys[f->nmeta - 1] || !f->meta_values[f->nmeta - 1])
            return qd_fail(QD_ERR_NOMEM, "%s: out of memory copying __metadata__", path);
    }
    return QD_OK;
}

/* Tiling: sorted by begin, entries start at 0 and each begins where the previous ended. */
static qd_status check_tiling(qd_st_file *f, struct span *sp, size_t n) {
    qsort(sp, n, sizeof *sp, cmp_span);
    uint64_t prev = 0;
    const char *prev_name = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = f->tensors[sp[i].idx].name;
        if (sp[i].begin > prev) {
            if (!prev_name)
                return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': data starts at byte %llu, leaving a gap at the start "
                               "of the data buffer (expected 0)", f->path, name, (unsigned long long)sp[i].begin);
            return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': gap of %llu bytes before its data_offsets [%llu, %llu) "
                           "(tensor '%s' ends at %llu)", f->path, name, (unsigned long long)(sp[i].begin - prev),
                           (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end, prev_name,
                           (unsigned long long)prev);
        }
        if (sp[i].begin < prev)
            return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) overlap tensor '%s' (ends at %llu)",
                           f->path, name, (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end, prev_name,
                           (unsigned long long)prev);
        prev = sp[i].end;
        prev_name = name;
    }
    uint64_t want = f->data_start + prev;
    if (want > f->file_size)
        return qd_fail(QD_ERR_FORMAT, "%s: file is truncated: %llu bytes, but the header describes %llu%s%s%s", f->path,
                       (unsigned long long)f->file_size, (unsigned long long)want, prev_name ? " (tensor '" : "",
                       prev_name ? prev_name : "", prev_name ? "' runs past the end)" : "");
    if (want < f->file_size)
        return qd_fail(QD_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor's data (file is %llu bytes, the "
                       "header describes %llu)", f->path, (unsigned long long)(f->file_size - want),
                       (unsigned long long)f->file_size, (unsigned long long)want);
    return QD_OK;
}

static qd_status parse_root(const cJSON *root, qd_st_file *f) {
    const char *path = f->path;
    if (!cJSON_IsObject(root)) return qd_fail(QD_ERR_FORMAT, "%s: header is not a JSON object", path);
    size_t n = (size_t)cJSON_GetArraySize(root);
    const char **names;
    QD_ALLOC(names, n);
    size_t k = 0;
    for (const cJSON *e = root->child; e; e = e->next) names[k++] = e->string;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            qd_status st = qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': duplicate key in the header", path, names[i]);
            free(names);
            return st;
        }
    free(names);

    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    size_t nt = n - (meta ? 1 : 0);
    if (meta) QD_CHECK(parse_meta(meta, path, f));
    QD_ALLOC(f->tensors, nt);
    struct span *sp;
    QD_ALLOC(sp, nt);
    qd_status st = QD_OK;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == meta) continue;
        qd_st_tensor *t = &f->tensors[f->ntensors];
        t->name = strdup(e->string);
        if (!t->name) {
            st = qd_fail(QD_ERR_NOMEM, "%s: out of memory copying tensor names", path);
            break;
        }
        f->ntensors++;
        sp[f->ntensors - 1].idx = f->ntensors - 1;
        st = parse_tensor(e, path, t, &sp[f->ntensors - 1].begin, &sp[f->ntensors - 1].end);
        if (st != QD_OK) break;
        t->file_offset = f->data_start + sp[f->ntensors - 1].begin;
    }
    if (st == QD_OK) st = check_tiling(f, sp, f->ntensors);
    free(sp);
    return st;
}

static qd_status parse_header(const char *json, qd_st_file *f) {
    size_t n = (size_t)f->header_len;
    if (n == 0 || json[0] != '{')
        return qd_fail(QD_ERR_FORMAT, "%s: header does not start with '{' (not a safetensors file?)", f->path);
    size_t bad = utf8_bad_at((const unsigned char *)json, n);
    if (bad != n) return qd_fail(QD_ERR_FORMAT, "%s: header is not valid UTF-8 at byte %zu", f->path, bad);
    /* JSON allows no raw control bytes; cJSON would accept them (and cut names at a NUL) */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)json[i];
        if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r')
            return qd_fail(QD_ERR_FORMAT, "%s: header holds control byte 0x%02x at byte %zu (not valid JSON)", f->path,
                           ch, i);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, n, &end, 0);
    if (!root)
        return qd_fail(QD_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu of %zu)", f->path,
                       end ? (size_t)(end - json) : (size_t)0, n);
    /* the writer may right-pad with spaces; anything else after the object is garbage */
    for (const char *p = end; p < json + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return qd_fail(QD_ERR_FORMAT, "%s: unexpected bytes after the header's JSON object (byte %zu of %zu)",
                           f->path, (size_t)(p - json), n);
        }
    qd_status st = parse_root(root, f);
    cJSON_Delete(root);
    return st;
}

/* The 8-byte prefix: N within limits and within the file. */
static qd_status check_prefix(const char *path, uint64_t size, const unsigned char *head, uint64_t *n) {
    if (size < 8)
        return qd_fail(QD_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte header length (truncated?)",
                       path, (unsigned long long)size);
    *n = le_u64(head);
    if (*n > QD_ST_MAX_HEADER)
        return qd_fail(QD_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                       (unsigned long long)*n, QD_ST_MAX_HEADER);
    if (*n > size - 8)
        return qd_fail(QD_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes; truncated?)",
                       path, (unsigned long long)*n, (unsigned long long)size);
    return QD_OK;
}

static qd_status new_file(const char *path, uint64_t size, uint64_t n, qd_st_file **out) {
    qd_st_file *f;
    QD_ALLOC(f, 1);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory", path);
    }
    f->file_size = size;
    f->header_len = n;
    f->data_start = 8 + n;
    *out = f;
    return QD_OK;
}

qd_status qd_st_parse_mem(const void *bytes, size_t len, const char *name, qd_st_file **out) {
    *out = NULL;
    uint64_t n;
    unsigned char head[8] = {0};
    memcpy(head, bytes, len < 8 ? len : 8);
    QD_CHECK(check_prefix(name, len, head, &n));
    qd_st_file *f;
    QD_CHECK(new_file(name, len, n, &f));
    /* a NUL-terminated private copy, exactly as qd_st_open parses it */
    char *json = malloc((size_t)n + 1);
    if (!json) {
        qd_st_close(f);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory copying a %llu-byte header", name, (unsigned long long)n);
    }
    memcpy(json, (const char *)bytes + 8, (size_t)n);
    json[n] = '\0';
    qd_status st = parse_header(json, f);
    free(json);
    if (st != QD_OK) {
        qd_st_close(f);
        return st;
    }
    *out = f;
    return QD_OK;
}

static qd_status pread_all(int fd, void *buf, size_t len, uint64_t off, const char *path) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return qd_fail(QD_ERR_IO, "%s: read failed at byte %llu: %s", path, (unsigned long long)off, strerror(errno));
        if (r == 0) return qd_fail(QD_ERR_FORMAT, "%s: file ended early at byte %llu (truncated?)", path, (unsigned long long)off);
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return QD_OK;
}

qd_status qd_st_open(const char *path, int map_data, qd_st_file **out) {
    *out = NULL;
    /* O_NONBLOCK: a FIFO given as a model file must be refused below, not block the open */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qd_fail(QD_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size, n = 0;
    unsigned char head[8] = {0};
    qd_status st = size >= 8 ? pread_all(fd, head, 8, 0, path) : QD_OK;
    if (st == QD_OK) st = check_prefix(path, size, head, &n);
    if (st != QD_OK) {
        close(fd);
        return st;
    }
    qd_st_file *f;
    st = new_file(path, size, n, &f);
    if (st != QD_OK) {
        close(fd);
        return st;
    }
    f->fd = fd;
    char *json = malloc((size_t)n + 1);
    if (!json) {
        qd_st_close(f);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory reading a %llu-byte header", path, (unsigned long long)n);
    }
    st = pread_all(fd, json, (size_t)n, 8, path);
    if (st == QD_OK) {
        json[n] = '\0';
        st = parse_header(json, f);
    }
    free(json);
    if (st == QD_OK && map_data) {
        void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            st = qd_fail(QD_ERR_IO, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size, strerror(errno));
        else
            f->map = m;
    }
    if (st != QD_OK) {
        qd_st_close(f);
        return st;
    }
    *out = f;
    return QD_OK;
}

void qd_st_close(qd_st_file *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, (size_t)f->file_size);
    if (f->fd >= 0) close(f->fd);
    for (size_t i = 0; i < f->ntensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    free(f);
}

const qd_st_tensor *qd_st_find(const qd_st_file *f, const char *name) {
    for (size_t i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}
