/* Expressions over a record: the language of `filter` and of computed
 * fields in `transform` (grammar and functions: docs/EXPRESSIONS.md).
 * Compiled once against the schema (field names become indexes, types are
 * checked, literals and time zones are resolved), then evaluated per record
 * without allocation except for strings a function produces (in the caller's
 * arena). A compiled expression is read-only: lanes share it. */
#ifndef SL_STAGES_EXPR_H
#define SL_STAGES_EXPR_H

#include <stdbool.h>
#include <stddef.h>

#include "core/schema.h"
#include "core/value.h"
#include "util/arena.h"

typedef struct sl_expr sl_expr_t;

typedef struct sl_expr_error {
    int col;       /* 1-based column (in bytes) of the offending token in the text */
    char msg[256]; /* what is wrong and what to do, without the column */
} sl_expr_error_t;

/* Compiles text (len bytes, borrowed) against the first n_fields fields of
 * schema (later fields are not visible: computed fields see only what is
 * defined before them). Returns the expression (owned by the caller,
 * sl_expr_destroy), or NULL with *err set. The text is copied: it may be
 * freed once this returns. Time zones named in the text are loaded now. */
sl_expr_t *sl_expr_compile(const char *text, size_t len, const sl_schema_t *schema, size_t n_fields,
                           sl_expr_error_t *err);
/* The type of the result. int32 fields are read as int64, so arithmetic and
 * most functions give SL_TYPE_INT64; the caller converts (with a range
 * check) when storing into an int32 field. */
sl_type_t sl_expr_type(const sl_expr_t *e);
/* Evaluates e over rec (the record's values, indexed like the schema).
 * Strings a function builds are allocated in arena (the batch's); others
 * borrow from rec or from e. Returns 0 with *out set (out->is_null for a
 * null result), or -1 with *why set when the record makes the expression
 * fail (integer overflow, division by zero, a timestamp out of range): the
 * caller dead-letters the record with that reason. Thread-safe: lanes
 * evaluate one compiled expression concurrently, each with its own arena. */
int sl_expr_eval(const sl_expr_t *e, const sl_value_t *rec, sl_arena_t *arena, sl_value_t *out,
                 sl_reason_t *why) SL_WUR;
/* For filters: e must have type SL_TYPE_BOOL. *keep is true only when the
 * result is true (false and null both drop the record). */
int sl_expr_eval_bool(const sl_expr_t *e, const sl_value_t *rec, sl_arena_t *arena, bool *keep,
                      sl_reason_t *why) SL_WUR;
/* NULL is a no-op. */
void sl_expr_destroy(sl_expr_t *e);

#endif
