/* dedup: the key LRU with TTL, the in-flight keys and their held copies. */
#include "stages/dedup.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/buf.h"

#define DD_NONE UINT32_MAX

/* ---- config ------------------------------------------------------------------------------ */

static const sl_option_t dd_options[] = {
    {"key", SL_OPT_STRLIST, 0, NULL, false, 0, 0, NULL, "key fields"},
    {"max_keys", SL_OPT_INT, 0, "100000", false, 1, 100000000, NULL, "keys remembered per lane"},
    {"ttl", SL_OPT_DURATION, 0, "10m", false, 1, INT64_C(31) * 24 * 3600 * 1000, NULL,
     "how long a key is remembered"},
};

typedef struct dd_opts {
    sl_strlist_t key;
    int64_t max_keys;
    int64_t ttl_ms;
} dd_opts_t;

sl_dedup_conf_t *sl_dedup_conf_parse(const sl_node_t *node, const sl_schema_t *record,
                                     sl_errors_t *errs, int *bad)
{
    if (node == NULL) {
        return NULL;
    }
    sl_option_t opts[3];
    memcpy(opts, dd_options, sizeof(opts));
    opts[0].offset = offsetof(dd_opts_t, key);
    opts[1].offset = offsetof(dd_opts_t, max_keys);
    opts[2].offset = offsetof(dd_opts_t, ttl_ms);
    const sl_option_table_t table = {"dedup", "", opts, 3};
    dd_opts_t o;
    memset(&o, 0, sizeof(o));
    if (node->kind != SL_NODE_MAP) {
        sl_errors_add(errs, node->file, node->line, node->col,
                      "dedup must be a map, e.g. dedup: {key: [ad_id, user_id], max_keys: 100000, "
                      "ttl: 10m}");
        *bad = -1;
        return NULL;
    }
    if (sl_options_apply(&table, &o, node, node->file, errs) != 0) {
        sl_options_free(&table, &o);
        *bad = -1;
        return NULL;
    }
    sl_dedup_conf_t *c = sl_xcalloc(1, sizeof(*c));
    c->max_keys = o.max_keys;
    c->ttl_ms = o.ttl_ms;
    c->key_fields = sl_xcalloc(o.key.n + 1, sizeof(size_t));
    const sl_node_t *kn = sl_node_get(node, "key");
    for (size_t i = 0; i < o.key.n; i++) {
        int f = sl_schema_find(record, o.key.items[i], strlen(o.key.items[i]));
        if (f < 0) {
            sl_errors_add(errs, kn->file, kn->line, kn->col,
                          "dedup: no field '%s' after transform (key fields are record fields)",
                          o.key.items[i]);
            *bad = -1;
            continue;
        }
        c->key_fields[c->n_key_fields++] = (size_t)f;
    }
    sl_options_free(&table, &o);
    if (*bad) {
        sl_dedup_conf_destroy(c);
        return NULL;
    }
    return c;
}

void sl_dedup_conf_destroy(sl_dedup_conf_t *c)
{
    if (c != NULL) {
        free(c->key_fields);
        free(c);
    }
}

uint64_t sl_dedup_key(const sl_dedup_conf_t *c, const sl_schema_t *record, const sl_value_t *rec,
                      const void *payload, size_t len)
{
    if (c->n_key_fields == 0) {
        return XXH3_64bits(payload, len);
    }
    return sl_schema_hash(record, rec, c->key_fields, c->n_key_fields, 0);
}

/* ---- state -------------------------------------------------------------------------------- */

typedef struct dd_node { /* a remembered key */
    uint64_t key;
    int64_t expires_ms;
    uint32_t prev, next; /* LRU list: head is the most recent */
    uint32_t chain;      /* next in the bucket */
} dd_node_t;

typedef struct dd_wait { /* a held copy */
    sl_dedup_rec_t rec;
    uint32_t next;
} dd_wait_t;

typedef struct dd_pend { /* a key whose first copy is in flight */
    uint64_t key;
    uint32_t chain;
    uint32_t head, tail; /* held copies, oldest first */
} dd_pend_t;

