/* sluice-gen: a fast, deterministic load generator for the site-event topic.
 *
 * Produces N valid events {"date":"2017-02-04","site_id":3491,"views":10,"clicks":6}
 * and M invalid messages at evenly spread positions, cycling through the
 * invalid classes below. The same arguments always give the same messages
 * in the same order. Keys are the site_id as a decimal string, so one site's
 * events go to one partition. Exits 1 unless every message was delivered. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "util/common.h"

#define GEN_MAX_EXPECTED_CELLS (1u << 24)
#define GEN_DEEP_NESTING 200
#define GEN_OVERSIZED_BYTES ((size_t)2 * 1024 * 1024)
#define GEN_MESSAGE_TIMEOUT_MS 60000
#define GEN_STR_(x) #x
#define GEN_STR(x) GEN_STR_(x)

static const char gen_usage[] =
    "usage: sluice-gen --brokers B --topic T [options]\n"
    "\n"
    "Produces COUNT valid site events and INVALID invalid messages (deterministic from\n"
    "SEED), then prints a one-line JSON summary on stdout.\n"
    "\n"
    "options:\n"
    "  --count N              valid events (default 1000)\n"
    "  --invalid M            invalid messages, evenly interleaved, cycling through the\n"
    "                         classes not_json, truncated_json, wrong_type, out_of_range,\n"
    "                         missing_field, impossible_date, array_top_level,\n"
    "                         deep_nesting, invalid_utf8 [, oversized] (default 0)\n"
    "  --oversized            add the class oversized (a 2 MiB message); the dev broker\n"
    "                         keeps only 5 MiB per partition\n"
    "  --seed S               random seed (default 1)\n"
    "  --sites K              site_id in [0, K) (default 1000)\n"
    "  --days D               dates 2017-02-01 .. +D-1 days (default 30)\n"
    "  --compression C        lz4 | zstd | none (default lz4)\n"
    "  --linger-ms MS         producer linger.ms (default 5)\n"
    "  --partitions-hint      add \"partitions\":{\"P\":messages,...} to the summary\n"
    "  --print-expected       write per (date, site_id) totals of the valid events as\n"
    "  --expected-file PATH   JSON lines to PATH, sorted by date then site_id:\n"
    "                         "
    "{\"date\":..,\"site_id\":..,\"views\":..,\"clicks\":..,\"events\":..}\n"
    "                         (--expected-file alone implies --print-expected)\n"
    "  -h, --help             print this help\n"
    "\n"
    "exit codes: 0 all delivered, 1 a delivery or client error, 2 usage error\n";

typedef enum {
    GEN_NOT_JSON,
    GEN_TRUNCATED,
    GEN_WRONG_TYPE,
    GEN_OUT_OF_RANGE,
    GEN_MISSING_FIELD,
    GEN_BAD_DATE,
    GEN_ARRAY_TOP,
    GEN_DEEP_NESTING_CLASS,
    GEN_BAD_UTF8,
    GEN_OVERSIZED,
    GEN_NCLASSES
} gen_class_t;

static const char *const gen_class_names[GEN_NCLASSES] = {
    "not_json",        "truncated_json",  "wrong_type",   "out_of_range", "missing_field",
    "impossible_date", "array_top_level", "deep_nesting", "invalid_utf8", "oversized"};

typedef struct gen_opts {
    const char *brokers;
    const char *topic;
    uint64_t count;
    uint64_t invalid;
    uint64_t seed;
    uint32_t sites;
    uint32_t days;
    const char *compression;
    int linger_ms;
    bool oversized;
    bool partitions_hint;
    bool print_expected;
    const char *expected_file;
} gen_opts_t;

typedef struct gen_event {
    uint32_t day;
    uint32_t site;
    uint32_t views;
    uint32_t clicks;
} gen_event_t;

typedef struct gen_cell {
    uint64_t views;
    uint64_t clicks;
    uint64_t events;
} gen_cell_t;

/* Delivery-report state; only touched by the thread that polls. */
typedef struct gen_dr {
    uint64_t delivered;
    uint64_t failed;
    char first_error[256];
    uint64_t *per_partition; /* owned; npartitions entries */
    size_t npartitions;
} gen_dr_t;

