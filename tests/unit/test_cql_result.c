/* CQL v4 response decoding: every response opcode, RESULT kind and error
 * code, from bodies written by hand from the spec; every prefix of each body
 * must fail cleanly; the native type value decoders. */
#include <math.h>
#include <stdlib.h>

#include "cql/result.h"
#include "test.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

typedef struct {
    const char *name;
    uint8_t opcode;
    uint8_t flags;
    const uint8_t *body;
    size_t len;
} fixture_t;

/* ---- Hand-written bodies ------------------------------------------------------------------ */

#define ERR_UNAVAILABLE                                                                            \
    "\x00\x00\x10\x00"                                                                             \
    "\x00\x02no"                                                                                   \
    "\x00\x04"                                                                                     \
    "\x00\x00\x00\x03"                                                                             \
    "\x00\x00\x00\x01"
#define ERR_WRITE_TIMEOUT_COUNTER                                                                  \
    "\x00\x00\x11\x00"                                                                             \
    "\x00\x02wt"                                                                                   \
    "\x00\x01"                                                                                     \
    "\x00\x00\x00\x00"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x07"                                                                                     \
    "COUNTER"
#define ERR_WRITE_TIMEOUT_SIMPLE                                                                   \
    "\x00\x00\x11\x00"                                                                             \
    "\x00\x00"                                                                                     \
    "\x00\x0a"                                                                                     \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x06"                                                                                     \
    "SIMPLE"
#define ERR_READ_TIMEOUT                                                                           \
    "\x00\x00\x12\x00"                                                                             \
    "\x00\x02rt"                                                                                   \
    "\x00\x06"                                                                                     \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x02"                                                                             \
    "\x01"
#define ERR_READ_FAILURE                                                                           \
    "\x00\x00\x13\x00"                                                                             \
    "\x00\x02rf"                                                                                   \
    "\x00\x04"                                                                                     \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "\x00"
#define ERR_WRITE_FAILURE                                                                          \
    "\x00\x00\x15\x00"                                                                             \
    "\x00\x02wf"                                                                                   \
    "\x00\x05"                                                                                     \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x03"                                                                             \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x09"                                                                                     \
    "BATCH_LOG"
#define ERR_FUNCTION_FAILURE                                                                       \
    "\x00\x00\x14\x00"                                                                             \
    "\x00\x02"                                                                                     \
    "ff"                                                                                           \
    "\x00\x02"                                                                                     \
    "ks"                                                                                           \
    "\x00\x02"                                                                                     \
    "fn"                                                                                           \
    "\x00\x02"                                                                                     \
    "\x00\x03int"                                                                                  \
    "\x00\x04text"
#define ERR_ALREADY_EXISTS                                                                         \
    "\x00\x00\x24\x00"                                                                             \
    "\x00\x02"                                                                                     \
    "ae"                                                                                           \
    "\x00\x02"                                                                                     \
    "ks"                                                                                           \
    "\x00\x00"
#define ERR_UNPREPARED                                                                             \
    "\x00\x00\x25\x00"                                                                             \
    "\x00\x02up"                                                                                   \
    "\x00\x02\xde\xad"
#define ERR_SYNTAX                                                                                 \
    "\x00\x00\x20\x00"                                                                             \
    "\x00\x03"                                                                                     \
    "bad"

#define AUTHENTICATE                                                                               \
    "\x00\x2f"                                                                                     \
    "org.apache.cassandra.auth.PasswordAuthenticator"
#define AUTH_CHALLENGE "\x00\x00\x00\x03\x01\x02\x03"
#define AUTH_SUCCESS "\xff\xff\xff\xff"
#define SUPPORTED                                                                                  \
    "\x00\x02"                                                                                     \
    "\x00\x0b"                                                                                     \
    "CQL_VERSION"                                                                                  \
    "\x00\x01"                                                                                     \
    "\x00\x05"                                                                                     \
    "3.4.5"                                                                                        \
    "\x00\x0b"                                                                                     \
    "COMPRESSION"                                                                                  \
    "\x00\x02"                                                                                     \
    "\x00\x06"                                                                                     \
    "snappy"                                                                                       \
    "\x00\x03"                                                                                     \
    "lz4"

#define RESULT_VOID "\x00\x00\x00\x01"
/* Rows, global table spec ks.t, columns id int, tags list<varchar>,
 * m map<varchar, bigint>; two rows: (1, ['a', 'bc'], {'k': 7}) and
 * (null, [], null). */
#define RESULT_ROWS                                                                                \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x03"                                                                             \
    "\x00\x02ks"                                                                                   \
    "\x00\x01t"                                                                                    \
    "\x00\x02id"                                                                                   \
    "\x00\x09"                                                                                     \
    "\x00\x04tags"                                                                                 \
    "\x00\x20\x00\x0d"                                                                             \
    "\x00\x01m"                                                                                    \
    "\x00\x21\x00\x0d\x00\x02"                                                                     \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x04\x00\x00\x00\x01"                                                             \
    "\x00\x00\x00\x0f"                                                                             \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "a"                                                                                            \
    "\x00\x00\x00\x02"                                                                             \
    "bc"                                                                                           \
    "\x00\x00\x00\x15"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "k"                                                                                            \
    "\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x07"                                             \
    "\xff\xff\xff\xff"                                                                             \
    "\x00\x00\x00\x04\x00\x00\x00\x00"                                                             \
    "\xff\xff\xff\xff"
/* Rows with Has_more_pages and No_metadata: 1 column, paging state "abc",
 * one row holding the int 42. */
#define RESULT_ROWS_PAGED                                                                          \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x06"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x03"                                                                             \
    "abc"                                                                                          \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x04\x00\x00\x00\x2a"
/* Rows with per-column table specs and nested types: u of UDT k.addr
 * (street varchar, zip int), v tuple<int, set<uuid>>, w custom; no rows. */
