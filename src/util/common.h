/* Small things every module uses: allocation that never returns NULL,
 * attributes, and array sizing. No module state lives here. */
#ifndef SL_UTIL_COMMON_H
#define SL_UTIL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define SL_WUR __attribute__((warn_unused_result))
#define SL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SL_NORETURN __attribute__((noreturn))
#define SL_LIKELY(x) __builtin_expect(!!(x), 1)
#define SL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Allocation failure aborts the process with a message: there are no
 * untested out-of-memory branches anywhere in Sluice. */
void *sl_xmalloc(size_t n);
void *sl_xcalloc(size_t n, size_t size);
void *sl_xrealloc(void *p, size_t n);
/* Returns a NUL-terminated copy of s (gives ownership). */
char *sl_xstrdup(const char *s);
/* Returns a NUL-terminated copy of the n bytes at s (gives ownership). */
char *sl_xstrndup(const char *s, size_t n);
/* Prints "sluice: fatal: ..." to stderr and aborts. */
SL_NORETURN void sl_fatal(const char *fmt, ...) SL_PRINTF(1, 2);

/* Monotonic clock in milliseconds and microseconds; wall clock in microseconds
 * since the Unix epoch. Thread-safe. */
int64_t sl_now_ms(void);
int64_t sl_now_us(void);
int64_t sl_wall_us(void);
/* The monotonic clock at the kernel's tick resolution (1-4 ms; a memory
 * read, for per-request timestamps on hot paths). Never ahead of sl_now_ms;
 * callers that mix the two keep the larger. */
int64_t sl_now_coarse_ms(void);

#endif