static uint64_t gen_next(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int gen_usage_error(const char *fmt, ...) SL_PRINTF(1, 2);

static int gen_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sluice-gen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see sluice-gen --help)\n", stderr);
    return 2;
}

static int gen_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses argv into o; returns 0, 2 on a usage error, or -1 after --help. */
static int gen_parse_args(int argc, char **argv, gen_opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char name[32];
        uint64_t v;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(gen_usage, stdout);
            return -1;
        }
        if (strcmp(arg, "--oversized") == 0) {
            o->oversized = true;
            continue;
        }
        if (strcmp(arg, "--partitions-hint") == 0) {
            o->partitions_hint = true;
            continue;
        }
        if (strcmp(arg, "--print-expected") == 0) {
            o->print_expected = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            return gen_usage_error("unexpected argument '%s'", arg);
        }
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof(name)) {
            return gen_usage_error("unknown option '%s'", arg);
        }
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        const char *val;
        if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return gen_usage_error("option %s needs a value", name);
        }
        if (strcmp(name, "--brokers") == 0) {
            o->brokers = val;
        } else if (strcmp(name, "--topic") == 0) {
            o->topic = val;
        } else if (strcmp(name, "--count") == 0) {
            if (gen_parse_u64(val, 0, 1000000000, &o->count) != 0) {
                return gen_usage_error("invalid --count '%s'", val);
            }
        } else if (strcmp(name, "--invalid") == 0) {
            if (gen_parse_u64(val, 0, 1000000000, &o->invalid) != 0) {
                return gen_usage_error("invalid --invalid '%s'", val);
            }
        } else if (strcmp(name, "--seed") == 0) {
            if (gen_parse_u64(val, 0, UINT64_MAX, &o->seed) != 0) {
                return gen_usage_error("invalid --seed '%s'", val);
            }
        } else if (strcmp(name, "--sites") == 0) {
            if (gen_parse_u64(val, 1, 1000000000, &v) != 0) {
                return gen_usage_error("invalid --sites '%s'", val);
            }
            o->sites = (uint32_t)v;
        } else if (strcmp(name, "--days") == 0) {
            if (gen_parse_u64(val, 1, 36500, &v) != 0) {
                return gen_usage_error("invalid --days '%s': use 1..36500", val);
            }
            o->days = (uint32_t)v;
        } else if (strcmp(name, "--compression") == 0) {
            if (strcmp(val, "lz4") != 0 && strcmp(val, "zstd") != 0 && strcmp(val, "none") != 0) {
                return gen_usage_error("invalid --compression '%s': use lz4, zstd or none", val);
            }
            o->compression = val;
        } else if (strcmp(name, "--linger-ms") == 0) {
            if (gen_parse_u64(val, 0, 900000, &v) != 0) {
                return gen_usage_error("invalid --linger-ms '%s'", val);
            }
            o->linger_ms = (int)v;
        } else if (strcmp(name, "--expected-file") == 0) {
            o->expected_file = val;
            o->print_expected = true;
        } else {
            return gen_usage_error("unknown option '%s'", name);
        }
    }
    if (o->brokers == NULL || o->topic == NULL) {
        return gen_usage_error("--brokers and --topic are required");
    }
    if (o->print_expected && o->expected_file == NULL) {
        return gen_usage_error("--print-expected needs --expected-file PATH");
    }
    if (o->print_expected && (uint64_t)o->sites * o->days > GEN_MAX_EXPECTED_CELLS) {
        return gen_usage_error("--print-expected needs sites x days <= %u", GEN_MAX_EXPECTED_CELLS);
    }
    return 0;
}

/* Writes "YYYY-MM-DD" for day d after 2017-02-01 (civil-from-days, H. Hinnant). */
static void gen_date(uint32_t d, char out[11])
{
    int64_t z = 17198 + (int64_t)d + 719468; /* 17198: 2017-02-01 in days since 1970 */
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    char tmp[40]; /* --days <= 36500 keeps it at 10 characters */
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02d", (int)year, (int)month, (int)day);
    memcpy(out, tmp, 10);
    out[10] = '\0';
}

