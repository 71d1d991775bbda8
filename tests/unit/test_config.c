#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "test.h"

static sl_doc_t *load(const char *text, sl_errors_t *errs)
{
    return sl_doc_load_string("t.yaml", text, strlen(text), errs);
}

/* Loads text that must fail with exactly one error equal to msg. */
static void expect_load_error(const char *text, const char *msg, int line_of_check)
{
    sl_errors_t errs = {0};
    sl_doc_t *doc = load(text, &errs);
    if (doc != NULL || errs.n != 1) {
        fprintf(stderr, "(case at line %d: doc=%p, %zu errors)\n", line_of_check, (void *)doc,
                errs.n);
    }
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 1);
    if (errs.n >= 1) {
        CHECK_STR(errs.msgs[0], msg);
    }
    sl_doc_free(doc);
    sl_errors_free(&errs);
}

#define EXPECT_LOAD_ERROR(text, msg) expect_load_error(text, msg, __LINE__)

static const char example[] =
    "source:\n"
    "  kafka:\n"
    "    brokers: ${SL_TEST_BROKERS:-127.0.0.1:9092}\n"
    "    topics: [site_events]\n"
    "    group: site-stats\n"
    "    properties: {session.timeout.ms: 6000}   # any librdkafka property passes through\n"
    "schema:\n"
    "  date:    {type: date, required: true}             # YYYY-MM-DD\n"
    "  site_id: {type: int32, required: true, min: 0}\n"
    "  views:   {type: int64, required: true, min: 0}\n"
    "  clicks:  {type: int64, required: true, min: 0}\n"
    "dead_letter:\n"
    "  kafka: {topic: site_events.dlq}\n"
    "sink:\n"
    "  stdout: {format: json}\n"
    "metrics: {listen: 127.0.0.1:9464}\n";

/* ---- errors ---------------------------------------------------------------- */

TEST(errors_format_positions)
{
    sl_errors_t errs = {0};
    sl_errors_add(&errs, "p.yaml", 3, 7, "bad %s", "thing");
    sl_errors_add(&errs, "p.yaml", 3, 0, "no column");
    sl_errors_add(&errs, "p.yaml", 0, 5, "no line");
    sl_errors_add(&errs, NULL, 0, 0, "no file");
    char big[600];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sl_errors_add(&errs, "p.yaml", 1, 1, "%s", big);
    CHECK_INT(errs.n, 5);
    CHECK_STR(errs.msgs[0], "p.yaml:3:7: bad thing");
    CHECK_STR(errs.msgs[1], "p.yaml:3: no column");
    CHECK_STR(errs.msgs[2], "p.yaml: no line");
    CHECK_STR(errs.msgs[3], "no file");
    CHECK_INT(strlen(errs.msgs[4]), strlen("p.yaml:1:1: ") + 599);
    sl_errors_free(&errs);
    CHECK_INT(errs.n, 0);
    CHECK(errs.msgs == NULL);
    sl_errors_free(&errs); /* twice is fine */
}

/* ---- loading and positions --------------------------------------------------- */

TEST(load_example_config)
{
    unsetenv("SL_TEST_BROKERS");
    sl_errors_t errs = {0};
    sl_doc_t *doc = load(example, &errs);
    CHECK(doc != NULL);
    CHECK_INT(errs.n, 0);
    if (doc == NULL) {
        sl_errors_print(&errs);
        sl_errors_free(&errs);
        return;
    }
    CHECK_STR(sl_doc_path(doc), "t.yaml");
    const sl_node_t *root = sl_doc_root(doc);
    CHECK_INT(root->kind, SL_NODE_MAP);
    CHECK_INT(root->n, 5);
    CHECK_INT(root->line, 1);
    CHECK_INT(root->col, 1);
    CHECK_STR(root->keys[0]->scalar, "source");
    CHECK_STR(root->keys[4]->scalar, "metrics");
    CHECK_INT(root->keys[4]->line, 16);
    CHECK_STR(root->file, "t.yaml");

    const sl_node_t *kafka = sl_node_get(sl_node_get(root, "source"), "kafka");
    CHECK(kafka != NULL && kafka->kind == SL_NODE_MAP);
    CHECK_INT(kafka->line, 3);
    CHECK_INT(kafka->col, 5);
    const sl_node_t *brokers = sl_node_get(kafka, "brokers");
    CHECK_STR(brokers->scalar, "127.0.0.1:9092");
    CHECK_INT(brokers->line, 3);
    CHECK_INT(brokers->col, 14);
    CHECK(!brokers->quoted);
    const sl_node_t *topics = sl_node_get(kafka, "topics");
    CHECK_INT(topics->kind, SL_NODE_SEQ);
    CHECK_INT(topics->n, 1);
    CHECK_STR(topics->values[0]->scalar, "site_events");
    CHECK_INT(topics->values[0]->line, 4);
    CHECK_INT(topics->values[0]->col, 14);
    const sl_node_t *props = sl_node_get(kafka, "properties");
    CHECK_INT(props->kind, SL_NODE_MAP);
    CHECK_STR(props->keys[0]->scalar, "session.timeout.ms");
    CHECK_STR(props->values[0]->scalar, "6000");
    CHECK_INT(props->line, 6);
    CHECK_INT(props->col, 17);

    const sl_node_t *schema = sl_node_get(root, "schema");
    CHECK_INT(schema->n, 4);
    CHECK_STR(schema->keys[3]->scalar, "clicks");
    CHECK_INT(schema->keys[3]->line, 11);
    CHECK_INT(schema->keys[3]->col, 3);
    const sl_node_t *min = sl_node_get(sl_node_get(schema, "site_id"), "min");
    CHECK_STR(min->scalar, "0");
    CHECK_INT(min->line, 9);
    CHECK_INT(min->col, 47);
    CHECK_STR(sl_node_get(sl_node_get(root, "metrics"), "listen")->scalar, "127.0.0.1:9464");

    CHECK(sl_node_get(root, "nope") == NULL);
    CHECK(sl_node_get(brokers, "x") == NULL);
    CHECK(sl_node_get(NULL, "x") == NULL);
    sl_doc_free(doc);
    sl_errors_free(&errs);
}

