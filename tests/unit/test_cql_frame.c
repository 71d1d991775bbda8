/* CQL v4 frame layer: header checks, the incremental parser, every primitive
 * notation (round trips, hand-written encodings, truncation at every length)
 * and every request builder against bytes written by hand from the spec. */
#include <stdlib.h>

#include "cql/frame.h"
#include "test.h"

/* A string literal's bytes without its terminating NUL. */
#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

/* A heap copy of exactly n bytes, so ASan reports any read past the end. */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    memcpy(d, p, n);
    return d;
}

static bool bytes_eq(const sl_buf_t *b, const uint8_t *want, size_t n)
{
    if (b->len != n || memcmp(b->data, want, n) != 0) {
        fprintf(stderr, "got %zu bytes:", b->len);
        for (size_t i = 0; i < b->len; i++) {
            fprintf(stderr, " %02x", (uint8_t)b->data[i]);
        }
        fprintf(stderr, "\n");
        return false;
    }
    return true;
}

/* ---- Header ------------------------------------------------------------------------------ */

TEST(test_header_round_trip)
{
    sl_cql_header_t h = {SL_CQL_VERSION_RESPONSE, SL_CQL_FLAG_TRACING | SL_CQL_FLAG_WARNING, -1,
                         SL_CQL_OP_EVENT, 0x01020304};
    uint8_t b[9];
    sl_cql_header_encode(&h, b);
    const uint8_t want[9] = {0x84, 0x0a, 0xff, 0xff, 0x0c, 0x01, 0x02, 0x03, 0x04};
    CHECK(memcmp(b, want, 9) == 0);
    sl_cql_header_t d;
    char err[96];
    CHECK_INT(sl_cql_header_decode(b, 0x84, 0, &d, err, sizeof(err)), 0);
    CHECK_INT(d.version, 0x84);
    CHECK_INT(d.flags, 0x0a);
    CHECK_INT(d.stream, -1);
    CHECK_INT(d.opcode, SL_CQL_OP_EVENT);
    CHECK_INT(d.length, 0x01020304);
}