struct sl_dedup {
    const sl_dedup_conf_t *c;
    dd_node_t *nodes;
    uint32_t *buckets;
    size_t mask;
    uint32_t n_nodes, lru_head, lru_tail, free_node;
    /* pending keys and held copies: pools with free lists */
    dd_pend_t *pend;
    uint32_t *pbuckets;
    size_t pmask;
    uint32_t n_pend, cap_pend, free_pend, live_pend;
    dd_wait_t *wait;
    uint32_t n_wait, cap_wait, free_wait;
};

sl_dedup_t *sl_dedup_create(const sl_dedup_conf_t *c)
{
    sl_dedup_t *d = sl_xcalloc(1, sizeof(*d));
    d->c = c;
    size_t nb = 16;
    while (nb < (size_t)c->max_keys * 2) {
        nb *= 2;
    }
    d->nodes = sl_xmalloc((size_t)c->max_keys * sizeof(dd_node_t));
    d->buckets = sl_xmalloc(nb * sizeof(uint32_t));
    memset(d->buckets, 0xff, nb * sizeof(uint32_t));
    d->mask = nb - 1;
    d->lru_head = d->lru_tail = d->free_node = DD_NONE;
    d->pmask = 65535; /* in-flight keys: up to runtime.max_in_flight */
    d->pbuckets = sl_xmalloc((d->pmask + 1) * sizeof(uint32_t));
    memset(d->pbuckets, 0xff, (d->pmask + 1) * sizeof(uint32_t));
    d->free_pend = d->free_wait = DD_NONE;
    return d;
}

void sl_dedup_destroy(sl_dedup_t *d)
{
    if (d == NULL) {
        return;
    }
    free(d->nodes);
    free(d->buckets);
    free(d->pend);
    free(d->pbuckets);
    free(d->wait);
    free(d);
}

static size_t dd_slot(uint64_t key, size_t mask)
{
    return (size_t)(key ^ (key >> 32)) & mask;
}

static uint32_t dd_find(const sl_dedup_t *d, uint64_t key)
{
    uint32_t i = d->buckets[dd_slot(key, d->mask)];
    while (i != DD_NONE && d->nodes[i].key != key) {
        i = d->nodes[i].chain;
    }
    return i;
}

static void dd_lru_unlink(sl_dedup_t *d, uint32_t i)
{
    dd_node_t *n = &d->nodes[i];
    if (n->prev != DD_NONE) {
        d->nodes[n->prev].next = n->next;
    } else {
        d->lru_head = n->next;
    }
    if (n->next != DD_NONE) {
        d->nodes[n->next].prev = n->prev;
    } else {
        d->lru_tail = n->prev;
    }
}

static void dd_lru_push(sl_dedup_t *d, uint32_t i)
{
    dd_node_t *n = &d->nodes[i];
    n->prev = DD_NONE;
    n->next = d->lru_head;
    if (d->lru_head != DD_NONE) {
        d->nodes[d->lru_head].prev = i;
    }
    d->lru_head = i;
    if (d->lru_tail == DD_NONE) {
        d->lru_tail = i;
    }
}

static void dd_remove(sl_dedup_t *d, uint32_t i)
{
    dd_lru_unlink(d, i);
    uint32_t *p = &d->buckets[dd_slot(d->nodes[i].key, d->mask)];
    while (*p != i) {
        p = &d->nodes[*p].chain;
    }
    *p = d->nodes[i].chain;
    d->nodes[i].chain = d->free_node;
    d->free_node = i;
}

static void dd_remember(sl_dedup_t *d, uint64_t key, int64_t now_ms)
{
    uint32_t i = dd_find(d, key);
    if (i != DD_NONE) {
        dd_lru_unlink(d, i);
    } else {
        if (d->free_node != DD_NONE) {
            i = d->free_node;
            d->free_node = d->nodes[i].chain;
        } else if (d->n_nodes < (uint32_t)d->c->max_keys) {
            i = d->n_nodes++;
        } else {
            i = d->lru_tail; /* full: forget the least recent key */
            dd_remove(d, i);
            d->free_node = d->nodes[i].chain;
        }
        d->nodes[i].key = key;
        size_t s = dd_slot(key, d->mask);
        d->nodes[i].chain = d->buckets[s];
        d->buckets[s] = i;
    }
    d->nodes[i].expires_ms = now_ms + d->c->ttl_ms;
    dd_lru_push(d, i);
}