#define RESULT_ROWS_TYPES                                                                          \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x00"                                                                             \
    "\x00\x00\x00\x03"                                                                             \
    "\x00\x01k\x00\x01t\x00\x01u"                                                                  \
    "\x00\x30\x00\x01k\x00\x04"                                                                    \
    "addr"                                                                                         \
    "\x00\x02"                                                                                     \
    "\x00\x06street\x00\x0d"                                                                       \
    "\x00\x03zip\x00\x09"                                                                          \
    "\x00\x01k\x00\x01t\x00\x01v"                                                                  \
    "\x00\x31\x00\x02\x00\x09\x00\x22\x00\x0c"                                                     \
    "\x00\x01k\x00\x01t\x00\x01w"                                                                  \
    "\x00\x00\x00\x09org.x.Foo"                                                                    \
    "\x00\x00\x00\x00"
#define RESULT_SET_KEYSPACE                                                                        \
    "\x00\x00\x00\x03"                                                                             \
    "\x00\x03ks1"
/* Prepared: id 01020304; bind markers a int, b varchar in ks.t with the
 * partition key at index 1; result metadata empty (No_metadata, 0 columns). */
#define RESULT_PREPARED                                                                            \
    "\x00\x00\x00\x04"                                                                             \
    "\x00\x04\x01\x02\x03\x04"                                                                     \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x00\x00\x02"                                                                             \
    "\x00\x00\x00\x01"                                                                             \
    "\x00\x01"                                                                                     \
    "\x00\x02ks\x00\x01t"                                                                          \
    "\x00\x01"                                                                                     \
    "a\x00\x09"                                                                                    \
    "\x00\x01"                                                                                     \
    "b\x00\x0d"                                                                                    \
    "\x00\x00\x00\x04"                                                                             \
    "\x00\x00\x00\x00"
#define RESULT_SCHEMA_KEYSPACE                                                                     \
    "\x00\x00\x00\x05"                                                                             \
    "\x00\x07"                                                                                     \
    "CREATED"                                                                                      \
    "\x00\x08"                                                                                     \
    "KEYSPACE"                                                                                     \
    "\x00\x02ks"
#define RESULT_SCHEMA_TABLE                                                                        \
    "\x00\x00\x00\x05"                                                                             \
    "\x00\x07"                                                                                     \
    "UPDATED"                                                                                      \
    "\x00\x05"                                                                                     \
    "TABLE"                                                                                        \
    "\x00\x02ks"                                                                                   \
    "\x00\x03tbl"
#define RESULT_SCHEMA_FUNCTION                                                                     \
    "\x00\x00\x00\x05"                                                                             \
    "\x00\x07"                                                                                     \
    "DROPPED"                                                                                      \
    "\x00\x08"                                                                                     \
    "FUNCTION"                                                                                     \
    "\x00\x02ks"                                                                                   \
    "\x00\x02"                                                                                     \
    "fn"                                                                                           \
    "\x00\x02\x00\x03int\x00\x06"                                                                  \
    "bigint"
#define EVENT_TOPOLOGY                                                                             \
    "\x00\x0f"                                                                                     \
    "TOPOLOGY_CHANGE"                                                                              \
    "\x00\x08"                                                                                     \
    "NEW_NODE"                                                                                     \
    "\x04\x7f\x00\x00\x01"                                                                         \
    "\x00\x00\x23\x52"
#define EVENT_STATUS                                                                               \
    "\x00\x0d"                                                                                     \
    "STATUS_CHANGE"                                                                                \
    "\x00\x04"                                                                                     \
    "DOWN"                                                                                         \
    "\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"                         \
    "\x00\x00\x23\x52"
#define EVENT_SCHEMA                                                                               \
    "\x00\x0d"                                                                                     \
    "SCHEMA_CHANGE"                                                                                \
    "\x00\x07"                                                                                     \
    "CREATED"                                                                                      \
    "\x00\x04"                                                                                     \
    "TYPE"                                                                                         \
    "\x00\x02ks"                                                                                   \
    "\x00\x04"                                                                                     \
    "addr"
/* tracing id 00..0f, warnings ["w1"], custom payload {"p": "q"}, then Void */
#define PRELUDE_VOID                                                                               \
    "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"                             \
    "\x00\x01\x00\x02w1"                                                                           \
    "\x00\x01\x00\x01p\x00\x00\x00\x01q" RESULT_VOID

#define FX(name, op, flags, body)                                                                  \
    {                                                                                              \
        name, op, flags, LIT(body)                                                                 \
    }

static const fixture_t fixtures[] = {
    FX("unavailable", SL_CQL_OP_ERROR, 0, ERR_UNAVAILABLE),
    FX("write_timeout_counter", SL_CQL_OP_ERROR, 0, ERR_WRITE_TIMEOUT_COUNTER),
    FX("write_timeout_simple", SL_CQL_OP_ERROR, 0, ERR_WRITE_TIMEOUT_SIMPLE),
    FX("read_timeout", SL_CQL_OP_ERROR, 0, ERR_READ_TIMEOUT),
    FX("read_failure", SL_CQL_OP_ERROR, 0, ERR_READ_FAILURE),
    FX("write_failure", SL_CQL_OP_ERROR, 0, ERR_WRITE_FAILURE),
    FX("function_failure", SL_CQL_OP_ERROR, 0, ERR_FUNCTION_FAILURE),
    FX("already_exists", SL_CQL_OP_ERROR, 0, ERR_ALREADY_EXISTS),
    FX("unprepared", SL_CQL_OP_ERROR, 0, ERR_UNPREPARED),
    FX("syntax", SL_CQL_OP_ERROR, 0, ERR_SYNTAX),
    FX("authenticate", SL_CQL_OP_AUTHENTICATE, 0, AUTHENTICATE),
    FX("auth_challenge", SL_CQL_OP_AUTH_CHALLENGE, 0, AUTH_CHALLENGE),
    FX("auth_success", SL_CQL_OP_AUTH_SUCCESS, 0, AUTH_SUCCESS),
    FX("supported", SL_CQL_OP_SUPPORTED, 0, SUPPORTED),
    FX("void", SL_CQL_OP_RESULT, 0, RESULT_VOID),
    FX("rows", SL_CQL_OP_RESULT, 0, RESULT_ROWS),
    FX("rows_paged", SL_CQL_OP_RESULT, 0, RESULT_ROWS_PAGED),
    FX("rows_types", SL_CQL_OP_RESULT, 0, RESULT_ROWS_TYPES),
    FX("set_keyspace", SL_CQL_OP_RESULT, 0, RESULT_SET_KEYSPACE),
    FX("prepared", SL_CQL_OP_RESULT, 0, RESULT_PREPARED),
    FX("schema_keyspace", SL_CQL_OP_RESULT, 0, RESULT_SCHEMA_KEYSPACE),
    FX("schema_table", SL_CQL_OP_RESULT, 0, RESULT_SCHEMA_TABLE),
    FX("schema_function", SL_CQL_OP_RESULT, 0, RESULT_SCHEMA_FUNCTION),
    FX("event_topology", SL_CQL_OP_EVENT, 0, EVENT_TOPOLOGY),
    FX("event_status", SL_CQL_OP_EVENT, 0, EVENT_STATUS),
    FX("event_schema", SL_CQL_OP_EVENT, 0, EVENT_SCHEMA),
    FX("prelude", SL_CQL_OP_RESULT,
       SL_CQL_FLAG_TRACING | SL_CQL_FLAG_WARNING | SL_CQL_FLAG_CUSTOM_PAYLOAD, PRELUDE_VOID),
};

