/* Scalar parsing and option tables: binds a YAML map into a C struct, checks
 * every value, and documents the table for docs/CONFIG.md. Defaults are text
 * parsed by the same code as the user's input, so they cannot disagree. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"

/* ---- scalar parsing ------------------------------------------------------ */

int sl_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    if (s == NULL) {
        return -1;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int sl_parse_int(const char *s, int64_t *out)
{
    if (s == NULL) {
        return -1;
    }
    const char *p = s + (s[0] == '+' || s[0] == '-');
    if (*p == '\0') {
        return -1;
    }
    for (const char *q = p; *q; q++) {
        if (!isdigit((unsigned char)*q)) {
            return -1;
        }
    }
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int sl_parse_double(const char *s, double *out)
{
    if (s == NULL || s[0] == '\0') {
        return -1;
    }
    bool digit = false;
    for (const char *q = s; *q; q++) {
        if (isdigit((unsigned char)*q)) {
            digit = true;
        } else if (strchr("+-.eE", *q) == NULL) {
            return -1; /* no hex floats, inf, nan or whitespace */
        }
    }
    if (!digit) {
        return -1;
    }
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v)) {
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct sl_unit {
    const char *name;
    int64_t mult;
} sl_unit_t;

/* Parses "<digits>[.<digits>]<unit>" (unit one of units, "" included when
 * bare numbers are allowed) into an exact integer of the base unit; "1.5s" is
 * 1500 but "1.5ms" is an error. Returns 0 or -1 (also on overflow). */
static int sl_parse_scaled(const char *s, const sl_unit_t *units, size_t n_units, int64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0])) {
        return -1;
    }
    const char *p = s;
    int64_t ip = 0;
    while (isdigit((unsigned char)*p)) {
        if (__builtin_mul_overflow(ip, 10, &ip) || __builtin_add_overflow(ip, *p - '0', &ip)) {
            return -1;
        }
        p++;
    }
    int64_t frac = 0, scale = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) {
            return -1;
        }
        for (; isdigit((unsigned char)*p); p++) {
            if (scale >= INT64_C(1000000000000000000)) {
                return -1; /* more than 18 fraction digits */
            }
            frac = frac * 10 + (*p - '0');
            scale *= 10;
        }
    }
    for (size_t i = 0; i < n_units; i++) {
        if (strcmp(p, units[i].name) != 0) {
            continue;
        }
        int64_t whole, part;
        if (__builtin_mul_overflow(ip, units[i].mult, &whole) ||
            __builtin_mul_overflow(frac, units[i].mult, &part) || part % scale != 0 ||
            __builtin_add_overflow(whole, part / scale, &whole)) {
            return -1;
        }
        *out = whole;
        return 0;
    }
    return -1;
}

static const sl_unit_t sl_duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

static const sl_unit_t sl_size_units[] = {
    {"", 1},
    {"B", 1},
    {"KiB", INT64_C(1) << 10},
    {"MiB", INT64_C(1) << 20},
    {"GiB", INT64_C(1) << 30},
    {"TiB", INT64_C(1) << 40},
    {"kB", 1000},
    {"KB", 1000},
    {"MB", 1000000},
    {"GB", 1000000000},
    {"TB", INT64_C(1000000000000)},
};

int sl_parse_duration_ms(const char *s, int64_t *out)
{
    return sl_parse_scaled(s, sl_duration_units, SL_ARRAY_LEN(sl_duration_units), out);
}

int sl_parse_size(const char *s, int64_t *out)
{
    return sl_parse_scaled(s, sl_size_units, SL_ARRAY_LEN(sl_size_units), out);
}

/* Writes v in the largest unit of units (ordered small to large) that
 * divides it exactly: 3600000 ms -> "1h", 1048576 bytes -> "1MiB". */
static void sl_opt_fmt_scaled(sl_buf_t *b, int64_t v, const sl_unit_t *units, size_t n_units,
                              const char *base)
{
    const char *name = base;
    int64_t mult = 1;
    for (size_t i = 0; i < n_units && v != 0; i++) {
        if (units[i].name[0] != '\0' && v % units[i].mult == 0 && units[i].mult > mult) {
            name = units[i].name;
            mult = units[i].mult;
        }
    }
    sl_buf_printf(b, "%" PRId64 "%s", v / mult, name);
}

