/* Time zones: TZif images (RFC 8536, versions 1 to 4), the POSIX TZ rule in
 * their footer, fixed offsets, and loading a zone by name from the zoneinfo
 * directory. A loaded zone is immutable: every lookup is a pure function of
 * the struct and the instant, so threads share a zone without locks. */
#include "util/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/common.h"

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_HINT "use a name such as Europe/Paris or an offset such as +02:00"
#define TZ_HEADER_LEN 44
/* Real TZif files are a few kilobytes; anything this big is not one. */
#define TZ_MAX_FILE (1 << 20)
#define TZ_MAX_NAME 255
/* Transition type indexes are one byte, so more types are unreachable. */
#define TZ_MAX_TYPES 256
/* RFC 8536 3.2: utoff SHOULD be in [-89999, 93599] (-24:59:59..+25:59:59);
 * we require it, so every offset we return is within 26 hours. */
#define TZ_MIN_UTOFF (-89999)
#define TZ_MAX_UTOFF 93599
#define TZ_MAX_FIXED (18 * 3600)
#define TZ_DAY 86400
/* 400 Gregorian years are 146097 days, a whole number of weeks: a footer
 * rule gives the same offsets in every such cycle. */
#define TZ_CYCLE INT64_C(12622780800)

/* When a footer rule switches: a date form plus the local time of day. */
typedef struct {
    char kind;    /* 'J': Jn (1..365, Feb 29 never counted); 'N': n (0..365); 'M': Mm.w.d */
    int n;        /* the day for 'J' and 'N' */
    int m, w, d;  /* month 1..12, week 1..5 (5: the last), weekday 0..6 (0: Sunday) */
    int32_t time; /* seconds after local midnight, -167h..+167h (RFC 8536 3.3.1) */
} tz_when_t;

/* A footer's POSIX TZ string, offsets converted to "local = UTC + offset". */
typedef struct {
    int32_t std_off;
    int32_t dst_off;
    int has_dst;
    tz_when_t start; /* in local standard time */
    tz_when_t end;   /* in local daylight time */
} tz_rule_t;

struct sl_tz {
    char *name; /* owned */
    size_t n_trans;
    int64_t *at;  /* owned: n_trans transition instants, strictly ascending; NULL if none */
    int32_t *off; /* owned: off[i] is in effect from at[i] up to at[i + 1] */
    int32_t off0; /* time type 0: before the first transition (or always, if neither
                     transitions nor a footer rule) */
    int has_rule; /* a non-empty footer: it rules on and after the last transition */
    tz_rule_t rule;
};

