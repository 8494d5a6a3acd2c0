/* SPDX-License-Identifier: MIT
 * qdist tokenize - encode a JSONL file of {"text": ...} with a model's tokenizer.json, one JSON
 * array of ids per line (exactly `tokenizers`' Tokenizer.encode(text).ids), or with --decode turn
 * arrays of ids back into {"text": ...} lines. The input is streamed line by line; blank lines are
 * skipped; a malformed line stops the run naming the line.
 * --calib FILE previews the calibration set `qdist quantize` would draw (qd-calib.h): one JSON
 * object with the sampled ids, their sha256 and the reader's counts. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "qd-args.h"
#include "qd-qbounds.h"
#include "qd-check.h"
#include "qd-calib.h"
#include "qd-commands.h"
#include "qd-paths.h"
#include "qd-tokenizer.h"

typedef struct {
    const char *model, *input, *output;
    int decode, no_special, keep_special;
    const char *calib, *calib_mode, *chat_template;
    int nsamples, seqlen, seed;
} tok_args;

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* a JSON \u0000 escape (not an escaped backslash followed by "u0000"): cJSON would cut the text there */
static int has_nul_escape(const char *s, size_t n) {
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), "\\u0000", 6)); p++) {
        size_t bs = 0;
        while (p - (ptrdiff_t)bs > s && p[-(ptrdiff_t)bs - 1] == '\\') bs++;
        if (bs % 2 == 0) return 1;
    }
    return 0;
}

static qd_status write_ids(FILE *out, const char *path, const qd_ids *ids, char **buf, size_t *cap) {
    size_t need = ids->n * 12 + 4;
    if (need > *cap) {
        char *b = realloc(*buf, need);
        if (!b) return qd_fail(QD_ERR_NOMEM, "tokenize: out of memory for %zu ids", ids->n);
        *buf = b;
        *cap = need;
    }
    char *p = *buf;
    *p++ = '[';
    for (size_t i = 0; i < ids->n; i++) {
        if (i) *p++ = ',';
        char tmp[12];
        int k = 0;
        uint32_t v = (uint32_t)ids->ids[i];
        do { tmp[k++] = (char)('0' + v % 10); v /= 10; } while (v);
        while (k) *p++ = tmp[--k];
    }
    *p++ = ']';
    *p++ = '\n';
    if (fwrite(*buf, 1, (size_t)(p - *buf), out) != (size_t)(p - *buf))
        return qd_fail(QD_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return QD_OK;
}

static qd_status encode_line(qd_tokenizer *tok, const tok_args *a, const char *line, size_t n, long lineno,
                             qd_ids *ids) {
    cJSON *j = cJSON_ParseWithLength(line, n);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    if (!cJSON_IsString(text)) {
        cJSON_Delete(j);
        return qd_fail(QD_ERR_FORMAT, "%s:%ld: expected a JSON object with a string \"text\"", a->input, lineno);
    }
    if (has_nul_escape(line, n)) {
        cJSON_Delete(j);
        return qd_fail(QD_ERR_UNSUPPORTED, "%s:%ld: text holds a NUL character (\\u0000), which qdist does not accept",
                       a->input, lineno);
    }
    ids->n = 0;
    qd_status st = qd_tokenizer_encode(tok, text->valuestring, strlen(text->valuestring), !a->no_special, ids);
    cJSON_Delete(j);
    return st;
}

static qd_status decode_line(qd_tokenizer *tok, const tok_args *a, const char *line, size_t n, long lineno,
                             qd_ids *ids, FILE *out) {
    cJSON *j = cJSON_ParseWithLength(line, n);
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return qd_fail(QD_ERR_FORMAT, "%s:%ld: expected a JSON array of token ids", a->input, lineno);
    }
    ids->n = 0;
    const cJSON *e;
    qd_status st = QD_OK;
    cJSON_ArrayForEach(e, j) {
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int32_t)e->valuedouble) {
            st = qd_fail(QD_ERR_FORMAT, "%s:%ld: expected integer token ids", a->input, lineno);
            break;
        }
        int32_t id = (int32_t)e->valuedouble;
        if (id < 0 || id >= qd_tokenizer_vocab_size(tok)) { /* here, where the file and line are known */
            st = qd_fail(QD_ERR_FORMAT, "%s:%ld: id %d at position %zu is not in the vocabulary (0..%d)",
                         a->input, lineno, id, ids->n, qd_tokenizer_vocab_size(tok) - 1);
            break;
        }
        if ((st = qd_ids_push(ids, id)) != QD_OK) break;
    }
    cJSON_Delete(j);
    QD_CHECK(st);
    char *text;
    size_t tlen;
    st = qd_tokenizer_decode(tok, ids->ids, ids->n, !a->keep_special, &text, &tlen);
    if (st != QD_OK) return st; /* the tokenizer named the id; a second line would repeat it */
    cJSON *o = cJSON_CreateObject();
    char *js = NULL;
    if (o && cJSON_AddStringToObject(o, "text", text)) js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(text);
    if (!js) return qd_fail(QD_ERR_NOMEM, "tokenize: out of memory writing line %ld", lineno);
    int ok = fputs(js, out) >= 0 && fputc('\n', out) != EOF;
    free(js);
    if (!ok) return qd_fail(QD_ERR_IO, "%s: write failed: %s", a->output ? a->output : "stdout", strerror(errno));
    return QD_OK;
}