static void sl_opt_fmt_value(sl_buf_t *b, sl_opt_type_t type, int64_t v)
{
    if (type == SL_OPT_DURATION) {
        sl_opt_fmt_scaled(b, v, sl_duration_units, SL_ARRAY_LEN(sl_duration_units), "ms");
    } else if (type == SL_OPT_SIZE) {
        /* binary units only: 1000 bytes stays "1000" */
        sl_opt_fmt_scaled(b, v, sl_size_units, 6, "");
    } else {
        sl_buf_printf(b, "%" PRId64, v);
    }
}

/* ---- option tables ------------------------------------------------------- */

static bool sl_opt_has_bounds(const sl_option_t *opt)
{
    return opt->min < opt->max &&
           (opt->type == SL_OPT_INT || opt->type == SL_OPT_DURATION || opt->type == SL_OPT_SIZE);
}

static void *sl_opt_field(const sl_option_t *opt, void *target)
{
    return (char *)target + opt->offset;
}

static void sl_opt_enum_list(sl_buf_t *b, const sl_option_t *opt, const char *quote)
{
    for (size_t i = 0; opt->enum_values && opt->enum_values[i]; i++) {
        sl_buf_printf(b, "%s%s%s%s", i ? ", " : "", quote, opt->enum_values[i], quote);
    }
}

/* What a value of the option looks like, for "must be ..." messages. */
static void sl_opt_expect(sl_buf_t *b, const sl_option_t *opt)
{
    switch (opt->type) {
    case SL_OPT_STRING:
        sl_buf_puts(b, "a string");
        break;
    case SL_OPT_INT:
        sl_buf_puts(b, "an integer");
        break;
    case SL_OPT_BOOL:
        sl_buf_puts(b, "true or false");
        break;
    case SL_OPT_DOUBLE:
        sl_buf_puts(b, "a number");
        break;
    case SL_OPT_DURATION:
        sl_buf_puts(b, "a duration (e.g. 500ms, 30s, 5m)");
        break;
    case SL_OPT_SIZE:
        sl_buf_puts(b, "a size (e.g. 512, 64KiB, 1MiB)");
        break;
    case SL_OPT_ENUM:
        sl_buf_puts(b, "one of ");
        sl_opt_enum_list(b, opt, "");
        break;
    case SL_OPT_STRLIST:
        sl_buf_puts(b, "a list of strings");
        break;
    case SL_OPT_STRMAP:
        sl_buf_puts(b, "a map of strings");
        break;
    case SL_OPT_HOSTPORT:
        sl_buf_puts(b, "host:port");
        break;
    }
}

static bool sl_opt_valid_hostport(const char *s)
{
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close == s + 1 || close[1] != ':') {
            return false;
        }
        for (const char *p = s + 1; p < close; p++) {
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.' && *p != '%' &&
                !isalnum((unsigned char)*p)) {
                return false;
            }
        }
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || colon == s || strchr(colon + 1, ':') != NULL) {
            return false; /* no port, no host, or an IPv6 address without [] */
        }
        for (const char *p = s; p < colon; p++) {
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_') {
                return false;
            }
        }
    }
    int64_t port;
    const char *digits = colon + 1;
    if (!isdigit((unsigned char)digits[0]) || strlen(digits) > 5 ||
        sl_parse_int(digits, &port) != 0) {
        return false;
    }
    return port >= 1 && port <= 65535;
}

