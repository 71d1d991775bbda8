#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sl_buf_reserve(sl_buf_t *b, size_t n)
{
    if (b->len + n + 1 <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) {
        cap *= 2;
    }
    b->data = sl_xrealloc(b->data, cap);
    b->cap = cap;
}

void sl_buf_putc(sl_buf_t *b, char c)
{
    sl_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void sl_buf_puts(sl_buf_t *b, const char *s)
{
    sl_buf_append(b, s, strlen(s));
}

void sl_buf_printf(sl_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof(tmp)) {
        sl_buf_append(b, tmp, (size_t)n);
        return;
    }
    sl_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Bytes that must be escaped inside a JSON string (plus DEL, escaped so the
 * output stays printable). */
static inline int buf_needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c == 0x7f;
}

void sl_buf_json_escape(sl_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sl_buf_reserve(b, n);
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (SL_LIKELY(!buf_needs_escape(c))) {
            continue;
        }
        sl_buf_append(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sl_buf_append(b, e, 2);
        } else if (c == '\n') {
            sl_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            sl_buf_append(b, "\\t", 2);
        } else if (c == '\r') {
            sl_buf_append(b, "\\r", 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sl_buf_append(b, e, 6);
        }
    }
    sl_buf_append(b, s + run, n - run);
}

void sl_buf_append_i64(sl_buf_t *b, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    /* work in unsigned so INT64_MIN negates without overflow */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--p = '-';
    }
    sl_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void sl_buf_consume(sl_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->cap) {
        b->data[b->len] = '\0';
    }
}

void sl_buf_reset(sl_buf_t *b)
{
    b->len = 0;
    if (b->cap) {
        b->data[0] = '\0';
    }
}

void sl_buf_free(sl_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
