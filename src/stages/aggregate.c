/* aggregate: the config, the group table, windows and late data, flushes,
 * and the per-partition pins that keep offsets of unwritten data from being
 * committed. */
#include "stages/aggregate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AG_US_PER_MS INT64_C(1000)
#define AG_US_PER_DAY INT64_C(86400000000)
#define AG_NO_TIME INT64_MIN
#define AG_PF 64 /* records hashed ahead (sl_agg_prefetch) */

/* ---- config ------------------------------------------------------------------------------ */

static const char *const ag_modes[] = {"delta", "absolute", NULL};
static const char *const ag_lates[] = {"dead_letter", "drop", NULL};

typedef struct ag_opts {
    sl_strlist_t group_by;
    sl_strmap_t compute;
    int output;
    int64_t flush_interval_ms;
    int64_t max_keys;
} ag_opts_t;

typedef struct ag_win_opts {
    char *field;
    int64_t size_ms;
    char *time_zone;
    int64_t grace_ms;
    int late;
    int64_t max_future_ms;
} ag_win_opts_t;

#define AG_MAX_DURATION_MS (INT64_C(366) * 24 * 3600 * 1000)

static const sl_option_t ag_options[] = {
    {"group_by", SL_OPT_STRLIST, offsetof(ag_opts_t, group_by), NULL, true, 0, 0, NULL,
     "Record fields whose values make a group (after transform)."},
    {"compute", SL_OPT_STRMAP, offsetof(ag_opts_t, compute), NULL, true, 0, 0, NULL,
     "Output field -> `count()`, `count(f)`, `sum(f)`, `min(f)`, `max(f)` or `last(f)`."},
    {"output", SL_OPT_ENUM, offsetof(ag_opts_t, output), "delta", false, 0, 0, ag_modes,
     "`delta`: each flush writes what was added since the previous one (for counters and "
     "add-upserts); `absolute`: the window's running total (for idempotent upserts)."},
    {"flush_interval", SL_OPT_DURATION, offsetof(ag_opts_t, flush_interval_ms), "1s", false, 1,
     AG_MAX_DURATION_MS, NULL, "How long folded data waits before it is written."},
    {"max_keys", SL_OPT_INT, offsetof(ag_opts_t, max_keys), "100000", false, 1, 100000000, NULL,
     "Groups held per lane; reaching it flushes early (absolute mode: closes the oldest "
     "window early)."},
};

static const sl_option_t ag_win_options[] = {
    {"field", SL_OPT_STRING, offsetof(ag_win_opts_t, field), NULL, true, 0, 0, NULL,
     "The event-time field (a timestamp) that places a record in its window."},
    {"size", SL_OPT_DURATION, offsetof(ag_win_opts_t, size_ms), NULL, true, 1, AG_MAX_DURATION_MS,
     NULL, "Window length: 1m, 1h, 1d, or any duration (with time_zone: one dividing a day)."},
    {"time_zone", SL_OPT_STRING, offsetof(ag_win_opts_t, time_zone), NULL, false, 0, 0, NULL,
     "Windows follow this zone's clocks (a day runs from local midnight); default UTC."},
    {"grace", SL_OPT_DURATION, offsetof(ag_win_opts_t, grace_ms), "0s", false, 0,
     AG_MAX_DURATION_MS, NULL,
     "How long after its end a window still takes records, in event time (stream time: the "
     "latest event time the lane has seen)."},
    {"late", SL_OPT_ENUM, offsetof(ag_win_opts_t, late), "dead_letter", false, 0, 0, ag_lates,
     "What happens to a record whose window closed: `dead_letter` (reason \"late: ...\") or "
     "`drop`; counted in sluice_records_late_total either way."},
    {"max_future", SL_OPT_DURATION, offsetof(ag_win_opts_t, max_future_ms), "1h", false, 0,
     AG_MAX_DURATION_MS, NULL,
     "Event times further ahead of the wall clock are dead-lettered (one bad clock would "
     "otherwise close every window); 0 turns the check off."},
};

static const sl_option_table_t ag_table = {
    "aggregate", "Group records and fold them into counts, sums, minima, maxima or last values.",
    ag_options, SL_ARRAY_LEN(ag_options)};
static const sl_option_table_t ag_win_table = {"aggregate.window",
                                               "A tumbling window on an event-time field.",
                                               ag_win_options, SL_ARRAY_LEN(ag_win_options)};

const sl_option_table_t *sl_agg_option_tables[] = {&ag_table, &ag_win_table, NULL};

static const char *const ag_fn_names[] = {"count", "sum", "min", "max", "last"};

