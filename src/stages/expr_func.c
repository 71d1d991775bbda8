/* The functions of the expression language (see expr.c): their run-time
 * implementations, and the table the parser looks them up in, whose
 * checkers type a call's arguments and pick the implementation. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "stages/expr_int.h"

#define EX_US_PER_S INT64_C(1000000)
#define EX_US_PER_MIN INT64_C(60000000)
#define EX_US_PER_HOUR INT64_C(3600000000)
#define EX_US_PER_DAY INT64_C(86400000000)

static int64_t ex_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t ex_floor_mod(int64_t a, int64_t b)
{
    int64_t m = a % b;
    return (m != 0 && ((m < 0) != (b < 0))) ? m + b : m;
}

/* ------------------------------------------------------------------------ */
/* Function implementations                                                  */

/* Evaluates the (at most 3) arguments of a strict function. Returns -1 on
 * error, 1 if one is null (then *out is null), else 0. */
static int ex_args(const ex_node_t *n, ex_ctx_t *c, sl_value_t *v, sl_value_t *out)
{
    for (size_t i = 0; i < n->nargs; i++) {
        if (ex_get(n->args[i], c, &v[i]) != 0) {
            return -1;
        }
        if (v[i].is_null) {
            out->is_null = true;
            return 1;
        }
    }
    return 0;
}

static int exf_case(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out, bool upper)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    const char *s = v[0].u.s.ptr;
    size_t len = v[0].u.s.len, i = 0;
    char lo = upper ? 'a' : 'A', hi = upper ? 'z' : 'Z';
    while (i < len && !(s[i] >= lo && s[i] <= hi)) {
        i++;
    }
    if (i == len) {
        *out = v[0]; /* nothing to change: borrow the input */
        return 0;
    }
    char *o = sl_arena_alloc(c->arena, len);
    memcpy(o, s, i);
    for (; i < len; i++) {
        o[i] = (s[i] >= lo && s[i] <= hi) ? (char)(s[i] ^ 0x20) : s[i];
    }
    ex_set_str(out, o, len);
    return 0;
}

static int exf_lower(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_case(n, c, out, false);
}

static int exf_upper(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_case(n, c, out, true);
}

static bool ex_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int exf_trim(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    const char *s = v[0].u.s.ptr;
    size_t a = 0, b = v[0].u.s.len;
    while (a < b && ex_space(s[a])) {
        a++;
    }
    while (b > a && ex_space(s[b - 1])) {
        b--;
    }
    ex_set_str(out, s + a, b - a);
    return 0;
}

static int exf_length(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc == 0) {
        ex_set_int(out, (int64_t)v[0].u.s.len);
    }
    return rc < 0 ? -1 : 0;
}

/* substr(s, start[, len]): bytes start .. start+len-1, 1-based, clamped to
 * the string (SQL: substr('hello', 0, 2) = 'h'). */
static int exf_substr(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[3];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    int64_t size = (int64_t)v[0].u.s.len, start = v[1].u.i;
    int64_t lo = SL_MAX(start, 1), hi = size + 1; /* [lo, hi), 1-based */
    if (n->nargs == 3) {
        int64_t stop;
        if (v[2].u.i < 0) {
            stop = start;
        } else if (__builtin_add_overflow(start, v[2].u.i, &stop)) {
            stop = INT64_MAX;
        }
        hi = SL_MIN(hi, stop);
    }
    if (hi <= lo) {
        ex_set_str(out, v[0].u.s.ptr, 0);
    } else {
        ex_set_str(out, v[0].u.s.ptr + (lo - 1), (size_t)(hi - lo));
    }
    return 0;
}

static int exf_affix(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out, int where)
{
    sl_value_t v[2];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    sl_str_t s = v[0].u.s, x = v[1].u.s;
    bool r;
    if (x.len > s.len) {
        r = false;
    } else if (x.len == 0) {
        r = true;
    } else if (where < 0) {
        r = memcmp(s.ptr, x.ptr, x.len) == 0;
    } else if (where > 0) {
        r = memcmp(s.ptr + s.len - x.len, x.ptr, x.len) == 0;
    } else {
        r = memmem(s.ptr, s.len, x.ptr, x.len) != NULL;
    }
    ex_set_bool(out, r);
    return 0;
}

static int exf_starts_with(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_affix(n, c, out, -1);
}

