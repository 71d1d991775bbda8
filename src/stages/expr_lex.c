/* The expression lexer (see expr.c): turns the text into tokens on demand,
 * decoding string literals into the expression's arena, and records the
 * parser's first error. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stages/expr_int.h"
#include "util/utf8.h"

/* ------------------------------------------------------------------------ */
/* The lexer                                                                 */

/* Records the first error: col is pos + 1. Always returns NULL. */
SL_PRINTF(3, 4) void *ex_err(ex_parser_t *p, size_t pos, const char *fmt, ...)
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
const char *ex_tok_desc(const ex_parser_t *p, const ex_tok_t *t, char *out, size_t cap)
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

bool ex_word_eq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* Reads the 4 hex digits of a \u escape at s (n bytes available). */
static int ex_u4(const char *s, size_t n, unsigned *out)
{
    return n < 4 ? -1 : sl_utf8_hex4((const unsigned char *)s, out);
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
            n += sl_utf8_put(o + n, cp);
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
int ex_lex(ex_parser_t *p, size_t pos, ex_tok_t *t)
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

int ex_next(ex_parser_t *p)
{
    p->prev = p->tok;
    p->has_prev = true;
    return ex_lex(p, p->tok.pos + p->tok.len, &p->tok);
}

/* The token after the current one, without moving. */
int ex_peek(ex_parser_t *p, ex_tok_t *t)
{
    return ex_lex(p, p->tok.pos + p->tok.len, t);
}
