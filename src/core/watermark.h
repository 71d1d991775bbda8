/* The done-watermark of one partition: offsets are added in the order they
 * are consumed (strictly increasing, gaps allowed), marked done in any order,
 * and the committable offset is the lowest offset not yet done (or one past
 * the last offset when everything is done). Owned by one lane; not
 * thread-safe. Entries live in a ring that grows as needed; memory is bounded
 * by the number of records in flight. */
#ifndef SL_CORE_WATERMARK_H
#define SL_CORE_WATERMARK_H

#include <stdbool.h>
#include <stdint.h>

#include "util/common.h"

typedef struct sl_wm {
    int64_t *offsets; /* ring of in-flight offsets; a done entry has bit 63 set */
    uint64_t cap;     /* power of two */
    uint64_t head;    /* sequence number of the oldest entry */
    uint64_t tail;    /* sequence number the next add gets */
    int64_t next;     /* one past the highest offset seen (-1: none yet) */
} sl_wm_t;

void sl_wm_init(sl_wm_t *wm);
void sl_wm_free(sl_wm_t *wm);
/* Forgets everything (for a new assignment of the partition). */
void sl_wm_reset(sl_wm_t *wm);
/* Adds offset (must be >= sl_wm_next()); returns its sequence number. */
uint64_t sl_wm_add(sl_wm_t *wm, int64_t offset);
/* Marks the entry with sequence number seq done. Idempotent. */
void sl_wm_done(sl_wm_t *wm, uint64_t seq);
/* Records that the partition's end (or any position) was reached at offset
 * without records in between (a partition EOF): the watermark may advance to
 * it once earlier entries are done. */
void sl_wm_skip_to(sl_wm_t *wm, int64_t offset);
/* Returns the offset to commit (the first not done), or -1 if nothing was
 * ever seen. */
int64_t sl_wm_committable(const sl_wm_t *wm);
/* Returns the number of entries not yet done (in flight). */
uint64_t sl_wm_in_flight(const sl_wm_t *wm);
/* Returns one past the highest offset seen, or -1. */
static inline int64_t sl_wm_next(const sl_wm_t *wm)
{
    return wm->next;
}

#endif
