/* Expressions (docs/EXPRESSIONS.md): a lexer, a recursive-descent parser that
 * type-checks while it builds a tree of typed nodes, constant folding, and a
 * recursive evaluator over the tree. Every operator node has one concrete
 * type (ADD_I is int64 + int64, CMP_S compares strings, ...): the evaluator
 * never looks at a type, it only checks is_null. Nodes, literals, sets and
 * folded strings live in the expression's own arena; time zones and the
 * SHA-1 digest are loaded once at compile time.
 *
 * Sections: limits and types / the lexer / node building and folding / the
 * parser / function implementations / the function table / the evaluator /
 * the public API. */
#include "stages/expr.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "util/tz.h"

/* ------------------------------------------------------------------------ */
/* Limits and types                                                          */

#define EX_MAX_LEN 65536        /* bytes of expression text */
#define EX_MAX_NEST 64          /* nested parentheses, calls and prefix operators */
#define EX_MAX_DEPTH 256        /* levels of the tree (bounds the evaluator's recursion) */
#define EX_MAX_ARGS 64          /* arguments of one call */
#define EX_NULLT SL_TYPE__COUNT /* the type of a bare `null` until context types it */

#define EX_US_PER_S INT64_C(1000000)
#define EX_US_PER_MIN INT64_C(60000000)
#define EX_US_PER_HOUR INT64_C(3600000000)
#define EX_US_PER_DAY INT64_C(86400000000)

typedef enum {
    EX_CONST,
    EX_FIELD,
    EX_IS_NULL, /* neg: != null */
    EX_AND,
    EX_OR,
    EX_NOT,
    EX_NEG_I,
    EX_NEG_D,
    EX_ADD_I,
    EX_SUB_I,
    EX_MUL_I,
    EX_DIV_I,
    EX_MOD_I,
    EX_ADD_D,
    EX_SUB_D,
    EX_MUL_D,
    EX_DIV_D,
    EX_MOD_D,
    EX_CAT,   /* string + string */
    EX_I2D,   /* int64 -> double, inserted by the type checker */
    EX_CMP_I, /* int64, date, timestamp */
    EX_CMP_D,
    EX_CMP_S,
    EX_CMP_B,
    EX_IN_I, /* neg: not in; has_null: the list holds null */
    EX_IN_D,
    EX_IN_S,
    EX_IN_B,
    EX_CALL,
} ex_op_t;

typedef enum { EX_EQ, EX_NE, EX_LT, EX_LE, EX_GT, EX_GE } ex_cmp_t;

typedef struct ex_node ex_node_t;
typedef struct ex_ctx ex_ctx_t;
typedef int (*ex_fn_t)(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out);

struct ex_node {
    uint8_t op;          /* ex_op_t */
    uint8_t type;        /* sl_type_t of the result; never INT32; EX_NULLT for a bare null */
    uint8_t cmp;         /* comparisons: ex_cmp_t; date_trunc: the unit index */
    bool neg;            /* IS_NULL: `!= null`; IN: `not in` */
    bool has_null;       /* IN: the list holds null */
    uint16_t depth;      /* 1 for a leaf */
    uint32_t start, end; /* the node's bytes in the text, for messages */
    uint32_t nargs;
    ex_node_t **args;
    ex_fn_t ev; /* evaluates this node (set by ex_finish) */
    ex_fn_t fn; /* CALL: the function's implementation */
    union {
        sl_value_t lit; /* CONST */
        size_t field;   /* FIELD */
        struct {
            const void *v; /* sorted int64_t / double / sl_str_t; IN_B: unused */
            size_t n;      /* IN_B: bit 0 false is listed, bit 1 true is */
        } set;
        const sl_tz_t *tz; /* time functions; NULL is UTC */
        const EVP_MD *md;  /* sha1 */
    } u;
};

struct sl_expr {
    ex_node_t *root;
    sl_type_t type;
    sl_arena_t arena; /* nodes, literals, sets, folded strings, the text */
    const char *text; /* a copy, for run-time reasons */
    sl_tz_t **zones;  /* loaded once, shared by every node that names them */
    size_t n_zones;
    EVP_MD *sha1; /* fetched on first use by sha1() */
};

struct ex_ctx {
    const sl_expr_t *e;
    const sl_value_t *rec;
    sl_arena_t *arena;
    sl_reason_t *why;
};

static int ex_ev_bad(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out);
static ex_fn_t ex_pick(const ex_node_t *n);

static const char *ex_type_name(int t)
{
    return t == EX_NULLT ? "null" : sl_type_name((sl_type_t)t);
}

static bool ex_numeric(int t)
{
    return t == SL_TYPE_INT64 || t == SL_TYPE_DOUBLE;
}

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
/* The lexer                                                                 */

typedef enum {
    TK_EOF,
    TK_INT,
    TK_DOUBLE,
    TK_STRING,
    TK_IDENT,
    TK_QIDENT, /* `quoted field name` */
    TK_TRUE,
    TK_FALSE,
    TK_NULL,
    TK_AND, /* && and */
    TK_OR,  /* || or */
    TK_NOT, /* the word */
    TK_BANG,
    TK_IN,
    TK_LP,
    TK_RP,
    TK_COMMA,
    TK_PLUS,
    TK_MINUS,
    TK_STAR,
    TK_SLASH,
    TK_PERCENT,
    TK_EQ,
    TK_NE,
    TK_LT,
    TK_LE,
    TK_GT,
    TK_GE,
} ex_tk_t;

typedef struct {
    ex_tk_t kind;
    size_t pos, len; /* the token's bytes in the text (strings: with the quotes) */
    uint64_t mag;    /* TK_INT: the magnitude, <= 2^63 */
    double d;        /* TK_DOUBLE */
    sl_str_t s;      /* TK_STRING: decoded, in the expression's arena; identifiers: the name */
} ex_tok_t;

typedef struct {
    const char *text;
    size_t len;
    const sl_schema_t *schema;
    size_t n_fields;
    sl_expr_t *e;
    ex_tok_t tok;  /* the current token */
    ex_tok_t prev; /* the one before, for "after '+'" in messages */
    bool has_prev;
    int nest;
    bool failed;
    sl_expr_error_t *err;
} ex_parser_t;

/* Records the first error: col is pos + 1. Always returns NULL. */
SL_PRINTF(3, 4) static void *ex_err(ex_parser_t *p, size_t pos, const char *fmt, ...)
{
    if (p->failed) {
        return NULL;
    }
    p->failed = true;
    p->err->col = (int)SL_MIN(pos, p->len) + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
    va_end(ap);
    return NULL;
}

/* Writes a short description of the token for messages: 'abc' (quoted and
 * cut at 24 bytes) or "the end of the expression". */
static const char *ex_tok_desc(const ex_parser_t *p, const ex_tok_t *t, char *out, size_t cap)
{
    if (t->kind == TK_EOF) {
        snprintf(out, cap, "the end of the expression");
        return out;
    }
    char q[40];
    sl_value_quote(p->text + t->pos, t->len, q, sizeof(q));
    snprintf(out, cap, "'%s'", q);
    return out;
}

static bool ex_ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool ex_ident_char(int c)
{
    return ex_ident_start(c) || (c >= '0' && c <= '9');
}

static bool ex_word_eq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static int ex_hex(int c)
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

