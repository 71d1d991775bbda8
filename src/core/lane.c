#include "core/lane.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codecs/json.h"
#include "core/pipeline.h"
#include "util/log.h"

/* Sockets a sink may ask the lane loop to wait on (plugin.h pollfds). */
#define LANE_MAX_SINK_FDS 256

/* record states in sl_batch_t.state */
enum { REC_PENDING = 0, REC_DONE = 1 };

typedef struct lane_post {
    void (*fn)(sl_lane_t *lane, void *arg);
    void *arg;
} lane_post_t;

/* A record waiting to be offered again (to the sink or the dead-letter path). */
typedef struct lane_retry {
    sl_batch_t *batch;
    uint32_t idx;
    bool dlq;
    int64_t due_ms;
} lane_retry_t;

struct sl_lane {
    sl_pipeline_t *pl;
    const sl_config_t *cfg;
    int id;
    pthread_t thr;
    bool started;
    sl_dedup_t *dedup;   /* with a dedup section: this lane's keys */
    sl_agg_t *agg;       /* with an aggregate section: this lane's groups */
    sl_batch_t *agg_out; /* rows of the flush in flight not yet all offered to the sink */
    uint32_t *agg_idx;   /* 0..n of agg_out, for submit */
    size_t agg_off;      /* rows of agg_out offered so far */
    int64_t agg_rows;    /* rows of the flush in flight not done yet */
    int64_t *agg_high;   /* per partition slot: one past the last record folded since the
                            last flush (0: none) */
    size_t n_agg_high;
    int64_t last_commit_ms; /* absolute mode: the lane commits itself */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int wake[2];
    char name[32];
    uint64_t acks;            /* results from the sink and the dead-letter path: progress */
    int64_t starved_since;    /* wanted messages, got none, since (0: got some) */
    int64_t last_nudge_ms;    /* last fetcher wake-up (lane_nudge_fetcher) */
    int64_t nudge_wait_ms;    /* starved time before the next one (backs off) */
    int64_t nudge_rtt_ms;     /* smoothed time from a nudge to the messages it brought */
    bool nudged;              /* a nudge was sent in the current starvation */
    int64_t fetch_stop_msgs;  /* queued.min.messages: the queue length that stops fetching */
    int64_t fetch_stop_bytes; /* queued.max.messages.kbytes, in bytes */
    bool queue_was_full;      /* the queue reached a fetch-stop limit since the last nudge */

    pthread_mutex_t mu; /* guards posts */
    lane_post_t *posts;
    size_t n_posts, cap_posts;
    lane_post_t *running; /* posts being run (swapped out under mu) */
    size_t cap_running;

    sl_part_t **parts;
    size_t n_parts, cap_parts;
    sl_part_t *last_part;
    atomic_int active_parts;
    atomic_bool at_end;

    const sl_sink_plugin_t *sink;
    void *sink_ctx;
    const sl_dlq_plugin_t *dlq;
    void *dlq_ctx;
    sl_plugin_env_t sink_env, dlq_env;

    rd_kafka_message_t **msgbuf; /* batch_size */
    sl_batch_t *cur;             /* batch whose valid records are being offered */
    uint32_t *cur_idx;
    size_t cur_n, cur_off;

    lane_retry_t *retries; /* offered again at due_ms */
    size_t n_retries, cap_retries;
    lane_retry_t *dlq_wait; /* dead-letter path was full: offer again soon */
    size_t n_dlq_wait, cap_dlq_wait;

    int64_t in_flight;
    int64_t max_in_flight; /* the budget (sl_pipeline_max_in_flight) */
    bool store_dirty;
    int64_t last_store_ms;
    int64_t last_err_log_ms;

    sl_lane_req_t *revoke_req;
    sl_lane_req_t *stop_req;
    bool stopping;
    bool quit;
    int64_t stop_deadline_ms;

    sl_json_limits_t limits;
    sl_lane_metrics_t m;
};

/* ---- requests ------------------------------------------------------------ */

void sl_lane_req_init(sl_lane_req_t *req, int lanes, sl_part_req_t *parts, size_t n)
{
    pthread_mutex_init(&req->mu, NULL);
    pthread_cond_init(&req->cv, NULL);
    req->remaining = lanes;
    req->parts = parts;
    req->n = n;
    req->lost = false;
    req->deadline_ms = 0;
}

void sl_lane_req_destroy(sl_lane_req_t *req)
{
    pthread_mutex_destroy(&req->mu);
    pthread_cond_destroy(&req->cv);
}

void sl_lane_req_wait(sl_lane_req_t *req)
{
    pthread_mutex_lock(&req->mu);
    while (req->remaining > 0) {
        pthread_cond_wait(&req->cv, &req->mu);
    }
    pthread_mutex_unlock(&req->mu);
}

static void req_finish(sl_lane_req_t *req)
{
    pthread_mutex_lock(&req->mu);
    req->remaining--;
    pthread_cond_broadcast(&req->cv);
    pthread_mutex_unlock(&req->mu);
}

/* ---- posting and waking ---------------------------------------------------- */

void sl_lane_wake(sl_lane_t *lane)
{
    char c = 1;
    ssize_t w = write(lane->wake[1], &c, 1);
    (void)w; /* EAGAIN: a wake-up is pending already */
}

void sl_lane_post(sl_lane_t *lane, void (*fn)(sl_lane_t *lane, void *arg), void *arg)
{
    pthread_mutex_lock(&lane->mu);
    if (lane->n_posts == lane->cap_posts) {
        lane->cap_posts = lane->cap_posts ? lane->cap_posts * 2 : 64;
        lane->posts = sl_xrealloc(lane->posts, lane->cap_posts * sizeof(*lane->posts));
    }
    lane->posts[lane->n_posts++] = (lane_post_t){fn, arg};
    pthread_mutex_unlock(&lane->mu);
    sl_lane_wake(lane);
}

static void lane_run_posts(sl_lane_t *lane)
{
    pthread_mutex_lock(&lane->mu);
    lane_post_t *todo = lane->posts;
    size_t n = lane->n_posts;
    size_t cap = lane->cap_posts;
    lane->posts = lane->running;
    lane->cap_posts = lane->cap_running;
    lane->n_posts = 0;
    lane->running = todo;
    lane->cap_running = cap;
    pthread_mutex_unlock(&lane->mu);
    for (size_t i = 0; i < n; i++) {
        todo[i].fn(lane, todo[i].arg);
    }
}

static void lane_drain_wake(sl_lane_t *lane)
{
    char buf[256];
    while (read(lane->wake[0], buf, sizeof(buf)) > 0) {
    }
}

/* ---- partitions ----------------------------------------------------------- */

static sl_part_t *lane_part_find(sl_lane_t *lane, const char *topic, int32_t partition)
{
    sl_part_t *p = lane->last_part;
    if (p && p->partition == partition && strcmp(p->topic, topic) == 0) {
        return p;
    }
    for (size_t i = 0; i < lane->n_parts; i++) {
        p = lane->parts[i];
        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            lane->last_part = p;
            return p;
        }
    }
    return NULL;
}

static sl_part_t *lane_part_get(sl_lane_t *lane, const char *topic, int32_t partition)
{
    sl_part_t *p = lane_part_find(lane, topic, partition);
    if (p) {
        return p;
    }
    p = sl_xcalloc(1, sizeof(*p));
    p->topic = sl_xstrdup(topic);
    p->partition = partition;
    p->stored = -1;
    p->end = -1;
    p->skip_below = -1;
    p->slot = (uint32_t)lane->n_parts;
    sl_wm_init(&p->wm);
    if (lane->n_parts == lane->cap_parts) {
        lane->cap_parts = lane->cap_parts ? lane->cap_parts * 2 : 16;
        lane->parts = sl_xrealloc(lane->parts, lane->cap_parts * sizeof(*lane->parts));
    }
    lane->parts[lane->n_parts++] = p;
    return p;
}

