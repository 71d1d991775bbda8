/* transform and filter (src/stages/transform.c): config parsing into the
 * record schema, errors with file:line:col, and the per-record run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/schema.h"
#include "stages/stages.h"
#include "test.h"

typedef struct {
    sl_doc_t *doc;
    sl_schema_t input, record;
    sl_stages_t *st;
    sl_errors_t errs;
    int bad;
} fx_t;

static const char *SCHEMA = "schema:\n"
                            "  name: {type: string}\n"
                            "  price: {type: double}\n"
                            "  timestamp_ms: {type: int64}\n"
                            "  user_id: {type: int64}\n"
                            "  owner_id: {type: int64}\n"
                            "  ad_id: {type: int64}\n";

/* Loads SCHEMA + rest and parses schema, transform and filter. */
static void fx_load(fx_t *fx, const char *rest)
{
    memset(fx, 0, sizeof(*fx));
    char text[4096];
    snprintf(text, sizeof(text), "%s%s", SCHEMA, rest);
    sl_errors_t lerrs = {0};
    fx->doc = sl_doc_load_string("p.yaml", text, strlen(text), &lerrs);
    CHECK(fx->doc != NULL);
    sl_errors_print(&lerrs);
    sl_errors_free(&lerrs);
    const sl_node_t *root = sl_doc_root(fx->doc);
    CHECK_INT(sl_schema_parse(sl_node_get(root, "schema"), "p.yaml", &fx->input, &fx->errs), 0);
    fx->st = sl_stages_parse(sl_node_get(root, "transform"), sl_node_get(root, "filter"), "p.yaml",
                             &fx->input, &fx->record, &fx->errs, &fx->bad);
}

/* fx_load, expecting no error. */
static void fx_load_ok(fx_t *fx, const char *rest)
{
    fx_load(fx, rest);
    CHECK_INT(fx->errs.n, 0);
    sl_errors_print(&fx->errs);
}

static void fx_free(fx_t *fx)
{
    sl_stages_destroy(fx->st);
    sl_schema_free(&fx->record);
    sl_schema_free(&fx->input);
    sl_errors_free(&fx->errs);
    sl_doc_free(fx->doc);
}

static int field(const fx_t *fx, const char *name)
{
    return sl_schema_find(&fx->record, name, strlen(name));
}

static sl_value_t vs(const char *s)
{
    sl_value_t v = {.is_null = false};
    v.u.s = (sl_str_t){s, strlen(s)};
    return v;
}

static sl_value_t vi(int64_t i)
{
    sl_value_t v = {.is_null = false};
    v.u.i = i;
    return v;
}

static const sl_value_t VNULL = {.is_null = true};

/* One error expected, containing want, at line:col. */
static void expect_error(const char *rest, const char *want, int line, int col, int at)
{
    fx_t fx;
    fx_load(&fx, rest);
    if (fx.errs.n != 1) {
        fprintf(stderr, "(case at line %d: %zu errors)\n", at, fx.errs.n);
        sl_errors_print(&fx.errs);
    }
    CHECK_INT(fx.bad, -1);
    CHECK_INT(fx.errs.n, 1);
    if (fx.errs.n >= 1) {
        char pos[64];
        snprintf(pos, sizeof(pos), "p.yaml:%d:%d: ", line, col);
        CHECK_CONTAINS(fx.errs.msgs[0], pos);
        CHECK_CONTAINS(fx.errs.msgs[0], want);
        if (strstr(fx.errs.msgs[0], want) == NULL || strstr(fx.errs.msgs[0], pos) == NULL) {
            fprintf(stderr, "(case at line %d)\n", at);
        }
    }
    fx_free(&fx);
}

TEST(no_stages_keep_the_input_fields)
{
    fx_t fx;
    fx_load(&fx, "");
    CHECK(fx.st == NULL);
    CHECK_INT(fx.errs.n, 0);
    CHECK_INT(fx.record.n_fields, fx.input.n_fields);
    CHECK_INT(field(&fx, "price"), 1);
    sl_reason_t why;
    CHECK_INT(sl_stages_run(NULL, NULL, NULL, 0, &why), SL_STAGE_KEEP);
    fx_free(&fx);
}

