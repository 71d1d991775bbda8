/* The pipeline runtime: the consumer, its rebalance handling (forwarding each
 * partition's queue to its lane, draining and committing on revoke), the
 * --until-end check, signals and the drain on shutdown. */
#include "core/pipeline.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/http.h"
#include "core/lane.h"
#include "util/log.h"

/* A partition as the main thread sees it: for metrics and --until-end. */
typedef struct pl_part {
    char *topic;
    int32_t partition;
    int64_t end;       /* high watermark when the run started (-1 unknown) */
    int64_t committed; /* last successfully committed offset (-1 none) */
    bool assigned;
} pl_part_t;

struct sl_pipeline {
    const sl_config_t *cfg;
    sl_run_opts_t opts;
    rd_kafka_t *rk;
    sl_lane_t **lanes;
    int n_lanes;
    void *sink_shared;
    void *dlq_shared;
    pthread_mutex_t mu; /* guards parts (the HTTP thread reads them) */
    pl_part_t *parts;
    size_t n_parts, cap_parts;
    atomic_int assigned;
    atomic_bool ever_assigned;
    atomic_bool stopping;
    bool fatal;
    sl_http_t *http;
    int64_t start_ms;
    int64_t max_in_flight; /* per lane */
};

static volatile sig_atomic_t pl_signal;

/* The first SIGTERM/SIGINT starts the drain; a second one exits at once
 * (nothing is committed past what was acknowledged, so a restart redelivers
 * what was in flight). */
static void pl_on_signal(int sig)
{
    if (pl_signal) {
        static const char msg[] = "sluice: second signal: exiting without draining; records in "
                                  "flight will be consumed again after restart\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        _exit(130);
    }
    pl_signal = sig;
}

const sl_config_t *sl_pipeline_config(const sl_pipeline_t *pl)
{
    return pl->cfg;
}

rd_kafka_t *sl_pipeline_consumer(const sl_pipeline_t *pl)
{
    return pl->rk;
}

int64_t sl_pipeline_max_in_flight(const sl_pipeline_t *pl)
{
    return pl->max_in_flight;
}

/* The lanes' in-flight budget (after the sink's init): the user's, or the
 * default raised to what the sink needs. */
static void pl_set_budget(sl_pipeline_t *pl)
{
    const sl_config_t *cfg = pl->cfg;
    int64_t need = cfg->sink->in_flight_need ? cfg->sink->in_flight_need(pl->sink_shared) : 0;
    pl->max_in_flight = cfg->runtime.max_in_flight;
    if (pl->max_in_flight == 0) {
        pl->max_in_flight = SL_MAX((int64_t)20000, need);
    } else if (pl->max_in_flight < need) {
        sl_log_warn(cfg->sink_name,
                    "runtime.max_in_flight is below what the sink needs to keep "
                    "its writer busy: it will idle between writes; raise max_in_flight (or set "
                    "0 for automatic), or lower the sink's batch size",
                    "max_in_flight=%lld need=%lld", (long long)pl->max_in_flight, (long long)need);
    }
}

void *sl_pipeline_sink_shared(const sl_pipeline_t *pl)
{
    return pl->sink_shared;
}

void *sl_pipeline_dlq_shared(const sl_pipeline_t *pl)
{
    return pl->dlq_shared;
}

int sl_pipeline_lane_of(const sl_pipeline_t *pl, const char *topic, int32_t partition)
{
    uint32_t h = 2166136261u;
    for (const char *p = topic; *p; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    return (int)((h + (uint32_t)partition) % (uint32_t)pl->n_lanes);
}

/* Returns the main thread's record of a partition, creating it. Caller holds mu. */
static pl_part_t *pl_part(sl_pipeline_t *pl, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < pl->n_parts; i++) {
        if (pl->parts[i].partition == partition && strcmp(pl->parts[i].topic, topic) == 0) {
            return &pl->parts[i];
        }
    }
    if (pl->n_parts == pl->cap_parts) {
        pl->cap_parts = pl->cap_parts ? pl->cap_parts * 2 : 32;
        pl->parts = sl_xrealloc(pl->parts, pl->cap_parts * sizeof(*pl->parts));
    }
    pl_part_t *p = &pl->parts[pl->n_parts++];
    *p = (pl_part_t){sl_xstrdup(topic), partition, -1, -1, false};
    return p;
}

/* --until-end: the end offset of every partition of the subscribed topics as
 * the run starts. */
