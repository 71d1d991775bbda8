/* The `schema:` section of a config into an sl_schema_t: field name ->
 * {type, required, default, min, max, max_length, regex, enum}. Every
 * inconsistency is reported with its line, so a schema that loads is one the
 * validator can apply without surprises. */
#include <inttypes.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/schema.h"

enum {
    SL_SP_TYPE = 0,
    SL_SP_REQUIRED,
    SL_SP_DEFAULT,
    SL_SP_MIN,
    SL_SP_MAX,
    SL_SP_MAX_LENGTH,
    SL_SP_REGEX,
    SL_SP_ENUM,
    SL_SP__COUNT
};

static const char *const sl_sp_names[SL_SP__COUNT] = {
    "type", "required", "default", "min", "max", "max_length", "regex", "enum",
};

typedef struct sl_sp {
    const char *file;
    sl_errors_t *errs;
    sl_field_t *f;
    const sl_node_t *opt[SL_SP__COUNT]; /* the field's option values; NULL: absent */
} sl_sp_t;

static void sl_sp_type_list(sl_buf_t *b, bool numeric_only)
{
    bool first = true;
    for (int t = 0; t < SL_TYPE__COUNT; t++) {
        if (numeric_only && t != SL_TYPE_INT32 && t != SL_TYPE_INT64 && t != SL_TYPE_DOUBLE) {
            continue;
        }
        sl_buf_printf(b, "%s%s", first ? "" : ", ", sl_type_name((sl_type_t)t));
        first = false;
    }
}

/* Returns the option's scalar text, or NULL after reporting a non-scalar. */
static const char *sl_sp_scalar(sl_sp_t *sp, int which)
{
    const sl_node_t *n = sp->opt[which];
    if (n->kind != SL_NODE_SCALAR) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col,
                      "field '%s': option '%s' must be a scalar, got %s", sp->f->name,
                      sl_sp_names[which], sl_node_kind_name(n));
        return NULL;
    }
    return n->scalar;
}

/* Reports options set on a field whose type they do not apply to. */
static void sl_sp_applicable(sl_sp_t *sp)
{
    sl_type_t t = sp->f->type;
    bool numeric = t == SL_TYPE_INT32 || t == SL_TYPE_INT64 || t == SL_TYPE_DOUBLE;
    for (int i = SL_SP_MIN; i < SL_SP__COUNT; i++) {
        bool for_numbers = i == SL_SP_MIN || i == SL_SP_MAX;
        if (sp->opt[i] == NULL || (for_numbers ? numeric : t == SL_TYPE_STRING)) {
            continue;
        }
        sl_buf_t only = SL_BUF_INIT;
        if (for_numbers) {
            sl_sp_type_list(&only, true);
        } else {
            sl_buf_puts(&only, "string");
        }
        sl_errors_add(sp->errs, sp->file, sp->opt[i]->line, sp->opt[i]->col,
                      "field '%s': option '%s' does not apply to type %s (only to %s)", sp->f->name,
                      sl_sp_names[i], sl_type_name(t), only.data);
        sl_buf_free(&only);
        sp->opt[i] = NULL;
    }
}

/* Parses an integer of the field's type (int32 range checked). */
static int sl_sp_int(sl_sp_t *sp, const sl_node_t *n, const char *what, int64_t *v)
{
    if (sl_parse_int(n->scalar, v) != 0) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col, "field '%s': %s '%s' is not a valid %s",
                      sp->f->name, what, n->scalar, sl_type_name(sp->f->type));
        return -1;
    }
    if (sp->f->type == SL_TYPE_INT32 && (*v < INT32_MIN || *v > INT32_MAX)) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col,
                      "field '%s': %s %" PRId64 " is outside the int32 range (%d..%d)", sp->f->name,
                      what, *v, INT32_MIN, INT32_MAX);
        return -1;
    }
    return 0;
}

static int sl_sp_double(sl_sp_t *sp, const sl_node_t *n, const char *what, double *v)
{
    if (sl_parse_double(n->scalar, v) != 0) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col,
                      "field '%s': %s '%s' is not a valid number", sp->f->name, what, n->scalar);
        return -1;
    }
    return 0;
}

