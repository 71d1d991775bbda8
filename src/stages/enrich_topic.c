/* enrich from a Kafka topic: a consumer thread (no group: it assigns every
 * partition from the beginning) keeps the latest JSON value per message key;
 * the table lanes read is rebuilt from it when it changed, at most every
 * `refresh`, and swapped in. An old table is freed once no lane's hazard
 * pointer names it. */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codecs/json.h"
#include "stages/enrich_int.h"
#include "util/log.h"

/* The latest value of one key (the updater thread's map). */
typedef struct et_kv {
    uint64_t hash;
    char *key; /* owned, klen bytes; NULL: empty slot */
    size_t klen;
    char *val; /* owned, vlen bytes; NULL with a key: deleted */
    size_t vlen;
} et_kv_t;

typedef struct et_hazard {
    _Atomic(en_table_t *) t;
    char pad[64 - sizeof(void *)]; /* one cache line per lane */
} et_hazard_t;

struct en_topic {
    char *name;
    char *brokers; /* NULL: the source's */
    int64_t load_timeout_ms, refresh_ms;
    rd_kafka_t *rk;
    pthread_t thr;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu; /* guards loaded and err */
    pthread_cond_t cv;
    bool loaded;
    char err[256];
    et_kv_t *kv; /* open addressing, power-of-two size */
    size_t kv_cap, kv_used, kv_live;
    bool changed;
    int64_t last_publish_ms;
    uint64_t bad, updates;
    int64_t last_bad_log_ms;
    sl_schema_t fields; /* the value's fields, for decoding */
    et_hazard_t hazard[SL_ENRICH_MAX_READERS];
};

/* ---- config ------------------------------------------------------------------------------ */

int en_topic_parse(sl_enrich_t *e, const sl_node_t *map, sl_errors_t *errs)
{
    const sl_node_t *topic = sl_node_get(map, "topic"), *brokers = sl_node_get(map, "brokers");
    const sl_node_t *lt = sl_node_get(map, "load_timeout"), *rf = sl_node_get(map, "refresh");
    int64_t load_ms = 60000, refresh_ms = 1000;
    if ((brokers != NULL && brokers->kind != SL_NODE_SCALAR) ||
        (lt != NULL && (lt->kind != SL_NODE_SCALAR ||
                        sl_parse_duration_ms(lt->scalar, &load_ms) != 0 || load_ms <= 0)) ||
        (rf != NULL && (rf->kind != SL_NODE_SCALAR ||
                        sl_parse_duration_ms(rf->scalar, &refresh_ms) != 0 || refresh_ms <= 0))) {
        sl_errors_add(errs, map->file, map->line, map->col,
                      "enrich: brokers is host:port[,host:port...], load_timeout and refresh are "
                      "durations above zero (e.g. 60s, 1s)");
        return -1;
    }
    en_topic_t *t = sl_xcalloc(1, sizeof(*t));
    t->name = sl_xstrdup(topic->scalar);
    t->brokers = brokers != NULL ? sl_xstrdup(brokers->scalar) : NULL;
    t->load_timeout_ms = load_ms;
    t->refresh_ms = refresh_ms;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    atomic_init(&t->stop, false);
    for (size_t i = 0; i < SL_ENRICH_MAX_READERS; i++) {
        atomic_init(&t->hazard[i].t, NULL);
    }
    t->fields.unknown = SL_UNKNOWN_IGNORE;
    for (size_t f = 0; f < e->n_out; f++) {
        (void)sl_schema_add(&t->fields, e->names[f], e->types[1 + f], 0);
    }
    sl_schema_finish(&t->fields);
    e->topic = t;
    return 0;
}

/* ---- the latest value per key ------------------------------------------------------------ */

static et_kv_t *et_slot(en_topic_t *t, const char *key, size_t klen, uint64_t h)
{
    size_t mask = t->kv_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        et_kv_t *s = &t->kv[i];
        if (s->key == NULL || (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)) {
            return s;
        }
    }
}

