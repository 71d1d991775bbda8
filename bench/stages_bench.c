/* Per-stage cost of transform and filter (sl_stages_run), in ns per record,
 * on synthetic store/ad events held in memory (no Kafka, no JSON):
 *
 *   build/stages_bench [RECORDS]
 *
 * Each case is a pipeline config fragment parsed exactly as `sluice run`
 * would; the loop runs every record through it and reports the mean over
 * the best of 5 passes. docs/BENCHMARKS.md records the numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "core/schema.h"
#include "stages/aggregate.h"
#include "stages/dedup.h"
#include "stages/stages.h"

static const char *SCHEMA = "schema:\n"
                            "  name: {type: string}\n"
                            "  price: {type: double}\n"
                            "  timestamp_ms: {type: int64}\n"
                            "  user_id: {type: int64}\n"
                            "  owner_id: {type: int64}\n"
                            "  ad_id: {type: int64}\n";

static const struct {
    const char *name;
    const char *stages;
} CASES[] = {
    {"filter: user_id != owner_id && ad_id != null",
     "filter: \"user_id != owner_id && ad_id != null\"\n"},
    {"lookup: item -> department (exact, glob, default)",
     "transform:\n  - lookup:\n      from: name\n      to: dept\n      map:\n"
     "        blue-gopher|pink-gopher|purple-gopher: gophers\n"
     "        \"*-sticker\": stickers\n        \"*-shirt\": clothing\n      default: misc\n"},
    {"set: ts = timestamp_ms(timestamp_ms), day = date(ts, 'Europe/Paris')",
     "transform:\n  - set:\n      ts: \"timestamp_ms(timestamp_ms)\"\n"
     "      day: \"date(ts, 'Europe/Paris')\"\n"},
    {"set: key = xxh3(name, user_id)",
     "transform:\n  - set:\n      key: \"xxh3(name, user_id)\"\n"},
    {"rename + drop (no per-record work)",
     "transform:\n  - rename: {name: item}\n  - drop: [owner_id]\n"},
};

static const char *NAMES[] = {"blue-gopher", "pink-gopher",   "red-sticker",    "t-shirt",
                              "mug",         "purple-gopher", "gopher-sticker", "long-shirt"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* aggregate: site events (date, site_id, views, clicks) summed by (date,
 * site_id) over 100,000 groups, in random order; the fold, and the fold
 * plus one flush of all groups at the end, per record. */
