/* SPDX-License-Identifier: MIT
 * Built-in chat templates, the text transformers' apply_chat_template renders for a conversation
 * without a generation prompt, for the three families calibration files meet:
 *   ChatML:  <|im_start|>{role}\n{content}<|im_end|>\n  per message (no default system prompt);
 *   Llama-3: {bos} (<|begin_of_text|>) then <|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}<|eot_id|>;
 *   Llama-2: {bos}[INST] {<<SYS>>\n{system}\n<</SYS>>\n\n}{user.strip()} [/INST] {assistant.strip()} {eos} ...
 * {bos} and {eos} are tokenizer_config.json's bos_token / eos_token, as in the templates.
 * Detection looks for each family's marker tokens in tokenizer_config.json's chat_template (Llama-2: [INST]
 * and <<SYS>>). A ChatML
 * template that writes a fixed system message when there is none (Qwen2/2.5) has that text rendered too,
 * as the template would; no Jinja is evaluated, the literal is found by its shape. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "calib-internal.h"
#include "qd-check.h"

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static qd_status put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return qd_fail(QD_ERR_NOMEM, "calib: out of memory rendering a chat");
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return QD_OK;
}
static qd_status puts_(sbuf *b, const char *s) { return put(b, s, strlen(s)); }

/* Python's str.strip(): ASCII white space is what chat contents carry in practice */
static qd_status put_stripped(sbuf *b, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && strchr(" \t\n\r\f\v", s[a])) a++;
    while (n > a && strchr(" \t\n\r\f\v", s[n - 1])) n--;
    return put(b, s + a, n - a);
}

qd_chat_template qd_chat_detect(const char *j) {
    if (!j) return QD_CHAT_NONE;
    if (strstr(j, "<|start_header_id|>")) return QD_CHAT_LLAMA3;
    if (strstr(j, "<|im_start|>")) return QD_CHAT_CHATML;
    /* Mistral's templates carry [INST] too but space and place BOS/EOS differently: Llama-2 only with its
     * <<SYS>> block, so a Mistral model is refused (naming --chat-template) rather than rendered wrong */
    if (strstr(j, "[INST]") && strstr(j, "<<SYS>>")) return QD_CHAT_LLAMA2;
    return QD_CHAT_NONE;
}

qd_status qd_chat_default_system(const char *j, char **out) {
    *out = NULL;
    static const char *const heads[] = {"'<|im_start|>system\\n", "\"<|im_start|>system\\n",
                                        "'<|im_start|>system\n", "\"<|im_start|>system\n"};
    for (const char *p = j; p && *p; p++)
        for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
            size_t hl = strlen(heads[h]);
            if (strncmp(p, heads[h], hl) != 0) continue;
            const char *t = p + hl, *end = strstr(t, "<|im_end|>");
            if (!end || end == t) continue;
            /* the literal's own text only: no quote, escape, expression or tag before <|im_end|> */
            if (strcspn(t, "'\"\\{}<+") < (size_t)(end - t)) continue;
            char *s = malloc((size_t)(end - t) + 1);
            if (!s) return qd_fail(QD_ERR_NOMEM, "calib: out of memory reading the chat template");
            memcpy(s, t, (size_t)(end - t));
            s[end - t] = 0;
            *out = s;
            return QD_OK;
        }
    return QD_OK;
}

const char *qd_chat_template_name(qd_chat_template t) {
    static const char *const names[] = {"auto", "none", "chatml", "llama3", "llama2"};
    return (unsigned)t < 5 ? names[t] : "?";
}

int qd_chat_template_parse(const char *name, qd_chat_template *out) {
    for (int t = QD_CHAT_AUTO; t <= QD_CHAT_LLAMA2; t++)
        if (strcmp(name, qd_chat_template_name((qd_chat_template)t)) == 0) {
            *out = (qd_chat_template)t;
            return 0;
        }
    return -1;
}

static qd_status message(const cJSON *m, const char *where, int idx, const char **role, const char **content) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsString(r) || !cJSON_IsString(c))
        return qd_fail(QD_ERR_FORMAT, "%s: messages[%d]: expected {\"role\": string, \"content\": string}", where, idx);
    *role = r->valuestring;
    *content = c->valuestring;
    return QD_OK;
}

