/* Routing keys and the CQL serialized forms they are built from. Expected
 * bytes and tokens come from public tests of other drivers and from the
 * protocol spec (source named at each test), never from this code. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cql/murmur3.h"
#include "cql/routing.h"
#include "cql/types.h"
#include "test.h"
#include "util/buf.h"

static char *to_hex(const sl_buf_t *b)
{
    static char hex[512];
    size_t n = b->len < 255 ? b->len : 255;
    for (size_t i = 0; i < n; i++) {
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)b->data[i]);
    }
    hex[2 * n] = '\0';
    return hex;
}

static sl_cql_bytes_t view(const sl_buf_t *b)
{
    return (sl_cql_bytes_t){(const uint8_t *)b->data, (int32_t)b->len};
}

static int64_t buf_token(const sl_buf_t *b)
{
    return sl_cql_murmur3_token(b->data, b->len);
}

/* datastax/python-driver tests/unit/test_marshalling.py (marshalled_value_pairs)
 * for Int32Type and LongType; 123456789 = 0x075bcd15. */
TEST(int_and_bigint_are_big_endian_twos_complement)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_cql_encode_int(&b, 2135949312);
    CHECK_STR(to_hex(&b), "7f500000");
    sl_buf_reset(&b);
    sl_cql_encode_int(&b, -144495);
    CHECK_STR(to_hex(&b), "fffdcb91");
    sl_buf_reset(&b);
    sl_cql_encode_int(&b, 123456789);
    CHECK_STR(to_hex(&b), "075bcd15");
    sl_buf_reset(&b);
    sl_cql_encode_bigint(&b, INT64_MAX);
    CHECK_STR(to_hex(&b), "7fffffffffffffff");
    sl_buf_reset(&b);
    sl_cql_encode_bigint(&b, INT64_MIN);
    CHECK_STR(to_hex(&b), "8000000000000000");
    sl_buf_reset(&b);
    sl_cql_encode_bigint(&b, 123456789);
    CHECK_STR(to_hex(&b), "00000000075bcd15");
    sl_buf_free(&b);
}

/* Same file: UTF8Type u'\u307e\u3057\u3066' and the empty string. */
TEST(text_is_its_utf8_bytes)
{
    sl_buf_t b = SL_BUF_INIT;
    const char *s = "\xe3\x81\xbe\xe3\x81\x97\xe3\x81\xa6";
    sl_cql_encode_text(&b, s, strlen(s));
    CHECK_STR(to_hex(&b), "e381bee38197e381a6");
    sl_buf_reset(&b);
    sl_cql_encode_text(&b, "", 0);
    CHECK_INT(b.len, 0);
    sl_buf_free(&b);
}

/* Same file: DateType (the CQL timestamp) datetime(2011, 11, 7, 18, 55, 49,
 * 881000) = 00 00 01 33 7f 62 ee 79 and datetime(2015, 11, 2) =
 * 00 00 01 50 c5 7e 4c 00. The millisecond literals are from GNU date:
 * `date -u -d '2011-11-07 18:55:49' +%s` = 1320692149, and 1446422400. */
TEST(timestamp_is_ms_since_epoch)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_cql_encode_timestamp(&b, INT64_C(1320692149881));
    CHECK_STR(to_hex(&b), "000001337f62ee79");
    sl_buf_reset(&b);
    sl_cql_encode_timestamp(&b, INT64_C(1446422400000));
    CHECK_STR(to_hex(&b), "00000150c57e4c00");
    sl_buf_reset(&b);
    sl_cql_encode_timestamp(&b, -1);
    CHECK_STR(to_hex(&b), "ffffffffffffffff");
    sl_buf_free(&b);
    /* the same instants through sl_cql_date_days */
    CHECK_INT(sl_cql_date_days(2011, 11, 7) * 86400000 + (18 * 3600 + 55 * 60 + 49) * 1000 + 881,
              INT64_C(1320692149881));
    CHECK_INT(sl_cql_date_days(2015, 11, 2) * 86400000, INT64_C(1446422400000));
}

