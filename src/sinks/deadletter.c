/* Dead-letter paths: a Kafka topic (the original message with the reason and
 * source position as headers) or a file of JSON lines. A record sent here is
 * done only once the path acknowledged it; failures are retried, never
 * dropped. */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/plugin.h"
#include "sinks/writer.h"
#include "util/log.h"
#include "util/utf8.h"

/* ---- kafka ------------------------------------------------------------------ */

typedef struct dlq_kafka_opts {
    char *topic;
    char *brokers;
    sl_strmap_t properties;
    int64_t max_payload;
} dlq_kafka_opts_t;

static const sl_option_t dlq_kafka_options[] = {
    {"topic", SL_OPT_STRING, offsetof(dlq_kafka_opts_t, topic), NULL, true, 0, 0, NULL,
     "Topic that receives rejected messages: the original key and value, with headers "
     "`sluice.reason`, `sluice.source.topic`, `sluice.source.partition`, "
     "`sluice.source.offset`, `sluice.source.timestamp`."},
    {"brokers", SL_OPT_STRING, offsetof(dlq_kafka_opts_t, brokers), NULL, false, 0, 0, NULL,
     "Bootstrap brokers. Default: the source's brokers."},
    {"properties", SL_OPT_STRMAP, offsetof(dlq_kafka_opts_t, properties), NULL, false, 0, 0, NULL,
     "librdkafka producer properties, passed through. Defaults: `enable.idempotence: true`, "
     "`linger.ms: 5`, `message.timeout.ms: 0` (retry until delivered)."},
    {"max_payload", SL_OPT_SIZE, offsetof(dlq_kafka_opts_t, max_payload), "900KiB", false, 1024,
     1 << 30, NULL,
     "Longer payloads are truncated (header `sluice.truncated` gives the original length) so "
     "that an oversized message can still be dead-lettered."},
};

static const sl_option_table_t dlq_kafka_table = {
    "dead_letter.kafka", "Rejected messages to a Kafka topic.", dlq_kafka_options,
    SL_ARRAY_LEN(dlq_kafka_options)};

typedef struct dlq_kafka {
    rd_kafka_t *rk;
    char *topic;
    size_t max_payload;
} dlq_kafka_t;

typedef struct dlq_kafka_msg {
    sl_lane_t *lane;
    sl_batch_t *batch;
    uint32_t idx;
    bool ok;
} dlq_kafka_msg_t;

static void dlq_kafka_delivered(sl_lane_t *lane, void *arg)
{
    (void)lane;
    dlq_kafka_msg_t *m = arg;
    sl_batch_dlq_result(m->batch, m->idx, m->ok ? SL_STATUS_OK : SL_STATUS_RETRY);
    free(m);
}

/* Logs a failed dead-letter delivery at most every 10 s (a down topic fails
 * every message), with what to do about it. Any thread. */
static void dlq_kafka_log_failure(rd_kafka_resp_err_t err)
{
    static _Atomic int64_t last_ms;
    int64_t now = sl_now_ms(), prev = atomic_load(&last_ms);
    if (now - prev < 10000 || !atomic_compare_exchange_strong(&last_ms, &prev, now)) {
        return;
    }
    const char *hint = "records wait (partitions paused) and are retried";
    if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
        hint = "the dead-letter topic does not exist: create it (records wait and are retried)";
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        hint = "not allowed to write the dead-letter topic: grant Write (records wait)";
    } else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        hint = "message too large for the topic: lower dead_letter.kafka.max_payload";
    }
    sl_log_warn("dead_letter.kafka", "delivery failed", "error=\"%s\" hint=\"%s\"",
                rd_kafka_err2str(err), hint);
}

/* librdkafka's delivery report, on whichever thread polled the producer:
 * hand the result to the record's lane. */
static void dlq_kafka_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    dlq_kafka_msg_t *m = msg->_private;
    m->ok = msg->err == 0;
    if (msg->err) {
        dlq_kafka_log_failure(msg->err);
    }
    sl_lane_post(m->lane, dlq_kafka_delivered, m);
}

