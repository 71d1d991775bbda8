/* CQL native protocol v4: decoding of response bodies (4.2) and of the values
 * of the native types (6). Self-contained: depends only on src/util and
 * cql/frame.h.
 *
 * Ownership: a decoded response lives in two places. Strings, arrays, type
 * descriptions, prepared ids and paging states are copied into the arena the
 * caller passes (so prepared metadata can be kept after the frame is gone);
 * row cells, collection elements and auth tokens are views into the frame
 * body, valid only while the body is. Nothing is allocated per cell. */
#ifndef SL_CQL_RESULT_H
#define SL_CQL_RESULT_H

#include <stdbool.h>
#include <stdint.h>

#include "cql/frame.h"
#include "util/arena.h"
#include "util/common.h"

/* ---- Column types ([option] of 4.2.5.2) --------------------------------------------------- */

typedef enum sl_cql_col_id {
    SL_CQL_COL_CUSTOM = 0x0000,
    SL_CQL_COL_ASCII = 0x0001,
    SL_CQL_COL_BIGINT = 0x0002,
    SL_CQL_COL_BLOB = 0x0003,
    SL_CQL_COL_BOOLEAN = 0x0004,
    SL_CQL_COL_COUNTER = 0x0005,
    SL_CQL_COL_DECIMAL = 0x0006,
    SL_CQL_COL_DOUBLE = 0x0007,
    SL_CQL_COL_FLOAT = 0x0008,
    SL_CQL_COL_INT = 0x0009,
    SL_CQL_COL_TIMESTAMP = 0x000B,
    SL_CQL_COL_UUID = 0x000C,
    SL_CQL_COL_VARCHAR = 0x000D,
    SL_CQL_COL_VARINT = 0x000E,
    SL_CQL_COL_TIMEUUID = 0x000F,
    SL_CQL_COL_INET = 0x0010,
    SL_CQL_COL_DATE = 0x0011,
    SL_CQL_COL_TIME = 0x0012,
    SL_CQL_COL_SMALLINT = 0x0013,
    SL_CQL_COL_TINYINT = 0x0014,
    SL_CQL_COL_LIST = 0x0020,
    SL_CQL_COL_MAP = 0x0021,
    SL_CQL_COL_SET = 0x0022,
    SL_CQL_COL_UDT = 0x0030,
    SL_CQL_COL_TUPLE = 0x0031,
} sl_cql_col_id_t;

/* Types nest at most this deep (list<map<int, frozen<tuple<...>>>>): a
 * deeper type is refused instead of recursing without bound. */
#define SL_CQL_TYPE_MAX_DEPTH 16

typedef struct sl_cql_coltype sl_cql_coltype_t;
struct sl_cql_coltype {
    uint16_t id;        /* sl_cql_col_id_t */
    const char *custom; /* CUSTOM: the Java class name */
    /* LIST, SET: params[0] is the element type; MAP: key, value; TUPLE: the
     * components; UDT: the field types, named by field_names. */
    const sl_cql_coltype_t *params;
    size_t n_params;
    const char *udt_keyspace; /* UDT */
    const char *udt_name;     /* UDT */
    const char *const *field_names;
};

/* Reads an [option] describing a type, recursively, into arena a. */
SL_WUR int sl_cql_rd_type(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_coltype_t *out);

/* ---- RESULT (4.2.5) ------------------------------------------------------------------------ */

typedef enum sl_cql_result_kind {
    SL_CQL_RESULT_VOID = 0x0001,
    SL_CQL_RESULT_ROWS = 0x0002,
    SL_CQL_RESULT_SET_KEYSPACE = 0x0003,
    SL_CQL_RESULT_PREPARED = 0x0004,
    SL_CQL_RESULT_SCHEMA_CHANGE = 0x0005,
} sl_cql_result_kind_t;

#define SL_CQL_META_GLOBAL_TABLES_SPEC 0x0001
#define SL_CQL_META_HAS_MORE_PAGES 0x0002
#define SL_CQL_META_NO_METADATA 0x0004

typedef struct sl_cql_colspec {
    const char *keyspace; /* the global table spec's when that flag is set */
    const char *table;
    const char *name;
    sl_cql_coltype_t type;
} sl_cql_colspec_t;

