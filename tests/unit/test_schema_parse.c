#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/schema.h"
#include "test.h"

/* Loads text (the whole document is the schema map, unless key is given)
 * and parses it. The document stays loaded until doc_out is freed. */
static int parse(const char *text, const char *key, sl_schema_t *s, sl_errors_t *errs)
{
    sl_errors_t lerrs = {0};
    sl_doc_t *doc = sl_doc_load_string("s.yaml", text, strlen(text), &lerrs);
    CHECK(doc != NULL);
    CHECK_INT(lerrs.n, 0);
    sl_errors_print(&lerrs);
    sl_errors_free(&lerrs);
    const sl_node_t *root = sl_doc_root(doc);
    const sl_node_t *map = key ? sl_node_get(root, key) : root;
    memset(s, 0, sizeof(*s));
    s->unknown = SL_UNKNOWN_REJECT; /* set by the caller; parse must keep it */
    int rc = sl_schema_parse(map, "s.yaml", s, errs);
    CHECK_INT(s->unknown, SL_UNKNOWN_REJECT);
    sl_doc_free(doc); /* the schema must not point into the document */
    return rc;
}

/* Parses text expecting exactly one error equal to msg. */
static void expect_schema_error(const char *text, const char *msg, int line_of_check)
{
    sl_schema_t s;
    sl_errors_t errs = {0};
    int rc = parse(text, NULL, &s, &errs);
    if (errs.n != 1) {
        fprintf(stderr, "(case at line %d: %zu errors)\n", line_of_check, errs.n);
        sl_errors_print(&errs);
    }
    CHECK_INT(rc, -1);
    CHECK_INT(errs.n, 1);
    if (errs.n >= 1) {
        CHECK_STR(errs.msgs[0], msg);
    }
    sl_schema_free(&s);
    sl_errors_free(&errs);
}

#define EXPECT_SCHEMA_ERROR(text, msg) expect_schema_error(text, msg, __LINE__)

static const sl_field_t *field(const sl_schema_t *s, const char *name)
{
    int i = sl_schema_find(s, name, strlen(name));
    CHECK(i >= 0);
    return i >= 0 ? &s->fields[i] : NULL;
}

TEST(site_stats_schema)
{
    const char *text = "source: {kafka: {}}\n"
                       "schema:\n"
                       "  date:    {type: date, required: true}             # YYYY-MM-DD\n"
                       "  site_id: {type: int32, required: true, min: 0}\n"
                       "  views:   {type: int64, required: true, min: 0}\n"
                       "  clicks:  {type: int64, required: true, min: 0}\n"
                       "sink: {stdout: {format: json}}\n";
    sl_schema_t s;
    sl_errors_t errs = {0};
    CHECK_INT(parse(text, "schema", &s, &errs), 0);
    CHECK_INT(errs.n, 0);
    sl_errors_print(&errs);
    CHECK_INT(s.n_fields, 4);
    CHECK(s.slots != NULL); /* sl_schema_finish ran */
    CHECK_INT(sl_schema_find(&s, "views", 5), 2);
    CHECK_INT(sl_schema_find(&s, "nope", 4), -1);

    const sl_field_t *f = field(&s, "date");
    if (f != NULL) {
        CHECK_STR(f->name, "date");
        CHECK_INT(f->name_len, 4);
        CHECK_INT(f->type, SL_TYPE_DATE);
        CHECK(f->required);
        CHECK(!f->has_default && !f->has_min && !f->has_max && !f->has_regex);
        CHECK_INT(f->line, 3);
    }
    f = field(&s, "site_id");
    if (f != NULL) {
        CHECK_INT(f->type, SL_TYPE_INT32);
        CHECK(f->has_min);
        CHECK_INT(f->min_i, 0);
        CHECK(!f->has_max);
        CHECK_INT(f->line, 4);
    }
    f = field(&s, "clicks");
    if (f != NULL) {
        CHECK_INT(f->type, SL_TYPE_INT64);
        CHECK(f->required);
        CHECK_INT(f->line, 6);
    }
    sl_schema_free(&s);
    sl_errors_free(&errs);
}

