/* cql_load: a minimal CQL load client, to measure what a CQL server (the test
 * node, tests/cqlnode) can take, independently of Sluice's sink.
 *
 *   cql_load [--host 127.0.0.1] [--port 9042] [--keyspace bench] [--mode insert|counter|batch|
 *            counter-batch] [--rows N] [--inflight K] [--batch R] [--connections C]
 *            [--statement CQL] [--sites S] [--consistency one|...]
 *
 * One thread, one poll loop over C connections (src/cql/conn.h). Prepares the
 * statement on every connection, then sends N rows as EXECUTEs (insert,
 * counter) or as BATCHes of R rows (batch: UNLOGGED, counter-batch: COUNTER),
 * keeping K requests in flight over all connections together (each request
 * goes to the connection with the fewest in flight). Default statements:
 *   insert:  INSERT INTO events (id, name, price, dept) VALUES (?, ?, ?, ?)
 *   counter: UPDATE site_stats SET views = views + ?, clicks = clicks + ?
 *            WHERE date = ? AND site_id = ?
 * Values come from the bind markers' types and names: a single partition key
 * column gets the row index (N distinct rows); a composite key gets
 * date = 2017-02-01 + (i / S) % 30 and int = i % S (S sites); counters and
 * other integers 1 + i % 10, doubles (i % 10000) / 100, text "item-(i % 1000)".
 *
 * Prints one JSON line on stdout: {"mode", "rows", "requests", "seconds",
 * "rows_per_s", "errors", "first_error"}; seconds run from the first EXECUTE
 * to the last response (connecting and preparing excluded). Exits 0 when
 * every request succeeded, 1 otherwise, 2 on usage errors. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cql/conn.h"
#include "cql/frame.h"
#include "cql/result.h"
#include "cql/types.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/common.h"

#define CL_MAX_CONNS 64
#define CL_MAX_VALUES 64
#define CL_MAX_BATCH 4096

static const char cl_usage[] =
    "usage: cql_load [--host H] [--port P] [--keyspace K] [--mode insert|counter|batch|"
    "counter-batch]\n"
    "                [--rows N] [--inflight K] [--batch R] [--connections C] [--statement CQL]\n"
    "                [--sites S] [--consistency one|quorum|local_quorum|...]\n";

typedef struct cl_opts {
    const char *host;
    int port;
    const char *keyspace;
    const char *mode;
    const char *statement;
    uint64_t rows;
    int inflight;
    int batch;
    int connections;
    uint32_t sites;
    uint16_t consistency;
} cl_opts_t;

typedef struct cl_load cl_load_t;

typedef struct cl_conn {
    cl_load_t *load;
    sl_cql_conn_t *conn;
    int inflight;
    sl_cql_prepared_t prep; /* arena (load->keep) */
    bool prepared;
} cl_conn_t;

struct cl_load {
    cl_opts_t o;
    bool batch_mode;
    sl_cql_batch_type_t batch_type;
    cl_conn_t conns[CL_MAX_CONNS];
    sl_arena_t keep;
    uint64_t next_row; /* next row index to send */
    uint64_t rows_done, requests, errors;
    int pending;
    char first_error[512];
    /* scratch for building one request */
    sl_buf_t vbuf;
    size_t voff[CL_MAX_BATCH * 4];
    int32_t vlen[CL_MAX_BATCH * 4];
    sl_cql_bytes_t views[CL_MAX_BATCH * 4];
    sl_cql_batch_stmt_t stmts[CL_MAX_BATCH];
};

/* One request in flight: the callback's ctx (owned by the request). */
typedef struct cl_req {
    cl_conn_t *cc;
    uint32_t rows;
    bool prepare;
} cl_req_t;

static void cl_fail(cl_load_t *l, const char *fmt, ...) SL_PRINTF(2, 3);

static void cl_fail(cl_load_t *l, const char *fmt, ...)
{
    l->errors++;
    if (l->first_error[0] != '\0') {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->first_error, sizeof(l->first_error), fmt, ap);
    va_end(ap);
}

/* ---- Values ------------------------------------------------------------------------------- */

static bool cl_is_pk(const sl_cql_metadata_t *m, int j)
{
    for (int32_t k = 0; k < m->pk_count; k++) {
        if (m->pk_index[k] == j) {
            return true;
        }
    }
    return false;
}

