/* Expressions (docs/EXPRESSIONS.md): a lexer, a recursive-descent parser that
 * type-checks while it builds a tree of typed nodes, constant folding, and a
 * recursive evaluator over the tree. Every operator node has one concrete
 * type (ADD_I is int64 + int64, CMP_S compares strings, ...): the evaluator
 * never looks at a type, it only checks is_null. Nodes, literals, sets and
 * folded strings live in the expression's own arena; time zones and the
 * SHA-1 digest are loaded once at compile time.
 *
 * The parts: expr_int.h (limits and types, shared by the parts only) /
 * expr_lex.c (the lexer) / this file (node building and folding, the parser,
 * the public API) / expr_func.c (function implementations, the function
 * table) / expr_eval.c (the evaluator). */
#include "stages/expr.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/expr_int.h"

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
ex_node_t *ex_to_double(ex_parser_t *p, ex_node_t *a)
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
ex_node_t *ex_time_literal(ex_parser_t *p, ex_node_t *n, int want)
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
void ex_near(ex_near_t *best, const char *want, size_t nwant, const char *name, size_t len)
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
