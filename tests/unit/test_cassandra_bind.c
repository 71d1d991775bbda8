/* The Cassandra sink's binding: markers to schema fields, the encoding of
 * every schema type into each compatible CQL type (bounds, unset, null
 * partition keys), and the grouping of records into requests. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/schema.h"
#include "sinks/cassandra_bind.h"
#include "test.h"

static const char schema_yaml[] = "i32: {type: int32}\n"
                                  "i64: {type: int64}\n"
                                  "d: {type: double}\n"
                                  "s: {type: string}\n"
                                  "b: {type: bool}\n"
                                  "dt: {type: date}\n"
                                  "ts: {type: timestamp}\n";
enum { F_I32, F_I64, F_D, F_S, F_B, F_DT, F_TS, F_N };

static void load_schema(sl_schema_t *s)
{
    sl_errors_t errs = {0};
    sl_doc_t *doc = sl_doc_load_string("s.yaml", schema_yaml, strlen(schema_yaml), &errs);
    CHECK(doc != NULL);
    memset(s, 0, sizeof(*s));
    CHECK_INT(sl_schema_parse(sl_doc_root(doc), "s.yaml", s, &errs), 0);
    CHECK_INT(errs.n, 0);
    sl_schema_finish(s);
    sl_doc_free(doc);
    sl_errors_free(&errs);
}

/* Bind metadata for n markers named names[i] of types types[i]; pk lists the
 * partition key markers. Points into static storage: one at a time. */
static sl_cql_metadata_t meta(const char *const *names, const uint16_t *types, size_t n,
                              const uint16_t *pk, size_t n_pk)
{
    static sl_cql_colspec_t cols[16];
    memset(cols, 0, sizeof(cols));
    for (size_t i = 0; i < n; i++) {
        cols[i].keyspace = "ks";
        cols[i].table = "t";
        cols[i].name = names[i];
        cols[i].type.id = types[i];
    }
    sl_cql_metadata_t m = {0};
    m.n_cols = (int32_t)n;
    m.cols = cols;
    m.pk_count = (int32_t)n_pk;
    m.pk_index = pk;
    return m;
}

/* A binding of one marker named name, of CQL type cql (not a key). */
static int bind1(const sl_schema_t *s, const char *name, uint16_t cql, sl_cass_binding_t *b,
                 char *err)
{
    const char *names[] = {name};
    uint16_t types[] = {cql};
    sl_cql_metadata_t m = meta(names, types, 1, NULL, 0);
    return sl_cass_binding_build(&m, s, b, err, 512);
}

typedef struct enc {
    int rc;
    int32_t len;
    uint8_t bytes[32];
    char why[SL_REASON_MAX];
} enc_t;

/* Encodes value v of field `field` into a marker of CQL type cql. */
static enc_t enc1(const sl_schema_t *s, int field, uint16_t cql, sl_value_t v)
{
    enc_t r;
    memset(&r, 0, sizeof(r));
    sl_cass_binding_t b;
    char err[512];
    CHECK_INT(bind1(s, s->fields[field].name, cql, &b, err), 0);
    sl_value_t rec[F_N];
    memset(rec, 0, sizeof(rec));
    for (int i = 0; i < F_N; i++) {
        rec[i].is_null = true;
    }
    rec[field] = v;
    sl_buf_t data = SL_BUF_INIT;
    sl_buf_append(&data, "xx", 2); /* offsets are relative to the buffer */
    sl_cql_bytes_t val;
    uint32_t off;
    sl_reason_t why = {{0}};
    r.rc = sl_cass_encode(&b, s, rec, &data, &val, &off, &why);
    if (r.rc == 0) {
        sl_cass_resolve(&val, &off, 1, &data);
        r.len = val.len;
        CHECK_INT(off, 2);
        if (val.len > 0 && (size_t)val.len <= sizeof(r.bytes)) {
            memcpy(r.bytes, val.ptr, (size_t)val.len);
        }
        if (val.len >= 0) {
            CHECK_INT(data.len, 2 + (size_t)val.len);
        }
    } else {
        CHECK_INT(data.len, 2); /* unchanged on failure */
    }
    snprintf(r.why, sizeof(r.why), "%s", why.text);
    sl_buf_free(&data);
    sl_cass_binding_free(&b);
    return r;
}

static sl_value_t vi(int64_t i)
{
    sl_value_t v = {0};
    v.u.i = i;
    return v;
}

static sl_value_t vd(double d)
{
    sl_value_t v = {0};
    v.u.d = d;
    return v;
}

