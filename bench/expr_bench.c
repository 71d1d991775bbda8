/* Micro-benchmark of the expression evaluator (src/stages/expr.c): compiles
 * a few typical expressions once and evaluates each over a few thousand
 * synthetic records, many times, resetting the arena between passes (as a
 * batch would). Prints ns/record per expression.
 *
 *   expr_bench [passes]          (default 2000 passes over 4096 records) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stages/expr.h"

#define NREC 4096

enum { F_USER_ID, F_OWNER_ID, F_AD_ID, F_NAME, F_TS, F_A, F_B, F_COUNT };

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void add_field(sl_schema_t *s, const char *name, sl_type_t type)
{
    sl_field_t *f = &s->fields[s->n_fields++];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->def.is_null = true;
}

/* A cheap deterministic generator, so runs are comparable. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

int main(int argc, char **argv)
{
    static const char *exprs[] = {
        "user_id != owner_id && ad_id != null",
        "lower(trim(name))",
        "date(ts, 'Europe/Paris')",
        "xxh3(a, b)",
        "sha1(a, b)",
        "concat(a, ':', b)",
        "ts >= '2024-01-01T00:00:00Z' && ad_id in (1, 5, 9, 13, 17, 21, 25, 29)",
    };
    int passes = argc > 1 ? atoi(argv[1]) : 2000;
    if (passes <= 0) {
        passes = 1;
    }
    sl_schema_t schema = {0};
    schema.fields = sl_xcalloc(F_COUNT, sizeof(sl_field_t));
    add_field(&schema, "user_id", SL_TYPE_INT64);
    add_field(&schema, "owner_id", SL_TYPE_INT64);
    add_field(&schema, "ad_id", SL_TYPE_INT64);
    add_field(&schema, "name", SL_TYPE_STRING);
    add_field(&schema, "ts", SL_TYPE_TIMESTAMP);
    add_field(&schema, "a", SL_TYPE_STRING);
    add_field(&schema, "b", SL_TYPE_INT64);
    sl_schema_finish(&schema);

    /* Records: ids in small ranges (some equal), 1 in 8 ad_id null, names
     * with surrounding spaces and mixed case, timestamps over 2023-2025. */
    static const char *names[] = {"  Alice ", "BOB", "carol", " Dave Smith  ", "eve", "Frank "};
    static char abuf[NREC][24];
    sl_value_t(*recs)[F_COUNT] = sl_xcalloc(NREC, sizeof(*recs));
    for (size_t i = 0; i < NREC; i++) {
        sl_value_t *r = recs[i];
        r[F_USER_ID].u.i = (int64_t)(rng() % 1000);
        r[F_OWNER_ID].u.i = (int64_t)(rng() % 1000);
        r[F_AD_ID].is_null = rng() % 8 == 0;
        r[F_AD_ID].u.i = (int64_t)(rng() % 32);
        const char *nm = names[rng() % SL_ARRAY_LEN(names)];
        r[F_NAME].u.s.ptr = nm;
        r[F_NAME].u.s.len = strlen(nm);
        r[F_TS].u.i = INT64_C(1672531200000000) + (int64_t)(rng() % INT64_C(94608000000000));
        int n =
            snprintf(abuf[i], sizeof(abuf[i]), "key-%llu", (unsigned long long)(rng() % 100000));
        r[F_A].u.s.ptr = abuf[i];
        r[F_A].u.s.len = (size_t)n;
        r[F_B].u.i = (int64_t)rng();
    }

    sl_arena_t arena;
    sl_arena_init(&arena, 0);
    printf("%-72s %10s\n", "expression", "ns/record");
    for (size_t k = 0; k < SL_ARRAY_LEN(exprs); k++) {
        sl_expr_error_t err;
        sl_expr_t *e = sl_expr_compile(exprs[k], strlen(exprs[k]), &schema, F_COUNT, &err);
        if (e == NULL) {
            fprintf(stderr, "%s: column %d: %s\n", exprs[k], err.col, err.msg);
            return 1;
        }
        bool is_bool = sl_expr_type(e) == SL_TYPE_BOOL;
        uint64_t sink = 0;
        double best = 1e300;
        /* the best of 5 rounds, each `passes / 5` passes over the records */
        int per_round = passes / 5 > 0 ? passes / 5 : 1;
        for (int round = 0; round < 5; round++) {
            double t0 = now_ns();
            for (int p = 0; p < per_round; p++) {
                for (size_t i = 0; i < NREC; i++) {
                    sl_reason_t why;
                    if (is_bool) {
                        bool keep;
                        if (sl_expr_eval_bool(e, recs[i], &arena, &keep, &why) != 0) {
                            fprintf(stderr, "%s: %s\n", exprs[k], why.text);
                            return 1;
                        }
                        sink += keep;
                    } else {
                        sl_value_t v;
                        if (sl_expr_eval(e, recs[i], &arena, &v, &why) != 0) {
                            fprintf(stderr, "%s: %s\n", exprs[k], why.text);
                            return 1;
                        }
                        sink += v.is_null ? 0 : (uint64_t)v.u.i;
                    }
                }
                sl_arena_reset(&arena);
            }
            double ns = (now_ns() - t0) / ((double)per_round * NREC);
            best = ns < best ? ns : best;
        }
        printf("%-72s %10.1f   (checksum %llu)\n", exprs[k], best,
               (unsigned long long)(sink & 0xffff));
        sl_expr_destroy(e);
    }
    sl_arena_free(&arena);
    free(recs);
    sl_schema_free(&schema);
    return 0;
}
