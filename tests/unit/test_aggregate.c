/* aggregate (src/stages/aggregate.c): delta and absolute output, pins and
 * their release, null handling, windows at boundaries and in a time zone
 * across DST changes, late data and grace, max_future, max_keys in both
 * modes, sum overflow, revoked partitions, config errors with lines. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/schema.h"
#include "stages/aggregate.h"
#include "test.h"

#define US INT64_C(1000000)
#define HOUR (INT64_C(3600) * US)
/* 2024-10-27T00:00:00Z and 2024-03-31T00:00:00Z */
#define OCT27 (INT64_C(1729987200) * US)
#define MAR31 (INT64_C(1711843200) * US)

typedef struct fx {
    sl_doc_t *doc;
    sl_schema_t schema;
    sl_agg_conf_t *conf;
    sl_agg_t *agg;
    sl_errors_t errs;
    sl_arena_t arena;
} fx_t;

/* Schema: site (int64), name (string), views (int64), price (double), ts (timestamp). */
static int fx_load(fx_t *fx, const char *aggregate_yaml)
{
    memset(fx, 0, sizeof(*fx));
    char text[2048];
    snprintf(text, sizeof(text),
             "schema:\n"
             "  site: {type: int64}\n"
             "  name: {type: string}\n"
             "  views: {type: int64}\n"
             "  price: {type: double}\n"
             "  ts: {type: timestamp}\n"
             "aggregate:\n%s",
             aggregate_yaml);
    fx->doc = sl_doc_load_string("p.yaml", text, strlen(text), &fx->errs);
    if (fx->doc == NULL) {
        return -1;
    }
    const sl_node_t *root = sl_doc_root(fx->doc);
    if (sl_schema_parse(sl_node_get(root, "schema"), "p.yaml", &fx->schema, &fx->errs) != 0) {
        return -1;
    }
    sl_schema_finish(&fx->schema);
    int bad = 0;
    fx->conf =
        sl_agg_conf_parse(sl_node_get(root, "aggregate"), "p.yaml", &fx->schema, &fx->errs, &bad);
    if (fx->conf == NULL) {
        return -1;
    }
    fx->agg = sl_agg_create(fx->conf, &fx->schema);
    sl_agg_set_clock(fx->agg, 1000, OCT27);
    sl_arena_init(&fx->arena, 0);
    return 0;
}

static void fx_free(fx_t *fx)
{
    sl_agg_destroy(fx->agg);
    sl_agg_conf_destroy(fx->conf);
    sl_schema_free(&fx->schema);
    sl_doc_free(fx->doc);
    sl_errors_free(&fx->errs);
    sl_arena_free(&fx->arena);
}

#define NO_TS INT64_MIN

/* A record; a negative views, NO_TS or a NULL name means null. */
typedef struct {
    int64_t site;
    const char *name;
    int64_t views;
    double price;
    int64_t ts;
} in_t;

static sl_agg_verdict_t add(fx_t *fx, in_t r, uint32_t slot, int64_t offset, sl_reason_t *why)
{
    sl_value_t v[5];
    memset(v, 0, sizeof(v));
    v[0].u.i = r.site;
    v[1].is_null = r.name == NULL;
    if (r.name) {
        v[1].u.s = (sl_str_t){r.name, strlen(r.name)};
    }
    v[2].is_null = r.views < 0;
    v[2].u.i = r.views;
    v[3].u.d = r.price;
    v[4].is_null = r.ts == NO_TS;
    v[4].u.i = r.ts;
    return sl_agg_add(fx->agg, v, slot, 0, offset, why);
}

/* Finds the row of group site (and window start ws, or any) among n rows. */
static const sl_value_t *row_of(const fx_t *fx, const sl_value_t *rows, size_t n, int64_t site,
                                int64_t ws)
{
    size_t nf = fx->conf->out.n_fields;
    int wi = sl_schema_find(&fx->conf->out, "window_start", 12);
    for (size_t i = 0; i < n; i++) {
        const sl_value_t *r = rows + i * nf;
        if (r[0].u.i == site && (wi < 0 || r[wi].u.i == ws)) {
            return r;
        }
    }
    return NULL;
}

static int field(const fx_t *fx, const char *name)
{
    return sl_schema_find(&fx->conf->out, name, strlen(name));
}