/* Pauses (or resumes) the given active partitions through librdkafka. */
static void lane_set_paused(sl_lane_t *lane, bool pause)
{
    size_t todo = 0;
    for (size_t i = 0; i < lane->n_parts; i++) {
        todo += lane->parts[i]->state != SL_PART_IDLE && lane->parts[i]->paused != pause;
    }
    if (todo == 0) {
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)lane->n_parts);
    for (size_t i = 0; i < lane->n_parts; i++) {
        sl_part_t *p = lane->parts[i];
        if (p->state != SL_PART_IDLE && p->paused != pause) {
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
            p->paused = pause;
            SL_M_ADD(&lane->m, paused_parts, pause ? 1 : -1);
        }
    }
    if (l->cnt > 0) {
        if (pause) {
            rd_kafka_pause_partitions(lane->rk, l);
            SL_M_ADD(&lane->m, pauses, 1);
        } else {
            rd_kafka_resume_partitions(lane->rk, l);
        }
        sl_log_debug(lane->name, pause ? "partitions paused" : "partitions resumed", "count=%d",
                     l->cnt);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* The offset to commit for p: below every record not done, and below what
 * aggregation folded but has not written yet. -1: nothing consumed. */
static int64_t lane_committable(const sl_lane_t *lane, const sl_part_t *p)
{
    int64_t c = sl_wm_committable(&p->wm);
    if (c >= 0 && lane->agg != NULL) {
        c = SL_MIN(c, sl_agg_pinned(lane->agg, p->slot, p->gen));
    }
    return c;
}

/* Hands each partition's committable watermark to librdkafka's offset store;
 * the auto-commit then commits only offsets below everything not yet done. */
static void lane_store_offsets(sl_lane_t *lane)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < lane->n_parts; i++) {
        sl_part_t *p = lane->parts[i];
        if (p->state == SL_PART_IDLE) {
            continue;
        }
        int64_t c = lane_committable(lane, p);
        if (c >= 0 && c > p->stored) {
            if (l == NULL) {
                l = rd_kafka_topic_partition_list_new(8);
            }
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = c;
            p->stored = c;
        }
    }
    if (l != NULL) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(lane->rk, l);
        if (err && err != RD_KAFKA_RESP_ERR__STATE && err != RD_KAFKA_RESP_ERR__INVALID_ARG) {
            sl_log_warn(lane->name, "storing offsets failed", "error=\"%s\"",
                        rd_kafka_err2str(err));
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    lane->store_dirty = false;
    lane->last_store_ms = sl_now_ms();
}

/* True while aggregated data waits to be written (or is being written). */
static bool lane_agg_busy(const sl_lane_t *lane)
{
    return lane->agg != NULL &&
           (sl_agg_dirty(lane->agg) || sl_agg_flushing(lane->agg) || lane->agg_rows > 0);
}

/* Sets tp's commit metadata for p (aggregate absolute mode; see
 * sl_agg_commit_meta). librdkafka frees it with the list. */
static void lane_commit_meta(const sl_lane_t *lane, const sl_part_t *p,
                             rd_kafka_topic_partition_t *tp)
{
    char meta[96];
    size_t n = lane->agg ? sl_agg_commit_meta(lane->agg, p->slot, p->gen, sl_wm_committable(&p->wm),
                                              meta, sizeof(meta))
                         : 0;
    if (n > 0) {
        tp->metadata = sl_xstrndup(meta, n);
        tp->metadata_size = n;
    }
}

/* Commits this lane's committable offsets now, synchronously (one round
 * trip, on the lane thread). After an aggregate flush is written: the next
 * flush starts only once the offsets folded into this one are committed, so
 * a crash replays at most one flush's worth of written data (the one in
 * flight). A failure (e.g. a rebalance) is logged: the periodic commit
 * catches up. */
