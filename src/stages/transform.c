/* transform (rename, drop, set, lookup) and filter: config parsing into a
 * record schema and a list of compiled steps, and the per-record run. */
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "stages/enrich.h"
#include "stages/expr.h"
#include "stages/stages.h"

typedef enum { TF_SET = 0, TF_LOOKUP, TF_FILTER, TF_ENRICH } tf_kind_t;

/* Glob shapes matched without fnmatch (~5x faster): "a*", "*a", "*a*", "*"
 * where a holds no * ? [ or backslash. */
typedef enum {
    TF_GLOB_FNMATCH = 0,
    TF_GLOB_PREFIX,
    TF_GLOB_SUFFIX,
    TF_GLOB_CONTAINS
} tf_glob_kind_t;

/* How a computed value is stored into its field. */
typedef enum { TF_STORE_AS_IS = 0, TF_STORE_INT32, TF_STORE_DOUBLE } tf_store_t;

/* One exact key of a lookup map (open addressing on the key bytes). */
typedef struct tf_entry {
    char *key; /* owned; NULL: empty slot */
    size_t key_len;
    uint32_t value; /* index into values */
} tf_entry_t;

typedef struct tf_step {
    tf_kind_t kind;
    int line;     /* config line, for reasons */
    char *name;   /* the field it writes, as named at this step (owned) */
    size_t field; /* the field it writes */
    /* ENRICH */
    sl_enrich_t *enrich;
    /* SET */
    sl_expr_t *expr;
    tf_store_t store;
    /* LOOKUP */
    size_t from;
    tf_entry_t *table; /* n_slots entries */
    size_t n_slots;
    char **globs;       /* patterns with * ? [ ], tried in order after the exact keys */
    uint8_t *glob_kind; /* tf_glob_kind_t: the common shapes skip fnmatch */
    uint32_t *glob_value;
    size_t n_globs;
    char **values; /* owned, the distinct right-hand sides */
    size_t n_values;
    char *def; /* default value, NULL: null */
} tf_step_t;

struct sl_stages {
    tf_step_t *steps;
    size_t n_steps;
    sl_expr_t *filter;
    int filter_line;
};

/* ---- building the record schema ---------------------------------------------------------- */

static void tf_copy_input(const sl_schema_t *input, sl_schema_t *record)
{
    memset(record, 0, sizeof(*record));
    record->unknown = input->unknown;
    for (size_t i = 0; i < input->n_fields; i++) {
        (void)sl_schema_add(record, input->fields[i].name, input->fields[i].type,
                            input->fields[i].line);
    }
    sl_schema_finish(record);
}

static size_t tf_add_field(sl_schema_t *record, const char *name, sl_type_t type, int line)
{
    size_t f = sl_schema_add(record, name, type, line);
    sl_schema_finish(record);
    return f;
}

static bool tf_valid_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) {
        return false;
    }
    for (s++; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_')) {
            return false;
        }
    }
    return true;
}

/* The fields of record, visible ones, as "a, b, c" for messages. */
static void tf_field_list(const sl_schema_t *record, sl_buf_t *out)
{
    for (size_t i = 0; i < record->n_fields; i++) {
        if (!record->fields[i].hidden) {
            if (out->len > 0) {
                sl_buf_puts(out, ", ");
            }
            sl_buf_puts(out, record->fields[i].name);
        }
    }
    if (out->len == 0) {
        sl_buf_puts(out, "(none)");
    }
}

/* Finds a visible field or reports it. */
static int tf_field(const sl_schema_t *record, const sl_node_t *at, const char *name,
                    const char *what, sl_errors_t *errs)
{
    int f = sl_schema_find(record, name, strlen(name));
    if (f < 0) {
        sl_buf_t known = SL_BUF_INIT;
        tf_field_list(record, &known);
        sl_errors_add(errs, at->file, at->line, at->col,
                      "%s: no field '%s' at this step (fields: %s)", what, name, known.data);
        sl_buf_free(&known);
    }
    return f;
}

/* ---- steps ------------------------------------------------------------------------------- */

