/* The expression language (src/stages/expr.c, docs/EXPRESSIONS.md). Most
 * checks go through run(), which compiles an expression from an exactly
 * sized heap copy (so ASan sees reads past the end), evaluates it on the
 * record rec and renders the outcome as text:
 *   "7", "2.5", "true", "'abc'", "date:2024-03-31", "ts:1711846800000000",
 *   "null", "error: <run-time reason>", "compile@<col>: <message>". */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "stages/expr.h"
#include "test.h"

enum {
    F_USER_ID,
    F_OWNER_ID,
    F_AD_ID,
    F_NAME,
    F_I32,
    F_D,
    F_B,
    F_DT,
    F_TS,
    F_S2,
    F_GONE, /* hidden, as after a transform's drop */
    F_LATE, /* defined after the expression: not visible */
    F_COUNT
};
#define VISIBLE F_LATE

/* 2024-03-31 (Python: (date(2024,3,31) - date(1970,1,1)).days) */
#define DAY_2024_03_31 19813
/* 2024-03-31T01:30:00Z in microseconds (Python datetime.timestamp()) */
#define TS_2024_03_31_0130Z INT64_C(1711848600000000)

static sl_schema_t sch;
static sl_value_t rec[F_COUNT];
static sl_arena_t arena;

static void add_field(const char *name, sl_type_t type)
{
    sl_field_t *f = &sch.fields[sch.n_fields++];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->def.is_null = true;
}

static void set_str(int f, const char *s)
{
    rec[f].is_null = false;
    rec[f].u.s.ptr = s;
    rec[f].u.s.len = strlen(s);
}

static void set_int(int f, int64_t i)
{
    rec[f].is_null = false;
    rec[f].u.i = i;
}

static void set_null(int f)
{
    rec[f].is_null = true;
}

/* Builds the schema once and resets the record to its default values. */
static void setup(void)
{
    if (sch.fields == NULL) {
        sch.fields = sl_xcalloc(F_COUNT, sizeof(sl_field_t));
        add_field("user_id", SL_TYPE_INT64);
        add_field("owner_id", SL_TYPE_INT64);
        add_field("ad_id", SL_TYPE_INT64);
        add_field("name", SL_TYPE_STRING);
        add_field("i32", SL_TYPE_INT32);
        add_field("d", SL_TYPE_DOUBLE);
        add_field("b", SL_TYPE_BOOL);
        add_field("dt", SL_TYPE_DATE);
        add_field("ts", SL_TYPE_TIMESTAMP);
        add_field("s2", SL_TYPE_STRING);
        add_field("gone", SL_TYPE_STRING);
        sch.fields[F_GONE].hidden = true;
        add_field("late", SL_TYPE_STRING);
        sl_schema_finish(&sch);
        sl_arena_init(&arena, 0);
    }
    memset(rec, 0, sizeof(rec));
    set_int(F_USER_ID, 1);
    set_int(F_OWNER_ID, 2);
    set_int(F_AD_ID, 3);
    set_str(F_NAME, "  Alice Smith ");
    set_int(F_I32, -5);
    rec[F_D].u.d = 2.5;
    rec[F_B].u.b = true;
    set_int(F_DT, DAY_2024_03_31);
    set_int(F_TS, TS_2024_03_31_0130Z);
    set_str(F_S2, "abc");
    set_str(F_GONE, "hidden");
    set_str(F_LATE, "late");
}

static char out_buf[1024];

static const char *render(const sl_value_t *v, sl_type_t t)
{
    char tmp[32];
    if (v->is_null) {
        snprintf(out_buf, sizeof(out_buf), "null");
        return out_buf;
    }
    switch (t) {
    case SL_TYPE_STRING:
        snprintf(out_buf, sizeof(out_buf), "'%.*s'", (int)v->u.s.len, v->u.s.ptr);
        break;
    case SL_TYPE_INT64:
        snprintf(out_buf, sizeof(out_buf), "%" PRId64, v->u.i);
        break;
    case SL_TYPE_DOUBLE:
        snprintf(out_buf, sizeof(out_buf), "%.17g", v->u.d);
        break;
    case SL_TYPE_BOOL:
        snprintf(out_buf, sizeof(out_buf), "%s", v->u.b ? "true" : "false");
        break;
    case SL_TYPE_DATE:
        sl_date_format(v->u.i, tmp);
        snprintf(out_buf, sizeof(out_buf), "date:%s", tmp);
        break;
    case SL_TYPE_TIMESTAMP:
        snprintf(out_buf, sizeof(out_buf), "ts:%" PRId64, v->u.i);
        break;
    default:
        snprintf(out_buf, sizeof(out_buf), "bad type %d", (int)t);
        break;
    }
    return out_buf;
}

/* Compiles text against the first n_fields fields and evaluates it. */
static const char *run_n(const char *text, size_t n_fields)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    sl_expr_error_t err;
    sl_expr_t *e = sl_expr_compile(copy, len, &sch, n_fields, &err);
    free(copy); /* the expression keeps what it needs */
    if (e == NULL) {
        CHECK(err.col >= 1 && (size_t)err.col <= len + 1);
        CHECK(err.msg[0] != '\0');
        snprintf(out_buf, sizeof(out_buf), "compile@%d: %s", err.col, err.msg);
        return out_buf;
    }
    sl_value_t v;
    sl_reason_t why;
    sl_type_t t = sl_expr_type(e);
    CHECK(t != SL_TYPE_INT32 && t < SL_TYPE__COUNT);
    int rc = sl_expr_eval(e, rec, &arena, &v, &why);
    if (t == SL_TYPE_BOOL) {
        /* eval_bool agrees with eval: kept only when true */
        bool keep = true;
        sl_reason_t why2;
        int rc2 = sl_expr_eval_bool(e, rec, &arena, &keep, &why2);
        CHECK_INT(rc2, rc);
        if (rc == 0 && rc2 == 0) {
            CHECK_INT(keep, !v.is_null && v.u.b);
        }
    }
    if (rc != 0) {
        snprintf(out_buf, sizeof(out_buf), "error: %s", why.text);
    } else {
        render(&v, t);
    }
    sl_expr_destroy(e);
    return out_buf;
}

static const char *run(const char *text)
{
    return run_n(text, VISIBLE);
}

/* The result type's name, or "error". */
static const char *type_of(const char *text)
{
    sl_expr_error_t err;
    sl_expr_t *e = sl_expr_compile(text, strlen(text), &sch, VISIBLE, &err);
    if (e == NULL) {
        return "error";
    }
    const char *name = sl_type_name(sl_expr_type(e));
    sl_expr_destroy(e);
    return name;
}

TEST(literals)
{
    setup();
    CHECK_STR(run("42"), "42");
    CHECK_STR(run("007"), "7");
    CHECK_STR(run("-42"), "-42");
    CHECK_STR(run("9223372036854775807"), "9223372036854775807");
    CHECK_STR(run("-9223372036854775808"), "-9223372036854775808");
    CHECK_STR(run("1.5"), "1.5");
    CHECK_STR(run(".5"), "0.5");
    CHECK_STR(run("1e3"), "1000");
    CHECK_STR(run("2.5E-1"), "0.25");
    CHECK_STR(run("1e+2"), "100");
    CHECK_STR(run("'it''s'"), "compile@5: unexpected ''s'' after a complete expression: is an "
                              "operator missing?");
    CHECK_STR(run("'single'"), "'single'");
    CHECK_STR(run("\"double\""), "'double'");
    CHECK_STR(run("'a\\'b\\\"c\\\\d'"), "'a'b\"c\\d'");
    CHECK_STR(run("\"tab\\there\\nnl\\rcr\""), "'tab\there\nnl\rcr'");
    CHECK_STR(run("'\\u00e9'"), "'\xc3\xa9'");
    CHECK_STR(run("'\\u20AC'"), "'\xe2\x82\xac'");
    CHECK_STR(run("'\\ud83d\\ude00'"), "'\xf0\x9f\x98\x80'"); /* U+1F600 as a surrogate pair */
    CHECK_STR(run("''"), "''");
    CHECK_STR(run("true"), "true");
    CHECK_STR(run("FALSE"), "false");
    CHECK_STR(run("null + 1"), "null");
    CHECK_STR(type_of("null + 1"), "int64");
    CHECK_STR(type_of("42"), "int64");
    CHECK_STR(type_of("4.2"), "double");
    CHECK_STR(type_of("'x'"), "string");
}