TEST(load_file_and_missing_file)
{
    char path[] = "/tmp/sl_test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        return;
    }
    const char *text = "a: 1\nb: [x, y]\n";
    CHECK_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);

    sl_errors_t errs = {0};
    sl_doc_t *doc = sl_doc_load_file(path, &errs);
    CHECK(doc != NULL);
    CHECK_STR(sl_doc_path(doc), path);
    const sl_node_t *b = sl_node_get(sl_doc_root(doc), "b");
    CHECK(b != NULL && b->n == 2);
    CHECK_STR(b->file, path);
    sl_doc_free(doc);
    unlink(path);

    doc = sl_doc_load_file(path, &errs);
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 1);
    char want[128];
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    CHECK_STR(errs.msgs[0], want);
    sl_errors_free(&errs);
}

TEST(empty_documents_have_no_root)
{
    const char *cases[] = {"", "# only a comment\n\n", "---\n", "\n\n\n"};
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_errors_t errs = {0};
        sl_doc_t *doc = load(cases[i], &errs);
        CHECK(doc != NULL);
        CHECK(sl_doc_root(doc) == NULL);
        CHECK_INT(errs.n, 0);
        sl_doc_free(doc);
        sl_errors_free(&errs);
    }
    sl_doc_free(NULL);
    CHECK(sl_doc_root(NULL) == NULL);
}

TEST(scalar_styles_record_quoting)
{
    sl_errors_t errs = {0};
    sl_doc_t *doc = load("a: null\n"
                         "b: 'null'\n"
                         "c: \"tr\\tue\"\n"
                         "d: |-\n"
                         "  two\n"
                         "  lines\n"
                         "e: !!str 42\n"
                         "f:\n"
                         "g: ~\n",
                         &errs);
    CHECK(doc != NULL);
    if (doc == NULL) {
        sl_errors_free(&errs);
        return;
    }
    const sl_node_t *r = sl_doc_root(doc);
    CHECK(!sl_node_get(r, "a")->quoted);
    CHECK(sl_node_is_null(sl_node_get(r, "a")));
    CHECK(sl_node_get(r, "b")->quoted);
    CHECK_STR(sl_node_get(r, "b")->scalar, "null");
    CHECK(!sl_node_is_null(sl_node_get(r, "b")));
    CHECK(sl_node_get(r, "c")->quoted);
    CHECK_STR(sl_node_get(r, "c")->scalar, "tr\tue");
    CHECK(sl_node_get(r, "d")->quoted);
    CHECK_STR(sl_node_get(r, "d")->scalar, "two\nlines");
    CHECK(sl_node_get(r, "e")->quoted);
    CHECK_STR(sl_node_get(r, "e")->scalar, "42");
    CHECK_STR(sl_node_get(r, "f")->scalar, "");
    CHECK(sl_node_is_null(sl_node_get(r, "f")));
    CHECK(sl_node_is_null(sl_node_get(r, "g")));
    CHECK(sl_node_is_null(NULL));
    CHECK(!sl_node_is_null(r));
    CHECK_STR(sl_node_kind_name(r), "a map");
    CHECK_STR(sl_node_kind_name(sl_node_get(r, "a")), "a scalar");
    CHECK_STR(sl_node_kind_name(NULL), "nothing");
    sl_doc_free(doc);
    sl_errors_free(&errs);
}

TEST(sequence_positions)
{
    sl_errors_t errs = {0};
    sl_doc_t *doc = load("list:\n"
                         "  - one\n"
                         "  -   two\n"
                         "  - [a, {k: v}]\n",
                         &errs);
    CHECK(doc != NULL);
    if (doc == NULL) {
        sl_errors_free(&errs);
        return;
    }
    const sl_node_t *l = sl_node_get(sl_doc_root(doc), "list");
    CHECK_INT(l->kind, SL_NODE_SEQ);
    CHECK_INT(l->n, 3);
    CHECK_INT(l->line, 2);
    CHECK_INT(l->col, 3);
    CHECK_INT(l->values[1]->line, 3);
    CHECK_INT(l->values[1]->col, 7);
    const sl_node_t *inner = l->values[2];
    CHECK_INT(inner->kind, SL_NODE_SEQ);
    CHECK_STR(sl_node_kind_name(inner), "a list");
    CHECK_INT(inner->values[1]->kind, SL_NODE_MAP);
    CHECK_INT(inner->values[1]->col, 9);
    CHECK_STR(sl_node_get(inner->values[1], "k")->scalar, "v");
    sl_doc_free(doc);
    sl_errors_free(&errs);
}