TEST(every_option_parsed)
{
    const char *text = "name:    {type: string, max_length: 16, regex: '^[a-z]+$', default: abc}\n"
                       "color:   {type: string, enum: [red, green], default: green}\n"
                       "note:    {type: string, default: 'null'}\n"
                       "maybe:   {type: string, default: null, required: false}\n"
                       "ratio:   {type: double, min: -1.5, max: 2e3, default: 0.25}\n"
                       "count:   {type: int64, min: -5, max: 9000000000, default: 7}\n"
                       "small:   {type: int32, min: -2147483648, max: 2147483647}\n"
                       "flag:    {type: bool, default: yes}\n"
                       "day:     {type: date, default: 2024-01-31}\n"
                       "at:      {type: timestamp, default: '2024-01-31T12:00:00Z'}\n"
                       "at2:     {type: timestamp, default: '2024-01-31T12:00:00+01:30'}\n";
    sl_schema_t s;
    sl_errors_t errs = {0};
    CHECK_INT(parse(text, NULL, &s, &errs), 0);
    CHECK_INT(errs.n, 0);
    sl_errors_print(&errs);
    CHECK_INT(s.n_fields, 11);
    if (s.n_fields != 11) {
        sl_schema_free(&s);
        sl_errors_free(&errs);
        return;
    }
    const sl_field_t *f = field(&s, "name");
    CHECK_INT(f->max_length, 16);
    CHECK(f->has_regex);
    CHECK_STR(f->regex_src, "^[a-z]+$");
    CHECK_INT(regexec(&f->regex, "hello", 0, NULL, 0), 0);
    CHECK(regexec(&f->regex, "Hello", 0, NULL, 0) != 0);
    CHECK(f->has_default && !f->def.is_null);
    CHECK_INT(f->def.u.s.len, 3);
    CHECK(memcmp(f->def.u.s.ptr, "abc", 3) == 0);
    CHECK(!f->required);

    f = field(&s, "color");
    CHECK_INT(f->n_enum, 2);
    CHECK_STR(f->enum_values[0], "red");
    CHECK_STR(f->enum_values[1], "green");
    CHECK(f->has_default);

    f = field(&s, "note"); /* quoted: the string "null" */
    CHECK(f->has_default);
    CHECK_INT(f->def.u.s.len, 4);
    f = field(&s, "maybe"); /* plain null: no default */
    CHECK(!f->has_default);

    f = field(&s, "ratio");
    CHECK(f->has_min && f->has_max);
    CHECK(f->min_d == -1.5 && f->max_d == 2000.0);
    CHECK(f->has_default && f->def.u.d == 0.25);

    f = field(&s, "count");
    CHECK_INT(f->min_i, -5);
    CHECK(f->max_i == INT64_C(9000000000));
    CHECK_INT(f->def.u.i, 7);
    f = field(&s, "small");
    CHECK_INT(f->min_i, INT32_MIN);
    CHECK_INT(f->max_i, INT32_MAX);
    CHECK(!f->has_default);

    f = field(&s, "flag");
    CHECK(f->has_default && f->def.u.b);
    f = field(&s, "day");
    CHECK(f->has_default);
    CHECK_INT(f->def.u.i, 19753);
    f = field(&s, "at");
    CHECK(f->def.u.i == INT64_C(1706702400000000));
    f = field(&s, "at2");
    CHECK(f->def.u.i == INT64_C(1706697000000000));
    sl_schema_free(&s);
    sl_schema_free(&s); /* twice is fine */
    sl_schema_free(NULL);
    sl_errors_free(&errs);
}