/* Appends the serialized value of bind marker j for row i to b. */
static int cl_encode(const cl_load_t *l, const sl_cql_metadata_t *m, int j, uint64_t i, sl_buf_t *b)
{
    const sl_cql_colspec_t *col = &m->cols[j];
    bool pk = cl_is_pk(m, j);
    bool single = m->pk_count == 1;
    int64_t small = 1 + (int64_t)(i % 10);
    switch (col->type.id) {
    case SL_CQL_COL_INT:
        sl_cql_encode_int(b,
                          pk ? (single ? (int32_t)i : (int32_t)(i % l->o.sites)) : (int32_t)small);
        return 0;
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
        sl_cql_encode_bigint(b, pk ? (single ? (int64_t)i : (int64_t)(i % l->o.sites)) : small);
        return 0;
    case SL_CQL_COL_DOUBLE: {
        double d = (double)(i % 10000) / 100.0;
        uint64_t bits;
        memcpy(&bits, &d, sizeof(bits));
        sl_cql_encode_bigint(b, (int64_t)bits);
        return 0;
    }
    case SL_CQL_COL_DATE: {
        int64_t days = sl_cql_date_days(2017, 2, 1) + (int64_t)((i / l->o.sites) % 30);
        return sl_cql_encode_date(b, days);
    }
    case SL_CQL_COL_VARCHAR:
    case SL_CQL_COL_ASCII: {
        char s[32];
        int n = pk ? snprintf(s, sizeof(s), "k%" PRIu64, i)
                   : snprintf(s, sizeof(s), "item-%" PRIu64, i % 1000);
        sl_cql_encode_text(b, s, (size_t)n);
        return 0;
    }
    default:
        return -1;
    }
}

/* Encodes rows [first, first + n) of cc's statement into l's scratch views. */
static int cl_encode_rows(cl_load_t *l, const cl_conn_t *cc, uint64_t first, uint32_t n,
                          const char **err)
{
    const sl_cql_metadata_t *m = &cc->prep.bind;
    if ((size_t)n * (size_t)m->n_cols > SL_ARRAY_LEN(l->views)) {
        *err = "too many values per request (lower --batch)";
        return -1;
    }
    sl_buf_reset(&l->vbuf);
    size_t k = 0;
    for (uint32_t r = 0; r < n; r++) {
        for (int32_t j = 0; j < m->n_cols; j++, k++) {
            l->voff[k] = l->vbuf.len;
            if (cl_encode(l, m, (int)j, first + r, &l->vbuf) != 0) {
                *err = "a bind marker has a type cql_load cannot generate";
                return -1;
            }
            l->vlen[k] = (int32_t)(l->vbuf.len - l->voff[k]);
        }
    }
    for (size_t q = 0; q < k; q++) {
        l->views[q].ptr = (const uint8_t *)l->vbuf.data + l->voff[q];
        l->views[q].len = l->vlen[q];
    }
    return 0;
}

/* ---- Requests ----------------------------------------------------------------------------- */

typedef struct cl_build {
    cl_load_t *load;
    cl_conn_t *cc;
    uint64_t first;
    uint32_t rows;
} cl_build_t;

static int cl_build_prepare(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    const cl_load_t *l = arg;
    return sl_cql_req_prepare(out, stream, l->o.statement, strlen(l->o.statement), err);
}

static int cl_build_write(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    cl_build_t *bd = arg;
    cl_load_t *l = bd->load;
    const sl_cql_prepared_t *p = &bd->cc->prep;
    if (cl_encode_rows(l, bd->cc, bd->first, bd->rows, err) != 0) {
        return -1;
    }
    size_t nv = (size_t)p->bind.n_cols;
    if (!l->batch_mode) {
        sl_cql_params_t params = {
            .consistency = l->o.consistency,
            .values = l->views,
            .n_values = nv,
            .skip_metadata = true,
        };
        return sl_cql_req_execute(out, stream, p->id.ptr, (size_t)p->id.len, &params, err);
    }
    for (uint32_t r = 0; r < bd->rows; r++) {
        l->stmts[r] = (sl_cql_batch_stmt_t){
            .id = p->id.ptr,
            .id_len = (size_t)p->id.len,
            .values = l->views + (size_t)r * nv,
            .n_values = nv,
        };
    }
    sl_cql_batch_t b = {
        .type = l->batch_type,
        .stmts = l->stmts,
        .n_stmts = bd->rows,
        .consistency = l->o.consistency,
    };
    return sl_cql_req_batch(out, stream, &b, err);
}

