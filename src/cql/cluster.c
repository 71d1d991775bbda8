#include "cql/cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cql/cluster_internal.h"
#include "cql/conn.h"
#include "cql/murmur3.h"
#include "cql/ring.h"
#include "cql/routing.h"
#include "util/arena.h"
#include "util/buf.h"

#define CL_DEFAULT_PORT 9042
#define CL_DEFAULT_RECONNECT_MIN 500
#define CL_DEFAULT_RECONNECT_MAX 30000
#define CL_MAX_CONNS_PER_HOST 64
#define CL_ADDR_LEN 64
#define CL_MAX_BATCH 65535

/* ---- Pure helpers (cluster_internal.h) ----------------------------------------------------- */

bool sl_cql_cluster_route_token(const sl_cql_metadata_t *bind, const sl_cql_bytes_t *values,
                                size_t n_values, sl_buf_t *scratch, int64_t *token)
{
    if (bind == NULL || bind->pk_count <= 0 || bind->pk_index == NULL || values == NULL) {
        return false;
    }
    size_t n = (size_t)bind->pk_count;
    sl_cql_bytes_t small[16];
    sl_cql_bytes_t *parts = n <= SL_ARRAY_LEN(small) ? small : sl_xmalloc(n * sizeof(*parts));
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        size_t idx = bind->pk_index[i];
        if (idx >= n_values || values[idx].len < 0) {
            ok = false;
        } else {
            parts[i] = values[idx];
        }
    }
    if (ok) {
        scratch->len = 0;
        ok = sl_cql_routing_key(parts, n, scratch) == 0;
    }
    if (ok) {
        *token = sl_cql_murmur3_token(scratch->data, scratch->len);
    }
    if (parts != small) {
        free(parts);
    }
    return ok;
}

static int cl_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int sl_cql_replmap_build(sl_cql_replmap_t *m, const sl_cql_ring_host_t *hosts, const bool *local,
                         size_t nhosts, size_t rf, bool per_dc)
{
    memset(m, 0, sizeof(*m));
    if (rf == 0) {
        rf = 1;
    }
    sl_cql_ring_t *ring = NULL;
    if (sl_cql_ring_create(hosts, nhosts, &ring) != 0) {
        return -1;
    }
    size_t n = sl_cql_ring_size(ring);
    if (n == 0) {
        sl_cql_ring_destroy(ring);
        return 0;
    }
    size_t n_owners = 0, n_local_owners = 0;
    m->tokens = sl_xmalloc(n * sizeof(int64_t));
    size_t k = 0;
    for (size_t h = 0; h < nhosts; h++) {
        if (hosts[h].ntokens == 0) {
            continue;
        }
        n_owners++;
        n_local_owners += local[h] ? 1 : 0;
        memcpy(m->tokens + k, hosts[h].tokens, hosts[h].ntokens * sizeof(int64_t));
        k += hosts[h].ntokens;
    }
    qsort(m->tokens, n, sizeof(int64_t), cl_cmp_i64);
    m->n = n;
    m->stride = SL_MAX((size_t)1, SL_MIN(rf, per_dc ? n_local_owners : n_owners));
    m->reps = sl_xmalloc(n * m->stride * sizeof(int));
    int *walk = sl_xmalloc(n_owners * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        size_t got = sl_cql_ring_replicas(ring, m->tokens[i], per_dc ? n_owners : rf, walk);
        size_t j = 0;
        for (size_t x = 0; x < got && j < m->stride; x++) {
            if (local[walk[x]]) {
                m->reps[i * m->stride + j++] = walk[x];
            }
        }
        for (; j < m->stride; j++) {
            m->reps[i * m->stride + j] = -1;
        }
    }
    free(walk);
    sl_cql_ring_destroy(ring);
    return 0;
}

size_t sl_cql_replmap_get(const sl_cql_replmap_t *m, int64_t token, const int **out)
{
    if (m->n == 0) {
        *out = NULL;
        return 0;
    }
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->tokens[mid] < token) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == m->n) {
        lo = 0;
    }
    const int *r = m->reps + lo * m->stride;
    size_t cnt = 0;
    while (cnt < m->stride && r[cnt] >= 0) {
        cnt++;
    }
    *out = r;
    return cnt;
}

void sl_cql_replmap_free(sl_cql_replmap_t *m)
{
    free(m->tokens);
    free(m->reps);
    memset(m, 0, sizeof(*m));
}

int sl_cql_backoff_next(int prev, int min_ms, int max_ms, uint64_t *seed, int *delay_ms)
{
    if (min_ms < 1) {
        min_ms = 1;
    }
    if (max_ms < min_ms) {
        max_ms = min_ms;
    }
    int b = prev <= 0 ? min_ms : (prev > max_ms / 2 ? max_ms : prev * 2);
    if (b > max_ms) {
        b = max_ms;
    }
    uint64_t x = *seed ? *seed : 0x9e3779b97f4a7c15u;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *seed = x;
    uint64_t r = x * 0x2545F4914F6CDD1Du;
    *delay_ms = b / 2 + (int)(r % (uint64_t)(b - b / 2 + 1));
    return b;
}

/* ---- The session ------------------------------------------------------------------------- */

typedef enum cl_prep_state {
    CL_PREP_NONE = 0, /* to be sent (at retry_at) */
    CL_PREP_PENDING,  /* PREPARE in flight */
    CL_PREP_READY,    /* id known: takes EXECUTEs */
} cl_prep_state_t;

/* A statement's state on one connection. */
typedef struct cl_prep {
    uint8_t state; /* cl_prep_state_t */
    uint8_t *id;   /* owned */
    size_t id_len;
    int64_t retry_at;
} cl_prep_t;

typedef struct cl_host cl_host_t;

/* A pool connection. Freed only by cl_maintain (never inside one of its
 * callbacks), after sl_cql_conn_destroy has ended all its requests. */
typedef struct cl_pconn {
    sl_cql_cluster_t *c;
    cl_host_t *host;
    sl_cql_conn_t *conn;
    bool ready;  /* READY and counted in host->n_ready */
    bool failed; /* FAILED: to be reaped */
    short revents;
    cl_prep_t *preps; /* one per statement (grown on use) */
    size_t n_preps;
} cl_pconn_t;

struct cl_host {
    int idx;
    char addr[CL_ADDR_LEN];
    char *dc, *rack; /* owned */
    int64_t *tokens; /* owned */
    size_t ntokens;
    bool local;
    bool removed;       /* no longer in system.peers: no connections */
    cl_pconn_t **conns; /* connections_per_host slots */
    int n_ready;
    bool down_logged; /* "is down" said since it was last up */
    int backoff;
    int64_t next_attempt;
    uint64_t requests;
    unsigned rr;
    char err[256]; /* why the last connection failed */
};

typedef struct cl_stmt {
    char *cql; /* owned */
    size_t len;
    sl_arena_t arena; /* holds prepared */
    const sl_cql_prepared_t *prepared;
    char *error; /* owned; permanent PREPARE failure */
} cl_stmt_t;

/* A host row read from system.local or system.peers. */
typedef struct cl_row {
    char addr[CL_ADDR_LEN];
    char *dc, *rack;
    int64_t *tokens;
    size_t ntokens;
} cl_row_t;

/* An outstanding request of the caller. */
typedef struct cl_req cl_req_t;
struct cl_req {
    cl_req_t *next_free;
    sl_cql_cluster_t *c;
    cl_pconn_t *pc;
    int stmt; /* -1: QUERY */
    sl_cql_cluster_cb cb;
    void *ctx;
};

/* An outstanding PREPARE on a pool connection. */
typedef struct cl_pctx {
    sl_cql_cluster_t *c;
    cl_pconn_t *pc;
    int stmt;
} cl_pctx_t;

typedef enum cl_query_kind {
    CL_Q_LOCAL = 0,
    CL_Q_PEERS,
    CL_Q_KEYSPACE,
    CL_Q_N,
} cl_query_kind_t;

typedef struct cl_qctx {
    sl_cql_cluster_t *c;
    cl_query_kind_t kind;
} cl_qctx_t;

struct sl_cql_cluster {
    /* options (owned copies) */
    char **contacts;
    size_t n_contacts;
    int port;
    char *keyspace; /* as given: for USE */
    char *ks_name;  /* unquoted: for system_schema */
    char *local_dc; /* NULL until known */
    char *user, *password;
    int cph, max_inflight, connect_ms, request_ms, heartbeat_ms, rc_min, rc_max;
    bool token_aware;
    bool compression;          /* LZ4 when offered (sl_cql_conn_opts_t.compression) */
    bool tls, tls_verify_host; /* TLS on every connection (sl_cql_conn_opts_t) */
    char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name;
    void (*log)(void *ctx, int level, const char *msg);
    void *log_ctx;

    int64_t now;
    uint64_t seed;
    bool destroying;

    /* control connection */
    sl_cql_conn_t *ctrl;
    bool ctrl_ready, ctrl_failed;
    short ctrl_revents;
    char ctrl_target[CL_ADDR_LEN]; /* what it was created for */
    char ctrl_addr[CL_ADDR_LEN];   /* numeric peer address once ready */
    size_t ctrl_try;
    int ctrl_backoff;
    int64_t ctrl_next;
    sl_buf_t ctrl_errs; /* failures of the current (or last) round of attempts */
    bool ctrl_errs_old; /* of the last round */

    /* topology refresh */
    bool refresh_wanted, refresh_failed;
    int refresh_pending;
    int64_t refresh_at;
    cl_qctx_t qctx[CL_Q_N];
    bool rf_have_local, rf_have_repl;
    bool rf_ks_answered; /* the keyspace query returned rows (maybe none) */
    bool ks_missing;     /* ... and none */
    cl_row_t rf_local;
    cl_row_t *rf_peers;
    size_t rf_n_peers;
    char **repl_keys, **repl_vals;
    size_t n_repl;
    bool discovered;
    char topo_err[512];

