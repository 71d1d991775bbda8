/* The Cassandra sink's request logic against a scripted session: this file
 * defines the sl_cql_cluster_* functions the sink calls (so the linker takes
 * them instead of cql/cluster.c) and the three lane functions it reports to.
 * Checked: grouping of a submit into EXECUTE/BATCH requests, the prefix taken
 * when the session says AGAIN (nothing sent / part sent), the process-wide
 * in-flight budget, outcome handling (ok, permanent split, counter unknown
 * dead-letter or retry, reprepare, fatal) and close reporting RETRY. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/plugin.h"
#include "cql/cluster.h"
#include "cql/conn.h"
#include "test.h"

/* ---- the scripted session ------------------------------------------------------------------ */

#define FK_MAX 256

typedef struct fk_sent {
    size_t n_rows;
    int64_t first_key; /* the first row's first value as a big-endian int (or -1) */
    bool has_ts;
    int64_t ts;
    int batch_type;
    sl_cql_cluster_cb cb;
    void *ctx;
    bool done;
} fk_sent_t;

static struct {
    bool ready;
    int sends_left;           /* sends that succeed before send_rc is returned; -1: all */
    sl_cql_send_rc_t send_rc; /* when sends_left is 0 */
    bool invalid_multi;       /* refuse requests of several rows (a frame too big, say) */
    fk_sent_t sent[FK_MAX];
    size_t n_sent;
    sl_cql_prepared_t prep;
    sl_cql_colspec_t cols[4];
    uint16_t pk[2];
    int sessions;
    const char *clustering; /* the table's clustering column, or NULL: none */
    bool counter_table;     /* the table has a counter column */
    int queries;
} fk;

struct sl_cql_cluster {
    int unused;
};

sl_cql_cluster_t *sl_cql_cluster_create(const sl_cql_cluster_opts_t *opts, char *err, size_t errlen)
{
    (void)opts;
    (void)err;
    (void)errlen;
    fk.sessions++;
    return sl_xcalloc(1, sizeof(sl_cql_cluster_t));
}

static void fk_finish(size_t i, const sl_cql_outcome_t *o)
{
    CHECK(!fk.sent[i].done);
    fk.sent[i].done = true;
    fk.sent[i].cb(fk.sent[i].ctx, o);
}

void sl_cql_cluster_destroy(sl_cql_cluster_t *c)
{
    if (c == NULL) {
        return;
    }
    sl_cql_outcome_t lost = {
        .cls = SL_CQL_ERRCLASS_RETRIABLE, .code = -1, .maybe_applied = true, .message = "lost"};
    for (size_t i = 0; i < fk.n_sent; i++) {
        if (!fk.sent[i].done) {
            fk_finish(i, &lost);
        }
    }
    fk.sessions--;
    free(c);
}

int sl_cql_cluster_pollfds(const sl_cql_cluster_t *c, struct pollfd *fds, int max)
{
    (void)c;
    (void)fds;
    (void)max;
    return 0;
}

void sl_cql_cluster_process(sl_cql_cluster_t *c, const struct pollfd *fds, int n, int64_t now_ms)
{
    (void)c;
    (void)fds;
    (void)n;
    (void)now_ms;
}

int64_t sl_cql_cluster_next_timeout_ms(const sl_cql_cluster_t *c)
{
    (void)c;
    return -1;
}

bool sl_cql_cluster_ready(const sl_cql_cluster_t *c)
{
    (void)c;
    return fk.ready;
}

const char *sl_cql_cluster_error(const sl_cql_cluster_t *c)
{
    (void)c;
    return fk.ready ? "" : "cannot reach a contact point: 127.0.0.1:9042: Connection refused";
}

size_t sl_cql_cluster_hosts(const sl_cql_cluster_t *c)
{
    (void)c;
    return 1;
}

void sl_cql_cluster_host(const sl_cql_cluster_t *c, size_t i, sl_cql_host_info_t *out)
{
    (void)c;
    (void)i;
    memset(out, 0, sizeof(*out));
    out->address = "127.0.0.1";
    out->local = true;
    out->up = fk.ready;
}

