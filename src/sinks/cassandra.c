/* The Cassandra sink: each lane owns a CQL cluster session (cql/cluster.h)
 * whose sockets the lane's loop polls; records are bound to one prepared
 * statement, grouped by partition into EXECUTEs and single-partition BATCHes,
 * and acknowledged when Cassandra answers. A process-wide budget bounds the
 * records in flight across all lanes. See docs/DESIGN.md. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cluster.h uses conn.h's sl_cql_send_rc_t without including it */
#include "cql/conn.h"

#include "core/plugin.h"
#include "cql/cluster.h"
#include "cql/routing.h"
#include "sinks/cassandra_bind.h"
#include "sinks/secret.h"
#include "util/log.h"

#define CASS_MAX_LANES 128
/* A BATCH row's bytes besides its values: kind, [short bytes] id, [short] n. */
#define CASS_ROW_OVERHEAD 21
#define CASS_FATAL_LOG_EVERY_MS 10000

typedef struct cass_opts {
    sl_strlist_t contact_points;
    int64_t port;
    char *keyspace;
    char *local_dc;
    char *user;
    char *password_env;
    char *password_file;
    int consistency;
    char *statement;
    char *writetime;
    int64_t batch_max_rows;
    int64_t batch_max_bytes;
    int64_t max_in_flight;
    int64_t connections_per_host;
    bool token_aware;
    int compression; /* 0 none, 1 lz4 */
    bool tls;
    char *tls_ca_file;
    char *tls_cert_file;
    char *tls_key_file;
    bool tls_verify_host;
    char *tls_server_name;
    int64_t connect_timeout_ms;
    int64_t request_timeout_ms;
    int64_t startup_timeout_ms;
    int counter_unknown; /* 0 dead_letter, 1 retry */
} cass_opts_t;

static const char *const cass_consistencies[] = {"any",       "one", "two",          "three",
                                                 "quorum",    "all", "local_quorum", "each_quorum",
                                                 "local_one", NULL};
static const uint16_t cass_consistency_codes[] = {
    SL_CQL_ANY, SL_CQL_ONE,          SL_CQL_TWO,         SL_CQL_THREE,    SL_CQL_QUORUM,
    SL_CQL_ALL, SL_CQL_LOCAL_QUORUM, SL_CQL_EACH_QUORUM, SL_CQL_LOCAL_ONE};
static const char *const cass_counter_unknown[] = {"dead_letter", "retry", NULL};
static const char *const cass_compressions[] = {"none", "lz4", NULL};

#define CASS_OPT(f) offsetof(cass_opts_t, f)
static const sl_option_t cass_options[] = {
    {"contact_points", SL_OPT_STRLIST, CASS_OPT(contact_points), NULL, true, 0, 0, NULL,
     "Cassandra hosts to discover the cluster from (addresses or names, without port)."},
    {"port", SL_OPT_INT, CASS_OPT(port), "9042", false, 1, 65535, NULL,
     "CQL native protocol port of every host."},
    {"keyspace", SL_OPT_STRING, CASS_OPT(keyspace), NULL, false, 0, 0, NULL,
     "Keyspace to USE (and route by); optional when the statement names it."},
    {"local_dc", SL_OPT_STRING, CASS_OPT(local_dc), NULL, false, 0, 0, NULL,
     "Data center whose hosts get writes (default: the data center of the contact point "
     "reached)."},
    {"user", SL_OPT_STRING, CASS_OPT(user), NULL, false, 0, 0, NULL,
     "User for PasswordAuthenticator (then set password_env or password_file)."},
    {"password_env", SL_OPT_STRING, CASS_OPT(password_env), NULL, false, 0, 0, NULL,
     "Name of an environment variable holding the password (never logged)."},
    {"password_file", SL_OPT_STRING, CASS_OPT(password_file), NULL, false, 0, 0, NULL,
     "File holding the password (a trailing newline is stripped; never logged)."},
    {"consistency", SL_OPT_ENUM, CASS_OPT(consistency), "local_quorum", false, 0, 0,
     cass_consistencies, "Consistency level of every write."},
    {"statement", SL_OPT_STRING, CASS_OPT(statement), NULL, true, 0, 0, NULL,
     "The INSERT or UPDATE to run per record; bind markers (`:name` or `?`) take the schema "
     "field of the marker's (or column's) name."},
    {"writetime", SL_OPT_STRING, CASS_OPT(writetime), "none", false, 0, 0, NULL,
     "Write timestamp of each record: `none` (the server's clock), `kafka` (the Kafka message "
     "timestamp) or the name of a timestamp field; replays then converge. Not for counters."},
    {"batch_max_rows", SL_OPT_INT, CASS_OPT(batch_max_rows), "32", false, 1, 65535, NULL,
     "Rows of one partition sent as one unlogged (or counter) BATCH; 1 disables batching."},
    {"batch_max_bytes", SL_OPT_SIZE, CASS_OPT(batch_max_bytes), "16KiB", false, 1, 256 << 20, NULL,
     "Largest BATCH in value bytes; keep it below Cassandra's batch_size_fail_threshold "
     "(50KiB)."},
    {"max_in_flight", SL_OPT_INT, CASS_OPT(max_in_flight), "4096", false, 1, 10000000, NULL,
     "Records in flight to Cassandra for the whole process (all lanes); beyond it the "
     "pipeline pauses."},
    {"connections_per_host", SL_OPT_INT, CASS_OPT(connections_per_host), "1", false, 1, 64, NULL,
     "Connections per host of the local data center, per lane."},
    {"compression", SL_OPT_ENUM, CASS_OPT(compression), "none", false, 0, 0, cass_compressions,
     "Frame compression: lz4 where the server offers it (CQL v4 LZ4 bodies; less network, a "
     "little more CPU), or none."},
    {"tls", SL_OPT_BOOL, CASS_OPT(tls), "false", false, 0, 0, NULL,
     "Connect with TLS (OpenSSL); the server's certificate is always verified."},
    {"tls_ca_file", SL_OPT_STRING, CASS_OPT(tls_ca_file), NULL, false, 0, 0, NULL,
     "PEM file of the CA certificates to verify the server with (default: the system's CAs)."},
    {"tls_cert_file", SL_OPT_STRING, CASS_OPT(tls_cert_file), NULL, false, 0, 0, NULL,
     "PEM client certificate (chain), for servers that require client authentication."},
    {"tls_key_file", SL_OPT_STRING, CASS_OPT(tls_key_file), NULL, false, 0, 0, NULL,
     "PEM private key of tls_cert_file."},
    {"tls_verify_host", SL_OPT_BOOL, CASS_OPT(tls_verify_host), "true", false, 0, 0, NULL,
     "Check that the certificate names the host (its address as discovered, or "
     "tls_server_name)."},
    {"tls_server_name", SL_OPT_STRING, CASS_OPT(tls_server_name), NULL, false, 0, 0, NULL,
     "Name every node's certificate carries, checked instead of the host address and sent as "
     "SNI (default: none)."},
    {"token_aware", SL_OPT_BOOL, CASS_OPT(token_aware), "true", false, 0, 0, NULL,
     "Send each write to a replica of its partition (else round-robin)."},
    {"connect_timeout", SL_OPT_DURATION, CASS_OPT(connect_timeout_ms), "5s", false, 1, 3600 * 1000,
     NULL, "Time to connect and complete the handshake with a host."},
    {"request_timeout", SL_OPT_DURATION, CASS_OPT(request_timeout_ms), "12s", false, 1, 3600 * 1000,
     NULL, "Time to wait for an answer before the write is retried."},
    {"startup_timeout", SL_OPT_DURATION, CASS_OPT(startup_timeout_ms), "30s", false, 1, 3600 * 1000,
     NULL, "How long startup waits for the cluster to prepare the statement before failing."},
    {"counter_unknown", SL_OPT_ENUM, CASS_OPT(counter_unknown), "dead_letter", false, 0, 0,
     cass_counter_unknown,
     "A counter update whose fate is unknown (timeout, connection lost): `dead_letter` it "
     "(never double counts) or `retry` it (never loses, may double count)."},
};