static int pl_query_ends(sl_pipeline_t *pl)
{
    for (size_t t = 0; t < pl->cfg->kafka.topics.n; t++) {
        const char *topic = pl->cfg->kafka.topics.items[t];
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(pl->rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(pl->rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err) {
            sl_log_error("pipeline", "cannot read topic metadata for --until-end: check brokers",
                         "topic=%s error=\"%s\"", topic, rd_kafka_err2str(err));
            return -1;
        }
        for (int i = 0; i < md->topic_cnt; i++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[i];
            if (mt->err) {
                /* with --until-end an absent topic would wait forever */
                sl_log_error("pipeline",
                             "--until-end: topic not available: create it or fix source.kafka."
                             "topics",
                             "topic=%s error=\"%s\"", mt->topic, rd_kafka_err2str(mt->err));
                rd_kafka_metadata_destroy(md);
                return -1;
            }
            for (int j = 0; j < mt->partition_cnt; j++) {
                int64_t lo = -1, hi = -1;
                err = rd_kafka_query_watermark_offsets(pl->rk, mt->topic, mt->partitions[j].id, &lo,
                                                       &hi, 10000);
                if (err) {
                    sl_log_error("pipeline", "cannot query end offsets for --until-end",
                                 "topic=%s partition=%d error=\"%s\"", mt->topic,
                                 (int)mt->partitions[j].id, rd_kafka_err2str(err));
                    rd_kafka_metadata_destroy(md);
                    return -1;
                }
                pthread_mutex_lock(&pl->mu);
                pl_part(pl, mt->topic, mt->partitions[j].id)->end = hi;
                pthread_mutex_unlock(&pl->mu);
            }
        }
        rd_kafka_metadata_destroy(md);
    }
    return 0;
}

/* Aggregate absolute mode keeps what a restart needs in the committed
 * offsets' metadata (stages/aggregate.h); the lanes commit it themselves. */
static bool pl_agg_meta(const sl_pipeline_t *pl)
{
    return pl->cfg->agg != NULL && pl->cfg->agg->mode == SL_AGG_ABSOLUTE;
}

/* Reads the committed offsets of parts, and their metadata, into
 * reqs[i].committed and reqs[i].meta. */
static void pl_committed(sl_pipeline_t *pl, const rd_kafka_topic_partition_list_t *parts,
                         sl_part_req_t *reqs)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_resp_err_t err = rd_kafka_committed(pl->rk, l, 10000);
    if (err) {
        sl_log_warn("kafka", "cannot read the committed offsets (and their metadata)",
                    "error=\"%s\"", rd_kafka_err2str(err));
    }
    for (int i = 0; !err && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[i];
        reqs[i].committed = tp->offset >= 0 ? tp->offset : -1;
        if (tp->metadata_size > 0 && tp->metadata_size < sizeof(reqs[i].meta)) {
            memcpy(reqs[i].meta, tp->metadata, tp->metadata_size);
            reqs[i].meta[tp->metadata_size] = '\0';
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* An exactly-once sink's stored offsets: where to start when Kafka has no
 * committed offset, and below which records were written already. The sink
 * must answer: without it, exactly-once cannot be kept, so Sluice retries
 * for revoke_timeout and then stops. */
static void pl_stored_offsets(sl_pipeline_t *pl, rd_kafka_topic_partition_list_t *parts,
                              sl_part_req_t *reqs)
{
    size_t n = (size_t)parts->cnt;
    const char **topics = sl_xcalloc(n + 1, sizeof(char *));
    int32_t *ps = sl_xcalloc(n + 1, sizeof(int32_t));
    int64_t *next = sl_xcalloc(n + 1, sizeof(int64_t));
    for (size_t i = 0; i < n; i++) {
        topics[i] = parts->elems[i].topic;
        ps[i] = parts->elems[i].partition;
    }
    char err[256] = "";
    int64_t deadline = sl_now_ms() + pl->cfg->runtime.revoke_timeout_ms;
    int rc;
    while ((rc = pl->cfg->sink->stored_offsets(pl->sink_shared, topics, ps, next, n, err)) != 0 &&
           sl_now_ms() < deadline && !pl_signal) {
        sl_log_warn(pl->cfg->sink_name, "cannot read the offsets stored with the data: retrying",
                    "error=\"%s\"", err);
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc != 0) {
        sl_log_error(pl->cfg->sink_name,
                     "cannot read the offsets stored with the data: stopping, as exactly-once "
                     "cannot be kept without them (check the sink's server and restart)",
                     "error=\"%s\"", err);
        pl->fatal = true;
        pl_signal = SIGTERM;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        reqs[i].skip_below = next[i];
        if (reqs[i].committed < 0 && next[i] >= 0) {
            parts->elems[i].offset = next[i]; /* Kafka has none: the sink's */
        }
    }
    free(topics);
    free(ps);
    free(next);
}

static void pl_assign(sl_pipeline_t *pl, rd_kafka_topic_partition_list_t *parts, bool coop)
{
    sl_part_req_t *reqs = sl_xcalloc((size_t)parts->cnt + 1, sizeof(*reqs));
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t end = -1;
        pthread_mutex_lock(&pl->mu);
        pl_part_t *pp = pl_part(pl, tp->topic, tp->partition);
        pp->assigned = true;
        if (pl->opts.until_end) {
            if (pp->end < 0) {
                /* a partition that appeared after the start: nothing to wait for */
                pp->end = 0;
            }
            end = pp->end;
        }
        pthread_mutex_unlock(&pl->mu);
        reqs[i] = (sl_part_req_t){tp->topic, tp->partition, end, -1, "", -1, -1};
        /* the partition's messages go to its lane's queue from now on */
        rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(pl->rk, tp->topic, tp->partition);
        int lane = sl_pipeline_lane_of(pl, tp->topic, tp->partition);
        rd_kafka_queue_forward(pq, sl_lane_queue(pl->lanes[lane]));
        rd_kafka_queue_destroy(pq);
    }
    if (pl_agg_meta(pl) || pl->cfg->sink->stored_offsets) {
        pl_committed(pl, parts, reqs);
    }
    if (pl->cfg->sink->stored_offsets) {
        pl_stored_offsets(pl, parts, reqs);
    }
    sl_lane_req_t req;
    sl_lane_req_init(&req, pl->n_lanes, reqs, (size_t)parts->cnt);
    for (int i = 0; i < pl->n_lanes; i++) {
        sl_lane_assign(pl->lanes[i], &req);
    }
    sl_lane_req_wait(&req);
    sl_lane_req_destroy(&req);
    free(reqs);

    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (coop) {
        error = rd_kafka_incremental_assign(pl->rk, parts);
    } else {
        err = rd_kafka_assign(pl->rk, parts);
    }
    if (error || err) {
        sl_log_error("kafka", "assign failed", "error=\"%s\"",
                     error ? rd_kafka_error_string(error) : rd_kafka_err2str(err));
        rd_kafka_error_destroy(error);
    }
    /* a partition paused by an earlier owner-lane stays paused in librdkafka */
    rd_kafka_resume_partitions(pl->rk, parts);
    atomic_fetch_add(&pl->assigned, parts->cnt);
    atomic_store(&pl->ever_assigned, true);
    sl_log_info("kafka", "partitions assigned", "count=%d total=%d", parts->cnt,
                atomic_load(&pl->assigned));
}

static void pl_revoke(sl_pipeline_t *pl, rd_kafka_topic_partition_list_t *parts, bool coop)
{
    bool lost = rd_kafka_assignment_lost(pl->rk);
    sl_part_req_t *reqs = sl_xcalloc((size_t)parts->cnt + 1, sizeof(*reqs));
    for (int i = 0; i < parts->cnt; i++) {
        reqs[i] =
            (sl_part_req_t){parts->elems[i].topic, parts->elems[i].partition, -1, -1, "", -1, -1};
    }
    sl_lane_req_t req;
    sl_lane_req_init(&req, pl->n_lanes, reqs, (size_t)parts->cnt);
    req.lost = lost;
    req.deadline_ms = sl_now_ms() + pl->cfg->runtime.revoke_timeout_ms;
    for (int i = 0; i < pl->n_lanes; i++) {
        sl_lane_revoke(pl->lanes[i], &req);
    }
    sl_lane_req_wait(&req);
    sl_lane_req_destroy(&req);

    /* commit the done watermark of the revoked partitions before they go */
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        if (reqs[i].offset >= 0) {
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_add(commit, reqs[i].topic, reqs[i].partition);
            tp->offset = reqs[i].offset;
            if (reqs[i].meta[0] != '\0') {
                tp->metadata = sl_xstrdup(reqs[i].meta);
                tp->metadata_size = strlen(reqs[i].meta);
            }
        }
    }
    if (!lost && commit->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(pl->rk, commit, 0);
        if (err) {
            sl_log_warn("kafka",
                        "commit on revoke failed: the partitions' next owner may redeliver "
                        "records (at-least-once)",
                        "error=\"%s\"", rd_kafka_err2str(err));
        }
    }
    rd_kafka_topic_partition_list_destroy(commit);
    free(reqs);

    if (coop) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(pl->rk, parts);
        rd_kafka_error_destroy(error);
    } else {
        rd_kafka_assign(pl->rk, NULL);
    }
    pthread_mutex_lock(&pl->mu);
    for (int i = 0; i < parts->cnt; i++) {
        pl_part(pl, parts->elems[i].topic, parts->elems[i].partition)->assigned = false;
    }
    pthread_mutex_unlock(&pl->mu);
    atomic_fetch_sub(&pl->assigned, parts->cnt);
    sl_log_info("kafka", lost ? "partitions lost" : "partitions revoked", "count=%d", parts->cnt);
}