int sl_cql_cluster_prepare(sl_cql_cluster_t *c, const char *cql, size_t len, char *err,
                           size_t errlen)
{
    (void)c;
    (void)cql;
    (void)len;
    (void)err;
    (void)errlen;
    return 0;
}

const sl_cql_prepared_t *sl_cql_cluster_prepared(const sl_cql_cluster_t *c, int h)
{
    (void)c;
    (void)h;
    return &fk.prep;
}

const char *sl_cql_cluster_prepare_error(const sl_cql_cluster_t *c, int h)
{
    (void)c;
    (void)h;
    return NULL;
}

/* The sink reads the table's columns at startup: answers (at once) with
 * rows (column_name, kind, type): the clustering column fk.clustering if set,
 * and a counter column if fk.counter_table. */
static size_t fk_cell(uint8_t *p, const char *s)
{
    size_t l = strlen(s);
    p[0] = p[1] = p[2] = 0;
    p[3] = (uint8_t)l;
    memcpy(p + 4, s, l);
    return 4 + l;
}

sl_cql_send_rc_t sl_cql_cluster_query(sl_cql_cluster_t *c, const char *cql, size_t len,
                                      uint16_t consistency, sl_cql_cluster_cb cb, void *ctx,
                                      const char **err)
{
    (void)c;
    (void)consistency;
    (void)err;
    fk.queries++;
    CHECK(len > 0 &&
          strstr(cql, "SELECT column_name, kind, type FROM system_schema.columns") != NULL);
    CHECK(strstr(cql, "keyspace_name = 'ks' AND table_name = 't'") != NULL);
    uint8_t content[256];
    size_t n = 0;
    int32_t rows = 0;
    n += fk_cell(content + n, "k");
    n += fk_cell(content + n, "partition_key");
    n += fk_cell(content + n, "int");
    rows++;
    if (fk.clustering) {
        n += fk_cell(content + n, fk.clustering);
        n += fk_cell(content + n, "clustering");
        n += fk_cell(content + n, "bigint");
        rows++;
    }
    if (fk.counter_table) {
        n += fk_cell(content + n, "hits");
        n += fk_cell(content + n, "regular");
        n += fk_cell(content + n, "counter");
        rows++;
    }
    sl_cql_response_t r;
    memset(&r, 0, sizeof(r));
    r.opcode = SL_CQL_OP_RESULT;
    r.result.kind = SL_CQL_RESULT_ROWS;
    r.result.rows.meta.n_cols = 3;
    r.result.rows.n_rows = rows;
    r.result.rows.content = content;
    r.result.rows.content_len = n;
    sl_cql_outcome_t o;
    memset(&o, 0, sizeof(o));
    o.ok = true;
    o.response = &r;
    cb(ctx, &o);
    return SL_CQL_SEND_OK;
}

sl_cql_send_rc_t sl_cql_cluster_send(sl_cql_cluster_t *c, const sl_cql_request_t *req,
                                     sl_cql_cluster_cb cb, void *ctx, const char **err)
{
    (void)c;
    (void)err;
    if (fk.sends_left == 0) {
        return fk.send_rc;
    }
    if (fk.invalid_multi && req->n_rows > 1) {
        *err = "frame too big";
        return SL_CQL_SEND_INVALID;
    }
    if (fk.sends_left > 0) {
        fk.sends_left--;
    }
    CHECK(fk.n_sent < FK_MAX);
    CHECK_INT(req->n_values, (size_t)fk.prep.bind.n_cols);
    fk_sent_t *s = &fk.sent[fk.n_sent++];
    memset(s, 0, sizeof(*s));
    s->n_rows = req->n_rows;
    const sl_cql_bytes_t *v = &req->rows[0][0];
    s->first_key = -1;
    if (v->len == 4) {
        s->first_key = (int64_t)((uint32_t)v->ptr[0] << 24 | (uint32_t)v->ptr[1] << 16 |
                                 (uint32_t)v->ptr[2] << 8 | v->ptr[3]);
    }
    s->has_ts = req->has_timestamp;
    s->ts = req->timestamp;
    s->batch_type = req->batch_type;
    s->cb = cb;
    s->ctx = ctx;
    return SL_CQL_SEND_OK;
}