static qd_status run(const tok_args *a, FILE *in, FILE *out) {
    qd_tokenizer *tok;
    QD_CHECK(qd_tokenizer_load(a->model, &tok));
    char *line = NULL, *buf = NULL;
    size_t lcap = 0, bcap = 0;
    ssize_t n;
    long lineno = 0;
    qd_ids ids = {0};
    qd_status st = QD_OK;
    const char *opath = a->output ? a->output : "stdout";
    while (st == QD_OK && (n = getline(&line, &lcap, in)) >= 0) {
        lineno++;
        const char *l = line;
        if (lineno == 1 && n >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) { l += 3; n -= 3; } /* UTF-8 BOM */
        if (blank(l, (size_t)n)) continue;
        if (a->decode) st = decode_line(tok, a, l, (size_t)n, lineno, &ids, out);
        else {
            st = encode_line(tok, a, l, (size_t)n, lineno, &ids);
            if (st == QD_OK) st = write_ids(out, opath, &ids, &buf, &bcap);
        }
    }
    if (st == QD_OK && ferror(in)) st = qd_fail(QD_ERR_IO, "%s: read failed: %s", a->input, strerror(errno));
    free(line);
    free(buf);
    qd_ids_free(&ids);
    qd_tokenizer_free(tok);
    return st;
}

static qd_status calib_preview(const tok_args *a, FILE *out) {
    qd_calib_opts o = {a->calib, a->model, a->nsamples, a->seqlen, (uint64_t)a->seed,
                       strcmp(a->calib_mode, "concat") == 0 ? QD_CALIB_CONCAT : QD_CALIB_RANDOM, QD_CHAT_AUTO};
    qd_chat_template_parse(a->chat_template, &o.chat);
    qd_tokenizer *tok;
    QD_CHECK(qd_tokenizer_load(a->model, &tok));
    qd_calib_set set;
    qd_status st = qd_calib_load(&o, tok, &set);
    qd_tokenizer_free(tok);
    QD_CHECK(st);
    fprintf(out, "{\"nseq\": %d, \"seqlen\": %d, \"sha256\": \"%s\", \"skipped_lines\": %ld, "
            "\"first_skipped_line\": %ld, \"docs_read\": %ld, \"docs_eligible\": %ld, \"tokens_read\": %llu, "
            "\"chat_template\": \"%s\", \"ids\": [", set.nseq, set.seqlen, set.sha256_hex, set.skipped_lines,
            set.first_skipped_line, set.docs_read, set.docs_eligible, (unsigned long long)set.tokens_read,
            qd_chat_template_name(set.chat));
    for (int r = 0; r < set.nseq; r++) {
        fputs(r ? ",\n[" : "\n[", out);
        for (int c = 0; c < set.seqlen; c++) fprintf(out, c ? ",%d" : "%d", set.ids[(size_t)r * set.seqlen + c]);
        fputc(']', out);
    }
    fputs("]}\n", out);
    qd_calib_free(&set);
    return QD_OK;
}