TEST(empty_schema_is_an_error)
{
    sl_schema_t s;
    sl_errors_t errs = {0};
    CHECK_INT(parse("a: 1\nschema: {}\n", "schema", &s, &errs), -1);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_STR(errs.msgs[0], "s.yaml:2:9: schema: declare at least one field (e.g. schema: "
                                "{id: {type: int64, required: true}})");
    }
    CHECK_INT(s.n_fields, 0);
    sl_schema_free(&s);
    sl_errors_free(&errs);

    CHECK_INT(parse("a: 1\nschema:\n", "schema", &s, &errs), -1);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_CONTAINS(errs.msgs[0], "s.yaml:2:8: schema: declare at least one field");
    }
    sl_schema_free(&s);
    sl_errors_free(&errs);

    CHECK_INT(parse("a: 1\n", "schema", &s, &errs), -1); /* NULL map */
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_CONTAINS(errs.msgs[0], "s.yaml: schema: declare at least one field");
    }
    sl_schema_free(&s);
    sl_errors_free(&errs);

    EXPECT_SCHEMA_ERROR(
        "[a, b]\n", "s.yaml:1:1: schema must be a map of field name -> {type: ...}, got a list");
}

TEST(type_errors)
{
    EXPECT_SCHEMA_ERROR("ok: {type: string}\n"
                        "a: {type: int}\n",
                        "s.yaml:2:11: field 'a': unknown type 'int' (one of: string, int32, "
                        "int64, double, bool, date, timestamp)");
    EXPECT_SCHEMA_ERROR("a: {required: true}\n", "s.yaml:1:4: field 'a': missing 'type' (one of: "
                                                 "string, int32, int64, double, bool, date, "
                                                 "timestamp)");
    EXPECT_SCHEMA_ERROR("a: {type: [int32]}\n",
                        "s.yaml:1:11: field 'a': option 'type' must be a scalar, got a list");
    EXPECT_SCHEMA_ERROR("a: int32\n", "s.yaml:1:4: field 'a' in schema must be a map like {type: "
                                      "int64, required: true}, got a scalar");
    EXPECT_SCHEMA_ERROR("a:\n"
                        "  type: string\n"
                        "  maxlen: 3\n",
                        "s.yaml:3:3: field 'a': unknown option 'maxlen' (known: type, required, "
                        "default, min, max, max_length, regex, enum)");
    EXPECT_SCHEMA_ERROR("a: {type: bool, required: sometimes}\n",
                        "s.yaml:1:27: field 'a': required must be true or false, got 'sometimes'");
    EXPECT_SCHEMA_ERROR("'': {type: bool}\n", "s.yaml:1:1: schema: field names must not be empty");
}

TEST(options_that_do_not_apply)
{
    EXPECT_SCHEMA_ERROR("x: {type: string}\n"
                        "n: {type: int32, regex: '^[0-9]+$'}\n",
                        "s.yaml:2:25: field 'n': option 'regex' does not apply to type int32 "
                        "(only to string)");
    EXPECT_SCHEMA_ERROR("s: {type: string, min: 1}\n", "s.yaml:1:24: field 's': option 'min' does "
                                                       "not apply to type string (only to int32, "
                                                       "int64, double)");
    EXPECT_SCHEMA_ERROR("d: {type: date, max: 5}\n", "s.yaml:1:22: field 'd': option 'max' does "
                                                     "not apply to type date (only to int32, "
                                                     "int64, double)");
    EXPECT_SCHEMA_ERROR("b: {type: bool, enum: [a]}\n", "s.yaml:1:23: field 'b': option 'enum' "
                                                        "does not apply to type bool (only to "
                                                        "string)");
    EXPECT_SCHEMA_ERROR("d: {type: double, max_length: 3}\n",
                        "s.yaml:1:31: field 'd': option 'max_length' does not apply to type "
                        "double (only to string)");
}