static void pl_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    sl_pipeline_t *pl = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pl_assign(pl, parts, coop);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        pl_revoke(pl, parts, coop);
    } else {
        sl_log_error("kafka", "rebalance failed", "error=\"%s\"", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
}

static void pl_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    sl_pipeline_t *pl = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) {
        return;
    }
    if (err) {
        sl_log_warn("kafka", "offset commit failed (retried with the next commit)", "error=\"%s\"",
                    rd_kafka_err2str(err));
    }
    pthread_mutex_lock(&pl->mu);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        if (tp->err == 0 && tp->offset >= 0) {
            pl_part(pl, tp->topic, tp->partition)->committed = tp->offset;
        }
    }
    pthread_mutex_unlock(&pl->mu);
}

static void pl_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    sl_pipeline_t *pl = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        sl_log_error("kafka", "fatal consumer error: stopping", "error=\"%s\"", buf);
        pl->fatal = true;
        return;
    }
    sl_log_warn("kafka", "consumer error (librdkafka retries)", "error=\"%s\" reason=\"%s\"",
                rd_kafka_err2str((rd_kafka_resp_err_t)err), reason);
}

static void pl_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    sl_log(level <= 3   ? SL_LOG_ERROR
           : level <= 5 ? SL_LOG_WARN
                        : SL_LOG_DEBUG,
           "librdkafka", buf, "facility=%s", fac);
}

