/* SPDX-License-Identifier: MIT
 * qd-json.h - a JSON document read from the user's files (config.json, the safetensors index, a
 * recipe, tokenizer.json), parsed whole. Refused, naming path and what is wrong: a NUL byte, text after
 * the value, and an object that names one key twice (Python's json and transformers keep the last
 * value, cJSON_GetObjectItem finds the first: the two would read different models). *out is the
 * parsed value (any JSON type; the caller checks it), freed with cJSON_Delete. The typed readers below
 * take its fields.
 */
#ifndef QD_JSON_H
#define QD_JSON_H

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <cjson/cJSON.h>

#include "qd-status.h"

qd_status qd_json_parse(const char *text, size_t len, const char *path, cJSON **out);

/* ---- typed fields (qd-json-field.c) --------------------------------------------------------------------
 * Strict readers of one value that a user or another tool wrote. `at` names the file and the JSON path of
 * the object read (obj "" for the document's root); name is the key, or "key[i]" for an array element.
 * Absent and null are the same (every HF config writes null for "not set"): the reader leaves *out = def,
 * or, where the field is required (def QD_JSON_REQ_INT / QD_JSON_REQ_NUM / QD_JSON_REQ_BOOL, required 1),
 * fails. Present but of another type or outside the range (a string "8", 16.5 for an integer, true, 1e300)
 * fails with QD_ERR_FORMAT, one line: "<file>: <obj>.<name> is <what it is>; expected <what>". */
typedef struct qd_json_at {
    const char *file; /* the file, first in every message */
    const char *obj;  /* JSON path of the object: "quantization_config.config_groups.group_0.weights", or "" */
} qd_json_at;

#define QD_JSON_REQ_INT INT_MIN
#define QD_JSON_REQ_NUM NAN
#define QD_JSON_REQ_BOOL (-1)

/* what v is, for messages: "missing", "null", "true", "the number 16.5", "the string \"8\"", "an array", ... */
const char *qd_json_what(const cJSON *v, char *buf, size_t n);

/* the failure the readers give, for a caller's own expectation: "<file>: <obj>.<name> is <what v is>;
 * expected <expected>" (QD_ERR_FORMAT) */
qd_status qd_json_bad(qd_json_at at, const char *name, const cJSON *v, const char *expected);

/* an integer in lo..hi (def: absent; QD_JSON_REQ_INT: required) */
qd_status qd_json_int_v(qd_json_at at, const char *name, const cJSON *v, int lo, int hi, int def, int *out);
qd_status qd_json_int(qd_json_at at, const cJSON *o, const char *key, int lo, int hi, int def, int *out);
/* a finite number in lo..hi (def: absent; QD_JSON_REQ_NUM: required) */
qd_status qd_json_num(qd_json_at at, const cJSON *o, const char *key, double lo, double hi, double def, double *out);
/* true or false (def 0 or 1: absent; QD_JSON_REQ_BOOL: required) */
qd_status qd_json_bool(qd_json_at at, const cJSON *o, const char *key, int def, int *out);
/* a string: *out its text, NULL when absent and not required */
qd_status qd_json_str(qd_json_at at, const cJSON *o, const char *key, int required, const char **out);
/* an object (cJSON_Object) or an array (cJSON_Array), as type says: *out the value, NULL when absent */
qd_status qd_json_node(qd_json_at at, const cJSON *o, const char *key, int type, int required, const cJSON **out);
/* [a, b]: two integers in lo..hi (a block size); out untouched when absent and not QD_JSON_REQUIRED.
 * QD_JSON_PAIR_RXC also takes the string "AxB" (compressed-tensors reads a block_structure so, for
 * checkpoints written before it became a list). */
#define QD_JSON_REQUIRED 1
#define QD_JSON_PAIR_RXC 2
qd_status qd_json_pair(qd_json_at at, const cJSON *o, const char *key, int lo, int hi, int flags, int out[2]);

#endif
