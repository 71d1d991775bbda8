/* Fuzzes config loading: YAML into nodes (with interpolation), option tables
 * of every type on `source.kafka` and `runtime`, and the `schema:` section.
 * Must never crash or leak, whatever the bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config/config.h"
#include "core/schema.h"

typedef struct fz_opts {
    char *brokers;
    sl_strlist_t topics;
    char *group;
    sl_strmap_t properties;
    int64_t lanes;
    bool enabled;
    double ratio;
    int64_t timeout_ms;
    int64_t max_bytes;
    int format;
    char *listen;
} fz_opts_t;

static const char *const fz_formats[] = {"json", "csv", NULL};

static const sl_option_t fz_kafka_options[] = {
    {"brokers", SL_OPT_STRING, offsetof(fz_opts_t, brokers), NULL, true, 0, 0, NULL, "Brokers."},
    {"topics", SL_OPT_STRLIST, offsetof(fz_opts_t, topics), NULL, true, 0, 0, NULL, "Topics."},
    {"group", SL_OPT_STRING, offsetof(fz_opts_t, group), NULL, true, 0, 0, NULL, "Group."},
    {"properties", SL_OPT_STRMAP, offsetof(fz_opts_t, properties), NULL, false, 0, 0, NULL,
     "Properties."},
};

static const sl_option_t fz_runtime_options[] = {
    {"lanes", SL_OPT_INT, offsetof(fz_opts_t, lanes), "0", false, 0, 64, NULL, "Lanes."},
    {"enabled", SL_OPT_BOOL, offsetof(fz_opts_t, enabled), "true", false, 0, 0, NULL, "On."},
    {"ratio", SL_OPT_DOUBLE, offsetof(fz_opts_t, ratio), "0.5", false, 0, 0, NULL, "Ratio."},
    {"shutdown_timeout", SL_OPT_DURATION, offsetof(fz_opts_t, timeout_ms), "30s", false, 0,
     86400000, NULL, "Timeout."},
    {"max_bytes", SL_OPT_SIZE, offsetof(fz_opts_t, max_bytes), "1MiB", false, 1, 256 << 20, NULL,
     "Size."},
    {"format", SL_OPT_ENUM, offsetof(fz_opts_t, format), "json", false, 0, 0, fz_formats,
     "Format."},
    {"listen", SL_OPT_HOSTPORT, offsetof(fz_opts_t, listen), NULL, false, 0, 0, NULL, "Listen."},
};

static const sl_option_table_t fz_kafka = {"source.kafka", "Kafka.", fz_kafka_options,
                                           SL_ARRAY_LEN(fz_kafka_options)};
static const sl_option_table_t fz_runtime = {"runtime", "Runtime.", fz_runtime_options,
                                             SL_ARRAY_LEN(fz_runtime_options)};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_errors_t errs = {0};
    sl_doc_t *doc = sl_doc_load_string("fuzz.yaml", (const char *)data, size, &errs);
    if (doc == NULL) {
        goto out;
    }
    const sl_node_t *root = sl_doc_root(doc);
    const char *file = sl_doc_path(doc);

    fz_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    const sl_node_t *kafka = sl_node_get(sl_node_get(root, "source"), "kafka");
    /* results are not needed: errs holds the problems (gcc's warn_unused_result
     * is not silenced by a (void) cast) */
    int failed = sl_options_apply(&fz_kafka, &opts, kafka, file, &errs);
    failed |= sl_options_apply(&fz_runtime, &opts, sl_node_get(root, "runtime"), file, &errs);
    sl_options_free(&fz_kafka, &opts);
    sl_options_free(&fz_runtime, &opts);
    if (root != NULL && root->kind != SL_NODE_MAP) {
        failed |= sl_options_apply(&fz_runtime, &opts, root, file, &errs); /* the wrong kind */
        sl_options_free(&fz_runtime, &opts);
    }

    sl_schema_t schema;
    memset(&schema, 0, sizeof(schema));
    failed |= sl_schema_parse(sl_node_get(root, "schema"), file, &schema, &errs);
    sl_schema_free(&schema);
    if (failed == 0 && errs.n != 0) {
        __builtin_trap(); /* success must mean no error was added */
    }
out:
    sl_doc_free(doc);
    sl_errors_free(&errs);
    return 0;
}
