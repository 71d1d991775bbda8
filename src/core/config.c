/* Binds a config file's sections to the pipeline's option tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pipeline.h"
#include "util/log.h"

static const char *const decode_formats[] = {"json", NULL};
static const char *const unknown_policies[] = {"ignore", "reject", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static const sl_option_t kafka_options[] = {
    {"brokers", SL_OPT_STRING, offsetof(sl_kafka_opts_t, brokers), NULL, true, 0, 0, NULL,
     "Bootstrap brokers, `host:port[,host:port...]` (librdkafka `bootstrap.servers`)."},
    {"topics", SL_OPT_STRLIST, offsetof(sl_kafka_opts_t, topics), NULL, true, 0, 0, NULL,
     "Topics to consume (a list, or one name)."},
    {"group", SL_OPT_STRING, offsetof(sl_kafka_opts_t, group), NULL, true, 0, 0, NULL,
     "Consumer group id. Instances with the same group share the partitions."},
    {"properties", SL_OPT_STRMAP, offsetof(sl_kafka_opts_t, properties), NULL, false, 0, 0, NULL,
     "Any librdkafka consumer property, passed through (e.g. `session.timeout.ms: 6000`, "
     "`security.protocol`). Sluice's defaults: `auto.offset.reset: earliest`, "
     "`enable.auto.commit: true` with `auto.commit.interval.ms: 1000` (only offsets below the "
     "done watermark are ever stored), per lane `queued.min.messages: 20000` and "
     "`queued.max.messages.kbytes: 2048` (bound prefetch memory: librdkafka keeps ~300 bytes "
     "per message besides its payload), `fetch.max.bytes: 1048576` (bounds what one fetch "
     "response adds; at least one whole batch is always fetched), `fetch.wait.max.ms: 100` "
     "(a long poll of caught-up partitions also delays lagging ones). Raise the first three if "
     "a lane cannot keep up with a distant broker. "
     "`enable.auto.offset.store` and `enable.partition.eof` are managed by Sluice."},
};

static const sl_option_t decode_options[] = {
    {"format", SL_OPT_ENUM, offsetof(sl_decode_opts_t, format), "json", false, 0, 0, decode_formats,
     "Message format."},
    {"max_bytes", SL_OPT_SIZE, offsetof(sl_decode_opts_t, max_bytes), "1MiB", false, 1, 256 << 20,
     NULL, "Larger messages are dead-lettered."},
    {"max_depth", SL_OPT_INT, offsetof(sl_decode_opts_t, max_depth), "32", false, 1, 1000, NULL,
     "Deeper nesting (in fields outside the schema) is dead-lettered."},
    {"unknown_fields", SL_OPT_ENUM, offsetof(sl_decode_opts_t, unknown_fields), "ignore", false, 0,
     0, unknown_policies, "Fields not in the schema: ignore them, or dead-letter the record."},
};

static const sl_option_t runtime_options[] = {
    {"lanes", SL_OPT_INT, offsetof(sl_runtime_opts_t, lanes), "0", false, 0, 64, NULL,
     "Worker threads, each owning a share of the partitions. 0: one per CPU core."},
    {"batch_size", SL_OPT_INT, offsetof(sl_runtime_opts_t, batch_size), "1000", false, 1, 100000,
     NULL, "Messages a lane takes from Kafka at a time."},
    {"max_in_flight", SL_OPT_INT, offsetof(sl_runtime_opts_t, max_in_flight), "0", false, 0,
     10000000, NULL,
     "Records per lane consumed but not yet acknowledged; at this limit the lane stops taking "
     "messages (back-pressure). 0: 20000, or what the sink needs to keep its writer busy when "
     "that is more (sink.postgres: three transactions of `max_rows`)."},
    {"pause_after", SL_OPT_DURATION, offsetof(sl_runtime_opts_t, pause_after_ms), "100ms", false, 0,
     3600000, NULL,
     "How long a lane may stay blocked (sink full or down, retries pending, in-flight budget "
     "used up) with no record acknowledged before it pauses its partitions so librdkafka stops "
     "fetching. A sink that is at its budget but acknowledging records is busy, not stalled: the "
     "lane only stops taking messages from its bounded prefetch queue. Each pause/resume makes "
     "librdkafka drop and refetch what it had prefetched (0ms pauses at every block: lowest "
     "memory behind a stalled sink, but a busy sink then runs far below its speed)."},
    {"shutdown_timeout", SL_OPT_DURATION, offsetof(sl_runtime_opts_t, shutdown_timeout_ms), "30s",
     false, 0, 86400000, NULL,
     "On SIGTERM/SIGINT: how long to wait for in-flight records before committing and exiting."},
    {"revoke_timeout", SL_OPT_DURATION, offsetof(sl_runtime_opts_t, revoke_timeout_ms), "10s",
     false, 0, 3600000, NULL,
     "On partition revoke: how long to wait for the partitions' in-flight records."},
    {"retry_backoff", SL_OPT_DURATION, offsetof(sl_runtime_opts_t, retry_backoff_ms), "100ms",
     false, 1, 3600000, NULL, "First delay before a retriable failure is retried (then doubles)."},
    {"retry_backoff_max", SL_OPT_DURATION, offsetof(sl_runtime_opts_t, retry_backoff_max_ms), "30s",
     false, 1, 3600000, NULL, "Longest delay between retries."},
    {"log_level", SL_OPT_ENUM, offsetof(sl_runtime_opts_t, log_level), "info", false, 0, 0,
     log_levels, "Lowest level logged to stderr (logfmt)."},
};

static const sl_option_t metrics_options[] = {
    {"listen", SL_OPT_HOSTPORT, offsetof(sl_metrics_opts_t, listen), NULL, false, 0, 0, NULL,
     "Address of the HTTP server for `/metrics` (Prometheus), `/healthz` and `/readyz`. "
     "Absent: no server."},
};

#define TABLE(sec, doc, opts)                                                                      \
    {                                                                                              \
        sec, doc, opts, SL_ARRAY_LEN(opts)                                                         \
    }

static const sl_option_table_t kafka_table =
    TABLE("source.kafka", "Consume with a Kafka consumer group.", kafka_options);
static const sl_option_table_t decode_table =
    TABLE("decode", "How messages are decoded into records of the schema.", decode_options);
static const sl_option_table_t runtime_table =
    TABLE("runtime", "Threads, batching, back-pressure and shutdown.", runtime_options);
static const sl_option_table_t metrics_table =
    TABLE("metrics", "Observability endpoints.", metrics_options);

static const char *const top_keys[] = {"source",      "schema",  "decode",    "transform",
                                       "filter",      "dedup",   "aggregate", "sink",
                                       "dead_letter", "metrics", "runtime",   NULL};

/* Binds a "one plugin" section: `sink: {stdout: {...}}` or `sink: stdout`.
 * Returns the chosen plugin name and its options node through the out params. */
