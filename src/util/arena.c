#include "util/arena.h"

#include <stdlib.h>
#include <string.h>

#include "util/common.h"

struct sl_arena_chunk {
    sl_arena_chunk_t *next;
    size_t size; /* usable bytes in data */
    size_t off;
    _Alignas(8) char data[];
};

void sl_arena_init(sl_arena_t *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 16384;
    a->used = 0;
}

void *sl_arena_alloc(sl_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    sl_arena_chunk_t *c = a->head;
    if (c == NULL || c->size - c->off < n) {
        size_t size = n > a->chunk_size ? n : a->chunk_size;
        c = sl_xmalloc(sizeof(*c) + size);
        c->size = size;
        c->off = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->off;
    c->off += n;
    a->used += n;
    return p;
}

char *sl_arena_strndup(sl_arena_t *a, const char *s, size_t n)
{
    char *d = sl_arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void sl_arena_reset(sl_arena_t *a)
{
    sl_arena_chunk_t *keep = NULL;
    for (sl_arena_chunk_t *c = a->head, *next; c != NULL; c = next) {
        next = c->next;
        if (next == NULL && c->size == a->chunk_size) {
            keep = c; /* the oldest ordinary chunk survives */
        } else {
            free(c);
        }
    }
    if (keep != NULL) {
        keep->off = 0;
        keep->next = NULL;
    }
    a->head = keep;
    a->used = 0;
}

void sl_arena_free(sl_arena_t *a)
{
    for (sl_arena_chunk_t *c = a->head, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}