/* Reads the 4 hex digits of a \u escape at s (n bytes available). */
static int ex_u4(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    if (n < 4) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        int h = ex_hex((unsigned char)s[i]);
        if (h < 0) {
            return -1;
        }
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

static size_t ex_utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A quoted string starting at pos; decoded into the expression's arena. */
static int ex_lex_string(ex_parser_t *p, size_t pos, ex_tok_t *t)
{
    const char *s = p->text;
    char q = s[pos];
    size_t end = pos + 1;
    while (end < p->len && s[end] != q) {
        end += s[end] == '\\' ? 2 : 1;
    }
    if (end >= p->len) {
        ex_err(p, pos, "unterminated string: close it with %c", q);
        return -1;
    }
    /* Decoding never grows the text: \uXXXX (6 bytes) gives at most 3,
     * a surrogate pair (12) gives 4. */
    char *o = sl_arena_alloc(&p->e->arena, end - pos);
    size_t n = 0;
    for (size_t i = pos + 1; i < end; i++) {
        if (s[i] != '\\') {
            o[n++] = s[i];
            continue;
        }
        size_t esc = i++;
        unsigned cp, lo;
        switch (s[i]) {
        case 'n':
            o[n++] = '\n';
            break;
        case 't':
            o[n++] = '\t';
            break;
        case 'r':
            o[n++] = '\r';
            break;
        case '\\':
        case '\'':
        case '"':
            o[n++] = s[i];
            break;
        case 'u':
            if (ex_u4(s + i + 1, end - i - 1, &cp) != 0) {
                ex_err(p, esc, "bad escape in string: \\u takes 4 hex digits, as in \\u00e9");
                return -1;
            }
            i += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                ex_err(p, esc, "bad escape in string: \\u%04X is a lone low surrogate", cp);
                return -1;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 2 >= end || s[i + 1] != '\\' || s[i + 2] != 'u' ||
                    ex_u4(s + i + 3, end - i - 3, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    ex_err(p, esc,
                           "bad escape in string: \\u%04X must be followed by a low surrogate "
                           "\\uDC00-\\uDFFF",
                           cp);
                    return -1;
                }
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            n += ex_utf8_put(o + n, cp);
            break;
        default:
            ex_err(p, esc,
                   "unknown escape '\\%c' in string: use \\\\ for a backslash (escapes: \\n \\t "
                   "\\r \\\\ \\' \\\" \\uXXXX)",
                   isprint((unsigned char)s[i]) ? s[i] : '?');
            return -1;
        }
    }
    t->kind = TK_STRING;
    t->len = end + 1 - pos;
    t->s.ptr = o;
    t->s.len = n;
    return 0;
}

static int ex_lex_number(ex_parser_t *p, size_t pos, ex_tok_t *t)
{
    const char *s = p->text;
    size_t i = pos;
    bool is_double = false, bad = false;
    while (i < p->len && isdigit((unsigned char)s[i])) {
        i++;
    }
    if (i < p->len && s[i] == '.') {
        is_double = true;
        size_t frac = ++i;
        while (i < p->len && isdigit((unsigned char)s[i])) {
            i++;
        }
        bad |= i == frac;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        is_double = true;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        size_t exp = i;
        while (i < p->len && isdigit((unsigned char)s[i])) {
            i++;
        }
        bad |= i == exp;
    }
    if (i < p->len && (ex_ident_char((unsigned char)s[i]) || s[i] == '.')) {
        bad = true;
        while (i < p->len && (ex_ident_char((unsigned char)s[i]) || s[i] == '.')) {
            i++;
        }
    }
    t->len = i - pos;
    if (bad) {
        char q[40];
        ex_err(p, pos, "malformed number '%s': write integers as 42 and decimals as 4.2 or 4.2e-3",
               sl_value_quote(s + pos, t->len, q, sizeof(q)));
        return -1;
    }
    if (!is_double) {
        uint64_t v = 0;
        for (size_t k = pos; k < i; k++) {
            unsigned dgt = (unsigned)(s[k] - '0');
            if (v > (UINT64_C(9223372036854775808) - dgt) / 10) {
                char q[40];
                ex_err(p, pos,
                       "integer %s is out of the int64 range: write it as a decimal (%s.0) for "
                       "a double",
                       sl_value_quote(s + pos, t->len, q, sizeof(q)), q);
                return -1;
            }
            v = v * 10 + dgt;
        }
        t->kind = TK_INT;
        t->mag = v;
        return 0;
    }
    char stack[128], *copy = t->len < sizeof(stack) ? stack : sl_xmalloc(t->len + 1);
    memcpy(copy, s + pos, t->len);
    copy[t->len] = '\0';
    t->d = strtod(copy, NULL);
    if (copy != stack) {
        free(copy);
    }
    if (isinf(t->d)) {
        char q[40];
        ex_err(p, pos, "number %s is too large for a double",
               sl_value_quote(s + pos, t->len, q, sizeof(q)));
        return -1;
    }
    t->kind = TK_DOUBLE;
    return 0;
}

/* Reads the token starting at or after pos into *t. Returns 0, or -1 with
 * the error recorded. */
static int ex_lex(ex_parser_t *p, size_t pos, ex_tok_t *t)
{
    const char *s = p->text;
    while (pos < p->len && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r' ||
                            s[pos] == '\f' || s[pos] == '\v')) {
        pos++;
    }
    memset(t, 0, sizeof(*t));
    t->pos = pos;
    if (pos >= p->len) {
        t->kind = TK_EOF;
        return 0;
    }
    unsigned char c = (unsigned char)s[pos];
    unsigned char c2 = pos + 1 < p->len ? (unsigned char)s[pos + 1] : 0;
    if (ex_ident_start(c)) {
        size_t i = pos + 1;
        while (i < p->len && ex_ident_char((unsigned char)s[i])) {
            i++;
        }
        static const struct {
            const char *word;
            ex_tk_t kind;
        } words[] = {{"true", TK_TRUE}, {"false", TK_FALSE}, {"null", TK_NULL}, {"and", TK_AND},
                     {"or", TK_OR},     {"not", TK_NOT},     {"in", TK_IN}};
        t->len = i - pos;
        t->kind = TK_IDENT;
        t->s.ptr = s + pos;
        t->s.len = t->len;
        for (size_t w = 0; w < SL_ARRAY_LEN(words); w++) {
            if (ex_word_eq(s + pos, t->len, words[w].word)) {
                t->kind = words[w].kind;
            }
        }
        return 0;
    }
    if (isdigit(c) || (c == '.' && isdigit(c2))) {
        return ex_lex_number(p, pos, t);
    }
    if (c == '\'' || c == '"') {
        return ex_lex_string(p, pos, t);
    }
    if (c == '`') {
        const char *close = memchr(s + pos + 1, '`', p->len - pos - 1);
        if (close == NULL) {
            ex_err(p, pos, "unterminated quoted field name: close it with `");
            return -1;
        }
        t->kind = TK_QIDENT;
        t->len = (size_t)(close - (s + pos)) + 1;
        t->s.ptr = s + pos + 1;
        t->s.len = t->len - 2;
        if (t->s.len == 0) {
            ex_err(p, pos, "empty quoted field name ``");
            return -1;
        }
        return 0;
    }
    static const struct {
        char a, b;
        ex_tk_t kind;
    } ops[] = {{'&', '&', TK_AND},  {'|', '|', TK_OR},  {'=', '=', TK_EQ}, {'!', '=', TK_NE},
               {'<', '=', TK_LE},   {'>', '=', TK_GE},  {'<', 0, TK_LT},   {'>', 0, TK_GT},
               {'!', 0, TK_BANG},   {'(', 0, TK_LP},    {')', 0, TK_RP},   {',', 0, TK_COMMA},
               {'+', 0, TK_PLUS},   {'-', 0, TK_MINUS}, {'*', 0, TK_STAR}, {'/', 0, TK_SLASH},
               {'%', 0, TK_PERCENT}};
    for (size_t k = 0; k < SL_ARRAY_LEN(ops); k++) {
        if (ops[k].a == (char)c && (ops[k].b == 0 || ops[k].b == (char)c2)) {
            t->kind = ops[k].kind;
            t->len = ops[k].b ? 2 : 1;
            return 0;
        }
    }
    if (c == '=') {
        ex_err(p, pos, "unexpected '=': compare with == (a single = is not an operator)");
    } else if (c == '&') {
        ex_err(p, pos, "unexpected '&': write && (or and) for a logical and");
    } else if (c == '|') {
        ex_err(p, pos, "unexpected '|': write || (or or) for a logical or");
    } else if (isprint(c)) {
        ex_err(p, pos, "unexpected character '%c'", c);
    } else {
        ex_err(p, pos, "unexpected byte 0x%02x (identifiers are ASCII; quote text as 'text')", c);
    }
    return -1;
}

static int ex_next(ex_parser_t *p)
{
    p->prev = p->tok;
    p->has_prev = true;
    return ex_lex(p, p->tok.pos + p->tok.len, &p->tok);
}

/* The token after the current one, without moving. */
static int ex_peek(ex_parser_t *p, ex_tok_t *t)
{
    return ex_lex(p, p->tok.pos + p->tok.len, t);
}

/* ------------------------------------------------------------------------ */
/* Node building and constant folding                                        */

static ex_node_t *ex_node(ex_parser_t *p, ex_op_t op, int type, size_t start, size_t end,
                          size_t nargs)
{
    ex_node_t *n = sl_arena_alloc(&p->e->arena, sizeof(*n));
    memset(n, 0, sizeof(*n));
    n->op = (uint8_t)op;
    n->type = (uint8_t)type;
    n->start = (uint32_t)start;
    n->end = (uint32_t)end;
    n->nargs = (uint32_t)nargs;
    n->args = nargs ? sl_arena_alloc(&p->e->arena, nargs * sizeof(ex_node_t *)) : NULL;
    n->depth = 1;
    n->ev = ex_ev_bad;
    return n;
}

static ex_node_t *ex_const(ex_parser_t *p, int type, size_t start, size_t end)
{
    return ex_node(p, EX_CONST, type, start, end, 0);
}

static bool ex_is_const(const ex_node_t *n)
{
    return n->op == EX_CONST;
}

static bool ex_is_null_lit(const ex_node_t *n)
{
    return n->op == EX_CONST && n->type == EX_NULLT;
}