/* apache/cassandra doc/native_protocol_v4.spec 6.5: "0: -5877641-06-23,
 * 2^31: 1970-1-1, 2^32: 5881580-07-11". The last example is off by one: the
 * largest value, 2^32 - 1, is 5881580-07-11 (scylladb/scylladb
 * test/boost/types_test.cc, test_simple_date_type_string_conversions:
 * 0xffffffff <-> "5881580-07-11", 0x00000000 <-> "-5877641-06-23", and
 * "-5877641-06-22" / "5881580-07-12" do not parse). Other day counts from GNU
 * date (`date -u -d 2024-02-29 +%s` / 86400 = 19782, 1900-03-01 = -25508,
 * 2000-03-01 = 11017). */
TEST(date_days_match_spec_and_gnu_date)
{
    CHECK_INT(sl_cql_date_days(1970, 1, 1), 0);
    CHECK_INT(sl_cql_date_days(-5877641, 6, 23), -(INT64_C(1) << 31));
    CHECK_INT(sl_cql_date_days(5881580, 7, 11), (INT64_C(1) << 31) - 1);
    CHECK_INT(sl_cql_date_days(2024, 2, 29), 19782);
    CHECK_INT(sl_cql_date_days(1900, 3, 1), -25508);
    CHECK_INT(sl_cql_date_days(2000, 3, 1), 11017);
    CHECK_INT(sl_cql_date_days(2011, 11, 7), 1320692149 / 86400);
}

/* Spec 6.5 and the scylladb test above (range ends), and
 * datastax/python-driver tests/unit/test_marshalling.py: SimpleDateType
 * Date(1) = 80 00 00 01, Date('1969-12-31') = 7f ff ff ff. */
TEST(date_is_unsigned_days_centered_at_2_31)
{
    sl_buf_t b = SL_BUF_INIT;
    CHECK_INT(sl_cql_encode_date(&b, 0), 0);
    CHECK_STR(to_hex(&b), "80000000");
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_encode_date(&b, 1), 0);
    CHECK_STR(to_hex(&b), "80000001");
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_encode_date(&b, sl_cql_date_days(1969, 12, 31)), 0);
    CHECK_STR(to_hex(&b), "7fffffff");
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_encode_date(&b, sl_cql_date_days(-5877641, 6, 23)), 0);
    CHECK_STR(to_hex(&b), "00000000");
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_encode_date(&b, sl_cql_date_days(5881580, 7, 11)), 0);
    CHECK_STR(to_hex(&b), "ffffffff");
    sl_buf_reset(&b);
    /* one day past either end does not fit in 32 bits */
    CHECK_INT(sl_cql_encode_date(&b, sl_cql_date_days(5881580, 7, 12)), -1);
    CHECK_INT(sl_cql_encode_date(&b, sl_cql_date_days(-5877641, 6, 22)), -1);
    CHECK_INT(b.len, 0);
    sl_buf_free(&b);
}

/* datastax/nodejs-driver test/unit/encoder-tests.js, #setRoutingKeyFromUser():
 * [01] [02] [03 03] -> 00010100 00010200 0002030300, and a single [01] -> 01;
 * ints 1 and 2 -> 0004 00000001 00 0004 00000002 00 (also client-tests.js,
 * "should build the routingKey based on routingNames"). */
