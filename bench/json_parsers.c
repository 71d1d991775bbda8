/* Compares JSON decoders on the hot-path workload: 1 M generated site events
 * like {"date":"2017-02-04","site_id":3491,"views":10,"clicks":6}, each
 * decoded into the same four typed fields (date -> days since the epoch via
 * sl_date_parse for everyone, site_id -> int32, views/clicks -> int64, every
 * field checked present and of the right type). Prints ns/message (median of
 * N runs by wall clock and by thread CPU time, best wall run; the parsers are
 * interleaved run by run) and checks that all parsers agree on every value.
 *
 *   json_parsers [messages] [runs]      (default 1000000 5)
 */
#define JSMN_STATIC
#include <cjson/cJSON.h>
#include <jsmn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "codecs/json.h"
#include "core/schema.h"
#include "core/value.h"

typedef struct bench_rec {
    int64_t date;
    int64_t site_id;
    int64_t views;
    int64_t clicks;
} bench_rec_t;

typedef struct bench_msgs {
    char *data;  /* all messages, each followed by a NUL (cJSON/yajl need it) */
    size_t *off; /* start of message i */
    size_t *len; /* length of message i without the NUL */
    size_t n;
    size_t bytes;
} bench_msgs_t;

static uint64_t bench_rng = 0x9E3779B97F4A7C15u;

static uint64_t bench_next(void)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return bench_rng;
}

static void bench_generate(bench_msgs_t *m, size_t n)
{
    size_t cap = n * 80;
    m->data = sl_xmalloc(cap);
    m->off = sl_xmalloc(n * sizeof(*m->off));
    m->len = sl_xmalloc(n * sizeof(*m->len));
    m->n = n;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char date[11];
        int64_t days = 16436 + (int64_t)(bench_next() % 2192); /* 2015-01-01 .. 2020-12-31 */
        sl_date_format(days, date);
        unsigned site = 1 + (unsigned)(bench_next() % 100000);
        unsigned views = (unsigned)(bench_next() % 10000);
        unsigned clicks = views ? (unsigned)(bench_next() % (views + 1)) : 0;
        int w = snprintf(m->data + o, cap - o,
                         "{\"date\":\"%s\",\"site_id\":%u,\"views\":%u,\"clicks\":%u}", date, site,
                         views, clicks);
        m->off[i] = o;
        m->len[i] = (size_t)w;
        o += (size_t)w + 1;
    }
    m->bytes = o - n;
}

static uint64_t bench_mix(const bench_rec_t *r)
{
    return (uint64_t)r->date * 1000003u ^ (uint64_t)r->site_id * 7919u ^ (uint64_t)r->views * 31u ^
           (uint64_t)r->clicks;
}

/* ---- jsmn: tokens, then strtoll on the primitives ------------------------ */

static int bench_jsmn_int(const char *js, const jsmntok_t *t, int64_t lo, int64_t hi, int64_t *out)
{
    if (t->type != JSMN_PRIMITIVE) {
        return -1;
    }
    char *end;
    long long v = strtoll(js + t->start, &end, 10);
    if (end != js + t->end || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int bench_jsmn(const char *js, size_t len, bench_rec_t *r)
{
    jsmn_parser p;
    jsmntok_t t[16];
    jsmn_init(&p);
    int n = jsmn_parse(&p, js, len, t, 16);
    if (n < 1 || t[0].type != JSMN_OBJECT) {
        return -1;
    }
    int have = 0;
    for (int i = 1; i + 1 < n; i += 2) {
        const jsmntok_t *k = &t[i], *v = &t[i + 1];
        const char *key = js + k->start;
        size_t klen = (size_t)(k->end - k->start);
        if (v->type == JSMN_OBJECT || v->type == JSMN_ARRAY) {
            return -1; /* flat events only: nested values would need skipping */
        }
        if (klen == 4 && memcmp(key, "date", 4) == 0) {
            if (v->type != JSMN_STRING ||
                sl_date_parse(js + v->start, (size_t)(v->end - v->start), &r->date) != 0) {
                return -1;
            }
            have |= 1;
        } else if (klen == 7 && memcmp(key, "site_id", 7) == 0) {
            if (bench_jsmn_int(js, v, INT32_MIN, INT32_MAX, &r->site_id) != 0) {
                return -1;
            }
            have |= 2;
        } else if (klen == 5 && memcmp(key, "views", 5) == 0) {
            if (bench_jsmn_int(js, v, INT64_MIN, INT64_MAX, &r->views) != 0) {
                return -1;
            }
            have |= 4;
        } else if (klen == 6 && memcmp(key, "clicks", 6) == 0) {
            if (bench_jsmn_int(js, v, INT64_MIN, INT64_MAX, &r->clicks) != 0) {
                return -1;
            }
            have |= 8;
        }
    }
    return have == 15 ? 0 : -1;
}

/* ---- cJSON: a tree of malloc'd nodes, numbers as doubles ----------------- */

static int bench_cjson_int(const cJSON *root, const char *key, double lo, double hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(v)) {
        return -1;
    }
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || (double)(int64_t)d != d) {
        return -1;
    }
    *out = (int64_t)d;
    return 0;
}

