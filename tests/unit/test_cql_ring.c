/* Token ring ownership and SimpleStrategy replicas. The scenarios and their
 * expected replicas are taken from public driver tests (named at each test);
 * the randomized test compares against a plain linear scan written here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cql/ring.h"
#include "test.h"
#include "util/common.h"

static sl_cql_ring_t *ring_of(const sl_cql_ring_host_t *hosts, size_t n)
{
    sl_cql_ring_t *ring = NULL;
    if (sl_cql_ring_create(hosts, n, &ring) != 0) {
        fprintf(stderr, "ring_of: sl_cql_ring_create failed\n");
        abort();
    }
    return ring;
}

/* Replicas of token as a compact string of host indices, e.g. "201". */
static const char *replicas(const sl_cql_ring_t *ring, int64_t token, size_t rf)
{
    static char s[64];
    int out[32];
    size_t n = sl_cql_ring_replicas(ring, token, rf, out);
    for (size_t i = 0; i < n; i++) {
        s[i] = (char)('0' + out[i]);
    }
    s[n] = '\0';
    return s;
}

/* datastax/csharp-driver src/Cassandra.Tests/TokenTests.cs,
 * TokenMap_SimpleStrategy_With_Keyspace_Test: hosts .0/.1/.2 with tokens
 * 0/10/20; ks1 has RF 2, ks2 RF 10; "no keyspace" is the primary replica. */
TEST(csharp_simple_strategy)
{
    static const int64_t t0[] = {0}, t1[] = {10}, t2[] = {20};
    const sl_cql_ring_host_t hosts[] = {{t0, 1}, {t1, 1}, {t2, 1}};
    sl_cql_ring_t *ring = ring_of(hosts, 3);
    CHECK_STR(replicas(ring, 0, 2), "01");
    CHECK_STR(replicas(ring, -100, 2), "01");
    CHECK_STR(replicas(ring, 500000, 2), "01"); /* past the greatest token */
    CHECK_STR(replicas(ring, 20, 2), "20");
    CHECK_STR(replicas(ring, 19, 2), "20");
    CHECK_STR(replicas(ring, 5, 10), "120"); /* RF above the ring size */
    CHECK_INT(sl_cql_ring_owner(ring, 0), 0);
    CHECK_INT(sl_cql_ring_owner(ring, 10), 1);
    CHECK_INT(sl_cql_ring_owner(ring, 20), 2);
    CHECK_INT(sl_cql_ring_owner(ring, 19), 2);
    sl_cql_ring_destroy(ring);
}

/* Same file, TokenMap_SimpleStrategy_With_Hosts_Without_Tokens: host .1 has
 * no tokens and must never be a replica. */
TEST(csharp_hosts_without_tokens)
{
    static const int64_t t0[] = {0}, t2[] = {20};
    const sl_cql_ring_host_t hosts[] = {{t0, 1}, {NULL, 0}, {t2, 1}};
    sl_cql_ring_t *ring = ring_of(hosts, 3);
    CHECK_INT(sl_cql_ring_size(ring), 2);
    CHECK_STR(replicas(ring, 0, 10), "02");
    CHECK_STR(replicas(ring, -100, 10), "02");
    CHECK_STR(replicas(ring, 500000, 10), "02");
    CHECK_STR(replicas(ring, 20, 10), "20");
    sl_cql_ring_destroy(ring);
}

/* Same file, TokenMap_Build_NetworkTopology_Adjacent_Ranges_Test: one DC,
 * one rack, RF 2, so the walk is the same as SimpleStrategy's. Host 1 owns
 * the adjacent tokens 0 and 100; the second replica must be host 2 (here
 * indices 0 and 1). */
TEST(csharp_adjacent_ranges_of_one_host)
{
    static const int64_t a[] = {0, 100, 1000}, b[] = {200, 2000, 20000}, c[] = {300, 3000, 30000};
    const sl_cql_ring_host_t hosts[] = {{a, 3}, {b, 3}, {c, 3}};
    sl_cql_ring_t *ring = ring_of(hosts, 3);
    CHECK_STR(replicas(ring, 0, 2), "01");
    sl_cql_ring_destroy(ring);
}

