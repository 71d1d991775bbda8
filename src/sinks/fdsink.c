/* The stdout and file sinks: records formatted as JSON lines (or the raw
 * message) and written by one writer thread; a record is acknowledged once
 * its bytes were written (and fsync'ed, if asked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecs/json.h"
#include "core/plugin.h"
#include "sinks/writer.h"

typedef struct fdsink_opts {
    char *path;
    int format; /* 0 json, 1 raw */
    int64_t buffer;
    bool fsync;
} fdsink_opts_t;

static const char *const fdsink_formats[] = {"json", "raw", NULL};

static const sl_option_t stdout_options[] = {
    {"format", SL_OPT_ENUM, offsetof(fdsink_opts_t, format), "json", false, 0, 0, fdsink_formats,
     "`json`: one JSON object per line with the schema's fields in order (absent optional "
     "fields as null); `raw`: the original message, one per line."},
    {"buffer", SL_OPT_SIZE, offsetof(fdsink_opts_t, buffer), "4MiB", false, 4096, 1 << 30, NULL,
     "Bytes queued for the writer before the pipeline pauses (back-pressure)."},
};

static const sl_option_t file_options[] = {
    {"path", SL_OPT_STRING, offsetof(fdsink_opts_t, path), NULL, true, 0, 0, NULL,
     "File to append to (created if missing)."},
    {"format", SL_OPT_ENUM, offsetof(fdsink_opts_t, format), "json", false, 0, 0, fdsink_formats,
     "As for stdout."},
    {"buffer", SL_OPT_SIZE, offsetof(fdsink_opts_t, buffer), "4MiB", false, 4096, 1 << 30, NULL,
     "Bytes queued for the writer before the pipeline pauses (back-pressure)."},
    {"fsync", SL_OPT_BOOL, offsetof(fdsink_opts_t, fsync), "false", false, 0, 0, NULL,
     "fsync after each write before acknowledging (durable across power loss; slower)."},
};

static const sl_option_table_t stdout_table = {"sink.stdout",
                                               "JSON lines (or raw messages) on standard output.",
                                               stdout_options, SL_ARRAY_LEN(stdout_options)};
static const sl_option_table_t file_table = {"sink.file",
                                             "JSON lines (or raw messages) appended "
                                             "to a file.",
                                             file_options, SL_ARRAY_LEN(file_options)};

typedef struct fdsink_shared {
    sl_writer_t *w;
    int format;
    const sl_schema_t *schema;
} fdsink_shared_t;

typedef struct fdsink {
    fdsink_shared_t *sh;
    sl_lane_t *lane;
    sl_wchunk_t *pending; /* formatted but refused by a full writer */
} fdsink_t;

static int fdsink_init(void **shared, const void *opts, const sl_pipeline_info_t *info,
                       const char *path, const char *name, char *err)
{
    const fdsink_opts_t *o = opts;
    fdsink_shared_t *sh = sl_xcalloc(1, sizeof(*sh));
    sh->format = o->format;
    sh->schema = info->schema;
    sh->w = sl_writer_create(path, o->fsync, (size_t)o->buffer, name, err);
    if (sh->w == NULL) {
        free(sh);
        return -1;
    }
    *shared = sh;
    return 0;
}

static int stdout_init(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err)
{
    return fdsink_init(shared, opts, info, NULL, "sink.stdout", err);
}

static int file_init(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err)
{
    return fdsink_init(shared, opts, info, ((const fdsink_opts_t *)opts)->path, "sink.file", err);
}

static void fdsink_fini(void *shared)
{
    fdsink_shared_t *sh = shared;
    sl_writer_destroy(sh->w, 5000);
    free(sh);
}

static int fdsink_open(void **ctx, void *shared, const sl_plugin_env_t *env, char *err)
{
    (void)err;
    fdsink_t *s = sl_xcalloc(1, sizeof(*s));
    s->sh = shared;
    s->lane = env->lane;
    *ctx = s;
    return 0;
}

static void fdsink_done(sl_wchunk_t *c, bool ok)
{
    for (size_t i = 0; i < c->n_refs; i++) {
        sl_batch_result(c->refs[i].batch, c->refs[i].idx, ok ? SL_STATUS_OK : SL_STATUS_RETRY,
                        NULL);
    }
}

static bool fdsink_push_pending(fdsink_t *s)
{
    if (s->pending && sl_writer_push(s->sh->w, s->pending) == 0) {
        s->pending = NULL;
    }
    return s->pending == NULL;
}

static size_t fdsink_submit(void *ctx, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    fdsink_t *s = ctx;
    if (!fdsink_push_pending(s)) {
        return 0;
    }
    sl_wchunk_t *c = sl_wchunk_new(s->lane, fdsink_done);
    sl_buf_reserve(&c->data, n * 96);
    for (size_t i = 0; i < n; i++) {
        if (s->sh->format == 0) {
            sl_json_encode(s->sh->schema, sl_batch_values(b, idx[i]), &c->data);
        } else {
            sl_origin_t o;
            sl_batch_origin(b, idx[i], &o);
            sl_buf_append(&c->data, o.payload, o.payload_len);
        }
        sl_buf_putc(&c->data, '\n');
        sl_wchunk_add_ref(c, b, idx[i]);
    }
    s->pending = c;
    fdsink_push_pending(s);
    return n;
}

static void fdsink_poll(void *ctx)
{
    fdsink_push_pending(ctx);
}

static bool fdsink_ready(void *shared)
{
    return sl_writer_ok(((fdsink_shared_t *)shared)->w);
}

static void fdsink_close(void *ctx)
{
    fdsink_t *s = ctx;
    if (s->pending) {
        fdsink_done(s->pending, false);
        sl_wchunk_free(s->pending);
    }
    free(s);
}

const sl_sink_plugin_t sl_sink_stdout = {
    .name = "stdout",
    .options = &stdout_table,
    .opts_size = sizeof(fdsink_opts_t),
    .init = stdout_init,
    .open = fdsink_open,
    .submit = fdsink_submit,
    .poll = fdsink_poll,
    .ready = fdsink_ready,
    .close = fdsink_close,
    .fini = fdsink_fini,
};

const sl_sink_plugin_t sl_sink_file = {
    .name = "file",
    .options = &file_table,
    .opts_size = sizeof(fdsink_opts_t),
    .init = file_init,
    .open = fdsink_open,
    .submit = fdsink_submit,
    .poll = fdsink_poll,
    .ready = fdsink_ready,
    .close = fdsink_close,
    .fini = fdsink_fini,
};
