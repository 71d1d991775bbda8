/* CQL native protocol v4: frame header, the primitive notations of the spec's
 * section 3 (readers over a bounded cursor, writers into an sl_buf_t) and the
 * request builders (section 4.1). Self-contained: depends only on src/util.
 *
 * Nothing here keeps state between calls, so every function may be called from
 * any thread as long as the objects passed to it are not shared. */
#ifndef SL_CQL_FRAME_H
#define SL_CQL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cql/types.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/common.h"

#define SL_CQL_VERSION_REQUEST 0x04
#define SL_CQL_VERSION_RESPONSE 0x84
#define SL_CQL_HEADER_LEN 9
/* The spec (2.5): "currently a frame is limited to 256MB in length". */
#define SL_CQL_MAX_BODY_DEFAULT (256u * 1024u * 1024u)

/* Header flags (2.2). Other bits are "unused and ignored". */
#define SL_CQL_FLAG_COMPRESSION 0x01
#define SL_CQL_FLAG_TRACING 0x02
#define SL_CQL_FLAG_CUSTOM_PAYLOAD 0x04
#define SL_CQL_FLAG_WARNING 0x08

typedef enum sl_cql_opcode {
    SL_CQL_OP_ERROR = 0x00,
    SL_CQL_OP_STARTUP = 0x01,
    SL_CQL_OP_READY = 0x02,
    SL_CQL_OP_AUTHENTICATE = 0x03,
    SL_CQL_OP_OPTIONS = 0x05,
    SL_CQL_OP_SUPPORTED = 0x06,
    SL_CQL_OP_QUERY = 0x07,
    SL_CQL_OP_RESULT = 0x08,
    SL_CQL_OP_PREPARE = 0x09,
    SL_CQL_OP_EXECUTE = 0x0A,
    SL_CQL_OP_REGISTER = 0x0B,
    SL_CQL_OP_EVENT = 0x0C,
    SL_CQL_OP_BATCH = 0x0D,
    SL_CQL_OP_AUTH_CHALLENGE = 0x0E,
    SL_CQL_OP_AUTH_RESPONSE = 0x0F,
    SL_CQL_OP_AUTH_SUCCESS = 0x10,
} sl_cql_opcode_t;

/* [consistency] (3). */
typedef enum sl_cql_consistency {
    SL_CQL_ANY = 0x0000,
    SL_CQL_ONE = 0x0001,
    SL_CQL_TWO = 0x0002,
    SL_CQL_THREE = 0x0003,
    SL_CQL_QUORUM = 0x0004,
    SL_CQL_ALL = 0x0005,
    SL_CQL_LOCAL_QUORUM = 0x0006,
    SL_CQL_EACH_QUORUM = 0x0007,
    SL_CQL_SERIAL = 0x0008,
    SL_CQL_LOCAL_SERIAL = 0x0009,
    SL_CQL_LOCAL_ONE = 0x000A,
} sl_cql_consistency_t;

typedef struct sl_cql_header {
    uint8_t version; /* SL_CQL_VERSION_REQUEST or SL_CQL_VERSION_RESPONSE */
    uint8_t flags;   /* SL_CQL_FLAG_* */
    int16_t stream;  /* >= 0 for requests; events use -1 */
    uint8_t opcode;  /* sl_cql_opcode_t */
    uint32_t length; /* body length in bytes */
} sl_cql_header_t;

/* One parsed frame. body borrows from the buffer given to the parser. */
typedef struct sl_cql_frame {
    sl_cql_header_t hdr;
    const uint8_t *body;
    size_t body_len;
    char err[96]; /* why parsing failed (SL_CQL_PARSE_ERROR), else "" */
} sl_cql_frame_t;

typedef enum sl_cql_parse_status {
    SL_CQL_PARSE_OK = 0,
    SL_CQL_PARSE_NEED_MORE = 1, /* not a whole frame yet: read more and call again */
    SL_CQL_PARSE_ERROR = -1,    /* the stream is corrupt: close the connection */
} sl_cql_parse_status_t;

/* Returns the opcode's name ("QUERY"), or NULL for a number that is no v4 opcode. */
const char *sl_cql_opcode_name(int opcode);
/* Returns the consistency level's name ("LOCAL_QUORUM"), or NULL if unknown. */
const char *sl_cql_consistency_name(int consistency);

/* Writes h as the 9 header bytes at out. */
void sl_cql_header_encode(const sl_cql_header_t *h, uint8_t out[SL_CQL_HEADER_LEN]);