/* Rows <metadata>, or a Prepared result's bind-variable <metadata>. */
typedef struct sl_cql_metadata {
    int32_t flags;                /* SL_CQL_META_* */
    int32_t n_cols;               /* >= 0 */
    const sl_cql_colspec_t *cols; /* n_cols specs; NULL with No_metadata */
    sl_cql_bytes_t paging_state;  /* arena copy; len -1 when there is none */
    /* Bind-variable metadata only: the bind marker index of each partition key
     * column, in partition key order (all < n_cols). pk_count 0: not routable. */
    int32_t pk_count;
    const uint16_t *pk_index;
} sl_cql_metadata_t;

typedef struct sl_cql_rows {
    sl_cql_metadata_t meta;
    int32_t n_rows;
    const uint8_t *content; /* view of the n_rows * n_cols [bytes], all checked */
    size_t content_len;
} sl_cql_rows_t;

typedef struct sl_cql_row_iter {
    sl_cql_rd_t rd;
    int32_t left;
    int32_t n_cols;
} sl_cql_row_iter_t;

/* Starts iterating over rows (borrowed; so is the body it points into). */
void sl_cql_rows_iter(const sl_cql_rows_t *rows, sl_cql_row_iter_t *it);
/* Fills cells[0..n_cols-1] (caller's array) with views of the next row's
 * values (len -1: null) and returns true, or returns false after the last
 * row. Cannot fail: decoding checked every cell. */
bool sl_cql_rows_next(sl_cql_row_iter_t *it, sl_cql_bytes_t *cells);

typedef struct sl_cql_prepared {
    sl_cql_bytes_t id;      /* arena copy */
    sl_cql_metadata_t bind; /* bind markers, with pk_count/pk_index */
    sl_cql_metadata_t result;
} sl_cql_prepared_t;

/* Schema_change result and SCHEMA_CHANGE event (4.2.6). */
typedef struct sl_cql_schema_change {
    const char *change_type; /* CREATED, UPDATED, DROPPED */
    const char *target;      /* KEYSPACE, TABLE, TYPE, FUNCTION, AGGREGATE */
    const char *keyspace;
    const char *name;             /* NULL for KEYSPACE */
    const char *const *arg_types; /* FUNCTION, AGGREGATE */
    size_t n_arg_types;
} sl_cql_schema_change_t;

typedef struct sl_cql_result {
    int32_t kind;         /* sl_cql_result_kind_t */
    const char *keyspace; /* Set_keyspace */
    sl_cql_rows_t rows;
    sl_cql_prepared_t prepared;
    sl_cql_schema_change_t schema;
} sl_cql_result_t;

/* ---- EVENT (4.2.6) ------------------------------------------------------------------------- */

typedef enum sl_cql_event_kind {
    SL_CQL_EVENT_TOPOLOGY_CHANGE = 1,
    SL_CQL_EVENT_STATUS_CHANGE,
    SL_CQL_EVENT_SCHEMA_CHANGE,
} sl_cql_event_kind_t;

typedef struct sl_cql_event {
    sl_cql_event_kind_t kind;
    const char *change; /* NEW_NODE, REMOVED_NODE, UP, DOWN */
    sl_cql_inet_t addr; /* topology and status changes */
    sl_cql_schema_change_t schema;
} sl_cql_event_t;

/* ---- ERROR (4.2.1, 9) ---------------------------------------------------------------------- */

typedef enum sl_cql_errcode {
    SL_CQL_ERR_SERVER = 0x0000,
    SL_CQL_ERR_PROTOCOL = 0x000A,
    SL_CQL_ERR_AUTH = 0x0100,
    SL_CQL_ERR_UNAVAILABLE = 0x1000,
    SL_CQL_ERR_OVERLOADED = 0x1001,
    SL_CQL_ERR_IS_BOOTSTRAPPING = 0x1002,
    SL_CQL_ERR_TRUNCATE = 0x1003,
    SL_CQL_ERR_WRITE_TIMEOUT = 0x1100,
    SL_CQL_ERR_READ_TIMEOUT = 0x1200,
    SL_CQL_ERR_READ_FAILURE = 0x1300,
    SL_CQL_ERR_FUNCTION_FAILURE = 0x1400,
    SL_CQL_ERR_WRITE_FAILURE = 0x1500,
    SL_CQL_ERR_SYNTAX = 0x2000,
    SL_CQL_ERR_UNAUTHORIZED = 0x2100,
    SL_CQL_ERR_INVALID = 0x2200,
    SL_CQL_ERR_CONFIG = 0x2300,
    SL_CQL_ERR_ALREADY_EXISTS = 0x2400,
    SL_CQL_ERR_UNPREPARED = 0x2500,
} sl_cql_errcode_t;