/* A data block's counts, in header order (RFC 8536 3.1). */
typedef struct {
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tz_counts_t;

static void tz_err(char *err, size_t errlen, const char *fmt, ...) SL_PRINTF(3, 4);

static void tz_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copies at most 64 bytes of s into out (cap > 4) for an error message,
 * control and non-ASCII bytes replaced by '?'. Returns out. */
static const char *tz_show(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        char ch = '?';
        if (c >= 0x20 && c < 0x7f) {
            ch = (char)c;
        }
        out[o++] = ch;
    }
    if (n > 64 && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static int tz_isdigit(int c)
{
    return c >= '0' && c <= '9';
}

static int tz_isalpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int64_t tz_floor_mod(int64_t a, int64_t b)
{
    int64_t m = a % b;
    return (m != 0 && (m < 0) != (b < 0)) ? m + b : m;
}

/* ---- calendar arithmetic (proleptic Gregorian, days since 1970-01-01) ---- */

static int64_t tz_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int tz_is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Day number of January 1 of year y; y >= 1 (callers stay near 1970..2370). */
static int64_t tz_year_start(int64_t y)
{
    int64_t p = y - 1; /* leap days in the years before y, counted from year 1 */
    int64_t leaps = p / 4 - p / 100 + p / 400;
    return 365 * (y - 1970) + leaps - 477; /* 477 leap days in 1..1969 */
}

/* The year containing day number days (days well within years 1..9999). */
static int64_t tz_year_of(int64_t days)
{
    int64_t y = 1970 + tz_floor_div(days, 366);
    while (tz_year_start(y + 1) <= days) {
        y++;
    }
    return y;
}

static const int tz_cum_days[13] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365};

/* Day number of the rule's date in year y. */
static int64_t tz_when_day(const tz_when_t *w, int64_t y)
{
    int64_t ys = tz_year_start(y);
    int leap = tz_is_leap(y);
    if (w->kind == 'J') {
        return ys + w->n - 1 + (leap && w->n >= 60);
    }
    if (w->kind == 'N') {
        return ys + w->n;
    }
    int64_t first = ys + tz_cum_days[w->m - 1] + (leap && w->m > 2);
    int mlen = tz_cum_days[w->m] - tz_cum_days[w->m - 1] + (leap && w->m == 2);
    int wd = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday (4) */
    int64_t day = first + (w->d - wd + 7) % 7 + 7 * (int64_t)(w->w - 1);
    while (day >= first + mlen) {
        day -= 7; /* week 5 means the last such weekday of the month */
    }
    return day;
}

/* The footer rule's offset at t. Each year has a DST start and end; the
 * offset is the one set by the latest switch at or before t among the years
 * around t (switch times reach up to a week into the next or previous
 * year). On a tie the start wins, so "DST all year" (end of one year ==
 * start of the next, RFC 8536 3.3.1) stays daylight time. */
static int32_t tz_rule_offset(const tz_rule_t *r, int64_t t)
{
    if (!r->has_dst) {
        return r->std_off;
    }
    int64_t u = t % TZ_CYCLE; /* same offsets, no overflow for any t */
    if (u < 0) {
        u += TZ_CYCLE;
    }
    int64_t y = tz_year_of(tz_floor_div(u + r->std_off, TZ_DAY));
    int64_t best = 0;
    int found = 0, dst = 0;
    for (int64_t yy = y - 2; yy <= y + 1; yy++) {
        int64_t end = tz_when_day(&r->end, yy) * TZ_DAY + r->end.time - r->dst_off;
        int64_t start = tz_when_day(&r->start, yy) * TZ_DAY + r->start.time - r->std_off;
        if (end <= u && (!found || end > best)) {
            best = end;
            dst = 0;
            found = 1;
        }
        if (start <= u && (!found || start >= best)) {
            best = start;
            dst = 1;
            found = 1;
        }
    }
    return dst ? r->dst_off : r->std_off;
}

/* ---- the POSIX TZ string of the footer ---- */

/* Reads 1 to max_digits decimal digits. */
static int tzp_uint(const char **pp, const char *end, int max_digits, int *v)
{
    const char *p = *pp;
    int n = 0, x = 0;
    while (p < end && tz_isdigit(*p) && n < max_digits) {
        x = x * 10 + (*p - '0');
        p++;
        n++;
    }
    if (n == 0 || (p < end && tz_isdigit(*p))) {
        return -1;
    }
    *v = x;
    *pp = p;
    return 0;
}

/* A designation: three or more letters, or <...> holding three or more
 * letters, digits, '+' or '-'. */
static int tzp_name(const char **pp, const char *end)
{
    const char *p = *pp;
    size_t n = 0;
    if (p < end && *p == '<') {
        for (p++; p < end && *p != '>'; p++, n++) {
            if (!tz_isalpha(*p) && !tz_isdigit(*p) && *p != '+' && *p != '-') {
                return -1;
            }
        }
        if (p == end) {
            return -1;
        }
        p++;
    } else {
        for (; p < end && tz_isalpha(*p); p++) {
            n++;
        }
    }
    if (n < 3) {
        return -1;
    }
    *pp = p;
    return 0;
}

/* [+-]hh[:mm[:ss]] in seconds, hh at most max_h. */
static int tzp_hms(const char **pp, const char *end, int max_h, int32_t *secs)
{
    const char *p = *pp;
    int sign = 1, h, m = 0, s = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        sign = *p == '-' ? -1 : 1;
        p++;
    }
    if (tzp_uint(&p, end, 3, &h) != 0 || h > max_h) {
        return -1;
    }
    if (p < end && *p == ':') {
        p++;
        if (tzp_uint(&p, end, 2, &m) != 0 || m > 59) {
            return -1;
        }
        if (p < end && *p == ':') {
            p++;
            if (tzp_uint(&p, end, 2, &s) != 0 || s > 59) {
                return -1;
            }
        }
    }
    *secs = sign * (h * 3600 + m * 60 + s);
    *pp = p;
    return 0;
}

