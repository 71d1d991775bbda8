/* The record schema at run time: the name -> index table used by decoders and
 * the constraint checks applied to every decoded record. Parsing the config's
 * `schema:` map lives in schema_parse.c. */
#include "core/schema.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Longest string checked against a regex from a stack copy; longer ones are
 * copied to the heap (regexec() needs a NUL-terminated string). */
#define SCH_REGEX_STACK 256
/* How much of a value a reason quotes. */
#define SCH_QUOTE_MAX 64

static inline uint64_t sch_load64(const char *s)
{
    uint64_t v;
    memcpy(&v, s, 8);
    return v;
}

static inline uint64_t sch_load32(const char *s)
{
    uint32_t v;
    memcpy(&v, s, 4);
    return v;
}

/* A word-at-a-time hash: one multiply per 8 bytes, every byte counts. Field
 * names are short, and a byte-serial hash (FNV) cost more than the rest of a
 * lookup. Reads only s[0..n). */
static uint64_t sch_hash(const char *s, size_t n)
{
    const uint64_t k = 0xff51afd7ed558ccdu;
    uint64_t h = 0x9E3779B97F4A7C15u ^ n, t;
    while (n > 8) {
        h = (h ^ sch_load64(s)) * k;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    if (n >= 4) {
        t = sch_load32(s) | sch_load32(s + n - 4) << 32;
    } else if (n > 0) {
        t = (uint64_t)(unsigned char)s[0] | (uint64_t)(unsigned char)s[n / 2] << 8 |
            (uint64_t)(unsigned char)s[n - 1] << 16;
    } else {
        t = 0;
    }
    h = (h ^ t) * k;
    return h ^ h >> 32;
}

/* memcmp(a, b, n) == 0 for short n without a library call. */
static inline bool sch_eq(const char *a, const char *b, size_t n)
{
    if (n >= 8) {
        const char *a_end = a + n, *b_end = b + n;
        while (n > 8) {
            if (sch_load64(a) != sch_load64(b)) {
                return false;
            }
            a += 8;
            b += 8;
            n -= 8;
        }
        return sch_load64(a_end - 8) == sch_load64(b_end - 8);
    }
    if (n >= 4) {
        return sch_load32(a) == sch_load32(b) && sch_load32(a + n - 4) == sch_load32(b + n - 4);
    }
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return false;
        }
    }
    return true;
}

void sl_schema_finish(sl_schema_t *schema)
{
    size_t n_slots = 8;
    while (n_slots < schema->n_fields * 2) {
        n_slots *= 2;
    }
    free(schema->slots);
    schema->slots = sl_xmalloc(n_slots * sizeof(*schema->slots));
    schema->n_slots = n_slots;
    for (size_t i = 0; i < n_slots; i++) {
        schema->slots[i] = -1;
    }
    for (size_t f = 0; f < schema->n_fields; f++) {
        sl_field_t *field = &schema->fields[f];
        if (field->name_len == 0 && field->name != NULL) {
            field->name_len = strlen(field->name);
        }
        if (field->hidden || sl_schema_find(schema, field->name, field->name_len) >= 0) {
            continue; /* hidden, or a duplicate name (the config parser rejects these) */
        }
        size_t slot = sch_hash(field->name, field->name_len) & (n_slots - 1);
        while (schema->slots[slot] >= 0) {
            slot = (slot + 1) & (n_slots - 1);
        }
        schema->slots[slot] = (int32_t)f;
    }
}