TEST(delta_sums_and_pins_released_when_written)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  compute: {views: sum(views), n: count(), nv: count(views)}\n"),
              0);
    CHECK_STR(fx.conf->out.fields[0].name, "site");
    CHECK_INT(fx.conf->out.n_fields, 4);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), INT64_MAX);
    CHECK_INT(add(&fx, (in_t){1, "a", 5, 0, 0}, 0, 10, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){2, "a", 7, 0, 0}, 1, 3, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, "a", -1, 0, 0}, 0, 11, &why), SL_AGG_TAKEN); /* null views */
    CHECK_INT(add(&fx, (in_t){1, "a", 4, 0, 0}, 0, 12, &why), SL_AGG_TAKEN);
    CHECK_INT(sl_agg_keys(fx.agg), 2);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 10);
    CHECK_INT(sl_agg_pinned(fx.agg, 1, 0), 3);
    CHECK_INT(sl_agg_pinned(fx.agg, 1, 1), INT64_MAX); /* another generation */
    CHECK(sl_agg_dirty(fx.agg));

    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 2);
    const sl_value_t *r1 = row_of(&fx, rows, n, 1, 0);
    CHECK(r1 != NULL && r1[1].u.i == 9 && r1[2].u.i == 3 && r1[3].u.i == 2);
    CHECK(sl_agg_flushing(fx.agg));
    CHECK(!sl_agg_dirty(fx.agg));
    CHECK_INT(sl_agg_keys(fx.agg), 0);               /* delta: the state restarts empty */
    CHECK(!sl_agg_flush_due(fx.agg, 1000000, true)); /* one flush at a time */
    /* the flush is not written yet: its offsets stay pinned */
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 10);
    /* records folded meanwhile belong to the next flush */
    CHECK_INT(add(&fx, (in_t){1, "a", 1, 0, 0}, 0, 13, &why), SL_AGG_TAKEN);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 10);
    sl_agg_flush_done(fx.agg);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 13);
    CHECK_INT(sl_agg_pinned(fx.agg, 1, 0), INT64_MAX);
    free(rows);
    rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 1);
    CHECK(rows != NULL && rows[1].u.i == 1); /* the delta since the last flush */
    sl_agg_flush_done(fx.agg);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), INT64_MAX);
    free(rows);
    fx_free(&fx);
}

TEST(min_max_last_of_strings_and_nulls)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  compute: {lo: min(name), hi: max(name), last: last(name), "
                           "top: max(price), s: sum(views)}\n"),
              0);
    CHECK_INT(fx.conf->out.fields[field(&fx, "lo")].type, SL_TYPE_STRING);
    CHECK_INT(fx.conf->out.fields[field(&fx, "top")].type, SL_TYPE_DOUBLE);
    char buf[8];
    const char *names[] = {"m", "zz", NULL, "a", "q"};
    for (int i = 0; i < 5; i++) {
        /* the record's string is gone after add: the state must own a copy */
        const char *nm = NULL;
        if (names[i]) {
            snprintf(buf, sizeof(buf), "%s", names[i]);
            nm = buf;
        }
        CHECK_INT(add(&fx, (in_t){1, nm, -1, 0.5 * i, 0}, 0, i, &why), SL_AGG_TAKEN);
        memset(buf, 'X', sizeof(buf) - 1);
    }
    CHECK_INT(add(&fx, (in_t){2, NULL, -1, -3, 0}, 0, 9, &why), SL_AGG_TAKEN);
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 2);
    const sl_value_t *r = row_of(&fx, rows, n, 1, 0);
    CHECK(r != NULL);
    if (r != NULL) {
        CHECK(r[1].u.s.len == 1 && memcmp(r[1].u.s.ptr, "a", 1) == 0);
        CHECK(r[2].u.s.len == 2 && memcmp(r[2].u.s.ptr, "zz", 2) == 0);
        CHECK(r[3].u.s.len == 1 && memcmp(r[3].u.s.ptr, "q", 1) == 0); /* last non-null */
        CHECK(r[4].u.d == 2.0);
        CHECK(r[5].is_null); /* sum of nothing but nulls */
    }
    r = row_of(&fx, rows, n, 2, 0);
    CHECK(r != NULL && r[1].is_null && r[2].is_null && r[3].is_null && r[4].u.d == -3);
    sl_agg_flush_done(fx.agg);
    free(rows);
    fx_free(&fx);
}