/* Decodes body from a heap copy of exactly len bytes (so ASan sees overreads). */
static int decode(uint8_t op, uint8_t flags, const uint8_t *body, size_t len, sl_arena_t *a,
                  sl_cql_response_t *out, char *err, size_t errlen, uint8_t **copy)
{
    *copy = malloc(len ? len : 1);
    memcpy(*copy, body, len);
    return sl_cql_response_decode_body(op, flags, *copy, len, a, out, err, errlen);
}

static const fixture_t *fx(const char *name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(fixtures); i++) {
        if (strcmp(fixtures[i].name, name) == 0) {
            return &fixtures[i];
        }
    }
    return NULL;
}

/* Decodes fixture name into *r (arena a); the copy of the body is freed by the caller. */
static uint8_t *decode_fx(const char *name, sl_arena_t *a, sl_cql_response_t *r)
{
    const fixture_t *f = fx(name);
    char err[160] = "";
    uint8_t *copy;
    int rc = decode(f->opcode, f->flags, f->body, f->len, a, r, err, sizeof(err), &copy);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
    }
    CHECK_INT(rc, 0);
    return copy;
}

TEST(test_every_fixture_and_prefix)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    for (size_t i = 0; i < SL_ARRAY_LEN(fixtures); i++) {
        const fixture_t *f = &fixtures[i];
        sl_cql_response_t r;
        char err[160];
        uint8_t *copy;
        if (decode(f->opcode, f->flags, f->body, f->len, &a, &r, err, sizeof(err), &copy) != 0) {
            fprintf(stderr, "%s: %s\n", f->name, err);
            CHECK(0);
        }
        free(copy);
        for (size_t n = 0; n < f->len; n++) {
            err[0] = '\0';
            if (decode(f->opcode, f->flags, f->body, n, &a, &r, err, sizeof(err), &copy) == 0) {
                fprintf(stderr, "%s: prefix of %zu bytes decoded\n", f->name, n);
                CHECK(0);
            }
            CHECK(err[0] != '\0');
            free(copy);
        }
        /* extra bytes after the body are ignored (1. Overview) */
        uint8_t *longer = malloc(f->len + 3);
        memcpy(longer, f->body, f->len);
        memset(longer + f->len, 0xee, 3);
        CHECK_INT(sl_cql_response_decode_body(f->opcode, f->flags, longer, f->len + 3, &a, &r, err,
                                              sizeof(err)),
                  0);
        free(longer);
        sl_arena_reset(&a);
    }
    sl_arena_free(&a);
}

/* ---- ERROR ------------------------------------------------------------------------------- */

TEST(test_error_bodies)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    uint8_t *c;

    c = decode_fx("unavailable", &a, &r);
    CHECK_INT(r.error.code, SL_CQL_ERR_UNAVAILABLE);
    CHECK_STR(r.error.message, "no");
    CHECK_INT(r.error.consistency, SL_CQL_QUORUM);
    CHECK_INT(r.error.required, 3);
    CHECK_INT(r.error.alive, 1);
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_RETRIABLE);
    CHECK(!r.error.maybe_applied);
    CHECK(sl_cql_error_retry_ok(&r.error, false));
    free(c);

    c = decode_fx("write_timeout_counter", &a, &r);
    CHECK_INT(r.error.code, SL_CQL_ERR_WRITE_TIMEOUT);
    CHECK_INT(r.error.consistency, SL_CQL_ONE);
    CHECK_INT(r.error.received, 0);
    CHECK_INT(r.error.blockfor, 1);
    CHECK_INT(r.error.write_type, SL_CQL_WRITE_COUNTER);
    CHECK_STR(r.error.write_type_name, "COUNTER");
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_RETRIABLE);
    CHECK(r.error.maybe_applied);
    CHECK(!sl_cql_error_retry_ok(&r.error, true)); /* counters: never */
    free(c);

    c = decode_fx("write_timeout_simple", &a, &r);
    CHECK_STR(r.error.message, "");
    CHECK_INT(r.error.consistency, SL_CQL_LOCAL_ONE);
    CHECK_INT(r.error.write_type, SL_CQL_WRITE_SIMPLE);
    CHECK(sl_cql_error_retry_ok(&r.error, true));
    CHECK(!sl_cql_error_retry_ok(&r.error, false));
    free(c);

    c = decode_fx("read_timeout", &a, &r);
    CHECK_INT(r.error.code, SL_CQL_ERR_READ_TIMEOUT);
    CHECK_INT(r.error.consistency, SL_CQL_LOCAL_QUORUM);
    CHECK_INT(r.error.received, 1);
    CHECK_INT(r.error.blockfor, 2);
    CHECK(r.error.data_present);
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_RETRIABLE);
    free(c);

    c = decode_fx("read_failure", &a, &r);
    CHECK_INT(r.error.code, SL_CQL_ERR_READ_FAILURE);
    CHECK_INT(r.error.numfailures, 1);
    CHECK(!r.error.data_present);
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_PERMANENT);
    free(c);

    c = decode_fx("write_failure", &a, &r);
    CHECK_INT(r.error.code, SL_CQL_ERR_WRITE_FAILURE);
    CHECK_INT(r.error.consistency, SL_CQL_ALL);
    CHECK_INT(r.error.received, 2);
    CHECK_INT(r.error.blockfor, 3);
    CHECK_INT(r.error.numfailures, 2);
    CHECK_INT(r.error.write_type, SL_CQL_WRITE_BATCH_LOG);
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_PERMANENT);
    free(c);

    c = decode_fx("function_failure", &a, &r);
    CHECK_STR(r.error.keyspace, "ks");
    CHECK_STR(r.error.function, "fn");
    CHECK_INT(r.error.n_arg_types, 2);
    CHECK_STR(r.error.arg_types[1], "text");
    free(c);

    c = decode_fx("already_exists", &a, &r);
    CHECK_STR(r.error.keyspace, "ks");
    CHECK_STR(r.error.table, "");
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_PERMANENT);
    free(c);

    c = decode_fx("unprepared", &a, &r);
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_REPREPARE);
    CHECK_INT(r.error.unprepared_id.len, 2);
    CHECK(r.error.unprepared_id.ptr[0] == 0xde && r.error.unprepared_id.ptr[1] == 0xad);
    free(c); /* the id is an arena copy: still readable */
    CHECK(r.error.unprepared_id.ptr[1] == 0xad);

    c = decode_fx("syntax", &a, &r);
    CHECK_INT(r.error.code, SL_CQL_ERR_SYNTAX);
    CHECK_STR(r.error.message, "bad");
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_PERMANENT);
    CHECK(!sl_cql_error_retry_ok(&r.error, true));
    free(c);
    sl_arena_free(&a);
}

