/* Leveled logfmt logging to stderr:
 *   ts=2026-11-23T14:39:03.123Z level=info comp=kafka msg="partitions assigned" count=4
 * Each line is written with one write(2), so lines from threads never mix. */
#ifndef SL_UTIL_LOG_H
#define SL_UTIL_LOG_H

#include "util/common.h"

typedef enum { SL_LOG_ERROR = 0, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG } sl_log_level_t;

/* Sets the lowest level that is printed (default info). Thread-safe. */
void sl_log_set_level(sl_log_level_t level);
/* Parses "error|warn|info|debug"; returns 0 and sets *out, or -1. */
int sl_log_level_parse(const char *s, sl_log_level_t *out) SL_WUR;
/* Returns 1 if messages at this level are printed. */
int sl_log_enabled(sl_log_level_t level);

/* Logs msg for component comp; fmt (may be NULL) adds logfmt key=value pairs
 * written by the caller, e.g. sl_log(SL_LOG_INFO, "kafka", "assigned", "count=%d", n).
 * Values containing spaces must be quoted by the caller. */
void sl_log(sl_log_level_t level, const char *comp, const char *msg, const char *fmt, ...)
    SL_PRINTF(4, 5);

#define sl_log_error(comp, msg, ...) sl_log(SL_LOG_ERROR, comp, msg, __VA_ARGS__)
#define sl_log_warn(comp, msg, ...) sl_log(SL_LOG_WARN, comp, msg, __VA_ARGS__)
#define sl_log_info(comp, msg, ...) sl_log(SL_LOG_INFO, comp, msg, __VA_ARGS__)
#define sl_log_debug(comp, msg, ...)                                                               \
    do {                                                                                           \
        if (sl_log_enabled(SL_LOG_DEBUG)) {                                                        \
            sl_log(SL_LOG_DEBUG, comp, msg, __VA_ARGS__);                                          \
        }                                                                                          \
    } while (0)

#endif