TEST(nodejs_driver_routing_keys)
{
    static const uint8_t one[] = {1}, two[] = {2}, three[] = {3, 3};
    sl_cql_bytes_t parts[3] = {{one, 1}, {two, 1}, {three, 2}};
    sl_buf_t b = SL_BUF_INIT;
    CHECK_INT(sl_cql_routing_key(parts, 3, &b), 0);
    CHECK_STR(to_hex(&b), "00010100000102000002030300");
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_routing_key(parts, 1, &b), 0);
    CHECK_STR(to_hex(&b), "01");

    sl_buf_t v1 = SL_BUF_INIT, v2 = SL_BUF_INIT;
    sl_cql_encode_int(&v1, 1);
    sl_cql_encode_int(&v2, 2);
    sl_cql_bytes_t ints[2] = {view(&v1), view(&v2)};
    sl_buf_reset(&b);
    CHECK_INT(sl_cql_routing_key(ints, 2, &b), 0);
    CHECK_STR(to_hex(&b), "00040000000100000400000002"
                          "00");
    sl_buf_free(&v1);
    sl_buf_free(&v2);
    sl_buf_free(&b);
}

/* apache/cassandra-gocql-driver internal/murmur/murmur_test.go,
 * TestMurmur3H1_CassandraSign: the composite key
 * 0010 4327529fb645dd00b883ec39ae448bb8 00 | 0004 00066a6b 00
 * has token -9223371632693506265. */
TEST(gocql_composite_key_token)
{
    static const uint8_t a[16] = {0x43, 0x27, 0x52, 0x9f, 0xb6, 0x45, 0xdd, 0x00,
                                  0xb8, 0x83, 0xec, 0x39, 0xae, 0x44, 0x8b, 0xb8};
    static const uint8_t c[4] = {0x00, 0x06, 0x6a, 0x6b};
    sl_cql_bytes_t parts[2] = {{a, 16}, {c, 4}};
    sl_buf_t b = SL_BUF_INIT;
    CHECK_INT(sl_cql_routing_key(parts, 2, &b), 0);
    CHECK_STR(to_hex(&b), "00104327529fb645dd00b883ec39ae448bb800000400066a6b00");
    CHECK_INT(buf_token(&b), INT64_C(-9223371632693506265));
    sl_buf_free(&b);
}

/* datastax/cpp-driver tests/src/unit/tests/test_routing_key.cpp ("the
 * java-driver was used as a reference"). Single values: int 123456789 (the
 * FACTS.md example: its tail byte 0xcd shows the sign quirk), bigint
 * 123456789, text. Composites: (uuid, bigint 123456789, text) and
 * (boolean false, int 123456789, text "xyz"). */
TEST(cpp_driver_routing_key_tokens)
{
    sl_buf_t v[3] = {SL_BUF_INIT, SL_BUF_INIT, SL_BUF_INIT};
    sl_buf_t key = SL_BUF_INIT;
    sl_cql_bytes_t parts[3];

    sl_cql_encode_int(&v[0], 123456789);
    parts[0] = view(&v[0]);
    CHECK_INT(sl_cql_routing_key(parts, 1, &key), 0);
    CHECK_INT(buf_token(&key), INT64_C(-567416363967733925));

    sl_buf_reset(&v[0]);
    sl_buf_reset(&key);
    sl_cql_encode_bigint(&v[0], 123456789);
    parts[0] = view(&v[0]);
    CHECK_INT(sl_cql_routing_key(parts, 1, &key), 0);
    CHECK_INT(buf_token(&key), INT64_C(5616923877423390342));

    sl_buf_reset(&v[0]);
    sl_buf_reset(&key);
    sl_cql_encode_text(&v[0], "abcdefghijklmnop", 16);
    parts[0] = view(&v[0]);
    CHECK_INT(sl_cql_routing_key(parts, 1, &key), 0);
    CHECK_INT(buf_token(&key), INT64_C(-4266531025627334877));

    /* uuid d8775a70-6ea4-11e4-9fa7-0db22d2a6140 */
    static const uint8_t uuid[16] = {0xd8, 0x77, 0x5a, 0x70, 0x6e, 0xa4, 0x11, 0xe4,
                                     0x9f, 0xa7, 0x0d, 0xb2, 0x2d, 0x2a, 0x61, 0x40};
    sl_buf_reset(&v[0]);
    sl_buf_reset(&key);
    sl_cql_encode_bigint(&v[1], 123456789);
    sl_cql_encode_text(&v[2], "abcdefghijklmnop", 16);
    parts[0] = (sl_cql_bytes_t){uuid, 16};
    parts[1] = view(&v[1]);
    parts[2] = view(&v[2]);
    CHECK_INT(sl_cql_routing_key(parts, 3, &key), 0);
    CHECK_INT(key.len, 3 * 3 + 16 + 8 + 16);
    CHECK_INT(buf_token(&key), INT64_C(3838437721532426513));

    static const uint8_t bool_false[1] = {0};
    sl_buf_reset(&v[1]);
    sl_buf_reset(&v[2]);
    sl_buf_reset(&key);
    sl_cql_encode_int(&v[1], 123456789);
    sl_cql_encode_text(&v[2], "xyz", 3);
    parts[0] = (sl_cql_bytes_t){bool_false, 1};
    parts[1] = view(&v[1]);
    parts[2] = view(&v[2]);
    CHECK_INT(sl_cql_routing_key(parts, 3, &key), 0);
    CHECK_STR(to_hex(&key), "0001"
                            "00"
                            "00"
                            "0004"
                            "075bcd15"
                            "00"
                            "0003"
                            "78797a"
                            "00");
    CHECK_INT(buf_token(&key), INT64_C(4466051201071860026));

    for (int i = 0; i < 3; i++) {
        sl_buf_free(&v[i]);
    }
    sl_buf_free(&key);
}