static void cl_on_response(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *frame,
                           const sl_cql_conn_err_t *err)
{
    cl_req_t *req = ctx;
    cl_conn_t *cc = req->cc;
    cl_load_t *l = cc->load;
    l->pending--;
    cc->inflight--;
    if (status != SL_CQL_REQ_OK) {
        cl_fail(l, "%s: %s", status == SL_CQL_REQ_TIMEOUT ? "timeout" : "lost", err->msg);
        goto out;
    }
    if (frame->hdr.opcode == SL_CQL_OP_RESULT && !req->prepare) {
        l->rows_done += req->rows; /* VOID: nothing to decode */
        goto out;
    }
    sl_arena_t tmp;
    sl_arena_init(&tmp, 0);
    sl_cql_response_t r;
    char msg[256];
    if (sl_cql_response_decode(frame, req->prepare ? &l->keep : &tmp, &r, msg, sizeof(msg)) != 0) {
        cl_fail(l, "undecodable response: %s", msg);
    } else if (r.opcode == SL_CQL_OP_ERROR) {
        const char *name = sl_cql_error_name(r.error.code);
        cl_fail(l, "%s (0x%04" PRIx32 "): %s", name != NULL ? name : "?", (uint32_t)r.error.code,
                r.error.message != NULL ? r.error.message : "");
    } else if (r.opcode != SL_CQL_OP_RESULT || r.result.kind != SL_CQL_RESULT_PREPARED) {
        cl_fail(l, "unexpected response to PREPARE");
    } else {
        cc->prep = r.result.prepared;
        cc->prepared = true;
    }
    sl_arena_free(&tmp);
out:
    free(req);
}

/* Sends one request on cc; returns the sl_cql_conn_send result. */
static sl_cql_send_rc_t cl_send(cl_load_t *l, cl_conn_t *cc, bool prepare, uint64_t first,
                                uint32_t rows)
{
    cl_req_t *req = sl_xcalloc(1, sizeof(*req));
    req->cc = cc;
    req->rows = rows;
    req->prepare = prepare;
    cl_build_t bd = {.load = l, .cc = cc, .first = first, .rows = rows};
    const char *err = NULL;
    sl_cql_send_rc_t rc =
        prepare ? sl_cql_conn_send(cc->conn, cl_build_prepare, l, cl_on_response, req, &err)
                : sl_cql_conn_send(cc->conn, cl_build_write, &bd, cl_on_response, req, &err);
    if (rc != SL_CQL_SEND_OK) {
        free(req);
        if (rc != SL_CQL_SEND_AGAIN) {
            cl_fail(l, "send: %s",
                    rc == SL_CQL_SEND_DOWN ? "connection down" : (err != NULL ? err : "invalid"));
        }
        return rc;
    }
    l->pending++;
    cc->inflight++;
    if (!prepare) {
        l->requests++;
    }
    return rc;
}

/* One round: poll every connection, then process them. Returns 0, or -1 when
 * a connection failed. */
static int cl_step(cl_load_t *l)
{
    struct pollfd pfd[CL_MAX_CONNS];
    int64_t next = -1;
    for (int k = 0; k < l->o.connections; k++) {
        sl_cql_conn_t *c = l->conns[k].conn;
        sl_cql_conn_state_t st = sl_cql_conn_state(c);
        if (st == SL_CQL_CONN_FAILED || st == SL_CQL_CONN_CLOSED) {
            cl_fail(l, "connection %d %s: %s", k, sl_cql_conn_state_name(st), sl_cql_conn_error(c));
            return -1;
        }
        pfd[k] = (struct pollfd){.fd = sl_cql_conn_fd(c), .events = sl_cql_conn_events(c)};
        int64_t t = sl_cql_conn_next_timeout_ms(c);
        if (t >= 0 && (next < 0 || t < next)) {
            next = t;
        }
    }
    int timeout = -1;
    if (next >= 0) {
        int64_t left = next - sl_now_ms();
        timeout = left < 0 ? 0 : (int)SL_MIN(left, 60000);
    }
    int n = poll(pfd, (nfds_t)l->o.connections, timeout);
    if (n < 0 && errno != EINTR) {
        cl_fail(l, "poll: %s", strerror(errno));
        return -1;
    }
    int64_t now = sl_now_ms();
    for (int k = 0; k < l->o.connections; k++) {
        sl_cql_conn_process(l->conns[k].conn, n > 0 ? pfd[k].revents : 0, now);
    }
    return 0;
}

