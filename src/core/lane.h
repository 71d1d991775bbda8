/* Lanes: worker threads that each own a set of Kafka partitions (their queues
 * are forwarded to the lane's queue), run decode -> validate -> sink for their
 * records, own their sink and dead-letter instances, and track each
 * partition's done-watermark. No locks on the hot path: the main thread talks
 * to a lane only through posted closures. */
#ifndef SL_CORE_LANE_H
#define SL_CORE_LANE_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/metrics.h"
#include "core/plugin.h"
#include "core/watermark.h"

typedef struct sl_pipeline sl_pipeline_t;

typedef enum { SL_PART_IDLE = 0, SL_PART_ACTIVE, SL_PART_DRAINING } sl_part_state_t;

/* A partition as one lane tracks it. Lives as long as the lane. */
typedef struct sl_part {
    char *topic; /* owned */
    int32_t partition;
    sl_part_state_t state;
    uint32_t gen;  /* bumped on every revoke: results for older records are ignored */
    uint32_t slot; /* index in the lane's partitions (aggregation pins by it) */
    sl_wm_t wm;
    int64_t stored;     /* last offset handed to rd_kafka_offsets_store(), -1 none */
    int64_t end;        /* --until-end target, -1 unknown */
    int64_t skip_below; /* exactly-once sink: written below this offset (-1: none) */
    bool paused;
} sl_part_t;

/* One partition in an assign/revoke request; the lane fills offset on revoke
 * (the committable watermark, or -1 if nothing was consumed). */
typedef struct sl_part_req {
    const char *topic;
    int32_t partition;
    int64_t end;    /* assign: --until-end target or -1 */
    int64_t offset; /* revoke: out */
    /* assign: in, revoke: out: the committed offset's metadata (aggregate
     * absolute mode; "" otherwise) */
    char meta[96];
    /* assign: records below this offset were written by an exactly-once
     * sink: skip those that would be written again (-1: none) */
    int64_t skip_below;
    int64_t committed; /* assign: the Kafka committed offset read for it (-1: none/unknown) */
} sl_part_req_t;

/* A request from the main thread that the lane completes asynchronously;
 * the main thread waits with sl_lane_req_wait(). */
typedef struct sl_lane_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int remaining; /* lanes that have not finished */
    sl_part_req_t *parts;
    size_t n;
    bool lost;           /* revoke: assignment lost, don't wait for results */
    int64_t deadline_ms; /* revoke/stop: give up waiting for results then */
} sl_lane_req_t;

sl_lane_t *sl_lane_create(sl_pipeline_t *pl, int id, char *err);
void sl_lane_destroy(sl_lane_t *lane);
int sl_lane_start(sl_lane_t *lane);
/* The queue partition queues are forwarded to (borrowed). */
rd_kafka_queue_t *sl_lane_queue(sl_lane_t *lane);
sl_lane_metrics_t *sl_lane_metrics(sl_lane_t *lane);

void sl_lane_req_init(sl_lane_req_t *req, int lanes, sl_part_req_t *parts, size_t n);
void sl_lane_req_destroy(sl_lane_req_t *req);
/* Waits until every lane finished the request. */
void sl_lane_req_wait(sl_lane_req_t *req);

/* Main thread -> lane requests; each lane handles the entries of parts it
 * owns (assign: those the main thread forwarded to it). */
void sl_lane_assign(sl_lane_t *lane, sl_lane_req_t *req);
void sl_lane_revoke(sl_lane_t *lane, sl_lane_req_t *req);
/* Stops consuming, flushes, waits for in-flight results until the deadline,
 * stores the final offsets, then completes req and ends the thread. */
void sl_lane_stop(sl_lane_t *lane, sl_lane_req_t *req);
/* Joins the thread (after stop). */
void sl_lane_join(sl_lane_t *lane);

/* True when every active partition reached its --until-end target with
 * nothing in flight. Any thread. */
bool sl_lane_at_end(sl_lane_t *lane);
/* Number of active partitions (any thread). */
int sl_lane_active_parts(sl_lane_t *lane);
/* Closes the lane's sink and dead-letter instances (main thread, after
 * sl_lane_join(), before the plugins' fini). */
void sl_lane_close_plugins(sl_lane_t *lane);

#endif
