#include "core/watermark.h"

#include <stdlib.h>

#define WM_DONE ((int64_t)1 << 62)

void sl_wm_init(sl_wm_t *wm)
{
    wm->cap = 64;
    wm->offsets = sl_xmalloc(sizeof(int64_t) * wm->cap);
    wm->head = wm->tail = 0;
    wm->next = -1;
}

void sl_wm_free(sl_wm_t *wm)
{
    free(wm->offsets);
    wm->offsets = NULL;
}

void sl_wm_reset(sl_wm_t *wm)
{
    wm->head = wm->tail = 0;
    wm->next = -1;
}

static void wm_grow(sl_wm_t *wm)
{
    uint64_t cap = wm->cap * 2;
    int64_t *o = sl_xmalloc(sizeof(int64_t) * cap);
    for (uint64_t s = wm->head; s != wm->tail; s++) {
        o[s & (cap - 1)] = wm->offsets[s & (wm->cap - 1)];
    }
    free(wm->offsets);
    wm->offsets = o;
    wm->cap = cap;
}

uint64_t sl_wm_add(sl_wm_t *wm, int64_t offset)
{
    if (wm->tail - wm->head == wm->cap) {
        wm_grow(wm);
    }
    uint64_t seq = wm->tail++;
    wm->offsets[seq & (wm->cap - 1)] = offset;
    wm->next = offset + 1;
    return seq;
}

void sl_wm_done(sl_wm_t *wm, uint64_t seq)
{
    if (seq < wm->head || seq >= wm->tail) {
        return; /* already retired */
    }
    wm->offsets[seq & (wm->cap - 1)] |= WM_DONE;
    while (wm->head != wm->tail && (wm->offsets[wm->head & (wm->cap - 1)] & WM_DONE)) {
        wm->head++;
    }
}

void sl_wm_skip_to(sl_wm_t *wm, int64_t offset)
{
    if (offset > wm->next) {
        wm->next = offset;
    }
}

int64_t sl_wm_committable(const sl_wm_t *wm)
{
    if (wm->head != wm->tail) {
        return wm->offsets[wm->head & (wm->cap - 1)] & ~WM_DONE;
    }
    return wm->next;
}

uint64_t sl_wm_in_flight(const sl_wm_t *wm)
{
    return wm->tail - wm->head;
}
