/* CQL value views and the native-protocol serialized forms of the scalar
 * types routing keys are built from (native_protocol_v4.spec section 6: all
 * big-endian, no length prefix). Pure functions: any thread may call them. */
#ifndef SL_CQL_TYPES_H
#define SL_CQL_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/common.h"

/* A borrowed view of one serialized value: len bytes at ptr, or null when
 * len < 0 (the protocol's [bytes] with a negative length). */
typedef struct {
    const uint8_t *ptr;
    int32_t len;
} sl_cql_bytes_t;

/* Days between 1970-01-01 and the proleptic Gregorian date year-month-day
 * (negative before the epoch). month is 1..12, day 1..31; not validated. */
int64_t sl_cql_date_days(int64_t year, int month, int day);

/* The serializers append the value's bytes to out (never a length prefix). */

/* int: 4-byte two's complement. */
void sl_cql_encode_int(sl_buf_t *out, int32_t v);
/* bigint: 8-byte two's complement. */
void sl_cql_encode_bigint(sl_buf_t *out, int64_t v);
/* text/varchar: the UTF-8 bytes as they are (s borrows n bytes; not
 * validated). */
void sl_cql_encode_text(sl_buf_t *out, const char *s, size_t n);
/* date: unsigned 32-bit count of days with the Unix epoch at 2^31. days is
 * relative to 1970-01-01 (see sl_cql_date_days). Returns 0, or -1 without
 * writing if days is outside [-2^31, 2^31 - 1]. */
SL_WUR int sl_cql_encode_date(sl_buf_t *out, int64_t days);
/* timestamp: 8-byte two's complement milliseconds since the Unix epoch. */
void sl_cql_encode_timestamp(sl_buf_t *out, int64_t ms);
/* boolean: one byte, 1 or 0. */
void sl_cql_encode_boolean(sl_buf_t *out, bool v);
/* double / float: IEEE 754 binary64 / binary32, big-endian. */
void sl_cql_encode_double(sl_buf_t *out, double v);
void sl_cql_encode_float(sl_buf_t *out, float v);
/* smallint / tinyint: 2-byte / 1-byte two's complement. */
void sl_cql_encode_smallint(sl_buf_t *out, int16_t v);
void sl_cql_encode_tinyint(sl_buf_t *out, int8_t v);
/* varint: the shortest big-endian two's complement form (1 to 8 bytes). */
void sl_cql_encode_varint(sl_buf_t *out, int64_t v);

/* Parses the canonical text form of a uuid (8-4-4-4-12 hex digits, either
 * case; s borrows n bytes) into its 16 bytes. Returns 0, or -1 if s is not
 * one. The version is out[6] >> 4 (1 for a timeuuid). */
SL_WUR int sl_cql_uuid_parse(const char *s, size_t n, uint8_t out[16]);
/* Parses an IPv4 (dotted quad) or IPv6 address (s borrows n bytes) into
 * out: 4 or 16 bytes, the count in *len. Returns 0, or -1 if s is neither. */
SL_WUR int sl_cql_inet_parse(const char *s, size_t n, uint8_t out[16], size_t *len);

#endif