static void lane_commit_now(sl_lane_t *lane)
{
    lane_store_offsets(lane);
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < lane->n_parts; i++) {
        sl_part_t *p = lane->parts[i];
        if (p->state != SL_PART_IDLE && p->stored >= 0) {
            if (l == NULL) {
                l = rd_kafka_topic_partition_list_new((int)lane->n_parts);
            }
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
            tp->offset = p->stored;
            lane_commit_meta(lane, p, tp);
        }
    }
    if (l == NULL) {
        return;
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(lane->rk, l, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        sl_log_debug(lane->name, "commit after an aggregate flush failed", "error=\"%s\"",
                     rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Aggregate absolute mode commits with metadata, from the lanes (the
 * consumer's auto-commit is off: librdkafka 2.0 commits stored offsets
 * without metadata). */
#define LANE_COMMIT_MS 1000
static bool lane_agg_commits(const sl_lane_t *lane)
{
    return lane->agg != NULL && lane->cfg->agg->mode == SL_AGG_ABSOLUTE;
}

static void lane_update_at_end(sl_lane_t *lane)
{
    /* open windows of absolute mode keep their pins: the offsets stored at
     * the end replay them after a restart */
    bool all = !lane_agg_busy(lane);
    for (size_t i = 0; i < lane->n_parts; i++) {
        sl_part_t *p = lane->parts[i];
        if (p->state != SL_PART_ACTIVE) {
            continue;
        }
        if (p->end < 0 || sl_wm_committable(&p->wm) < p->end || sl_wm_in_flight(&p->wm) > 0) {
            all = false;
            break;
        }
    }
    atomic_store(&lane->at_end, all);
}

/* ---- batches and records ---------------------------------------------------- */

static sl_batch_t *batch_new(sl_lane_t *lane, size_t cap, size_t data_len)
{
    const sl_schema_t *schema = &lane->cfg->record;
    sl_batch_t *b = sl_xcalloc(1, sizeof(*b));
    b->cap = cap;
    b->lane = lane;
    b->schema = schema;
    b->src = sl_xmalloc(cap * sizeof(*b->src));
    b->data = sl_xmalloc(data_len ? data_len : 1);
    b->values = sl_xmalloc(cap * schema->n_fields * sizeof(sl_value_t));
    b->pos = sl_xmalloc(cap * sizeof(*b->pos));
    b->state = sl_xcalloc(cap, 1);
    b->attempts = sl_xcalloc(cap, 1);
    if (lane->dedup != NULL) {
        b->dkey = sl_xmalloc(cap * sizeof(uint64_t));
        b->dflag = sl_xcalloc(cap, 1);
    }
    b->pending = 1; /* the lane's own hold while it works on the batch */
    b->created_us = sl_now_us();
    sl_arena_init(&b->arena, 4096);
    return b;
}

/* Copies msg (record k of b) into b->data at byte at; returns where the
 * next message goes. */
static size_t batch_copy_msg(sl_batch_t *b, uint32_t k, rd_kafka_message_t *msg, size_t at)
{
    sl_msg_src_t *m = &b->src[k];
    *m = (sl_msg_src_t){msg->offset, rd_kafka_message_timestamp(msg, NULL), at, SL_LEN_NULL,
                        SL_LEN_NULL};
    if (msg->payload != NULL) {
        memcpy(b->data + at, msg->payload, msg->len);
        m->payload_len = (uint32_t)msg->len;
        at += msg->len;
    }
    if (msg->key != NULL) {
        memcpy(b->data + at, msg->key, msg->key_len);
        m->key_len = (uint32_t)msg->key_len;
        at += msg->key_len;
    }
    return at;
}

static void batch_free(sl_batch_t *b)
{
    free(b->src);
    free(b->data);
    free(b->values);
    free(b->pos);
    free(b->state);
    free(b->attempts);
    free(b->dkey);
    free(b->dflag);
    free(b->agg_offs);
    sl_arena_free(&b->arena);
    free(b);
}

static void batch_release(sl_batch_t *b)
{
    if (--b->pending == 0) {
        sl_lane_t *lane = b->lane;
        int64_t now = sl_now_us();
        atomic_store_explicit(&lane->m.last_record_us, now, memory_order_relaxed);
        if (b->agg) {
            /* every row of the flush is written or dead-lettered: the offsets
             * of the records folded into it may be committed */
            sl_agg_flush_done(lane->agg);
            if (lane->stopping || lane->quit || lane->revoke_req != NULL) {
                lane->store_dirty = true; /* the stop or revoke commits them */
            } else {
                lane_commit_now(lane);
            }
        } else {
            sl_metrics_observe_latency(&lane->m, now - b->created_us);
        }
        batch_free(b);
    }
}

static bool rec_stale(const sl_batch_t *b, uint32_t idx)
{
    if (b->agg) {
        return false; /* aggregated rows are written whoever owns the partitions now */
    }
    const sl_pos_t *p = &b->pos[idx];
    return p->part->gen != p->gen;
}

static void lane_dedup_resolved(void *arg, sl_dedup_rec_t rec, bool dup);

/* Marks record idx done: advances its partition's watermark (unless the
 * partition was revoked meanwhile) and releases the batch when it was last. */
struct sl_batch_watch {
    void (*fn)(void *arg);
    void *arg;
};

void sl_batch_watch(sl_batch_t *b, uint32_t idx, void (*fn)(void *arg), void *arg)
{
    if (b->state[idx] == REC_DONE) {
        fn(arg);
        return;
    }
    if (b->watch == NULL) {
        b->watch = sl_arena_alloc(&b->arena, b->cap * sizeof(*b->watch));
        memset(b->watch, 0, b->cap * sizeof(*b->watch));
    }
    b->watch[idx] = (struct sl_batch_watch){fn, arg};
}

static void rec_done(sl_batch_t *b, uint32_t idx)
{
    if (b->state[idx] == REC_DONE) {
        return;
    }
    sl_lane_t *lane = b->lane;
    b->state[idx] = REC_DONE;
    if (b->watch != NULL && b->watch[idx].fn != NULL) {
        b->watch[idx].fn(b->watch[idx].arg);
    }
    if (b->agg) {
        lane->agg_rows--;
        batch_release(b);
        return;
    }
    if (!rec_stale(b, idx)) {
        sl_wm_done(&b->pos[idx].part->wm, b->pos[idx].seq);
        lane->store_dirty = true;
    }
    lane->in_flight--;
    SL_M_ADD(&lane->m, in_flight, -1);
    if (b->dflag != NULL && (b->dflag[idx] & SL_DEDUP_F_OWNER)) {
        /* the first copy of its key is done: held copies are duplicates if
         * it was written, else the next one goes to the sink */
        b->dflag[idx] &= (uint8_t)~SL_DEDUP_F_OWNER;
        sl_dedup_resolve(lane->dedup, b->dkey[idx], (b->dflag[idx] & SL_DEDUP_F_WRITTEN) != 0,
                         sl_now_ms(), lane_dedup_resolved, lane);
    }
    batch_release(b);
}

void sl_batch_origin(const sl_batch_t *b, uint32_t idx, sl_origin_t *o)
{
    if (b->agg) {
        const char *json = b->agg_json ? b->agg_json[idx] : NULL;
        *o = (sl_origin_t){"(aggregate)", -1, -1,   b->wall_ms,
                           NULL,          0,  json, json ? strlen(json) : 0};
        return;
    }
    const sl_msg_src_t *m = &b->src[idx];
    const char *key = b->data + m->at + (m->payload_len == SL_LEN_NULL ? 0 : m->payload_len);
    o->topic = b->pos[idx].part->topic;
    o->partition = b->pos[idx].part->partition;
    o->offset = m->offset;
    o->timestamp_ms = m->timestamp_ms;
    o->key = m->key_len == SL_LEN_NULL ? NULL : key;
    o->key_len = m->key_len == SL_LEN_NULL ? 0 : m->key_len;
    o->payload = m->payload_len == SL_LEN_NULL ? NULL : b->data + m->at;
    o->payload_len = m->payload_len == SL_LEN_NULL ? 0 : m->payload_len;
}

static int64_t lane_backoff_ms(const sl_lane_t *lane, int attempt)
{
    int64_t base = lane->cfg->runtime.retry_backoff_ms;
    int64_t max = lane->cfg->runtime.retry_backoff_max_ms;
    int64_t d = base;
    for (int i = 1; i < attempt && d < max; i++) {
        d *= 2;
    }
    d = SL_MIN(d, max);
    /* +-20% jitter so lanes and instances do not retry in lockstep */
    int64_t j = d / 5;
    if (j > 0) {
        d += (rand() % (2 * j + 1)) - j;
    }
    return d;
}

static void lane_push_retry(sl_lane_t *lane, lane_retry_t r)
{
    if (lane->n_retries == lane->cap_retries) {
        lane->cap_retries = lane->cap_retries ? lane->cap_retries * 2 : 64;
        lane->retries = sl_xrealloc(lane->retries, lane->cap_retries * sizeof(*lane->retries));
    }
    lane->retries[lane->n_retries++] = r;
}

/* A record dedup held is resolved: a duplicate is done; otherwise it is now
 * its key's first copy and goes to the sink (through the retry list, due
 * now). */
static void lane_dedup_resolved(void *arg, sl_dedup_rec_t rec, bool dup)
{
    sl_lane_t *lane = arg;
    sl_batch_t *b = rec.batch;
    if (dup) {
        SL_M_ADD(&lane->m, duplicates, 1);
        rec_done(b, rec.idx);
    } else {
        b->dflag[rec.idx] = SL_DEDUP_F_OWNER;
        lane_push_retry(lane, (lane_retry_t){b, rec.idx, false, 0});
    }
}

static void lane_add_retry(sl_lane_t *lane, sl_batch_t *b, uint32_t idx, bool dlq)
{
    if (b->attempts[idx] < 255) {
        b->attempts[idx]++;
    }
    lane_push_retry(
        lane, (lane_retry_t){b, idx, dlq, sl_now_ms() + lane_backoff_ms(lane, b->attempts[idx])});
}

/* The reason of a dead-lettered record lives in the batch arena until the
 * record is done (retries of the dead-letter send reuse it). */
static void batch_reason_set(sl_batch_t *b, uint32_t idx, const char *reason)
{
    if (b->reasons == NULL) {
        b->reasons = sl_arena_alloc(&b->arena, b->cap * sizeof(char *));
        memset(b->reasons, 0, b->cap * sizeof(char *));
    }
    b->reasons[idx] = sl_arena_strndup(&b->arena, reason, strlen(reason));
}

static const char *batch_reason_get(const sl_batch_t *b, uint32_t idx)
{
    return b->reasons && b->reasons[idx] ? b->reasons[idx] : "unknown";
}

static bool lane_dlq_offer(sl_lane_t *lane, sl_batch_t *b, uint32_t idx, const char *reason)
{
    if (rec_stale(b, idx)) {
        rec_done(b, idx); /* partition revoked: its new owner redelivers it */
        return true;
    }
    return lane->dlq->submit(lane->dlq_ctx, b, idx, reason) == 0;
}

static void lane_dead_letter(sl_lane_t *lane, sl_batch_t *b, uint32_t idx, const char *reason)
{
    batch_reason_set(b, idx, reason);
    if (b->agg) {
        /* an aggregated row has no message: the dead-letter entry carries
         * the row as JSON */
        if (b->agg_json == NULL) {
            b->agg_json = sl_arena_alloc(&b->arena, b->cap * sizeof(char *));
            memset(b->agg_json, 0, b->cap * sizeof(char *));
        }
        sl_buf_t j = SL_BUF_INIT;
        sl_json_encode(b->schema, sl_batch_values(b, idx), &j);
        b->agg_json[idx] = sl_arena_strndup(&b->arena, j.data, j.len);
        sl_buf_free(&j);
    }
    if (lane->n_dlq_wait > 0 || !lane_dlq_offer(lane, b, idx, batch_reason_get(b, idx))) {
        if (lane->n_dlq_wait == lane->cap_dlq_wait) {
            lane->cap_dlq_wait = lane->cap_dlq_wait ? lane->cap_dlq_wait * 2 : 64;
            lane->dlq_wait =
                sl_xrealloc(lane->dlq_wait, lane->cap_dlq_wait * sizeof(*lane->dlq_wait));
        }
        lane->dlq_wait[lane->n_dlq_wait++] = (lane_retry_t){b, idx, true, 0};
    }
}

void sl_batch_result(sl_batch_t *b, uint32_t idx, sl_status_t status, const char *reason)
{
    sl_lane_t *lane = b->lane;
    lane->acks++;
    SL_M_ADD(&lane->m, sink_in_flight, -1);
    switch (status) {
    case SL_STATUS_OK:
        SL_M_ADD(&lane->m, out, 1);
        if (b->dflag != NULL) {
            b->dflag[idx] |= SL_DEDUP_F_WRITTEN;
        }
        rec_done(b, idx);
        break;
    case SL_STATUS_RETRY:
        SL_M_ADD(&lane->m, sink_retries, 1);
        lane_add_retry(lane, b, idx, false);
        break;
    case SL_STATUS_REJECT:
        SL_M_ADD(&lane->m, sink_rejected, 1);
        lane_dead_letter(lane, b, idx, reason ? reason : "rejected by the sink");
        break;
    }
}

void sl_batch_dlq_result(sl_batch_t *b, uint32_t idx, sl_status_t status)
{
    sl_lane_t *lane = b->lane;
    lane->acks++;
    if (status == SL_STATUS_OK) {
        SL_M_ADD(&lane->m, dead_lettered, 1);
        rec_done(b, idx);
    } else {
        /* the dead-letter path is the last resort: never drop, retry */
        SL_M_ADD(&lane->m, dlq_retries, 1);
        lane_add_retry(lane, b, idx, true);
    }
}

/* ---- aggregation ------------------------------------------------------------- */

/* Offers the rows of the flush in flight to the sink (a prefix at a time
 * while it is full). */
static void lane_agg_submit(sl_lane_t *lane)
{
    sl_batch_t *b = lane->agg_out;
    if (b == NULL) {
        return;
    }
    while (lane->agg_off < b->n) {
        size_t took = lane->sink->submit(lane->sink_ctx, b, lane->agg_idx + lane->agg_off,
                                         b->n - lane->agg_off);
        SL_M_ADD(&lane->m, sink_in_flight, (int64_t)took);
        lane->agg_off += took;
        if (took == 0) {
            return;
        }
    }
    lane->agg_out = NULL;
    batch_release(b);
}

/* Starts a flush: its rows become a batch of their own for the sink; when
 * the last is done, the offsets folded into them are released. */
static void lane_agg_flush(sl_lane_t *lane)
{
    sl_batch_t *b = sl_xcalloc(1, sizeof(*b));
    sl_arena_init(&b->arena, 16384);
    size_t n = 0;
    sl_value_t *rows = sl_agg_flush(lane->agg, &n, &b->arena);
    atomic_store_explicit(&lane->m.agg_keys, (int64_t)sl_agg_keys(lane->agg), memory_order_relaxed);
    if (n == 0) {
        sl_arena_free(&b->arena);
        free(b);
        lane->store_dirty = true; /* closed windows without new rows released their pins */
        return;
    }
    SL_M_ADD(&lane->m, agg_flushes, 1);
    b->lane = lane;
    b->schema = lane->cfg->out;
    b->agg = true;
    b->values = rows;
    b->n = b->cap = n;
    b->state = sl_xcalloc(n, 1);
    b->attempts = sl_xcalloc(n, 1);
    b->pending = n + 1; /* the rows, and the lane's hold while offering them */
    b->created_us = sl_now_us();
    b->wall_ms = sl_wall_us() / 1000;
    lane->agg_idx = sl_xrealloc(lane->agg_idx, n * sizeof(*lane->agg_idx));
    for (size_t i = 0; i < n; i++) {
        lane->agg_idx[i] = (uint32_t)i;
    }
    /* the partitions' positions the flush covers, for exactly-once sinks */
    b->agg_offs = sl_xcalloc(lane->n_parts + 1, sizeof(*b->agg_offs));
    for (size_t i = 0; i < lane->n_agg_high && i < lane->n_parts; i++) {
        if (lane->agg_high[i] > 0) {
            b->agg_offs[b->n_agg_offs++] = (sl_part_offset_t){
                lane->parts[i]->topic, lane->parts[i]->partition, lane->agg_high[i]};
            lane->agg_high[i] = 0;
        }
    }
    lane->agg_out = b;
    lane->agg_off = 0;
    lane->agg_rows += (int64_t)n;
    lane_agg_submit(lane);
}

/* Folds records idx[0..n) of batch b into the lane's groups; returns how
 * many it took (fewer than n: max_keys reached while a flush is in flight;
 * the rest is offered again later). Folded records are done now: their
 * offsets stay pinned until the flush holding them is written. */
static size_t lane_agg_take(sl_lane_t *lane, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    sl_agg_t *agg = lane->agg;
    sl_reason_t why;
    sl_agg_set_clock(agg, sl_now_ms(), sl_wall_us());
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx[i];
        /* groups are scattered in memory: fetch them a few records ahead */
        if (i + 16 < n) {
            sl_agg_prefetch(agg, sl_batch_values(b, idx[i + 16]));
        }
        if (i + 8 < n) {
            sl_agg_prefetch(agg, sl_batch_values(b, idx[i + 8]));
        }
        sl_agg_verdict_t v = sl_agg_add(agg, sl_batch_values(b, k), b->pos[k].part->slot,
                                        b->pos[k].gen, b->src[k].offset, &why);
        if (v == SL_AGG_FULL) {
            if (!sl_agg_flush_due(agg, sl_now_ms(), true)) {
                return i; /* a flush is in flight: wait for it */
            }
            lane_agg_flush(lane);
            v = sl_agg_add(agg, sl_batch_values(b, k), b->pos[k].part->slot, b->pos[k].gen,
                           b->src[k].offset, &why);
            if (v == SL_AGG_FULL) {
                return i;
            }
        }
        switch (v) {
        case SL_AGG_TAKEN: {
            SL_M_ADD(&lane->m, aggregated, 1);
            uint32_t slot = b->pos[k].part->slot;
            if (slot >= lane->n_agg_high) {
                size_t m = SL_MAX((size_t)slot + 1, lane->n_agg_high * 2);
                lane->agg_high = sl_xrealloc(lane->agg_high, m * sizeof(*lane->agg_high));
                memset(lane->agg_high + lane->n_agg_high, 0,
                       (m - lane->n_agg_high) * sizeof(*lane->agg_high));
                lane->n_agg_high = m;
            }
            lane->agg_high[slot] = SL_MAX(lane->agg_high[slot], b->src[k].offset + 1);
            if (b->dflag != NULL) {
                b->dflag[k] |= SL_DEDUP_F_WRITTEN; /* its flush writes it or dead-letters it */
            }
            rec_done(b, k);
            break;
        }
        case SL_AGG_LATE:
            SL_M_ADD(&lane->m, late, 1);
            if (lane->cfg->agg->late == SL_AGG_LATE_DROP) {
                rec_done(b, k);
            } else {
                lane_dead_letter(lane, b, k, why.text);
            }
            break;
        case SL_AGG_REJECT:
            SL_M_ADD(&lane->m, invalid, 1);
            lane_dead_letter(lane, b, k, why.text);
            break;
        case SL_AGG_REPLAYED:
            SL_M_ADD(&lane->m, agg_replayed, 1);
            rec_done(b, k);
            break;
        case SL_AGG_FULL:
            break;
        }
    }
    atomic_store_explicit(&lane->m.agg_keys, (int64_t)sl_agg_keys(agg), memory_order_relaxed);
    return n;
}

/* True when every partition with an --until-end target has been consumed
 * up to it: folded data need not wait for the timer. */
static bool lane_consumed_to_end(const sl_lane_t *lane)
{
    bool any = false;
    for (size_t i = 0; i < lane->n_parts; i++) {
        const sl_part_t *p = lane->parts[i];
        if (p->state != SL_PART_ACTIVE) {
            continue;
        }
        if (p->end < 0 || sl_wm_next(&p->wm) < p->end) {
            return false;
        }
        any = true;
    }
    return any;
}

/* Offers pending rows, and starts a flush when one is due: the timer,
 * max_keys, or at once while stopping, revoking or at the end of input. */
static void lane_agg_tick(sl_lane_t *lane, int64_t now)
{
    if (lane->agg == NULL) {
        return;
    }
    lane_agg_submit(lane);
    bool force = lane->stopping || lane->revoke_req != NULL || lane_consumed_to_end(lane);
    if (sl_agg_flush_due(lane->agg, now, force)) {
        lane_agg_flush(lane);
    }
}

/* ---- offering records to the sink ---------------------------------------- */

/* Offers the current batch's remaining valid records; records of partitions
 * revoked meanwhile are dropped (the new owner gets them again). */
static void lane_submit_current(sl_lane_t *lane)
{
    sl_batch_t *b = lane->cur;
    if (b == NULL) {
        return;
    }
    size_t w = lane->cur_off;
    for (size_t r = lane->cur_off; r < lane->cur_n; r++) {
        uint32_t idx = lane->cur_idx[r];
        if (rec_stale(b, idx)) {
            rec_done(b, idx);
        } else {
            lane->cur_idx[w++] = idx;
        }
    }
    lane->cur_n = w;
    while (lane->cur_off < lane->cur_n) {
        size_t want = lane->cur_n - lane->cur_off;
        size_t took;
        if (lane->agg != NULL) {
            took = lane_agg_take(lane, b, lane->cur_idx + lane->cur_off, want);
        } else {
            /* took records now belong to the sink; results may already have
             * come back, but the lane's hold keeps b alive */
            took = lane->sink->submit(lane->sink_ctx, b, lane->cur_idx + lane->cur_off, want);
            SL_M_ADD(&lane->m, sink_in_flight, (int64_t)took);
        }
        lane->cur_off += took;
        if (took == 0) {
            return; /* full: offered again after a wake-up */
        }
    }
    lane->cur = NULL;
    batch_release(b);
}

/* Offers due retries again. Works on a detached list: a sink may answer
 * RETRY from inside submit(), which adds to lane->retries. */
static void lane_run_retries(sl_lane_t *lane, int64_t now)
{
    lane_retry_t *todo = lane->retries;
    size_t n = lane->n_retries;
    lane->retries = NULL;
    lane->n_retries = lane->cap_retries = 0;
    for (size_t i = 0; i < n; i++) {
        lane_retry_t r = todo[i];
        bool keep = true;
        if (rec_stale(r.batch, r.idx)) {
            rec_done(r.batch, r.idx);
            keep = false;
        } else if (r.due_ms <= now) {
            if (r.dlq) {
                keep = !lane_dlq_offer(lane, r.batch, r.idx, batch_reason_get(r.batch, r.idx));
            } else if (lane->agg != NULL && !r.batch->agg) {
                keep = lane_agg_take(lane, r.batch, &r.idx, 1) == 0; /* a promoted dedup copy */
            } else if (lane->sink->submit(lane->sink_ctx, r.batch, &r.idx, 1) == 1) {
                SL_M_ADD(&lane->m, sink_in_flight, 1);
                keep = false;
            }
            if (keep) {
                r.due_ms = now + 10; /* full: try again shortly */
            }
        }
        if (keep) {
            lane_push_retry(lane, r);
        }
    }
    free(todo);
}

static void lane_run_dlq_wait(sl_lane_t *lane)
{
    size_t i = 0;
    for (; i < lane->n_dlq_wait; i++) {
        lane_retry_t *r = &lane->dlq_wait[i];
        if (!lane_dlq_offer(lane, r->batch, r->idx, batch_reason_get(r->batch, r->idx))) {
            break;
        }
    }
    memmove(lane->dlq_wait, lane->dlq_wait + i, (lane->n_dlq_wait - i) * sizeof(*lane->dlq_wait));
    lane->n_dlq_wait -= i;
}

static int64_t lane_next_retry_ms(const sl_lane_t *lane)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < lane->n_retries; i++) {
        next = SL_MIN(next, lane->retries[i].due_ms);
    }
    return next;
}