/* ---- interpolation ------------------------------------------------------------- */

static char *interp(const char *yaml_value, sl_errors_t *errs)
{
    char text[512];
    snprintf(text, sizeof(text), "v: %s\n", yaml_value);
    sl_doc_t *doc = load(text, errs);
    if (doc == NULL) {
        return NULL;
    }
    char *s = strdup(sl_node_get(sl_doc_root(doc), "v")->scalar);
    sl_doc_free(doc);
    return s;
}

#define CHECK_INTERP(in, want)                                                                     \
    do {                                                                                           \
        sl_errors_t e_ = {0};                                                                      \
        char *got_ = interp(in, &e_);                                                              \
        CHECK_STR(got_, want);                                                                     \
        CHECK_INT(e_.n, 0);                                                                        \
        free(got_);                                                                                \
        sl_errors_free(&e_);                                                                       \
    } while (0)

TEST(interpolation_replaces_variables)
{
    setenv("SL_T_HOST", "kafka-1", 1);
    setenv("SL_T_PORT", "9093", 1);
    setenv("SL_T_EMPTY", "", 1);
    unsetenv("SL_T_UNSET");
    CHECK_INTERP("${SL_T_HOST}", "kafka-1");
    CHECK_INTERP("${SL_T_HOST}:${SL_T_PORT}", "kafka-1:9093");
    CHECK_INTERP("x${SL_T_HOST}y", "xkafka-1y");
    CHECK_INTERP("${SL_T_UNSET:-localhost:9092}", "localhost:9092");
    CHECK_INTERP("${SL_T_HOST:-localhost}", "kafka-1");
    CHECK_INTERP("${SL_T_EMPTY:-fallback}", "fallback"); /* like the shell's :- */
    CHECK_INTERP("'[${SL_T_EMPTY}]'", "[]");
    CHECK_INTERP("'${SL_T_UNSET:-}'", "");
    CHECK_INTERP("\"${SL_T_UNSET:-a b: c}\"", "a b: c");
    CHECK_INTERP("\"$${SL_T_HOST}\"", "${SL_T_HOST}");
    CHECK_INTERP("cost$$", "cost$");
    CHECK_INTERP("'^[a-z]+$'", "^[a-z]+$");
    CHECK_INTERP("a$b", "a$b");
    CHECK_INTERP("$", "$");
    CHECK_INTERP("'$$$$'", "$$");
    CHECK_INTERP("'$$$'", "$$");
    unsetenv("SL_T_HOST");
    unsetenv("SL_T_PORT");
    unsetenv("SL_T_EMPTY");
}

TEST(interpolation_unset_variable_is_an_error)
{
    unsetenv("KAFKA_BROKERS");
    EXPECT_LOAD_ERROR("source:\n"
                      "  kafka:\n"
                      "    brokers: ${KAFKA_BROKERS}\n",
                      "t.yaml:3:14: environment variable KAFKA_BROKERS is not set (use "
                      "${KAFKA_BROKERS:-default} or export it)");

    /* every unset variable is reported, not just the first */
    sl_errors_t errs = {0};
    sl_doc_t *doc = load("a: ${SL_T_NOPE1}\nb: x-${SL_T_NOPE2}-${SL_T_NOPE3}\n", &errs);
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 3);
    if (errs.n == 3) {
        CHECK_CONTAINS(errs.msgs[0], "t.yaml:1:4: environment variable SL_T_NOPE1 is not set");
        CHECK_CONTAINS(errs.msgs[1], "t.yaml:2:4: environment variable SL_T_NOPE2");
        CHECK_CONTAINS(errs.msgs[2], "t.yaml:2:4: environment variable SL_T_NOPE3");
    }
    sl_errors_free(&errs);
}

TEST(interpolation_malformed)
{
    EXPECT_LOAD_ERROR("a: 1\nb: ${OOPS\n",
                      "t.yaml:2:4: unterminated '${' in '${OOPS' (expected "
                      "${NAME} or ${NAME:-default}; write $$ for a literal $)");
    const char *bad[] = {"'${}'", "'${1A}'", "'${A-b}'", "'${A B}'", "'${A:b}'", "'${:-x}'"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        sl_errors_t errs = {0};
        char *got = interp(bad[i], &errs);
        CHECK(got == NULL);
        CHECK_INT(errs.n, 1);
        if (errs.n == 1) {
            CHECK_CONTAINS(errs.msgs[0], "t.yaml:1:4: malformed '${");
        }
        sl_errors_free(&errs);
    }
}

/* ---- structural errors ---------------------------------------------------------- */

