/* The cluster session's parts that need no server: option checks, routing
 * tokens (expected tokens from other drivers' public tests, as in
 * test_cql_routing.c), replica selection per replication strategy, backoff,
 * and a session whose only contact point refuses connections (a real refused
 * TCP connect on 127.0.0.1). The session against servers is tested in
 * tests/integration/test_cql_cluster_client.py. */
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cql/cluster.h"
#include "cql/cluster_internal.h"
#include "cql/types.h"
#include "test.h"
#include "util/buf.h"

static const char *const one_cp[] = {"127.0.0.1"};

static sl_cql_cluster_opts_t good_opts(void)
{
    sl_cql_cluster_opts_t o = {.contact_points = one_cp, .n_contact_points = 1};
    return o;
}

/* Creates a session with o and returns the error text (NULL if created). */
static const char *create_err(const sl_cql_cluster_opts_t *o)
{
    static char err[512];
    err[0] = '\0';
    sl_cql_cluster_t *c = sl_cql_cluster_create(o, err, sizeof(err));
    if (c != NULL) {
        sl_cql_cluster_destroy(c);
        return NULL;
    }
    return err;
}

TEST(bad_options_are_refused_with_what_to_do)
{
    CHECK_CONTAINS(create_err(NULL), "give at least one");
    sl_cql_cluster_opts_t o = good_opts();
    o.n_contact_points = 0;
    CHECK_CONTAINS(create_err(&o), "no contact points");

    static const char *const empty_cp[] = {"127.0.0.1", ""};
    o = good_opts();
    o.contact_points = empty_cp;
    o.n_contact_points = 2;
    CHECK_CONTAINS(create_err(&o), "contact point 2 is empty");

    o = good_opts();
    o.port = 70000;
    CHECK_CONTAINS(create_err(&o), "port 70000 is out of range: use 1-65535");
    o = good_opts();
    o.connections_per_host = -1;
    CHECK_CONTAINS(create_err(&o), "connections_per_host -1 is out of range");
    o = good_opts();
    o.max_inflight = 40000;
    CHECK_CONTAINS(create_err(&o), "max_inflight 40000 is out of range: use 1-32768");
    o = good_opts();
    o.request_timeout_ms = -5;
    CHECK_CONTAINS(create_err(&o), "request_timeout_ms is -5: use 0 for the default");
    o = good_opts();
    o.reconnect_min_ms = 5000;
    o.reconnect_max_ms = 1000;
    CHECK_CONTAINS(create_err(&o), "reconnect_min_ms (5000) is above reconnect_max_ms (1000)");
    o = good_opts();
    o.local_dc = "";
    CHECK_CONTAINS(create_err(&o), "local_dc is empty");
    o = good_opts();
    o.keyspace = "";
    CHECK_CONTAINS(create_err(&o), "the keyspace is empty");
    o = good_opts();
    o.user = "";
    CHECK_CONTAINS(create_err(&o), "the user is empty");

    o = good_opts();
    o.reconnect_min_ms = 100; /* max defaults to 30000 */
    CHECK(create_err(&o) == NULL);
}

static sl_cql_metadata_t bind_meta(const uint16_t *pk, int32_t n)
{
    sl_cql_metadata_t m;
    memset(&m, 0, sizeof(m));
    m.pk_count = n;
    m.pk_index = pk;
    m.n_cols = 3;
    return m;
}

/* datastax/cpp-driver tests/src/unit/tests/test_routing_key.cpp: int
 * 123456789 -> -567416363967733925; (false, 123456789, "xyz") ->
 * 4466051201071860026. Here the key markers are not the first ones, so the
 * token must follow pk_index, not the marker order. */