/* ---- consuming ------------------------------------------------------------ */

static void lane_on_kafka_error(sl_lane_t *lane, rd_kafka_message_t *msg)
{
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        sl_part_t *p = lane_part_find(lane, rd_kafka_topic_name(msg->rkt), msg->partition);
        if (p && p->state == SL_PART_ACTIVE) {
            sl_wm_skip_to(&p->wm, msg->offset);
            lane->store_dirty = true;
        }
        return;
    }
    SL_M_ADD(&lane->m, kafka_errors, 1);
    int64_t now = sl_now_ms();
    if (now - lane->last_err_log_ms >= 1000) {
        lane->last_err_log_ms = now;
        sl_log_warn(lane->name, "consumer error", "topic=%s partition=%d error=\"%s\"",
                    msg->rkt ? rd_kafka_topic_name(msg->rkt) : "-", (int)msg->partition,
                    rd_kafka_message_errstr(msg));
    }
}

/* Decodes and validates one record; returns 0 or -1 with why set. */
static int lane_decode(sl_lane_t *lane, sl_batch_t *b, uint32_t k, sl_reason_t *why)
{
    const sl_schema_t *input = &lane->cfg->schema;
    sl_value_t *v = sl_batch_values(b, k);
    for (size_t f = 0; f < b->schema->n_fields; f++) {
        v[f].is_null = true;
    }
    const sl_msg_src_t *m = &b->src[k];
    if (m->payload_len == SL_LEN_NULL) {
        snprintf(why->text, sizeof(why->text), "empty message (null payload)");
        return -1;
    }
    /* the input fields come first in the record schema, at the same indexes */
    if (sl_json_decode(input, &lane->limits, b->data + m->at, m->payload_len, v, &b->arena, why) !=
        0) {
        return -1;
    }
    return sl_schema_validate(input, v, why);
}

