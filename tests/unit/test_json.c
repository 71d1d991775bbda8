#include <math.h>
#include <stdlib.h>

#include "codecs/json.h"
#include "test.h"

enum { F_DATE, F_SITE, F_VIEWS, F_CLICKS, F_RATIO, F_OK, F_NAME, F_TS, N_F };

static sl_value_t vals[N_F];
static sl_reason_t why;
static sl_arena_t arena;
static char *last_buf; /* the last decoded message: values may point into it */
static size_t last_len;
static const sl_json_limits_t limits = {1 << 20, 32};

static void add_field(sl_schema_t *s, const char *name, sl_type_t type)
{
    s->fields = sl_xrealloc(s->fields, (s->n_fields + 1) * sizeof(*s->fields));
    sl_field_t *f = &s->fields[s->n_fields++];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->def.is_null = true;
}

static void make_schema(sl_schema_t *s, sl_unknown_policy_t unknown)
{
    if (arena.chunk_size == 0) {
        sl_arena_init(&arena, 0);
    }
    memset(s, 0, sizeof(*s));
    add_field(s, "date", SL_TYPE_DATE);
    add_field(s, "site_id", SL_TYPE_INT32);
    add_field(s, "views", SL_TYPE_INT64);
    add_field(s, "clicks", SL_TYPE_INT64);
    add_field(s, "ratio", SL_TYPE_DOUBLE);
    add_field(s, "ok", SL_TYPE_BOOL);
    add_field(s, "name", SL_TYPE_STRING);
    add_field(s, "ts", SL_TYPE_TIMESTAMP);
    s->unknown = unknown;
    sl_schema_finish(s);
}

/* Decodes len bytes of json from an exactly-sized heap copy (no NUL after it,
 * so ASan reports any read past the end). */
static int dec_lim(const sl_schema_t *s, const sl_json_limits_t *lim, const char *json, size_t len)
{
    free(last_buf);
    last_buf = malloc(len ? len : 1);
    memcpy(last_buf, json, len);
    last_len = len;
    strcpy(why.text, "(not set)");
    for (size_t i = 0; i < N_F; i++) {
        vals[i].is_null = false; /* garbage the decoder must reset */
        vals[i].u.i = 0x5a5a5a5a;
    }
    return sl_json_decode(s, lim, last_buf, len, vals, &arena, &why);
}

static int dec(const sl_schema_t *s, const char *json)
{
    return dec_lim(s, &limits, json, strlen(json));
}

static bool in_buf(const char *p)
{
    return p >= last_buf && p < last_buf + last_len;
}

static bool str_eq(const sl_value_t *v, const char *s, size_t n)
{
    return !v->is_null && v->u.s.len == n && memcmp(v->u.s.ptr, s, n) == 0;
}

/* Every input must be rejected with a reason containing the text. */
typedef struct {
    const char *json;
    const char *reason;
} bad_case_t;

static void check_bad(const sl_schema_t *s, const bad_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = dec(s, cases[i].json);
        if (rc != -1 || strstr(why.text, cases[i].reason) == NULL) {
            fprintf(stderr, "input %s: rc %d, reason \"%s\", want \"%s\"\n", cases[i].json, rc,
                    why.text, cases[i].reason);
            CHECK(0);
        }
    }
}

TEST(decodes_a_site_event)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    CHECK_INT(dec(&s, "{\"date\":\"2017-02-04\",\"site_id\":3491,\"views\":10,\"clicks\":6}"), 0);
    CHECK(!vals[F_DATE].is_null);
    CHECK_INT(vals[F_DATE].u.i, 17201);
    CHECK_INT(vals[F_SITE].u.i, 3491);
    CHECK_INT(vals[F_VIEWS].u.i, 10);
    CHECK_INT(vals[F_CLICKS].u.i, 6);
    CHECK(vals[F_RATIO].is_null && vals[F_OK].is_null && vals[F_NAME].is_null);
    CHECK(vals[F_TS].is_null);
    sl_schema_free(&s);
}

TEST(decodes_all_types_whitespace_and_null)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    const char *json =
        " \t\r\n{ \"ts\" : \"2017-02-04T10:20:30.123Z\" ,\n\"name\":\"h\xc3\xa9llo\","
        "\"ok\":false , \"ratio\" : -0.25e1, \"clicks\":null,\"views\":-0,"
        "\"site_id\":-2147483648,\"date\":\"0001-01-01\" } \n";
    CHECK_INT(dec(&s, json), 0);
    CHECK_INT(vals[F_TS].u.i, INT64_C(1486203630123000));
    CHECK(str_eq(&vals[F_NAME], "h\xc3\xa9llo", 6));
    CHECK(in_buf(vals[F_NAME].u.s.ptr)); /* no escapes: a view into the message */
    CHECK(!vals[F_OK].is_null && vals[F_OK].u.b == false);
    CHECK(vals[F_RATIO].u.d == -2.5);
    CHECK(vals[F_CLICKS].is_null);
    CHECK(!vals[F_VIEWS].is_null && vals[F_VIEWS].u.i == 0);
    CHECK_INT(vals[F_SITE].u.i, INT32_MIN);
    CHECK_INT(vals[F_DATE].u.i, SL_DATE_MIN_DAYS);

    CHECK_INT(dec(&s, "{}"), 0);
    for (int i = 0; i < N_F; i++) {
        CHECK(vals[i].is_null);
    }
    CHECK_INT(dec(&s, "{\"ok\":true}"), 0);
    CHECK(!vals[F_OK].is_null && vals[F_OK].u.b == true);
    sl_schema_free(&s);
}