static int exf_ends_with(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_affix(n, c, out, 1);
}

static int exf_contains(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_affix(n, c, out, 0);
}

/* Writes i in decimal to out (>= 21 bytes); returns the length. */
static size_t ex_fmt_i64(int64_t i, char *out)
{
    char rev[20];
    size_t n = 0, len = 0;
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
    do {
        rev[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (i < 0) {
        out[len++] = '-';
    }
    while (n > 0) {
        out[len++] = rev[--n];
    }
    return len;
}

/* Formats a non-null value as text, as concat() and string() do: into tmp
 * (>= 48 bytes), or borrowing a string. */
static sl_str_t ex_text(const sl_value_t *v, int type, char *tmp)
{
    sl_str_t r = {tmp, 0};
    switch (type) {
    case SL_TYPE_STRING:
        return v->u.s;
    case SL_TYPE_INT64:
        r.len = ex_fmt_i64(v->u.i, tmp);
        break;
    case SL_TYPE_DOUBLE:
        if (isnan(v->u.d)) {
            r.len = (size_t)snprintf(tmp, 48, "nan");
            break;
        }
        /* the shortest of %.15g .. %.17g that reads back as the same double */
        for (int prec = 15; prec <= 17; prec++) {
            r.len = (size_t)snprintf(tmp, 48, "%.*g", prec, v->u.d);
            if (strtod(tmp, NULL) == v->u.d) {
                break;
            }
        }
        break;
    case SL_TYPE_BOOL:
        r.len = (size_t)snprintf(tmp, 48, "%s", v->u.b ? "true" : "false");
        break;
    case SL_TYPE_DATE:
        sl_date_format(v->u.i, tmp);
        r.len = 10;
        break;
    case SL_TYPE_TIMESTAMP:
        sl_timestamp_format(v->u.i, tmp);
        r.len = strlen(tmp);
        break;
    default:
        break;
    }
    return r;
}

/* Collects bytes on the stack, moving to the arena when they outgrow it. */
typedef struct {
    sl_arena_t *arena;
    char *p;
    size_t len, cap;
    char stack[256];
} ex_sb_t;

static void ex_sb_init(ex_sb_t *b, sl_arena_t *arena)
{
    b->arena = arena;
    b->p = b->stack;
    b->len = 0;
    b->cap = sizeof(b->stack);
}

static void ex_sb_put(ex_sb_t *b, const char *s, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap * 2;
        while (cap - b->len < n) {
            cap *= 2;
        }
        char *np = sl_arena_alloc(b->arena, cap);
        memcpy(np, b->p, b->len);
        b->p = np;
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

/* The collected bytes, in the arena. */
static void ex_sb_done(ex_sb_t *b, sl_value_t *out)
{
    char *p = b->p;
    if (p == b->stack) {
        p = sl_arena_alloc(b->arena, b->len ? b->len : 1);
        memcpy(p, b->stack, b->len);
    }
    ex_set_str(out, p, b->len);
}

/* Appends every argument's text to b, separated by sep (0: none). Returns
 * -1 on error, 1 if an argument is null (evaluation stops there), else 0. */
static int ex_join(const ex_node_t *n, ex_ctx_t *c, ex_sb_t *b, int sep)
{
    for (size_t i = 0; i < n->nargs; i++) {
        sl_value_t v;
        char tmp[48];
        if (ex_get(n->args[i], c, &v) != 0) {
            return -1;
        }
        if (v.is_null) {
            return 1;
        }
        if (i > 0 && sep != 0) {
            char s = (char)sep;
            ex_sb_put(b, &s, 1);
        }
        sl_str_t t = ex_text(&v, n->args[i]->type, tmp);
        ex_sb_put(b, t.ptr, t.len);
    }
    return 0;
}

static int exf_concat(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    ex_sb_t b;
    ex_sb_init(&b, c->arena);
    int rc = ex_join(n, c, &b, 0);
    if (rc == 0) {
        ex_sb_done(&b, out);
    } else {
        out->is_null = true;
    }
    return rc < 0 ? -1 : 0;
}

static int exf_string(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    char tmp[48];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    sl_str_t t = ex_text(&v[0], n->args[0]->type, tmp);
    if (t.ptr == tmp) {
        t.ptr = sl_arena_strndup(c->arena, tmp, t.len);
    }
    ex_set_str(out, t.ptr, t.len);
    return 0;
}

static void ex_hexstr(const unsigned char *d, size_t n, char *o)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = digits[d[i] >> 4];
        o[2 * i + 1] = digits[d[i] & 15];
    }
}

static pthread_once_t ex_sha_once = PTHREAD_ONCE_INIT;
static pthread_key_t ex_sha_key;

static void ex_sha_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void ex_sha_key_init(void)
{
    if (pthread_key_create(&ex_sha_key, ex_sha_ctx_free) != 0) {
        sl_fatal("expr: pthread_key_create failed");
    }
}

/* The calling thread's digest context, made on its first sha1() and freed
 * when the thread exits: a call then allocates nothing (EVP_Digest() makes
 * and frees a context each time, which doubled the cost). */
static EVP_MD_CTX *ex_sha_ctx(void)
{
    pthread_once(&ex_sha_once, ex_sha_key_init);
    EVP_MD_CTX *ctx = pthread_getspecific(ex_sha_key);
    if (ctx == NULL) {
        if ((ctx = EVP_MD_CTX_new()) == NULL) {
            sl_fatal("expr: out of memory (EVP_MD_CTX_new)");
        }
        if (pthread_setspecific(ex_sha_key, ctx) != 0) {
            sl_fatal("expr: pthread_setspecific failed");
        }
    }
    return ctx;
}

static int exf_sha1(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    ex_sb_t b;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ex_sb_init(&b, c->arena);
    int rc = ex_join(n, c, &b, 0x1f);
    if (rc != 0) {
        out->is_null = true;
        return rc < 0 ? -1 : 0;
    }
    EVP_MD_CTX *ctx = ex_sha_ctx();
    if (EVP_DigestInit_ex2(ctx, n->u.md, NULL) != 1 || EVP_DigestUpdate(ctx, b.p, b.len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 20) {
        return ex_fail(c, n, "SHA-1 failed in OpenSSL");
    }
    char *o = sl_arena_alloc(c->arena, 40);
    ex_hexstr(md, 20, o);
    ex_set_str(out, o, 40);
    return 0;
}

static int exf_xxh3(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    ex_sb_t b;
    ex_sb_init(&b, c->arena);
    int rc = ex_join(n, c, &b, 0x1f);
    if (rc != 0) {
        out->is_null = true;
        return rc < 0 ? -1 : 0;
    }
    uint64_t h = XXH3_64bits(b.p, b.len);
    unsigned char be[8];
    for (int i = 0; i < 8; i++) {
        be[i] = (unsigned char)(h >> (56 - 8 * i));
    }
    char *o = sl_arena_alloc(c->arena, 16);
    ex_hexstr(be, 8, o);
    ex_set_str(out, o, 16);
    return 0;
}

/* Lazy: only the first non-null argument is evaluated past. */
static int exf_coalesce(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    for (size_t i = 0; i < n->nargs; i++) {
        if (ex_get(n->args[i], c, out) != 0) {
            return -1;
        }
        if (!out->is_null) {
            return 0;
        }
    }
    out->is_null = true;
    return 0;
}

/* Lazy: a null condition takes the else branch (like SQL's CASE WHEN). */
static int exf_if(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t cond;
    if (ex_get(n->args[0], c, &cond) != 0) {
        return -1;
    }
    return ex_get(n->args[!cond.is_null && cond.u.b ? 1 : 2], c, out);
}

static int exf_int_of_double(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    double d = v[0].u.d;
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
        return ex_fail(c, n, "%g is out of the int64 range", d);
    }
    ex_set_int(out, (int64_t)d);
    return 0;
}

static int exf_int_of_bool(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc == 0) {
        ex_set_int(out, v[0].u.b ? 1 : 0);
    }
    return rc < 0 ? -1 : 0;
}