    /* hosts (never removed, so indexes stay valid) */
    cl_host_t **hosts;
    size_t n_hosts;
    sl_cql_replmap_t rmap;
    unsigned rr;

    cl_stmt_t *stmts;
    size_t n_stmts;

    cl_req_t *free_reqs;
    sl_arena_t arena; /* response decoding */
    bool arena_busy;
    sl_buf_t keybuf;
    sl_cql_batch_stmt_t *bstmts;
    size_t bstmts_cap;
    char errbuf[512]; /* INVALID messages */
    char error[1024]; /* sl_cql_cluster_error */
    char msg[1024];   /* outcome messages */
};

static void cl_log(sl_cql_cluster_t *c, int level, const char *fmt, ...) SL_PRINTF(3, 4);

static void cl_log(sl_cql_cluster_t *c, int level, const char *fmt, ...)
{
    if (c->log == NULL) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->log(c->log_ctx, level, line);
}

static void cl_row_free(cl_row_t *r)
{
    free(r->dc);
    free(r->rack);
    free(r->tokens);
    memset(r, 0, sizeof(*r));
}

static void cl_refresh_clear(sl_cql_cluster_t *c)
{
    cl_row_free(&c->rf_local);
    for (size_t i = 0; i < c->rf_n_peers; i++) {
        cl_row_free(&c->rf_peers[i]);
    }
    free(c->rf_peers);
    c->rf_peers = NULL;
    c->rf_n_peers = 0;
    for (size_t i = 0; i < c->n_repl; i++) {
        free(c->repl_keys[i]);
        free(c->repl_vals[i]);
    }
    free(c->repl_keys);
    free(c->repl_vals);
    c->repl_keys = c->repl_vals = NULL;
    c->n_repl = 0;
    c->rf_have_local = c->rf_have_repl = c->rf_ks_answered = false;
    c->refresh_failed = false;
}

static cl_host_t *cl_host_find(const sl_cql_cluster_t *c, const char *addr)
{
    for (size_t i = 0; i < c->n_hosts; i++) {
        if (strcmp(c->hosts[i]->addr, addr) == 0) {
            return c->hosts[i];
        }
    }
    return NULL;
}

static cl_prep_t *cl_prep(cl_pconn_t *pc, int stmt)
{
    size_t need = pc->c->n_stmts;
    if (pc->n_preps < need) {
        pc->preps = sl_xrealloc(pc->preps, need * sizeof(cl_prep_t));
        memset(pc->preps + pc->n_preps, 0, (need - pc->n_preps) * sizeof(cl_prep_t));
        pc->n_preps = need;
    }
    return &pc->preps[stmt];
}

/* ---- Decoding helpers ---------------------------------------------------------------------- */

static void cl_inet_str(const sl_cql_inet_t *in, char *out, size_t outlen)
{
    if (inet_ntop(in->addr_len == 4 ? AF_INET : AF_INET6, in->addr, out, (socklen_t)outlen) ==
        NULL) {
        snprintf(out, outlen, "?");
    }
}

static bool cl_inet_is_any(const sl_cql_inet_t *in)
{
    for (size_t i = 0; i < in->addr_len; i++) {
        if (in->addr[i] != 0) {
            return false;
        }
    }
    return true;
}