static int config_choice(const sl_node_t *sec, const char *secname, const char *file,
                         const char **name, const sl_node_t **opts, sl_errors_t *errs)
{
    *opts = NULL;
    if (sec->kind == SL_NODE_SCALAR) {
        *name = sec->scalar;
        return 0;
    }
    if (sec->kind != SL_NODE_MAP || sec->n != 1) {
        sl_errors_add(errs, file, sec->line, sec->col,
                      "'%s' must be a map with exactly one key naming the %s type", secname,
                      secname);
        return -1;
    }
    *name = sec->keys[0]->scalar;
    const sl_node_t *v = sec->values[0];
    if (sl_node_is_null(v)) {
        return 0; /* `null:` with no options */
    }
    if (v->kind != SL_NODE_MAP) {
        sl_errors_add(errs, file, v->line, v->col, "options of %s.%s must be a map, got %s",
                      secname, *name, sl_node_kind_name(v));
        return -1;
    }
    *opts = v;
    return 0;
}

static void config_names(sl_buf_t *b, const char *const *names)
{
    for (size_t i = 0; names[i]; i++) {
        sl_buf_printf(b, "%s%s", i ? ", " : "", names[i]);
    }
}

static int config_sink(const sl_node_t *sec, const char *file, sl_config_t *cfg, sl_errors_t *errs)
{
    const char *name;
    const sl_node_t *opts;
    if (config_choice(sec, "sink", file, &name, &opts, errs) != 0) {
        return -1;
    }
    cfg->sink = sl_registry_sink(name);
    if (cfg->sink == NULL) {
        sl_buf_t known = SL_BUF_INIT;
        for (size_t i = 0; sl_sink_plugins[i]; i++) {
            sl_buf_printf(&known, "%s%s", i ? ", " : "", sl_sink_plugins[i]->name);
        }
        sl_errors_add(errs, file, sec->line, sec->col, "unknown sink '%s' (known: %s)", name,
                      known.data);
        sl_buf_free(&known);
        return -1;
    }
    snprintf(cfg->sink_name, sizeof(cfg->sink_name), "sink.%s", cfg->sink->name);
    cfg->sink_opts = sl_xcalloc(1, cfg->sink->opts_size);
    cfg->sink_node = opts;
    return sl_options_apply(cfg->sink->options, cfg->sink_opts, opts, file, errs);
}

