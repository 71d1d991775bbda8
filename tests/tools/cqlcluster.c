/* cqlcluster: a small client on the CQL cluster session (src/cql/cluster.c),
 * for tests.
 *
 *   cqlcluster --contact A[,B...] --port P --keyspace KS --statement CQL --rows N
 *              [--local-dc DC] [--start S] [--inflight K] [--connections C]
 *              [--deadline-ms MS] [--runs R] [--go-file PATH] [--go-first PATH]
 *              [--wait-up N] [--batch B] [--idle-ms MS] [--request-timeout-ms MS]
 *              [--round-robin] [--reconnect-min-ms MS]
 *
 * Prepares CQL (two bind markers: an int id and a text value), waits until
 * the session is ready (and, with --wait-up, until N local hosts are up with
 * the statement prepared),
 * then sends N rows (id S+i, value "v<S+i>") with up to K requests in flight.
 * With --batch B (at most 100) each request is an UNLOGGED BATCH of B
 * consecutive rows (routed by its first row). A retriable failure (and an Unprepared error) is sent
 * again after 100 ms until the deadline. With --runs R the run is repeated R times with the next N
 * ids; before each run after the first the tool waits until --go-file exists, serving the session
 * meanwhile (so it notices hosts going down and reconnects). With --go-first it also waits, once
 * the session is ready, until that file exists before the first run. Before waiting for a go file
 * it prints {"waiting":RUN}. With --idle-ms the tool serves the session
 * that long (no requests) before each run after the first.
 *
 * Prints one JSON line per run on stdout:
 *   {"run":0,"ok":N,"retried":N,"reprepared":N,"failed":N,"elapsed_ms":N,
 *    "hosts":[{"address":"127.0.0.1","dc":"dc1","local":true,"up":true,
 *              "requests":N},...],"seen_down":["127.0.0.2"],"errors":["..."]}
 * requests are the session's counts since it was created; seen_down lists the
 * hosts seen going from up to down so far. Session log lines go to stderr.
 * Exits 0 when every row was written, 1 otherwise, 2 on usage or setup
 * errors. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cql/cluster.h"
#include "cql/types.h"
#include "util/buf.h"
#include "util/common.h"

#define CC_MAX_HOSTS 64
#define CC_MAX_ERRORS 5
#define CC_MAX_BATCH 100

typedef enum { ROW_TODO = 0, ROW_INFLIGHT, ROW_RETRY, ROW_DONE, ROW_FAILED } row_state_t;

/* One request: n consecutive ids from id (n > 1: a BATCH). */
typedef struct row {
    row_state_t state;
    int64_t retry_at;
    int32_t id;
    int32_t n;
} row_t;

static struct {
    sl_cql_cluster_t *c;
    int stmt;
    row_t *rows; /* requests */
    size_t n_reqs;
    size_t n_rows; /* rows per run */
    size_t inflight;
    uint64_t ok, retried, reprepared, failed;
    bool was_up[CC_MAX_HOSTS];
    bool seen_down[CC_MAX_HOSTS];
    sl_buf_t errors;
    int n_errors;
} cc;

static void cc_usage(void)
{
    fprintf(stderr, "usage: cqlcluster --contact A[,B...] --port P --keyspace KS --statement CQL "
                    "--rows N [--local-dc DC] [--start S] [--inflight K] [--connections C] "
                    "[--deadline-ms MS] [--runs R] [--go-file PATH] [--go-first PATH] "
                    "[--wait-up N] [--batch B] [--idle-ms MS] "
                    "[--request-timeout-ms MS] [--round-robin] [--reconnect-min-ms MS]\n");
    exit(2);
}

static void cc_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "cqlcluster: %s: %s\n", names[level & 3], msg);
}

static void cc_note_error(const char *msg)
{
    if (cc.n_errors >= CC_MAX_ERRORS) {
        return;
    }
    sl_buf_puts(&cc.errors, cc.n_errors ? ",\"" : "\"");
    sl_buf_json_escape(&cc.errors, msg, strlen(msg));
    sl_buf_putc(&cc.errors, '"');
    cc.n_errors++;
}

static void cc_done(void *ctx, const sl_cql_outcome_t *o)
{
    row_t *r = ctx;
    cc.inflight--;
    if (o->ok) {
        r->state = ROW_DONE;
        cc.ok += (uint64_t)r->n;
        return;
    }
    if (o->cls == SL_CQL_ERRCLASS_RETRIABLE || o->cls == SL_CQL_ERRCLASS_REPREPARE) {
        if (o->cls == SL_CQL_ERRCLASS_REPREPARE) {
            cc.reprepared++;
        } else {
            cc.retried++;
        }
        r->state = ROW_RETRY;
        r->retry_at = sl_now_ms() + 100;
        fprintf(stderr, "cqlcluster: row %d: %s; retrying\n", r->id, o->message);
        return;
    }
    r->state = ROW_FAILED;
    cc.failed += (uint64_t)r->n;
    cc_note_error(o->message);
}