static const sl_option_table_t cass_table = {
    "sink.cassandra",
    "Writes each record with a prepared statement to Apache Cassandra (CQL native protocol v4, "
    "our own client): token-aware, single-partition unlogged or counter batches, at-least-once "
    "(counter updates are at-least-once only with counter_unknown: retry).",
    cass_options, SL_ARRAY_LEN(cass_options)};

enum { CASS_WT_NONE = 0, CASS_WT_KAFKA, CASS_WT_FIELD };
enum {
    CASS_ERR_RETRIABLE = 0,
    CASS_ERR_PERMANENT,
    CASS_ERR_FATAL,
    CASS_ERR_REPREPARE,
    CASS_ERR_INVALID,
    CASS_ERR__COUNT
};
static const char *const cass_err_names[] = {"retriable", "permanent", "fatal", "reprepare",
                                             "invalid"};
enum { CASS_LANE_UNKNOWN = 0, CASS_LANE_READY, CASS_LANE_DOWN };

typedef struct cass_shared {
    const cass_opts_t *o; /* borrowed from the config, which outlives the pipeline */
    const sl_schema_t *schema;
    char *password; /* owned; never logged */
    uint16_t consistency;
    sl_cass_binding_t bind;
    int wt_mode;
    int wt_field;
    atomic_llong in_flight; /* records, all lanes */
    /* set in open (main thread, before lanes start) */
    sl_lane_t *lanes[CASS_MAX_LANES];
    size_t n_lanes; /* 1 + the highest lane id opened */
    atomic_bool any_refused;
    atomic_bool refused[CASS_MAX_LANES];
    atomic_int lane_state[CASS_MAX_LANES];
    atomic_int hosts_up[CASS_MAX_LANES];
    atomic_ullong req_execute, req_batch, counter_unknown;
    atomic_ullong errors[CASS_ERR__COUNT];
    atomic_llong last_fatal_log_ms;
    char stmt_at[160]; /* "file:line: " of the statement option, or "" */
    /* Upserts: the markers of the table's clustering columns, so that two
     * writes of one row never share a batch (sl_cass_group distinct_rows).
     * rows_known false: some clustering column has no marker of its name. */
    uint16_t ck[64];
    size_t n_ck;
    bool rows_known;
} cass_shared_t;

/* Where the session's log lines go: the instance's name and lane. */
typedef struct cass_logctx {
    const char *comp;
    int lane; /* -1: the startup session */
} cass_logctx_t;

typedef struct cass cass_t;

/* One request in flight (or waiting to be sent): the records it carries. */
typedef struct cass_req {
    cass_t *s;
    sl_batch_t *batch; /* on the free list: the next free request */
    uint32_t n;
    uint32_t idx[];
} cass_req_t;

/* Single-row requests (nearly all of them: rows of a batch rarely share a
 * partition) are recycled through a free list of at most this many. */
#define CASS_FREE_MAX 4096

struct cass {
    cass_shared_t *sh;
    sl_lane_t *lane;
    int lane_id;
    const char *name;
    cass_logctx_t logctx;
    sl_cql_cluster_t *cc;
    int stmt;
    bool closing;
    int64_t next_state_ms;
    /* requests of a submit that the session could not take after an earlier
     * one of the same submit was sent (their records are taken and counted
     * in the budget); sent from io/poll */
    cass_req_t **pending;
    size_t n_pending, cap_pending;
    cass_req_t *free1; /* free single-row requests, linked through batch */
    size_t n_free1;
    /* scratch for submit */
    sl_buf_t data, keys, reasons;
    sl_cql_bytes_t *vals;
    uint32_t *offs;
    size_t cap_vals;
    sl_cass_item_t *items;
    uint32_t *starts, *key_off, *rej;
    const sl_cql_bytes_t **rows;
    size_t cap_recs;
    sl_cql_bytes_t *parts; /* bind.n_pk: the partition key values of a record */
    uint32_t *row_off;     /* per record: its row identity in keys */
};

/* ---- init: options, password, the statement's binding -------------------------------------- */

/* Writes a message into a hook's err[256] (cut if longer). */
SL_PRINTF(2, 3) static void cass_errf(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, 256, fmt, ap);
    va_end(ap);
}

static void cass_fmt_ms(int64_t ms, char *out, size_t n)
{
    if (ms % 1000 == 0) {
        snprintf(out, n, "%llds", (long long)(ms / 1000));
    } else {
        snprintf(out, n, "%lldms", (long long)ms);
    }
}

