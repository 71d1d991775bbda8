/* A small tokenizer and recursive-descent parser for the CQL subset of the
 * test node. Errors become Syntax errors naming the token where parsing
 * stopped. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cqlnode.h"

#define CP_MAX_TOKS 4096

typedef struct cp {
    cn_tok_t toks[CP_MAX_TOKS];
    size_t n, pos;
    sl_arena_t *a;
    char *err;
    size_t errlen;
    cn_stmt_t *st;
} cp_t;

static int cp_fail(cp_t *p, const char *fmt, ...) SL_PRINTF(2, 3);

static int cp_fail(cp_t *p, const char *fmt, ...)
{
    if (p->err[0] != '\0') {
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static bool cp_is_uuid_at(const char *s, size_t left)
{
    static const int groups[] = {8, 4, 4, 4, 12};
    size_t k = 0;
    if (left < 36) {
        return false;
    }
    for (size_t g = 0; g < 5; g++) {
        for (int i = 0; i < groups[g]; i++) {
            if (!isxdigit((unsigned char)s[k++])) {
                return false;
            }
        }
        if (g < 4 && s[k++] != '-') {
            return false;
        }
    }
    return left == 36 || !(isalnum((unsigned char)s[36]) || s[36] == '_');
}

static int cp_tokenize(cp_t *p, const char *q, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char c = q[i];
        if (isspace((unsigned char)c)) {
            i++;
            continue;
        }
        if (c == '-' && i + 1 < n && q[i + 1] == '-') {
            while (i < n && q[i] != '\n') {
                i++;
            }
            continue;
        }
        if (c == '/' && i + 1 < n && q[i + 1] == '*') {
            const char *end = NULL;
            for (size_t j = i + 2; j + 1 < n; j++) {
                if (q[j] == '*' && q[j + 1] == '/') {
                    end = q + j;
                    break;
                }
            }
            if (end == NULL) {
                return cp_fail(p, "unterminated comment");
            }
            i = (size_t)(end - q) + 2;
            continue;
        }
        if (p->n + 1 >= CP_MAX_TOKS) {
            return cp_fail(p, "statement too long");
        }
        cn_tok_t *t = &p->toks[p->n++];
        memset(t, 0, sizeof(*t));
        if (cp_is_uuid_at(q + i, n - i)) {
            t->kind = CN_T_UUID;
            t->s = sl_arena_strndup(p->a, q + i, 36);
            t->n = 36;
            i += 36;
        } else if (c == '0' && i + 1 < n && (q[i + 1] == 'x' || q[i + 1] == 'X')) {
            size_t j = i + 2;
            while (j < n && isxdigit((unsigned char)q[j])) {
                j++;
            }
            t->kind = CN_T_BLOB;
            t->s = sl_arena_strndup(p->a, q + i + 2, j - i - 2);
            t->n = j - i - 2;
            i = j;
        } else if (isdigit((unsigned char)c) ||
                   (c == '.' && i + 1 < n && isdigit((unsigned char)q[i + 1]))) {
            size_t j = i;
            while (j < n && (isdigit((unsigned char)q[j]) || q[j] == '.')) {
                j++;
            }
            if (j < n && (q[j] == 'e' || q[j] == 'E')) {
                j++;
                if (j < n && (q[j] == '+' || q[j] == '-')) {
                    j++;
                }
                while (j < n && isdigit((unsigned char)q[j])) {
                    j++;
                }
            }
            t->kind = CN_T_NUMBER;
            t->s = sl_arena_strndup(p->a, q + i, j - i);
            t->n = j - i;
            i = j;
        } else if (isalpha((unsigned char)c) || c == '_') {
            size_t j = i;
            while (j < n && (isalnum((unsigned char)q[j]) || q[j] == '_')) {
                j++;
            }
            char *s = sl_arena_strndup(p->a, q + i, j - i);
            for (char *k = s; *k; k++) {
                *k = (char)tolower((unsigned char)*k);
            }
            t->kind = CN_T_IDENT;
            t->s = s;
            t->n = j - i;
            i = j;
        } else if (c == '\'' || c == '"') {
            /* 'string' and "identifier": the quote doubled stands for itself */
            char *s = sl_arena_alloc(p->a, n - i + 1);
            size_t len = 0, j = i + 1;
            bool closed = false;
            while (j < n) {
                if (q[j] == c) {
                    if (j + 1 < n && q[j + 1] == c) {
                        s[len++] = c;
                        j += 2;
                        continue;
                    }
                    closed = true;
                    j++;
                    break;
                }
                s[len++] = q[j++];
            }
            if (!closed) {
                return cp_fail(p, "unterminated %s", c == '\'' ? "string" : "quoted identifier");
            }
            s[len] = '\0';
            t->kind = c == '\'' ? CN_T_STRING : CN_T_QIDENT;
            t->s = s;
            t->n = len;
            i = j;
        } else if (c == ':' && i + 1 < n && (isalpha((unsigned char)q[i + 1]) || q[i + 1] == '_')) {
            size_t j = i + 1;
            while (j < n && (isalnum((unsigned char)q[j]) || q[j] == '_')) {
                j++;
            }
            char *s = sl_arena_strndup(p->a, q + i + 1, j - i - 1);
            for (char *k = s; *k; k++) {
                *k = (char)tolower((unsigned char)*k);
            }
            t->kind = CN_T_NAMED;
            t->s = s;
            t->n = j - i - 1;
            i = j;
        } else if (strchr("(),;.=+-*<>?{}[]:", c) != NULL) {
            t->kind = CN_T_PUNCT;
            t->c = c;
            t->s = sl_arena_strndup(p->a, &c, 1);
            t->n = 1;
            i++;
        } else {
            p->n--;
            return cp_fail(p, "line 1: unexpected character '%c'", c);
        }
    }
    p->toks[p->n] = (cn_tok_t){.kind = CN_T_END, .s = "<EOF>"};
    return 0;
}