static int exf_int_of_string(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    const char *s = v[0].u.s.ptr;
    size_t len = v[0].u.s.len, i = 0;
    bool neg = false;
    uint64_t mag = 0, limit = UINT64_C(9223372036854775807);
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        neg = s[i++] == '-';
        limit += neg;
    }
    size_t first = i;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned dgt = (unsigned)(s[i] - '0');
        if (mag > (limit - dgt) / 10) {
            char q[40];
            return ex_fail(c, n, "\"%s\" is out of the int64 range",
                           sl_value_quote(s, len, q, sizeof(q)));
        }
        mag = mag * 10 + dgt;
    }
    if (i == first || i != len) {
        char q[40];
        return ex_fail(c, n, "\"%s\" is not an integer", sl_value_quote(s, len, q, sizeof(q)));
    }
    ex_set_int(out, neg ? (int64_t)(0 - mag) : (int64_t)mag);
    return 0;
}

static int exf_double_of_string(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    const char *s = v[0].u.s.ptr;
    size_t len = v[0].u.s.len, i = 0, digits = 0;
    char q[40];
    /* [+-] digits [. digits] [e [+-] digits]: what strtod accepts minus hex, inf and nan */
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        i++;
    }
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        digits++;
    }
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            digits++;
        }
    }
    if (digits > 0 && i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        size_t exp = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        digits *= i > exp;
    }
    if (digits == 0 || i != len) {
        return ex_fail(c, n, "\"%s\" is not a number", sl_value_quote(s, len, q, sizeof(q)));
    }
    char stack[128];
    char *copy = len < sizeof(stack) ? stack : sl_arena_alloc(c->arena, len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    double d = strtod(copy, NULL);
    if (isinf(d)) {
        return ex_fail(c, n, "\"%s\" is too large for a double",
                       sl_value_quote(s, len, q, sizeof(q)));
    }
    out->is_null = false;
    out->u.d = d;
    return 0;
}