/* What a caller should do about an error; decided once, here. */
typedef enum sl_cql_errclass {
    SL_CQL_ERRCLASS_RETRIABLE = 1, /* may succeed later or on another node */
    SL_CQL_ERRCLASS_PERMANENT,     /* this request will never succeed: reject it */
    SL_CQL_ERRCLASS_FATAL,         /* the connection/session is unusable (auth, protocol) */
    SL_CQL_ERRCLASS_REPREPARE,     /* PREPARE the statement again, then retry */
} sl_cql_errclass_t;

/* <writeType> of WriteTimeout and WriteFailure. The spec lists the first five;
 * Cassandra also sends CAS, VIEW and CDC in v4. */
typedef enum sl_cql_write_type {
    SL_CQL_WRITE_NONE = 0, /* not a write error */
    SL_CQL_WRITE_SIMPLE,
    SL_CQL_WRITE_BATCH,
    SL_CQL_WRITE_UNLOGGED_BATCH,
    SL_CQL_WRITE_COUNTER,
    SL_CQL_WRITE_BATCH_LOG,
    SL_CQL_WRITE_CAS,
    SL_CQL_WRITE_VIEW,
    SL_CQL_WRITE_CDC,
    SL_CQL_WRITE_OTHER, /* a string not listed above: see write_type_name */
} sl_cql_write_type_t;

typedef struct sl_cql_error {
    int32_t code; /* sl_cql_errcode_t, or a code this version does not know */
    const char *message;
    sl_cql_errclass_t cls;
    /* The request may have taken effect (a write timed out or failed after
     * reaching replicas): retry only an idempotent request. */
    bool maybe_applied;
    /* Unavailable, timeouts, failures */
    uint16_t consistency;
    int32_t required, alive;        /* Unavailable */
    int32_t received, blockfor;     /* timeouts, failures */
    int32_t numfailures;            /* ReadFailure, WriteFailure */
    bool data_present;              /* ReadTimeout, ReadFailure */
    sl_cql_write_type_t write_type; /* WriteTimeout, WriteFailure */
    const char *write_type_name;    /* as sent */
    const char *keyspace, *table;   /* AlreadyExists (table "" for a keyspace) */
    const char *function;           /* FunctionFailure (with keyspace) */
    const char *const *arg_types;   /* FunctionFailure */
    size_t n_arg_types;
    sl_cql_bytes_t unprepared_id; /* Unprepared: arena copy */
} sl_cql_error_t;

/* The class of an error code (unknown codes are PERMANENT), and whether a
 * request failing with it may have taken effect. Pure functions. */
sl_cql_errclass_t sl_cql_error_class(int32_t code);
bool sl_cql_error_maybe_applied(int32_t code);
/* Returns the error code's name ("Write_timeout"), or NULL if unknown. */
const char *sl_cql_error_name(int32_t code);
/* Whether e is worth retrying for a request that is (or is not) idempotent:
 * RETRIABLE, and not possibly applied unless idempotent, and never a COUNTER
 * write (counter updates are not idempotent whatever the caller thinks). */
bool sl_cql_error_retry_ok(const sl_cql_error_t *e, bool idempotent);

/* ---- Whole responses ----------------------------------------------------------------------- */

typedef struct sl_cql_response {
    uint8_t opcode; /* sl_cql_opcode_t */
    uint8_t flags;
    int16_t stream;
    /* Prelude of the body (2.2) */
    bool has_tracing_id;
    uint8_t tracing_id[16];
    const char *const *warnings;
    size_t n_warnings;
    const sl_cql_bytesmap_entry_t *payload;
    size_t n_payload;
    /* Set according to opcode */
    sl_cql_error_t error;                   /* ERROR */
    const char *authenticator;              /* AUTHENTICATE */
    sl_cql_bytes_t token;                   /* AUTH_CHALLENGE, AUTH_SUCCESS: view (len -1: null) */
    const sl_cql_strmap_entry_t *supported; /* SUPPORTED: values/n_values per key */
    size_t n_supported;
    sl_cql_result_t result; /* RESULT */
    sl_cql_event_t event;   /* EVENT */
} sl_cql_response_t;