TEST(utc_windows_at_their_boundaries)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  window: {field: ts, size: 1h, grace: 1h}\n"
                           "  compute: {n: count()}\n"),
              0);
    CHECK_INT(field(&fx, "window_start"), 1);
    CHECK_INT(field(&fx, "window_end"), 2);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, OCT27 + HOUR - 1}, 0, 0, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, OCT27 + HOUR}, 0, 1, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, OCT27}, 0, 2, &why), SL_AGG_TAKEN);
    /* before the epoch: floor, not truncation toward zero */
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, -1}, 0, 3, &why), SL_AGG_LATE);
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 2);
    const sl_value_t *a = row_of(&fx, rows, n, 1, OCT27);
    const sl_value_t *b = row_of(&fx, rows, n, 1, OCT27 + HOUR);
    CHECK(a != NULL && a[2].u.i == OCT27 + HOUR && a[3].u.i == 2);
    CHECK(b != NULL && b[2].u.i == OCT27 + 2 * HOUR && b[3].u.i == 1);
    sl_agg_flush_done(fx.agg);
    free(rows);
    fx_free(&fx);

    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  window: {field: ts, size: 1h, grace: 0s}\n"
                           "  compute: {n: count()}\n"),
              0);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, -1}, 0, 0, &why), SL_AGG_TAKEN);
    rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK(n == 1 && rows[1].u.i == -HOUR && rows[2].u.i == 0);
    sl_agg_flush_done(fx.agg);
    free(rows);
    fx_free(&fx);
}

TEST(day_windows_follow_local_midnight_across_dst)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  window: {field: ts, size: 1d, time_zone: Europe/Paris, grace: 3d}\n"
                           "  compute: {n: count()}\n"),
              0);
    /* 2024-10-27 in Paris has 25 hours: 2024-10-26T22:00Z .. 2024-10-27T23:00Z */
    int64_t oct_lo = OCT27 - 2 * HOUR, oct_hi = OCT27 + 23 * HOUR;
    /* 2024-03-31 in Paris has 23 hours: 2024-03-30T23:00Z .. 2024-03-31T22:00Z */
    int64_t mar_lo = MAR31 - HOUR, mar_hi = MAR31 + 22 * HOUR;
    sl_agg_set_clock(fx.agg, 1000, OCT27 + 48 * HOUR);
    int64_t ts[] = {oct_lo,     oct_hi - 1, oct_lo - 1, oct_hi,           mar_lo,
                    mar_hi - 1, mar_lo - 1, mar_hi,     OCT27 + 12 * HOUR};
    for (size_t i = 0; i < SL_ARRAY_LEN(ts); i++) {
        /* March is months behind stream time (October): late */
        sl_agg_verdict_t v = add(&fx, (in_t){1, NULL, 0, 0, ts[i]}, 0, (int64_t)i, &why);
        CHECK_INT(v, ts[i] < OCT27 - 3 * 24 * HOUR ? SL_AGG_LATE : SL_AGG_TAKEN);
    }
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 3);
    const sl_value_t *d = row_of(&fx, rows, n, 1, oct_lo);
    CHECK(d != NULL && d[2].u.i == oct_hi && d[3].u.i == 3);
    d = row_of(&fx, rows, n, 1, oct_lo - 24 * HOUR);
    CHECK(d != NULL && d[2].u.i == oct_lo && d[3].u.i == 1);
    d = row_of(&fx, rows, n, 1, oct_hi);
    CHECK(d != NULL && d[2].u.i == oct_hi + 24 * HOUR && d[3].u.i == 1);
    sl_agg_flush_done(fx.agg);
    free(rows);
    /* March alone, in a fresh state */
    sl_agg_destroy(fx.agg);
    fx.agg = sl_agg_create(fx.conf, &fx.schema);
    sl_agg_set_clock(fx.agg, 1000, MAR31 + 48 * HOUR);
    int64_t mts[] = {mar_lo, mar_hi - 1, mar_lo - 1, mar_hi};
    for (size_t i = 0; i < SL_ARRAY_LEN(mts); i++) {
        CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, mts[i]}, 0, (int64_t)i, &why), SL_AGG_TAKEN);
    }
    rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 3);
    d = row_of(&fx, rows, n, 1, mar_lo);
    CHECK(d != NULL && d[2].u.i == mar_hi && d[3].u.i == 2);
    d = row_of(&fx, rows, n, 1, mar_lo - 24 * HOUR);
    CHECK(d != NULL && d[2].u.i == mar_lo);
    sl_agg_flush_done(fx.agg);
    free(rows);
    fx_free(&fx);
}