static int exf_abs_i(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    if (v[0].u.i == INT64_MIN) {
        return ex_fail(c, n, "integer overflow");
    }
    ex_set_int(out, v[0].u.i < 0 ? -v[0].u.i : v[0].u.i);
    return 0;
}

static int exf_math_d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out, double (*f)(double))
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc == 0) {
        out->is_null = false;
        out->u.d = f(v[0].u.d);
    }
    return rc < 0 ? -1 : 0;
}

static int exf_abs_d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_math_d(n, c, out, fabs);
}

static int exf_floor_d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_math_d(n, c, out, floor);
}

static int exf_ceil_d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_math_d(n, c, out, ceil);
}

static int exf_round_d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_math_d(n, c, out, round);
}

static int exf_timestamp_unit(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out, int64_t scale,
                              const char *unit)
{
    sl_value_t v[1];
    int64_t us;
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    if (__builtin_mul_overflow(v[0].u.i, scale, &us) || us < SL_TIMESTAMP_MIN_US ||
        us > SL_TIMESTAMP_MAX_US) {
        return ex_fail(c, n, "%" PRId64 " %s is outside the timestamp range 0001-01-01..9999-12-31",
                       v[0].u.i, unit);
    }
    out->is_null = false;
    out->u.i = us;
    return 0;
}

static int exf_timestamp_ms(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_timestamp_unit(n, c, out, 1000, "ms");
}

static int exf_timestamp_s(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return exf_timestamp_unit(n, c, out, EX_US_PER_S, "s");
}

static int exf_epoch_ms(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc == 0) {
        ex_set_int(out, ex_floor_div(v[0].u.i, 1000));
    }
    return rc < 0 ? -1 : 0;
}

/* The timestamp argument of a time function as local time (microseconds
 * since the epoch of the local wall clock) in the node's zone. Returns -1
 * with the reason set for an instant outside the supported range (only a
 * hand-built record can hold one), 1 for null, else 0. */
static int ex_local(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out, int64_t *utc, int64_t *local)
{
    sl_value_t v[1];
    int rc = ex_args(n, c, v, out);
    if (rc != 0) {
        return rc;
    }
    int64_t us = v[0].u.i;
    if (us < SL_TIMESTAMP_MIN_US || us > SL_TIMESTAMP_MAX_US) {
        return ex_fail(c, n, "timestamp %" PRId64 " us is outside 0001-01-01..9999-12-31", us);
    }
    *utc = us;
    *local = us;
    if (n->u.tz != NULL) {
        *local += (int64_t)sl_tz_offset(n->u.tz, ex_floor_div(us, EX_US_PER_S)) * EX_US_PER_S;
    }
    return 0;
}

static int exf_date(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    int64_t utc = 0, local = 0;
    int rc = ex_local(n, c, out, &utc, &local);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    int64_t days = ex_floor_div(local, EX_US_PER_DAY);
    if (days < SL_DATE_MIN_DAYS || days > SL_DATE_MAX_DAYS) {
        return ex_fail(c, n, "the local date is outside 0001-01-01..9999-12-31");
    }
    ex_set_int(out, days);
    return 0;
}

