/* Fuzzes the JSON codec with a fixed schema of every type and constraint.
 * Properties checked on top of "never crashes":
 *  - a message accepted with unknown = reject is accepted with unknown =
 *    ignore, with the same values;
 *  - an accepted message encodes to JSON that decodes again to the same values
 *    (timestamps compared at the encoder's millisecond precision), and
 *    encoding that gives the same bytes;
 *  - every rejection has a non-empty, bounded reason;
 *  - the date and timestamp parsers, fed the raw input, round-trip what they
 *    accept. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecs/json.h"

#define FZ_MAX_FIELDS 10

static sl_schema_t fz_ignore, fz_reject;
static const sl_json_limits_t fz_limits = {4096, 8};
/* For re-decoding an encoding: escaping can make it several times longer than
 * the message it came from (0x7f becomes \u007f), so no size limit. */
static const sl_json_limits_t fz_unlimited = {0, 8};

static void fz_fail(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_json: %s\ninput (%zu bytes): %.*s\n", what, size, (int)SL_MIN(size, 512),
            (const char *)data);
    abort();
}

static sl_field_t *fz_add(sl_schema_t *s, const char *name, sl_type_t type)
{
    sl_field_t *f = &s->fields[s->n_fields++];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->def.is_null = true;
    return f;
}

static void fz_build(sl_schema_t *s, sl_unknown_policy_t unknown)
{
    sl_field_t *f;
    memset(s, 0, sizeof(*s));
    s->fields = sl_xcalloc(FZ_MAX_FIELDS, sizeof(sl_field_t));
    f = fz_add(s, "s", SL_TYPE_STRING);
    f->max_length = 32;
    f = fz_add(s, "i32", SL_TYPE_INT32);
    f->has_min = f->has_max = true;
    f->min_i = -1000;
    f->max_i = 1000;
    fz_add(s, "i64", SL_TYPE_INT64);
    f = fz_add(s, "d", SL_TYPE_DOUBLE);
    f->has_min = f->has_max = true;
    f->min_d = -1e6;
    f->max_d = 1e6;
    fz_add(s, "b", SL_TYPE_BOOL);
    f = fz_add(s, "dt", SL_TYPE_DATE);
    f->required = true;
    fz_add(s, "ts", SL_TYPE_TIMESTAMP);
    f = fz_add(s, "re", SL_TYPE_STRING);
    if (regcomp(&f->regex, "^[a-z]+[0-9]*$", REG_EXTENDED | REG_NOSUB) != 0) {
        abort();
    }
    f->has_regex = true;
    f->regex_src = sl_xstrdup("^[a-z]+[0-9]*$");
    f = fz_add(s, "en", SL_TYPE_STRING);
    f->enum_values = sl_xcalloc(2, sizeof(char *));
    f->enum_values[0] = sl_xstrdup("a");
    f->enum_values[1] = sl_xstrdup("b\xc3\xa9");
    f->n_enum = 2;
    f = fz_add(s, "def", SL_TYPE_INT64);
    f->has_default = true;
    f->def.is_null = false;
    f->def.u.i = 7;
    s->unknown = unknown;
    sl_schema_finish(s);
}

static int64_t fz_floor_ms(int64_t us)
{
    return us - ((us % 1000) + 1000) % 1000;
}

/* Whether b (decoded from the encoding of a) holds the same values. */
static int fz_same(const sl_schema_t *s, const sl_value_t *a, const sl_value_t *b, int ts_ms)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        if (a[i].is_null != b[i].is_null) {
            return 0;
        }
        if (a[i].is_null) {
            continue;
        }
        switch (s->fields[i].type) {
        case SL_TYPE_STRING:
            if (a[i].u.s.len != b[i].u.s.len ||
                (a[i].u.s.len > 0 && memcmp(a[i].u.s.ptr, b[i].u.s.ptr, a[i].u.s.len) != 0)) {
                return 0;
            }
            break;
        case SL_TYPE_DOUBLE:
            if (memcmp(&a[i].u.d, &b[i].u.d, sizeof(double)) != 0) {
                return 0;
            }
            break;
        case SL_TYPE_BOOL:
            if (a[i].u.b != b[i].u.b) {
                return 0;
            }
            break;
        case SL_TYPE_TIMESTAMP:
            if ((ts_ms ? fz_floor_ms(a[i].u.i) : a[i].u.i) != b[i].u.i) {
                return 0;
            }
            break;
        default:
            if (a[i].u.i != b[i].u.i) {
                return 0;
            }
            break;
        }
    }
    return 1;
}