/* Notes whether the queue, queued messages long before this take, had reached
 * a limit that makes librdkafka stop fetching (lane_nudge_fetcher). Its
 * byte size is not public: estimated from the payloads just taken (librdkafka
 * counts payload bytes), with a quarter of slack. Returns the bytes of the
 * taken messages' payloads and keys. */
static size_t lane_note_queue(sl_lane_t *lane, int64_t queued, ssize_t got)
{
    size_t payloads = 0, keys = 0;
    for (ssize_t i = 0; i < got; i++) {
        payloads += lane->msgbuf[i]->payload ? lane->msgbuf[i]->len : 0;
        keys += lane->msgbuf[i]->key ? lane->msgbuf[i]->key_len : 0;
    }
    if (queued >= lane->fetch_stop_msgs ||
        queued * (int64_t)(payloads / (size_t)got) >= lane->fetch_stop_bytes / 4 * 3) {
        lane->queue_was_full = true;
    }
    return payloads + keys;
}

/* Takes up to batch_size messages from the lane queue and runs them through
 * decode and validate; valid records become the current submission and
 * invalid ones go to the dead-letter path. Returns the messages taken. */
static size_t lane_consume(sl_lane_t *lane)
{
    size_t want = (size_t)lane->cfg->runtime.batch_size;
    int64_t queued = rd_kafka_queue_length(lane->q);
    ssize_t got = rd_kafka_consume_batch_queue(lane->q, 0, lane->msgbuf, want);
    if (got <= 0) {
        return 0;
    }
    size_t data_len = lane_note_queue(lane, queued, got);
    sl_batch_t *b = batch_new(lane, (size_t)got, data_len);
    size_t at = 0;
    size_t n_valid = 0, n_filtered = 0, n_dedup = 0;
    int64_t now_ms = sl_now_ms();
    sl_reason_t why;
    for (ssize_t i = 0; i < got; i++) {
        rd_kafka_message_t *msg = lane->msgbuf[i];
        if (msg->err) {
            lane_on_kafka_error(lane, msg);
            continue;
        }
        sl_part_t *p = lane_part_find(lane, rd_kafka_topic_name(msg->rkt), msg->partition);
        if (p == NULL || p->state != SL_PART_ACTIVE || msg->offset < sl_wm_next(&p->wm)) {
            /* revoked or draining (its next owner consumes it), or fetched
             * again after a pause/resume */
            SL_M_ADD(&lane->m, stale_dropped, 1);
            continue;
        }
        uint32_t k = (uint32_t)b->n++;
        b->pos[k] = (sl_pos_t){p, p->gen, sl_wm_add(&p->wm, msg->offset)};
        at = batch_copy_msg(b, k, msg, at);
        b->pending++;
        lane->in_flight++;
        if (lane_decode(lane, b, k, &why) != 0) {
            SL_M_ADD(&lane->m, invalid, 1);
            lane_dead_letter(lane, b, k, why.text);
            continue;
        }
        switch (sl_stages_run(lane->cfg->stages, sl_batch_values(b, k), &b->arena,
                              (unsigned)lane->id, &why)) {
        case SL_STAGE_KEEP:
            if (b->src[k].offset < p->skip_below) {
                /* an exactly-once sink wrote it before a restart */
                SL_M_ADD(&lane->m, agg_replayed, 1);
                n_dedup++;
                rec_done(b, k);
                break;
            }
            if (lane->dedup == NULL) {
                lane->cur_idx[n_valid++] = k;
                break;
            }
            b->dkey[k] = sl_dedup_key(lane->cfg->dedup, &lane->cfg->record, sl_batch_values(b, k),
                                      b->data + b->src[k].at, b->src[k].payload_len);
            switch (sl_dedup_offer(lane->dedup, b->dkey[k], now_ms, (sl_dedup_rec_t){b, k})) {
            case SL_DEDUP_NEW:
                b->dflag[k] = SL_DEDUP_F_OWNER;
                lane->cur_idx[n_valid++] = k;
                break;
            case SL_DEDUP_DUP:
                SL_M_ADD(&lane->m, duplicates, 1);
                n_dedup++;
                rec_done(b, k);
                break;
            case SL_DEDUP_HELD:
                n_dedup++; /* in flight until its first copy is done */
                break;
            }
            break;
        case SL_STAGE_DROP:
            SL_M_ADD(&lane->m, filtered, 1);
            n_filtered++;
            rec_done(b, k);
            break;
        case SL_STAGE_REJECT:
            SL_M_ADD(&lane->m, invalid, 1);
            lane_dead_letter(lane, b, k, why.text);
            break;
        }
    }
    /* copied: librdkafka gets them back in one go (freeing them one by one
     * between decodes costs more, in contention with its fetcher thread) */
    for (ssize_t i = 0; i < got; i++) {
        rd_kafka_message_destroy(lane->msgbuf[i]);
    }
    if (SL_M_GET(&lane->m, first_record_us) == 0) {
        atomic_store(&lane->m.first_record_us, b->created_us);
    }
    SL_M_ADD(&lane->m, records_in, b->n);
    SL_M_ADD(&lane->m, valid, n_valid + n_filtered + n_dedup);
    SL_M_ADD(&lane->m, in_flight, (int64_t)b->n);
    lane->cur = b;
    lane->cur_n = n_valid;
    lane->cur_off = 0;
    lane_submit_current(lane);
    return (size_t)got;
}

