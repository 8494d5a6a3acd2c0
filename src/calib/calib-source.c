/* SPDX-License-Identifier: MIT
 * The document reader: streams a calibration file and returns one tokenised document at a time.
 * .jsonl lines are {"text"}, {"messages"} or [ids]; anything else in a .jsonl is a malformed line,
 * skipped and counted. Other files are plain text, handed out in ~1 MiB pieces cut at line ends. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "calib-internal.h"
#include "qd-check.h"
#include "qd-fs.h"
#include "qd-json.h"

enum { TXT_PIECE = 1 << 20, SNIFF = 4096, IN_BUF = 1 << 16 };

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* bos/eos tokens and chat_template from tokenizer_config.json (strings or {"content": ...}) */
static char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

/* the types transformers gives these fields: a token is null, a string or an AddedToken {"content": string};
 * chat_template null, a string or a list of {"name", "template"} strings. Another type would be read as absent. */
static qd_status config_types(const char *path, const cJSON *cfg) {
    static const char *const tokens[] = {"bos_token", "eos_token"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, tokens[i]);
        const char *s;
        if (cJSON_IsObject(v)) QD_CHECK(qd_json_str((qd_json_at){path, tokens[i]}, v, "content", 1, &s));
        else if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
            return qd_json_bad((qd_json_at){path, ""}, tokens[i], v, "null, a string or {\"content\": a string}");
    }
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;
    if (tpl && !cJSON_IsNull(tpl) && !cJSON_IsString(tpl) && !cJSON_IsArray(tpl))
        return qd_json_bad((qd_json_at){path, ""}, "chat_template", tpl,
                           "a string or a list of {\"name\", \"template\"}");
    const cJSON *list = cJSON_IsArray(tpl) ? tpl : NULL;
    int i = 0;
    cJSON_ArrayForEach(e, list) {
        char obj[40];
        const char *s;
        snprintf(obj, sizeof obj, "chat_template[%d]", i++);
        QD_CHECK(qd_json_str((qd_json_at){path, obj}, e, "name", 1, &s));
        QD_CHECK(qd_json_str((qd_json_at){path, obj}, e, "template", 1, &s));
    }
    return QD_OK;
}

static qd_status resolve_chat(qd_doc_reader *r) {
    r->chat_resolved = 1;
    r->chat = r->opts->chat;
    char path[4096];
    cJSON *cfg = NULL;
    if (r->opts->model_dir && qd_path_join(path, sizeof path, r->opts->model_dir, "tokenizer_config.json") == QD_OK &&
        qd_path_exists(path)) {
        char *text;
        size_t len;
        QD_CHECK(qd_read_file(path, 64u << 20, &text, &len));
        qd_status st = qd_json_parse(text, len, path, &cfg);
        free(text);
        if (st == QD_OK && !cJSON_IsObject(cfg)) st = qd_fail(QD_ERR_FORMAT, "%s: not a JSON object", path);
        if (st == QD_OK) st = config_types(path, cfg);
        if (st != QD_OK) {
            cJSON_Delete(cfg);
            return st;
        }
        r->bos = config_token(cfg, "bos_token");
        r->eos = config_token(cfg, "eos_token");
    } else
        snprintf(path, sizeof path, "%s/tokenizer_config.json", r->opts->model_dir ? r->opts->model_dir : "(no model)");
    if (r->chat == QD_CHAT_AUTO) {
        const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;
        const char *jinja = cJSON_IsString(tpl) ? tpl->valuestring : NULL;
        const cJSON *list = cJSON_IsArray(tpl) ? tpl : NULL;
        cJSON_ArrayForEach(e, list) { /* [{name, template}]: the "default" one */
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name"), *tt = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && strcmp(nm->valuestring, "default") == 0 && cJSON_IsString(tt)) jinja = tt->valuestring;
        }
        /* transformers >= 4.47 saves the template beside the config as chat_template.jinja */
        char jpath[4096], *jtext = NULL;
        size_t jlen;
        if (!jinja && r->opts->model_dir &&
            qd_path_join(jpath, sizeof jpath, r->opts->model_dir, "chat_template.jinja") == QD_OK &&
            qd_path_exists(jpath)) {
            qd_status st = qd_read_file(jpath, 16u << 20, &jtext, &jlen);
            if (st != QD_OK) {
                cJSON_Delete(cfg);
                return st;
            }
            jinja = jtext;
        }
        r->chat = qd_chat_detect(jinja);
        /* only a template read from the model: an explicit --chat-template chatml is plain ChatML */
        if (r->chat == QD_CHAT_CHATML) {
            qd_status st = qd_chat_default_system(jinja, &r->default_system);
            if (st != QD_OK) {
                free(jtext);
                cJSON_Delete(cfg);
                return st;
            }
        }
        if (r->chat == QD_CHAT_NONE) {
            free(jtext);
            cJSON_Delete(cfg);
            return qd_fail(QD_ERR_UNSUPPORTED,
                           "%s:%ld: the file has \"messages\" but %s %s; pass --chat-template "
                           "chatml|llama3|llama2 (or none to join the contents)", r->opts->path, r->lineno, path,
                           jinja ? "has a chat_template that matches none of ChatML, Llama-3, Llama-2"
                                 : "has no chat_template (nor chat_template.jinja beside it)");
        }
        free(jtext);
    }
    cJSON_Delete(cfg);
    return QD_OK;
}

