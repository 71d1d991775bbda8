/* The transform step `enrich`: joins each record with a lookup table keyed
 * by one of its fields, e.g. viewer id -> age, gender, location. The table
 * is loaded once from a CSV file (with a header row) or an NDJSON file, or
 * kept current from a Kafka topic (the latest value per message key; a
 * null value deletes the key). Lanes read it without locks: a topic table
 * is replaced by a new immutable version at most every `refresh`, and an
 * old version is freed once no lane is reading it (one hazard pointer per
 * lane). */
#ifndef SL_STAGES_ENRICH_H
#define SL_STAGES_ENRICH_H

#include "config/config.h"
#include "core/schema.h"
#include "core/value.h"
#include "util/arena.h"

typedef struct sl_enrich sl_enrich_t;

/* Parses the step's map {key, file, file_key, fields: {name: type}} against
 * record (the fields visible at this step), loads the file (a relative path
 * is taken from config_dir), and appends the fields to record. Problems in
 * the config or in the file (a missing column, a cell that does not parse
 * as its type, a duplicate key: "users.csv:17: ...") go to errs. Returns
 * NULL on error. */
sl_enrich_t *sl_enrich_parse(const sl_node_t *map, const char *config_dir, sl_schema_t *record,
                             sl_errors_t *errs);
/* Fills the step's fields of rec from the row whose key equals rec's key
 * field; all null when the key is null or not in the table. Strings borrow
 * from a file table, or are copied into arena from a topic table. reader
 * is the calling lane's number (< SL_ENRICH_MAX_READERS): at most one
 * thread per number at a time. Thread-safe otherwise. */
#define SL_ENRICH_MAX_READERS 64
void sl_enrich_run(const sl_enrich_t *e, sl_value_t *rec, sl_arena_t *arena, unsigned reader);
/* A topic table: starts its consumer (brokers: the source's unless the step
 * names its own) and waits until the topic was read to its end (at most
 * load_timeout). Returns 0, or -1 with err[256] (what to do). A file table:
 * returns 0. */
int sl_enrich_start(sl_enrich_t *e, const char *brokers, char *err);
/* Rows loaded (for logs and tests). */
size_t sl_enrich_rows(const sl_enrich_t *e);
/* NULL is a no-op. */
void sl_enrich_destroy(sl_enrich_t *e);

#endif
