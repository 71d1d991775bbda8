/* A pipeline: one config file's source, schema, sink and dead-letter path,
 * run by a Kafka consumer and a set of lanes. */
#ifndef SL_CORE_PIPELINE_H
#define SL_CORE_PIPELINE_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/plugin.h"
#include "core/schema.h"
#include "stages/aggregate.h"
#include "stages/dedup.h"
#include "stages/stages.h"

typedef struct sl_kafka_opts {
    char *brokers;
    sl_strlist_t topics;
    char *group;
    sl_strmap_t properties;
} sl_kafka_opts_t;

typedef struct sl_decode_opts {
    int format; /* 0: json */
    int64_t max_bytes;
    int64_t max_depth;
    int unknown_fields; /* sl_unknown_policy_t */
} sl_decode_opts_t;

typedef struct sl_runtime_opts {
    int64_t lanes;
    int64_t batch_size;
    int64_t max_in_flight;
    int64_t pause_after_ms;
    int64_t shutdown_timeout_ms;
    int64_t revoke_timeout_ms;
    int64_t retry_backoff_ms;
    int64_t retry_backoff_max_ms;
    int log_level;
} sl_runtime_opts_t;

typedef struct sl_metrics_opts {
    char *listen; /* host:port or NULL */
} sl_metrics_opts_t;

typedef struct sl_config {
    sl_doc_t *doc;
    char *path;
    sl_kafka_opts_t kafka;
    sl_decode_opts_t decode;
    sl_schema_t schema;     /* the input: decoded and validated */
    sl_schema_t record;     /* what stages and the sink see: schema after transform */
    sl_stages_t *stages;    /* transform + filter, NULL: none */
    sl_dedup_conf_t *dedup; /* NULL: none */
    sl_agg_conf_t *agg;     /* NULL: none */
    const sl_schema_t *out; /* what the sink sees: &record, or the aggregate's rows */
    const sl_sink_plugin_t *sink;
    void *sink_opts;
    const sl_node_t *sink_node; /* the sink's option map, in doc */
    char sink_name[48];         /* "sink.stdout" */
    const sl_dlq_plugin_t *dlq;
    void *dlq_opts;
    char dlq_name[48];
    sl_metrics_opts_t metrics;
    sl_runtime_opts_t runtime;
} sl_config_t;

/* Loads and checks a config file, including the Kafka properties (through
 * rd_kafka_conf_set). Every problem is added to errs with file:line.
 * Returns 0, or -1 (cfg is then safe to sl_config_free()). */
int sl_config_load(const char *path, sl_config_t *cfg, sl_errors_t *errs) SL_WUR;
void sl_config_free(sl_config_t *cfg);
/* Writes docs/CONFIG.md's content (every section's option table). */
void sl_config_doc(sl_buf_t *out);

/* Builds the consumer configuration from cfg (Sluice's defaults, then the
 * user's properties). Returns NULL with errors added (file:line of the
 * property). Gives ownership. */
rd_kafka_conf_t *sl_kafka_consumer_conf(const sl_config_t *cfg, sl_errors_t *errs);

typedef struct sl_pipeline sl_pipeline_t;

typedef struct sl_run_opts {
    bool until_end; /* exit once every assigned partition reached its start-time end */
} sl_run_opts_t;

/* Runs the pipeline until SIGTERM/SIGINT (or --until-end). Returns the exit
 * code: 0 after a clean drain, 1 on a fatal error (logged). */
int sl_pipeline_run(const sl_config_t *cfg, const sl_run_opts_t *opts);

/* For lanes and plugins. */
const sl_config_t *sl_pipeline_config(const sl_pipeline_t *pl);
rd_kafka_t *sl_pipeline_consumer(const sl_pipeline_t *pl);
/* Each lane's in-flight budget: runtime.max_in_flight, or when that is 0,
 * 20000 or the sink's need (in_flight_need) if more. */
int64_t sl_pipeline_max_in_flight(const sl_pipeline_t *pl);
void *sl_pipeline_sink_shared(const sl_pipeline_t *pl);
void *sl_pipeline_dlq_shared(const sl_pipeline_t *pl);
/* Which lane owns a partition (stable for the pipeline's lifetime). */
int sl_pipeline_lane_of(const sl_pipeline_t *pl, const char *topic, int32_t partition);

#endif
