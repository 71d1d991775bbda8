/* The null sink: acknowledges every record at once. For benchmarks of the
 * consume/decode/validate path and for dry runs. */
#include <stdlib.h>

#include "core/plugin.h"

typedef struct null_opts {
    int unused;
} null_opts_t;

static const sl_option_table_t null_table = {"sink.null",
                                             "Discards records (acknowledged at once).", NULL, 0};

static int null_init(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err)
{
    (void)opts;
    (void)info;
    (void)err;
    *shared = NULL;
    return 0;
}

static int null_open(void **ctx, void *shared, const sl_plugin_env_t *env, char *err)
{
    (void)shared;
    (void)err;
    *ctx = env->lane;
    return 0;
}

static size_t null_submit(void *ctx, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        sl_batch_result(b, idx[i], SL_STATUS_OK, NULL);
    }
    return n;
}

static void null_close(void *ctx)
{
    (void)ctx;
}

static void null_fini(void *shared)
{
    (void)shared;
}

const sl_sink_plugin_t sl_sink_null = {
    .name = "null",
    .options = &null_table,
    .opts_size = sizeof(null_opts_t),
    .init = null_init,
    .open = null_open,
    .submit = null_submit,
    .close = null_close,
    .fini = null_fini,
};
