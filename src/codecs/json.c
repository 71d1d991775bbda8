/* The JSON codec. Decoding is one schema-directed pass of recursive descent
 * over the message: each top-level key is looked up in the schema and its
 * value is parsed straight into the typed record slot. There is no token array
 * and no tree; nothing is allocated except unescaped strings (in the arena).
 * Values of unknown fields are skipped by an iterative scanner (no recursion,
 * so deep nesting cannot exhaust the stack) that still checks the grammar,
 * UTF-8 and the depth limit.
 *
 * Decisions beyond RFC 8259:
 *  - A leading byte order mark is rejected: RFC 8259 8.1 forbids sending one
 *    and only allows parsers to ignore it; a producer that adds one is broken
 *    and should see its messages dead-lettered rather than silently accepted.
 *  - Strings must be valid UTF-8 (no overlongs, surrogates, or code points
 *    above U+10FFFF) and \u escapes must not leave a surrogate unpaired.
 *  - Only known keys are checked for duplicates (unknown keys are not kept).
 *  - Numbers follow the JSON grammar exactly (no leading zeros, '+', NaN...).
 *
 * Depth counts containers: the top-level object is depth 1, so {"a":[1]} has
 * depth 2. The input is never read past len: it need not be NUL-terminated. */
#include "codecs/json.h"

#include "util/utf8.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JD_QUOTE_MAX 64  /* how much of a value a reason quotes */
#define JD_SEEN_WORDS 4  /* fields tracked for duplicates without allocating: 256 */
#define JD_SKIP_WORDS 8  /* nesting levels skipped without allocating: 512 */
#define JD_NUM_STACK 64  /* numbers shorter than this go to strtod() from the stack */
#define JD_MAX_DIGITS 19 /* significant digits that always fit in a uint64_t */

typedef struct jd {
    const unsigned char *p; /* cursor */
    const unsigned char *end;
    const unsigned char *base; /* start of the message, for byte offsets */
    sl_arena_t *arena;
    sl_reason_t *why;
    int max_depth;
} jd_t;

typedef struct jd_str {
    const unsigned char *raw; /* between the quotes, escapes not yet resolved */
    size_t len;
    bool esc;
} jd_str_t;

typedef struct jd_num {
    const unsigned char *start; /* the literal, for strtod() and reasons */
    size_t len;
    bool neg;
    bool is_int;   /* no fraction and no exponent */
    bool int_big;  /* the integer part has more than 19 digits */
    bool inexact;  /* significant digits were dropped from mant */
    uint64_t mant; /* significant digits (the integer part when is_int) */
    int64_t frac;  /* digits of mant after the decimal point */
    int64_t exp;   /* the exponent, clamped to +-100000 */
} jd_num_t;

#define JD_R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
/* Bytes that stop the fast scan of a string: control bytes, '"', '\\' and
 * every byte >= 0x80 (UTF-8 sequences are checked one by one). */
static const unsigned char jd_str_stop[256] = {
    JD_R16(1), JD_R16(1),                                                           /* 0x00-0x1f */
    0,         0,         1,         0,         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    JD_R16(0), JD_R16(0),                                                           /* 0x30-0x4f */
    0,         0,         0,         0,         0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    JD_R16(0), JD_R16(0),                                                           /* 0x60-0x7f */
    JD_R16(1), JD_R16(1), JD_R16(1), JD_R16(1),                                     /* 0x80-0xbf */
    JD_R16(1), JD_R16(1), JD_R16(1), JD_R16(1),                                     /* 0xc0-0xff */
};

static int jd_fail(jd_t *d, const char *fmt, ...) SL_PRINTF(2, 3);

static int jd_fail(jd_t *d, const char *fmt, ...)
{
    if (d->why != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->why->text, sizeof(d->why->text), fmt, ap);
        va_end(ap);
    }
    return -1;
}

static size_t jd_off(const jd_t *d, const unsigned char *at)
{
    return (size_t)(at - d->base);
}