/* Jn, n or Mm.w.d, then an optional /time (default 02:00:00). */
static int tzp_when(const char **pp, const char *end, tz_when_t *w)
{
    const char *p = *pp;
    memset(w, 0, sizeof(*w));
    if (p < end && *p == 'J') {
        p++;
        w->kind = 'J';
        if (tzp_uint(&p, end, 3, &w->n) != 0 || w->n < 1 || w->n > 365) {
            return -1;
        }
    } else if (p < end && *p == 'M') {
        p++;
        w->kind = 'M';
        if (tzp_uint(&p, end, 2, &w->m) != 0 || w->m < 1 || w->m > 12 || p == end || *p != '.') {
            return -1;
        }
        p++;
        if (tzp_uint(&p, end, 1, &w->w) != 0 || w->w < 1 || w->w > 5 || p == end || *p != '.') {
            return -1;
        }
        p++;
        if (tzp_uint(&p, end, 1, &w->d) != 0 || w->d > 6) {
            return -1;
        }
    } else {
        w->kind = 'N';
        if (tzp_uint(&p, end, 3, &w->n) != 0 || w->n > 365) {
            return -1;
        }
    }
    w->time = 2 * 3600;
    if (p < end && *p == '/') {
        p++;
        if (tzp_hms(&p, end, 167, &w->time) != 0) {
            return -1;
        }
    }
    *pp = p;
    return 0;
}

/* Parses "std offset [dst [offset] ,start[/time],end[/time]]". A DST name
 * without a rule is rejected: POSIX leaves the dates to the implementation,
 * and zic always writes them. */
static int tz_rule_parse(const char *s, size_t n, tz_rule_t *r)
{
    const char *p = s, *end = s + n;
    int32_t v;
    memset(r, 0, sizeof(*r));
    if (tzp_name(&p, end) != 0 || tzp_hms(&p, end, 24, &v) != 0) {
        return -1;
    }
    r->std_off = -v; /* POSIX counts west of Greenwich as positive */
    if (p == end) {
        return 0;
    }
    if (tzp_name(&p, end) != 0) {
        return -1;
    }
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (p < end && *p != ',') {
        if (tzp_hms(&p, end, 24, &v) != 0) {
            return -1;
        }
        r->dst_off = -v;
    }
    if (p == end || *p++ != ',' || tzp_when(&p, end, &r->start) != 0) {
        return -1;
    }
    if (p == end || *p++ != ',' || tzp_when(&p, end, &r->end) != 0) {
        return -1;
    }
    return p == end ? 0 : -1;
}

/* ---- TZif ---- */