/* Serves the session for one poll round of at most max_wait ms. */
static void cc_step(int max_wait)
{
    struct pollfd fds[1 + CC_MAX_HOSTS * 8];
    int n = sl_cql_cluster_pollfds(cc.c, fds, (int)SL_ARRAY_LEN(fds));
    int64_t now = sl_now_ms();
    int64_t next = sl_cql_cluster_next_timeout_ms(cc.c);
    int timeout = max_wait;
    if (next >= 0 && next - now < timeout) {
        timeout = next > now ? (int)(next - now) : 0;
    }
    if (poll(fds, (nfds_t)n, timeout) < 0 && errno != EINTR) {
        perror("cqlcluster: poll");
        exit(2);
    }
    sl_cql_cluster_process(cc.c, fds, n, sl_now_ms());
    size_t nh = sl_cql_cluster_hosts(cc.c);
    for (size_t i = 0; i < nh && i < CC_MAX_HOSTS; i++) {
        sl_cql_host_info_t h;
        sl_cql_cluster_host(cc.c, i, &h);
        if (cc.was_up[i] && !h.up) {
            cc.seen_down[i] = true;
        }
        cc.was_up[i] = h.up;
    }
}

static size_t cc_hosts_up(void)
{
    size_t up = 0, nh = sl_cql_cluster_hosts(cc.c);
    for (size_t i = 0; i < nh; i++) {
        sl_cql_host_info_t h;
        sl_cql_cluster_host(cc.c, i, &h);
        up += h.local && h.ready ? 1 : 0;
    }
    return up;
}

/* Serves the session until it is ready and wait_up local hosts are ready.
 * Returns 0, or -1 after a message on stderr. */
static int cc_wait_ready(int64_t deadline_ms, int wait_up)
{
    int64_t deadline = sl_now_ms() + deadline_ms;
    while ((!sl_cql_cluster_ready(cc.c) || cc_hosts_up() < (size_t)wait_up) &&
           sl_now_ms() < deadline) {
        if (sl_cql_cluster_prepare_error(cc.c, cc.stmt) != NULL) {
            break;
        }
        cc_step(50);
    }
    if (sl_cql_cluster_prepare_error(cc.c, cc.stmt) != NULL) {
        fprintf(stderr, "cqlcluster: the statement was refused (fix --statement): %s\n",
                sl_cql_cluster_prepare_error(cc.c, cc.stmt));
        return -1;
    }
    if (!sl_cql_cluster_ready(cc.c) || cc_hosts_up() < (size_t)wait_up) {
        fprintf(stderr,
                "cqlcluster: the session is not ready (%zu hosts ready, %d wanted) after %" PRId64
                " ms: %s\n",
                cc_hosts_up(), wait_up, deadline_ms, sl_cql_cluster_error(cc.c));
        return -1;
    }
    return 0;
}

/* Sends row r; false when the session cannot take it now. */
static bool cc_send(row_t *r)
{
    uint8_t idb[CC_MAX_BATCH][4];
    char v[CC_MAX_BATCH][16];
    sl_cql_bytes_t vals[CC_MAX_BATCH][2];
    const sl_cql_bytes_t *rows[CC_MAX_BATCH];
    for (int32_t k = 0; k < r->n; k++) {
        int32_t id = r->id + k;
        idb[k][0] = (uint8_t)(id >> 24);
        idb[k][1] = (uint8_t)(id >> 16);
        idb[k][2] = (uint8_t)(id >> 8);
        idb[k][3] = (uint8_t)id;
        int vl = snprintf(v[k], sizeof(v[k]), "v%d", id);
        vals[k][0] = (sl_cql_bytes_t){idb[k], 4};
        vals[k][1] = (sl_cql_bytes_t){(const uint8_t *)v[k], vl};
        rows[k] = vals[k];
    }
    sl_cql_request_t req = {
        .stmt = cc.stmt,
        .rows = rows,
        .n_rows = (size_t)r->n,
        .n_values = 2,
        .batch_type = SL_CQL_BATCH_UNLOGGED,
        .consistency = SL_CQL_ONE,
    };
    const char *err = NULL;
    sl_cql_send_rc_t rc = sl_cql_cluster_send(cc.c, &req, cc_done, r, &err);
    if (rc == SL_CQL_SEND_OK) {
        r->state = ROW_INFLIGHT;
        cc.inflight++;
        return true;
    }
    if (rc == SL_CQL_SEND_INVALID) {
        r->state = ROW_FAILED;
        cc.failed += (uint64_t)r->n;
        cc_note_error(err ? err : "invalid request");
        return true;
    }
    return false;
}