static const cn_tok_t *cp_peek(const cp_t *p)
{
    return &p->toks[p->pos];
}

static const cn_tok_t *cp_peek2(const cp_t *p)
{
    return p->pos < p->n ? &p->toks[p->pos + 1] : &p->toks[p->n];
}

static bool cp_is_kw(const cn_tok_t *t, const char *kw)
{
    return t->kind == CN_T_IDENT && strcmp(t->s, kw) == 0;
}

static bool cp_accept_kw(cp_t *p, const char *kw)
{
    if (cp_is_kw(cp_peek(p), kw)) {
        p->pos++;
        return true;
    }
    return false;
}

static int cp_expect_kw(cp_t *p, const char *kw)
{
    if (cp_accept_kw(p, kw)) {
        return 0;
    }
    return cp_fail(p, "line 1: mismatched input '%s' expecting %s", cp_peek(p)->s, kw);
}

static bool cp_accept_punct(cp_t *p, char c)
{
    const cn_tok_t *t = cp_peek(p);
    if (t->kind == CN_T_PUNCT && t->c == c) {
        p->pos++;
        return true;
    }
    return false;
}

static int cp_expect_punct(cp_t *p, char c)
{
    if (cp_accept_punct(p, c)) {
        return 0;
    }
    return cp_fail(p, "line 1: mismatched input '%s' expecting '%c'", cp_peek(p)->s, c);
}

static int cp_ident(cp_t *p, const char **out)
{
    const cn_tok_t *t = cp_peek(p);
    if (t->kind != CN_T_IDENT && t->kind != CN_T_QIDENT) {
        return cp_fail(p, "line 1: no viable alternative at input '%s' (expecting a name)", t->s);
    }
    p->pos++;
    *out = t->s;
    return 0;
}

/* [ks.]name */
static int cp_qualified(cp_t *p, const char **ks, const char **name)
{
    const char *first = NULL;
    if (cp_ident(p, &first) != 0) {
        return -1;
    }
    if (cp_accept_punct(p, '.')) {
        *ks = first;
        return cp_ident(p, name);
    }
    *ks = NULL;
    *name = first;
    return 0;
}

