/* SPDX-License-Identifier: MIT
 * qd-safetensors.h - one safetensors file, read through mmap, and a model directory of them.
 *
 * Layout (huggingface/safetensors): u64 little-endian N, N bytes of UTF-8 JSON header (starts with
 * '{', may be right-padded with spaces), then the data buffer. Each header key except "__metadata__"
 * (a string->string map) is a tensor {"dtype", "shape", "data_offsets": [begin, end)} relative to the
 * data buffer. qd_st_open enforces every rule of docs/reference/formats.md section A: N <= 1e8,
 * no duplicate keys, known dtype, end-begin == numel*bits/8, entries sorted by begin tile the buffer
 * from 0 with no hole or overlap, 8 + N + last_end == file size. Data may be unaligned: read it with
 * memcpy or the conversion helpers. A failure names the file and the tensor and returns QD_ERR_FORMAT
 * (QD_ERR_IO when the file cannot be opened or mapped).
 *
 * A checkpoint is a model directory: model.safetensors, or model.safetensors.index.json whose
 * weight_map names the shards (each shard must exist and hold exactly the tensors the index maps to
 * it). map_data = 0 parses the headers only (rank 0 plans without touching tensor data).
 */
#ifndef QD_SAFETENSORS_H
#define QD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-status.h"

#define QD_ST_MAX_DIMS 8

typedef struct qd_st_tensor {
    char *name;
    qd_dtype dtype;
    int ndim;
    int64_t shape[QD_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t nbytes;
    uint64_t file_offset; /* absolute offset of the first byte in its file */
    int file_index;       /* index into the checkpoint's files (0 for a lone file) */
} qd_st_tensor;

typedef struct qd_st_file {
    char *path;
    uint64_t file_size;
    uint64_t header_len;    /* N */
    uint64_t data_start;    /* 8 + N */
    size_t ntensors;
    qd_st_tensor *tensors;  /* in header order */
    size_t nmeta;
    char **meta_keys, **meta_values; /* __metadata__ */
    const unsigned char *map; /* whole-file mapping, NULL when opened meta-only or parsed from memory */
    int fd;                   /* kept open for pread on meta-only files; -1 when parsed from memory */
} qd_st_file;

/* map_data = 0: parse and validate the header only (no mapping kept). */
qd_status qd_st_open(const char *path, int map_data, qd_st_file **out);
void qd_st_close(qd_st_file *f);
/* Parse and validate the whole file content held in memory (len = file size); name is only used in
 * messages. The result has no mapping and no fd (the fuzz target and tests use it). */
qd_status qd_st_parse_mem(const void *bytes, size_t len, const char *name, qd_st_file **out);
const qd_st_tensor *qd_st_find(const qd_st_file *f, const char *name);

typedef struct qd_checkpoint {
    char *dir;
    int sharded;            /* 1 when read through model.safetensors.index.json */
    int nfiles;
    qd_st_file **files;
    size_t ntensors;
    qd_st_tensor **tensors; /* all tensors, sorted by name (pointers into files[i]->tensors) */
} qd_checkpoint;

/* Opens DIR/model.safetensors or DIR/model.safetensors.index.json (refusing pytorch_model.bin-only
 * directories with a message that qdist never unpickles). map_data as in qd_st_open. */
qd_status qd_ckpt_open(const char *dir, int map_data, qd_checkpoint **out);
void qd_ckpt_close(qd_checkpoint *c);
const qd_st_tensor *qd_ckpt_find(const qd_checkpoint *c, const char *name);
/* Pointer to the raw bytes of t (checkpoint opened with map_data). */
const void *qd_ckpt_data(const qd_checkpoint *c, const qd_st_tensor *t);
/* Read t converted to fp32 into dst (numel floats); float dtypes only, else QD_ERR_UNSUPPORTED.
 * Works on meta-only checkpoints too (reads the byte range with pread). */
qd_status qd_ckpt_read_f32(const qd_checkpoint *c, const qd_st_tensor *t, float *dst);
/* Read the raw bytes of t into dst (nbytes). */
qd_status qd_ckpt_read_raw(const qd_checkpoint *c, const qd_st_tensor *t, void *dst);

#endif