static qd_status render(qd_chat_template t, const cJSON *msgs, const char *bos, const char *eos,
                        const char *default_system, const char *where, sbuf *b) {
    int n = cJSON_GetArraySize(msgs), i = 0;
    const char *role = NULL, *content = NULL;
    if (t == QD_CHAT_CHATML && default_system) {
        if (n > 0) QD_CHECK(message(cJSON_GetArrayItem(msgs, 0), where, 0, &role, &content));
        if (n == 0 || strcmp(role, "system") != 0) {
            QD_CHECK(puts_(b, "<|im_start|>system\n"));
            QD_CHECK(puts_(b, default_system));
            QD_CHECK(puts_(b, "<|im_end|>\n"));
        }
    }
    if (t == QD_CHAT_LLAMA3) QD_CHECK(puts_(b, bos ? bos : "<|begin_of_text|>"));
    const char *system = NULL;
    if (t == QD_CHAT_LLAMA2 && n > 0) {
        QD_CHECK(message(cJSON_GetArrayItem(msgs, 0), where, 0, &role, &content));
        if (strcmp(role, "system") == 0) { system = content; i = 1; }
    }
    int first = 1;
    for (; i < n; i++) {
        QD_CHECK(message(cJSON_GetArrayItem(msgs, i), where, i, &role, &content));
        switch (t) {
        case QD_CHAT_CHATML:
            QD_CHECK(puts_(b, "<|im_start|>"));
            QD_CHECK(puts_(b, role));
            QD_CHECK(puts_(b, "\n"));
            QD_CHECK(puts_(b, content));
            QD_CHECK(puts_(b, "<|im_end|>\n"));
            break;
        case QD_CHAT_LLAMA3:
            QD_CHECK(puts_(b, "<|start_header_id|>"));
            QD_CHECK(puts_(b, role));
            QD_CHECK(puts_(b, "<|end_header_id|>\n\n"));
            QD_CHECK(put_stripped(b, content));
            QD_CHECK(puts_(b, "<|eot_id|>"));
            break;
        case QD_CHAT_LLAMA2:
            if (strcmp(role, "user") == 0) {
                QD_CHECK(puts_(b, bos ? bos : "<s>"));
                QD_CHECK(puts_(b, "[INST] "));
                if (first && system) {
                    sbuf tmp = {0};
                    qd_status st = puts_(&tmp, "<<SYS>>\n");
                    if (st == QD_OK) st = puts_(&tmp, system);
                    if (st == QD_OK) st = puts_(&tmp, "\n<</SYS>>\n\n");
                    if (st == QD_OK) st = puts_(&tmp, content);
                    if (st == QD_OK) st = put_stripped(b, tmp.s);
                    free(tmp.s);
                    QD_CHECK(st);
                } else
                    QD_CHECK(put_stripped(b, content));
                QD_CHECK(puts_(b, " [/INST]"));
            } else if (strcmp(role, "assistant") == 0) {
                QD_CHECK(puts_(b, " "));
                QD_CHECK(put_stripped(b, content));
                QD_CHECK(puts_(b, " "));
                QD_CHECK(puts_(b, eos ? eos : "</s>"));
            } else
                return qd_fail(QD_ERR_FORMAT, "%s: messages[%d]: role '%s' has no place in the Llama-2 template "
                               "(user/assistant after an optional first system message)", where, i, role);
            break;
        default: /* NONE: the contents, one per line */
            if (!first) QD_CHECK(puts_(b, "\n"));
            QD_CHECK(puts_(b, content));
            break;
        }
        first = 0;
    }
    return QD_OK;
}

qd_status qd_chat_render(qd_chat_template t, const cJSON *msgs, const char *bos, const char *eos,
                         const char *default_system, const char *where, char **out, size_t *len) {
    if (!cJSON_IsArray(msgs)) return qd_fail(QD_ERR_FORMAT, "%s: \"messages\" must be an array", where);
    sbuf b = {0};
    qd_status st = puts_(&b, "");
    if (st == QD_OK) st = render(t, msgs, bos, eos, default_system, where, &b);
    if (st != QD_OK) {
        free(b.s);
        return st;
    }
    *out = b.s;
    *len = b.n;
    return QD_OK;
}
