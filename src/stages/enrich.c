/* enrich: a lookup table from a CSV or NDJSON file (or a Kafka topic:
 * enrich_topic.c), joined on one field. */
#include "stages/enrich.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codecs/json.h"
#include "stages/enrich_int.h"
#include "util/arena.h"

#define EN_MAX_FILE (1024u * 1024u * 1024u) /* 1 GiB: the whole table lives in memory */

static uint64_t en_hash(const sl_enrich_t *e, const sl_value_t *k)
{
    if (e->int_key) {
        uint64_t x = (uint64_t)k->u.i * 0x9e3779b97f4a7c15ull;
        return x ^ (x >> 29);
    }
    return XXH3_64bits(k->u.s.ptr, k->u.s.len);
}

static bool en_key_eq(const sl_enrich_t *e, const sl_value_t *a, const sl_value_t *b)
{
    if (e->int_key) {
        return a->u.i == b->u.i;
    }
    return a->u.s.len == b->u.s.len && memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
}

/* Returns the row of t holding key, or -1. */
static long en_find(const sl_enrich_t *e, const en_table_t *t, const sl_value_t *key)
{
    size_t mask = t->n_slots - 1;
    for (size_t slot = (size_t)en_hash(e, key) & mask;; slot = (slot + 1) & mask) {
        uint32_t r = t->slots[slot];
        if (r == 0) {
            return -1;
        }
        if (en_key_eq(e, &t->rows[(size_t)(r - 1) * (1 + e->n_out)], key)) {
            return (long)(r - 1);
        }
    }
}

en_table_t *en_table_new(void)
{
    en_table_t *t = sl_xcalloc(1, sizeof(*t));
    sl_arena_init(&t->arena, 0);
    return t;
}

void en_table_free(en_table_t *t)
{
    if (t != NULL) {
        free(t->rows);
        free(t->slots);
        free(t->data);
        sl_arena_free(&t->arena);
        free(t);
    }
}

long en_table_index(const sl_enrich_t *e, en_table_t *t)
{
    t->n_slots = 16;
    while (t->n_slots < t->n_rows * 2) {
        t->n_slots *= 2;
    }
    free(t->slots);
    t->slots = sl_xcalloc(t->n_slots, sizeof(uint32_t));
    for (size_t r = 0; r < t->n_rows; r++) {
        const sl_value_t *k = &t->rows[r * (1 + e->n_out)];
        if (en_find(e, t, k) >= 0) {
            return (long)r;
        }
        size_t slot = (size_t)en_hash(e, k) & (t->n_slots - 1);
        while (t->slots[slot] != 0) {
            slot = (slot + 1) & (t->n_slots - 1);
        }
        t->slots[slot] = (uint32_t)(r + 1);
    }
    return -1;
}

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct en_load {
    sl_enrich_t *e;
    en_table_t *t;
    const char *path;       /* for messages */
    const sl_type_t *types; /* 1 + n_out: the key's, then the fields' */
    sl_errors_t *errs;
    const sl_node_t *at;
} en_load_t;

sl_value_t *en_new_row(const sl_enrich_t *e, en_table_t *t)
{
    size_t w = 1 + e->n_out;
    if (t->n_rows == t->cap_rows) {
        t->cap_rows = t->cap_rows ? t->cap_rows * 2 : 256;
        t->rows = sl_xrealloc(t->rows, t->cap_rows * w * sizeof(sl_value_t));
    }
    sl_value_t *row = &t->rows[t->n_rows++ * w];
    for (size_t i = 0; i < w; i++) {
        row[i].is_null = true;
    }
    return row;
}

