/* The one list of plugins. Adding a sink is adding its line here. */
#include <string.h>

#include "core/plugin.h"
#include "util/common.h"

extern const sl_sink_plugin_t sl_sink_null, sl_sink_stdout, sl_sink_file, sl_sink_cassandra,
    sl_sink_postgres;
extern const sl_dlq_plugin_t sl_dlq_kafka, sl_dlq_file;

const sl_sink_plugin_t *const sl_sink_plugins[] = {
    &sl_sink_stdout, &sl_sink_file, &sl_sink_null, &sl_sink_cassandra, &sl_sink_postgres, NULL};
const sl_dlq_plugin_t *const sl_dlq_plugins[] = {&sl_dlq_kafka, &sl_dlq_file, NULL};

static const sl_sink_plugin_t *registry_extra[4];

void sl_registry_add_sink(const sl_sink_plugin_t *sink)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(registry_extra); i++) {
        if (registry_extra[i] == NULL) {
            registry_extra[i] = sink;
            return;
        }
    }
}

const sl_sink_plugin_t *sl_registry_sink(const char *name)
{
    for (size_t i = 0; sl_sink_plugins[i]; i++) {
        if (strcmp(sl_sink_plugins[i]->name, name) == 0) {
            return sl_sink_plugins[i];
        }
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(registry_extra) && registry_extra[i]; i++) {
        if (strcmp(registry_extra[i]->name, name) == 0) {
            return registry_extra[i];
        }
    }
    return NULL;
}

const sl_dlq_plugin_t *sl_registry_dlq(const char *name)
{
    for (size_t i = 0; sl_dlq_plugins[i]; i++) {
        if (strcmp(sl_dlq_plugins[i]->name, name) == 0) {
            return sl_dlq_plugins[i];
        }
    }
    return NULL;
}