static void sl_sp_bounds(sl_sp_t *sp)
{
    sl_field_t *f = sp->f;
    if (sp->opt[SL_SP_MIN] != NULL && sl_sp_scalar(sp, SL_SP_MIN) != NULL) {
        f->has_min = f->type == SL_TYPE_DOUBLE
                         ? sl_sp_double(sp, sp->opt[SL_SP_MIN], "min", &f->min_d) == 0
                         : sl_sp_int(sp, sp->opt[SL_SP_MIN], "min", &f->min_i) == 0;
    }
    if (sp->opt[SL_SP_MAX] != NULL && sl_sp_scalar(sp, SL_SP_MAX) != NULL) {
        f->has_max = f->type == SL_TYPE_DOUBLE
                         ? sl_sp_double(sp, sp->opt[SL_SP_MAX], "max", &f->max_d) == 0
                         : sl_sp_int(sp, sp->opt[SL_SP_MAX], "max", &f->max_i) == 0;
    }
    if (!f->has_min || !f->has_max) {
        return;
    }
    const sl_node_t *at = sp->opt[SL_SP_MAX];
    if (f->type == SL_TYPE_DOUBLE ? f->min_d > f->max_d : f->min_i > f->max_i) {
        sl_errors_add(sp->errs, sp->file, at->line, at->col,
                      "field '%s': min %s is greater than max %s", f->name,
                      sp->opt[SL_SP_MIN]->scalar, at->scalar);
    }
}

static void sl_sp_string_rules(sl_sp_t *sp)
{
    sl_field_t *f = sp->f;
    const sl_node_t *n = sp->opt[SL_SP_MAX_LENGTH];
    if (n != NULL && sl_sp_scalar(sp, SL_SP_MAX_LENGTH) != NULL) {
        int64_t v;
        if (sl_parse_int(n->scalar, &v) != 0 || v < 1) {
            sl_errors_add(sp->errs, sp->file, n->line, n->col,
                          "field '%s': max_length must be a positive integer, got '%s'", f->name,
                          n->scalar);
        } else {
            f->max_length = (size_t)v;
        }
    }

    n = sp->opt[SL_SP_REGEX];
    if (n != NULL && sl_sp_scalar(sp, SL_SP_REGEX) != NULL) {
        int rc = regcomp(&f->regex, n->scalar, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[256];
            regerror(rc, &f->regex, msg, sizeof(msg));
            sl_errors_add(sp->errs, sp->file, n->line, n->col, "field '%s': invalid regex '%s': %s",
                          f->name, n->scalar, msg);
        } else {
            f->has_regex = true;
            f->regex_src = sl_xstrdup(n->scalar);
        }
    }

    n = sp->opt[SL_SP_ENUM];
    if (n == NULL) {
        return;
    }
    if (n->kind != SL_NODE_SEQ) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col,
                      "field '%s': enum must be a list of strings, got %s", f->name,
                      sl_node_kind_name(n));
        return;
    }
    if (n->n == 0) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col,
                      "field '%s': enum must list at least one value", f->name);
        return;
    }
    f->enum_values = sl_xcalloc(n->n, sizeof(*f->enum_values));
    for (size_t i = 0; i < n->n; i++) {
        const sl_node_t *item = n->values[i];
        if (item->kind != SL_NODE_SCALAR) {
            sl_errors_add(sp->errs, sp->file, item->line, item->col,
                          "field '%s': enum values must be strings, got %s", f->name,
                          sl_node_kind_name(item));
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < f->n_enum && !dup; j++) {
            dup = strcmp(f->enum_values[j], item->scalar) == 0;
        }
        if (dup) {
            sl_errors_add(sp->errs, sp->file, item->line, item->col,
                          "field '%s': enum value '%s' is listed twice", f->name, item->scalar);
            continue;
        }
        f->enum_values[f->n_enum++] = sl_xstrdup(item->scalar);
    }
}