TEST(bound_errors)
{
    EXPECT_SCHEMA_ERROR("a: {type: int64, min: 10, max: 5}\n",
                        "s.yaml:1:32: field 'a': min 10 is greater than max 5");
    EXPECT_SCHEMA_ERROR("a: {type: double, min: 1.5, max: -1}\n",
                        "s.yaml:1:34: field 'a': min 1.5 is greater than max -1");
    EXPECT_SCHEMA_ERROR("a: {type: int32, max: 3000000000}\n",
                        "s.yaml:1:23: field 'a': max 3000000000 is outside the int32 range "
                        "(-2147483648..2147483647)");
    EXPECT_SCHEMA_ERROR("a: {type: int32, min: -2147483649}\n",
                        "s.yaml:1:23: field 'a': min -2147483649 is outside the int32 range "
                        "(-2147483648..2147483647)");
    EXPECT_SCHEMA_ERROR("a: {type: int64, min: 99999999999999999999}\n",
                        "s.yaml:1:23: field 'a': min '99999999999999999999' is not a valid int64");
    EXPECT_SCHEMA_ERROR("a: {type: int64, min: 1.5}\n",
                        "s.yaml:1:23: field 'a': min '1.5' is not a valid int64");
    EXPECT_SCHEMA_ERROR("a: {type: double, max: lots}\n",
                        "s.yaml:1:24: field 'a': max 'lots' is not a valid number");
    EXPECT_SCHEMA_ERROR("a: {type: int64, max: [1]}\n",
                        "s.yaml:1:23: field 'a': option 'max' must be a scalar, got a list");
}

TEST(string_rule_errors)
{
    sl_schema_t s;
    sl_errors_t errs = {0};
    CHECK_INT(parse("a: {type: string, regex: 'a('}\n", NULL, &s, &errs), -1);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_CONTAINS(errs.msgs[0], "s.yaml:1:26: field 'a': invalid regex 'a(': ");
        CHECK(strlen(errs.msgs[0]) > strlen("s.yaml:1:26: field 'a': invalid regex 'a(': "));
    }
    CHECK(!s.fields[0].has_regex);
    sl_schema_free(&s);
    sl_errors_free(&errs);

    EXPECT_SCHEMA_ERROR("a: {type: string, enum: []}\n",
                        "s.yaml:1:25: field 'a': enum must list at least one value");
    EXPECT_SCHEMA_ERROR("a: {type: string, enum: red}\n",
                        "s.yaml:1:25: field 'a': enum must be a list of strings, got a scalar");
    EXPECT_SCHEMA_ERROR("a: {type: string, enum: [red, [x]]}\n",
                        "s.yaml:1:31: field 'a': enum values must be strings, got a list");
    EXPECT_SCHEMA_ERROR("a: {type: string, enum: [red, blue, red]}\n",
                        "s.yaml:1:37: field 'a': enum value 'red' is listed twice");
    EXPECT_SCHEMA_ERROR("a: {type: string, max_length: 0}\n",
                        "s.yaml:1:31: field 'a': max_length must be a positive integer, got '0'");
    EXPECT_SCHEMA_ERROR("a: {type: string, max_length: big}\n",
                        "s.yaml:1:31: field 'a': max_length must be a positive integer, got 'big'");
}