TEST(route_token_follows_pk_index)
{
    static const uint8_t i123[4] = {0x07, 0x5b, 0xcd, 0x15};
    static const uint8_t fals[1] = {0};
    sl_buf_t scratch = SL_BUF_INIT;
    int64_t tok = 0;

    sl_cql_bytes_t v1[2] = {{(const uint8_t *)"other", 5}, {i123, 4}};
    static const uint16_t pk1[1] = {1};
    sl_cql_metadata_t m = bind_meta(pk1, 1);
    CHECK(sl_cql_cluster_route_token(&m, v1, 2, &scratch, &tok));
    CHECK_INT(tok, INT64_C(-567416363967733925));

    /* markers: (v int, c text, a boolean); partition key (a, v, c) */
    sl_cql_bytes_t v3[3] = {{i123, 4}, {(const uint8_t *)"xyz", 3}, {fals, 1}};
    static const uint16_t pk3[3] = {2, 0, 1};
    m = bind_meta(pk3, 3);
    CHECK(sl_cql_cluster_route_token(&m, v3, 3, &scratch, &tok));
    CHECK_INT(tok, INT64_C(4466051201071860026));
    /* the scratch buffer is reused, not appended to */
    CHECK(sl_cql_cluster_route_token(&m, v3, 3, &scratch, &tok));
    CHECK_INT(tok, INT64_C(4466051201071860026));

    /* no key markers, an index past the values, a null key value */
    m = bind_meta(pk3, 0);
    CHECK(!sl_cql_cluster_route_token(&m, v3, 3, &scratch, &tok));
    m = bind_meta(pk3, 3);
    CHECK(!sl_cql_cluster_route_token(&m, v3, 2, &scratch, &tok));
    v3[0].len = -1;
    v3[0].ptr = NULL;
    CHECK(!sl_cql_cluster_route_token(&m, v3, 3, &scratch, &tok));
    sl_buf_free(&scratch);
}

static size_t reps_of(const sl_cql_replmap_t *m, int64_t token, int out[8])
{
    const int *r = NULL;
    size_t n = sl_cql_replmap_get(m, token, &r);
    for (size_t i = 0; i < n && i < 8; i++) {
        out[i] = r[i];
    }
    return n;
}

TEST(simple_strategy_replicas_in_ring_order)
{
    static const int64_t t0[] = {-100}, t1[] = {0}, t2[] = {100};
    sl_cql_ring_host_t hosts[3] = {{t0, 1}, {t1, 1}, {t2, 1}};
    bool local[3] = {true, true, true};
    sl_cql_replmap_t m;
    int r[8];
    CHECK_INT(sl_cql_replmap_build(&m, hosts, local, 3, 2, false), 0);
    CHECK_INT(reps_of(&m, -200, r), 2); /* range (100, -100] wraps to host 0 */
    CHECK_INT(r[0], 0);
    CHECK_INT(r[1], 1);
    CHECK_INT(reps_of(&m, -100, r), 2); /* a ring token belongs to its own range */
    CHECK_INT(r[0], 0);
    CHECK_INT(reps_of(&m, 50, r), 2);
    CHECK_INT(r[0], 2);
    CHECK_INT(r[1], 0);
    CHECK_INT(reps_of(&m, 101, r), 2); /* past the last token: wraps */
    CHECK_INT(r[0], 0);
    sl_cql_replmap_free(&m);

    /* RF above the host count: every host once */
    CHECK_INT(sl_cql_replmap_build(&m, hosts, local, 3, 5, false), 0);
    CHECK_INT(reps_of(&m, 1, r), 3);
    CHECK_INT(r[0], 2);
    CHECK_INT(r[1], 0);
    CHECK_INT(r[2], 1);
    sl_cql_replmap_free(&m);

    /* SimpleStrategy ignores data centers; the non-local replica is dropped */
    local[1] = false;
    CHECK_INT(sl_cql_replmap_build(&m, hosts, local, 3, 2, false), 0);
    CHECK_INT(reps_of(&m, -50, r), 1); /* replicas 1, 2: only 2 is local */
    CHECK_INT(r[0], 2);
    sl_cql_replmap_free(&m);
}