/* Parses "fn(field)" / "count()" (spaces allowed around the parts). */
static int ag_parse_spec(const char *text, const sl_schema_t *record, sl_agg_spec_t *out, char *why,
                         size_t whylen)
{
    const char *p = text;
    while (*p == ' ') {
        p++;
    }
    const char *name = p;
    while ((*p >= 'a' && *p <= 'z') || *p == '_') {
        p++;
    }
    size_t name_len = (size_t)(p - name);
    int fn = -1;
    for (size_t i = 0; i < SL_ARRAY_LEN(ag_fn_names); i++) {
        if (strlen(ag_fn_names[i]) == name_len && memcmp(ag_fn_names[i], name, name_len) == 0) {
            fn = (int)i;
        }
    }
    while (*p == ' ') {
        p++;
    }
    const char *arg = p + 1;
    const char *close = *p == '(' ? strchr(arg, ')') : NULL;
    if (fn < 0 || close == NULL) {
        snprintf(why, whylen,
                 "'%s' is not an aggregate: use count(), count(field), sum(field), min(field), "
                 "max(field) or last(field)",
                 text);
        return -1;
    }
    for (const char *q = close + 1; *q; q++) {
        if (*q != ' ') {
            snprintf(why, whylen, "'%s': unexpected text after ')'", text);
            return -1;
        }
    }
    while (arg < close && *arg == ' ') {
        arg++;
    }
    const char *arg_end = close;
    while (arg_end > arg && arg_end[-1] == ' ') {
        arg_end--;
    }
    out->fn = (sl_agg_fn_t)fn;
    out->field = SIZE_MAX;
    if (arg == arg_end) {
        if (fn != SL_AGG_FN_COUNT) {
            snprintf(why, whylen, "'%s': %s() needs a field, e.g. %s(views)", text, ag_fn_names[fn],
                     ag_fn_names[fn]);
            return -1;
        }
        out->type = SL_TYPE_INT64;
        return 0;
    }
    int f = sl_schema_find(record, arg, (size_t)(arg_end - arg));
    if (f < 0) {
        snprintf(why, whylen, "'%s': no field '%.*s' after transform", text, (int)(arg_end - arg),
                 arg);
        return -1;
    }
    out->field = (size_t)f;
    sl_type_t t = record->fields[f].type;
    switch (out->fn) {
    case SL_AGG_FN_COUNT:
        out->type = SL_TYPE_INT64;
        return 0;
    case SL_AGG_FN_SUM:
        if (t != SL_TYPE_INT32 && t != SL_TYPE_INT64 && t != SL_TYPE_DOUBLE) {
            snprintf(why, whylen, "'%s': sum() needs a number, '%s' is %s", text,
                     record->fields[f].name, sl_type_name(t));
            return -1;
        }
        out->type = t == SL_TYPE_DOUBLE ? SL_TYPE_DOUBLE : SL_TYPE_INT64;
        return 0;
    case SL_AGG_FN_MIN:
    case SL_AGG_FN_MAX:
        if (t == SL_TYPE_BOOL) {
            snprintf(why, whylen, "'%s': %s() of a boolean: use count() with a filter instead",
                     text, ag_fn_names[fn]);
            return -1;
        }
        out->type = t;
        return 0;
    case SL_AGG_FN_LAST:
        out->type = t;
        return 0;
    }
    return 0;
}

static void ag_conf_window(const sl_node_t *wn, const char *file, const sl_schema_t *record,
                           sl_agg_conf_t *c, sl_errors_t *errs, int *bad)
{
    ag_win_opts_t w;
    if (sl_options_apply(&ag_win_table, &w, wn, file, errs) != 0) {
        *bad = -1;
        sl_options_free(&ag_win_table, &w);
        return;
    }
    c->windowed = true;
    c->size_us = w.size_ms * AG_US_PER_MS;
    c->grace_us = w.grace_ms * AG_US_PER_MS;
    c->max_future_us = w.max_future_ms * AG_US_PER_MS;
    c->late = (sl_agg_late_t)w.late;
    const sl_node_t *fn = sl_node_get(wn, "field");
    int f = sl_schema_find(record, w.field, strlen(w.field));
    if (f < 0) {
        sl_errors_add(errs, file, fn->line, fn->col,
                      "aggregate.window: no field '%s' after transform", w.field);
        *bad = -1;
    } else if (record->fields[f].type != SL_TYPE_TIMESTAMP) {
        sl_errors_add(errs, file, fn->line, fn->col,
                      "aggregate.window: field '%s' is %s, the event time must be a timestamp "
                      "(e.g. transform: - set: {ts: \"timestamp_ms(ts_ms)\"})",
                      w.field, sl_type_name(record->fields[f].type));
        *bad = -1;
    } else {
        c->time_field = (size_t)f;
    }
    if (w.time_zone != NULL) {
        const sl_node_t *zn = sl_node_get(wn, "time_zone");
        char e[256];
        c->tz = sl_tz_load(w.time_zone, NULL, e, sizeof(e));
        if (c->tz == NULL) {
            sl_errors_add(errs, file, zn->line, zn->col, "aggregate.window: %s", e);
            *bad = -1;
        } else if (AG_US_PER_DAY % c->size_us != 0 || c->size_us % 1000000 != 0) {
            const sl_node_t *sn = sl_node_get(wn, "size");
            sl_errors_add(errs, file, sn->line, sn->col,
                          "aggregate.window: with time_zone the size must be whole seconds "
                          "dividing a day (1m, 15m, 1h, 1d...); leave time_zone out for "
                          "windows aligned on UTC");
            *bad = -1;
        }
    }
    sl_options_free(&ag_win_table, &w);
}

/* Adds output field name (checks it is new). */
static void ag_out_add(sl_agg_conf_t *c, const char *name, sl_type_t t, const char *file, int line,
                       sl_errors_t *errs, int *bad)
{
    if (sl_schema_find(&c->out, name, strlen(name)) >= 0) {
        sl_errors_add(errs, file, line, 0,
                      "aggregate: output field '%s' is defined twice (group_by, window_start, "
                      "window_end and compute share one namespace)",
                      name);
        *bad = -1;
        return;
    }
    sl_schema_add(&c->out, name, t, line);
    sl_schema_finish(&c->out);
}

