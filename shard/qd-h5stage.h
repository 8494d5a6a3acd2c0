/* SPDX-License-Identifier: MIT
 * qd-h5stage.h - the staging directory (--staging DIR): finished blocks in HDF5, durable, resumable.
 *
 * Layout of DIR:
 *   fingerprint.json     {"format":"qdist-staging-1","fingerprint":{key:value,...}} (keys in order),
 *                        written once (atomically: tmp + fsync + rename + fsync dir) on a fresh run.
 *   block-NNNNN.h5       one finished block (NNNNN = block index, 5+ digits). It exists if and only if
 *                        the block is staged: it is built in memory, written as block-NNNNN.h5.tmp, fsynced,
 *                        renamed, and the directory fsynced before qd_stage_write_block returns.
 *   *.tmp                a write that a crash interrupted: never counted as staged, overwritten by the
 *                        next write of that block, removed by qd_stage_open on --resume.
 *   lock                 flock'ed by rank 0 for the whole run, holds "host H pid P".
 *   meta/                written by the run before its export (metadata files, the report).
 * Layout of block-NNNNN.h5 (readable by h5dump / h5py):
 *   /                    attrs: format "qdist-stage-1" (string), block (i64), rank (i32), time_s (f64)
 *   /modules/<name>/     one group per quantized Linear, in the order written (creation order tracked):
 *                        datasets codes u8 [N,K], scales f32 [G,N], zeros i32 [G,N], g_idx i32 [K];
 *                        attrs bits, group_size, sym (i32), loss, damp, time_s (f64), fallback (string,
 *                        its full length < QD_FALLBACK_MAX; older stagings hold at most 63 bytes of it)
 *   /tensors/<name>      f32 dataset of its shape: a non-Linear tensor quantization changed (AWQ norms)
 *   /sources             u8 [len]: text "<tensor> <16 hex>\n" per source tensor of the block (optional)
 * Written in the HDF5 1.10 file format (readers need HDF5 >= 1.10; h5py and h5dump read it): all
 * metadata carries checksums, and every dataset is chunked (whole rows, <= 256 MiB a chunk) with a
 * Fletcher-32 checksum per chunk, so a damaged byte anywhere is refused rather than read back.
 * Reading checks every dataset's presence, type class and shape, every attribute, codes < 2^bits and
 * g_idx in [0,G); anything malformed is one line naming the file and the dataset (QD_ERR_FORMAT).
 *
 * Multi-rank and shared file systems: rank 0 calls qd_stage_open (creates or verifies DIR); after a
 * barrier the other ranks call qd_stage_attach (verifies the fingerprint without writing, so a DIR
 * that is not on a file system shared by all ranks is refused, naming the missing file). Each block is
 * written by exactly one rank. Rank 0 holds flock(DIR/lock) (LOCK_EX|LOCK_NB; the file holds
 * "host H pid P") from qd_stage_open to qd_stage_close, so a second run on DIR (--resume included)
 * is refused naming the first one before it looks at, or removes, anything in DIR. Where the file
 * system has no flock (Lustre without -o flock) a warning says the run is unlocked. HDF5's own
 * locking is turned off; the data's safety rests on rename() within DIR being atomic and fsync
 * being durable.
 * The HDF5 library is the serial, non-thread-safe build: within one process, call the block
 * functions from one thread at a time (an I/O thread that does all staging is fine).
 * All functions report their own failures once (qd_fail) and return a qd_status.
 */
#ifndef QD_H5STAGE_H
#define QD_H5STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "qd-qlinear.h"
#include "qd-status.h"

#define QD_STAGE_FORMAT "qdist-staging-1"    /* fingerprint.json "format" */
#define QD_STAGE_BLOCK_FORMAT "qdist-stage-1" /* block file root attribute "format" */
#define QD_STAGE_NAME_MAX 256                 /* module / tensor names, NUL included */
#define QD_STAGE_MAX_DIMS 8

/* ---- fingerprint: an ordered list of (key, value) strings ---- */
typedef struct qd_fingerprint {
    size_t n, cap;
    char **keys;
    char **values;
} qd_fingerprint;

/* Initialise with `qd_fingerprint fpr = {0};`. Keys must be unique and non-empty. */
qd_status qd_fingerprint_add(qd_fingerprint *fpr, const char *key, const char *value);
/* Adds key = lowercase hex sha256 of len bytes (the calibration ids, a recipe file, ...). */
qd_status qd_fingerprint_add_sha256(qd_fingerprint *fpr, const char *key, const void *data, size_t len);
/* Adds one entry per model file, cheap (no tensor data is read), in name order:
 *   "model/<f>.safetensors" = "size=<bytes> header_sha256=<hex of the 8-byte length + JSON header>"
 *   "model/<f>.json" (config.json, the safetensors index, tokenizer.json ...) = "size=<bytes>
 *   sha256=<hex of the file>" ("size=<bytes>" alone above 64 MiB). Other files are not part of it.
 *   Refuses a directory with no .safetensors. */