TEST(duplicate_keys)
{
    EXPECT_LOAD_ERROR("source: {}\n"
                      "\n"
                      "sink: a\n"
                      "schema: {}\n"
                      "sink: b\n",
                      "t.yaml:5:1: duplicate key 'sink' (first at line 3)");
    EXPECT_LOAD_ERROR("x: {a: 1, b: 2, a: 3}\n",
                      "t.yaml:1:17: duplicate key 'a' (first at line 1)");
    /* duplicates are found after interpolation */
    setenv("SL_T_KEY", "k", 1);
    EXPECT_LOAD_ERROR("k: 1\n${SL_T_KEY}: 2\n", "t.yaml:2:1: duplicate key 'k' (first at line 1)");
    unsetenv("SL_T_KEY");
}

TEST(anchors_aliases_and_tags_are_rejected)
{
    sl_errors_t errs = {0};
    sl_doc_t *doc = load("base: &b {x: 1}\n"
                         "other: *b\n",
                         &errs);
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 2);
    if (errs.n == 2) {
        CHECK_STR(errs.msgs[0],
                  "t.yaml:1:7: YAML anchors (&b) are not supported; repeat the value instead");
        CHECK_STR(errs.msgs[1],
                  "t.yaml:2:8: YAML aliases (*b) are not supported; repeat the value instead");
    }
    sl_errors_free(&errs);
    EXPECT_LOAD_ERROR("a: &x 1\n",
                      "t.yaml:1:4: YAML anchors (&x) are not supported; repeat the value instead");
    EXPECT_LOAD_ERROR("a: !custom 1\n",
                      "t.yaml:1:4: YAML tags (!custom) are not supported (only !!str on scalars)");
}

TEST(multiple_documents_rejected)
{
    EXPECT_LOAD_ERROR("a: 1\n"
                      "---\n"
                      "b: 2\n",
                      "t.yaml:2:1: more than one YAML document ('---' starts another one); a "
                      "config is one document");
}

TEST(non_scalar_keys_rejected)
{
    EXPECT_LOAD_ERROR("ok: 1\n"
                      "? [a, b]\n"
                      ": 1\n",
                      "t.yaml:2:3: map keys must be scalars, got a list");
    EXPECT_LOAD_ERROR("{a: 1}: x\n", "t.yaml:1:1: map keys must be scalars, got a map");
}

TEST(syntax_errors_have_positions)
{
    sl_errors_t errs = {0};
    sl_doc_t *doc = load("a: 1\nb: [1, 2\nc: 3\n", &errs);
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_CONTAINS(errs.msgs[0], "t.yaml:");
        CHECK_CONTAINS(errs.msgs[0], "invalid YAML: did not find expected ',' or ']'");
        CHECK_CONTAINS(errs.msgs[0], "(while parsing a flow sequence at line 2)");
    }
    sl_errors_free(&errs);

    EXPECT_LOAD_ERROR("a: b: c\n", "t.yaml:1:5: invalid YAML: mapping values are not allowed in "
                                   "this context");

    /* a tab in the indentation gets a hint */
    doc = load("a:\n  b: 1\n\tc: 2\n", &errs);
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_CONTAINS(errs.msgs[0], "t.yaml:3:");
        CHECK_CONTAINS(errs.msgs[0], "tabs are not allowed in YAML indentation; use spaces");
    }
    sl_errors_free(&errs);

    /* invalid UTF-8 is a reader error, reported by byte offset */
    doc = load("a: 1\nb: \xff\n", &errs);
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_CONTAINS(errs.msgs[0], "t.yaml:2:4: invalid YAML: invalid leading UTF-8 octet");
    }
    sl_errors_free(&errs);
}

TEST(deep_nesting_is_bounded)
{
    char text[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        text[n++] = '[';
    }
    for (int i = 0; i < 1000; i++) {
        text[n++] = ']';
    }
    text[n] = '\0';
    sl_errors_t errs = {0};
    sl_doc_t *doc = load(text, &errs);
    CHECK(doc == NULL);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_STR(errs.msgs[0], "t.yaml:1:65: nesting deeper than 64 levels");
    }
    sl_errors_free(&errs);

    n = 0;
    for (int i = 0; i < 64; i++) {
        text[n++] = '[';
    }
    for (int i = 0; i < 64; i++) {
        text[n++] = ']';
    }
    text[n] = '\0';
    doc = load(text, &errs);
    CHECK(doc != NULL);
    CHECK_INT(errs.n, 0);
    sl_doc_free(doc);
    sl_errors_free(&errs);
}

/* ---- scalar parsers ----------------------------------------------------------------- */

TEST(parse_bool_values)
{
    bool b = false;
    const char *yes[] = {"true", "True", "TRUE", "yes", "on", "On"};
    const char *no[] = {"false", "False", "no", "off", "OFF"};
    const char *bad[] = {"", "1", "0", "y", "truee", " true", "nope"};
    for (size_t i = 0; i < SL_ARRAY_LEN(yes); i++) {
        b = false;
        CHECK_INT(sl_parse_bool(yes[i], &b), 0);
        CHECK(b);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(no); i++) {
        b = true;
        CHECK_INT(sl_parse_bool(no[i], &b), 0);
        CHECK(!b);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        CHECK_INT(sl_parse_bool(bad[i], &b), -1);
    }
    CHECK_INT(sl_parse_bool(NULL, &b), -1);
}