/* Decodes the 9 bytes at p into out and checks them: the version must be
 * want_version, the opcode a v4 opcode valid in that direction (a response
 * carrying QUERY is rejected), the length not negative and at most max_body
 * (0: SL_CQL_MAX_BODY_DEFAULT). Unknown flag bits are ignored, as the spec
 * says. Returns 0, or -1 with a message in err (errlen bytes, NUL-terminated). */
SL_WUR int sl_cql_header_decode(const uint8_t p[SL_CQL_HEADER_LEN], uint8_t want_version,
                                uint32_t max_body, sl_cql_header_t *out, char *err, size_t errlen);

/* Incremental parser for response frames (version 0x84, default maximum
 * length). Looks at the len bytes at buf (borrowed; never reads past len):
 * OK: *out holds the frame (out->body points into buf) and *consumed is the
 *     number of bytes it took (header + body);
 * NEED_MORE: no whole frame yet, *consumed is 0; a bad header is reported as
 *     ERROR as soon as its 9 bytes are there, before the body arrives;
 * ERROR: out->err says why; *consumed is 0. */
SL_WUR sl_cql_parse_status_t sl_cql_frame_parse(const uint8_t *buf, size_t len, sl_cql_frame_t *out,
                                                size_t *consumed);
/* As sl_cql_frame_parse, with the expected version (0x04 parses requests) and
 * the maximum body length (0: the default) chosen by the caller. */
SL_WUR sl_cql_parse_status_t sl_cql_frame_parse_ex(const uint8_t *buf, size_t len,
                                                   uint8_t want_version, uint32_t max_body,
                                                   sl_cql_frame_t *out, size_t *consumed);

/* ---- Primitive values ------------------------------------------------------------------ */

/* sl_cql_bytes_t (cql/types.h) is a view of bytes owned by someone else:
 * len < 0 means null ([bytes], [value]: -1) or not set ([value]: -2), and ptr
 * is then NULL. */
#define SL_CQL_LEN_NULL (-1)
#define SL_CQL_LEN_UNSET (-2)

/* A view of a string owned by someone else; not NUL-terminated. */
typedef struct sl_cql_str {
    const char *data;
    size_t len;
} sl_cql_str_t;

/* [inet]: a 4- or 16-byte address and a port. */
typedef struct sl_cql_inet {
    uint8_t addr_len; /* 4 or 16 */
    uint8_t addr[16];
    int32_t port;
} sl_cql_inet_t;

/* A [string map] or [string multimap] entry; strings are NUL-terminated arena copies. */
typedef struct sl_cql_strmap_entry {
    const char *key;
    const char *value;         /* [string map] */
    const char *const *values; /* [string multimap] */
    size_t n_values;
} sl_cql_strmap_entry_t;

typedef struct sl_cql_bytesmap_entry {
    const char *key;      /* arena copy */
    sl_cql_bytes_t value; /* view into the input */
} sl_cql_bytesmap_entry_t;

/* A bounded read cursor. Every reader checks the remaining length first and
 * never reads past p + len. Errors are sticky: once a read fails, err is set
 * (a static string) and every later read fails too, so a caller may check
 * once after a sequence of reads. Readers return 0 or -1. */
typedef struct sl_cql_rd {
    const uint8_t *p; /* borrowed */
    size_t len;
    size_t off;
    const char *err; /* NULL while all reads succeeded */
} sl_cql_rd_t;

/* Starts a cursor over the len bytes at p (borrowed, must outlive the cursor
 * and every view read from it). */
void sl_cql_rd_init(sl_cql_rd_t *r, const void *p, size_t len);
/* Bytes left to read. */
size_t sl_cql_rd_remaining(const sl_cql_rd_t *r);