/* "invalid JSON at byte N: expected X" (", got end of input" at the end). */
static int jd_expected(jd_t *d, const unsigned char *at, const char *what)
{
    return jd_fail(d, "invalid JSON at byte %zu: expected %s%s", jd_off(d, at), what,
                   at >= d->end ? ", got end of input" : "");
}

static int jd_syntax(jd_t *d, const unsigned char *at, const char *msg)
{
    return jd_fail(d, "invalid JSON at byte %zu: %s", jd_off(d, at), msg);
}

static inline const unsigned char *jd_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }
    return p;
}

static inline bool jd_digit(unsigned char c)
{
    return (unsigned)(c - '0') <= 9;
}

static inline uint64_t jd_load64(const char *s)
{
    uint64_t v;
    memcpy(&v, s, 8);
    return v;
}

static inline uint32_t jd_load32(const char *s)
{
    uint32_t v;
    memcpy(&v, s, 4);
    return v;
}

/* memcmp(a, b, n) == 0 for short n without a library call. */
static inline bool jd_eq(const char *a, const char *b, size_t n)
{
    if (n >= 8) {
        const char *a_end = a + n, *b_end = b + n;
        while (n > 8) {
            if (jd_load64(a) != jd_load64(b)) {
                return false;
            }
            a += 8;
            b += 8;
            n -= 8;
        }
        return jd_load64(a_end - 8) == jd_load64(b_end - 8);
    }
    if (n >= 4) {
        return jd_load32(a) == jd_load32(b) && jd_load32(a + n - 4) == jd_load32(b + n - 4);
    }
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return false;
        }
    }
    return true;
}

/* Checks the escape at *pp (a backslash) and moves *pp past it. */
static int jd_check_escape(jd_t *d, const unsigned char **pp)
{
    const unsigned char *p = *pp;
    size_t left = (size_t)(d->end - p);
    unsigned cp, lo;
    if (left < 2) {
        return jd_syntax(d, p, "unterminated string");
    }
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        *pp = p + 2;
        return 0;
    case 'u':
        break;
    default:
        return jd_syntax(d, p, "invalid escape in string");
    }
    if (left < 6 || sl_utf8_hex4(p + 2, &cp) != 0) {
        return jd_syntax(d, p, "invalid \\u escape (expected 4 hex digits)");
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        if (cp >= 0xDC00 || left < 12 || p[6] != '\\' || p[7] != 'u' ||
            sl_utf8_hex4(p + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
            return jd_syntax(d, p, "unpaired UTF-16 surrogate in \\u escape");
        }
        *pp = p + 12;
        return 0;
    }
    *pp = p + 6;
    return 0;
}

/* Scans the string whose opening quote is at d->p, checking escapes, control
 * bytes and UTF-8, and leaves d->p after the closing quote. */
static int jd_scan_string(jd_t *d, jd_str_t *out)
{
    const unsigned char *p = d->p + 1, *end = d->end;
    bool esc = false;
    for (;;) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Eight bytes at a time: the lowest flagged byte is the first stop
         * byte (the borrow tricks only add false flags above a true one). */
        while (end - p >= 8) {
            const uint64_t ones = UINT64_C(0x0101010101010101), high = ones * 0x80;
            uint64_t w, q, b;
            memcpy(&w, p, 8);
            q = w ^ (ones * '"');
            b = w ^ (ones * '\\');
            uint64_t stop = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w;
            stop &= high;
            if (stop != 0) {
                p += __builtin_ctzll(stop) / 8;
                break;
            }
            p += 8;
        }
#endif
        while (p < end && !jd_str_stop[*p]) {
            p++;
        }
        if (SL_UNLIKELY(p >= end)) {
            return jd_syntax(d, d->p, "unterminated string");
        }
        unsigned char c = *p;
        if (SL_LIKELY(c == '"')) {
            break;
        }
        if (c == '\\') {
            esc = true;
            if (jd_check_escape(d, &p) != 0) {
                return -1;
            }
        } else if (c < 0x20) {
            return jd_syntax(d, p, "unescaped control character in string");
        } else {
            size_t n = sl_utf8_seq_len(p, (size_t)(end - p));
            if (n == 0) {
                return jd_fail(d, "invalid UTF-8 at byte %zu", jd_off(d, p));
            }
            p += n;
        }
    }
    out->raw = d->p + 1;
    out->len = (size_t)(p - out->raw);
    out->esc = esc;
    d->p = p + 1;
    return 0;
}