uint64_t sl_schema_hash(const sl_schema_t *schema, const sl_value_t *rec, const size_t *fields,
                        size_t n, uint64_t seed)
{
    uint64_t h = seed;
    for (size_t i = 0; i < n; i++) {
        const sl_value_t *v = &rec[fields[i]];
        sl_type_t t = schema->fields[fields[i]].type;
        /* the type (or null) goes into the seed of each field's hash, the
         * previous fields' hash too: typed and order-sensitive */
        uint64_t s = h * UINT64_C(0x9E3779B97F4A7C15) + (v->is_null ? 0xffu : (uint64_t)t) + 1;
        if (v->is_null) {
            h = XXH3_64bits_withSeed(NULL, 0, s);
        } else if (t == SL_TYPE_STRING) {
            h = XXH3_64bits_withSeed(v->u.s.ptr, v->u.s.len, s);
        } else if (t == SL_TYPE_DOUBLE) {
            double d = v->u.d == 0.0 ? 0.0 : v->u.d; /* -0.0 and 0.0 are one key */
            h = XXH3_64bits_withSeed(&d, sizeof(d), s);
        } else if (t == SL_TYPE_BOOL) {
            uint8_t b = v->u.b;
            h = XXH3_64bits_withSeed(&b, 1, s);
        } else {
            h = XXH3_64bits_withSeed(&v->u.i, sizeof(v->u.i), s);
        }
    }
    return h;
}

size_t sl_schema_add(sl_schema_t *schema, const char *name, sl_type_t type, int line)
{
    schema->fields = sl_xrealloc(schema->fields, (schema->n_fields + 1) * sizeof(sl_field_t));
    sl_field_t *f = &schema->fields[schema->n_fields];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->line = line;
    f->def.is_null = true;
    return schema->n_fields++;
}

int sl_schema_find(const sl_schema_t *schema, const char *name, size_t len)
{
    if (SL_UNLIKELY(schema->slots == NULL)) {
        for (size_t f = 0; f < schema->n_fields; f++) {
            const sl_field_t *field = &schema->fields[f];
            if (!field->hidden && field->name_len == len && memcmp(field->name, name, len) == 0) {
                return (int)f;
            }
        }
        return -1;
    }
    size_t mask = schema->n_slots - 1;
    size_t slot = sch_hash(name, len) & mask;
    for (;;) {
        int32_t f = schema->slots[slot];
        if (f < 0) {
            return -1;
        }
        const sl_field_t *field = &schema->fields[f];
        if (field->name_len == len && sch_eq(field->name, name, len)) {
            return f;
        }
        slot = (slot + 1) & mask;
    }
}

void sl_schema_free(sl_schema_t *schema)
{
    if (schema == NULL) {
        return;
    }
    for (size_t f = 0; f < schema->n_fields; f++) {
        sl_field_t *field = &schema->fields[f];
        free(field->name);
        if (field->type == SL_TYPE_STRING && field->has_default) {
            free((void *)field->def.u.s.ptr); /* NULL for a null default */
        }
        if (field->has_regex) {
            regfree(&field->regex);
        }
        free(field->regex_src);
        for (size_t i = 0; i < field->n_enum; i++) {
            free(field->enum_values[i]);
        }
        free(field->enum_values);
    }
    free(schema->fields);
    free(schema->slots);
    schema->fields = NULL;
    schema->n_fields = 0;
    schema->slots = NULL;
    schema->n_slots = 0;
}

static int sch_fail(sl_reason_t *why, const char *fmt, ...) SL_PRINTF(2, 3);