TEST(bad_literals)
{
    setup();
    CHECK_STR(run("9223372036854775808"),
              "compile@1: integer 9223372036854775808 is out of the int64 range: write it as a "
              "decimal (9223372036854775808.0) for a double");
    CHECK_STR(run("1 + 99999999999999999999"),
              "compile@5: integer 99999999999999999999 is out of the int64 range: write it as a "
              "decimal (99999999999999999999.0) for a double");
    CHECK_STR(run("-9223372036854775809"),
              "compile@2: integer 9223372036854775809 is out of the int64 range: write it as a "
              "decimal (9223372036854775809.0) for a double");
    CHECK_STR(run("1e999"), "compile@1: number 1e999 is too large for a double");
    CHECK_CONTAINS(run("1.2.3"), "compile@1: malformed number '1.2.3'");
    CHECK_CONTAINS(run("user_id == 12abc"), "compile@12: malformed number '12abc'");
    CHECK_CONTAINS(run("5."), "compile@1: malformed number '5.'");
    CHECK_CONTAINS(run("1e"), "compile@1: malformed number '1e'");
    CHECK_STR(run("name == 'abc"), "compile@9: unterminated string: close it with '");
    CHECK_STR(run("\"abc\\\""), "compile@1: unterminated string: close it with \"");
    CHECK_CONTAINS(run("'a\\qb'"), "compile@3: unknown escape '\\q' in string");
    CHECK_CONTAINS(run("'\\u12'"), "compile@2: bad escape in string: \\u takes 4 hex digits");
    CHECK_CONTAINS(run("'\\uD800'"), "compile@2: bad escape in string: \\uD800 must be followed");
    CHECK_CONTAINS(run("'\\uDC00'"), "compile@2: bad escape in string: \\uDC00 is a lone low");
    CHECK_STR(run("`user_id"), "compile@1: unterminated quoted field name: close it with `");
}

TEST(quoted_field_names)
{
    setup();
    CHECK_STR(run("`user_id` + 1"), "2");
    CHECK_CONTAINS(run("`in`"), "compile@1: unknown field 'in'");
    CHECK_STR(run("``"), "compile@1: empty quoted field name ``");
}

TEST(precedence)
{
    setup();
    CHECK_STR(run("1 + 2 * 3"), "7");
    CHECK_STR(run("(1 + 2) * 3"), "9");
    CHECK_STR(run("10 - 4 - 3"), "3"); /* left-associative */
    CHECK_STR(run("64 / 4 / 2"), "8"); /* (64 / 4) / 2 */
    CHECK_STR(run("7 % 3 * 2"), "2");  /* (7 % 3) * 2 */
    CHECK_STR(run("-2 * 3"), "-6");
    CHECK_STR(run("- 2 * - 3"), "6");
    CHECK_STR(run("--5"), "5");
    CHECK_STR(run("-(2 + 3)"), "-5");
    CHECK_STR(run("2 - -3"), "5");
    CHECK_STR(run("1 + 2 == 3"), "true"); /* arithmetic binds tighter than == */
    CHECK_STR(run("true || false && false"), "true");
    CHECK_STR(run("(true || false) && false"), "false");
    CHECK_STR(run("false && true || true"), "true");
    CHECK_STR(run("true or false and false"), "true");
    CHECK_STR(run("!false && false"), "false");
    CHECK_STR(run("not 1 == 2"), "true"); /* not (1 == 2) */
    CHECK_STR(run("!user_id == owner_id"), "true");
    CHECK_STR(run("! ! true"), "true");
    CHECK_STR(run("not not false"), "false");
    CHECK_STR(run("not user_id in (1, 2)"), "false");
    CHECK_STR(run("user_id not in (1, 2)"), "false");
    CHECK_STR(run("(1 < 2) == true"), "true");
    CHECK_STR(run("1 < 2 < 3"), "compile@7: comparisons do not chain: write a < b && b < c, or "
                                "parenthesize (a == b) == c");
    CHECK_STR(run("false == (!true)"), "true");
    CHECK_STR(run("1 == !true"), "compile@6: '!' binds looser than comparisons and arithmetic: "
                                 "put it in parentheses here, as in a == (!b)");
}

TEST(int_arithmetic)
{
    setup();
    CHECK_STR(run("user_id + owner_id"), "3");
    CHECK_STR(run("user_id - owner_id"), "-1");
    CHECK_STR(run("owner_id * 21"), "42");
    CHECK_STR(run("7 / 2"), "3");
    CHECK_STR(run("-7 / 2"), "-3"); /* truncates toward zero */
    CHECK_STR(run("7 / -2"), "-3");
    CHECK_STR(run("7 % 3"), "1");
    CHECK_STR(run("-7 % 3"), "-1"); /* the sign of the dividend */
    CHECK_STR(run("7 % -3"), "1");
    CHECK_STR(run("i32 * 2"), "-10"); /* int32 fields read as int64 */
    CHECK_STR(type_of("i32"), "int64");
    CHECK_STR(type_of("i32 + 1"), "int64");
    set_int(F_I32, INT32_MAX);
    CHECK_STR(run("i32 + 1"), "2147483648"); /* no int32 overflow: int64 arithmetic */

    set_int(F_USER_ID, INT64_MAX);
    CHECK_STR(run("user_id + 1"), "error: integer overflow in \"user_id + 1\"");
    CHECK_STR(run("user_id * owner_id"), "error: integer overflow in \"user_id * owner_id\"");
    CHECK_STR(run("-user_id - 2"), "error: integer overflow in \"-user_id - 2\"");
    CHECK_STR(run("user_id - 1"), "9223372036854775806");
    set_int(F_USER_ID, INT64_MIN);
    CHECK_STR(run("-user_id"), "error: integer overflow in \"-user_id\"");
    CHECK_STR(run("user_id / -1"), "error: integer overflow in \"user_id / -1\"");
    CHECK_STR(run("user_id % -1"), "0");
    CHECK_STR(run("abs(user_id)"), "error: integer overflow in \"abs(user_id)\"");
    setup();
    set_int(F_OWNER_ID, 0);
    CHECK_STR(run("user_id / owner_id"), "error: division by zero in \"user_id / owner_id\"");
    CHECK_STR(run("user_id % owner_id"), "error: division by zero in \"user_id % owner_id\"");
    CHECK_STR(run("d / owner_id"), "error: division by zero in \"d / owner_id\"");
    CHECK_STR(run("(user_id + 1) / (owner_id * 2)"),
              "error: division by zero in \"(user_id + 1) / (owner_id * 2)\"");
    /* constant sub-expressions are computed at compile time */
    CHECK_STR(run("9223372036854775807 + 1"),
              "compile@1: integer overflow in \"9223372036854775807 + 1\"");
    CHECK_STR(run("user_id + 1 / 0"), "compile@11: division by zero in \"1 / 0\"");
    CHECK_STR(run("1.0 % 0"), "compile@1: division by zero in \"1.0 % 0\"");
}