TEST(late_records_and_grace)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  window: {field: ts, size: 1h, grace: 10m}\n"
                           "  compute: {n: count()}\n"),
              0);
    int64_t m = 60 * US;
    int64_t t0 = OCT27 + 10 * HOUR;
    sl_agg_set_clock(fx.agg, 1000, t0 + 70 * m);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, t0 + 30 * m}, 0, 0, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, t0 + 69 * m}, 0, 1, &why), SL_AGG_TAKEN);
    /* stream time 11:09: the 10:00 window takes records until 11:10 */
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, t0 + 59 * m}, 0, 2, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, t0 + 70 * m}, 0, 3, &why), SL_AGG_TAKEN);
    /* stream time 11:10: closed */
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, t0 + 59 * m}, 0, 4, &why), SL_AGG_LATE);
    CHECK_CONTAINS(why.text, "late: event time 2024-10-27T10:59:00Z");
    CHECK_CONTAINS(why.text, "ended 2024-10-27T11:00:00Z");
    CHECK_CONTAINS(why.text, "stream time 2024-10-27T11:10:00Z");
    /* a null event time cannot be placed */
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, NO_TS}, 0, 5, &why), SL_AGG_REJECT);
    CHECK_CONTAINS(why.text, "event time field 'ts' is null");
    /* far ahead of the wall clock (max_future 1h by default) */
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, t0 + 70 * m + HOUR + 1}, 0, 6, &why), SL_AGG_REJECT);
    CHECK_CONTAINS(why.text, "max_future");
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, t0 + 70 * m + HOUR}, 0, 7, &why), SL_AGG_TAKEN);
    fx_free(&fx);
}

TEST(absolute_running_totals_until_the_window_closes)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  window: {field: ts, size: 1h}\n"
                           "  compute: {v: sum(views)}\n"
                           "  output: absolute\n"),
              0);
    int64_t t0 = OCT27;
    CHECK_INT(add(&fx, (in_t){1, NULL, 5, 0, t0 + 1}, 0, 100, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){2, NULL, 1, 0, t0 + 2}, 0, 101, &why), SL_AGG_TAKEN);
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 2);
    sl_agg_flush_done(fx.agg);
    free(rows);
    /* the window is open: the groups stay and so do the pins */
    CHECK_INT(sl_agg_keys(fx.agg), 2);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 100);
    CHECK(!sl_agg_flush_due(fx.agg, INT64_MAX / 2, false)); /* nothing changed */
    CHECK_INT(add(&fx, (in_t){1, NULL, 3, 0, t0 + 3}, 0, 102, &why), SL_AGG_TAKEN);
    rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 1); /* only the changed group, with its running total */
    CHECK(rows != NULL && rows[0].u.i == 1 && rows[3].u.i == 8);
    sl_agg_flush_done(fx.agg);
    free(rows);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 100);
    /* a record of the next window moves stream time past the end: the first
     * window closes at the next flush, its pins go once that flush is done */
    CHECK_INT(add(&fx, (in_t){1, NULL, 2, 0, t0 + HOUR}, 0, 103, &why), SL_AGG_TAKEN);
    CHECK(sl_agg_flush_due(fx.agg, INT64_MAX / 2, false));
    rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 1);
    CHECK_INT(sl_agg_keys(fx.agg), 1); /* the closed window's groups are gone */
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 100);
    sl_agg_flush_done(fx.agg);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 103);
    free(rows);
    /* its records are late now */
    CHECK_INT(add(&fx, (in_t){1, NULL, 2, 0, t0 + 5}, 0, 104, &why), SL_AGG_LATE);
    /* the partition is revoked: its groups and pins go */
    sl_agg_drop_slot(fx.agg, 0);
    CHECK_INT(sl_agg_keys(fx.agg), 0);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), INT64_MAX);
    fx_free(&fx);

    /* absolute without a window is refused */
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  compute: {v: sum(views)}\n"
                           "  output: absolute\n"),
              -1);
    CHECK(fx.errs.n == 1 && strstr(fx.errs.msgs[0], "absolute needs a window") != NULL);
    fx_free(&fx);
}

