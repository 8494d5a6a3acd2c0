/* SPDX-License-Identifier: MIT
 * The calibration sampler: determinism for a seed, uniform coverage of documents and offsets
 * (chi-square with a fixed seed), concat mode, and each kind of bad input. Uses a tiny
 * character-level tokenizer.json written here and pre-tokenised JSONL, so no fixture is needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd-calib.h"
#include "qd-log.h"
#include "qd-test.h"

static char dir[256];

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *name, const char *text, size_t n) {
    FILE *f = fopen(path_in(name), "wb");
    fwrite(text, 1, n, f);
    fclose(f);
}

/* vocab: 'a'..'z' -> 0..25, ' ' -> 26, "<s>" -> 27 added by the template */
static qd_tokenizer *tiny_tokenizer(const char *config_chat_template) {
    char json[4096];
    int n = snprintf(json, sizeof json, "{\"added_tokens\": [{\"id\": 27, \"content\": \"<s>\", \"special\": true, "
                                          "\"normalized\": false}], \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int c = 0; c < 26; c++) n += snprintf(json + n, sizeof json - n, "\"%c\": %d, ", 'a' + c, c);
    n += snprintf(json + n, sizeof json - n, "\" \": 26, \"<s>\": 27}, \"merges\": []}, \"post_processor\": "
                  "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, "
                  "{\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"ids\": [27]}}}}");
    write_file("tokenizer.json", json, (size_t)n);
    if (config_chat_template) {
        char cfg[1024];
        int m = snprintf(cfg, sizeof cfg, "{\"bos_token\": \"<s>\", \"chat_template\": \"%s\"}", config_chat_template);
        write_file("tokenizer_config.json", cfg, (size_t)m);
    } else
        unlink(path_in("tokenizer_config.json"));
    qd_tokenizer *t = NULL;
    if (qd_tokenizer_load(dir, &t) != QD_OK) return NULL;
    return t;
}

/* ndocs documents; document d is `len` copies of token d % 27 ... or 0..len-1 when ramp */
static void write_ids_file(const char *name, int ndocs, int len, int ramp) {
    FILE *f = fopen(path_in(name), "w");
    for (int d = 0; d < ndocs; d++) {
        fputc('[', f);
        for (int i = 0; i < len; i++) fprintf(f, i ? ",%d" : "%d", ramp ? i % 27 : d % 27);
        fputs("]\n", f);
    }
    fclose(f);
}

static qd_status load(qd_tokenizer *t, const char *name, int nsamples, int seqlen, uint64_t seed, qd_calib_mode mode,
                      qd_calib_set *set) {
    qd_calib_opts o = {path_in(name), dir, nsamples, seqlen, seed, mode, QD_CHAT_AUTO};
    return qd_calib_load(&o, t, set);
}

static void test_determinism(void) {
    qd_tokenizer *t = tiny_tokenizer(NULL);
    QD_EXPECT(t != NULL);
    if (!t) return;
    FILE *f = fopen(path_in("mixed.jsonl"), "w");
    for (int d = 0; d < 300; d++) {
        fprintf(f, "[");
        for (int i = 0; i < 20 + d % 17; i++) fprintf(f, i ? ",%d" : "%d", (d * 7 + i * 3) % 27);
        fprintf(f, "]\n");
    }
    fclose(f);
    for (int mode = 0; mode < 2; mode++) {
        qd_calib_set a, b, c;
        QD_EXPECT_EQ_INT(load(t, "mixed.jsonl", 16, 12, 1, (qd_calib_mode)mode, &a), QD_OK);
        QD_EXPECT_EQ_INT(load(t, "mixed.jsonl", 16, 12, 1, (qd_calib_mode)mode, &b), QD_OK);
        QD_EXPECT_EQ_INT(load(t, "mixed.jsonl", 16, 12, 2, (qd_calib_mode)mode, &c), QD_OK);
        if (a.ids && b.ids && c.ids) {
            QD_EXPECT(memcmp(a.ids, b.ids, 16 * 12 * sizeof(int32_t)) == 0);
            QD_EXPECT(strcmp(a.sha256_hex, b.sha256_hex) == 0);
            QD_EXPECT(strcmp(a.sha256_hex, c.sha256_hex) != 0);
            QD_EXPECT(memcmp(a.ids, c.ids, 16 * 12 * sizeof(int32_t)) != 0);
            QD_EXPECT_EQ_INT(strlen(a.sha256_hex), 64);
        }
        qd_calib_free(&a);
        qd_calib_free(&b);
        qd_calib_free(&c);
    }
    qd_tokenizer_free(t);
}