/* Resolves the escapes of a string jd_scan_string() accepted into dst (at
 * least n bytes: no escape is shorter than what it stands for). */
static size_t jd_unescape(const unsigned char *s, size_t n, char *dst)
{
    size_t o = 0, i = 0;
    while (i < n) {
        if (s[i] != '\\') {
            dst[o++] = (char)s[i++];
            continue;
        }
        unsigned cp = 0, lo = 0;
        switch (s[i + 1]) {
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            (void)sl_utf8_hex4(s + i + 2, &cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                (void)sl_utf8_hex4(s + i + 8, &lo);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            i += 4;
            break;
        default: /* '"', '\\', '/' */
            cp = s[i + 1];
            break;
        }
        i += 2;
        o += sl_utf8_put(dst + o, cp);
    }
    return o;
}

/* Turns a scanned string into a value: a view into the message, or an
 * unescaped copy in the arena. */
static void jd_str_value(jd_t *d, const jd_str_t *s, sl_str_t *out)
{
    if (SL_LIKELY(!s->esc)) {
        out->ptr = (const char *)s->raw;
        out->len = s->len;
        return;
    }
    char *dst = sl_arena_alloc(d->arena, s->len + 1);
    out->len = jd_unescape(s->raw, s->len, dst);
    dst[out->len] = '\0';
    out->ptr = dst;
}

/* Scans a number at d->p by the JSON grammar, collecting what the typed
 * conversions need. */
static int jd_scan_number(jd_t *d, jd_num_t *n)
{
    const unsigned char *p = d->p, *end = d->end;
    uint64_t m = 0;
    int sig = 0, int_digits = 0;
    n->start = p;
    n->neg = false;
    n->is_int = true;
    n->inexact = false;
    n->frac = 0;
    n->exp = 0;
    if (*p == '-') {
        n->neg = true;
        p++;
    }
    if (p >= end || !jd_digit(*p)) {
        return jd_expected(d, p, "a digit");
    }
    if (*p == '0') {
        p++;
    } else {
        do {
            if (sig < JD_MAX_DIGITS) {
                m = m * 10 + (unsigned)(*p - '0');
                sig++;
            } else {
                n->inexact = true;
            }
            int_digits++;
            p++;
        } while (p < end && jd_digit(*p));
    }
    n->int_big = int_digits > JD_MAX_DIGITS;
    if (p < end && *p == '.') {
        n->is_int = false;
        p++;
        if (p >= end || !jd_digit(*p)) {
            return jd_expected(d, p, "a digit after '.'");
        }
        do {
            if (sig < JD_MAX_DIGITS) {
                m = m * 10 + (unsigned)(*p - '0');
                sig += m != 0; /* leading zeros of 0.000123 are not significant */
                n->frac++;
            } else if (*p != '0') {
                n->inexact = true;
            }
            p++;
        } while (p < end && jd_digit(*p));
    }
    if (p < end && (*p | 0x20) == 'e') {
        bool eneg = false;
        int64_t e = 0;
        n->is_int = false;
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || !jd_digit(*p)) {
            return jd_expected(d, p, "a digit in the exponent");
        }
        do {
            if (e < 100000) {
                e = e * 10 + (*p - '0');
            }
            p++;
        } while (p < end && jd_digit(*p));
        n->exp = eneg ? -e : e;
    }
    n->mant = m;
    n->len = (size_t)(p - n->start);
    d->p = p;
    return 0;
}