TEST(test_header_checks)
{
    sl_cql_header_t d;
    char err[96];
    /* a v3 response */
    const uint8_t v3[9] = {0x83, 0, 0, 0, 0x02, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(v3, 0x84, 0, &d, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "version 0x83");
    /* a request where a response is expected */
    const uint8_t req[9] = {0x04, 0, 0, 0, 0x02, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(req, 0x84, 0, &d, err, sizeof(err)), -1);
    /* opcode 0x04 does not exist, nor 0x11 */
    const uint8_t op4[9] = {0x84, 0, 0, 0, 0x04, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(op4, 0x84, 0, &d, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "unknown opcode 0x04");
    const uint8_t op11[9] = {0x84, 0, 0, 0, 0x11, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(op11, 0x84, 0, &d, err, sizeof(err)), -1);
    /* QUERY is a request opcode: not in a response */
    const uint8_t query[9] = {0x84, 0, 0, 0, 0x07, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(query, 0x84, 0, &d, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "unexpected opcode 0x07");
    /* ... but it is in a request */
    const uint8_t query_req[9] = {0x04, 0, 0, 1, 0x07, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(query_req, 0x04, 0, &d, err, sizeof(err)), 0);
    /* READY is not a request */
    const uint8_t ready_req[9] = {0x04, 0, 0, 1, 0x02, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(ready_req, 0x04, 0, &d, err, sizeof(err)), -1);
    /* negative length */
    const uint8_t neg[9] = {0x84, 0, 0, 0, 0x02, 0xff, 0xff, 0xff, 0xff};
    CHECK_INT(sl_cql_header_decode(neg, 0x84, 0, &d, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "negative body length -1");
    /* the default limit is 256 MiB: exactly that passes, one more fails */
    const uint8_t max[9] = {0x84, 0, 0, 0, 0x08, 0x10, 0x00, 0x00, 0x00};
    CHECK_INT(sl_cql_header_decode(max, 0x84, 0, &d, err, sizeof(err)), 0);
    const uint8_t over[9] = {0x84, 0, 0, 0, 0x08, 0x10, 0x00, 0x00, 0x01};
    CHECK_INT(sl_cql_header_decode(over, 0x84, 0, &d, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "exceeds the limit");
    /* a configured limit */
    const uint8_t k2[9] = {0x84, 0, 0, 0, 0x08, 0, 0, 0x08, 0x01};
    CHECK_INT(sl_cql_header_decode(k2, 0x84, 2048, &d, err, sizeof(err)), -1);
    CHECK_INT(sl_cql_header_decode(k2, 0x84, 2049, &d, err, sizeof(err)), 0);
    /* unknown flag bits are ignored (2.2) */
    const uint8_t fl[9] = {0x84, 0xf0, 0, 0, 0x02, 0, 0, 0, 0};
    CHECK_INT(sl_cql_header_decode(fl, 0x84, 0, &d, err, sizeof(err)), 0);
}

/* ---- Incremental parser ------------------------------------------------------------------ */

/* READY on stream 5, then RESULT Void on stream 6. */
static const uint8_t two_frames[] = {0x84, 0x00, 0x00, 0x05, 0x02, 0x00, 0x00, 0x00,
                                     0x00, 0x84, 0x00, 0x00, 0x06, 0x08, 0x00, 0x00,
                                     0x00, 0x04, 0x00, 0x00, 0x00, 0x01};

TEST(test_parse_incremental)
{
    sl_cql_frame_t f;
    size_t used = 99;
    /* every prefix shorter than the first frame needs more (READY is 9 bytes) */
    for (size_t n = 0; n < 9; n++) {
        uint8_t *p = dup_exact(two_frames, n);
        CHECK_INT(sl_cql_frame_parse(p, n, &f, &used), SL_CQL_PARSE_NEED_MORE);
        CHECK_INT(used, 0);
        free(p);
    }
    uint8_t *p = dup_exact(two_frames, sizeof(two_frames));
    CHECK_INT(sl_cql_frame_parse(p, sizeof(two_frames), &f, &used), SL_CQL_PARSE_OK);
    CHECK_INT(used, 9);
    CHECK_INT(f.hdr.stream, 5);
    CHECK_INT(f.hdr.opcode, SL_CQL_OP_READY);
    CHECK_INT(f.body_len, 0);
    size_t off = used;
    /* the second frame, fed one byte at a time */
    for (size_t n = 0; n < sizeof(two_frames) - off; n++) {
        uint8_t *q = dup_exact(two_frames + off, n);
        CHECK_INT(sl_cql_frame_parse(q, n, &f, &used), SL_CQL_PARSE_NEED_MORE);
        free(q);
    }
    CHECK_INT(sl_cql_frame_parse(p + off, sizeof(two_frames) - off, &f, &used), SL_CQL_PARSE_OK);
    CHECK_INT(used, 13);
    CHECK_INT(f.hdr.stream, 6);
    CHECK_INT(f.body_len, 4);
    CHECK(f.body == p + off + 9);
    free(p);
}

TEST(test_parse_errors)
{
    sl_cql_frame_t f;
    size_t used = 99;
    /* a bad header is reported as soon as the 9 bytes are there */
    const uint8_t bad[9] = {0x84, 0, 0, 0, 0x08, 0x7f, 0xff, 0xff, 0xff};
    CHECK_INT(sl_cql_frame_parse(bad, 9, &f, &used), SL_CQL_PARSE_ERROR);
    CHECK_CONTAINS(f.err, "exceeds the limit");
    CHECK_INT(used, 0);
    const uint8_t v4req[9] = {0x04, 0, 0, 0, 0x07, 0, 0, 0, 0};
    CHECK_INT(sl_cql_frame_parse(v4req, 9, &f, &used), SL_CQL_PARSE_ERROR);
    CHECK_CONTAINS(f.err, "version 0x04");
    /* parse_ex with a small limit and request direction */
    const uint8_t q[13] = {0x04, 0, 0, 1, 0x07, 0, 0, 0, 4, 0, 0, 0, 0};
    CHECK_INT(sl_cql_frame_parse_ex(q, 13, 0x04, 4, &f, &used), SL_CQL_PARSE_OK);
    CHECK_INT(used, 13);
    CHECK_INT(sl_cql_frame_parse_ex(q, 13, 0x04, 3, &f, &used), SL_CQL_PARSE_ERROR);
}

/* ---- Primitives -------------------------------------------------------------------------- */

/* Reads every primitive written by prim_write, in order, and checks them. */
static int prim_read(const uint8_t *p, size_t n, sl_arena_t *a)
{
    sl_cql_rd_t r;
    sl_cql_rd_init(&r, p, n);
    uint8_t b;
    uint16_t s;
    int32_t i;
    int64_t l;
    sl_cql_str_t str;
    uint8_t uuid[16];
    const char *const *list;
    size_t nl;
    sl_cql_bytes_t bytes;
    sl_cql_inet_t inet;
    const sl_cql_strmap_entry_t *sm;
    const sl_cql_bytesmap_entry_t *bm;
    int bad = 0;

#define R(call)                                                                                    \
    do {                                                                                           \
        if ((call) != 0) {                                                                         \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)
#define WANT(cond) bad += !(cond)
    R(sl_cql_rd_byte(&r, &b));
    WANT(b == 0xab);
    R(sl_cql_rd_short(&r, &s));
    WANT(s == 0xfedc);
    R(sl_cql_rd_int(&r, &i));
    WANT(i == -2);
    R(sl_cql_rd_long(&r, &l));
    WANT(l == INT64_MIN + 5);
    R(sl_cql_rd_string(&r, &str));
    WANT(str.len == 5 && memcmp(str.data, "hello", 5) == 0);
    R(sl_cql_rd_long_string(&r, &str));
    WANT(str.len == 0);
    R(sl_cql_rd_uuid(&r, uuid));
    WANT(uuid[0] == 0 && uuid[15] == 15);
    R(sl_cql_rd_string_list(&r, a, &list, &nl));
    WANT(nl == 2 && strcmp(list[0], "a") == 0 && strcmp(list[1], "bc") == 0);
    R(sl_cql_rd_bytes(&r, &bytes));
    WANT(bytes.len == 3 && memcmp(bytes.ptr, "xyz", 3) == 0);
    R(sl_cql_rd_bytes(&r, &bytes));
    WANT(bytes.len == -1 && bytes.ptr == NULL);
    R(sl_cql_rd_value(&r, &bytes));
    WANT(bytes.len == -2);
    R(sl_cql_rd_value(&r, &bytes));
    WANT(bytes.len == -1);
    R(sl_cql_rd_value(&r, &bytes));
    WANT(bytes.len == 0);
    R(sl_cql_rd_short_bytes(&r, &bytes));
    WANT(bytes.len == 2 && bytes.ptr[1] == 0x02);
    R(sl_cql_rd_option_id(&r, &s));
    WANT(s == 0x0009);
    R(sl_cql_rd_short(&r, &s)); /* option list: count, then ids */
    WANT(s == 2);
    R(sl_cql_rd_option_id(&r, &s));
    WANT(s == 0x000d);
    R(sl_cql_rd_option_id(&r, &s));
    WANT(s == 0x0002);
    R(sl_cql_rd_inet(&r, &inet));
    WANT(inet.addr_len == 4 && inet.addr[0] == 10 && inet.addr[3] == 7 && inet.port == 9042);
    R(sl_cql_rd_inet(&r, &inet));
    WANT(inet.addr_len == 16 && inet.addr[15] == 1 && inet.port == 9043);
    R(sl_cql_rd_consistency(&r, &s));
    WANT(s == SL_CQL_LOCAL_QUORUM);
    R(sl_cql_rd_string_map(&r, a, &sm, &nl));
    WANT(nl == 1 && strcmp(sm[0].key, "k") == 0 && strcmp(sm[0].value, "v") == 0);
    R(sl_cql_rd_string_multimap(&r, a, &sm, &nl));
    WANT(nl == 2 && strcmp(sm[0].key, "COMPRESSION") == 0 && sm[0].n_values == 2 &&
         strcmp(sm[0].values[1], "snappy") == 0 && sm[1].n_values == 0);
    R(sl_cql_rd_bytes_map(&r, a, &bm, &nl));
    WANT(nl == 2 && strcmp(bm[0].key, "p") == 0 && bm[0].value.len == 1 &&
         bm[0].value.ptr[0] == 'q' && bm[1].value.len == -1);
    WANT(sl_cql_rd_remaining(&r) == 0);
#undef R
#undef WANT
    return bad == 0 ? 0 : -2;
}

static void prim_write(sl_cql_wr_t *w)
{
    uint8_t uuid[16];
    for (int k = 0; k < 16; k++) {
        uuid[k] = (uint8_t)k;
    }
    const char *list[] = {"a", "bc"};
    const uint8_t sb[2] = {1, 2};
    const uint16_t opts[2] = {0x000d, 0x0002};
    sl_cql_inet_t v4 = {4, {10, 0, 0, 7}, 9042};
    sl_cql_inet_t v6 = {16, {[15] = 1}, 9043};
    const char *mk[] = {"k"}, *mv[] = {"v"};
    const char *mmk[] = {"COMPRESSION", "EMPTY"};
    const char *comp[] = {"lz4", "snappy"};
    const char *const *mmv[] = {comp, NULL};
    const size_t mmn[] = {2, 0};
    const char *bmk[] = {"p", "n"};
    const sl_cql_bytes_t bmv[] = {{(const uint8_t *)"q", 1}, {NULL, -1}};

    sl_cql_wr_byte(w, 0xab);
    sl_cql_wr_short(w, 0xfedc);
    sl_cql_wr_int(w, -2);
    sl_cql_wr_long(w, INT64_MIN + 5);
    sl_cql_wr_string(w, "hello", 5);
    sl_cql_wr_long_string(w, "", 0);
    sl_cql_wr_uuid(w, uuid);
    sl_cql_wr_string_list(w, list, 2);
    sl_cql_wr_bytes(w, (sl_cql_bytes_t){(const uint8_t *)"xyz", 3});
    sl_cql_wr_bytes(w, (sl_cql_bytes_t){NULL, -7}); /* any negative: null */
    sl_cql_wr_value(w, (sl_cql_bytes_t){NULL, SL_CQL_LEN_UNSET});
    sl_cql_wr_value(w, (sl_cql_bytes_t){NULL, SL_CQL_LEN_NULL});
    sl_cql_wr_value(w, (sl_cql_bytes_t){(const uint8_t *)"", 0});
    sl_cql_wr_short_bytes(w, sb, 2);
    sl_cql_wr_option(w, 0x0009);
    sl_cql_wr_option_list(w, opts, 2);
    sl_cql_wr_inet(w, &v4);
    sl_cql_wr_inet(w, &v6);
    sl_cql_wr_consistency(w, SL_CQL_LOCAL_QUORUM);
    sl_cql_wr_string_map(w, mk, mv, 1);
    sl_cql_wr_string_multimap(w, mmk, mmv, mmn, 2);
    sl_cql_wr_bytes_map(w, bmk, bmv, 2);
}

TEST(test_primitives_round_trip_and_truncation)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, &b);
    prim_write(&w);
    CHECK(w.err == NULL);
    sl_arena_t a;
    sl_arena_init(&a, 0);
    CHECK_INT(prim_read((const uint8_t *)b.data, b.len, &a), 0);
    /* every shorter input fails cleanly */
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *p = dup_exact(b.data, n);
        if (prim_read(p, n, &a) != -1) {
            fprintf(stderr, "prefix of %zu bytes did not fail\n", n);
            CHECK(0);
        }
        free(p);
        sl_arena_reset(&a);
    }
    sl_arena_free(&a);
    sl_buf_free(&b);
}

/* Encodings written by hand from section 3, read back. */
TEST(test_primitives_by_hand)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_rd_t r;
    sl_cql_bytes_t v;
    sl_cql_str_t s;
    int64_t l;

    /* [long] 0x0102030405060708 */
    sl_cql_rd_init(&r, LIT("\x01\x02\x03\x04\x05\x06\x07\x08"));
    CHECK_INT(sl_cql_rd_long(&r, &l), 0);
    CHECK(l == 0x0102030405060708LL);
    /* [long string] "abc" */
    sl_cql_rd_init(&r, LIT("\x00\x00\x00\x03"
                           "abc"));
    CHECK_INT(sl_cql_rd_long_string(&r, &s), 0);
    CHECK(s.len == 3 && memcmp(s.data, "abc", 3) == 0);
    /* a negative [long string] length */
    sl_cql_rd_init(&r, LIT("\xff\xff\xff\xff"));
    CHECK_INT(sl_cql_rd_long_string(&r, &s), -1);
    /* [bytes] -5 is null; [value] -3 is invalid, -2 not set */
    sl_cql_rd_init(&r, LIT("\xff\xff\xff\xfb"));
    CHECK_INT(sl_cql_rd_bytes(&r, &v), 0);
    CHECK_INT(v.len, -1);
    sl_cql_rd_init(&r, LIT("\xff\xff\xff\xfd"));
    CHECK_INT(sl_cql_rd_value(&r, &v), -1);
    CHECK_CONTAINS(r.err, "below -2");
    sl_cql_rd_init(&r, LIT("\xff\xff\xff\xfe"));
    CHECK_INT(sl_cql_rd_value(&r, &v), 0);
    CHECK_INT(v.len, -2);
    /* a [bytes] claiming more than is there */
    sl_cql_rd_init(&r, LIT("\x7f\xff\xff\xff"
                           "ab"));
    CHECK_INT(sl_cql_rd_bytes(&r, &v), -1);
    /* errors are sticky */
    uint8_t byte;
    CHECK_INT(sl_cql_rd_byte(&r, &byte), -1);
    /* [inet] of size 5 is refused */
    sl_cql_inet_t in;
    sl_cql_rd_init(&r, LIT("\x05\x01\x02\x03\x04\x05\x00\x00\x00\x01"));
    CHECK_INT(sl_cql_rd_inet(&r, &in), -1);
    /* [consistency] 0x000B is unknown */
    uint16_t cl;
    sl_cql_rd_init(&r, LIT("\x00\x0b"));
    CHECK_INT(sl_cql_rd_consistency(&r, &cl), -1);
    /* a [string list] count larger than the input can hold fails before allocating */
    const char *const *list;
    size_t n;
    sl_cql_rd_init(&r, LIT("\xff\xff\x00\x00"));
    CHECK_INT(sl_cql_rd_string_list(&r, &a, &list, &n), -1);
    CHECK(a.used < 1024);
    /* an empty [string list] */
    sl_cql_rd_init(&r, LIT("\x00\x00"));
    CHECK_INT(sl_cql_rd_string_list(&r, &a, &list, &n), 0);
    CHECK_INT(n, 0);
    sl_arena_free(&a);
}

TEST(test_writer_limits)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_cql_wr_t w;
    static char big[70000];
    sl_cql_wr_init(&w, &b);
    sl_cql_wr_string(&w, big, sizeof(big));
    CHECK(w.err != NULL);
    sl_cql_wr_init(&w, &b);
    sl_cql_wr_value(&w, (sl_cql_bytes_t){NULL, -3});
    CHECK(w.err != NULL);
    sl_cql_wr_init(&w, &b);
    sl_cql_inet_t in = {5, {0}, 1};
    sl_cql_wr_inet(&w, &in);
    CHECK(w.err != NULL);
    sl_cql_wr_init(&w, &b);
    sl_cql_wr_consistency(&w, 11);
    CHECK(w.err != NULL);
    sl_cql_wr_init(&w, &b);
    sl_cql_wr_short_bytes(&w, (const uint8_t *)big, sizeof(big));
    CHECK(w.err != NULL);
    CHECK_INT(b.len, 0);
    sl_buf_free(&b);
}

/* ---- Requests ---------------------------------------------------------------------------- */

TEST(test_req_startup_options)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *err = NULL;
    CHECK_INT(sl_cql_req_startup(&b, 0, NULL, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x00\x01\x00\x00\x00\x16"
                           "\x00\x01"
                           "\x00\x0b"
                           "CQL_VERSION"
                           "\x00\x05"
                           "3.0.0")));
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_req_startup(&b, 1, "lz4", &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x01\x01\x00\x00\x00\x28"
                           "\x00\x02"
                           "\x00\x0b"
                           "CQL_VERSION"
                           "\x00\x05"
                           "3.0.0"
                           "\x00\x0b"
                           "COMPRESSION"
                           "\x00\x03"
                           "lz4")));
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_req_options(&b, 0x1234, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x12\x34\x05\x00\x00\x00\x00")));
    /* negative stream ids are the server's */
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_req_options(&b, -1, &err), -1);
    CHECK_CONTAINS(err, "stream");
    CHECK_INT(b.len, 0);
    sl_buf_free(&b);
}