static int bench_cjson(const char *js, size_t len, bench_rec_t *r)
{
    int rc = -1;
    cJSON *root = cJSON_ParseWithLength(js, len);
    if (!cJSON_IsObject(root)) {
        goto out;
    }
    const cJSON *date = cJSON_GetObjectItemCaseSensitive(root, "date");
    if (!cJSON_IsString(date) ||
        sl_date_parse(date->valuestring, strlen(date->valuestring), &r->date) != 0) {
        goto out;
    }
    if (bench_cjson_int(root, "site_id", INT32_MIN, INT32_MAX, &r->site_id) != 0 ||
        bench_cjson_int(root, "views", -9.2e18, 9.2e18, &r->views) != 0 ||
        bench_cjson_int(root, "clicks", -9.2e18, 9.2e18, &r->clicks) != 0) {
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- yajl tree API: a malloc'd tree, integers as long long --------------- */

static int bench_yajl_int(yajl_val root, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(root, path, yajl_t_number);
    if (v == NULL || !YAJL_IS_INTEGER(v)) {
        return -1;
    }
    long long i = YAJL_GET_INTEGER(v);
    if (i < lo || i > hi) {
        return -1;
    }
    *out = i;
    return 0;
}

static int bench_yajl(const char *js, size_t len, bench_rec_t *r)
{
    (void)len; /* yajl_tree_parse() reads up to the NUL */
    int rc = -1;
    char err[128];
    yajl_val root = yajl_tree_parse(js, err, sizeof(err));
    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        goto out;
    }
    const char *path[] = {"date", NULL};
    yajl_val date = yajl_tree_get(root, path, yajl_t_string);
    const char *ds = YAJL_GET_STRING(date);
    if (ds == NULL || sl_date_parse(ds, strlen(ds), &r->date) != 0) {
        goto out;
    }
    if (bench_yajl_int(root, "site_id", INT32_MIN, INT32_MAX, &r->site_id) != 0 ||
        bench_yajl_int(root, "views", INT64_MIN, INT64_MAX, &r->views) != 0 ||
        bench_yajl_int(root, "clicks", INT64_MIN, INT64_MAX, &r->clicks) != 0) {
        goto out;
    }
    rc = 0;
out:
    yajl_tree_free(root);
    return rc;
}

/* ---- Sluice: schema-directed decode + validate --------------------------- */

static sl_schema_t bench_schema;
/* The same fields in reverse order: keys never arrive in schema order, so
 * every lookup misses the next-field guess and goes through the hash table. */
static sl_schema_t bench_schema_rev;
static const sl_json_limits_t bench_limits = {1 << 20, 32};
static sl_arena_t bench_arena;

static void bench_add(sl_schema_t *schema, const char *name, sl_type_t type, bool min0)
{
    sl_field_t *f = &schema->fields[schema->n_fields++];
    memset(f, 0, sizeof(*f));
    f->name = sl_xstrdup(name);
    f->name_len = strlen(name);
    f->type = type;
    f->required = true;
    f->has_min = min0;
}

static void bench_sluice_init(void)
{
    bench_schema.fields = sl_xcalloc(4, sizeof(sl_field_t));
    bench_add(&bench_schema, "date", SL_TYPE_DATE, false);
    bench_add(&bench_schema, "site_id", SL_TYPE_INT32, false);
    bench_add(&bench_schema, "views", SL_TYPE_INT64, true);
    bench_add(&bench_schema, "clicks", SL_TYPE_INT64, true);
    sl_schema_finish(&bench_schema);
    bench_schema_rev.fields = sl_xcalloc(4, sizeof(sl_field_t));
    bench_add(&bench_schema_rev, "clicks", SL_TYPE_INT64, true);
    bench_add(&bench_schema_rev, "views", SL_TYPE_INT64, true);
    bench_add(&bench_schema_rev, "site_id", SL_TYPE_INT32, false);
    bench_add(&bench_schema_rev, "date", SL_TYPE_DATE, false);
    sl_schema_finish(&bench_schema_rev);
    sl_arena_init(&bench_arena, 0);
}

static int bench_sluice_decode(const char *js, size_t len, sl_value_t *v)
{
    sl_reason_t why;
    return sl_json_decode(&bench_schema, &bench_limits, js, len, v, &bench_arena, &why);
}

static int bench_sluice_only(const char *js, size_t len, bench_rec_t *r)
{
    sl_value_t v[4];
    if (bench_sluice_decode(js, len, v) != 0 || v[0].is_null || v[1].is_null || v[2].is_null ||
        v[3].is_null) {
        return -1;
    }
    r->date = v[0].u.i;
    r->site_id = v[1].u.i;
    r->views = v[2].u.i;
    r->clicks = v[3].u.i;
    return 0;
}

static int bench_sluice(const char *js, size_t len, bench_rec_t *r)
{
    sl_value_t v[4];
    sl_reason_t why;
    if (bench_sluice_decode(js, len, v) != 0 || sl_schema_validate(&bench_schema, v, &why) != 0) {
        return -1;
    }
    r->date = v[0].u.i;
    r->site_id = v[1].u.i;
    r->views = v[2].u.i;
    r->clicks = v[3].u.i;
    return 0;
}

static int bench_sluice_rev(const char *js, size_t len, bench_rec_t *r)
{
    sl_value_t v[4];
    sl_reason_t why;
    if (sl_json_decode(&bench_schema_rev, &bench_limits, js, len, v, &bench_arena, &why) != 0 ||
        sl_schema_validate(&bench_schema_rev, v, &why) != 0) {
        return -1;
    }
    r->date = v[3].u.i;
    r->site_id = v[2].u.i;
    r->views = v[1].u.i;
    r->clicks = v[0].u.i;
    return 0;
}

/* ---- driver --------------------------------------------------------------- */

typedef struct bench_parser {
    const char *name;
    int (*parse)(const char *js, size_t len, bench_rec_t *r);
    double ns[16];  /* wall clock per message, one per run */
    double cpu[16]; /* thread CPU time per message (excludes time stolen by the host) */
    uint64_t sum;
    size_t failed;
} bench_parser_t;

static double bench_now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (n == 0 || runs < 1 || runs > 16) {
        fprintf(stderr, "usage: json_parsers [messages] [runs 1-16]\n");
        return 2;
    }
    bench_parser_t parsers[] = {
        {.name = "jsmn 1.1 (tokens + strtoll)", .parse = bench_jsmn},
        {.name = "cJSON 1.7 (tree)", .parse = bench_cjson},
        {.name = "yajl 2.1 (tree API)", .parse = bench_yajl},
        {.name = "sluice decode only", .parse = bench_sluice_only},
        {.name = "sluice decode + validate", .parse = bench_sluice},
        {.name = "  keys not in schema order", .parse = bench_sluice_rev},
    };
    size_t np = SL_ARRAY_LEN(parsers);
    bench_msgs_t m;
    bench_generate(&m, n);
    bench_sluice_init();
    printf("%zu messages, %.1f bytes on average, %d runs each (interleaved)\n", n,
           (double)m.bytes / (double)n, runs);

    for (int run = 0; run < runs; run++) {
        for (size_t p = 0; p < np; p++) {
            bench_parser_t *bp = &parsers[p];
            uint64_t sum = 0;
            size_t failed = 0;
            double t0 = bench_now_ns(CLOCK_MONOTONIC);
            double c0 = bench_now_ns(CLOCK_THREAD_CPUTIME_ID);
            for (size_t i = 0; i < n; i++) {
                bench_rec_t r;
                if (bp->parse(m.data + m.off[i], m.len[i], &r) != 0) {
                    failed++;
                    continue;
                }
                sum += bench_mix(&r);
            }
            bp->ns[run] = (bench_now_ns(CLOCK_MONOTONIC) - t0) / (double)n;
            bp->cpu[run] = (bench_now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)n;
            bp->sum = sum;
            bp->failed = failed;
        }
    }

    int rc = 0;
    printf("\n| parser                          | ns/msg wall (median) | ns/msg CPU (median) |"
           " best wall | M msg/s (median wall) |\n");
    printf("|---------------------------------|----------------------|---------------------|"
           "-----------|-----------------------|\n");
    for (size_t p = 0; p < np; p++) {
        bench_parser_t *bp = &parsers[p];
        qsort(bp->ns, (size_t)runs, sizeof(double), bench_cmp);
        qsort(bp->cpu, (size_t)runs, sizeof(double), bench_cmp);
        double med = bp->ns[runs / 2];
        printf("| %-31s | %20.1f | %19.1f | %9.1f | %21.2f |\n", bp->name, med, bp->cpu[runs / 2],
               bp->ns[0], 1e3 / med);
        if (bp->failed != 0 || bp->sum != parsers[0].sum) {
            fprintf(stderr, "%s: %zu failures, checksum %016llx (jsmn %016llx)\n", bp->name,
                    bp->failed, (unsigned long long)bp->sum, (unsigned long long)parsers[0].sum);
            rc = 1;
        }
    }
    printf("\nall parsers agree: %s (checksum %016llx)\n", rc == 0 ? "yes" : "NO",
           (unsigned long long)parsers[0].sum);

    sl_schema_free(&bench_schema);
    sl_schema_free(&bench_schema_rev);
    sl_arena_free(&bench_arena);
    free(m.data);
    free(m.off);
    free(m.len);
    return rc;
}