static int config_dlq(const sl_node_t *sec, const char *file, sl_config_t *cfg, sl_errors_t *errs)
{
    const char *name;
    const sl_node_t *opts;
    if (config_choice(sec, "dead_letter", file, &name, &opts, errs) != 0) {
        return -1;
    }
    cfg->dlq = sl_registry_dlq(name);
    if (cfg->dlq == NULL) {
        sl_buf_t known = SL_BUF_INIT;
        for (size_t i = 0; sl_dlq_plugins[i]; i++) {
            sl_buf_printf(&known, "%s%s", i ? ", " : "", sl_dlq_plugins[i]->name);
        }
        sl_errors_add(errs, file, sec->line, sec->col, "unknown dead_letter type '%s' (known: %s)",
                      name, known.data);
        sl_buf_free(&known);
        return -1;
    }
    snprintf(cfg->dlq_name, sizeof(cfg->dlq_name), "dead_letter.%s", cfg->dlq->name);
    cfg->dlq_opts = sl_xcalloc(1, cfg->dlq->opts_size);
    return sl_options_apply(cfg->dlq->options, cfg->dlq_opts, opts, file, errs);
}

int sl_config_load(const char *path, sl_config_t *cfg, sl_errors_t *errs)
{
    int bad = 0;
    memset(cfg, 0, sizeof(*cfg));
    cfg->path = sl_xstrdup(path);
    size_t errs_before = errs->n;
    cfg->doc = sl_doc_load_file(path, errs);
    if (cfg->doc == NULL) {
        return -1;
    }
    const char *file = sl_doc_path(cfg->doc);
    const sl_node_t *root = sl_doc_root(cfg->doc);
    if (root == NULL || root->kind != SL_NODE_MAP) {
        sl_errors_add(errs, file, root ? root->line : 1, root ? root->col : 1,
                      "the config must be a map with the sections source, schema, dead_letter "
                      "and sink");
        return -1;
    }
    for (size_t i = 0; i < root->n; i++) {
        const char *k = root->keys[i]->scalar;
        size_t j = 0;
        while (top_keys[j] && strcmp(top_keys[j], k) != 0) {
            j++;
        }
        if (top_keys[j] == NULL) {
            sl_buf_t known = SL_BUF_INIT;
            config_names(&known, top_keys);
            sl_errors_add(errs, file, root->keys[i]->line, root->keys[i]->col,
                          "unknown section '%s' (known: %s)", k, known.data);
            sl_buf_free(&known);
        }
    }

    /* source: only kafka for now */
    const sl_node_t *src = sl_node_get(root, "source");
    const sl_node_t *kafka = NULL;
    if (src == NULL) {
        sl_errors_add(errs, file, root->line, root->col,
                      "missing section 'source' (e.g. source: {kafka: {brokers: ..., topics: "
                      "[...], group: ...}})");
    } else if (src->kind != SL_NODE_MAP || src->n != 1 || strcmp(src->keys[0]->scalar, "kafka")) {
        sl_errors_add(errs, file, src->line, src->col,
                      "'source' must be a map with one key: kafka");
    } else {
        kafka = src->values[0];
        if (kafka->kind != SL_NODE_MAP) {
            sl_errors_add(errs, file, kafka->line, kafka->col,
                          "options of source.kafka must be a map, got %s",
                          sl_node_kind_name(kafka));
            kafka = NULL;
        }
    }
    bad |= sl_options_apply(&kafka_table, &cfg->kafka, kafka, file, errs);
    bad |= sl_options_apply(&decode_table, &cfg->decode, sl_node_get(root, "decode"), file, errs);
    bad |=
        sl_options_apply(&runtime_table, &cfg->runtime, sl_node_get(root, "runtime"), file, errs);
    bad |=
        sl_options_apply(&metrics_table, &cfg->metrics, sl_node_get(root, "metrics"), file, errs);

    const sl_node_t *schema = sl_node_get(root, "schema");
    if (schema == NULL) {
        sl_errors_add(errs, file, root->line, root->col,
                      "missing section 'schema' (field name -> {type: ..., required: ...})");
    } else {
        bad |= sl_schema_parse(schema, file, &cfg->schema, errs);
        cfg->schema.unknown = (sl_unknown_policy_t)cfg->decode.unknown_fields;
        sl_schema_finish(&cfg->schema);
        cfg->stages = sl_stages_parse(sl_node_get(root, "transform"), sl_node_get(root, "filter"),
                                      file, &cfg->schema, &cfg->record, errs, &bad);
        cfg->dedup = sl_dedup_conf_parse(sl_node_get(root, "dedup"), &cfg->record, errs, &bad);
        cfg->agg =
            sl_agg_conf_parse(sl_node_get(root, "aggregate"), file, &cfg->record, errs, &bad);
    }
    cfg->out = cfg->agg ? &cfg->agg->out : &cfg->record;

    const sl_node_t *sink = sl_node_get(root, "sink");
    if (sink == NULL) {
        sl_errors_add(errs, file, root->line, root->col,
                      "missing section 'sink' (e.g. sink: {stdout: {format: json}})");
    } else {
        bad |= config_sink(sink, file, cfg, errs);
    }
    const sl_node_t *dlq = sl_node_get(root, "dead_letter");
    if (dlq == NULL) {
        sl_errors_add(errs, file, root->line, root->col,
                      "missing section 'dead_letter': invalid records must go somewhere (e.g. "
                      "dead_letter: {kafka: {topic: events.dlq}} or {file: {path: dlq.jsonl}})");
    } else {
        bad |= config_dlq(dlq, file, cfg, errs);
    }

    if (errs->n == errs_before) {
        rd_kafka_conf_t *conf = sl_kafka_consumer_conf(cfg, errs);
        if (conf) {
            rd_kafka_conf_destroy(conf);
        }
    }
    return errs->n == errs_before && !bad ? 0 : -1;
}