static int cass_read_password(const cass_opts_t *o, char **out, char *err)
{
    if (sl_secret_read(o->password_env, o->password_file, "sink.cassandra", out, err) != 0) {
        return -1;
    }
    if (o->user && *out == NULL) {
        cass_errf(err,
                  "sink.cassandra: user is set but no password: set password_env or password_file");
        return -1;
    }
    if (!o->user && *out) {
        cass_errf(err, "sink.cassandra: a password is set but no user: set user");
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static void cass_free_password(char *p)
{
    if (p) {
        memset(p, 0, strlen(p));
        free(p);
    }
}

static void cass_log_cb(void *ctx, int level, const char *msg)
{
    const cass_logctx_t *lc = ctx;
    static const sl_log_level_t map[] = {SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR};
    sl_log_level_t lv = map[level < 0 ? 0 : (level > 3 ? 3 : level)];
    if (!sl_log_enabled(lv)) {
        return;
    }
    if (lc->lane >= 0) {
        sl_log(lv, lc->comp, msg, "lane=%d", lc->lane);
    } else {
        sl_log(lv, lc->comp, msg, "session=startup");
    }
}

static void cass_session_opts(const cass_shared_t *sh, const cass_logctx_t *lc,
                              sl_cql_cluster_opts_t *co)
{
    const cass_opts_t *o = sh->o;
    memset(co, 0, sizeof(*co));
    co->contact_points = (const char *const *)o->contact_points.items;
    co->n_contact_points = o->contact_points.n;
    co->port = (int)o->port;
    co->keyspace = o->keyspace;
    co->local_dc = o->local_dc;
    co->user = o->user;
    co->password = sh->password;
    co->connections_per_host = (int)o->connections_per_host;
    /* enough stream ids that max_in_flight (records, so at most as many
     * requests) is the only limit: running out of them would pause the
     * pipeline for nothing */
    co->max_inflight = (int)SL_MIN(o->max_in_flight, SL_CQL_CONN_MAX_STREAMS);
    co->connect_timeout_ms = (int)o->connect_timeout_ms;
    co->request_timeout_ms = (int)o->request_timeout_ms;
    co->token_aware = o->token_aware;
    co->compression = o->compression == 1;
    co->tls = o->tls;
    co->tls_verify_host = o->tls_verify_host;
    co->tls_ca_file = o->tls_ca_file;
    co->tls_cert_file = o->tls_cert_file;
    co->tls_key_file = o->tls_key_file;
    co->tls_server_name = o->tls_server_name;
    co->log = cass_log_cb;
    co->log_ctx = (void *)lc;
}

/* Polls session c until statement h is prepared and a host is ready, or
 * deadline. Returns 0, 1 on timeout, -1 if the statement was refused. */
/* Startup (main thread): waits for the session's sockets or next timer, at
 * most 100 ms and not past deadline, then lets it process what is due. */
static void cass_drive(sl_cql_cluster_t *c, int64_t deadline)
{
    struct pollfd fds[256];
    int64_t now = sl_now_ms();
    int n = sl_cql_cluster_pollfds(c, fds, (int)SL_ARRAY_LEN(fds));
    int64_t wait = SL_MAX(0, SL_MIN(deadline - now, 100));
    int64_t nt = sl_cql_cluster_next_timeout_ms(c);
    if (nt >= 0) {
        wait = SL_MAX(0, SL_MIN(wait, nt - now));
    }
    if (poll(fds, (nfds_t)n, (int)wait) < 0 && errno != EINTR) {
        n = 0;
    }
    sl_cql_cluster_process(c, fds, n, sl_now_ms());
}

static int cass_wait_prepared(sl_cql_cluster_t *c, int h, int64_t deadline)
{
    for (;;) {
        if (sl_cql_cluster_prepare_error(c, h) != NULL) {
            return -1;
        }
        if (sl_cql_cluster_prepared(c, h) != NULL && sl_cql_cluster_ready(c)) {
            return 0;
        }
        if (sl_now_ms() >= deadline) {
            return 1;
        }
        cass_drive(c, deadline);
    }
}

/* Why the session is not up, short: the last part of its first clause
 * ("connection refused" of "cannot reach a contact point: 127.0.0.1:9042:
 * connect to 127.0.0.1:9042: Connection refused; ..."), into out. */
static void cass_short_error(const char *e, char *out, size_t n)
{
    const char *semi = strchr(e, ';');
    size_t len = semi ? (size_t)(semi - e) : strlen(e);
    const char *start = e;
    for (const char *p = e; p + 1 < e + len; p++) {
        if (p[0] == ':' && p[1] == ' ') {
            start = p + 2;
        }
    }
    len -= (size_t)(start - e);
    if (len == 0) {
        snprintf(out, n, "no answer");
        return;
    }
    snprintf(out, n, "%.*s", (int)SL_MIN(len, 120), start);
    /* strerror's capital: "Connection refused" inside a sentence */
    if (out[0] >= 'A' && out[0] <= 'Z' && out[1] >= 'a' && out[1] <= 'z') {
        out[0] = (char)(out[0] - 'A' + 'a');
    }
}

/* ---- the table's clustering columns (for upsert batches) ----------------------------------- */

typedef struct cass_cols {
    bool done, failed;
    bool counter_table; /* some column is a counter */
    char names[64][64];
    size_t n;
    char msg[256];
} cass_cols_t;

static void cass_cols_cb(void *ctx, const sl_cql_outcome_t *out)
{
    cass_cols_t *cc = ctx;
    cc->done = true;
    if (!out->ok || out->response->result.kind != SL_CQL_RESULT_ROWS ||
        out->response->result.rows.meta.n_cols != 3) {
        cc->failed = true;
        snprintf(cc->msg, sizeof(cc->msg), "%s", out->ok ? "unexpected result" : out->message);
        return;
    }
    sl_cql_row_iter_t it;
    sl_cql_bytes_t cells[3];
    sl_cql_rows_iter(&out->response->result.rows, &it);
    while (sl_cql_rows_next(&it, cells)) {
        sl_cql_str_t name, kind, type;
        if (sl_cql_val_text(cells[0], &name) != 0 || sl_cql_val_text(cells[1], &kind) != 0 ||
            sl_cql_val_text(cells[2], &type) != 0) {
            continue;
        }
        if (type.len == 7 && memcmp(type.data, "counter", 7) == 0) {
            cc->counter_table = true;
        }
        if (kind.len != 10 || memcmp(kind.data, "clustering", 10) != 0) {
            continue;
        }
        if (cc->n == SL_ARRAY_LEN(cc->names) || name.len >= sizeof(cc->names[0])) {
            cc->failed = true;
            snprintf(cc->msg, sizeof(cc->msg), "too many or too long clustering columns");
            return;
        }
        memcpy(cc->names[cc->n], name.data, name.len);
        cc->names[cc->n++][name.len] = '\0';
    }
}

/* Appends s to b as a CQL string literal ('...' with quotes doubled). */
static void cass_literal(sl_buf_t *b, const char *s)
{
    sl_buf_append(b, "'", 1);
    for (; *s; s++) {
        sl_buf_append(b, s, 1);
        if (*s == '\'') {
            sl_buf_append(b, "'", 1);
        }
    }
    sl_buf_append(b, "'", 1);
}

/* Reads the table's columns from system_schema.columns. A table with a
 * counter column makes the statement a counter update even without a counter
 * marker (`SET views = views + 1`): COUNTER batches, and the counter-unknown
 * rule. For other tables, finds which markers bind the clustering columns (by
 * name); a statement that leaves one unbound by name gets rows_known false: its
 * rows of one partition are then never batched together. */
static void cass_find_clustering(cass_shared_t *sh, sl_cql_cluster_t *c, const sl_cql_prepared_t *p,
                                 int64_t deadline)
{
    sh->rows_known = false;
    sh->n_ck = 0;
    if (p->bind.n_cols == 0 || p->bind.cols == NULL) {
        return;
    }
    sl_buf_t q = SL_BUF_INIT;
    sl_buf_printf(
        &q, "SELECT column_name, kind, type FROM system_schema.columns WHERE keyspace_name = ");
    cass_literal(&q, p->bind.cols[0].keyspace);
    sl_buf_printf(&q, " AND table_name = ");
    cass_literal(&q, p->bind.cols[0].table);
    cass_cols_t cols = {0};
    const char *err = NULL;
    sl_cql_send_rc_t rc = SL_CQL_SEND_AGAIN;
    while (sl_now_ms() < deadline) {
        if (rc != SL_CQL_SEND_OK) {
            rc = sl_cql_cluster_query(c, q.data, q.len, SL_CQL_ONE, cass_cols_cb, &cols, &err);
            if (rc == SL_CQL_SEND_INVALID) {
                break;
            }
        }
        if (cols.done) {
            break;
        }
        cass_drive(c, deadline);
    }
    sl_buf_free(&q);
    if (!cols.done || cols.failed) {
        sl_log_warn("sink.cassandra",
                    "cannot read the table's clustering columns: records of one partition are "
                    "sent one per request (no batching)",
                    "error=\"%s\"", cols.done ? cols.msg : (err ? err : "timed out"));
        return;
    }
    if (cols.counter_table && !sh->bind.counter) {
        sh->bind.counter = true;
        sl_log_info("sink.cassandra",
                    "the table has counter columns: counter updates (COUNTER batches; a write "
                    "of unknown fate follows counter_unknown)",
                    NULL);
    }
    if (sh->bind.counter) {
        return;
    }
    for (size_t i = 0; i < cols.n; i++) {
        size_t m = 0;
        while (m < sh->bind.n && strcmp(sh->bind.markers[m].name, cols.names[i]) != 0) {
            m++;
        }
        if (m == sh->bind.n) {
            sl_log_warn("sink.cassandra",
                        "no bind marker is named after a clustering column: records of one "
                        "partition are sent one per request (name the marker after the column "
                        "to batch them)",
                        "column=%s", cols.names[i]);
            sh->n_ck = 0;
            return;
        }
        sh->ck[sh->n_ck++] = (uint16_t)m;
    }
    sh->rows_known = true;
}

static int cass_prepare_binding(cass_shared_t *sh, char *err)
{
    const cass_opts_t *o = sh->o;
    char e[512] = "";
    static const cass_logctx_t startup_log = {"sink.cassandra", -1};
    sl_cql_cluster_opts_t co;
    cass_session_opts(sh, &startup_log, &co);
    sl_cql_cluster_t *c = sl_cql_cluster_create(&co, e, sizeof(e));
    if (c == NULL) {
        cass_errf(err, "sink.cassandra: %s", e);
        return -1;
    }
    int rc = -1;
    int h = sl_cql_cluster_prepare(c, o->statement, strlen(o->statement), e, sizeof(e));
    if (h < 0) {
        cass_errf(err, "%ssink.cassandra: statement: %s", sh->stmt_at, e);
        goto out;
    }
    int w = cass_wait_prepared(c, h, sl_now_ms() + o->startup_timeout_ms);
    if (w < 0) {
        cass_errf(err, "%ssink.cassandra: Cassandra refused the statement, fix statement: %s",
                  sh->stmt_at, sl_cql_cluster_prepare_error(c, h));
        goto out;
    }
    if (w > 0) {
        char t[32], why[128], at[128];
        const char *ce = sl_cql_cluster_error(c);
        cass_fmt_ms(o->startup_timeout_ms, t, sizeof(t));
        snprintf(at, sizeof(at), "%s:%lld%s", o->contact_points.items[0], (long long)o->port,
                 o->contact_points.n > 1 ? " (and the other contact points)" : "");
        const char *tls = o->tls ? strstr(ce, "TLS") : NULL;
        const char *ver = strstr(ce, "CQL native protocol v");
        if (ver != NULL && strstr(ver, " at most") != NULL) {
            int v = ver[21] >= '1' && ver[21] <= '9' ? ver[21] - '0' : 0;
            cass_errf(err,
                      "sink.cassandra: Cassandra at %s speaks CQL native protocol v%d at most; "
                      "Sluice speaks v4: it needs Cassandra 2.2 or later (upgrade the cluster)",
                      at, v);
        } else if (tls != NULL) {
            /* a TLS failure: the connection's own text says what to check */
            char msg[256];
            const char *failed = strstr(tls, " failed: ");
            if (strncmp(tls, "TLS handshake with ", 19) == 0 && failed != NULL) {
                tls = failed + 9; /* the host is in the message already */
            }
            const char *semi = strchr(tls, ';');
            size_t len = semi ? (size_t)(semi - tls) : strlen(tls);
            snprintf(msg, sizeof(msg), "%.*s", (int)SL_MIN(len, sizeof(msg) - 1), tls);
            int depth = 0;
            for (const char *q = msg; *q; q++) {
                depth += *q == '(' ? 1 : *q == ')' ? -1 : 0;
            }
            size_t ml = strlen(msg);
            if (depth < 0 && ml > 0 && msg[ml - 1] == ')') {
                msg[ml - 1] = '\0'; /* the session's "(host: error)" wrapper */
            }
            cass_errf(err, "sink.cassandra: no TLS connection to %s within %s: %s", at, t, msg);
        } else if (ce[0] == '\0' || strncmp(ce, "cannot reach", 12) == 0 ||
                   strncmp(ce, "connecting", 10) == 0) {
            cass_short_error(strncmp(ce, "connecting", 10) == 0 ? "" : ce, why, sizeof(why));
            cass_errf(err,
                      "sink.cassandra: cannot reach Cassandra at %s within %s (%s): start it or "
                      "fix contact_points",
                      at, t, why);
        } else {
            /* reached, but not usable: the session's message says why and
             * what to do (a missing keyspace, refused credentials, ...) */
            cass_errf(err, "sink.cassandra: Cassandra at %s not usable within %s: %s", at, t, ce);
        }
        goto out;
    }
    const sl_cql_prepared_t *p = sl_cql_cluster_prepared(c, h);
    if (sl_cass_binding_build(&p->bind, sh->schema, &sh->bind, e, sizeof(e)) != 0) {
        cass_errf(err, "%ssink.cassandra: statement: %s", sh->stmt_at, e);
        goto out;
    }
    cass_find_clustering(sh, c, p, sl_now_ms() + o->startup_timeout_ms);
    if (sh->bind.counter && sh->wt_mode != CASS_WT_NONE) {
        cass_errf(err,
                  "sink.cassandra: writetime is set but the statement updates a counter, and "
                  "Cassandra refuses custom timestamps on counter updates: set writetime: none");
        goto out;
    }
    rc = 0;
out:
    sl_cql_cluster_destroy(c);
    return rc;
}

static void cass_shared_free(cass_shared_t *sh)
{
    if (sh == NULL) {
        return;
    }
    cass_free_password(sh->password);
    sl_cass_binding_free(&sh->bind);
    free(sh);
}

static int cass_init(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err)
{
    const cass_opts_t *o = opts;
    cass_shared_t *sh = sl_xcalloc(1, sizeof(*sh));
    sh->o = o;
    sh->schema = info->schema;
    const sl_node_t *st = info->sink_node ? sl_node_get(info->sink_node, "statement") : NULL;
    if (st && info->config_path) {
        snprintf(sh->stmt_at, sizeof(sh->stmt_at), "%s:%d: ", info->config_path, st->line);
    }
    sh->consistency = cass_consistency_codes[o->consistency < 0 ? 6 : o->consistency];
    sh->wt_field = -1;
    if (o->contact_points.n == 0) {
        cass_errf(err, "sink.cassandra: contact_points is empty: list at least one host");
        goto fail;
    }
    if (strcmp(o->writetime, "none") == 0) {
        sh->wt_mode = CASS_WT_NONE;
    } else if (strcmp(o->writetime, "kafka") == 0) {
        sh->wt_mode = CASS_WT_KAFKA;
    } else {
        sh->wt_mode = CASS_WT_FIELD;
        sh->wt_field = sl_schema_find(sh->schema, o->writetime, strlen(o->writetime));
        if (sh->wt_field < 0) {
            cass_errf(err,
                      "sink.cassandra: writetime '%s' is neither none, kafka nor a schema field: "
                      "fix it or add a timestamp field of that name",
                      o->writetime);
            goto fail;
        }
        if (sh->schema->fields[sh->wt_field].type != SL_TYPE_TIMESTAMP) {
            cass_errf(err, "sink.cassandra: writetime field '%s' is %s: declare it as timestamp",
                      o->writetime, sl_type_name(sh->schema->fields[sh->wt_field].type));
            goto fail;
        }
    }
    if (!o->tls && (o->tls_ca_file || o->tls_cert_file || o->tls_key_file || o->tls_server_name)) {
        cass_errf(err, "sink.cassandra: %s is set but tls is false: set tls: true or remove it",
                  o->tls_ca_file     ? "tls_ca_file"
                  : o->tls_cert_file ? "tls_cert_file"
                  : o->tls_key_file  ? "tls_key_file"
                                     : "tls_server_name");
        goto fail;
    }
    if ((o->tls_cert_file == NULL) != (o->tls_key_file == NULL)) {
        cass_errf(err, "sink.cassandra: tls_cert_file and tls_key_file go together: set both");
        goto fail;
    }
    if (cass_read_password(o, &sh->password, err) != 0) {
        goto fail;
    }
    atomic_init(&sh->in_flight, 0);
    atomic_init(&sh->any_refused, false);
    for (size_t i = 0; i < CASS_MAX_LANES; i++) {
        atomic_init(&sh->refused[i], false);
        atomic_init(&sh->lane_state[i], CASS_LANE_UNKNOWN);
        atomic_init(&sh->hosts_up[i], 0);
    }
    if (cass_prepare_binding(sh, err) != 0) {
        goto fail;
    }
    sl_log_info("sink.cassandra", "statement prepared", "markers=%zu counter=%s", sh->bind.n,
                sh->bind.counter ? "true" : "false");
    *shared = sh;
    return 0;
fail:
    cass_shared_free(sh);
    return -1;
}

static void cass_fini(void *shared)
{
    cass_shared_free(shared);
}

/* ---- the in-flight budget ------------------------------------------------------------------ */

/* Takes up to n records of the process-wide budget; returns how many (0:
 * full, and this lane is woken when room frees up). */
static size_t cass_budget_take(cass_t *s, size_t n)
{
    cass_shared_t *sh = s->sh;
    long long max = sh->o->max_in_flight;
    for (int attempt = 0; attempt < 2; attempt++) {
        long long cur = atomic_load(&sh->in_flight);
        while (cur < max) {
            long long take = SL_MIN((long long)n, max - cur);
            if (atomic_compare_exchange_weak(&sh->in_flight, &cur, cur + take)) {
                if (attempt > 0) {
                    atomic_store(&sh->refused[s->lane_id], false);
                }
                return (size_t)take;
            }
        }
        /* full: ask to be woken, then look again (room may have freed
         * before the flags were seen) */
        atomic_store(&sh->refused[s->lane_id], true);
        atomic_store(&sh->any_refused, true);
    }
    return 0;
}

/* Gives n records back. Lanes that found the budget full are woken once it
 * is down to three quarters, not at every acknowledgement: a wake-up is a
 * write to a pipe and, on a busy machine, often a context switch (perf: a
 * quarter of a counter pipeline's switches were these). A lane with
 * requests of its own in flight also wakes on their responses, and the
 * giving lane tries again in its own loop, so it is never woken. */
static void cass_budget_give(cass_t *s, size_t n)
{
    cass_shared_t *sh = s->sh;
    if (n == 0) {
        return;
    }
    long long left = atomic_fetch_sub(&sh->in_flight, (long long)n) - (long long)n;
    long long max = sh->o->max_in_flight;
    if (left > max - max / 4 || !atomic_load(&sh->any_refused) ||
        !atomic_exchange(&sh->any_refused, false)) {
        return;
    }
    for (size_t i = 0; i < sh->n_lanes; i++) {
        if (sh->lanes[i] && atomic_exchange(&sh->refused[i], false) && (int)i != s->lane_id) {
            sl_lane_wake(sh->lanes[i]);
        }
    }
}

/* ---- lane instances ------------------------------------------------------------------------ */

static int cass_open(void **ctx, void *shared, const sl_plugin_env_t *env, char *err)
{
    cass_shared_t *sh = shared;
    if (env->lane_id < 0 || env->lane_id >= CASS_MAX_LANES) {
        cass_errf(err, "sink.cassandra: at most %d lanes: lower runtime.lanes", CASS_MAX_LANES);
        return -1;
    }
    cass_t *s = sl_xcalloc(1, sizeof(*s));
    s->sh = sh;
    s->lane = env->lane;
    s->lane_id = env->lane_id;
    s->name = env->name ? env->name : "sink.cassandra";
    s->logctx = (cass_logctx_t){s->name, s->lane_id};
    s->parts = sl_xcalloc(sh->bind.n_pk + 1, sizeof(*s->parts));
    sl_cql_cluster_opts_t co;
    cass_session_opts(sh, &s->logctx, &co);
    char e[256] = "";
    s->cc = sl_cql_cluster_create(&co, e, sizeof(e));
    if (s->cc == NULL) {
        cass_errf(err, "sink.cassandra: %s", e);
        free(s->parts);
        free(s);
        return -1;
    }
    s->stmt =
        sl_cql_cluster_prepare(s->cc, sh->o->statement, strlen(sh->o->statement), e, sizeof(e));
    if (s->stmt < 0) {
        cass_errf(err, "%ssink.cassandra: statement: %s", sh->stmt_at, e);
        sl_cql_cluster_destroy(s->cc);
        free(s->parts);
        free(s);
        return -1;
    }
    sh->lanes[s->lane_id] = s->lane;
    sh->n_lanes = SL_MAX(sh->n_lanes, (size_t)s->lane_id + 1);
    *ctx = s;
    return 0;
}

static void cass_grow_scratch(cass_t *s, size_t n_recs)
{
    size_t nm = s->sh->bind.n ? s->sh->bind.n : 1;
    if (n_recs > s->cap_recs) {
        size_t cap = SL_MAX(n_recs, s->cap_recs * 2);
        s->items = sl_xrealloc(s->items, cap * sizeof(*s->items));
        s->starts = sl_xrealloc(s->starts, (cap + 1) * sizeof(*s->starts));
        s->key_off = sl_xrealloc(s->key_off, cap * sizeof(*s->key_off));
        s->row_off = sl_xrealloc(s->row_off, cap * sizeof(*s->row_off));
        s->rej = sl_xrealloc(s->rej, cap * sizeof(*s->rej));
        s->rows = sl_xrealloc(s->rows, cap * sizeof(*s->rows));
        s->cap_recs = cap;
    }
    if (n_recs * nm > s->cap_vals) {
        size_t cap = SL_MAX(n_recs * nm, s->cap_vals * 2);
        s->vals = sl_xrealloc(s->vals, cap * sizeof(*s->vals));
        s->offs = sl_xrealloc(s->offs, cap * sizeof(*s->offs));
        s->cap_vals = cap;
    }
}

static int64_t cass_record_ts(const cass_shared_t *sh, sl_batch_t *b, uint32_t idx)
{
    if (sh->wt_mode == CASS_WT_KAFKA) {
        sl_origin_t o;
        sl_batch_origin(b, idx, &o);
        return o.timestamp_ms >= 0 ? o.timestamp_ms * 1000 : SL_CASS_NO_TS;
    }
    if (sh->wt_mode == CASS_WT_FIELD) {
        const sl_value_t *v = &sl_batch_values(b, idx)[sh->wt_field];
        return v->is_null ? SL_CASS_NO_TS : v->u.i;
    }
    return SL_CASS_NO_TS;
}

static void cass_on_outcome(void *ctx, const sl_cql_outcome_t *out);

static cass_req_t *cass_req_new(cass_t *s, sl_batch_t *b, uint32_t n)
{
    cass_req_t *r;
    if (n == 1 && s->free1 != NULL) {
        r = s->free1;
        s->free1 = (cass_req_t *)r->batch;
        s->n_free1--;
    } else {
        r = sl_xmalloc(sizeof(*r) + n * sizeof(uint32_t));
    }
    r->s = s;
    r->batch = b;
    r->n = n;
    return r;
}

static void cass_req_free(cass_t *s, cass_req_t *r)
{
    if (r->n != 1 || s->n_free1 >= CASS_FREE_MAX) {
        free(r);
        return;
    }
    r->batch = (sl_batch_t *)s->free1;
    s->free1 = r;
    s->n_free1++;
}

static sl_cql_send_rc_t cass_send_rows(cass_t *s, cass_req_t *r, const sl_cql_bytes_t **rows,
                                       int64_t ts, const char **err)
{
    cass_shared_t *sh = s->sh;
    sl_cql_request_t q = {
        .stmt = s->stmt,
        .rows = rows,
        .n_rows = r->n,
        .n_values = sh->bind.n,
        .batch_type = sh->bind.counter ? SL_CQL_BATCH_COUNTER : SL_CQL_BATCH_UNLOGGED,
        .consistency = sh->consistency,
        .has_timestamp = ts != SL_CASS_NO_TS,
        .timestamp = ts == SL_CASS_NO_TS ? 0 : ts,
    };
    *err = NULL;
    sl_cql_send_rc_t rc = sl_cql_cluster_send(s->cc, &q, cass_on_outcome, r, err);
    if (rc == SL_CQL_SEND_OK) {
        atomic_fetch_add_explicit(r->n > 1 ? &sh->req_batch : &sh->req_execute, 1,
                                  memory_order_relaxed);
    }
    return rc;
}

static void cass_report(cass_t *s, cass_req_t *r, sl_status_t st, const char *reason)
{
    for (uint32_t i = 0; i < r->n; i++) {
        sl_batch_result(r->batch, r->idx[i], st, reason);
    }
    cass_budget_give(s, r->n);
}

static void cass_push_pending(cass_t *s, cass_req_t *r)
{
    if (s->n_pending == s->cap_pending) {
        s->cap_pending = s->cap_pending ? s->cap_pending * 2 : 16;
        s->pending = sl_xrealloc(s->pending, s->cap_pending * sizeof(*s->pending));
    }
    s->pending[s->n_pending++] = r;
}

/* Encodes request r's records again and sends it. Returns OK when r is sent
 * or answered (then it is no longer the caller's), AGAIN or DOWN to keep it
 * for later, or INVALID (only for a request of several records, kept by the
 * caller: send them one by one). A record that fails to encode is rejected
 * (cannot happen for records that encoded before). */
static sl_cql_send_rc_t cass_send_req(cass_t *s, cass_req_t *r)
{
    cass_shared_t *sh = s->sh;
    size_t nm = sh->bind.n;
    cass_grow_scratch(s, r->n);
    sl_buf_reset(&s->data);
    for (uint32_t i = 0; i < r->n; i++) {
        sl_reason_t why;
        if (sl_cass_encode(&sh->bind, sh->schema, sl_batch_values(r->batch, r->idx[i]), &s->data,
                           s->vals + i * nm, s->offs + i * nm, &why) != 0) {
            cass_report(s, r, SL_STATUS_REJECT, why.text);
            cass_req_free(s, r);
            return SL_CQL_SEND_OK;
        }
    }
    sl_cass_resolve(s->vals, s->offs, r->n * nm, &s->data);
    for (uint32_t i = 0; i < r->n; i++) {
        s->rows[i] = s->vals + i * nm;
    }
    const char *err = NULL;
    sl_cql_send_rc_t rc =
        cass_send_rows(s, r, s->rows, cass_record_ts(sh, r->batch, r->idx[0]), &err);
    if (rc == SL_CQL_SEND_INVALID) {
        atomic_fetch_add(&sh->errors[CASS_ERR_INVALID], 1);
        if (r->n > 1) {
            return rc;
        }
        char reason[2 * SL_REASON_MAX];
        snprintf(reason, sizeof(reason), "cassandra: %s", err ? err : "request refused");
        cass_report(s, r, SL_STATUS_REJECT, reason);
        cass_req_free(s, r);
        return SL_CQL_SEND_OK;
    }
    return rc;
}

/* Replaces pending[i], a request of several records, by one request per
 * record, in order. */
static void cass_split_pending(cass_t *s, size_t i)
{
    cass_req_t *r = s->pending[i];
    size_t extra = r->n - 1;
    for (size_t k = 0; k < extra; k++) {
        cass_push_pending(s, NULL); /* room */
    }
    memmove(s->pending + i + r->n, s->pending + i + 1,
            (s->n_pending - extra - i - 1) * sizeof(*s->pending));
    for (uint32_t k = 0; k < r->n; k++) {
        cass_req_t *one = cass_req_new(s, r->batch, 1);
        one->idx[0] = r->idx[k];
        s->pending[i + k] = one;
    }
    cass_req_free(s, r);
}

/* Sends what waits in pending, in order, until the session is full. */
static void cass_send_pending(cass_t *s)
{
    size_t i = 0;
    while (i < s->n_pending) {
        sl_cql_send_rc_t rc = cass_send_req(s, s->pending[i]);
        if (rc == SL_CQL_SEND_INVALID) {
            cass_split_pending(s, i); /* too big for one frame, say */
            continue;
        }
        if (rc != SL_CQL_SEND_OK) {
            break;
        }
        i++;
    }
    memmove(s->pending, s->pending + i, (s->n_pending - i) * sizeof(*s->pending));
    s->n_pending -= i;
}

static void cass_log_fatal(cass_t *s, const sl_cql_outcome_t *out)
{
    int64_t now = sl_now_ms();
    long long last = atomic_load(&s->sh->last_fatal_log_ms);
    if (last != 0 && now - last < CASS_FATAL_LOG_EVERY_MS) {
        return;
    }
    if (!atomic_compare_exchange_strong(&s->sh->last_fatal_log_ms, &last, now)) {
        return;
    }
    sl_log_error(s->name,
                 "Cassandra refuses this client (authentication or protocol error): check user "
                 "and password_env/password_file, the user's permissions, and that the server "
                 "speaks CQL protocol v4; writes are retried meanwhile",
                 "error=\"%s\"", out->message ? out->message : "");
}

static void cass_on_outcome(void *ctx, const sl_cql_outcome_t *out)
{
    cass_req_t *r = ctx;
    cass_t *s = r->s;
    cass_shared_t *sh = s->sh;
    if (out->ok) {
        cass_report(s, r, SL_STATUS_OK, NULL);
        cass_req_free(s, r);
        return;
    }
    int cls = CASS_ERR_RETRIABLE;
    switch (out->cls) {
    case SL_CQL_ERRCLASS_PERMANENT:
        cls = CASS_ERR_PERMANENT;
        break;
    case SL_CQL_ERRCLASS_FATAL:
        cls = CASS_ERR_FATAL;
        break;
    case SL_CQL_ERRCLASS_REPREPARE:
        cls = CASS_ERR_REPREPARE;
        break;
    default:
        break;
    }
    atomic_fetch_add_explicit(&sh->errors[cls], 1, memory_order_relaxed);
    const char *msg = out->message ? out->message : "unknown error";
    sl_log_debug(s->name, "request failed", "lane=%d class=%s code=%d records=%u error=\"%s\"",
                 s->lane_id, cass_err_names[cls], (int)out->code, (unsigned)r->n, msg);
    if (s->closing) {
        cass_report(s, r, SL_STATUS_RETRY, NULL); /* shutting down: redelivered later */
        cass_req_free(s, r);
        return;
    }
    char reason[2 * SL_REASON_MAX];
    switch (cls) {
    case CASS_ERR_PERMANENT:
        if (r->n > 1) {
            /* Cassandra validates a whole batch before executing any of it:
             * find the bad records by sending each alone (from pending, once
             * process has returned: not from inside the session's callback) */
            for (uint32_t i = 0; i < r->n; i++) {
                cass_req_t *one = cass_req_new(s, r->batch, 1);
                one->idx[0] = r->idx[i];
                cass_push_pending(s, one);
            }
            cass_req_free(s, r);
            return;
        }
        snprintf(reason, sizeof(reason), "cassandra: %s", msg);
        cass_report(s, r, SL_STATUS_REJECT, reason);
        break;
    case CASS_ERR_FATAL:
        cass_log_fatal(s, out);
        cass_report(s, r, SL_STATUS_RETRY, NULL);
        break;
    case CASS_ERR_REPREPARE:
        cass_report(s, r, SL_STATUS_RETRY, NULL);
        break;
    default:
        if (sh->bind.counter && out->maybe_applied) {
            atomic_fetch_add_explicit(&sh->counter_unknown, r->n, memory_order_relaxed);
            if (sh->o->counter_unknown == 0) {
                snprintf(reason, sizeof(reason),
                         "cassandra: counter update may or may not have been applied (%s); not "
                         "resent to avoid double counting (sink.cassandra.counter_unknown: retry "
                         "resends)",
                         msg);
                cass_report(s, r, SL_STATUS_REJECT, reason);
                break;
            }
        }
        cass_report(s, r, SL_STATUS_RETRY, NULL);
        break;
    }
    cass_req_free(s, r);
}

/* Reports the rejected records among the first n offered (their reasons
 * were kept in s->reasons). */
static void cass_report_rejects(cass_t *s, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s->rej[i] != UINT32_MAX) {
            sl_batch_result(b, idx[i], SL_STATUS_REJECT, s->reasons.data + s->rej[i]);
            k++;
        }
    }
    cass_budget_give(s, k);
}