/* The integer value of n if it lies in [lo, hi]. */
static int jd_num_int(const jd_num_t *n, int64_t lo, int64_t hi, int64_t *out)
{
    if (!n->is_int || n->int_big) {
        return -1;
    }
    if (n->neg) {
        if (n->mant > (uint64_t) - (lo + 1) + 1) {
            return -1;
        }
        *out = n->mant == 0 ? 0 : -(int64_t)(n->mant - 1) - 1;
    } else {
        if (n->mant > (uint64_t)hi) {
            return -1;
        }
        *out = (int64_t)n->mant;
    }
    return 0;
}

static int jd_num_double(const jd_num_t *n, double *out)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int64_t e = n->exp - n->frac;
    double x;
    /* Clinger's fast path: both operands exact, so one IEEE operation rounds
     * correctly. Everything else goes to strtod(). */
    if (!n->inexact && n->mant <= (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
        x = (double)n->mant;
        x = e < 0 ? x / pow10[-e] : x * pow10[e];
        *out = n->neg ? -x : x;
        return 0;
    }
    char stack[JD_NUM_STACK];
    char *tmp = n->len < sizeof(stack) ? stack : sl_xmalloc(n->len + 1);
    memcpy(tmp, n->start, n->len);
    tmp[n->len] = '\0';
    x = strtod(tmp, NULL); /* Sluice never calls setlocale(): '.' is the decimal point */
    if (tmp != stack) {
        free(tmp);
    }
    if (!isfinite(x)) {
        return -1;
    }
    *out = x;
    return 0;
}

static int jd_literal(jd_t *d, const char *lit, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, lit, n) != 0) {
        return jd_syntax(d, d->p, "invalid literal");
    }
    d->p += n;
    return 0;
}

/* Skips the string at d->p (checked, not unescaped). */
static int jd_skip_string(jd_t *d)
{
    jd_str_t s;
    return jd_scan_string(d, &s);
}

/* Skips "key": (with whitespace) inside an object being skipped. */
static int jd_skip_key(jd_t *d)
{
    if (d->p >= d->end || *d->p != '"') {
        return jd_expected(d, d->p, "'\"' (an object key)");
    }
    if (jd_skip_string(d) != 0) {
        return -1;
    }
    d->p = jd_ws(d->p, d->end);
    if (d->p >= d->end || *d->p != ':') {
        return jd_expected(d, d->p, "':'");
    }
    d->p = jd_ws(d->p + 1, d->end);
    return 0;
}

/* Skips one value at d->p whose container is at depth `depth`, checking the
 * grammar, UTF-8 and the depth limit. Iterative: the open containers are a
 * bit stack (1 = object), on the stack up to 512 levels, then on the heap. */