static void cc_print(int run, int64_t elapsed)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_buf_printf(&b,
                  "{\"run\":%d,\"ok\":%" PRIu64 ",\"retried\":%" PRIu64 ",\"reprepared\":%" PRIu64
                  ",\"failed\":%" PRIu64 ",\"elapsed_ms\":%" PRId64 ",\"hosts\":[",
                  run, cc.ok, cc.retried, cc.reprepared, cc.failed, elapsed);
    size_t nh = sl_cql_cluster_hosts(cc.c);
    for (size_t i = 0; i < nh; i++) {
        sl_cql_host_info_t h;
        sl_cql_cluster_host(cc.c, i, &h);
        sl_buf_printf(
            &b,
            "%s{\"address\":\"%s\",\"dc\":\"%s\",\"local\":%s,\"up\":%s,\"requests\":%" PRIu64 "}",
            i ? "," : "", h.address, h.dc, h.local ? "true" : "false", h.up ? "true" : "false",
            h.requests);
    }
    sl_buf_puts(&b, "],\"seen_down\":[");
    bool first = true;
    for (size_t i = 0; i < nh && i < CC_MAX_HOSTS; i++) {
        if (cc.seen_down[i]) {
            sl_cql_host_info_t h;
            sl_cql_cluster_host(cc.c, i, &h);
            sl_buf_printf(&b, "%s\"%s\"", first ? "" : ",", h.address);
            first = false;
        }
    }
    sl_buf_printf(&b, "],\"errors\":[%s]}\n", cc.errors.data ? cc.errors.data : "");
    fputs(b.data, stdout);
    fflush(stdout);
    sl_buf_free(&b);
}