/* The connection with the fewest requests in flight. */
static cl_conn_t *cl_pick(cl_load_t *l)
{
    cl_conn_t *best = &l->conns[0];
    for (int k = 1; k < l->o.connections; k++) {
        if (l->conns[k].inflight < best->inflight) {
            best = &l->conns[k];
        }
    }
    return best;
}

/* ---- Options ------------------------------------------------------------------------------ */

static int cl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max || s[0] == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

static int cl_consistency(const char *s, uint16_t *out)
{
    for (int k = 0; k <= SL_CQL_LOCAL_ONE; k++) {
        const char *name = sl_cql_consistency_name(k);
        if (name != NULL && strcasecmp(name, s) == 0) {
            *out = (uint16_t)k;
            return 0;
        }
    }
    return -1;
}

static int cl_parse_args(int argc, char **argv, cl_opts_t *o)
{
    *o = (cl_opts_t){
        .host = "127.0.0.1",
        .port = 9042,
        .keyspace = "bench",
        .mode = "insert",
        .rows = 100000,
        .inflight = 256,
        .batch = 32,
        .connections = 1,
        .sites = 1000,
        .consistency = SL_CQL_ONE,
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "cql_load: %s needs a value\n%s", arg, cl_usage);
            return -1;
        }
        const char *v = argv[++i];
        uint64_t u = 0;
        int bad = 0;
        if (strcmp(arg, "--host") == 0) {
            o->host = v;
        } else if (strcmp(arg, "--port") == 0) {
            bad = cl_parse_u64(v, 1, 65535, &u);
            o->port = (int)u;
        } else if (strcmp(arg, "--keyspace") == 0) {
            o->keyspace = v;
        } else if (strcmp(arg, "--mode") == 0) {
            o->mode = v;
        } else if (strcmp(arg, "--statement") == 0) {
            o->statement = v;
        } else if (strcmp(arg, "--rows") == 0) {
            bad = cl_parse_u64(v, 1, UINT64_MAX / 2, &o->rows);
        } else if (strcmp(arg, "--inflight") == 0) {
            bad = cl_parse_u64(v, 1, 1000000, &u);
            o->inflight = (int)u;
        } else if (strcmp(arg, "--batch") == 0) {
            bad = cl_parse_u64(v, 1, CL_MAX_BATCH, &u);
            o->batch = (int)u;
        } else if (strcmp(arg, "--connections") == 0) {
            bad = cl_parse_u64(v, 1, CL_MAX_CONNS, &u);
            o->connections = (int)u;
        } else if (strcmp(arg, "--sites") == 0) {
            bad = cl_parse_u64(v, 1, INT32_MAX, &u);
            o->sites = (uint32_t)u;
        } else if (strcmp(arg, "--consistency") == 0) {
            bad = cl_consistency(v, &o->consistency);
        } else {
            fprintf(stderr, "cql_load: unknown option %s\n%s", arg, cl_usage);
            return -1;
        }
        if (bad != 0) {
            fprintf(stderr, "cql_load: bad value for %s: %s\n", arg, v);
            return -1;
        }
    }
    bool counter = strcmp(o->mode, "counter") == 0 || strcmp(o->mode, "counter-batch") == 0;
    if (!counter && strcmp(o->mode, "insert") != 0 && strcmp(o->mode, "batch") != 0) {
        fprintf(stderr, "cql_load: unknown mode %s\n%s", o->mode, cl_usage);
        return -1;
    }
    if (o->statement == NULL) {
        o->statement = counter ? "UPDATE site_stats SET views = views + ?, clicks = clicks + ? "
                                 "WHERE date = ? AND site_id = ?"
                               : "INSERT INTO events (id, name, price, dept) VALUES (?, ?, ?, ?)";
    }
    return 0;
}

