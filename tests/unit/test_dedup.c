/* dedup (src/stages/dedup.c): keys remembered only once written, held
 * copies, promotion when the first copy fails, TTL, LRU bound, typed keys,
 * config errors. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/schema.h"
#include "stages/dedup.h"
#include "test.h"

static sl_dedup_conf_t conf(int64_t max_keys, int64_t ttl_ms)
{
    sl_dedup_conf_t c = {NULL, 0, max_keys, ttl_ms};
    return c;
}

/* Collects what sl_dedup_resolve passes on. */
typedef struct {
    uint32_t idx[16];
    bool dup[16];
    int n;
} got_t;

static void collect(void *arg, sl_dedup_rec_t rec, bool dup)
{
    got_t *g = arg;
    g->idx[g->n] = rec.idx;
    g->dup[g->n++] = dup;
}

static sl_dedup_rec_t R(uint32_t idx)
{
    return (sl_dedup_rec_t){NULL, idx};
}

TEST(remembered_only_after_written)
{
    sl_dedup_conf_t c = conf(100, 60000);
    sl_dedup_t *d = sl_dedup_create(&c);
    got_t g = {0};
    CHECK_INT(sl_dedup_offer(d, 42, 0, R(1)), SL_DEDUP_NEW);
    CHECK_INT(sl_dedup_pending(d), 1);
    /* the first copy failed (dead-lettered): nothing held, key forgotten */
    sl_dedup_resolve(d, 42, false, 10, collect, &g);
    CHECK_INT(g.n, 0);
    CHECK_INT(sl_dedup_pending(d), 0);
    CHECK_INT(sl_dedup_offer(d, 42, 20, R(2)), SL_DEDUP_NEW); /* not a duplicate */
    sl_dedup_resolve(d, 42, true, 30, collect, &g);
    CHECK_INT(sl_dedup_remembered(d), 1);
    CHECK_INT(sl_dedup_offer(d, 42, 40, R(3)), SL_DEDUP_DUP);
    CHECK_INT(sl_dedup_offer(d, 43, 40, R(4)), SL_DEDUP_NEW);
    sl_dedup_destroy(d);
}

TEST(copies_in_flight_are_held_until_the_first_resolves)
{
    sl_dedup_conf_t c = conf(100, 60000);
    sl_dedup_t *d = sl_dedup_create(&c);
    got_t g = {0};
    CHECK_INT(sl_dedup_offer(d, 7, 0, R(1)), SL_DEDUP_NEW);
    CHECK_INT(sl_dedup_offer(d, 7, 0, R(2)), SL_DEDUP_HELD);
    CHECK_INT(sl_dedup_offer(d, 7, 0, R(3)), SL_DEDUP_HELD);
    /* the first copy failed: the oldest held copy becomes the first */
    sl_dedup_resolve(d, 7, false, 5, collect, &g);
    CHECK_INT(g.n, 1);
    CHECK_INT(g.idx[0], 2);
    CHECK(!g.dup[0]);
    CHECK_INT(sl_dedup_pending(d), 1);
    CHECK_INT(sl_dedup_offer(d, 7, 6, R(4)), SL_DEDUP_HELD);
    /* copy 2 was written: 3 and 4 are duplicates, in arrival order */
    g.n = 0;
    sl_dedup_resolve(d, 7, true, 10, collect, &g);
    CHECK_INT(g.n, 2);
    CHECK_INT(g.idx[0], 3);
    CHECK_INT(g.idx[1], 4);
    CHECK(g.dup[0] && g.dup[1]);
    CHECK_INT(sl_dedup_pending(d), 0);
    CHECK_INT(sl_dedup_offer(d, 7, 11, R(5)), SL_DEDUP_DUP);
    /* resolving a key nobody holds is a no-op */
    g.n = 0;
    sl_dedup_resolve(d, 99, true, 12, collect, &g);
    CHECK_INT(g.n, 0);
    CHECK_INT(sl_dedup_offer(d, 99, 13, R(6)), SL_DEDUP_NEW);
    sl_dedup_destroy(d);
}

TEST(ttl_and_lru_bound)
{
    sl_dedup_conf_t c = conf(3, 1000);
    sl_dedup_t *d = sl_dedup_create(&c);
    got_t g = {0};
    for (uint64_t k = 1; k <= 3; k++) {
        CHECK_INT(sl_dedup_offer(d, k, 0, R(0)), SL_DEDUP_NEW);
        sl_dedup_resolve(d, k, true, (int64_t)k, collect, &g);
    }
    CHECK_INT(sl_dedup_remembered(d), 3);
    CHECK_INT(sl_dedup_offer(d, 1, 500, R(0)), SL_DEDUP_DUP); /* within ttl */
    /* a 4th key evicts the least recently written (key 1, written at 1) */
    CHECK_INT(sl_dedup_offer(d, 4, 600, R(0)), SL_DEDUP_NEW);
    sl_dedup_resolve(d, 4, true, 600, collect, &g);
    CHECK_INT(sl_dedup_remembered(d), 3);
    CHECK_INT(sl_dedup_offer(d, 1, 700, R(0)), SL_DEDUP_NEW);
    sl_dedup_resolve(d, 1, false, 700, collect, &g);
    CHECK_INT(sl_dedup_offer(d, 2, 700, R(0)), SL_DEDUP_DUP);
    /* key 3, written at 3, expires at 1003 */
    CHECK_INT(sl_dedup_offer(d, 3, 1002, R(0)), SL_DEDUP_DUP);
    CHECK_INT(sl_dedup_offer(d, 3, 1003, R(0)), SL_DEDUP_NEW);
    sl_dedup_destroy(d);
}

