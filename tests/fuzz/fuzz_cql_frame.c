/* Fuzzes the CQL v4 response path: the input is a byte stream of response
 * frames; each frame the parser accepts is decoded as the response its opcode
 * says, rows are walked and every cell is decoded as its column's type
 * (collections included). The whole input is also decoded directly as a body,
 * with the opcode and flags taken from its first two bytes, so the body
 * decoders are reached without a valid header.
 * Properties checked on top of "never crashes, never reads out of bounds":
 *  - OK consumes a whole frame (9 + length bytes, within the input); NEED_MORE
 *    and ERROR consume nothing; ERROR always has a message;
 *  - a failed body decode always has a message;
 *  - a decoded Rows result's iterator yields exactly n_rows rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cql/result.h"

#define FZ_MAX_BODY (1u << 20)
#define FZ_MAX_COLS 1024

static void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_cql_frame: %s\n", what);
    abort();
}

static volatile uint64_t fz_sink; /* keeps decoded values alive */

static void fz_value(const sl_cql_coltype_t *t, sl_cql_bytes_t v, int depth)
{
    int32_t i32, n;
    int64_t i64;
    int16_t i16;
    int8_t i8;
    bool b;
    double d;
    float f;
    uint8_t uuid[16];
    sl_cql_str_t s;
    sl_cql_inet_t in;
    sl_cql_bytes_t e, k;
    sl_cql_coll_iter_t it;
    int rc = 0;

    if (t == NULL || depth > SL_CQL_TYPE_MAX_DEPTH + 1) {
        return;
    }
    switch (t->id) {
    case SL_CQL_COL_INT:
        rc = sl_cql_val_int(v, &i32);
        fz_sink += rc == 0 ? (uint64_t)i32 : 0;
        break;
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
    case SL_CQL_COL_TIME:
        rc = sl_cql_val_bigint(v, &i64);
        fz_sink += rc == 0 ? (uint64_t)i64 : 0;
        break;
    case SL_CQL_COL_TIMESTAMP:
        rc = sl_cql_val_timestamp(v, &i64);
        fz_sink += rc == 0 ? (uint64_t)i64 : 0;
        break;
    case SL_CQL_COL_DATE:
        rc = sl_cql_val_date(v, &i64);
        fz_sink += rc == 0 ? (uint64_t)i64 : 0;
        break;
    case SL_CQL_COL_SMALLINT:
        rc = sl_cql_val_smallint(v, &i16);
        fz_sink += rc == 0 ? (uint64_t)i16 : 0;
        break;
    case SL_CQL_COL_TINYINT:
        rc = sl_cql_val_tinyint(v, &i8);
        fz_sink += rc == 0 ? (uint64_t)i8 : 0;
        break;
    case SL_CQL_COL_BOOLEAN:
        rc = sl_cql_val_boolean(v, &b);
        fz_sink += rc == 0 && b;
        break;
    case SL_CQL_COL_DOUBLE:
        rc = sl_cql_val_double(v, &d);
        fz_sink += rc == 0 && d > 0;
        break;
    case SL_CQL_COL_FLOAT:
        rc = sl_cql_val_float(v, &f);
        fz_sink += rc == 0 && f > 0;
        break;
    case SL_CQL_COL_UUID:
    case SL_CQL_COL_TIMEUUID:
        rc = sl_cql_val_uuid(v, uuid);
        fz_sink += rc == 0 ? uuid[15] : 0;
        break;
    case SL_CQL_COL_VARCHAR:
        rc = sl_cql_val_text(v, &s);
        fz_sink += rc == 0 && s.len > 0 ? (uint8_t)s.data[s.len - 1] : 0;
        break;
    case SL_CQL_COL_ASCII:
        rc = sl_cql_val_ascii(v, &s);
        fz_sink += rc == 0 && s.len > 0 ? (uint8_t)s.data[s.len - 1] : 0;
        break;
    case SL_CQL_COL_INET:
        rc = sl_cql_val_inet(v, &in);
        fz_sink += rc == 0 ? in.addr[in.addr_len - 1] : 0;
        break;
    case SL_CQL_COL_LIST:
    case SL_CQL_COL_SET:
        if (sl_cql_val_list(v, &it, &n) == 0) {
            int32_t got = 0;
            while (sl_cql_coll_next(&it, &e)) {
                fz_value(&t->params[0], e, depth + 1);
                got++;
            }
            if (got != n) {
                fz_fail("list iterator count differs from the list's count");
            }
        }
        break;
    case SL_CQL_COL_MAP:
        if (sl_cql_val_map(v, &it, &n) == 0) {
            int32_t got = 0;
            while (sl_cql_map_next(&it, &k, &e)) {
                fz_value(&t->params[0], k, depth + 1);
                fz_value(&t->params[1], e, depth + 1);
                got++;
            }
            if (got != n) {
                fz_fail("map iterator count differs from the map's count");
            }
        }
        break;
    default: {
        sl_cql_bytes_t blob;
        rc = sl_cql_val_blob(v, &blob);
        fz_sink += rc == 0 && blob.len > 0 ? blob.ptr[blob.len - 1] : 0;
        break;
    }
    }
}

