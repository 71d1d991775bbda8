/* The JSON codec: decodes one message (a JSON object) straight into a record
 * of the schema (no intermediate tree), and encodes a record as one JSON line.
 * No core includes beyond the value and schema types. */
#ifndef SL_CODECS_JSON_H
#define SL_CODECS_JSON_H

#include <stddef.h>

#include "core/schema.h"
#include "core/value.h"
#include "util/arena.h"
#include "util/buf.h"

typedef struct sl_json_limits {
    size_t max_bytes; /* larger messages are rejected ("message of N bytes exceeds max_bytes M");
                         0: no limit */
    int max_depth;    /* nesting deeper than this (objects/arrays in ignored fields) is rejected;
                         the top-level object is depth 1, values < 1 count as 1 */
} sl_json_limits_t;

/* Decodes buf[0..len) into values[schema->n_fields]. Absent fields are left
 * is_null = true (sl_schema_validate() applies defaults and required).
 * Strings without escapes point into buf (borrowed: buf must outlive values);
 * strings with escapes are unescaped into arena. Rejects: invalid JSON,
 * invalid UTF-8, a top level that is not an object, trailing bytes, a known
 * field of the wrong type (e.g. "expected int32, got string"), an int out of
 * the type's range or with a fraction/exponent, an invalid date or timestamp,
 * duplicate known fields, unknown fields when schema->unknown == REJECT,
 * oversized messages and nesting deeper than limits->max_depth, and a
 * leading byte order mark. buf need not be NUL-terminated and is never read
 * past len. Returns 0, or -1 with *why set (values are then unspecified).
 * Thread-safe (no shared state). */
int sl_json_decode(const sl_schema_t *schema, const sl_json_limits_t *limits, const char *buf,
                   size_t len, sl_value_t *values, sl_arena_t *arena, sl_reason_t *why) SL_WUR;

/* Appends values as one JSON object (fields in schema order, absent optional
 * fields as null) without a trailing newline. */
void sl_json_encode(const sl_schema_t *schema, const sl_value_t *values, sl_buf_t *out);

#endif
