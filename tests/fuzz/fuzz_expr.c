/* Fuzzes the expression compiler and evaluator: the input is an expression
 * compiled against a fixed schema with a field of every type (plus a hidden
 * field and one defined after the expression); if it compiles it is
 * evaluated on fixed records holding nulls, ordinary and extreme values.
 * Properties checked on top of "never crashes, leaks or hangs":
 *  - a compile error has a non-empty, terminated message and a column in
 *    1..len+1;
 *  - the result type is a real type, never int32;
 *  - a run-time failure has a non-empty, terminated reason;
 *  - evaluation is deterministic (twice gives the same outcome);
 *  - for a bool expression, eval_bool keeps the record exactly when eval
 *    gives true;
 *  - string results are readable (every byte is touched, for ASan). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/expr.h"

#define FZ_FIELDS 9
#define FZ_VISIBLE 8 /* "late" is not visible */
#define FZ_RECORDS 4

static sl_schema_t fz_schema;
static sl_value_t fz_recs[FZ_RECORDS][FZ_FIELDS];

static void fz_fail(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_expr: %s\ninput (%zu bytes): %.*s\n", what, size, (int)SL_MIN(size, 512),
            (const char *)data);
    abort();
}

static void fz_add(const char *name, sl_type_t type)
{
    sl_field_t *f = &fz_schema.fields[fz_schema.n_fields++];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->def.is_null = true;
}

static void fz_str(sl_value_t *v, const char *s, size_t n)
{
    v->is_null = false;
    v->u.s.ptr = s;
    v->u.s.len = n;
}

static void fz_int(sl_value_t *v, int64_t i)
{
    v->is_null = false;
    v->u.i = i;
}

static void fz_dbl(sl_value_t *v, double d)
{
    v->is_null = false;
    v->u.d = d;
}

static void fz_bool(sl_value_t *v, bool b)
{
    v->is_null = false;
    v->u.b = b;
}

static void fz_build(void)
{
    static char long_str[600];
    static const char odd[] = "A\0b\xc3\xa9 \x1f\xff";
    fz_schema.fields = sl_xcalloc(FZ_FIELDS, sizeof(sl_field_t));
    fz_add("s", SL_TYPE_STRING);
    fz_add("i32", SL_TYPE_INT32);
    fz_add("i64", SL_TYPE_INT64);
    fz_add("d", SL_TYPE_DOUBLE);
    fz_add("b", SL_TYPE_BOOL);
    fz_add("dt", SL_TYPE_DATE);
    fz_add("ts", SL_TYPE_TIMESTAMP);
    fz_add("gone", SL_TYPE_STRING);
    fz_schema.fields[7].hidden = true;
    fz_add("late", SL_TYPE_INT64);
    sl_schema_finish(&fz_schema);

    /* record 0: all null */
    for (size_t i = 0; i < FZ_FIELDS; i++) {
        fz_recs[0][i].is_null = true;
    }
    /* record 1: ordinary values */
    sl_value_t *r = fz_recs[1];
    fz_str(&r[0], "  Hello World ", 14);
    fz_int(&r[1], 42);
    fz_int(&r[2], -7);
    fz_dbl(&r[3], 2.5);
    fz_bool(&r[4], true);
    fz_int(&r[5], 19813);                     /* 2024-03-31 */
    fz_int(&r[6], INT64_C(1711848600000000)); /* 2024-03-31T01:30:00Z */
    fz_str(&r[7], "gone", 4);
    fz_int(&r[8], 1);
    /* record 2: the low extremes */
    r = fz_recs[2];
    fz_str(&r[0], "", 0);
    fz_int(&r[1], INT32_MIN);
    fz_int(&r[2], INT64_MIN);
    fz_dbl(&r[3], -DBL_MAX);
    fz_bool(&r[4], false);
    fz_int(&r[5], SL_DATE_MIN_DAYS);
    fz_int(&r[6], SL_TIMESTAMP_MIN_US);
    r[7].is_null = true;
    fz_int(&r[8], INT64_MIN);
    /* record 3: the high extremes and odd bytes */
    r = fz_recs[3];
    memset(long_str, 'Z', sizeof(long_str));
    fz_str(&r[0], long_str, sizeof(long_str));
    fz_int(&r[1], INT32_MAX);
    fz_int(&r[2], INT64_MAX);
    fz_dbl(&r[3], -0.0);
    fz_bool(&r[4], true);
    fz_int(&r[5], SL_DATE_MAX_DAYS);
    fz_int(&r[6], SL_TIMESTAMP_MAX_US);
    fz_str(&r[7], odd, sizeof(odd) - 1);
    fz_int(&r[8], INT64_MAX);
}

