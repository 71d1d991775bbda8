#include <math.h>
#include <stdlib.h>

#include "core/value.h"
#include "test.h"

/* Copies s into an exactly-sized heap buffer (no NUL) so ASan catches reads
 * past the end. The caller frees it. */
static char *exact(const char *s, size_t *len)
{
    *len = strlen(s);
    char *p = malloc(*len ? *len : 1);
    memcpy(p, s, *len);
    return p;
}

static int date_parse(const char *s, int64_t *days)
{
    size_t len;
    char *p = exact(s, &len);
    int rc = sl_date_parse(p, len, days);
    free(p);
    return rc;
}

static int ts_parse(const char *s, int64_t *us)
{
    size_t len;
    char *p = exact(s, &len);
    int rc = sl_timestamp_parse(p, len, us);
    free(p);
    return rc;
}

/* The value's JSON, in a static buffer. */
static const char *to_json(const sl_value_t *v, sl_type_t t)
{
    static char out[256];
    sl_buf_t b = SL_BUF_INIT;
    sl_value_to_json(v, t, &b);
    snprintf(out, sizeof(out), "%s", b.data ? b.data : "");
    sl_buf_free(&b);
    return out;
}

TEST(type_names_round_trip)
{
    const char *names[] = {"string", "int32", "int64", "double", "bool", "date", "timestamp"};
    CHECK_INT(SL_ARRAY_LEN(names), SL_TYPE__COUNT);
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        sl_type_t t = SL_TYPE__COUNT;
        CHECK_INT(sl_type_parse(names[i], &t), 0);
        CHECK_INT(t, i);
        CHECK_STR(sl_type_name(t), names[i]);
    }
    sl_type_t t = SL_TYPE_STRING;
    CHECK_INT(sl_type_parse("integer", &t), -1);
    CHECK_INT(sl_type_parse("Int32", &t), -1);
    CHECK_INT(sl_type_parse("", &t), -1);
    CHECK_INT(sl_type_parse(NULL, &t), -1);
    CHECK(sl_type_name(SL_TYPE__COUNT) == NULL);
    CHECK(sl_type_name((sl_type_t)-1) == NULL);
}

TEST(date_known_values)
{
    /* Day numbers computed independently (Python's datetime). */
    static const struct {
        const char *s;
        int64_t days;
    } cases[] = {
        {"1970-01-01", 0},       {"1969-12-31", -1},      {"2017-02-04", 17201},
        {"2000-02-29", 11016},   {"0001-01-01", -719162}, {"9999-12-31", 2932896},
        {"1600-03-01", -135080},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        int64_t days = 12345;
        CHECK_INT(date_parse(cases[i].s, &days), 0);
        CHECK_INT(days, cases[i].days);
        char out[11];
        sl_date_format(cases[i].days, out);
        CHECK_STR(out, cases[i].s);
    }
}

TEST(date_rejects_impossible_and_malformed)
{
    static const char *bad[] = {
        "2017-13-45",       "2017-02-29",  "2016-02-30",
        "1900-02-29",       "2100-02-29",  "0000-01-01",
        "2017-00-10",       "2017-04-31",  "2017-01-00",
        "2017-01-32",       "+2017-01-01", "-2017-01-01",
        " 2017-01-01",      "2017-01-01 ", "2017-1-01",
        "2017-01-1",        "2017/01/01",  "20170101",
        "2017-01-0a",       "10000-01-01", "",
        "2017-01-01T00:00", "2017-+1-01",  "２０１７-01-01",
        "2017-01- 1",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        int64_t days = 0;
        if (date_parse(bad[i], &days) != -1) {
            fprintf(stderr, "accepted bad date \"%s\"\n", bad[i]);
            CHECK(0);
        }
    }
    int64_t days;
    CHECK_INT(date_parse("2016-02-29", &days), 0);
    CHECK_INT(date_parse("2000-02-29", &days), 0);
    /* A valid date followed by more bytes is not a date, even if len says 10. */
    CHECK_INT(sl_date_parse("2017-02-04X", 10, &days), 0);
    CHECK_INT(sl_date_parse("2017-02-04", 9, &days), -1);
}

/* Walks every day of years 1-9999 with a naive calendar and checks that
 * format and parse agree with it. */
TEST(date_every_day_round_trips)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t days = SL_DATE_MIN_DAYS;
    int failures = 0;
    for (int y = 1; y <= 9999 && failures < 5; y++) {
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for (int m = 1; m <= 12; m++) {
            int n = dim[m - 1] + (m == 2 && leap);
            for (int d = 1; d <= n; d++, days++) {
                char want[40], got[11];
                snprintf(want, sizeof(want), "%04d-%02d-%02d", y, m, d);
                sl_date_format(days, got);
                int64_t back = -1;
                if (strcmp(want, got) != 0 || sl_date_parse(want, 10, &back) != 0 || back != days) {
                    fprintf(stderr, "day %lld: want %s got %s back %lld\n", (long long)days, want,
                            got, (long long)back);
                    failures++;
                }
            }
        }
    }
    CHECK_INT(failures, 0);
    CHECK_INT(days, SL_DATE_MAX_DAYS + 1);
}

