/* sluice with one extra sink, `faulty`, for testing the core's handling of
 * sink results: it rejects records whose site_id is a multiple of reject_mod
 * (permanent: they must reach the dead-letter path with this sink's reason),
 * answers RETRY to the first attempt of records whose site_id is a multiple of
 * retry_mod (`retries` times; they must come back and be written exactly once), and writes the
 * rest as JSON lines. Results are reported asynchronously, on the next poll. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "codecs/json.h"
#include "core/plugin.h"

typedef struct faulty_opts {
    char *path;
    int64_t reject_mod;
    int64_t retry_mod;
    bool sync;       /* report results from inside submit() instead of on poll */
    int64_t retries; /* RETRY answers before a retried record is accepted */
} faulty_opts_t;

static const sl_option_t faulty_options[] = {
    {"path", SL_OPT_STRING, offsetof(faulty_opts_t, path), NULL, true, 0, 0, NULL, "output"},
    {"reject_mod", SL_OPT_INT, offsetof(faulty_opts_t, reject_mod), "7", false, 1, 1000000, NULL,
     "reject site_id % reject_mod == 0"},
    {"retry_mod", SL_OPT_INT, offsetof(faulty_opts_t, retry_mod), "5", false, 1, 1000000, NULL,
     "retry once site_id % retry_mod == 0"},
    {"retries", SL_OPT_INT, offsetof(faulty_opts_t, retries), "1", false, 1, 100, NULL,
     "RETRY answers per retried record"},
    {"sync", SL_OPT_BOOL, offsetof(faulty_opts_t, sync), "false", false, 0, 0, NULL,
     "report results synchronously"},
};

static const sl_option_table_t faulty_table = {"sink.faulty", "fault injection for tests",
                                               faulty_options, SL_ARRAY_LEN(faulty_options)};

typedef struct faulty_shared {
    FILE *f;
    pthread_mutex_t mu;
    faulty_opts_t o;
    const sl_schema_t *schema;
    int site_field;
} faulty_shared_t;

typedef struct faulty_result {
    sl_batch_t *b;
    uint32_t idx;
    sl_status_t st;
} faulty_result_t;

typedef struct faulty {
    faulty_shared_t *sh;
    sl_buf_t out;
    faulty_result_t *res;
    size_t n, cap;
} faulty_t;

static int faulty_init(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err)
{
    faulty_shared_t *sh = sl_xcalloc(1, sizeof(*sh));
    sh->o = *(const faulty_opts_t *)opts;
    sh->schema = info->schema;
    sh->site_field = sl_schema_find(info->schema, "site_id", 7);
    sh->f = fopen(sh->o.path, "a");
    if (sh->f == NULL || sh->site_field < 0) {
        snprintf(err, 256, "faulty: cannot open output or no site_id field");
        free(sh);
        return -1;
    }
    pthread_mutex_init(&sh->mu, NULL);
    *shared = sh;
    return 0;
}

static int faulty_open(void **ctx, void *shared, const sl_plugin_env_t *env, char *err)
{
    (void)env;
    (void)err;
    faulty_t *s = sl_xcalloc(1, sizeof(*s));
    s->sh = shared;
    *ctx = s;
    return 0;
}

static void faulty_poll(void *ctx);

static size_t faulty_submit(void *ctx, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    faulty_t *s = ctx;
    for (size_t i = 0; i < n; i++) {
        const sl_value_t *v = sl_batch_values(b, idx[i]);
        int64_t site = v[s->sh->site_field].u.i;
        sl_status_t st = SL_STATUS_OK;
        if (site % s->sh->o.reject_mod == 0) {
            st = SL_STATUS_REJECT;
        } else if (site % s->sh->o.retry_mod == 0 && b->attempts[idx[i]] < s->sh->o.retries) {
            st = SL_STATUS_RETRY;
        } else {
            sl_json_encode(s->sh->schema, v, &s->out);
            sl_buf_putc(&s->out, '\n');
        }
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 1024;
            s->res = sl_xrealloc(s->res, s->cap * sizeof(*s->res));
        }
        s->res[s->n++] = (faulty_result_t){b, idx[i], st};
    }
    if (s->sh->o.sync) {
        faulty_poll(s); /* results (and retries) from inside submit() */
    }
    return n;
}

static void faulty_poll(void *ctx)
{
    faulty_t *s = ctx;
    if (s->n == 0) {
        return;
    }
    pthread_mutex_lock(&s->sh->mu);
    fwrite(s->out.data, 1, s->out.len, s->sh->f);
    fflush(s->sh->f);
    pthread_mutex_unlock(&s->sh->mu);
    sl_buf_reset(&s->out);
    size_t n = s->n;
    s->n = 0; /* results may submit again (retries) */
    for (size_t i = 0; i < n; i++) {
        faulty_result_t r = s->res[i];
        sl_batch_result(r.b, r.idx, r.st,
                        r.st == SL_STATUS_REJECT ? "faulty: site rejected by the sink" : NULL);
    }
}

static void faulty_close(void *ctx)
{
    faulty_t *s = ctx;
    sl_buf_free(&s->out);
    free(s->res);
    free(s);
}

static void faulty_fini(void *shared)
{
    faulty_shared_t *sh = shared;
    fclose(sh->f);
    pthread_mutex_destroy(&sh->mu);
    free(sh);
}

static const sl_sink_plugin_t faulty_sink = {
    .name = "faulty",
    .options = &faulty_table,
    .opts_size = sizeof(faulty_opts_t),
    .init = faulty_init,
    .open = faulty_open,
    .submit = faulty_submit,
    .poll = faulty_poll,
    .flush = faulty_poll,
    .close = faulty_close,
    .fini = faulty_fini,
};

int main(int argc, char **argv)
{
    sl_registry_add_sink(&faulty_sink);
    return sl_cli_main(argc, argv);
}