TEST(rejects_bad_json)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    static const bad_case_t cases[] = {
        {"", "empty message"},
        {" \n\t ", "empty message"},
        {"[1]", "invalid JSON at byte 0: expected '{'"},
        {"\"x\"", "invalid JSON at byte 0: expected '{'"},
        {"42", "expected '{'"},
        {"null", "expected '{'"},
        {"\xEF\xBB\xBF{}", "invalid JSON at byte 0: byte order mark"},
        {"{", "invalid JSON at byte 1: expected '\"' (an object key), got end of input"},
        {"{\"date\"", "invalid JSON at byte 7: expected ':', got end of input"},
        {"{\"date\" 1}", "invalid JSON at byte 8: expected ':'"},
        {"{\"views\":", "invalid JSON at byte 9: expected a value, got end of input"},
        {"{\"views\":1", "invalid JSON at byte 10: expected ',' or '}', got end of input"},
        {"{\"views\":1 \"clicks\":2}", "invalid JSON at byte 11: expected ',' or '}'"},
        {"{\"views\":1,}", "invalid JSON at byte 11: expected '\"' (an object key)"},
        {"{,}", "expected '\"' (an object key)"},
        {"{views:1}", "expected '\"' (an object key)"},
        {"{'views':1}", "expected '\"' (an object key)"},
        {"{\"views\":01}", "invalid JSON at byte 10: expected ',' or '}'"},
        {"{\"views\":-}", "invalid JSON at byte 10: expected a digit"},
        {"{\"views\":--1}", "expected a digit"},
        {"{\"views\":+1}", "expected a value"},
        {"{\"ratio\":1.}", "expected a digit after '.'"},
        {"{\"ratio\":.5}", "expected a value"},
        {"{\"ratio\":1e}", "expected a digit in the exponent"},
        {"{\"ratio\":1e+}", "expected a digit in the exponent"},
        {"{\"ratio\":NaN}", "expected a value"},
        {"{\"ratio\":Infinity}", "expected a value"},
        {"{\"ok\":tru}", "invalid literal"},
        {"{\"ok\":True}", "expected a value"},
        {"{\"ok\":nul}", "invalid literal"},
        {"{\"ok\":n", "invalid literal"},
        {"{\"name\":\"abc}", "unterminated string"},
        {"{\"name\":\"abc", "unterminated string"},
        {"{\"name\":\"abc\\", "unterminated string"},
        {"{\"name\":\"a\\x\"}", "invalid escape"},
        {"{\"name\":\"a\\'\"}", "invalid escape"},
        {"{\"name\":\"\\u12\"}", "invalid \\u escape"},
        {"{\"name\":\"\\u12g4\"}", "invalid \\u escape"},
        {"{\"name\":\"a\tb\"}", "unescaped control character"},
        {"{\"name\":\"a\nb\"}", "unescaped control character"},
        {"{} x", "invalid JSON at byte 3: unexpected data after the object"},
        {"{}{}", "unexpected data after the object"},
        {"{\"views\":1}}", "unexpected data after the object"},
        {"{\"views\":1},", "unexpected data after the object"},
        {"{\"x\":[1,2}", "expected ',' or ']'"},
        {"{\"x\":[1,]}", "expected a value"},
        {"{\"x\":[,1]}", "expected a value"},
        {"{\"x\":{\"a\" 1}}", "expected ':'"},
        {"{\"x\":{1:2}}", "expected '\"' (an object key)"},
        {"{\"x\":{\"a\":1,}}", "expected '\"' (an object key)"},
        {"{\"x\":{\"a\":1]}", "expected ',' or '}'"},
        {"{\"x\":[1}", "expected ',' or ']'"},
        {"{\"x\":nul}", "invalid literal"},
        {"{\"x\":[", "expected a value, got end of input"},
        {"{\"x\":\"\\uZZZZ\"}", "invalid \\u escape"},
        {"{\"x\":1.e5}", "expected a digit after '.'"},
        {"{\"x\":00}", "expected ',' or '}'"},
        {"{\"x\":@}", "expected a value"},
        {"{\"x\":1 2}", "expected ',' or '}'"},
    };
    check_bad(&s, cases, SL_ARRAY_LEN(cases));

    /* An embedded NUL is just a wrong byte. */
    CHECK_INT(dec_lim(&s, &limits, "{\"views\":1\0}", 12), -1);
    CHECK_STR(why.text, "invalid JSON at byte 10: expected ',' or '}'");
    CHECK_INT(dec_lim(&s, &limits, "{\"name\":\"a\0\"}", 13), -1);
    CHECK_CONTAINS(why.text, "unescaped control character");
    sl_schema_free(&s);
}

