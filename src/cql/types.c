#include "cql/types.h"

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