/* datastax/cpp-driver tests/src/unit/tests/test_replication_strategy.cpp,
 * ReplicationStrategyUnitTest.Simple (tokens 0/100/200/300 on hosts
 * 1.0.0.1-4, RF 3) and SimpleNumHostsLessThanReplicationFactor (one host
 * with four tokens, RF 3 -> one replica). */
TEST(cpp_driver_simple_strategy)
{
    static const int64_t t[4][1] = {{0}, {100}, {200}, {300}};
    const sl_cql_ring_host_t hosts[] = {{t[0], 1}, {t[1], 1}, {t[2], 1}, {t[3], 1}};
    sl_cql_ring_t *ring = ring_of(hosts, 4);
    CHECK_STR(replicas(ring, 0, 3), "012");
    CHECK_STR(replicas(ring, 100, 3), "123");
    CHECK_STR(replicas(ring, 200, 3), "230");
    CHECK_STR(replicas(ring, 300, 3), "301");
    sl_cql_ring_destroy(ring);

    static const int64_t one[] = {0, 100, 200, 300};
    const sl_cql_ring_host_t single[] = {{one, 4}};
    ring = ring_of(single, 1);
    CHECK_STR(replicas(ring, 0, 3), "0");
    sl_cql_ring_destroy(ring);
}

/* datastax/python-driver tests/unit/test_metadata.py, GetReplicasTest: a
 * token equal to a ring token or one below it belongs to that token's host;
 * one above belongs to the next host, wrapping after the last. Here with
 * tokens at the int64 extremes, given unsorted. */
TEST(python_driver_shifted_tokens)
{
    static const int64_t tok[4] = {INT64_C(4611686018427387904), INT64_MIN + 1, 0, INT64_MAX - 1};
    /* host i owns tok[i]; sorted order is hosts 1, 2, 0, 3 */
    const sl_cql_ring_host_t hosts[] = {{&tok[0], 1}, {&tok[1], 1}, {&tok[2], 1}, {&tok[3], 1}};
    static const int next[4] = {3, 2, 0, 1};
    sl_cql_ring_t *ring = ring_of(hosts, 4);
    for (int h = 0; h < 4; h++) {
        CHECK_INT(sl_cql_ring_owner(ring, tok[h]), h);
        CHECK_INT(sl_cql_ring_owner(ring, tok[h] - 1), h);
        CHECK_INT(sl_cql_ring_owner(ring, tok[h] + 1), next[h]);
        int rf1;
        CHECK_INT(sl_cql_ring_replicas(ring, tok[h] + 1, 1, &rf1), 1);
        CHECK_INT(rf1, next[h]);
    }
    /* the extremes: INT64_MIN (the empty key's token) is before every ring
     * token; INT64_MAX is after the last and wraps to the first */
    CHECK_INT(sl_cql_ring_owner(ring, INT64_MIN), 1);
    CHECK_INT(sl_cql_ring_owner(ring, INT64_MAX), 1);
    CHECK_STR(replicas(ring, INT64_MAX, 4), "1203");
    sl_cql_ring_destroy(ring);
}