TEST(test_error_classes)
{
    static const struct {
        int32_t code;
        sl_cql_errclass_t cls;
        const char *name;
    } want[] = {
        {0x0000, SL_CQL_ERRCLASS_RETRIABLE, "Server_error"},
        {0x000A, SL_CQL_ERRCLASS_FATAL, "Protocol_error"},
        {0x0100, SL_CQL_ERRCLASS_FATAL, "Authentication_error"},
        {0x1000, SL_CQL_ERRCLASS_RETRIABLE, "Unavailable"},
        {0x1001, SL_CQL_ERRCLASS_RETRIABLE, "Overloaded"},
        {0x1002, SL_CQL_ERRCLASS_RETRIABLE, "Is_bootstrapping"},
        {0x1003, SL_CQL_ERRCLASS_RETRIABLE, "Truncate_error"},
        {0x1100, SL_CQL_ERRCLASS_RETRIABLE, "Write_timeout"},
        {0x1200, SL_CQL_ERRCLASS_RETRIABLE, "Read_timeout"},
        {0x1300, SL_CQL_ERRCLASS_PERMANENT, "Read_failure"},
        {0x1400, SL_CQL_ERRCLASS_PERMANENT, "Function_failure"},
        {0x1500, SL_CQL_ERRCLASS_PERMANENT, "Write_failure"},
        {0x2000, SL_CQL_ERRCLASS_PERMANENT, "Syntax_error"},
        {0x2100, SL_CQL_ERRCLASS_PERMANENT, "Unauthorized"},
        {0x2200, SL_CQL_ERRCLASS_PERMANENT, "Invalid"},
        {0x2300, SL_CQL_ERRCLASS_PERMANENT, "Config_error"},
        {0x2400, SL_CQL_ERRCLASS_PERMANENT, "Already_exists"},
        {0x2500, SL_CQL_ERRCLASS_REPREPARE, "Unprepared"},
        {0x7777, SL_CQL_ERRCLASS_PERMANENT, NULL},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++) {
        CHECK_INT(sl_cql_error_class(want[i].code), want[i].cls);
        const char *name = sl_cql_error_name(want[i].code);
        CHECK(want[i].name == NULL ? name == NULL : name && strcmp(name, want[i].name) == 0);
    }
    /* refused before execution: safe to retry even when not idempotent */
    CHECK(!sl_cql_error_maybe_applied(SL_CQL_ERR_OVERLOADED));
    CHECK(!sl_cql_error_maybe_applied(SL_CQL_ERR_IS_BOOTSTRAPPING));
    CHECK(sl_cql_error_maybe_applied(SL_CQL_ERR_SERVER));

    /* a code-only error (Overloaded) and an unknown code decode too */
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    char err[160];
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_ERROR, 0, LIT("\x00\x00\x10\x01\x00\x01x"), &a,
                                          &r, err, sizeof(err)),
              0);
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_RETRIABLE);
    CHECK(sl_cql_error_retry_ok(&r.error, false));
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_ERROR, 0, LIT("\x00\x00\x77\x77\x00\x00"), &a,
                                          &r, err, sizeof(err)),
              0);
    CHECK_INT(r.error.cls, SL_CQL_ERRCLASS_PERMANENT);
    /* an unknown write type string */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_ERROR, 0,
                                          LIT("\x00\x00\x11\x00\x00\x00\x00\x01\x00\x00\x00\x00"
                                              "\x00\x00\x00\x01\x00\x03"
                                              "CAS"),
                                          &a, &r, err, sizeof(err)),
              0);
    CHECK_INT(r.error.write_type, SL_CQL_WRITE_CAS);
    sl_arena_free(&a);
}

/* ---- Other responses ---------------------------------------------------------------------- */