static int tf_rename(const sl_node_t *map, sl_schema_t *record, sl_errors_t *errs)
{
    if (map->kind != SL_NODE_MAP) {
        sl_errors_add(errs, map->file, map->line, map->col,
                      "rename: expected a map old_name: new_name, got %s", sl_node_kind_name(map));
        return -1;
    }
    int bad = 0;
    for (size_t i = 0; i < map->n; i++) {
        const sl_node_t *k = map->keys[i], *v = map->values[i];
        int f = tf_field(record, k, k->scalar, "rename", errs);
        if (f < 0) {
            bad = -1;
            continue;
        }
        if (v->kind != SL_NODE_SCALAR || !tf_valid_name(v->scalar)) {
            sl_errors_add(errs, v->file, v->line, v->col,
                          "rename: the new name of '%s' must be a name of letters, digits and _",
                          k->scalar);
            bad = -1;
            continue;
        }
        if (sl_schema_find(record, v->scalar, strlen(v->scalar)) >= 0) {
            sl_errors_add(errs, v->file, v->line, v->col,
                          "rename: a field '%s' exists already: drop it first or pick another name",
                          v->scalar);
            bad = -1;
            continue;
        }
        sl_field_t *fld = &record->fields[f];
        free(fld->name);
        fld->name = sl_xstrdup(v->scalar);
        fld->name_len = strlen(fld->name);
        sl_schema_finish(record);
    }
    return bad;
}

static int tf_drop(const sl_node_t *node, sl_schema_t *record, sl_errors_t *errs)
{
    const sl_node_t *const *items = (const sl_node_t *const *)&node;
    size_t n = 1;
    if (node->kind == SL_NODE_SEQ) {
        items = (const sl_node_t *const *)node->values;
        n = node->n;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i]->kind != SL_NODE_SCALAR) {
            sl_errors_add(errs, items[i]->file, items[i]->line, items[i]->col,
                          "drop: expected a field name or a list of them");
            bad = -1;
            continue;
        }
        int f = tf_field(record, items[i], items[i]->scalar, "drop", errs);
        if (f < 0) {
            bad = -1;
            continue;
        }
        record->fields[f].hidden = true;
        sl_schema_finish(record);
    }
    return bad;
}

/* The column in the file of byte col (1-based) of an expression scalar. */
static int tf_expr_col(const sl_node_t *node, int col)
{
    return node->col + col - 1 + (node->quoted ? 1 : 0);
}