sl_agg_conf_t *sl_agg_conf_parse(const sl_node_t *node, const char *file, const sl_schema_t *record,
                                 sl_errors_t *errs, int *bad)
{
    if (node == NULL) {
        return NULL;
    }
    if (node->kind != SL_NODE_MAP) {
        sl_errors_add(errs, file, node->line, node->col,
                      "aggregate must be a map, e.g. aggregate: {group_by: [site_id], compute: "
                      "{views: sum(views)}}");
        *bad = -1;
        return NULL;
    }
    const sl_node_t *wn = sl_node_get(node, "window");
    ag_opts_t o;
    /* window is a nested map: check it apart from the scalar options */
    sl_node_t top = *node;
    sl_node_t *keys[32], *vals[32];
    top.n = 0;
    top.keys = keys;
    top.values = vals;
    for (size_t i = 0; i < node->n && top.n < SL_ARRAY_LEN(keys); i++) {
        if (strcmp(node->keys[i]->scalar, "window") != 0) {
            keys[top.n] = node->keys[i];
            vals[top.n++] = node->values[i];
        }
    }
    if (sl_options_apply(&ag_table, &o, &top, file, errs) != 0) {
        sl_options_free(&ag_table, &o);
        *bad = -1;
        return NULL;
    }
    sl_agg_conf_t *c = sl_xcalloc(1, sizeof(*c));
    c->mode = (sl_agg_mode_t)o.output;
    c->flush_interval_ms = o.flush_interval_ms;
    c->max_keys = o.max_keys;
    c->group = sl_xcalloc(o.group_by.n + 1, sizeof(size_t));
    c->specs = sl_xcalloc(o.compute.n + 1, sizeof(sl_agg_spec_t));
    const sl_node_t *gn = sl_node_get(node, "group_by");
    for (size_t i = 0; i < o.group_by.n; i++) {
        const char *g = o.group_by.items[i];
        int f = sl_schema_find(record, g, strlen(g));
        if (f < 0) {
            sl_errors_add(errs, file, gn->line, gn->col,
                          "aggregate.group_by: no field '%s' after transform", g);
            *bad = -1;
            continue;
        }
        c->group[c->n_group++] = (size_t)f;
        ag_out_add(c, g, record->fields[f].type, file, gn->line, errs, bad);
    }
    if (wn != NULL && !sl_node_is_null(wn)) {
        if (wn->kind != SL_NODE_MAP) {
            sl_errors_add(errs, file, wn->line, wn->col,
                          "aggregate.window must be a map, e.g. {field: ts, size: 1d, grace: 1h}");
            *bad = -1;
        } else {
            ag_conf_window(wn, file, record, c, errs, bad);
            ag_out_add(c, "window_start", SL_TYPE_TIMESTAMP, file, wn->line, errs, bad);
            ag_out_add(c, "window_end", SL_TYPE_TIMESTAMP, file, wn->line, errs, bad);
        }
    }
    if (o.compute.n == 0) {
        const sl_node_t *cn = sl_node_get(node, "compute");
        sl_errors_add(errs, file, cn->line, cn->col,
                      "aggregate.compute is empty: name at least one output, e.g. {events: "
                      "count()}");
        *bad = -1;
    }
    for (size_t i = 0; i < o.compute.n; i++) {
        char why[300];
        sl_agg_spec_t *s = &c->specs[c->n_specs];
        if (ag_parse_spec(o.compute.values[i], record, s, why, sizeof(why)) != 0) {
            sl_errors_add(errs, file, o.compute.lines[i], 0, "aggregate.compute.%s: %s",
                          o.compute.keys[i], why);
            *bad = -1;
            continue;
        }
        c->n_specs++;
        ag_out_add(c, o.compute.keys[i], s->type, file, o.compute.lines[i], errs, bad);
    }
    if (c->mode == SL_AGG_ABSOLUTE && !c->windowed) {
        sl_errors_add(errs, file, node->line, node->col,
                      "aggregate: output: absolute needs a window (a running total without one "
                      "never closes, so its offsets could never be committed); use output: "
                      "delta, or add window: {field: ..., size: ...}");
        *bad = -1;
    }
    sl_options_free(&ag_table, &o);
    if (*bad) {
        sl_agg_conf_destroy(c);
        return NULL;
    }
    return c;
}

void sl_agg_conf_destroy(sl_agg_conf_t *c)
{
    if (c == NULL) {
        return;
    }
    free(c->group);
    free(c->specs);
    sl_tz_destroy(c->tz);
    sl_schema_free(&c->out);
    free(c);
}

/* ---- state --------------------------------------------------------------------------------- */

/* A group: its key (group values, window) and accumulators. Group strings
 * live in the same allocation after the values; accumulated strings
 * (min/max/last of a string) are allocated apiece. */
typedef struct ag_entry {
    uint64_t hash;
    int64_t wstart, wend; /* AG_NO_TIME without a window */
    uint32_t slot;        /* absolute mode: the partition of its first record */
    bool dirty;           /* changed since the last flush */
    bool evict;           /* absolute: its window closed in the flush being built */
    sl_value_t v[];       /* n_group group values, then n_specs accumulators */
} ag_entry_t;

/* Offsets pinned by data not yet written: per partition slot, the lowest
 * offset folded (first[slot], -1 none) in the assignment generation gen[slot]. */
typedef struct ag_hold {
    int64_t wstart, wend; /* absolute: the window; delta: unused */
    bool sealed;          /* complete: released when the flush in flight is done */
    int64_t *first;
    uint32_t *gen;
    size_t n_slots;
} ag_hold_t;

/* A slot of the group table: the hash next to the pointer, so a probe reads
 * the entry (likely a cache miss) only when the hash matches. */
typedef struct ag_slot {
    uint64_t hash;
    ag_entry_t *e;
} ag_slot_t;

/* What a partition's committed metadata said (absolute mode). */
typedef struct ag_restored {
    uint32_t gen;
    bool set;
    int64_t closed_us; /* windows ending at or before this were written */
    int64_t done;      /* records below this offset were done */
} ag_restored_t;