static bool cp_accept_if_not_exists(cp_t *p)
{
    if (cp_is_kw(cp_peek(p), "if") && cp_is_kw(cp_peek2(p), "not")) {
        p->pos += 2;
        return cp_expect_kw(p, "exists") == 0;
    }
    return false;
}

/* A term; role says what a marker binds (a column name, or CN_MARK_* with col NULL). */
static int cp_term(cp_t *p, cn_term_t *out, const char *col, int role)
{
    const cn_tok_t *t = cp_peek(p);
    memset(out, 0, sizeof(*out));
    if ((t->kind == CN_T_PUNCT && t->c == '?') || t->kind == CN_T_NAMED) {
        cn_stmt_t *st = p->st;
        if (st->n_markers >= CN_MAX_TERMS) {
            return cp_fail(p, "too many bind markers");
        }
        out->kind = CN_TERM_MARKER;
        out->marker = st->n_markers;
        out->name = t->kind == CN_T_NAMED ? t->s : NULL;
        st->marker_col[st->n_markers] = col;
        st->marker_role[st->n_markers] = role;
        st->n_markers++;
        p->pos++;
        return 0;
    }
    if (t->kind == CN_T_PUNCT && t->c == '-' && cp_peek2(p)->kind == CN_T_NUMBER) {
        const cn_tok_t *num = cp_peek2(p);
        out->kind = CN_TERM_LIT;
        out->lit = *num;
        char *s = sl_arena_alloc(p->a, num->n + 2);
        s[0] = '-';
        memcpy(s + 1, num->s, num->n + 1);
        out->lit.s = s;
        out->lit.n = num->n + 1;
        p->pos += 2;
        return 0;
    }
    if (t->kind == CN_T_NUMBER || t->kind == CN_T_STRING || t->kind == CN_T_UUID ||
        t->kind == CN_T_BLOB ||
        (t->kind == CN_T_IDENT &&
         (strcmp(t->s, "true") == 0 || strcmp(t->s, "false") == 0 || strcmp(t->s, "null") == 0 ||
          strcmp(t->s, "nan") == 0 || strcmp(t->s, "infinity") == 0))) {
        out->kind = CN_TERM_LIT;
        out->lit = *t;
        p->pos++;
        return 0;
    }
    return cp_fail(p, "line 1: no viable alternative at input '%s' (expecting a value)", t->s);
}

/* Skips a balanced WITH ... clause up to the end of the statement. */
static int cp_skip_rest(cp_t *p)
{
    int depth = 0;
    while (cp_peek(p)->kind != CN_T_END) {
        const cn_tok_t *t = cp_peek(p);
        if (t->kind == CN_T_PUNCT && (t->c == '{' || t->c == '(' || t->c == '[')) {
            depth++;
        } else if (t->kind == CN_T_PUNCT && (t->c == '}' || t->c == ')' || t->c == ']')) {
            depth--;
        } else if (t->kind == CN_T_PUNCT && t->c == ';' && depth == 0) {
            break;
        }
        p->pos++;
    }
    return depth == 0 ? 0 : cp_fail(p, "unbalanced brackets");
}

static int cp_type(cp_t *p, cn_type_t *out)
{
    const char *name = NULL;
    if (cp_ident(p, &name) != 0) {
        return -1;
    }
    if (strcmp(name, "frozen") == 0) {
        if (cp_expect_punct(p, '<') != 0 || cp_type(p, out) != 0) {
            return -1;
        }
        return cp_expect_punct(p, '>');
    }
    bool coll = strcmp(name, "list") == 0 || strcmp(name, "set") == 0;
    bool map = strcmp(name, "map") == 0;
    if (coll || map) {
        cn_type_t a, b = {0, 0, 0};
        if (cp_expect_punct(p, '<') != 0 || cp_type(p, &a) != 0) {
            return -1;
        }
        if (map && (cp_expect_punct(p, ',') != 0 || cp_type(p, &b) != 0)) {
            return -1;
        }
        if (cp_expect_punct(p, '>') != 0) {
            return -1;
        }
        if (a.p1 != 0 || b.p1 != 0) {
            return cp_fail(p, "nested collections are not supported by the test node");
        }
        out->id = map ? SL_CQL_COL_MAP : name[0] == 'l' ? SL_CQL_COL_LIST : SL_CQL_COL_SET;
        out->p1 = a.id;
        out->p2 = b.id;
        return 0;
    }
    if (cn_type_parse(name, out) != 0) {
        return cp_fail(p, "line 1: unknown type %s", name);
    }
    return 0;
}