/* --output must be none of the files it is made from (same device and inode: links count), nor inside
 * the model directory */
static qd_status check_output(const tok_args *a) {
    if (!a->output) return QD_OK;
    if (a->input && strcmp(a->input, "-") != 0 && qd_same_file(a->input, a->output))
        return qd_fail(QD_ERR_USAGE, "tokenize: --output %s is the same file as --input %s: it would be emptied before "
                       "it is read; write somewhere else", a->output, a->input);
    if (a->calib && qd_same_file(a->calib, a->output))
        return qd_fail(QD_ERR_USAGE, "tokenize: --output %s is the same file as --calib %s: it would be emptied before "
                       "it is read; write somewhere else", a->output, a->calib);
    return qd_paths_disjoint("--output", a->output, "--model", a->model);
}

/* Where --output goes. A regular file (or a new name) is written to FINAL.qdist-tmp-<pid> beside it
 * and renamed into place only on success; a symlink to one is followed, so the link stays a link.
 * Something else that exists (/dev/stdout, a FIFO) is written in place: it cannot be replaced. */
typedef struct {
    FILE *f;
    char final[PATH_MAX];
    char tmp[PATH_MAX + 32]; /* "" when written in place */
} out_file;

static qd_status open_output(const tok_args *a, out_file *o) {
    o->f = stdout;
    o->final[0] = o->tmp[0] = '\0';
    if (!a->output) return QD_OK;
    struct stat st;
    if (stat(a->output, &st) == 0 && !S_ISREG(st.st_mode)) {
        o->f = fopen(a->output, "wb");
        if (!o->f) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", a->output, strerror(errno));
        return QD_OK;
    }
    int n = snprintf(o->final, sizeof o->final, "%s", a->output);
    if (n >= 0 && (size_t)n < sizeof o->final && stat(a->output, &st) == 0 && !realpath(a->output, o->final))
        return qd_fail(QD_ERR_IO, "%s: cannot resolve: %s", a->output, strerror(errno));
    if (n < 0 || (size_t)n >= sizeof o->final ||
        snprintf(o->tmp, sizeof o->tmp, "%s.qdist-tmp-%ld", o->final, (long)getpid()) >= (int)sizeof o->tmp)
        return qd_fail(QD_ERR_USAGE, "tokenize: --output %s: path too long", a->output);
    o->f = fopen(o->tmp, "wbx");
    if (!o->f) {
        qd_status r = qd_fail(QD_ERR_IO, "%s: cannot create: %s", o->tmp, strerror(errno));
        o->tmp[0] = '\0';
        return r;
    }
    return QD_OK;
}

static qd_status close_output(const tok_args *a, out_file *o, qd_status st) {
    const char *name = a->output ? a->output : "stdout";
    if (fflush(o->f) != 0 && st == QD_OK) st = qd_fail(QD_ERR_IO, "%s: write failed: %s", name, strerror(errno));
    if (o->f == stdout) return st;
    if (!o->tmp[0]) {
        if (fclose(o->f) != 0 && st == QD_OK) st = qd_fail(QD_ERR_IO, "%s: close failed: %s", name, strerror(errno));
        return st;
    }
    if (st == QD_OK && fsync(fileno(o->f)) != 0) st = qd_fail(QD_ERR_IO, "%s: fsync failed: %s", o->tmp, strerror(errno));
    if (fclose(o->f) != 0 && st == QD_OK) st = qd_fail(QD_ERR_IO, "%s: close failed: %s", o->tmp, strerror(errno));
    if (st == QD_OK && rename(o->tmp, o->final) != 0)
        st = qd_fail(QD_ERR_IO, "%s: rename of %s into place failed: %s", o->final, o->tmp, strerror(errno));
    if (st != QD_OK) unlink(o->tmp); /* nothing partial is left under either name */
    return st;
}