static size_t cass_submit(void *ctx, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    cass_t *s = ctx;
    cass_shared_t *sh = s->sh;
    if (s->n_pending > 0) {
        cass_send_pending(s);
        if (s->n_pending > 0) {
            return 0;
        }
    }
    if (!sl_cql_cluster_ready(s->cc)) {
        return 0;
    }
    size_t take = cass_budget_take(s, n);
    if (take == 0) {
        return 0;
    }
    size_t nm = sh->bind.n;
    cass_grow_scratch(s, take);
    sl_buf_reset(&s->data);
    sl_buf_reset(&s->keys);
    sl_buf_reset(&s->reasons);

    /* encode; a record that cannot be encoded is rejected (reported below) */
    for (size_t i = 0; i < take; i++) {
        sl_reason_t why;
        s->rej[i] = UINT32_MAX;
        if (sl_cass_encode(&sh->bind, sh->schema, sl_batch_values(b, idx[i]), &s->data,
                           s->vals + i * nm, s->offs + i * nm, &why) != 0) {
            s->rej[i] = (uint32_t)s->reasons.len;
            sl_buf_append(&s->reasons, why.text, strlen(why.text) + 1);
        }
    }
    sl_cass_resolve(s->vals, s->offs, take * nm, &s->data);

    /* routing keys and sizes */
    size_t m = 0;
    for (size_t i = 0; i < take; i++) {
        if (s->rej[i] != UINT32_MAX) {
            continue;
        }
        const sl_cql_bytes_t *row = s->vals + i * nm;
        sl_cass_item_t *it = &s->items[m++];
        it->pos = (uint32_t)i;
        it->ts = cass_record_ts(sh, b, idx[i]);
        it->bytes = CASS_ROW_OVERHEAD;
        for (size_t v = 0; v < nm; v++) {
            it->bytes += 4 + (size_t)SL_MAX(0, row[v].len);
        }
        s->key_off[i] = (uint32_t)s->keys.len;
        it->key_len = 0;
        if (sh->bind.n_pk > 0) {
            for (size_t k = 0; k < sh->bind.n_pk; k++) {
                s->parts[k] = row[sh->bind.pk[k]];
            }
            if (sl_cql_routing_key(s->parts, sh->bind.n_pk, &s->keys) == 0) {
                it->key_len = s->keys.len - s->key_off[i];
            }
        }
        /* the row: partition key, then each clustering value as [int len][bytes] */
        s->row_off[i] = (uint32_t)s->keys.len;
        it->row_len = 0;
        if (sh->rows_known) {
            sl_buf_reserve(&s->keys, it->key_len); /* the source is in the same buffer */
            sl_buf_append(&s->keys, s->keys.data + s->key_off[i], it->key_len);
            for (size_t k = 0; k < sh->n_ck; k++) {
                sl_cql_bytes_t v = row[sh->ck[k]];
                uint8_t len[4] = {(uint8_t)((uint32_t)v.len >> 24),
                                  (uint8_t)((uint32_t)v.len >> 16), (uint8_t)((uint32_t)v.len >> 8),
                                  (uint8_t)v.len};
                sl_buf_append(&s->keys, len, 4);
                if (v.len > 0) {
                    sl_buf_append(&s->keys, v.ptr, (size_t)v.len);
                }
            }
            it->row_len = s->keys.len - s->row_off[i];
        }
    }
    for (size_t j = 0; j < m; j++) {
        uint32_t pos = s->items[j].pos;
        s->items[j].key = (const uint8_t *)s->keys.data + s->key_off[pos];
        s->items[j].row = sh->rows_known ? (const uint8_t *)s->keys.data + s->row_off[pos] : NULL;
    }

    size_t nr = sl_cass_group(s->items, m, (size_t)sh->o->batch_max_rows,
                              (size_t)sh->o->batch_max_bytes, !sh->bind.counter, s->starts);
    for (size_t q = 0; q < nr; q++) {
        size_t a = s->starts[q], e = s->starts[q + 1];
        cass_req_t *r = cass_req_new(s, b, (uint32_t)(e - a));
        for (size_t j = a; j < e; j++) {
            r->idx[j - a] = idx[s->items[j].pos];
            s->rows[j - a] = s->vals + (size_t)s->items[j].pos * nm;
        }
        const char *err = NULL;
        sl_cql_send_rc_t rc = cass_send_rows(s, r, s->rows, s->items[a].ts, &err);
        if (rc == SL_CQL_SEND_OK) {
            continue;
        }
        if (rc == SL_CQL_SEND_INVALID) {
            atomic_fetch_add(&sh->errors[CASS_ERR_INVALID], 1);
            if (r->n > 1) {
                for (uint32_t i = 0; i < r->n; i++) {
                    cass_req_t *one = cass_req_new(s, b, 1);
                    one->idx[0] = r->idx[i];
                    cass_push_pending(s, one);
                }
            } else {
                char reason[2 * SL_REASON_MAX];
                snprintf(reason, sizeof(reason), "cassandra: %s", err ? err : "request refused");
                cass_report(s, r, SL_STATUS_REJECT, reason);
            }
            cass_req_free(s, r);
            continue;
        }
        /* AGAIN or DOWN */
        if (q == 0) {
            /* nothing sent: take only the rejected records before the first
             * record of this request, and give the rest of the budget back */
            size_t first = s->items[a].pos;
            cass_req_free(s, r);
            cass_report_rejects(s, b, idx, first);
            cass_budget_give(s, take - first);
            return first;
        }
        /* part sent: keep the rest here (taken, in the budget) */
        cass_push_pending(s, r);
        for (size_t q2 = q + 1; q2 < nr; q2++) {
            size_t a2 = s->starts[q2], e2 = s->starts[q2 + 1];
            cass_req_t *r2 = cass_req_new(s, b, (uint32_t)(e2 - a2));
            for (size_t j = a2; j < e2; j++) {
                r2->idx[j - a2] = idx[s->items[j].pos];
            }
            cass_push_pending(s, r2);
        }
        break;
    }
    cass_report_rejects(s, b, idx, take);
    return take;
}