SL_WUR int sl_cql_rd_byte(sl_cql_rd_t *r, uint8_t *out);
SL_WUR int sl_cql_rd_short(sl_cql_rd_t *r, uint16_t *out);
SL_WUR int sl_cql_rd_int(sl_cql_rd_t *r, int32_t *out);
SL_WUR int sl_cql_rd_long(sl_cql_rd_t *r, int64_t *out);
/* Reads n raw bytes as a view. */
SL_WUR int sl_cql_rd_raw(sl_cql_rd_t *r, size_t n, const uint8_t **out);
/* [string] and [long string] as views (a negative [long string] length fails). */
SL_WUR int sl_cql_rd_string(sl_cql_rd_t *r, sl_cql_str_t *out);
SL_WUR int sl_cql_rd_long_string(sl_cql_rd_t *r, sl_cql_str_t *out);
/* [string] copied into arena a, NUL-terminated (an embedded NUL ends it early). */
SL_WUR int sl_cql_rd_string_dup(sl_cql_rd_t *r, sl_arena_t *a, const char **out);
SL_WUR int sl_cql_rd_uuid(sl_cql_rd_t *r, uint8_t out[16]);
/* [string list]: *out is an arena array of *n arena strings. */
SL_WUR int sl_cql_rd_string_list(sl_cql_rd_t *r, sl_arena_t *a, const char *const **out, size_t *n);
/* [bytes]: a view; any negative length is null (len -1). */
SL_WUR int sl_cql_rd_bytes(sl_cql_rd_t *r, sl_cql_bytes_t *out);
/* [value]: a view; -1 null, -2 not set, below -2 fails. */
SL_WUR int sl_cql_rd_value(sl_cql_rd_t *r, sl_cql_bytes_t *out);
/* [short bytes]: a view. */
SL_WUR int sl_cql_rd_short_bytes(sl_cql_rd_t *r, sl_cql_bytes_t *out);
/* The <id> of an [option]; its <value> depends on the id and is read by the
 * caller (see sl_cql_rd_type in result.h for the type options). */
SL_WUR int sl_cql_rd_option_id(sl_cql_rd_t *r, uint16_t *out);
SL_WUR int sl_cql_rd_inet(sl_cql_rd_t *r, sl_cql_inet_t *out);
/* [consistency]: fails on a value that is no known level. */
SL_WUR int sl_cql_rd_consistency(sl_cql_rd_t *r, uint16_t *out);
/* Maps: *out is an arena array of *n entries. */
SL_WUR int sl_cql_rd_string_map(sl_cql_rd_t *r, sl_arena_t *a, const sl_cql_strmap_entry_t **out,
                                size_t *n);
SL_WUR int sl_cql_rd_string_multimap(sl_cql_rd_t *r, sl_arena_t *a,
                                     const sl_cql_strmap_entry_t **out, size_t *n);
SL_WUR int sl_cql_rd_bytes_map(sl_cql_rd_t *r, sl_arena_t *a, const sl_cql_bytesmap_entry_t **out,
                               size_t *n);

/* Writers append to a growable buffer. Allocation cannot fail (it aborts);
 * what can fail is a value the notation cannot hold (a [string] longer than
 * 65535 bytes, a [value] length below -2, ...): the writer then sets err (a
 * static string, sticky) and writes nothing more. Check err once at the end. */
typedef struct sl_cql_wr {
    sl_buf_t *buf; /* borrowed */
    const char *err;
} sl_cql_wr_t;

void sl_cql_wr_init(sl_cql_wr_t *w, sl_buf_t *buf);
void sl_cql_wr_byte(sl_cql_wr_t *w, uint8_t v);
void sl_cql_wr_short(sl_cql_wr_t *w, uint16_t v);
void sl_cql_wr_int(sl_cql_wr_t *w, int32_t v);
void sl_cql_wr_long(sl_cql_wr_t *w, int64_t v);
void sl_cql_wr_raw(sl_cql_wr_t *w, const void *p, size_t n);
void sl_cql_wr_string(sl_cql_wr_t *w, const char *s, size_t n);
void sl_cql_wr_long_string(sl_cql_wr_t *w, const char *s, size_t n);
void sl_cql_wr_uuid(sl_cql_wr_t *w, const uint8_t uuid[16]);
/* n NUL-terminated strings. */
void sl_cql_wr_string_list(sl_cql_wr_t *w, const char *const *s, size_t n);
/* [bytes]: v.len < 0 writes null (-1). */
void sl_cql_wr_bytes(sl_cql_wr_t *w, sl_cql_bytes_t v);
/* [value]: v.len -1 null, -2 not set; below -2 is an error. */
void sl_cql_wr_value(sl_cql_wr_t *w, sl_cql_bytes_t v);
void sl_cql_wr_short_bytes(sl_cql_wr_t *w, const uint8_t *p, size_t n);
/* An [option] whose value is empty (a native type id). */
void sl_cql_wr_option(sl_cql_wr_t *w, uint16_t id);
/* [option list] of value-less options. */
void sl_cql_wr_option_list(sl_cql_wr_t *w, const uint16_t *ids, size_t n);
/* addr_len must be 4 or 16. */
void sl_cql_wr_inet(sl_cql_wr_t *w, const sl_cql_inet_t *in);
void sl_cql_wr_consistency(sl_cql_wr_t *w, uint16_t cl);
/* Maps from n NUL-terminated keys and values (multimap: n_values[i] values each). */
void sl_cql_wr_string_map(sl_cql_wr_t *w, const char *const *keys, const char *const *values,
                          size_t n);