static int dlq_kafka_init(void **shared, const void *opts, const sl_pipeline_info_t *info,
                          char *err)
{
    const dlq_kafka_opts_t *o = opts;
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    static const char *const defaults[][2] = {{"client.id", "sluice-dlq"},
                                              {"enable.idempotence", "true"},
                                              {"linger.ms", "5"},
                                              {"message.timeout.ms", "0"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(defaults); i++) {
        rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], e, sizeof(e));
    }
    for (size_t i = 0; i < o->properties.n; i++) {
        if (rd_kafka_conf_set(conf, o->properties.keys[i], o->properties.values[i], e, sizeof(e)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(err, 256, "dead_letter.kafka property '%.64s': %.160s", o->properties.keys[i],
                     e);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    const char *brokers = o->brokers ? o->brokers : info->source_brokers;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, 256, "dead_letter.kafka brokers: %.200s", e);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dlq_kafka_dr);
    dlq_kafka_t *d = sl_xcalloc(1, sizeof(*d));
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (d->rk == NULL) {
        snprintf(err, 256, "dead_letter.kafka: cannot create producer: %.180s", e);
        rd_kafka_conf_destroy(conf);
        free(d);
        return -1;
    }
    d->topic = sl_xstrdup(o->topic);
    d->max_payload = (size_t)o->max_payload;
    *shared = d;
    return 0;
}

static int dlq_kafka_open(void **ctx, void *shared, const sl_plugin_env_t *env, char *err)
{
    (void)env;
    (void)err;
    *ctx = shared;
    return 0;
}

static int dlq_kafka_submit(void *ctx, sl_batch_t *b, uint32_t idx, const char *reason)
{
    dlq_kafka_t *d = ctx;
    sl_origin_t o;
    sl_batch_origin(b, idx, &o);
    char part[16], off[24], ts[24], trunc[24];
    snprintf(part, sizeof(part), "%" PRId32, o.partition);
    snprintf(off, sizeof(off), "%" PRId64, o.offset);
    snprintf(ts, sizeof(ts), "%" PRId64, o.timestamp_ms);
    size_t len = o.payload_len;
    bool truncated = len > d->max_payload;
    if (truncated) {
        snprintf(trunc, sizeof(trunc), "%zu", len);
        len = d->max_payload;
    }
    dlq_kafka_msg_t *m = sl_xcalloc(1, sizeof(*m));
    *m = (dlq_kafka_msg_t){b->lane, b, idx, false};
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, "sluice.reason", -1, reason, -1);
    rd_kafka_header_add(h, "sluice.source.topic", -1, o.topic, -1);
    rd_kafka_header_add(h, "sluice.source.partition", -1, part, -1);
    rd_kafka_header_add(h, "sluice.source.offset", -1, off, -1);
    rd_kafka_header_add(h, "sluice.source.timestamp", -1, ts, -1);
    if (truncated) {
        rd_kafka_header_add(h, "sluice.truncated", -1, trunc, -1);
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        d->rk, RD_KAFKA_V_TOPIC(d->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE((void *)o.payload, len), RD_KAFKA_V_KEY((void *)o.key, o.key_len),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        free(m);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            return 1;
        }
        sl_log_warn("dead_letter.kafka", "produce failed; retrying", "error=\"%s\"",
                    rd_kafka_err2str(err));
        return 1;
    }
    return 0;
}

static void dlq_kafka_poll(void *ctx)
{
    rd_kafka_poll(((dlq_kafka_t *)ctx)->rk, 0);
}

static void dlq_kafka_close(void *ctx)
{
    (void)ctx;
}

static void dlq_kafka_fini(void *shared)
{
    dlq_kafka_t *d = shared;
    /* everything acknowledged was already waited for by the drain; what is
     * still queued after a timeout is purged: its records stay uncommitted */
    rd_kafka_flush(d->rk, 5000);
    rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(d->rk, 0);
    rd_kafka_destroy(d->rk);
    free(d->topic);
    free(d);
}

const sl_dlq_plugin_t sl_dlq_kafka = {
    .name = "kafka",
    .options = &dlq_kafka_table,
    .opts_size = sizeof(dlq_kafka_opts_t),
    .init = dlq_kafka_init,
    .open = dlq_kafka_open,
    .submit = dlq_kafka_submit,
    .poll = dlq_kafka_poll,
    .close = dlq_kafka_close,
    .fini = dlq_kafka_fini,
};

/* ---- file ------------------------------------------------------------------- */

typedef struct dlq_file_opts {
    char *path;
    bool fsync;
} dlq_file_opts_t;

static const sl_option_t dlq_file_options[] = {
    {"path", SL_OPT_STRING, offsetof(dlq_file_opts_t, path), NULL, true, 0, 0, NULL,
     "File that receives one JSON line per rejected message: `reason`, `topic`, `partition`, "
     "`offset`, `timestamp`, `key`, and `payload` (a string if it is valid UTF-8, else "
     "`payload_base64`)."},
    {"fsync", SL_OPT_BOOL, offsetof(dlq_file_opts_t, fsync), "false", false, 0, 0, NULL,
     "fsync before acknowledging."},
};