struct sl_agg {
    const sl_agg_conf_t *c;
    const sl_schema_t *record;
    size_t n_vals;     /* n_group + n_specs */
    ag_slot_t *tab;    /* open addressing, e NULL: empty */
    size_t cap;        /* power of two */
    ag_entry_t **list; /* every entry, for flushes */
    size_t n, cap_list;
    size_t n_dirty;
    ag_hold_t *holds; /* delta: sealed epoch(s) then the open one; absolute: one per window */
    size_t n_holds, cap_holds;
    size_t last_hold;
    bool flushing;
    int64_t dirty_since_ms; /* when data first waited for a flush (0: none) */
    int64_t now_ms, wall_us;
    int64_t stream_us;        /* highest event time folded (AG_NO_TIME: none) */
    int64_t closed_us;        /* absolute: windows ending at or before this were closed early */
    int64_t cw_start, cw_end; /* window of the last record (cache) */
    int64_t sealed_us;        /* absolute: windows ending at or before this are sealed */
    int64_t flush_sealed_us;  /* sealed_us when the flush in flight started */
    int64_t written_us;       /* absolute: windows ending at or before this are written */
    ag_restored_t *restored;  /* per slot: from the committed metadata */
    const sl_value_t *pf_rec[AG_PF]; /* records sl_agg_prefetch hashed, and their hashes */
    uint64_t pf_hash[AG_PF];
    size_t n_restored;
};

sl_agg_t *sl_agg_create(const sl_agg_conf_t *c, const sl_schema_t *record)
{
    sl_agg_t *a = sl_xcalloc(1, sizeof(*a));
    a->c = c;
    a->record = record;
    a->n_vals = c->n_group + c->n_specs;
    a->cap = 1024;
    a->tab = sl_xcalloc(a->cap, sizeof(*a->tab));
    a->stream_us = AG_NO_TIME;
    a->closed_us = AG_NO_TIME;
    a->cw_start = a->cw_end = AG_NO_TIME;
    a->sealed_us = a->flush_sealed_us = a->written_us = AG_NO_TIME;
    return a;
}

static void ag_entry_free(const sl_agg_t *a, ag_entry_t *e)
{
    for (size_t i = 0; i < a->c->n_specs; i++) {
        sl_value_t *v = &e->v[a->c->n_group + i];
        if (a->c->specs[i].type == SL_TYPE_STRING && !v->is_null) {
            free((void *)v->u.s.ptr);
        }
    }
    free(e);
}

static void ag_hold_free(ag_hold_t *h)
{
    free(h->first);
    free(h->gen);
}

void sl_agg_destroy(sl_agg_t *a)
{
    if (a == NULL) {
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        ag_entry_free(a, a->list[i]);
    }
    for (size_t i = 0; i < a->n_holds; i++) {
        ag_hold_free(&a->holds[i]);
    }
    free(a->holds);
    free(a->restored);
    free(a->list);
    free(a->tab);
    free(a);
}

size_t sl_agg_keys(const sl_agg_t *a)
{
    return a->n;
}

bool sl_agg_flushing(const sl_agg_t *a)
{
    return a->flushing;
}

bool sl_agg_dirty(const sl_agg_t *a)
{
    return a->n_dirty > 0;
}

/* ---- holds and pins ------------------------------------------------------------------------- */

static ag_hold_t *ag_hold_new(sl_agg_t *a, int64_t wstart, int64_t wend)
{
    if (a->n_holds == a->cap_holds) {
        a->cap_holds = a->cap_holds ? a->cap_holds * 2 : 8;
        a->holds = sl_xrealloc(a->holds, a->cap_holds * sizeof(*a->holds));
    }
    ag_hold_t *h = &a->holds[a->n_holds++];
    memset(h, 0, sizeof(*h));
    h->wstart = wstart;
    h->wend = wend;
    return h;
}

/* The hold a record of window [wstart, wend) pins into: delta mode the open
 * epoch, absolute mode its window's. */
static ag_hold_t *ag_hold_for(sl_agg_t *a, int64_t wstart, int64_t wend)
{
    if (a->c->mode == SL_AGG_DELTA) {
        if (a->n_holds == 0 || a->holds[a->n_holds - 1].sealed) {
            return ag_hold_new(a, AG_NO_TIME, AG_NO_TIME);
        }
        return &a->holds[a->n_holds - 1];
    }
    if (a->last_hold < a->n_holds && a->holds[a->last_hold].wstart == wstart &&
        !a->holds[a->last_hold].sealed) {
        return &a->holds[a->last_hold];
    }
    for (size_t i = 0; i < a->n_holds; i++) {
        if (a->holds[i].wstart == wstart && !a->holds[i].sealed) {
            a->last_hold = i;
            return &a->holds[i];
        }
    }
    a->last_hold = a->n_holds;
    return ag_hold_new(a, wstart, wend);
}

static void ag_pin(ag_hold_t *h, uint32_t slot, uint32_t gen, int64_t offset)
{
    if (slot >= h->n_slots) {
        size_t n = SL_MAX((size_t)slot + 1, h->n_slots * 2);
        h->first = sl_xrealloc(h->first, n * sizeof(*h->first));
        h->gen = sl_xrealloc(h->gen, n * sizeof(*h->gen));
        for (size_t i = h->n_slots; i < n; i++) {
            h->first[i] = -1;
            h->gen[i] = 0;
        }
        h->n_slots = n;
    }
    if (h->first[slot] < 0 || h->gen[slot] != gen) {
        h->first[slot] = offset; /* offsets only grow within a generation */
        h->gen[slot] = gen;
    }
}

int64_t sl_agg_pinned(const sl_agg_t *a, uint32_t slot, uint32_t gen)
{
    int64_t lo = INT64_MAX;
    for (size_t i = 0; i < a->n_holds; i++) {
        const ag_hold_t *h = &a->holds[i];
        if (slot < h->n_slots && h->first[slot] >= 0 && h->gen[slot] == gen) {
            lo = SL_MIN(lo, h->first[slot]);
        }
    }
    return lo;
}

/* Frees the sealed holds (their rows are written). */
static void ag_release_sealed(sl_agg_t *a)
{
    size_t w = 0;
    for (size_t i = 0; i < a->n_holds; i++) {
        if (a->holds[i].sealed) {
            ag_hold_free(&a->holds[i]);
        } else {
            a->holds[w++] = a->holds[i];
        }
    }
    a->n_holds = w;
    a->last_hold = SIZE_MAX;
}