TEST(max_keys_flushes_early_or_closes_the_oldest_window)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  compute: {n: count()}\n"
                           "  max_keys: 2\n"),
              0);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, 0}, 0, 0, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){2, NULL, 0, 0, 0}, 0, 1, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, 0}, 0, 2, &why), SL_AGG_TAKEN); /* known key */
    CHECK_INT(add(&fx, (in_t){3, NULL, 0, 0, 0}, 0, 3, &why), SL_AGG_FULL);
    CHECK(sl_agg_flush_due(fx.agg, 1000, false)); /* full: due before the timer */
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 2);
    CHECK_INT(add(&fx, (in_t){3, NULL, 0, 0, 0}, 0, 3, &why), SL_AGG_TAKEN);
    sl_agg_flush_done(fx.agg);
    free(rows);
    fx_free(&fx);

    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  window: {field: ts, size: 1h, grace: 1d}\n"
                           "  compute: {n: count()}\n"
                           "  output: absolute\n"
                           "  max_keys: 2\n"),
              0);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, OCT27}, 0, 0, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, OCT27 + HOUR}, 0, 1, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){2, NULL, 0, 0, OCT27 + HOUR}, 0, 2, &why), SL_AGG_FULL);
    rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 2);
    CHECK_INT(sl_agg_keys(fx.agg), 1); /* the 00:00 window was closed early */
    CHECK_INT(add(&fx, (in_t){2, NULL, 0, 0, OCT27 + HOUR}, 0, 2, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){3, NULL, 0, 0, OCT27 + 5}, 0, 3, &why), SL_AGG_LATE);
    CHECK_CONTAINS(why.text, "closed early because aggregate.max_keys was reached");
    sl_agg_flush_done(fx.agg);
    free(rows);
    CHECK_INT(sl_agg_pinned(fx.agg, 0, 0), 1);
    fx_free(&fx);
}

TEST(sum_overflow_is_rejected_without_changing_the_group)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  compute: {v: sum(views), n: count()}\n"),
              0);
    CHECK_INT(add(&fx, (in_t){1, NULL, INT64_MAX - 1, 0, 0}, 0, 0, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 2, 0, 0}, 0, 1, &why), SL_AGG_REJECT);
    CHECK_CONTAINS(why.text, "sum of 'views' would overflow int64");
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK(n == 1 && rows[1].u.i == INT64_MAX - 1 && rows[2].u.i == 1);
    sl_agg_flush_done(fx.agg);
    free(rows);
    fx_free(&fx);
}

TEST(flush_timer)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  compute: {n: count()}\n"
                           "  flush_interval: 500ms\n"),
              0);
    CHECK_INT(sl_agg_next_flush_ms(fx.agg), INT64_MAX);
    CHECK(!sl_agg_flush_due(fx.agg, 5000, true)); /* nothing to write */
    sl_agg_set_clock(fx.agg, 2000, OCT27);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, 0}, 0, 0, &why), SL_AGG_TAKEN);
    sl_agg_set_clock(fx.agg, 2300, OCT27);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, 0}, 0, 1, &why), SL_AGG_TAKEN);
    CHECK_INT(sl_agg_next_flush_ms(fx.agg), 2500); /* from the first waiting record */
    CHECK(!sl_agg_flush_due(fx.agg, 2499, false));
    CHECK(sl_agg_flush_due(fx.agg, 2499, true));
    CHECK(sl_agg_flush_due(fx.agg, 2500, false));
    fx_free(&fx);
}

