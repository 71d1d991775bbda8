/* A growable byte buffer (like redis' sds, but a plain struct). */
#ifndef SL_UTIL_BUF_H
#define SL_UTIL_BUF_H

#include <stddef.h>
#include <string.h>

#include "util/common.h"

typedef struct sl_buf {
    char *data; /* owned; always NUL-terminated when cap > 0 */
    size_t len;
    size_t cap;
} sl_buf_t;

#define SL_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Makes room for at least n more bytes. */
void sl_buf_reserve(sl_buf_t *b, size_t n);
/* Inline: the CQL writers append a few bytes at a time (an out-of-line
 * call was ~5% of the Cassandra sink's CPU). */
static inline void sl_buf_append(sl_buf_t *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        sl_buf_reserve(b, n);
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}
void sl_buf_putc(sl_buf_t *b, char c);
void sl_buf_puts(sl_buf_t *b, const char *s);
void sl_buf_printf(sl_buf_t *b, const char *fmt, ...) SL_PRINTF(2, 3);
/* Appends s (n bytes) as the inside of a JSON string: escapes quotes,
 * backslashes and control bytes; bytes >= 0x80 are copied as they are. */
void sl_buf_json_escape(sl_buf_t *b, const char *s, size_t n);
/* Appends v in decimal. */
void sl_buf_append_i64(sl_buf_t *b, int64_t v);
/* Drops the first n bytes. */
void sl_buf_consume(sl_buf_t *b, size_t n);
void sl_buf_reset(sl_buf_t *b);
/* Frees the memory; the buffer can be used again afterwards. */
void sl_buf_free(sl_buf_t *b);

#endif
