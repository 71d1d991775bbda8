/* The error list of config loading: every problem is collected as one
 * "file:line:col: message" string so `sluice check` can print all of them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

void sl_errors_add(sl_errors_t *e, const char *file, int line, int col, const char *fmt, ...)
{
    sl_buf_t b = SL_BUF_INIT;
    if (file != NULL && file[0] != '\0') {
        sl_buf_puts(&b, file);
        if (line > 0) {
            sl_buf_printf(&b, ":%d", line);
            if (col > 0) {
                sl_buf_printf(&b, ":%d", col);
            }
        }
        sl_buf_puts(&b, ": ");
    } else if (line > 0) {
        sl_buf_printf(&b, "line %d", line);
        if (col > 0) {
            sl_buf_printf(&b, ":%d", col);
        }
        sl_buf_puts(&b, ": ");
    }

    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(tmp)) {
        sl_buf_append(&b, tmp, (size_t)n);
    } else if (n > 0) {
        sl_buf_reserve(&b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b.data + b.len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b.len += (size_t)n;
    }
    if (b.data == NULL) {
        sl_buf_puts(&b, "");
    }

    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 8;
        e->msgs = sl_xrealloc(e->msgs, e->cap * sizeof(*e->msgs));
    }
    e->msgs[e->n++] = b.data; /* the buffer's memory becomes the message */
}

/* The position "file:LINE:COL: ..." of a message, for ordering: line and
 * column (0 when absent) and the message's original index as the tie-break. */
typedef struct err_pos {
    long line, col;
    size_t idx;
} err_pos_t;

static err_pos_t err_position(const char *msg, size_t idx)
{
    err_pos_t p = {0, 0, idx};
    for (const char *c = strchr(msg, ':'); c != NULL; c = strchr(c + 1, ':')) {
        char *end;
        long line = strtol(c + 1, &end, 10);
        if (end != c + 1 && *end == ':' && line > 0) {
            p.line = line;
            p.col = strtol(end + 1, NULL, 10);
            break;
        }
    }
    return p;
}

static int err_cmp(const void *a, const void *b)
{
    const err_pos_t *x = a, *y = b;
    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    if (x->col != y->col) {
        return x->col < y->col ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

void sl_errors_print(const sl_errors_t *e)
{
    err_pos_t *order = sl_xmalloc((e->n ? e->n : 1) * sizeof(*order));
    for (size_t i = 0; i < e->n; i++) {
        order[i] = err_position(e->msgs[i], i);
    }
    qsort(order, e->n, sizeof(*order), err_cmp);
    for (size_t i = 0; i < e->n; i++) {
        fprintf(stderr, "sluice: %s\n", e->msgs[order[i].idx]);
    }
    free(order);
}

void sl_errors_free(sl_errors_t *e)
{
    if (e == NULL) {
        return;
    }
    for (size_t i = 0; i < e->n; i++) {
        free(e->msgs[i]);
    }
    free(e->msgs);
    e->msgs = NULL;
    e->n = e->cap = 0;
}