void sl_cql_wr_string_multimap(sl_cql_wr_t *w, const char *const *keys,
                               const char *const *const *values, const size_t *n_values, size_t n);
void sl_cql_wr_bytes_map(sl_cql_wr_t *w, const char *const *keys, const sl_cql_bytes_t *values,
                         size_t n);

/* ---- Requests (4.1) --------------------------------------------------------------------
 * Each builder appends one whole request frame (header with version 0x04, the
 * given stream id, flags 0, and the body) to out. Returns 0, or -1 with a
 * static message in *err and out unchanged. stream must be >= 0. Strings are
 * borrowed for the call only. */

/* <query_parameters> of QUERY and EXECUTE (4.1.4). */
typedef struct sl_cql_params {
    uint16_t consistency;
    const sl_cql_bytes_t *values; /* n_values [value]s; flag 0x01 when n_values > 0 */
    size_t n_values;
    const char *const *names;    /* NULL, or a name per value (flag 0x40) */
    bool skip_metadata;          /* flag 0x02 */
    int32_t page_size;           /* > 0: flag 0x04; must not be negative */
    sl_cql_bytes_t paging_state; /* ptr != NULL: flag 0x08 */
    uint16_t serial_consistency; /* 0: absent; else SERIAL or LOCAL_SERIAL (flag 0x10) */
    bool has_timestamp;          /* flag 0x20 */
    int64_t timestamp;           /* microseconds; negative is refused (4.1.4) */
} sl_cql_params_t;

/* STARTUP with CQL_VERSION 3.0.0 and, if compression is not NULL, COMPRESSION. */
SL_WUR int sl_cql_req_startup(sl_buf_t *out, int16_t stream, const char *compression,
                              const char **err);
SL_WUR int sl_cql_req_options(sl_buf_t *out, int16_t stream, const char **err);
/* AUTH_RESPONSE carrying token (a [bytes]; len < 0 sends null). */
SL_WUR int sl_cql_req_auth_response(sl_buf_t *out, int16_t stream, sl_cql_bytes_t token,
                                    const char **err);
/* Appends the SASL PLAIN token "\0user\0password" (RFC 4616, empty authzid)
 * to token, as PasswordAuthenticator expects it. Strings are borrowed. */
void sl_cql_sasl_plain(sl_buf_t *token, const char *user, const char *password);
SL_WUR int sl_cql_req_query(sl_buf_t *out, int16_t stream, const char *query, size_t query_len,
                            const sl_cql_params_t *p, const char **err);
SL_WUR int sl_cql_req_prepare(sl_buf_t *out, int16_t stream, const char *query, size_t query_len,
                              const char **err);
SL_WUR int sl_cql_req_execute(sl_buf_t *out, int16_t stream, const uint8_t *id, size_t id_len,
                              const sl_cql_params_t *p, const char **err);

typedef enum sl_cql_batch_type {
    SL_CQL_BATCH_LOGGED = 0,
    SL_CQL_BATCH_UNLOGGED = 1,
    SL_CQL_BATCH_COUNTER = 2,
} sl_cql_batch_type_t;

/* One statement of a BATCH: a prepared id (id != NULL) or a query string. */
typedef struct sl_cql_batch_stmt {
    const uint8_t *id;
    size_t id_len;
    const char *query;
    size_t query_len;
    const sl_cql_bytes_t *values;
    size_t n_values;
} sl_cql_batch_stmt_t;

typedef struct sl_cql_batch {
    sl_cql_batch_type_t type;
    const sl_cql_batch_stmt_t *stmts;
    size_t n_stmts; /* at most 65535 */
    uint16_t consistency;
    uint16_t serial_consistency; /* 0: absent; else SERIAL or LOCAL_SERIAL */
    bool has_timestamp;
    int64_t timestamp; /* microseconds, not negative */
} sl_cql_batch_t;

/* BATCH (4.1.7). Named values (flag 0x40) are never sent: the spec says the
 * feature does not work (CASSANDRA-10246). */
SL_WUR int sl_cql_req_batch(sl_buf_t *out, int16_t stream, const sl_cql_batch_t *b,
                            const char **err);
/* REGISTER for n event types ("TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE"). */
SL_WUR int sl_cql_req_register(sl_buf_t *out, int16_t stream, const char *const *events, size_t n,
                               const char **err);

#endif