TEST(many_keys_and_copies)
{
    /* 20,000 keys, each offered 3 times before its first copy resolves */
    sl_dedup_conf_t c = conf(100000, 60000);
    sl_dedup_t *d = sl_dedup_create(&c);
    int news = 0, held = 0;
    for (uint64_t k = 0; k < 20000; k++) {
        for (int copy = 0; copy < 3; copy++) {
            sl_dedup_verdict_t v = sl_dedup_offer(d, k * 2654435761u, 0, R((uint32_t)k));
            news += v == SL_DEDUP_NEW;
            held += v == SL_DEDUP_HELD;
        }
    }
    CHECK_INT(news, 20000);
    CHECK_INT(held, 40000);
    CHECK_INT(sl_dedup_pending(d), 20000);
    got_t g;
    int dups = 0;
    for (uint64_t k = 0; k < 20000; k++) {
        g.n = 0;
        sl_dedup_resolve(d, k * 2654435761u, true, 1, collect, &g);
        for (int i = 0; i < g.n; i++) {
            dups += g.dup[i] && g.idx[i] == (uint32_t)k;
        }
    }
    CHECK_INT(dups, 40000);
    CHECK_INT(sl_dedup_pending(d), 0);
    CHECK_INT(sl_dedup_remembered(d), 20000);
    sl_dedup_destroy(d);
}

static int parse(const char *text, sl_schema_t *s, sl_dedup_conf_t **out, sl_errors_t *errs)
{
    sl_errors_t lerrs = {0};
    sl_doc_t *doc = sl_doc_load_string("p.yaml", text, strlen(text), &lerrs);
    CHECK(doc != NULL);
    sl_errors_free(&lerrs);
    const sl_node_t *root = sl_doc_root(doc);
    memset(s, 0, sizeof(*s));
    CHECK_INT(sl_schema_parse(sl_node_get(root, "schema"), "p.yaml", s, errs), 0);
    int bad = 0;
    *out = sl_dedup_conf_parse(sl_node_get(root, "dedup"), s, errs, &bad);
    sl_doc_free(doc);
    return bad;
}

TEST(keys_are_typed_and_config_errors_name_the_line)
{
    sl_schema_t s;
    sl_dedup_conf_t *c = NULL;
    sl_errors_t errs = {0};
    CHECK_INT(parse("schema:\n  a: {type: int64}\n  b: {type: string}\n"
                    "dedup: {key: [a, b], max_keys: 10, ttl: 1m}\n",
                    &s, &c, &errs),
              0);
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_INT(c->n_key_fields, 2);
        CHECK_INT(c->max_keys, 10);
        CHECK_INT(c->ttl_ms, 60000);
        sl_value_t r1[2] = {{.is_null = false}, {.is_null = false}};
        r1[0].u.i = 1;
        r1[1].u.s = (sl_str_t){"x", 1};
        sl_value_t r2[2] = {r1[0], r1[1]};
        CHECK(sl_dedup_key(c, &s, r1, NULL, 0) == sl_dedup_key(c, &s, r2, NULL, 0));
        r2[1].u.s = (sl_str_t){"y", 1};
        CHECK(sl_dedup_key(c, &s, r1, NULL, 0) != sl_dedup_key(c, &s, r2, NULL, 0));
        r2[1] = r1[1];
        r2[0].is_null = true; /* null differs from 0 */
        r2[0].u.i = 0;
        sl_value_t r3[2] = {r1[0], r1[1]};
        r3[0].u.i = 0;
        CHECK(sl_dedup_key(c, &s, r3, NULL, 0) != sl_dedup_key(c, &s, r2, NULL, 0));
    }
    sl_dedup_conf_destroy(c);
    sl_schema_free(&s);
    CHECK_INT(parse("schema:\n  a: {type: int64}\ndedup: {key: [a, z]}\n", &s, &c, &errs), -1);
    CHECK(c == NULL);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        CHECK_CONTAINS(errs.msgs[0], "p.yaml:3:");
        CHECK_CONTAINS(errs.msgs[0], "no field 'z'");
    }
    sl_schema_free(&s);
    sl_errors_free(&errs);
    /* no key: the message bytes */
    CHECK_INT(parse("schema:\n  a: {type: int64}\ndedup: {}\n", &s, &c, &errs), 0);
    CHECK(c != NULL && c->n_key_fields == 0);
    if (c != NULL) {
        CHECK(sl_dedup_key(c, &s, NULL, "abc", 3) == sl_dedup_key(c, &s, NULL, "abc", 3));
        CHECK(sl_dedup_key(c, &s, NULL, "abc", 3) != sl_dedup_key(c, &s, NULL, "abd", 3));
    }
    sl_dedup_conf_destroy(c);
    sl_schema_free(&s);
    sl_errors_free(&errs);
}

TEST_MAIN(T(remembered_only_after_written), T(copies_in_flight_are_held_until_the_first_resolves),
          T(ttl_and_lru_bound), T(many_keys_and_copies),
          T(keys_are_typed_and_config_errors_name_the_line))