static void cass_after_io(cass_t *s)
{
    if (s->n_pending > 0) {
        cass_send_pending(s);
    }
    int64_t now = sl_now_ms();
    if (now < s->next_state_ms) {
        return;
    }
    s->next_state_ms = now + 250;
    cass_shared_t *sh = s->sh;
    int state = CASS_LANE_UNKNOWN;
    if (sl_cql_cluster_ready(s->cc)) {
        state = CASS_LANE_READY;
    } else if (sl_cql_cluster_error(s->cc)[0] != '\0') {
        state = CASS_LANE_DOWN;
    }
    atomic_store(&sh->lane_state[s->lane_id], state);
    int up = 0;
    size_t nh = sl_cql_cluster_hosts(s->cc);
    for (size_t i = 0; i < nh; i++) {
        sl_cql_host_info_t hi;
        sl_cql_cluster_host(s->cc, i, &hi);
        up += hi.local && hi.up;
    }
    atomic_store(&sh->hosts_up[s->lane_id], up);
}

static void cass_poll(void *ctx)
{
    cass_t *s = ctx;
    sl_cql_cluster_process(s->cc, NULL, 0, sl_now_ms());
    cass_after_io(s);
}

static int cass_pollfds(void *ctx, struct pollfd *fds, int max, int *timeout_ms)
{
    cass_t *s = ctx;
    int n = sl_cql_cluster_pollfds(s->cc, fds, max);
    int64_t nt = sl_cql_cluster_next_timeout_ms(s->cc);
    if (nt >= 0) {
        int64_t d = SL_MAX(0, nt - sl_now_ms());
        if (d < *timeout_ms) {
            *timeout_ms = (int)d;
        }
    }
    if (s->n_pending > 0 && *timeout_ms > 10) {
        *timeout_ms = 10;
    }
    return n;
}