static int tf_set_one(const sl_node_t *key, const sl_node_t *val, sl_schema_t *record,
                      tf_step_t *st, sl_errors_t *errs)
{
    const sl_node_t *text = val, *type_node = NULL;
    if (val->kind == SL_NODE_MAP) {
        static const char *const keys[] = {"expr", "type", NULL};
        text = sl_node_get(val, "expr");
        type_node = sl_node_get(val, "type");
        if (sl_node_check_keys(val, keys, "set", errs) != 0) {
            return -1;
        }
    }
    if (text == NULL || text->kind != SL_NODE_SCALAR) {
        sl_errors_add(errs, val->file, val->line, val->col,
                      "set: '%s' needs an expression, e.g. %s: \"lower(name)\" or "
                      "{expr: \"...\", type: int32}",
                      key->scalar, key->scalar);
        return -1;
    }
    if (!tf_valid_name(key->scalar)) {
        sl_errors_add(errs, key->file, key->line, key->col,
                      "set: '%s' is not a field name (letters, digits and _)", key->scalar);
        return -1;
    }
    sl_expr_error_t ee;
    st->expr = sl_expr_compile(text->scalar, strlen(text->scalar), record, record->n_fields, &ee);
    if (st->expr == NULL) {
        sl_errors_add(errs, text->file, text->line, tf_expr_col(text, ee.col), "set %s: %s",
                      key->scalar, ee.msg);
        return -1;
    }
    sl_type_t have = sl_expr_type(st->expr);
    sl_type_t want = have;
    if (type_node != NULL &&
        (type_node->kind != SL_NODE_SCALAR || sl_type_parse(type_node->scalar, &want) != 0)) {
        sl_errors_add(errs, type_node->file, type_node->line, type_node->col,
                      "set %s: unknown type (string, int32, int64, double, bool, date, "
                      "timestamp)",
                      key->scalar);
        return -1;
    }
    int f = sl_schema_find(record, key->scalar, strlen(key->scalar));
    if (f >= 0 && type_node == NULL) {
        want = record->fields[f].type; /* overwrite in place: the field keeps its type */
    }
    if (want == have || (want == SL_TYPE_INT32 && have == SL_TYPE_INT64)) {
        st->store = want == SL_TYPE_INT32 ? TF_STORE_INT32 : TF_STORE_AS_IS;
    } else if (want == SL_TYPE_DOUBLE && have == SL_TYPE_INT64) {
        st->store = TF_STORE_DOUBLE;
    } else {
        sl_errors_add(errs, text->file, text->line, text->col,
                      "set %s: the expression gives %s but the field is %s: convert it (int(), "
                      "double(), string(), date(), timestamp_ms())",
                      key->scalar, sl_type_name(have), sl_type_name(want));
        return -1;
    }
    if (f >= 0 && record->fields[f].type != want) {
        sl_errors_add(errs, key->file, key->line, key->col,
                      "set %s: the field is %s, not %s: drop it first to redefine it", key->scalar,
                      sl_type_name(record->fields[f].type), sl_type_name(want));
        return -1;
    }
    st->kind = TF_SET;
    st->line = key->line;
    st->name = sl_xstrdup(key->scalar);
    st->field = f >= 0 ? (size_t)f : tf_add_field(record, key->scalar, want, key->line);
    return 0;
}

static tf_glob_kind_t tf_glob_kind(const char *s, size_t n)
{
    bool lead = n > 0 && s[0] == '*', trail = n > 1 && s[n - 1] == '*';
    for (size_t i = lead; i < n - trail; i++) {
        if (s[i] == '*' || s[i] == '?' || s[i] == '[' || s[i] == '\\') {
            return TF_GLOB_FNMATCH;
        }
    }
    return lead && trail ? TF_GLOB_CONTAINS : lead ? TF_GLOB_SUFFIX : TF_GLOB_PREFIX;
}

/* Whether s (n bytes, no NUL) matches glob i. */
static bool tf_glob_match(const tf_step_t *st, size_t i, const char *s, size_t n, const char *z)
{
    const char *g = st->globs[i];
    size_t gl = strlen(g);
    switch ((tf_glob_kind_t)st->glob_kind[i]) {
    case TF_GLOB_PREFIX:
        return n >= gl - 1 && memcmp(s, g, gl - 1) == 0;
    case TF_GLOB_SUFFIX:
        return n >= gl - 1 && memcmp(s + n - (gl - 1), g + 1, gl - 1) == 0;
    case TF_GLOB_CONTAINS:
        return gl <= 2 || (n >= gl - 2 && memmem(s, n, g + 1, gl - 2) != NULL);
    case TF_GLOB_FNMATCH:
        break;
    }
    return fnmatch(g, z, 0) == 0;
}

static bool tf_is_glob(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*' || s[i] == '?' || s[i] == '[') {
            return true;
        }
    }
    return false;
}