static void fz_rows(const sl_cql_rows_t *rows)
{
    static sl_cql_bytes_t cells[FZ_MAX_COLS];
    /* Zero-column rows take no bytes, so n_rows is not bounded by the input:
     * walking 2^31 empty rows proves nothing and only times out. */
    if (rows->meta.n_cols > FZ_MAX_COLS || (rows->meta.n_cols == 0 && rows->n_rows > 1000)) {
        return;
    }
    sl_cql_row_iter_t it;
    int32_t got = 0;
    sl_cql_rows_iter(rows, &it);
    while (sl_cql_rows_next(&it, cells)) {
        for (int32_t c = 0; c < rows->meta.n_cols; c++) {
            fz_value(rows->meta.cols ? &rows->meta.cols[c].type : NULL, cells[c], 0);
        }
        if (++got > rows->n_rows) {
            break;
        }
    }
    if (got != rows->n_rows) {
        fz_fail("row iterator count differs from n_rows");
    }
}

static void fz_body(uint8_t opcode, uint8_t flags, const uint8_t *body, size_t len, sl_arena_t *a)
{
    sl_cql_response_t r;
    char err[160];
    err[0] = '\0';
    if (sl_cql_response_decode_body(opcode, flags, body, len, a, &r, err, sizeof(err)) != 0) {
        if (err[0] == '\0') {
            fz_fail("decode failed without a message");
        }
        return;
    }
    if (opcode == SL_CQL_OP_RESULT && r.result.kind == SL_CQL_RESULT_ROWS) {
        fz_rows(&r.result.rows);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    size_t off = 0;
    while (off < size) {
        sl_cql_frame_t f;
        size_t used = 12345;
        sl_cql_parse_status_t st = sl_cql_frame_parse_ex(
            data + off, size - off, SL_CQL_VERSION_RESPONSE, FZ_MAX_BODY, &f, &used);
        if (st != SL_CQL_PARSE_OK) {
            if (used != 0) {
                fz_fail("NEED_MORE or ERROR consumed bytes");
            }
            if (st == SL_CQL_PARSE_ERROR && f.err[0] == '\0') {
                fz_fail("ERROR without a message");
            }
            break;
        }
        if (used != SL_CQL_HEADER_LEN + f.body_len || used > size - off ||
            f.body != data + off + SL_CQL_HEADER_LEN) {
            fz_fail("OK with an inconsistent frame");
        }
        sl_cql_response_t r;
        char err[160];
        if (sl_cql_response_decode(&f, &a, &r, err, sizeof(err)) == 0 &&
            r.opcode == SL_CQL_OP_RESULT && r.result.kind == SL_CQL_RESULT_ROWS) {
            fz_rows(&r.result.rows);
        }
        sl_arena_reset(&a);
        off += used;
    }
    if (size >= 2) {
        fz_body(data[0] % 0x11, data[1], data + 2, size - 2, &a);
    }
    sl_arena_free(&a);
    return 0;
}