/* ---- requests from the main thread ------------------------------------------ */

static void lane_do_assign(sl_lane_t *lane, void *arg)
{
    sl_lane_req_t *req = arg;
    for (size_t i = 0; i < req->n; i++) {
        sl_part_req_t *r = &req->parts[i];
        if (sl_pipeline_lane_of(lane->pl, r->topic, r->partition) != lane->id) {
            continue;
        }
        sl_part_t *p = lane_part_get(lane, r->topic, r->partition);
        if (p->state == SL_PART_IDLE) {
            atomic_fetch_add(&lane->active_parts, 1);
        }
        p->gen++;
        sl_wm_reset(&p->wm);
        p->state = SL_PART_ACTIVE;
        p->stored = -1;
        p->end = r->end;
        p->skip_below = r->skip_below;
        p->paused = false;
        if (lane->agg != NULL) {
            (void)sl_agg_restore(lane->agg, p->slot, p->gen, r->meta, strlen(r->meta));
        }
    }
    lane_update_at_end(lane);
    req_finish(req);
}

void sl_lane_assign(sl_lane_t *lane, sl_lane_req_t *req)
{
    sl_lane_post(lane, lane_do_assign, req);
}

static void lane_do_revoke(sl_lane_t *lane, void *arg)
{
    sl_lane_req_t *req = arg;
    for (size_t i = 0; i < req->n; i++) {
        sl_part_t *p = lane_part_find(lane, req->parts[i].topic, req->parts[i].partition);
        if (p && p->state == SL_PART_ACTIVE) {
            p->state = SL_PART_DRAINING;
        }
    }
    if (lane->sink->flush) {
        lane->sink->flush(lane->sink_ctx);
    }
    lane->revoke_req = req;
}

void sl_lane_revoke(sl_lane_t *lane, sl_lane_req_t *req)
{
    sl_lane_post(lane, lane_do_revoke, req);
}

/* Completes a pending revoke once its partitions have nothing in flight, or
 * at its deadline (records still in flight are abandoned: their new owner
 * consumes them again from the committed watermark). */
static void lane_check_revoke(sl_lane_t *lane)
{
    sl_lane_req_t *req = lane->revoke_req;
    if (req == NULL) {
        return;
    }
    bool drained = true;
    for (size_t i = 0; i < lane->n_parts && !req->lost; i++) {
        sl_part_t *p = lane->parts[i];
        if (p->state == SL_PART_DRAINING &&
            (sl_wm_in_flight(&p->wm) > 0 ||
             (lane->agg != NULL && lane->cfg->agg->mode == SL_AGG_DELTA &&
              sl_agg_pinned(lane->agg, p->slot, p->gen) != INT64_MAX))) {
            /* delta mode waits for the flush holding the partition's records:
             * absolute mode's window pins are committed as they are (the next
             * owner recomputes the open windows) */
            drained = false;
        }
    }
    if (!drained && sl_now_ms() < req->deadline_ms) {
        return;
    }
    for (size_t i = 0; i < req->n; i++) {
        sl_part_req_t *r = &req->parts[i];
        sl_part_t *p = lane_part_find(lane, r->topic, r->partition);
        if (p == NULL || p->state != SL_PART_DRAINING) {
            continue;
        }
        if (sl_wm_in_flight(&p->wm) > 0) {
            sl_log_warn(lane->name,
                        "revoke deadline passed with records in flight: they will be "
                        "consumed again by the partition's next owner",
                        "topic=%s partition=%d in_flight=%llu", p->topic, (int)p->partition,
                        (unsigned long long)sl_wm_in_flight(&p->wm));
        }
        r->offset = req->lost ? -1 : lane_committable(lane, p);
        if (lane->agg != NULL) {
            char meta[96];
            size_t n = sl_agg_commit_meta(lane->agg, p->slot, p->gen, sl_wm_committable(&p->wm),
                                          meta, sizeof(meta));
            memcpy(r->meta, meta, n);
            r->meta[n] = '\0';
        }
        if (lane->agg != NULL) {
            sl_agg_drop_slot(lane->agg, p->slot);
            if (p->slot < lane->n_agg_high) {
                lane->agg_high[p->slot] = 0; /* no later flush speaks for it */
            }
        }
        if (p->paused) {
            SL_M_ADD(&lane->m, paused_parts, -1);
        }
        p->state = SL_PART_IDLE;
        p->paused = false;
        p->gen++;
        sl_wm_reset(&p->wm);
        p->stored = -1;
        atomic_fetch_sub(&lane->active_parts, 1);
    }
    lane->revoke_req = NULL;
    lane_update_at_end(lane);
    req_finish(req);
}

static void lane_do_stop(sl_lane_t *lane, void *arg)
{
    lane->stop_req = arg;
    lane->stopping = true;
    if (lane->sink->flush) {
        lane->sink->flush(lane->sink_ctx);
    }
    if (lane->dlq->flush) {
        lane->dlq->flush(lane->dlq_ctx);
    }
}

void sl_lane_stop(sl_lane_t *lane, sl_lane_req_t *req)
{
    sl_lane_post(lane, lane_do_stop, req);
}

static void lane_check_stop(sl_lane_t *lane)
{
    sl_lane_req_t *req = lane->stop_req;
    if (req == NULL) {
        return;
    }
    bool busy = lane->in_flight > 0 || lane_agg_busy(lane);
    if (busy && sl_now_ms() < req->deadline_ms) {
        return;
    }
    if (busy) {
        sl_log_warn(lane->name,
                    "shutdown_timeout passed with records in flight: they will be "
                    "consumed again after restart",
                    "in_flight=%lld aggregated_rows=%lld", (long long)lane->in_flight,
                    (long long)lane->agg_rows);
    }
    if (lane_agg_commits(lane)) {
        lane_commit_now(lane); /* with the metadata a restart needs */
    } else {
        lane_store_offsets(lane);
    }
    lane->stop_req = NULL;
    req_finish(req);
}