/* Decodes the body (len bytes at body, borrowed) of a response with the given
 * opcode and header flags into *out, using arena a for what it copies (see
 * the top of this file). Compressed bodies are refused (decompress first and
 * clear the flag). Extra bytes after what the spec describes are ignored, as
 * the spec asks. Returns 0, or -1 with a message in err (errlen bytes); *out
 * is then partly filled and must not be used. Never reads outside the body. */
SL_WUR int sl_cql_response_decode_body(uint8_t opcode, uint8_t flags, const uint8_t *body,
                                       size_t len, sl_arena_t *a, sl_cql_response_t *out, char *err,
                                       size_t errlen);
/* The same for a frame returned by sl_cql_frame_parse. */
SL_WUR int sl_cql_response_decode(const sl_cql_frame_t *f, sl_arena_t *a, sl_cql_response_t *out,
                                  char *err, size_t errlen);

/* ---- Values (6) ---------------------------------------------------------------------------
 * Each decoder takes a cell view and returns 0, or -1 if the value is null,
 * empty where the type has a fixed size, or malformed. Check v.len < 0 first
 * to tell null apart. Views returned point into v's bytes. */

SL_WUR int sl_cql_val_int(sl_cql_bytes_t v, int32_t *out);
/* bigint, counter and time (nanoseconds since midnight; range not checked) */
SL_WUR int sl_cql_val_bigint(sl_cql_bytes_t v, int64_t *out);
SL_WUR int sl_cql_val_smallint(sl_cql_bytes_t v, int16_t *out);
SL_WUR int sl_cql_val_tinyint(sl_cql_bytes_t v, int8_t *out);
/* Any non-zero byte is true (6.4). */
SL_WUR int sl_cql_val_boolean(sl_cql_bytes_t v, bool *out);
SL_WUR int sl_cql_val_double(sl_cql_bytes_t v, double *out);
SL_WUR int sl_cql_val_float(sl_cql_bytes_t v, float *out);
/* date: days since 1970-01-01 (the wire's unsigned value minus 2^31). */
SL_WUR int sl_cql_val_date(sl_cql_bytes_t v, int64_t *out);
/* timestamp: milliseconds since the Unix epoch. */
SL_WUR int sl_cql_val_timestamp(sl_cql_bytes_t v, int64_t *out);
/* uuid and timeuuid. */
SL_WUR int sl_cql_val_uuid(sl_cql_bytes_t v, uint8_t out[16]);
/* varchar/text: checks the bytes are UTF-8; ascii: checks every byte < 0x80.
 * An empty string is a valid value. */
SL_WUR int sl_cql_val_text(sl_cql_bytes_t v, sl_cql_str_t *out);
SL_WUR int sl_cql_val_ascii(sl_cql_bytes_t v, sl_cql_str_t *out);
/* blob: any non-null value, empty included. */
SL_WUR int sl_cql_val_blob(sl_cql_bytes_t v, sl_cql_bytes_t *out);
/* inet: 4 or 16 bytes; out->port is 0. */
SL_WUR int sl_cql_val_inet(sl_cql_bytes_t v, sl_cql_inet_t *out);

/* Collections (6.11-6.13): [int] n, then n elements (list, set) or n key and
 * value pairs (map), each a [bytes]. Begin checks the whole value (trailing
 * bytes are an error) and gives the count; next then cannot fail. */
typedef struct sl_cql_coll_iter {
    sl_cql_rd_t rd;
    int32_t left;
} sl_cql_coll_iter_t;

SL_WUR int sl_cql_val_list(sl_cql_bytes_t v, sl_cql_coll_iter_t *it, int32_t *n);
SL_WUR int sl_cql_val_set(sl_cql_bytes_t v, sl_cql_coll_iter_t *it, int32_t *n);
SL_WUR int sl_cql_val_map(sl_cql_bytes_t v, sl_cql_coll_iter_t *it, int32_t *n);
/* The next list/set element; false after the last. */
bool sl_cql_coll_next(sl_cql_coll_iter_t *it, sl_cql_bytes_t *elem);
/* The next map entry; false after the last. */
bool sl_cql_map_next(sl_cql_coll_iter_t *it, sl_cql_bytes_t *key, sl_cql_bytes_t *value);

#endif