/* ---- the lane, as the sink sees it ----------------------------------------------------------- */

typedef struct fk_result {
    uint32_t idx;
    sl_status_t st;
    char reason[512];
} fk_result_t;

static fk_result_t results[1024];
static size_t n_results;
static int wakes;
static sl_lane_t *last_woken;

void sl_batch_result(sl_batch_t *b, uint32_t idx, sl_status_t status, const char *reason)
{
    (void)b;
    CHECK(n_results < SL_ARRAY_LEN(results));
    results[n_results].idx = idx;
    results[n_results].st = status;
    snprintf(results[n_results].reason, sizeof(results[n_results].reason), "%s",
             reason ? reason : "");
    n_results++;
}

void sl_batch_origin(const sl_batch_t *b, uint32_t idx, sl_origin_t *o)
{
    (void)b;
    memset(o, 0, sizeof(*o));
    o->timestamp_ms = 1000 + idx;
}

void sl_lane_wake(sl_lane_t *lane)
{
    last_woken = lane;
    wakes++;
}

/* ---- fixtures -------------------------------------------------------------------------------- */

extern const sl_sink_plugin_t sl_sink_cassandra;
static const sl_sink_plugin_t *sink = &sl_sink_cassandra;

/* schema: k int32 (the partition key), v int64 */
static sl_schema_t schema;
static sl_value_t values[64 * 2];
static sl_batch_t batch;

static void setup_schema(void)
{
    static const char y[] = "k: {type: int32, required: true}\nv: {type: int64}\n";
    sl_errors_t errs = {0};
    sl_doc_t *doc = sl_doc_load_string("s.yaml", y, strlen(y), &errs);
    memset(&schema, 0, sizeof(schema));
    CHECK_INT(sl_schema_parse(sl_doc_root(doc), "s.yaml", &schema, &errs), 0);
    sl_schema_finish(&schema);
    sl_doc_free(doc);
    sl_errors_free(&errs);
    memset(&batch, 0, sizeof(batch));
    batch.schema = &schema;
    batch.values = values;
    batch.n = 64;
}

/* Record idx gets key k and value v. */
static void rec(uint32_t idx, int64_t k, int64_t v)
{
    values[idx * 2].is_null = false;
    values[idx * 2].u.i = k;
    values[idx * 2 + 1].is_null = false;
    values[idx * 2 + 1].u.i = v;
}

static bool g_no_ck; /* setup_prepared: a table without clustering columns */

/* Bind markers (k, v) with k the partition key; v a counter or a bigint. */
static void setup_prepared(bool counter)
{
    memset(&fk.prep, 0, sizeof(fk.prep));
    fk.cols[0] = (sl_cql_colspec_t){"ks", "t", "k", {.id = SL_CQL_COL_INT}};
    fk.cols[1] = (sl_cql_colspec_t){
        "ks", "t", "v", {.id = counter ? SL_CQL_COL_COUNTER : SL_CQL_COL_BIGINT}};
    fk.pk[0] = 0;
    fk.prep.bind.n_cols = 2;
    fk.prep.bind.cols = fk.cols;
    fk.prep.bind.pk_count = 1;
    fk.prep.bind.pk_index = fk.pk;
    /* a table (k, v, PRIMARY KEY (k, v)): rows of one k differ by v */
    fk.clustering = counter || g_no_ck ? NULL : "v";
}

typedef struct inst {
    void *opts;
    void *shared;
    void *ctx;
} inst_t;