TEST(test_req_auth)
{
    sl_buf_t tok = SL_BUF_INIT, b = SL_BUF_INIT;
    const char *err = NULL;
    sl_cql_sasl_plain(&tok, "cassandra", "pw");
    CHECK_INT(tok.len, 13);
    CHECK(memcmp(tok.data, "\0cassandra\0pw", 13) == 0);
    sl_cql_bytes_t t = {(const uint8_t *)tok.data, (int32_t)tok.len};
    CHECK_INT(sl_cql_req_auth_response(&b, 2, t, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x02\x0f\x00\x00\x00\x11"
                           "\x00\x00\x00\x0d"
                           "\x00"
                           "cassandra"
                           "\x00"
                           "pw")));
    /* a null token */
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_req_auth_response(&b, 2, (sl_cql_bytes_t){NULL, -1}, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x02\x0f\x00\x00\x00\x04\xff\xff\xff\xff")));
    sl_buf_free(&tok);
    sl_buf_free(&b);
}

TEST(test_req_query_minimal)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *err = NULL;
    sl_cql_params_t p = {.consistency = SL_CQL_ONE};
    CHECK_INT(sl_cql_req_query(&b, 3, "SELECT 1", 8, &p, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x03\x07\x00\x00\x00\x0f"
                           "\x00\x00\x00\x08"
                           "SELECT 1"
                           "\x00\x01"
                           "\x00")));
    sl_buf_free(&b);
}