TEST(rename_and_drop_change_names_not_indexes)
{
    fx_t fx;
    fx_load_ok(&fx, "transform:\n"
                    "  - rename: {name: item_name}\n"
                    "  - drop: [owner_id, ad_id]\n"
                    "  - drop: user_id\n");
    CHECK_INT(field(&fx, "name"), -1);
    CHECK_INT(field(&fx, "item_name"), 0);
    CHECK_INT(field(&fx, "owner_id"), -1);
    CHECK_INT(field(&fx, "user_id"), -1);
    CHECK_INT(fx.record.n_fields, 6);
    CHECK(fx.record.fields[4].hidden);
    fx_free(&fx);
}

TEST(lookup_exact_alternatives_globs_and_default)
{
    fx_t fx;
    fx_load_ok(&fx, "transform:\n"
                    "  - lookup:\n"
                    "      from: name\n"
                    "      to: dept\n"
                    "      map:\n"
                    "        blue-gopher|pink-gopher|purple-gopher: gophers\n"
                    "        \"*-sticker\": stickers\n"
                    "        \"*-shirt\": clothing\n"
                    "      default: misc\n");
    int dept = field(&fx, "dept");
    CHECK_INT(dept, 6);
    CHECK_INT(fx.record.fields[dept].type, SL_TYPE_STRING);
    static const char *cases[][2] = {
        {"blue-gopher", "gophers"}, {"purple-gopher", "gophers"},
        {"gopher", "misc"},         {"red-sticker", "stickers"},
        {"-sticker", "stickers"},   {"t-shirt", "clothing"},
        {"t-shirts", "misc"},       {"", "misc"},
    };
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_reason_t why;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_value_t rec[7];
        for (int f = 0; f < 7; f++) {
            rec[f] = VNULL;
        }
        rec[0] = vs(cases[i][0]);
        CHECK_INT(sl_stages_run(fx.st, rec, &a, 0, &why), SL_STAGE_KEEP);
        CHECK(!rec[dept].is_null);
        if (!rec[dept].is_null) {
            char got[64];
            snprintf(got, sizeof(got), "%.*s", (int)rec[dept].u.s.len, rec[dept].u.s.ptr);
            CHECK_STR(got, cases[i][1]);
        }
    }
    /* a null name takes the default too */
    sl_value_t rec[7];
    for (int f = 0; f < 7; f++) {
        rec[f] = VNULL;
    }
    CHECK_INT(sl_stages_run(fx.st, rec, &a, 0, &why), SL_STAGE_KEEP);
    CHECK(!rec[dept].is_null && rec[dept].u.s.len == 4);
    sl_arena_free(&a);
    fx_free(&fx);

    /* every glob shape: prefix, contains, suffix (matched without fnmatch),
     * and patterns fnmatch handles; first match in map order wins */
    fx_load_ok(&fx, "transform:\n  - lookup:\n      from: name\n      to: g\n      map:\n"
                    "        \"pre*\": p\n        \"*mid*\": m\n        \"*suf\": s\n"
                    "        \"a?c\": q\n        \"[xy]z*\": r\n        \"*\": any\n");
    static const char *globs[][2] = {
        {"prefix", "p"}, {"pre", "p"},    {"xmidx", "m"},  {"mid", "m"},    {"thesuf", "s"},
        {"suf", "s"},    {"abc", "q"},    {"abbc", "any"}, {"yzz", "r"},    {"pr", "any"},
        {"", "any"},     {"premid", "p"}, {"su", "any"},   {"midsuf", "m"},
    };
    int g = field(&fx, "g");
    for (size_t i = 0; i < sizeof(globs) / sizeof(globs[0]); i++) {
        for (int f = 0; f < 7; f++) {
            rec[f] = VNULL;
        }
        rec[0] = vs(globs[i][0]);
        CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
        char got[64];
        snprintf(got, sizeof(got), "%.*s", (int)rec[g].u.s.len, rec[g].u.s.ptr);
        if (strcmp(got, globs[i][1]) != 0) {
            fprintf(stderr, "glob case '%s'\n", globs[i][0]);
        }
        CHECK_STR(got, globs[i][1]);
    }
    fx_free(&fx);

    /* without a default, no match gives null */
    fx_load(&fx, "transform:\n  - lookup: {from: name, to: dept, map: {a: x}}\n");
    CHECK_INT(fx.errs.n, 0);
    for (int f = 0; f < 7; f++) {
        rec[f] = VNULL;
    }
    rec[0] = vs("b");
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK(rec[6].is_null);
    fx_free(&fx);
}

