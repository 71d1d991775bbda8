/* dedup: drops records whose key was already written recently. Per lane: a
 * bounded LRU of 64-bit key hashes with a TTL, and the keys whose first copy
 * is still in flight. A key is remembered only once its first copy was
 * written by the sink (a copy that failed is not a reason to drop the next
 * one); a later copy arriving while the first is in flight is held until
 * the first one's fate is known, so duplicates in one batch count once. */
#ifndef SL_STAGES_DEDUP_H
#define SL_STAGES_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/schema.h"
#include "core/value.h"

/* The parsed `dedup:` section (shared, read-only). */
typedef struct sl_dedup_conf {
    size_t *key_fields; /* record fields hashed into the key; none: the message bytes */
    size_t n_key_fields;
    int64_t max_keys;
    int64_t ttl_ms;
} sl_dedup_conf_t;

/* Parses `dedup: {key: [fields], max_keys: N, ttl: 10m}` against record (the
 * fields after transform). Errors go to errs with file:line. Returns NULL
 * on error (or when node is NULL: no dedup, *bad untouched). */
sl_dedup_conf_t *sl_dedup_conf_parse(const sl_node_t *node, const sl_schema_t *record,
                                     sl_errors_t *errs, int *bad);
void sl_dedup_conf_destroy(sl_dedup_conf_t *c);

/* The key of a record: a hash of its key fields (typed, so 1 and "1"
 * differ), or of payload[0..len) when no fields are configured. */
uint64_t sl_dedup_key(const sl_dedup_conf_t *c, const sl_schema_t *record, const sl_value_t *rec,
                      const void *payload, size_t len);

typedef struct sl_dedup sl_dedup_t;

/* A record the caller tracks (its batch and index), opaque here. */
typedef struct sl_dedup_rec {
    void *batch;
    uint32_t idx;
} sl_dedup_rec_t;

typedef enum {
    SL_DEDUP_NEW = 0, /* first copy: send it on, then call sl_dedup_resolve */
    SL_DEDUP_DUP,     /* written before, within ttl: drop it */
    SL_DEDUP_HELD,    /* the first copy is in flight: held here until it resolves */
} sl_dedup_verdict_t;

sl_dedup_t *sl_dedup_create(const sl_dedup_conf_t *c);
void sl_dedup_destroy(sl_dedup_t *d);
sl_dedup_verdict_t sl_dedup_offer(sl_dedup_t *d, uint64_t key, int64_t now_ms, sl_dedup_rec_t rec);
/* The first copy of key is done: written by the sink, or not (dead-lettered,
 * dropped). Written: the key is remembered and every held copy is passed to
 * fn as a duplicate (dup true). Not written: the oldest held copy becomes
 * the first copy and is passed to fn with dup false (send it on); without
 * one the key is forgotten. */
void sl_dedup_resolve(sl_dedup_t *d, uint64_t key, bool written, int64_t now_ms,
                      void (*fn)(void *arg, sl_dedup_rec_t rec, bool dup), void *arg);
/* Keys remembered, and keys with a copy in flight (for tests/metrics). */
size_t sl_dedup_remembered(const sl_dedup_t *d);
size_t sl_dedup_pending(const sl_dedup_t *d);

#endif