TEST(test_req_query_all_flags)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *err = NULL;
    const sl_cql_bytes_t values[] = {
        {(const uint8_t *)"\x00\x00\x00\x2a", 4}, {NULL, -1}, {NULL, -2}};
    const char *names[] = {"a", "b", "c"};
    sl_cql_params_t p = {
        .consistency = SL_CQL_LOCAL_QUORUM,
        .values = values,
        .n_values = 3,
        .names = names,
        .skip_metadata = true,
        .page_size = 5000,
        .paging_state = {(const uint8_t *)"PS", 2},
        .serial_consistency = SL_CQL_LOCAL_SERIAL,
        .has_timestamp = true,
        .timestamp = 0x0102030405060708LL,
    };
    CHECK_INT(sl_cql_req_query(&b, 0, "Q", 1, &p, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x00\x07\x00\x00\x00\x37"
                           "\x00\x00\x00\x01"
                           "Q"
                           "\x00\x06" /* LOCAL_QUORUM */
                           "\x7f"     /* all seven flags */
                           "\x00\x03"
                           "\x00\x01"
                           "a"
                           "\x00\x00\x00\x04\x00\x00\x00\x2a"
                           "\x00\x01"
                           "b"
                           "\xff\xff\xff\xff"
                           "\x00\x01"
                           "c"
                           "\xff\xff\xff\xfe"
                           "\x00\x00\x13\x88" /* page size 5000 */
                           "\x00\x00\x00\x02"
                           "PS"
                           "\x00\x09" /* LOCAL_SERIAL */
                           "\x01\x02\x03\x04\x05\x06\x07\x08")));
    /* refused parameters leave the buffer as it was */
    size_t before = b.len;
    sl_cql_params_t bad = {.consistency = SL_CQL_ONE, .serial_consistency = SL_CQL_QUORUM};
    CHECK_INT(sl_cql_req_query(&b, 0, "Q", 1, &bad, &err), -1);
    CHECK_CONTAINS(err, "serial");
    bad = (sl_cql_params_t){.consistency = SL_CQL_ONE, .has_timestamp = true, .timestamp = -1};
    CHECK_INT(sl_cql_req_query(&b, 0, "Q", 1, &bad, &err), -1);
    bad = (sl_cql_params_t){.consistency = SL_CQL_ONE, .page_size = -1};
    CHECK_INT(sl_cql_req_query(&b, 0, "Q", 1, &bad, &err), -1);
    bad = (sl_cql_params_t){.consistency = 42};
    CHECK_INT(sl_cql_req_query(&b, 0, "Q", 1, &bad, &err), -1);
    const sl_cql_bytes_t badv[] = {{NULL, -3}};
    bad = (sl_cql_params_t){.consistency = SL_CQL_ONE, .values = badv, .n_values = 1};
    CHECK_INT(sl_cql_req_query(&b, 0, "Q", 1, &bad, &err), -1);
    CHECK_INT(b.len, before);
    sl_buf_free(&b);
}