TEST(double_arithmetic)
{
    setup();
    CHECK_STR(run("1 + 0.5"), "1.5");
    CHECK_STR(type_of("1 + 0.5"), "double");
    CHECK_STR(run("d * 2"), "5");
    CHECK_STR(type_of("d * 2"), "double");
    CHECK_STR(run("7.0 / 2"), "3.5");
    CHECK_STR(run("7 / 2.0"), "3.5");
    CHECK_STR(run("7.5 % 2"), "1.5");
    CHECK_STR(run("-d"), "-2.5");
    CHECK_STR(run("1e308 * 10"), "inf"); /* doubles follow IEEE, except / and % by zero */
    CHECK_STR(run("'ab' + 'cd'"), "'abcd'");
    CHECK_STR(run("s2 + ''"), "'abc'");
    CHECK_STR(run("name - 1"), "compile@6: cannot apply '-' to string and int64: convert the "
                               "string with int() or double()");
    CHECK_STR(run("name + 1"), "compile@6: cannot apply '+' to string and int64: join text with "
                               "concat(a, b), or convert the string with int() or double()");
    CHECK_STR(run("b + 1"), "compile@3: cannot apply '+' to bool and int64: convert the bool with "
                            "if(b, 1, 0)");
    CHECK_STR(run("ts - ts"), "compile@4: cannot apply '-' to timestamp and timestamp: convert "
                              "with epoch_ms() and back with timestamp_ms()");
    CHECK_CONTAINS(run("dt + 1"), "compile@4: cannot apply '+' to date and int64");
    CHECK_STR(run("null * null"),
              "compile@6: null * null has no type: use a field or a typed value");
    CHECK_STR(run("-name"), "compile@1: cannot negate string: '-' needs a number");
}

TEST(comparisons)
{
    setup();
    static const struct {
        const char *expr, *want;
    } cases[] = {
        {"1 == 1", "true"},
        {"1 != 1", "false"},
        {"1 < 2", "true"},
        {"2 <= 2", "true"},
        {"3 > 2", "true"},
        {"2 >= 3", "false"},
        {"1 == 1.0", "true"},
        {"1 < 1.5", "true"},
        {"2.5 > 2", "true"},
        {"d == 2.5", "true"},
        {"d >= i32", "true"},
        {"'a' < 'b'", "true"},
        {"'ab' > 'a'", "true"},
        {"'' < 'a'", "true"},
        {"'B' < 'a'", "true"},
        {"'\\u00e9' > 'z'", "true"}, /* bytewise: 0xC3 > 'z' */
        {"s2 == 'abc'", "true"},
        {"s2 != 'abc'", "false"},
        {"s2 <= 'abd'", "true"},
        {"b == true", "true"},
        {"b != false", "true"},
        {"true == false", "false"},
        {"user_id != owner_id", "true"},
        {"dt == '2024-03-31'", "true"},
        {"dt < '2024-04-01'", "true"},
        {"'2024-03-30' < dt", "true"},
        {"dt >= dt", "true"},
        {"ts == '2024-03-31T01:30:00Z'", "true"},
        {"ts == '2024-03-31T03:30:00+02:00'", "true"},
        {"ts > '2024-03-31 01:29:59.999999Z'", "true"},
        {"ts < '2024-03-31T01:30Z'", "false"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        const char *got = run(cases[i].expr);
        if (strcmp(got, cases[i].want) != 0) {
            fprintf(stderr, "  %s -> %s, want %s\n", cases[i].expr, got, cases[i].want);
        }
        CHECK_STR(got, cases[i].want);
    }
    /* 2^53 + 1 is not a double: mixed comparisons are done in double */
    CHECK_STR(run("9007199254740993 == 9007199254740992.0"), "true");
}

TEST(comparison_errors)
{
    setup();
    CHECK_STR(run("name == 1"),
              "compile@6: cannot compare string with int64: quote the number or convert with "
              "int()");
    CHECK_STR(run("d > 'x'"),
              "compile@3: cannot compare double with string: quote the number or convert with "
              "double()");
    CHECK_STR(run("b < false"), "compile@3: bools can only be compared with == and !=");
    CHECK_STR(run("b == 1"),
              "compile@3: cannot compare bool with int64: compare the bool with true or false");
    CHECK_STR(run("dt == ts"),
              "compile@4: cannot compare date with timestamp: convert the timestamp with "
              "date(ts)");
    CHECK_STR(run("dt == s2"), "compile@4: cannot compare date with string: only a string "
                               "literal such as '2024-01-31' is converted");
    CHECK_STR(run("dt == '2024-02-30'"),
              "compile@7: '2024-02-30' is not a date: write it as 'YYYY-MM-DD'");
    CHECK_STR(run("ts < 'yesterday'"),
              "compile@6: 'yesterday' is not a timestamp: write it as '2024-03-31T02:30:00Z' (or "
              "with an offset such as +02:00)");
    CHECK_STR(run("ts == 5"), "compile@4: cannot compare timestamp with int64: for a time as a "
                              "number use epoch_ms(ts)");
}

/* Kleene logic: rows are a, columns b, in the order true, false, null. */
TEST(null_truth_tables)
{
    setup();
    static const char *vals[] = {"true", "false", "null"};
    static const char *and_t[3][3] = {
        {"true", "false", "null"}, {"false", "false", "false"}, {"null", "false", "null"}};
    static const char *or_t[3][3] = {
        {"true", "true", "true"}, {"true", "false", "null"}, {"true", "null", "null"}};
    char expr[64];
    for (int a = 0; a < 3; a++) {
        for (int b = 0; b < 3; b++) {
            snprintf(expr, sizeof(expr), "%s && %s", vals[a], vals[b]);
            CHECK_STR(run(expr), and_t[a][b]);
            snprintf(expr, sizeof(expr), "%s || %s", vals[a], vals[b]);
            CHECK_STR(run(expr), or_t[a][b]);
            /* the same through fields, so nothing is folded at compile time */
            rec[F_B].is_null = a == 2;
            rec[F_B].u.b = a == 0;
            snprintf(expr, sizeof(expr), "b and %s", vals[b]);
            CHECK_STR(run(expr), and_t[a][b]);
            snprintf(expr, sizeof(expr), "b or %s", vals[b]);
            CHECK_STR(run(expr), or_t[a][b]);
            snprintf(expr, sizeof(expr), "%s and b", vals[b]);
            CHECK_STR(run(expr), and_t[b][a]);
        }
    }
    CHECK_STR(run("!true"), "false");
    CHECK_STR(run("!false"), "true");
    CHECK_STR(run("!null"), "null");
    set_null(F_B);
    CHECK_STR(run("not b"), "null");
    /* short circuit: the right side is not evaluated, so its error does not happen */
    setup();
    set_int(F_OWNER_ID, 0);
    CHECK_STR(run("false && user_id / owner_id == 1"), "false");
    CHECK_STR(run("b || user_id / owner_id == 1"), "true");
    CHECK_STR(run("null && user_id / owner_id == 1"),
              "error: division by zero in \"user_id / owner_id\"");
}

TEST(null_semantics)
{
    setup();
    set_null(F_AD_ID);
    set_null(F_NAME);
    CHECK_STR(run("ad_id == null"), "true");
    CHECK_STR(run("ad_id != null"), "false");
    CHECK_STR(run("null == ad_id"), "true");
    CHECK_STR(run("is_null(ad_id)"), "true");
    CHECK_STR(run("is_null(user_id)"), "false");
    CHECK_STR(run("user_id == null"), "false");
    CHECK_STR(run("null == null"), "true");
    CHECK_STR(run("null != null"), "false");
    CHECK_STR(run("null < null"), "null");
    /* arithmetic, comparisons and functions of a null are null */
    CHECK_STR(run("ad_id + 1"), "null");
    CHECK_STR(run("ad_id * 0"), "null");
    CHECK_STR(run("-ad_id"), "null");
    CHECK_STR(run("ad_id / 0"), "null");
    CHECK_STR(run("ad_id == 3"), "null");
    CHECK_STR(run("ad_id < user_id"), "null");
    CHECK_STR(run("user_id > null"), "null");
    CHECK_STR(run("lower(name)"), "null");
    CHECK_STR(run("length(name)"), "null");
    CHECK_STR(run("concat('a', name, 'b')"), "null");
    CHECK_STR(run("sha1('a', name)"), "null");
    CHECK_STR(run("xxh3(name)"), "null");
    CHECK_STR(run("substr(s2, ad_id)"), "null");
    CHECK_STR(run("starts_with(name, 'A')"), "null");
    CHECK_STR(run("int(name)"), "null");
    CHECK_STR(run("ad_id in (1, 2)"), "null");
    /* except coalesce, is_null and if */
    CHECK_STR(run("coalesce(ad_id, user_id)"), "1");
    CHECK_STR(run("coalesce(name, s2)"), "'abc'");
    CHECK_STR(run("coalesce(ad_id, null)"), "null");
    CHECK_STR(run("if(user_id == 1, 'one', name)"), "'one'");
    CHECK_STR(run("if(ad_id == 1, 'one', 'other')"), "'other'"); /* null condition: else */
    /* the filter keeps a record only when the result is true */
    sl_expr_error_t err;
    sl_reason_t why;
    bool keep = true;
    const char *text = "ad_id > 0";
    sl_expr_t *e = sl_expr_compile(text, strlen(text), &sch, VISIBLE, &err);
    CHECK(e != NULL);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), 0);
    CHECK(!keep);
    set_int(F_AD_ID, 1);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), 0);
    CHECK(keep);
    set_int(F_AD_ID, 0);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), 0);
    CHECK(!keep);
    sl_expr_destroy(e);
}