/* Parses the default as the field's type and checks it against the field's
 * own constraints (a default that fails them would reject every record
 * without the field). */
static void sl_sp_default(sl_sp_t *sp)
{
    sl_field_t *f = sp->f;
    const sl_node_t *n = sp->opt[SL_SP_DEFAULT];
    if (n == NULL || sl_sp_scalar(sp, SL_SP_DEFAULT) == NULL) {
        return;
    }
    const char *s = n->scalar;
    size_t len = strlen(s);
    sl_buf_t problem = SL_BUF_INIT;
    switch (f->type) {
    case SL_TYPE_STRING:
        f->def.u.s.ptr = sl_xstrndup(s, len);
        f->def.u.s.len = len;
        f->has_default = true;
        if (f->max_length > 0 && len > f->max_length) {
            sl_buf_printf(&problem, "is longer than max_length %zu", f->max_length);
        } else if (f->has_regex && regexec(&f->regex, s, 0, NULL, 0) != 0) {
            sl_buf_printf(&problem, "does not match the regex '%s'", f->regex_src);
        } else if (f->n_enum > 0) {
            size_t i = 0;
            while (i < f->n_enum && strcmp(f->enum_values[i], s) != 0) {
                i++;
            }
            if (i == f->n_enum) {
                sl_buf_puts(&problem, "is not one of the enum values (");
                for (i = 0; i < f->n_enum; i++) {
                    sl_buf_printf(&problem, "%s%s", i ? ", " : "", f->enum_values[i]);
                }
                sl_buf_putc(&problem, ')');
            }
        }
        break;
    case SL_TYPE_INT32:
    case SL_TYPE_INT64:
        if (sl_sp_int(sp, n, "default", &f->def.u.i) != 0) {
            goto out;
        }
        if (f->has_min && f->def.u.i < f->min_i) {
            sl_buf_printf(&problem, "is below min %" PRId64, f->min_i);
        } else if (f->has_max && f->def.u.i > f->max_i) {
            sl_buf_printf(&problem, "is above max %" PRId64, f->max_i);
        }
        break;
    case SL_TYPE_DOUBLE:
        if (sl_sp_double(sp, n, "default", &f->def.u.d) != 0) {
            goto out;
        }
        if (f->has_min && f->def.u.d < f->min_d) {
            sl_buf_printf(&problem, "is below min %s", sp->opt[SL_SP_MIN]->scalar);
        } else if (f->has_max && f->def.u.d > f->max_d) {
            sl_buf_printf(&problem, "is above max %s", sp->opt[SL_SP_MAX]->scalar);
        }
        break;
    case SL_TYPE_BOOL:
        if (sl_parse_bool(s, &f->def.u.b) != 0) {
            sl_buf_puts(&problem, "is not a valid bool (use true or false)");
        }
        break;
    case SL_TYPE_DATE:
        if (sl_date_parse(s, len, &f->def.u.i) != 0) {
            sl_buf_puts(&problem, "is not a valid date (YYYY-MM-DD)");
        }
        break;
    case SL_TYPE_TIMESTAMP:
        if (sl_timestamp_parse(s, len, &f->def.u.i) != 0) {
            sl_buf_puts(&problem, "is not a valid timestamp (e.g. 2024-01-31T12:00:00Z)");
        }
        break;
    default:
        sl_buf_puts(&problem, "cannot be given for this type");
        break;
    }
    if (problem.len > 0) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col, "field '%s': default '%s' %s", f->name,
                      s, problem.data);
        goto out;
    }
    f->has_default = true;
    f->def.is_null = false;
    if (f->required) {
        sl_errors_add(sp->errs, sp->file, n->line, n->col,
                      "field '%s': a required field cannot have a default (drop one of them)",
                      f->name);
    }
out:
    sl_buf_free(&problem);
}

