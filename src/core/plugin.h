/* The plugin interfaces: sinks and dead-letter paths are const structs of
 * typed hooks with an option table, listed in one registry (registry.c).
 *
 * Threads: init/fini run once on the main thread; open/submit/poll/flush/close
 * run on one lane thread per instance (a lane owns its instances, so hooks
 * need no locks). A sink reports each record's result with sl_batch_result()
 * on its lane thread, or from another thread by sl_lane_post()ing a closure
 * that calls it. */
#ifndef SL_CORE_PLUGIN_H
#define SL_CORE_PLUGIN_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/batch.h"
#include "core/schema.h"

typedef struct sl_lane sl_lane_t;

/* What the core gives an instance: its lane, the schema, its name for logs
 * ("sink.stdout"), and the lane number. */
typedef struct sl_plugin_env {
    sl_lane_t *lane;
    const sl_schema_t *schema;
    const char *name;
    int lane_id;
} sl_plugin_env_t;

/* Pipeline-wide facts an init hook may need (e.g. the DLQ's default brokers). */
typedef struct sl_pipeline_info {
    const char *source_brokers;
    const char *source_group;
    const sl_schema_t *schema;
    const char *config_path;    /* for "file:line:" in errors */
    const sl_node_t *sink_node; /* the sink's option map (lines for errors), or NULL */
    int aggregate; /* the sink gets aggregate flush rows: 0 no, 1 delta, 2 absolute mode */
} sl_pipeline_info_t;

typedef struct sl_sink_plugin {
    const char *name;
    const sl_option_table_t *options;
    size_t opts_size; /* size of the struct the option table fills */
    /* Once per pipeline: *shared gets state all lanes' instances share. Returns
     * 0, or -1 with a message (telling the user what to do) in err[256]. */
    int (*init)(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err);
    /* Once per lane. Returns 0 or -1 with err set. */
    int (*open)(void **ctx, void *shared, const sl_plugin_env_t *env, char *err);
    /* For `sluice check`: what init checks against the server (e.g. the
     * table's column types), changing nothing. Returns 0, -1 with err (a
     * problem), or 1 with err when the server cannot be reached (a warning:
     * init checks again at start). May be NULL. */
    int (*check)(const void *opts, const sl_pipeline_info_t *info, char *err);
    /* Offers records idx[0..n) of batch; returns how many it took (a prefix).
     * It must report exactly one result per taken record, later or now.
     * Taking fewer than n means "full": the lane pauses its partitions and
     * offers the rest again after the sink calls sl_lane_wake() or on poll. */
    size_t (*submit)(void *ctx, sl_batch_t *batch, const uint32_t *idx, size_t n);
    /* Drives I/O and timers; called on every lane loop iteration. May be NULL. */
    void (*poll)(void *ctx);
    /* Pushes out anything buffered: at shutdown and revoke, at the end of
     * the input (--until-end), and while the lane can offer no more records
     * until some are acknowledged (its in-flight budget is used up). May be
     * NULL. */
    void (*flush)(void *ctx);
    /* Sockets the lane's loop should sleep on besides its own wake-up pipe
     * (a sink that owns connections, like cassandra). Fills at most max
     * entries and returns how many; lowers *timeout_ms to its next timer.
     * Called right before the lane sleeps. May be NULL. */
    int (*pollfds)(void *ctx, struct pollfd *fds, int max, int *timeout_ms);
    /* Called right after the lane's poll() returns with the entries pollfds
     * filled and their revents (also after a timeout). May be NULL. */
    void (*io)(void *ctx, const struct pollfd *fds, int n);
    /* Exactly-once sinks, which store the Kafka offsets with the data: fills
     * next[i] with the offset stored for partition (topics[i],
     * partitions[i]), or -1 for none. Called on assignment (main thread):
     * Sluice consumes from the Kafka committed offset (or next[i] when
     * Kafka has none) and skips records below next[i] that would be
     * written (they were). Returns 0, or -1 with err[256]. May be NULL. */
    int (*stored_offsets)(void *shared, const char *const *topics, const int32_t *partitions,
                          int64_t *next, size_t n, char *err);
    /* Records per lane the sink needs in flight to keep its writer busy
     * (postgres: three transactions of max_rows: one running, one waiting,
     * one filling). The lane's default budget (runtime.max_in_flight 0)
     * grows to it. After init; may be NULL (nothing beyond the default). */
    int64_t (*in_flight_need)(const void *shared);
    /* For /readyz: can the sink take writes now? NULL means always. Any thread. */
    bool (*ready)(void *shared);
    /* Appends the sink's own Prometheus metrics (HELP/TYPE lines included) to
     * out, from shared state. Any thread (the /metrics thread). May be NULL. */
    void (*metrics)(void *shared, sl_buf_t *out);
    void (*close)(void *ctx);
    void (*fini)(void *shared);
} sl_sink_plugin_t;

typedef struct sl_dlq_plugin {
    const char *name;
    const sl_option_table_t *options;
    size_t opts_size;
    int (*init)(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err);
    int (*open)(void **ctx, void *shared, const sl_plugin_env_t *env, char *err);
    /* Sends record idx of batch with its reason to the dead-letter path.
     * Returns 0 if taken (a result follows via sl_batch_dlq_result()), or 1 if
     * full now (offer again later). */
    int (*submit)(void *ctx, sl_batch_t *batch, uint32_t idx, const char *reason);
    void (*poll)(void *ctx);
    void (*flush)(void *ctx);
    bool (*ready)(void *shared);
    void (*close)(void *ctx);
    void (*fini)(void *shared);
} sl_dlq_plugin_t;

/* The registry (registry.c): look plugins up by their config key. */
const sl_sink_plugin_t *sl_registry_sink(const char *name);
const sl_dlq_plugin_t *sl_registry_dlq(const char *name);
/* Adds a sink found by sl_registry_sink() after the built-in ones (for test
 * binaries that inject faults; at most 4). Call before loading a config. */
void sl_registry_add_sink(const sl_sink_plugin_t *sink);
/* NULL-terminated lists of the built-in plugins, for docs and error messages. */
extern const sl_sink_plugin_t *const sl_sink_plugins[];
extern const sl_dlq_plugin_t *const sl_dlq_plugins[];

/* Runs fn(arg) on the lane's thread soon. Thread-safe; for completions that
 * happen on other threads (writer threads, librdkafka callbacks). */
void sl_lane_post(sl_lane_t *lane, void (*fn)(sl_lane_t *lane, void *arg), void *arg);
/* Wakes the lane's loop (e.g. a full sink has room again). Thread-safe. */
void sl_lane_wake(sl_lane_t *lane);

#endif