static int jd_skip_value(jd_t *d, int depth)
{
    uint64_t small[JD_SKIP_WORDS];
    uint64_t *bits = small;
    size_t cap = JD_SKIP_WORDS * 64;
    size_t level = 0;
    int rc = -1;
    for (;;) {
        const unsigned char *p = d->p;
        if (p >= d->end) {
            jd_expected(d, p, "a value");
            goto out;
        }
        unsigned char c = *p;
        if (c == '{' || c == '[') {
            if ((size_t)depth + level + 1 > (size_t)d->max_depth) {
                jd_fail(d, "nesting deeper than %d", d->max_depth);
                goto out;
            }
            if (level == cap) {
                size_t words = cap / 64 * 2;
                uint64_t *grown = sl_xmalloc(words * sizeof(*grown));
                memcpy(grown, bits, cap / 8);
                if (bits != small) {
                    free(bits);
                }
                bits = grown;
                cap = words * 64;
            }
            if (c == '{') {
                bits[level / 64] |= UINT64_C(1) << (level % 64);
            } else {
                bits[level / 64] &= ~(UINT64_C(1) << (level % 64));
            }
            level++;
            d->p = jd_ws(p + 1, d->end);
            if (d->p < d->end && *d->p == (c == '{' ? '}' : ']')) {
                d->p++;
                level--;
            } else {
                if (c == '{' && jd_skip_key(d) != 0) {
                    goto out;
                }
                continue; /* the first member's value */
            }
        } else if (c == '"') {
            if (jd_skip_string(d) != 0) {
                goto out;
            }
        } else if (c == '-' || jd_digit(c)) {
            jd_num_t n;
            if (jd_scan_number(d, &n) != 0) {
                goto out;
            }
        } else if (c == 't') {
            if (jd_literal(d, "true", 4) != 0) {
                goto out;
            }
        } else if (c == 'f') {
            if (jd_literal(d, "false", 5) != 0) {
                goto out;
            }
        } else if (c == 'n') {
            if (jd_literal(d, "null", 4) != 0) {
                goto out;
            }
        } else {
            jd_expected(d, p, "a value");
            goto out;
        }
        /* A value is complete: close containers until one has a next member. */
        for (;;) {
            if (level == 0) {
                rc = 0;
                goto out;
            }
            bool obj = (bits[(level - 1) / 64] >> ((level - 1) % 64)) & 1;
            d->p = jd_ws(d->p, d->end);
            if (d->p < d->end && *d->p == ',') {
                d->p = jd_ws(d->p + 1, d->end);
                if (obj && jd_skip_key(d) != 0) {
                    goto out;
                }
                break;
            }
            if (d->p < d->end && *d->p == (obj ? '}' : ']')) {
                d->p++;
                level--;
                continue;
            }
            jd_expected(d, d->p, obj ? "',' or '}'" : "',' or ']'");
            goto out;
        }
    }
out:
    if (bits != small) {
        free(bits);
    }
    return rc;
}

static const char *jd_kind(unsigned char c)
{
    switch (c) {
    case '"':
        return "string";
    case '{':
        return "object";
    case '[':
        return "array";
    case 't':
    case 'f':
        return "bool";
    default:
        return c == '-' || jd_digit(c) ? "number" : "invalid JSON";
    }
}

static int jd_wrong_type(jd_t *d, const sl_field_t *f)
{
    if (!(*d->p == '"' || *d->p == '{' || *d->p == '[' || *d->p == 't' || *d->p == 'f' ||
          *d->p == '-' || jd_digit(*d->p))) {
        return jd_expected(d, d->p, "a value");
    }
    return jd_fail(d, "field '%s': expected %s, got %s", f->name, sl_type_name(f->type),
                   jd_kind(*d->p));
}

static int jd_bad_number(jd_t *d, const sl_field_t *f, const jd_num_t *n, const char *what)
{
    char q[JD_QUOTE_MAX];
    sl_value_quote((const char *)n->start, n->len, q, sizeof(q));
    if (!n->is_int && f->type != SL_TYPE_DOUBLE) {
        return jd_fail(d, "field '%s': expected %s, got %s", f->name, sl_type_name(f->type), q);
    }
    return jd_fail(d, "field '%s': %s%s is out of range for %s", f->name, q, what,
                   sl_type_name(f->type));
}

/* Parses a date or timestamp string at d->p into v->u.i. */
static int jd_time_string(jd_t *d, const sl_field_t *f, sl_value_t *v)
{
    jd_str_t s;
    sl_str_t str;
    char q[JD_QUOTE_MAX];
    int rc;
    if (jd_scan_string(d, &s) != 0) {
        return -1;
    }
    jd_str_value(d, &s, &str);
    if (f->type == SL_TYPE_DATE) {
        rc = sl_date_parse(str.ptr, str.len, &v->u.i);
    } else {
        rc = sl_timestamp_parse(str.ptr, str.len, &v->u.i);
    }
    if (rc != 0) {
        return jd_fail(d, "field '%s': invalid %s \"%s\"", f->name,
                       f->type == SL_TYPE_DATE ? "date" : "timestamp",
                       sl_value_quote(str.ptr, str.len, q, sizeof(q)));
    }
    return 0;
}