static void fz_check_error(const sl_expr_error_t *err, const uint8_t *data, size_t size)
{
    size_t n = strnlen(err->msg, sizeof(err->msg));
    if (n == 0 || n == sizeof(err->msg)) {
        fz_fail("compile error without a proper message", data, size);
    }
    if (err->col < 1 || (size_t)err->col > size + 1) {
        fprintf(stderr, "col %d: %s\n", err->col, err->msg);
        fz_fail("compile error column out of range", data, size);
    }
}

static bool fz_same(const sl_value_t *a, const sl_value_t *b, sl_type_t t)
{
    if (a->is_null != b->is_null) {
        return false;
    }
    if (a->is_null) {
        return true;
    }
    switch (t) {
    case SL_TYPE_STRING:
        return a->u.s.len == b->u.s.len &&
               (a->u.s.len == 0 || memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0);
    case SL_TYPE_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof(double)) == 0 || (isnan(a->u.d) && isnan(b->u.d));
    case SL_TYPE_BOOL:
        return a->u.b == b->u.b;
    default:
        return a->u.i == b->u.i;
    }
}

static void fz_eval(const sl_expr_t *e, const sl_value_t *rec, sl_arena_t *arena,
                    const uint8_t *data, size_t size)
{
    sl_type_t t = sl_expr_type(e);
    sl_value_t v1, v2;
    sl_reason_t why1, why2;
    int rc1 = sl_expr_eval(e, rec, arena, &v1, &why1);
    int rc2 = sl_expr_eval(e, rec, arena, &v2, &why2);
    if (rc1 != rc2) {
        fz_fail("evaluation is not deterministic", data, size);
    }
    if (rc1 != 0) {
        size_t n = strnlen(why1.text, sizeof(why1.text));
        if (n == 0 || n == sizeof(why1.text) || strcmp(why1.text, why2.text) != 0) {
            fz_fail("run-time failure without a proper (stable) reason", data, size);
        }
    } else if (!fz_same(&v1, &v2, t)) {
        fz_fail("evaluation is not deterministic", data, size);
    }
    if (rc1 == 0 && t == SL_TYPE_STRING && !v1.is_null) {
        volatile unsigned char sum = 0;
        if (v1.u.s.len > 0 && v1.u.s.ptr == NULL) {
            fz_fail("string result without bytes", data, size);
        }
        for (size_t i = 0; i < v1.u.s.len; i++) {
            sum ^= (unsigned char)v1.u.s.ptr[i];
        }
        (void)sum;
    }
    if (t == SL_TYPE_BOOL) {
        bool keep = false;
        sl_reason_t why3;
        int rc3 = sl_expr_eval_bool(e, rec, arena, &keep, &why3);
        if (rc3 != rc1 || (rc1 == 0 && keep != (!v1.is_null && v1.u.b))) {
            fz_fail("eval_bool disagrees with eval", data, size);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    sl_expr_error_t err;
    sl_arena_t arena;
    if (!ready) {
        fz_build();
        ready = 1;
    }
    /* an exactly-sized copy, so ASan sees any read past the end */
    char *text = sl_xmalloc(size ? size : 1);
    memcpy(text, data, size);
    sl_arena_init(&arena, 0);

    sl_expr_t *e = sl_expr_compile(text, size, &fz_schema, FZ_VISIBLE, &err);
    if (e == NULL) {
        fz_check_error(&err, data, size);
    } else {
        sl_type_t t = sl_expr_type(e);
        if (t == SL_TYPE_INT32 || (int)t < 0 || t >= SL_TYPE__COUNT) {
            fz_fail("bad result type", data, size);
        }
        memset(text, 0, size); /* the expression must not keep pointers into the text */
        for (size_t r = 0; r < FZ_RECORDS; r++) {
            fz_eval(e, fz_recs[r], &arena, data, size);
            sl_arena_reset(&arena);
        }
        sl_expr_destroy(e);
        memcpy(text, data, size);
    }
    /* fewer visible fields: only the compile properties */
    e = sl_expr_compile(text, size, &fz_schema, 2, &err);
    if (e == NULL) {
        fz_check_error(&err, data, size);
    }
    sl_expr_destroy(e);

    sl_arena_free(&arena);
    free(text);
    return 0;
}
