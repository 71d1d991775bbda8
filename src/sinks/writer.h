/* A writer thread for one file descriptor (stdout or a file), shared by all
 * lanes' instances of a sink: lanes hand it chunks of formatted bytes with the
 * records they contain; it writes them in order and posts each chunk back to
 * its lane, whose results it then reports. Bounded: a chunk is refused while
 * max_bytes are queued (back-pressure), and the refused lane is woken when
 * room frees up. A failing write (disk full, reader gone) is retried with
 * backoff and logged; nothing is dropped. */
#ifndef SL_SINKS_WRITER_H
#define SL_SINKS_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/plugin.h"
#include "util/buf.h"

typedef struct sl_writer sl_writer_t;

typedef struct sl_wref {
    sl_batch_t *batch;
    uint32_t idx;
} sl_wref_t;

typedef struct sl_wchunk sl_wchunk_t;
/* Runs on the lane thread once the chunk was written (ok) or abandoned at
 * shutdown (!ok); must report every ref's result. The chunk is freed after. */
typedef void (*sl_wchunk_done_fn)(sl_wchunk_t *chunk, bool ok);

struct sl_wchunk {
    sl_wchunk_t *next;
    sl_lane_t *lane;
    sl_wchunk_done_fn done;
    sl_buf_t data;
    sl_wref_t *refs;
    size_t n_refs, cap_refs;
};

/* Opens path for appending (created 0644), or stdout when path is NULL.
 * Returns NULL with err[256] set. */
sl_writer_t *sl_writer_create(const char *path, bool fsync, size_t max_bytes, const char *name,
                              char *err);
/* Stops the thread; chunks not written within timeout_ms are abandoned
 * (their lanes get done(chunk, false)). NULL is a no-op. */
void sl_writer_destroy(sl_writer_t *w, int64_t timeout_ms);

sl_wchunk_t *sl_wchunk_new(sl_lane_t *lane, sl_wchunk_done_fn done);
void sl_wchunk_add_ref(sl_wchunk_t *c, sl_batch_t *b, uint32_t idx);
void sl_wchunk_free(sl_wchunk_t *c);
/* Queues c (takes ownership) and returns 0, or returns 1 if the queue is full
 * (c stays the caller's; lane is woken when there is room). Lane thread. */
int sl_writer_push(sl_writer_t *w, sl_wchunk_t *c) SL_WUR;
/* For /readyz: false while writes are failing. Any thread. */
bool sl_writer_ok(const sl_writer_t *w);

#endif