int main(int argc, char **argv)
{
    static cl_load_t load;
    cl_load_t *l = &load;
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(cl_usage, stdout);
        return 0;
    }
    if (cl_parse_args(argc, argv, &l->o) != 0) {
        return 2;
    }
    l->batch_mode = strcmp(l->o.mode, "batch") == 0 || strcmp(l->o.mode, "counter-batch") == 0;
    l->batch_type =
        strcmp(l->o.mode, "counter-batch") == 0 ? SL_CQL_BATCH_COUNTER : SL_CQL_BATCH_UNLOGGED;
    uint32_t per_req = l->batch_mode ? (uint32_t)l->o.batch : 1;
    sl_arena_init(&l->keep, 0);
    int per_conn = (l->o.inflight + l->o.connections - 1) / l->o.connections;
    for (int k = 0; k < l->o.connections; k++) {
        sl_cql_conn_opts_t co = {
            .host = l->o.host,
            .port = l->o.port,
            .keyspace = l->o.keyspace[0] != '\0' ? l->o.keyspace : NULL,
            .max_inflight = SL_MIN(SL_MAX(per_conn + 8, 16), SL_CQL_CONN_MAX_STREAMS),
            .request_timeout_ms = 30000,
        };
        l->conns[k].load = l;
        l->conns[k].conn = sl_cql_conn_create(&co);
    }
    int rc = 1;
    double seconds = 0.0;
    /* connect, then PREPARE on every connection */
    for (bool ready = false; !ready;) {
        ready = true;
        for (int k = 0; k < l->o.connections; k++) {
            ready = ready && sl_cql_conn_state(l->conns[k].conn) == SL_CQL_CONN_READY;
        }
        if (!ready && cl_step(l) != 0) {
            goto out;
        }
    }
    for (int k = 0; k < l->o.connections; k++) {
        if (cl_send(l, &l->conns[k], true, 0, 0) != SL_CQL_SEND_OK) {
            goto out;
        }
    }
    while (l->pending > 0) {
        if (cl_step(l) != 0) {
            goto out;
        }
    }
    if (l->errors > 0) {
        goto out;
    }
    int64_t t0 = sl_now_us();
    while (l->next_row < l->o.rows || l->pending > 0) {
        while (l->next_row < l->o.rows && l->pending < l->o.inflight) {
            uint32_t n = (uint32_t)SL_MIN((uint64_t)per_req, l->o.rows - l->next_row);
            sl_cql_send_rc_t s = cl_send(l, cl_pick(l), false, l->next_row, n);
            if (s == SL_CQL_SEND_AGAIN) {
                break;
            }
            if (s != SL_CQL_SEND_OK) {
                goto out;
            }
            l->next_row += n;
        }
        if (cl_step(l) != 0) {
            goto out;
        }
    }
    seconds = (double)(sl_now_us() - t0) / 1e6;
    rc = l->errors == 0 ? 0 : 1;
out:
    printf("{\"mode\":\"%s\",\"rows\":%" PRIu64 ",\"requests\":%" PRIu64
           ",\"seconds\":%.4f,\"rows_per_s\":%.0f,\"errors\":%" PRIu64 ",\"first_error\":",
           l->o.mode, l->rows_done, l->requests, seconds,
           seconds > 0 ? (double)l->rows_done / seconds : 0.0, l->errors);
    sl_buf_t esc = SL_BUF_INIT;
    sl_buf_putc(&esc, '"');
    sl_buf_json_escape(&esc, l->first_error, strlen(l->first_error));
    sl_buf_putc(&esc, '"');
    printf("%.*s}\n", (int)esc.len, (const char *)esc.data);
    sl_buf_free(&esc);
    for (int k = 0; k < l->o.connections; k++) {
        sl_cql_conn_destroy(l->conns[k].conn);
    }
    sl_buf_free(&l->vbuf);
    sl_arena_free(&l->keep);
    return rc == 0 && l->errors == 0 ? 0 : 1;
}
