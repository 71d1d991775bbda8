/* Per-lane counters, written by the lane with relaxed atomics and summed
 * when /metrics is scraped. */
#ifndef SL_CORE_METRICS_H
#define SL_CORE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "util/buf.h"

/* Batch latency buckets (seconds): consume to last result. */
#define SL_LAT_BUCKETS 12
extern const double sl_lat_bounds[SL_LAT_BUCKETS];

typedef struct sl_lane_metrics {
    atomic_uint_fast64_t records_in;      /* messages consumed */
    atomic_uint_fast64_t valid;           /* decoded and validated */
    atomic_uint_fast64_t invalid;         /* rejected by decode/validate or a transform step */
    atomic_uint_fast64_t filtered;        /* dropped by the filter (done, not dead-lettered) */
    atomic_uint_fast64_t duplicates;      /* dropped by dedup (done, not written) */
    atomic_uint_fast64_t aggregated;      /* folded into aggregate groups (done) */
    atomic_uint_fast64_t late;            /* late for their window (dead-lettered or dropped) */
    atomic_uint_fast64_t agg_flushes;     /* aggregate flushes with rows */
    atomic_uint_fast64_t agg_replayed;    /* replayed records skipped: written before a restart */
    atomic_int_fast64_t agg_keys;         /* aggregate groups held */
    atomic_uint_fast64_t sink_rejected;   /* rejected by the sink (-> dead letter) */
    atomic_uint_fast64_t dead_lettered;   /* acknowledged by the dead-letter path */
    atomic_uint_fast64_t out;             /* acknowledged by the sink */
    atomic_uint_fast64_t sink_retries;    /* records offered to the sink again */
    atomic_uint_fast64_t dlq_retries;     /* dead-letter sends retried */
    atomic_uint_fast64_t stale_dropped;   /* messages of revoked partitions / re-fetched offsets */
    atomic_uint_fast64_t kafka_errors;    /* consumer errors seen by the lane */
    atomic_int_fast64_t in_flight;        /* records consumed and not done */
    atomic_int_fast64_t sink_in_flight;   /* records held by the sink */
    atomic_int_fast64_t paused_parts;     /* partitions paused by back-pressure */
    atomic_uint_fast64_t pauses;          /* times the lane paused */
    atomic_uint_fast64_t fetch_nudges;    /* seeks to wake librdkafka's fetcher */
    atomic_uint_fast64_t wait_blocked_us; /* waited with the sink or the budget full */
    atomic_uint_fast64_t wait_starved_us; /* waited for messages, none there */
    atomic_uint_fast64_t lat_buckets[SL_LAT_BUCKETS + 1]; /* last: +Inf */
    atomic_uint_fast64_t lat_sum_us;
    atomic_int_fast64_t first_record_us; /* monotonic time of the first record (0: none) */
    atomic_int_fast64_t last_record_us;  /* monotonic time of the last acknowledgement */
    atomic_uint_fast64_t lat_count;
} sl_lane_metrics_t;

#define SL_M_ADD(m, field, v) atomic_fetch_add_explicit(&(m)->field, (v), memory_order_relaxed)
#define SL_M_GET(m, field) atomic_load_explicit(&(m)->field, memory_order_relaxed)

/* Records one batch latency observation. */
void sl_metrics_observe_latency(sl_lane_metrics_t *m, int64_t us);

/* Prometheus text helpers. */
void sl_prom_header(sl_buf_t *out, const char *name, const char *type, const char *help);

#endif