/* Applies the options (YAML flow map) and runs init + open. */
static void start(inst_t *in, const char *yaml, bool counter)
{
    if (schema.n_fields == 0) {
        setup_schema();
    }
    setup_prepared(counter);
    fk.ready = true;
    fk.sends_left = -1;
    fk.n_sent = 0;
    n_results = 0;
    wakes = 0;
    sl_errors_t errs = {0};
    sl_doc_t *doc = sl_doc_load_string("c.yaml", yaml, strlen(yaml), &errs);
    CHECK(doc != NULL);
    in->opts = sl_xcalloc(1, sink->opts_size);
    CHECK_INT(sl_options_apply(sink->options, in->opts, sl_doc_root(doc), "c.yaml", &errs), 0);
    for (size_t i = 0; i < errs.n; i++) {
        fprintf(stderr, "  %s\n", errs.msgs[i]);
    }
    sl_doc_free(doc);
    sl_errors_free(&errs);
    sl_pipeline_info_t info = {"b", "g", &schema, NULL, NULL, 0};
    char err[256] = "";
    CHECK_INT(sink->init(&in->shared, in->opts, &info, err), 0);
    if (err[0]) {
        fprintf(stderr, "  init: %s\n", err);
    }
    sl_plugin_env_t env = {(sl_lane_t *)&batch, &schema, "sink.cassandra", 0};
    CHECK_INT(sink->open(&in->ctx, in->shared, &env, err), 0);
}

static void stop(inst_t *in)
{
    sink->close(in->ctx);
    sink->fini(in->shared);
    sl_options_free(sink->options, in->opts);
    free(in->opts);
    CHECK_INT(fk.sessions, 0);
}

static const sl_cql_outcome_t ok_outcome = {.ok = true};

static size_t submit_range(inst_t *in, uint32_t from, uint32_t n)
{
    uint32_t idx[64];
    for (uint32_t i = 0; i < n; i++) {
        idx[i] = from + i;
    }
    return sink->submit(in->ctx, &batch, idx, n);
}

static size_t count_results(sl_status_t st)
{
    size_t k = 0;
    for (size_t i = 0; i < n_results; i++) {
        k += results[i].st == st;
    }
    return k;
}

static const char base[] = "{contact_points: [127.0.0.1], statement: 'x'";

/* ---- tests ------------------------------------------------------------------------------------
 */

/* A table whose primary key is its partition key: two writes of one key are
 * the same row, and never share a batch (Cassandra would give both the batch's
 * timestamp and keep the greater value, not the later one). */
TEST(same_row_writes_never_share_a_batch)
{
    inst_t in;
    g_no_ck = true;
    start(&in, "{contact_points: [127.0.0.1], statement: 'x'}", false);
    g_no_ck = false;
    int64_t keys[] = {1, 1, 2, 1};
    for (uint32_t i = 0; i < 4; i++) {
        rec(i, keys[i], 10 * i);
    }
    CHECK_INT(submit_range(&in, 0, 4), 4);
    CHECK_INT(fk.n_sent, 4); /* (1) (1) (2) (1): never two of key 1 together */
    for (size_t i = 0; i < fk.n_sent; i++) {
        CHECK_INT(fk.sent[i].n_rows, 1);
        fk_finish(i, &ok_outcome);
    }
    CHECK_INT(fk.sent[0].first_key, 1);
    CHECK_INT(fk.sent[1].first_key, 1);
    CHECK_INT(fk.sent[2].first_key, 2);
    CHECK_INT(fk.sent[3].first_key, 1);
    CHECK_INT(count_results(SL_STATUS_OK), 4);
    stop(&in);
}

/* `UPDATE t SET hits = hits + 1 WHERE k = :k AND v = :v` binds no counter
 * marker, but the table has a counter column: it is a counter update all the
 * same (COUNTER batches, and a write of unknown fate is not resent). */
TEST(counter_table_without_counter_marker)
{
    inst_t in;
    fk.counter_table = true;
    start(&in, "{contact_points: [127.0.0.1], statement: 'x'}", false);
    fk.counter_table = false;
    int64_t keys[] = {1, 1};
    for (uint32_t i = 0; i < 2; i++) {
        rec(i, keys[i], 10 * i);
    }
    CHECK_INT(submit_range(&in, 0, 2), 2);
    CHECK_INT(fk.n_sent, 1);
    CHECK_INT(fk.sent[0].batch_type, SL_CQL_BATCH_COUNTER);
    sl_cql_outcome_t lost = {.ok = false,
                             .cls = SL_CQL_ERRCLASS_RETRIABLE,
                             .code = -1,
                             .maybe_applied = true,
                             .message = "host 127.0.0.1: connection lost"};
    fk_finish(0, &lost);
    CHECK_INT(count_results(SL_STATUS_REJECT), 2); /* dead-lettered, not resent */
    stop(&in);
}

