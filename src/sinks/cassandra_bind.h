/* The Cassandra sink's pure half: which schema field feeds each bind marker
 * of the prepared statement, the encoding of a record's values into CQL, and
 * the grouping of records into requests by partition. No I/O, no session:
 * unit-testable alone. Thread-safe for distinct arguments. */
#ifndef SL_SINKS_CASSANDRA_BIND_H
#define SL_SINKS_CASSANDRA_BIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/schema.h"
#include "core/value.h"
#include "cql/result.h"
#include "cql/types.h"
#include "util/buf.h"

typedef struct sl_cass_marker {
    char *name;   /* owned: the marker's name (`:name`), or the column's for `?` */
    int field;    /* index of the schema field of that name */
    uint16_t cql; /* the column's type (sl_cql_col_id_t) */
    bool pk;      /* a partition key column: must not be null */
} sl_cass_marker_t;

typedef struct sl_cass_binding {
    sl_cass_marker_t *markers; /* owned; n of them, in bind marker order */
    size_t n;
    uint16_t *pk; /* owned; marker index of each partition key column, in key order */
    size_t n_pk;
    bool counter; /* some marker is a counter: send COUNTER batches */
} sl_cass_binding_t;

/* Maps the bind markers of a PREPARE result (bind, borrowed) to the fields of
 * schema by name and checks each pair of types can be converted. Returns 0
 * with *out filled (free with sl_cass_binding_free), or -1 with a message
 * that tells the user what to change in err (errlen bytes). */
SL_WUR int sl_cass_binding_build(const sl_cql_metadata_t *bind, const sl_schema_t *schema,
                                 sl_cass_binding_t *out, char *err, size_t errlen);
/* Frees what build allocated. NULL or a zeroed binding is fine. */
void sl_cass_binding_free(sl_cass_binding_t *b);

/* Returns the CQL name of a column type id ("bigint"), or "unknown". */
const char *sl_cass_cql_type_name(uint16_t id);
/* Whether a schema type can be bound to a column of CQL type id. */
bool sl_cass_compatible(sl_type_t t, uint16_t id);

/* Encodes record rec (schema->n_fields values, borrowed) in marker order:
 * appends the serialized values to data and sets, for each marker i,
 * vals[i].len (-2: unset, for a null optional field) and offs[i], the offset
 * of its bytes in data (data may move while more records are appended:
 * resolve pointers with sl_cass_resolve once done). Returns 0, or -1 with
 * *why set (a value out of range for its column, a string that is not a
 * uuid/inet, a null partition key); data is then unchanged. */
SL_WUR int sl_cass_encode(const sl_cass_binding_t *b, const sl_schema_t *schema,
                          const sl_value_t *rec, sl_buf_t *data, sl_cql_bytes_t *vals,
                          uint32_t *offs, sl_reason_t *why);
/* Points vals[0..n) at data + offs[i] (a null or unset value stays so). */
void sl_cass_resolve(sl_cql_bytes_t *vals, const uint32_t *offs, size_t n, const sl_buf_t *data);

/* One record to group: its routing key (the partition), its encoded size,
 * and its write timestamp. */
typedef struct sl_cass_item {
    const uint8_t *key; /* borrowed; key_len bytes (0: not routable, one group) */
    size_t key_len;
    size_t bytes; /* the size it adds to a request */
    int64_t ts;   /* write timestamp in µs, or SL_CASS_NO_TS */
    uint32_t pos; /* the record's position among those offered */
    /* The row it writes (partition and clustering key bytes), for
     * distinct_rows grouping; NULL: unknown (may be any row of the partition). */
    const uint8_t *row;
    size_t row_len;
} sl_cass_item_t;

#define SL_CASS_NO_TS INT64_MIN

/* Groups items (n of them, reordered in place) into requests: records of one
 * partition and one timestamp, at most max_rows of them (>= 1) and, beyond the
 * first, at most max_bytes in all; within a request records keep their
 * order. With distinct_rows, a request never holds two records of the same
 * row (equal row bytes, or either row unknown): Cassandra gives every
 * statement of a batch the batch's timestamp, and of two writes to one cell
 * with equal timestamps the greater value wins, not the later one. Requests
 * are ordered by their first record's pos (so a partition's requests keep
 * the records' order). Writes request r's range to starts[r]..starts[r+1]
 * (starts: room for n + 1) and returns the number of requests. */
size_t sl_cass_group(sl_cass_item_t *items, size_t n, size_t max_rows, size_t max_bytes,
                     bool distinct_rows, uint32_t *starts);

#endif