/* Adds one alternative (s, n bytes) of a lookup key. */
static int tf_lookup_key(tf_step_t *st, const char *s, size_t n, uint32_t value,
                         const sl_node_t *at, sl_errors_t *errs)
{
    if (n == 0) {
        sl_errors_add(errs, at->file, at->line, at->col,
                      "lookup: empty alternative in '%s' (use 'a|b', not 'a||b')", at->scalar);
        return -1;
    }
    if (tf_is_glob(s, n)) {
        st->globs = sl_xrealloc(st->globs, (st->n_globs + 1) * sizeof(char *));
        st->glob_kind = sl_xrealloc(st->glob_kind, st->n_globs + 1);
        st->glob_value = sl_xrealloc(st->glob_value, (st->n_globs + 1) * sizeof(uint32_t));
        st->globs[st->n_globs] = sl_xstrndup(s, n);
        st->glob_kind[st->n_globs] = tf_glob_kind(s, n);
        st->glob_value[st->n_globs++] = value;
        return 0;
    }
    size_t slot = (size_t)XXH3_64bits(s, n) & (st->n_slots - 1);
    while (st->table[slot].key != NULL) {
        if (st->table[slot].key_len == n && memcmp(st->table[slot].key, s, n) == 0) {
            sl_errors_add(errs, at->file, at->line, at->col, "lookup: '%.*s' is mapped twice",
                          (int)n, s);
            return -1;
        }
        slot = (slot + 1) & (st->n_slots - 1);
    }
    st->table[slot] = (tf_entry_t){sl_xstrndup(s, n), n, value};
    return 0;
}

static int tf_lookup(const sl_node_t *map, sl_schema_t *record, tf_step_t *st, sl_errors_t *errs)
{
    static const char *const keys[] = {"from", "to", "map", "default", NULL};
    if (map->kind != SL_NODE_MAP) {
        sl_errors_add(errs, map->file, map->line, map->col,
                      "lookup: expected a map {from: FIELD, to: FIELD, map: {...}, default: ...}");
        return -1;
    }
    if (sl_node_check_keys(map, keys, "lookup", errs) != 0) {
        return -1;
    }
    const sl_node_t *from = sl_node_get(map, "from"), *to = sl_node_get(map, "to");
    const sl_node_t *m = sl_node_get(map, "map"), *def = sl_node_get(map, "default");
    if (from == NULL || to == NULL || m == NULL || from->kind != SL_NODE_SCALAR ||
        to->kind != SL_NODE_SCALAR || m->kind != SL_NODE_MAP) {
        sl_errors_add(errs, map->file, map->line, map->col,
                      "lookup: needs from: FIELD, to: FIELD and map: {key: value, ...}");
        return -1;
    }
    int f = tf_field(record, from, from->scalar, "lookup from", errs);
    if (f < 0) {
        return -1;
    }
    if (record->fields[f].type != SL_TYPE_STRING) {
        sl_errors_add(errs, from->file, from->line, from->col,
                      "lookup: '%s' is %s; lookups map strings (convert it with a set step: "
                      "string(%s))",
                      from->scalar, sl_type_name(record->fields[f].type), from->scalar);
        return -1;
    }
    if (!tf_valid_name(to->scalar)) {
        sl_errors_add(errs, to->file, to->line, to->col,
                      "lookup: '%s' is not a field name (letters, digits and _)", to->scalar);
        return -1;
    }
    if (def != NULL && def->kind != SL_NODE_SCALAR) {
        sl_errors_add(errs, def->file, def->line, def->col, "lookup: default must be a string");
        return -1;
    }
    st->kind = TF_LOOKUP;
    st->line = map->line;
    st->name = sl_xstrdup(to->scalar);
    st->from = (size_t)f;
    st->n_slots = 16;
    while (st->n_slots < m->n * 4) {
        st->n_slots *= 2;
    }
    st->table = sl_xcalloc(st->n_slots, sizeof(tf_entry_t));
    st->values = sl_xcalloc(m->n + 1, sizeof(char *));
    st->def = def != NULL && !sl_node_is_null(def) ? sl_xstrdup(def->scalar) : NULL;
    for (size_t i = 0; i < m->n; i++) {
        const sl_node_t *k = m->keys[i], *v = m->values[i];
        if (v->kind != SL_NODE_SCALAR) {
            sl_errors_add(errs, v->file, v->line, v->col,
                          "lookup: the value of '%s' must be a string", k->scalar);
            return -1;
        }
        uint32_t value = (uint32_t)st->n_values;
        st->values[st->n_values++] = sl_xstrdup(v->scalar);
        const char *s = k->scalar;
        for (;;) {
            const char *bar = strchr(s, '|');
            size_t n = bar ? (size_t)(bar - s) : strlen(s);
            if (tf_lookup_key(st, s, n, value, k, errs) != 0) {
                return -1;
            }
            if (bar == NULL) {
                break;
            }
            s = bar + 1;
        }
    }
    int out = sl_schema_find(record, to->scalar, strlen(to->scalar));
    if (out >= 0 && record->fields[out].type != SL_TYPE_STRING) {
        sl_errors_add(errs, to->file, to->line, to->col,
                      "lookup: the field '%s' is %s; a lookup writes strings (drop it first to "
                      "redefine it)",
                      to->scalar, sl_type_name(record->fields[out].type));
        return -1;
    }
    st->field = out >= 0 ? (size_t)out : tf_add_field(record, to->scalar, SL_TYPE_STRING, to->line);
    return 0;
}