static int exf_hour(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    int64_t utc = 0, local = 0;
    int rc = ex_local(n, c, out, &utc, &local);
    if (rc == 0) {
        ex_set_int(out, ex_floor_mod(local, EX_US_PER_DAY) / EX_US_PER_HOUR);
    }
    return rc < 0 ? -1 : 0;
}

static int exf_day_of_week(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    int64_t utc = 0, local = 0;
    int rc = ex_local(n, c, out, &utc, &local);
    if (rc == 0) {
        /* 1970-01-01 was a Thursday (4) */
        ex_set_int(out, (ex_floor_mod(ex_floor_div(local, EX_US_PER_DAY), 7) + 3) % 7 + 1);
    }
    return rc < 0 ? -1 : 0;
}

static const struct {
    const char *name;
    int64_t us;
} ex_units[] = {{"minute", EX_US_PER_MIN}, {"hour", EX_US_PER_HOUR}, {"day", EX_US_PER_DAY}};

static int exf_date_trunc(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    int64_t utc = 0, local = 0;
    int rc = ex_local(n, c, out, &utc, &local);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    int64_t r = sl_tz_trunc_us(n->u.tz, utc, ex_units[n->cmp].us);
    if (r < SL_TIMESTAMP_MIN_US || r > SL_TIMESTAMP_MAX_US) {
        return ex_fail(c, n, "the result is outside 0001-01-01..9999-12-31");
    }
    out->is_null = false;
    out->u.i = r;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The function table: name, arity, and a checker that types the arguments  */
/* and picks the implementation.                                            */

/* Checks that argument i has type want (a null literal takes it; an int64
 * becomes a double where a double is wanted). */
static bool ex_arg(ex_parser_t *p, ex_node_t *n, size_t i, int want, const char *name)
{
    ex_node_t *a = n->args[i];
    if (ex_is_null_lit(a)) {
        a->type = (uint8_t)want;
    }
    if (a->type == want) {
        return true;
    }
    if (want == SL_TYPE_DOUBLE && a->type == SL_TYPE_INT64) {
        return (n->args[i] = ex_to_double(p, a)) != NULL;
    }
    const char *hint = "";
    if (want == SL_TYPE_STRING) {
        hint = " (convert with string())";
    } else if (want == SL_TYPE_INT64 && (a->type == SL_TYPE_STRING || a->type == SL_TYPE_DOUBLE)) {
        hint = " (convert with int())";
    } else if (want == SL_TYPE_TIMESTAMP && a->type == SL_TYPE_INT64) {
        hint = " (convert with timestamp_ms() or timestamp_s())";
    } else if (want == SL_TYPE_BOOL) {
        hint = " (compare it, as in x != 0)";
    }
    ex_err(p, a->start, "%s(): argument %zu must be %s, got %s%s", name, i + 1, ex_type_name(want),
           ex_type_name(a->type), hint);
    return false;
}

/* The common case: every argument has the type the table entry's check
 * names, and the result has a fixed type. */
#define EX_SIG(fname, result, ...)                                                                 \
    static ex_node_t *exc_##fname(ex_parser_t *p, ex_node_t *n, const char *name)                  \
    {                                                                                              \
        static const int want[] = {__VA_ARGS__};                                                   \
        for (size_t i = 0; i < n->nargs; i++) {                                                    \
            if (!ex_arg(p, n, i, want[i], name)) {                                                 \
                return NULL;                                                                       \
            }                                                                                      \
        }                                                                                          \
        n->type = (result);                                                                        \
        return n;                                                                                  \
    }

EX_SIG(s_s, SL_TYPE_STRING, SL_TYPE_STRING)
EX_SIG(i_s, SL_TYPE_INT64, SL_TYPE_STRING)
EX_SIG(s_sii, SL_TYPE_STRING, SL_TYPE_STRING, SL_TYPE_INT64, SL_TYPE_INT64)
EX_SIG(b_ss, SL_TYPE_BOOL, SL_TYPE_STRING, SL_TYPE_STRING)
EX_SIG(t_i, SL_TYPE_TIMESTAMP, SL_TYPE_INT64)
EX_SIG(i_t, SL_TYPE_INT64, SL_TYPE_TIMESTAMP)

/* A zone argument: a string literal, loaded now (once per expression). */
static ex_node_t *ex_zone(ex_parser_t *p, ex_node_t *n, size_t i, const char *name)
{
    ex_node_t *a = n->args[i];
    if (!ex_is_const(a) || a->type != SL_TYPE_STRING || a->u.lit.is_null) {
        return ex_err(p, a->start,
                      "%s(): the time zone must be a string literal such as 'Europe/Paris' or "
                      "'+02:00'",
                      name);
    }
    sl_str_t z = a->u.lit.u.s;
    char zname[128], q[64];
    if (z.len == 0 || z.len >= sizeof(zname) || memchr(z.ptr, '\0', z.len) != NULL) {
        return ex_err(p, a->start, "unknown time zone '%s'", sl_value_quote(z.ptr, z.len, q, 64));
    }
    memcpy(zname, z.ptr, z.len);
    zname[z.len] = '\0';
    for (size_t k = 0; k < p->e->n_zones; k++) {
        if (strcmp(sl_tz_name(p->e->zones[k]), zname) == 0) {
            n->u.tz = p->e->zones[k];
            return n;
        }
    }
    char err[sizeof(p->err->msg)];
    err[0] = '\0';
    sl_tz_t *tz = sl_tz_load(zname, NULL, err, sizeof(err));
    if (tz == NULL) {
        return ex_err(p, a->start, "%s", err[0] ? err : "unknown time zone");
    }
    p->e->zones = sl_xrealloc(p->e->zones, (p->e->n_zones + 1) * sizeof(sl_tz_t *));
    p->e->zones[p->e->n_zones++] = tz;
    n->u.tz = tz;
    return n;
}

/* date(ts [, zone]), hour(...), day_of_week(...) */
static ex_node_t *exc_time(ex_parser_t *p, ex_node_t *n, const char *name)
{
    if (!ex_arg(p, n, 0, SL_TYPE_TIMESTAMP, name)) {
        return NULL;
    }
    n->type = strcmp(name, "date") == 0 ? SL_TYPE_DATE : SL_TYPE_INT64;
    if (n->nargs == 2) {
        if (ex_zone(p, n, 1, name) == NULL) {
            return NULL;
        }
        n->nargs = 1;
    }
    return n;
}

static ex_node_t *exc_date_trunc(ex_parser_t *p, ex_node_t *n, const char *name)
{
    ex_node_t *u = n->args[0];
    size_t k = SL_ARRAY_LEN(ex_units);
    if (ex_is_const(u) && u->type == SL_TYPE_STRING && !u->u.lit.is_null) {
        for (k = 0; k < SL_ARRAY_LEN(ex_units); k++) {
            if (ex_word_eq(u->u.lit.u.s.ptr, u->u.lit.u.s.len, ex_units[k].name)) {
                break;
            }
        }
    }
    if (k == SL_ARRAY_LEN(ex_units)) {
        return ex_err(p, u->start, "date_trunc(): the unit must be 'minute', 'hour' or 'day'");
    }
    n->cmp = (uint8_t)k;
    if (!ex_arg(p, n, 1, SL_TYPE_TIMESTAMP, name)) {
        return NULL;
    }
    n->type = SL_TYPE_TIMESTAMP;
    if (n->nargs == 3 && ex_zone(p, n, 2, name) == NULL) {
        return NULL;
    }
    n->args[0] = n->args[1];
    n->nargs = 1;
    return n;
}

/* Arguments of any type (concat, sha1, xxh3): a null literal makes a string. */
static ex_node_t *exc_any(ex_parser_t *p, ex_node_t *n, const char *name)
{
    for (size_t i = 0; i < n->nargs; i++) {
        if (ex_is_null_lit(n->args[i])) {
            n->args[i]->type = SL_TYPE_STRING;
        }
    }
    n->type = SL_TYPE_STRING;
    if (strcmp(name, "sha1") == 0) {
        if (p->e->sha1 == NULL && (p->e->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL)) == NULL) {
            return ex_err(p, n->start, "sha1(): SHA-1 is not available from OpenSSL here");
        }
        n->u.md = p->e->sha1;
    }
    return n;
}

