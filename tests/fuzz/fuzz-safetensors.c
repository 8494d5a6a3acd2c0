/* SPDX-License-Identifier: MIT
 * libFuzzer target: the safetensors header parser and validator (qd_st_parse_mem), fed whole files.
 *
 * Beyond "no crash", an accepted file must satisfy what the validator promises to its callers:
 * every tensor lies inside the file, the tensors tile the data buffer exactly, sizes match shapes.
 * Every accepted tensor's bytes are read so that ASan sees any range the validator let through.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qd-safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qd_st_file *f = NULL;
    if (qd_st_parse_mem(data, size, "fuzz.safetensors", &f) != QD_OK) {
        if (f) abort(); /* a failure must not hand out a half-built file */
        return 0;
    }
    uint64_t sum = 0;
    unsigned acc = 0;
    for (size_t i = 0; i < f->ntensors; i++) {
        const qd_st_tensor *t = &f->tensors[i];
        if (t->file_offset < f->data_start || t->file_offset + t->nbytes > f->file_size) abort();
        if (t->ndim < 0 || t->ndim > QD_ST_MAX_DIMS) abort();
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
        if (numel != t->numel || t->numel * qd_dtype_bits(t->dtype) / 8 != t->nbytes) abort();
        for (uint64_t k = 0; k < t->nbytes; k++) acc += data[t->file_offset + k];
        if (qd_st_find(f, t->name) == NULL) abort();
        sum += t->nbytes;
    }
    if (f->data_start + sum != f->file_size) abort();
    if (f->header_len + 8 != f->data_start) abort();
    qd_st_close(f);
    volatile unsigned sink = acc; /* keeps the reads for ASan */
    (void)sink;
    return 0;
}
