#include "cql/types.h"

#include <arpa/inet.h>
#include <string.h>

static void ty_put_be(sl_buf_t *out, uint64_t v, size_t nbytes)
{
    uint8_t b[8];
    for (size_t i = 0; i < nbytes; i++) {
        b[i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
    }
    sl_buf_append(out, b, nbytes);
}

int64_t sl_cql_date_days(int64_t year, int month, int day)
{
    /* Howard Hinnant's days_from_civil: years start in March so the leap
     * day is the last day of the year; eras are 400-year cycles. */
    int64_t y = year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (month + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void sl_cql_encode_int(sl_buf_t *out, int32_t v)
{
    ty_put_be(out, (uint32_t)v, 4);
}

void sl_cql_encode_bigint(sl_buf_t *out, int64_t v)
{
    ty_put_be(out, (uint64_t)v, 8);
}

void sl_cql_encode_text(sl_buf_t *out, const char *s, size_t n)
{
    sl_buf_append(out, s, n);
}

int sl_cql_encode_date(sl_buf_t *out, int64_t days)
{
    if (days < INT32_MIN || days > INT32_MAX) {
        return -1;
    }
    ty_put_be(out, (uint64_t)(days + (INT64_C(1) << 31)), 4);
    return 0;
}

void sl_cql_encode_timestamp(sl_buf_t *out, int64_t ms)
{
    ty_put_be(out, (uint64_t)ms, 8);
}

void sl_cql_encode_boolean(sl_buf_t *out, bool v)
{
    ty_put_be(out, v ? 1 : 0, 1);
}

void sl_cql_encode_double(sl_buf_t *out, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    ty_put_be(out, bits, 8);
}

void sl_cql_encode_float(sl_buf_t *out, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof(bits));
    ty_put_be(out, bits, 4);
}

void sl_cql_encode_smallint(sl_buf_t *out, int16_t v)
{
    ty_put_be(out, (uint16_t)v, 2);
}

void sl_cql_encode_tinyint(sl_buf_t *out, int8_t v)
{
    ty_put_be(out, (uint8_t)v, 1);
}

void sl_cql_encode_varint(sl_buf_t *out, int64_t v)
{
    /* drop leading bytes that only repeat the sign of the next one */
    size_t n = 8;
    while (n > 1) {
        uint8_t top = (uint8_t)((uint64_t)v >> (8 * (n - 1)));
        uint8_t next = (uint8_t)((uint64_t)v >> (8 * (n - 2)));
        if ((top == 0x00 && !(next & 0x80)) || (top == 0xFF && (next & 0x80))) {
            n--;
        } else {
            break;
        }
    }
    ty_put_be(out, (uint64_t)v, n);
}

static int ty_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int sl_cql_uuid_parse(const char *s, size_t n, uint8_t out[16])
{
    if (n != 36) {
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return -1;
            }
            i++;
            continue;
        }
        int hi = ty_hex(s[i]), lo = ty_hex(s[i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[k++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return 0;
}

int sl_cql_inet_parse(const char *s, size_t n, uint8_t out[16], size_t *len)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text) || memchr(s, '\0', n) != NULL) {
        return -1;
    }
    memcpy(text, s, n);
    text[n] = '\0';
    if (inet_pton(AF_INET, text, out) == 1) {
        *len = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out) == 1) {
        *len = 16;
        return 0;
    }
    return -1;
}