static sl_value_t vs(const char *s)
{
    sl_value_t v = {0};
    v.u.s.ptr = s;
    v.u.s.len = strlen(s);
    return v;
}

static sl_value_t vb(bool b)
{
    sl_value_t v = {0};
    v.u.b = b;
    return v;
}

static bool bytes_are(const enc_t *e, const char *hex)
{
    size_t n = strlen(hex) / 2;
    if (e->rc != 0 || e->len != (int32_t)n) {
        fprintf(stderr, "  rc=%d len=%d, want %zu bytes %s\n", e->rc, e->len, n, hex);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        sscanf(hex + 2 * i, "%2x", &x);
        if (e->bytes[i] != x) {
            fprintf(stderr, "  byte %zu: %02x != %02x (want %s)\n", i, e->bytes[i], x, hex);
            return false;
        }
    }
    return true;
}

/* ---- binding ------------------------------------------------------------------------------- */

TEST(binding_maps_markers_to_fields)
{
    sl_schema_t s;
    load_schema(&s);
    const char *names[] = {"dt", "i32", "i64", "s"};
    uint16_t types[] = {SL_CQL_COL_DATE, SL_CQL_COL_INT, SL_CQL_COL_COUNTER, SL_CQL_COL_VARCHAR};
    uint16_t pk[] = {0, 1};
    sl_cql_metadata_t m = meta(names, types, 4, pk, 2);
    sl_cass_binding_t b;
    char err[512] = "";
    CHECK_INT(sl_cass_binding_build(&m, &s, &b, err, sizeof(err)), 0);
    CHECK_INT(b.n, 4);
    CHECK_INT(b.markers[0].field, F_DT);
    CHECK_INT(b.markers[1].field, F_I32);
    CHECK_INT(b.markers[2].field, F_I64);
    CHECK_INT(b.markers[3].field, F_S);
    CHECK(b.markers[0].pk && b.markers[1].pk && !b.markers[2].pk && !b.markers[3].pk);
    CHECK_INT(b.n_pk, 2);
    CHECK_INT(b.pk[0], 0);
    CHECK_INT(b.pk[1], 1);
    CHECK(b.counter);
    sl_cass_binding_free(&b);

    /* no counter marker: not a counter statement */
    const char *n2[] = {"i64"};
    uint16_t t2[] = {SL_CQL_COL_BIGINT};
    m = meta(n2, t2, 1, NULL, 0);
    CHECK_INT(sl_cass_binding_build(&m, &s, &b, err, sizeof(err)), 0);
    CHECK(!b.counter);
    CHECK_INT(b.n_pk, 0);
    sl_cass_binding_free(&b);
    sl_cass_binding_free(&b); /* twice is fine */
    sl_schema_free(&s);
}

