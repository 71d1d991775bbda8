/* A bump allocator for memory that dies together (a batch's decoded
 * strings, a config's nodes). Not thread-safe: one owner at a time. */
#ifndef SL_UTIL_ARENA_H
#define SL_UTIL_ARENA_H

#include <stddef.h>

typedef struct sl_arena_chunk sl_arena_chunk_t;

typedef struct sl_arena {
    sl_arena_chunk_t *head; /* current chunk; older ones follow */
    size_t chunk_size;      /* size of ordinary chunks */
    size_t used;            /* total bytes handed out since the last reset */
} sl_arena_t;

/* Initialises an empty arena whose chunks are chunk_size bytes (0: 16 KiB). */
void sl_arena_init(sl_arena_t *a, size_t chunk_size);
/* Returns n bytes aligned to 8, valid until reset/free. Never NULL. */
void *sl_arena_alloc(sl_arena_t *a, size_t n);
/* Copies n bytes into the arena; the copy is NUL-terminated. */
char *sl_arena_strndup(sl_arena_t *a, const char *s, size_t n);
/* Forgets every allocation but keeps the first chunk for reuse. */
void sl_arena_reset(sl_arena_t *a);
/* Frees all memory. */
void sl_arena_free(sl_arena_t *a);

#endif