TEST(rejects_wrong_types)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    static const bad_case_t cases[] = {
        {"{\"site_id\":\"3491\"}", "field 'site_id': expected int32, got string"},
        {"{\"site_id\":true}", "field 'site_id': expected int32, got bool"},
        {"{\"site_id\":[1]}", "field 'site_id': expected int32, got array"},
        {"{\"site_id\":{}}", "field 'site_id': expected int32, got object"},
        {"{\"views\":1.5}", "field 'views': expected int64, got 1.5"},
        {"{\"views\":1e3}", "field 'views': expected int64, got 1e3"},
        {"{\"views\":1.0}", "field 'views': expected int64, got 1.0"},
        {"{\"views\":-2E-1}", "field 'views': expected int64, got -2E-1"},
        {"{\"ratio\":\"1.5\"}", "field 'ratio': expected double, got string"},
        {"{\"ratio\":false}", "field 'ratio': expected double, got bool"},
        {"{\"ok\":1}", "field 'ok': expected bool, got number"},
        {"{\"ok\":\"true\"}", "field 'ok': expected bool, got string"},
        {"{\"name\":5}", "field 'name': expected string, got number"},
        {"{\"name\":{\"a\":1}}", "field 'name': expected string, got object"},
        {"{\"date\":17201}", "field 'date': expected date, got number"},
        {"{\"ts\":true}", "field 'ts': expected timestamp, got bool"},
        {"{\"ts\":1.5}", "field 'ts': expected timestamp, got 1.5"},
        {"{\"ts\":[]}", "field 'ts': expected timestamp, got array"},
    };
    check_bad(&s, cases, SL_ARRAY_LEN(cases));
    sl_schema_free(&s);
}

TEST(integer_ranges)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    CHECK_INT(dec(&s, "{\"site_id\":2147483647,\"views\":9223372036854775807}"), 0);
    CHECK_INT(vals[F_SITE].u.i, INT32_MAX);
    CHECK_INT(vals[F_VIEWS].u.i, INT64_MAX);
    CHECK_INT(dec(&s, "{\"site_id\":-2147483648,\"views\":-9223372036854775808}"), 0);
    CHECK_INT(vals[F_SITE].u.i, INT32_MIN);
    CHECK(vals[F_VIEWS].u.i == INT64_MIN);
    CHECK_INT(dec(&s, "{\"views\":1234567890123456789}"), 0);
    CHECK_INT(vals[F_VIEWS].u.i, INT64_C(1234567890123456789));
    static const bad_case_t cases[] = {
        {"{\"site_id\":2147483648}", "field 'site_id': 2147483648 is out of range for int32"},
        {"{\"site_id\":-2147483649}", "field 'site_id': -2147483649 is out of range for int32"},
        {"{\"site_id\":99999999999}", "out of range for int32"},
        {"{\"views\":9223372036854775808}",
         "field 'views': 9223372036854775808 is out of range for int64"},
        {"{\"views\":-9223372036854775809}", "-9223372036854775809 is out of range for int64"},
        {"{\"views\":18446744073709551616}", "out of range for int64"},
        {"{\"views\":99999999999999999999}", "out of range for int64"},
        {"{\"views\":123456789012345678901234567890}", "out of range for int64"},
    };
    check_bad(&s, cases, SL_ARRAY_LEN(cases));
    sl_schema_free(&s);
}

/* The decoded double must be bit-identical to strtod() of the same text. */
static void check_double(const sl_schema_t *s, const char *num)
{
    char json[512];
    snprintf(json, sizeof(json), "{\"ratio\":%s}", num);
    double want = strtod(num, NULL);
    int rc = dec(s, json);
    if (rc != 0 || memcmp(&vals[F_RATIO].u.d, &want, sizeof(want)) != 0) {
        fprintf(stderr, "%s: rc %d (%s) got %.17g want %.17g\n", num, rc, why.text,
                vals[F_RATIO].u.d, want);
        CHECK(0);
    }
}