TEST(parse_int_values)
{
    int64_t v = 0;
    CHECK_INT(sl_parse_int("0", &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(sl_parse_int("-42", &v), 0);
    CHECK_INT(v, -42);
    CHECK_INT(sl_parse_int("+7", &v), 0);
    CHECK_INT(v, 7);
    CHECK_INT(sl_parse_int("9223372036854775807", &v), 0);
    CHECK(v == INT64_MAX);
    CHECK_INT(sl_parse_int("-9223372036854775808", &v), 0);
    CHECK(v == INT64_MIN);
    const char *bad[] = {"",     "-",     "+",   "9223372036854775808",
                         "1.0",  "1e3",   " 1",  "1 ",
                         "0x10", "1_000", "--1", "abc"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        v = 99;
        CHECK_INT(sl_parse_int(bad[i], &v), -1);
        CHECK_INT(v, 99);
    }
}

TEST(parse_double_values)
{
    double d = 0;
    CHECK_INT(sl_parse_double("1.5", &d), 0);
    CHECK(d == 1.5);
    CHECK_INT(sl_parse_double("-2e3", &d), 0);
    CHECK(d == -2000.0);
    CHECK_INT(sl_parse_double(".25", &d), 0);
    CHECK(d == 0.25);
    CHECK_INT(sl_parse_double("7", &d), 0);
    CHECK(d == 7.0);
    const char *bad[] = {"", "inf", "nan", "-Infinity", "1e999", "0x1p3", "1.5x", " 1", ".", "e"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        CHECK_INT(sl_parse_double(bad[i], &d), -1);
    }
}

TEST(parse_durations)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"0", 0},         {"250", 250},      {"250ms", 250},   {"30s", 30000},
        {"5m", 300000},   {"1h", 3600000},   {"1d", 86400000}, {"1.5s", 1500},
        {"0.25m", 15000}, {"2.5h", 9000000}, {"0.001s", 1},    {"1.000ms", 1},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        int64_t ms = -1;
        CHECK_INT(sl_parse_duration_ms(good[i].s, &ms), 0);
        CHECK_INT(ms, good[i].ms);
    }
    const char *bad[] = {"",  "abc", "-5s", "5 s", "5sec", "1.5ms", "0.0001s",
                         "s", "1.s", ".5s", "5S",  "5ms5", "1w",    "106751991167301d"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        int64_t ms = 77;
        CHECK_INT(sl_parse_duration_ms(bad[i], &ms), -1);
        CHECK_INT(ms, 77);
    }
}

TEST(parse_sizes)
{
    static const struct {
        const char *s;
        int64_t bytes;
    } good[] = {
        {"512", 512},
        {"512B", 512},
        {"64KiB", 65536},
        {"1MiB", 1048576},
        {"2GiB", INT64_C(2147483648)},
        {"1TiB", INT64_C(1099511627776)},
        {"1kB", 1000},
        {"1KB", 1000},
        {"10MB", 10000000},
        {"3GB", INT64_C(3000000000)},
        {"1.5KiB", 1536},
        {"0.5MB", 500000},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        int64_t b = -1;
        CHECK_INT(sl_parse_size(good[i].s, &b), 0);
        CHECK_INT(b, good[i].bytes);
    }
    const char *bad[] = {"",    "-1",  "1.5",  "1kib", "1 MiB",        "MiB",
                         "1Mi", "1mb", "0.1B", "1.5B", "9999999999TiB"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        int64_t b = 77;
        CHECK_INT(sl_parse_size(bad[i], &b), -1);
        CHECK_INT(b, 77);
    }
}

/* ---- option tables ------------------------------------------------------------------- */

typedef struct opts {
    char *name;
    int64_t workers;
    bool enabled;
    double ratio;
    int64_t timeout_ms;
    int64_t max_bytes;
    int format;
    sl_strlist_t topics;
    sl_strmap_t props;
    char *listen;
    char *group;
} opts_t;

static const char *const formats[] = {"json", "csv", "avro", NULL};

static const sl_option_t opt_list[] = {
    {"name", SL_OPT_STRING, offsetof(opts_t, name), "sluice", false, 0, 0, NULL, "A name."},
    {"workers", SL_OPT_INT, offsetof(opts_t, workers), "4", false, 1, 64, NULL, "Threads."},
    {"enabled", SL_OPT_BOOL, offsetof(opts_t, enabled), "true", false, 0, 0, NULL, "On | off."},
    {"ratio", SL_OPT_DOUBLE, offsetof(opts_t, ratio), "0.5", false, 0, 0, NULL, "A ratio."},
    {"timeout", SL_OPT_DURATION, offsetof(opts_t, timeout_ms), "30s", false, 100, 3600000, NULL,
     "How long."},
    {"max_bytes", SL_OPT_SIZE, offsetof(opts_t, max_bytes), "1MiB", false, 1024, 1 << 30, NULL,
     "How big."},
    {"format", SL_OPT_ENUM, offsetof(opts_t, format), "json", false, 0, 0, formats, "Format."},
    {"topics", SL_OPT_STRLIST, offsetof(opts_t, topics), NULL, true, 0, 0, NULL, "Topics."},
    {"properties", SL_OPT_STRMAP, offsetof(opts_t, props), NULL, false, 0, 0, NULL,
     "Pass-through."},
    {"listen", SL_OPT_HOSTPORT, offsetof(opts_t, listen), NULL, false, 0, 0, NULL, "Address."},
    {"group", SL_OPT_STRING, offsetof(opts_t, group), NULL, true, 0, 0, NULL, "Group id."},
};