TEST(default_errors)
{
    EXPECT_SCHEMA_ERROR("a: {type: int32, default: abc}\n",
                        "s.yaml:1:27: field 'a': default 'abc' is not a valid int32");
    EXPECT_SCHEMA_ERROR("a: {type: int32, default: 2147483648}\n",
                        "s.yaml:1:27: field 'a': default 2147483648 is outside the int32 range "
                        "(-2147483648..2147483647)");
    EXPECT_SCHEMA_ERROR("a: {type: double, default: x}\n",
                        "s.yaml:1:28: field 'a': default 'x' is not a valid number");
    EXPECT_SCHEMA_ERROR("a: {type: bool, default: maybe}\n",
                        "s.yaml:1:26: field 'a': default 'maybe' is not a valid bool (use true "
                        "or false)");
    EXPECT_SCHEMA_ERROR("a: {type: date, default: 2023-02-29}\n",
                        "s.yaml:1:26: field 'a': default '2023-02-29' is not a valid date "
                        "(YYYY-MM-DD)");
    EXPECT_SCHEMA_ERROR("a: {type: timestamp, default: yesterday}\n",
                        "s.yaml:1:31: field 'a': default 'yesterday' is not a valid timestamp "
                        "(e.g. 2024-01-31T12:00:00Z)");
    EXPECT_SCHEMA_ERROR("a: {type: int64, min: 0, default: -1}\n",
                        "s.yaml:1:35: field 'a': default '-1' is below min 0");
    EXPECT_SCHEMA_ERROR("a: {type: double, max: 1, default: 1.5}\n",
                        "s.yaml:1:36: field 'a': default '1.5' is above max 1");
    EXPECT_SCHEMA_ERROR("a: {type: string, enum: [x, y], default: z}\n",
                        "s.yaml:1:42: field 'a': default 'z' is not one of the enum values (x, y)");
    EXPECT_SCHEMA_ERROR("a: {type: string, regex: '^[0-9]+$', default: z}\n",
                        "s.yaml:1:47: field 'a': default 'z' does not match the regex '^[0-9]+$'");
    EXPECT_SCHEMA_ERROR("a: {type: string, max_length: 2, default: xyz}\n",
                        "s.yaml:1:43: field 'a': default 'xyz' is longer than max_length 2");
    EXPECT_SCHEMA_ERROR("a: {type: int64, required: true, default: 1}\n",
                        "s.yaml:1:43: field 'a': a required field cannot have a default (drop "
                        "one of them)");
    EXPECT_SCHEMA_ERROR("a: {type: string, default: {x: 1}}\n",
                        "s.yaml:1:28: field 'a': option 'default' must be a scalar, got a map");
}

TEST(all_errors_collected_and_freeable)
{
    const char *text = "a: {type: int}\n"
                       "b: {type: string, regex: '(', enum: [x, x], default: q}\n"
                       "c: {type: int32, min: 5, max: 1, bogus: 1}\n"
                       "d: {type: string, enum: [p, q], max_length: 3, default: q}\n";
    sl_schema_t s;
    sl_errors_t errs = {0};
    CHECK_INT(parse(text, NULL, &s, &errs), -1);
    /* a: type; b: regex, dup enum, default not in enum; c: bogus, min>max */
    CHECK_INT(errs.n, 6);
    if (errs.n == 6) {
        CHECK_CONTAINS(errs.msgs[0], "s.yaml:1:");
        CHECK_CONTAINS(errs.msgs[1], "s.yaml:2:26: field 'b': invalid regex");
        CHECK_CONTAINS(errs.msgs[2], "s.yaml:2:41: field 'b': enum value 'x' is listed twice");
        CHECK_CONTAINS(errs.msgs[3], "s.yaml:2:54: field 'b': default 'q' is not one of the enum");
        CHECK_CONTAINS(errs.msgs[4], "s.yaml:3:34: field 'c': unknown option 'bogus'");
        CHECK_CONTAINS(errs.msgs[5], "s.yaml:3:31: field 'c': min 5 is greater than max 1");
    }
    CHECK_INT(s.n_fields, 4);
    CHECK(s.slots == NULL); /* not finished: the schema is unusable */
    sl_schema_free(&s);     /* but freeing it is safe (ASan checks for leaks) */
    sl_errors_free(&errs);
}

TEST_MAIN(T(site_stats_schema), T(every_option_parsed), T(empty_schema_is_an_error), T(type_errors),
          T(options_that_do_not_apply), T(bound_errors), T(string_rule_errors), T(default_errors),
          T(all_errors_collected_and_freeable))
