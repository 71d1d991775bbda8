/* The expression evaluator (see expr.c): the function that evaluates each
 * kind of node, and the choice of it when a node is built. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stages/expr_int.h"

/* ------------------------------------------------------------------------ */
/* The evaluator: one function per node, picked at compile time from the    */
/* node's op and operand types, so evaluation is a call per node and no     */
/* switch on types or operators.                                            */

/* A run-time failure: "<what> in "<the node's text>"". Returns -1. */
SL_PRINTF(3, 4) int ex_fail(ex_ctx_t *c, const ex_node_t *n, const char *fmt, ...)
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

int ex_ev_bad(const ex_node_t *n, ex_ctx_t *c, sl_value_t *out)
{
    out->is_null = true;
    snprintf(c->why->text, sizeof(c->why->text), "internal error: expression node %d", n->op);
    return -1;
}

ex_fn_t ex_pick(const ex_node_t *n)
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