TEST(test_auth_supported_ready)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    char err[160];
    uint8_t *c;

    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_READY, 0, NULL, 0, &a, &r, err, sizeof(err)),
              0);
    c = decode_fx("authenticate", &a, &r);
    CHECK_STR(r.authenticator, "org.apache.cassandra.auth.PasswordAuthenticator");
    free(c);
    c = decode_fx("auth_challenge", &a, &r);
    CHECK_INT(r.token.len, 3);
    CHECK(r.token.ptr[2] == 0x03);
    free(c);
    c = decode_fx("auth_success", &a, &r);
    CHECK_INT(r.token.len, -1);
    free(c);
    c = decode_fx("supported", &a, &r);
    CHECK_INT(r.n_supported, 2);
    CHECK_STR(r.supported[0].key, "CQL_VERSION");
    CHECK_INT(r.supported[0].n_values, 1);
    CHECK_STR(r.supported[0].values[0], "3.4.5");
    CHECK_STR(r.supported[1].key, "COMPRESSION");
    CHECK_INT(r.supported[1].n_values, 2);
    CHECK_STR(r.supported[1].values[0], "snappy");
    CHECK_STR(r.supported[1].values[1], "lz4");
    free(c);
    /* compressed bodies and request opcodes are refused */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, SL_CQL_FLAG_COMPRESSION,
                                          LIT(RESULT_VOID), &a, &r, err, sizeof(err)),
              -1);
    CHECK_CONTAINS(err, "compress");
    CHECK_INT(
        sl_cql_response_decode_body(SL_CQL_OP_QUERY, 0, LIT(RESULT_VOID), &a, &r, err, sizeof(err)),
        -1);
    sl_arena_free(&a);
}

TEST(test_prelude)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    uint8_t *c = decode_fx("prelude", &a, &r);
    CHECK(r.has_tracing_id);
    CHECK(r.tracing_id[0] == 0 && r.tracing_id[15] == 15);
    CHECK_INT(r.n_warnings, 1);
    CHECK_STR(r.warnings[0], "w1");
    CHECK_INT(r.n_payload, 1);
    CHECK_STR(r.payload[0].key, "p");
    CHECK(r.payload[0].value.len == 1 && r.payload[0].value.ptr[0] == 'q');
    CHECK_INT(r.result.kind, SL_CQL_RESULT_VOID);
    free(c);
    sl_arena_free(&a);
}

/* ---- RESULT ------------------------------------------------------------------------------ */

TEST(test_result_rows)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    uint8_t *c = decode_fx("rows", &a, &r);
    const sl_cql_rows_t *rows = &r.result.rows;
    CHECK_INT(r.result.kind, SL_CQL_RESULT_ROWS);
    CHECK_INT(rows->meta.flags, SL_CQL_META_GLOBAL_TABLES_SPEC);
    CHECK_INT(rows->meta.n_cols, 3);
    CHECK_INT(rows->meta.paging_state.len, -1);
    CHECK_STR(rows->meta.cols[0].keyspace, "ks");
    CHECK_STR(rows->meta.cols[2].table, "t");
    CHECK_STR(rows->meta.cols[0].name, "id");
    CHECK_INT(rows->meta.cols[0].type.id, SL_CQL_COL_INT);
    CHECK_STR(rows->meta.cols[1].name, "tags");
    CHECK_INT(rows->meta.cols[1].type.id, SL_CQL_COL_LIST);
    CHECK_INT(rows->meta.cols[1].type.n_params, 1);
    CHECK_INT(rows->meta.cols[1].type.params[0].id, SL_CQL_COL_VARCHAR);
    CHECK_INT(rows->meta.cols[2].type.id, SL_CQL_COL_MAP);
    CHECK_INT(rows->meta.cols[2].type.params[0].id, SL_CQL_COL_VARCHAR);
    CHECK_INT(rows->meta.cols[2].type.params[1].id, SL_CQL_COL_BIGINT);
    CHECK_INT(rows->n_rows, 2);

    sl_cql_row_iter_t it;
    sl_cql_bytes_t cells[3];
    sl_cql_rows_iter(rows, &it);
    CHECK(sl_cql_rows_next(&it, cells));
    int32_t id = 0;
    CHECK_INT(sl_cql_val_int(cells[0], &id), 0);
    CHECK_INT(id, 1);
    sl_cql_coll_iter_t ci;
    int32_t n = -1;
    sl_cql_bytes_t e, k, v;
    sl_cql_str_t s;
    CHECK_INT(sl_cql_val_list(cells[1], &ci, &n), 0);
    CHECK_INT(n, 2);
    CHECK(sl_cql_coll_next(&ci, &e));
    CHECK_INT(sl_cql_val_text(e, &s), 0);
    CHECK(s.len == 1 && s.data[0] == 'a');
    CHECK(sl_cql_coll_next(&ci, &e));
    CHECK_INT(sl_cql_val_text(e, &s), 0);
    CHECK(s.len == 2 && memcmp(s.data, "bc", 2) == 0);
    CHECK(!sl_cql_coll_next(&ci, &e));
    CHECK_INT(sl_cql_val_map(cells[2], &ci, &n), 0);
    CHECK_INT(n, 1);
    CHECK(sl_cql_map_next(&ci, &k, &v));
    int64_t big = 0;
    CHECK_INT(sl_cql_val_text(k, &s), 0);
    CHECK(s.len == 1 && s.data[0] == 'k');
    CHECK_INT(sl_cql_val_bigint(v, &big), 0);
    CHECK_INT(big, 7);
    CHECK(!sl_cql_map_next(&ci, &k, &v));

    CHECK(sl_cql_rows_next(&it, cells));
    CHECK_INT(cells[0].len, -1);
    CHECK_INT(sl_cql_val_int(cells[0], &id), -1);
    CHECK_INT(sl_cql_val_list(cells[1], &ci, &n), 0);
    CHECK_INT(n, 0);
    CHECK_INT(cells[2].len, -1);
    CHECK(!sl_cql_rows_next(&it, cells));
    free(c);
    sl_arena_free(&a);
}