/* Appends the decimal digits of v at p; returns the new end. */
static char *gen_put_u32(char *p, uint32_t v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

/* Appends s without its NUL; returns the new end. */
static char *gen_put(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static gen_event_t gen_event(uint64_t *rng, const gen_opts_t *o)
{
    gen_event_t e;
    uint64_t r = gen_next(rng);
    e.day = (uint32_t)(r % o->days);
    e.site = (uint32_t)((r >> 20) % o->sites);
    r = gen_next(rng);
    e.views = (uint32_t)(r % 100);
    e.clicks = (uint32_t)((r >> 32) % (e.views + 1));
    return e;
}

/* Writes the fields of e without the closing brace, in field order; the
 * flags leave fields out or break them. Returns the new end. */
static char *gen_fields(char *p, const gen_event_t *e, const char (*dates)[11], gen_class_t cls)
{
    p = gen_put(p, "{\"date\":\"");
    p = gen_put(p, cls == GEN_BAD_DATE ? "2017-13-45" : dates[e->day]);
    p = gen_put(p, cls == GEN_WRONG_TYPE ? "\",\"site_id\":\"" : "\",\"site_id\":");
    p = gen_put_u32(p, e->site);
    p = gen_put(p, cls == GEN_WRONG_TYPE ? "\",\"views\":" : ",\"views\":");
    if (cls == GEN_OUT_OF_RANGE) {
        p = gen_put(p, "-1");
    } else {
        p = gen_put_u32(p, e->views);
    }
    if (cls != GEN_MISSING_FIELD) {
        p = gen_put(p, ",\"clicks\":");
        p = gen_put_u32(p, e->clicks);
    }
    return p;
}

/* Builds invalid message number k of class cls into buf (at least
 * GEN_OVERSIZED_BYTES + 256 bytes). Returns its length. */
static size_t gen_invalid(char *buf, gen_class_t cls, const gen_event_t *e, const char (*dates)[11],
                          uint64_t k)
{
    char *p = buf;
    switch (cls) {
    case GEN_NOT_JSON:
        p = gen_put(p, "this is not JSON, message ");
        p = gen_put_u32(p, (uint32_t)k);
        break;
    case GEN_TRUNCATED:
        p = gen_fields(p, e, dates, cls);
        p = buf + (p - buf) / 2;
        break;
    case GEN_ARRAY_TOP:
        *p++ = '[';
        p = gen_fields(p, e, dates, cls);
        p = gen_put(p, "}]");
        break;
    case GEN_DEEP_NESTING_CLASS:
        p = gen_fields(p, e, dates, cls);
        p = gen_put(p, ",\"extra\":");
        memset(p, '[', GEN_DEEP_NESTING);
        p += GEN_DEEP_NESTING;
        memset(p, ']', GEN_DEEP_NESTING);
        p += GEN_DEEP_NESTING;
        *p++ = '}';
        break;
    case GEN_BAD_UTF8:
        p = gen_fields(p, e, dates, cls);
        p = gen_put(p, ",\"note\":\"caf\xc3\x28 \xff\"}");
        break;
    case GEN_OVERSIZED: {
        p = gen_fields(p, e, dates, cls);
        p = gen_put(p, ",\"pad\":\"");
        size_t pad = GEN_OVERSIZED_BYTES - (size_t)(p - buf) - 2;
        memset(p, 'x', pad);
        p += pad;
        p = gen_put(p, "\"}");
        break;
    }
    default: /* wrong type, out of range, missing field, impossible date */
        p = gen_fields(p, e, dates, cls);
        *p++ = '}';
        break;
    }
    return (size_t)(p - buf);
}

static void gen_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    gen_dr_t *dr = opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (dr->failed++ == 0) {
            snprintf(dr->first_error, sizeof(dr->first_error), "%s", rd_kafka_err2str(m->err));
        }
        return;
    }
    dr->delivered++;
    if (m->partition >= 0) {
        size_t part = (size_t)m->partition;
        if (part >= dr->npartitions) {
            size_t n = part + 1;
            dr->per_partition = sl_xrealloc(dr->per_partition, n * sizeof(uint64_t));
            memset(dr->per_partition + dr->npartitions, 0,
                   (n - dr->npartitions) * sizeof(uint64_t));
            dr->npartitions = n;
        }
        dr->per_partition[part]++;
    }
}