TEST(ad_stats_filter)
{
    setup();
    const char *text = "user_id != owner_id && ad_id != null";
    sl_expr_error_t err;
    sl_reason_t why;
    bool keep;
    sl_expr_t *e = sl_expr_compile(text, strlen(text), &sch, VISIBLE, &err);
    CHECK(e != NULL);
    CHECK_INT(sl_expr_type(e), SL_TYPE_BOOL);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), 0);
    CHECK(keep);
    set_int(F_OWNER_ID, 1);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), 0);
    CHECK(!keep);
    set_int(F_OWNER_ID, 2);
    set_null(F_AD_ID);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), 0);
    CHECK(!keep);
    set_null(F_OWNER_ID);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), 0);
    CHECK(!keep);
    sl_expr_destroy(e);

    /* eval_bool refuses an expression that is not bool */
    e = sl_expr_compile("user_id", 7, &sch, VISIBLE, &err);
    CHECK(e != NULL);
    CHECK_INT(sl_expr_eval_bool(e, rec, &arena, &keep, &why), -1);
    CHECK_STR(why.text, "the filter expression is int64, not bool");
    sl_expr_destroy(e);
    sl_expr_destroy(NULL);
}

TEST(in_lists)
{
    setup();
    CHECK_STR(run("user_id in (1, 2, 3)"), "true");
    CHECK_STR(run("user_id in (5, 4, 3)"), "false");
    CHECK_STR(run("user_id not in (5, 4, 3)"), "true");
    CHECK_STR(run("user_id not in (1)"), "false");
    CHECK_STR(run("user_id in (3, 1, 1, 2, -1)"), "true"); /* unsorted, duplicates */
    CHECK_STR(run("user_id in (-1 + 2)"), "true");         /* constant expressions are fine */
    CHECK_STR(run("user_id in (1.0, 2.5)"), "true");       /* mixed: compared as doubles */
    CHECK_STR(run("d in (1, 2.5)"), "true");
    CHECK_STR(run("d in (1, 2)"), "false");
    CHECK_STR(run("s2 in ('x', 'abc', 'ab')"), "true");
    CHECK_STR(run("s2 in ('x', 'ab', 'abcd', '')"), "false");
    CHECK_STR(run("name not in ('a')"), "true");
    CHECK_STR(run("b in (true)"), "true");
    CHECK_STR(run("b in (false)"), "false");
    CHECK_STR(run("b not in (false, false)"), "true");
    CHECK_STR(run("dt in ('2024-03-30', '2024-03-31')"), "true");
    CHECK_STR(run("ts in ('2024-03-31T03:30:00+02:00')"), "true");
    /* SQL: a null in the list makes "not found" unknown */
    CHECK_STR(run("user_id in (1, null)"), "true");
    CHECK_STR(run("user_id in (7, null)"), "null");
    CHECK_STR(run("user_id not in (7, null)"), "null");
    set_null(F_USER_ID);
    CHECK_STR(run("user_id in (1, 2)"), "null");
    CHECK_STR(run("user_id not in (1, 2)"), "null");
    setup();
    /* a large list: binary search over the sorted set */
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof(big), "owner_id in (");
    for (int i = 1000; i > 0; i -= 3) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%d, ", i);
    }
    snprintf(big + n, sizeof(big) - n, "0)");
    set_int(F_OWNER_ID, 1);
    CHECK_STR(run(big), "true"); /* 1 = 1000 - 3 * 333 */
    set_int(F_OWNER_ID, 3);
    CHECK_STR(run(big), "false");

    CHECK_STR(run("user_id in ()"),
              "compile@13: the list after 'in' is empty: give at least one value");
    CHECK_STR(run("user_id in 1"), "compile@12: expected '(' after 'in', found '1': write x in "
                                   "(1, 2, 3)");
    CHECK_STR(run("user_id in (1, owner_id)"),
              "compile@16: 'in' takes constant values only, and 'owner_id' is not one: "
              "compare with a field using == and ||");
    CHECK_STR(run("user_id in (1, 'a')"), "compile@16: cannot compare int64 with string: quote "
                                          "the number or convert with int()");
    CHECK_STR(run("dt in ('2024-13-01')"),
              "compile@8: '2024-13-01' is not a date: write it as 'YYYY-MM-DD'");
    CHECK_STR(run("user_id in (1, 2"), "compile@17: expected ',' or ')' to close the '(' at "
                                       "column 12, found the end of the expression");
}