TEST(commit_metadata_skips_replayed_records_of_written_windows)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n"
                           "  window: {field: ts, size: 1h}\n"
                           "  compute: {n: count()}\n"
                           "  output: absolute\n"),
              0);
    char meta[96];
    /* nothing written yet: nothing is skipped after a restart */
    CHECK(sl_agg_commit_meta(fx.agg, 0, 0, 0, meta, sizeof(meta)) > 0);
    CHECK_CONTAINS(meta, "closed=-9223372036854775808");
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, OCT27 + 1}, 0, 10, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){1, NULL, 0, 0, OCT27 + HOUR}, 0, 11, &why), SL_AGG_TAKEN);
    CHECK_INT(add(&fx, (in_t){2, NULL, 0, 0, OCT27 + 2}, 0, 12, &why), SL_AGG_LATE);
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    /* sealed, not written yet: not in the metadata */
    CHECK(sl_agg_commit_meta(fx.agg, 0, 0, 12, meta, sizeof(meta)) > 0);
    CHECK_CONTAINS(meta, "closed=-9223372036854775808 done=12");
    sl_agg_flush_done(fx.agg);
    free(rows);
    CHECK(sl_agg_commit_meta(fx.agg, 0, 0, 13, meta, sizeof(meta)) > 0);
    char want[96];
    snprintf(want, sizeof(want), "sluice-agg/1 closed=%" PRId64 " done=13", OCT27 + HOUR);
    CHECK_STR(meta, want);

    /* a new process gets the partition with that metadata */
    sl_agg_t *b = sl_agg_create(fx.conf, &fx.schema);
    sl_agg_set_clock(b, 1000, OCT27 + 2 * HOUR);
    CHECK_INT(sl_agg_restore(b, 0, 7, meta, strlen(meta)), 0);
    CHECK_INT(sl_agg_restore(b, 1, 7, "other app", 9), -1);
    sl_agg_t *saved = fx.agg;
    fx.agg = b;
    /* replayed from the oldest open window's first record (11): a record of
     * the written window below `done` is skipped, one above is late */
    sl_value_t v[5];
    memset(v, 0, sizeof(v));
    v[1].is_null = true;
    v[4].u.i = OCT27 + 5;
    CHECK_INT(sl_agg_add(b, v, 0, 7, 12, &why), SL_AGG_REPLAYED);
    CHECK_INT(sl_agg_add(b, v, 0, 7, 13, &why), SL_AGG_LATE);
    CHECK_CONTAINS(why.text, "closed and written before a restart");
    CHECK_INT(sl_agg_add(b, v, 0, 8, 13, &why), SL_AGG_TAKEN); /* another assignment */
    v[4].u.i = OCT27 + HOUR + 5;
    CHECK_INT(sl_agg_add(b, v, 0, 7, 14, &why), SL_AGG_TAKEN);
    /* the restored boundary is passed on in this process's commits */
    CHECK(sl_agg_commit_meta(b, 0, 7, 15, meta, sizeof(meta)) > 0);
    snprintf(want, sizeof(want), "sluice-agg/1 closed=%" PRId64 " done=15", OCT27 + HOUR);
    CHECK_STR(meta, want);
    fx.agg = saved;
    sl_agg_destroy(b);
    fx_free(&fx);

    /* delta mode needs no metadata */
    CHECK_INT(fx_load(&fx, "  group_by: [site]\n  compute: {n: count()}\n"), 0);
    CHECK_INT(sl_agg_commit_meta(fx.agg, 0, 0, 0, meta, sizeof(meta)), 0);
    fx_free(&fx);
}

/* Folding with sl_agg_prefetch ahead gives the same groups as without,
 * also when a prefetched record is replaced before it is added (the
 * prefetch is forgotten at sl_agg_set_clock). */