static const sl_option_table_t opt_table = {"source.test", "A test section.", opt_list,
                                            SL_ARRAY_LEN(opt_list)};

/* Loads text, applies opt_table to the value of key "s" (NULL if absent). */
static int apply(const char *text, opts_t *o, sl_errors_t *errs)
{
    sl_errors_t lerrs = {0};
    sl_doc_t *doc = load(text, &lerrs);
    CHECK(doc != NULL);
    CHECK_INT(lerrs.n, 0);
    sl_errors_free(&lerrs);
    memset(o, 0xa5, sizeof(*o)); /* apply must not read what was there */
    int rc = sl_options_apply(&opt_table, o, sl_node_get(sl_doc_root(doc), "s"), "t.yaml", errs);
    sl_doc_free(doc);
    return rc;
}

TEST(options_apply_every_type)
{
    sl_errors_t errs = {0};
    opts_t o;
    int rc = apply("s:\n"
                   "  name: 'my pipe'\n"
                   "  workers: 8\n"
                   "  enabled: off\n"
                   "  ratio: 0.75\n"
                   "  timeout: 2m\n"
                   "  max_bytes: 64KiB\n"
                   "  format: csv\n"
                   "  topics: [a, b, c]\n"
                   "  properties:\n"
                   "    session.timeout.ms: 6000\n"
                   "    enable.idle: true\n"
                   "    empty:\n"
                   "  listen: '[::1]:9464'\n"
                   "  group: g1\n",
                   &o, &errs);
    CHECK_INT(rc, 0);
    CHECK_INT(errs.n, 0);
    CHECK_STR(o.name, "my pipe");
    CHECK_INT(o.workers, 8);
    CHECK(!o.enabled);
    CHECK(o.ratio == 0.75);
    CHECK_INT(o.timeout_ms, 120000);
    CHECK_INT(o.max_bytes, 65536);
    CHECK_INT(o.format, 1);
    CHECK_INT(o.topics.n, 3);
    CHECK_STR(o.topics.items[2], "c");
    CHECK_INT(o.props.n, 3);
    CHECK_STR(o.props.keys[0], "session.timeout.ms");
    CHECK_STR(o.props.values[0], "6000");
    CHECK_INT(o.props.lines[0], 11);
    CHECK_STR(o.props.values[1], "true");
    CHECK_INT(o.props.lines[1], 12);
    CHECK_STR(o.props.keys[2], "empty");
    CHECK_STR(o.props.values[2], "");
    CHECK_STR(o.listen, "[::1]:9464");
    CHECK_STR(o.group, "g1");
    sl_options_free(&opt_table, &o);
    CHECK(o.name == NULL && o.topics.items == NULL && o.props.keys == NULL && o.listen == NULL);
    sl_options_free(&opt_table, &o); /* safe twice */
    sl_errors_free(&errs);
}

TEST(options_defaults_and_single_scalar_list)
{
    sl_errors_t errs = {0};
    opts_t o;
    int rc = apply("s: {topics: only, group: g, workers: }\n", &o, &errs);
    CHECK_INT(rc, 0);
    CHECK_INT(errs.n, 0);
    CHECK_STR(o.name, "sluice");
    CHECK_INT(o.workers, 4); /* `workers:` with nothing keeps the default */
    CHECK(o.enabled);
    CHECK(o.ratio == 0.5);
    CHECK_INT(o.timeout_ms, 30000);
    CHECK_INT(o.max_bytes, 1048576);
    CHECK_INT(o.format, 0);
    CHECK_INT(o.topics.n, 1);
    CHECK_STR(o.topics.items[0], "only");
    CHECK_INT(o.props.n, 0);
    CHECK(o.listen == NULL);
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);
}

TEST(options_null_map_applies_defaults_but_requires)
{
    sl_errors_t errs = {0};
    opts_t o;
    int rc = apply("other: 1\n", &o, &errs);
    CHECK_INT(rc, -1);
    CHECK_INT(errs.n, 2);
    if (errs.n == 2) {
        CHECK_STR(errs.msgs[0], "t.yaml: missing required option 'topics' in source.test");
        CHECK_STR(errs.msgs[1], "t.yaml: missing required option 'group' in source.test");
    }
    CHECK_STR(o.name, "sluice");
    CHECK_INT(o.workers, 4);
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);

    /* `s:` with nothing is the same as no section, but errors have its line */
    rc = apply("x: 1\ns:\n", &o, &errs);
    CHECK_INT(rc, -1);
    CHECK_INT(errs.n, 2);
    if (errs.n == 2) {
        CHECK_STR(errs.msgs[0], "t.yaml:2:3: missing required option 'topics' in source.test");
    }
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);
}