TEST(date_format_out_of_range_is_marked)
{
    char out[11];
    sl_date_format(SL_DATE_MIN_DAYS - 1, out);
    CHECK_STR(out, "0000-00-00");
    sl_date_format(SL_DATE_MAX_DAYS + 1, out);
    CHECK_STR(out, "0000-00-00");
    sl_date_format(INT64_MIN, out);
    CHECK_STR(out, "0000-00-00");
    sl_date_format(INT64_MAX, out);
    CHECK_STR(out, "0000-00-00");
}

TEST(timestamp_accepts_rfc3339_forms)
{
    static const struct {
        const char *s;
        int64_t us;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00Z", 0},
        {"1970-01-01T00:00", 0},
        {"1970-01-01 00:00:00", 0},
        {"1970-01-01t00:00:00z", 0},
        {"1970-01-01T00:00:00.5Z", 500000},
        {"1970-01-01T00:00:00.123456Z", 123456},
        {"1970-01-01T00:00:00.123456789Z", 123456}, /* nanoseconds truncated */
        {"1969-12-31T23:59:59.999Z", -1000},
        {"2017-02-04T10:20:30Z", INT64_C(1486203630000000)},
        {"2017-02-04T10:20:30", INT64_C(1486203630000000)},
        {"2017-02-04T11:20:30+01:00", INT64_C(1486203630000000)},
        {"2017-02-04T11:20:30+0100", INT64_C(1486203630000000)},
        {"2017-02-04T04:50:30-05:30", INT64_C(1486203630000000)},
        {"2017-02-04T10:20:30-00:00", INT64_C(1486203630000000)},
        {"2017-02-05T09:20:30+23:00", INT64_C(1486203630000000)},
        {"0001-01-01T00:00:00Z", SL_TIMESTAMP_MIN_US},
        {"9999-12-31T23:59:59.999999Z", SL_TIMESTAMP_MAX_US},
        {"0001-01-01T01:00:00+01:00", SL_TIMESTAMP_MIN_US},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        int64_t us = 42;
        if (ts_parse(cases[i].s, &us) != 0 || us != cases[i].us) {
            fprintf(stderr, "\"%s\": got %lld want %lld\n", cases[i].s, (long long)us,
                    (long long)cases[i].us);
            CHECK(0);
        }
    }
}

TEST(timestamp_rejects_bad)
{
    static const char *bad[] = {
        "",
        "2017-02-04",
        "2017-02-04T",
        "2017-02-04T10",
        "2017-02-04T10:2",
        "2017-02-04T24:00",
        "2017-02-04T10:60",
        "2017-02-04T10:20:60",
        "2017-02-04T10:20:3",
        "2017-02-04T10:20:30.",
        "2017-02-04T10:20:30.1234567890",
        "2017-02-04T10:20:30,5",
        "2017-02-04T10:20:30Zjunk",
        "2017-02-04T10:20:30ZZ",
        "2017-02-04T10:20:30+01",
        "2017-02-04T10:20:30+1:00",
        "2017-02-04T10:20:30+24:00",
        "2017-02-04T10:20:30+01:60",
        "2017-02-04T10:20:30+01:00 ",
        "2017-02-04T10:20:30 +01:00",
        "2017-02-04X10:20:30",
        "2017-02-04T10:20:30.5.5",
        "2017-02-30T00:00:00Z",
        "2017-13-45T00:00:00Z",
        "0000-12-31T23:00:00Z",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-00:01",
        " 2017-02-04T10:20:30Z",
        "2017-02-04T-1:20:30Z",
        "2017-02-04T10:20:30.-5Z",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        int64_t us = 0;
        if (ts_parse(bad[i], &us) != -1) {
            fprintf(stderr, "accepted bad timestamp \"%s\"\n", bad[i]);
            CHECK(0);
        }
    }
}

TEST(timestamp_format_is_utc_milliseconds)
{
    char out[32];
    sl_timestamp_format(0, out);
    CHECK_STR(out, "1970-01-01T00:00:00.000Z");
    sl_timestamp_format(-1, out); /* floor, not truncation toward zero */
    CHECK_STR(out, "1969-12-31T23:59:59.999Z");
    sl_timestamp_format(INT64_C(1486203630123456), out);
    CHECK_STR(out, "2017-02-04T10:20:30.123Z");
    sl_timestamp_format(SL_TIMESTAMP_MIN_US, out);
    CHECK_STR(out, "0001-01-01T00:00:00.000Z");
    sl_timestamp_format(SL_TIMESTAMP_MAX_US, out);
    CHECK_STR(out, "9999-12-31T23:59:59.999Z");
    /* Never overflows its buffer, whatever the value. */
    sl_timestamp_format(INT64_MIN, out);
    CHECK(strlen(out) < 32);
    sl_timestamp_format(INT64_MAX, out);
    CHECK(strlen(out) < 32);
}