TEST(test_result_rows_paged_and_types)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    uint8_t *c = decode_fx("rows_paged", &a, &r);
    const sl_cql_rows_t *rows = &r.result.rows;
    CHECK_INT(rows->meta.flags, SL_CQL_META_HAS_MORE_PAGES | SL_CQL_META_NO_METADATA);
    CHECK_INT(rows->meta.n_cols, 1);
    CHECK(rows->meta.cols == NULL);
    CHECK_INT(rows->n_rows, 1);
    sl_cql_row_iter_t it;
    sl_cql_bytes_t cell;
    sl_cql_rows_iter(rows, &it);
    CHECK(sl_cql_rows_next(&it, &cell));
    int32_t v = 0;
    CHECK_INT(sl_cql_val_int(cell, &v), 0);
    CHECK_INT(v, 42);
    free(c);
    /* the paging state is an arena copy: usable after the body is gone */
    CHECK_INT(rows->meta.paging_state.len, 3);
    CHECK(memcmp(rows->meta.paging_state.ptr, "abc", 3) == 0);

    c = decode_fx("rows_types", &a, &r);
    rows = &r.result.rows;
    CHECK_INT(rows->meta.n_cols, 3);
    CHECK_INT(rows->n_rows, 0);
    const sl_cql_colspec_t *u = &rows->meta.cols[0];
    CHECK_STR(u->keyspace, "k");
    CHECK_STR(u->table, "t");
    CHECK_STR(u->name, "u");
    CHECK_INT(u->type.id, SL_CQL_COL_UDT);
    CHECK_STR(u->type.udt_keyspace, "k");
    CHECK_STR(u->type.udt_name, "addr");
    CHECK_INT(u->type.n_params, 2);
    CHECK_STR(u->type.field_names[0], "street");
    CHECK_INT(u->type.params[0].id, SL_CQL_COL_VARCHAR);
    CHECK_STR(u->type.field_names[1], "zip");
    CHECK_INT(u->type.params[1].id, SL_CQL_COL_INT);
    const sl_cql_coltype_t *t = &rows->meta.cols[1].type;
    CHECK_INT(t->id, SL_CQL_COL_TUPLE);
    CHECK_INT(t->n_params, 2);
    CHECK_INT(t->params[0].id, SL_CQL_COL_INT);
    CHECK_INT(t->params[1].id, SL_CQL_COL_SET);
    CHECK_INT(t->params[1].params[0].id, SL_CQL_COL_UUID);
    CHECK_INT(rows->meta.cols[2].type.id, SL_CQL_COL_CUSTOM);
    CHECK_STR(rows->meta.cols[2].type.custom, "org.x.Foo");
    sl_cql_rows_iter(rows, &it);
    CHECK(!sl_cql_rows_next(&it, &cell));
    free(c);
    sl_arena_free(&a);
}

TEST(test_result_rows_rejects)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    char err[160];
    /* negative column count */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x02\x00\x00\x00\x04\xff\xff\xff\xff"
                                              "\x00\x00\x00\x00"),
                                          &a, &r, err, sizeof(err)),
              -1);
    /* a huge column count is refused without allocating for it */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x02\x00\x00\x00\x01\x7f\xff\xff\xff"
                                              "\x00\x01k\x00\x01t"),
                                          &a, &r, err, sizeof(err)),
              -1);
    CHECK(a.used < 4096);
    /* huge row count x column count */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x02\x00\x00\x00\x04\x00\x01\x00\x00"
                                              "\x7f\xff\xff\xff\x00\x00\x00\x00"),
                                          &a, &r, err, sizeof(err)),
              -1);
    /* zero columns, many rows: nothing to read, and fine */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00\x00"
                                              "\x7f\xff\xff\xff"),
                                          &a, &r, err, sizeof(err)),
              0);
    /* an unknown type id (0x000A was text in v1) */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01"
                                              "\x00\x01k\x00\x01t\x00\x01x\x00\x0a"
                                              "\x00\x00\x00\x00"),
                                          &a, &r, err, sizeof(err)),
              -1);
    CHECK_CONTAINS(err, "unknown type");
    /* list<list<...>> nested deeper than the limit */
    sl_buf_t deep = SL_BUF_INIT;
    sl_buf_append(&deep,
                  "\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01"
                  "\x00\x01k\x00\x01t\x00\x01x",
                  21);
    for (int i = 0; i < SL_CQL_TYPE_MAX_DEPTH + 1; i++) {
        sl_buf_append(&deep, "\x00\x20", 2);
    }
    sl_buf_append(&deep, "\x00\x09\x00\x00\x00\x00", 6);
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0, (const uint8_t *)deep.data, deep.len,
                                          &a, &r, err, sizeof(err)),
              -1);
    CHECK_CONTAINS(err, "nested too deeply");
    /* one level less is accepted */
    sl_buf_reset(&deep);
    sl_buf_append(&deep,
                  "\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01"
                  "\x00\x01k\x00\x01t\x00\x01x",
                  21);
    for (int i = 0; i < SL_CQL_TYPE_MAX_DEPTH; i++) {
        sl_buf_append(&deep, "\x00\x20", 2);
    }
    sl_buf_append(&deep, "\x00\x09\x00\x00\x00\x00", 6);
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0, (const uint8_t *)deep.data, deep.len,
                                          &a, &r, err, sizeof(err)),
              0);
    sl_buf_free(&deep);
    /* an unknown RESULT kind */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0, LIT("\x00\x00\x00\x06"), &a, &r, err,
                                          sizeof(err)),
              -1);
    sl_arena_free(&a);
}

TEST(test_result_prepared)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    uint8_t *c = decode_fx("prepared", &a, &r);
    const sl_cql_prepared_t *p = &r.result.prepared;
    CHECK_INT(r.result.kind, SL_CQL_RESULT_PREPARED);
    CHECK_INT(p->id.len, 4);
    CHECK(memcmp(p->id.ptr, "\x01\x02\x03\x04", 4) == 0);
    CHECK_INT(p->bind.n_cols, 2);
    CHECK_INT(p->bind.pk_count, 1);
    CHECK_INT(p->bind.pk_index[0], 1);
    CHECK_STR(p->bind.cols[0].keyspace, "ks");
    CHECK_STR(p->bind.cols[0].name, "a");
    CHECK_INT(p->bind.cols[0].type.id, SL_CQL_COL_INT);
    CHECK_STR(p->bind.cols[1].name, "b");
    CHECK_INT(p->bind.cols[1].type.id, SL_CQL_COL_VARCHAR);
    CHECK_INT(p->result.flags, SL_CQL_META_NO_METADATA);
    CHECK_INT(p->result.n_cols, 0);
    free(c);
    /* everything lives in the arena */
    CHECK(p->id.ptr[3] == 4);
    CHECK_STR(p->bind.cols[1].name, "b");

    /* a partition key index past the bind markers is refused */
    char err[160];
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x04\x00\x01\x09"
                                              "\x00\x00\x00\x01\x00\x00\x00\x01"
                                              "\x00\x00\x00\x01\x00\x01"
                                              "\x00\x01k\x00\x01t\x00\x01a\x00\x09"
                                              "\x00\x00\x00\x04\x00\x00\x00\x00"),
                                          &a, &r, err, sizeof(err)),
              -1);
    CHECK_CONTAINS(err, "partition key index");
    /* an empty prepared id */
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x04\x00\x00"
                                              "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                                              "\x00\x00\x00\x04\x00\x00\x00\x00"),
                                          &a, &r, err, sizeof(err)),
              -1);
    sl_arena_free(&a);
}

