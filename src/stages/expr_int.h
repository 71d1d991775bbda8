/* Internal to stages/expr*: not for other modules, which use stages/expr.h.
 * The limits and types the expression compiler's parts share (nodes, tokens,
 * the parser's state, the function table's entries), the few functions they
 * call across files, and the evaluator's hot helpers, inline so a call costs
 * what it did when the parts were one file.
 *
 * The parts: expr_lex.c (the lexer) / expr.c (node building and folding, the
 * parser, the public API) / expr_func.c (function implementations, the
 * function table) / expr_eval.c (the evaluator). */
#ifndef SL_STAGES_EXPR_INT_H
#define SL_STAGES_EXPR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "stages/expr.h"
#include "util/tz.h"

/* ------------------------------------------------------------------------ */
/* Limits and types                                                          */

#define EX_MAX_LEN 65536        /* bytes of expression text */
#define EX_MAX_NEST 64          /* nested parentheses, calls and prefix operators */
#define EX_MAX_DEPTH 256        /* levels of the tree (bounds the evaluator's recursion) */
#define EX_MAX_ARGS 64          /* arguments of one call */
#define EX_NULLT SL_TYPE__COUNT /* the type of a bare `null` until context types it */

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

static inline const char *ex_type_name(int t)
{
    return t == EX_NULLT ? "null" : sl_type_name((sl_type_t)t);
}

static inline bool ex_numeric(int t)
{
    return t == SL_TYPE_INT64 || t == SL_TYPE_DOUBLE;
}

/* ------------------------------------------------------------------------ */
/* The lexer's tokens and the parser's state (expr_lex.c, expr.c)            */

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

/* ------------------------------------------------------------------------ */
/* The function table's entries (expr_func.c)                                */

typedef ex_node_t *(*ex_check_t)(ex_parser_t *p, ex_node_t *n, const char *name);

typedef struct {
    const char *name;
    unsigned min_args, max_args;
    ex_check_t check;
    ex_fn_t fn;
} ex_func_t;

#define EX_VARARGS 255

/* The closest name found so far by ex_near(). */
typedef struct {
    const char *name;
    size_t len, dist;
} ex_near_t;

/* ------------------------------------------------------------------------ */
/* Shared between the parts; each is described where it is defined.         */

/* expr_lex.c */
SL_PRINTF(3, 4) void *ex_err(ex_parser_t *p, size_t pos, const char *fmt, ...);
const char *ex_tok_desc(const ex_parser_t *p, const ex_tok_t *t, char *out, size_t cap);
bool ex_word_eq(const char *s, size_t n, const char *word);
int ex_lex(ex_parser_t *p, size_t pos, ex_tok_t *t);
int ex_next(ex_parser_t *p);
int ex_peek(ex_parser_t *p, ex_tok_t *t);

/* expr.c */
ex_node_t *ex_to_double(ex_parser_t *p, ex_node_t *a);
ex_node_t *ex_time_literal(ex_parser_t *p, ex_node_t *n, int want);
void ex_near(ex_near_t *best, const char *want, size_t nwant, const char *name, size_t len);

/* expr_func.c */
const ex_func_t *ex_func_find(sl_str_t name);
ex_node_t *ex_unknown_func(ex_parser_t *p, const ex_tok_t *t);

/* expr_eval.c */
SL_PRINTF(3, 4) int ex_fail(ex_ctx_t *c, const ex_node_t *n, const char *fmt, ...);
int ex_ev_bad(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out);
ex_fn_t ex_pick(const ex_node_t *n);

/* ------------------------------------------------------------------------ */
/* Small helpers every part uses                                             */

static inline bool ex_is_const(const ex_node_t *n)
{
    return n->op == EX_CONST;
}

static inline bool ex_is_null_lit(const ex_node_t *n)
{
    return n->op == EX_CONST && n->type == EX_NULLT;
}

static inline int ex_str_cmp(sl_str_t a, sl_str_t b)
{
    int r = memcmp(a.ptr, b.ptr, SL_MIN(a.len, b.len));
    if (r != 0 || a.len == b.len) {
        return r;
    }
    return a.len < b.len ? -1 : 1;
}

/* Evaluates n: fields and constants directly, other nodes through their ev. */
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

static inline void ex_set_str(sl_value_t *out, const char *p, size_t n)
{
    out->is_null = false;
    out->u.s.ptr = p;
    out->u.s.len = n;
}

static inline void ex_set_int(sl_value_t *out, int64_t i)
{
    out->is_null = false;
    out->u.i = i;
}

static inline void ex_set_bool(sl_value_t *out, bool b)
{
    out->is_null = false;
    out->u.b = b;
}

#endif