TEST(test_req_prepare_execute)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *err = NULL;
    CHECK_INT(sl_cql_req_prepare(&b, 4, "INSERT", 6, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x04\x09\x00\x00\x00\x0a"
                           "\x00\x00\x00\x06"
                           "INSERT")));
    sl_buf_reset(&b);
    const uint8_t id[3] = {0xaa, 0xbb, 0xcc};
    const sl_cql_bytes_t values[] = {{(const uint8_t *)"x", 1}};
    sl_cql_params_t p = {.consistency = SL_CQL_QUORUM, .values = values, .n_values = 1};
    CHECK_INT(sl_cql_req_execute(&b, 4, id, 3, &p, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x04\x0a\x00\x00\x00\x0f"
                           "\x00\x03\xaa\xbb\xcc"
                           "\x00\x04"
                           "\x01"
                           "\x00\x01"
                           "\x00\x00\x00\x01"
                           "x")));
    CHECK_INT(sl_cql_req_execute(&b, 4, id, 0, &p, &err), -1);
    sl_buf_free(&b);
}

TEST(test_req_batch)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *err = NULL;
    const uint8_t id[2] = {0x01, 0x02};
    const sl_cql_bytes_t v1[] = {{(const uint8_t *)"\x07", 1}, {NULL, -1}};
    const sl_cql_batch_stmt_t stmts[] = {
        {.id = id, .id_len = 2, .values = v1, .n_values = 2},
        {.query = "Q", .query_len = 1},
    };
    sl_cql_batch_t batch = {
        .type = SL_CQL_BATCH_UNLOGGED,
        .stmts = stmts,
        .n_stmts = 2,
        .consistency = SL_CQL_TWO,
        .serial_consistency = SL_CQL_SERIAL,
        .has_timestamp = true,
        .timestamp = 1,
    };
    CHECK_INT(sl_cql_req_batch(&b, 9, &batch, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x09\x0d\x00\x00\x00\x28"
                           "\x01"     /* unlogged */
                           "\x00\x02" /* two statements */
                           "\x01"
                           "\x00\x02\x01\x02"
                           "\x00\x02"
                           "\x00\x00\x00\x01\x07"
                           "\xff\xff\xff\xff"
                           "\x00"
                           "\x00\x00\x00\x01"
                           "Q"
                           "\x00\x00"
                           "\x00\x02" /* TWO */
                           "\x30"
                           "\x00\x08" /* SERIAL */
                           "\x00\x00\x00\x00\x00\x00\x00\x01")));
    /* a counter batch without options */
    sl_buf_reset(&b);
    batch = (sl_cql_batch_t){
        .type = SL_CQL_BATCH_COUNTER, .stmts = stmts + 1, .n_stmts = 1, .consistency = 1};
    CHECK_INT(sl_cql_req_batch(&b, 0, &batch, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x00\x0d\x00\x00\x00\x0e"
                           "\x02\x00\x01"
                           "\x00\x00\x00\x00\x01Q\x00\x00"
                           "\x00\x01\x00")));
    batch.type = (sl_cql_batch_type_t)3;
    size_t before = b.len;
    CHECK_INT(sl_cql_req_batch(&b, 0, &batch, &err), -1);
    CHECK_INT(b.len, before);
    sl_buf_free(&b);
}