static int cp_create_table(cp_t *p, cn_stmt_t *st)
{
    st->kind = CN_ST_CREATE_TABLE;
    st->if_not_exists = cp_accept_if_not_exists(p);
    if (cp_qualified(p, &st->ks, &st->name) != 0 || cp_expect_punct(p, '(') != 0) {
        return -1;
    }
    do {
        if (cp_is_kw(cp_peek(p), "primary") && cp_is_kw(cp_peek2(p), "key")) {
            p->pos += 2;
            if (st->n_pk > 0) {
                return cp_fail(p, "multiple PRIMARY KEYs specified");
            }
            if (cp_expect_punct(p, '(') != 0) {
                return -1;
            }
            if (cp_accept_punct(p, '(')) {
                do {
                    if (st->n_pk >= CN_MAX_COLS || cp_ident(p, &st->pk[st->n_pk++]) != 0) {
                        return cp_fail(p, "bad partition key");
                    }
                } while (cp_accept_punct(p, ','));
                if (cp_expect_punct(p, ')') != 0) {
                    return -1;
                }
            } else if (cp_ident(p, &st->pk[st->n_pk++]) != 0) {
                return -1;
            }
            while (cp_accept_punct(p, ',')) {
                if (st->n_ck >= CN_MAX_COLS || cp_ident(p, &st->ck[st->n_ck++]) != 0) {
                    return cp_fail(p, "bad clustering key");
                }
            }
            if (cp_expect_punct(p, ')') != 0) {
                return -1;
            }
            continue;
        }
        if (st->n_defs >= CN_MAX_COLS) {
            return cp_fail(p, "too many columns");
        }
        size_t i = st->n_defs++;
        if (cp_ident(p, &st->def_names[i]) != 0 || cp_type(p, &st->def_types[i]) != 0) {
            return -1;
        }
        if (cp_is_kw(cp_peek(p), "static")) {
            return cp_fail(p, "static columns are not supported by the test node");
        }
        if (cp_is_kw(cp_peek(p), "primary")) {
            p->pos++;
            if (cp_expect_kw(p, "key") != 0) {
                return -1;
            }
            if (st->n_pk > 0) {
                return cp_fail(p, "multiple PRIMARY KEYs specified");
            }
            st->pk[st->n_pk++] = st->def_names[i];
        }
    } while (cp_accept_punct(p, ','));
    if (cp_expect_punct(p, ')') != 0) {
        return -1;
    }
    if (cp_accept_kw(p, "with")) {
        if (cp_is_kw(cp_peek(p), "clustering") || cp_is_kw(cp_peek(p), "compact")) {
            return cp_fail(p,
                           "WITH %s is not supported by the test node (rows are kept in "
                           "ascending clustering order)",
                           cp_peek(p)->s);
        }
        return cp_skip_rest(p);
    }
    return 0;
}

static int cp_using(cp_t *p, cn_stmt_t *st)
{
    if (!cp_accept_kw(p, "using")) {
        return 0;
    }
    do {
        if (cp_accept_kw(p, "ttl")) {
            st->has_ttl = true;
            if (cp_term(p, &st->ttl, "[ttl]", CN_MARK_TTL) != 0) {
                return -1;
            }
        } else if (cp_accept_kw(p, "timestamp")) {
            st->has_timestamp = true;
            if (cp_term(p, &st->timestamp, "[timestamp]", CN_MARK_TIMESTAMP) != 0) {
                return -1;
            }
        } else {
            return cp_fail(p, "line 1: mismatched input '%s' expecting TTL or TIMESTAMP",
                           cp_peek(p)->s);
        }
    } while (cp_accept_kw(p, "and"));
    return 0;
}