static void cass_io(void *ctx, const struct pollfd *fds, int n)
{
    cass_t *s = ctx;
    sl_cql_cluster_process(s->cc, fds, n, sl_now_ms());
    cass_after_io(s);
}

static void cass_flush(void *ctx)
{
    cass_t *s = ctx;
    if (s->n_pending > 0) {
        cass_send_pending(s);
    }
    sl_cql_cluster_process(s->cc, NULL, 0, sl_now_ms());
}

static bool cass_ready(void *shared)
{
    cass_shared_t *sh = shared;
    bool down = false;
    for (size_t i = 0; i < CASS_MAX_LANES; i++) {
        int st = atomic_load(&sh->lane_state[i]);
        if (st == CASS_LANE_READY) {
            return true;
        }
        down |= st == CASS_LANE_DOWN;
    }
    return !down;
}

static void cass_metrics(void *shared, sl_buf_t *out)
{
    cass_shared_t *sh = shared;
    sl_buf_puts(out, "# HELP sluice_cassandra_requests_total CQL requests sent to Cassandra "
                     "(execute: one record; batch: one partition's records).\n"
                     "# TYPE sluice_cassandra_requests_total counter\n");
    sl_buf_printf(out, "sluice_cassandra_requests_total{kind=\"execute\"} %llu\n",
                  (unsigned long long)atomic_load(&sh->req_execute));
    sl_buf_printf(out, "sluice_cassandra_requests_total{kind=\"batch\"} %llu\n",
                  (unsigned long long)atomic_load(&sh->req_batch));
    sl_buf_puts(out, "# HELP sluice_cassandra_errors_total Failed CQL requests by class.\n"
                     "# TYPE sluice_cassandra_errors_total counter\n");
    for (int i = 0; i < CASS_ERR__COUNT; i++) {
        sl_buf_printf(out, "sluice_cassandra_errors_total{class=\"%s\"} %llu\n", cass_err_names[i],
                      (unsigned long long)atomic_load(&sh->errors[i]));
    }
    sl_buf_printf(out,
                  "# HELP sluice_cassandra_counter_unknown_total Counter updates whose fate was "
                  "unknown (timeout, connection lost): dead-lettered or resent per "
                  "counter_unknown.\n"
                  "# TYPE sluice_cassandra_counter_unknown_total counter\n"
                  "sluice_cassandra_counter_unknown_total %llu\n",
                  (unsigned long long)atomic_load(&sh->counter_unknown));
    sl_buf_printf(out,
                  "# HELP sluice_cassandra_in_flight Records in flight to Cassandra (all "
                  "lanes).\n"
                  "# TYPE sluice_cassandra_in_flight gauge\n"
                  "sluice_cassandra_in_flight %lld\n",
                  (long long)atomic_load(&sh->in_flight));
    int up = 0;
    for (size_t i = 0; i < CASS_MAX_LANES; i++) {
        up = SL_MAX(up, atomic_load(&sh->hosts_up[i]));
    }
    sl_buf_printf(out,
                  "# HELP sluice_cassandra_hosts_up Hosts of the local data center with a ready "
                  "connection (the best lane's view).\n"
                  "# TYPE sluice_cassandra_hosts_up gauge\n"
                  "sluice_cassandra_hosts_up %d\n",
                  up);
}