static uint32_t tz_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int32_t tz_s32(uint32_t u)
{
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

static int64_t tz_s64(const uint8_t *p)
{
    uint64_t u = (uint64_t)tz_be32(p) << 32 | tz_be32(p + 4);
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* Reads the header at off into *c and *version (0 for version 1, else 2..4). */
static int tz_header(const uint8_t *p, size_t len, size_t off, int *version, tz_counts_t *c,
                     char *why, size_t whylen)
{
    if (len - off < TZ_HEADER_LEN) {
        tz_err(why, whylen, "%s header truncated (%zu bytes left, a header is %d)",
               off == 0 ? "first" : "second", len - off, TZ_HEADER_LEN);
        return -1;
    }
    const uint8_t *h = p + off;
    if (memcmp(h, "TZif", 4) != 0) {
        tz_err(why, whylen, "bad magic in the %s header (not a TZif file)",
               off == 0 ? "first" : "second");
        return -1;
    }
    if (h[4] == 0) {
        *version = 0;
    } else if (h[4] >= '2' && h[4] <= '4') {
        *version = h[4] - '0';
    } else {
        tz_err(why, whylen, "unsupported TZif version byte 0x%02x (known: 0, '2', '3', '4')", h[4]);
        return -1;
    }
    c->isutcnt = tz_be32(h + 20);
    c->isstdcnt = tz_be32(h + 24);
    c->leapcnt = tz_be32(h + 28);
    c->timecnt = tz_be32(h + 32);
    c->typecnt = tz_be32(h + 36);
    c->charcnt = tz_be32(h + 40);
    return 0;
}

/* Bytes in a data block with tsize-byte times (fits: counts are 32-bit). */
static uint64_t tz_block_size(const tz_counts_t *c, unsigned tsize)
{
    return (uint64_t)c->timecnt * (tsize + 1) + (uint64_t)c->typecnt * 6 + c->charcnt +
           (uint64_t)c->leapcnt * (tsize + 4) + c->isstdcnt + c->isutcnt;
}

void sl_tz_destroy(sl_tz_t *tz)
{
    if (tz == NULL) {
        return;
    }
    free(tz->name);
    free(tz->at);
    free(tz->off);
    free(tz);
}

/* Parses a TZif image into a zone named name (copied). On failure returns
 * NULL with the reason (no zone name) in why. */
static sl_tz_t *tz_parse_image(const char *name, const uint8_t *p, size_t len, char *why,
                               size_t whylen)
{
    tz_counts_t c;
    int version, version2;
    size_t off = 0;
    unsigned tsize = 4;
    sl_tz_t *tz = NULL;

    if (tz_header(p, len, 0, &version, &c, why, whylen) != 0) {
        return NULL;
    }
    off = TZ_HEADER_LEN;
    if (version >= 2) {
        /* Skip the 32-bit block: the 64-bit one after it has the same data
         * without the 1901..2038 limit. */
        uint64_t v1 = tz_block_size(&c, 4);
        if (v1 > len - off) {
            tz_err(why, whylen,
                   "version 1 data block truncated (the header's counts need %llu bytes, "
                   "%zu left)",
                   (unsigned long long)v1, len - off);
            return NULL;
        }
        off += (size_t)v1;
        if (tz_header(p, len, off, &version2, &c, why, whylen) != 0) {
            return NULL;
        }
        if (version2 != version) {
            tz_err(why, whylen, "the second header says version %d, the first %d", version2,
                   version);
            return NULL;
        }
        off += TZ_HEADER_LEN;
        tsize = 8;
    }

    if (c.typecnt == 0 || c.typecnt > TZ_MAX_TYPES) {
        tz_err(why, whylen, "bad local time type count %u (must be 1..%d)", c.typecnt,
               TZ_MAX_TYPES);
        return NULL;
    }
    if ((c.isutcnt != 0 && c.isutcnt != c.typecnt) ||
        (c.isstdcnt != 0 && c.isstdcnt != c.typecnt)) {
        tz_err(why, whylen,
               "bad indicator counts (isutcnt %u, isstdcnt %u: each must be 0 or typecnt %u)",
               c.isutcnt, c.isstdcnt, c.typecnt);
        return NULL;
    }
    uint64_t size = tz_block_size(&c, tsize);
    if (size > len - off) {
        tz_err(why, whylen,
               "data block truncated (the header's counts need %llu bytes, %zu left; "
               "timecnt %u, typecnt %u, charcnt %u, leapcnt %u)",
               (unsigned long long)size, len - off, c.timecnt, c.typecnt, c.charcnt, c.leapcnt);
        return NULL;
    }
    const uint8_t *times = p + off;
    const uint8_t *idx = times + (size_t)c.timecnt * tsize;
    const uint8_t *types = idx + c.timecnt;
    const uint8_t *leaps = types + (size_t)c.typecnt * 6 + c.charcnt;
    const uint8_t *isstd = leaps + (size_t)c.leapcnt * (tsize + 4); /* then isut */

    int32_t utoff[TZ_MAX_TYPES];
    for (uint32_t i = 0; i < c.typecnt; i++) {
        const uint8_t *ty = types + (size_t)i * 6;
        utoff[i] = tz_s32(tz_be32(ty));
        if (utoff[i] < TZ_MIN_UTOFF || utoff[i] > TZ_MAX_UTOFF) {
            tz_err(why, whylen, "local time type %u: UTC offset %d s is out of range", i,
                   (int)utoff[i]);
            return NULL;
        }
        if (ty[4] > 1) {
            tz_err(why, whylen, "local time type %u: isdst is %u (must be 0 or 1)", i, ty[4]);
            return NULL;
        }
        if (ty[5] >= c.charcnt) {
            tz_err(why, whylen,
                   "local time type %u: designation index %u is out of range (charcnt %u)", i,
                   ty[5], c.charcnt);
            return NULL;
        }
    }
    for (uint64_t i = 0; i < (uint64_t)c.isstdcnt + c.isutcnt; i++) {
        if (isstd[i] > 1) {
            tz_err(why, whylen, "standard/wall or UT/local indicator %llu is %u (must be 0 or 1)",
                   (unsigned long long)i, isstd[i]);
            return NULL;
        }
    }

    tz = sl_xcalloc(1, sizeof(*tz));
    tz->name = sl_xstrdup(name);
    tz->off0 = utoff[0];
    tz->n_trans = c.timecnt;
    if (c.timecnt > 0) {
        tz->at = sl_xmalloc((size_t)c.timecnt * sizeof(int64_t));
        tz->off = sl_xmalloc((size_t)c.timecnt * sizeof(int32_t));
    }
    for (uint32_t i = 0; i < c.timecnt; i++) {
        int64_t t =
            tsize == 8 ? tz_s64(times + (size_t)i * 8) : tz_s32(tz_be32(times + (size_t)i * 4));
        if (i > 0 && t <= tz->at[i - 1]) {
            tz_err(why, whylen, "transition %u is not after transition %u", i, i - 1);
            goto fail;
        }
        if (idx[i] >= c.typecnt) {
            tz_err(why, whylen, "transition %u: local time type %u is out of range (typecnt %u)", i,
                   idx[i], c.typecnt);
            goto fail;
        }
        tz->at[i] = t;
        tz->off[i] = utoff[idx[i]];
    }

    if (version >= 2) {
        /* The footer: "\n" TZ-string "\n" (RFC 8536 3.3). */
        size_t f = off + (size_t)size;
        if (f >= len || p[f] != '\n') {
            tz_err(why, whylen, "missing footer (a newline and a TZ string) after the data");
            goto fail;
        }
        const uint8_t *s = p + f + 1;
        const uint8_t *nl = memchr(s, '\n', len - f - 1);
        if (nl == NULL) {
            tz_err(why, whylen, "footer TZ string is not terminated by a newline");
            goto fail;
        }
        size_t n = (size_t)(nl - s);
        if (n > 0) {
            char shown[80];
            if (memchr(s, '\0', n) != NULL || tz_rule_parse((const char *)s, n, &tz->rule) != 0) {
                tz_err(why, whylen, "footer TZ string '%s' is not a valid POSIX TZ rule",
                       tz_show(shown, sizeof(shown), (const char *)s, n));
                goto fail;
            }
            tz->has_rule = 1;
        }
    }
    return tz;

fail:
    sl_tz_destroy(tz);
    return NULL;
}

sl_tz_t *sl_tz_parse(const char *name, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    char why[256], shown[80];
    const char *nm = name ? name : "";
    sl_tz_t *tz = tz_parse_image(nm, data, data ? len : 0, why, sizeof(why));
    if (tz == NULL) {
        tz_err(err, errlen, "time zone '%s': invalid TZif data: %s",
               tz_show(shown, sizeof(shown), nm, strlen(nm)), why);
    }
    return tz;
}

/* ---- names ---- */

static sl_tz_t *tz_fixed(const char *name, int32_t off)
{
    sl_tz_t *tz = sl_xcalloc(1, sizeof(*tz));
    tz->name = sl_xstrdup(name);
    tz->off0 = off;
    return tz;
}

/* "+05:30", "-08:00", "+0530" or "+05" (within +-18:00) into *off. */
static int tz_fixed_parse(const char *s, int32_t *off)
{
    int sign = s[0] == '-' ? -1 : 1, h, m = 0;
    const char *p = s + 1;
    if (!tz_isdigit(p[0]) || !tz_isdigit(p[1])) {
        return -1;
    }
    h = (p[0] - '0') * 10 + (p[1] - '0');
    p += 2;
    if (*p == ':' || tz_isdigit(*p)) {
        p += *p == ':';
        if (!tz_isdigit(p[0]) || !tz_isdigit(p[1])) {
            return -1;
        }
        m = (p[0] - '0') * 10 + (p[1] - '0');
        p += 2;
    }
    if (*p != '\0' || m > 59 || h * 3600 + m * 60 > TZ_MAX_FIXED) {
        return -1;
    }
    *off = sign * (h * 3600 + m * 60);
    return 0;
}

/* Reads the whole regular file at path (at most TZ_MAX_FILE bytes) into a
 * buffer the caller frees. On failure returns -1 with err set. */
static int tz_read_file(const char *name, const char *dir, const char *path, uint8_t **out,
                        size_t *outlen, char *err, size_t errlen)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t got = 0;
    int rc = -1;
    /* O_NONBLOCK: a FIFO planted in the directory must not hang us before
     * fstat says it is not a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            tz_err(err, errlen, "unknown time zone '%s': not in %s (install tzdata, or %s)", name,
                   dir, TZ_HINT);
        } else {
            tz_err(err, errlen, "time zone '%s': cannot open %s: %s (check its permissions)", name,
                   path, strerror(errno));
        }
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        tz_err(err, errlen, "time zone '%s': cannot stat %s: %s", name, path, strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        tz_err(err, errlen, "unknown time zone '%s': %s is a directory of zones, not a zone (%s)",
               name, path, TZ_HINT);
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > TZ_MAX_FILE) {
        tz_err(err, errlen,
               "time zone '%s': %s is not a time zone file (not a regular file of at most %d "
               "bytes; %s)",
               name, path, TZ_MAX_FILE, TZ_HINT);
        goto out;
    }
    size_t cap = (size_t)st.st_size + 1; /* + 1: notice a file that grew */
    buf = sl_xmalloc(cap);
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            tz_err(err, errlen, "time zone '%s': cannot read %s: %s", name, path, strerror(errno));
            goto out;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got == cap) {
        tz_err(err, errlen, "time zone '%s': %s changed while it was read (try again)", name, path);
        goto out;
    }
    *out = buf;
    *outlen = got;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}