TEST(empty_ring_and_errors)
{
    sl_cql_ring_t *ring = NULL;
    CHECK_INT(sl_cql_ring_create(NULL, 0, &ring), 0);
    CHECK(ring != NULL);
    CHECK_INT(sl_cql_ring_size(ring), 0);
    CHECK_INT(sl_cql_ring_owner(ring, 42), -1);
    int out[3] = {-7, -7, -7};
    CHECK_INT(sl_cql_ring_replicas(ring, 42, 3, out), 0);
    CHECK_INT(out[0], -7);
    sl_cql_ring_destroy(ring);

    /* two hosts claiming one token cannot both own it */
    static const int64_t a[] = {1, 5}, b[] = {5};
    const sl_cql_ring_host_t dup[] = {{a, 2}, {b, 1}};
    ring = (sl_cql_ring_t *)1;
    CHECK_INT(sl_cql_ring_create(dup, 2, &ring), -1);
    CHECK(ring == NULL);
    sl_cql_ring_destroy(NULL);

    /* RF 0 asks for nothing */
    const sl_cql_ring_host_t ok[] = {{a, 2}};
    ring = ring_of(ok, 1);
    CHECK_INT(sl_cql_ring_replicas(ring, 3, 0, out), 0);
    sl_cql_ring_destroy(ring);
}

/* A vnode ring (8 hosts x 256 random tokens) against a linear scan. */
static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);
static int64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    int64_t s;
    memcpy(&s, &z, sizeof(s));
    return s;
}

enum { NH = 8, NT = 256 };

/* The host of the smallest ring token >= t (or > t when strict), else of
 * the smallest ring token; *found gets that token. */
static int scan_at(int64_t tokens[NH][NT], int64_t t, int strict, int64_t *found)
{
    int best = -1, lowest = -1;
    int64_t best_tok = 0, lowest_tok = 0;
    for (int h = 0; h < NH; h++) {
        for (int i = 0; i < NT; i++) {
            int64_t x = tokens[h][i];
            if ((strict ? x > t : x >= t) && (best < 0 || x < best_tok)) {
                best = h;
                best_tok = x;
            }
            if (lowest < 0 || x < lowest_tok) {
                lowest = h;
                lowest_tok = x;
            }
        }
    }
    *found = best >= 0 ? best_tok : lowest_tok;
    return best >= 0 ? best : lowest;
}

/* SimpleStrategy by brute force: step from ring token to ring token. */
static size_t scan_replicas(int64_t tokens[NH][NT], int64_t t, size_t rf, int *out)
{
    size_t n = 0;
    int64_t at;
    int host = scan_at(tokens, t, 0, &at);
    for (int step = 0; step < NH * NT && n < rf; step++) {
        size_t j = 0;
        while (j < n && out[j] != host) {
            j++;
        }
        if (j == n) {
            out[n++] = host;
        }
        host = scan_at(tokens, at, 1, &at);
    }
    return n;
}

TEST(vnode_ring_matches_linear_scan)
{
    static int64_t tokens[NH][NT];
    sl_cql_ring_host_t hosts[NH];
    for (int h = 0; h < NH; h++) {
        for (int i = 0; i < NT; i++) {
            tokens[h][i] = rng_next(); /* collisions: 2^-47 odds, ignored */
        }
        hosts[h] = (sl_cql_ring_host_t){tokens[h], NT};
    }
    sl_cql_ring_t *ring = ring_of(hosts, NH);
    CHECK_INT(sl_cql_ring_size(ring), NH * NT);
    int bad = 0;
    for (int k = 0; k < 1000; k++) {
        int64_t t = k < 20 ? tokens[k % NH][k] : rng_next();
        int64_t at;
        bad += sl_cql_ring_owner(ring, t) != scan_at(tokens, t, 0, &at);
        int out[NH], want[NH];
        size_t n = sl_cql_ring_replicas(ring, t, 3, out);
        bad +=
            n != 3 || scan_replicas(tokens, t, 3, want) != 3 || memcmp(out, want, sizeof(int) * 3);
    }
    CHECK_INT(bad, 0);
    int all[NH];
    CHECK_INT(sl_cql_ring_replicas(ring, 0, 100, all), NH);
    sl_cql_ring_destroy(ring);
}

TEST_MAIN(T(csharp_simple_strategy), T(csharp_hosts_without_tokens),
          T(csharp_adjacent_ranges_of_one_host), T(cpp_driver_simple_strategy),
          T(python_driver_shifted_tokens), T(empty_ring_and_errors),
          T(vnode_ring_matches_linear_scan))