static void cass_close(void *ctx)
{
    cass_t *s = ctx;
    s->closing = true;
    for (size_t i = 0; i < s->n_pending; i++) {
        cass_report(s, s->pending[i], SL_STATUS_RETRY, NULL);
        free(s->pending[i]);
    }
    s->n_pending = 0;
    /* in-flight requests end with LOST: reported RETRY (closing) */
    sl_cql_cluster_destroy(s->cc);
    atomic_store(&s->sh->lane_state[s->lane_id], CASS_LANE_UNKNOWN);
    atomic_store(&s->sh->hosts_up[s->lane_id], 0);
    free(s->pending);
    while (s->free1 != NULL) {
        cass_req_t *r = s->free1;
        s->free1 = (cass_req_t *)r->batch;
        free(r);
    }
    sl_buf_free(&s->data);
    sl_buf_free(&s->keys);
    sl_buf_free(&s->reasons);
    free(s->vals);
    free(s->offs);
    free(s->items);
    free(s->starts);
    free(s->key_off);
    free(s->row_off);
    free(s->rej);
    free(s->rows);
    free(s->parts);
    free(s);
}

const sl_sink_plugin_t sl_sink_cassandra = {
    .name = "cassandra",
    .options = &cass_table,
    .opts_size = sizeof(cass_opts_t),
    .init = cass_init,
    .open = cass_open,
    .submit = cass_submit,
    .poll = cass_poll,
    .flush = cass_flush,
    .pollfds = cass_pollfds,
    .io = cass_io,
    .ready = cass_ready,
    .metrics = cass_metrics,
    .close = cass_close,
    .fini = cass_fini,
};