TEST(options_missing_required_at_map_line)
{
    sl_errors_t errs = {0};
    opts_t o;
    int rc = apply("x: 1\n"
                   "s:\n"
                   "  workers: 2\n"
                   "  group:\n",
                   &o, &errs);
    CHECK_INT(rc, -1);
    CHECK_INT(errs.n, 2);
    if (errs.n == 2) {
        CHECK_STR(errs.msgs[0], "t.yaml:3:3: missing required option 'topics' in source.test");
        CHECK_STR(errs.msgs[1],
                  "t.yaml:4:3: missing required option 'group' in source.test (it is empty)");
    }
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);
}

/* Applies "s: {topics: t, group: g, <entry>}" and checks the single error. */
static void expect_option_error(const char *entry, const char *msg, int line_of_check)
{
    char text[512];
    snprintf(text, sizeof(text), "s:\n  topics: t\n  group: g\n  %s\n", entry);
    sl_errors_t errs = {0};
    opts_t o;
    int rc = apply(text, &o, &errs);
    if (errs.n != 1) {
        fprintf(stderr, "(case at line %d: %zu errors)\n", line_of_check, errs.n);
    }
    CHECK_INT(rc, -1);
    CHECK_INT(errs.n, 1);
    if (errs.n >= 1) {
        CHECK_STR(errs.msgs[0], msg);
    }
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);
}

#define EXPECT_OPTION_ERROR(entry, msg) expect_option_error(entry, msg, __LINE__)

TEST(options_errors)
{
    EXPECT_OPTION_ERROR("topicz: [a]", "t.yaml:4:3: unknown option 'topicz' in source.test (known: "
                                       "name, workers, enabled, ratio, timeout, max_bytes, format, "
                                       "topics, properties, listen, group)");
    EXPECT_OPTION_ERROR("name: {a: 1}",
                        "t.yaml:4:9: option 'name' in source.test must be a string, got a map");
    EXPECT_OPTION_ERROR("properties: [a]", "t.yaml:4:15: option 'properties' in source.test must "
                                           "be a map of strings, got a list");
    EXPECT_OPTION_ERROR("properties: x", "t.yaml:4:15: option 'properties' in source.test must "
                                         "be a map of strings, got a scalar");
    EXPECT_OPTION_ERROR("properties: {a: [1]}", "t.yaml:4:19: option 'properties' in source.test: "
                                                "value of 'a' must be a scalar, got a list");
    EXPECT_OPTION_ERROR("workers: many",
                        "t.yaml:4:12: option 'workers' in source.test: invalid integer 'many'");
    EXPECT_OPTION_ERROR("workers: 100",
                        "t.yaml:4:12: option 'workers' in source.test must be between 1 and 64, "
                        "got 100");
    EXPECT_OPTION_ERROR("workers: 0", "t.yaml:4:12: option 'workers' in source.test must be "
                                      "between 1 and 64, got 0");
    EXPECT_OPTION_ERROR("enabled: maybe", "t.yaml:4:12: option 'enabled' in source.test: invalid "
                                          "boolean 'maybe' (use true or false)");
    EXPECT_OPTION_ERROR("ratio: half",
                        "t.yaml:4:10: option 'ratio' in source.test: invalid number 'half'");
    EXPECT_OPTION_ERROR("timeout: abc", "t.yaml:4:12: option 'timeout' in source.test: invalid "
                                        "duration 'abc' (use e.g. 500ms, 30s, 5m)");
    EXPECT_OPTION_ERROR("timeout: 2h", "t.yaml:4:12: option 'timeout' in source.test must be "
                                       "between 100ms and 1h, got 2h");
    EXPECT_OPTION_ERROR("max_bytes: 10", "t.yaml:4:14: option 'max_bytes' in source.test must be "
                                         "between 1KiB and 1GiB, got 10");
    EXPECT_OPTION_ERROR("max_bytes: lots", "t.yaml:4:14: option 'max_bytes' in source.test: "
                                           "invalid size 'lots' (use e.g. 512, 64KiB, 1MiB, 10MB)");
    EXPECT_OPTION_ERROR("format: xml", "t.yaml:4:11: option 'format' in source.test: invalid "
                                       "value 'xml' (one of: json, csv, avro)");
    EXPECT_OPTION_ERROR("format: [json]", "t.yaml:4:11: option 'format' in source.test must be "
                                          "one of json, csv, avro, got a list");
    EXPECT_OPTION_ERROR("listen: localhost", "t.yaml:4:11: option 'listen' in source.test: invalid "
                                             "address 'localhost' (use host:port or [ipv6]:port, "
                                             "port 1-65535)");

    /* a list item that is not a scalar; the list keeps the good items */
    sl_errors_t errs = {0};
    opts_t o;
    int rc = apply("s:\n  group: g\n  topics:\n    - a\n    - {b: 1}\n    - c\n", &o, &errs);
    CHECK_INT(rc, -1);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_STR(errs.msgs[0],
                  "t.yaml:5:7: option 'topics' in source.test: item 2 must be a string, got a map");
    }
    CHECK_INT(o.topics.n, 2);
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);

    /* every error is collected */
    rc = apply("s: {workers: 0, ratio: x, bogus: 1}\n", &o, &errs);
    CHECK_INT(rc, -1);
    CHECK_INT(errs.n, 5); /* workers, ratio, bogus, missing topics, missing group */
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);

    /* the section itself must be a map */
    rc = apply("s: [1, 2]\n", &o, &errs);
    CHECK_INT(rc, -1);
    CHECK(errs.n >= 1);
    if (errs.n >= 1) {
        CHECK_STR(errs.msgs[0], "t.yaml:1:4: source.test must be a map of options, got a list");
    }
    sl_options_free(&opt_table, &o);
    sl_errors_free(&errs);
}

