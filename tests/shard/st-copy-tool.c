/* SPDX-License-Identifier: MIT
 * qd-st-copy IN_DIR OUT_DIR MAX_SHARD_BYTES - test helper: read a checkpoint with qdist's reader and
 * write it back with qdist's writer (sharded at MAX_SHARD_BYTES, into an atomic output directory).
 * tests/py/test_safetensors_interop.py loads the result with the `safetensors` package and compares
 * it with the arrays it wrote itself, so both directions are checked against the real library.
 */
#include <stdio.h>
#include <stdlib.h>

#include "qd-log.h"
#include "qd-safetensors.h"
#include "qd-st-writer.h"

static qd_status copy(const char *in, const char *out, uint64_t max_bytes) {
    qd_checkpoint *c = NULL;
    qd_outdir *o = NULL;
    qd_stw *w = NULL;
    qd_status st = qd_ckpt_open(in, 1, &c);
    if (st == QD_OK) st = qd_outdir_begin(out, 1, &o);
    if (st == QD_OK) st = qd_stw_open(qd_outdir_path(o), "model", max_bytes, &w);
    for (size_t i = 0; st == QD_OK && i < c->ntensors; i++) {
        const qd_st_tensor *t = c->tensors[i];
        st = qd_stw_add(w, t->name, t->dtype, t->ndim, t->shape, qd_ckpt_data(c, t), (size_t)t->nbytes);
    }
    if (st == QD_OK) {
        st = qd_stw_finish(w);
        w = NULL;
    }
    if (st == QD_OK) {
        st = qd_outdir_commit(o);
        o = NULL;
    }
    qd_stw_abort(w);
    qd_outdir_abort(o);
    qd_ckpt_close(c);
    return st;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: qd-st-copy IN_DIR OUT_DIR MAX_SHARD_BYTES\n");
        return 2;
    }
    return qd_status_exit_code(copy(argv[1], argv[2], strtoull(argv[3], NULL, 10)));
}