static void gen_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    fprintf(stderr, "sluice-gen: librdkafka %d %s: %s\n", level, fac, buf);
}

static rd_kafka_t *gen_producer(const gen_opts_t *o, gen_dr_t *dr)
{
    char errstr[512];
    char linger[16];
    snprintf(linger, sizeof(linger), "%d", o->linger_ms);
    const char *kv[][2] = {
        {"bootstrap.servers", o->brokers},
        {"enable.idempotence", "true"},
        {"compression.type", o->compression},
        {"linger.ms", linger},
        {"queue.buffering.max.messages", "1000000"},
        {"queue.buffering.max.kbytes", "2097152"},
        {"batch.num.messages", "10000"},
        {"message.max.bytes", o->oversized ? "4194304" : "1000000"},
        {"message.timeout.ms", GEN_STR(GEN_MESSAGE_TIMEOUT_MS)},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < SL_ARRAY_LEN(kv); i++) {
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "sluice-gen: %s: %s\n", kv[i][0], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, gen_dr_cb);
    rd_kafka_conf_set_log_cb(conf, gen_log_cb);
    rd_kafka_conf_set_opaque(conf, dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "sluice-gen: cannot create producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Produces one message (copied), waiting while the local queue is full.
 * Returns 0 or -1 after printing the error. */
static int gen_send(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *payload, size_t len,
                    const char *key, size_t klen)
{
    for (;;) {
        if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)payload, len,
                             key, klen, NULL) == 0) {
            return 0;
        }
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "sluice-gen: produce failed: %s\n", rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(rk, 10);
    }
}

static int gen_write_expected(const gen_opts_t *o, const gen_cell_t *cells, const char (*dates)[11])
{
    FILE *f = fopen(o->expected_file, "w");
    if (f == NULL) {
        fprintf(stderr, "sluice-gen: %s: %s\n", o->expected_file, strerror(errno));
        return -1;
    }
    for (uint32_t d = 0; d < o->days; d++) {
        for (uint32_t s = 0; s < o->sites; s++) {
            const gen_cell_t *c = &cells[(size_t)d * o->sites + s];
            if (c->events > 0) {
                fprintf(f,
                        "{\"date\":\"%s\",\"site_id\":%" PRIu32 ",\"views\":%" PRIu64
                        ",\"clicks\":%" PRIu64 ",\"events\":%" PRIu64 "}\n",
                        dates[d], s, c->views, c->clicks, c->events);
            }
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "sluice-gen: %s: %s\n", o->expected_file, strerror(errno));
        return -1;
    }
    return 0;
}