/* ---- the table ------------------------------------------------------------------------------ */

static bool ag_key_equal(const sl_agg_t *a, const ag_entry_t *e, const sl_value_t *rec,
                         int64_t wstart)
{
    if (e->wstart != wstart) {
        return false;
    }
    for (size_t i = 0; i < a->c->n_group; i++) {
        const sl_value_t *x = &e->v[i], *y = &rec[a->c->group[i]];
        if (x->is_null || y->is_null) {
            if (x->is_null != y->is_null) {
                return false;
            }
            continue;
        }
        switch (a->record->fields[a->c->group[i]].type) {
        case SL_TYPE_STRING:
            if (x->u.s.len != y->u.s.len || memcmp(x->u.s.ptr, y->u.s.ptr, x->u.s.len) != 0) {
                return false;
            }
            break;
        case SL_TYPE_DOUBLE:
            if (x->u.d != y->u.d) {
                return false;
            }
            break;
        case SL_TYPE_BOOL:
            if (x->u.b != y->u.b) {
                return false;
            }
            break;
        default:
            if (x->u.i != y->u.i) {
                return false;
            }
            break;
        }
    }
    return true;
}

static void ag_tab_insert(sl_agg_t *a, ag_entry_t *e)
{
    size_t mask = a->cap - 1;
    size_t i = (size_t)e->hash & mask;
    while (a->tab[i].e != NULL) {
        i = (i + 1) & mask;
    }
    a->tab[i] = (ag_slot_t){e->hash, e};
}

/* Rebuilds the table from the list (after growth or eviction). */
static void ag_tab_rebuild(sl_agg_t *a, size_t cap)
{
    if (cap != a->cap) {
        free(a->tab);
        a->tab = sl_xcalloc(cap, sizeof(*a->tab));
        a->cap = cap;
    } else {
        memset(a->tab, 0, cap * sizeof(*a->tab));
    }
    for (size_t i = 0; i < a->n; i++) {
        ag_tab_insert(a, a->list[i]);
    }
}

/* A new entry for rec's group in window [wstart, wend): group strings are
 * copied in, accumulators start empty (count at 0). */
static ag_entry_t *ag_entry_new(sl_agg_t *a, const sl_value_t *rec, uint64_t hash, int64_t wstart,
                                int64_t wend, uint32_t slot)
{
    size_t strbytes = 0;
    for (size_t i = 0; i < a->c->n_group; i++) {
        const sl_value_t *v = &rec[a->c->group[i]];
        if (!v->is_null && a->record->fields[a->c->group[i]].type == SL_TYPE_STRING) {
            strbytes += v->u.s.len;
        }
    }
    ag_entry_t *e = sl_xmalloc(sizeof(*e) + a->n_vals * sizeof(sl_value_t) + strbytes);
    e->hash = hash;
    e->wstart = wstart;
    e->wend = wend;
    e->slot = slot;
    e->dirty = false;
    e->evict = false;
    char *s = (char *)(e->v + a->n_vals);
    for (size_t i = 0; i < a->c->n_group; i++) {
        e->v[i] = rec[a->c->group[i]];
        if (!e->v[i].is_null && a->record->fields[a->c->group[i]].type == SL_TYPE_STRING) {
            memcpy(s, e->v[i].u.s.ptr, e->v[i].u.s.len);
            e->v[i].u.s.ptr = s;
            s += e->v[i].u.s.len;
        }
    }
    for (size_t i = 0; i < a->c->n_specs; i++) {
        sl_value_t *v = &e->v[a->c->n_group + i];
        v->is_null = a->c->specs[i].fn != SL_AGG_FN_COUNT;
        v->u.i = 0;
    }
    if (a->n == a->cap_list) {
        a->cap_list = a->cap_list ? a->cap_list * 2 : 1024;
        a->list = sl_xrealloc(a->list, a->cap_list * sizeof(*a->list));
    }
    a->list[a->n++] = e;
    if (a->n * 2 > a->cap) {
        ag_tab_rebuild(a, a->cap * 2);
    } else {
        ag_tab_insert(a, e);
    }
    return e;
}

/* ---- folding -------------------------------------------------------------------------------- */

static int ag_cmp(const sl_value_t *x, const sl_value_t *y, sl_type_t t)
{
    switch (t) {
    case SL_TYPE_STRING: {
        size_t n = SL_MIN(x->u.s.len, y->u.s.len);
        int c = memcmp(x->u.s.ptr, y->u.s.ptr, n);
        if (c != 0) {
            return c;
        }
        return x->u.s.len < y->u.s.len ? -1 : x->u.s.len > y->u.s.len;
    }
    case SL_TYPE_DOUBLE:
        return x->u.d < y->u.d ? -1 : x->u.d > y->u.d;
    case SL_TYPE_BOOL:
        return (int)x->u.b - (int)y->u.b;
    default:
        return x->u.i < y->u.i ? -1 : x->u.i > y->u.i;
    }
}

/* Sets accumulator acc to x (a string is copied into its own allocation). */
static void ag_set(sl_value_t *acc, const sl_value_t *x, sl_type_t t)
{
    if (t != SL_TYPE_STRING) {
        *acc = *x;
        return;
    }
    char *p = acc->is_null ? NULL : (char *)acc->u.s.ptr;
    p = sl_xrealloc(p, x->u.s.len + 1);
    memcpy(p, x->u.s.ptr, x->u.s.len);
    acc->is_null = false;
    acc->u.s.ptr = p;
    acc->u.s.len = x->u.s.len;
}