/* Finishes a node whose arguments are set: checks the depth limit, and
 * replaces a node whose arguments are all constants by its value (an error
 * then is a compile error: `1 / 0`, `9223372036854775807 + 1`). */
static ex_node_t *ex_finish(ex_parser_t *p, ex_node_t *n)
{
    bool all_const = n->op != EX_CONST && n->op != EX_FIELD;
    unsigned depth = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        depth = SL_MAX(depth, n->args[i]->depth);
        all_const &= ex_is_const(n->args[i]);
    }
    if (depth + 1 > EX_MAX_DEPTH) {
        return ex_err(p, n->start,
                      "the expression nests more than %d levels deep: split it, or use "
                      "in (...) instead of a long chain of ||",
                      EX_MAX_DEPTH);
    }
    n->depth = (uint16_t)(depth + 1);
    if (n->op != EX_CONST && n->op != EX_FIELD) {
        n->ev = ex_pick(n);
    }
    if (!all_const) {
        return n;
    }
    sl_reason_t why;
    sl_value_t v;
    ex_ctx_t c = {p->e, NULL, &p->e->arena, &why};
    if (n->ev(n, &c, &v) != 0) {
        return ex_err(p, n->start, "%s", why.text);
    }
    n->op = EX_CONST;
    n->nargs = 0;
    n->depth = 1;
    n->u.lit = v;
    return n;
}

static ex_node_t *ex_unary(ex_parser_t *p, ex_op_t op, int type, ex_node_t *a)
{
    ex_node_t *n = ex_node(p, op, type, a->start, a->end, 1);
    n->args[0] = a;
    return n;
}

static ex_node_t *ex_binary(ex_parser_t *p, ex_op_t op, int type, ex_node_t *a, ex_node_t *b)
{
    ex_node_t *n = ex_node(p, op, type, a->start, b->end, 2);
    n->args[0] = a;
    n->args[1] = b;
    return n;
}

/* An int64 operand as a double (a null literal just takes the type). */
static ex_node_t *ex_to_double(ex_parser_t *p, ex_node_t *a)
{
    if (a->type == SL_TYPE_DOUBLE) {
        return a;
    }
    if (ex_is_null_lit(a)) {
        a->type = SL_TYPE_DOUBLE;
        return a;
    }
    return ex_finish(p, ex_unary(p, EX_I2D, SL_TYPE_DOUBLE, a));
}

/* A string constant compared with (or used as) a date or timestamp is
 * parsed now. Other nodes are returned unchanged. */
static ex_node_t *ex_time_literal(ex_parser_t *p, ex_node_t *n, int want)
{
    if ((want != SL_TYPE_DATE && want != SL_TYPE_TIMESTAMP) || n->type != SL_TYPE_STRING ||
        !ex_is_const(n) || n->u.lit.is_null) {
        return n;
    }
    int64_t v;
    char q[64];
    int rc = want == SL_TYPE_DATE ? sl_date_parse(n->u.lit.u.s.ptr, n->u.lit.u.s.len, &v)
                                  : sl_timestamp_parse(n->u.lit.u.s.ptr, n->u.lit.u.s.len, &v);
    if (rc != 0) {
        sl_value_quote(n->u.lit.u.s.ptr, n->u.lit.u.s.len, q, sizeof(q));
        if (want == SL_TYPE_DATE) {
            return ex_err(p, n->start, "'%s' is not a date: write it as 'YYYY-MM-DD'", q);
        }
        return ex_err(p, n->start,
                      "'%s' is not a timestamp: write it as '2024-03-31T02:30:00Z' (or with an "
                      "offset such as +02:00)",
                      q);
    }
    n->type = (uint8_t)want;
    n->u.lit.u.i = v;
    return n;
}

/* Levenshtein distance, ASCII case ignored; names over 64 bytes are "far". */
static size_t ex_distance(const char *a, size_t na, const char *b, size_t nb)
{
    size_t row[65], prev[65];
    if (na > 64 || nb > 64) {
        return SIZE_MAX;
    }
    for (size_t j = 0; j <= nb; j++) {
        prev[j] = j;
    }
    for (size_t i = 1; i <= na; i++) {
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            row[j] = SL_MIN(SL_MIN(prev[j] + 1, row[j - 1] + 1), prev[j - 1] + cost);
        }
        memcpy(prev, row, (nb + 1) * sizeof(size_t));
    }
    return prev[nb];
}

/* Keeps the closest of the candidate names seen so far, if close enough. */
typedef struct {
    const char *name;
    size_t len, dist;
} ex_near_t;

static void ex_near(ex_near_t *best, const char *want, size_t nwant, const char *name, size_t len)
{
    size_t d = ex_distance(want, nwant, name, len);
    size_t limit = SL_MAX((size_t)1, (nwant + 2) / 3);
    if (d <= limit && (best->name == NULL || d < best->dist)) {
        best->name = name;
        best->len = len;
        best->dist = d;
    }
}

/* ------------------------------------------------------------------------ */
/* The parser                                                                */

static ex_node_t *ex_parse_or(ex_parser_t *p);
static ex_node_t *ex_parse_call(ex_parser_t *p);