static void sl_opt_strlist_free(sl_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void sl_opt_strmap_free(sl_strmap_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    free(m->lines);
    memset(m, 0, sizeof(*m));
}

/* Stores the scalar text into the option's field. Returns 0, or -1 with the
 * rest of a message in why: ": invalid ..." or " must be between ...". */
static int sl_opt_set_scalar(const sl_option_t *opt, void *target, const char *text, sl_buf_t *why)
{
    void *field = sl_opt_field(opt, target);
    int64_t i64;
    switch (opt->type) {
    case SL_OPT_STRING:
        free(*(char **)field);
        *(char **)field = sl_xstrdup(text);
        return 0;
    case SL_OPT_HOSTPORT:
        if (!sl_opt_valid_hostport(text)) {
            sl_buf_printf(
                why, ": invalid address '%s' (use host:port or [ipv6]:port, port 1-65535)", text);
            return -1;
        }
        free(*(char **)field);
        *(char **)field = sl_xstrdup(text);
        return 0;
    case SL_OPT_BOOL: {
        bool v;
        if (sl_parse_bool(text, &v) != 0) {
            sl_buf_printf(why, ": invalid boolean '%s' (use true or false)", text);
            return -1;
        }
        *(bool *)field = v;
        return 0;
    }
    case SL_OPT_DOUBLE: {
        double v;
        if (sl_parse_double(text, &v) != 0) {
            sl_buf_printf(why, ": invalid number '%s'", text);
            return -1;
        }
        *(double *)field = v;
        return 0;
    }
    case SL_OPT_INT:
        if (sl_parse_int(text, &i64) != 0) {
            sl_buf_printf(why, ": invalid integer '%s'", text);
            return -1;
        }
        goto bounds;
    case SL_OPT_DURATION:
        if (sl_parse_duration_ms(text, &i64) != 0) {
            sl_buf_printf(why, ": invalid duration '%s' (use e.g. 500ms, 30s, 5m)", text);
            return -1;
        }
        goto bounds;
    case SL_OPT_SIZE:
        if (sl_parse_size(text, &i64) != 0) {
            sl_buf_printf(why, ": invalid size '%s' (use e.g. 512, 64KiB, 1MiB, 10MB)", text);
            return -1;
        }
        goto bounds;
    case SL_OPT_ENUM:
        for (int k = 0; opt->enum_values && opt->enum_values[k]; k++) {
            if (strcmp(opt->enum_values[k], text) == 0) {
                *(int *)field = k;
                return 0;
            }
        }
        sl_buf_printf(why, ": invalid value '%s' (one of: ", text);
        sl_opt_enum_list(why, opt, "");
        sl_buf_putc(why, ')');
        return -1;
    case SL_OPT_STRLIST: {
        sl_strlist_t *l = field;
        sl_opt_strlist_free(l);
        l->items = sl_xmalloc(sizeof(*l->items));
        l->items[0] = sl_xstrdup(text);
        l->n = 1;
        return 0;
    }
    case SL_OPT_STRMAP:
        sl_buf_puts(why, " must be a map of strings, not a scalar");
        return -1;
    }
    sl_buf_puts(why, ": unknown option type");
    return -1;

bounds:
    if (sl_opt_has_bounds(opt) && (i64 < opt->min || i64 > opt->max)) {
        sl_buf_puts(why, " must be between ");
        sl_opt_fmt_value(why, opt->type, opt->min);
        sl_buf_puts(why, " and ");
        sl_opt_fmt_value(why, opt->type, opt->max);
        sl_buf_printf(why, ", got %s", text);
        return -1;
    }
    *(int64_t *)field = i64;
    return 0;
}

/* Initialises the option's field (the target may be uninitialised memory)
 * and applies its default. */
static void sl_opt_set_default(const sl_option_table_t *table, const sl_option_t *opt, void *target,
                               sl_errors_t *errs)
{
    void *field = sl_opt_field(opt, target);
    switch (opt->type) {
    case SL_OPT_STRING:
    case SL_OPT_HOSTPORT:
        *(char **)field = NULL;
        break;
    case SL_OPT_INT:
    case SL_OPT_DURATION:
    case SL_OPT_SIZE:
        *(int64_t *)field = 0;
        break;
    case SL_OPT_BOOL:
        *(bool *)field = false;
        break;
    case SL_OPT_DOUBLE:
        *(double *)field = 0.0;
        break;
    case SL_OPT_ENUM:
        *(int *)field = -1;
        break;
    case SL_OPT_STRLIST:
        memset(field, 0, sizeof(sl_strlist_t));
        break;
    case SL_OPT_STRMAP:
        memset(field, 0, sizeof(sl_strmap_t));
        break;
    }
    if (opt->def == NULL) {
        return;
    }
    sl_buf_t why = SL_BUF_INIT;
    if (sl_opt_set_scalar(opt, target, opt->def, &why) != 0) {
        sl_errors_add(errs, NULL, 0, 0, "bug: default of option '%s' in %s%s", opt->name,
                      table->section, why.data);
    }
    sl_buf_free(&why);
}

static void sl_opt_error_kind(const sl_option_table_t *table, const sl_option_t *opt,
                              const char *file, const sl_node_t *v, sl_errors_t *errs)
{
    sl_buf_t want = SL_BUF_INIT;
    sl_opt_expect(&want, opt);
    sl_errors_add(errs, file, v->line, v->col, "option '%s' in %s must be %s, got %s", opt->name,
                  table->section, want.data, sl_node_kind_name(v));
    sl_buf_free(&want);
}

static void sl_opt_apply_list(const sl_option_table_t *table, const sl_option_t *opt, void *target,
                              const sl_node_t *v, const char *file, sl_errors_t *errs)
{
    sl_strlist_t *l = sl_opt_field(opt, target);
    sl_opt_strlist_free(l);
    l->items = sl_xcalloc(v->n, sizeof(*l->items));
    for (size_t i = 0; i < v->n; i++) {
        const sl_node_t *item = v->values[i];
        if (item->kind != SL_NODE_SCALAR) {
            sl_errors_add(errs, file, item->line, item->col,
                          "option '%s' in %s: item %zu must be a string, got %s", opt->name,
                          table->section, i + 1, sl_node_kind_name(item));
            continue;
        }
        l->items[l->n++] = sl_xstrdup(item->scalar);
    }
}

static void sl_opt_apply_map(const sl_option_table_t *table, const sl_option_t *opt, void *target,
                             const sl_node_t *v, const char *file, sl_errors_t *errs)
{
    sl_strmap_t *m = sl_opt_field(opt, target);
    sl_opt_strmap_free(m);
    m->keys = sl_xcalloc(v->n, sizeof(*m->keys));
    m->values = sl_xcalloc(v->n, sizeof(*m->values));
    m->lines = sl_xcalloc(v->n, sizeof(*m->lines));
    for (size_t i = 0; i < v->n; i++) {
        const sl_node_t *val = v->values[i];
        if (val->kind != SL_NODE_SCALAR) {
            sl_errors_add(errs, file, val->line, val->col,
                          "option '%s' in %s: value of '%s' must be a scalar, got %s", opt->name,
                          table->section, v->keys[i]->scalar, sl_node_kind_name(val));
            continue;
        }
        m->keys[m->n] = sl_xstrdup(v->keys[i]->scalar);
        m->values[m->n] = sl_xstrdup(val->scalar);
        m->lines[m->n] = v->keys[i]->line;
        m->n++;
    }
}

static void sl_opt_apply_value(const sl_option_table_t *table, const sl_option_t *opt, void *target,
                               const sl_node_t *v, const char *file, sl_errors_t *errs)
{
    if (opt->type == SL_OPT_STRLIST && v->kind == SL_NODE_SEQ) {
        sl_opt_apply_list(table, opt, target, v, file, errs);
        return;
    }
    if (opt->type == SL_OPT_STRMAP) {
        if (v->kind != SL_NODE_MAP) {
            sl_opt_error_kind(table, opt, file, v, errs);
            return;
        }
        sl_opt_apply_map(table, opt, target, v, file, errs);
        return;
    }
    if (v->kind != SL_NODE_SCALAR) {
        sl_opt_error_kind(table, opt, file, v, errs);
        return;
    }
    sl_buf_t why = SL_BUF_INIT;
    if (sl_opt_set_scalar(opt, target, v->scalar, &why) != 0) {
        sl_errors_add(errs, file, v->line, v->col, "option '%s' in %s%s", opt->name, table->section,
                      why.data);
    }
    sl_buf_free(&why);
}

int sl_options_apply(const sl_option_table_t *table, void *target, const sl_node_t *map,
                     const char *file, sl_errors_t *errs)
{
    size_t errs_before = errs->n;
    bool *seen = sl_xcalloc(table->n_options, sizeof(*seen));
    const sl_node_t **empty = sl_xcalloc(table->n_options, sizeof(const sl_node_t *));

    for (size_t i = 0; i < table->n_options; i++) {
        sl_opt_set_default(table, &table->options[i], target, errs);
    }
    if (file == NULL && map != NULL) {
        file = map->file;
    }
    const sl_node_t *where = map; /* position of "missing required" errors */
    if (sl_node_is_null(map)) {
        map = NULL; /* `section:` with nothing: defaults only */
    } else if (map->kind != SL_NODE_MAP) {
        sl_errors_add(errs, file, map->line, map->col, "%s must be a map of options, got %s",
                      table->section, sl_node_kind_name(map));
        map = NULL;
    }

    for (size_t k = 0; map != NULL && k < map->n; k++) {
        const sl_node_t *key = map->keys[k], *v = map->values[k];
        const sl_option_t *opt = NULL;
        size_t i;
        for (i = 0; i < table->n_options; i++) {
            if (strcmp(table->options[i].name, key->scalar) == 0) {
                opt = &table->options[i];
                break;
            }
        }
        if (opt == NULL) {
            sl_buf_t known = SL_BUF_INIT;
            for (size_t j = 0; j < table->n_options; j++) {
                sl_buf_printf(&known, "%s%s", j ? ", " : "", table->options[j].name);
            }
            sl_errors_add(errs, file, key->line, key->col, "unknown option '%s' in %s (known: %s)",
                          key->scalar, table->section, known.data ? known.data : "none");
            sl_buf_free(&known);
            continue;
        }
        if (sl_node_is_null(v)) {
            empty[i] = key; /* `key:` with nothing: keeps the default */
            continue;
        }
        seen[i] = true;
        sl_opt_apply_value(table, opt, target, v, file, errs);
    }

    for (size_t i = 0; i < table->n_options; i++) {
        if (!table->options[i].required || seen[i]) {
            continue;
        }
        const sl_node_t *at = empty[i] ? empty[i] : where;
        sl_errors_add(errs, file, at ? at->line : 0, at ? at->col : 0,
                      "missing required option '%s' in %s%s", table->options[i].name,
                      table->section, empty[i] ? " (it is empty)" : "");
    }
    free(seen);
    free(empty);
    return errs->n == errs_before ? 0 : -1;
}

void sl_options_free(const sl_option_table_t *table, void *target)
{
    if (target == NULL) {
        return;
    }
    for (size_t i = 0; i < table->n_options; i++) {
        const sl_option_t *opt = &table->options[i];
        void *field = sl_opt_field(opt, target);
        switch (opt->type) {
        case SL_OPT_STRING:
        case SL_OPT_HOSTPORT:
            free(*(char **)field);
            *(char **)field = NULL;
            break;
        case SL_OPT_STRLIST:
            sl_opt_strlist_free(field);
            break;
        case SL_OPT_STRMAP:
            sl_opt_strmap_free(field);
            break;
        default:
            break;
        }
    }
}

/* Appends s for a Markdown table cell: '|' escaped, newlines as spaces. */
static void sl_opt_doc_cell(sl_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') {
            sl_buf_puts(out, "\\|");
        } else if (*s == '\n' || *s == '\r') {
            sl_buf_putc(out, ' ');
        } else {
            sl_buf_putc(out, *s);
        }
    }
}