qd_status qd_cmd_tokenize(int argc, char **argv) {
    tok_args a = {0};
    a.calib_mode = "random";
    a.chat_template = "auto";
    a.nsamples = 128;
    a.seqlen = 2048;
    const qd_opt opts[] = {
        {"model", QD_OPT_STR, &a.model, "DIR", "model directory holding tokenizer.json (or the file itself)", NULL, NULL},
        {"input", QD_OPT_STR, &a.input, "FILE", "JSONL input: {\"text\": ...} lines, or id arrays with --decode", NULL, NULL},
        {"output", QD_OPT_STR, &a.output, "FILE", "where to write (default: standard output)", NULL, NULL},
        {"decode", QD_OPT_FLAG, &a.decode, NULL, "read arrays of ids and write {\"text\": ...} lines", NULL, NULL},
        {"no-special", QD_OPT_FLAG, &a.no_special, NULL, "encode without the post-processor's BOS/EOS", NULL, NULL},
        {"keep-special", QD_OPT_FLAG, &a.keep_special, NULL, "with --decode: keep special tokens in the text", NULL, NULL},
        {"calib", QD_OPT_STR, &a.calib, "FILE", "preview the calibration set drawn from FILE (JSON to --output)", NULL, NULL},
        {"nsamples", QD_OPT_INT, &a.nsamples, "N", "with --calib: sequences (default 128)", "1..1000000", NULL},
        {"seqlen", QD_OPT_INT, &a.seqlen, "N", "with --calib: tokens per sequence (default 2048)", "1..1000000", NULL},
        {"seed", QD_OPT_INT, &a.seed, "N", "with --calib: sampling seed (default 0)", QD_RANGE_SEED, NULL},
        {"calib-mode", QD_OPT_CHOICE, &a.calib_mode, "MODE", "with --calib: random windows (GPTQ) or concat (AWQ)",
         "random|concat", NULL},
        {"chat-template", QD_OPT_CHOICE, &a.chat_template, "NAME",
         "with --calib: template for \"messages\" lines (default: from tokenizer_config.json)",
         "auto|none|chatml|llama3|llama2", NULL},
    };
    const char *pos_names[] = {NULL};
    const char *pos[1] = {NULL};
    qd_cmd_spec spec = {"tokenize", "--model DIR --input FILE.jsonl [--output FILE] [--decode] [--no-special]",
                        "encode JSONL text with the model's tokenizer.json (or decode)", opts,
                        (int)(sizeof opts / sizeof opts[0]), pos_names, pos, 0};
    int help = 0;
    QD_CHECK(qd_args_parse(&spec, argc, argv, &help));
    if (help) return QD_OK;
    if (!a.model) return qd_fail(QD_ERR_USAGE, "tokenize: --model DIR is required");
    QD_CHECK(check_output(&a));
    out_file out;
    if (a.calib) {
        QD_CHECK(open_output(&a, &out));
        return close_output(&a, &out, calib_preview(&a, out.f));
    }
    if (!a.input) return qd_fail(QD_ERR_USAGE, "tokenize: --input FILE (or --calib FILE) is required");
    FILE *in = strcmp(a.input, "-") == 0 ? stdin : fopen(a.input, "rb");
    if (!in) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", a.input, strerror(errno));
    qd_status st = open_output(&a, &out);
    if (st != QD_OK) {
        if (in != stdin) fclose(in);
        return st;
    }
    st = run(&a, in, out.f);
    if (in != stdin) fclose(in);
    return close_output(&a, &out, st);
}
