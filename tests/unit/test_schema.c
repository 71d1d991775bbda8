#include <math.h>
#include <stdlib.h>

#include "core/schema.h"
#include "test.h"

/* Appends a field to s (before sl_schema_finish) and returns it. */
static sl_field_t *add_field(sl_schema_t *s, const char *name, sl_type_t type)
{
    s->fields = sl_xrealloc(s->fields, (s->n_fields + 1) * sizeof(*s->fields));
    sl_field_t *f = &s->fields[s->n_fields++];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->def.is_null = true;
    return f;
}

static void set_regex(sl_field_t *f, const char *re)
{
    CHECK_INT(regcomp(&f->regex, re, REG_EXTENDED | REG_NOSUB), 0);
    f->has_regex = true;
    f->regex_src = sl_xstrdup(re);
}

static void set_enum(sl_field_t *f, const char **vals, size_t n)
{
    f->enum_values = sl_xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        f->enum_values[i] = sl_xstrdup(vals[i]);
    }
    f->n_enum = n;
}

static sl_value_t v_null(void)
{
    sl_value_t v = {.is_null = true};
    return v;
}

static sl_value_t v_int(int64_t i)
{
    sl_value_t v = {.is_null = false, .u.i = i};
    return v;
}

static sl_value_t v_double(double d)
{
    sl_value_t v = {.is_null = false, .u.d = d};
    return v;
}

static sl_value_t v_str(const char *s, size_t len)
{
    sl_value_t v = {.is_null = false, .u.s = {s, len}};
    return v;
}

TEST(find_locates_every_field_and_nothing_else)
{
    sl_schema_t s = {0};
    const char *names[] = {"date", "site_id", "views", "clicks", "", "a", "ab"};
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        add_field(&s, names[i], SL_TYPE_INT64);
    }
    sl_schema_finish(&s);
    CHECK(s.n_slots >= 2 * s.n_fields);
    CHECK_INT(s.n_slots & (s.n_slots - 1), 0);
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        CHECK_INT(sl_schema_find(&s, names[i], strlen(names[i])), i);
    }
    CHECK_INT(sl_schema_find(&s, "dat", 3), -1);
    CHECK_INT(sl_schema_find(&s, "dates", 5), -1);
    CHECK_INT(sl_schema_find(&s, "Date", 4), -1);
    CHECK_INT(sl_schema_find(&s, "abc", 3), -1);
    /* Names are (pointer, length): no NUL needed. */
    CHECK_INT(sl_schema_find(&s, "viewsXYZ", 5), 2);
    CHECK_INT(sl_schema_find(&s, "abc", 2), 6);
    /* Finishing again rebuilds the table (no leak, same answers). */
    sl_schema_finish(&s);
    CHECK_INT(sl_schema_find(&s, "clicks", 6), 3);
    sl_schema_free(&s);
    CHECK(s.fields == NULL && s.slots == NULL && s.n_fields == 0);
}

TEST(find_with_many_fields_and_collisions)
{
    sl_schema_t s = {0};
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        add_field(&s, name, SL_TYPE_STRING);
    }
    sl_schema_finish(&s);
    int wrong = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        wrong += sl_schema_find(&s, name, strlen(name)) != i;
        snprintf(name, sizeof(name), "g%d", i);
        wrong += sl_schema_find(&s, name, strlen(name)) != -1;
    }
    CHECK_INT(wrong, 0);
    sl_schema_free(&s);
}

TEST(find_in_empty_schema_and_free_null)
{
    sl_schema_t s = {0};
    CHECK_INT(sl_schema_find(&s, "x", 1), -1); /* before finish: linear fallback */
    sl_schema_finish(&s);
    CHECK_INT(sl_schema_find(&s, "x", 1), -1);
    sl_schema_free(&s);
    sl_schema_free(NULL);
}

TEST(required_and_defaults)
{
    sl_schema_t s = {0};
    sl_field_t *f = add_field(&s, "site_id", SL_TYPE_INT32);
    f->required = true;
    f = add_field(&s, "views", SL_TYPE_INT64);
    f->has_default = true;
    f->def = v_int(0);
    f = add_field(&s, "source", SL_TYPE_STRING);
    f->has_default = true;
    f->def = v_str(sl_xstrdup("web"), 3); /* owned by the schema */
    f = add_field(&s, "ratio", SL_TYPE_DOUBLE);
    f = add_field(&s, "region", SL_TYPE_STRING);
    f->required = true;
    f->has_default = true;
    f->def = v_str(sl_xstrdup("eu"), 2);
    sl_schema_finish(&s);

    sl_reason_t why = {{0}};
    sl_value_t vals[5] = {v_int(7), v_null(), v_null(), v_null(), v_null()};
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    CHECK(!vals[1].is_null);
    CHECK_INT(vals[1].u.i, 0);
    CHECK(!vals[2].is_null && vals[2].u.s.len == 3 && memcmp(vals[2].u.s.ptr, "web", 3) == 0);
    CHECK(vals[3].is_null); /* optional without default stays null */
    CHECK(!vals[4].is_null && vals[4].u.s.len == 2);

    /* Present values are kept. */
    sl_value_t vals2[5] = {v_int(7), v_int(99), v_str("app", 3), v_double(0.5), v_str("us", 2)};
    CHECK_INT(sl_schema_validate(&s, vals2, &why), 0);
    CHECK_INT(vals2[1].u.i, 99);
    CHECK(vals2[2].u.s.len == 3 && memcmp(vals2[2].u.s.ptr, "app", 3) == 0);

    sl_value_t vals3[5] = {v_null(), v_int(1), v_null(), v_null(), v_null()};
    CHECK_INT(sl_schema_validate(&s, vals3, &why), -1);
    CHECK_STR(why.text, "missing required field 'site_id'");
    sl_schema_free(&s);
}