TEST(doubles_match_strtod)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    static const char *nums[] = {
        "0",
        "-0",
        "0.1",
        "-2.5e-3",
        "1E10",
        "1e+10",
        "1e-10",
        "123456789012345678901234567890",
        "0.30000000000000004",
        "4.9e-324",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "1e-400",
        "1.7976931348623157e308",
        "9007199254740993",
        "9007199254740992",
        "0.000001234",
        "1234567.1234567",
        "3.141592653589793238462643383279",
        "1e22",
        "1e23",
        "8.98846567431158e307",
        "0.1e1",
        "100000000000000000000000e-20",
        "5e-324",
        "179769313486231570814527423731704356798070e-42",
        "0.00000000000000000000000000001",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(nums); i++) {
        check_double(&s, nums[i]);
    }
    /* Random decimals of every shape, fast path and fallback alike. */
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 100000; i++) {
        char num[96];
        size_t o = 0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t r = x;
        if (r & 1) {
            num[o++] = '-';
        }
        r >>= 1;
        int int_digits = (int)(r % 21); /* 0: the integer part is "0" */
        r >>= 5;
        int frac_digits = (int)(r % 21);
        r >>= 5;
        uint64_t y = x * 0x2545F4914F6CDD1Du;
        for (int k = 0; k < int_digits; k++) {
            num[o++] = (char)('0' + (k == 0 ? 1 + y % 9 : y % 10));
            y = y / 10 ? y / 10 : x;
        }
        if (int_digits == 0) {
            num[o++] = '0';
        }
        if (frac_digits > 0) {
            num[o++] = '.';
            for (int k = 0; k < frac_digits; k++) {
                num[o++] = (char)('0' + y % 10);
                y = y / 10 ? y / 10 : x >> 7;
            }
        }
        if (r & 1) {
            o += (size_t)snprintf(num + o, sizeof(num) - o, "e%d", (int)(r >> 2 & 127) - 64);
        }
        num[o] = '\0';
        check_double(&s, num);
    }
    CHECK_INT(dec(&s, "{\"ratio\":1e400}"), -1);
    CHECK_STR(why.text, "field 'ratio': 1e400 is out of range for double");
    CHECK_INT(dec(&s, "{\"ratio\":-1e309}"), -1);
    CHECK_CONTAINS(why.text, "out of range for double");
    /* Long numbers fall back to strtod() from the heap. */
    char big[400] = "0.";
    memset(big + 2, '1', 300);
    big[302] = '\0';
    check_double(&s, big);
    sl_schema_free(&s);
}

TEST(dates)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    CHECK_INT(dec(&s, "{\"date\":\"2016-02-29\"}"), 0);
    CHECK_INT(vals[F_DATE].u.i, 16860);
    /* Escapes are resolved before the date is parsed. */
    CHECK_INT(dec(&s, "{\"date\":\"\\u0032017-02-04\"}"), 0);
    CHECK_INT(vals[F_DATE].u.i, 17201);
    static const bad_case_t cases[] = {
        {"{\"date\":\"2017-13-45\"}", "field 'date': invalid date \"2017-13-45\""},
        {"{\"date\":\"2017-02-29\"}", "field 'date': invalid date \"2017-02-29\""},
        {"{\"date\":\"2016-02-30\"}", "invalid date"},
        {"{\"date\":\"0000-01-01\"}", "field 'date': invalid date \"0000-01-01\""},
        {"{\"date\":\"2017-02-04 \"}", "invalid date"},
        {"{\"date\":\"\"}", "field 'date': invalid date \"\""},
        {"{\"date\":\"a\\\"b\"}", "field 'date': invalid date \"a\\\"b\""},
        {"{\"date\":\"2017-02-04T00:00:00Z\"}", "invalid date"},
    };
    check_bad(&s, cases, SL_ARRAY_LEN(cases));
    sl_schema_free(&s);
}

TEST(timestamps)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    CHECK_INT(dec(&s, "{\"ts\":\"2017-02-04T11:20:30.5+01:00\"}"), 0);
    CHECK_INT(vals[F_TS].u.i, INT64_C(1486203630500000));
    CHECK_INT(dec(&s, "{\"ts\":1486203630123}"), 0); /* epoch milliseconds */
    CHECK_INT(vals[F_TS].u.i, INT64_C(1486203630123000));
    CHECK_INT(dec(&s, "{\"ts\":-1}"), 0);
    CHECK_INT(vals[F_TS].u.i, -1000);
    CHECK_INT(dec(&s, "{\"ts\":253402300799999}"), 0);
    CHECK_INT(vals[F_TS].u.i, SL_TIMESTAMP_MAX_US - 999);
    static const bad_case_t cases[] = {
        {"{\"ts\":\"2017-02-04\"}", "field 'ts': invalid timestamp \"2017-02-04\""},
        {"{\"ts\":\"2017-02-04T25:00\"}", "invalid timestamp"},
        {"{\"ts\":\"2017-02-04T10:20:30+1\"}", "invalid timestamp"},
        {"{\"ts\":\"yesterday\"}", "field 'ts': invalid timestamp \"yesterday\""},
        {"{\"ts\":253402300800000}", "field 'ts': 253402300800000 ms is out of range"},
        {"{\"ts\":-62135596800001}", "out of range for timestamp"},
        {"{\"ts\":9223372036854775807}", "out of range for timestamp"},
        {"{\"ts\":1e3}", "field 'ts': expected timestamp, got 1e3"},
    };
    check_bad(&s, cases, SL_ARRAY_LEN(cases));
    sl_schema_free(&s);
}

