/* Typed values of a record. A record is an array of sl_value_t indexed by
 * schema field position; strings are views into the message buffer or into
 * the batch arena (never individually allocated). */
#ifndef SL_CORE_VALUE_H
#define SL_CORE_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/common.h"

typedef enum {
    SL_TYPE_STRING = 0,
    SL_TYPE_INT32,
    SL_TYPE_INT64,
    SL_TYPE_DOUBLE,
    SL_TYPE_BOOL,
    SL_TYPE_DATE,      /* i = days since 1970-01-01 */
    SL_TYPE_TIMESTAMP, /* i = microseconds since the Unix epoch, UTC */
    SL_TYPE__COUNT
} sl_type_t;

/* The supported range: 0001-01-01 .. 9999-12-31 as days since 1970-01-01, and
 * 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z in microseconds. */
#define SL_DATE_MIN_DAYS INT64_C(-719162)
#define SL_DATE_MAX_DAYS INT64_C(2932896)
#define SL_TIMESTAMP_MIN_US INT64_C(-62135596800000000)
#define SL_TIMESTAMP_MAX_US INT64_C(253402300799999999)

typedef struct sl_str {
    const char *ptr; /* borrowed; not NUL-terminated */
    size_t len;
} sl_str_t;

typedef struct sl_value {
    bool is_null; /* absent or JSON null */
    union {
        int64_t i; /* INT32, INT64, DATE, TIMESTAMP */
        double d;
        bool b;
        sl_str_t s;
    } u;
} sl_value_t;

/* Returns "string", "int32", ... or NULL for an unknown type. */
const char *sl_type_name(sl_type_t t);
/* Parses a type name; returns 0 and sets *out, or -1. */
int sl_type_parse(const char *name, sl_type_t *out) SL_WUR;

/* Parses "YYYY-MM-DD" (a real calendar date, years 0001-9999) into days since
 * 1970-01-01. Returns 0 or -1. */
int sl_date_parse(const char *s, size_t len, int64_t *days) SL_WUR;
/* Formats days since 1970-01-01 as YYYY-MM-DD into out (>= 11 bytes). Days
 * outside 0001-01-01..9999-12-31 give "0000-00-00" (which no parser accepts). */
void sl_date_format(int64_t days, char out[11]);
/* Parses an ISO-8601 / RFC 3339 timestamp: YYYY-MM-DD[T ]hh:mm[:ss[.frac]] followed by
 * Z or +hh:mm / -hh:mm (no offset means UTC), into microseconds since the epoch.
 * Also accepted: 't' and 'z' (RFC 3339 5.6), offsets as +hhmm. The fraction has
 * 1-9 digits (truncated to microseconds); seconds are 00-59 (no leap second);
 * the instant must lie in years 0001-9999 UTC. Returns 0 or -1. */
int sl_timestamp_parse(const char *s, size_t len, int64_t *us) SL_WUR;
/* Formats microseconds since the epoch as YYYY-MM-DDThh:mm:ss.mmmZ (UTC)
 * into out (>= 32 bytes). */
void sl_timestamp_format(int64_t us, char out[32]);

/* Appends v as a JSON value of type t to out (strings escaped, dates and
 * timestamps as ISO strings, null as null). */
void sl_value_to_json(const sl_value_t *v, sl_type_t t, sl_buf_t *out);

/* Writes s (n bytes, borrowed) into out (cap >= 8 bytes) for quoting a value in
 * a reason or log line: escaped like the inside of a JSON string (invalid UTF-8
 * bytes as \xHH) and, if it does not fit, cut at a character boundary and
 * ended with "...". Always NUL-terminates; returns out. */
const char *sl_value_quote(const char *s, size_t n, char *out, size_t cap);

#endif