static const char *sl_opt_type_name(sl_opt_type_t type)
{
    switch (type) {
    case SL_OPT_STRING:
        return "string";
    case SL_OPT_INT:
        return "int";
    case SL_OPT_BOOL:
        return "bool";
    case SL_OPT_DOUBLE:
        return "number";
    case SL_OPT_DURATION:
        return "duration";
    case SL_OPT_SIZE:
        return "size";
    case SL_OPT_ENUM:
        return "enum";
    case SL_OPT_STRLIST:
        return "list of strings";
    case SL_OPT_STRMAP:
        return "map of strings";
    case SL_OPT_HOSTPORT:
        return "host:port";
    }
    return "?";
}

void sl_options_doc(const sl_option_table_t *table, sl_buf_t *out)
{
    sl_buf_printf(out, "### `%s`\n\n", table->section);
    if (table->doc != NULL && table->doc[0] != '\0') {
        sl_buf_printf(out, "%s\n\n", table->doc);
    }
    sl_buf_puts(out, "| Option | Type | Default | Description |\n");
    sl_buf_puts(out, "|---|---|---|---|\n");
    for (size_t i = 0; i < table->n_options; i++) {
        const sl_option_t *opt = &table->options[i];
        sl_buf_t cell = SL_BUF_INIT;
        sl_buf_printf(out, "| `%s` | ", opt->name);

        sl_buf_puts(&cell, sl_opt_type_name(opt->type));
        if (opt->type == SL_OPT_ENUM) {
            sl_buf_puts(&cell, " (");
            sl_opt_enum_list(&cell, opt, "`");
            sl_buf_putc(&cell, ')');
        } else if (sl_opt_has_bounds(opt)) {
            sl_buf_puts(&cell, " (");
            sl_opt_fmt_value(&cell, opt->type, opt->min);
            sl_buf_puts(&cell, "..");
            sl_opt_fmt_value(&cell, opt->type, opt->max);
            sl_buf_putc(&cell, ')');
        }
        sl_opt_doc_cell(out, cell.data);
        sl_buf_puts(out, " | ");

        sl_buf_reset(&cell);
        if (opt->required) {
            sl_buf_puts(&cell, "required");
        } else if (opt->def == NULL) {
            sl_buf_puts(&cell, "(none)");
        } else if (opt->def[0] == '\0') {
            sl_buf_puts(&cell, "`\"\"`");
        } else {
            sl_buf_printf(&cell, "`%s`", opt->def);
        }
        sl_opt_doc_cell(out, cell.data);
        sl_buf_puts(out, " | ");

        sl_opt_doc_cell(out, opt->doc ? opt->doc : "");
        sl_buf_puts(out, " |\n");
        sl_buf_free(&cell);
    }
    sl_buf_putc(out, '\n');
}