TEST(groups_by_partition_into_execute_and_batch)
{
    inst_t in;
    char y[256];
    snprintf(y, sizeof(y), "%s, batch_max_rows: 2}", base);
    start(&in, y, false);
    /* keys 1 2 1 1 3: requests (1,1) (2) (1) (3) with 2 rows at most */
    int64_t keys[] = {1, 2, 1, 1, 3};
    for (uint32_t i = 0; i < 5; i++) {
        rec(i, keys[i], 10 * i);
    }
    CHECK_INT(submit_range(&in, 0, 5), 5);
    CHECK_INT(fk.n_sent, 4);
    CHECK_INT(fk.sent[0].n_rows, 2);
    CHECK_INT(fk.sent[0].first_key, 1);
    CHECK_INT(fk.sent[0].batch_type, SL_CQL_BATCH_UNLOGGED);
    CHECK(!fk.sent[0].has_ts);
    CHECK_INT(fk.sent[1].n_rows, 1);
    CHECK_INT(fk.sent[1].first_key, 2);
    CHECK_INT(fk.sent[2].n_rows, 1);
    CHECK_INT(fk.sent[2].first_key, 1);
    CHECK_INT(fk.sent[3].first_key, 3);
    CHECK_INT(n_results, 0);
    for (size_t i = 0; i < 4; i++) {
        fk_finish(i, &ok_outcome);
    }
    CHECK_INT(n_results, 5);
    CHECK_INT(count_results(SL_STATUS_OK), 5);
    /* metrics from the shared state */
    sl_buf_t m = SL_BUF_INIT;
    sink->metrics(in.shared, &m);
    CHECK_CONTAINS(m.data, "sluice_cassandra_requests_total{kind=\"execute\"} 3\n");
    CHECK_CONTAINS(m.data, "sluice_cassandra_requests_total{kind=\"batch\"} 1\n");
    CHECK_CONTAINS(m.data, "sluice_cassandra_in_flight 0\n");
    CHECK_CONTAINS(m.data, "sluice_cassandra_hosts_up 0\n"); /* no io yet */
    sl_buf_free(&m);
    stop(&in);
}

TEST(writetime_kafka_is_sent_and_splits_batches)
{
    inst_t in;
    char y[256];
    snprintf(y, sizeof(y), "%s, writetime: kafka}", base);
    start(&in, y, false);
    rec(0, 7, 1);
    rec(1, 7, 2);
    CHECK_INT(submit_range(&in, 0, 2), 2);
    /* same partition, different Kafka timestamps (1000 and 1001 ms) */
    CHECK_INT(fk.n_sent, 2);
    CHECK(fk.sent[0].has_ts);
    CHECK_INT(fk.sent[0].ts, 1000000);
    CHECK_INT(fk.sent[1].ts, 1001000);
    stop(&in); /* in flight at close: RETRY */
    CHECK_INT(count_results(SL_STATUS_RETRY), 2);
}

TEST(rejects_bad_records_and_takes_the_rest)
{
    inst_t in;
    start(&in, "{contact_points: [127.0.0.1], statement: 'x'}", false);
    rec(0, 1, 1);
    rec(1, 1, 1);
    values[1 * 2].is_null = true; /* null partition key */
    rec(2, INT64_C(1) << 40, 1);  /* out of range for int */
    CHECK_INT(submit_range(&in, 0, 3), 3);
    CHECK_INT(fk.n_sent, 1);
    CHECK_INT(count_results(SL_STATUS_REJECT), 2);
    CHECK_STR(results[0].reason, "partition key column 'k' is null");
    CHECK_INT(results[1].idx, 2);
    CHECK_CONTAINS(results[1].reason, "field 'k': 1099511627776 is out of range for CQL int");
    fk_finish(0, &ok_outcome);
    CHECK_INT(count_results(SL_STATUS_OK), 1);
    stop(&in);
}