/* Parses the value at d->p into v as field f's type. */
static int jd_field(jd_t *d, const sl_field_t *f, sl_value_t *v)
{
    const unsigned char *p = d->p;
    jd_num_t n;
    jd_str_t s;
    if (p >= d->end) {
        return jd_expected(d, p, "a value");
    }
    unsigned char c = *p;
    if (c == 'n') {
        if (jd_literal(d, "null", 4) != 0) {
            return -1;
        }
        v->is_null = true;
        return 0;
    }
    switch (f->type) {
    case SL_TYPE_STRING:
        if (c != '"') {
            return jd_wrong_type(d, f);
        }
        if (jd_scan_string(d, &s) != 0) {
            return -1;
        }
        jd_str_value(d, &s, &v->u.s);
        break;
    case SL_TYPE_INT32:
    case SL_TYPE_INT64:
        if (c != '-' && !jd_digit(c)) {
            return jd_wrong_type(d, f);
        }
        if (jd_scan_number(d, &n) != 0) {
            return -1;
        }
        if (f->type == SL_TYPE_INT32 ? jd_num_int(&n, INT32_MIN, INT32_MAX, &v->u.i)
                                     : jd_num_int(&n, INT64_MIN, INT64_MAX, &v->u.i)) {
            return jd_bad_number(d, f, &n, "");
        }
        break;
    case SL_TYPE_DOUBLE:
        if (c != '-' && !jd_digit(c)) {
            return jd_wrong_type(d, f);
        }
        if (jd_scan_number(d, &n) != 0) {
            return -1;
        }
        if (jd_num_double(&n, &v->u.d) != 0) {
            return jd_bad_number(d, f, &n, "");
        }
        break;
    case SL_TYPE_BOOL:
        if (c == 't' || c == 'f') {
            if (c == 't' ? jd_literal(d, "true", 4) : jd_literal(d, "false", 5)) {
                return -1;
            }
            v->u.b = c == 't';
            break;
        }
        return jd_wrong_type(d, f);
    case SL_TYPE_DATE:
        if (c != '"') {
            return jd_wrong_type(d, f);
        }
        if (jd_time_string(d, f, v) != 0) {
            return -1;
        }
        break;
    case SL_TYPE_TIMESTAMP:
        if (c == '"') {
            if (jd_time_string(d, f, v) != 0) {
                return -1;
            }
            break;
        }
        if (c != '-' && !jd_digit(c)) {
            return jd_wrong_type(d, f);
        }
        if (jd_scan_number(d, &n) != 0) {
            return -1;
        }
        /* An integer is epoch milliseconds. */
        if (jd_num_int(&n, SL_TIMESTAMP_MIN_US / 1000, SL_TIMESTAMP_MAX_US / 1000, &v->u.i) != 0) {
            return jd_bad_number(d, f, &n, " ms");
        }
        v->u.i *= 1000;
        break;
    default:
        return jd_fail(d, "field '%s': unsupported type", f->name);
    }
    v->is_null = false;
    return 0;
}