TEST(max_bytes_is_checked_first)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    size_t n = 2000000;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    CHECK_INT(dec_lim(&s, &limits, big, n), -1);
    CHECK_STR(why.text, "message of 2000000 bytes exceeds max_bytes 1048576");
    /* Even garbage gets the size reason, not a syntax error. */
    memset(big, 'x', n);
    CHECK_INT(dec_lim(&s, &limits, big, n), -1);
    CHECK_STR(why.text, "message of 2000000 bytes exceeds max_bytes 1048576");
    /* Exactly max_bytes is fine; 0 means no limit. */
    sl_json_limits_t lim = {16, 32};
    CHECK_INT(dec_lim(&s, &lim, "{\"views\":12345 }", 16), 0);
    CHECK_INT(dec_lim(&s, &lim, "{\"views\":123456 }", 17), -1);
    CHECK_STR(why.text, "message of 17 bytes exceeds max_bytes 16");
    lim.max_bytes = 0;
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    CHECK_INT(dec_lim(&s, &lim, big, n), 0);
    free(big);
    sl_schema_free(&s);
}

/* Builds {"x": <prefix * depth> 1 <suffix * depth>}. */
static char *nested(const char *open, const char *close, int depth, size_t *len)
{
    size_t lo = strlen(open), lc = strlen(close);
    char *b = malloc(16 + (lo + lc) * (size_t)depth);
    size_t o = 0;
    memcpy(b + o, "{\"x\":", 5);
    o += 5;
    for (int i = 0; i < depth; i++, o += lo) {
        memcpy(b + o, open, lo);
    }
    b[o++] = '1';
    for (int i = 0; i < depth; i++, o += lc) {
        memcpy(b + o, close, lc);
    }
    b[o++] = '}';
    *len = o;
    return b;
}

TEST(nesting_limit)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    size_t len;
    char *b = nested("[", "]", 10000, &len);
    CHECK_INT(dec_lim(&s, &limits, b, len), -1);
    CHECK_STR(why.text, "nesting deeper than 32");
    /* A generous limit: 10000 levels are skipped without recursion. */
    sl_json_limits_t deep = {1 << 20, 20000};
    CHECK_INT(dec_lim(&s, &deep, b, len), 0);
    free(b);
    b = nested("{\"a\":[", "]}", 5000, &len);
    CHECK_INT(dec_lim(&s, &deep, b, len), 0);
    CHECK_INT(dec_lim(&s, &limits, b, len), -1);
    CHECK_STR(why.text, "nesting deeper than 32");
    free(b);
    /* Truncated deep input fails cleanly. */
    b = nested("[", "]", 10000, &len);
    CHECK_INT(dec_lim(&s, &deep, b, len / 2), -1);
    CHECK_CONTAINS(why.text, "invalid JSON");
    free(b);
    /* The boundary: the top-level object is depth 1. */
    sl_json_limits_t three = {1 << 20, 3};
    CHECK_INT(dec_lim(&s, &three, "{\"x\":[[1]]}", 11), 0);
    CHECK_INT(dec_lim(&s, &three, "{\"x\":[{\"y\":1}]}", 15), 0);
    CHECK_INT(dec_lim(&s, &three, "{\"x\":[[[1]]]}", 13), -1);
    CHECK_STR(why.text, "nesting deeper than 3");
    CHECK_INT(dec_lim(&s, &three, "{\"x\":[[{}]]}", 12), -1);
    sl_json_limits_t one = {1 << 20, 1};
    CHECK_INT(dec_lim(&s, &one, "{\"x\":1}", 7), 0);
    CHECK_INT(dec_lim(&s, &one, "{\"x\":[]}", 8), -1);
    CHECK_STR(why.text, "nesting deeper than 1");
    sl_schema_free(&s);
}

