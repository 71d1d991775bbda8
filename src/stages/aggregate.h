/* aggregate: group records by fields (and an optional tumbling window on an
 * event-time field), fold them into count/sum/min/max/last, and emit one
 * row per group when flushed. Per lane, no locks.
 *
 * Delivery. The state never holds records: a folded record is done at once,
 * and what keeps its offset from being committed too early is a *pin*: the
 * lowest offset folded per partition slot into data not yet written. Delta
 * mode pins per flush epoch (released when that flush's rows are all
 * acknowledged); absolute mode pins per window (released when the window
 * closed and its final rows are acknowledged), so a restart replays every
 * open window from its first record and the rewritten totals come out whole.
 * At most one flush is in flight: rows of one key are never written out of
 * order, and memory is bounded by max_keys entries plus one flush. */
#ifndef SL_STAGES_AGGREGATE_H
#define SL_STAGES_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/schema.h"
#include "core/value.h"
#include "util/arena.h"
#include "util/tz.h"

typedef enum {
    SL_AGG_FN_COUNT = 0,
    SL_AGG_FN_SUM,
    SL_AGG_FN_MIN,
    SL_AGG_FN_MAX,
    SL_AGG_FN_LAST
} sl_agg_fn_t;

typedef enum { SL_AGG_DELTA = 0, SL_AGG_ABSOLUTE } sl_agg_mode_t;
typedef enum { SL_AGG_LATE_DEAD_LETTER = 0, SL_AGG_LATE_DROP } sl_agg_late_t;

/* One computed output field: fn over record field `field` (SIZE_MAX: count()). */
typedef struct sl_agg_spec {
    sl_agg_fn_t fn;
    size_t field;
    sl_type_t type; /* of the output */
} sl_agg_spec_t;

/* The parsed `aggregate:` section (shared, read-only). */
typedef struct sl_agg_conf {
    size_t *group; /* record fields grouped by */
    size_t n_group;
    sl_agg_spec_t *specs; /* output fields after the group (and window) fields */
    size_t n_specs;
    bool windowed;
    size_t time_field;     /* timestamp field of the record (windowed) */
    int64_t size_us;       /* window length */
    sl_tz_t *tz;           /* windows follow this zone's clocks; NULL: UTC */
    int64_t grace_us;      /* a window takes records until stream time passes end + grace */
    int64_t max_future_us; /* event times further ahead of the clock are rejected (0: off) */
    sl_agg_late_t late;
    sl_agg_mode_t mode;
    int64_t flush_interval_ms;
    int64_t max_keys;
    /* What the sink sees: the group fields, window_start and window_end
     * (timestamps, when windowed), then the computed fields in order. */
    sl_schema_t out;
} sl_agg_conf_t;

/* Parses `aggregate: {group_by, window, compute, output, flush_interval,
 * max_keys}` against record (the fields after transform). Errors go to errs
 * with file:line:col. Returns NULL on error (*bad set) or when node is NULL. */
sl_agg_conf_t *sl_agg_conf_parse(const sl_node_t *node, const char *file, const sl_schema_t *record,
                                 sl_errors_t *errs, int *bad);
void sl_agg_conf_destroy(sl_agg_conf_t *c);
/* The option tables of `aggregate` and `aggregate.window`, NULL-terminated
 * (for docs/CONFIG.md). */
extern const sl_option_table_t *sl_agg_option_tables[];

typedef struct sl_agg sl_agg_t;

typedef enum {
    SL_AGG_TAKEN = 0, /* folded: the record is done (its offset pinned) */
    SL_AGG_LATE,      /* its window closed: dead-letter (why set) or drop per conf->late */
    SL_AGG_REJECT,    /* cannot be folded (null event time, sum overflow...): dead-letter */
    SL_AGG_FULL,      /* a new key, max_keys reached: flush, then offer it again */
    SL_AGG_REPLAYED,  /* absolute: replayed after a restart, its window already written: done */
} sl_agg_verdict_t;

sl_agg_t *sl_agg_create(const sl_agg_conf_t *c, const sl_schema_t *record);
/* NULL is a no-op. */
void sl_agg_destroy(sl_agg_t *a);