static void fz_check_reason(const sl_reason_t *why, const uint8_t *data, size_t size)
{
    size_t n = strnlen(why->text, sizeof(why->text));
    if (n == 0 || n == sizeof(why->text)) {
        fz_fail("rejected without a proper reason", data, size);
    }
}

static void fz_time_parsers(const uint8_t *data, size_t size)
{
    int64_t days, us, back;
    char out[32];
    if (sl_date_parse((const char *)data, size, &days) == 0) {
        sl_date_format(days, out);
        if (days < SL_DATE_MIN_DAYS || days > SL_DATE_MAX_DAYS || size != 10 ||
            memcmp(out, data, 10) != 0) {
            fz_fail("date does not round-trip", data, size);
        }
    }
    if (sl_timestamp_parse((const char *)data, size, &us) == 0) {
        sl_timestamp_format(us, out);
        if (us < SL_TIMESTAMP_MIN_US || us > SL_TIMESTAMP_MAX_US ||
            sl_timestamp_parse(out, strlen(out), &back) != 0 || back != fz_floor_ms(us)) {
            fz_fail("timestamp does not round-trip", data, size);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    sl_value_t v1[FZ_MAX_FIELDS], v2[FZ_MAX_FIELDS], v3[FZ_MAX_FIELDS];
    sl_reason_t why;
    sl_arena_t arena;
    sl_buf_t enc = SL_BUF_INIT, enc2 = SL_BUF_INIT;
    char *copy = NULL;
    if (!ready) {
        fz_build(&fz_ignore, SL_UNKNOWN_IGNORE);
        fz_build(&fz_reject, SL_UNKNOWN_REJECT);
        ready = 1;
    }
    sl_arena_init(&arena, 0);
    fz_time_parsers(data, size);

    const char *buf = (const char *)data;
    int rc_ignore = sl_json_decode(&fz_ignore, &fz_limits, buf, size, v1, &arena, &why);
    if (rc_ignore != 0) {
        fz_check_reason(&why, data, size);
    }
    int rc_reject = sl_json_decode(&fz_reject, &fz_limits, buf, size, v2, &arena, &why);
    if (rc_reject != 0) {
        fz_check_reason(&why, data, size);
    } else if (rc_ignore != 0 || !fz_same(&fz_ignore, v1, v2, 0)) {
        fz_fail("reject policy accepted what ignore did not (or differently)", data, size);
    }
    if (rc_ignore != 0) {
        goto out;
    }

    /* Encode, decode the encoding from an exactly-sized copy, compare. */
    sl_json_encode(&fz_ignore, v1, &enc);
    copy = sl_xmalloc(enc.len);
    memcpy(copy, enc.data, enc.len);
    if (sl_json_decode(&fz_reject, &fz_unlimited, copy, enc.len, v3, &arena, &why) != 0) {
        fprintf(stderr, "encoded: %s\nreason: %s\n", enc.data, why.text);
        fz_fail("the encoding of an accepted message was rejected", data, size);
    }
    if (!fz_same(&fz_ignore, v1, v3, 1)) {
        fprintf(stderr, "encoded: %s\n", enc.data);
        fz_fail("the encoding decodes to different values", data, size);
    }
    sl_json_encode(&fz_ignore, v3, &enc2);
    if (enc.len != enc2.len || memcmp(enc.data, enc2.data, enc.len) != 0) {
        fprintf(stderr, "first: %s\nagain: %s\n", enc.data, enc2.data);
        fz_fail("encoding is not stable", data, size);
    }

    /* Validation must not crash and must give a reason when it fails. */
    if (sl_schema_validate(&fz_ignore, v1, &why) != 0) {
        fz_check_reason(&why, data, size);
    } else if (v1[5].is_null || v1[9].is_null) {
        fz_fail("validation passed without the required field or the default", data, size);
    }

out:
    free(copy);
    sl_buf_free(&enc);
    sl_buf_free(&enc2);
    sl_arena_free(&arena);
    return 0;
}