qd_status qd_fingerprint_add_model(qd_fingerprint *fpr, const char *model_dir);
/* The value of key, or NULL. */
const char *qd_fingerprint_get(const qd_fingerprint *fpr, const char *key);
void qd_fingerprint_free(qd_fingerprint *fpr);

/* sha256 of len bytes as 64 lowercase hex digits + NUL. */
void qd_sha256_hex(const void *data, size_t len, char out[65]);

/* ---- what a block stages ---- */
typedef struct qd_staged_module {
    qd_qlinear q; /* q.name relative to the block, e.g. "self_attn.q_proj" (no '/'); bits 1..8, codes each
                   * < 2^bits, g_idx each in [0,G); q.method is not staged ("" when read back) */
    qd_qstats s;  /* s.seconds is the attribute time_s; s.calib_tokens is not staged (0 when read back) */
} qd_staged_module;

typedef struct qd_staged_tensor {
    char name[QD_STAGE_NAME_MAX]; /* full checkpoint name, e.g. "model.layers.3.input_layernorm.weight" */
    int ndim;                     /* 1..QD_STAGE_MAX_DIMS */
    int64_t shape[QD_STAGE_MAX_DIMS];
    float *data;                  /* prod(shape) floats */
} qd_staged_tensor;

typedef struct qd_staged_block {
    int64_t block;  /* block index in the model */
    int rank;       /* rank that produced it (informational) */
    double time_s;  /* wall time of the whole block (informational) */
    size_t nmodules;
    qd_staged_module *modules;
    size_t ntensors;
    qd_staged_tensor *tensors;
    char *sources;  /* "<tensor> <hash>\n" of the source tensors it was made from (mpi/qd-block-sources.h);
                     * NULL when not recorded. Stored as the u8 dataset /sources. */
} qd_staged_block;

/* A block returned by qd_stage_read_block owns all its arrays; free it with this (NULL is fine).
 * Blocks the caller assembled for qd_stage_write_block are the caller's to free. */
void qd_staged_block_free(qd_staged_block *b);

/* ---- the staging directory ---- */
typedef struct qd_stage qd_stage;

/* Rank 0 (or a single process). DIR absent or empty: create it and write fingerprint.json (with or
 * without resume). DIR non-empty without resume: refused (pass --resume or remove DIR). With resume:
 * fingerprint.json must exist and equal fpr field by field, else refused with QD_ERR_MISMATCH naming
 * the first differing field and both values (shortened around the first difference); leftover *.tmp
 * files are removed. */
qd_status qd_stage_open(const char *dir, const qd_fingerprint *fpr, int resume, qd_stage **out);
/* Other ranks, after rank 0's qd_stage_open (and a barrier): verify DIR/fingerprint.json equals fpr
 * without writing anything. */
qd_status qd_stage_attach(const char *dir, const qd_fingerprint *fpr, qd_stage **out);
void qd_stage_close(qd_stage *s); /* releases rank 0's lock */
/* Removes what qdist writes into a staging DIR (block-*.h5, *.tmp leftovers, fingerprint.json, lock,
 * meta/) and then DIR itself if that left it empty; anything else in DIR stays (warned about). */
qd_status qd_stage_remove(const char *dir);
const char *qd_stage_dir(const qd_stage *s);

/* 1 if block-NNNNN.h5 exists (the block is staged), else 0. */
int qd_stage_has_block(const qd_stage *s, int64_t block);
/* Stage a block durably (see the layout above); the input is validated first (names, shapes, code
 * range), so a wrong block is refused before anything is written. Overwrites an existing file. */
qd_status qd_stage_write_block(qd_stage *s, const qd_staged_block *b);
/* Read and validate a staged block; *out is owned by the caller (qd_staged_block_free). */
qd_status qd_stage_read_block(const qd_stage *s, int64_t block, qd_staged_block **out);
/* Same, for a block file by path (tools, tests). */
qd_status qd_stage_read_block_file(const char *path, qd_staged_block **out);
/* Same; with_codes = 0 leaves every module's codes NULL (not read, not checked) - the export's planning
 * needs only the shapes, scales, zeros and g_idx. */
qd_status qd_stage_read_block_file_opt(const char *path, int with_codes, qd_staged_block **out);
/* The staged block indices in increasing order (*.tmp and unrelated files ignored); free(*blocks). */
qd_status qd_stage_list(const qd_stage *s, int64_t **blocks, size_t *n);

#endif