static void bench_aggregate(size_t n)
{
    static const char text[] = "schema:\n"
                               "  date: {type: date}\n"
                               "  site_id: {type: int64}\n"
                               "  views: {type: int64}\n"
                               "  clicks: {type: int64}\n"
                               "aggregate:\n"
                               "  group_by: [date, site_id]\n"
                               "  compute: {views: sum(views), clicks: sum(clicks)}\n"
                               "  max_keys: 100000\n";
    sl_errors_t errs = {0};
    sl_doc_t *doc = sl_doc_load_string("bench.yaml", text, strlen(text), &errs);
    sl_schema_t sch = {0};
    int bad = 0;
    const sl_node_t *root = sl_doc_root(doc);
    if (sl_schema_parse(sl_node_get(root, "schema"), "bench.yaml", &sch, &errs) != 0) {
        sl_errors_print(&errs);
        exit(1);
    }
    sl_schema_finish(&sch);
    sl_agg_conf_t *c =
        sl_agg_conf_parse(sl_node_get(root, "aggregate"), "bench.yaml", &sch, &errs, &bad);
    if (c == NULL) {
        sl_errors_print(&errs);
        exit(1);
    }
    sl_value_t *recs = sl_xcalloc(n * 4, sizeof(sl_value_t));
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t k = x % 100000;
        recs[i * 4 + 0].u.i = 17000 + (int64_t)(k % 10);
        recs[i * 4 + 1].u.i = (int64_t)(k / 10);
        recs[i * 4 + 2].u.i = (int64_t)(i % 13);
        recs[i * 4 + 3].u.i = (int64_t)(i % 3);
    }
    double best_add = 1e30, best_all = 1e30;
    size_t rows = 0;
    for (int pass = 0; pass < 5; pass++) {
        sl_agg_t *a = sl_agg_create(c, &sch);
        sl_arena_t arena;
        sl_arena_init(&arena, 0);
        sl_reason_t why;
        double t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            if (sl_agg_add(a, recs + i * 4, 0, 0, (int64_t)i, &why) != SL_AGG_TAKEN) {
                fprintf(stderr, "aggregate: record %zu not taken\n", i);
                exit(1);
            }
        }
        double t1 = now_s();
        free(sl_agg_flush(a, &rows, &arena));
        sl_agg_flush_done(a);
        double t2 = now_s();
        best_add = t1 - t0 < best_add ? t1 - t0 : best_add;
        best_all = t2 - t0 < best_all ? t2 - t0 : best_all;
        sl_arena_free(&arena);
        sl_agg_destroy(a);
    }
    printf("| aggregate: sum 2 fields by (date, site_id), 100,000 groups, fold | %.1f |\n",
           best_add * 1e9 / (double)n);
    printf("| aggregate: the same, fold + flush of every group | %.1f |\n",
           best_all * 1e9 / (double)n);
    fprintf(stderr, "aggregate: %zu records into %zu rows\n", n, rows);
    free(recs);
    sl_agg_conf_destroy(c);
    sl_schema_free(&sch);
    sl_doc_free(doc);
    sl_errors_free(&errs);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 200000;
    printf("| stage | ns/record |\n|---|---:|\n");
    for (size_t c = 0; c < sizeof(CASES) / sizeof(CASES[0]); c++) {
        char text[2048];
        snprintf(text, sizeof(text), "%s%s", SCHEMA, CASES[c].stages);
        sl_errors_t errs = {0};
        sl_doc_t *doc = sl_doc_load_string("bench.yaml", text, strlen(text), &errs);
        sl_schema_t input = {0}, record = {0};
        int bad = 0;
        const sl_node_t *root = doc ? sl_doc_root(doc) : NULL;
        if (root == NULL ||
            sl_schema_parse(sl_node_get(root, "schema"), "bench.yaml", &input, &errs) != 0) {
            sl_errors_print(&errs);
            return 1;
        }
        sl_stages_t *st =
            sl_stages_parse(sl_node_get(root, "transform"), sl_node_get(root, "filter"),
                            "bench.yaml", &input, &record, &errs, &bad);
        if (bad != 0 || errs.n > 0) {
            sl_errors_print(&errs);
            return 1;
        }
        size_t nf = record.n_fields;
        sl_value_t *recs = sl_xcalloc(n * nf, sizeof(sl_value_t));
        for (size_t i = 0; i < n; i++) {
            sl_value_t *v = recs + i * nf;
            for (size_t f = 0; f < nf; f++) {
                v[f].is_null = true;
            }
            const char *nm = NAMES[i % (sizeof(NAMES) / sizeof(NAMES[0]))];
            v[0] = (sl_value_t){.is_null = false, .u.s = {nm, strlen(nm)}};
            v[1] = (sl_value_t){.is_null = false, .u.d = (double)(i % 100) + 0.5};
            v[2] = (sl_value_t){.is_null = false, .u.i = INT64_C(1700000000000) + (int64_t)i * 997};
            v[3] = (sl_value_t){.is_null = false, .u.i = (int64_t)(i % 13)};
            v[4] = (sl_value_t){.is_null = false, .u.i = (int64_t)((i * 7) % 13)};
            if (i % 10 != 0) {
                v[5] = (sl_value_t){.is_null = false, .u.i = (int64_t)i};
            }
        }
        sl_arena_t arena;
        sl_arena_init(&arena, 1 << 16);
        double best = 1e30;
        size_t kept = 0;
        for (int pass = 0; pass < 5; pass++) {
            sl_reason_t why;
            kept = 0;
            double t0 = now_s();
            for (size_t i = 0; i < n; i++) {
                if (i % 1000 == 0) {
                    sl_arena_reset(&arena); /* a batch's arena lives ~1000 records */
                }
                kept += sl_stages_run(st, recs + i * nf, &arena, 0, &why) == SL_STAGE_KEEP;
            }
            double dt = now_s() - t0;
            best = dt < best ? dt : best;
        }
        printf("| %s | %.1f |\n", CASES[c].name, best * 1e9 / (double)n);
        fprintf(stderr, "%s: kept %zu of %zu\n", CASES[c].name, kept, n);
        sl_arena_free(&arena);
        free(recs);
        sl_stages_destroy(st);
        sl_schema_free(&record);
        sl_schema_free(&input);
        sl_doc_free(doc);
        sl_errors_free(&errs);
    }
    /* dedup: key hash of two fields, then offer + resolve (written), over
     * 100,000 distinct keys each seen twice (the second copy a duplicate) */
    {
        sl_schema_t sch = {0};
        sch.fields = sl_xcalloc(2, sizeof(sl_field_t));
        sch.fields[0] =
            (sl_field_t){.name = sl_xstrdup("event_id"), .name_len = 8, .type = SL_TYPE_STRING};
        sch.fields[1] =
            (sl_field_t){.name = sl_xstrdup("ad_id"), .name_len = 5, .type = SL_TYPE_INT64};
        sch.n_fields = 2;
        size_t kf[2] = {0, 1};
        sl_dedup_conf_t c = {kf, 2, 100000, 600000};
        size_t nk = 100000;
        char *ids = sl_xmalloc(nk * 16);
        sl_value_t *recs = sl_xcalloc(nk * 2, sizeof(sl_value_t));
        for (size_t i = 0; i < nk; i++) {
            int len = snprintf(ids + i * 16, 16, "e%09zu", i);
            recs[i * 2] = (sl_value_t){.is_null = false, .u.s = {ids + i * 16, (size_t)len}};
            recs[i * 2 + 1] = (sl_value_t){.is_null = false, .u.i = (int64_t)(i % 97)};
        }
        double best = 1e30;
        size_t dups = 0;
        for (int pass = 0; pass < 5; pass++) {
            sl_dedup_t *d = sl_dedup_create(&c);
            dups = 0;
            double t0 = now_s();
            for (int copy = 0; copy < 2; copy++) {
                for (size_t i = 0; i < nk; i++) {
                    uint64_t k = sl_dedup_key(&c, &sch, recs + i * 2, NULL, 0);
                    if (sl_dedup_offer(d, k, 0, (sl_dedup_rec_t){NULL, 0}) == SL_DEDUP_NEW) {
                        sl_dedup_resolve(d, k, true, 0, NULL, NULL);
                    } else {
                        dups++;
                    }
                }
            }
            double dt = now_s() - t0;
            best = dt < best ? dt : best;
            sl_dedup_destroy(d);
        }
        printf("| dedup: key of 2 fields, 100,000 keys, each twice | %.1f |\n",
               best * 1e9 / (double)(2 * nk));
        fprintf(stderr, "dedup: %zu duplicates of %zu\n", dups, 2 * nk);
        free(recs);
        free(ids);
        sl_schema_free(&sch);
    }
    bench_aggregate(n * 5);
    return 0;
}
