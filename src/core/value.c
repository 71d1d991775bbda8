/* Typed values: type names, calendar dates and timestamps (proleptic Gregorian,
 * computed with Howard Hinnant's days-from-civil algorithm, no libc time or
 * locale functions), and JSON rendering of one value. */
#include "core/value.h"

#include "util/utf8.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const val_type_names[SL_TYPE__COUNT] = {
    [SL_TYPE_STRING] = "string",       [SL_TYPE_INT32] = "int32", [SL_TYPE_INT64] = "int64",
    [SL_TYPE_DOUBLE] = "double",       [SL_TYPE_BOOL] = "bool",   [SL_TYPE_DATE] = "date",
    [SL_TYPE_TIMESTAMP] = "timestamp",
};

#define VAL_US_PER_DAY INT64_C(86400000000)

const char *sl_type_name(sl_type_t t)
{
    if ((unsigned)t >= SL_TYPE__COUNT) {
        return NULL;
    }
    return val_type_names[t];
}

int sl_type_parse(const char *name, sl_type_t *out)
{
    if (name == NULL) {
        return -1;
    }
    for (int t = 0; t < SL_TYPE__COUNT; t++) {
        if (strcmp(name, val_type_names[t]) == 0) {
            *out = (sl_type_t)t;
            return 0;
        }
    }
    return -1;
}

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12). */
static int64_t val_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The inverse of val_days_from_civil. */
static void val_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool val_is_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned val_days_in_month(unsigned y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && val_is_leap(y) ? 29 : dim[m - 1];
}

/* Reads n ASCII digits at s into *out; returns 0 or -1 if one is not a digit. */
static int val_digits(const char *s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i] - '0';
        if (c > 9) {
            return -1;
        }
        v = v * 10 + c;
    }
    *out = v;
    return 0;
}

/* Parses exactly "YYYY-MM-DD" at s (10 bytes, caller checked the length). */
static int val_date10(const char *s, int64_t *days)
{
    unsigned y, m, d;
    if (s[4] != '-' || s[7] != '-' || val_digits(s, 4, &y) != 0 || val_digits(s + 5, 2, &m) != 0 ||
        val_digits(s + 8, 2, &d) != 0) {
        return -1;
    }
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > val_days_in_month(y, m)) {
        return -1;
    }
    *days = val_days_from_civil(y, m, d);
    return 0;
}

int sl_date_parse(const char *s, size_t len, int64_t *days)
{
    if (len != 10) {
        return -1;
    }
    return val_date10(s, days);
}

void sl_date_format(int64_t days, char out[11])
{
    if (days < SL_DATE_MIN_DAYS || days > SL_DATE_MAX_DAYS) {
        /* Not a date any parser here accepts back: a loud marker, not a shifted date. */
        memcpy(out, "0000-00-00", 11);
        return;
    }
    int64_t y;
    unsigned m, d;
    val_civil_from_days(days, &y, &m, &d);
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
}

int sl_timestamp_parse(const char *s, size_t len, int64_t *us)
{
    int64_t days;
    unsigned hh, mm, ss = 0, oh = 0, om = 0;
    int64_t frac_us = 0;
    size_t i;
    /* Shortest form: YYYY-MM-DDThh:mm (16 bytes). */
    if (len < 16 || val_date10(s, &days) != 0) {
        return -1;
    }
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') {
        return -1;
    }
    if (val_digits(s + 11, 2, &hh) != 0 || s[13] != ':' || val_digits(s + 14, 2, &mm) != 0 ||
        hh > 23 || mm > 59) {
        return -1;
    }
    i = 16;
    if (i < len && s[i] == ':') {
        if (len - i < 3 || val_digits(s + i + 1, 2, &ss) != 0 || ss > 59) {
            return -1;
        }
        i += 3;
        if (i < len && s[i] == '.') {
            i++;
            int n = 0;
            int64_t scale = 100000;
            while (i < len && (unsigned)(s[i] - '0') <= 9) {
                if (++n > 9) {
                    return -1;
                }
                frac_us += (s[i] - '0') * scale; /* digits past microseconds are truncated */
                scale /= 10;
                i++;
            }
            if (n == 0) {
                return -1;
            }
        }
    }
    int sign = 0;
    if (i < len) {
        if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            sign = s[i] == '+' ? 1 : -1;
            size_t rest = len - i - 1;
            const char *o = s + i + 1;
            if (rest == 5 && o[2] == ':') {
                if (val_digits(o, 2, &oh) != 0 || val_digits(o + 3, 2, &om) != 0) {
                    return -1;
                }
            } else if (rest == 4) {
                if (val_digits(o, 2, &oh) != 0 || val_digits(o + 2, 2, &om) != 0) {
                    return -1;
                }
            } else {
                return -1;
            }
            if (oh > 23 || om > 59) {
                return -1;
            }
            i = len;
        } else {
            return -1;
        }
    }
    if (i != len) {
        return -1;
    }
    int64_t secs = (int64_t)hh * 3600 + (int64_t)mm * 60 + ss;
    secs -= sign * ((int64_t)oh * 3600 + (int64_t)om * 60); /* local - offset = UTC */
    int64_t t = days * VAL_US_PER_DAY + secs * 1000000 + frac_us;
    /* An offset can push 0001-01-01 or 9999-12-31 outside the supported years. */
    if (t < SL_TIMESTAMP_MIN_US || t > SL_TIMESTAMP_MAX_US) {
        return -1;
    }
    *us = t;
    return 0;
}