/* Gives every argument from `from` on one type: all the same, or int64 and
 * double mixed (double), a null literal taking the others' type, a string
 * literal parsed when the others are dates or timestamps. */
static ex_node_t *ex_unify(ex_parser_t *p, ex_node_t *n, size_t from, const char *name)
{
    int t = EX_NULLT;
    for (size_t i = from; i < n->nargs; i++) {
        int ti = n->args[i]->type;
        if (ti == EX_NULLT || (ti == SL_TYPE_STRING && ex_is_const(n->args[i]) &&
                               (t == SL_TYPE_DATE || t == SL_TYPE_TIMESTAMP))) {
            continue;
        }
        if (t == EX_NULLT ||
            (t == SL_TYPE_STRING && (ti == SL_TYPE_DATE || ti == SL_TYPE_TIMESTAMP))) {
            t = ti;
        } else if (ex_numeric(t) && ex_numeric(ti)) {
            t = t == SL_TYPE_DOUBLE || ti == SL_TYPE_DOUBLE ? SL_TYPE_DOUBLE : SL_TYPE_INT64;
        } else if (t != ti) {
            return ex_err(p, n->args[i]->start,
                          "%s(): argument %zu is %s but an earlier one is %s: the values must "
                          "have one type (convert with string(), int() or double())",
                          name, i + 1, ex_type_name(ti), ex_type_name(t));
        }
    }
    if (t == EX_NULLT) {
        return ex_err(p, n->start, "%s(): every value is null, so the result has no type", name);
    }
    for (size_t i = from; i < n->nargs; i++) {
        if ((n->args[i] = ex_time_literal(p, n->args[i], t)) == NULL || !ex_arg(p, n, i, t, name)) {
            return NULL;
        }
    }
    n->type = (uint8_t)t;
    return n;
}

