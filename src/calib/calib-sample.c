/* SPDX-License-Identifier: MIT
 * qd_calib_load: one pass over the documents with either sampler (see qd-calib.h), then the
 * SHA-256 fingerprint of the chosen ids. */
#include <stdlib.h>
#include <string.h>

#include "calib-internal.h"
#include "qd-check.h"
#include "qd-sha256.h"

typedef struct {
    uint64_t key;
    int32_t *ids;
    size_t n;
} kept_doc;

/* GPTQ: slot s holds a window of the k-th eligible document with probability 1/k per document,
 * i.e. each slot is an independent uniform draw over eligible documents. */
static void random_offer(qd_rng *rng, const qd_ids *doc, uint64_t k, int32_t *rows, int nsamples, int seqlen) {
    for (int s = 0; s < nsamples; s++) {
        if (qd_rng_below(rng, k) != 0) continue;
        uint64_t off = qd_rng_below(rng, doc->n - (size_t)seqlen + 1);
        memcpy(rows + (size_t)s * (size_t)seqlen, doc->ids + off, (size_t)seqlen * sizeof(int32_t));
    }
}

/* AWQ: documents get random keys; keep the lowest keys while the kept ones without the highest
 * still fall short of `need` tokens. Kept docs are ordered by key (insertion into a small array). */
static qd_status concat_offer(qd_rng *rng, const qd_ids *doc, kept_doc **kept, size_t *nkept, size_t *cap,
                              size_t *total, size_t need) {
    uint64_t key = qd_rng_next(rng);
    if (*total >= need && *nkept && key > (*kept)[*nkept - 1].key) return QD_OK; /* would be evicted at once */
    if (*nkept == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        kept_doc *p = realloc(*kept, c * sizeof *p);
        if (!p) return qd_fail(QD_ERR_NOMEM, "calib: out of memory keeping %zu documents", c);
        *kept = p;
        *cap = c;
    }
    int32_t *copy = malloc(doc->n * sizeof *copy);
    if (!copy) return qd_fail(QD_ERR_NOMEM, "calib: out of memory for a %zu-token document", doc->n);
    memcpy(copy, doc->ids, doc->n * sizeof *copy);
    size_t i = *nkept;
    while (i > 0 && (*kept)[i - 1].key > key) {
        (*kept)[i] = (*kept)[i - 1];
        i--;
    }
    (*kept)[i] = (kept_doc){key, copy, doc->n};
    (*nkept)++;
    *total += doc->n;
    while (*nkept > 1 && *total - (*kept)[*nkept - 1].n >= need) {
        kept_doc *last = &(*kept)[--(*nkept)];
        *total -= last->n;
        free(last->ids);
    }
    return QD_OK;
}

qd_status qd_calib_load(const qd_calib_opts *o, qd_tokenizer *tok, qd_calib_set *out) {
    memset(out, 0, sizeof *out);
    if (o->nsamples < 1 || o->seqlen < 1)
        return qd_fail(QD_ERR_USAGE, "calib: nsamples (%d) and seqlen (%d) must be at least 1", o->nsamples, o->seqlen);
    size_t need = (size_t)o->nsamples * (size_t)o->seqlen;
    int32_t *rows;
    QD_ALLOC(rows, need);
    qd_doc_reader rd;
    qd_status st = qd_doc_reader_open(&rd, o, tok);
    if (st != QD_OK) {
        free(rows);
        return st;
    }
    qd_rng rng;
    qd_rng_seed(&rng, o->seed);
    qd_ids doc = {0};
    kept_doc *kept = NULL;
    size_t nkept = 0, kcap = 0, total = 0, longest = 0;
    uint64_t eligible = 0;
    for (;;) {
        int got;
        QD_CHECK_GOTO(qd_doc_reader_next(&rd, &doc, &got), st, done);
        if (!got) break;
        out->docs_read++;
        out->tokens_read += doc.n;
        if (doc.n > longest) longest = doc.n;
        if (o->mode == QD_CALIB_RANDOM) {
            if (doc.n < (size_t)o->seqlen) continue;
            random_offer(&rng, &doc, ++eligible, rows, o->nsamples, o->seqlen);
        } else if (doc.n) {
            eligible++;
            QD_CHECK_GOTO(concat_offer(&rng, &doc, &kept, &nkept, &kcap, &total, need), st, done);
        }
    }
    out->docs_eligible = (long)eligible;
    out->skipped_lines = rd.skipped;
    out->first_skipped_line = rd.first_skipped;
    out->chat = rd.chat_resolved ? rd.chat : QD_CHAT_NONE;
    if (rd.skipped)
        qd_warn("calib: %s: skipped %ld malformed line%s (first: line %ld); expected {\"text\": ...}, "
                "{\"messages\": [...]} or an array of token ids", o->path, rd.skipped, rd.skipped == 1 ? "" : "s",
                rd.first_skipped);
    if (out->docs_read == 0) {
        st = qd_fail(QD_ERR_FORMAT, "%s: no documents (%ld line%s read, %ld malformed)", o->path, rd.lineno,
                     rd.lineno == 1 ? "" : "s", rd.skipped);
        goto done;
    }
    if (o->mode == QD_CALIB_RANDOM && eligible == 0) {
        st = qd_fail(QD_ERR_FORMAT, "%s: no document has the %d tokens a random window needs (%ld documents, "
                     "%llu tokens in all, the longest %zu); lower --seqlen or use --calib-mode concat",
                     o->path, o->seqlen, out->docs_read, (unsigned long long)out->tokens_read, longest);
        goto done;
    }
    if (o->mode == QD_CALIB_CONCAT) {
        if (total < need) {
            st = qd_fail(QD_ERR_FORMAT, "%s: %llu tokens found in %ld documents, fewer than the %zu that --nsamples %d "
                         "x --seqlen %d need", o->path, (unsigned long long)out->tokens_read, out->docs_read, need,
                         o->nsamples, o->seqlen);
            goto done;
        }
        size_t w = 0;
        for (size_t k = 0; k < nkept && w < need; k++) {
            size_t take = kept[k].n < need - w ? kept[k].n : need - w;
            memcpy(rows + w, kept[k].ids, take * sizeof *rows);
            w += take;
        }
    }
    out->nseq = o->nsamples;
    out->seqlen = o->seqlen;
    out->ids = rows;
    rows = NULL;
    /* fingerprint: the ids as int32 little-endian, independent of the host's byte order */
    qd_sha256_ctx c;
    qd_sha256_init(&c);
    for (size_t i = 0; i < need; i++) {
        uint32_t v = (uint32_t)out->ids[i];
        uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
        qd_sha256_update(&c, le, 4);
    }
    uint8_t d[32];
    qd_sha256_final(&c, d);
    qd_sha256_to_hex(d, out->sha256_hex);
done:
    for (size_t k = 0; k < nkept; k++) free(kept[k].ids);
    free(kept);
    qd_ids_free(&doc);
    qd_doc_reader_close(&rd);
    free(rows);
    if (st != QD_OK) qd_calib_free(out);
    return st;
}

void qd_calib_free(qd_calib_set *s) {
    free(s->ids);
    s->ids = NULL;
    s->nseq = 0;
}