static int sch_fail(sl_reason_t *why, const char *fmt, ...)
{
    if (why != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why->text, sizeof(why->text), fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Returns 0 if s matches the field's regex. */
static int sch_regex_match(const sl_field_t *field, const sl_str_t *s)
{
    char stack[SCH_REGEX_STACK];
    char *copy = s->len < sizeof(stack) ? stack : sl_xmalloc(s->len + 1);
    if (s->len > 0) {
        memcpy(copy, s->ptr, s->len);
    }
    copy[s->len] = '\0';
    int rc = regexec(&field->regex, copy, 0, NULL, 0) == 0 ? 0 : -1;
    if (copy != stack) {
        free(copy);
    }
    return rc;
}

static int sch_check_string(const sl_field_t *field, const sl_str_t *s, sl_reason_t *why)
{
    char q[SCH_QUOTE_MAX];
    if (field->max_length > 0 && s->len > field->max_length) {
        return sch_fail(why, "field '%s': length %zu exceeds max_length %zu", field->name, s->len,
                        field->max_length);
    }
    if (field->n_enum > 0) {
        size_t i;
        for (i = 0; i < field->n_enum; i++) {
            const char *e = field->enum_values[i];
            if (strlen(e) == s->len && memcmp(e, s->ptr, s->len) == 0) {
                break;
            }
        }
        if (i == field->n_enum) {
            char list[160];
            size_t o = 0;
            list[0] = '\0';
            for (i = 0; i < field->n_enum && o < sizeof(list); i++) {
                int n = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
                                 field->enum_values[i]);
                o = n < 0 ? sizeof(list) : o + (size_t)n;
            }
            return sch_fail(why, "field '%s': \"%s\" is not one of [%s]", field->name,
                            sl_value_quote(s->ptr, s->len, q, sizeof(q)), list);
        }
    }
    if (field->has_regex) {
        /* A NUL byte (from \u0000) would hide the rest of the string from regexec(). */
        if (s->len > 0 && memchr(s->ptr, '\0', s->len) != NULL) {
            return sch_fail(why, "field '%s': contains a NUL byte, cannot match regex %s",
                            field->name, field->regex_src ? field->regex_src : "");
        }
        if (sch_regex_match(field, s) != 0) {
            return sch_fail(why, "field '%s': \"%s\" does not match regex %s", field->name,
                            sl_value_quote(s->ptr, s->len, q, sizeof(q)),
                            field->regex_src ? field->regex_src : "");
        }
    }
    return 0;
}

/* Formats d as the shortest of %.15g/%.17g that reads back as d. */
static const char *sch_double(double d, char out[32])
{
    snprintf(out, 32, "%.15g", d);
    if (strtod(out, NULL) != d) {
        snprintf(out, 32, "%.17g", d);
    }
    return out;
}

static int sch_check(const sl_field_t *field, const sl_value_t *v, sl_reason_t *why)
{
    char a[32], b[32];
    switch (field->type) {
    case SL_TYPE_STRING:
        return sch_check_string(field, &v->u.s, why);
    case SL_TYPE_INT32:
        if (v->u.i < INT32_MIN || v->u.i > INT32_MAX) {
            return sch_fail(why, "field '%s': %lld is out of range for int32", field->name,
                            (long long)v->u.i);
        }
        /* fall through */
    case SL_TYPE_INT64:
        if (field->has_min && v->u.i < field->min_i) {
            return sch_fail(why, "field '%s': %lld is below min %lld", field->name,
                            (long long)v->u.i, (long long)field->min_i);
        }
        if (field->has_max && v->u.i > field->max_i) {
            return sch_fail(why, "field '%s': %lld is above max %lld", field->name,
                            (long long)v->u.i, (long long)field->max_i);
        }
        return 0;
    case SL_TYPE_DOUBLE:
        if ((field->has_min || field->has_max) && isnan(v->u.d)) {
            return sch_fail(why, "field '%s': NaN cannot be compared with min/max", field->name);
        }
        if (field->has_min && v->u.d < field->min_d) {
            return sch_fail(why, "field '%s': %s is below min %s", field->name,
                            sch_double(v->u.d, a), sch_double(field->min_d, b));
        }
        if (field->has_max && v->u.d > field->max_d) {
            return sch_fail(why, "field '%s': %s is above max %s", field->name,
                            sch_double(v->u.d, a), sch_double(field->max_d, b));
        }
        return 0;
    default:
        return 0;
    }
}

int sl_schema_validate(const sl_schema_t *schema, sl_value_t *values, sl_reason_t *why)
{
    for (size_t f = 0; f < schema->n_fields; f++) {
        const sl_field_t *field = &schema->fields[f];
        sl_value_t *v = &values[f];
        if (v->is_null && field->has_default) {
            *v = field->def;
        }
        if (v->is_null) {
            if (field->required) {
                return sch_fail(why, "missing required field '%s'", field->name);
            }
            continue;
        }
        if (sch_check(field, v, why) != 0) {
            return -1;
        }
    }
    return 0;
}