TEST(binding_errors_tell_what_to_do)
{
    sl_schema_t s;
    load_schema(&s);
    sl_cass_binding_t b;
    char err[512] = "";
    CHECK_INT(bind1(&s, "views", SL_CQL_COL_COUNTER, &b, err), -1);
    CHECK_STR(err, "bind marker 'views' of the statement has no schema field of that name: add a "
                   "field 'views' (int32 or int64) to schema, or rename the marker");
    CHECK(b.markers == NULL);
    CHECK_INT(bind1(&s, "s", SL_CQL_COL_BIGINT, &b, err), -1);
    CHECK_STR(err, "bind marker 's' is a column of CQL type bigint but schema field 's' is "
                   "string: declare the field as int32 or int64, or bind another column");
    CHECK_INT(bind1(&s, "ts", SL_CQL_COL_DATE, &b, err), -1);
    CHECK_CONTAINS(err, "schema field 'ts' is timestamp: declare the field as date");
    CHECK_INT(bind1(&s, "s", SL_CQL_COL_LIST, &b, err), -1);
    CHECK_CONTAINS(err, "bind marker 's' is a column of CQL type list, which sink.cassandra "
                        "cannot bind: use a column of a scalar type");
    CHECK_INT(bind1(&s, "s", SL_CQL_COL_BLOB, &b, err), -1);
    CHECK_CONTAINS(err, "CQL type blob, which sink.cassandra cannot bind");

    /* a partition key index out of range is the server's bug, not a crash */
    const char *names[] = {"s"};
    uint16_t types[] = {SL_CQL_COL_VARCHAR};
    uint16_t pk[] = {3};
    sl_cql_metadata_t m = meta(names, types, 1, pk, 1);
    CHECK_INT(sl_cass_binding_build(&m, &s, &b, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "partition key");
    sl_schema_free(&s);
}

TEST(compatibility_matrix)
{
    static const uint16_t all[] = {
        SL_CQL_COL_ASCII,   SL_CQL_COL_BIGINT,    SL_CQL_COL_BLOB,    SL_CQL_COL_BOOLEAN,
        SL_CQL_COL_COUNTER, SL_CQL_COL_DECIMAL,   SL_CQL_COL_DOUBLE,  SL_CQL_COL_FLOAT,
        SL_CQL_COL_INT,     SL_CQL_COL_TIMESTAMP, SL_CQL_COL_UUID,    SL_CQL_COL_VARCHAR,
        SL_CQL_COL_VARINT,  SL_CQL_COL_TIMEUUID,  SL_CQL_COL_INET,    SL_CQL_COL_DATE,
        SL_CQL_COL_TIME,    SL_CQL_COL_SMALLINT,  SL_CQL_COL_TINYINT, SL_CQL_COL_LIST,
        SL_CQL_COL_MAP,     SL_CQL_COL_SET,       SL_CQL_COL_UDT,     SL_CQL_COL_TUPLE,
        SL_CQL_COL_CUSTOM};
    static const struct {
        sl_type_t t;
        uint16_t ok[8];
    } want[] = {
        {SL_TYPE_INT32,
         {SL_CQL_COL_INT, SL_CQL_COL_BIGINT, SL_CQL_COL_COUNTER, SL_CQL_COL_SMALLINT,
          SL_CQL_COL_TINYINT, SL_CQL_COL_VARINT}},
        {SL_TYPE_INT64,
         {SL_CQL_COL_INT, SL_CQL_COL_BIGINT, SL_CQL_COL_COUNTER, SL_CQL_COL_SMALLINT,
          SL_CQL_COL_TINYINT, SL_CQL_COL_VARINT}},
        {SL_TYPE_DOUBLE, {SL_CQL_COL_DOUBLE, SL_CQL_COL_FLOAT}},
        {SL_TYPE_STRING,
         {SL_CQL_COL_VARCHAR, SL_CQL_COL_ASCII, SL_CQL_COL_UUID, SL_CQL_COL_TIMEUUID,
          SL_CQL_COL_INET}},
        {SL_TYPE_BOOL, {SL_CQL_COL_BOOLEAN}},
        {SL_TYPE_DATE, {SL_CQL_COL_DATE, SL_CQL_COL_TIMESTAMP}},
        {SL_TYPE_TIMESTAMP, {SL_CQL_COL_TIMESTAMP}},
    };
    for (size_t w = 0; w < SL_ARRAY_LEN(want); w++) {
        for (size_t c = 0; c < SL_ARRAY_LEN(all); c++) {
            bool expect = false;
            for (size_t k = 0; k < 8 && want[w].ok[k]; k++) {
                expect |= want[w].ok[k] == all[c];
            }
            if (sl_cass_compatible(want[w].t, all[c]) != expect) {
                fprintf(stderr, "  %s -> %s\n", sl_type_name(want[w].t),
                        sl_cass_cql_type_name(all[c]));
            }
            CHECK(sl_cass_compatible(want[w].t, all[c]) == expect);
        }
    }
    CHECK_STR(sl_cass_cql_type_name(SL_CQL_COL_VARCHAR), "text");
    CHECK_STR(sl_cass_cql_type_name(0x7777), "unknown");
}

/* ---- encoding ------------------------------------------------------------------------------ */

TEST(encode_integers)
{
    sl_schema_t s;
    load_schema(&s);
    enc_t e;
    for (int f = F_I32; f <= F_I64; f++) {
        e = enc1(&s, f, SL_CQL_COL_INT, vi(-2));
        CHECK(bytes_are(&e, "fffffffe"));
        e = enc1(&s, f, SL_CQL_COL_INT, vi(INT32_MAX));
        CHECK(bytes_are(&e, "7fffffff"));
        e = enc1(&s, f, SL_CQL_COL_BIGINT, vi(1));
        CHECK(bytes_are(&e, "0000000000000001"));
        e = enc1(&s, f, SL_CQL_COL_COUNTER, vi(-1));
        CHECK(bytes_are(&e, "ffffffffffffffff"));
        e = enc1(&s, f, SL_CQL_COL_SMALLINT, vi(-32768));
        CHECK(bytes_are(&e, "8000"));
        e = enc1(&s, f, SL_CQL_COL_TINYINT, vi(127));
        CHECK(bytes_are(&e, "7f"));
        e = enc1(&s, f, SL_CQL_COL_VARINT, vi(0));
        CHECK(bytes_are(&e, "00"));
    }
    /* bounds: int64 values that do not fit the column */
    e = enc1(&s, F_I64, SL_CQL_COL_INT, vi(3000000000));
    CHECK_INT(e.rc, -1);
    CHECK_STR(e.why, "field 'i64': 3000000000 is out of range for CQL int "
                     "(-2147483648..2147483647)");
    e = enc1(&s, F_I64, SL_CQL_COL_INT, vi(INT64_C(-2147483649)));
    CHECK_INT(e.rc, -1);
    e = enc1(&s, F_I32, SL_CQL_COL_SMALLINT, vi(32768));
    CHECK_INT(e.rc, -1);
    CHECK_STR(e.why, "field 'i32': 32768 is out of range for CQL smallint (-32768..32767)");
    e = enc1(&s, F_I32, SL_CQL_COL_TINYINT, vi(-129));
    CHECK_INT(e.rc, -1);
    CHECK_CONTAINS(e.why, "-129 is out of range for CQL tinyint (-128..127)");
    e = enc1(&s, F_I64, SL_CQL_COL_BIGINT, vi(INT64_MIN));
    CHECK(bytes_are(&e, "8000000000000000"));
    /* varint: shortest two's complement */
    static const struct {
        int64_t v;
        const char *hex;
    } vv[] = {{1, "01"},
              {127, "7f"},
              {128, "0080"},
              {255, "00ff"},
              {256, "0100"},
              {-1, "ff"},
              {-128, "80"},
              {-129, "ff7f"},
              {INT64_C(2147483648), "0080000000"},
              {INT64_MAX, "7fffffffffffffff"},
              {INT64_MIN, "8000000000000000"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(vv); i++) {
        e = enc1(&s, F_I64, SL_CQL_COL_VARINT, vi(vv[i].v));
        CHECK(bytes_are(&e, vv[i].hex));
    }
    sl_schema_free(&s);
}

TEST(encode_floating_point)
{
    sl_schema_t s;
    load_schema(&s);
    enc_t e = enc1(&s, F_D, SL_CQL_COL_DOUBLE, vd(1.5));
    CHECK(bytes_are(&e, "3ff8000000000000"));
    e = enc1(&s, F_D, SL_CQL_COL_DOUBLE, vd(-0.0));
    CHECK(bytes_are(&e, "8000000000000000"));
    e = enc1(&s, F_D, SL_CQL_COL_FLOAT, vd(1.5));
    CHECK(bytes_are(&e, "3fc00000"));
    e = enc1(&s, F_D, SL_CQL_COL_FLOAT, vd(-2.0));
    CHECK(bytes_are(&e, "c0000000"));
    e = enc1(&s, F_D, SL_CQL_COL_FLOAT, vd(1e300));
    CHECK_INT(e.rc, -1);
    CHECK_CONTAINS(e.why, "field 'd': 1e+300 is out of range for CQL float");
    sl_schema_free(&s);
}

TEST(encode_strings)
{
    sl_schema_t s;
    load_schema(&s);
    enc_t e = enc1(&s, F_S, SL_CQL_COL_VARCHAR, vs("h\xc3\xa9"));
    CHECK(bytes_are(&e, "68c3a9"));
    e = enc1(&s, F_S, SL_CQL_COL_VARCHAR, vs(""));
    CHECK_INT(e.rc, 0);
    CHECK_INT(e.len, 0); /* empty, not null */
    e = enc1(&s, F_S, SL_CQL_COL_ASCII, vs("ok"));
    CHECK(bytes_are(&e, "6f6b"));
    e = enc1(&s, F_S, SL_CQL_COL_ASCII, vs("h\xc3\xa9"));
    CHECK_INT(e.rc, -1);
    CHECK_STR(e.why, "field 's': \"h\xc3\xa9\" is not ASCII (the column is CQL ascii)");
    /* uuid and timeuuid from text */
    e = enc1(&s, F_S, SL_CQL_COL_UUID, vs("550e8400-E29B-41d4-a716-446655440000"));
    CHECK(bytes_are(&e, "550e8400e29b41d4a716446655440000"));
    e = enc1(&s, F_S, SL_CQL_COL_UUID, vs("550e8400e29b41d4a716446655440000"));
    CHECK_INT(e.rc, -1);
    CHECK_STR(e.why,
              "field 's': \"550e8400e29b41d4a716446655440000\" is not a uuid (8-4-4-4-12 hex "
              "digits)");
    e = enc1(&s, F_S, SL_CQL_COL_UUID, vs("550e8400-e29b-41d4-a716-44665544000g"));
    CHECK_INT(e.rc, -1);
    e = enc1(&s, F_S, SL_CQL_COL_TIMEUUID, vs("e7e3c7a0-2e1b-11ef-9c3a-0242ac120002"));
    CHECK(bytes_are(&e, "e7e3c7a02e1b11ef9c3a0242ac120002"));
    e = enc1(&s, F_S, SL_CQL_COL_TIMEUUID, vs("550e8400-e29b-41d4-a716-446655440000"));
    CHECK_INT(e.rc, -1);
    CHECK_CONTAINS(e.why, "is a version 4 uuid, not a timeuuid (version 1)");
    /* inet */
    e = enc1(&s, F_S, SL_CQL_COL_INET, vs("10.0.0.1"));
    CHECK(bytes_are(&e, "0a000001"));
    e = enc1(&s, F_S, SL_CQL_COL_INET, vs("::1"));
    CHECK(bytes_are(&e, "00000000000000000000000000000001"));
    e = enc1(&s, F_S, SL_CQL_COL_INET, vs("10.0.0.256"));
    CHECK_INT(e.rc, -1);
    CHECK_STR(e.why, "field 's': \"10.0.0.256\" is not an IPv4 or IPv6 address");
    e = enc1(&s, F_S, SL_CQL_COL_INET, vs(""));
    CHECK_INT(e.rc, -1);
    sl_value_t nul = vs("10.0.0.1");
    nul.u.s.len = 9; /* with the NUL byte: not an address */
    e = enc1(&s, F_S, SL_CQL_COL_INET, nul);
    CHECK_INT(e.rc, -1);
    sl_schema_free(&s);
}

TEST(encode_bool_date_timestamp)
{
    sl_schema_t s;
    load_schema(&s);
    enc_t e = enc1(&s, F_B, SL_CQL_COL_BOOLEAN, vb(true));
    CHECK(bytes_are(&e, "01"));
    e = enc1(&s, F_B, SL_CQL_COL_BOOLEAN, vb(false));
    CHECK(bytes_are(&e, "00"));
    /* date: days + 2^31 */
    e = enc1(&s, F_DT, SL_CQL_COL_DATE, vi(0));
    CHECK(bytes_are(&e, "80000000"));
    e = enc1(&s, F_DT, SL_CQL_COL_DATE, vi(-1));
    CHECK(bytes_are(&e, "7fffffff"));
    e = enc1(&s, F_DT, SL_CQL_COL_DATE, vi(SL_DATE_MAX_DAYS));
    CHECK_INT(e.rc, 0);
    /* date into timestamp: midnight UTC in ms (2024-06-01 = 19875 days) */
    e = enc1(&s, F_DT, SL_CQL_COL_TIMESTAMP, vi(19875));
    CHECK(bytes_are(&e, "0000018fd1189400"));
    /* timestamp µs into ms, rounding down */
    e = enc1(&s, F_TS, SL_CQL_COL_TIMESTAMP, vi(1717200000123456));
    CHECK(bytes_are(&e, "0000018fd118947b"));
    e = enc1(&s, F_TS, SL_CQL_COL_TIMESTAMP, vi(-1));
    CHECK(bytes_are(&e, "ffffffffffffffff"));
    e = enc1(&s, F_TS, SL_CQL_COL_TIMESTAMP, vi(-1000));
    CHECK(bytes_are(&e, "ffffffffffffffff"));
    e = enc1(&s, F_TS, SL_CQL_COL_TIMESTAMP, vi(-1001));
    CHECK(bytes_are(&e, "fffffffffffffffe"));
    sl_schema_free(&s);
}

TEST(encode_null_is_unset_but_not_for_a_partition_key)
{
    sl_schema_t s;
    load_schema(&s);
    const char *names[] = {"i32", "s", "d"};
    uint16_t types[] = {SL_CQL_COL_INT, SL_CQL_COL_VARCHAR, SL_CQL_COL_DOUBLE};
    uint16_t pk[] = {0};
    sl_cql_metadata_t m = meta(names, types, 3, pk, 1);
    sl_cass_binding_t b;
    char err[512];
    CHECK_INT(sl_cass_binding_build(&m, &s, &b, err, sizeof(err)), 0);
    sl_value_t rec[F_N];
    memset(rec, 0, sizeof(rec));
    for (int i = 0; i < F_N; i++) {
        rec[i].is_null = true;
    }
    rec[F_I32] = vi(7);
    sl_buf_t data = SL_BUF_INIT;
    sl_cql_bytes_t vals[3];
    uint32_t offs[3];
    sl_reason_t why = {{0}};
    CHECK_INT(sl_cass_encode(&b, &s, rec, &data, vals, offs, &why), 0);
    sl_cass_resolve(vals, offs, 3, &data);
    CHECK_INT(vals[0].len, 4);
    CHECK_INT(vals[1].len, SL_CQL_LEN_UNSET);
    CHECK_INT(vals[2].len, SL_CQL_LEN_UNSET);
    CHECK(vals[1].ptr == NULL);
    CHECK_INT(vals[0].ptr[3], 7);
    CHECK_INT(data.len, 4);

    /* a second record after the first: offsets stay valid once resolved */
    rec[F_S] = vs("abc");
    rec[F_I32] = vi(8);
    sl_cql_bytes_t v2[3];
    uint32_t o2[3];
    CHECK_INT(sl_cass_encode(&b, &s, rec, &data, v2, o2, &why), 0);
    sl_cass_resolve(vals, offs, 3, &data);
    sl_cass_resolve(v2, o2, 3, &data);
    CHECK_INT(vals[0].ptr[3], 7);
    CHECK_INT(v2[0].ptr[3], 8);
    CHECK_INT(v2[1].len, 3);
    CHECK(memcmp(v2[1].ptr, "abc", 3) == 0);

    /* a null partition key is rejected, and nothing is appended */
    size_t before = data.len;
    rec[F_I32].is_null = true;
    CHECK_INT(sl_cass_encode(&b, &s, rec, &data, v2, o2, &why), -1);
    CHECK_STR(why.text, "partition key column 'i32' is null");
    CHECK_INT(data.len, before);
    /* an out-of-range value after an encoded one leaves data unchanged too */
    rec[F_I32] = vi(1);
    sl_cass_binding_free(&b);
    const char *n2[] = {"s", "i64"};
    uint16_t t2[] = {SL_CQL_COL_VARCHAR, SL_CQL_COL_INT};
    m = meta(n2, t2, 2, NULL, 0);
    CHECK_INT(sl_cass_binding_build(&m, &s, &b, err, sizeof(err)), 0);
    rec[F_I64] = vi(INT64_C(1) << 40);
    CHECK_INT(sl_cass_encode(&b, &s, rec, &data, v2, o2, &why), -1);
    CHECK_CONTAINS(why.text, "field 'i64': 1099511627776 is out of range for CQL int");
    CHECK_INT(data.len, before);
    sl_buf_free(&data);
    sl_cass_binding_free(&b);
    sl_schema_free(&s);
}

/* ---- grouping -------------------------------------------------------------------------------- */

static sl_cass_item_t item(const char *key, size_t bytes, int64_t ts, uint32_t pos)
{
    sl_cass_item_t it = {(const uint8_t *)key, strlen(key), bytes, ts, pos, NULL, 0};
    return it;
}

static bool g_distinct; /* groups(): distinct_rows */

/* The requests as text: "0,2|1|3|4" (positions, requests separated by |). */
static const char *groups(sl_cass_item_t *items, size_t n, size_t rows, size_t bytes)
{
    static char out[256];
    uint32_t starts[64];
    size_t nr = sl_cass_group(items, n, rows, bytes, g_distinct, starts);
    size_t k = 0;
    out[0] = '\0';
    for (size_t r = 0; r < nr; r++) {
        for (uint32_t j = starts[r]; j < starts[r + 1]; j++) {
            k += (size_t)snprintf(out + k, sizeof(out) - k, "%s%u",
                                  j == starts[r] ? (r ? "|" : "") : ",", items[j].pos);
        }
    }
    CHECK_INT(starts[nr], n);
    return out;
}

TEST(group_by_partition_in_order)
{
    sl_cass_item_t it[8];
    const char *keys[] = {"a", "b", "a", "c", "a", "b", "ab", ""};
    for (uint32_t i = 0; i < 7; i++) {
        it[i] = item(keys[i], 10, SL_CASS_NO_TS, i);
    }
    CHECK_STR(groups(it, 7, 32, 1 << 20), "0,2,4|1,5|3|6");
    for (uint32_t i = 0; i < 7; i++) {
        it[i] = item(keys[i], 10, SL_CASS_NO_TS, i);
    }
    /* at most 2 rows per request */
    CHECK_STR(groups(it, 7, 2, 1 << 20), "0,2|1,5|3|4|6");
    for (uint32_t i = 0; i < 7; i++) {
        it[i] = item(keys[i], 10, SL_CASS_NO_TS, i);
    }
    /* 1 row: no batching, offered order */
    CHECK_STR(groups(it, 7, 1, 1 << 20), "0|1|2|3|4|5|6");
    for (uint32_t i = 0; i < 7; i++) {
        it[i] = item(keys[i], 10, SL_CASS_NO_TS, i);
    }
    /* 25 bytes: two 10-byte rows fit, three do not */
    CHECK_STR(groups(it, 7, 32, 25), "0,2|1,5|3|4|6");
    /* a row larger than the limit still goes, alone */
    it[0] = item("a", 100, SL_CASS_NO_TS, 0);
    it[1] = item("a", 10, SL_CASS_NO_TS, 1);
    it[2] = item("a", 10, SL_CASS_NO_TS, 2);
    CHECK_STR(groups(it, 3, 32, 25), "0|1,2");
    CHECK_STR(groups(it, 0, 32, 25), "");
}

TEST(group_splits_by_writetime_and_handles_unroutable)
{
    sl_cass_item_t it[6];
    it[0] = item("k", 10, 100, 0);
    it[1] = item("k", 10, 200, 1);
    it[2] = item("k", 10, 100, 2);
    it[3] = item("k", 10, SL_CASS_NO_TS, 3);
    it[4] = item("k", 10, 200, 4);
    CHECK_STR(groups(it, 5, 32, 1 << 20), "0,2|1,4|3");
    /* no routing key: all one group (the key is not in the statement) */
    for (uint32_t i = 0; i < 6; i++) {
        it[i] = item("", 10, SL_CASS_NO_TS, i);
    }
    CHECK_STR(groups(it, 6, 4, 1 << 20), "0,1,2,3|4,5");
    /* binary keys with zero bytes compare by all their bytes */
    static const uint8_t k1[] = {0, 1}, k2[] = {0, 2};
    it[0] = (sl_cass_item_t){k1, 2, 1, SL_CASS_NO_TS, 0, NULL, 0};
    it[1] = (sl_cass_item_t){k2, 2, 1, SL_CASS_NO_TS, 1, NULL, 0};
    it[2] = (sl_cass_item_t){k1, 2, 1, SL_CASS_NO_TS, 2, NULL, 0};
    CHECK_STR(groups(it, 3, 32, 1 << 20), "0,2|1");
}

/* Upserts: two writes of one row never share a batch (they would share its
 * timestamp, and Cassandra keeps the greater value, not the later one); rows
 * of one partition with different clustering keys still do. */
TEST(group_distinct_rows_for_upserts)
{
    sl_cass_item_t it[6];
    static const char *rows[] = {"p/1", "p/2", "p/1", "p/3", "p/2", "p/4"};
    for (uint32_t i = 0; i < 6; i++) {
        it[i] = item("p", 10, SL_CASS_NO_TS, i);
        it[i].row = (const uint8_t *)rows[i];
        it[i].row_len = 3;
    }
    g_distinct = true;
    CHECK_STR(groups(it, 6, 32, 1 << 20), "0,1|2,3,4,5");
    /* unknown rows (a clustering column not bound by a marker): one per request */
    for (uint32_t i = 0; i < 3; i++) {
        it[i] = item("p", 10, SL_CASS_NO_TS, i);
    }
    CHECK_STR(groups(it, 3, 32, 1 << 20), "0|1|2");
    /* counters (distinct_rows false): increments commute, one batch */
    g_distinct = false;
    for (uint32_t i = 0; i < 3; i++) {
        it[i] = item("p", 10, SL_CASS_NO_TS, i);
        it[i].row = (const uint8_t *)"p/1";
        it[i].row_len = 3;
    }
    CHECK_STR(groups(it, 3, 32, 1 << 20), "0,1,2");
}

/* The reference: for each item in pos order, scan back for its group's
 * latest request (quadratic, obviously greedy) and join it if it fits. */
static size_t group_reference(const sl_cass_item_t *items, size_t n, size_t max_rows,
                              size_t max_bytes, bool distinct, uint32_t (*req)[64], size_t *len)
{
    size_t nr = 0;
    size_t bytes[512];
    for (size_t j = 0; j < n; j++) {
        const sl_cass_item_t *it = &items[j];
        size_t q = nr;
        while (q > 0) {
            const sl_cass_item_t *f = &items[req[q - 1][0]];
            if (f->ts == it->ts && f->key_len == it->key_len &&
                memcmp(f->key, it->key, it->key_len) == 0) {
                break;
            }
            q--;
        }
        bool fits = q > 0 && len[q - 1] < max_rows && bytes[q - 1] + it->bytes <= max_bytes;
        for (size_t k = 0; fits && distinct && k < len[q - 1]; k++) {
            const sl_cass_item_t *o = &items[req[q - 1][k]];
            if (it->row == NULL || o->row == NULL ||
                (o->row_len == it->row_len && memcmp(o->row, it->row, it->row_len) == 0)) {
                fits = false;
            }
        }
        if (fits) {
            req[q - 1][len[q - 1]++] = (uint32_t)j;
            bytes[q - 1] += it->bytes;
        } else {
            req[nr][0] = (uint32_t)j;
            len[nr] = 1;
            bytes[nr++] = it->bytes;
        }
    }
    return nr;
}

TEST(group_matches_the_greedy_reference_on_random_input)
{
    static const char *keys[] = {"", "a", "b", "c", "ab", "ba", "abc", "x"};
    static const char *rowv[] = {"r1", "r2", "r3", "r4"};
    uint64_t seed = 88172645463325252ull;
    for (int round = 0; round < 2000; round++) {
        sl_cass_item_t it[300], orig[300];
        uint32_t ref[512][64];
        size_t len[512];
        uint32_t starts[301];
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        size_t n = 1 + seed % 300;
        size_t nkeys = 1 + (seed >> 9) % 8, max_rows = 1 + (seed >> 13) % 6;
        size_t max_bytes = 10 + (seed >> 17) % 60;
        bool distinct = (seed >> 23) & 1, with_ts = (seed >> 24) & 1;
        for (uint32_t i = 0; i < n; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            it[i] = item(keys[seed % nkeys], 1 + (seed >> 8) % 20,
                         with_ts ? (int64_t)((seed >> 16) % 3) : SL_CASS_NO_TS, i);
            size_t r = (seed >> 20) % 5;
            it[i].row = r < 4 ? (const uint8_t *)rowv[r] : NULL;
            it[i].row_len = r < 4 ? 2 : 0;
        }
        memcpy(orig, it, n * sizeof(*it));
        size_t want = group_reference(orig, n, max_rows, max_bytes, distinct, ref, len);
        size_t got = sl_cass_group(it, n, max_rows, max_bytes, distinct, starts);
        CHECK_INT(got, want);
        for (size_t q = 0; q < got && q < want; q++) {
            CHECK_INT(starts[q + 1] - starts[q], len[q]);
            for (size_t k = 0; k < len[q] && starts[q] + k < n; k++) {
                CHECK_INT(it[starts[q] + k].pos, ref[q][k]);
            }
        }
    }
}

TEST(uuid_and_inet_parsers)
{
    uint8_t u[16];
    size_t n = 0;
    CHECK_INT(sl_cql_uuid_parse("00000000-0000-0000-0000-000000000000", 36, u), 0);
    CHECK_INT(sl_cql_uuid_parse("00000000-0000-0000-0000-00000000000", 35, u), -1);
    CHECK_INT(sl_cql_uuid_parse("00000000+0000-0000-0000-000000000000", 36, u), -1);
    CHECK_INT(sl_cql_uuid_parse("0000000-00000-0000-0000-000000000000", 36, u), -1);
    CHECK_INT(sl_cql_inet_parse("192.168.1.20", 12, u, &n), 0);
    CHECK_INT(n, 4);
    CHECK_INT(u[3], 20);
    CHECK_INT(sl_cql_inet_parse("2001:db8::ff00:42:8329", 22, u, &n), 0);
    CHECK_INT(n, 16);
    CHECK_INT(u[15], 0x29);
    char big[100];
    memset(big, '1', sizeof(big));
    CHECK_INT(sl_cql_inet_parse(big, sizeof(big), u, &n), -1);
}

TEST_MAIN(T(binding_maps_markers_to_fields), T(binding_errors_tell_what_to_do),
          T(compatibility_matrix), T(encode_integers), T(encode_floating_point), T(encode_strings),
          T(encode_bool_date_timestamp), T(encode_null_is_unset_but_not_for_a_partition_key),
          T(group_by_partition_in_order), T(group_splits_by_writetime_and_handles_unroutable),
          T(group_distinct_rows_for_upserts), T(group_matches_the_greedy_reference_on_random_input),
          T(uuid_and_inet_parsers))