static ex_node_t *exc_coalesce(ex_parser_t *p, ex_node_t *n, const char *name)
{
    return ex_unify(p, n, 0, name);
}

static ex_node_t *exc_if(ex_parser_t *p, ex_node_t *n, const char *name)
{
    if (!ex_arg(p, n, 0, SL_TYPE_BOOL, name)) {
        return NULL;
    }
    return ex_unify(p, n, 1, name);
}

static ex_node_t *exc_is_null(ex_parser_t *p, ex_node_t *n, const char *name)
{
    (void)p;
    (void)name;
    n->op = EX_IS_NULL;
    n->type = SL_TYPE_BOOL;
    return n;
}

/* An argument that must be numeric, and not a bare null. */
static bool ex_arg_number(ex_parser_t *p, ex_node_t *n, const char *name)
{
    int t = n->args[0]->type;
    if (!ex_numeric(t)) {
        ex_err(p, n->args[0]->start, "%s(): the argument must be int64 or double, got %s%s", name,
               ex_type_name(t),
               t == SL_TYPE_STRING ? " (convert with int() or double())"
               : t == EX_NULLT     ? " (a bare null has no type)"
                                   : "");
        return false;
    }
    return true;
}

/* abs, floor, ceil, round: int64 -> int64 (floor etc. are the identity),
 * double -> double. */
static ex_node_t *exc_math(ex_parser_t *p, ex_node_t *n, const char *name)
{
    static const struct {
        const char *name;
        ex_fn_t fi, fd;
    } fns[] = {{"abs", exf_abs_i, exf_abs_d},
               {"floor", NULL, exf_floor_d},
               {"ceil", NULL, exf_ceil_d},
               {"round", NULL, exf_round_d}};
    if (!ex_arg_number(p, n, name)) {
        return NULL;
    }
    size_t k = 0;
    while (strcmp(fns[k].name, name) != 0) {
        k++;
    }
    n->type = n->args[0]->type;
    n->fn = n->type == SL_TYPE_DOUBLE ? fns[k].fd : fns[k].fi;
    return n->fn != NULL ? n : n->args[0];
}

static ex_node_t *exc_int(ex_parser_t *p, ex_node_t *n, const char *name)
{
    ex_node_t *a = n->args[0];
    n->type = SL_TYPE_INT64;
    switch (a->type) {
    case EX_NULLT:
        a->type = SL_TYPE_INT64;
        return a;
    case SL_TYPE_INT64:
        return a;
    case SL_TYPE_DOUBLE:
        n->fn = exf_int_of_double;
        return n;
    case SL_TYPE_STRING:
        n->fn = exf_int_of_string;
        return n;
    case SL_TYPE_BOOL:
        n->fn = exf_int_of_bool;
        return n;
    default:
        return ex_err(p, a->start, "%s(): cannot convert %s to int64%s", name,
                      ex_type_name(a->type),
                      a->type == SL_TYPE_TIMESTAMP ? " (use epoch_ms(ts))" : "");
    }
}