TEST(timestamp_round_trips_at_millisecond_precision)
{
    uint64_t x = 88172645463325252u; /* xorshift: deterministic spread over the range */
    int failures = 0;
    for (int i = 0; i < 200000 && failures < 5; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t span = (uint64_t)(SL_TIMESTAMP_MAX_US - SL_TIMESTAMP_MIN_US) + 1;
        int64_t us = SL_TIMESTAMP_MIN_US + (int64_t)(x % span);
        char out[32];
        sl_timestamp_format(us, out);
        int64_t back = 0, floor_ms = us - ((us % 1000) + 1000) % 1000;
        if (sl_timestamp_parse(out, strlen(out), &back) != 0 || back != floor_ms) {
            fprintf(stderr, "%lld -> %s -> %lld\n", (long long)us, out, (long long)back);
            failures++;
        }
    }
    CHECK_INT(failures, 0);
}

TEST(value_to_json_each_type)
{
    sl_value_t v = {.is_null = true};
    CHECK_STR(to_json(&v, SL_TYPE_INT32), "null");
    CHECK_STR(to_json(&v, SL_TYPE_STRING), "null");
    v.is_null = false;
    v.u.s.ptr = "a\"b\\c\n\x01\xc3\xa9";
    v.u.s.len = strlen(v.u.s.ptr);
    CHECK_STR(to_json(&v, SL_TYPE_STRING), "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
    v.u.s.len = 0;
    CHECK_STR(to_json(&v, SL_TYPE_STRING), "\"\"");
    v.u.i = INT64_MIN;
    CHECK_STR(to_json(&v, SL_TYPE_INT64), "-9223372036854775808");
    v.u.i = -7;
    CHECK_STR(to_json(&v, SL_TYPE_INT32), "-7");
    v.u.b = true;
    CHECK_STR(to_json(&v, SL_TYPE_BOOL), "true");
    v.u.b = false;
    CHECK_STR(to_json(&v, SL_TYPE_BOOL), "false");
    v.u.i = 17201;
    CHECK_STR(to_json(&v, SL_TYPE_DATE), "\"2017-02-04\"");
    v.u.i = INT64_C(1486203630123456);
    CHECK_STR(to_json(&v, SL_TYPE_TIMESTAMP), "\"2017-02-04T10:20:30.123Z\"");
}

TEST(value_to_json_doubles_are_shortest_round_trip)
{
    sl_value_t v = {.is_null = false};
    static const struct {
        double d;
        const char *json;
    } cases[] = {
        {0.1, "0.1"}, {1.5, "1.5"}, {-2.0, "-2"}, {1e300, "1e+300"}, {-0.0, "-0"}, {0.0, "0"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        v.u.d = cases[i].d;
        CHECK_STR(to_json(&v, SL_TYPE_DOUBLE), cases[i].json);
    }
    /* Values that need 16 or 17 digits still read back exactly. */
    double hard[] = {1.0 / 3.0, 0.1 + 0.2, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308};
    for (size_t i = 0; i < SL_ARRAY_LEN(hard); i++) {
        v.u.d = hard[i];
        CHECK(strtod(to_json(&v, SL_TYPE_DOUBLE), NULL) == hard[i]);
    }
    v.u.d = NAN;
    CHECK_STR(to_json(&v, SL_TYPE_DOUBLE), "null");
    v.u.d = INFINITY;
    CHECK_STR(to_json(&v, SL_TYPE_DOUBLE), "null");
}

TEST(quote_escapes_and_truncates_at_char_boundary)
{
    char out[16];
    CHECK_STR(sl_value_quote("abc", 3, out, sizeof(out)), "abc");
    CHECK_STR(sl_value_quote("a\"b\\", 4, out, sizeof(out)), "a\\\"b\\\\");
    CHECK_STR(sl_value_quote("\n", 1, out, sizeof(out)), "\\u000a");
    CHECK_STR(sl_value_quote("\xff", 1, out, sizeof(out)), "\\xff");
    CHECK_STR(sl_value_quote("a\0b", 3, out, sizeof(out)), "a\\u0000b");
    /* 15 bytes fit exactly; 16 do not. */
    CHECK_STR(sl_value_quote("123456789012345", 15, out, sizeof(out)), "123456789012345");
    CHECK_STR(sl_value_quote("1234567890123456", 16, out, sizeof(out)), "123456789012...");
    /* A 2-byte character is never split. */
    CHECK_STR(sl_value_quote("12345678901\xc3\xa9xyz", 16, out, sizeof(out)), "12345678901...");
    CHECK_STR(sl_value_quote("", 0, out, sizeof(out)), "");
}

TEST_MAIN(T(type_names_round_trip), T(date_known_values), T(date_rejects_impossible_and_malformed),
          T(date_every_day_round_trips), T(date_format_out_of_range_is_marked),
          T(timestamp_accepts_rfc3339_forms), T(timestamp_rejects_bad),
          T(timestamp_format_is_utc_milliseconds),
          T(timestamp_round_trips_at_millisecond_precision), T(value_to_json_each_type),
          T(value_to_json_doubles_are_shortest_round_trip),
          T(quote_escapes_and_truncates_at_char_boundary))