TEST(options_hostport)
{
    static const struct {
        const char *addr;
        bool ok;
    } cases[] = {
        {"127.0.0.1:9464", true}, {"localhost:1", true},      {"kafka-1.example.com:65535", true},
        {"'[::1]:80'", true},     {"'[fe80::1]:9092'", true}, {"0.0.0.0:0", false},
        {"host:65536", false},    {"'host:'", false},         {"':9464'", false},
        {"'::1:80'", false},      {"'[::1]'", false},         {"'[]:80'", false},
        {"host:80x", false},      {"'host :80'", false},      {"host:-1", false},
        {"host:000080", false},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        char text[128];
        snprintf(text, sizeof(text), "s: {topics: t, group: g, listen: %s}\n", cases[i].addr);
        sl_errors_t errs = {0};
        opts_t o;
        int rc = apply(text, &o, &errs);
        if ((rc == 0) != cases[i].ok) {
            fprintf(stderr, "hostport case %s\n", cases[i].addr);
        }
        CHECK_INT(rc == 0, cases[i].ok);
        sl_options_free(&opt_table, &o);
        sl_errors_free(&errs);
    }
}

TEST(options_bad_default_is_reported)
{
    static const sl_option_t bad[] = {
        {"n", SL_OPT_INT, 0, "lots", false, 0, 0, NULL, "Broken default."},
    };
    static const sl_option_table_t t = {"bug", NULL, bad, 1};
    int64_t v = 5;
    sl_errors_t errs = {0};
    CHECK_INT(sl_options_apply(&t, &v, NULL, "t.yaml", &errs), -1);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_STR(errs.msgs[0], "bug: default of option 'n' in bug: invalid integer 'lots'");
    }
    CHECK_INT(v, 0);
    sl_errors_free(&errs);
}

TEST(options_doc_markdown)
{
    sl_buf_t out = SL_BUF_INIT;
    sl_options_doc(&opt_table, &out);
    const char *want = "### `source.test`\n"
                       "\n"
                       "A test section.\n"
                       "\n"
                       "| Option | Type | Default | Description |\n"
                       "|---|---|---|---|\n"
                       "| `name` | string | `sluice` | A name. |\n"
                       "| `workers` | int (1..64) | `4` | Threads. |\n"
                       "| `enabled` | bool | `true` | On \\| off. |\n"
                       "| `ratio` | number | `0.5` | A ratio. |\n"
                       "| `timeout` | duration (100ms..1h) | `30s` | How long. |\n"
                       "| `max_bytes` | size (1KiB..1GiB) | `1MiB` | How big. |\n"
                       "| `format` | enum (`json`, `csv`, `avro`) | `json` | Format. |\n"
                       "| `topics` | list of strings | required | Topics. |\n"
                       "| `properties` | map of strings | (none) | Pass-through. |\n"
                       "| `listen` | host:port | (none) | Address. |\n"
                       "| `group` | string | required | Group id. |\n"
                       "\n";
    CHECK_STR(out.data, want);

    /* deterministic: a second rendering is identical */
    sl_buf_t again = SL_BUF_INIT;
    sl_options_doc(&opt_table, &again);
    CHECK_STR(again.data, out.data);
    sl_buf_free(&again);
    sl_buf_free(&out);
}

TEST_MAIN(T(errors_format_positions), T(load_example_config), T(load_file_and_missing_file),
          T(empty_documents_have_no_root), T(scalar_styles_record_quoting), T(sequence_positions),
          T(interpolation_replaces_variables), T(interpolation_unset_variable_is_an_error),
          T(interpolation_malformed), T(duplicate_keys), T(anchors_aliases_and_tags_are_rejected),
          T(multiple_documents_rejected), T(non_scalar_keys_rejected),
          T(syntax_errors_have_positions), T(deep_nesting_is_bounded), T(parse_bool_values),
          T(parse_int_values), T(parse_double_values), T(parse_durations), T(parse_sizes),
          T(options_apply_every_type), T(options_defaults_and_single_scalar_list),
          T(options_null_map_applies_defaults_but_requires),
          T(options_missing_required_at_map_line), T(options_errors), T(options_hostport),
          T(options_bad_default_is_reported), T(options_doc_markdown))