/* the format from the name when it says one: 1 JSONL, 0 text, -1 the name says nothing */
static int format_by_name(const char *path) {
    static const char *const jsonl[] = {".jsonl", ".json"}, *const text[] = {".txt", ".text", ".raw", ".md"};
    for (size_t i = 0; i < sizeof jsonl / sizeof *jsonl; i++)
        if (ends_with(path, jsonl[i])) return 1;
    for (size_t i = 0; i < sizeof text / sizeof *text; i++)
        if (ends_with(path, text[i])) return 0;
    return -1;
}

/* refill the read buffer; at the end of the file in_eof is set, a read error is reported */
static qd_status fill(qd_doc_reader *r) {
    r->in_pos = 0;
    r->in_len = fread(r->in, 1, IN_BUF, r->f);
    if (r->in_len < IN_BUF) {
        if (ferror(r->f)) return qd_fail(QD_ERR_IO, "%s: read failed: %s", r->opts->path, strerror(errno));
        if (r->in_len == 0) r->in_eof = 1;
    }
    return QD_OK;
}

qd_status qd_doc_reader_open(qd_doc_reader *r, const qd_calib_opts *o, qd_tokenizer *tok) {
    memset(r, 0, sizeof *r);
    r->opts = o;
    r->tok = tok;
    if (qd_is_dir(o->path)) return qd_fail(QD_ERR_IO, "%s: is a directory, expected a .jsonl or text file", o->path);
    r->f = fopen(o->path, "rb");
    if (!r->f) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", o->path, strerror(errno));
    r->in = malloc(IN_BUF);
    if (!r->in) {
        qd_doc_reader_close(r);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory for the read buffer", o->path);
    }
    /* the sniffed head stays in the buffer and is read from there: nothing is re-read (a pipe cannot be) */
    qd_status st = fill(r);
    if (st != QD_OK) {
        qd_doc_reader_close(r);
        return st;
    }
    size_t n = r->in_len < SNIFF ? r->in_len : SNIFF;
    if (n == 0) {
        qd_doc_reader_close(r);
        return qd_fail(QD_ERR_FORMAT, "%s: the file is empty", o->path);
    }
    const unsigned char *nul = memchr(r->in, 0, n);
    if (nul) {
        ptrdiff_t at = nul - r->in; /* before the close frees r->in */
        qd_doc_reader_close(r);
        return qd_fail(QD_ERR_FORMAT, "%s: looks binary (NUL byte at offset %td); expected UTF-8 text or JSONL",
                       o->path, at);
    }
    r->jsonl = format_by_name(o->path);
    if (r->jsonl < 0) {
        size_t i = n >= 3 && memcmp(r->in, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
        while (i < n && strchr(" \t\r\n", r->in[i])) i++;
        r->jsonl = i < n && (r->in[i] == '{' || r->in[i] == '[');
    }
    return QD_OK;
}

void qd_doc_reader_close(qd_doc_reader *r) {
    if (r->f) fclose(r->f);
    free(r->in);
    free(r->line);
    free(r->txt_buf);
    free(r->bos);
    free(r->eos);
    free(r->default_system);
    memset(r, 0, sizeof *r);
}

/* the next line into r->line (with its '\n' when it has one, as getline), *n its length; *n < 0 at
 * the end of the file. A line longer than QD_CALIB_MAX_LINE_BYTES is refused as soon as that many bytes
 * are read: it is never held whole. */
static qd_status read_line(qd_doc_reader *r, ssize_t *n) {
    size_t len = 0;
    int any = 0;
    for (;;) {
        if (r->in_pos == r->in_len) {
            if (r->in_eof) break;
            QD_CHECK(fill(r));
            if (r->in_eof) break;
        }
        any = 1;
        const unsigned char *from = r->in + r->in_pos;
        size_t avail = r->in_len - r->in_pos;
        const unsigned char *nl = memchr(from, '\n', avail);
        size_t take = nl ? (size_t)(nl - from) : avail;
        if (len + take > QD_CALIB_MAX_LINE_BYTES)
            return qd_fail(QD_ERR_FORMAT, "%s:%ld: line longer than %zu MiB, the cap on one calibration line or "
                           "document (QD_CALIB_MAX_LINE_BYTES); split it into smaller documents", r->opts->path,
                           r->lineno + 1, QD_CALIB_MAX_LINE_BYTES >> 20);
        if (nl) take++; /* the '\n' is kept, not counted against the cap */
        if (len + take + 1 > r->line_cap) {
            size_t cap = r->line_cap ? r->line_cap : 4096;
            while (cap < len + take + 1) cap *= 2;
            char *p = realloc(r->line, cap);
            if (!p) return qd_fail(QD_ERR_NOMEM, "%s: out of memory reading line %ld", r->opts->path, r->lineno + 1);
            r->line = p;
            r->line_cap = cap;
        }
        memcpy(r->line + len, from, take);
        len += take;
        r->in_pos += take;
        if (nl) break;
    }
    if (!any) {
        *n = -1;
        return QD_OK;
    }
    r->line[len] = 0;
    *n = (ssize_t)len;
    return QD_OK;
}

static void skip_line(qd_doc_reader *r) {
    if (!r->skipped) r->first_skipped = r->lineno;
    r->skipped++;
}

/* silent shape check, so a malformed conversation is a skipped line rather than an error */
static int messages_ok(const cJSON *msgs, qd_chat_template t) {
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) return 0;
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "content"))) return 0;
        if (t == QD_CHAT_LLAMA2 && strcmp(role->valuestring, "user") != 0 &&
            strcmp(role->valuestring, "assistant") != 0 && !(i == 0 && strcmp(role->valuestring, "system") == 0))
            return 0;
        i++;
    }
    return 1;
}