TEST(utf8_is_strict_everywhere)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    /* Valid 2, 3 and 4 byte sequences, the extremes included. */
    CHECK_INT(dec(&s, "{\"name\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
                      "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}"),
              0);
    CHECK_INT(vals[F_NAME].u.s.len, 24);
    CHECK_INT(dec(&s, "{\"\xe2\x82\xac\":\"\xf0\x9f\x98\x80\",\"x\":[\"\xc3\xa9\"]}"), 0);
    static const char *bad[] = {
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong 3-byte */
        "\xe0\x9f\xbf",     /* overlong 3-byte, top */
        "\xf0\x80\x80\xaf", /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf", /* overlong 4-byte, top */
        "\xed\xa0\x80",     /* high surrogate U+D800 */
        "\xed\xbf\xbf",     /* low surrogate U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* F5 lead */
        "\xff",             /* never valid */
        "\xfe",             /* never valid */
        "\x80",             /* stray continuation */
        "a\xbf",            /* stray continuation */
        "\xc3",             /* truncated 2-byte (then the quote) */
        "\xe2\x82",         /* truncated 3-byte */
        "\xf0\x9f\x98",     /* truncated 4-byte */
        "\xc3\x28",         /* bad continuation */
        "\xe2\x28\xa1",     /* bad continuation */
        "\xf0\x9f\x28\x80", /* bad continuation */
    };
    /* In a known value, a key, an unknown value, a nested key, an array item. */
    static const char *where[][2] = {{"{\"name\":\"", "\"}"},
                                     {"{\"", "\":1}"},
                                     {"{\"x\":\"", "\"}"},
                                     {"{\"x\":{\"", "\":1}}"},
                                     {"{\"x\":[1,\"", "\"]}"}};
    for (size_t w = 0; w < SL_ARRAY_LEN(where); w++) {
        for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
            char json[64];
            snprintf(json, sizeof(json), "%s%s%s", where[w][0], bad[i], where[w][1]);
            if (dec(&s, json) != -1 || strstr(why.text, "invalid UTF-8 at byte") == NULL) {
                fprintf(stderr, "accepted or misreported bad UTF-8 #%zu in %s: %s\n", i, json,
                        why.text);
                CHECK(0);
            }
        }
    }
    /* Exact position of the bad byte. */
    CHECK_INT(dec(&s, "{\"name\":\"ab\xff\"}"), -1);
    CHECK_STR(why.text, "invalid UTF-8 at byte 11");
    /* A sequence cut off by the end of the buffer (no closing quote). */
    CHECK_INT(dec_lim(&s, &limits, "{\"name\":\"\xe2\x82", 11), -1);
    CHECK_CONTAINS(why.text, "invalid UTF-8 at byte 9");
    CHECK_INT(dec_lim(&s, &limits, "{\"name\":\"\xf0", 10), -1);
    CHECK_CONTAINS(why.text, "invalid UTF-8 at byte 9");
    sl_schema_free(&s);
}

TEST(escapes)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    CHECK_INT(dec(&s, "{\"name\":\"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t\"}"), 0);
    CHECK(str_eq(&vals[F_NAME], "q\"b\\s/b\bf\fn\nr\rt\t", 16));
    CHECK(!in_buf(vals[F_NAME].u.s.ptr)); /* unescaped into the arena */
    CHECK_INT(dec(&s, "{\"name\":\"\\u00e9\\u00E9\\u20ac\\ud83d\\ude00\\uD83D\\uDE00x\"}"), 0);
    CHECK(
        str_eq(&vals[F_NAME], "\xc3\xa9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf0\x9f\x98\x80x", 16));
    CHECK_INT(dec(&s, "{\"name\":\"a\\u0000b\"}"), 0);
    CHECK(str_eq(&vals[F_NAME], "a\0b", 3));
    CHECK_INT(dec(&s, "{\"name\":\"\\u0041\\u007f\\u0080\\u07ff\\u0800\\uffff\"}"), 0);
    CHECK(str_eq(&vals[F_NAME], "A\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 12));
    CHECK_INT(dec(&s, "{\"name\":\"\\udbff\\udfff\"}"), 0);
    CHECK(str_eq(&vals[F_NAME], "\xf4\x8f\xbf\xbf", 4));
    /* An escaped key names the same field. */
    CHECK_INT(dec(&s, "{\"\\u0076iews\":7}"), 0);
    CHECK_INT(vals[F_VIEWS].u.i, 7);
    CHECK_INT(dec(&s, "{\"\\u0076iews\":7,\"views\":8}"), -1);
    CHECK_STR(why.text, "field 'views': duplicate key");
    static const bad_case_t cases[] = {
        {"{\"name\":\"\\ud83d\"}", "invalid JSON at byte 9: unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\ude00\"}", "unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\ude00\\ude00\"}", "unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\ude00\\ud83d\"}", "unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\ud83d\\u0041\"}", "unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\ud83d\\ud83d\"}", "unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\ud83dx\\ude00\"}", "unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\ud83d\\", "unpaired UTF-16 surrogate"},
        {"{\"x\":\"\\ud83d\"}", "unpaired UTF-16 surrogate"},
        {"{\"\\udc00\":1}", "unpaired UTF-16 surrogate"},
        {"{\"name\":\"\\U00e9\"}", "invalid escape"},
        {"{\"name\":\"\\u00e\"}", "invalid \\u escape"},
    };
    check_bad(&s, cases, SL_ARRAY_LEN(cases));
    sl_schema_free(&s);
}

/* The string scanner reads 8 bytes at a time: put each kind of stop byte at
 * every offset of a chunk, in a known value and in a skipped one. */
TEST(string_scanner_at_every_offset)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    static const struct {
        const char *ins; /* inserted after k bytes of 'a' */
        int ok;
        const char *decoded; /* what the inserted bytes decode to */
        const char *reason;
    } kinds[] = {
        {"", 1, "", NULL},
        {"\\n", 1, "\n", NULL},
        {"\\\"", 1, "\"", NULL},
        {"\xc3\xa9", 1, "\xc3\xa9", NULL},
        {"\xf0\x9f\x98\x80", 1, "\xf0\x9f\x98\x80", NULL},
        {"\x7f", 1, "\x7f", NULL},
        {"\x1f", 0, NULL, "unescaped control character"},
        {"\xff", 0, NULL, "invalid UTF-8 at byte"},
        {"\xc3", 0, NULL, "invalid UTF-8 at byte"},
        {"\xed\xa0\x80", 0, NULL, "invalid UTF-8 at byte"},
    };
    for (size_t k = 0; k < 24; k++) {
        for (size_t i = 0; i < SL_ARRAY_LEN(kinds); i++) {
            for (int skip = 0; skip < 2; skip++) {
                char json[128], want[64];
                size_t o = 0, w = 0;
                o += (size_t)snprintf(json, sizeof(json), "{\"%s\":\"", skip ? "x" : "name");
                for (size_t j = 0; j < k; j++) {
                    json[o++] = 'a';
                    want[w++] = 'a';
                }
                size_t at = o;
                o += (size_t)snprintf(json + o, sizeof(json) - o, "%s", kinds[i].ins);
                o += (size_t)snprintf(json + o, sizeof(json) - o, "bc\"}");
                int rc = dec_lim(&s, &limits, json, o);
                if (kinds[i].ok) {
                    w += (size_t)snprintf(want + w, sizeof(want) - w, "%sbc", kinds[i].decoded);
                    CHECK_INT(rc, 0);
                    CHECK(skip || str_eq(&vals[F_NAME], want, w));
                } else {
                    char pos[64];
                    snprintf(pos, sizeof(pos), "at byte %zu", at);
                    CHECK_INT(rc, -1);
                    CHECK_CONTAINS(why.text, kinds[i].reason);
                    CHECK_CONTAINS(why.text, pos);
                }
            }
        }
    }
    sl_schema_free(&s);
}