static void et_grow(en_topic_t *t)
{
    et_kv_t *old = t->kv;
    size_t n = t->kv_cap;
    t->kv_cap = n ? n * 2 : 1024;
    t->kv = sl_xcalloc(t->kv_cap, sizeof(*t->kv));
    t->kv_used = 0;
    for (size_t i = 0; i < n; i++) {
        if (old[i].key != NULL && old[i].val == NULL) {
            free(old[i].key); /* a deleted key: drop it */
        } else if (old[i].key != NULL) {
            *et_slot(t, old[i].key, old[i].klen, old[i].hash) = old[i];
            t->kv_used++;
        }
    }
    free(old);
}

/* Sets key's value (val NULL: deletes it). Takes neither. */
static void et_put(en_topic_t *t, const char *key, size_t klen, const char *val, size_t vlen)
{
    if ((t->kv_used + 1) * 2 > t->kv_cap) {
        et_grow(t);
    }
    uint64_t h = XXH3_64bits(key, klen);
    et_kv_t *s = et_slot(t, key, klen, h);
    if (s->key == NULL) {
        if (val == NULL) {
            return;
        }
        *s = (et_kv_t){h, sl_xstrndup(key, klen), klen, NULL, 0};
        t->kv_used++;
    }
    t->kv_live += (s->val == NULL) - (val == NULL) + (s->val == NULL && val == NULL);
    t->kv_live -= (s->val == NULL && val == NULL);
    free(s->val);
    s->val = val != NULL ? sl_xstrndup(val, vlen) : NULL;
    s->vlen = vlen;
    t->changed = true;
}

/* Parses a message key as the lookup key into v (strings borrow). */
static int et_key(const sl_enrich_t *e, const char *key, size_t klen, sl_value_t *v)
{
    v->is_null = false;
    if (!e->int_key) {
        v->u.s = (sl_str_t){key, klen};
        return 0;
    }
    char tmp[32];
    if (klen == 0 || klen >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, key, klen);
    tmp[klen] = '\0';
    return sl_parse_int(tmp, &v->u.i);
}

static void et_bad(const sl_enrich_t *e, const rd_kafka_message_t *m, const char *why)
{
    en_topic_t *t = e->topic;
    t->bad++;
    int64_t now = sl_now_ms();
    if (now - t->last_bad_log_ms >= 1000) {
        t->last_bad_log_ms = now;
        sl_log_warn("enrich", "table message ignored (the key keeps its previous value)",
                    "topic=%s partition=%d offset=%lld reason=\"%s\" ignored_total=%llu", t->name,
                    (int)m->partition, (long long)m->offset, why, (unsigned long long)t->bad);
    }
}

/* Applies one message of the table topic. */
static void et_apply(const sl_enrich_t *e, const rd_kafka_message_t *m, sl_arena_t *scratch)
{
    en_topic_t *t = e->topic;
    sl_value_t k;
    if (m->key == NULL || et_key(e, m->key, m->key_len, &k) != 0) {
        et_bad(e, m, e->int_key ? "the message key is not an integer" : "no message key");
        return;
    }
    if (m->payload != NULL) {
        /* check it decodes now, so a rebuild never meets a bad value */
        sl_value_t row[256];
        sl_reason_t why;
        const sl_json_limits_t limits = {1 << 20, 64};
        sl_arena_reset(scratch);
        if (sl_json_decode(&t->fields, &limits, m->payload, m->len, row, scratch, &why) != 0) {
            et_bad(e, m, why.text);
            return;
        }
    }
    et_put(t, m->key, m->key_len, m->payload, m->len);
    t->updates++;
}

/* Builds a table of the current values and swaps it in; frees the old one
 * once no lane reads it. */
static void et_publish(sl_enrich_t *e)
{
    en_topic_t *t = e->topic;
    en_table_t *nt = en_table_new();
    const sl_json_limits_t limits = {1 << 20, 64};
    for (size_t i = 0; i < t->kv_cap; i++) {
        const et_kv_t *s = &t->kv[i];
        if (s->key == NULL || s->val == NULL) {
            continue;
        }
        sl_value_t *row = en_new_row(e, nt);
        sl_reason_t why;
        /* decoded strings may point into the bytes: the table owns a copy */
        const char *val = sl_arena_strndup(&nt->arena, s->val, s->vlen);
        (void)et_key(e, s->key, s->klen, &row[0]);
        if (!e->int_key) {
            row[0].u.s.ptr = sl_arena_strndup(&nt->arena, s->key, s->klen);
        }
        if (sl_json_decode(&t->fields, &limits, val, s->vlen, row + 1, &nt->arena, &why) != 0) {
            nt->n_rows--; /* checked when applied: cannot happen */
        }
    }
    (void)en_table_index(e, nt); /* keys are unique in the map */
    en_table_t *old = atomic_exchange(&e->cur, nt);
    for (size_t i = 0; i < SL_ENRICH_MAX_READERS; i++) {
        while (atomic_load(&t->hazard[i].t) == old) {
            sched_yield(); /* a lane is in the middle of one lookup */
        }
    }
    en_table_free(old);
    t->changed = false;
    t->last_publish_ms = sl_now_ms();
}