TEST(test_req_register)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *err = NULL;
    const char *ev[] = {"STATUS_CHANGE", "SCHEMA_CHANGE"};
    CHECK_INT(sl_cql_req_register(&b, 1, ev, 2, &err), 0);
    CHECK(bytes_eq(&b, LIT("\x04\x00\x00\x01\x0b\x00\x00\x00\x20"
                           "\x00\x02"
                           "\x00\x0d"
                           "STATUS_CHANGE"
                           "\x00\x0d"
                           "SCHEMA_CHANGE")));
    CHECK_INT(sl_cql_req_register(&b, 1, ev, 0, &err), -1);
    sl_buf_free(&b);
}

/* Every request parses back as a request frame whose length matches. */
TEST(test_req_frames_parse)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *err = NULL;
    sl_cql_params_t p = {.consistency = SL_CQL_ONE};
    const uint8_t id[1] = {9};
    CHECK_INT(sl_cql_req_startup(&b, 0, NULL, &err), 0);
    CHECK_INT(sl_cql_req_options(&b, 1, &err), 0);
    CHECK_INT(sl_cql_req_query(&b, 2, "Q", 1, &p, &err), 0);
    CHECK_INT(sl_cql_req_prepare(&b, 3, "Q", 1, &err), 0);
    CHECK_INT(sl_cql_req_execute(&b, 4, id, 1, &p, &err), 0);
    size_t off = 0;
    int n = 0;
    while (off < b.len) {
        sl_cql_frame_t f;
        size_t used;
        CHECK_INT(
            sl_cql_frame_parse_ex((const uint8_t *)b.data + off, b.len - off, 0x04, 0, &f, &used),
            SL_CQL_PARSE_OK);
        if (used == 0) {
            break;
        }
        CHECK_INT(f.hdr.stream, n);
        off += used;
        n++;
    }
    CHECK_INT(n, 5);
    sl_buf_free(&b);
}

TEST_MAIN(T(test_header_round_trip), T(test_header_checks), T(test_parse_incremental),
          T(test_parse_errors), T(test_primitives_round_trip_and_truncation),
          T(test_primitives_by_hand), T(test_writer_limits), T(test_req_startup_options),
          T(test_req_auth), T(test_req_query_minimal), T(test_req_query_all_flags),
          T(test_req_prepare_execute), T(test_req_batch), T(test_req_register),
          T(test_req_frames_parse))