TEST(string_functions)
{
    setup();
    CHECK_STR(run("lower('HeLLo, World!')"), "'hello, world!'");
    CHECK_STR(run("upper('HeLLo, World!')"), "'HELLO, WORLD!'");
    CHECK_STR(run("upper('\\u00e9t\\u00e9')"), "'\xc3\xa9T\xc3\xa9'"); /* ASCII only */
    CHECK_STR(run("trim(name)"), "'Alice Smith'");
    CHECK_STR(run("trim(' \\t\\n x y \\r\\n')"), "'x y'");
    CHECK_STR(run("trim('   ')"), "''");
    CHECK_STR(run("lower(trim(name))"), "'alice smith'");
    CHECK_STR(run("length(name)"), "14");
    CHECK_STR(run("length('\\u00e9')"), "2"); /* bytes */
    CHECK_STR(run("length('')"), "0");
    CHECK_STR(run("substr('hello', 2)"), "'ello'");
    CHECK_STR(run("substr('hello', 2, 3)"), "'ell'");
    CHECK_STR(run("substr('hello', 0, 2)"), "'h'"); /* like SQL: positions 0 and 1 */
    CHECK_STR(run("substr('hello', -5, 7)"), "'h'");
    CHECK_STR(run("substr('hello', 1, 100)"), "'hello'");
    CHECK_STR(run("substr('hello', 5)"), "'o'");
    CHECK_STR(run("substr('hello', 6)"), "''");
    CHECK_STR(run("substr('hello', 99, 2)"), "''");
    CHECK_STR(run("substr('hello', 2, 0)"), "''");
    CHECK_STR(run("substr('hello', 2, -1)"), "''");
    CHECK_STR(run("substr('hello', 2, 9223372036854775807)"), "'ello'");
    CHECK_STR(run("substr('hello', -9223372036854775808, 9223372036854775807)"), "''");
    CHECK_STR(run("starts_with(s2, 'ab')"), "true");
    CHECK_STR(run("starts_with(s2, 'abcd')"), "false");
    CHECK_STR(run("starts_with(s2, '')"), "true");
    CHECK_STR(run("ends_with(s2, 'bc')"), "true");
    CHECK_STR(run("ends_with(s2, 'b')"), "false");
    CHECK_STR(run("contains(name, 'ce S')"), "true");
    CHECK_STR(run("contains(name, 'alice')"), "false");
    CHECK_STR(run("contains('', '')"), "true");
    CHECK_STR(run("concat('a', 'b', 'c')"), "'abc'");
    CHECK_STR(run("concat(s2)"), "'abc'");
    CHECK_STR(run("concat(user_id, '-', d, '-', b, '-', dt, '-', ts)"),
              "'1-2.5-true-2024-03-31-2024-03-31T01:30:00.000Z'");
    CHECK_STR(run("concat(0.1, ' ', 1.0 / 3, ' ', 1e21, ' ', -0.0, ' ', 100.0)"),
              "'0.1 0.3333333333333333 1e+21 -0 100'");
    CHECK_STR(run("concat(-9223372036854775808)"), "'-9223372036854775808'");
    CHECK_STR(run("string(42)"), "'42'");
    CHECK_STR(run("string(2.5)"), "'2.5'");
    CHECK_STR(run("string(false)"), "'false'");
    CHECK_STR(run("string(dt)"), "'2024-03-31'");
    CHECK_STR(run("string(ts)"), "'2024-03-31T01:30:00.000Z'");
    CHECK_STR(run("string(s2)"), "'abc'");

    /* a function that changes nothing borrows its input; one that does builds in the arena */
    sl_expr_error_t err;
    sl_reason_t why;
    sl_value_t v;
    set_str(F_S2, "already lower");
    sl_expr_t *e = sl_expr_compile("lower(s2)", 9, &sch, VISIBLE, &err);
    CHECK(e != NULL);
    size_t used = arena.used;
    CHECK_INT(sl_expr_eval(e, rec, &arena, &v, &why), 0);
    CHECK(v.u.s.ptr == rec[F_S2].u.s.ptr);
    CHECK_INT(arena.used, used);
    set_str(F_S2, "Not Lower");
    CHECK_INT(sl_expr_eval(e, rec, &arena, &v, &why), 0);
    CHECK(v.u.s.ptr != rec[F_S2].u.s.ptr);
    CHECK(arena.used > used);
    sl_expr_destroy(e);
}

TEST(conversion_functions)
{
    setup();
    CHECK_STR(run("int(2.9)"), "2");
    CHECK_STR(run("int(-2.9)"), "-2");
    CHECK_STR(run("int(d)"), "2");
    CHECK_STR(run("int('123')"), "123");
    CHECK_STR(run("int('-9223372036854775808')"), "-9223372036854775808");
    CHECK_STR(run("int('+7')"), "7");
    CHECK_STR(run("int(true)"), "1");
    CHECK_STR(run("int(user_id)"), "1");
    CHECK_STR(run("int(null)"), "null");
    CHECK_STR(type_of("int(null)"), "int64");
    set_str(F_S2, "12x");
    CHECK_STR(run("int(s2)"), "error: \"12x\" is not an integer in \"int(s2)\"");
    set_str(F_S2, "");
    CHECK_STR(run("int(s2)"), "error: \"\" is not an integer in \"int(s2)\"");
    set_str(F_S2, "9223372036854775808");
    CHECK_STR(run("int(s2)"),
              "error: \"9223372036854775808\" is out of the int64 range in \"int(s2)\"");
    setup();
    rec[F_D].u.d = 1e19;
    CHECK_STR(run("int(d)"), "error: 1e+19 is out of the int64 range in \"int(d)\"");
    rec[F_D].u.d = NAN;
    CHECK_STR(run("int(d)"), "error: nan is out of the int64 range in \"int(d)\"");
    CHECK_STR(run("int('1.5')"), "compile@1: \"1.5\" is not an integer in \"int('1.5')\"");
    CHECK_STR(run("int(dt)"), "compile@5: int(): cannot convert date to int64");
    CHECK_STR(run("int(ts)"), "compile@5: int(): cannot convert timestamp to int64 (use "
                              "epoch_ms(ts))");
    setup();
    CHECK_STR(run("double(3)"), "3");
    CHECK_STR(type_of("double(user_id)"), "double");
    CHECK_STR(run("double('2.5e3')"), "2500");
    CHECK_STR(run("double('-.5')"), "-0.5");
    CHECK_STR(run("double('12')"), "12");
    set_str(F_S2, "inf");
    CHECK_STR(run("double(s2)"), "error: \"inf\" is not a number in \"double(s2)\"");
    set_str(F_S2, "1e999");
    CHECK_STR(run("double(s2)"), "error: \"1e999\" is too large for a double in \"double(s2)\"");
    set_str(F_S2, "1e");
    CHECK_STR(run("double(s2)"), "error: \"1e\" is not a number in \"double(s2)\"");
    CHECK_STR(run("double(b)"), "compile@8: double(): cannot convert bool to double");
}

TEST(math_functions)
{
    setup();
    CHECK_STR(run("abs(-3)"), "3");
    CHECK_STR(run("abs(i32)"), "5");
    CHECK_STR(type_of("abs(i32)"), "int64");
    CHECK_STR(run("abs(-2.5)"), "2.5");
    CHECK_STR(run("floor(2.7)"), "2");
    CHECK_STR(run("floor(-2.2)"), "-3");
    CHECK_STR(type_of("floor(2.7)"), "double");
    CHECK_STR(run("ceil(2.2)"), "3");
    CHECK_STR(run("ceil(-2.7)"), "-2");
    CHECK_STR(run("round(2.5)"), "3"); /* half away from zero */
    CHECK_STR(run("round(-2.5)"), "-3");
    CHECK_STR(run("round(2.4)"), "2");
    CHECK_STR(run("round(7)"), "7");
    CHECK_STR(type_of("round(user_id)"), "int64");
    CHECK_STR(run("floor(user_id) + ceil(owner_id)"), "3");
    CHECK_STR(run("abs('x')"), "compile@5: abs(): the argument must be int64 or double, got "
                               "string (convert with int() or double())");
    CHECK_STR(run("round(null)"), "compile@7: round(): the argument must be int64 or double, "
                                  "got null (a bare null has no type)");
}

TEST(conditional_functions)
{
    setup();
    CHECK_STR(run("if(b, 'yes', 'no')"), "'yes'");
    CHECK_STR(run("if(!b, 'yes', 'no')"), "'no'");
    CHECK_STR(run("if(b, 1, 2.5)"), "1");
    CHECK_STR(type_of("if(b, 1, 2.5)"), "double");
    CHECK_STR(run("if(b, null, 1)"), "null");
    CHECK_STR(type_of("if(b, null, 1)"), "int64");
    CHECK_STR(run("if(b, dt, '2024-01-01')"), "date:2024-03-31");
    CHECK_STR(run("if(!b, dt, '2024-01-01')"), "date:2024-01-01");
    /* the untaken branch is not evaluated */
    set_int(F_OWNER_ID, 0);
    CHECK_STR(run("if(owner_id == 0, 0, user_id / owner_id)"), "0");
    CHECK_STR(run("coalesce(null, null, 3)"), "3");
    CHECK_STR(run("coalesce(user_id, user_id / owner_id)"), "1");
    CHECK_STR(run("coalesce(user_id, 2.5)"), "1");
    CHECK_STR(type_of("coalesce(user_id, 2.5)"), "double");
    CHECK_STR(run("if(1, 2, 3)"), "compile@4: if(): argument 1 must be bool, got int64 (compare "
                                  "it, as in x != 0)");
    CHECK_STR(run("if(b, 'x', 1)"), "compile@12: if(): argument 3 is int64 but an earlier one "
                                    "is string: the values must have one type (convert with "
                                    "string(), int() or double())");
    CHECK_STR(run("coalesce(name, user_id)"),
              "compile@16: coalesce(): argument 2 is int64 but an earlier one is string: the "
              "values must have one type (convert with string(), int() or double())");
    CHECK_STR(run("coalesce(null, null)"),
              "compile@1: coalesce(): every value is null, so the result has no type");
    CHECK_STR(run("is_null(null)"), "true");
}