/* ---- the consumer thread ------------------------------------------------------------------ */

/* Reports why the table cannot be loaded: "enrich: topic 'NAME': what (detail)". */
static void et_fail(en_topic_t *t, const char *what, const char *detail)
{
    pthread_mutex_lock(&t->mu);
    snprintf(t->err, sizeof(t->err), "enrich: topic '%s': %s (%s)", t->name, what, detail);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* Assigns every partition of the topic from the beginning; fills ends with
 * the high watermarks now (what "read to its end" means at start). */
static int et_assign(en_topic_t *t, int64_t **ends, int *n)
{
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(t->rk, t->name, NULL);
    int timeout = (int)SL_MIN(t->load_timeout_ms, 10000);
    rd_kafka_resp_err_t err = rd_kafka_metadata(t->rk, 0, rkt, &md, timeout);
    rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
        et_fail(t, "cannot be read: create it, or check brokers and the topic name",
                err ? rd_kafka_err2str(err)
                    : rd_kafka_err2str(md->topic_cnt == 1 ? md->topics[0].err
                                                          : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        if (md != NULL) {
            rd_kafka_metadata_destroy(md);
        }
        return -1;
    }
    *n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    *ends = sl_xcalloc((size_t)*n, sizeof(int64_t));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(*n);
    for (int p = 0; p < *n; p++) {
        int64_t lo = 0, hi = 0;
        err = rd_kafka_query_watermark_offsets(t->rk, t->name, p, &lo, &hi, timeout);
        if (err) {
            et_fail(t, "cannot read its end offsets", rd_kafka_err2str(err));
            rd_kafka_topic_partition_list_destroy(l);
            return -1;
        }
        (*ends)[p] = hi;
        rd_kafka_topic_partition_list_add(l, t->name, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    err = rd_kafka_assign(t->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        et_fail(t, "assign failed", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static void *et_main(void *arg)
{
    sl_enrich_t *e = arg;
    en_topic_t *t = e->topic;
    int64_t *ends = NULL;
    int n = 0, left = 0;
    sl_arena_t scratch;
    sl_arena_init(&scratch, 0);
    int64_t t0 = sl_now_ms();
    if (et_assign(t, &ends, &n) != 0) {
        goto out;
    }
    for (int p = 0; p < n; p++) {
        left += ends[p] > 0;
    }
    while (!atomic_load(&t->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->rk, 100);
        if (m != NULL) {
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                et_apply(e, m, &scratch);
            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                sl_log_warn("enrich", "table consumer error", "topic=%s error=\"%s\"", t->name,
                            rd_kafka_message_errstr(m));
            }
            int p = m->partition;
            if (p >= 0 && p < n && ends[p] > 0 && m->offset + (m->err ? 0 : 1) >= ends[p]) {
                ends[p] = 0; /* read to its end at start */
                left--;
            }
            rd_kafka_message_destroy(m);
        }
        pthread_mutex_lock(&t->mu);
        bool loaded = t->loaded;
        pthread_mutex_unlock(&t->mu);
        if (!loaded && left == 0) {
            et_publish(e);
            sl_log_info("enrich", "table loaded from topic", "topic=%s rows=%zu seconds=%.2f",
                        t->name, t->kv_live, (double)(sl_now_ms() - t0) / 1000.0);
            pthread_mutex_lock(&t->mu);
            t->loaded = true;
            pthread_cond_broadcast(&t->cv);
            pthread_mutex_unlock(&t->mu);
        } else if (loaded && t->changed && sl_now_ms() - t->last_publish_ms >= t->refresh_ms) {
            et_publish(e);
            sl_log_info("enrich", "table updated from topic", "topic=%s rows=%zu updates=%llu",
                        t->name, t->kv_live, (unsigned long long)t->updates);
        }
    }
out:
    free(ends);
    sl_arena_free(&scratch);
    return NULL;
}

static void et_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    sl_log(level <= 3   ? SL_LOG_ERROR
           : level <= 5 ? SL_LOG_WARN
                        : SL_LOG_DEBUG,
           "enrich.librdkafka", buf, "facility=%s", fac);
}

int sl_enrich_start(sl_enrich_t *e, const char *brokers, char *err)
{
    en_topic_t *t = e->topic;
    if (t == NULL || t->started) {
        return 0;
    }
    char e2[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", t->brokers ? t->brokers : brokers, e2,
                          sizeof(e2)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", "sluice-enrich", e2, sizeof(e2)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", e2, sizeof(e2)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", e2, sizeof(e2)) !=
            RD_KAFKA_CONF_OK) {
        snprintf(err, 256, "enrich: topic '%s': %.200s", t->name, e2);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, et_log_cb);
    t->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e2, sizeof(e2));
    if (t->rk == NULL) {
        snprintf(err, 256, "enrich: topic '%s': cannot create a consumer: %.180s", t->name, e2);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (pthread_create(&t->thr, NULL, et_main, e) != 0) {
        snprintf(err, 256, "enrich: topic '%s': cannot start a thread", t->name);
        return -1;
    }
    t->started = true;
    int64_t deadline = sl_now_ms() + t->load_timeout_ms;
    pthread_mutex_lock(&t->mu);
    while (!t->loaded && t->err[0] == '\0' && sl_now_ms() < deadline) {
        pthread_mutex_unlock(&t->mu);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&t->mu);
    }
    int rc = 0;
    if (t->err[0] != '\0') {
        snprintf(err, 256, "%s", t->err);
        rc = -1;
    } else if (!t->loaded) {
        snprintf(err, 256,
                 "enrich: topic '%s' was not read to its end within load_timeout (%llds): is "
                 "the broker reachable? For a large topic raise load_timeout",
                 t->name, (long long)(t->load_timeout_ms / 1000));
        rc = -1;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* ---- lookups ------------------------------------------------------------------------------ */

void en_topic_run(const sl_enrich_t *e, sl_value_t *rec, sl_arena_t *arena, unsigned reader)
{
    et_hazard_t *hz = &e->topic->hazard[reader % SL_ENRICH_MAX_READERS];
    en_table_t *t = atomic_load(&e->cur);
    for (;;) {
        /* announce the table, then check it is still current: the updater
         * swaps first and then waits for hazards naming the old one */
        atomic_store(&hz->t, t);
        en_table_t *again = atomic_load(&e->cur);
        if (again == t) {
            break;
        }
        t = again;
    }
    long r = en_lookup(e, t, &rec[e->key_field]);
    for (size_t i = 0; i < e->n_out; i++) {
        sl_value_t *v = &rec[e->out_field[i]];
        if (r < 0) {
            v->is_null = true;
            continue;
        }
        *v = t->rows[(size_t)r * (1 + e->n_out) + 1 + i];
        if (!v->is_null && e->types[1 + i] == SL_TYPE_STRING) {
            v->u.s.ptr = sl_arena_strndup(arena, v->u.s.ptr, v->u.s.len);
        }
    }
    atomic_store_explicit(&hz->t, NULL, memory_order_release);
}

void en_topic_destroy(sl_enrich_t *e)
{
    en_topic_t *t = e->topic;
    if (t == NULL) {
        return;
    }
    atomic_store(&t->stop, true);
    if (t->started) {
        pthread_join(t->thr, NULL);
    }
    if (t->rk != NULL) {
        rd_kafka_consumer_close(t->rk);
        rd_kafka_destroy(t->rk);
    }
    for (size_t i = 0; i < t->kv_cap; i++) {
        free(t->kv[i].key);
        free(t->kv[i].val);
    }
    free(t->kv);
    sl_schema_free(&t->fields);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->name);
    free(t->brokers);
    free(t);
    e->topic = NULL;
}