TEST(again_takes_a_prefix_or_keeps_the_rest)
{
    inst_t in;
    char y[256];
    snprintf(y, sizeof(y), "%s, batch_max_rows: 1}", base);
    start(&in, y, false);
    for (uint32_t i = 0; i < 4; i++) {
        rec(i, i, i);
    }
    /* not ready: nothing taken */
    fk.ready = false;
    CHECK_INT(submit_range(&in, 0, 4), 0);
    fk.ready = true;
    /* nothing sendable: nothing taken (a rejected record before the first
     * sendable one is taken and reported) */
    values[0].is_null = true;
    fk.sends_left = 0;
    fk.send_rc = SL_CQL_SEND_AGAIN;
    CHECK_INT(submit_range(&in, 0, 4), 1);
    CHECK_INT(n_results, 1);
    CHECK_INT(results[0].st, SL_STATUS_REJECT);
    rec(0, 0, 0);
    /* part sent: everything taken, the rest sent later from io */
    fk.sends_left = 2;
    CHECK_INT(submit_range(&in, 0, 4), 4);
    CHECK_INT(fk.n_sent, 2);
    /* a new offer is refused while requests wait */
    CHECK_INT(submit_range(&in, 4, 1), 0);
    fk.sends_left = -1;
    sink->io(in.ctx, NULL, 0);
    CHECK_INT(fk.n_sent, 4);
    CHECK_INT(fk.sent[2].first_key, 2);
    CHECK_INT(fk.sent[3].first_key, 3);
    for (size_t i = 0; i < 4; i++) {
        fk_finish(i, &ok_outcome);
    }
    CHECK_INT(count_results(SL_STATUS_OK), 4);
    /* DOWN behaves like AGAIN */
    fk.sends_left = 0;
    fk.send_rc = SL_CQL_SEND_DOWN;
    CHECK_INT(submit_range(&in, 0, 2), 0);
    stop(&in);
}

TEST(budget_is_shared_and_wakes_refused_lanes)
{
    inst_t in;
    char y[256];
    snprintf(y, sizeof(y), "%s, max_in_flight: 8, batch_max_rows: 1}", base);
    start(&in, y, false);
    /* a second lane on the same process-wide budget */
    static char lane1;
    void *ctx1 = NULL;
    char err[256] = "";
    sl_plugin_env_t env1 = {(sl_lane_t *)&lane1, &schema, "sink.cassandra", 1};
    CHECK_INT(sink->open(&ctx1, in.shared, &env1, err), 0);
    for (uint32_t i = 0; i < 12; i++) {
        rec(i, i, i);
    }
    CHECK_INT(submit_range(&in, 0, 10), 8);
    uint32_t idx[2] = {8, 9};
    CHECK_INT(sink->submit(ctx1, &batch, idx, 2), 0); /* lane 1: refused */
    CHECK_INT(submit_range(&in, 8, 2), 0);            /* lane 0 too */
    CHECK_INT(wakes, 0);
    /* one acknowledgement does not wake anyone: a woken lane would find
     * room for one record */
    fk_finish(0, &ok_outcome);
    CHECK_INT(wakes, 0);
    /* down to three quarters: lane 1 is woken once; lane 0, whose
     * acknowledgements these are, tries again in its own loop */
    fk_finish(1, &ok_outcome);
    CHECK_INT(wakes, 1);
    CHECK(last_woken == (sl_lane_t *)&lane1);
    fk_finish(2, &ok_outcome);
    CHECK_INT(wakes, 1);
    CHECK_INT(sink->submit(ctx1, &batch, idx, 2), 2);
    CHECK_INT(submit_range(&in, 10, 2), 1);
    sl_buf_t m = SL_BUF_INIT;
    sink->metrics(in.shared, &m);
    CHECK_CONTAINS(m.data, "sluice_cassandra_in_flight 8\n");
    sl_buf_free(&m);
    sink->close(ctx1);
    stop(&in);
    CHECK_INT(count_results(SL_STATUS_OK), 3);
    CHECK_INT(count_results(SL_STATUS_RETRY), 8);
}