/* A filter step (or the top-level filter): compiles a bool expression. */
static sl_expr_t *tf_filter_compile(const sl_node_t *node, const sl_schema_t *record,
                                    sl_errors_t *errs)
{
    if (node->kind != SL_NODE_SCALAR) {
        sl_errors_add(errs, node->file, node->line, node->col,
                      "filter must be an expression, e.g. filter: \"user_id != owner_id && "
                      "ad_id != null\"");
        return NULL;
    }
    sl_expr_error_t ee;
    sl_expr_t *e =
        sl_expr_compile(node->scalar, strlen(node->scalar), record, record->n_fields, &ee);
    if (e == NULL) {
        sl_errors_add(errs, node->file, node->line, tf_expr_col(node, ee.col), "filter: %s",
                      ee.msg);
        return NULL;
    }
    if (sl_expr_type(e) != SL_TYPE_BOOL) {
        sl_errors_add(errs, node->file, node->line, node->col,
                      "filter: the expression gives %s, not bool (compare it: e.g. views > 0)",
                      sl_type_name(sl_expr_type(e)));
        sl_expr_destroy(e);
        return NULL;
    }
    return e;
}

/* ---- parse ------------------------------------------------------------------------------- */

static void tf_step_free(tf_step_t *st)
{
    free(st->name);
    sl_enrich_destroy(st->enrich);
    sl_expr_destroy(st->expr);
    for (size_t i = 0; st->table != NULL && i < st->n_slots; i++) {
        free(st->table[i].key);
    }
    free(st->table);
    for (size_t i = 0; i < st->n_globs; i++) {
        free(st->globs[i]);
    }
    free(st->globs);
    free(st->glob_kind);
    free(st->glob_value);
    for (size_t i = 0; i < st->n_values; i++) {
        free(st->values[i]);
    }
    free(st->values);
    free(st->def);
}

static tf_step_t *tf_new_step(sl_stages_t *st)
{
    st->steps = sl_xrealloc(st->steps, (st->n_steps + 1) * sizeof(tf_step_t));
    tf_step_t *s = &st->steps[st->n_steps++];
    memset(s, 0, sizeof(*s));
    return s;
}