/* Checks that rec can be folded into e: sums must not overflow. */
static int ag_check(const sl_agg_t *a, const ag_entry_t *e, const sl_value_t *rec, sl_reason_t *why)
{
    for (size_t i = 0; i < a->c->n_specs; i++) {
        const sl_agg_spec_t *s = &a->c->specs[i];
        const sl_value_t *acc = &e->v[a->c->n_group + i];
        int64_t r;
        if (s->fn == SL_AGG_FN_SUM && s->type == SL_TYPE_INT64 && !acc->is_null &&
            !rec[s->field].is_null && __builtin_add_overflow(acc->u.i, rec[s->field].u.i, &r)) {
            snprintf(why->text, sizeof(why->text),
                     "aggregate: sum of '%s' would overflow int64 (total %" PRId64
                     ", adding %" PRId64 ")",
                     a->record->fields[s->field].name, acc->u.i, rec[s->field].u.i);
            return -1;
        }
    }
    return 0;
}

static void ag_fold(const sl_agg_t *a, ag_entry_t *e, const sl_value_t *rec)
{
    for (size_t i = 0; i < a->c->n_specs; i++) {
        const sl_agg_spec_t *s = &a->c->specs[i];
        sl_value_t *acc = &e->v[a->c->n_group + i];
        if (s->field == SIZE_MAX) {
            acc->u.i++; /* count() */
            continue;
        }
        const sl_value_t *x = &rec[s->field];
        if (x->is_null) {
            continue; /* like SQL: aggregates skip nulls */
        }
        switch (s->fn) {
        case SL_AGG_FN_COUNT:
            acc->u.i++;
            break;
        case SL_AGG_FN_SUM:
            if (s->type == SL_TYPE_DOUBLE) {
                double d =
                    a->record->fields[s->field].type == SL_TYPE_DOUBLE ? x->u.d : (double)x->u.i;
                acc->u.d = acc->is_null ? d : acc->u.d + d;
            } else {
                acc->u.i = acc->is_null ? x->u.i : acc->u.i + x->u.i;
            }
            acc->is_null = false;
            break;
        case SL_AGG_FN_MIN:
            if (acc->is_null || ag_cmp(x, acc, s->type) < 0) {
                ag_set(acc, x, s->type);
            }
            break;
        case SL_AGG_FN_MAX:
            if (acc->is_null || ag_cmp(x, acc, s->type) > 0) {
                ag_set(acc, x, s->type);
            }
            break;
        case SL_AGG_FN_LAST:
            ag_set(acc, x, s->type);
            break;
        }
    }
}

static void ag_fmt_ts(int64_t us, char *out, size_t cap)
{
    int64_t days = us >= 0 ? us / AG_US_PER_DAY : -((-us + AG_US_PER_DAY - 1) / AG_US_PER_DAY);
    int64_t rem = (us - days * AG_US_PER_DAY) / 1000000;
    char d[11];
    sl_date_format(days, d);
    snprintf(out, cap, "%sT%02d:%02d:%02dZ", d, (int)(rem / 3600), (int)(rem / 60 % 60),
             (int)(rem % 60));
}

/* Places event time t in its window; returns 0, or -1 with why set. */
static int ag_window(sl_agg_t *a, int64_t t, int64_t *wstart, int64_t *wend)
{
    if (t >= a->cw_start && t < a->cw_end) {
        *wstart = a->cw_start;
        *wend = a->cw_end;
        return 0;
    }
    int64_t s = sl_tz_trunc_us(a->c->tz, t, a->c->size_us);
    /* the next window starts at the local boundary after this one: half a
     * window on, a 23- or 25-hour day still lands in the next day */
    int64_t e = a->c->tz
                    ? sl_tz_trunc_us(a->c->tz, s + a->c->size_us + a->c->size_us / 2, a->c->size_us)
                    : s + a->c->size_us;
    a->cw_start = *wstart = s;
    a->cw_end = *wend = e;
    return 0;
}

void sl_agg_set_clock(sl_agg_t *a, int64_t now_ms, int64_t wall_us)
{
    a->now_ms = now_ms;
    a->wall_us = wall_us;
    /* records hashed ahead may be gone (their batch freed) by now */
    memset(a->pf_rec, 0, sizeof(a->pf_rec));
}

/* The hash of rec's group (and window). */
static uint64_t ag_hash(sl_agg_t *a, const sl_value_t *rec, int64_t wstart)
{
    return sl_schema_hash(a->record, rec, a->c->group, a->c->n_group, (uint64_t)wstart);
}

static size_t ag_pf_index(const sl_value_t *rec)
{
    return (size_t)(((uintptr_t)rec >> 4) * 0x9E3779B97F4A7C15ull >> 58) % AG_PF;
}

void sl_agg_prefetch(sl_agg_t *a, const sl_value_t *rec)
{
    size_t i = ag_pf_index(rec);
    if (a->pf_rec[i] == rec) {
        /* hashed before: its slot should be in cache now, fetch the entry */
        const ag_slot_t *sl = &a->tab[(size_t)a->pf_hash[i] & (a->cap - 1)];
        if (sl->e != NULL) {
            __builtin_prefetch(sl->e);
        }
        return;
    }
    int64_t wstart = AG_NO_TIME, wend;
    if (a->c->windowed) {
        const sl_value_t *tv = &rec[a->c->time_field];
        if (tv->is_null) {
            return;
        }
        ag_window(a, tv->u.i, &wstart, &wend);
    }
    uint64_t h = ag_hash(a, rec, wstart);
    a->pf_rec[i] = rec;
    a->pf_hash[i] = h;
    __builtin_prefetch(&a->tab[(size_t)h & (a->cap - 1)]);
}

