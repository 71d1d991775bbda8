/* The Kafka source's configuration: Sluice's consumer defaults, the user's
 * pass-through properties, and the settings Sluice manages itself. */
#include <stdio.h>
#include <string.h>

#include "core/pipeline.h"

/* Properties the user may not set: Sluice depends on their values. */
static const struct {
    const char *name;
    const char *why;
} kafka_managed[] = {
    {"enable.auto.offset.store", "Sluice stores offsets itself, only below the done watermark"},
    {"enable.partition.eof", "Sluice uses partition EOF events to track positions"},
    {"group.id", "set it with 'group'"},
    {"bootstrap.servers", "set it with 'brokers'"},
    {"metadata.broker.list", "set it with 'brokers'"},
};

static const struct {
    const char *name;
    const char *value;
} kafka_defaults[] = {
    {"client.id", "sluice"},
    {"auto.offset.reset", "earliest"},
    {"enable.auto.commit", "true"},
    {"auto.commit.interval.ms", "1000"},
    /* Memory. librdkafka turns every fetched message into an op of ~300
     * bytes (rd_kafka_op_t for a fetched message, 2.0.2) next to its payload
     * in the decompressed batch, and its byte thresholds count payload only:
     * for small events the ops are most of the memory (docs/DESIGN.md, "Back-
     * pressure and memory"). With partition queues forwarded to lane queues,
     * queued.min.messages and queued.max.messages.kbytes bound each lane's
     * prefetch queue in messages and in payload bytes; fetch.max.bytes bounds
     * what one fetch response adds on top (compressed: lz4 small JSON inflates
     * ~4x). librdkafka 2.0.2 re-checks a queue that fell below its threshold
     * only when the broker thread next wakes (up to 1 s): the lanes wake it
     * when starved (lane_nudge_fetcher), so tight thresholds stay fast. */
    {"queued.max.messages.kbytes", "2048"},
    {"queued.min.messages", "20000"},
    {"fetch.max.bytes", "1048576"},
    /* A fetch that holds only caught-up partitions waits up to this long on
     * the broker, and librdkafka sends one fetch at a time per broker: a
     * partition of a lane whose queue was full when the fetch left waits
     * that long too (measured: 0.4-0.5 s stalls at librdkafka's 500 ms). */
    {"fetch.wait.max.ms", "100"},
};

static int kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, const char *file,
                     int line, sl_errors_t *errs)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        sl_errors_add(errs, file, line, 0, "Kafka property '%s': %s", name, err);
        return -1;
    }
    return 0;
}

rd_kafka_conf_t *sl_kafka_consumer_conf(const sl_config_t *cfg, sl_errors_t *errs)
{
    const char *file = cfg->path;
    size_t before = errs->n;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < SL_ARRAY_LEN(kafka_defaults); i++) {
        (void)kafka_set(conf, kafka_defaults[i].name, kafka_defaults[i].value, file, 0, errs);
    }
    const sl_strmap_t *props = &cfg->kafka.properties;
    for (size_t i = 0; i < props->n; i++) {
        bool managed = false;
        for (size_t j = 0; j < SL_ARRAY_LEN(kafka_managed); j++) {
            if (strcmp(props->keys[i], kafka_managed[j].name) == 0) {
                sl_errors_add(errs, file, props->lines ? props->lines[i] : 0, 0,
                              "Kafka property '%s' cannot be set: %s", props->keys[i],
                              kafka_managed[j].why);
                managed = true;
            }
        }
        if (!managed) {
            (void)kafka_set(conf, props->keys[i], props->values[i], file,
                            props->lines ? props->lines[i] : 0, errs);
        }
    }
    (void)kafka_set(conf, "bootstrap.servers", cfg->kafka.brokers, file, 0, errs);
    (void)kafka_set(conf, "group.id", cfg->kafka.group, file, 0, errs);
    (void)kafka_set(conf, "enable.auto.offset.store", "false", file, 0, errs);
    (void)kafka_set(conf, "enable.partition.eof", "true", file, 0, errs);
    if (cfg->agg != NULL && cfg->agg->mode == SL_AGG_ABSOLUTE) {
        /* the lanes commit with metadata (stages/aggregate.h): librdkafka
         * 2.0's auto-commit would commit the offsets without it */
        (void)kafka_set(conf, "enable.auto.commit", "false", file, 0, errs);
    }
    if (errs->n != before) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}