static int tf_parse_steps(const sl_node_t *list, const char *config_dir, sl_schema_t *record,
                          sl_stages_t *st, sl_errors_t *errs)
{
    if (list->kind != SL_NODE_SEQ) {
        sl_errors_add(errs, list->file, list->line, list->col,
                      "transform must be a list of steps, e.g. - rename: {a: b}, - drop: [c], "
                      "- set: {d: \"lower(e)\"}, - lookup: {from: ..., to: ..., map: {...}}");
        return -1;
    }
    int bad = 0;
    for (size_t i = 0; i < list->n; i++) {
        const sl_node_t *step = list->values[i];
        if (step->kind != SL_NODE_MAP || step->n != 1) {
            sl_errors_add(errs, step->file, step->line, step->col,
                          "a transform step is a map with one key: rename, drop, set, lookup, "
                          "enrich or filter");
            bad = -1;
            continue;
        }
        const char *kind = step->keys[0]->scalar;
        const sl_node_t *arg = step->values[0];
        if (strcmp(kind, "rename") == 0) {
            bad |= tf_rename(arg, record, errs);
        } else if (strcmp(kind, "drop") == 0) {
            bad |= tf_drop(arg, record, errs);
        } else if (strcmp(kind, "set") == 0) {
            if (arg->kind != SL_NODE_MAP) {
                sl_errors_add(errs, arg->file, arg->line, arg->col,
                              "set: expected a map field: \"expression\"");
                bad = -1;
                continue;
            }
            for (size_t j = 0; j < arg->n; j++) {
                tf_step_t *s = tf_new_step(st);
                if (tf_set_one(arg->keys[j], arg->values[j], record, s, errs) != 0) {
                    tf_step_free(s);
                    st->n_steps--;
                    bad = -1;
                }
            }
        } else if (strcmp(kind, "filter") == 0) {
            sl_expr_t *e = tf_filter_compile(arg, record, errs);
            if (e == NULL) {
                bad = -1;
                continue;
            }
            tf_step_t *s = tf_new_step(st);
            s->kind = TF_FILTER;
            s->line = arg->line;
            s->expr = e;
        } else if (strcmp(kind, "enrich") == 0) {
            sl_enrich_t *en = sl_enrich_parse(arg, config_dir, record, errs);
            if (en == NULL) {
                bad = -1;
                continue;
            }
            tf_step_t *s = tf_new_step(st);
            s->kind = TF_ENRICH;
            s->line = arg->line;
            s->enrich = en;
        } else if (strcmp(kind, "lookup") == 0) {
            tf_step_t *s = tf_new_step(st);
            if (tf_lookup(arg, record, s, errs) != 0) {
                tf_step_free(s);
                st->n_steps--;
                bad = -1;
            }
        } else {
            sl_errors_add(errs, step->keys[0]->file, step->keys[0]->line, step->keys[0]->col,
                          "unknown transform step '%s' (known: rename, drop, set, lookup, enrich, "
                          "filter)",
                          kind);
            bad = -1;
        }
    }
    return bad;
}

sl_stages_t *sl_stages_parse(const sl_node_t *transform, const sl_node_t *filter, const char *file,
                             const sl_schema_t *input, sl_schema_t *record, sl_errors_t *errs,
                             int *bad)
{
    tf_copy_input(input, record);
    if (transform == NULL && filter == NULL) {
        return NULL;
    }
    sl_stages_t *st = sl_xcalloc(1, sizeof(*st));
    /* relative enrich files are found next to the config */
    char dir[4096] = ".";
    const char *slash = file != NULL ? strrchr(file, '/') : NULL;
    if (slash != NULL) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
    }
    if (transform != NULL && tf_parse_steps(transform, dir, record, st, errs) != 0) {
        *bad = -1;
    }
    if (filter != NULL) {
        st->filter = tf_filter_compile(filter, record, errs);
        st->filter_line = filter->line;
        if (st->filter == NULL) {
            *bad = -1;
        }
    }
    return st;
}

int sl_stages_start(sl_stages_t *st, const char *brokers, char *err)
{
    for (size_t i = 0; st != NULL && i < st->n_steps; i++) {
        if (st->steps[i].enrich != NULL &&
            sl_enrich_start(st->steps[i].enrich, brokers, err) != 0) {
            return -1;
        }
    }
    return 0;
}

void sl_stages_destroy(sl_stages_t *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < st->n_steps; i++) {
        tf_step_free(&st->steps[i]);
    }
    free(st->steps);
    sl_expr_destroy(st->filter);
    free(st);
}

/* ---- run --------------------------------------------------------------------------------- */