sl_tz_t *sl_tz_load(const char *name, const char *dir, char *err, size_t errlen)
{
    char shown[80], why[256];
    uint8_t *data = NULL;
    size_t len = 0, n;
    char *path = NULL;
    sl_tz_t *tz = NULL;
    int32_t off;

    if (name == NULL || name[0] == '\0') {
        tz_err(err, errlen, "empty time zone name (%s)", TZ_HINT);
        return NULL;
    }
    n = strlen(name);
    tz_show(shown, sizeof(shown), name, n);
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Z") == 0 || strcmp(name, "Etc/UTC") == 0 ||
        strcmp(name, "GMT") == 0) {
        return tz_fixed(name, 0);
    }
    if (name[0] == '+' || name[0] == '-') {
        if (tz_fixed_parse(name, &off) != 0) {
            tz_err(err, errlen,
                   "invalid time zone offset '%s' (use +HH:MM, +HHMM or +HH, between -18:00 and "
                   "+18:00)",
                   shown);
            return NULL;
        }
        return tz_fixed(name, off);
    }
    if (name[0] == '/' || strstr(name, "..") != NULL) {
        tz_err(err, errlen,
               "time zone '%s': must be a name relative to the zoneinfo directory, without '/' at "
               "the start or '..' (%s)",
               shown, TZ_HINT);
        return NULL;
    }
    if (n > TZ_MAX_NAME) {
        tz_err(err, errlen, "time zone name '%s' is too long (%zu bytes; at most %d)", shown, n,
               TZ_MAX_NAME);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!tz_isalpha(ch) && !tz_isdigit(ch) && ch != '/' && ch != '_' && ch != '-' &&
            ch != '+') {
            tz_err(err, errlen,
                   "time zone '%s': invalid character at byte %zu (names use letters, digits, "
                   "'/', '_', '-' and '+'; %s)",
                   shown, i, TZ_HINT);
            return NULL;
        }
    }

    if (dir == NULL || dir[0] == '\0') {
        dir = TZ_DEFAULT_DIR;
    }
    size_t plen = strlen(dir) + 1 + n + 1;
    path = sl_xmalloc(plen);
    snprintf(path, plen, "%s/%s", dir, name);
    if (tz_read_file(name, dir, path, &data, &len, err, errlen) != 0) {
        goto out;
    }
    tz = tz_parse_image(name, data, len, why, sizeof(why));
    if (tz == NULL) {
        tz_err(err, errlen,
               "time zone '%s': %s is not a valid TZif file: %s (reinstall tzdata, or use "
               "another zone)",
               name, path, why);
    }