/* chi-square statistic of counts against a uniform expectation */
static double chi2(const long *counts, int k, long total) {
    double e = (double)total / k, s = 0;
    for (int i = 0; i < k; i++) s += (counts[i] - e) * (counts[i] - e) / e;
    return s;
}

static void test_uniform_documents_and_offsets(void) {
    qd_tokenizer *t = tiny_tokenizer(NULL);
    if (!t) return;
    /* 27 documents of 5 tokens, each all one id: a window tells which document it came from */
    write_ids_file("docs.jsonl", 27, 5, 0);
    qd_calib_set s;
    QD_EXPECT_EQ_INT(load(t, "docs.jsonl", 27000, 1, 7, QD_CALIB_RANDOM, &s), QD_OK);
    long counts[27] = {0};
    for (int i = 0; s.ids && i < s.nseq; i++) counts[s.ids[i]]++;
    /* 26 degrees of freedom: P(chi2 > 54.05) = 0.001 */
    double x = chi2(counts, 27, 27000);
    fprintf(stderr, "documents: chi2 = %.1f (26 dof)\n", x);
    QD_EXPECT(x < 54.05);
    qd_calib_free(&s);
    /* one document of 27 tokens 0..26: the window offset is uniform */
    write_ids_file("ramp.jsonl", 1, 27, 1);
    QD_EXPECT_EQ_INT(load(t, "ramp.jsonl", 27000, 1, 9, QD_CALIB_RANDOM, &s), QD_OK);
    memset(counts, 0, sizeof counts);
    for (int i = 0; s.ids && i < s.nseq; i++) counts[s.ids[i]]++;
    x = chi2(counts, 27, 27000);
    fprintf(stderr, "offsets: chi2 = %.1f (26 dof)\n", x);
    QD_EXPECT(x < 54.05);
    qd_calib_free(&s);
    /* a window never crosses a document's end: seqlen 5 windows of constant documents are constant */
    QD_EXPECT_EQ_INT(load(t, "docs.jsonl", 500, 5, 3, QD_CALIB_RANDOM, &s), QD_OK);
    int mixed = 0;
    for (int i = 0; s.ids && i < s.nseq; i++)
        for (int j = 1; j < 5; j++) mixed += s.ids[i * 5 + j] != s.ids[i * 5];
    QD_EXPECT_EQ_INT(mixed, 0);
    qd_calib_free(&s);
    /* concat: 27 documents in a random order, each appearing once, whole */
    QD_EXPECT_EQ_INT(load(t, "docs.jsonl", 27, 5, 3, QD_CALIB_CONCAT, &s), QD_OK);
    long seen[27] = {0};
    int inorder = 1;
    for (int i = 0; s.ids && i < 27; i++) {
        seen[s.ids[i * 5]]++;
        inorder &= s.ids[i * 5] == i;
    }
    for (int i = 0; i < 27; i++) QD_EXPECT_EQ_INT(seen[i], 1);
    QD_EXPECT(!inorder);
    qd_calib_free(&s);
    qd_tokenizer_free(t);
}