/* Puts the step that failed in front of the reason an expression gave. */
static void tf_reason_prefix(sl_reason_t *why, const char *fmt, ...) SL_PRINTF(2, 3);
static void tf_reason_prefix(sl_reason_t *why, const char *fmt, ...)
{
    char head[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    /* the reason is cut if the two do not fit */
    size_t h = strlen(head), t = strnlen(why->text, sizeof(why->text) - 1);
    if (h >= sizeof(why->text)) {
        h = sizeof(why->text) - 1;
    }
    if (h + t >= sizeof(why->text)) {
        t = sizeof(why->text) - 1 - h;
    }
    memmove(why->text + h, why->text, t);
    memcpy(why->text, head, h);
    why->text[h + t] = '\0';
}

static const char *tf_lookup_run(const tf_step_t *st, const sl_value_t *v)
{
    if (v->is_null) {
        return st->def;
    }
    const char *s = v->u.s.ptr;
    size_t n = v->u.s.len;
    size_t slot = (size_t)XXH3_64bits(s, n) & (st->n_slots - 1);
    while (st->table[slot].key != NULL) {
        if (st->table[slot].key_len == n && memcmp(st->table[slot].key, s, n) == 0) {
            return st->values[st->table[slot].value];
        }
        slot = (slot + 1) & (st->n_slots - 1);
    }
    if (st->n_globs > 0 && memchr(s, '\0', n) == NULL) {
        /* fnmatch wants a C string: made only if a pattern needs it */
        char small[256];
        char *z = NULL;
        const char *hit = NULL;
        for (size_t i = 0; i < st->n_globs && hit == NULL; i++) {
            if (st->glob_kind[i] == TF_GLOB_FNMATCH && z == NULL) {
                z = n < sizeof(small) ? small : sl_xmalloc(n + 1);
                memcpy(z, s, n);
                z[n] = '\0';
            }
            if (tf_glob_match(st, i, s, n, z)) {
                hit = st->values[st->glob_value[i]];
            }
        }
        if (z != NULL && z != small) {
            free(z);
        }
        if (hit != NULL) {
            return hit;
        }
    }
    return st->def;
}

sl_stage_result_t sl_stages_run(const sl_stages_t *st, sl_value_t *rec, sl_arena_t *arena,
                                unsigned reader, sl_reason_t *why)
{
    if (st == NULL) {
        return SL_STAGE_KEEP;
    }
    for (size_t i = 0; i < st->n_steps; i++) {
        const tf_step_t *s = &st->steps[i];
        sl_value_t *out = &rec[s->field];
        if (s->kind == TF_FILTER) {
            bool keep = false;
            if (sl_expr_eval_bool(s->expr, rec, arena, &keep, why) != 0) {
                tf_reason_prefix(why, "transform filter (line %d): ", s->line);
                return SL_STAGE_REJECT;
            }
            if (!keep) {
                return SL_STAGE_DROP;
            }
            continue;
        }
        if (s->kind == TF_ENRICH) {
            sl_enrich_run(s->enrich, rec, arena, reader);
            continue;
        }
        if (s->kind == TF_LOOKUP) {
            const char *hit = tf_lookup_run(s, &rec[s->from]);
            out->is_null = hit == NULL;
            if (hit != NULL) {
                out->u.s = (sl_str_t){hit, strlen(hit)};
            }
            continue;
        }
        sl_value_t v;
        if (sl_expr_eval(s->expr, rec, arena, &v, why) != 0) {
            tf_reason_prefix(why, "transform set %s (line %d): ", s->name, s->line);
            return SL_STAGE_REJECT;
        }
        if (!v.is_null && s->store == TF_STORE_INT32 && (v.u.i < INT32_MIN || v.u.i > INT32_MAX)) {
            snprintf(why->text, sizeof(why->text),
                     "transform set %s (line %d): %lld is out of range for int32", s->name, s->line,
                     (long long)v.u.i);
            return SL_STAGE_REJECT;
        }
        if (!v.is_null && s->store == TF_STORE_DOUBLE) {
            v.u.d = (double)v.u.i;
        }
        *out = v;
    }
    if (st->filter != NULL) {
        bool keep = false;
        if (sl_expr_eval_bool(st->filter, rec, arena, &keep, why) != 0) {
            tf_reason_prefix(why, "filter (line %d): ", st->filter_line);
            return SL_STAGE_REJECT;
        }
        return keep ? SL_STAGE_KEEP : SL_STAGE_DROP;
    }
    return SL_STAGE_KEEP;
}