TEST(null_and_invalid_parts_are_rejected)
{
    static const uint8_t x[1] = {7};
    sl_buf_t b = SL_BUF_INIT;
    sl_buf_append(&b, "pre", 3);
    sl_cql_bytes_t parts[2] = {{x, 1}, {NULL, -1}};
    CHECK_INT(sl_cql_routing_key(parts, 2, &b), -1);
    CHECK_INT(sl_cql_routing_key(parts + 1, 1, &b), -1);
    CHECK_INT(sl_cql_routing_key(parts, 0, &b), -1);
    /* a composite component must fit the u16 length */
    uint8_t *big = calloc(70000, 1);
    sl_cql_bytes_t bigparts[2] = {{x, 1}, {big, 65536}};
    CHECK_INT(sl_cql_routing_key(bigparts, 2, &b), -1);
    CHECK_INT(b.len, 3); /* nothing appended on error */
    /* 65535 is fine, and a single column has no such limit */
    bigparts[1].len = 65535;
    CHECK_INT(sl_cql_routing_key(bigparts, 2, &b), 0);
    CHECK_INT(b.len, 3 + 3 + 1 + 2 + 65535 + 1);
    CHECK_INT(sl_cql_routing_key(bigparts + 1, 1, &b), 0);
    free(big);
    sl_buf_free(&b);
}

/* An empty single component is the empty key (token INT64_MIN); an empty
 * component inside a composite key is just a zero length. */
TEST(empty_components)
{
    sl_cql_bytes_t parts[2] = {{NULL, 0}, {(const uint8_t *)"a", 1}};
    sl_buf_t b = SL_BUF_INIT;
    CHECK_INT(sl_cql_routing_key(parts, 1, &b), 0);
    CHECK_INT(b.len, 0);
    CHECK_INT(buf_token(&b), INT64_MIN);
    CHECK_INT(sl_cql_routing_key(parts, 2, &b), 0);
    CHECK_STR(to_hex(&b), "000000"
                          "00016100");
    sl_buf_free(&b);
}

TEST_MAIN(T(int_and_bigint_are_big_endian_twos_complement), T(text_is_its_utf8_bytes),
          T(timestamp_is_ms_since_epoch), T(date_days_match_spec_and_gnu_date),
          T(date_is_unsigned_days_centered_at_2_31), T(nodejs_driver_routing_keys),
          T(gocql_composite_key_token), T(cpp_driver_routing_key_tokens),
          T(null_and_invalid_parts_are_rejected), T(empty_components))