static void lane_do_quit(sl_lane_t *lane, void *arg)
{
    (void)arg;
    lane->quit = true;
}

void sl_lane_join(sl_lane_t *lane)
{
    if (!lane->started) {
        return;
    }
    sl_lane_post(lane, lane_do_quit, NULL);
    pthread_join(lane->thr, NULL);
    lane->started = false;
}

/* ---- waking librdkafka's fetcher ------------------------------------------- */

/* librdkafka 2.0.2 stops fetching a partition while its queue (here the lane
 * queue it is forwarded to) is over queued.min.messages or
 * queued.max.messages.kbytes, and looks
 * again only when the broker thread wakes up: up to 1 s later
 * (rd_kafka_max_block_ms). A lane that drained its queue then idles although
 * the broker has data (docs/BENCHMARKS.md). When the lane has wanted messages
 * and got none for a while (lane_starved_ms) while a partition shows lag (its cached
 * high watermark is above the next offset), seek those partitions to their
 * next offset: the seek is an op for the broker thread, which wakes it up to
 * decide to fetch. The queue is empty, so the purge a seek implies costs
 * nothing; the position does not change. A seek also discards a fetch in
 * flight, so the lane waits twice the time nudges have taken to bring
 * messages (at least LANE_STARVED_MIN_MS: a few ms on one machine, more with
 * a distant broker) before it nudges, and while nudges bring nothing they
 * back off, doubling up to the broker thread's own 1 s. */
#define LANE_STARVED_MIN_MS 5
#define LANE_NUDGE_MAX_MS 1000

static int64_t lane_starved_ms(const sl_lane_t *lane)
{
    return SL_MIN(SL_MAX(LANE_STARVED_MIN_MS, 2 * lane->nudge_rtt_ms), LANE_NUDGE_MAX_MS);
}

/* Messages arrived: if a nudge brought them, learn how long that took. */
static void lane_fed(sl_lane_t *lane, int64_t now)
{
    if (lane->nudged) {
        int64_t took = now - lane->last_nudge_ms;
        lane->nudge_rtt_ms = lane->nudge_rtt_ms == 0 ? took : (3 * lane->nudge_rtt_ms + took) / 4;
        lane->nudged = false;
    }
    lane->starved_since = 0;
    lane->nudge_wait_ms = 0;
}

static void lane_nudge_fetcher(sl_lane_t *lane, int64_t now)
{
    /* a queue that reached a limit stopped the fetcher, which then had no
     * reason to fetch (nothing in flight to discard): nudge at once */
    bool stopped = lane->queue_was_full;
    if (lane->starved_since == 0) {
        lane->starved_since = now;
        if (!stopped) {
            return;
        }
    }
    if (lane->nudge_wait_ms == 0) {
        lane->nudge_wait_ms = lane_starved_ms(lane);
    }
    if (!stopped && (now - lane->starved_since < lane_starved_ms(lane) ||
                     now - lane->last_nudge_ms < lane->nudge_wait_ms)) {
        return;
    }
    lane->queue_was_full = false;
    rd_kafka_topic_partition_list_t *list = NULL;
    for (size_t i = 0; i < lane->n_parts; i++) {
        sl_part_t *p = lane->parts[i];
        int64_t next = sl_wm_next(&p->wm);
        int64_t lo = -1, hi = -1;
        if (p->state != SL_PART_ACTIVE || p->paused || next < 0 ||
            rd_kafka_get_watermark_offsets(lane->rk, p->topic, p->partition, &lo, &hi) != 0 ||
            hi <= next) {
            continue;
        }
        if (list == NULL) {
            list = rd_kafka_topic_partition_list_new((int)lane->n_parts);
        }
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = next;
    }
    lane->last_nudge_ms = now;
    if (list == NULL) {
        return;
    }
    lane->nudge_wait_ms = SL_MIN(lane->nudge_wait_ms * 2, LANE_NUDGE_MAX_MS);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(lane->rk, list, 0 /* async */);
    if (e != NULL) {
        rd_kafka_error_destroy(e);
    }
    lane->nudged = true;
    SL_M_ADD(&lane->m, fetch_nudges, 1);
    rd_kafka_topic_partition_list_destroy(list);
}

/* ---- the loop ------------------------------------------------------------- */

static bool lane_blocked(const sl_lane_t *lane)
{
    return lane->cur != NULL || lane->n_dlq_wait > 0 || lane->n_retries > 0 ||
           lane->in_flight >= lane->max_in_flight;
}

static void *lane_main(void *arg)
{
    sl_lane_t *lane = arg;
    bool paused = false;
    int64_t blocked_since = 0; /* blocked with no acknowledgement since */
    uint64_t acks_seen = 0;
    while (!lane->quit) {
        lane_drain_wake(lane);
        lane_run_posts(lane);
        int64_t now = sl_now_ms();
        if (lane->n_retries > 0) {
            lane_run_retries(lane, now);
        }
        if (lane->n_dlq_wait > 0) {
            lane_run_dlq_wait(lane);
        }
        lane_submit_current(lane);
        lane_agg_tick(lane, now);
        if (lane->sink->flush != NULL && lane->cur == NULL &&
            (lane->in_flight >= lane->max_in_flight || lane_consumed_to_end(lane))) {
            /* no more records until some are acknowledged (the in-flight
             * budget is used up), or --until-end and nothing more to read:
             * rows a sink holds back for a fuller batch would only wait out
             * its delay */
            lane->sink->flush(lane->sink_ctx);
        }
        if (lane->sink->poll) {
            lane->sink->poll(lane->sink_ctx);
        }
        if (lane->dlq->poll) {
            lane->dlq->poll(lane->dlq_ctx);
        }

        /* Back-pressure. While the sink, the dead-letter path or the
         * in-flight budget is full the lane stops taking messages: its
         * prefetch queue is bounded (queued.max.messages.kbytes), so memory
         * is too. If it stays blocked for pause_after with no acknowledgement
         * at all (a stalled or down sink, not a busy one), the partitions are
         * paused so librdkafka stops fetching (each pause/resume makes
         * librdkafka drop and refetch what it prefetched, so a sink that is
         * merely at its budget while writing never pauses). Resume once
         * unblocked and down to half the in-flight budget. */
        bool blocked = lane_blocked(lane) || lane->stopping;
        if (!blocked) {
            blocked_since = 0;
        } else if (blocked_since == 0 || lane->acks != acks_seen) {
            blocked_since = now; /* blocked, but the sink is making progress: busy, not stalled */
        }
        acks_seen = lane->acks;
        bool want_pause =
            blocked && (lane->stopping || now - blocked_since >= lane->cfg->runtime.pause_after_ms);
        if (want_pause) {
            lane_set_paused(lane, true); /* also catches newly assigned partitions */
            paused = true;
        } else if (!blocked && paused && lane->in_flight <= lane->max_in_flight / 2) {
            lane_set_paused(lane, false);
            paused = false;
        }

        size_t got = 0;
        if (!blocked) {
            got = lane_consume(lane);
            if (got == 0) {
                lane_nudge_fetcher(lane, now);
            } else {
                lane_fed(lane, now);
            }
        } else {
            lane->starved_since = 0;
        }
        if (lane->store_dirty && (sl_now_ms() - lane->last_store_ms >= 20 || lane->stopping)) {
            lane_store_offsets(lane);
        }
        if (lane_agg_commits(lane) && !lane->stopping && lane->revoke_req == NULL &&
            sl_now_ms() - lane->last_commit_ms >= LANE_COMMIT_MS) {
            lane->last_commit_ms = sl_now_ms();
            lane_commit_now(lane); /* auto-commit is off: it would drop the metadata */
        }
        lane_update_at_end(lane);
        lane_check_revoke(lane);
        lane_check_stop(lane);

        bool more = got == (size_t)lane->cfg->runtime.batch_size; /* more is probably queued */
        if (more && !lane->sink->pollfds) {
            continue;
        }
        int timeout = 100;
        if (lane->n_retries > 0) {
            int64_t d = lane_next_retry_ms(lane) - sl_now_ms();
            timeout = (int)SL_MAX(0, SL_MIN(d, 100));
        }
        if (lane->n_dlq_wait > 0 || lane->revoke_req || lane->stop_req || lane->store_dirty) {
            timeout = SL_MIN(timeout, 10);
        }
        if (lane->agg != NULL) {
            int64_t d = sl_agg_next_flush_ms(lane->agg) - sl_now_ms();
            timeout = (int)SL_MAX(0, SL_MIN(d, timeout));
        }
        if (more) {
            timeout = 0; /* only collect the sink's socket events */
        }
        struct pollfd pfd[LANE_MAX_SINK_FDS + 1];
        pfd[0] = (struct pollfd){.fd = lane->wake[0], .events = POLLIN};
        int nfds = 0;
        if (lane->sink->pollfds) {
            nfds = lane->sink->pollfds(lane->sink_ctx, pfd + 1, LANE_MAX_SINK_FDS, &timeout);
            nfds = SL_MAX(0, SL_MIN(nfds, LANE_MAX_SINK_FDS));
        }
        int64_t t0 = timeout > 0 ? sl_now_us() : 0;
        poll(pfd, (nfds_t)nfds + 1, SL_MAX(timeout, 0));
        if (timeout > 0 && !lane->stopping) {
            /* where a lane's idle time goes: the sink (back-pressure) or
             * the source (nothing to consume) */
            uint64_t waited = (uint64_t)(sl_now_us() - t0);
            if (blocked) {
                SL_M_ADD(&lane->m, wait_blocked_us, waited);
            } else if (got == 0) {
                SL_M_ADD(&lane->m, wait_starved_us, waited);
            }
        }
        if (lane->sink->io) {
            lane->sink->io(lane->sink_ctx, pfd + 1, nfds);
        }
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------- */

/* A numeric property of the consumer's configuration (librdkafka's
 * defaults, or ours from sources/kafka.c, or the user's). */
static int64_t lane_conf_int(rd_kafka_t *rk, const char *name, int64_t dflt)
{
    char v[32];
    size_t n = sizeof(v);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), name, v, &n) != RD_KAFKA_CONF_OK) {
        return dflt;
    }
    return strtoll(v, NULL, 10);
}