/* Sets the clocks sl_agg_add uses: now_ms (monotonic, for the flush timer)
 * and wall_us (for max_future). Once per batch is enough. */
void sl_agg_set_clock(sl_agg_t *a, int64_t now_ms, int64_t wall_us);
/* Folds record rec (record->n_fields values), consumed from partition slot
 * (a small index the caller assigns per partition; gen: its assignment
 * generation) at offset. On LATE and REJECT *why says why. */
sl_agg_verdict_t sl_agg_add(sl_agg_t *a, const sl_value_t *rec, uint32_t slot, uint32_t gen,
                            int64_t offset, sl_reason_t *why);

/* Optional, to hide cache misses at many groups: call it twice per record
 * ahead of sl_agg_add(rec), some 16 and some 8 records ahead (rec must not
 * change in between). The first call hashes rec's group and prefetches its
 * table slot, the second prefetches the group itself. What it remembers
 * is forgotten at the next sl_agg_set_clock(): prefetch and add records
 * between two calls of it (a batch). */
void sl_agg_prefetch(sl_agg_t *a, const sl_value_t *rec);

/* True when a flush should start now: none is in flight and there is
 * something to write or windows to close, and either flush_interval passed
 * since data first waited, max_keys is reached, or force. */
bool sl_agg_flush_due(const sl_agg_t *a, int64_t now_ms, bool force);
/* When the flush timer fires next (INT64_MAX: nothing waits). */
int64_t sl_agg_next_flush_ms(const sl_agg_t *a);
/* Starts a flush: delta mode takes every group (the state restarts empty);
 * absolute mode takes the groups changed since the last flush with their
 * running totals and evicts the windows that closed (end + grace <= stream
 * time; with max_keys reached, the oldest windows are closed early). Returns
 * the rows (conf->out.n_fields values each; gives ownership, free()) and
 * sets *n; strings are copied into arena. With rows, the flush is in flight
 * until sl_agg_flush_done(); with none it is done already (returns NULL). */
sl_value_t *sl_agg_flush(sl_agg_t *a, size_t *n, sl_arena_t *arena);
/* Every row of the flush in flight was acknowledged (written or
 * dead-lettered): releases its pins. */
void sl_agg_flush_done(sl_agg_t *a);
bool sl_agg_flushing(const sl_agg_t *a);
/* True when folded data waits for a flush. */
bool sl_agg_dirty(const sl_agg_t *a);

/* The lowest offset of slot (assignment gen) that aggregation pins, or
 * INT64_MAX. The committable offset of the partition is at most this. */
int64_t sl_agg_pinned(const sl_agg_t *a, uint32_t slot, uint32_t gen);
/* Partition slot is revoked (its next owner replays from the committed
 * offset): absolute mode forgets its groups and pins. */
void sl_agg_drop_slot(sl_agg_t *a, uint32_t slot);

/* Absolute mode across restarts. A replay starts at the committed offset,
 * the first record of the oldest window not yet written; records after it
 * may belong to windows that closed and were written before the restart,
 * and folding them again would overwrite those totals with partial ones.
 * So each commit carries metadata: every window ending at or before
 * `closed` was written, and every record below offset `done` was done. On
 * assignment the metadata is given back: a replayed record of such a
 * window is skipped (SL_AGG_REPLAYED) if below `done`, else it is late.
 *
 * Writes the metadata for slot (gen) into out (cap >= 64) with done the
 * partition's first record not done; returns its length, 0 for none. */
size_t sl_agg_commit_meta(const sl_agg_t *a, uint32_t slot, uint32_t gen, int64_t done, char *out,
                          size_t cap);
/* Restores what metadata (len bytes, from the committed offset; may be
 * empty or foreign) says for slot's new assignment gen. Returns 0, or -1 if
 * it is not Sluice's aggregate metadata (then nothing is restored). */
int sl_agg_restore(sl_agg_t *a, uint32_t slot, uint32_t gen, const void *meta, size_t len);

/* Groups held (for metrics and tests). */
size_t sl_agg_keys(const sl_agg_t *a);

#endif