/* Converts a CSV cell (s, n bytes; quoted: it was in quotes) to type t. */
static int en_cell(const char *s, size_t n, bool quoted, sl_type_t t, sl_value_t *v, char *why,
                   size_t why_len)
{
    v->is_null = n == 0 && !quoted;
    if (v->is_null) {
        return 0;
    }
    if (t == SL_TYPE_STRING) {
        v->u.s = (sl_str_t){s, n};
        return 0;
    }
    char tmp[64];
    if (n >= sizeof(tmp)) {
        snprintf(why, why_len, "'%.20s...' is too long for %s", s, sl_type_name(t));
        return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    int rc = -1;
    switch (t) {
    case SL_TYPE_INT32:
    case SL_TYPE_INT64:
        rc = sl_parse_int(tmp, &v->u.i);
        if (rc == 0 && t == SL_TYPE_INT32 && (v->u.i < INT32_MIN || v->u.i > INT32_MAX)) {
            rc = -1;
        }
        break;
    case SL_TYPE_DOUBLE:
        rc = sl_parse_double(tmp, &v->u.d);
        break;
    case SL_TYPE_BOOL:
        rc = sl_parse_bool(tmp, &v->u.b);
        break;
    case SL_TYPE_DATE:
        rc = sl_date_parse(tmp, n, &v->u.i);
        break;
    case SL_TYPE_TIMESTAMP:
        rc = sl_timestamp_parse(tmp, n, &v->u.i);
        if (rc != 0 && sl_parse_int(tmp, &v->u.i) == 0 && v->u.i >= SL_TIMESTAMP_MIN_US / 1000 &&
            v->u.i <= SL_TIMESTAMP_MAX_US / 1000) {
            v->u.i *= 1000; /* epoch milliseconds, as in records */
            rc = 0;
        }
        break;
    default:
        break;
    }
    if (rc != 0) {
        snprintf(why, why_len, "'%s' is not a valid %s", tmp, sl_type_name(t));
    }
    return rc;
}

/* Reads one CSV record starting at *pos: fills cells (views, unescaped into
 * arena when needed) and quoted flags, up to max cells. Returns the cell
 * count, or -1 for an unterminated quote. Advances *pos and *line. */
static long en_csv_record(const char *d, size_t len, size_t *pos, int *line, sl_arena_t *arena,
                          sl_str_t *cells, bool *quoted, size_t max)
{
    size_t p = *pos, n = 0;
    for (;;) {
        const char *s = d + p;
        size_t sl = 0;
        bool q = p < len && d[p] == '"';
        if (q) {
            size_t start = ++p;
            bool escaped = false;
            for (;;) {
                if (p >= len) {
                    return -1;
                }
                if (d[p] == '"') {
                    if (p + 1 < len && d[p + 1] == '"') {
                        escaped = true;
                        p += 2;
                        continue;
                    }
                    break;
                }
                if (d[p] == '\n') {
                    (*line)++;
                }
                p++;
            }
            s = d + start;
            sl = p - start;
            p++; /* the closing quote */
            if (escaped) {
                char *u = sl_arena_alloc(arena, sl + 1);
                size_t k = 0;
                for (size_t i = 0; i < sl; i++) {
                    u[k++] = s[i];
                    i += s[i] == '"'; /* "" -> " */
                }
                s = u;
                sl = k;
            }
        } else {
            while (p < len && d[p] != ',' && d[p] != '\n') {
                p++;
            }
            sl = p - (size_t)(s - d);
            if (sl > 0 && s[sl - 1] == '\r' && (p >= len || d[p] == '\n')) {
                sl--;
            }
        }
        if (n < max) {
            cells[n] = (sl_str_t){s, sl};
            quoted[n] = q;
        }
        n++;
        if (p < len && d[p] == ',') {
            p++;
            continue;
        }
        if (p < len && d[p] == '\r') {
            p++;
        }
        if (p < len && d[p] == '\n') {
            p++;
            (*line)++;
        }
        *pos = p;
        return (long)n;
    }
}

static int en_load_csv(en_load_t *L, const char *file_key, const sl_node_t *fields)
{
    sl_enrich_t *e = L->e;
    en_table_t *t = L->t;
    const char *d = t->data;
    size_t len = strlen(d), pos = 0;
    int line = 1;
    enum { EN_MAX_COLS = 1024 };
    sl_str_t cells[EN_MAX_COLS];
    bool quoted[EN_MAX_COLS];
    long nh = en_csv_record(d, len, &pos, &line, &t->arena, cells, quoted, EN_MAX_COLS);
    if (nh <= 0 || nh > EN_MAX_COLS) {
        sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col,
                      "enrich: %s: the first line must be a header of at most %d column names",
                      L->path, EN_MAX_COLS);
        return -1;
    }
    /* column of the key, then of each field */
    long col[EN_MAX_COLS];
    for (size_t f = 0; f <= e->n_out; f++) {
        const char *want = f == 0 ? file_key : fields->keys[f - 1]->scalar;
        col[f] = -1;
        for (long c = 0; c < nh; c++) {
            if (cells[c].len == strlen(want) && memcmp(cells[c].ptr, want, cells[c].len) == 0) {
                col[f] = c;
            }
        }
        if (col[f] < 0) {
            sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col,
                          "enrich: %s has no column '%s' in its header line", L->path, want);
            return -1;
        }
    }
    while (pos < len) {
        int at_line = line;
        long nc = en_csv_record(d, len, &pos, &line, &t->arena, cells, quoted, EN_MAX_COLS);
        if (nc < 0) {
            sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col,
                          "enrich: %s:%d: a quoted cell is not closed", L->path, at_line);
            return -1;
        }
        if (nc == 1 && cells[0].len == 0 && !quoted[0]) {
            continue; /* an empty line */
        }
        if (nc != nh) {
            sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col,
                          "enrich: %s:%d: %ld cells, the header has %ld", L->path, at_line, nc, nh);
            return -1;
        }
        sl_value_t *row = en_new_row(e, t);
        for (size_t f = 0; f <= e->n_out; f++) {
            char why[160];
            const sl_str_t *c = &cells[col[f]];
            if (en_cell(c->ptr, c->len, quoted[col[f]], L->types[f], &row[f], why, sizeof(why)) !=
                0) {
                sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col,
                              "enrich: %s:%d: column '%s': %s", L->path, at_line,
                              f == 0 ? file_key : fields->keys[f - 1]->scalar, why);
                return -1;
            }
        }
        if (row[0].is_null) {
            sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col,
                          "enrich: %s:%d: the key '%s' is empty", L->path, at_line, file_key);
            return -1;
        }
    }
    return 0;
}