TEST(time_functions_utc)
{
    setup();
    /* 1711846800000 ms = 2024-03-31T01:00:00Z (Python datetime) */
    CHECK_STR(run("timestamp_ms(1711846800000)"), "ts:1711846800000000");
    CHECK_STR(run("timestamp_s(1711846800)"), "ts:1711846800000000");
    CHECK_STR(run("timestamp_s(-62135596800)"), "ts:-62135596800000000"); /* 0001-01-01 */
    CHECK_STR(run("epoch_ms(ts)"), "1711848600000");
    CHECK_STR(run("epoch_ms(timestamp_ms(-1))"), "-1");
    CHECK_STR(run("epoch_ms(ts - 1)"), "compile@13: cannot apply '-' to timestamp and int64: "
                                       "convert with epoch_ms() and back with timestamp_ms()");
    set_int(F_USER_ID, INT64_C(253402300800)); /* 10000-01-01T00:00:00Z */
    CHECK_STR(run("timestamp_s(user_id)"),
              "error: 253402300800 s is outside the timestamp range 0001-01-01..9999-12-31 in "
              "\"timestamp_s(user_id)\"");
    set_int(F_USER_ID, INT64_MAX);
    CHECK_STR(run("timestamp_ms(user_id)"),
              "error: 9223372036854775807 ms is outside the timestamp range "
              "0001-01-01..9999-12-31 in \"timestamp_ms(user_id)\"");
    CHECK_STR(run("timestamp_s(-62135596801)"),
              "compile@1: -62135596801 s is outside the timestamp range 0001-01-01..9999-12-31 "
              "in \"timestamp_s(-62135596801)\"");
    setup();
    CHECK_STR(run("date(ts)"), "date:2024-03-31");
    CHECK_STR(run("date(ts) == '2024-03-31'"), "true");
    CHECK_STR(run("date(ts) == dt"), "true");
    CHECK_STR(run("hour(ts)"), "1");
    CHECK_STR(run("day_of_week(ts)"), "7");                      /* a Sunday */
    CHECK_STR(run("day_of_week(timestamp_s(0))"), "4");          /* 1970-01-01, a Thursday */
    CHECK_STR(run("day_of_week(timestamp_s(-86400 * 3))"), "1"); /* 1969-12-29, a Monday */
    CHECK_STR(run("hour(timestamp_ms(-1))"), "23");
    CHECK_STR(run("date(timestamp_ms(-1))"), "date:1969-12-31");
    CHECK_STR(run("date_trunc('hour', ts)"), "ts:1711846800000000");
    CHECK_STR(run("date_trunc('day', ts)"), "ts:1711843200000000");
    CHECK_STR(run("date_trunc('MINUTE', timestamp_ms(1711848659999))"), "ts:1711848600000000");
    CHECK_STR(run("date_trunc('week', ts)"),
              "compile@12: date_trunc(): the unit must be 'minute', 'hour' or 'day'");
    CHECK_STR(run("date_trunc(s2, ts)"),
              "compile@12: date_trunc(): the unit must be 'minute', 'hour' or 'day'");
    CHECK_STR(run("date(epoch_ms(ts))"), "compile@6: date(): argument 1 must be timestamp, got "
                                         "int64 (convert with timestamp_ms() or timestamp_s())");
    /* 0001-01-01T00:00:00Z in -08:00 is still in year 0: out of range */
    set_int(F_TS, SL_TIMESTAMP_MIN_US);
    CHECK_STR(run("date(ts, '-08:00')"),
              "error: the local date is outside 0001-01-01..9999-12-31 in \"date(ts, '-08:00')\"");
    CHECK_STR(run("date_trunc('day', ts, '-08:00')"),
              "error: the result is outside 0001-01-01..9999-12-31 in \"date_trunc('day', ts, "
              "'-08:00')\"");
    CHECK_STR(run("date(ts)"), "date:0001-01-01");
    set_int(F_TS, SL_TIMESTAMP_MAX_US);
    CHECK_STR(run("hour(ts, '+14:00')"), "13");
    CHECK_STR(run("date(ts, '+01:00')"),
              "error: the local date is outside 0001-01-01..9999-12-31 in \"date(ts, '+01:00')\"");
}

/* Europe/Paris around the 2024 switches: 2024-03-31 01:00Z (02:00 CET ->
 * 03:00 CEST) and 2024-10-27 01:00Z (03:00 CEST -> 02:00 CET). Expected
 * instants computed with Python's zoneinfo, e.g.
 * datetime(2024,10,27,2,30,fold=1,tzinfo=ZoneInfo("Europe/Paris")).timestamp(). */
