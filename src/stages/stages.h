/* The record stages between validation and the sink: `transform` (a list of
 * steps: rename, drop, set, lookup) and `filter` (an expression). Built once
 * from the config against the input schema; they define the record schema
 * the sink sees (the input fields, renamed or hidden, then the computed
 * ones), and run per record in the lanes without locks (read-only). */
#ifndef SL_STAGES_STAGES_H
#define SL_STAGES_STAGES_H

#include <stdint.h>

#include "config/config.h"
#include "core/schema.h"
#include "core/value.h"
#include "util/arena.h"

typedef struct sl_stages sl_stages_t;

typedef enum {
    SL_STAGE_KEEP = 0, /* go on to the sink */
    SL_STAGE_DROP,     /* filtered out: done, counted, not dead-lettered */
    SL_STAGE_REJECT,   /* a step failed for this record: dead-letter with the reason */
} sl_stage_result_t;

/* Parses the config's `transform:` list and `filter:` expression (either
 * node may be NULL) against input, and fills *record with the record schema
 * (owned by the caller: sl_schema_free): input's fields (names and types
 * only, no constraints) with renames and drops applied, then the fields the
 * steps add, in order. Errors go to errs with file:line:col (an expression
 * error points at its column). Returns the stages (owned: sl_stages_destroy;
 * NULL when neither node is given) and sets *bad on errors. */
sl_stages_t *sl_stages_parse(const sl_node_t *transform, const sl_node_t *filter, const char *file,
                             const sl_schema_t *input, sl_schema_t *record, sl_errors_t *errs,
                             int *bad);
/* Runs the steps, then the filter, on rec (record->n_fields values: the
 * input fields decoded and validated, the others null). Strings the steps
 * build go to arena. On SL_STAGE_REJECT *why says which step failed and why.
 * reader is the calling lane's number (enrich: one reader per number at a
 * time). NULL stages keep every record. Thread-safe. */
sl_stage_result_t sl_stages_run(const sl_stages_t *st, sl_value_t *rec, sl_arena_t *arena,
                                unsigned reader, sl_reason_t *why);
/* Starts what steps need at run time (enrich tables kept current from a
 * Kafka topic: loaded to their end before this returns). brokers: the
 * source's. Returns 0, or -1 with err[256]. NULL stages: 0. */
int sl_stages_start(sl_stages_t *st, const char *brokers, char *err);
/* NULL is a no-op. */
void sl_stages_destroy(sl_stages_t *st);

#endif