sl_lane_t *sl_lane_create(sl_pipeline_t *pl, int id, char *err)
{
    sl_lane_t *lane = sl_xcalloc(1, sizeof(*lane));
    const sl_config_t *cfg = sl_pipeline_config(pl);
    lane->pl = pl;
    lane->cfg = cfg;
    lane->max_in_flight = sl_pipeline_max_in_flight(pl);
    lane->id = id;
    lane->rk = sl_pipeline_consumer(pl);
    snprintf(lane->name, sizeof(lane->name), "lane%d", id);
    pthread_mutex_init(&lane->mu, NULL);
    lane->wake[0] = lane->wake[1] = -1;
    if (pipe2(lane->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, 256, "pipe: %s", strerror(errno));
        goto fail;
    }
    lane->q = rd_kafka_queue_new(lane->rk);
    lane->fetch_stop_msgs = lane_conf_int(lane->rk, "queued.min.messages", 100000);
    lane->fetch_stop_bytes = lane_conf_int(lane->rk, "queued.max.messages.kbytes", 65536) * 1024;
    /* librdkafka writes a byte to the pipe when the queue turns non-empty */
    rd_kafka_queue_io_event_enable(lane->q, lane->wake[1], "q", 1);
    lane->msgbuf = sl_xmalloc((size_t)cfg->runtime.batch_size * sizeof(*lane->msgbuf));
    lane->cur_idx = sl_xmalloc((size_t)cfg->runtime.batch_size * sizeof(*lane->cur_idx));
    lane->limits.max_bytes = (size_t)cfg->decode.max_bytes;
    lane->limits.max_depth = (int)cfg->decode.max_depth;
    atomic_init(&lane->active_parts, 0);
    atomic_init(&lane->at_end, true);

    lane->sink = cfg->sink;
    if (cfg->dedup != NULL) {
        lane->dedup = sl_dedup_create(cfg->dedup);
    }
    if (cfg->agg != NULL) {
        lane->agg = sl_agg_create(cfg->agg, &cfg->record);
    }
    lane->sink_env = (sl_plugin_env_t){lane, cfg->out, cfg->sink_name, id};
    if (lane->sink->open(&lane->sink_ctx, sl_pipeline_sink_shared(pl), &lane->sink_env, err) != 0) {
        goto fail;
    }
    lane->dlq = cfg->dlq;
    lane->dlq_env = (sl_plugin_env_t){lane, &cfg->record, cfg->dlq_name, id};
    if (lane->dlq->open(&lane->dlq_ctx, sl_pipeline_dlq_shared(pl), &lane->dlq_env, err) != 0) {
        goto fail;
    }
    return lane;
fail:
    sl_lane_destroy(lane);
    return NULL;
}

int sl_lane_start(sl_lane_t *lane)
{
    if (pthread_create(&lane->thr, NULL, lane_main, lane) != 0) {
        return -1;
    }
    lane->started = true;
    return 0;
}

void sl_lane_destroy(sl_lane_t *lane)
{
    if (lane == NULL) {
        return;
    }
    sl_lane_join(lane);
    sl_lane_close_plugins(lane);
    lane_run_posts(lane); /* completions posted while closing */
    /* batches still held (shutdown timeout passed) are released with their
     * messages so librdkafka can be destroyed cleanly */
    for (size_t i = 0; i < lane->n_retries; i++) {
        rec_done(lane->retries[i].batch, lane->retries[i].idx);
    }
    for (size_t i = 0; i < lane->n_dlq_wait; i++) {
        rec_done(lane->dlq_wait[i].batch, lane->dlq_wait[i].idx);
    }
    if (lane->cur) {
        for (size_t r = lane->cur_off; r < lane->cur_n; r++) {
            rec_done(lane->cur, lane->cur_idx[r]);
        }
        batch_release(lane->cur);
    }
    if (lane->agg_out) {
        for (size_t r = lane->agg_off; r < lane->agg_out->n; r++) {
            rec_done(lane->agg_out, (uint32_t)r);
        }
        batch_release(lane->agg_out);
    }
    if (lane->q) {
        rd_kafka_queue_destroy(lane->q);
    }
    for (size_t i = 0; i < lane->n_parts; i++) {
        sl_wm_free(&lane->parts[i]->wm);
        free(lane->parts[i]->topic);
        free(lane->parts[i]);
    }
    free(lane->parts);
    free(lane->posts);
    free(lane->running);
    free(lane->retries);
    free(lane->dlq_wait);
    free(lane->msgbuf);
    free(lane->cur_idx);
    if (lane->wake[0] >= 0) {
        close(lane->wake[0]);
        close(lane->wake[1]);
    }
    pthread_mutex_destroy(&lane->mu);
    sl_dedup_destroy(lane->dedup);
    sl_agg_destroy(lane->agg);
    free(lane->agg_idx);
    free(lane->agg_high);
    free(lane);
}

void sl_lane_close_plugins(sl_lane_t *lane)
{
    if (lane->sink_ctx) {
        lane->sink->close(lane->sink_ctx);
        lane->sink_ctx = NULL;
    }
    if (lane->dlq_ctx) {
        lane->dlq->close(lane->dlq_ctx);
        lane->dlq_ctx = NULL;
    }
}

rd_kafka_queue_t *sl_lane_queue(sl_lane_t *lane)
{
    return lane->q;
}

sl_lane_metrics_t *sl_lane_metrics(sl_lane_t *lane)
{
    return &lane->m;
}

bool sl_lane_at_end(sl_lane_t *lane)
{
    return atomic_load(&lane->at_end);
}

int sl_lane_active_parts(sl_lane_t *lane)
{
    return atomic_load(&lane->active_parts);
}
