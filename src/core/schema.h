/* The record schema declared in the config: an ordered list of typed fields
 * with constraints. Field lookup on the hot path is by index. */
#ifndef SL_CORE_SCHEMA_H
#define SL_CORE_SCHEMA_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/value.h"
#include "util/arena.h"

/* A dead-letter reason: short, human-readable, names the field. */
#define SL_REASON_MAX 256
typedef struct sl_reason {
    char text[SL_REASON_MAX];
} sl_reason_t;

typedef enum { SL_UNKNOWN_IGNORE = 0, SL_UNKNOWN_REJECT } sl_unknown_policy_t;

typedef struct sl_field {
    char *name; /* owned */
    size_t name_len;
    sl_type_t type;
    bool required;
    bool has_default;
    sl_value_t def; /* default for absent fields; strings owned by the schema */
    bool has_min, has_max;
    int64_t min_i, max_i; /* int32/int64 bounds */
    double min_d, max_d;  /* double bounds */
    size_t max_length;    /* string: max bytes (0: no limit) */
    bool has_regex;
    regex_t regex; /* string: must match (POSIX extended, anchored by the user) */
    char *regex_src;
    char **enum_values; /* string: allowed values (owned), n_enum of them */
    size_t n_enum;
    int line; /* config line, for messages */
    /* Dropped by a transform step: kept in the record (indexes do not move)
     * but invisible to sl_schema_find, sinks and encoders. */
    bool hidden;
} sl_field_t;

typedef struct sl_schema {
    sl_field_t *fields; /* owned */
    size_t n_fields;
    sl_unknown_policy_t unknown; /* what to do with fields not in the schema */
    /* open-addressing name -> index table, built by sl_schema_finish() */
    int32_t *slots;
    size_t n_slots;
} sl_schema_t;

/* Builds the lookup table of visible fields once all fields are added.
 * Call before use; call again after renaming or hiding fields. */
void sl_schema_finish(sl_schema_t *schema);
/* Returns the index of the visible field named (name, len), or -1.
 * Thread-safe. */
int sl_schema_find(const sl_schema_t *schema, const char *name, size_t len);
/* Appends a field with a name and a type only (no constraints, no default),
 * e.g. a field a transform step computes. Does not rebuild the lookup
 * table: call sl_schema_finish() after adding. Returns its index. */
size_t sl_schema_add(sl_schema_t *schema, const char *name, sl_type_t type, int line);
/* A 64-bit hash of the fields fields[0..n) of record rec, typed (1 and "1"
 * differ, as do null and absent-from-the-list) and seeded (seed 0 is
 * fine). For in-memory keys only: not stable across versions. */
uint64_t sl_schema_hash(const sl_schema_t *schema, const sl_value_t *rec, const size_t *fields,
                        size_t n, uint64_t seed);
/* Frees the schema's contents (not the struct itself). NULL is a no-op. */
void sl_schema_free(sl_schema_t *schema);

/* Fills absent fields with defaults and checks every constraint (required,
 * min/max, max_length, regex, enum) of a decoded record. Returns 0 if valid;
 * else -1 with *why set ("field 'views': -1 is below min 0"). Thread-safe. */
int sl_schema_validate(const sl_schema_t *schema, sl_value_t *values, sl_reason_t *why) SL_WUR;

/* Parses the `schema:` map of a config (field name -> {type, required, default,
 * min, max, max_length, regex, enum}) into out; unknown_policy is set by the
 * caller. Errors (unknown type, bad bound, default not matching the type,
 * regex that does not compile, ...) go to errs with file:line. Returns 0 if
 * no error was added. On error out is still safe to sl_schema_free(). */
struct sl_node;
struct sl_errors;
int sl_schema_parse(const struct sl_node *map, const char *file, sl_schema_t *out,
                    struct sl_errors *errs) SL_WUR;

#endif