static int cl_col(const sl_cql_rows_t *rows, const char *name)
{
    if (rows->meta.cols == NULL) {
        return -1;
    }
    for (int32_t i = 0; i < rows->meta.n_cols; i++) {
        if (rows->meta.cols[i].name != NULL && strcmp(rows->meta.cols[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static char *cl_text_dup(const sl_cql_bytes_t *cells, int col)
{
    sl_cql_str_t s;
    if (col < 0 || cells[col].len < 0 || sl_cql_val_text(cells[col], &s) != 0) {
        return NULL;
    }
    return sl_xstrndup(s.data, s.len);
}

static bool cl_inet_cell(const sl_cql_bytes_t *cells, int col, sl_cql_inet_t *out)
{
    return col >= 0 && cells[col].len >= 0 && sl_cql_val_inet(cells[col], out) == 0;
}

/* Fills r from one row of system.local (peer false) or system.peers. */
static bool cl_row_read(const sl_cql_rows_t *rows, const sl_cql_bytes_t *cells, bool peer,
                        cl_row_t *r)
{
    memset(r, 0, sizeof(*r));
    if (peer) {
        sl_cql_inet_t rpc, p;
        bool has_rpc = cl_inet_cell(cells, cl_col(rows, "rpc_address"), &rpc);
        bool has_peer = cl_inet_cell(cells, cl_col(rows, "peer"), &p);
        if (has_rpc && !cl_inet_is_any(&rpc)) {
            cl_inet_str(&rpc, r->addr, sizeof(r->addr));
        } else if (has_peer) {
            cl_inet_str(&p, r->addr, sizeof(r->addr));
        } else {
            return false;
        }
    }
    r->dc = cl_text_dup(cells, cl_col(rows, "data_center"));
    r->rack = cl_text_dup(cells, cl_col(rows, "rack"));
    int tc = cl_col(rows, "tokens");
    sl_cql_coll_iter_t it;
    int32_t n = 0;
    if (tc >= 0 && cells[tc].len >= 0 && sl_cql_val_set(cells[tc], &it, &n) == 0 && n > 0) {
        r->tokens = sl_xmalloc((size_t)n * sizeof(int64_t));
        sl_cql_bytes_t e;
        while (sl_cql_coll_next(&it, &e)) {
            sl_cql_str_t s;
            if (e.len <= 0 || sl_cql_val_text(e, &s) != 0 || s.len >= 32) {
                continue;
            }
            char tmp[32];
            memcpy(tmp, s.data, s.len);
            tmp[s.len] = '\0';
            char *end = NULL;
            long long v = strtoll(tmp, &end, 10);
            if (end != NULL && *end == '\0') {
                r->tokens[r->ntokens++] = (int64_t)v;
            }
        }
    }
    return true;
}

/* Decodes a response frame into the session's arena. Returns 0, or -1 with
 * the reason in err. */
static int cl_decode(sl_cql_cluster_t *c, sl_arena_t *a, const sl_cql_frame_t *f,
                     sl_cql_response_t *r, char *err, size_t errlen)
{
    (void)c;
    sl_arena_reset(a);
    return sl_cql_response_decode(f, a, r, err, errlen);
}

/* ---- Topology -------------------------------------------------------------------------------- */

static const char *cl_repl_get(const sl_cql_cluster_t *c, const char *key)
{
    for (size_t i = 0; i < c->n_repl; i++) {
        if (strcmp(c->repl_keys[i], key) == 0) {
            return c->repl_vals[i];
        }
    }
    return NULL;
}

static void cl_host_set(cl_host_t *h, const cl_row_t *r)
{
    free(h->dc);
    free(h->rack);
    free(h->tokens);
    h->dc = sl_xstrdup(r->dc ? r->dc : "");
    h->rack = sl_xstrdup(r->rack ? r->rack : "");
    h->tokens = NULL;
    h->ntokens = r->ntokens;
    if (r->ntokens > 0) {
        h->tokens = sl_xmalloc(r->ntokens * sizeof(int64_t));
        memcpy(h->tokens, r->tokens, r->ntokens * sizeof(int64_t));
    }
    h->removed = false;
}

static cl_host_t *cl_host_add(sl_cql_cluster_t *c, const char *addr)
{
    cl_host_t *h = sl_xcalloc(1, sizeof(*h));
    h->idx = (int)c->n_hosts;
    snprintf(h->addr, sizeof(h->addr), "%s", addr);
    h->conns = sl_xcalloc((size_t)c->cph, sizeof(cl_pconn_t *));
    h->next_attempt = c->now;
    c->hosts = sl_xrealloc(c->hosts, (c->n_hosts + 1) * sizeof(cl_host_t *));
    c->hosts[c->n_hosts++] = h;
    return h;
}

/* Applies what a refresh read: hosts, data centers, ring and replication. */
static void cl_apply(sl_cql_cluster_t *c)
{
    snprintf(c->rf_local.addr, sizeof(c->rf_local.addr), "%s", c->ctrl_addr);
    if (c->local_dc == NULL) {
        if (c->rf_local.dc == NULL || c->rf_local.dc[0] == '\0') {
            snprintf(c->topo_err, sizeof(c->topo_err),
                     "host %s reports no data center in system.local: set the local data center "
                     "(local_dc) explicitly",
                     c->ctrl_addr);
            cl_log(c, 3, "%s", c->topo_err);
            return;
        }
        c->local_dc = sl_xstrdup(c->rf_local.dc);
        cl_log(c, 1, "local data center is %s (from contact point %s)", c->local_dc, c->ctrl_addr);
    }
    bool *seen = sl_xcalloc(c->n_hosts + c->rf_n_peers + 1, sizeof(bool));
    for (size_t i = 0; i <= c->rf_n_peers; i++) {
        const cl_row_t *r = i == 0 ? &c->rf_local : &c->rf_peers[i - 1];
        cl_host_t *h = cl_host_find(c, r->addr);
        if (h == NULL) {
            h = cl_host_add(c, r->addr);
            seen = sl_xrealloc(seen, (c->n_hosts + c->rf_n_peers + 1) * sizeof(bool));
            seen[h->idx] = false;
            cl_log(c, 1, "host %s found (data center %s, rack %s, %zu tokens)", r->addr,
                   r->dc ? r->dc : "?", r->rack ? r->rack : "?", r->ntokens);
        } else if (h->removed) {
            cl_log(c, 1, "host %s is back in the cluster", r->addr);
        }
        cl_host_set(h, r);
        seen[h->idx] = true;
    }
    sl_buf_t dcs = SL_BUF_INIT;
    size_t n_local = 0;
    for (size_t i = 0; i < c->n_hosts; i++) {
        cl_host_t *h = c->hosts[i];
        if (!seen[i] && !h->removed) {
            h->removed = true;
            h->ntokens = 0;
            cl_log(c, 1, "host %s left the cluster", h->addr);
        }
        h->local = !h->removed && strcmp(h->dc ? h->dc : "", c->local_dc) == 0;
        n_local += h->local ? 1 : 0;
        bool listed = h->removed || h->dc == NULL;
        for (size_t k = 0; k < i && !listed; k++) {
            listed = !c->hosts[k]->removed && c->hosts[k]->dc != NULL &&
                     strcmp(c->hosts[k]->dc, h->dc) == 0;
        }
        if (!listed) {
            sl_buf_printf(&dcs, "%s%s", dcs.len ? ", " : "", h->dc);
        }
    }
    free(seen);
    c->topo_err[0] = '\0';
    if (n_local == 0) {
        snprintf(c->topo_err, sizeof(c->topo_err),
                 "no host of data center '%s' is known: check sink.cassandra.local_dc "
                 "(the local data center option); known: %s",
                 c->local_dc, dcs.len ? dcs.data : "none");
        cl_log(c, 3, "%s", c->topo_err);
    }
    sl_buf_free(&dcs);

    /* replication */
    size_t rf = 1;
    bool per_dc = false;
    const char *cls = cl_repl_get(c, "class");
    c->ks_missing = c->ks_name != NULL && c->rf_ks_answered && !c->rf_have_repl;
    if (c->ks_name != NULL && !c->rf_have_repl) {
        cl_log(c, 2,
               "keyspace %s: no replication found in system_schema.keyspaces; routing to the "
               "token owner only (check that the keyspace exists)",
               c->ks_name);
    } else if (cls != NULL && strstr(cls, "SimpleStrategy") != NULL) {
        const char *v = cl_repl_get(c, "replication_factor");
        rf = v ? (size_t)strtoul(v, NULL, 10) : 1;
    } else if (cls != NULL && strstr(cls, "NetworkTopologyStrategy") != NULL) {
        const char *v = cl_repl_get(c, c->local_dc);
        per_dc = true;
        rf = v ? (size_t)strtoul(v, NULL, 10) : 0;
        if (rf == 0) {
            cl_log(c, 2,
                   "keyspace %s has no replicas in data center %s: its writes go to other data "
                   "centers through coordinators here; add '%s' to its replication",
                   c->ks_name, c->local_dc, c->local_dc);
            rf = 1;
        }
    } else if (cls != NULL && strstr(cls, "EverywhereStrategy") != NULL) {
        rf = c->n_hosts;
    } else if (cls != NULL) {
        cl_log(c, 2,
               "keyspace %s: replication class %s is not known here; routing to the token "
               "owner",
               c->ks_name, cls);
    }

    sl_cql_ring_host_t *rh = sl_xcalloc(c->n_hosts + 1, sizeof(*rh));
    bool *loc = sl_xcalloc(c->n_hosts + 1, sizeof(bool));
    for (size_t i = 0; i < c->n_hosts; i++) {
        cl_host_t *h = c->hosts[i];
        rh[i].tokens = h->tokens;
        rh[i].ntokens = h->removed ? 0 : h->ntokens;
        loc[i] = h->local;
    }
    sl_cql_replmap_t m;
    if (sl_cql_replmap_build(&m, rh, loc, c->n_hosts, rf, per_dc) != 0) {
        cl_log(c, 3,
               "two hosts claim the same token in system.local/system.peers: keeping the "
               "previous ring; check the cluster's token assignment");
    } else {
        sl_cql_replmap_free(&c->rmap);
        c->rmap = m;
    }
    free(rh);
    free(loc);
    if (!c->discovered) {
        cl_log(c, 1, "discovered %zu hosts, %zu in data center %s; replication factor %zu%s",
               c->n_hosts, n_local, c->local_dc, rf, per_dc ? " (per data center)" : "");
    }
    c->discovered = true;
}

static void cl_refresh_done(sl_cql_cluster_t *c)
{
    if (c->refresh_failed || !c->rf_have_local) {
        c->refresh_wanted = true;
        c->refresh_at = c->now + c->rc_min;
    } else {
        cl_apply(c);
    }
    cl_refresh_clear(c);
}

static void cl_query_cb(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *f,
                        const sl_cql_conn_err_t *err)
{
    cl_qctx_t *q = ctx;
    sl_cql_cluster_t *c = q->c;
    static const char *const what[] = {"system.local", "system.peers", "system_schema.keyspaces"};
    c->refresh_pending--;
    if (status != SL_CQL_REQ_OK) {
        cl_log(c, 2, "control connection: reading %s: %s", what[q->kind], err->msg);
        c->refresh_failed = true;
        goto out;
    }
    sl_cql_response_t r;
    char derr[160];
    if (cl_decode(c, &c->arena, f, &r, derr, sizeof(derr)) != 0) {
        cl_log(c, 3, "control connection: bad response reading %s: %s", what[q->kind], derr);
        c->refresh_failed = true;
        goto out;
    }
    if (r.opcode == SL_CQL_OP_ERROR) {
        cl_log(c, q->kind == CL_Q_KEYSPACE ? 2 : 3, "control connection: reading %s from %s: %s",
               what[q->kind], c->ctrl_addr, r.error.message ? r.error.message : "");
        if (q->kind != CL_Q_KEYSPACE) {
            c->refresh_failed = true;
            snprintf(c->topo_err, sizeof(c->topo_err),
                     "reading %s from %s failed: %s; check that the user may read the system "
                     "tables",
                     what[q->kind], c->ctrl_addr, r.error.message ? r.error.message : "");
        }
        goto out;
    }
    if (r.opcode != SL_CQL_OP_RESULT || r.result.kind != SL_CQL_RESULT_ROWS) {
        c->refresh_failed = true;
        goto out;
    }
    const sl_cql_rows_t *rows = &r.result.rows;
    if (q->kind == CL_Q_KEYSPACE) {
        c->rf_ks_answered = true;
    }
    sl_cql_bytes_t *cells = sl_xcalloc((size_t)rows->meta.n_cols + 1, sizeof(*cells));
    sl_cql_row_iter_t it;
    sl_cql_rows_iter(rows, &it);
    while (sl_cql_rows_next(&it, cells)) {
        if (q->kind == CL_Q_LOCAL) {
            cl_row_free(&c->rf_local);
            c->rf_have_local = cl_row_read(rows, cells, false, &c->rf_local);
        } else if (q->kind == CL_Q_PEERS) {
            cl_row_t row;
            if (!cl_row_read(rows, cells, true, &row)) {
                continue;
            }
            c->rf_peers = sl_xrealloc(c->rf_peers, (c->rf_n_peers + 1) * sizeof(cl_row_t));
            c->rf_peers[c->rf_n_peers++] = row;
        } else {
            int col = cl_col(rows, "replication");
            sl_cql_coll_iter_t mi;
            int32_t n;
            if (col < 0 || cells[col].len < 0 || sl_cql_val_map(cells[col], &mi, &n) != 0) {
                continue;
            }
            sl_cql_bytes_t k, v;
            while (sl_cql_map_next(&mi, &k, &v)) {
                sl_cql_str_t ks, vs;
                if (k.len < 0 || v.len < 0 || sl_cql_val_text(k, &ks) != 0 ||
                    sl_cql_val_text(v, &vs) != 0) {
                    continue;
                }
                c->repl_keys = sl_xrealloc(c->repl_keys, (c->n_repl + 1) * sizeof(char *));
                c->repl_vals = sl_xrealloc(c->repl_vals, (c->n_repl + 1) * sizeof(char *));
                c->repl_keys[c->n_repl] = sl_xstrndup(ks.data, ks.len);
                c->repl_vals[c->n_repl++] = sl_xstrndup(vs.data, vs.len);
            }
            c->rf_have_repl = true;
        }
    }
    free(cells);
out:
    if (c->refresh_pending == 0) {
        cl_refresh_done(c);
    }
}

typedef struct cl_qbuild {
    const char *cql;
    const sl_cql_bytes_t *values;
    size_t n_values;
    uint16_t consistency;
} cl_qbuild_t;

static int cl_build_query(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    const cl_qbuild_t *q = arg;
    sl_cql_params_t p = {
        .consistency = q->consistency, .values = q->values, .n_values = q->n_values};
    return sl_cql_req_query(out, stream, q->cql, strlen(q->cql), &p, err);
}

static void cl_refresh_start(sl_cql_cluster_t *c)
{
    if (!c->ctrl_ready || c->refresh_pending > 0) {
        return;
    }
    c->refresh_wanted = false;
    cl_refresh_clear(c);
    static const char *const qs[] = {
        "SELECT * FROM system.local WHERE key='local'",
        "SELECT * FROM system.peers",
        "SELECT keyspace_name, replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
    };
    for (int k = 0; k < CL_Q_N; k++) {
        if (k == CL_Q_KEYSPACE && c->ks_name == NULL) {
            continue;
        }
        sl_cql_bytes_t v = {(const uint8_t *)c->ks_name,
                            c->ks_name ? (int32_t)strlen(c->ks_name) : 0};
        cl_qbuild_t b = {.cql = qs[k],
                         .values = k == CL_Q_KEYSPACE ? &v : NULL,
                         .n_values = k == CL_Q_KEYSPACE ? 1 : 0,
                         .consistency = SL_CQL_ONE};
        c->qctx[k].c = c;
        c->qctx[k].kind = (cl_query_kind_t)k;
        const char *err = NULL;
        if (sl_cql_conn_send(c->ctrl, cl_build_query, &b, cl_query_cb, &c->qctx[k], &err) !=
            SL_CQL_SEND_OK) {
            c->refresh_failed = true;
            continue;
        }
        c->refresh_pending++;
    }
    if (c->refresh_pending == 0) {
        c->refresh_wanted = true;
        c->refresh_at = c->now + c->rc_min;
        cl_refresh_clear(c);
    }
}

/* ---- Control connection ------------------------------------------------------------------ */

static void cl_register_cb(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *f,
                           const sl_cql_conn_err_t *err)
{
    sl_cql_cluster_t *c = ctx;
    (void)err;
    if (status == SL_CQL_REQ_OK && f->hdr.opcode == SL_CQL_OP_ERROR) {
        cl_log(c, 2,
               "control connection: REGISTER for events refused by %s: topology changes "
               "are only seen when the control connection reconnects",
               c->ctrl_addr);
    }
}

static int cl_build_register(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    (void)arg;
    static const char *const ev[] = {"TOPOLOGY_CHANGE", "STATUS_CHANGE"};
    return sl_cql_req_register(out, stream, ev, 2, err);
}

static void cl_ctrl_event(void *ctx, const sl_cql_frame_t *f)
{
    sl_cql_cluster_t *c = ctx;
    sl_cql_response_t r;
    char derr[160];
    sl_arena_t tmp;
    sl_arena_init(&tmp, 1024);
    if (sl_cql_response_decode(f, &tmp, &r, derr, sizeof(derr)) != 0) {
        cl_log(c, 2, "control connection: bad EVENT from %s: %s", c->ctrl_addr, derr);
        goto out;
    }
    char addr[CL_ADDR_LEN];
    cl_inet_str(&r.event.addr, addr, sizeof(addr));
    const char *change = r.event.change ? r.event.change : "?";
    if (r.event.kind == SL_CQL_EVENT_TOPOLOGY_CHANGE) {
        cl_log(c, 1, "topology change: %s %s; reading system.peers again", change, addr);
        c->refresh_wanted = true;
        c->refresh_at = c->now;
    } else if (r.event.kind == SL_CQL_EVENT_STATUS_CHANGE) {
        cl_host_t *h = cl_host_find(c, addr);
        cl_log(c, 1, "status change: %s %s", addr, change);
        if (h != NULL && strcmp(change, "UP") == 0) {
            h->next_attempt = c->now;
            h->backoff = 0;
        }
    }
out:
    sl_arena_free(&tmp);
}

static void cl_ctrl_state(void *ctx, sl_cql_conn_state_t state, const char *err)
{
    sl_cql_cluster_t *c = ctx;
    if (state == SL_CQL_CONN_READY) {
        c->ctrl_ready = true;
        c->ctrl_backoff = 0;
        sl_buf_reset(&c->ctrl_errs);
        snprintf(c->ctrl_addr, sizeof(c->ctrl_addr), "%s", c->ctrl_target);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = sl_cql_conn_fd(c->ctrl);
        if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
            char buf[CL_ADDR_LEN];
            const void *a = ss.ss_family == AF_INET
                                ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
            if (inet_ntop(ss.ss_family, a, buf, sizeof(buf)) != NULL) {
                snprintf(c->ctrl_addr, sizeof(c->ctrl_addr), "%s", buf);
            }
        }
        cl_log(c, 1, "control connection to %s:%d", c->ctrl_addr, c->port);
        const char *e = NULL;
        if (sl_cql_conn_send(c->ctrl, cl_build_register, NULL, cl_register_cb, c, &e) !=
            SL_CQL_SEND_OK) {
            cl_log(c, 2, "control connection: cannot REGISTER for events");
        }
        cl_refresh_start(c);
    } else if (state == SL_CQL_CONN_FAILED) {
        bool was = c->ctrl_ready;
        c->ctrl_ready = false;
        c->ctrl_failed = true;
        if (c->ctrl_errs_old) {
            sl_buf_reset(&c->ctrl_errs);
            c->ctrl_errs_old = false;
        }
        if (c->ctrl_errs.len < 2048) {
            sl_buf_printf(&c->ctrl_errs, "%s%s:%d: %s", c->ctrl_errs.len ? "; " : "",
                          c->ctrl_target, c->port, err);
        }
        cl_log(c, was ? 2 : 1, "control connection to %s:%d %s: %s", c->ctrl_target, c->port,
               was ? "lost" : "failed", err);
    } else if (state == SL_CQL_CONN_CLOSED) {
        c->ctrl_ready = false;
    }
}

/* Candidate hosts for the control connection: the contact points, then every
 * known host. */
static const char *cl_ctrl_candidate(const sl_cql_cluster_t *c, size_t i, size_t *total)
{
    *total = c->n_contacts + c->n_hosts;
    i %= *total;
    return i < c->n_contacts ? c->contacts[i] : c->hosts[i - c->n_contacts]->addr;
}

/* The options every connection of the session shares (the control connection
 * and the pool add their own: in-flight limit, keyspace, callbacks). */
static sl_cql_conn_opts_t cl_conn_opts(const sl_cql_cluster_t *c, const char *host)
{
    return (sl_cql_conn_opts_t){
        .host = host,
        .port = c->port,
        .connect_timeout_ms = c->connect_ms,
        .request_timeout_ms = c->request_ms,
        .heartbeat_interval_ms = c->heartbeat_ms,
        .user = c->user,
        .password = c->password,
        .compression = c->compression,
        .tls = c->tls,
        .tls_verify_host = c->tls_verify_host,
        .tls_ca_file = c->tls_ca_file,
        .tls_cert_file = c->tls_cert_file,
        .tls_key_file = c->tls_key_file,
        .tls_server_name = c->tls_server_name,
    };
}

static void cl_ctrl_connect(sl_cql_cluster_t *c)
{
    size_t total;
    const char *target = cl_ctrl_candidate(c, c->ctrl_try, &total);
    if (c->ctrl_try % total == 0) {
        c->ctrl_errs_old = true; /* a new round: replace them at its first failure */
    }
    snprintf(c->ctrl_target, sizeof(c->ctrl_target), "%s", target);
    c->ctrl_failed = false;
    c->ctrl_ready = false;
    sl_cql_conn_opts_t o = cl_conn_opts(c, target);
    o.max_inflight = 64;
    o.on_event = cl_ctrl_event;
    o.on_state = cl_ctrl_state;
    o.cb_ctx = c;
    c->ctrl = sl_cql_conn_create(&o);
}

/* ---- Pool connections ---------------------------------------------------------------------- */

static int cl_build_prepare(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    const cl_stmt_t *s = arg;
    return sl_cql_req_prepare(out, stream, s->cql, s->len, err);
}

static void cl_prepare_cb(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *f,
                          const sl_cql_conn_err_t *err);

/* Sends PREPARE of statement h on pc if it is due there. */
static void cl_prepare_one(cl_pconn_t *pc, int h)
{
    sl_cql_cluster_t *c = pc->c;
    cl_stmt_t *s = &c->stmts[h];
    cl_prep_t *p = cl_prep(pc, h);
    if (!pc->ready || s->error != NULL || p->state != CL_PREP_NONE || p->retry_at > c->now) {
        return;
    }
    cl_pctx_t *x = sl_xmalloc(sizeof(*x));
    x->c = c;
    x->pc = pc;
    x->stmt = h;
    const char *err = NULL;
    sl_cql_send_rc_t rc = sl_cql_conn_send(pc->conn, cl_build_prepare, s, cl_prepare_cb, x, &err);
    if (rc == SL_CQL_SEND_OK) {
        p->state = CL_PREP_PENDING;
        return;
    }
    free(x);
    p->retry_at = c->now + 20; /* no free stream id now: soon again, without spinning */
    if (rc == SL_CQL_SEND_INVALID) {
        char m[512];
        snprintf(m, sizeof(m), "cannot build PREPARE: %s: shorten the statement", err);
        s->error = sl_xstrdup(m);
    }
}

static void cl_prepare_cb(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *f,
                          const sl_cql_conn_err_t *err)
{
    cl_pctx_t *x = ctx;
    sl_cql_cluster_t *c = x->c;
    cl_pconn_t *pc = x->pc;
    int h = x->stmt;
    free(x);
    cl_stmt_t *s = &c->stmts[h];
    cl_prep_t *p = cl_prep(pc, h);
    p->state = CL_PREP_NONE;
    p->retry_at = c->now + c->rc_min;
    if (status != SL_CQL_REQ_OK) {
        cl_log(c, 0, "host %s: PREPARE: %s", pc->host->addr, err->msg);
        return;
    }
    sl_cql_response_t r;
    char derr[160];
    sl_arena_t tmp;
    sl_arena_init(&tmp, 4096);
    if (sl_cql_response_decode(f, &tmp, &r, derr, sizeof(derr)) != 0) {
        cl_log(c, 3, "host %s: bad PREPARE response: %s", pc->host->addr, derr);
        goto out;
    }
    if (r.opcode == SL_CQL_OP_ERROR) {
        const char *name = sl_cql_error_name(r.error.code);
        char m[768];
        snprintf(m, sizeof(m), "host %s: %s (0x%04x): %s", pc->host->addr, name ? name : "Error",
                 (unsigned)r.error.code, r.error.message ? r.error.message : "");
        if (r.error.cls == SL_CQL_ERRCLASS_PERMANENT && s->error != NULL) {
            cl_log(c, 0, "PREPARE refused again: %s", m);
        } else if (r.error.cls == SL_CQL_ERRCLASS_PERMANENT) {
            s->error = sl_xstrdup(m);
            cl_log(c, 3, "PREPARE refused: %s; fix the statement: %.*s", m,
                   (int)SL_MIN(s->len, 200), s->cql);
        } else {
            cl_log(c, 2, "PREPARE failed, will retry: %s", m);
        }
        goto out;
    }
    if (r.opcode != SL_CQL_OP_RESULT || r.result.kind != SL_CQL_RESULT_PREPARED ||
        r.result.prepared.id.len <= 0) {
        cl_log(c, 3, "host %s: PREPARE answered with something else than a prepared id",
               pc->host->addr);
        goto out;
    }
    free(p->id);
    p->id_len = (size_t)r.result.prepared.id.len;
    p->id = sl_xmalloc(p->id_len);
    memcpy(p->id, r.result.prepared.id.ptr, p->id_len);
    p->state = CL_PREP_READY;
    if (s->prepared == NULL) {
        sl_cql_response_t r2;
        if (sl_cql_response_decode(f, &s->arena, &r2, derr, sizeof(derr)) == 0) {
            sl_cql_prepared_t *keep = sl_arena_alloc(&s->arena, sizeof(*keep));
            *keep = r2.result.prepared;
            s->prepared = keep;
        }
    }
out:
    sl_arena_free(&tmp);
}

static void cl_pool_state(void *ctx, sl_cql_conn_state_t state, const char *err)
{
    cl_pconn_t *pc = ctx;
    sl_cql_cluster_t *c = pc->c;
    cl_host_t *h = pc->host;
    if (state == SL_CQL_CONN_READY) {
        if (pc->conn == NULL) {
            return; /* cannot happen: READY needs a handshake */
        }
        pc->ready = true;
        h->n_ready++;
        h->backoff = 0;
        h->err[0] = '\0';
        if (h->n_ready == 1) {
            h->down_logged = false;
            cl_log(c, 1, "host %s is up", h->addr);
        }
        for (size_t i = 0; i < c->n_stmts; i++) {
            cl_prepare_one(pc, (int)i);
        }
        return;
    }
    if (state != SL_CQL_CONN_FAILED && state != SL_CQL_CONN_CLOSED) {
        return;
    }
    bool was = pc->ready;
    pc->ready = false;
    if (was) {
        h->n_ready--;
    }
    for (size_t i = 0; i < pc->n_preps; i++) {
        pc->preps[i].state = CL_PREP_NONE;
        pc->preps[i].retry_at = 0;
    }
    if (state == SL_CQL_CONN_CLOSED) {
        return;
    }
    pc->failed = true;
    snprintf(h->err, sizeof(h->err), "%s", err);
    int delay;
    h->backoff = sl_cql_backoff_next(h->backoff, c->rc_min, c->rc_max, &c->seed, &delay);
    h->next_attempt = c->now + delay;
    if (h->n_ready == 0 && !h->down_logged) {
        h->down_logged = true;
        cl_log(c, 2, "host %s is down (%s); reconnecting in %d ms", h->addr, err, delay);
    } else if (h->n_ready == 0) {
        cl_log(c, 0, "host %s is still down (%s); reconnecting in %d ms", h->addr, err, delay);
    } else {
        cl_log(c, 1, "a connection to %s failed (%s); reconnecting in %d ms", h->addr, err, delay);
    }
}

static void cl_pconn_free(cl_pconn_t *pc)
{
    sl_cql_conn_destroy(pc->conn); /* ends its requests (callbacks see pc) */
    for (size_t i = 0; i < pc->n_preps; i++) {
        free(pc->preps[i].id);
    }
    free(pc->preps);
    free(pc);
}

static void cl_pconn_open(sl_cql_cluster_t *c, cl_host_t *h, int slot)
{
    cl_pconn_t *pc = sl_xcalloc(1, sizeof(*pc));
    pc->c = c;
    pc->host = h;
    h->conns[slot] = pc;
    sl_cql_conn_opts_t o = cl_conn_opts(c, h->addr);
    o.max_inflight = c->max_inflight;
    o.keyspace = c->keyspace;
    o.on_state = cl_pool_state;
    o.cb_ctx = pc;
    pc->conn = sl_cql_conn_create(&o);
}

/* Reaps failed connections, opens missing ones, sends due PREPAREs, keeps the
 * control connection up and the topology fresh. Never inside a connection's
 * callback. */
static void cl_maintain(sl_cql_cluster_t *c)
{
    if (c->ctrl != NULL && c->ctrl_failed) {
        sl_cql_conn_destroy(c->ctrl);
        c->ctrl = NULL;
        size_t total;
        (void)cl_ctrl_candidate(c, ++c->ctrl_try, &total);
        if (c->ctrl_try % total == 0) {
            int delay;
            c->ctrl_backoff =
                sl_cql_backoff_next(c->ctrl_backoff, c->rc_min, c->rc_max, &c->seed, &delay);
            c->ctrl_next = c->now + delay;
            cl_log(c, 2, "no contact point or known host answered (%s); trying again in %d ms",
                   c->ctrl_errs.data ? c->ctrl_errs.data : "", delay);
        } else {
            c->ctrl_next = c->now;
        }
    }
    if (c->ctrl == NULL && c->now >= c->ctrl_next) {
        cl_ctrl_connect(c);
    }
    if (c->ctrl_ready && c->refresh_wanted && c->refresh_pending == 0 && c->now >= c->refresh_at) {
        cl_refresh_start(c);
    }
    for (size_t i = 0; i < c->n_hosts; i++) {
        cl_host_t *h = c->hosts[i];
        int want = c->discovered && h->local && !h->removed ? c->cph : 0;
        for (int k = 0; k < c->cph; k++) {
            cl_pconn_t *pc = h->conns[k];
            if (pc != NULL && (pc->failed || k >= want)) {
                cl_pconn_free(pc);
                h->conns[k] = NULL;
                pc = NULL;
            }
            if (pc == NULL && k < want && c->now >= h->next_attempt) {
                cl_pconn_open(c, h, k);
            }
        }
    }
    for (size_t i = 0; i < c->n_hosts; i++) {
        cl_host_t *h = c->hosts[i];
        for (int k = 0; k < c->cph; k++) {
            cl_pconn_t *pc = h->conns[k];
            for (size_t s = 0; pc != NULL && pc->ready && s < c->n_stmts; s++) {
                cl_prepare_one(pc, (int)s);
            }
        }
    }
}

static bool cl_any_local_up(const sl_cql_cluster_t *c)
{
    for (size_t i = 0; i < c->n_hosts; i++) {
        if (c->hosts[i]->local && !c->hosts[i]->removed && c->hosts[i]->n_ready > 0) {
            return true;
        }
    }
    return false;
}

/* What to do about connection errors like those in text. */
static const char *cl_hint(const char *text)
{
    if (strstr(text, "uthentication") != NULL || strstr(text, "credentials") != NULL) {
        return "check the user and password";
    }
    if (strstr(text, "USE keyspace") != NULL) {
        return "check that the keyspace exists (create it, or fix the keyspace setting)";
    }
    return "check the addresses and the port, and that Cassandra is running and reachable";
}

static void cl_update_error(sl_cql_cluster_t *c)
{
    if (cl_any_local_up(c)) {
        c->error[0] = '\0';
        return;
    }
    if (!c->discovered) {
        if (c->ctrl_errs.len > 0) {
            snprintf(c->error, sizeof(c->error), "cannot reach a contact point: %s; %s",
                     c->ctrl_errs.data, cl_hint(c->ctrl_errs.data));
        } else if (c->topo_err[0] != '\0') {
            snprintf(c->error, sizeof(c->error), "%s", c->topo_err);
        } else {
            snprintf(c->error, sizeof(c->error), "connecting to the contact points");
        }
        return;
    }
    if (c->topo_err[0] != '\0') {
        snprintf(c->error, sizeof(c->error), "%s", c->topo_err);
        return;
    }
    sl_buf_t b = SL_BUF_INIT;
    bool any_err = false;
    for (size_t i = 0; i < c->n_hosts; i++) {
        const cl_host_t *h = c->hosts[i];
        if (h->local && !h->removed && h->err[0] != '\0') {
            sl_buf_printf(&b, "%s%s: %s", any_err ? "; " : "", h->addr, h->err);
            any_err = true;
        }
    }
    if (c->ks_missing) {
        snprintf(c->error, sizeof(c->error),
                 "keyspace %s does not exist (no row in system_schema.keyspaces): create it, or "
                 "fix the keyspace setting",
                 c->ks_name);
    } else if (any_err) {
        snprintf(c->error, sizeof(c->error), "no host of data center %s is up (%s); %s",
                 c->local_dc, b.data, cl_hint(b.data));
    } else {
        snprintf(c->error, sizeof(c->error), "connecting to the hosts of data center %s",
                 c->local_dc);
    }
    sl_buf_free(&b);
}

/* ---- Creation ------------------------------------------------------------------------------ */

static int cl_opt_ms(int v, int def, const char *name, char *err, size_t errlen)
{
    if (v < 0) {
        snprintf(err, errlen, "%s is %d: use 0 for the default (%d) or a positive value", name, v,
                 def);
        return -1;
    }
    return v == 0 ? def : v;
}

sl_cql_cluster_t *sl_cql_cluster_create(const sl_cql_cluster_opts_t *opts, char *err, size_t errlen)
{
    if (opts == NULL || opts->contact_points == NULL || opts->n_contact_points == 0) {
        snprintf(err, errlen, "no contact points: give at least one Cassandra host address");
        return NULL;
    }
    for (size_t i = 0; i < opts->n_contact_points; i++) {
        const char *cp = opts->contact_points[i];
        if (cp == NULL || cp[0] == '\0') {
            snprintf(err, errlen, "contact point %zu is empty: give a host name or address", i + 1);
            return NULL;
        }
        if (strlen(cp) >= CL_ADDR_LEN) {
            snprintf(err, errlen,
                     "contact point %zu is longer than %d characters: give a host "
                     "name or numeric address",
                     i + 1, CL_ADDR_LEN - 1);
            return NULL;
        }
    }
    if (opts->port < 0 || opts->port > 65535) {
        snprintf(err, errlen, "port %d is out of range: use 1-65535 (0: 9042)", opts->port);
        return NULL;
    }
    if (opts->connections_per_host < 0 || opts->connections_per_host > CL_MAX_CONNS_PER_HOST) {
        snprintf(err, errlen, "connections_per_host %d is out of range: use 1-%d (0: 1)",
                 opts->connections_per_host, CL_MAX_CONNS_PER_HOST);
        return NULL;
    }
    if (opts->max_inflight < 0 || opts->max_inflight > SL_CQL_CONN_MAX_STREAMS) {
        snprintf(err, errlen, "max_inflight %d is out of range: use 1-%d (0: 1024)",
                 opts->max_inflight, SL_CQL_CONN_MAX_STREAMS);
        return NULL;
    }
    if (opts->keyspace != NULL && opts->keyspace[0] == '\0') {
        snprintf(err, errlen, "the keyspace is empty: give a keyspace name or none");
        return NULL;
    }
    if (opts->local_dc != NULL && opts->local_dc[0] == '\0') {
        snprintf(err, errlen,
                 "local_dc is empty: give the data center name, or none to use the first "
                 "contact point's");
        return NULL;
    }
    int connect_ms = cl_opt_ms(opts->connect_timeout_ms, 5000, "connect_timeout_ms", err, errlen);
    int request_ms = cl_opt_ms(opts->request_timeout_ms, 12000, "request_timeout_ms", err, errlen);
    int rc_min = cl_opt_ms(opts->reconnect_min_ms, CL_DEFAULT_RECONNECT_MIN, "reconnect_min_ms",
                           err, errlen);
    int rc_max = cl_opt_ms(opts->reconnect_max_ms, CL_DEFAULT_RECONNECT_MAX, "reconnect_max_ms",
                           err, errlen);
    if (connect_ms < 0 || request_ms < 0 || rc_min < 0 || rc_max < 0) {
        return NULL;
    }
    if (rc_min > rc_max) {
        snprintf(err, errlen,
                 "reconnect_min_ms (%d) is above reconnect_max_ms (%d): make the minimum the "
                 "smaller one",
                 rc_min, rc_max);
        return NULL;
    }
    if (opts->user != NULL && opts->user[0] == '\0') {
        snprintf(err, errlen,
                 "the user is empty: give a user name, or none to connect without "
                 "authentication");
        return NULL;
    }

    sl_cql_cluster_t *c = sl_xcalloc(1, sizeof(*c));
    c->contacts = sl_xcalloc(opts->n_contact_points, sizeof(char *));
    for (size_t i = 0; i < opts->n_contact_points; i++) {
        c->contacts[i] = sl_xstrdup(opts->contact_points[i]);
    }
    c->n_contacts = opts->n_contact_points;
    c->port = opts->port > 0 ? opts->port : CL_DEFAULT_PORT;
    if (opts->keyspace != NULL) {
        c->keyspace = sl_xstrdup(opts->keyspace);
        const char *k = opts->keyspace;
        size_t n = strlen(k);
        if (n >= 2 && k[0] == '"' && k[n - 1] == '"') {
            sl_buf_t b = SL_BUF_INIT;
            for (size_t i = 1; i + 1 < n; i++) {
                sl_buf_putc(&b, k[i]);
                if (k[i] == '"' && k[i + 1] == '"') {
                    i++;
                }
            }
            c->ks_name = sl_xstrndup(b.data ? b.data : "", b.len);
            sl_buf_free(&b);
        } else {
            c->ks_name = sl_xstrdup(k);
        }
    }
    c->local_dc = opts->local_dc ? sl_xstrdup(opts->local_dc) : NULL;
    c->user = opts->user ? sl_xstrdup(opts->user) : NULL;
    c->password = opts->password ? sl_xstrdup(opts->password) : NULL;
    c->cph = opts->connections_per_host > 0 ? opts->connections_per_host : 1;
    c->max_inflight = opts->max_inflight;
    c->connect_ms = connect_ms;
    c->request_ms = request_ms;
    c->heartbeat_ms = opts->heartbeat_interval_ms;
    c->rc_min = rc_min;
    c->rc_max = rc_max;
    c->token_aware = opts->token_aware;
    c->compression = opts->compression;
    c->tls = opts->tls;
    c->tls_verify_host = opts->tls_verify_host;
    c->tls_ca_file = opts->tls_ca_file ? sl_xstrdup(opts->tls_ca_file) : NULL;
    c->tls_cert_file = opts->tls_cert_file ? sl_xstrdup(opts->tls_cert_file) : NULL;
    c->tls_key_file = opts->tls_key_file ? sl_xstrdup(opts->tls_key_file) : NULL;
    c->tls_server_name = opts->tls_server_name ? sl_xstrdup(opts->tls_server_name) : NULL;
    c->log = opts->log;
    c->log_ctx = opts->log_ctx;
    c->now = sl_now_ms();
    c->seed = (uint64_t)sl_now_us() ^ (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15u;
    sl_arena_init(&c->arena, 16384);
    snprintf(c->error, sizeof(c->error), "connecting to the contact points");
    cl_ctrl_connect(c);
    return c;
}

void sl_cql_cluster_destroy(sl_cql_cluster_t *c)
{
    if (c == NULL) {
        return;
    }
    c->destroying = true;
    sl_cql_conn_destroy(c->ctrl);
    c->ctrl = NULL;
    for (size_t i = 0; i < c->n_hosts; i++) {
        cl_host_t *h = c->hosts[i];
        for (int k = 0; k < c->cph; k++) {
            if (h->conns[k] != NULL) {
                cl_pconn_free(h->conns[k]);
                h->conns[k] = NULL;
            }
        }
    }
    for (size_t i = 0; i < c->n_hosts; i++) {
        cl_host_t *h = c->hosts[i];
        free(h->conns);
        free(h->dc);
        free(h->rack);
        free(h->tokens);
        free(h);
    }
    free(c->hosts);
    free(c->tls_ca_file);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->tls_server_name);
    cl_refresh_clear(c);
    sl_cql_replmap_free(&c->rmap);
    for (size_t i = 0; i < c->n_stmts; i++) {
        free(c->stmts[i].cql);
        free(c->stmts[i].error);
        sl_arena_free(&c->stmts[i].arena);
    }
    free(c->stmts);
    while (c->free_reqs != NULL) {
        cl_req_t *r = c->free_reqs;
        c->free_reqs = r->next_free;
        free(r);
    }
    for (size_t i = 0; i < c->n_contacts; i++) {
        free(c->contacts[i]);
    }
    free(c->contacts);
    free(c->keyspace);
    free(c->ks_name);
    free(c->local_dc);
    free(c->user);
    if (c->password != NULL) {
        explicit_bzero(c->password, strlen(c->password));
        free(c->password);
    }
    sl_buf_free(&c->ctrl_errs);
    sl_buf_free(&c->keybuf);
    free(c->bstmts);
    sl_arena_free(&c->arena);
    free(c);
}

/* ---- Event loop ---------------------------------------------------------------------------- */

int sl_cql_cluster_pollfds(const sl_cql_cluster_t *c, struct pollfd *fds, int max)
{
    int n = 0;
    if (c->ctrl != NULL && sl_cql_conn_fd(c->ctrl) >= 0 && n < max) {
        fds[n].fd = sl_cql_conn_fd(c->ctrl);
        fds[n].events = sl_cql_conn_events(c->ctrl);
        fds[n].revents = 0;
        n++;
    }
    for (size_t i = 0; i < c->n_hosts; i++) {
        const cl_host_t *h = c->hosts[i];
        for (int k = 0; k < c->cph && n < max; k++) {
            const cl_pconn_t *pc = h->conns[k];
            if (pc == NULL || pc->conn == NULL || sl_cql_conn_fd(pc->conn) < 0) {
                continue;
            }
            fds[n].fd = sl_cql_conn_fd(pc->conn);
            fds[n].events = sl_cql_conn_events(pc->conn);
            fds[n].revents = 0;
            n++;
        }
    }
    return n;
}

static short cl_revents(int fd, const struct pollfd *fds, int n)
{
    if (fd < 0 || fds == NULL) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (fds[i].fd == fd) {
            return fds[i].revents;
        }
    }
    return 0;
}

/* Runs process on every connection, not only those with events, a due timer
 * or output: a connection stamps requests sent between two process calls
 * with the time of the last call, so an idle one left alone for seconds
 * would give the next request a deadline already past (it would time out
 * at once although it was never slow). process on an idle connection only
 * checks its timers. */
static void cl_conn_step(sl_cql_conn_t *conn, short revents, int64_t now)
{
    sl_cql_conn_process(conn, revents, now);
}

void sl_cql_cluster_process(sl_cql_cluster_t *c, const struct pollfd *fds, int n, int64_t now_ms)
{
    if (now_ms > c->now) {
        c->now = now_ms;
    }
    /* Match events to connections before any is created or destroyed here, so
     * a new socket reusing an old number never gets the old one's events. */
    c->ctrl_revents = c->ctrl ? cl_revents(sl_cql_conn_fd(c->ctrl), fds, n) : 0;
    for (size_t i = 0; i < c->n_hosts; i++) {
        for (int k = 0; k < c->cph; k++) {
            cl_pconn_t *pc = c->hosts[i]->conns[k];
            if (pc != NULL) {
                pc->revents = cl_revents(sl_cql_conn_fd(pc->conn), fds, n);
            }
        }
    }
    if (c->ctrl != NULL && !c->ctrl_failed) {
        cl_conn_step(c->ctrl, c->ctrl_revents, c->now);
    }
    for (size_t i = 0; i < c->n_hosts; i++) {
        for (int k = 0; k < c->cph; k++) {
            cl_pconn_t *pc = c->hosts[i]->conns[k];
            if (pc != NULL && !pc->failed) {
                cl_conn_step(pc->conn, pc->revents, c->now);
            }
        }
    }
    cl_maintain(c);
    cl_update_error(c);
}

int64_t sl_cql_cluster_next_timeout_ms(const sl_cql_cluster_t *c)
{
    int64_t t = -1;
#define CL_MIN_T(x)                                                                                \
    do {                                                                                           \
        int64_t x_ = (x);                                                                          \
        if (x_ >= 0 && (t < 0 || x_ < t)) {                                                        \
            t = x_;                                                                                \
        }                                                                                          \
    } while (0)
    if (c->ctrl == NULL || c->ctrl_failed) {
        CL_MIN_T(c->ctrl_failed ? c->now : c->ctrl_next);
    } else {
        CL_MIN_T(sl_cql_conn_next_timeout_ms(c->ctrl));
        if (c->ctrl_ready && c->refresh_wanted && c->refresh_pending == 0) {
            CL_MIN_T(c->refresh_at);
        }
    }
    for (size_t i = 0; i < c->n_hosts; i++) {
        const cl_host_t *h = c->hosts[i];
        int want = c->discovered && h->local && !h->removed ? c->cph : 0;
        for (int k = 0; k < c->cph; k++) {
            const cl_pconn_t *pc = h->conns[k];
            if (pc == NULL) {
                if (k < want) {
                    CL_MIN_T(h->next_attempt);
                }
                continue;
            }
            if (pc->failed || k >= want) {
                CL_MIN_T(c->now);
                continue;
            }
            CL_MIN_T(sl_cql_conn_next_timeout_ms(pc->conn));
            for (size_t s = 0; pc->ready && s < pc->n_preps && s < c->n_stmts; s++) {
                if (pc->preps[s].state == CL_PREP_NONE && c->stmts[s].error == NULL) {
                    CL_MIN_T(pc->preps[s].retry_at);
                }
            }
            if (pc->ready && pc->n_preps < c->n_stmts) {
                CL_MIN_T(c->now);
            }
        }
    }
#undef CL_MIN_T
    return t;
}

/* ---- State --------------------------------------------------------------------------------- */

static bool cl_pconn_all_prepared(const sl_cql_cluster_t *c, const cl_pconn_t *pc)
{
    for (size_t s = 0; s < c->n_stmts; s++) {
        if (c->stmts[s].error != NULL) {
            continue;
        }
        if (s >= pc->n_preps || pc->preps[s].state != CL_PREP_READY) {
            return false;
        }
    }
    return true;
}

bool sl_cql_cluster_ready(const sl_cql_cluster_t *c)
{
    if (!c->discovered) {
        return false;
    }
    for (size_t i = 0; i < c->n_hosts; i++) {
        const cl_host_t *h = c->hosts[i];
        if (!h->local || h->removed) {
            continue;
        }
        for (int k = 0; k < c->cph; k++) {
            const cl_pconn_t *pc = h->conns[k];
            if (pc != NULL && pc->ready && cl_pconn_all_prepared(c, pc)) {
                return true;
            }
        }
    }
    return false;
}

const char *sl_cql_cluster_error(const sl_cql_cluster_t *c)
{
    return c->error;
}

size_t sl_cql_cluster_hosts(const sl_cql_cluster_t *c)
{
    return c->n_hosts;
}

void sl_cql_cluster_host(const sl_cql_cluster_t *c, size_t i, sl_cql_host_info_t *out)
{
    memset(out, 0, sizeof(*out));
    if (i >= c->n_hosts) {
        return;
    }
    const cl_host_t *h = c->hosts[i];
    out->address = h->addr;
    out->dc = h->dc ? h->dc : "";
    out->rack = h->rack ? h->rack : "";
    out->local = h->local;
    out->up = h->n_ready > 0;
    out->requests = h->requests;
    for (int k = 0; k < c->cph && !out->ready; k++) {
        const cl_pconn_t *pc = h->conns[k];
        out->ready = pc != NULL && pc->ready && cl_pconn_all_prepared(c, pc);
    }
}

/* ---- Statements ---------------------------------------------------------------------------- */

int sl_cql_cluster_prepare(sl_cql_cluster_t *c, const char *cql, size_t len, char *err,
                           size_t errlen)
{
    if (cql == NULL || len == 0) {
        snprintf(err, errlen, "the statement is empty: give the CQL to prepare");
        return -1;
    }
    if (len > INT32_MAX) {
        snprintf(err, errlen, "the statement is longer than 2 GB: shorten it");
        return -1;
    }
    c->stmts = sl_xrealloc(c->stmts, (c->n_stmts + 1) * sizeof(cl_stmt_t));
    cl_stmt_t *s = &c->stmts[c->n_stmts];
    memset(s, 0, sizeof(*s));
    s->cql = sl_xstrndup(cql, len);
    s->len = len;
    sl_arena_init(&s->arena, 2048);
    int h = (int)c->n_stmts++;
    for (size_t i = 0; i < c->n_hosts; i++) {
        for (int k = 0; k < c->cph; k++) {
            cl_pconn_t *pc = c->hosts[i]->conns[k];
            if (pc != NULL && pc->ready) {
                cl_prepare_one(pc, h);
            }
        }
    }
    return h;
}

const sl_cql_prepared_t *sl_cql_cluster_prepared(const sl_cql_cluster_t *c, int h)
{
    if (h < 0 || (size_t)h >= c->n_stmts) {
        return NULL;
    }
    return c->stmts[h].prepared;
}

const char *sl_cql_cluster_prepare_error(const sl_cql_cluster_t *c, int h)
{
    if (h < 0 || (size_t)h >= c->n_stmts) {
        return NULL;
    }
    return c->stmts[h].error;
}

bool sl_cql_cluster_token(const sl_cql_cluster_t *c, int stmt, const sl_cql_bytes_t *values,
                          size_t n_values, int64_t *token)
{
    if (stmt < 0 || (size_t)stmt >= c->n_stmts || c->stmts[stmt].prepared == NULL) {
        return false;
    }
    sl_buf_t b = SL_BUF_INIT;
    bool ok =
        sl_cql_cluster_route_token(&c->stmts[stmt].prepared->bind, values, n_values, &b, token);
    sl_buf_free(&b);
    return ok;
}

/* ---- Requests ------------------------------------------------------------------------------ */

static cl_req_t *cl_req_get(sl_cql_cluster_t *c)
{
    cl_req_t *r = c->free_reqs;
    if (r != NULL) {
        c->free_reqs = r->next_free;
    } else {
        r = sl_xmalloc(sizeof(*r));
    }
    memset(r, 0, sizeof(*r));
    r->c = c;
    return r;
}

static void cl_req_put(sl_cql_cluster_t *c, cl_req_t *r)
{
    r->next_free = c->free_reqs;
    c->free_reqs = r;
}

static void cl_req_cb(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *f,
                      const sl_cql_conn_err_t *err)
{
    cl_req_t *r = ctx;
    sl_cql_cluster_t *c = r->c;
    cl_pconn_t *pc = r->pc;
    cl_host_t *h = pc->host;
    int stmt = r->stmt;
    sl_cql_cluster_cb cb = r->cb;
    void *cbctx = r->ctx;
    cl_req_put(c, r);

    sl_cql_outcome_t o;
    memset(&o, 0, sizeof(o));
    o.host = h->idx;
    o.code = -1;
    o.message = c->msg;
    c->msg[0] = '\0';
    sl_arena_t tmp;
    sl_arena_t *a = &c->arena;
    bool own = false;
    if (c->arena_busy) {
        sl_arena_init(&tmp, 4096);
        a = &tmp;
        own = true;
    }
    c->arena_busy = true;
    sl_cql_response_t resp;
    if (status != SL_CQL_REQ_OK) {
        o.cls = SL_CQL_ERRCLASS_RETRIABLE;
        o.maybe_applied = err->maybe_applied;
        if (status == SL_CQL_REQ_TIMEOUT) {
            snprintf(c->msg, sizeof(c->msg),
                     "host %s: no response within %d ms (request_timeout_ms): the host may be "
                     "overloaded; retry, or raise the timeout",
                     h->addr, c->request_ms);
        } else {
            snprintf(c->msg, sizeof(c->msg), "host %s: connection lost: %s", h->addr, err->msg);
        }
    } else {
        char derr[160];
        if (cl_decode(c, a, f, &resp, derr, sizeof(derr)) != 0) {
            o.cls = SL_CQL_ERRCLASS_PERMANENT;
            o.maybe_applied = true;
            snprintf(c->msg, sizeof(c->msg),
                     "host %s: cannot decode the response (%s): report this with the server "
                     "version",
                     h->addr, derr);
        } else if (resp.opcode == SL_CQL_OP_RESULT) {
            o.ok = true;
            o.response = &resp;
        } else if (resp.opcode == SL_CQL_OP_ERROR) {
            const sl_cql_error_t *e = &resp.error;
            const char *name = sl_cql_error_name(e->code);
            o.code = e->code;
            o.cls = sl_cql_error_class(e->code);
            o.maybe_applied = e->maybe_applied;
            o.write_type = e->write_type;
            snprintf(c->msg, sizeof(c->msg), "host %s: %s (0x%04x): %s", h->addr,
                     name ? name : "Error", (unsigned)e->code, e->message ? e->message : "");
            if (e->code == SL_CQL_ERR_UNPREPARED) {
                o.cls = SL_CQL_ERRCLASS_REPREPARE;
                o.maybe_applied = false;
                if (stmt >= 0 && pc->ready) {
                    cl_prep_t *p = cl_prep(pc, stmt);
                    if (p->state == CL_PREP_READY) {
                        p->state = CL_PREP_NONE;
                        p->retry_at = 0;
                        cl_log(c, 1,
                               "host %s: statement %d is no longer prepared there; "
                               "preparing it again",
                               h->addr, stmt);
                        cl_prepare_one(pc, stmt);
                    }
                }
            }
        } else {
            o.cls = SL_CQL_ERRCLASS_PERMANENT;
            o.maybe_applied = true;
            snprintf(c->msg, sizeof(c->msg),
                     "host %s: unexpected %s response to a request: report this with the "
                     "server version",
                     h->addr,
                     sl_cql_opcode_name(resp.opcode) ? sl_cql_opcode_name(resp.opcode) : "?");
        }
    }
    if (cb != NULL) {
        cb(cbctx, &o);
    }
    if (own) {
        sl_arena_free(&tmp);
    } else {
        c->arena_busy = false;
    }
}

typedef struct cl_xbuild {
    sl_cql_cluster_t *c;
    const sl_cql_request_t *req;
    const cl_prep_t *prep;
} cl_xbuild_t;

static int cl_build_exec(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    cl_xbuild_t *x = arg;
    const sl_cql_request_t *q = x->req;
    if (q->n_rows == 1) {
        sl_cql_params_t p = {
            .consistency = q->consistency,
            .values = q->rows[0],
            .n_values = q->n_values,
            .has_timestamp = q->has_timestamp,
            .timestamp = q->timestamp,
        };
        return sl_cql_req_execute(out, stream, x->prep->id, x->prep->id_len, &p, err);
    }
    sl_cql_cluster_t *c = x->c;
    if (c->bstmts_cap < q->n_rows) {
        c->bstmts = sl_xrealloc(c->bstmts, q->n_rows * sizeof(sl_cql_batch_stmt_t));
        c->bstmts_cap = q->n_rows;
    }
    for (size_t i = 0; i < q->n_rows; i++) {
        c->bstmts[i] = (sl_cql_batch_stmt_t){
            .id = x->prep->id,
            .id_len = x->prep->id_len,
            .values = q->rows[i],
            .n_values = q->n_values,
        };
    }
    sl_cql_batch_t b = {
        .type = q->batch_type,
        .stmts = c->bstmts,
        .n_stmts = q->n_rows,
        .consistency = q->consistency,
        .has_timestamp = q->has_timestamp,
        .timestamp = q->timestamp,
    };
    return sl_cql_req_batch(out, stream, &b, err);
}

/* Tries the ready connections of h (round-robin inside the host). stmt < 0:
 * a QUERY built by build/arg as it is. */
static sl_cql_send_rc_t cl_try_host(sl_cql_cluster_t *c, cl_host_t *h, int stmt,
                                    sl_cql_conn_build_fn build, void *arg, cl_xbuild_t *x,
                                    sl_cql_cluster_cb cb, void *ctx, const char **err)
{
    if (!h->local || h->removed || h->n_ready == 0) {
        return SL_CQL_SEND_DOWN;
    }
    for (int k = 0; k < c->cph; k++) {
        int slot = (int)((h->rr + (unsigned)k) % (unsigned)c->cph);
        cl_pconn_t *pc = h->conns[slot];
        if (pc == NULL || !pc->ready) {
            continue;
        }
        if (stmt >= 0) {
            cl_prep_t *p = cl_prep(pc, stmt);
            if (p->state != CL_PREP_READY) {
                continue;
            }
            x->prep = p;
        }
        cl_req_t *r = cl_req_get(c);
        r->pc = pc;
        r->stmt = stmt;
        r->cb = cb;
        r->ctx = ctx;
        const char *e = NULL;
        sl_cql_send_rc_t rc = sl_cql_conn_send(pc->conn, build, arg, cl_req_cb, r, &e);
        if (rc == SL_CQL_SEND_OK) {
            h->rr = (unsigned)slot + 1;
            h->requests++;
            return rc;
        }
        cl_req_put(c, r);
        if (rc == SL_CQL_SEND_INVALID) {
            snprintf(c->errbuf, sizeof(c->errbuf), "cannot build the request: %s",
                     e ? e : "invalid");
            *err = c->errbuf;
            return rc;
        }
    }
    return SL_CQL_SEND_AGAIN;
}

/* Replicas first (reps, n), then every other local host round-robin. */
static sl_cql_send_rc_t cl_route(sl_cql_cluster_t *c, const int *reps, size_t n, int stmt,
                                 sl_cql_conn_build_fn build, void *arg, cl_xbuild_t *x,
                                 sl_cql_cluster_cb cb, void *ctx, const char **err)
{
    for (size_t i = 0; i < n; i++) {
        if (reps[i] < 0 || (size_t)reps[i] >= c->n_hosts) {
            continue;
        }
        sl_cql_send_rc_t rc = cl_try_host(c, c->hosts[reps[i]], stmt, build, arg, x, cb, ctx, err);
        if (rc == SL_CQL_SEND_OK || rc == SL_CQL_SEND_INVALID) {
            return rc;
        }
    }
    for (size_t k = 0; k < c->n_hosts; k++) {
        size_t i = (c->rr + k) % c->n_hosts;
        bool is_rep = false;
        for (size_t j = 0; j < n && !is_rep; j++) {
            is_rep = reps[j] == (int)i;
        }
        if (is_rep) {
            continue;
        }
        sl_cql_send_rc_t rc = cl_try_host(c, c->hosts[i], stmt, build, arg, x, cb, ctx, err);
        if (rc == SL_CQL_SEND_OK) {
            c->rr = (unsigned)(i + 1);
        }
        if (rc == SL_CQL_SEND_OK || rc == SL_CQL_SEND_INVALID) {
            return rc;
        }
    }
    return cl_any_local_up(c) ? SL_CQL_SEND_AGAIN : SL_CQL_SEND_DOWN;
}

static sl_cql_send_rc_t cl_invalid(sl_cql_cluster_t *c, const char **err, const char *fmt, ...)
    SL_PRINTF(3, 4);

static sl_cql_send_rc_t cl_invalid(sl_cql_cluster_t *c, const char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
    va_end(ap);
    if (err != NULL) {
        *err = c->errbuf;
    }
    return SL_CQL_SEND_INVALID;
}

sl_cql_send_rc_t sl_cql_cluster_send(sl_cql_cluster_t *c, const sl_cql_request_t *req,
                                     sl_cql_cluster_cb cb, void *ctx, const char **err)
{
    const char *dummy = NULL;
    if (err == NULL) {
        err = &dummy;
    }
    if (c->destroying) {
        return SL_CQL_SEND_DOWN;
    }
    if (req->stmt < 0 || (size_t)req->stmt >= c->n_stmts) {
        return cl_invalid(c, err,
                          "unknown statement handle %d: use a handle from "
                          "sl_cql_cluster_prepare",
                          req->stmt);
    }
    cl_stmt_t *s = &c->stmts[req->stmt];
    if (s->error != NULL) {
        *err = s->error;
        return SL_CQL_SEND_INVALID;
    }
    if (req->n_rows == 0 || req->rows == NULL) {
        return cl_invalid(c, err, "a request needs at least one row of values");
    }
    if (req->n_rows > CL_MAX_BATCH) {
        return cl_invalid(c, err,
                          "a BATCH holds at most %d statements, not %zu: send smaller "
                          "batches",
                          CL_MAX_BATCH, req->n_rows);
    }
    if (s->prepared == NULL) {
        return cl_any_local_up(c) ? SL_CQL_SEND_AGAIN : SL_CQL_SEND_DOWN;
    }
    if (req->n_values != (size_t)s->prepared->bind.n_cols) {
        return cl_invalid(c, err,
                          "the statement has %d bind markers but the request has %zu values per "
                          "row: give one value per marker",
                          (int)s->prepared->bind.n_cols, req->n_values);
    }
    const int *reps = NULL;
    size_t n = 0;
    int64_t token;
    if (c->token_aware && c->rmap.n > 0 &&
        sl_cql_cluster_route_token(&s->prepared->bind, req->rows[0], req->n_values, &c->keybuf,
                                   &token)) {
        n = sl_cql_replmap_get(&c->rmap, token, &reps);
    }
    cl_xbuild_t x = {.c = c, .req = req};
    return cl_route(c, reps, n, req->stmt, cl_build_exec, &x, &x, cb, ctx, err);
}

sl_cql_send_rc_t sl_cql_cluster_query(sl_cql_cluster_t *c, const char *cql, size_t len,
                                      uint16_t consistency, sl_cql_cluster_cb cb, void *ctx,
                                      const char **err)
{
    const char *dummy = NULL;
    if (err == NULL) {
        err = &dummy;
    }
    if (c->destroying) {
        return SL_CQL_SEND_DOWN;
    }
    if (cql == NULL || len == 0) {
        return cl_invalid(c, err, "the query is empty: give the CQL to run");
    }
    char *q = sl_xstrndup(cql, len);
    cl_qbuild_t b = {.cql = q, .consistency = consistency};
    cl_xbuild_t x = {.c = c};
    sl_cql_send_rc_t rc = cl_route(c, NULL, 0, -1, cl_build_query, &b, &x, cb, ctx, err);
    free(q);
    return rc;
}