static qd_status jsonl_line(qd_doc_reader *r, const char *line, size_t n, qd_ids *ids, int *got) {
    cJSON *j = cJSON_ParseWithLength(line, n);
    qd_status st = QD_OK;
    int32_t vocab = qd_tokenizer_vocab_size(r->tok);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    if (cJSON_IsString(text)) {
        st = qd_tokenizer_encode(r->tok, text->valuestring, strlen(text->valuestring), 1, ids);
        *got = 1;
    } else if (msgs) {
        /* shape first: a malformed line is skipped whether or not a template can be found */
        if (messages_ok(msgs, QD_CHAT_NONE) && !r->chat_resolved) st = resolve_chat(r);
        if (st == QD_OK && r->chat_resolved && messages_ok(msgs, r->chat)) {
            char *s;
            size_t len;
            char where[64];
            snprintf(where, sizeof where, "line %ld", r->lineno);
            st = qd_chat_render(r->chat, msgs, r->bos, r->eos, r->default_system, where, &s, &len);
            if (st == QD_OK) {
                /* the rendered text holds its BOS already (apply_chat_template does the same) */
                st = qd_tokenizer_encode(r->tok, s, len, r->chat == QD_CHAT_NONE, ids);
                free(s);
                *got = 1;
            }
        } else if (st == QD_OK)
            skip_line(r);
    } else if (cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0) {
        const cJSON *e;
        int ok = 1;
        cJSON_ArrayForEach(e, j) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= vocab ||
                e->valuedouble != (double)(int32_t)e->valuedouble) { ok = 0; break; }
        }
        if (ok) {
            cJSON_ArrayForEach(e, j) if ((st = qd_ids_push(ids, (int32_t)e->valuedouble)) != QD_OK) break;
            *got = 1;
        } else
            skip_line(r);
    } else
        skip_line(r);
    cJSON_Delete(j);
    return st;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i])) return 0;
    return 1;
}

qd_status qd_doc_reader_next(qd_doc_reader *r, qd_ids *ids, int *got) {
    ids->n = 0;
    *got = 0;
    while (!*got && !r->eof) {
        ssize_t n = -1;
        QD_CHECK(read_line(r, &n));
        if (n < 0) {
            r->eof = 1;
            break;
        }
        r->lineno++;
        if (memchr(r->line, 0, (size_t)n))
            return qd_fail(QD_ERR_FORMAT, "%s:%ld: NUL byte: the file looks binary", r->opts->path, r->lineno);
        if (r->jsonl) {
            const char *l = r->line;
            if (r->lineno == 1 && n >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) { l += 3; n -= 3; } /* UTF-8 BOM */
            if (blank(l, (size_t)n)) continue;
            QD_CHECK(jsonl_line(r, l, (size_t)n, ids, got));
            continue;
        }
        if (r->txt_len + (size_t)n + 1 > r->txt_cap) {
            size_t cap = r->txt_cap ? r->txt_cap : TXT_PIECE * 2;
            while (cap < r->txt_len + (size_t)n + 1) cap *= 2;
            char *p = realloc(r->txt_buf, cap);
            if (!p) return qd_fail(QD_ERR_NOMEM, "%s: out of memory reading line %ld", r->opts->path, r->lineno);
            r->txt_buf = p;
            r->txt_cap = cap;
        }
        memcpy(r->txt_buf + r->txt_len, r->line, (size_t)n);
        r->txt_len += (size_t)n;
        if (r->txt_len >= TXT_PIECE) {
            QD_CHECK(qd_tokenizer_encode(r->tok, r->txt_buf, r->txt_len, 1, ids));
            r->txt_len = 0;
            *got = 1;
        }
    }
    if (!*got && r->eof && !r->jsonl && r->txt_len) {
        if (!blank(r->txt_buf, r->txt_len)) {
            QD_CHECK(qd_tokenizer_encode(r->tok, r->txt_buf, r->txt_len, 1, ids));
            *got = 1;
        }
        r->txt_len = 0;
    }
    return QD_OK;
}