sl_agg_verdict_t sl_agg_add(sl_agg_t *a, const sl_value_t *rec, uint32_t slot, uint32_t gen,
                            int64_t offset, sl_reason_t *why)
{
    const sl_agg_conf_t *c = a->c;
    int64_t wstart = AG_NO_TIME, wend = AG_NO_TIME;
    if (c->windowed) {
        const sl_value_t *tv = &rec[c->time_field];
        if (tv->is_null) {
            snprintf(why->text, sizeof(why->text),
                     "aggregate: event time field '%s' is null or absent",
                     a->record->fields[c->time_field].name);
            return SL_AGG_REJECT;
        }
        int64_t t = tv->u.i;
        if (c->max_future_us > 0 && t > a->wall_us + c->max_future_us) {
            char ts[40];
            ag_fmt_ts(t, ts, sizeof(ts));
            snprintf(why->text, sizeof(why->text),
                     "aggregate: event time %s is more than max_future ahead of the clock", ts);
            return SL_AGG_REJECT;
        }
        ag_window(a, t, &wstart, &wend);
        if (slot < a->n_restored && a->restored[slot].set && a->restored[slot].gen == gen &&
            wend <= a->restored[slot].closed_us) {
            if (offset < a->restored[slot].done) {
                return SL_AGG_REPLAYED; /* folded (or dead-lettered) before the restart */
            }
            char ts[40], we[40];
            ag_fmt_ts(t, ts, sizeof(ts));
            ag_fmt_ts(wend, we, sizeof(we));
            snprintf(why->text, sizeof(why->text),
                     "late: event time %s, its window (ending %s) was closed and written before "
                     "a restart",
                     ts, we);
            return SL_AGG_LATE;
        }
        bool closed = a->stream_us != AG_NO_TIME && wend <= a->stream_us - c->grace_us;
        if (closed || wend <= a->closed_us) {
            char ts[40], we[40];
            ag_fmt_ts(t, ts, sizeof(ts));
            ag_fmt_ts(wend, we, sizeof(we));
            if (closed) {
                char st[40];
                ag_fmt_ts(a->stream_us, st, sizeof(st));
                snprintf(why->text, sizeof(why->text),
                         "late: event time %s, its window ended %s and closed after the grace "
                         "period (stream time %s)",
                         ts, we, st);
            } else {
                snprintf(why->text, sizeof(why->text),
                         "late: event time %s, its window (ending %s) was closed early because "
                         "aggregate.max_keys was reached",
                         ts, we);
            }
            return SL_AGG_LATE;
        }
    }
    size_t pfi = ag_pf_index(rec);
    uint64_t h = a->pf_rec[pfi] == rec ? a->pf_hash[pfi] : ag_hash(a, rec, wstart);
    a->pf_rec[pfi] = NULL;
    size_t mask = a->cap - 1;
    ag_entry_t *e;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        e = a->tab[i].e;
        if (e == NULL || (a->tab[i].hash == h && ag_key_equal(a, e, rec, wstart))) {
            break;
        }
    }
    if (e == NULL) {
        if ((int64_t)a->n >= c->max_keys) {
            return SL_AGG_FULL;
        }
        e = ag_entry_new(a, rec, h, wstart, wend, slot);
    } else if (ag_check(a, e, rec, why) != 0) {
        return SL_AGG_REJECT;
    }
    ag_fold(a, e, rec);
    if (!e->dirty) {
        e->dirty = true;
        a->n_dirty++;
    }
    if (a->dirty_since_ms == 0) {
        a->dirty_since_ms = a->now_ms > 0 ? a->now_ms : 1;
    }
    if (c->windowed && (a->stream_us == AG_NO_TIME || rec[c->time_field].u.i > a->stream_us)) {
        a->stream_us = rec[c->time_field].u.i;
    }
    ag_pin(ag_hold_for(a, wstart, wend), slot, gen, offset);
    return SL_AGG_TAKEN;
}

/* ---- flushing ------------------------------------------------------------------------------- */

/* Absolute mode: windows that closed by stream time (or must close early to
 * make room) are sealed, and their entries marked for eviction. */
static bool ag_hold_closed(const sl_agg_t *a, const ag_hold_t *h)
{
    return a->stream_us != AG_NO_TIME && h->wend <= a->stream_us - a->c->grace_us;
}

static bool ag_seal_windows(sl_agg_t *a)
{
    bool any = false;
    for (size_t i = 0; i < a->n_holds; i++) {
        ag_hold_t *h = &a->holds[i];
        if (!h->sealed && ag_hold_closed(a, h)) {
            h->sealed = true;
            a->sealed_us = SL_MAX(a->sealed_us, h->wend);
            any = true;
        }
    }
    if ((int64_t)a->n >= a->c->max_keys) {
        /* full: close the oldest open window early; records for it are late now */
        int64_t oldest = INT64_MAX, end = AG_NO_TIME;
        for (size_t i = 0; i < a->n_holds; i++) {
            if (!a->holds[i].sealed && a->holds[i].wstart < oldest) {
                oldest = a->holds[i].wstart;
                end = a->holds[i].wend;
            }
        }
        if (end != AG_NO_TIME) {
            for (size_t i = 0; i < a->n_holds; i++) {
                if (!a->holds[i].sealed && a->holds[i].wend <= end) {
                    a->holds[i].sealed = true;
                }
                a->sealed_us = SL_MAX(a->sealed_us, end);
            }
            a->closed_us = SL_MAX(a->closed_us, end);
            any = true;
        }
    }
    return any;
}

/* True if entry e's window is closed (absolute mode). */
static bool ag_window_closed(const sl_agg_t *a, const ag_entry_t *e)
{
    return (a->stream_us != AG_NO_TIME && e->wend <= a->stream_us - a->c->grace_us) ||
           e->wend <= a->closed_us;
}

bool sl_agg_flush_due(const sl_agg_t *a, int64_t now_ms, bool force)
{
    if (a->flushing) {
        return false;
    }
    bool full = (int64_t)a->n >= a->c->max_keys;
    bool work = a->n_dirty > 0;
    for (size_t i = 0; i < a->n_holds && !work && a->c->mode == SL_AGG_ABSOLUTE; i++) {
        work = !a->holds[i].sealed && ag_hold_closed(a, &a->holds[i]);
    }
    if (!work && !full) {
        return false;
    }
    if (force || full) {
        return true;
    }
    return a->dirty_since_ms != 0 && now_ms - a->dirty_since_ms >= a->c->flush_interval_ms;
}