TEST(unknown_field_policy)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    const char *json = "{\"a\":{\"b\":[1,2.5e3,\"x\",true,false,null,{},[]]},\"views\":3,"
                       "\"c\":\"\\u00e9\",\"d\":-0.0,\"a\":1}";
    CHECK_INT(dec(&s, json), 0); /* unknown keys may repeat: they are not kept */
    CHECK_INT(vals[F_VIEWS].u.i, 3);
    sl_schema_free(&s);

    make_schema(&s, SL_UNKNOWN_REJECT);
    CHECK_INT(dec(&s, json), -1);
    CHECK_STR(why.text, "unknown field 'a'");
    CHECK_INT(dec(&s, "{\"views\":3,\"ex\\\"tra\":1}"), -1);
    CHECK_STR(why.text, "unknown field 'ex\\\"tra'");
    CHECK_INT(dec(&s, "{\"views\":3,\"date\":\"2017-02-04\"}"), 0);
    sl_schema_free(&s);

    /* A schema without fields accepts any object when ignoring. */
    sl_schema_t empty = {0};
    sl_schema_finish(&empty);
    CHECK_INT(dec(&empty, "{\"a\":1,\"b\":[{}]}"), 0);
    empty.unknown = SL_UNKNOWN_REJECT;
    CHECK_INT(dec(&empty, "{}"), 0);
    CHECK_INT(dec(&empty, "{\"a\":1}"), -1);
    sl_schema_free(&empty);
}

TEST(duplicate_known_keys)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    CHECK_INT(dec(&s, "{\"views\":1,\"views\":2}"), -1);
    CHECK_STR(why.text, "field 'views': duplicate key");
    CHECK_INT(dec(&s, "{\"views\":null,\"views\":2}"), -1);
    CHECK_STR(why.text, "field 'views': duplicate key");
    CHECK_INT(dec(&s, "{\"ts\":1,\"date\":\"2017-01-01\",\"ts\":2}"), -1);
    CHECK_STR(why.text, "field 'ts': duplicate key");
    sl_schema_free(&s);

    /* More fields than the on-stack bitmap holds. */
    sl_schema_t wide = {0};
    char name[16];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        add_field(&wide, name, SL_TYPE_INT64);
    }
    sl_schema_finish(&wide);
    sl_value_t *wv = calloc(300, sizeof(*wv));
    const char *ok = "{\"f299\":1,\"f0\":2,\"f64\":3}";
    CHECK_INT(sl_json_decode(&wide, &limits, ok, strlen(ok), wv, &arena, &why), 0);
    CHECK_INT(wv[299].u.i, 1);
    CHECK_INT(wv[64].u.i, 3);
    CHECK(wv[1].is_null);
    const char *dup = "{\"f299\":1,\"f0\":2,\"f299\":3}";
    CHECK_INT(sl_json_decode(&wide, &limits, dup, strlen(dup), wv, &arena, &why), -1);
    CHECK_STR(why.text, "field 'f299': duplicate key");
    free(wv);
    sl_schema_free(&wide);
}