void sl_config_free(sl_config_t *cfg)
{
    sl_options_free(&kafka_table, &cfg->kafka);
    sl_options_free(&decode_table, &cfg->decode);
    sl_options_free(&runtime_table, &cfg->runtime);
    sl_options_free(&metrics_table, &cfg->metrics);
    if (cfg->sink && cfg->sink_opts) {
        sl_options_free(cfg->sink->options, cfg->sink_opts);
    }
    free(cfg->sink_opts);
    if (cfg->dlq && cfg->dlq_opts) {
        sl_options_free(cfg->dlq->options, cfg->dlq_opts);
    }
    free(cfg->dlq_opts);
    sl_dedup_conf_destroy(cfg->dedup);
    sl_agg_conf_destroy(cfg->agg);
    sl_stages_destroy(cfg->stages);
    sl_schema_free(&cfg->record);
    sl_schema_free(&cfg->schema);
    sl_doc_free(cfg->doc);
    free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

void sl_config_doc(sl_buf_t *out)
{
    sl_buf_puts(
        out, "# Sluice configuration reference\n\n"
             "<!-- Generated by `sluice config-doc` from the option tables; do not edit. "
             "CI fails when it is stale: run `make docs`. -->\n\n"
             "A pipeline is one YAML file with these sections: `source` (one of its types), "
             "`schema`, `decode`, `transform`, `filter`, `dedup`, `aggregate`, `dead_letter` (one "
             "type), `sink` (one "
             "type), `metrics`, `runtime`. Any scalar may use `${VAR}` or `${VAR:-default}` "
             "(environment); "
             "`$$` is a literal `$`. Unknown keys are errors that name file and line. "
             "Durations: `250ms`, `30s`, `5m`, `1h`. Sizes: `512`, `64KiB`, `1MiB`.\n\n");
    sl_buf_puts(out, "## source\n\n");
    sl_options_doc(&kafka_table, out);
    sl_buf_puts(out,
                "\n## schema\n\n"
                "A map of field name to field spec; records are flat and typed, looked up by "
                "position.\n\n"
                "| Key | Applies to | Meaning |\n|---|---|---|\n"
                "| `type` | all | `string`, `int32`, `int64`, `double`, `bool`, `date` "
                "(`YYYY-MM-DD`, a real calendar date), `timestamp` (ISO-8601 / RFC 3339 string, "
                "or an integer of epoch milliseconds) |\n"
                "| `required` | all | `true`: a record without the field (or with null) is "
                "dead-lettered. Default `false`. |\n"
                "| `default` | all | Value used when the field is absent. |\n"
                "| `min`, `max` | int32, int64, double | Inclusive bounds. |\n"
                "| `max_length` | string | Longest value in bytes. |\n"
                "| `regex` | string | POSIX extended regular expression the value must match "
                "(anchor it with `^...$`). |\n"
                "| `enum` | string | List of allowed values. |\n\n");
    sl_options_doc(&decode_table, out);
    sl_buf_puts(out,
                "\n## transform\n\n"
                "A list of steps run in order on every valid record; each step is a map with one "
                "key. Later steps and the sink see the fields as the earlier steps left them.\n\n"
                "| Step | Form | Effect |\n|---|---|---|\n"
                "| `rename` | `{old: new, ...}` | Renames fields. |\n"
                "| `drop` | `[field, ...]` or `field` | Removes fields from what later steps "
                "and the sink see. |\n"
                "| `set` | `{field: \"expression\", field: {expr: \"...\", type: int32}}` | "
                "Computes a field (new, or an existing one of the same type) from an expression "
                "(docs/EXPRESSIONS.md); the type is the expression's unless given (int64 "
                "narrows to int32 with a range check, widens to double). |\n"
                "| `lookup` | `{from: F, to: G, map: {key: value}, default: D}` | Sets string "
                "field G from string field F: exact keys (`a|b|c` lists alternatives), then glob "
                "keys (`*-shirt`) in order, else `default` (absent: null). |\n"
                "| `enrich` | `{key: F, file: PATH, file_key: K, fields: {name: type}}` | Joins "
                "the record on field F (string or integer) with a table loaded at startup from a "
                "CSV file with a header line or an NDJSON file (a relative PATH is next to the "
                "config); adds the named columns (key column K, default F). No matching row: "
                "the fields are null. |\n"
                "| `enrich` | `{key: F, topic: T, fields: {name: type}, brokers: B, refresh: 1s, "
                "load_timeout: 60s}` | The same join with a table kept current from Kafka topic "
                "T (brokers B, default the source's): the latest JSON value per message key, a "
                "null value deletes the key; a value that does not decode is logged and "
                "ignored. The topic is read to its end before records flow (else the run stops "
                "after load_timeout); changes are seen within `refresh`. |\n"
                "| `filter` | `\"expression\"` | Drops the record here unless the expression is "
                "true (like the top-level `filter`, but it sees the fields as they are at this "
                "step). |\n\n"
                "A record a step fails on (e.g. a timestamp out of range) goes to the dead-letter "
                "path with the step in the reason.\n\n"
                "## filter\n\n"
                "An expression (docs/EXPRESSIONS.md) of type bool, run after `transform`. Records "
                "for which it is not true (false or null) are dropped: counted in "
                "`sluice_records_filtered_total`, not dead-lettered, their offsets committed.\n\n"
                "## dedup\n\n"
                "Drops records whose key was written recently, after `transform` and `filter`. "
                "Per lane (so per set of partitions: copies of an event must share a partition, "
                "e.g. by using the dedup key as the Kafka key).\n\n"
                "| Key | Type | Default | Meaning |\n|---|---|---|---|\n"
                "| `key` | list of strings | (none) | Record fields (after transform) whose "
                "values, typed, make the key (hashed, 64-bit). Absent: the whole message. |\n"
                "| `max_keys` | integer | 100000 | Keys remembered per lane; the least recently "
                "written are forgotten first. |\n"
                "| `ttl` | duration | 10m | How long a written key is remembered. |\n\n"
                "A key is remembered only when the sink acknowledged its record: a copy whose "
                "first write failed (dead-lettered) is written. A copy arriving while the first "
                "is in flight waits for it. Dropped copies are counted in "
                "`sluice_records_duplicate_total`; their offsets are committed.\n\n"
                "## aggregate\n\n"
                "Groups records (after `dedup`) and writes one row per group and window instead "
                "of one per record. The sink sees the `group_by` fields, `window_start` and "
                "`window_end` (timestamps, with a window), then the `compute` fields. Sums of "
                "integers are int64, of doubles double; `count` is int64; `min`, `max` and `last` "
                "keep the field's type; all skip nulls (a group with only nulls gives null). "
                "State is per lane: groups whose records come from partitions of different lanes "
                "or instances are written by each (fine for `delta`; `absolute` needs every "
                "record of a group in one partition, e.g. the group key as the Kafka key). "
                "A record's offset is committed only after the flush holding it was "
                "acknowledged (`absolute`: after its window closed and its final row was "
                "acknowledged, so a restart recomputes open windows whole). "
                "Late records are counted in `sluice_records_late_total`. See docs/AGGREGATE.md."
                "\n\n");
    for (size_t i = 0; sl_agg_option_tables[i]; i++) {
        sl_options_doc(sl_agg_option_tables[i], out);
        sl_buf_puts(out, "\n");
    }
    sl_buf_puts(out, "\n## dead_letter\n\nWhere rejected records go, with the reason. Exactly one "
                     "of:\n\n");
    for (size_t i = 0; sl_dlq_plugins[i]; i++) {
        sl_options_doc(sl_dlq_plugins[i]->options, out);
        sl_buf_puts(out, "\n");
    }
    sl_buf_puts(out, "## sink\n\nWhere valid records go. Exactly one of:\n\n");
    for (size_t i = 0; sl_sink_plugins[i]; i++) {
        sl_options_doc(sl_sink_plugins[i]->options, out);
        sl_buf_puts(out, "\n");
    }
    sl_buf_puts(out, "## metrics\n\n");
    sl_options_doc(&metrics_table, out);
    sl_buf_puts(out, "\n## runtime\n\n");
    sl_options_doc(&runtime_table, out);
}