TEST(set_computes_fields_in_order_and_filter_drops)
{
    fx_t fx;
    fx_load_ok(&fx, "transform:\n"
                    "  - set:\n"
                    "      ts: \"timestamp_ms(timestamp_ms)\"\n"
                    "      day: \"date(ts, 'UTC')\"\n"
                    "      cents: {expr: \"int(price * 100)\", type: int32}\n"
                    "filter: \"user_id != owner_id && ad_id != null\"\n");
    int ts = field(&fx, "ts"), day = field(&fx, "day"), cents = field(&fx, "cents");
    CHECK_INT(ts, 6);
    CHECK_INT(day, 7);
    CHECK_INT(cents, 8);
    CHECK_INT(fx.record.fields[ts].type, SL_TYPE_TIMESTAMP);
    CHECK_INT(fx.record.fields[day].type, SL_TYPE_DATE);
    CHECK_INT(fx.record.fields[cents].type, SL_TYPE_INT32);
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_reason_t why;
    sl_value_t rec[9];
    for (int f = 0; f < 9; f++) {
        rec[f] = VNULL;
    }
    rec[1].is_null = false;
    rec[1].u.d = 12.5;
    rec[2] = vi(INT64_C(1486166400000)); /* 2017-02-04T00:00:00Z */
    rec[3] = vi(1);
    rec[4] = vi(2);
    rec[5] = vi(77);
    CHECK_INT(sl_stages_run(fx.st, rec, &a, 0, &why), SL_STAGE_KEEP);
    CHECK_INT(rec[ts].u.i, INT64_C(1486166400000000));
    CHECK_INT(rec[day].u.i, 17201); /* days from 1970-01-01 to 2017-02-04 */
    CHECK_INT(rec[cents].u.i, 1250);
    rec[4] = vi(1); /* the owner's own action */
    CHECK_INT(sl_stages_run(fx.st, rec, &a, 0, &why), SL_STAGE_DROP);
    rec[4] = vi(2);
    rec[5] = VNULL; /* no ad */
    CHECK_INT(sl_stages_run(fx.st, rec, &a, 0, &why), SL_STAGE_DROP);
    /* a value out of int32's range is rejected with the step in the reason */
    rec[5] = vi(77);
    rec[1].u.d = 1e12;
    CHECK_INT(sl_stages_run(fx.st, rec, &a, 0, &why), SL_STAGE_REJECT);
    CHECK_CONTAINS(why.text, "set cents");
    sl_arena_free(&a);
    fx_free(&fx);
}

TEST(errors_name_the_line_and_column)
{
    expect_error("transform:\n  - rename: {nme: item}\n", "no field 'nme'", 9, 14, __LINE__);
    expect_error("transform:\n  - rename: {name: price}\n", "exists already", 9, 20, __LINE__);
    expect_error("transform:\n  - explode: x\n", "unknown transform step 'explode'", 9, 5,
                 __LINE__);
    expect_error("transform:\n  - drop: [name]\n  - set: {x: \"length(name)\"}\n",
                 "set x: unknown field 'name'", 10, 22, __LINE__);
    expect_error("transform:\n  - lookup: {from: price, to: d, map: {a: b}}\n",
                 "lookups map strings", 9, 20, __LINE__);
    expect_error("transform:\n  - lookup: {from: name, to: d, map: {\"a|\": b}}\n",
                 "empty alternative", 9, 39, __LINE__);
    expect_error("transform:\n  - lookup: {from: name, to: d, map: {a: b, \"c|a\": e}}\n",
                 "'a' is mapped twice", 9, 45, __LINE__);
    expect_error("filter: \"price + 1\"\n", "not bool", 8, 9, __LINE__);
    expect_error("transform:\n  - set: {price: \"name\"}\n", "gives string but the field is double",
                 9, 18, __LINE__);
    expect_error("transform: {rename: {a: b}}\n", "must be a list of steps", 8, 12, __LINE__);
    expect_error("transform:\n  - lookup: {from: name, to: d, map: {a: b}, dflt: x}\n",
                 "lookup: unknown key 'dflt' (known: from, to, map, default)", 9, 46, __LINE__);
    expect_error("transform:\n  - set: {x: {expr: \"1\", tpye: int32}}\n",
                 "set: unknown key 'tpye' (known: expr, type)", 9, 26, __LINE__);
}