int sl_json_decode(const sl_schema_t *schema, const sl_json_limits_t *limits, const char *buf,
                   size_t len, sl_value_t *values, sl_arena_t *arena, sl_reason_t *why)
{
    uint64_t seen_small[JD_SEEN_WORDS] = {0};
    uint64_t *seen = seen_small;
    size_t n_fields = schema->n_fields;
    char q[JD_QUOTE_MAX];
    jd_t d;
    jd_str_t key;
    size_t guess = 0; /* the field expected next */
    int rc = -1;

    d.base = (const unsigned char *)buf;
    d.p = d.base;
    d.end = d.base + len;
    d.arena = arena;
    d.why = why;
    d.max_depth = limits->max_depth < 1 ? 1 : limits->max_depth;

    if (limits->max_bytes > 0 && len > limits->max_bytes) {
        return jd_fail(&d, "message of %zu bytes exceeds max_bytes %zu", len, limits->max_bytes);
    }
    for (size_t i = 0; i < n_fields; i++) {
        values[i].is_null = true;
        values[i].u.i = 0;
    }
    if (n_fields > JD_SEEN_WORDS * 64) {
        seen = sl_xcalloc((n_fields + 63) / 64, sizeof(*seen));
    }

    d.p = jd_ws(d.p, d.end);
    if (d.p == d.end) {
        jd_fail(&d, "empty message");
        goto out;
    }
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        jd_syntax(&d, d.p, "byte order mark (U+FEFF) is not allowed");
        goto out;
    }
    if (*d.p != '{') {
        jd_expected(&d, d.p, "'{' (a message must be a JSON object)");
        goto out;
    }
    d.p = jd_ws(d.p + 1, d.end);
    if (d.p < d.end && *d.p == '}') {
        d.p++;
    } else {
        for (;;) {
            if (d.p >= d.end || *d.p != '"') {
                jd_expected(&d, d.p, "'\"' (an object key)");
                goto out;
            }
            if (jd_scan_string(&d, &key) != 0) {
                goto out;
            }
            sl_str_t name = {(const char *)key.raw, key.len};
            if (SL_UNLIKELY(key.esc)) {
                jd_str_value(&d, &key, &name);
            }
            d.p = jd_ws(d.p, d.end);
            if (d.p >= d.end || *d.p != ':') {
                jd_expected(&d, d.p, "':'");
                goto out;
            }
            d.p = jd_ws(d.p + 1, d.end);
            /* Producers send keys in a steady order, mostly the schema's: try
             * the field after the previous one before hashing. */
            int idx = -1;
            if (guess < n_fields && schema->fields[guess].name_len == name.len &&
                jd_eq(schema->fields[guess].name, name.ptr, name.len)) {
                idx = (int)guess;
            } else {
                idx = sl_schema_find(schema, name.ptr, name.len);
            }
            guess = (size_t)idx + 1;
            if (idx < 0) {
                if (schema->unknown == SL_UNKNOWN_REJECT) {
                    jd_fail(&d, "unknown field '%s'",
                            sl_value_quote(name.ptr, name.len, q, sizeof(q)));
                    goto out;
                }
                if (jd_skip_value(&d, 1) != 0) {
                    goto out;
                }
            } else {
                uint64_t bit = UINT64_C(1) << (idx % 64);
                if (seen[idx / 64] & bit) {
                    jd_fail(&d, "field '%s': duplicate key", schema->fields[idx].name);
                    goto out;
                }
                seen[idx / 64] |= bit;
                if (jd_field(&d, &schema->fields[idx], &values[idx]) != 0) {
                    goto out;
                }
            }
            d.p = jd_ws(d.p, d.end);
            if (d.p < d.end && *d.p == ',') {
                d.p = jd_ws(d.p + 1, d.end);
                continue;
            }
            if (d.p < d.end && *d.p == '}') {
                d.p++;
                break;
            }
            jd_expected(&d, d.p, "',' or '}'");
            goto out;
        }
    }
    d.p = jd_ws(d.p, d.end);
    if (d.p != d.end) {
        jd_syntax(&d, d.p, "unexpected data after the object");
        goto out;
    }
    rc = 0;
out:
    if (seen != seen_small) {
        free(seen);
    }
    return rc;
}

void sl_json_encode(const sl_schema_t *schema, const sl_value_t *values, sl_buf_t *out)
{
    sl_buf_putc(out, '{');
    bool first = true;
    for (size_t i = 0; i < schema->n_fields; i++) {
        const sl_field_t *f = &schema->fields[i];
        if (f->hidden) {
            continue;
        }
        if (!first) {
            sl_buf_putc(out, ',');
        }
        first = false;
        sl_buf_putc(out, '"');
        sl_buf_json_escape(out, f->name, f->name_len);
        sl_buf_append(out, "\":", 2);
        sl_value_to_json(&values[i], f->type, out);
    }
    sl_buf_putc(out, '}');
}