static int cp_where(cp_t *p, cn_stmt_t *st)
{
    if (!cp_accept_kw(p, "where")) {
        return 0;
    }
    do {
        if (st->n_where >= CN_MAX_COLS) {
            return cp_fail(p, "too many WHERE relations");
        }
        cn_where_t *w = &st->where[st->n_where++];
        if (cp_ident(p, &w->col) != 0) {
            return -1;
        }
        if (!cp_accept_punct(p, '=')) {
            return cp_fail(p,
                           "line 1: only '=' relations are supported by the test node (got '%s')",
                           cp_peek(p)->s);
        }
        if (cp_term(p, &w->term, w->col, 0) != 0) {
            return -1;
        }
    } while (cp_accept_kw(p, "and"));
    return 0;
}

static int cp_insert(cp_t *p, cn_stmt_t *st)
{
    st->kind = CN_ST_INSERT;
    if (cp_expect_kw(p, "into") != 0 || cp_qualified(p, &st->ks, &st->name) != 0 ||
        cp_expect_punct(p, '(') != 0) {
        return -1;
    }
    do {
        if (st->n_cols >= CN_MAX_COLS || cp_ident(p, &st->cols[st->n_cols++]) != 0) {
            return cp_fail(p, "bad column list");
        }
    } while (cp_accept_punct(p, ','));
    if (cp_expect_punct(p, ')') != 0 || cp_expect_kw(p, "values") != 0 ||
        cp_expect_punct(p, '(') != 0) {
        return -1;
    }
    size_t nv = 0;
    do {
        if (nv >= st->n_cols) {
            return cp_fail(p, "Unmatched column names/values");
        }
        if (cp_term(p, &st->vals[nv], st->cols[nv], 0) != 0) {
            return -1;
        }
        nv++;
    } while (cp_accept_punct(p, ','));
    if (nv != st->n_cols) {
        return cp_fail(p, "Unmatched column names/values");
    }
    if (cp_expect_punct(p, ')') != 0) {
        return -1;
    }
    if (cp_accept_if_not_exists(p)) {
        return cp_fail(p, "INSERT ... IF NOT EXISTS (lightweight transactions) is not supported "
                          "by the test node");
    }
    return cp_using(p, st);
}

static int cp_update(cp_t *p, cn_stmt_t *st)
{
    st->kind = CN_ST_UPDATE;
    if (cp_qualified(p, &st->ks, &st->name) != 0 || cp_using(p, st) != 0 ||
        cp_expect_kw(p, "set") != 0) {
        return -1;
    }
    do {
        if (st->n_sets >= CN_MAX_COLS) {
            return cp_fail(p, "too many assignments");
        }
        cn_assign_t *s = &st->sets[st->n_sets++];
        if (cp_ident(p, &s->col) != 0 || cp_expect_punct(p, '=') != 0) {
            return -1;
        }
        const cn_tok_t *t = cp_peek(p);
        const cn_tok_t *t2 = cp_peek2(p);
        if ((t->kind == CN_T_IDENT || t->kind == CN_T_QIDENT) && strcmp(t->s, s->col) == 0 &&
            t2->kind == CN_T_PUNCT && (t2->c == '+' || t2->c == '-')) {
            s->op = t2->c == '+' ? CN_OP_ADD : CN_OP_SUB;
            p->pos += 2;
        } else {
            s->op = CN_OP_SET;
        }
        if (cp_term(p, &s->term, s->col, 0) != 0) {
            return -1;
        }
    } while (cp_accept_punct(p, ','));
    if (cp_where(p, st) != 0) {
        return -1;
    }
    if (st->n_where == 0) {
        return cp_fail(p, "line 1: mismatched input '%s' expecting K_WHERE", cp_peek(p)->s);
    }
    if (cp_is_kw(cp_peek(p), "if")) {
        return cp_fail(p, "conditional updates are not supported by the test node");
    }
    return 0;
}