/* ---- metrics -------------------------------------------------------------- */

static int64_t pl_total(sl_pipeline_t *pl, size_t off)
{
    int64_t sum = 0;
    for (int i = 0; i < pl->n_lanes; i++) {
        sum += (int64_t)atomic_load_explicit(
            (atomic_int_fast64_t *)((char *)sl_lane_metrics(pl->lanes[i]) + off),
            memory_order_relaxed);
    }
    return sum;
}

static void pl_sum(sl_pipeline_t *pl, size_t off, sl_buf_t *out, const char *name, const char *type,
                   const char *help, const char *labels)
{
    sl_prom_header(out, name, type, help);
    sl_buf_printf(out, "%s%s %lld\n", name, labels ? labels : "", (long long)pl_total(pl, off));
}

#define PL_SUM(field, name, type, help, labels)                                                    \
    pl_sum(pl, offsetof(sl_lane_metrics_t, field), out, name, type, help, labels)

/* A microsecond counter, exported in seconds. */
#define PL_SECONDS(field, name, help)                                                              \
    do {                                                                                           \
        sl_prom_header(out, name, "counter", help);                                                \
        sl_buf_printf(out, "%s %.6f\n", name,                                                      \
                      (double)pl_total(pl, offsetof(sl_lane_metrics_t, field)) / 1e6);             \
    } while (0)

