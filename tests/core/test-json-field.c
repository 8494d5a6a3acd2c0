/* SPDX-License-Identifier: MIT
 * The typed JSON field readers of qd-json.h: for each, a value of its type inside its range is read, an
 * absent or null one takes the default (or fails where required), and a value of another type or out of
 * range fails with the one message shape "<file>: <path> is <what it is>; expected <what>". The JSON
 * texts are written here; what each should give follows from JSON's types (RFC 8259), not from qdist. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "qd-json.h"
#include "qd-log.h"
#include "qd-test.h"

static cJSON *doc;
static const qd_json_at AT = {"f.json", "q.w"};

static void load(const char *text) {
    cJSON_Delete(doc);
    doc = NULL;
    QD_EXPECT_EQ_INT(qd_json_parse(text, strlen(text), "f.json", &doc), QD_OK);
}

/* the last failure is exactly "f.json: q.w.<key> is <what>; expected <expected>" */
static void expect_msg(const char *key, const char *what, const char *expected) {
    char want[256];
    snprintf(want, sizeof want, "f.json: q.w.%s is %s; expected %s", key, what, expected);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), want);
}

static void test_int(void) {
    load("{\"a\": 8, \"neg\": -1, \"big\": 2147483647, \"s\": \"8\", \"f\": 16.5, \"t\": true, \"n\": null,"
         " \"huge\": 1e300, \"over\": 2147483648, \"e\": 1e2, \"z\": -0}");
    int v = 7;
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "a", 1, 64, 0, &v), QD_OK);
    QD_EXPECT_EQ_INT(v, 8);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "neg", -1, INT_MAX, 0, &v), QD_OK);
    QD_EXPECT_EQ_INT(v, -1);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "big", 0, INT_MAX, 0, &v), QD_OK);
    QD_EXPECT_EQ_INT(v, INT_MAX);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "e", 0, 1000, 0, &v), QD_OK); /* 1e2 is the integer 100 in JSON */
    QD_EXPECT_EQ_INT(v, 100);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "z", 0, 10, 5, &v), QD_OK);
    QD_EXPECT_EQ_INT(v, 0);
    v = 7; /* absent and null: the default */
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "missing", 1, 64, 42, &v), QD_OK);
    QD_EXPECT_EQ_INT(v, 42);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "n", -1, 64, -1, &v), QD_OK);
    QD_EXPECT_EQ_INT(v, -1);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "missing", 1, 64, QD_JSON_REQ_INT, &v), QD_ERR_FORMAT);
    expect_msg("missing", "missing", "an integer in 1..64");
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "n", 1, 64, QD_JSON_REQ_INT, &v), QD_ERR_FORMAT);
    expect_msg("n", "null", "an integer in 1..64");
    v = 3; /* a failure leaves *out as it was */
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "s", 1, 64, 0, &v), QD_ERR_FORMAT);
    expect_msg("s", "the string \"8\"", "an integer in 1..64");
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "f", -1, INT_MAX, 0, &v), QD_ERR_FORMAT);
    expect_msg("f", "the number 16.5", "an integer >= -1");
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "t", 0, 1, 0, &v), QD_ERR_FORMAT);
    expect_msg("t", "true", "an integer in 0..1");
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "huge", 0, INT_MAX, 0, &v), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "over", 0, INT_MAX, 0, &v), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "a", 9, 64, 0, &v), QD_ERR_FORMAT); /* below the range */
    QD_EXPECT_EQ_INT(qd_json_int(AT, doc, "neg", 0, 64, 0, &v), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(v, 3);
}