static int cp_delete(cp_t *p, cn_stmt_t *st)
{
    st->kind = CN_ST_DELETE;
    if (cp_expect_kw(p, "from") != 0 || cp_qualified(p, &st->ks, &st->name) != 0 ||
        cp_using(p, st) != 0 || cp_where(p, st) != 0) {
        return -1;
    }
    if (st->n_where == 0) {
        return cp_fail(p, "line 1: mismatched input '%s' expecting K_WHERE", cp_peek(p)->s);
    }
    return 0;
}

static int cp_select(cp_t *p, cn_stmt_t *st)
{
    st->kind = CN_ST_SELECT;
    if (cp_is_kw(cp_peek(p), "json") || cp_is_kw(cp_peek(p), "distinct")) {
        return cp_fail(p, "SELECT %s is not supported by the test node", cp_peek(p)->s);
    }
    if (cp_accept_punct(p, '*')) {
        st->star = true;
    } else {
        do {
            if (st->n_cols >= CN_MAX_COLS || cp_ident(p, &st->cols[st->n_cols]) != 0) {
                return cp_fail(p, "bad selection");
            }
            if (cp_peek(p)->kind == CN_T_PUNCT && cp_peek(p)->c == '(') {
                return cp_fail(p, "functions in selections (%s) are not supported by the test node",
                               st->cols[st->n_cols]);
            }
            st->n_cols++;
            if (cp_is_kw(cp_peek(p), "as")) {
                return cp_fail(p, "aliases are not supported by the test node");
            }
        } while (cp_accept_punct(p, ','));
    }
    if (cp_expect_kw(p, "from") != 0 || cp_qualified(p, &st->ks, &st->name) != 0 ||
        cp_where(p, st) != 0) {
        return -1;
    }
    if (cp_accept_kw(p, "limit")) {
        st->has_limit = true;
        if (cp_term(p, &st->limit, "[limit]", CN_MARK_LIMIT) != 0) {
            return -1;
        }
    }
    if (cp_accept_kw(p, "allow")) {
        return cp_expect_kw(p, "filtering");
    }
    return 0;
}

/* WITH replication = {'k': 'v', ...} [AND durable_writes = true|false] */
static int cp_keyspace_options(cp_t *p, cn_stmt_t *st)
{
    st->durable_writes = -1;
    do {
        const char *opt = NULL;
        if (cp_ident(p, &opt) != 0 || cp_expect_punct(p, '=') != 0) {
            return -1;
        }
        if (strcmp(opt, "replication") == 0) {
            if (cp_expect_punct(p, '{') != 0) {
                return -1;
            }
            do {
                const cn_tok_t *k = cp_peek(p);
                if (k->kind != CN_T_STRING || st->n_repl >= SL_ARRAY_LEN(st->repl_keys)) {
                    return cp_fail(p, "line 1: bad replication map at '%s'", k->s);
                }
                p->pos++;
                if (cp_expect_punct(p, ':') != 0) {
                    return -1;
                }
                const cn_tok_t *v = cp_peek(p);
                if (v->kind != CN_T_STRING && v->kind != CN_T_NUMBER) {
                    return cp_fail(p, "line 1: bad replication value '%s'", v->s);
                }
                p->pos++;
                st->repl_keys[st->n_repl] = k->s;
                st->repl_vals[st->n_repl++] = v->s;
            } while (cp_accept_punct(p, ','));
            if (cp_expect_punct(p, '}') != 0) {
                return -1;
            }
        } else if (strcmp(opt, "durable_writes") == 0) {
            const cn_tok_t *v = cp_peek(p);
            if (!cp_is_kw(v, "true") && !cp_is_kw(v, "false")) {
                return cp_fail(p, "line 1: durable_writes must be true or false, not '%s'", v->s);
            }
            st->durable_writes = cp_is_kw(v, "true");
            p->pos++;
        } else {
            return cp_fail(p, "line 1: unknown keyspace property '%s'", opt);
        }
    } while (cp_accept_kw(p, "and"));
    return 0;
}

