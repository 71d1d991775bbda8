/* The transform step `enrich`: joins each record with a lookup table keyed
 * by one of its fields, loaded once at startup from a CSV file (with a
 * header row) or an NDJSON file, e.g. viewer id -> age, gender, location.
 * The table is read-only after loading: lanes share it without locks. */
#ifndef SL_STAGES_ENRICH_H
#define SL_STAGES_ENRICH_H

#include "config/config.h"
#include "core/schema.h"
#include "core/value.h"

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
 * from the table. Thread-safe. */
void sl_enrich_run(const sl_enrich_t *e, sl_value_t *rec);
/* Rows loaded (for logs and tests). */
size_t sl_enrich_rows(const sl_enrich_t *e);
/* NULL is a no-op. */
void sl_enrich_destroy(sl_enrich_t *e);

#endif