TEST(permanent_batch_is_split_and_bad_records_rejected)
{
    inst_t in;
    start(&in, "{contact_points: [127.0.0.1], statement: 'x'}", false);
    for (uint32_t i = 0; i < 3; i++) {
        rec(i, 5, i);
    }
    CHECK_INT(submit_range(&in, 0, 3), 3);
    CHECK_INT(fk.n_sent, 1);
    CHECK_INT(fk.sent[0].n_rows, 3);
    sl_cql_outcome_t inv = {.cls = SL_CQL_ERRCLASS_PERMANENT,
                            .code = SL_CQL_ERR_INVALID,
                            .message = "host 127.0.0.1: Invalid (0x2200): bad"};
    fk_finish(0, &inv);
    CHECK_INT(n_results, 0);
    CHECK_INT(fk.n_sent, 1); /* not from inside the callback... */
    sink->io(in.ctx, NULL, 0);
    CHECK_INT(fk.n_sent, 4); /* ...but after process: each alone */
    fk_finish(1, &ok_outcome);
    fk_finish(2, &inv);
    fk_finish(3, &ok_outcome);
    CHECK_INT(count_results(SL_STATUS_OK), 2);
    CHECK_INT(count_results(SL_STATUS_REJECT), 1);
    CHECK_STR(results[1].reason, "cassandra: host 127.0.0.1: Invalid (0x2200): bad");
    CHECK_INT(results[1].idx, 1);
    stop(&in);
}

TEST(invalid_batches_are_sent_row_by_row)
{
    inst_t in;
    char y[256];
    snprintf(y, sizeof(y), "%s, batch_max_rows: 2}", base);
    start(&in, y, false);
    int64_t keys[] = {1, 2, 2, 3, 3};
    for (uint32_t i = 0; i < 5; i++) {
        rec(i, keys[i], i);
    }
    /* at submit: [1] sent, [2,2] and [3,3] refused as a whole: each row
     * alone, from pending */
    fk.invalid_multi = true;
    CHECK_INT(submit_range(&in, 0, 5), 5);
    CHECK_INT(fk.n_sent, 1);
    sink->io(in.ctx, NULL, 0);
    CHECK_INT(fk.n_sent, 5);
    CHECK_INT(fk.sent[1].first_key, 2);
    CHECK_INT(fk.sent[2].first_key, 2);
    CHECK_INT(fk.sent[3].first_key, 3);
    CHECK_INT(fk.sent[4].n_rows, 1);
    for (size_t i = 0; i < 5; i++) {
        fk_finish(i, &ok_outcome);
    }
    /* a request of several rows kept in pending (AGAIN) and refused when
     * sent from there is split too */
    fk.invalid_multi = false;
    fk.sends_left = 1;
    fk.send_rc = SL_CQL_SEND_AGAIN;
    CHECK_INT(submit_range(&in, 0, 3), 3); /* [1] sent, [2,2] kept */
    CHECK_INT(fk.n_sent, 6);
    fk.sends_left = -1;
    fk.invalid_multi = true;
    sink->io(in.ctx, NULL, 0);
    CHECK_INT(fk.n_sent, 8);
    CHECK_INT(fk.sent[6].n_rows, 1);
    CHECK_INT(fk.sent[7].n_rows, 1);
    for (size_t i = 5; i < 8; i++) {
        fk_finish(i, &ok_outcome);
    }
    CHECK_INT(count_results(SL_STATUS_OK), 8);
    sl_buf_t m = SL_BUF_INIT;
    sink->metrics(in.shared, &m);
    CHECK_CONTAINS(m.data, "sluice_cassandra_errors_total{class=\"invalid\"} 3\n");
    CHECK_CONTAINS(m.data, "sluice_cassandra_in_flight 0\n");
    sl_buf_free(&m);
    fk.invalid_multi = false;
    stop(&in);
}

