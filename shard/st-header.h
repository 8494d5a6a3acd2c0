/* SPDX-License-Identifier: MIT
 * st-header.h - (internal to shard/st-*.c) what the two safetensors writers share: the tensor entry,
 * a shard's header, the shard names and the index file. Both writers therefore give the same bytes
 * for the same tensors. */
#ifndef QD_ST_HEADER_H
#define QD_ST_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-status.h"

typedef struct qd_st_entry {
    char *name;
    qd_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end; /* within its shard's data buffer */
    int shard;
} qd_st_entry;

typedef struct qd_st_entries {
    qd_st_entry *e;
    size_t n, cap;
} qd_st_entries;

/* The checks of qd_stw_open / qd_stpl_open: dir exists, prefix is a short file name part, max > 0. */
qd_status qd_st_open_check(const char *dir, const char *prefix, uint64_t max_shard_bytes);
/* Appends a tensor after checking dtype, rank, name (new, not __metadata__) and that nbytes equals
 * numel * bits / 8; the entry gets begin 0, end nbytes, shard 0 (the writer places it). */
qd_status qd_st_entries_add(qd_st_entries *l, const char *name, qd_dtype dtype, int ndim, const int64_t *shape,
                            uint64_t nbytes);
void qd_st_entries_free(qd_st_entries *l);

/* The header of entries e[0..n): __metadata__ first, tensors in order, padded with spaces to a
 * multiple of 8 so the data buffer starts 8-aligned. *out is malloc'd. */
qd_status qd_st_header_build(const qd_st_entry *e, size_t n, const char *dir, char **out, size_t *len);

/* "model.safetensors" for a lone shard, else "model-0000i-of-0000n.safetensors" (i from 0). */
void qd_st_shard_name(const char *prefix, int i, int nshards, char out[128]);

/* prefix.safetensors.index.json in dir (atomically): total_size and the weight map. */
qd_status qd_st_index_write(const char *dir, const char *prefix, const qd_st_entry *e, size_t n,
                            char (*names)[128]);

#endif