void sl_timestamp_format(int64_t us, char out[32])
{
    int64_t ms = us / 1000 - (us % 1000 < 0); /* floor */
    int64_t days = ms / 86400000, rem = ms % 86400000;
    if (rem < 0) {
        rem += 86400000;
        days--;
    }
    int64_t y;
    unsigned m, d;
    val_civil_from_days(days, &y, &m, &d);
    int msec = (int)(rem % 1000);
    int sec = (int)(rem / 1000 % 60);
    int min = (int)(rem / 60000 % 60);
    int hour = (int)(rem / 3600000);
    /* Years outside 0001-9999 (never produced by the parsers) print as they
     * are; an int64 of microseconds has at most 6 year digits, so 32 bytes
     * always suffice, but the compiler cannot see that: format into a
     * larger buffer. */
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d, hour,
             min, sec, msec);
    size_t n = strnlen(tmp, 31);
    memcpy(out, tmp, n);
    out[n] = '\0';
}

/* Appends d as the shortest of %.15g/%.16g/%.17g that reads back as the same
 * double. Non-finite values have no JSON form and become null. Assumes the C
 * locale for LC_NUMERIC (Sluice never calls setlocale()). */
static void val_double_json(double d, sl_buf_t *out)
{
    char tmp[40];
    if (!isfinite(d)) {
        sl_buf_puts(out, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d) {
            break;
        }
    }
    sl_buf_puts(out, tmp);
}

void sl_value_to_json(const sl_value_t *v, sl_type_t t, sl_buf_t *out)
{
    char tmp[32];
    if (v->is_null) {
        sl_buf_puts(out, "null");
        return;
    }
    switch (t) {
    case SL_TYPE_STRING:
        sl_buf_putc(out, '"');
        sl_buf_json_escape(out, v->u.s.ptr, v->u.s.len);
        sl_buf_putc(out, '"');
        break;
    case SL_TYPE_INT32:
    case SL_TYPE_INT64:
        sl_buf_append_i64(out, v->u.i);
        break;
    case SL_TYPE_DOUBLE:
        val_double_json(v->u.d, out);
        break;
    case SL_TYPE_BOOL:
        sl_buf_puts(out, v->u.b ? "true" : "false");
        break;
    case SL_TYPE_DATE:
        sl_date_format(v->u.i, tmp);
        sl_buf_putc(out, '"');
        sl_buf_append(out, tmp, 10);
        sl_buf_putc(out, '"');
        break;
    case SL_TYPE_TIMESTAMP:
        sl_timestamp_format(v->u.i, tmp);
        sl_buf_putc(out, '"');
        sl_buf_puts(out, tmp);
        sl_buf_putc(out, '"');
        break;
    default:
        sl_buf_puts(out, "null");
        break;
    }
}

const char *sl_value_quote(const char *s, size_t n, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0, cut = 0;
    if (cap < 8) {
        if (cap > 0) {
            out[0] = '\0';
        }
        return out;
    }
    while (i < n) {
        char e[8];
        size_t elen, take = 1;
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            elen = (size_t)snprintf(e, sizeof(e), "\\u%04x", c);
        } else if (c < 0x80) {
            e[0] = (char)c;
            elen = 1;
        } else if ((take = sl_utf8_seq_len(p + i, n - i)) > 0) {
            memcpy(e, p + i, take);
            elen = take;
        } else {
            take = 1;
            elen = (size_t)snprintf(e, sizeof(e), "\\x%02x", c);
        }
        if (o + elen + 1 > cap) {
            o = cut;
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, e, elen);
        o += elen;
        i += take;
        if (o + 4 <= cap) {
            cut = o; /* "..." and the NUL still fit after this piece */
        }
    }
    out[o] = '\0';
    return out;
}