TEST(reads_only_len_bytes)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    /* The bytes after len are not part of the message. */
    CHECK_INT(dec_lim(&s, &limits, "{\"views\":12}999", 12), 0);
    CHECK_INT(vals[F_VIEWS].u.i, 12);
    CHECK_INT(dec_lim(&s, &limits, "{\"views\":12}999", 11), -1);
    CHECK_STR(why.text, "invalid JSON at byte 11: expected ',' or '}', got end of input");
    /* Every prefix of a valid message is rejected without reading past it. */
    const char *full =
        "{\"date\":\"2017-02-04\",\"ts\":\"2017-02-04T10:20:30.5Z\",\"ok\":true,"
        "\"x\":[null,{\"y\":\"\\ud83d\\ude00\"}],\"ratio\":1.5e-3,\"name\":\"\\u00e9\"}";
    size_t n = strlen(full);
    int accepted = 0;
    for (size_t i = 0; i < n; i++) {
        accepted += dec_lim(&s, &limits, full, i) == 0;
    }
    CHECK_INT(accepted, 0);
    CHECK_INT(dec_lim(&s, &limits, full, n), 0);
    CHECK(vals[F_RATIO].u.d == 1.5e-3);
    sl_schema_free(&s);
}

TEST(encode_round_trips)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    const char *json =
        "{\"name\":\"a\\\"\\u00e9\\n\",\"x\":[1],\"ts\":\"2017-02-04T11:20:30.123+01:00\","
        "\"ratio\":0.1,\"ok\":true,\"site_id\":-5,\"date\":\"2017-02-04\"}";
    CHECK_INT(dec(&s, json), 0);
    sl_buf_t out = SL_BUF_INIT;
    sl_json_encode(&s, vals, &out);
    CHECK_STR(out.data, "{\"date\":\"2017-02-04\",\"site_id\":-5,\"views\":null,\"clicks\":null,"
                        "\"ratio\":0.1,\"ok\":true,\"name\":\"a\\\"\xc3\xa9\\n\","
                        "\"ts\":\"2017-02-04T10:20:30.123Z\"}");
    sl_value_t first[N_F];
    memcpy(first, vals, sizeof(first));
    char *copy = sl_xstrndup(out.data, out.len); /* keep: first[] may point into the arena */
    CHECK_INT(dec_lim(&s, &limits, copy, out.len), 0);
    for (int i = 0; i < N_F; i++) {
        CHECK(first[i].is_null == vals[i].is_null);
    }
    CHECK(str_eq(&vals[F_NAME], first[F_NAME].u.s.ptr, first[F_NAME].u.s.len));
    CHECK(vals[F_RATIO].u.d == first[F_RATIO].u.d);
    CHECK_INT(vals[F_TS].u.i, first[F_TS].u.i);
    CHECK_INT(vals[F_DATE].u.i, first[F_DATE].u.i);
    CHECK_INT(vals[F_SITE].u.i, first[F_SITE].u.i);
    free(copy);
    sl_buf_free(&out);
    sl_schema_free(&s);
}

TEST(decode_then_validate)
{
    sl_schema_t s;
    make_schema(&s, SL_UNKNOWN_IGNORE);
    s.fields[F_SITE].required = true;
    s.fields[F_VIEWS].has_min = true;
    s.fields[F_VIEWS].min_i = 0;
    s.fields[F_CLICKS].has_default = true;
    s.fields[F_CLICKS].def.is_null = false;
    s.fields[F_CLICKS].def.u.i = 0;
    CHECK_INT(dec(&s, "{\"views\":-1,\"site_id\":1}"), 0);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'views': -1 is below min 0");
    CHECK_INT(dec(&s, "{\"views\":1}"), 0);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "missing required field 'site_id'");
    CHECK_INT(dec(&s, "{\"views\":1,\"site_id\":null}"), 0);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "missing required field 'site_id'");
    CHECK_INT(dec(&s, "{\"views\":1,\"site_id\":2}"), 0);
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    CHECK(!vals[F_CLICKS].is_null && vals[F_CLICKS].u.i == 0);
    sl_schema_free(&s);
}

TEST(cleanup)
{
    sl_arena_free(&arena);
    free(last_buf);
    last_buf = NULL;
}

TEST_MAIN(T(decodes_a_site_event), T(decodes_all_types_whitespace_and_null), T(rejects_bad_json),
          T(rejects_wrong_types), T(integer_ranges), T(doubles_match_strtod), T(dates),
          T(timestamps), T(max_bytes_is_checked_first), T(nesting_limit),
          T(utf8_is_strict_everywhere), T(escapes), T(string_scanner_at_every_offset),
          T(unknown_field_policy), T(duplicate_known_keys), T(reads_only_len_bytes),
          T(encode_round_trips), T(decode_then_validate), T(cleanup))