static ex_node_t *exc_double(ex_parser_t *p, ex_node_t *n, const char *name)
{
    ex_node_t *a = n->args[0];
    switch (a->type) {
    case EX_NULLT:
    case SL_TYPE_INT64:
    case SL_TYPE_DOUBLE:
        return ex_to_double(p, a);
    case SL_TYPE_STRING:
        n->type = SL_TYPE_DOUBLE;
        n->fn = exf_double_of_string;
        return n;
    default:
        return ex_err(p, a->start, "%s(): cannot convert %s to double", name,
                      ex_type_name(a->type));
    }
}

static ex_node_t *exc_string(ex_parser_t *p, ex_node_t *n, const char *name)
{
    (void)p;
    (void)name;
    ex_node_t *a = n->args[0];
    if (a->type == EX_NULLT || a->type == SL_TYPE_STRING) {
        a->type = SL_TYPE_STRING;
        return a;
    }
    n->type = SL_TYPE_STRING;
    return n;
}

static const ex_func_t ex_funcs[] = {
    {"lower", 1, 1, exc_s_s, exf_lower},
    {"upper", 1, 1, exc_s_s, exf_upper},
    {"trim", 1, 1, exc_s_s, exf_trim},
    {"length", 1, 1, exc_i_s, exf_length},
    {"substr", 2, 3, exc_s_sii, exf_substr},
    {"concat", 1, EX_VARARGS, exc_any, exf_concat},
    {"coalesce", 1, EX_VARARGS, exc_coalesce, exf_coalesce},
    {"if", 3, 3, exc_if, exf_if},
    {"is_null", 1, 1, exc_is_null, NULL},
    {"starts_with", 2, 2, exc_b_ss, exf_starts_with},
    {"ends_with", 2, 2, exc_b_ss, exf_ends_with},
    {"contains", 2, 2, exc_b_ss, exf_contains},
    {"int", 1, 1, exc_int, NULL},
    {"double", 1, 1, exc_double, NULL},
    {"string", 1, 1, exc_string, exf_string},
    {"abs", 1, 1, exc_math, NULL},
    {"floor", 1, 1, exc_math, NULL},
    {"ceil", 1, 1, exc_math, NULL},
    {"round", 1, 1, exc_math, NULL},
    {"timestamp_ms", 1, 1, exc_t_i, exf_timestamp_ms},
    {"timestamp_s", 1, 1, exc_t_i, exf_timestamp_s},
    {"epoch_ms", 1, 1, exc_i_t, exf_epoch_ms},
    {"date", 1, 2, exc_time, exf_date},
    {"hour", 1, 2, exc_time, exf_hour},
    {"day_of_week", 1, 2, exc_time, exf_day_of_week},
    {"date_trunc", 2, 3, exc_date_trunc, exf_date_trunc},
    {"sha1", 1, EX_VARARGS, exc_any, exf_sha1},
    {"xxh3", 1, EX_VARARGS, exc_any, exf_xxh3},
};

const ex_func_t *ex_func_find(sl_str_t name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(ex_funcs); i++) {
        if (ex_word_eq(name.ptr, name.len, ex_funcs[i].name)) {
            return &ex_funcs[i];
        }
    }
    return NULL;
}

ex_node_t *ex_unknown_func(ex_parser_t *p, const ex_tok_t *t)
{
    ex_near_t best = {0};
    char q[48];
    sl_value_quote(t->s.ptr, t->s.len, q, sizeof(q));
    for (size_t i = 0; i < SL_ARRAY_LEN(ex_funcs); i++) {
        ex_near(&best, t->s.ptr, t->s.len, ex_funcs[i].name, strlen(ex_funcs[i].name));
    }
    if (best.name != NULL) {
        return ex_err(p, t->pos, "unknown function '%s' (did you mean %s?)", q, best.name);
    }
    return ex_err(p, t->pos, "unknown function '%s' (see docs/EXPRESSIONS.md for the list)", q);
}