static int en_load_ndjson(en_load_t *L, const char *file_key, const sl_node_t *fields)
{
    sl_enrich_t *e = L->e;
    en_table_t *t = L->t;
    sl_schema_t tab = {0};
    tab.unknown = SL_UNKNOWN_IGNORE;
    for (size_t f = 0; f <= e->n_out; f++) {
        (void)sl_schema_add(&tab, f == 0 ? file_key : fields->keys[f - 1]->scalar, L->types[f], 0);
    }
    sl_schema_finish(&tab);
    const sl_json_limits_t limits = {0, 64};
    int rc = 0, line = 0;
    for (char *p = t->data; *p != '\0' && rc == 0;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        line++;
        if (n > 0 && p[n - 1] == '\r') {
            n--;
        }
        if (n > 0) {
            sl_value_t *row = en_new_row(e, t);
            sl_reason_t why;
            if (sl_json_decode(&tab, &limits, p, n, row, &t->arena, &why) != 0) {
                sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col, "enrich: %s:%d: %s",
                              L->path, line, why.text);
                rc = -1;
            } else if (row[0].is_null) {
                sl_errors_add(L->errs, L->at->file, L->at->line, L->at->col,
                              "enrich: %s:%d: no key '%s'", L->path, line, file_key);
                rc = -1;
            }
        }
        p = nl ? nl + 1 : p + n;
        if (nl == NULL) {
            break;
        }
    }
    sl_schema_free(&tab);
    return rc;
}

static char *en_read(const char *path, char *why, size_t why_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    sl_buf_t b = SL_BUF_INIT;
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + got > EN_MAX_FILE) {
            snprintf(why, why_len, "%s is larger than 1 GiB: the table is held in memory", path);
            fclose(f);
            sl_buf_free(&b);
            return NULL;
        }
        sl_buf_append(&b, chunk, got);
    }
    bool err = ferror(f);
    fclose(f);
    if (err || memchr(b.data ? b.data : "", '\0', b.len) != NULL) {
        snprintf(why, why_len, "%s: %s", path, err ? "read error" : "contains a NUL byte");
        sl_buf_free(&b);
        return NULL;
    }
    if (b.data == NULL) { /* an empty file */
        sl_buf_reserve(&b, 1);
        b.data[0] = '\0';
    }
    return b.data; /* NUL-terminated */
}

/* ---- the step ----------------------------------------------------------------------------- */

/* The key and field types of the step; returns them (1 + fields->n: the
 * key's, then each field's; gives ownership) or NULL with errors added. */
