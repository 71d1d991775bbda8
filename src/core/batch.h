/* A batch: the messages one lane consumed in one go, their decoded records,
 * and the arena holding unescaped strings. A batch lives until every record
 * in it is done (acknowledged by the sink or the dead-letter path); records'
 * string values point into its data and arena until then. The lane copies
 * each message's key and payload into the batch's data and gives librdkafka
 * its message back at once: a message held costs librdkafka ~300 bytes and
 * pins the fetch response it came in, a copy costs its bytes. */
#ifndef SL_CORE_BATCH_H
#define SL_CORE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/schema.h"
#include "core/value.h"
#include "util/arena.h"

typedef enum { SL_STATUS_OK = 0, SL_STATUS_RETRY, SL_STATUS_REJECT } sl_status_t;

#define SL_DEDUP_F_OWNER 1u   /* the first copy of its dedup key in flight */
#define SL_DEDUP_F_WRITTEN 2u /* acknowledged by the sink */

/* Where a record came from: enough for a dead-letter entry. Views are
 * borrowed from the batch. */
typedef struct sl_origin {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* -1 if unknown */
    const void *key;
    size_t key_len;
    const void *payload;
    size_t payload_len;
} sl_origin_t;

/* A partition's next offset: one past the last record folded into an
 * aggregate flush (exactly-once sinks store it with the flush's rows). */
typedef struct sl_part_offset {
    const char *topic; /* borrowed from the lane's partition */
    int32_t partition;
    int64_t next;
} sl_part_offset_t;

struct sl_part;
typedef struct sl_pos {
    struct sl_part *part; /* partition tracker of the owning lane */
    uint32_t gen;         /* the part's generation when consumed */
    uint64_t seq;         /* watermark sequence number */
} sl_pos_t;

/* Where record i's message is: its Kafka offset and timestamp, and its
 * payload at data + at (then its key right after it). */
#define SL_LEN_NULL UINT32_MAX /* a null payload or key (Kafka lengths are int32) */
typedef struct sl_msg_src {
    int64_t offset;
    int64_t timestamp_ms; /* -1 if unknown */
    size_t at;
    uint32_t payload_len; /* or SL_LEN_NULL */
    uint32_t key_len;     /* or SL_LEN_NULL */
} sl_msg_src_t;

typedef struct sl_batch {
    struct sl_lane *lane;
    const sl_schema_t *schema;
    sl_msg_src_t *src;            /* n: the records' messages */
    char *data;                   /* their payloads and keys */
    size_t n;                     /* records (one per message) */
    size_t cap;                   /* allocated records */
    sl_value_t *values;           /* n * schema->n_fields */
    sl_pos_t *pos;                /* n */
    uint8_t *state;               /* n: see batch.c */
    uint8_t *attempts;            /* n: retries so far */
    char **reasons;               /* n, lazily: dead-letter reasons (in arena) */
    uint64_t *dkey;               /* n, with dedup: each record's key */
    uint8_t *dflag;               /* n, with dedup: SL_DEDUP_F_* */
    bool agg;                     /* rows of an aggregate flush (no messages, no positions) */
    char **agg_json;              /* agg, lazily: a dead-lettered row as JSON (in arena) */
    int64_t wall_ms;              /* agg: when it was flushed (wall clock) */
    sl_part_offset_t *agg_offs;   /* agg: per partition, one past its last record folded in */
    struct sl_batch_watch *watch; /* n, lazily (arena): sl_batch_watch() callbacks */
    size_t n_agg_offs;
    size_t pending;     /* records not done yet */
    int64_t created_us; /* for the batch latency histogram */
    sl_arena_t arena;
} sl_batch_t;

/* Returns the values of record idx (schema->n_fields of them). */
static inline sl_value_t *sl_batch_values(sl_batch_t *b, uint32_t idx)
{
    return b->values + (size_t)idx * b->schema->n_fields;
}
/* Fills *o with where record idx came from. A row of an aggregate flush
 * has topic "(aggregate)", partition and offset -1, the flush time as
 * timestamp, and (once dead-lettered) the row as JSON for payload. */
void sl_batch_origin(const sl_batch_t *b, uint32_t idx, sl_origin_t *o);

/* Reports the sink's result for record idx. OK: done. RETRY: offered to the
 * sink again after a backoff (source paused meanwhile). REJECT: sent to the
 * dead-letter path with reason. Lane thread only. */
void sl_batch_result(sl_batch_t *b, uint32_t idx, sl_status_t status, const char *reason);
/* Calls fn(arg) on the lane thread once record idx is done (acknowledged by
 * the sink or the dead-letter path, or dropped), before its batch can go;
 * at once if it is done already. One watch per record. Lane thread only.
 * For a sink that must know a rejected record reached the dead-letter path
 * before it commits what follows it. */
void sl_batch_watch(sl_batch_t *b, uint32_t idx, void (*fn)(void *arg), void *arg);
/* Reports the dead-letter path's result for record idx (OK or RETRY). */
void sl_batch_dlq_result(sl_batch_t *b, uint32_t idx, sl_status_t status);

#endif