TEST(filter_expression_error_points_into_the_expression)
{
    fx_t fx;
    fx_load(&fx, "filter: \"user_id != ownr_id\"\n");
    CHECK_INT(fx.errs.n, 1);
    if (fx.errs.n == 1) {
        /* the scalar starts at column 9 (quoted: text at 10); ownr_id is its
         * 12th byte; the suggestion names the field meant */
        CHECK_CONTAINS(fx.errs.msgs[0], "p.yaml:8:21: ");
        CHECK_CONTAINS(fx.errs.msgs[0], "ownr_id");
        CHECK_CONTAINS(fx.errs.msgs[0], "did you mean owner_id");
    }
    fx_free(&fx);
}

static char tmp_paths[32][128];
static int n_tmp;

static void tmp_cleanup(void)
{
    for (int i = 0; i < n_tmp; i++) {
        unlink(tmp_paths[i]);
    }
}

/* Writes text to a temporary file named like suffix (removed at exit);
 * returns its path. */
static const char *tmp_file(const char *suffix, const char *text)
{
    if (n_tmp == 0) {
        atexit(tmp_cleanup);
    }
    int k = n_tmp < 32 ? n_tmp++ : 31;
    char *out = tmp_paths[k];
    snprintf(out, 128, "/tmp/sluice-test-stages-%d-%d%s", (int)getpid(), k, suffix);
    FILE *f = fopen(out, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
    return out;
}

static const char *str_of(const sl_value_t *v, char *buf, size_t n)
{
    if (v->is_null) {
        return "(null)";
    }
    snprintf(buf, n, "%.*s", (int)v->u.s.len, v->u.s.ptr);
    return buf;
}

TEST(enrich_from_csv_by_int_key)
{
    const char *csv = tmp_file(".csv", "id,age,gender,location\r\n"
                                       "1,34,f,\"Paris, France\"\r\n"
                                       "2,,m,\"say \"\"hi\"\"\"\r\n"
                                       "\n"
                                       "77,51,,Berlin\n");
    char text[1024];
    snprintf(text, sizeof(text),
             "transform:\n  - enrich:\n      key: user_id\n      file: %s\n      file_key: id\n"
             "      fields: {age: int32, gender: string, location: string}\n",
             csv);
    fx_t fx;
    fx_load_ok(&fx, text);
    int age = field(&fx, "age"), gender = field(&fx, "gender"), loc = field(&fx, "location");
    CHECK_INT(age, 6);
    CHECK_INT(loc, 8);
    CHECK_INT(fx.record.fields[age].type, SL_TYPE_INT32);
    sl_value_t rec[9];
    char b[64];
    sl_reason_t why;
    for (int f = 0; f < 9; f++) {
        rec[f] = VNULL;
    }
    rec[3] = vi(1);
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK_INT(rec[age].u.i, 34);
    CHECK_STR(str_of(&rec[gender], b, sizeof(b)), "f");
    CHECK_STR(str_of(&rec[loc], b, sizeof(b)), "Paris, France");
    rec[3] = vi(2);
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK(rec[age].is_null); /* an empty cell is null */
    CHECK_STR(str_of(&rec[loc], b, sizeof(b)), "say \"hi\"");
    rec[3] = vi(77);
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK_INT(rec[age].u.i, 51);
    CHECK(rec[gender].is_null);
    CHECK_STR(str_of(&rec[loc], b, sizeof(b)), "Berlin");
    rec[3] = vi(5); /* not in the table: every field null */
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK(rec[age].is_null && rec[gender].is_null && rec[loc].is_null);
    rec[3] = VNULL;
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK(rec[loc].is_null);
    fx_free(&fx);
}

TEST(enrich_from_ndjson_by_string_key)
{
    const char *nd = tmp_file(".ndjson", "{\"name\":\"mug\",\"weight\":0.35,\"fragile\":true}\n"
                                         "{\"name\":\"t-shirt\",\"weight\":0.2}\r\n"
                                         "\n");
    char text[1024];
    snprintf(text, sizeof(text),
             "transform:\n  - enrich: {key: name, file: %s, fields: {weight: double, fragile: "
             "bool}}\n",
             nd);
    fx_t fx;
    fx_load_ok(&fx, text);
    int w = field(&fx, "weight"), fr = field(&fx, "fragile");
    sl_value_t rec[8];
    sl_reason_t why;
    for (int f = 0; f < 8; f++) {
        rec[f] = VNULL;
    }
    rec[0] = vs("mug");
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK(!rec[w].is_null && rec[w].u.d == 0.35);
    CHECK(!rec[fr].is_null && rec[fr].u.b);
    rec[0] = vs("t-shirt");
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK(rec[w].u.d == 0.2 && rec[fr].is_null);
    rec[0] = vs("t-shirts");
    CHECK_INT(sl_stages_run(fx.st, rec, NULL, 0, &why), SL_STAGE_KEEP);
    CHECK(rec[w].is_null);
    fx_free(&fx);
}

TEST(enrich_errors_name_the_file_line)
{
    struct {
        const char *suffix, *content, *want;
    } cases[] = {
        {".csv", "id,age\n1,x\n", ":2: column 'age': 'x' is not a valid int32"},
        {".csv", "id,years\n1,3\n", "has no column 'age'"},
        {".csv", "id,age\n1,3\n1,4\n", "the key 1 appears twice"},
        {".csv", "id,age\n1,3,4\n", ":2: 3 cells, the header has 2"},
        {".csv", "id,age\n\"1,3\n", ":2: a quoted cell is not closed"},
        {".ndjson", "{\"id\":1,\"age\":3}\n{\"id\":\"2\"}\n", ":2: field 'id'"},
        {".txt", "id,age\n", "name the file .csv"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = tmp_file(cases[i].suffix, cases[i].content);
        char text[1024];
        snprintf(text, sizeof(text),
                 "transform:\n  - enrich: {key: user_id, file: %s, file_key: id, fields: {age: "
                 "int32}}\n",
                 path);
        fx_t fx;
        fx_load(&fx, text);
        CHECK_INT(fx.errs.n, 1);
        if (fx.errs.n == 1) {
            CHECK_CONTAINS(fx.errs.msgs[0], cases[i].want);
            CHECK_CONTAINS(fx.errs.msgs[0], "p.yaml:9:");
        }
        fx_free(&fx);
    }
    fx_t fx;
    fx_load(&fx, "transform:\n  - enrich: {key: user_id, file: /nonexistent/u.csv, fields: {a: "
                 "int32}}\n");
    CHECK_INT(fx.errs.n, 1);
    if (fx.errs.n == 1) {
        CHECK_CONTAINS(fx.errs.msgs[0], "cannot open /nonexistent/u.csv");
    }
    fx_free(&fx);
    fx_load(&fx, "transform:\n  - enrich: {key: price, file: x.csv, fields: {a: int32}}\n");
    CHECK_INT(fx.errs.n, 1);
    if (fx.errs.n == 1) {
        CHECK_CONTAINS(fx.errs.msgs[0], "keys are strings or integers");
    }
    fx_free(&fx);
}

TEST_MAIN(T(no_stages_keep_the_input_fields), T(rename_and_drop_change_names_not_indexes),
          T(lookup_exact_alternatives_globs_and_default),
          T(set_computes_fields_in_order_and_filter_drops), T(errors_name_the_line_and_column),
          T(filter_expression_error_points_into_the_expression), T(enrich_from_csv_by_int_key),
          T(enrich_from_ndjson_by_string_key), T(enrich_errors_name_the_file_line))