TEST(network_topology_walks_to_local_hosts)
{
    /* A dc1 -100, B dc2 0, C dc1 100, D dc1 200, E dc2 300 */
    static const int64_t ta[] = {-100}, tb[] = {0}, tc[] = {100}, td[] = {200}, te[] = {300};
    sl_cql_ring_host_t hosts[5] = {{ta, 1}, {tb, 1}, {tc, 1}, {td, 1}, {te, 1}};
    bool local[5] = {true, false, true, true, false};
    sl_cql_replmap_t m;
    int r[8];
    CHECK_INT(sl_cql_replmap_build(&m, hosts, local, 5, 2, true), 0);
    CHECK_INT(reps_of(&m, -50, r), 2); /* owner B (dc2): walk on to C, D */
    CHECK_INT(r[0], 2);
    CHECK_INT(r[1], 3);
    CHECK_INT(reps_of(&m, 250, r), 2); /* owner E: wrap to A, then C */
    CHECK_INT(r[0], 0);
    CHECK_INT(r[1], 2);
    CHECK_INT(reps_of(&m, 150, r), 2); /* owner D, then A */
    CHECK_INT(r[0], 3);
    CHECK_INT(r[1], 0);
    sl_cql_replmap_free(&m);

    /* the local DC's factor above its host count */
    CHECK_INT(sl_cql_replmap_build(&m, hosts, local, 5, 7, true), 0);
    CHECK_INT(reps_of(&m, 0, r), 3);
    CHECK_INT(r[0], 2);
    CHECK_INT(r[1], 3);
    CHECK_INT(r[2], 0);
    sl_cql_replmap_free(&m);

    /* vnodes: two tokens per host, the same host is taken once */
    static const int64_t va[] = {-100, 10}, vb[] = {-50, 20}, vc[] = {0, 30};
    sl_cql_ring_host_t vh[3] = {{va, 2}, {vb, 2}, {vc, 2}};
    bool all[3] = {true, true, true};
    CHECK_INT(sl_cql_replmap_build(&m, vh, all, 3, 3, true), 0);
    CHECK_INT(m.n, 6);
    CHECK_INT(reps_of(&m, 5, r), 3); /* ring 10(A) 20(B) 30(C) */
    CHECK_INT(r[0], 0);
    CHECK_INT(r[1], 1);
    CHECK_INT(r[2], 2);
    CHECK_INT(reps_of(&m, 25, r), 3); /* 30(C), wrap -100(A), -50(B) */
    CHECK_INT(r[0], 2);
    CHECK_INT(r[1], 0);
    CHECK_INT(r[2], 1);
    sl_cql_replmap_free(&m);
}

TEST(replmap_edge_cases)
{
    sl_cql_replmap_t m;
    int r[8];
    static const int64_t t0[] = {5}, t1[] = {5};
    sl_cql_ring_host_t dup[2] = {{t0, 1}, {t1, 1}};
    bool local[2] = {true, true};
    CHECK_INT(sl_cql_replmap_build(&m, dup, local, 2, 1, false), -1);
    CHECK_INT(m.n, 0);
    sl_cql_ring_host_t none[2] = {{NULL, 0}, {NULL, 0}};
    CHECK_INT(sl_cql_replmap_build(&m, none, local, 2, 1, false), 0);
    CHECK_INT(reps_of(&m, 0, r), 0);
    sl_cql_replmap_free(&m);
    /* no local host on the ring: no replicas, not a crash */
    bool nolocal[2] = {false, false};
    static const int64_t u0[] = {1}, u1[] = {2};
    sl_cql_ring_host_t two[2] = {{u0, 1}, {u1, 1}};
    CHECK_INT(sl_cql_replmap_build(&m, two, nolocal, 2, 3, true), 0);
    CHECK_INT(reps_of(&m, 0, r), 0);
    sl_cql_replmap_free(&m);
    sl_cql_replmap_free(&m); /* an empty map is fine */
}

TEST(backoff_doubles_with_jitter)
{
    uint64_t seed = 42;
    int delay = 0, b = 0;
    int want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++) {
        b = sl_cql_backoff_next(b, 500, 30000, &seed, &delay);
        CHECK_INT(b, want[i]);
        CHECK(delay >= b / 2 && delay <= b);
    }
    /* the jitter varies */
    int seen_lo = 0, seen_hi = 0;
    for (int i = 0; i < 1000; i++) {
        (void)sl_cql_backoff_next(0, 1000, 1000, &seed, &delay);
        seen_lo += delay < 750;
        seen_hi += delay >= 750;
    }
    CHECK(seen_lo > 100 && seen_hi > 100);
}