TEST(prefetch_does_not_change_results)
{
    fx_t fx;
    sl_reason_t why;
    CHECK_INT(fx_load(&fx, "  group_by: [site, name]\n  compute: {v: sum(views)}\n"), 0);
    enum { N = 5000 };
    static sl_value_t recs[N][5];
    static const char *names[] = {"a", "b", "c"};
    int64_t want[50][3] = {{0}};
    for (int i = 0; i < N; i++) {
        memset(recs[i], 0, sizeof(recs[i]));
        recs[i][0].u.i = (i * 7919) % 50;
        recs[i][1].u.s = (sl_str_t){names[i % 3], 1};
        recs[i][2].u.i = i;
        recs[i][4].is_null = true;
        want[(i * 7919) % 50][i % 3] += i;
    }
    for (int i = 0; i < N; i++) {
        if (i % 1000 == 0) {
            /* a new batch: what was prefetched of the old one is forgotten,
             * and the record slot it named now holds another group */
            sl_agg_set_clock(fx.agg, 1000, OCT27);
            if (i + 8 < N) {
                sl_agg_prefetch(fx.agg, recs[i + 8]);
            }
            recs[i + 8][0].u.i = (recs[i + 8][0].u.i + 1) % 50;
            want[recs[i + 8][0].u.i][(i + 8) % 3] += i + 8;
            want[(recs[i + 8][0].u.i + 49) % 50][(i + 8) % 3] -= i + 8;
            sl_agg_set_clock(fx.agg, 1000, OCT27);
        }
        if (i + 16 < N) {
            sl_agg_prefetch(fx.agg, recs[i + 16]);
        }
        if (i + 8 < N) {
            sl_agg_prefetch(fx.agg, recs[i + 8]);
        }
        CHECK_INT(sl_agg_add(fx.agg, recs[i], 0, 0, i, &why), SL_AGG_TAKEN);
    }
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(fx.agg, &n, &fx.arena);
    CHECK_INT(n, 150);
    int ok = 0;
    for (size_t r = 0; r < n; r++) {
        const sl_value_t *row = rows + r * 3;
        ok += row[2].u.i == want[row[0].u.i][row[1].u.s.ptr[0] - 'a'];
    }
    CHECK_INT(ok, 150);
    sl_agg_flush_done(fx.agg);
    free(rows);
    fx_free(&fx);
}

TEST(config_errors_name_the_line)
{
    struct {
        const char *yaml;
        const char *want;
    } cases[] = {
        {"  group_by: [site]\n  compute: {v: avg(views)}\n",
         "p.yaml:9: aggregate.compute.v: 'avg(views)' is not an aggregate"},
        {"  group_by: [site]\n  compute: {v: sum(name)}\n",
         "sum() needs a number, 'name' is string"},
        {"  group_by: [site]\n  compute: {v: sum(nope)}\n", "no field 'nope' after transform"},
        {"  group_by: [site]\n  compute: {v: sum()}\n", "sum() needs a field"},
        {"  group_by: [sitex]\n  compute: {n: count()}\n",
         "p.yaml:8:13: aggregate.group_by: no field 'sitex'"},
        {"  group_by: [site]\n  compute: {site: count()}\n",
         "output field 'site' is defined twice"},
        {"  group_by: [site]\n  compute: {n: count()}\n  window: {field: views, size: 1h}\n",
         "p.yaml:10:19: aggregate.window: field 'views' is int64, the event time must be a "
         "timestamp"},
        {"  group_by: [site]\n  compute: {n: count()}\n"
         "  window: {field: ts, size: 7m, time_zone: Europe/Paris}\n",
         "p.yaml:10:29: aggregate.window: with time_zone the size must be whole seconds dividing"},
        {"  group_by: [site]\n  compute: {n: count()}\n"
         "  window: {field: ts, size: 1h, time_zone: Mars/Olympus}\n",
         "unknown time zone 'Mars/Olympus'"},
        {"  group_by: [site]\n  compute: {n: count()}\n  windw: {}\n", "unknown"},
        {"  group_by: [site]\n  compute: {n: count()}\n  window: {field: ts, size: 1h, lat: "
         "drop}\n",
         "unknown"},
        {"  group_by: [site]\n  compute: {}\n", "compute is empty"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        fx_t fx;
        CHECK_INT(fx_load(&fx, cases[i].yaml), -1);
        CHECK(fx.errs.n >= 1);
        if (fx.errs.n >= 1) {
            CHECK_CONTAINS(fx.errs.msgs[0], cases[i].want);
        }
        fx_free(&fx);
    }
}

TEST_MAIN(T(delta_sums_and_pins_released_when_written), T(min_max_last_of_strings_and_nulls),
          T(utc_windows_at_their_boundaries), T(day_windows_follow_local_midnight_across_dst),
          T(late_records_and_grace), T(absolute_running_totals_until_the_window_closes),
          T(max_keys_flushes_early_or_closes_the_oldest_window),
          T(sum_overflow_is_rejected_without_changing_the_group), T(flush_timer),
          T(commit_metadata_skips_replayed_records_of_written_windows),
          T(prefetch_does_not_change_results), T(config_errors_name_the_line))