out:
    free(data);
    free(path);
    return tz;
}

/* ---- lookups ---- */

int32_t sl_tz_offset(const sl_tz_t *tz, int64_t t)
{
    size_t n = tz->n_trans;
    /* RFC 8536 3.2: the footer rules on and after the last transition, and
     * at all times if there are none; without a footer, the last type
     * stays (or type 0 if there are no transitions). */
    if (n == 0 || t >= tz->at[n - 1]) {
        if (tz->has_rule) {
            return tz_rule_offset(&tz->rule, t);
        }
        return n == 0 ? tz->off0 : tz->off[n - 1];
    }
    if (t < tz->at[0]) {
        return tz->off0; /* RFC 8536 3.2: time type 0 */
    }
    size_t lo = 0, hi = n - 1; /* at[lo] <= t < at[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= t) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return tz->off[lo];
}

const char *sl_tz_name(const sl_tz_t *tz)
{
    return tz->name;
}

#define TZ_US_PER_S INT64_C(1000000)

/* The UTC instant of the local time lt in tz, for a local time at or before
 * the instant ts whose offset was off. In an overlap (clocks set back) the
 * candidate with ts's offset wins; in a gap (clocks set forward) the result
 * is the end of the gap, the first instant of the truncated unit. */
static int64_t tz_utc_of_local(const sl_tz_t *tz, int64_t lt, int64_t ts, int32_t off)
{
    int64_t u1 = lt - (int64_t)off * TZ_US_PER_S;
    int32_t o1 = sl_tz_offset(tz, tz_floor_div(u1, TZ_US_PER_S));
    if (o1 == off) {
        return u1;
    }
    int64_t u2 = lt - (int64_t)o1 * TZ_US_PER_S;
    int32_t o2 = sl_tz_offset(tz, tz_floor_div(u2, TZ_US_PER_S));
    int64_t r = o2 == o1 ? u2 : lt - (int64_t)SL_MIN(off, o1) * TZ_US_PER_S;
    return r <= ts ? r : u1; /* u1 <= ts always: lt <= ts + off */
}

int64_t sl_tz_trunc_us(const sl_tz_t *tz, int64_t ts_us, int64_t unit_us)
{
    if (tz == NULL) {
        return ts_us - tz_floor_mod(ts_us, unit_us);
    }
    int32_t off = sl_tz_offset(tz, tz_floor_div(ts_us, TZ_US_PER_S));
    int64_t local = ts_us + (int64_t)off * TZ_US_PER_S;
    return tz_utc_of_local(tz, local - tz_floor_mod(local, unit_us), ts_us, off);
}