TEST(time_zones)
{
    setup();
    static const struct {
        int64_t ts; /* UTC, microseconds */
        const char *date, *hour, *dow, *day, *hour_trunc;
    } cases[] = {
        /* 2024-03-31T00:59:59Z = 01:59:59 CET */
        {INT64_C(1711846799000000), "date:2024-03-31", "1", "7", "ts:1711839600000000",
         "ts:1711843200000000"},
        /* 2024-03-31T01:00:00Z = 03:00 CEST */
        {INT64_C(1711846800000000), "date:2024-03-31", "3", "7", "ts:1711839600000000",
         "ts:1711846800000000"},
        /* 2024-03-30T23:30:00Z = 00:30 CET on the 31st */
        {INT64_C(1711841400000000), "date:2024-03-31", "0", "7", "ts:1711839600000000",
         "ts:1711839600000000"},
        /* 2024-03-31T12:00:00Z = 14:00 CEST */
        {INT64_C(1711886400000000), "date:2024-03-31", "14", "7", "ts:1711839600000000",
         "ts:1711886400000000"},
        /* 2024-10-27T00:30:00Z = 02:30 CEST, the first 02:30 */
        {INT64_C(1729989000000000), "date:2024-10-27", "2", "7", "ts:1729980000000000",
         "ts:1729987200000000"},
        /* 2024-10-27T01:30:00Z = 02:30 CET, the second 02:30 */
        {INT64_C(1729992600000000), "date:2024-10-27", "2", "7", "ts:1729980000000000",
         "ts:1729990800000000"},
        /* 2024-10-27T12:00:00Z = 13:00 CET; the day began at 00:00 CEST */
        {INT64_C(1730030400000000), "date:2024-10-27", "13", "7", "ts:1729980000000000",
         "ts:1730030400000000"},
        /* 2024-10-27T23:30:00Z = 00:30 CET on Monday the 28th */
        {INT64_C(1730071800000000), "date:2024-10-28", "0", "1", "ts:1730070000000000",
         "ts:1730070000000000"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        set_int(F_TS, cases[i].ts);
        CHECK_STR(run("date(ts, 'Europe/Paris')"), cases[i].date);
        CHECK_STR(run("hour(ts, 'Europe/Paris')"), cases[i].hour);
        CHECK_STR(run("day_of_week(ts, 'Europe/Paris')"), cases[i].dow);
        CHECK_STR(run("date_trunc('day', ts, 'Europe/Paris')"), cases[i].day);
        CHECK_STR(run("date_trunc('hour', ts, 'Europe/Paris')"), cases[i].hour_trunc);
        CHECK_STR(run("date_trunc('minute', ts, 'Europe/Paris') == date_trunc('minute', ts)"),
                  "true");
    }
    /* America/Sao_Paulo skipped 2018-11-04 00:00-01:00: that day began at
     * 01:00 -02:00 = 03:00Z (1541300400 s; Python zoneinfo, scanning the
     * day's minutes for the first with that local date). */
    set_int(F_TS, INT64_C(1541332800000000)); /* 2018-11-04T12:00:00Z */
    CHECK_STR(run("date_trunc('day', ts, 'America/Sao_Paulo')"), "ts:1541300400000000");
    CHECK_STR(run("date(ts, 'America/Sao_Paulo')"), "date:2018-11-04");
    /* fixed offsets and UTC */
    set_int(F_TS, TS_2024_03_31_0130Z);
    CHECK_STR(run("hour(ts, '+05:30')"), "7");
    CHECK_STR(run("date_trunc('hour', ts, '+05:30')"), "ts:1711848600000000"); /* 07:00+05:30 */
    CHECK_STR(run("hour(ts, 'UTC')"), "1");
    /* the same zone twice in one expression is loaded once */
    CHECK_STR(run("hour(ts, 'Europe/Paris') + hour(ts, 'Europe/Paris')"), "6");
    /* a constant instant is converted at compile time */
    CHECK_STR(run("date(timestamp_s(1711846800), 'Europe/Paris')"), "date:2024-03-31");

    CHECK_CONTAINS(run("date(ts, 'Europe/Pariss')"),
                   "compile@10: unknown time zone 'Europe/Pariss'");
    CHECK_CONTAINS(run("hour(ts, '../etc/passwd')"), "compile@10: time zone '../etc/passwd'");
    CHECK_STR(run("hour(ts, s2)"), "compile@10: hour(): the time zone must be a string literal "
                                   "such as 'Europe/Paris' or '+02:00'");
    CHECK_CONTAINS(run("date_trunc('day', ts, '')"), "compile@23: unknown time zone ''");
}

/* Expected digests computed independently over the argument bytes joined
 * with 0x1f: printf 'a\x1fb' | sha1sum, xxhsum -H3 (xxHash 0.8.1), and
 * Python hashlib.sha1. XXH3 of "" is the published test vector. */
TEST(hashes)
{
    setup();
    CHECK_STR(run("sha1('abc')"), "'a9993e364706816aba3e25717850c26c9cd0d89d'");
    CHECK_STR(run("sha1('')"), "'da39a3ee5e6b4b0d3255bfef95601890afd80709'");
    CHECK_STR(run("sha1('a', 'b')"), "'687d61996b1c1278c973743efe7ee8e2fc8fb1d0'");
    CHECK_STR(run("sha1('hello', 42, true)"), "'d13dac8e85474403a3bacd542af3fc60a49a6ee8'");
    CHECK_STR(run("xxh3('')"), "'2d06800538d394c2'");
    CHECK_STR(run("xxh3('abc')"), "'78af5f94892f3950'");
    CHECK_STR(run("xxh3('a', 'b')"), "'d671f8867f47bbb9'");
    CHECK_STR(run("xxh3('hello', 42, true)"), "'4486ea64ad5b8081'");
    /* through fields, so it runs per record rather than at compile time */
    set_str(F_S2, "hello");
    set_int(F_USER_ID, 42);
    CHECK_STR(run("sha1(s2, user_id, b)"), "'d13dac8e85474403a3bacd542af3fc60a49a6ee8'");
    CHECK_STR(run("xxh3(s2, user_id, b)"), "'4486ea64ad5b8081'");
    /* long input (outgrows the stack buffer): same as the concatenation */
    static char big[3001];
    memset(big, 'x', 3000);
    set_str(F_S2, big);
    char want[64];
    snprintf(want, sizeof(want), "%s", run("xxh3(concat(s2, '\\u001f', s2))"));
    CHECK_STR(run("xxh3(s2, s2)"), want);
    snprintf(want, sizeof(want), "%s", run("sha1(concat(s2, '\\u001f', s2))"));
    CHECK_STR(run("sha1(s2, s2)"), want);
}

TEST(unknown_names)
{
    setup();
    CHECK_STR(run("usr_id != owner_id"),
              "compile@1: unknown field 'usr_id' (did you mean user_id?); known fields: "
              "user_id, owner_id, ad_id, name, i32, d, b, dt, ts, s2");
    CHECK_STR(run("User_Id == 1"),
              "compile@1: unknown field 'User_Id' (did you mean user_id?); known fields: "
              "user_id, owner_id, ad_id, name, i32, d, b, dt, ts, s2");
    CHECK_STR(run("x + zzzzzz"), "compile@1: unknown field 'x' (did you mean d?); known fields: "
                                 "user_id, owner_id, ad_id, name, i32, d, b, dt, ts, s2");
    CHECK_STR(run("1 + qqqqqq"), "compile@5: unknown field 'qqqqqq'; known fields: user_id, "
                                 "owner_id, ad_id, name, i32, d, b, dt, ts, s2");
    CHECK_STR(run("lowr(name)"), "compile@1: unknown function 'lowr' (did you mean lower?)");
    CHECK_STR(run("frobnicate(name)"),
              "compile@1: unknown function 'frobnicate' (see docs/EXPRESSIONS.md for the list)");
    CHECK_STR(run("LOWER(s2)"), "'abc'"); /* function names ignore case */
    CHECK_STR(run("lower"), "compile@1: unknown field 'lower'; known "
                            "fields: user_id, owner_id, ad_id, name, i32, d, b, dt, ts, s2");
}

TEST(visibility)
{
    setup();
    /* hidden fields are neither found nor listed */
    CHECK_STR(run("gone"), "compile@1: unknown field 'gone'; known fields: "
                           "user_id, owner_id, ad_id, name, i32, d, b, dt, ts, s2");
    CHECK_STR(run("late == ''"), "compile@1: field 'late' is defined after this expression and "
                                 "is not visible here: only fields defined before it can be "
                                 "used");
    CHECK_STR(run_n("late", F_COUNT), "'late'");
    CHECK_STR(run_n("user_id + owner_id", 2), "3");
    CHECK_STR(run_n("ad_id", 2), "compile@1: field 'ad_id' is defined after this expression and "
                                 "is not visible here: only fields defined before it can be "
                                 "used");
    CHECK_STR(run_n("usr", 0), "compile@1: unknown field 'usr'; no fields are visible here");
    CHECK_STR(run_n("42", 0), "42");
}

TEST(function_errors)
{
    setup();
    CHECK_STR(run("lower(name, 1)"), "compile@1: lower() takes 1 argument, got 2");
    CHECK_STR(run("lower()"), "compile@1: lower() takes 1 argument, got 0");
    CHECK_STR(run("substr('a')"), "compile@1: substr() takes 2 or 3 arguments, got 1");
    CHECK_STR(run("concat()"), "compile@1: concat() takes at least 1 argument, got 0");
    CHECK_STR(run("if(b, 1)"), "compile@1: if() takes 3 arguments, got 2");
    CHECK_STR(run("lower(user_id)"), "compile@7: lower(): argument 1 must be string, got int64 "
                                     "(convert with string())");
    CHECK_STR(run("substr(s2, '1')"), "compile@12: substr(): argument 2 must be int64, got "
                                      "string (convert with int())");
    CHECK_STR(run("starts_with(s2, 1)"), "compile@17: starts_with(): argument 2 must be string, "
                                         "got int64 (convert with string())");
    CHECK_STR(run("lower(s2,)"), "compile@10: expected an argument after ',' in lower(...)");
    CHECK_STR(run("lower(s2 s2)"), "compile@10: expected ',' or ')' to close the '(' of lower at "
                                   "column 6, found 's2'");
    CHECK_STR(run("lower(s2"), "compile@9: expected ',' or ')' to close the '(' of lower at "
                               "column 6, found the end of the expression");
}

TEST(syntax_errors)
{
    setup();
    CHECK_STR(run(""), "compile@1: the expression is empty");
    CHECK_STR(run("   "), "compile@4: the expression is empty");
    CHECK_STR(run("user_id == (owner_id + 1"),
              "compile@25: expected ')' to close the '(' at column 12, found the end of the "
              "expression");
    CHECK_STR(run("(user_id == 1))"), "compile@15: unmatched ')': remove it or add a '(' before "
                                      "it");
    CHECK_STR(run("((1)"), "compile@5: expected ')' to close the '(' at column 1, found the end "
                           "of the expression");
    CHECK_STR(run("user_id ==  && b"), "compile@13: expected a value, a field or '(' after "
                                       "'==', found '&&'");
    CHECK_STR(run("user_id +"), "compile@10: expected a value after '+', but the expression ends");
    CHECK_STR(run("b &&"), "compile@5: expected a value after '&&', but the expression ends");
    CHECK_STR(run("* 2"), "compile@1: expected a value, a field or '(' at the start, found '*'");
    CHECK_STR(run("user_id owner_id"), "compile@9: unexpected 'owner_id' after a complete "
                                       "expression: is an operator missing?");
    CHECK_STR(run("()"), "compile@2: expected a value, a field or '(' after '(', found ')'");
    CHECK_STR(run("user_id = 1"), "compile@9: unexpected '=': compare with == (a single = is not "
                                  "an operator)");
    CHECK_STR(run("b & b"), "compile@3: unexpected '&': write && (or and) for a logical and");
    CHECK_STR(run("b | b"), "compile@3: unexpected '|': write || (or or) for a logical or");
    CHECK_STR(run("user_id # 2"), "compile@9: unexpected character '#'");
    CHECK_STR(run("user_id \xc3\xa9"), "compile@9: unexpected byte 0xc3 (identifiers are ASCII; "
                                       "quote text as 'text')");
    CHECK_STR(run("b && 1"), "compile@6: '&&' needs a bool, got int64: compare it, as in x != 0 "
                             "or s != ''");
    CHECK_STR(run("name or b"), "compile@1: 'or' needs a bool, got string: compare it, as in x "
                                "!= 0 or s != ''");
    CHECK_STR(run("!user_id"), "compile@2: '!' needs a bool, got int64: compare it, as in x != 0 "
                               "or s != ''");
    CHECK_STR(run("b not b"), "compile@3: unexpected 'not' after a complete expression: is an "
                              "operator missing?");
    CHECK_STR(run("null"), "compile@1: the expression is a bare null, which has no type");
    /* a NUL byte inside the text is just an unexpected byte */
    sl_expr_error_t err;
    CHECK(sl_expr_compile("1 +\0 2", 6, &sch, VISIBLE, &err) == NULL);
    CHECK_INT(err.col, 4);
    CHECK_CONTAINS(err.msg, "unexpected byte 0x00");
}

TEST(limits)
{
    setup();
    char *text = malloc(70000);
    /* 64 nested parentheses are fine, 65 are not */
    size_t n = 0;
    for (int i = 0; i < 64; i++) {
        text[n++] = '(';
    }
    text[n++] = '1';
    for (int i = 0; i < 64; i++) {
        text[n++] = ')';
    }
    text[n] = '\0';
    CHECK_STR(run(text), "1");
    memmove(text + 1, text, n + 1);
    text[0] = '(';
    strcat(text, ")");
    CHECK_STR(run(text), "compile@65: more than 64 nested parentheses, calls or prefix operators");
    /* prefix operators count too */
    memset(text, '-', 100);
    strcpy(text + 100, "user_id");
    CHECK_STR(run(text), "compile@65: more than 64 nested parentheses, calls or prefix operators");
    memset(text, '!', 100);
    strcpy(text + 100, "b");
    CHECK_STR(run(text), "compile@65: more than 64 nested parentheses, calls or prefix operators");
    /* a long chain of || builds a deep tree: 255 levels are fine, more are not */
    n = 0;
    n += (size_t)sprintf(text + n, "user_id == 0");
    for (int i = 1; i < 255; i++) {
        n += (size_t)sprintf(text + n, " || user_id == %d", i);
    }
    CHECK_STR(run(text), "true");
    n += (size_t)sprintf(text + n, " || user_id == 255");
    CHECK_STR(run(text), "compile@1: the expression nests more than 256 levels deep: split it, "
                         "or use in (...) instead of a long chain of ||");
    /* constants fold, so a long constant chain is one node */
    n = 0;
    for (int i = 0; i < 5000; i++) {
        n += (size_t)sprintf(text + n, "1 + ");
    }
    sprintf(text + n, "user_id");
    CHECK_STR(run(text), "5001");
    /* the length limit */
    memset(text, ' ', 65537);
    text[0] = '1';
    text[65537] = '\0';
    CHECK_STR(run(text), "compile@1: the expression is 65537 bytes long; the limit is 65536");
    text[65536] = '\0';
    CHECK_STR(run(text), "1");
    free(text);
}

TEST(compile_is_independent_of_the_text)
{
    /* the expression copies what it needs: reasons quote the text after the
     * caller's buffer is gone (run() frees it before evaluating) */
    setup();
    set_int(F_OWNER_ID, 0);
    CHECK_STR(run("  user_id % owner_id  "), "error: division by zero in \"user_id % owner_id\"");
    /* the reason quotes long text cut with "..." */
    const char *r = run("user_id / owner_id + 0 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + "
                        "12 + 13 + 14 + 15 + 16 + 17 + 18 + 19 + 20 + 21 + 22 + 23 + 24 + 25)");
    CHECK_STR(r, "error: division by zero in \"user_id / owner_id\"");
}

/* Several threads evaluate one compiled expression at once (as lanes do),
 * each with its own arena and records; sha1() keeps a digest context per
 * thread, freed when the thread exits (ASan's leak check sees it). */
typedef struct {
    const sl_expr_t *e;
    int failures;
} thread_arg_t;

static void *eval_thread(void *p)
{
    thread_arg_t *a = p;
    sl_arena_t ar;
    sl_value_t r[F_COUNT];
    char buf[32];
    sl_arena_init(&ar, 0);
    memcpy(r, rec, sizeof(r));
    for (int i = 0; i < 2000; i++) {
        sl_value_t v;
        sl_reason_t why;
        int n = snprintf(buf, sizeof(buf), "%d", i % 7);
        r[F_S2].u.s.ptr = buf;
        r[F_S2].u.s.len = (size_t)n;
        /* sha1(s2) == sha1(concat(s2)) is true for every s2 */
        if (sl_expr_eval(a->e, r, &ar, &v, &why) != 0 || v.is_null || !v.u.b) {
            a->failures++;
        }
        sl_arena_reset(&ar);
    }
    sl_arena_free(&ar);
    return NULL;
}

TEST(threads_share_an_expression)
{
    setup();
    const char *text = "sha1(s2) == sha1(concat(s2)) && xxh3(s2) == xxh3(concat(s2))";
    sl_expr_error_t err;
    sl_expr_t *e = sl_expr_compile(text, strlen(text), &sch, VISIBLE, &err);
    CHECK(e != NULL);
    pthread_t th[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i].e = e;
        args[i].failures = 0;
        CHECK_INT(pthread_create(&th[i], NULL, eval_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(args[i].failures, 0);
    }
    sl_expr_destroy(e);
}

TEST(cleanup)
{
    sl_arena_free(&arena);
    sl_schema_free(&sch);
    memset(&sch, 0, sizeof(sch));
}

TEST_MAIN(T(literals), T(bad_literals), T(quoted_field_names), T(precedence), T(int_arithmetic),
          T(double_arithmetic), T(comparisons), T(comparison_errors), T(null_truth_tables),
          T(null_semantics), T(ad_stats_filter), T(in_lists), T(string_functions),
          T(conversion_functions), T(math_functions), T(conditional_functions),
          T(time_functions_utc), T(time_zones), T(hashes), T(unknown_names), T(visibility),
          T(function_errors), T(syntax_errors), T(limits), T(compile_is_independent_of_the_text),
          T(threads_share_an_expression), T(cleanup))
