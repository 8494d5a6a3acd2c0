/* SPDX-License-Identifier: MIT
 * qd-json.h - a JSON document read from the user's files (config.json, the safetensors index, a
 * recipe, tokenizer.json), parsed whole. Refused, naming path and what is wrong: a NUL byte, text after
 * the value, and an object that names one key twice (Python's json and transformers keep the last
 * value, cJSON_GetObjectItem finds the first: the two would read different models). *out is the
 * parsed value (any JSON type; the caller checks it), freed with cJSON_Delete.
 */
#ifndef QD_JSON_H
#define QD_JSON_H

#include <stddef.h>
#include <cjson/cJSON.h>

#include "qd-status.h"

qd_status qd_json_parse(const char *text, size_t len, const char *path, cJSON **out);

#endif
