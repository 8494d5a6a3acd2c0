/* SPDX-License-Identifier: MIT
 * eval.c - perplexity: windows through the LM forward, lm_head in row chunks (bounding the logits
 * buffer), the backend's cross-entropy summed in double. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-clock.h"
#include "qd-eval.h"
#include "qd-fs.h"
#include "qd-lm.h"
#include "qd-log.h"
#include "qd-tokenizer.h"
#include "tok-unicode.h"

#define QD_EVAL_LOGIT_ROWS 256

static qd_status run_windows(qd_lm *lm, const int32_t *ids, size_t windows, size_t S, const struct qd_eval_opts *o,
                             double *nll) {
    qd_backend_t be = lm->be;
    size_t V = (size_t)lm->cfg.vocab;
    qd_buf_t logits = NULL, targets = NULL;
    float *host = NULL;
    qd_status st;
    if (o->first_window && windows) {
        host = malloc((S - 1) * V * sizeof(float) + 1);
        if (!host) return qd_fail(QD_ERR_NOMEM, "eval: out of memory for the first window's logits");
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, QD_EVAL_LOGIT_ROWS * V, &logits), st, out);
    QD_CHECK_GOTO(qd_buf_alloc(be, S, &targets), st, out);
    *nll = 0;
    for (size_t w = 0; w < windows; w++) {
        const int32_t *win = ids + w * S;
        QD_CHECK_GOTO(qd_lm_forward(lm, win, 1), st, out);
        /* position t predicts token t + 1: targets are the window shifted by one */
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(targets, 0), .src = win + 1,
                                                                .src_dtype = QD_DT_I32, .n = S - 1}), st, out);
        for (size_t r0 = 0; r0 < S - 1; r0 += QD_EVAL_LOGIT_ROWS) {
            size_t rows = S - 1 - r0 < QD_EVAL_LOGIT_ROWS ? S - 1 - r0 : QD_EVAL_LOGIT_ROWS;
            double sum;
            QD_CHECK_GOTO(qd_lm_logits(lm, r0, rows, QD_REF(logits, 0)), st, out);
            if (host && w == 0)
                QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(logits, 0),
                                                                             .dst = host + r0 * V, .n = rows * V}),
                              st, out);
            QD_CHECK_GOTO(qd_be_cross_entropy(be, &(struct qd_xent_args){.logits = QD_REF(logits, 0),
                                                                         .targets = QD_REF(targets, r0), .rows = rows,
                                                                         .vocab = V, .sum_out = &sum}), st, out);
            if (!isfinite(sum)) {
                st = qd_fail(QD_ERR_NUMERIC, "%s: non-finite loss in window %zu (NaN/Inf in the model's activations)",
                             lm->dir, w);
                goto out;
            }
            *nll += sum;
        }
        qd_debug("eval: window %zu/%zu running ppl %.4f", w + 1, windows, exp(*nll / ((w + 1) * (S - 1))));
        if (host && w == 0) QD_CHECK_GOTO(o->first_window(o->user, win, S, host, V), st, out);
    }
out:
    free(host);
    qd_buf_free(logits);
    qd_buf_free(targets);
    return st;
}

qd_status qd_eval_ppl_ids(qd_backend_t be, const qd_model *m, const int32_t *ids, size_t n,
                          const struct qd_eval_opts *opts, struct qd_eval_result *out) {
    double t0 = qd_clock_s();
    const qd_model_cfg cfg = *qd_model_cfg_of(m);
    size_t S = opts->seqlen;
    if (!S) S = cfg.max_pos > 0 && cfg.max_pos < 2048 ? (size_t)cfg.max_pos : 2048;
    if (S < 2) return qd_fail(QD_ERR_USAGE, "eval: sequence length %zu is too short (>= 2)", S);
    if (cfg.max_pos > 0 && S > (size_t)cfg.max_pos)
        qd_warn("eval: sequence length %zu exceeds the model's max_position_embeddings %d", S, cfg.max_pos);
    size_t windows = n / S;
    if (opts->max_windows && windows > opts->max_windows) windows = opts->max_windows;
    if (!windows)
        return qd_fail(QD_ERR_FORMAT, "%s: the text has %zu tokens, fewer than one window of %zu (--seqlen)",
                       opts->data_name ? opts->data_name : "eval", n, S);
    qd_lm *lm;
    QD_CHECK(qd_lm_open(be, m, S, 1, &lm));
    double nll = 0;
    qd_status st = run_windows(lm, ids, windows, S, opts, &nll);
    qd_lm_close(lm);
    if (st != QD_OK) return st;
    out->seqlen = S;
    out->windows = windows;
    out->scored_tokens = windows * (S - 1);
    out->text_tokens = n;
    out->mean_nll = nll / (double)out->scored_tokens;
    out->ppl = exp(out->mean_nll);
    out->seconds = qd_clock_s() - t0;
    return QD_OK;
}

qd_status qd_eval_ppl_file(qd_backend_t be, const qd_model *m, const char *data_path,
                          const struct qd_eval_opts *opts, struct qd_eval_result *out) {
    char *text = NULL;
    size_t len = 0;
    QD_CHECK(qd_read_file(data_path, (size_t)1 << 32, &text, &len));
    /* perplexity of a binary file or another encoding is a number about nothing: refuse it, as Python's
     * open(path, encoding="utf-8").read() would */
    const unsigned char *nul = memchr(text, 0, len);
    size_t valid = qd_utf8_valid_prefix((const unsigned char *)text, nul ? (size_t)(nul - (unsigned char *)text) : len);
    if (nul || valid < len) {
        unsigned char b = (unsigned char)text[valid];
        free(text);
        return qd_fail(QD_ERR_FORMAT, "%s: not UTF-8 text (byte 0x%02x at offset %zu); --data expects a UTF-8 text file",
                       data_path, b, valid);
    }
    struct qd_eval_opts named = *opts;
    if (!named.data_name) named.data_name = data_path;
    opts = &named;
    qd_tokenizer *tok = NULL;
    qd_ids ids = {0};
    qd_status st;
    QD_CHECK_GOTO(qd_tokenizer_load(qd_model_dir(m), &tok), st, done);
    QD_CHECK_GOTO(qd_tokenizer_encode(tok, text, len, 1, &ids), st, done);
    /* an id the embedding has no row for (the text uses a token of a tokenizer larger than the
     * model): refused naming both files, not at the first forward */
    int32_t top = -1;
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] > top) top = ids.ids[i];
    if (top >= qd_model_cfg_of(m)->vocab) {
        st = qd_fail(QD_ERR_FORMAT, "%s: the text has token id %d (%s/tokenizer.json), outside %s/config.json's "
                     "vocab_size %d", data_path, top, qd_model_dir(m), qd_model_dir(m), qd_model_cfg_of(m)->vocab);
        goto done;
    }
    QD_CHECK_GOTO(qd_eval_ppl_ids(be, m, ids.ids, ids.n, opts, out), st, done);
done:
    qd_ids_free(&ids);
    qd_tokenizer_free(tok);
    free(text);
    return st;
}