static void sl_sp_field(sl_sp_t *sp, const sl_node_t *key, const sl_node_t *spec)
{
    sl_field_t *f = sp->f;
    f->name = sl_xstrdup(key->scalar);
    f->name_len = strlen(f->name);
    f->line = key->line;
    if (f->name_len == 0) {
        sl_errors_add(sp->errs, sp->file, key->line, key->col,
                      "schema: field names must not be empty");
    }
    if (spec->kind != SL_NODE_MAP) {
        sl_errors_add(sp->errs, sp->file, spec->line, spec->col,
                      "field '%s' in schema must be a map like {type: int64, required: true}, "
                      "got %s",
                      f->name, sl_node_kind_name(spec));
        return;
    }
    for (size_t i = 0; i < spec->n; i++) {
        const char *k = spec->keys[i]->scalar;
        int which = 0;
        while (which < SL_SP__COUNT && strcmp(sl_sp_names[which], k) != 0) {
            which++;
        }
        if (which == SL_SP__COUNT) {
            sl_errors_add(sp->errs, sp->file, spec->keys[i]->line, spec->keys[i]->col,
                          "field '%s': unknown option '%s' (known: type, required, default, "
                          "min, max, max_length, regex, enum)",
                          f->name, k);
            continue;
        }
        if (!sl_node_is_null(spec->values[i])) {
            sp->opt[which] = spec->values[i]; /* `min:` with nothing is absent */
        }
    }

    const sl_node_t *tn = sp->opt[SL_SP_TYPE];
    sl_buf_t known = SL_BUF_INIT;
    sl_sp_type_list(&known, false);
    if (tn == NULL) {
        sl_errors_add(sp->errs, sp->file, spec->line, spec->col,
                      "field '%s': missing 'type' (one of: %s)", f->name, known.data);
        goto out;
    }
    if (sl_sp_scalar(sp, SL_SP_TYPE) == NULL) {
        goto out;
    }
    if (sl_type_parse(tn->scalar, &f->type) != 0) {
        sl_errors_add(sp->errs, sp->file, tn->line, tn->col,
                      "field '%s': unknown type '%s' (one of: %s)", f->name, tn->scalar,
                      known.data);
        goto out;
    }

    const sl_node_t *rn = sp->opt[SL_SP_REQUIRED];
    if (rn != NULL && sl_sp_scalar(sp, SL_SP_REQUIRED) != NULL &&
        sl_parse_bool(rn->scalar, &f->required) != 0) {
        sl_errors_add(sp->errs, sp->file, rn->line, rn->col,
                      "field '%s': required must be true or false, got '%s'", f->name, rn->scalar);
    }
    sl_sp_applicable(sp);
    sl_sp_bounds(sp);
    sl_sp_string_rules(sp);
    sl_sp_default(sp);
out:
    sl_buf_free(&known);
}

int sl_schema_parse(const struct sl_node *map, const char *file, sl_schema_t *out,
                    struct sl_errors *errs)
{
    size_t errs_before = errs->n;
    out->fields = NULL;
    out->n_fields = 0;
    out->slots = NULL;
    out->n_slots = 0;
    if (file == NULL && map != NULL) {
        file = map->file;
    }
    if (sl_node_is_null(map) || (map->kind == SL_NODE_MAP && map->n == 0)) {
        sl_errors_add(errs, file, map ? map->line : 0, map ? map->col : 0,
                      "schema: declare at least one field (e.g. schema: {id: {type: int64, "
                      "required: true}})");
        goto out;
    }
    if (map->kind != SL_NODE_MAP) {
        sl_errors_add(errs, file, map->line, map->col,
                      "schema must be a map of field name -> {type: ...}, got %s",
                      sl_node_kind_name(map));
        goto out;
    }
    /* every field is counted at once so sl_schema_free() sees all of them */
    out->fields = sl_xcalloc(map->n, sizeof(*out->fields));
    out->n_fields = map->n;
    for (size_t i = 0; i < map->n; i++) {
        sl_sp_t sp;
        memset(&sp, 0, sizeof(sp));
        sp.file = file;
        sp.errs = errs;
        sp.f = &out->fields[i];
        sl_sp_field(&sp, map->keys[i], map->values[i]);
    }
    if (errs->n == errs_before) {
        sl_schema_finish(out);
    }
out:
    return errs->n == errs_before ? 0 : -1;
}