int64_t sl_agg_next_flush_ms(const sl_agg_t *a)
{
    if (a->flushing || a->dirty_since_ms == 0) {
        return INT64_MAX;
    }
    return a->dirty_since_ms + a->c->flush_interval_ms;
}

/* Writes entry e's output row into row (strings copied into arena). */
static void ag_row(const sl_agg_t *a, const ag_entry_t *e, sl_value_t *row, sl_arena_t *arena)
{
    size_t k = 0;
    for (size_t i = 0; i < a->c->n_group; i++) {
        row[k++] = e->v[i];
    }
    if (a->c->windowed) {
        row[k++] = (sl_value_t){.is_null = false, .u.i = e->wstart};
        row[k++] = (sl_value_t){.is_null = false, .u.i = e->wend};
    }
    for (size_t i = 0; i < a->c->n_specs; i++) {
        row[k++] = e->v[a->c->n_group + i];
    }
    for (size_t f = 0; f < k; f++) {
        if (!row[f].is_null && a->c->out.fields[f].type == SL_TYPE_STRING) {
            row[f].u.s.ptr = sl_arena_strndup(arena, row[f].u.s.ptr, row[f].u.s.len);
        }
    }
}

sl_value_t *sl_agg_flush(sl_agg_t *a, size_t *n, sl_arena_t *arena)
{
    bool delta = a->c->mode == SL_AGG_DELTA;
    if (delta) {
        if (a->n_holds > 0) {
            a->holds[a->n_holds - 1].sealed = true;
        }
    } else {
        ag_seal_windows(a);
    }
    size_t rows = 0;
    for (size_t i = 0; i < a->n; i++) {
        ag_entry_t *e = a->list[i];
        e->evict = delta || ag_window_closed(a, e);
        rows += e->dirty;
    }
    size_t nf = a->c->out.n_fields;
    sl_value_t *out = rows > 0 ? sl_xmalloc(rows * nf * sizeof(sl_value_t)) : NULL;
    size_t r = 0, w = 0;
    for (size_t i = 0; i < a->n; i++) {
        ag_entry_t *e = a->list[i];
        if (e->dirty) {
            ag_row(a, e, out + r * nf, arena);
            r++;
            e->dirty = false;
        }
        if (e->evict) {
            ag_entry_free(a, e);
        } else {
            a->list[w++] = e;
        }
    }
    bool evicted = w != a->n;
    a->n = w;
    a->n_dirty = 0;
    a->dirty_since_ms = 0;
    if (evicted) {
        ag_tab_rebuild(a, a->cap);
    }
    *n = rows;
    a->flush_sealed_us = a->sealed_us;
    if (rows == 0) {
        sl_agg_flush_done(a);
        return NULL;
    }
    a->flushing = true;
    return out;
}

void sl_agg_flush_done(sl_agg_t *a)
{
    a->flushing = false;
    a->written_us = SL_MAX(a->written_us, a->flush_sealed_us);
    ag_release_sealed(a);
}

#define AG_META_TAG "sluice-agg/1"

size_t sl_agg_commit_meta(const sl_agg_t *a, uint32_t slot, uint32_t gen, int64_t done, char *out,
                          size_t cap)
{
    if (a->c->mode != SL_AGG_ABSOLUTE) {
        return 0;
    }
    int64_t closed = a->written_us;
    if (slot < a->n_restored && a->restored[slot].set && a->restored[slot].gen == gen) {
        /* what the previous owner wrote stays written */
        closed = SL_MAX(closed, a->restored[slot].closed_us);
    }
    int n = snprintf(out, cap, AG_META_TAG " closed=%" PRId64 " done=%" PRId64, closed, done);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int sl_agg_restore(sl_agg_t *a, uint32_t slot, uint32_t gen, const void *meta, size_t len)
{
    if (slot >= a->n_restored) {
        size_t n = SL_MAX((size_t)slot + 1, a->n_restored * 2);
        a->restored = sl_xrealloc(a->restored, n * sizeof(*a->restored));
        memset(a->restored + a->n_restored, 0, (n - a->n_restored) * sizeof(*a->restored));
        a->n_restored = n;
    }
    ag_restored_t *r = &a->restored[slot];
    r->set = false;
    char buf[96];
    if (a->c->mode != SL_AGG_ABSOLUTE || meta == NULL || len == 0 || len >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, meta, len);
    buf[len] = '\0';
    long long closed, done;
    char tail;
    if (sscanf(buf, AG_META_TAG " closed=%lld done=%lld%c", &closed, &done, &tail) != 2) {
        return -1;
    }
    *r = (ag_restored_t){gen, true, (int64_t)closed, (int64_t)done};
    return 0;
}

void sl_agg_drop_slot(sl_agg_t *a, uint32_t slot)
{
    for (size_t i = 0; i < a->n_holds; i++) {
        if (slot < a->holds[i].n_slots) {
            a->holds[i].first[slot] = -1;
        }
    }
    if (slot < a->n_restored) {
        a->restored[slot].set = false;
    }
    if (a->c->mode != SL_AGG_ABSOLUTE) {
        return; /* delta groups are written by the next flush anyway */
    }
    size_t w = 0;
    for (size_t i = 0; i < a->n; i++) {
        ag_entry_t *e = a->list[i];
        if (e->slot == slot) {
            a->n_dirty -= e->dirty;
            ag_entry_free(a, e);
        } else {
            a->list[w++] = e;
        }
    }
    if (w != a->n) {
        a->n = w;
        ag_tab_rebuild(a, a->cap);
    }
}