int main(int argc, char **argv)
{
    const char *contact = NULL, *keyspace = NULL, *local_dc = NULL, *statement = NULL;
    const char *go_file = NULL, *go_first = NULL;
    int idle_ms = 0, request_timeout_ms = 5000;
    int port = 0, batch = 1, inflight = 16, connections = 1, runs = 1, wait_up = 0, rc_min = 100;
    long rows = -1, start = 0;
    int64_t deadline_ms = 20000;
    bool token_aware = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--round-robin") == 0) {
            token_aware = false;
            continue;
        }
        if (v == NULL) {
            cc_usage();
        }
        i++;
        if (strcmp(a, "--contact") == 0) {
            contact = v;
        } else if (strcmp(a, "--port") == 0) {
            port = atoi(v);
        } else if (strcmp(a, "--keyspace") == 0) {
            keyspace = v;
        } else if (strcmp(a, "--local-dc") == 0) {
            local_dc = v;
        } else if (strcmp(a, "--statement") == 0) {
            statement = v;
        } else if (strcmp(a, "--rows") == 0) {
            rows = atol(v);
        } else if (strcmp(a, "--start") == 0) {
            start = atol(v);
        } else if (strcmp(a, "--inflight") == 0) {
            inflight = atoi(v);
        } else if (strcmp(a, "--connections") == 0) {
            connections = atoi(v);
        } else if (strcmp(a, "--deadline-ms") == 0) {
            deadline_ms = atol(v);
        } else if (strcmp(a, "--runs") == 0) {
            runs = atoi(v);
        } else if (strcmp(a, "--go-file") == 0) {
            go_file = v;
        } else if (strcmp(a, "--idle-ms") == 0) {
            idle_ms = atoi(v);
        } else if (strcmp(a, "--request-timeout-ms") == 0) {
            request_timeout_ms = atoi(v);
        } else if (strcmp(a, "--batch") == 0) {
            batch = atoi(v);
        } else if (strcmp(a, "--go-first") == 0) {
            go_first = v;
        } else if (strcmp(a, "--wait-up") == 0) {
            wait_up = atoi(v);
        } else if (strcmp(a, "--reconnect-min-ms") == 0) {
            rc_min = atoi(v);
        } else {
            cc_usage();
        }
    }
    if (contact == NULL || statement == NULL || rows < 0 || inflight < 1 || runs < 1 || batch < 1 ||
        batch > CC_MAX_BATCH || (runs > 1 && go_file == NULL && idle_ms <= 0)) {
        cc_usage();
    }
    char *cps = sl_xstrdup(contact);
    const char *cp[16];
    size_t ncp = 0;
    for (char *tok = strtok(cps, ","); tok != NULL && ncp < 16; tok = strtok(NULL, ",")) {
        cp[ncp++] = tok;
    }
    sl_cql_cluster_opts_t o = {
        .contact_points = cp,
        .n_contact_points = ncp,
        .port = port,
        .keyspace = keyspace,
        .local_dc = local_dc,
        .connections_per_host = connections,
        .connect_timeout_ms = 2000,
        .request_timeout_ms = request_timeout_ms,
        .reconnect_min_ms = rc_min,
        .reconnect_max_ms = rc_min > 2000 ? rc_min : 2000,
        .token_aware = token_aware,
        .log = cc_log,
    };
    char err[512];
    cc.c = sl_cql_cluster_create(&o, err, sizeof(err));
    if (cc.c == NULL) {
        fprintf(stderr, "cqlcluster: %s\n", err);
        return 2;
    }
    cc.stmt = sl_cql_cluster_prepare(cc.c, statement, strlen(statement), err, sizeof(err));
    if (cc.stmt < 0) {
        fprintf(stderr, "cqlcluster: %s\n", err);
        return 2;
    }
    cc.n_rows = (size_t)rows;
    cc.n_reqs = (cc.n_rows + (size_t)batch - 1) / (size_t)batch;
    cc.rows = sl_xcalloc(cc.n_reqs + 1, sizeof(row_t));
    int exit_code = 0;
    for (int run = 0; run < runs; run++) {
        const char *go = run == 0 ? go_first : go_file;
        if (run == 0 && cc_wait_ready(deadline_ms, wait_up) != 0) {
            return 2;
        }
        if (run > 0 && idle_ms > 0) {
            int64_t until = sl_now_ms() + idle_ms;
            while (sl_now_ms() < until) {
                cc_step((int)SL_MIN(until - sl_now_ms() + 1, 100));
            }
        }
        if (go != NULL) {
            printf("{\"waiting\":%d}\n", run);
            fflush(stdout);
            struct stat st;
            while (stat(go, &st) != 0) {
                cc_step(50);
            }
        }
        int64_t t0 = sl_now_ms(), deadline = t0 + deadline_ms;
        if (cc_wait_ready(deadline_ms, wait_up) != 0) {
            return 2;
        }
        cc.ok = cc.retried = cc.reprepared = cc.failed = 0;
        sl_buf_reset(&cc.errors);
        cc.n_errors = 0;
        for (size_t i = 0; i < cc.n_reqs; i++) {
            long first = (long)i * batch;
            cc.rows[i] = (row_t){.state = ROW_TODO,
                                 .id = (int32_t)(start + run * rows + first),
                                 .n = (int32_t)SL_MIN((long)batch, rows - first)};
        }
        size_t next = 0;
        while (cc.ok + cc.failed < cc.n_rows && sl_now_ms() < deadline) {
            int64_t now = sl_now_ms();
            bool blocked = false;
            for (size_t i = 0; i < cc.n_reqs && cc.inflight < (size_t)inflight && !blocked; i++) {
                row_t *r = &cc.rows[i];
                if (r->state == ROW_RETRY && r->retry_at <= now) {
                    blocked = !cc_send(r);
                }
            }
            while (!blocked && next < cc.n_reqs && cc.inflight < (size_t)inflight) {
                if (cc_send(&cc.rows[next])) {
                    next++;
                } else {
                    blocked = true;
                }
            }
            cc_step(blocked ? 20 : 100);
        }
        /* Rows still in flight at the deadline end in destroy (LOST). */
        for (size_t i = 0; i < cc.n_reqs; i++) {
            if (cc.rows[i].state != ROW_DONE && cc.rows[i].state != ROW_FAILED &&
                cc.rows[i].state != ROW_INFLIGHT) {
                cc.rows[i].state = ROW_FAILED;
                cc.failed += (uint64_t)cc.rows[i].n;
            }
        }
        if (cc.ok + cc.failed < cc.n_rows) {
            cc_note_error("deadline reached with requests in flight");
        }
        cc_print(run, sl_now_ms() - t0);
        if (cc.ok != cc.n_rows) {
            exit_code = 1;
        }
        if (cc.inflight > 0) {
            break; /* their callbacks point into rows: no next run */
        }
    }
    sl_cql_cluster_destroy(cc.c);
    sl_buf_free(&cc.errors);
    free(cc.rows);
    free(cps);
    return exit_code;
}
