#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = SL_LOG_INFO;
static const char *const log_names[] = {"error", "warn", "info", "debug"};

void sl_log_set_level(sl_log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

int sl_log_enabled(sl_log_level_t level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

int sl_log_level_parse(const char *s, sl_log_level_t *out)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(log_names); i++) {
        if (strcmp(s, log_names[i]) == 0) {
            *out = (sl_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

/* Appends msg as a logfmt quoted value, escaping quotes and control bytes. */
static size_t log_quote(char *out, size_t cap, const char *msg)
{
    size_t n = 0;
    if (cap < 3) {
        return 0;
    }
    out[n++] = '"';
    for (const char *p = msg; *p && n + 3 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (c < 0x20) {
            out[n++] = ' ';
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    return n;
}

void sl_log(sl_log_level_t level, const char *comp, const char *msg, const char *fmt, ...)
{
    if (!sl_log_enabled(level)) {
        return;
    }
    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          ".%03ldZ level=%s comp=%s msg=", ts.tv_nsec / 1000000, log_names[level],
                          comp);
    n += log_quote(line + n, sizeof(line) - n - 2, msg);
    if (fmt != NULL && n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
        va_end(ap);
        if (k > 0) {
            n += SL_MIN((size_t)k, sizeof(line) - n - 2);
        }
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