static void gen_summary(const gen_opts_t *o, const gen_dr_t *dr, uint64_t views, uint64_t clicks,
                        const uint64_t *class_counts, double seconds)
{
    uint64_t total = o->count + o->invalid;
    printf("{\"valid\":%" PRIu64 ",\"invalid\":%" PRIu64 ",\"views\":%" PRIu64
           ",\"clicks\":%" PRIu64 ",\"invalid_classes\":{",
           o->count, o->invalid, views, clicks);
    int nclasses = o->oversized ? GEN_NCLASSES : GEN_NCLASSES - 1;
    for (int c = 0; c < nclasses; c++) {
        printf("%s\"%s\":%" PRIu64, c ? "," : "", gen_class_names[c], class_counts[c]);
    }
    printf("},\"seconds\":%.3f,\"msgs_per_s\":%.0f", seconds,
           seconds > 0 ? (double)total / seconds : 0.0);
    if (o->partitions_hint) {
        printf(",\"partitions\":{");
        bool first = true;
        for (size_t p = 0; p < dr->npartitions; p++) {
            if (dr->per_partition[p] > 0) {
                printf("%s\"%zu\":%" PRIu64, first ? "" : ",", p, dr->per_partition[p]);
                first = false;
            }
        }
        printf("}");
    }
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    gen_opts_t o = {
        .count = 1000, .seed = 1, .sites = 1000, .days = 30, .compression = "lz4", .linger_ms = 5};
    gen_dr_t dr = {0};
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    char(*dates)[11] = NULL;
    gen_cell_t *cells = NULL;
    char *buf = NULL;
    uint64_t class_counts[GEN_NCLASSES] = {0};
    uint64_t views = 0, clicks = 0;
    int rc = gen_parse_args(argc, argv, &o);
    if (rc != 0) {
        rc = rc < 0 ? 0 : rc;
        goto out;
    }
    rc = 1;

    dates = sl_xmalloc(o.days * sizeof(*dates));
    for (uint32_t d = 0; d < o.days; d++) {
        gen_date(d, dates[d]);
    }
    if (o.print_expected) {
        cells = sl_xcalloc((size_t)o.sites * o.days, sizeof(*cells));
    }
    buf = sl_xmalloc(GEN_OVERSIZED_BYTES + 256);
    if ((rk = gen_producer(&o, &dr)) == NULL) {
        goto out;
    }
    rkt = rd_kafka_topic_new(rk, o.topic, NULL);

    int nclasses = o.oversized ? GEN_NCLASSES : GEN_NCLASSES - 1;
    uint64_t total = o.count + o.invalid;
    uint64_t rng = o.seed;
    uint64_t ninvalid = 0;
    int64_t t0 = sl_now_us();
    for (uint64_t j = 0; j < total; j++) {
        gen_event_t e = gen_event(&rng, &o);
        char key[12];
        size_t klen = (size_t)(gen_put_u32(key, e.site) - key);
        size_t len;
        /* Message j is invalid when the share of invalid messages so far
         * steps up: M of the N+M positions, evenly spread. */
        if ((j + 1) * o.invalid / total > j * o.invalid / total) {
            gen_class_t cls = (gen_class_t)(ninvalid % (uint64_t)nclasses);
            len = gen_invalid(buf, cls, &e, (const char(*)[11])dates, ninvalid);
            class_counts[cls]++;
            ninvalid++;
        } else {
            char *p = gen_fields(buf, &e, (const char(*)[11])dates, GEN_NCLASSES);
            *p++ = '}';
            len = (size_t)(p - buf);
            views += e.views;
            clicks += e.clicks;
            if (cells != NULL) {
                gen_cell_t *c = &cells[(size_t)e.day * o.sites + e.site];
                c->views += e.views;
                c->clicks += e.clicks;
                c->events++;
            }
        }
        if (gen_send(rk, rkt, buf, len, key, klen) != 0) {
            goto out;
        }
        if ((j & 0x3fff) == 0) {
            rd_kafka_poll(rk, 0);
        }
    }

    /* Every message gets a delivery report within message.timeout.ms. */
    int64_t deadline = sl_now_ms() + GEN_MESSAGE_TIMEOUT_MS + 30000;
    while (rd_kafka_outq_len(rk) > 0 && sl_now_ms() < deadline) {
        rd_kafka_flush(rk, 1000);
    }
    double seconds = (double)(sl_now_us() - t0) / 1e6;
    char fatal[256];
    if (rd_kafka_fatal_error(rk, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "sluice-gen: fatal producer error: %s\n", fatal);
        goto out;
    }
    if (dr.failed > 0 || dr.delivered != total) {
        fprintf(stderr,
                "sluice-gen: %" PRIu64 " of %" PRIu64 " messages delivered, %" PRIu64
                " failed (first error: %s)\n",
                dr.delivered, total, dr.failed, dr.failed ? dr.first_error : "flush timed out");
        goto out;
    }
    if (o.print_expected && gen_write_expected(&o, cells, (const char(*)[11])dates) != 0) {
        goto out;
    }
    gen_summary(&o, &dr, views, clicks, class_counts, seconds);
    rc = 0;
out:
    if (rkt != NULL) {
        rd_kafka_topic_destroy(rkt);
    }
    if (rk != NULL) {
        rd_kafka_destroy(rk);
    }
    free(dr.per_partition);
    free(buf);
    free(cells);
    free(dates);
    return rc;
}