static void pl_render_metrics(void *ctx, sl_buf_t *out)
{
    sl_pipeline_t *pl = ctx;
    char sink_label[96];
    snprintf(sink_label, sizeof(sink_label), "{sink=\"%s\"}", pl->cfg->sink->name);
    PL_SUM(records_in, "sluice_records_in_total", "counter", "Messages consumed.", NULL);
    PL_SUM(valid, "sluice_records_valid_total", "counter", "Records decoded and validated.", NULL);
    PL_SUM(invalid, "sluice_records_invalid_total", "counter",
           "Records rejected by decode, validation or a transform step.", NULL);
    PL_SUM(filtered, "sluice_records_filtered_total", "counter",
           "Records the filter dropped (done without a write).", NULL);
    PL_SUM(duplicates, "sluice_records_duplicate_total", "counter",
           "Records dedup dropped: their key was written within its ttl.", NULL);
    if (pl->cfg->agg != NULL) {
        PL_SUM(aggregated, "sluice_records_aggregated_total", "counter",
               "Records folded into aggregate groups.", NULL);
        PL_SUM(late, "sluice_records_late_total", "counter",
               "Records whose aggregate window had closed (dead-lettered or dropped).", NULL);
        PL_SUM(agg_flushes, "sluice_aggregate_flushes_total", "counter",
               "Aggregate flushes that wrote rows.", NULL);
        PL_SUM(agg_keys, "sluice_aggregate_groups", "gauge", "Aggregate groups held in memory.",
               NULL);
    }
    /* absolute aggregation and exactly-once sinks both skip what was written */
    PL_SUM(agg_replayed, "sluice_records_replay_skipped_total", "counter",
           "Records consumed again after a restart and skipped because they were written "
           "already (exactly-once sinks; aggregate absolute mode).",
           NULL);
    PL_SUM(dead_lettered, "sluice_records_dead_lettered_total", "counter",
           "Records acknowledged by the dead-letter path.", NULL);
    PL_SUM(out, "sluice_records_out_total", "counter", "Records acknowledged by the sink.",
           sink_label);
    PL_SUM(sink_rejected, "sluice_sink_rejected_total", "counter",
           "Records the sink rejected permanently (sent to the dead-letter path).", sink_label);
    PL_SUM(sink_retries, "sluice_sink_retries_total", "counter",
           "Records offered to the sink again after a retriable failure.", sink_label);
    PL_SUM(dlq_retries, "sluice_dead_letter_retries_total", "counter", "Dead-letter sends retried.",
           NULL);
    PL_SUM(stale_dropped, "sluice_records_stale_dropped_total", "counter",
           "Messages dropped because their partition was revoked or they were fetched again.",
           NULL);
    PL_SUM(kafka_errors, "sluice_kafka_errors_total", "counter", "Consumer errors.", NULL);
    PL_SUM(in_flight, "sluice_records_in_flight", "gauge",
           "Records consumed and not yet acknowledged.", NULL);
    PL_SUM(sink_in_flight, "sluice_sink_in_flight", "gauge", "Records held by the sink.",
           sink_label);
    PL_SUM(paused_parts, "sluice_partitions_paused", "gauge", "Partitions paused by back-pressure.",
           NULL);
    PL_SUM(pauses, "sluice_pauses_total", "counter", "Times a lane paused its partitions.", NULL);
    PL_SUM(fetch_nudges, "sluice_fetch_nudges_total", "counter",
           "Seeks to the next offset that woke librdkafka's fetcher for a starved lane.", NULL);
    PL_SECONDS(wait_blocked_us, "sluice_lane_blocked_seconds_total",
               "Time lanes waited with the sink, the dead-letter path or the in-flight budget "
               "full (back-pressure: the sink is the bottleneck).");
    PL_SECONDS(wait_starved_us, "sluice_lane_starved_seconds_total",
               "Time lanes waited for messages with none to consume (the source is the "
               "bottleneck, or the pipeline is caught up).");

    sl_prom_header(out, "sluice_batch_latency_seconds", "histogram",
                   "Time from consuming a batch to its last record's acknowledgement.");
    uint64_t cum = 0, sum_us = 0, count = 0;
    for (int b = 0; b <= SL_LAT_BUCKETS; b++) {
        for (int i = 0; i < pl->n_lanes; i++) {
            cum += SL_M_GET(sl_lane_metrics(pl->lanes[i]), lat_buckets[b]);
        }
        if (b < SL_LAT_BUCKETS) {
            sl_buf_printf(out, "sluice_batch_latency_seconds_bucket{le=\"%g\"} %llu\n",
                          sl_lat_bounds[b], (unsigned long long)cum);
        } else {
            sl_buf_printf(out, "sluice_batch_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)cum);
        }
    }
    for (int i = 0; i < pl->n_lanes; i++) {
        sum_us += SL_M_GET(sl_lane_metrics(pl->lanes[i]), lat_sum_us);
        count += SL_M_GET(sl_lane_metrics(pl->lanes[i]), lat_count);
    }
    sl_buf_printf(out, "sluice_batch_latency_seconds_sum %.6f\n", (double)sum_us / 1e6);
    sl_buf_printf(out, "sluice_batch_latency_seconds_count %llu\n", (unsigned long long)count);

    if (pl->cfg->sink->metrics && pl->sink_shared) {
        pl->cfg->sink->metrics(pl->sink_shared, out);
    }

    sl_prom_header(out, "sluice_partition_assigned", "gauge",
                   "1 if the partition is assigned to this instance.");
    pthread_mutex_lock(&pl->mu);
    for (size_t i = 0; i < pl->n_parts; i++) {
        sl_buf_printf(out, "sluice_partition_assigned{topic=\"%s\",partition=\"%d\"} %d\n",
                      pl->parts[i].topic, (int)pl->parts[i].partition, pl->parts[i].assigned);
    }
    sl_prom_header(out, "sluice_partition_committed_offset", "gauge",
                   "Last offset committed by this instance.");
    for (size_t i = 0; i < pl->n_parts; i++) {
        if (pl->parts[i].committed >= 0) {
            sl_buf_printf(out,
                          "sluice_partition_committed_offset{topic=\"%s\",partition=\"%d\"} "
                          "%lld\n",
                          pl->parts[i].topic, (int)pl->parts[i].partition,
                          (long long)pl->parts[i].committed);
        }
    }
    sl_prom_header(out, "sluice_partition_lag", "gauge",
                   "High watermark minus committed offset, for assigned partitions.");
    for (size_t i = 0; i < pl->n_parts; i++) {
        pl_part_t *p = &pl->parts[i];
        int64_t lo = -1, hi = -1;
        if (!p->assigned ||
            rd_kafka_get_watermark_offsets(pl->rk, p->topic, p->partition, &lo, &hi) != 0 ||
            hi < 0) {
            continue;
        }
        int64_t base = p->committed >= 0 ? p->committed : lo;
        sl_buf_printf(out, "sluice_partition_lag{topic=\"%s\",partition=\"%d\"} %lld\n", p->topic,
                      (int)p->partition, (long long)SL_MAX(0, hi - base));
    }
    pthread_mutex_unlock(&pl->mu);
}

static int pl_ready(void *ctx, sl_buf_t *why)
{
    sl_pipeline_t *pl = ctx;
    if (atomic_load(&pl->stopping)) {
        sl_buf_puts(why, "shutting down\n");
        return 0;
    }
    if (atomic_load(&pl->assigned) <= 0) {
        sl_buf_puts(why, "no partitions assigned\n");
        return 0;
    }
    if (pl->cfg->sink->ready && !pl->cfg->sink->ready(pl->sink_shared)) {
        sl_buf_printf(why, "sink %s not reachable\n", pl->cfg->sink->name);
        return 0;
    }
    if (pl->cfg->dlq->ready && !pl->cfg->dlq->ready(pl->dlq_shared)) {
        sl_buf_printf(why, "dead_letter %s not reachable\n", pl->cfg->dlq->name);
        return 0;
    }
    sl_buf_puts(why, "ready\n");
    return 1;
}

/* ---- run ------------------------------------------------------------------ */

static bool pl_at_end(sl_pipeline_t *pl)
{
    if (!atomic_load(&pl->ever_assigned)) {
        return false;
    }
    for (int i = 0; i < pl->n_lanes; i++) {
        if (!sl_lane_at_end(pl->lanes[i])) {
            return false;
        }
    }
    return true;
}

static void pl_summary(sl_pipeline_t *pl)
{
    uint64_t in = 0, valid = 0, invalid = 0, filtered = 0, dups = 0, dlq = 0, out = 0, agg = 0,
             late = 0, blocked_us = 0, starved_us = 0;
    int64_t first = INT64_MAX, last = 0;
    for (int i = 0; i < pl->n_lanes; i++) {
        sl_lane_metrics_t *m = sl_lane_metrics(pl->lanes[i]);
        int64_t f = SL_M_GET(m, first_record_us), l = SL_M_GET(m, last_record_us);
        if (f > 0) {
            first = SL_MIN(first, f);
            last = SL_MAX(last, l);
        }
        in += SL_M_GET(m, records_in);
        valid += SL_M_GET(m, valid);
        invalid += SL_M_GET(m, invalid);
        filtered += SL_M_GET(m, filtered);
        dups += SL_M_GET(m, duplicates);
        dlq += SL_M_GET(m, dead_lettered);
        out += SL_M_GET(m, out);
        agg += SL_M_GET(m, aggregated);
        late += SL_M_GET(m, late);
        blocked_us += SL_M_GET(m, wait_blocked_us);
        starved_us += SL_M_GET(m, wait_starved_us);
    }
    double secs = (double)(sl_now_ms() - pl->start_ms) / 1000.0;
    /* active: from the first record consumed to the last one acknowledged
     * (leaves out the group join and the idle tail) */
    double active = last > first ? (double)(last - first) / 1e6 : 0.0;
    fprintf(stderr,
            "sluice: summary records=%llu valid=%llu invalid=%llu filtered=%llu duplicates=%llu "
            "aggregated=%llu late=%llu dead_lettered=%llu out=%llu elapsed=%.2fs rate=%.0f/s "
            "active=%.3fs active_rate=%.0f/s lanes_blocked=%.3fs lanes_starved=%.3fs\n",
            (unsigned long long)in, (unsigned long long)valid, (unsigned long long)invalid,
            (unsigned long long)filtered, (unsigned long long)dups, (unsigned long long)agg,
            (unsigned long long)late, (unsigned long long)dlq, (unsigned long long)out, secs,
            secs > 0 ? (double)in / secs : 0.0, active, active > 0 ? (double)in / active : 0.0,
            (double)blocked_us / 1e6, (double)starved_us / 1e6);
}

static void pl_stop_lanes(sl_pipeline_t *pl)
{
    sl_lane_req_t req;
    sl_lane_req_init(&req, pl->n_lanes, NULL, 0);
    req.deadline_ms = sl_now_ms() + pl->cfg->runtime.shutdown_timeout_ms;
    for (int i = 0; i < pl->n_lanes; i++) {
        sl_lane_stop(pl->lanes[i], &req);
    }
    sl_lane_req_wait(&req);
    sl_lane_req_destroy(&req);
}

int sl_pipeline_run(const sl_config_t *cfg, const sl_run_opts_t *opts)
{
    int rc = 1;
    char err[512] = "";
    sl_errors_t errs = {0};
    sl_pipeline_t *pl = sl_xcalloc(1, sizeof(*pl));
    pl->cfg = cfg;
    pl->opts = *opts;
    pl->start_ms = sl_now_ms();
    pthread_mutex_init(&pl->mu, NULL);
    sl_log_set_level((sl_log_level_t)cfg->runtime.log_level);

    pl->n_lanes = (int)cfg->runtime.lanes;
    if (pl->n_lanes == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        pl->n_lanes = (int)SL_MAX(1, SL_MIN(n, 64));
    }

    sl_pipeline_info_t info = {cfg->kafka.brokers, cfg->kafka.group,
                               cfg->out,           cfg->path,
                               cfg->sink_node,     cfg->agg ? 1 + (int)cfg->agg->mode : 0};
    if (cfg->sink->init(&pl->sink_shared, cfg->sink_opts, &info, err) != 0) {
        sl_log_error(cfg->sink_name, err, NULL);
        goto out;
    }
    pl_set_budget(pl);
    if (cfg->dlq->init(&pl->dlq_shared, cfg->dlq_opts, &info, err) != 0) {
        sl_log_error(cfg->dlq_name, err, NULL);
        goto out;
    }
    /* enrich tables from topics are read to their end before records flow */
    if (sl_stages_start(cfg->stages, cfg->kafka.brokers, err) != 0) {
        sl_log_error("transform", err, NULL);
        goto out;
    }

    rd_kafka_conf_t *conf = sl_kafka_consumer_conf(cfg, &errs);
    if (conf == NULL) {
        sl_errors_print(&errs);
        goto out;
    }
    rd_kafka_conf_set_opaque(conf, pl);
    rd_kafka_conf_set_rebalance_cb(conf, pl_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, pl_commit_cb);
    rd_kafka_conf_set_error_cb(conf, pl_error_cb);
    rd_kafka_conf_set_log_cb(conf, pl_log_cb);
    pl->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (pl->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        sl_log_error("kafka", "cannot create the consumer", "error=\"%s\"", err);
        goto out;
    }
    rd_kafka_poll_set_consumer(pl->rk);

    pl->lanes = sl_xcalloc((size_t)pl->n_lanes, sizeof(*pl->lanes));
    for (int i = 0; i < pl->n_lanes; i++) {
        pl->lanes[i] = sl_lane_create(pl, i, err);
        if (pl->lanes[i] == NULL) {
            sl_log_error(cfg->sink_name, err, NULL);
            goto out;
        }
    }
    for (int i = 0; i < pl->n_lanes; i++) {
        if (sl_lane_start(pl->lanes[i]) != 0) {
            sl_log_error("pipeline", "cannot start lane thread", NULL);
            goto out;
        }
    }

    if (opts->until_end && pl_query_ends(pl) != 0) {
        goto out;
    }
    if (cfg->metrics.listen) {
        pl->http = sl_http_start(cfg->metrics.listen, pl_render_metrics, pl_ready, pl, err);
        if (pl->http == NULL) {
            sl_log_error("http", err, NULL);
            goto out;
        }
    }

    rd_kafka_topic_partition_list_t *subs =
        rd_kafka_topic_partition_list_new((int)cfg->kafka.topics.n);
    for (size_t i = 0; i < cfg->kafka.topics.n; i++) {
        rd_kafka_topic_partition_list_add(subs, cfg->kafka.topics.items[i], RD_KAFKA_PARTITION_UA);
    }
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(pl->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (kerr) {
        sl_log_error("kafka", "subscribe failed", "error=\"%s\"", rd_kafka_err2str(kerr));
        goto out;
    }
    sl_log_info("pipeline", "running", "lanes=%d group=%s sink=%s dead_letter=%s", pl->n_lanes,
                cfg->kafka.group, cfg->sink->name, cfg->dlq->name);

    struct sigaction sa = {0};
    sa.sa_handler = pl_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    while (!pl_signal && !pl->fatal) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(pl->rk, 100);
        if (m) {
            /* every partition's queue is forwarded to a lane, so only errors
             * arrive here; a message would mean a partition escaped its lane */
            if (m->err) {
                sl_log_warn("kafka", "consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
            } else {
                sl_log_error("pipeline",
                             "internal error: a message bypassed the lanes; "
                             "stopping without committing past it",
                             "topic=%s partition=%d offset=%lld", rd_kafka_topic_name(m->rkt),
                             (int)m->partition, (long long)m->offset);
                pl->fatal = true;
            }
            rd_kafka_message_destroy(m);
        }
        if (opts->until_end && pl_at_end(pl)) {
            sl_log_info("pipeline", "every assigned partition reached its end offset", NULL);
            break;
        }
    }
    if (pl_signal) {
        sl_log_info("pipeline", "signal received: draining", "signal=%d timeout_ms=%lld",
                    (int)pl_signal, (long long)cfg->runtime.shutdown_timeout_ms);
    }
    atomic_store(&pl->stopping, true);
    pl_stop_lanes(pl);
    /* absolute aggregation: the lanes committed with metadata at stop */
    kerr = pl_agg_meta(pl) ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_commit(pl->rk, NULL, 0);
    if (kerr && kerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        sl_log_warn("kafka", "final commit failed: records may be redelivered after restart",
                    "error=\"%s\"", rd_kafka_err2str(kerr));
    }
    rd_kafka_consumer_close(pl->rk);
    rc = pl->fatal ? 1 : 0;

out:
    sl_http_stop(pl->http);
    for (int i = 0; pl->lanes && i < pl->n_lanes; i++) {
        if (pl->lanes[i]) {
            sl_lane_join(pl->lanes[i]);
            sl_lane_close_plugins(pl->lanes[i]);
        }
    }
    if (pl->dlq_shared) {
        cfg->dlq->fini(pl->dlq_shared);
    }
    if (pl->sink_shared) {
        cfg->sink->fini(pl->sink_shared);
    }
    if (pl->lanes && pl->lanes[0]) {
        pl_summary(pl);
    }
    for (int i = 0; pl->lanes && i < pl->n_lanes; i++) {
        sl_lane_destroy(pl->lanes[i]);
    }
    free(pl->lanes);
    if (pl->rk) {
        rd_kafka_destroy(pl->rk);
    }
    for (size_t i = 0; i < pl->n_parts; i++) {
        free(pl->parts[i].topic);
    }
    free(pl->parts);
    pthread_mutex_destroy(&pl->mu);
    sl_errors_free(&errs);
    free(pl);
    return rc;
}