static sl_type_t *en_types(const sl_node_t *key, const sl_node_t *fields, sl_schema_t *record,
                           int *kf, sl_errors_t *errs)
{
    *kf = sl_schema_find(record, key->scalar, strlen(key->scalar));
    if (*kf < 0) {
        sl_errors_add(errs, key->file, key->line, key->col, "enrich: no field '%s' at this step",
                      key->scalar);
        return NULL;
    }
    sl_type_t kt = record->fields[*kf].type;
    if (kt != SL_TYPE_STRING && kt != SL_TYPE_INT32 && kt != SL_TYPE_INT64) {
        sl_errors_add(errs, key->file, key->line, key->col,
                      "enrich: the key '%s' is %s; keys are strings or integers", key->scalar,
                      sl_type_name(kt));
        return NULL;
    }
    sl_type_t *types = sl_xcalloc(1 + fields->n, sizeof(sl_type_t));
    types[0] = kt == SL_TYPE_STRING ? SL_TYPE_STRING : SL_TYPE_INT64;
    for (size_t i = 0; i < fields->n; i++) {
        const sl_node_t *t = fields->values[i], *name = fields->keys[i];
        if (t->kind != SL_NODE_SCALAR || sl_type_parse(t->scalar, &types[1 + i]) != 0) {
            sl_errors_add(errs, t->file, t->line, t->col,
                          "enrich: the type of '%s' must be one of string, int32, int64, "
                          "double, bool, date, timestamp",
                          name->scalar);
            free(types);
            return NULL;
        }
        if (sl_schema_find(record, name->scalar, strlen(name->scalar)) >= 0) {
            sl_errors_add(errs, name->file, name->line, name->col,
                          "enrich: a field '%s' exists already: drop or rename it first",
                          name->scalar);
            free(types);
            return NULL;
        }
    }
    return types;
}

/* Loads the file table of the step (file: PATH); returns it or NULL. */
static en_table_t *en_load_file(sl_enrich_t *e, const sl_node_t *file, const char *file_key,
                                const sl_node_t *fields, const char *config_dir, sl_errors_t *errs)
{
    char path[4096];
    if (file->scalar[0] == '/' || config_dir == NULL) {
        snprintf(path, sizeof(path), "%s", file->scalar);
    } else {
        snprintf(path, sizeof(path), "%s/%s", config_dir, file->scalar);
    }
    size_t pl = strlen(path);
    bool csv = pl > 4 && strcmp(path + pl - 4, ".csv") == 0;
    bool nd = (pl > 7 && strcmp(path + pl - 7, ".ndjson") == 0) ||
              (pl > 6 && strcmp(path + pl - 6, ".jsonl") == 0);
    if (!csv && !nd) {
        sl_errors_add(errs, file->file, file->line, file->col,
                      "enrich: %s: name the file .csv (with a header line) or .ndjson / .jsonl",
                      file->scalar);
        return NULL;
    }
    en_table_t *t = en_table_new();
    char why[512];
    t->data = en_read(path, why, sizeof(why));
    if (t->data == NULL) {
        sl_errors_add(errs, file->file, file->line, file->col, "enrich: %s", why);
        en_table_free(t);
        return NULL;
    }
    en_load_t L = {e, t, file->scalar, e->types, errs, file};
    int rc = csv ? en_load_csv(&L, file_key, fields) : en_load_ndjson(&L, file_key, fields);
    long dup = rc == 0 ? en_table_index(e, t) : -1;
    if (dup >= 0) {
        const sl_value_t *k = &t->rows[(size_t)dup * (1 + e->n_out)];
        char shown[64];
        if (e->int_key) {
            snprintf(shown, sizeof(shown), "%lld", (long long)k->u.i);
        } else {
            sl_value_quote(k->u.s.ptr, k->u.s.len, shown, sizeof(shown));
        }
        sl_errors_add(errs, file->file, file->line, file->col,
                      "enrich: %s: the key %s appears twice: keep one row per key", file->scalar,
                      shown);
        rc = -1;
    }
    if (rc != 0) {
        en_table_free(t);
        return NULL;
    }
    return t;
}