static void test_text_and_chat(void) {
    qd_tokenizer *t = tiny_tokenizer("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}");
    if (!t) return;
    const char *lines = "{\"text\": \"abc abc\"}\n"
                        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n";
    write_file("chat.jsonl", lines, strlen(lines));
    qd_calib_set s;
    /* ChatML "<|im_start|>user\nhi<|im_end|>\n", no BOS added: the tiny vocab keeps only letters,
     * so 18 tokens; the text line gives "<s>abc abc" = 8 tokens */
    QD_EXPECT_EQ_INT(load(t, "chat.jsonl", 1, 18, 0, QD_CALIB_RANDOM, &s), QD_OK);
    static const char chat_letters[] = "imstartuserhiimend";
    for (int i = 0; s.ids && i < 18; i++) QD_EXPECT_EQ_INT(s.ids[i], chat_letters[i] - 'a');
    QD_EXPECT_EQ_INT(s.chat, QD_CHAT_CHATML);
    QD_EXPECT_EQ_INT(s.docs_read, 2);
    QD_EXPECT_EQ_INT(s.tokens_read, 26);
    qd_calib_free(&s);
    write_file("text.jsonl", lines, strlen("{\"text\": \"abc abc\"}\n"));
    QD_EXPECT_EQ_INT(load(t, "text.jsonl", 1, 8, 0, QD_CALIB_RANDOM, &s), QD_OK);
    static const int32_t want[8] = {27, 0, 1, 2, 26, 0, 1, 2};
    QD_EXPECT(s.ids && memcmp(s.ids, want, sizeof want) == 0);
    qd_calib_free(&s);
    qd_tokenizer_free(t);
    /* no chat_template at all: a "messages" line is refused, naming tokenizer_config.json */
    t = tiny_tokenizer("{{ messages }}");
    qd_clear_error();
    QD_EXPECT_EQ_INT(load(t, "chat.jsonl", 1, 8, 0, QD_CALIB_RANDOM, &s), QD_ERR_UNSUPPORTED);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "matches none of ChatML, Llama-3, Llama-2");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "--chat-template");
    qd_tokenizer_free(t);
}

static void test_bad_inputs(void) {
    qd_tokenizer *t = tiny_tokenizer(NULL);
    if (!t) return;
    qd_calib_set s;
    write_file("empty.jsonl", "", 0);
    qd_clear_error();
    QD_EXPECT(load(t, "empty.jsonl", 1, 4, 0, QD_CALIB_RANDOM, &s) != QD_OK);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "empty");
    write_file("bin.jsonl", "\x7f" "ELF\x02\x01\x01\x00\x00\x00", 10);
    qd_clear_error();
    QD_EXPECT(load(t, "bin.jsonl", 1, 4, 0, QD_CALIB_RANDOM, &s) != QD_OK);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "looks binary");
    qd_clear_error();
    QD_EXPECT(load(t, "missing.jsonl", 1, 4, 0, QD_CALIB_RANDOM, &s) != QD_OK);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "missing.jsonl: cannot open");
    /* malformed lines: skipped, counted, first line number kept */
    const char *mixed = "[1,2,3,4,5]\n{\"text\": 5}\nnot json\n\n[1,2,3,4,5,6]\n[99999]\n{\"messages\": 3}\n";
    write_file("mal.jsonl", mixed, strlen(mixed));
    QD_EXPECT_EQ_INT(load(t, "mal.jsonl", 2, 5, 0, QD_CALIB_RANDOM, &s), QD_OK);
    QD_EXPECT_EQ_INT(s.skipped_lines, 4); /* {"text": 5}, not json, [99999] (outside the vocab), {"messages": 3} */
    QD_EXPECT_EQ_INT(s.first_skipped_line, 2);
    QD_EXPECT_EQ_INT(s.docs_read, 2);
    qd_calib_free(&s);
    /* too few tokens: the message says how many were found */
    qd_clear_error();
    QD_EXPECT_EQ_INT(load(t, "mal.jsonl", 2, 50, 0, QD_CALIB_RANDOM, &s), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "11 tokens in all, the longest 6");
    qd_clear_error();
    QD_EXPECT_EQ_INT(load(t, "mal.jsonl", 4, 5, 0, QD_CALIB_CONCAT, &s), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "11 tokens found in 2 documents, fewer than the 20");
    /* only malformed lines */
    write_file("allbad.jsonl", "x\ny\n", 4);
    qd_clear_error();
    QD_EXPECT_EQ_INT(load(t, "allbad.jsonl", 1, 1, 0, QD_CALIB_RANDOM, &s), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "no documents (2 lines read, 2 malformed)");
    qd_tokenizer_free(t);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/qd-test-calib-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    QD_RUN(test_determinism);
    QD_RUN(test_uniform_documents_and_offsets);
    QD_RUN(test_text_and_chat);
    QD_RUN(test_bad_inputs);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return QD_TEST_END();
}