/* Appends to buf (cap bytes) at *n, never past the end. */
SL_PRINTF(4, 5) static void ex_cat(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
    if (*n + 1 >= cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (w > 0) {
        *n = SL_MIN(*n + (size_t)w, cap - 1);
    }
}

static ex_node_t *ex_field(ex_parser_t *p, const ex_tok_t *t)
{
    const sl_schema_t *sc = p->schema;
    int f = sl_schema_find(sc, t->s.ptr, t->s.len);
    char q[48];
    sl_value_quote(t->s.ptr, t->s.len, q, sizeof(q));
    if (f >= 0 && (size_t)f < p->n_fields) {
        sl_type_t ft = sc->fields[f].type;
        ex_node_t *n = ex_node(p, EX_FIELD, ft == SL_TYPE_INT32 ? SL_TYPE_INT64 : ft, t->pos,
                               t->pos + t->len, 0);
        n->u.field = (size_t)f;
        return n;
    }
    if (f >= 0) {
        return ex_err(p, t->pos,
                      "field '%s' is defined after this expression and is not visible here: "
                      "only fields defined before it can be used",
                      q);
    }
    /* The message: what, a suggestion, then as many visible names as fit. */
    ex_near_t best = {0};
    for (size_t i = 0; i < p->n_fields; i++) {
        const sl_field_t *fd = &sc->fields[i];
        if (!fd->hidden) {
            ex_near(&best, t->s.ptr, t->s.len, fd->name, fd->name_len);
        }
    }
    char msg[sizeof(p->err->msg)];
    size_t n = 0, shown = 0;
    ex_cat(msg, sizeof(msg), &n, "unknown field '%s'", q);
    if (best.name != NULL) {
        ex_cat(msg, sizeof(msg), &n, " (did you mean %.*s?)", (int)best.len, best.name);
    }
    for (size_t i = 0; i < p->n_fields; i++) {
        const sl_field_t *fd = &sc->fields[i];
        const char *sep = shown ? ", " : "; known fields: ";
        if (fd->hidden) {
            continue;
        }
        if (n + strlen(sep) + fd->name_len + 5 >= sizeof(msg)) {
            ex_cat(msg, sizeof(msg), &n, "%s...", sep);
            break;
        }
        ex_cat(msg, sizeof(msg), &n, "%s%s", sep, fd->name);
        shown++;
    }
    if (shown == 0 && n + 1 < sizeof(msg) && msg[n - 1] != '.') {
        ex_cat(msg, sizeof(msg), &n, "; no fields are visible here");
    }
    return ex_err(p, t->pos, "%s", msg);
}

static ex_node_t *ex_parse_primary(ex_parser_t *p)
{
    ex_tok_t t = p->tok;
    ex_node_t *n = NULL;
    char d1[48], d2[48];
    switch (t.kind) {
    case TK_INT:
        if (t.mag > INT64_MAX) {
            return ex_err(p, t.pos,
                          "integer %.*s is out of the int64 range: write it as a decimal "
                          "(%.*s.0) for a double",
                          (int)t.len, p->text + t.pos, (int)t.len, p->text + t.pos);
        }
        n = ex_const(p, SL_TYPE_INT64, t.pos, t.pos + t.len);
        n->u.lit.u.i = (int64_t)t.mag;
        break;
    case TK_DOUBLE:
        n = ex_const(p, SL_TYPE_DOUBLE, t.pos, t.pos + t.len);
        n->u.lit.u.d = t.d;
        break;
    case TK_STRING:
        n = ex_const(p, SL_TYPE_STRING, t.pos, t.pos + t.len);
        n->u.lit.u.s = t.s;
        break;
    case TK_TRUE:
    case TK_FALSE:
        n = ex_const(p, SL_TYPE_BOOL, t.pos, t.pos + t.len);
        n->u.lit.u.b = t.kind == TK_TRUE;
        break;
    case TK_NULL:
        n = ex_const(p, EX_NULLT, t.pos, t.pos + t.len);
        n->u.lit.is_null = true;
        break;
    case TK_QIDENT:
        n = ex_field(p, &t);
        break;
    case TK_IDENT: {
        ex_tok_t after;
        if (ex_peek(p, &after) != 0) {
            return NULL;
        }
        if (after.kind == TK_LP) {
            return ex_parse_call(p);
        }
        n = ex_field(p, &t);
        break;
    }
    case TK_LP: {
        if (++p->nest > EX_MAX_NEST) {
            return ex_err(p, t.pos, "more than %d nested parentheses, calls or prefix operators",
                          EX_MAX_NEST);
        }
        if (ex_next(p) != 0 || (n = ex_parse_or(p)) == NULL) {
            return NULL;
        }
        if (p->tok.kind != TK_RP) {
            return ex_err(p, p->tok.pos, "expected ')' to close the '(' at column %zu, found %s",
                          t.pos + 1, ex_tok_desc(p, &p->tok, d1, sizeof(d1)));
        }
        p->nest--;
        n->start = (uint32_t)t.pos; /* messages quote the parentheses too */
        n->end = (uint32_t)(p->tok.pos + 1);
        break;
    }
    case TK_BANG:
    case TK_NOT:
        return ex_err(p, t.pos,
                      "'%.*s' binds looser than comparisons and arithmetic: put it in "
                      "parentheses here, as in a == (!b)",
                      (int)t.len, p->text + t.pos);
    default:
        if (!p->has_prev) {
            if (t.kind == TK_EOF) {
                return ex_err(p, t.pos, "the expression is empty");
            }
            return ex_err(p, t.pos, "expected a value, a field or '(' at the start, found %s",
                          ex_tok_desc(p, &t, d1, sizeof(d1)));
        }
        if (t.kind == TK_EOF) {
            return ex_err(p, t.pos, "expected a value after %s, but the expression ends",
                          ex_tok_desc(p, &p->prev, d2, sizeof(d2)));
        }
        return ex_err(p, t.pos, "expected a value, a field or '(' after %s, found %s",
                      ex_tok_desc(p, &p->prev, d2, sizeof(d2)), ex_tok_desc(p, &t, d1, sizeof(d1)));
    }
    if (n == NULL || ex_next(p) != 0) {
        return NULL;
    }
    return n;
}

static ex_node_t *ex_parse_unary(ex_parser_t *p)
{
    if (p->tok.kind != TK_MINUS) {
        return ex_parse_primary(p);
    }
    size_t pos = p->tok.pos;
    if (++p->nest > EX_MAX_NEST) {
        return ex_err(p, pos, "more than %d nested parentheses, calls or prefix operators",
                      EX_MAX_NEST);
    }
    if (ex_next(p) != 0) {
        return NULL;
    }
    ex_node_t *a;
    if (p->tok.kind == TK_INT && p->tok.mag == UINT64_C(9223372036854775808)) {
        /* -9223372036854775808: the one literal whose magnitude is not an int64 */
        a = ex_const(p, SL_TYPE_INT64, pos, p->tok.pos + p->tok.len);
        a->u.lit.u.i = INT64_MIN;
        p->nest--;
        return ex_next(p) == 0 ? a : NULL;
    }
    if ((a = ex_parse_unary(p)) == NULL) {
        return NULL;
    }
    p->nest--;
    if (a->type != SL_TYPE_INT64 && a->type != SL_TYPE_DOUBLE) {
        return ex_err(p, pos, "cannot negate %s: '-' needs a number", ex_type_name(a->type));
    }
    ex_node_t *n = ex_unary(p, a->type == SL_TYPE_INT64 ? EX_NEG_I : EX_NEG_D, a->type, a);
    n->start = (uint32_t)pos;
    return ex_finish(p, n);
}

static const char *ex_arith_hint(int op, int ta, int tb)
{
    if (ta == SL_TYPE_BOOL || tb == SL_TYPE_BOOL) {
        return ": convert the bool with if(b, 1, 0)";
    }
    if (ta == SL_TYPE_STRING || tb == SL_TYPE_STRING) {
        return op == TK_PLUS ? ": join text with concat(a, b), or convert the string with int() "
                               "or double()"
                             : ": convert the string with int() or double()";
    }
    if (ta == SL_TYPE_TIMESTAMP || tb == SL_TYPE_TIMESTAMP) {
        return ": convert with epoch_ms() and back with timestamp_ms()";
    }
    if (ta == SL_TYPE_DATE || tb == SL_TYPE_DATE) {
        return ": dates support comparisons only";
    }
    return "";
}

static ex_node_t *ex_arith(ex_parser_t *p, const ex_tok_t *op, ex_node_t *a, ex_node_t *b)
{
    const char *sym = op->kind == TK_PLUS    ? "+"
                      : op->kind == TK_MINUS ? "-"
                      : op->kind == TK_STAR  ? "*"
                      : op->kind == TK_SLASH ? "/"
                                             : "%";
    if (ex_is_null_lit(a) && ex_is_null_lit(b)) {
        return ex_err(p, op->pos, "null %s null has no type: use a field or a typed value", sym);
    }
    if (ex_is_null_lit(a)) {
        a->type = b->type;
    }
    if (ex_is_null_lit(b)) {
        b->type = a->type;
    }
    int ta = a->type, tb = b->type;
    if (ta == SL_TYPE_STRING && tb == SL_TYPE_STRING && op->kind == TK_PLUS) {
        return ex_finish(p, ex_binary(p, EX_CAT, SL_TYPE_STRING, a, b));
    }
    if (!ex_numeric(ta) || !ex_numeric(tb)) {
        return ex_err(p, op->pos, "cannot apply '%s' to %s and %s%s", sym, ex_type_name(ta),
                      ex_type_name(tb), ex_arith_hint(op->kind, ta, tb));
    }
    static const ex_op_t ops_i[] = {EX_ADD_I, EX_SUB_I, EX_MUL_I, EX_DIV_I, EX_MOD_I};
    static const ex_op_t ops_d[] = {EX_ADD_D, EX_SUB_D, EX_MUL_D, EX_DIV_D, EX_MOD_D};
    size_t k = op->kind == TK_PLUS    ? 0
               : op->kind == TK_MINUS ? 1
               : op->kind == TK_STAR  ? 2
               : op->kind == TK_SLASH ? 3
                                      : 4;
    if (ta == SL_TYPE_INT64 && tb == SL_TYPE_INT64) {
        return ex_finish(p, ex_binary(p, ops_i[k], SL_TYPE_INT64, a, b));
    }
    if ((a = ex_to_double(p, a)) == NULL || (b = ex_to_double(p, b)) == NULL) {
        return NULL;
    }
    return ex_finish(p, ex_binary(p, ops_d[k], SL_TYPE_DOUBLE, a, b));
}

static ex_node_t *ex_parse_mul(ex_parser_t *p)
{
    ex_node_t *a = ex_parse_unary(p);
    while (a != NULL &&
           (p->tok.kind == TK_STAR || p->tok.kind == TK_SLASH || p->tok.kind == TK_PERCENT)) {
        ex_tok_t op = p->tok;
        ex_node_t *b;
        if (ex_next(p) != 0 || (b = ex_parse_unary(p)) == NULL) {
            return NULL;
        }
        a = ex_arith(p, &op, a, b);
    }
    return a;
}

static ex_node_t *ex_parse_add(ex_parser_t *p)
{
    ex_node_t *a = ex_parse_mul(p);
    while (a != NULL && (p->tok.kind == TK_PLUS || p->tok.kind == TK_MINUS)) {
        ex_tok_t op = p->tok;
        ex_node_t *b;
        if (ex_next(p) != 0 || (b = ex_parse_mul(p)) == NULL) {
            return NULL;
        }
        a = ex_arith(p, &op, a, b);
    }
    return a;
}

static const char *ex_cmp_hint(int ta, int tb)
{
    int other = ta == SL_TYPE_STRING ? tb : ta;
    if ((ta == SL_TYPE_STRING || tb == SL_TYPE_STRING) && ex_numeric(other)) {
        return other == SL_TYPE_DOUBLE ? ": quote the number or convert with double()"
                                       : ": quote the number or convert with int()";
    }
    if ((ta == SL_TYPE_DATE && tb == SL_TYPE_TIMESTAMP) ||
        (ta == SL_TYPE_TIMESTAMP && tb == SL_TYPE_DATE)) {
        return ": convert the timestamp with date(ts)";
    }
    if ((ta == SL_TYPE_STRING || tb == SL_TYPE_STRING) &&
        (other == SL_TYPE_DATE || other == SL_TYPE_TIMESTAMP)) {
        return ": only a string literal such as '2024-01-31' is converted";
    }
    if (ta == SL_TYPE_BOOL || tb == SL_TYPE_BOOL) {
        return ": compare the bool with true or false";
    }
    if (ta == SL_TYPE_DATE || ta == SL_TYPE_TIMESTAMP || tb == SL_TYPE_DATE ||
        tb == SL_TYPE_TIMESTAMP) {
        return ": for a time as a number use epoch_ms(ts)";
    }
    return "";
}

/* Types a comparison of a and b (null literals already typed): sets *op to
 * the comparison node's op, converting operands as needed. */
static int ex_cmp_types(ex_parser_t *p, size_t col_pos, ex_node_t **a, ex_node_t **b, ex_op_t *op,
                        const char *what)
{
    if ((*a = ex_time_literal(p, *a, (*b)->type)) == NULL ||
        (*b = ex_time_literal(p, *b, (*a)->type)) == NULL) {
        return -1;
    }
    int ta = (*a)->type, tb = (*b)->type;
    if (ex_numeric(ta) && ex_numeric(tb)) {
        if (ta == SL_TYPE_INT64 && tb == SL_TYPE_INT64) {
            *op = EX_CMP_I;
            return 0;
        }
        if ((*a = ex_to_double(p, *a)) == NULL || (*b = ex_to_double(p, *b)) == NULL) {
            return -1;
        }
        *op = EX_CMP_D;
        return 0;
    }
    if (ta == tb) {
        *op = ta == SL_TYPE_STRING ? EX_CMP_S : ta == SL_TYPE_BOOL ? EX_CMP_B : EX_CMP_I;
        return 0;
    }
    ex_err(p, col_pos, "cannot %s %s with %s%s", what, ex_type_name(ta), ex_type_name(tb),
           ex_cmp_hint(ta, tb));
    return -1;
}

static ex_node_t *ex_compare(ex_parser_t *p, const ex_tok_t *tok, ex_node_t *a, ex_node_t *b)
{
    ex_cmp_t cmp = tok->kind == TK_EQ   ? EX_EQ
                   : tok->kind == TK_NE ? EX_NE
                   : tok->kind == TK_LT ? EX_LT
                   : tok->kind == TK_LE ? EX_LE
                   : tok->kind == TK_GT ? EX_GT
                                        : EX_GE;
    if ((cmp == EX_EQ || cmp == EX_NE) && (ex_is_null_lit(a) || ex_is_null_lit(b))) {
        ex_node_t *x = ex_is_null_lit(a) ? b : a;
        ex_node_t *n = ex_unary(p, EX_IS_NULL, SL_TYPE_BOOL, x);
        n->neg = cmp == EX_NE;
        n->start = a->start;
        n->end = b->end;
        return ex_finish(p, n);
    }
    if (ex_is_null_lit(a) && ex_is_null_lit(b)) {
        ex_node_t *n = ex_const(p, SL_TYPE_BOOL, a->start, b->end);
        n->u.lit.is_null = true;
        return n;
    }
    if (ex_is_null_lit(a)) {
        a->type = b->type;
    }
    if (ex_is_null_lit(b)) {
        b->type = a->type;
    }
    ex_op_t op;
    if (ex_cmp_types(p, tok->pos, &a, &b, &op, "compare") != 0) {
        return NULL;
    }
    if (op == EX_CMP_B && cmp != EX_EQ && cmp != EX_NE) {
        return ex_err(p, tok->pos, "bools can only be compared with == and !=");
    }
    ex_node_t *n = ex_binary(p, op, SL_TYPE_BOOL, a, b);
    n->cmp = (uint8_t)cmp;
    return ex_finish(p, n);
}

static int ex_cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int ex_cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static int ex_str_cmp(sl_str_t a, sl_str_t b)
{
    int r = memcmp(a.ptr, b.ptr, SL_MIN(a.len, b.len));
    if (r != 0 || a.len == b.len) {
        return r;
    }
    return a.len < b.len ? -1 : 1;
}

static int ex_cmp_str(const void *x, const void *y)
{
    return ex_str_cmp(*(const sl_str_t *)x, *(const sl_str_t *)y);
}

/* Sorts and removes duplicates; returns the new count. */
static size_t ex_set_sort(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    size_t out = 0;
    qsort(v, n, size, cmp);
    for (size_t i = 0; i < n; i++) {
        char *cur = (char *)v + i * size;
        if (out == 0 || cmp((char *)v + (out - 1) * size, cur) != 0) {
            memmove((char *)v + out * size, cur, size);
            out++;
        }
    }
    return out;
}

/* Builds the set of an `in` node from its constant list. */
static ex_node_t *ex_in_set(ex_parser_t *p, ex_node_t *lhs, ex_node_t **vals, size_t nv, bool neg,
                            size_t end)
{
    int t = lhs->type;
    bool dbl = false;
    if (t == EX_NULLT) {
        ex_node_t *n = ex_const(p, SL_TYPE_BOOL, lhs->start, end);
        n->u.lit.is_null = true;
        return n;
    }
    /* Type every value against the left side, like ==. */
    for (size_t i = 0; i < nv; i++) {
        ex_op_t op;
        if (ex_is_null_lit(vals[i])) {
            continue;
        }
        ex_node_t *l = lhs;
        if (ex_cmp_types(p, vals[i]->start, &l, &vals[i], &op, "compare") != 0) {
            return NULL;
        }
        dbl |= op == EX_CMP_D;
    }
    if (dbl && (lhs = ex_to_double(p, lhs)) == NULL) {
        return NULL;
    }
    ex_op_t op = t == SL_TYPE_STRING          ? EX_IN_S
                 : t == SL_TYPE_BOOL          ? EX_IN_B
                 : dbl || t == SL_TYPE_DOUBLE ? EX_IN_D
                                              : EX_IN_I;
    ex_node_t *n = ex_unary(p, op, SL_TYPE_BOOL, lhs);
    n->end = (uint32_t)end;
    n->neg = neg;
    size_t size = op == EX_IN_S ? sizeof(sl_str_t) : sizeof(int64_t);
    char *set = sl_arena_alloc(&p->e->arena, nv * size);
    size_t k = 0;
    for (size_t i = 0; i < nv; i++) {
        const sl_value_t *v = &vals[i]->u.lit;
        if (v->is_null) {
            n->has_null = true;
        } else if (op == EX_IN_B) {
            n->u.set.n |= v->u.b ? 2u : 1u;
        } else if (op == EX_IN_S) {
            memcpy(set + k++ * size, &v->u.s, size);
        } else if (op == EX_IN_D) {
            double d = vals[i]->type == SL_TYPE_DOUBLE ? v->u.d : (double)v->u.i;
            if (!isnan(d)) { /* NaN equals nothing */
                memcpy(set + k++ * size, &d, size);
            }
        } else {
            memcpy(set + k++ * size, &v->u.i, size);
        }
    }
    if (op != EX_IN_B) {
        n->u.set.n = ex_set_sort(set, k, size,
                                 op == EX_IN_S   ? ex_cmp_str
                                 : op == EX_IN_D ? ex_cmp_dbl
                                                 : ex_cmp_i64);
        n->u.set.v = set;
    }
    return ex_finish(p, n);
}

/* `lhs [not] in (v, ...)`; the current token is `in`. */
static ex_node_t *ex_parse_in(ex_parser_t *p, ex_node_t *lhs, bool neg)
{
    char d1[48];
    ex_node_t **vals = NULL, *res = NULL;
    size_t nv = 0, cap = 0;
    if (ex_next(p) != 0) {
        return NULL;
    }
    ex_tok_t lp = p->tok;
    if (lp.kind != TK_LP) {
        return ex_err(p, lp.pos, "expected '(' after 'in', found %s: write x in (1, 2, 3)",
                      ex_tok_desc(p, &lp, d1, sizeof(d1)));
    }
    if (++p->nest > EX_MAX_NEST) {
        return ex_err(p, lp.pos, "more than %d nested parentheses, calls or prefix operators",
                      EX_MAX_NEST);
    }
    if (ex_next(p) != 0) {
        return NULL;
    }
    if (p->tok.kind == TK_RP) {
        return ex_err(p, p->tok.pos, "the list after 'in' is empty: give at least one value");
    }
    for (;;) {
        ex_node_t *v = ex_parse_or(p);
        if (v == NULL) {
            goto out;
        }
        if (!ex_is_const(v)) {
            char q[48];
            ex_err(p, v->start,
                   "'in' takes constant values only, and '%s' is not one: compare with a "
                   "field using == and ||",
                   sl_value_quote(p->text + v->start, v->end - v->start, q, sizeof(q)));
            goto out;
        }
        if (nv == cap) {
            cap = cap ? cap * 2 : 8;
            vals = sl_xrealloc(vals, cap * sizeof(*vals));
        }
        vals[nv++] = v;
        if (p->tok.kind == TK_COMMA) {
            if (ex_next(p) != 0) {
                goto out;
            }
            continue;
        }
        if (p->tok.kind == TK_RP) {
            break;
        }
        ex_err(p, p->tok.pos, "expected ',' or ')' to close the '(' at column %zu, found %s",
               lp.pos + 1, ex_tok_desc(p, &p->tok, d1, sizeof(d1)));
        goto out;
    }
    p->nest--;
    res = ex_in_set(p, lhs, vals, nv, neg, p->tok.pos + 1);
    if (res != NULL && ex_next(p) != 0) {
        res = NULL;
    }
out:
    free(vals);
    return res;
}

static bool ex_is_cmp_tok(ex_tk_t k)
{
    return k == TK_EQ || k == TK_NE || k == TK_LT || k == TK_LE || k == TK_GT || k == TK_GE;
}

static ex_node_t *ex_parse_cmp(ex_parser_t *p)
{
    ex_node_t *a = ex_parse_add(p);
    if (a == NULL) {
        return NULL;
    }
    ex_tok_t op = p->tok;
    if (ex_is_cmp_tok(op.kind)) {
        ex_node_t *b;
        if (ex_next(p) != 0 || (b = ex_parse_add(p)) == NULL ||
            (a = ex_compare(p, &op, a, b)) == NULL) {
            return NULL;
        }
    } else if (op.kind == TK_IN) {
        a = ex_parse_in(p, a, false);
    } else if (op.kind == TK_NOT) {
        ex_tok_t after;
        if (ex_peek(p, &after) != 0) {
            return NULL;
        }
        if (after.kind == TK_IN) {
            if (ex_next(p) != 0) {
                return NULL;
            }
            a = ex_parse_in(p, a, true);
        }
    }
    if (a != NULL && (ex_is_cmp_tok(p->tok.kind) || p->tok.kind == TK_IN)) {
        return ex_err(p, p->tok.pos,
                      "comparisons do not chain: write a < b && b < c, or parenthesize "
                      "(a == b) == c");
    }
    return a;
}

static ex_node_t *ex_want_bool(ex_parser_t *p, ex_node_t *a, const char *op)
{
    if (ex_is_null_lit(a)) {
        a->type = SL_TYPE_BOOL;
    }
    if (a->type != SL_TYPE_BOOL) {
        return ex_err(p, a->start, "'%s' needs a bool, got %s: compare it, as in x != 0 or s != ''",
                      op, ex_type_name(a->type));
    }
    return a;
}

static ex_node_t *ex_parse_not(ex_parser_t *p)
{
    if (p->tok.kind != TK_BANG && p->tok.kind != TK_NOT) {
        return ex_parse_cmp(p);
    }
    ex_tok_t op = p->tok;
    if (++p->nest > EX_MAX_NEST) {
        return ex_err(p, op.pos, "more than %d nested parentheses, calls or prefix operators",
                      EX_MAX_NEST);
    }
    ex_node_t *a;
    if (ex_next(p) != 0 || (a = ex_parse_not(p)) == NULL) {
        return NULL;
    }
    p->nest--;
    if (ex_want_bool(p, a, op.kind == TK_BANG ? "!" : "not") == NULL) {
        return NULL;
    }
    ex_node_t *n = ex_unary(p, EX_NOT, SL_TYPE_BOOL, a);
    n->start = (uint32_t)op.pos;
    return ex_finish(p, n);
}

static ex_node_t *ex_logic(ex_parser_t *p, ex_op_t op, const ex_tok_t *tok, ex_node_t *a,
                           ex_node_t *b)
{
    char name[8];
    snprintf(name, sizeof(name), "%.*s", (int)SL_MIN(tok->len, 3), p->text + tok->pos);
    if (ex_want_bool(p, a, name) == NULL || ex_want_bool(p, b, name) == NULL) {
        return NULL;
    }
    return ex_finish(p, ex_binary(p, op, SL_TYPE_BOOL, a, b));
}

static ex_node_t *ex_parse_and(ex_parser_t *p)
{
    ex_node_t *a = ex_parse_not(p);
    while (a != NULL && p->tok.kind == TK_AND) {
        ex_tok_t op = p->tok;
        ex_node_t *b;
        if (ex_next(p) != 0 || (b = ex_parse_not(p)) == NULL) {
            return NULL;
        }
        a = ex_logic(p, EX_AND, &op, a, b);
    }
    return a;
}

static ex_node_t *ex_parse_or(ex_parser_t *p)
{
    ex_node_t *a = ex_parse_and(p);
    while (a != NULL && p->tok.kind == TK_OR) {
        ex_tok_t op = p->tok;
        ex_node_t *b;
        if (ex_next(p) != 0 || (b = ex_parse_and(p)) == NULL) {
            return NULL;
        }
        a = ex_logic(p, EX_OR, &op, a, b);
    }
    return a;
}

/* ------------------------------------------------------------------------ */
/* Function implementations                                                  */

/* A run-time failure: "<what> in "<the node's text>"". Returns -1. */
SL_PRINTF(3, 4) static int ex_fail(ex_ctx_t *c, const ex_node_t *n, const char *fmt, ...)
{
    char what[150], q[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    sl_value_quote(c->e->text + n->start, n->end - n->start, q, sizeof(q));
    snprintf(c->why->text, sizeof(c->why->text), "%s in \"%s\"", what, q);
    return -1;
}

static inline int ex_get(const ex_node_t *n, ex_ctx_t *c, sl_value_t *v)
{
    if (n->op == EX_FIELD) {
        *v = c->rec[n->u.field];
        return 0;
    }
    if (n->op == EX_CONST) {
        *v = n->u.lit;
        return 0;
    }
    return n->ev(n, c, v);
}

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

static void ex_set_str(sl_value_t *out, const char *p, size_t n)
{
    out->is_null = false;
    out->u.s.ptr = p;
    out->u.s.len = n;
}

static void ex_set_int(sl_value_t *out, int64_t i)
{
    out->is_null = false;
    out->u.i = i;
}

static void ex_set_bool(sl_value_t *out, bool b)
{
    out->is_null = false;
    out->u.b = b;
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
    int64_t utc, local;
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
    int64_t utc, local;
    int rc = ex_local(n, c, out, &utc, &local);
    if (rc == 0) {
        ex_set_int(out, ex_floor_mod(local, EX_US_PER_DAY) / EX_US_PER_HOUR);
    }
    return rc < 0 ? -1 : 0;
}

static int exf_day_of_week(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    int64_t utc, local;
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

/* The UTC instant of the local time lt in tz, for a local time at or before
 * the instant ts whose offset was off. In an overlap (clocks set back) the
 * candidate with ts's offset wins; in a gap (clocks set forward) the result
 * is the end of the gap, the first instant of the truncated unit. */
static int64_t ex_utc_of_local(const sl_tz_t *tz, int64_t lt, int64_t ts, int32_t off)
{
    int64_t u1 = lt - (int64_t)off * EX_US_PER_S;
    int32_t o1 = sl_tz_offset(tz, ex_floor_div(u1, EX_US_PER_S));
    if (o1 == off) {
        return u1;
    }
    int64_t u2 = lt - (int64_t)o1 * EX_US_PER_S;
    int32_t o2 = sl_tz_offset(tz, ex_floor_div(u2, EX_US_PER_S));
    int64_t r = o2 == o1 ? u2 : lt - (int64_t)SL_MIN(off, o1) * EX_US_PER_S;
    return r <= ts ? r : u1; /* u1 <= ts always: lt <= ts + off */
}

static int exf_date_trunc(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    int64_t utc, local;
    int rc = ex_local(n, c, out, &utc, &local);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    int64_t lt = local - ex_floor_mod(local, ex_units[n->cmp].us), r = lt;
    if (n->u.tz != NULL) {
        r = ex_utc_of_local(n->u.tz, lt, utc, (int32_t)((local - utc) / EX_US_PER_S));
    }
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

typedef ex_node_t *(*ex_check_t)(ex_parser_t *p, ex_node_t *n, const char *name);

typedef struct {
    const char *name;
    unsigned min_args, max_args;
    ex_check_t check;
    ex_fn_t fn;
} ex_func_t;

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

#define EX_VARARGS 255

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

static const ex_func_t *ex_func_find(sl_str_t name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(ex_funcs); i++) {
        if (ex_word_eq(name.ptr, name.len, ex_funcs[i].name)) {
            return &ex_funcs[i];
        }
    }
    return NULL;
}

static ex_node_t *ex_unknown_func(ex_parser_t *p, const ex_tok_t *t)
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

/* name ( [expr {, expr}] ); the current token is the name. */
static ex_node_t *ex_parse_call(ex_parser_t *p)
{
    ex_tok_t name = p->tok;
    const ex_func_t *f = ex_func_find(name.s);
    ex_node_t *args[EX_MAX_ARGS], *n;
    size_t nargs = 0;
    char d1[48];
    if (f == NULL) {
        return ex_unknown_func(p, &name);
    }
    if (ex_next(p) != 0) { /* to '(' */
        return NULL;
    }
    ex_tok_t lp = p->tok;
    if (++p->nest > EX_MAX_NEST) {
        return ex_err(p, lp.pos, "more than %d nested parentheses, calls or prefix operators",
                      EX_MAX_NEST);
    }
    if (ex_next(p) != 0) {
        return NULL;
    }
    while (p->tok.kind != TK_RP) {
        if (nargs == EX_MAX_ARGS) {
            return ex_err(p, p->tok.pos, "%s(): more than %d arguments", f->name, EX_MAX_ARGS);
        }
        if ((args[nargs++] = ex_parse_or(p)) == NULL) {
            return NULL;
        }
        if (p->tok.kind == TK_COMMA) {
            if (ex_next(p) != 0) {
                return NULL;
            }
            if (p->tok.kind == TK_RP) {
                return ex_err(p, p->tok.pos, "expected an argument after ',' in %s(...)", f->name);
            }
        } else if (p->tok.kind != TK_RP) {
            return ex_err(p, p->tok.pos,
                          "expected ',' or ')' to close the '(' of %s at column %zu, found %s",
                          f->name, lp.pos + 1, ex_tok_desc(p, &p->tok, d1, sizeof(d1)));
        }
    }
    p->nest--;
    if (nargs < f->min_args || nargs > f->max_args) {
        if (f->max_args == EX_VARARGS) {
            return ex_err(p, name.pos, "%s() takes at least %u argument%s, got %zu", f->name,
                          f->min_args, f->min_args == 1 ? "" : "s", nargs);
        }
        if (f->min_args == f->max_args) {
            return ex_err(p, name.pos, "%s() takes %u argument%s, got %zu", f->name, f->min_args,
                          f->min_args == 1 ? "" : "s", nargs);
        }
        return ex_err(p, name.pos, "%s() takes %u or %u arguments, got %zu", f->name, f->min_args,
                      f->max_args, nargs);
    }
    n = ex_node(p, EX_CALL, SL_TYPE_STRING, name.pos, p->tok.pos + 1, nargs);
    memcpy(n->args, args, nargs * sizeof(ex_node_t *));
    n->fn = f->fn;
    if (ex_next(p) != 0 || (n = f->check(p, n, f->name)) == NULL) {
        return NULL;
    }
    return ex_finish(p, n);
}

/* ------------------------------------------------------------------------ */
/* The evaluator: one function per node, picked at compile time from the    */
/* node's op and operand types, so evaluation is a call per node and no     */
/* switch on types or operators.                                            */

/* Evaluates the operand of a strict unary operator: returns -1 on error, 1
 * if it is null (then *out is null), else 0 with *out marked not null. */
static inline int ex_one(const ex_node_t *n, ex_ctx_t *c, sl_value_t *a, sl_value_t *out)
{
    if (ex_get(n->args[0], c, a) != 0) {
        return -1;
    }
    out->is_null = a->is_null;
    return a->is_null;
}

/* The same for both operands of a strict binary operator. */
static inline int ex_two(const ex_node_t *n, ex_ctx_t *c, sl_value_t *a, sl_value_t *b,
                         sl_value_t *out)
{
    if (ex_get(n->args[0], c, a) != 0) {
        return -1;
    }
    if (a->is_null) {
        out->is_null = true;
        return 1;
    }
    if (ex_get(n->args[1], c, b) != 0) {
        return -1;
    }
    out->is_null = b->is_null;
    return b->is_null;
}

static bool ex_str_eq(sl_str_t a, sl_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Comparisons: one function per (operand type, operator). */
#define EX_CMP(name, test)                                                                         \
    static int name(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)                              \
    {                                                                                              \
        sl_value_t a, b;                                                                           \
        int rc = ex_two(n, c, &a, &b, out);                                                        \
        if (rc == 0) {                                                                             \
            out->u.b = (test);                                                                     \
        }                                                                                          \
        return rc < 0 ? -1 : 0;                                                                    \
    }

EX_CMP(ev_eq_i, a.u.i == b.u.i)
EX_CMP(ev_ne_i, a.u.i != b.u.i)
EX_CMP(ev_lt_i, a.u.i < b.u.i)
EX_CMP(ev_le_i, a.u.i <= b.u.i)
EX_CMP(ev_gt_i, a.u.i > b.u.i)
EX_CMP(ev_ge_i, a.u.i >= b.u.i)
/* doubles: IEEE, so NaN compares false except with != */
EX_CMP(ev_eq_d, a.u.d == b.u.d)
EX_CMP(ev_ne_d, a.u.d != b.u.d)
EX_CMP(ev_lt_d, a.u.d < b.u.d)
EX_CMP(ev_le_d, a.u.d <= b.u.d)
EX_CMP(ev_gt_d, a.u.d > b.u.d)
EX_CMP(ev_ge_d, a.u.d >= b.u.d)
EX_CMP(ev_eq_s, ex_str_eq(a.u.s, b.u.s))
EX_CMP(ev_ne_s, !ex_str_eq(a.u.s, b.u.s))
EX_CMP(ev_lt_s, ex_str_cmp(a.u.s, b.u.s) < 0)
EX_CMP(ev_le_s, ex_str_cmp(a.u.s, b.u.s) <= 0)
EX_CMP(ev_gt_s, ex_str_cmp(a.u.s, b.u.s) > 0)
EX_CMP(ev_ge_s, ex_str_cmp(a.u.s, b.u.s) >= 0)
EX_CMP(ev_eq_b, a.u.b == b.u.b)
EX_CMP(ev_ne_b, a.u.b != b.u.b)

/* [op - EX_CMP_I][ex_cmp_t]; bools have == and != only */
static const ex_fn_t ex_cmp_fns[4][6] = {
    {ev_eq_i, ev_ne_i, ev_lt_i, ev_le_i, ev_gt_i, ev_ge_i},
    {ev_eq_d, ev_ne_d, ev_lt_d, ev_le_d, ev_gt_d, ev_ge_d},
    {ev_eq_s, ev_ne_s, ev_lt_s, ev_le_s, ev_gt_s, ev_ge_s},
    {ev_eq_b, ev_ne_b, NULL, NULL, NULL, NULL},
};

static int ev_is_null(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a;
    if (ex_get(n->args[0], c, &a) != 0) {
        return -1;
    }
    ex_set_bool(out, a.is_null != n->neg);
    return 0;
}

/* Kleene logic: false && x = false and true || x = true whatever x is (x is
 * then not evaluated); otherwise a null operand makes the result null. */
static int ex_logic_eval(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out, bool stop)
{
    sl_value_t a, b;
    if (ex_get(n->args[0], c, &a) != 0) {
        return -1;
    }
    if (!a.is_null && a.u.b == stop) {
        ex_set_bool(out, stop);
        return 0;
    }
    if (ex_get(n->args[1], c, &b) != 0) {
        return -1;
    }
    if (!b.is_null && b.u.b == stop) {
        ex_set_bool(out, stop);
    } else if (a.is_null || b.is_null) {
        out->is_null = true;
    } else {
        ex_set_bool(out, !stop);
    }
    return 0;
}

static int ev_and(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return ex_logic_eval(n, c, out, false);
}

static int ev_or(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    return ex_logic_eval(n, c, out, true);
}

static int ev_not(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a;
    int rc = ex_one(n, c, &a, out);
    if (rc == 0) {
        out->u.b = !a.u.b;
    }
    return rc < 0 ? -1 : 0;
}

static int ev_neg_i(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a;
    int rc = ex_one(n, c, &a, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    if (a.u.i == INT64_MIN) {
        return ex_fail(c, n, "integer overflow");
    }
    out->u.i = -a.u.i;
    return 0;
}

static int ev_neg_d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a;
    int rc = ex_one(n, c, &a, out);
    if (rc == 0) {
        out->u.d = -a.u.d;
    }
    return rc < 0 ? -1 : 0;
}

static int ev_i2d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a;
    int rc = ex_one(n, c, &a, out);
    if (rc == 0) {
        out->u.d = (double)a.u.i;
    }
    return rc < 0 ? -1 : 0;
}

/* Integer arithmetic: overflow is an error, never a wrap. */
static int ev_arith_i(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a, b;
    bool overflow = false;
    int rc = ex_two(n, c, &a, &b, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    switch ((ex_op_t)n->op) {
    case EX_ADD_I:
        overflow = __builtin_add_overflow(a.u.i, b.u.i, &out->u.i);
        break;
    case EX_SUB_I:
        overflow = __builtin_sub_overflow(a.u.i, b.u.i, &out->u.i);
        break;
    case EX_MUL_I:
        overflow = __builtin_mul_overflow(a.u.i, b.u.i, &out->u.i);
        break;
    default: /* DIV_I, MOD_I: truncating toward zero, like C */
        if (b.u.i == 0) {
            return ex_fail(c, n, "division by zero");
        }
        if (b.u.i == -1) { /* INT64_MIN / -1 overflows; x % -1 is 0 */
            if (n->op == EX_MOD_I) {
                out->u.i = 0;
            } else if (a.u.i == INT64_MIN) {
                overflow = true;
            } else {
                out->u.i = -a.u.i;
            }
        } else {
            out->u.i = n->op == EX_DIV_I ? a.u.i / b.u.i : a.u.i % b.u.i;
        }
        break;
    }
    return overflow ? ex_fail(c, n, "integer overflow") : 0;
}

/* Double arithmetic: IEEE, except that / and % by zero are errors. */
static int ev_arith_d(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a, b;
    int rc = ex_two(n, c, &a, &b, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    switch ((ex_op_t)n->op) {
    case EX_ADD_D:
        out->u.d = a.u.d + b.u.d;
        break;
    case EX_SUB_D:
        out->u.d = a.u.d - b.u.d;
        break;
    case EX_MUL_D:
        out->u.d = a.u.d * b.u.d;
        break;
    default:
        if (b.u.d == 0) {
            return ex_fail(c, n, "division by zero");
        }
        out->u.d = n->op == EX_DIV_D ? a.u.d / b.u.d : fmod(a.u.d, b.u.d);
        break;
    }
    return 0;
}

static int ev_cat(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a, b;
    int rc = ex_two(n, c, &a, &b, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    if (a.u.s.len == 0 || b.u.s.len == 0) {
        *out = a.u.s.len == 0 ? b : a;
        return 0;
    }
    char *o = sl_arena_alloc(c->arena, a.u.s.len + b.u.s.len);
    memcpy(o, a.u.s.ptr, a.u.s.len);
    memcpy(o + a.u.s.len, b.u.s.ptr, b.u.s.len);
    ex_set_str(out, o, a.u.s.len + b.u.s.len);
    return 0;
}

/* Binary search in the sorted set of an `in` node. */
#define EX_BSEARCH(T, less, eq)                                                                    \
    do {                                                                                           \
        const T *s = n->u.set.v;                                                                   \
        size_t lo = 0, hi = n->u.set.n;                                                            \
        while (lo < hi) {                                                                          \
            size_t mid = lo + (hi - lo) / 2;                                                       \
            if (eq) {                                                                              \
                return true;                                                                       \
            }                                                                                      \
            if (less) {                                                                            \
                lo = mid + 1;                                                                      \
            } else {                                                                               \
                hi = mid;                                                                          \
            }                                                                                      \
        }                                                                                          \
        return false;                                                                              \
    } while (0)

static bool ex_in(const ex_node_t *n, const sl_value_t *v)
{
    switch ((ex_op_t)n->op) {
    case EX_IN_B:
        return (n->u.set.n & (v->u.b ? 2u : 1u)) != 0;
    case EX_IN_I:
        EX_BSEARCH(int64_t, s[mid] < v->u.i, s[mid] == v->u.i);
    case EX_IN_D:
        EX_BSEARCH(double, s[mid] < v->u.d, s[mid] == v->u.d);
    default:
        EX_BSEARCH(sl_str_t, ex_str_cmp(s[mid], v->u.s) < 0, ex_str_eq(s[mid], v->u.s));
    }
}

static int ev_in(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    sl_value_t a;
    int rc = ex_one(n, c, &a, out);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    if (ex_in(n, &a)) {
        out->u.b = !n->neg;
    } else if (n->has_null) {
        out->is_null = true; /* x in (1, null) is null, not false, when x is not 1 */
    } else {
        out->u.b = n->neg;
    }
    return 0;
}

static int ex_ev_bad(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    out->is_null = true;
    snprintf(c->why->text, sizeof(c->why->text), "internal error: expression node %d", n->op);
    return -1;
}

static ex_fn_t ex_pick(const ex_node_t *n)
{
    ex_fn_t f = NULL;
    switch ((ex_op_t)n->op) {
    case EX_IS_NULL:
        return ev_is_null;
    case EX_AND:
        return ev_and;
    case EX_OR:
        return ev_or;
    case EX_NOT:
        return ev_not;
    case EX_NEG_I:
        return ev_neg_i;
    case EX_NEG_D:
        return ev_neg_d;
    case EX_I2D:
        return ev_i2d;
    case EX_ADD_I:
    case EX_SUB_I:
    case EX_MUL_I:
    case EX_DIV_I:
    case EX_MOD_I:
        return ev_arith_i;
    case EX_ADD_D:
    case EX_SUB_D:
    case EX_MUL_D:
    case EX_DIV_D:
    case EX_MOD_D:
        return ev_arith_d;
    case EX_CAT:
        return ev_cat;
    case EX_CMP_I:
    case EX_CMP_D:
    case EX_CMP_S:
    case EX_CMP_B:
        f = n->cmp < 6 ? ex_cmp_fns[n->op - EX_CMP_I][n->cmp] : NULL;
        break;
    case EX_IN_I:
    case EX_IN_D:
    case EX_IN_S:
    case EX_IN_B:
        return ev_in;
    case EX_CALL:
        f = n->fn;
        break;
    default:
        break;
    }
    return f != NULL ? f : ex_ev_bad;
}

/* ------------------------------------------------------------------------ */
/* The public API                                                            */

sl_expr_t *sl_expr_compile(const char *text, size_t len, const sl_schema_t *schema, size_t n_fields,
                           sl_expr_error_t *err)
{
    sl_expr_t *e = sl_xcalloc(1, sizeof(*e));
    ex_parser_t p = {0};
    ex_node_t *root = NULL;
    sl_arena_init(&e->arena, 4096);
    p.text = text != NULL ? text : "";
    p.len = text != NULL ? len : 0;
    p.schema = schema;
    p.n_fields = SL_MIN(n_fields, schema->n_fields);
    p.e = e;
    p.err = err;
    err->col = 0;
    err->msg[0] = '\0';
    if (p.len > EX_MAX_LEN) {
        ex_err(&p, 0, "the expression is %zu bytes long; the limit is %d", p.len, EX_MAX_LEN);
        goto out;
    }
    e->text = sl_arena_strndup(&e->arena, p.text, p.len);
    p.text = e->text; /* from here on, only the copy is read */
    if (ex_lex(&p, 0, &p.tok) != 0 || (root = ex_parse_or(&p)) == NULL) {
        goto out;
    }
    if (p.tok.kind == TK_RP) {
        ex_err(&p, p.tok.pos, "unmatched ')': remove it or add a '(' before it");
        goto out;
    }
    if (p.tok.kind != TK_EOF) {
        char d1[48];
        ex_err(&p, p.tok.pos, "unexpected %s after a complete expression: is an operator missing?",
               ex_tok_desc(&p, &p.tok, d1, sizeof(d1)));
        goto out;
    }
    if (root->type == EX_NULLT) {
        ex_err(&p, root->start, "the expression is a bare null, which has no type");
        goto out;
    }
    e->root = root;
    e->type = (sl_type_t)root->type;
out:
    if (p.failed || e->root == NULL) {
        if (!p.failed) {
            ex_err(&p, 0, "internal error: no expression");
        }
        sl_expr_destroy(e);
        return NULL;
    }
    return e;
}

sl_type_t sl_expr_type(const sl_expr_t *e)
{
    return e->type;
}

int sl_expr_eval(const sl_expr_t *e, const sl_value_t *rec, sl_arena_t *arena, sl_value_t *out,
                 sl_reason_t *why)
{
    ex_ctx_t c = {e, rec, arena, why};
    return ex_get(e->root, &c, out);
}

int sl_expr_eval_bool(const sl_expr_t *e, const sl_value_t *rec, sl_arena_t *arena, bool *keep,
                      sl_reason_t *why)
{
    ex_ctx_t c = {e, rec, arena, why};
    sl_value_t v;
    *keep = false;
    if (SL_UNLIKELY(e->type != SL_TYPE_BOOL)) {
        snprintf(why->text, sizeof(why->text), "the filter expression is %s, not bool",
                 sl_type_name(e->type));
        return -1;
    }
    if (ex_get(e->root, &c, &v) != 0) {
        return -1;
    }
    *keep = !v.is_null && v.u.b;
    return 0;
}

void sl_expr_destroy(sl_expr_t *e)
{
    if (e == NULL) {
        return;
    }
    for (size_t i = 0; i < e->n_zones; i++) {
        sl_tz_destroy(e->zones[i]);
    }
    free(e->zones);
    EVP_MD_free(e->sha1);
    sl_arena_free(&e->arena);
    free(e);
}
