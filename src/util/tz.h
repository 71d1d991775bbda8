/* Time zones from the system's tz database (TZif files, RFC 8536), for
 * turning a UTC instant into local calendar time. No global state (unlike
 * localtime_r + TZ): a zone is loaded once and then read-only, safe to share
 * between threads. */
#ifndef SL_UTIL_TZ_H
#define SL_UTIL_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_tz sl_tz_t;

/* Loads the zone name: "UTC" (also "Z", "Etc/UTC", "GMT"), a fixed offset
 * "+05:30" / "-08:00" / "+0530" / "+05" (within +-18:00), or an IANA name
 * ("Europe/Paris") read from dir/name (dir NULL: /usr/share/zoneinfo).
 * Names starting with '/' or containing ".." are rejected, as is any
 * character other than letters, digits, '/', '_', '-' and '+'. Returns NULL
 * with err (what is wrong and what to do, e.g. "unknown time zone
 * 'Europe/Pariss': not in /usr/share/zoneinfo (install tzdata, or use a name
 * such as Europe/Paris or an offset such as +02:00)") on failure; err may be
 * NULL. The name is borrowed; the result is owned by the caller
 * (sl_tz_destroy). Any thread may call it. */
sl_tz_t *sl_tz_load(const char *name, const char *dir, char *err, size_t errlen);
/* Parses a TZif image (len bytes, borrowed) as if read from a file called
 * name (borrowed; copied). Versions 1 to 4; the 64-bit block is used when
 * present, leap-second records are ignored. The bytes are untrusted: every
 * count, index and the footer are checked against len. Same errors and
 * ownership as sl_tz_load. Used by the loader and the fuzz target. */
sl_tz_t *sl_tz_parse(const char *name, const uint8_t *data, size_t len, char *err, size_t errlen);
/* The offset from UTC in seconds (local = UTC + offset) at the UTC instant t
 * (seconds since the epoch), for any t: before the first transition (local
 * time type 0, RFC 8536 3.2), between transitions, and on or after the last
 * one (from the TZif footer's POSIX TZ rule, e.g.
 * "CET-1CEST,M3.5.0,M10.5.0/3"; without a footer the last transition's
 * type stays). Always within +-26 hours. Thread-safe. */
int32_t sl_tz_offset(const sl_tz_t *tz, int64_t t);
/* The first instant (microseconds since the epoch) of the interval of
 * unit_us (a minute, an hour, a day, or any length dividing a day; > 0)
 * that contains ts_us on the clocks of tz (NULL: UTC, then any unit), e.g.
 * local midnight for a day. In a fold (clocks set back, a local time happens
 * twice) the occurrence at or before ts_us wins; in a gap (clocks set
 * forward) the interval starts at the end of the gap. ts_us must be within
 * +-2^62. Thread-safe. */
int64_t sl_tz_trunc_us(const sl_tz_t *tz, int64_t ts_us, int64_t unit_us);
/* The zone's name as given to sl_tz_load (owned by tz). */
const char *sl_tz_name(const sl_tz_t *tz);
/* NULL is a no-op. */
void sl_tz_destroy(sl_tz_t *tz);

#endif