TEST(counter_unknown_dead_letters_or_retries)
{
    sl_cql_outcome_t wt = {.cls = SL_CQL_ERRCLASS_RETRIABLE,
                           .code = SL_CQL_ERR_WRITE_TIMEOUT,
                           .maybe_applied = true,
                           .message = "host 127.0.0.1: Write_timeout (0x1100): timed out"};
    sl_cql_outcome_t unavail = {.cls = SL_CQL_ERRCLASS_RETRIABLE,
                                .code = SL_CQL_ERR_UNAVAILABLE,
                                .message = "host 127.0.0.1: Unavailable"};
    inst_t in;
    start(&in, "{contact_points: [127.0.0.1], statement: 'x'}", true);
    rec(0, 1, 1);
    rec(1, 2, 1);
    CHECK_INT(submit_range(&in, 0, 2), 2);
    CHECK_INT(fk.sent[0].batch_type, SL_CQL_BATCH_COUNTER);
    fk_finish(0, &wt);
    fk_finish(1, &unavail);
    CHECK_INT(results[0].st, SL_STATUS_REJECT);
    CHECK_STR(results[0].reason,
              "cassandra: counter update may or may not have been applied (host 127.0.0.1: "
              "Write_timeout (0x1100): timed out); not resent to avoid double counting "
              "(sink.cassandra.counter_unknown: retry resends)");
    CHECK_INT(results[1].st, SL_STATUS_RETRY); /* not applied: safe to resend */
    sl_buf_t m = SL_BUF_INIT;
    sink->metrics(in.shared, &m);
    CHECK_CONTAINS(m.data, "sluice_cassandra_counter_unknown_total 1\n");
    CHECK_CONTAINS(m.data, "sluice_cassandra_errors_total{class=\"retriable\"} 2\n");
    sl_buf_free(&m);
    stop(&in);

    start(&in, "{contact_points: [127.0.0.1], statement: 'x', counter_unknown: retry}", true);
    CHECK_INT(submit_range(&in, 0, 1), 1);
    fk_finish(0, &wt);
    CHECK_INT(results[0].st, SL_STATUS_RETRY);
    stop(&in);

    /* not a counter statement: a maybe-applied timeout is retried */
    start(&in, "{contact_points: [127.0.0.1], statement: 'x'}", false);
    CHECK_INT(submit_range(&in, 0, 1), 1);
    fk_finish(0, &wt);
    CHECK_INT(results[0].st, SL_STATUS_RETRY);
    stop(&in);
}

TEST(reprepare_and_fatal_are_retried)
{
    inst_t in;
    start(&in, "{contact_points: [127.0.0.1], statement: 'x', batch_max_rows: 1}", false);
    rec(0, 1, 1);
    rec(1, 2, 1);
    CHECK_INT(submit_range(&in, 0, 2), 2);
    sl_cql_outcome_t rp = {.cls = SL_CQL_ERRCLASS_REPREPARE, .code = SL_CQL_ERR_UNPREPARED};
    sl_cql_outcome_t fa = {.cls = SL_CQL_ERRCLASS_FATAL,
                           .code = SL_CQL_ERR_AUTH,
                           .message = "host 127.0.0.1: Authentication_error"};
    fk_finish(0, &rp);
    fk_finish(1, &fa);
    CHECK_INT(count_results(SL_STATUS_RETRY), 2);
    sl_buf_t m = SL_BUF_INIT;
    sink->metrics(in.shared, &m);
    CHECK_CONTAINS(m.data, "sluice_cassandra_errors_total{class=\"reprepare\"} 1\n");
    CHECK_CONTAINS(m.data, "sluice_cassandra_errors_total{class=\"fatal\"} 1\n");
    sl_buf_free(&m);
    /* ready: yes while the session is; the lane's view updates on io */
    CHECK(sink->ready(in.shared));
    fk.ready = false;
    sink->io(in.ctx, NULL, 0);
    CHECK(!sink->ready(in.shared));
    stop(&in);
}

TEST_MAIN(T(same_row_writes_never_share_a_batch), T(counter_table_without_counter_marker),
          T(groups_by_partition_into_execute_and_batch),
          T(writetime_kafka_is_sent_and_splits_batches), T(rejects_bad_records_and_takes_the_rest),
          T(again_takes_a_prefix_or_keeps_the_rest), T(budget_is_shared_and_wakes_refused_lanes),
          T(permanent_batch_is_split_and_bad_records_rejected),
          T(invalid_batches_are_sent_row_by_row), T(counter_unknown_dead_letters_or_retries),
          T(reprepare_and_fatal_are_retried))