/* A port on 127.0.0.1 where nothing listens: bound, then closed. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static sl_buf_t logs;

static void collect_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    sl_buf_printf(&logs, "%d %s\n", level, msg);
}

static int outcomes;

static void count_outcome(void *ctx, const sl_cql_outcome_t *o)
{
    (void)ctx;
    (void)o;
    outcomes++;
}

TEST(unreachable_contact_points)
{
    int port = dead_port();
    CHECK(port > 0);
    static const char *const cps[] = {"127.0.0.1", "localhost"};
    sl_cql_cluster_opts_t o = {
        .contact_points = cps,
        .n_contact_points = 2,
        .port = port,
        .keyspace = "ks",
        .user = "alice",
        .password = "s3cret-pw",
        .connect_timeout_ms = 1000,
        .reconnect_min_ms = 50,
        .reconnect_max_ms = 100,
        .log = collect_log,
    };
    char err[256];
    sl_cql_cluster_t *c = sl_cql_cluster_create(&o, err, sizeof(err));
    CHECK(c != NULL);
    if (c == NULL) {
        return;
    }
    CHECK(!sl_cql_cluster_ready(c));
    CHECK_INT(sl_cql_cluster_hosts(c), 0);
    int h = sl_cql_cluster_prepare(c, "INSERT INTO t (a) VALUES (?)", 28, err, sizeof(err));
    CHECK_INT(h, 0);
    CHECK_INT(sl_cql_cluster_prepare(c, "", 0, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "the statement is empty");
    CHECK(sl_cql_cluster_prepared(c, h) == NULL);
    CHECK(sl_cql_cluster_prepare_error(c, h) == NULL);
    CHECK(sl_cql_cluster_prepared(c, 7) == NULL);

    /* both contact points fail, then a backoff, then another round */
    int64_t end = sl_now_ms() + 3000;
    while (sl_now_ms() < end && strstr(logs.data ? logs.data : "", "trying again") == NULL) {
        struct pollfd fds[8];
        int n = sl_cql_cluster_pollfds(c, fds, 8);
        int64_t next = sl_cql_cluster_next_timeout_ms(c);
        CHECK(next >= 0);
        int64_t wait = next - sl_now_ms();
        (void)poll(fds, (nfds_t)n, wait < 0 ? 0 : wait > 100 ? 100 : (int)wait);
        sl_cql_cluster_process(c, fds, n, sl_now_ms());
    }
    const char *e = sl_cql_cluster_error(c);
    CHECK_CONTAINS(e, "cannot reach a contact point");
    CHECK_CONTAINS(e, "Connection refused");
    CHECK_CONTAINS(e, "check the addresses and the port");
    CHECK_CONTAINS(logs.data, "trying again");
    CHECK(strstr(e, "s3cret-pw") == NULL);
    CHECK(logs.data == NULL || strstr(logs.data, "s3cret-pw") == NULL);

    /* requests: nothing is up */
    static const uint8_t one[4] = {0, 0, 0, 1};
    sl_cql_bytes_t vals[1] = {{one, 4}};
    const sl_cql_bytes_t *rows[1] = {vals};
    sl_cql_request_t req = {.stmt = h, .rows = rows, .n_rows = 1, .n_values = 1};
    const char *serr = NULL;
    CHECK_INT(sl_cql_cluster_send(c, &req, count_outcome, NULL, &serr), SL_CQL_SEND_DOWN);
    req.stmt = 9;
    CHECK_INT(sl_cql_cluster_send(c, &req, count_outcome, NULL, &serr), SL_CQL_SEND_INVALID);
    CHECK_CONTAINS(serr, "unknown statement handle 9");
    req.stmt = h;
    req.n_rows = 0;
    CHECK_INT(sl_cql_cluster_send(c, &req, count_outcome, NULL, &serr), SL_CQL_SEND_INVALID);
    CHECK_CONTAINS(serr, "at least one row");
    CHECK_INT(sl_cql_cluster_query(c, "SELECT 1", 8, SL_CQL_ONE, count_outcome, NULL, &serr),
              SL_CQL_SEND_DOWN);
    CHECK_INT(sl_cql_cluster_query(c, "", 0, SL_CQL_ONE, count_outcome, NULL, &serr),
              SL_CQL_SEND_INVALID);
    int64_t tok;
    CHECK(!sl_cql_cluster_token(c, h, vals, 1, &tok)); /* not prepared yet */
    sl_cql_cluster_destroy(c);
    CHECK_INT(outcomes, 0);
    sl_cql_cluster_destroy(NULL);
    sl_buf_free(&logs);
}

TEST_MAIN(T(bad_options_are_refused_with_what_to_do), T(route_token_follows_pk_index),
          T(simple_strategy_replicas_in_ring_order), T(network_topology_walks_to_local_hosts),
          T(replmap_edge_cases), T(backoff_doubles_with_jitter), T(unreachable_contact_points))