TEST(test_result_keyspace_schema)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    uint8_t *c = decode_fx("set_keyspace", &a, &r);
    CHECK_INT(r.result.kind, SL_CQL_RESULT_SET_KEYSPACE);
    CHECK_STR(r.result.keyspace, "ks1");
    free(c);
    c = decode_fx("schema_keyspace", &a, &r);
    CHECK_STR(r.result.schema.change_type, "CREATED");
    CHECK_STR(r.result.schema.target, "KEYSPACE");
    CHECK_STR(r.result.schema.keyspace, "ks");
    CHECK(r.result.schema.name == NULL);
    free(c);
    c = decode_fx("schema_table", &a, &r);
    CHECK_STR(r.result.schema.change_type, "UPDATED");
    CHECK_STR(r.result.schema.target, "TABLE");
    CHECK_STR(r.result.schema.name, "tbl");
    free(c);
    c = decode_fx("schema_function", &a, &r);
    CHECK_STR(r.result.schema.target, "FUNCTION");
    CHECK_STR(r.result.schema.name, "fn");
    CHECK_INT(r.result.schema.n_arg_types, 2);
    CHECK_STR(r.result.schema.arg_types[0], "int");
    CHECK_STR(r.result.schema.arg_types[1], "bigint");
    free(c);
    char err[160];
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_RESULT, 0,
                                          LIT("\x00\x00\x00\x05\x00\x01x\x00\x04VIEW\x00\x01k"), &a,
                                          &r, err, sizeof(err)),
              -1);
    sl_arena_free(&a);
}

TEST(test_events)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    uint8_t *c = decode_fx("event_topology", &a, &r);
    CHECK_INT(r.event.kind, SL_CQL_EVENT_TOPOLOGY_CHANGE);
    CHECK_STR(r.event.change, "NEW_NODE");
    CHECK_INT(r.event.addr.addr_len, 4);
    CHECK(memcmp(r.event.addr.addr, "\x7f\x00\x00\x01", 4) == 0);
    CHECK_INT(r.event.addr.port, 9042);
    free(c);
    c = decode_fx("event_status", &a, &r);
    CHECK_INT(r.event.kind, SL_CQL_EVENT_STATUS_CHANGE);
    CHECK_STR(r.event.change, "DOWN");
    CHECK_INT(r.event.addr.addr_len, 16);
    CHECK(r.event.addr.addr[15] == 1 && r.event.addr.addr[0] == 0);
    free(c);
    c = decode_fx("event_schema", &a, &r);
    CHECK_INT(r.event.kind, SL_CQL_EVENT_SCHEMA_CHANGE);
    CHECK_STR(r.event.schema.target, "TYPE");
    CHECK_STR(r.event.schema.keyspace, "ks");
    CHECK_STR(r.event.schema.name, "addr");
    free(c);
    char err[160];
    CHECK_INT(sl_cql_response_decode_body(SL_CQL_OP_EVENT, 0,
                                          LIT("\x00\x03"
                                              "FOO"),
                                          &a, &r, err, sizeof(err)),
              -1);
    sl_arena_free(&a);
}

/* Through the frame parser: a whole RESULT frame. */
TEST(test_decode_frame)
{
    const uint8_t frame[] = {0x84, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x00, 0x09,
                             0x00, 0x00, 0x00, 0x03, 0x00, 0x03, 'k',  's',  '1'};
    sl_cql_frame_t f;
    size_t used;
    CHECK_INT(sl_cql_frame_parse(frame, sizeof(frame), &f, &used), SL_CQL_PARSE_OK);
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    char err[160];
    CHECK_INT(sl_cql_response_decode(&f, &a, &r, err, sizeof(err)), 0);
    CHECK_INT(r.stream, 7);
    CHECK_STR(r.result.keyspace, "ks1");
    sl_arena_free(&a);
}

/* ---- Values ------------------------------------------------------------------------------ */

#define B(s) ((sl_cql_bytes_t){(const uint8_t *)(s), (int32_t)(sizeof(s) - 1)})