static void test_num_bool_str(void) {
    load("{\"d\": 0.01, \"s\": \"0.01\", \"big\": 1e300, \"b\": true, \"one\": 1, \"str\": \"x\", \"n\": null,"
         " \"arr\": [1], \"obj\": {}}");
    double d = -1;
    QD_EXPECT_EQ_INT(qd_json_num(AT, doc, "d", 0, 1, -1, &d), QD_OK);
    QD_EXPECT_NEAR(d, 0.01, 0);
    QD_EXPECT_EQ_INT(qd_json_num(AT, doc, "n", 0, 1, 0.5, &d), QD_OK);
    QD_EXPECT_NEAR(d, 0.5, 0);
    QD_EXPECT_EQ_INT(qd_json_num(AT, doc, "missing", 0, 1, QD_JSON_REQ_NUM, &d), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_num(AT, doc, "s", 0, 1, -1, &d), QD_ERR_FORMAT);
    expect_msg("s", "the string \"0.01\"", "a finite number in 0..1");
    QD_EXPECT_EQ_INT(qd_json_num(AT, doc, "big", 0, 1e6, -1, &d), QD_ERR_FORMAT);
    int b = -5;
    QD_EXPECT_EQ_INT(qd_json_bool(AT, doc, "b", 0, &b), QD_OK);
    QD_EXPECT_EQ_INT(b, 1);
    QD_EXPECT_EQ_INT(qd_json_bool(AT, doc, "missing", 0, &b), QD_OK);
    QD_EXPECT_EQ_INT(b, 0);
    QD_EXPECT_EQ_INT(qd_json_bool(AT, doc, "n", QD_JSON_REQ_BOOL, &b), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_bool(AT, doc, "one", 0, &b), QD_ERR_FORMAT);
    expect_msg("one", "the number 1", "true or false");
    const char *s = "unset";
    QD_EXPECT_EQ_INT(qd_json_str(AT, doc, "str", 1, &s), QD_OK);
    QD_EXPECT(s && strcmp(s, "x") == 0);
    QD_EXPECT_EQ_INT(qd_json_str(AT, doc, "n", 0, &s), QD_OK);
    QD_EXPECT(s == NULL);
    QD_EXPECT_EQ_INT(qd_json_str(AT, doc, "n", 1, &s), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_str(AT, doc, "one", 0, &s), QD_ERR_FORMAT);
    expect_msg("one", "the number 1", "a string");
    const cJSON *node;
    QD_EXPECT_EQ_INT(qd_json_node(AT, doc, "arr", cJSON_Array, 1, &node), QD_OK);
    QD_EXPECT(node && cJSON_IsArray(node));
    QD_EXPECT_EQ_INT(qd_json_node(AT, doc, "obj", cJSON_Array, 0, &node), QD_ERR_FORMAT);
    expect_msg("obj", "an object", "an array");
    QD_EXPECT_EQ_INT(qd_json_node(AT, doc, "missing", cJSON_Object, 0, &node), QD_OK);
    QD_EXPECT(node == NULL);
}

static void test_pair(void) {
    load("{\"ok\": [128, 64], \"s\": [128, \"128\"], \"one\": [128], \"num\": 128, \"rxc\": \"128x64\","
         " \"bad\": \"128x\", \"three\": \"1x2x3\", \"zero\": [0, 1], \"sign\": \"+1x1\"}");
    int p[2] = {-1, -1};
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "ok", 1, 65536, 0, p), QD_OK);
    QD_EXPECT(p[0] == 128 && p[1] == 64);
    p[0] = p[1] = -1;
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "missing", 1, 65536, 0, p), QD_OK);
    QD_EXPECT(p[0] == -1 && p[1] == -1);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "missing", 1, 65536, QD_JSON_REQUIRED, p), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "s", 1, 65536, 0, p), QD_ERR_FORMAT);
    expect_msg("s[1]", "the string \"128\"", "an integer in 1..65536");
    QD_EXPECT(p[0] == -1 && p[1] == -1); /* nothing half-written */
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "one", 1, 65536, 0, p), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "num", 1, 65536, 0, p), QD_ERR_FORMAT);
    expect_msg("num", "the number 128", "[rows, cols], two integers in 1..65536");
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "zero", 1, 65536, 0, p), QD_ERR_FORMAT);
    /* the "RxC" string only where asked for, and only two decimal integers in range */
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "rxc", 1, 65536, 0, p), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "rxc", 1, 65536, QD_JSON_PAIR_RXC, p), QD_OK);
    QD_EXPECT(p[0] == 128 && p[1] == 64);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "bad", 1, 65536, QD_JSON_PAIR_RXC, p), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "three", 1, 65536, QD_JSON_PAIR_RXC, p), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "sign", 1, 65536, QD_JSON_PAIR_RXC, p), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_json_pair(AT, doc, "rxc", 1, 100, QD_JSON_PAIR_RXC, p), QD_ERR_FORMAT); /* 128 > 100 */
}

static void test_names_are_escaped(void) {
    load("{\"a\\u001b[2Jb\": \"1\"}");
    int v;
    const cJSON *k = doc->child;
    QD_EXPECT_EQ_INT(qd_json_int_v(AT, k->string, k, 0, 9, 0, &v), QD_ERR_FORMAT);
    QD_EXPECT(strchr(qd_last_error(), 0x1b) == NULL);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "q.w.a\\x1b[2Jb is the string \"1\"");
}

int main(void) {
    QD_RUN(test_int);
    QD_RUN(test_num_bool_str);
    QD_RUN(test_pair);
    QD_RUN(test_names_are_escaped);
    cJSON_Delete(doc);
    return QD_TEST_END();
}