static const sl_option_table_t dlq_file_table = {"dead_letter.file",
                                                 "Rejected messages as JSON lines in a file.",
                                                 dlq_file_options, SL_ARRAY_LEN(dlq_file_options)};

typedef struct dlq_file {
    sl_writer_t *w;
    sl_lane_t *lane;
    sl_wchunk_t *cur; /* entries collected since the last poll */
} dlq_file_t;

static int dlq_file_init(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err)
{
    (void)info;
    const dlq_file_opts_t *o = opts;
    sl_writer_t *w = sl_writer_create(o->path, o->fsync, 4u << 20, "dead_letter.file", err);
    *shared = w;
    return w ? 0 : -1;
}

static int dlq_file_open(void **ctx, void *shared, const sl_plugin_env_t *env, char *err)
{
    (void)err;
    dlq_file_t *f = sl_xcalloc(1, sizeof(*f));
    f->w = shared;
    f->lane = env->lane;
    *ctx = f;
    return 0;
}

static void dlq_file_done(sl_wchunk_t *c, bool ok)
{
    for (size_t i = 0; i < c->n_refs; i++) {
        sl_batch_dlq_result(c->refs[i].batch, c->refs[i].idx, ok ? SL_STATUS_OK : SL_STATUS_RETRY);
    }
}

static void dlq_base64(sl_buf_t *out, const unsigned char *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= s[i + 2];
        }
        char q[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        sl_buf_append(out, q, 4);
    }
}

static void dlq_json_bytes(sl_buf_t *out, const char *name, const void *p, size_t n)
{
    if (p == NULL) {
        sl_buf_printf(out, ",\"%s\":null", name);
    } else if (sl_utf8_valid(p, n)) {
        sl_buf_printf(out, ",\"%s\":\"", name);
        sl_buf_json_escape(out, p, n);
        sl_buf_putc(out, '"');
    } else {
        sl_buf_printf(out, ",\"%s_base64\":\"", name);
        dlq_base64(out, p, n);
        sl_buf_putc(out, '"');
    }
}

static int dlq_file_submit(void *ctx, sl_batch_t *b, uint32_t idx, const char *reason)
{
    dlq_file_t *f = ctx;
    if (f->cur && f->cur->data.len >= (1u << 20)) {
        if (sl_writer_push(f->w, f->cur) != 0) {
            return 1; /* the writer is behind: back-pressure */
        }
        f->cur = NULL;
    }
    if (f->cur == NULL) {
        f->cur = sl_wchunk_new(f->lane, dlq_file_done);
    }
    sl_origin_t o;
    sl_batch_origin(b, idx, &o);
    sl_buf_t *out = &f->cur->data;
    sl_buf_puts(out, "{\"reason\":\"");
    sl_buf_json_escape(out, reason, strlen(reason));
    sl_buf_puts(out, "\",\"topic\":\"");
    sl_buf_json_escape(out, o.topic, strlen(o.topic));
    sl_buf_printf(out, "\",\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"timestamp\":%" PRId64,
                  o.partition, o.offset, o.timestamp_ms);
    dlq_json_bytes(out, "key", o.key, o.key_len);
    dlq_json_bytes(out, "payload", o.payload, o.payload_len);
    sl_buf_puts(out, "}\n");
    sl_wchunk_add_ref(f->cur, b, idx);
    return 0;
}

static void dlq_file_poll(void *ctx)
{
    dlq_file_t *f = ctx;
    if (f->cur && sl_writer_push(f->w, f->cur) == 0) {
        f->cur = NULL;
    }
}

static bool dlq_file_ready(void *shared)
{
    return sl_writer_ok(shared);
}

static void dlq_file_close(void *ctx)
{
    dlq_file_t *f = ctx;
    if (f->cur) {
        dlq_file_done(f->cur, false);
        sl_wchunk_free(f->cur);
    }
    free(f);
}

static void dlq_file_fini(void *shared)
{
    sl_writer_destroy(shared, 5000);
}

const sl_dlq_plugin_t sl_dlq_file = {
    .name = "file",
    .options = &dlq_file_table,
    .opts_size = sizeof(dlq_file_opts_t),
    .init = dlq_file_init,
    .open = dlq_file_open,
    .submit = dlq_file_submit,
    .poll = dlq_file_poll,
    .flush = dlq_file_poll,
    .ready = dlq_file_ready,
    .close = dlq_file_close,
    .fini = dlq_file_fini,
};