sl_enrich_t *sl_enrich_parse(const sl_node_t *map, const char *config_dir, sl_schema_t *record,
                             sl_errors_t *errs)
{
    static const char *const keys[] = {"key",     "file",         "file_key", "fields", "topic",
                                       "brokers", "load_timeout", "refresh",  NULL};
    if (map->kind != SL_NODE_MAP) {
        sl_errors_add(errs, map->file, map->line, map->col,
                      "enrich: expected {key: FIELD, file: PATH, fields: {name: type}}");
        return NULL;
    }
    if (sl_node_check_keys(map, keys, "enrich", errs) != 0) {
        return NULL;
    }
    const sl_node_t *key = sl_node_get(map, "key"), *file = sl_node_get(map, "file");
    const sl_node_t *topic = sl_node_get(map, "topic");
    const sl_node_t *fkey = sl_node_get(map, "file_key"), *fields = sl_node_get(map, "fields");
    const sl_node_t *src = file != NULL ? file : topic;
    if (key == NULL || (file == NULL) == (topic == NULL) || fields == NULL ||
        key->kind != SL_NODE_SCALAR || src->kind != SL_NODE_SCALAR || fields->kind != SL_NODE_MAP ||
        fields->n == 0 || fields->n > 256 ||
        (fkey != NULL && (fkey->kind != SL_NODE_SCALAR || topic != NULL))) {
        sl_errors_add(errs, map->file, map->line, map->col,
                      "enrich: needs key: FIELD, fields: {name: type, ...} (1 to 256 of them) "
                      "and one of file: PATH (.csv with a header line, or .ndjson) or topic: "
                      "NAME (a Kafka topic of JSON values keyed by the lookup key)");
        return NULL;
    }
    if (topic == NULL && (sl_node_get(map, "brokers") || sl_node_get(map, "load_timeout") ||
                          sl_node_get(map, "refresh"))) {
        sl_errors_add(errs, map->file, map->line, map->col,
                      "enrich: brokers, load_timeout and refresh go with topic:, not file:");
        return NULL;
    }
    int kf;
    sl_type_t *types = en_types(key, fields, record, &kf, errs);
    if (types == NULL) {
        return NULL;
    }
    sl_enrich_t *e = sl_xcalloc(1, sizeof(*e));
    e->key_field = (size_t)kf;
    e->int_key = types[0] != SL_TYPE_STRING;
    e->n_out = fields->n;
    e->types = types;
    e->names = sl_xcalloc(fields->n, sizeof(char *));
    for (size_t i = 0; i < fields->n; i++) {
        e->names[i] = sl_xstrdup(fields->keys[i]->scalar);
    }
    if (file != NULL) {
        en_table_t *t = en_load_file(e, file, fkey != NULL ? fkey->scalar : key->scalar, fields,
                                     config_dir, errs);
        if (t == NULL) {
            sl_enrich_destroy(e);
            return NULL;
        }
        atomic_init(&e->cur, t);
    } else {
        atomic_init(&e->cur, en_table_new()); /* empty until sl_enrich_start loads it */
        if (en_topic_parse(e, map, errs) != 0) {
            sl_enrich_destroy(e);
            return NULL;
        }
    }
    e->out_field = sl_xmalloc(e->n_out * sizeof(size_t));
    for (size_t i = 0; i < e->n_out; i++) {
        const sl_node_t *name = fields->keys[i];
        e->out_field[i] = sl_schema_add(record, name->scalar, types[1 + i], name->line);
    }
    sl_schema_finish(record);
    return e;
}

void sl_enrich_run(const sl_enrich_t *e, sl_value_t *rec, sl_arena_t *arena, unsigned reader)
{
    const sl_value_t *k = &rec[e->key_field];
    if (e->topic != NULL) {
        en_topic_run(e, rec, arena, reader);
        return;
    }
    const en_table_t *t = atomic_load_explicit(&e->cur, memory_order_relaxed);
    long r = k->is_null ? -1 : en_find(e, t, k);
    for (size_t i = 0; i < e->n_out; i++) {
        if (r < 0) {
            rec[e->out_field[i]].is_null = true;
        } else {
            rec[e->out_field[i]] = t->rows[(size_t)r * (1 + e->n_out) + 1 + i];
        }
    }
}

long en_lookup(const sl_enrich_t *e, const en_table_t *t, const sl_value_t *key)
{
    return key->is_null ? -1 : en_find(e, t, key);
}

size_t sl_enrich_rows(const sl_enrich_t *e)
{
    return atomic_load(&e->cur)->n_rows;
}

void sl_enrich_destroy(sl_enrich_t *e)
{
    if (e == NULL) {
        return;
    }
    en_topic_destroy(e);
    en_table_free(atomic_load(&e->cur));
    for (size_t i = 0; e->names != NULL && i < e->n_out; i++) {
        free(e->names[i]);
    }
    free(e->names);
    free(e->types);
    free(e->out_field);
    free(e);
}