int cn_parse(const char *q, size_t n, sl_arena_t *a, cn_stmt_t *out, char *err, size_t errlen)
{
    /* Tokens are written as they are read (toks[n] is the end): zeroing the
     * whole 4096-token array here cost more than the rest of an EXECUTE. */
    cp_t *p = sl_arena_alloc(a, sizeof(*p));
    p->n = 0;
    p->pos = 0;
    memset(out, 0, sizeof(*out));
    p->a = a;
    p->err = err;
    p->errlen = errlen;
    p->st = out;
    err[0] = '\0';
    if (cp_tokenize(p, q, n) != 0) {
        return -1;
    }
    int rc = -1;
    if (cp_accept_kw(p, "create")) {
        if (cp_accept_kw(p, "keyspace") || cp_accept_kw(p, "schema")) {
            out->kind = CN_ST_CREATE_KEYSPACE;
            out->if_not_exists = cp_accept_if_not_exists(p);
            rc = cp_ident(p, &out->name);
            if (rc == 0) {
                rc = cp_expect_kw(p, "with");
            }
            if (rc == 0) {
                rc = cp_keyspace_options(p, out);
            }
        } else if (cp_accept_kw(p, "table") || cp_accept_kw(p, "columnfamily")) {
            rc = cp_create_table(p, out);
        } else {
            rc = cp_fail(p, "CREATE %s is not supported by the test node", cp_peek(p)->s);
        }
    } else if (cp_accept_kw(p, "use")) {
        out->kind = CN_ST_USE;
        rc = cp_ident(p, &out->name);
    } else if (cp_accept_kw(p, "insert")) {
        rc = cp_insert(p, out);
    } else if (cp_accept_kw(p, "update")) {
        rc = cp_update(p, out);
    } else if (cp_accept_kw(p, "delete")) {
        rc = cp_delete(p, out);
    } else if (cp_accept_kw(p, "select")) {
        rc = cp_select(p, out);
    } else {
        rc = cp_fail(p,
                     "line 1: statement '%s' is not supported by the test node "
                     "(CREATE KEYSPACE/TABLE, USE, INSERT, UPDATE, DELETE, SELECT are)",
                     cp_peek(p)->s);
    }
    if (rc != 0) {
        return -1;
    }
    cp_accept_punct(p, ';');
    if (cp_peek(p)->kind != CN_T_END) {
        return cp_fail(p, "line 1: extraneous input '%s' at the end of the statement",
                       cp_peek(p)->s);
    }
    return 0;
}

int cn_type_parse(const char *name, cn_type_t *out)
{
    static const struct {
        const char *name;
        uint16_t id;
    } types[] = {
        {"ascii", SL_CQL_COL_ASCII},         {"bigint", SL_CQL_COL_BIGINT},
        {"blob", SL_CQL_COL_BLOB},           {"boolean", SL_CQL_COL_BOOLEAN},
        {"counter", SL_CQL_COL_COUNTER},     {"double", SL_CQL_COL_DOUBLE},
        {"float", SL_CQL_COL_FLOAT},         {"int", SL_CQL_COL_INT},
        {"timestamp", SL_CQL_COL_TIMESTAMP}, {"uuid", SL_CQL_COL_UUID},
        {"text", SL_CQL_COL_VARCHAR},        {"varchar", SL_CQL_COL_VARCHAR},
        {"timeuuid", SL_CQL_COL_TIMEUUID},   {"inet", SL_CQL_COL_INET},
        {"date", SL_CQL_COL_DATE},           {"time", SL_CQL_COL_TIME},
        {"smallint", SL_CQL_COL_SMALLINT},   {"tinyint", SL_CQL_COL_TINYINT},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(types); i++) {
        if (strcasecmp(name, types[i].name) == 0) {
            out->id = types[i].id;
            out->p1 = out->p2 = 0;
            return 0;
        }
    }
    return -1;
}