TEST(required_with_null_default_is_still_missing)
{
    sl_schema_t s = {0};
    sl_field_t *f = add_field(&s, "x", SL_TYPE_STRING);
    f->required = true;
    f->has_default = true; /* default: null */
    sl_schema_finish(&s);
    sl_reason_t why;
    sl_value_t vals[1] = {v_null()};
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "missing required field 'x'");
    sl_schema_free(&s);
}

TEST(int_bounds)
{
    sl_schema_t s = {0};
    sl_field_t *f = add_field(&s, "views", SL_TYPE_INT64);
    f->has_min = f->has_max = true;
    f->min_i = 0;
    f->max_i = 1000;
    f = add_field(&s, "site_id", SL_TYPE_INT32);
    sl_schema_finish(&s);
    sl_reason_t why;
    sl_value_t vals[2] = {v_int(-1), v_int(1)};
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'views': -1 is below min 0");
    vals[0] = v_int(1001);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'views': 1001 is above max 1000");
    vals[0] = v_int(0);
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    vals[0] = v_int(1000);
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    /* An int32 field holding a value another codec put out of range. */
    vals[1] = v_int(INT64_C(2147483648));
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'site_id': 2147483648 is out of range for int32");
    vals[1] = v_int(INT32_MIN);
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    sl_schema_free(&s);
}

TEST(double_bounds)
{
    sl_schema_t s = {0};
    sl_field_t *f = add_field(&s, "ratio", SL_TYPE_DOUBLE);
    f->has_min = f->has_max = true;
    f->min_d = 0;
    f->max_d = 1;
    sl_schema_finish(&s);
    sl_reason_t why;
    sl_value_t vals[1] = {v_double(1.5)};
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'ratio': 1.5 is above max 1");
    vals[0] = v_double(-0.1);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'ratio': -0.1 is below min 0");
    vals[0] = v_double(1.0000000000000002);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'ratio': 1.0000000000000002 is above max 1");
    vals[0] = v_double(NAN);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_CONTAINS(why.text, "field 'ratio': NaN");
    vals[0] = v_double(1);
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    sl_schema_free(&s);
}

TEST(string_max_length_counts_bytes)
{
    sl_schema_t s = {0};
    sl_field_t *f = add_field(&s, "name", SL_TYPE_STRING);
    f->max_length = 4;
    sl_schema_finish(&s);
    sl_reason_t why;
    sl_value_t vals[1] = {v_str("abcd", 4)};
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    vals[0] = v_str("ab\xc3\xa9", 4); /* 3 characters, 4 bytes */
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    vals[0] = v_str("abc\xc3\xa9", 5);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'name': length 5 exceeds max_length 4");
    sl_schema_free(&s);
}

TEST(string_regex)
{
    sl_schema_t s = {0};
    sl_field_t *f = add_field(&s, "code", SL_TYPE_STRING);
    set_regex(f, "^[a-z]+$");
    sl_schema_finish(&s);
    sl_reason_t why;
    /* Not NUL-terminated: only the first 3 bytes are the value. */
    sl_value_t vals[1] = {v_str("abc123", 3)};
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    vals[0] = v_str("abc123", 6);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'code': \"abc123\" does not match regex ^[a-z]+$");
    /* Long strings take the heap copy. */
    size_t n = 5000;
    char *big = malloc(n);
    memset(big, 'x', n);
    vals[0] = v_str(big, n);
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    big[n - 1] = '7';
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_CONTAINS(why.text, "does not match regex");
    CHECK(strlen(why.text) < SL_REASON_MAX);
    free(big);
    /* An embedded NUL must not let a prefix match stand for the whole. */
    vals[0] = v_str("abc\0!!", 6);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_CONTAINS(why.text, "NUL");
    sl_schema_free(&s);
}

TEST(string_enum)
{
    sl_schema_t s = {0};
    sl_field_t *f = add_field(&s, "kind", SL_TYPE_STRING);
    const char *vals_allowed[] = {"view", "click", "buy"};
    set_enum(f, vals_allowed, 3);
    sl_schema_finish(&s);
    sl_reason_t why;
    sl_value_t vals[1] = {v_str("clickXX", 5)};
    CHECK_INT(sl_schema_validate(&s, vals, &why), 0);
    vals[0] = v_str("clic", 4);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_STR(why.text, "field 'kind': \"clic\" is not one of [view, click, buy]");
    vals[0] = v_str("clicks", 6);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    vals[0] = v_str("", 0);
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    sl_schema_free(&s);
}

TEST(reason_is_bounded)
{
    sl_schema_t s = {0};
    char name[400];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    sl_field_t *f = add_field(&s, name, SL_TYPE_INT64);
    f->required = true;
    sl_schema_finish(&s);
    sl_reason_t why;
    sl_value_t vals[1] = {v_null()};
    CHECK_INT(sl_schema_validate(&s, vals, &why), -1);
    CHECK_INT(strlen(why.text), SL_REASON_MAX - 1);
    sl_schema_free(&s);
}

TEST_MAIN(T(find_locates_every_field_and_nothing_else), T(find_with_many_fields_and_collisions),
          T(find_in_empty_schema_and_free_null), T(required_and_defaults),
          T(required_with_null_default_is_still_missing), T(int_bounds), T(double_bounds),
          T(string_max_length_counts_bytes), T(string_regex), T(string_enum), T(reason_is_bounded))