static uint32_t dd_pend_find(const sl_dedup_t *d, uint64_t key, uint32_t **link)
{
    uint32_t *p = &d->pbuckets[dd_slot(key, d->pmask)];
    while (*p != DD_NONE && d->pend[*p].key != key) {
        p = &d->pend[*p].chain;
    }
    if (link != NULL) {
        *link = p;
    }
    return *p;
}

sl_dedup_verdict_t sl_dedup_offer(sl_dedup_t *d, uint64_t key, int64_t now_ms, sl_dedup_rec_t rec)
{
    uint32_t i = dd_find(d, key);
    if (i != DD_NONE) {
        if (d->nodes[i].expires_ms > now_ms) {
            return SL_DEDUP_DUP;
        }
        dd_remove(d, i); /* expired */
    }
    uint32_t p = dd_pend_find(d, key, NULL);
    if (p != DD_NONE) {
        uint32_t w = d->free_wait;
        if (w != DD_NONE) {
            d->free_wait = d->wait[w].next;
        } else {
            if (d->n_wait == d->cap_wait) {
                d->cap_wait = d->cap_wait ? d->cap_wait * 2 : 256;
                d->wait = sl_xrealloc(d->wait, d->cap_wait * sizeof(dd_wait_t));
            }
            w = d->n_wait++;
        }
        d->wait[w] = (dd_wait_t){rec, DD_NONE};
        if (d->pend[p].tail != DD_NONE) {
            d->wait[d->pend[p].tail].next = w;
        } else {
            d->pend[p].head = w;
        }
        d->pend[p].tail = w;
        return SL_DEDUP_HELD;
    }
    p = d->free_pend;
    if (p != DD_NONE) {
        d->free_pend = d->pend[p].chain;
    } else {
        if (d->n_pend == d->cap_pend) {
            d->cap_pend = d->cap_pend ? d->cap_pend * 2 : 256;
            d->pend = sl_xrealloc(d->pend, d->cap_pend * sizeof(dd_pend_t));
        }
        p = d->n_pend++;
    }
    size_t s = dd_slot(key, d->pmask);
    d->pend[p] = (dd_pend_t){key, d->pbuckets[s], DD_NONE, DD_NONE};
    d->pbuckets[s] = p;
    d->live_pend++;
    return SL_DEDUP_NEW;
}

void sl_dedup_resolve(sl_dedup_t *d, uint64_t key, bool written, int64_t now_ms,
                      void (*fn)(void *arg, sl_dedup_rec_t rec, bool dup), void *arg)
{
    uint32_t *link;
    uint32_t p = dd_pend_find(d, key, &link);
    if (p == DD_NONE) {
        return;
    }
    if (!written && d->pend[p].head != DD_NONE) {
        /* the next copy becomes the first: it stays pending */
        uint32_t w = d->pend[p].head;
        d->pend[p].head = d->wait[w].next;
        if (d->pend[p].head == DD_NONE) {
            d->pend[p].tail = DD_NONE;
        }
        sl_dedup_rec_t rec = d->wait[w].rec;
        d->wait[w].next = d->free_wait;
        d->free_wait = w;
        fn(arg, rec, false);
        return;
    }
    /* unlink the pending key first: fn may offer records again */
    *link = d->pend[p].chain;
    uint32_t w = d->pend[p].head;
    d->pend[p].chain = d->free_pend;
    d->free_pend = p;
    d->live_pend--;
    if (written) {
        dd_remember(d, key, now_ms);
    }
    while (w != DD_NONE) {
        uint32_t next = d->wait[w].next;
        sl_dedup_rec_t rec = d->wait[w].rec;
        d->wait[w].next = d->free_wait;
        d->free_wait = w;
        fn(arg, rec, true);
        w = next;
    }
}

size_t sl_dedup_remembered(const sl_dedup_t *d)
{
    size_t n = 0;
    for (uint32_t i = d->lru_head; i != DD_NONE; i = d->nodes[i].next) {
        n++;
    }
    return n;
}

size_t sl_dedup_pending(const sl_dedup_t *d)
{
    return d->live_pend;
}