TEST(test_values)
{
    int32_t i;
    int64_t l;
    int16_t sh;
    int8_t ti;
    bool b;
    double d;
    float fl;
    uint8_t uuid[16];
    sl_cql_str_t s;
    sl_cql_inet_t in;
    sl_cql_bytes_t blob;
    const sl_cql_bytes_t null = {NULL, -1}, empty = {(const uint8_t *)"", 0};

    CHECK_INT(sl_cql_val_int(B("\xff\xff\xff\xfe"), &i), 0);
    CHECK_INT(i, -2);
    CHECK_INT(sl_cql_val_int(B("\x00\x00\x01"), &i), -1);
    CHECK_INT(sl_cql_val_int(null, &i), -1);
    CHECK_INT(sl_cql_val_int(empty, &i), -1);
    CHECK_INT(sl_cql_val_bigint(B("\x80\x00\x00\x00\x00\x00\x00\x00"), &l), 0);
    CHECK(l == INT64_MIN);
    CHECK_INT(sl_cql_val_smallint(B("\x80\x01"), &sh), 0);
    CHECK_INT(sh, -32767);
    CHECK_INT(sl_cql_val_tinyint(B("\xff"), &ti), 0);
    CHECK_INT(ti, -1);
    CHECK_INT(sl_cql_val_boolean(B("\x00"), &b), 0);
    CHECK(!b);
    CHECK_INT(sl_cql_val_boolean(B("\x02"), &b), 0);
    CHECK(b);
    /* 1.5 = 0x3FF8000000000000; -2.25f = 0xC0100000 */
    CHECK_INT(sl_cql_val_double(B("\x3f\xf8\x00\x00\x00\x00\x00\x00"), &d), 0);
    CHECK(d == 1.5);
    CHECK_INT(sl_cql_val_float(B("\xc0\x10\x00\x00"), &fl), 0);
    CHECK(fl == -2.25f);
    /* date: 2^31 is 1970-01-01, 2^31 + 1 the day after, 0 is 2^31 days before */
    CHECK_INT(sl_cql_val_date(B("\x80\x00\x00\x00"), &l), 0);
    CHECK_INT(l, 0);
    CHECK_INT(sl_cql_val_date(B("\x80\x00\x00\x01"), &l), 0);
    CHECK_INT(l, 1);
    CHECK_INT(sl_cql_val_date(B("\x00\x00\x00\x00"), &l), 0);
    CHECK(l == -2147483648LL);
    /* timestamp 1e12 ms = 0xE8D4A51000 */
    CHECK_INT(sl_cql_val_timestamp(B("\x00\x00\x00\xe8\xd4\xa5\x10\x00"), &l), 0);
    CHECK(l == 1000000000000LL);
    CHECK_INT(sl_cql_val_uuid(B("\x12\x34\x56\x78\x12\x34\x11\xe0\x80\x00\x00\x00\x00\x00\x00\x01"),
                              uuid),
              0);
    CHECK(uuid[0] == 0x12 && uuid[6] == 0x11 && uuid[15] == 0x01);
    CHECK_INT(sl_cql_val_uuid(B("\x12\x34"), uuid), -1);
    CHECK_INT(sl_cql_val_text(B("h\xc3\xa9llo"), &s), 0);
    CHECK_INT(s.len, 6);
    CHECK_INT(sl_cql_val_text(empty, &s), 0);
    CHECK_INT(s.len, 0);
    CHECK_INT(sl_cql_val_text(B("\xc3"), &s), -1);         /* truncated sequence */
    CHECK_INT(sl_cql_val_text(B("\xc0\xaf"), &s), -1);     /* overlong */
    CHECK_INT(sl_cql_val_text(B("\xed\xa0\x80"), &s), -1); /* surrogate */
    CHECK_INT(sl_cql_val_text(B("\xf0\x9f\x98\x80"), &s), 0);
    CHECK_INT(sl_cql_val_ascii(B("abc"), &s), 0);
    CHECK_INT(sl_cql_val_ascii(B("\xc3\xa9"), &s), -1);
    CHECK_INT(sl_cql_val_blob(empty, &blob), 0);
    CHECK_INT(sl_cql_val_blob(null, &blob), -1);
    CHECK_INT(sl_cql_val_inet(B("\x0a\x00\x00\x01"), &in), 0);
    CHECK(in.addr_len == 4 && in.addr[0] == 10);
    CHECK_INT(sl_cql_val_inet(B("\x0a\x00\x00"), &in), -1);
    (void)isnan(d);
}

TEST(test_collections)
{
    sl_cql_coll_iter_t it;
    int32_t n, v;
    sl_cql_bytes_t e, k, val;
    /* set<int> {1, 2} */
    CHECK_INT(sl_cql_val_set(B("\x00\x00\x00\x02"
                               "\x00\x00\x00\x04\x00\x00\x00\x01"
                               "\x00\x00\x00\x04\x00\x00\x00\x02"),
                             &it, &n),
              0);
    CHECK_INT(n, 2);
    CHECK(sl_cql_coll_next(&it, &e));
    CHECK_INT(sl_cql_val_int(e, &v), 0);
    CHECK_INT(v, 1);
    CHECK(sl_cql_coll_next(&it, &e));
    CHECK_INT(sl_cql_val_int(e, &v), 0);
    CHECK_INT(v, 2);
    CHECK(!sl_cql_coll_next(&it, &e));
    /* map<int, boolean> {3: true} */
    CHECK_INT(sl_cql_val_map(B("\x00\x00\x00\x01"
                               "\x00\x00\x00\x04\x00\x00\x00\x03"
                               "\x00\x00\x00\x01\x01"),
                             &it, &n),
              0);
    CHECK(sl_cql_map_next(&it, &k, &val));
    bool b = false;
    CHECK_INT(sl_cql_val_int(k, &v), 0);
    CHECK_INT(v, 3);
    CHECK_INT(sl_cql_val_boolean(val, &b), 0);
    CHECK(b);
    /* malformed: count larger than the elements, trailing bytes, negative count, null */
    CHECK_INT(sl_cql_val_list(B("\x00\x00\x00\x02\x00\x00\x00\x00"), &it, &n), -1);
    CHECK_INT(sl_cql_val_list(B("\x00\x00\x00\x01\x00\x00\x00\x00\x00"), &it, &n), -1);
    CHECK_INT(sl_cql_val_list(B("\xff\xff\xff\xff"), &it, &n), -1);
    CHECK_INT(sl_cql_val_list(((sl_cql_bytes_t){NULL, -1}), &it, &n), -1);
    CHECK_INT(sl_cql_val_map(B("\x00\x00\x00\x01\x00\x00\x00\x00"), &it, &n), -1);
    CHECK_INT(sl_cql_val_list(B("\x7f\xff\xff\xff"), &it, &n), -1);
    /* a null element is reported as null */
    CHECK_INT(sl_cql_val_list(B("\x00\x00\x00\x01\xff\xff\xff\xff"), &it, &n), 0);
    CHECK(sl_cql_coll_next(&it, &e));
    CHECK_INT(e.len, -1);
}

TEST_MAIN(T(test_every_fixture_and_prefix), T(test_error_bodies), T(test_error_classes),
          T(test_auth_supported_ready), T(test_prelude), T(test_result_rows),
          T(test_result_rows_paged_and_types), T(test_result_rows_rejects), T(test_result_prepared),
          T(test_result_keyspace_schema), T(test_events), T(test_decode_frame), T(test_values),
          T(test_collections))
