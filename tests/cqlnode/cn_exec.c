/* The node's state: keyspaces, tables held in memory (rows hashed by primary
 * key), prepared statements; statement execution and RESULT bodies. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "cql/murmur3.h"
#include "cqlnode.h"

typedef struct ce_cell {
    uint8_t *p;  /* owned */
    int32_t len; /* -1: null */
} ce_cell_t;

typedef struct ce_row {
    ce_cell_t *cells; /* one per column */
    int64_t token;
    uint64_t hash;
} ce_row_t;

enum { CE_REGULAR = 0, CE_PK, CE_CK };

typedef struct ce_col {
    char *name;
    cn_type_t type;
    int kind;
} ce_col_t;

typedef struct ce_table {
    char *ks, *name;
    ce_col_t cols[CN_MAX_COLS]; /* partition key, clustering, then regular columns by name */
    int ncols;
    int npk, nck; /* cols[0..npk-1] are the partition key, then nck clustering columns */
    bool counter;
    ce_row_t **rows;
    size_t nrows, cap;
    size_t *slots; /* open addressing: row index + 1, 0 empty */
    size_t nslots;
} ce_table_t;

typedef struct ce_prep {
    uint8_t id[16];
    char *query;
    size_t qlen;
    char *ks;
    /* The statement parsed once at PREPARE (parsing is pure, so EXECUTE runs
     * the same parse without redoing it); st lives in *arena. Owned. */
    sl_arena_t *arena;
    cn_stmt_t *st;
} ce_prep_t;

static struct {
    char **ks;
    size_t nks;
    ce_table_t **tables;
    size_t ntables;
    ce_prep_t *preps;
    size_t nprep, capprep;
    ce_row_t *local_row;
    bool internal; /* writes to system tables allowed */
} ce;

cn_stats_t cn_stats;

int cn_fail(cn_err_t *err, int32_t code, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static bool ce_is_system(const char *ks)
{
    return strcmp(ks, "system") == 0 || strncmp(ks, "system_", 7) == 0;
}

static bool ce_ks_exists(const char *ks)
{
    for (size_t i = 0; i < ce.nks; i++) {
        if (strcmp(ce.ks[i], ks) == 0) {
            return true;
        }
    }
    return false;
}

static ce_table_t *ce_table_find(const char *ks, const char *name)
{
    for (size_t i = 0; i < ce.ntables; i++) {
        if (strcmp(ce.tables[i]->ks, ks) == 0 && strcmp(ce.tables[i]->name, name) == 0) {
            return ce.tables[i];
        }
    }
    return NULL;
}

static int ce_col_find(const ce_table_t *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++) {
        if (strcmp(t->cols[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static void ce_uuid_random(uint8_t out[16])
{
    size_t got = 0;
    while (got < 16) {
        ssize_t r = getrandom(out + got, 16 - got, 0);
        if (r < 0 && errno != EINTR) {
            sl_fatal("getrandom: %s", strerror(errno));
        }
        got += r > 0 ? (size_t)r : 0;
    }
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

static const char *ce_type_name(uint16_t id)
{
    switch (id) {
    case SL_CQL_COL_ASCII:
        return "ascii";
    case SL_CQL_COL_BIGINT:
        return "bigint";
    case SL_CQL_COL_BLOB:
        return "blob";
    case SL_CQL_COL_BOOLEAN:
        return "boolean";
    case SL_CQL_COL_COUNTER:
        return "counter";
    case SL_CQL_COL_DOUBLE:
        return "double";
    case SL_CQL_COL_FLOAT:
        return "float";
    case SL_CQL_COL_INT:
        return "int";
    case SL_CQL_COL_TIMESTAMP:
        return "timestamp";
    case SL_CQL_COL_UUID:
        return "uuid";
    case SL_CQL_COL_VARCHAR:
        return "text";
    case SL_CQL_COL_TIMEUUID:
        return "timeuuid";
    case SL_CQL_COL_INET:
        return "inet";
    case SL_CQL_COL_DATE:
        return "date";
    case SL_CQL_COL_TIME:
        return "time";
    case SL_CQL_COL_SMALLINT:
        return "smallint";
    case SL_CQL_COL_TINYINT:
        return "tinyint";
    case SL_CQL_COL_LIST:
        return "list";
    case SL_CQL_COL_SET:
        return "set";
    case SL_CQL_COL_MAP:
        return "map";
    default:
        return "?";
    }
}

static void ce_wr_type(sl_cql_wr_t *w, cn_type_t t)
{
    sl_cql_wr_option(w, t.id);
    if (t.id == SL_CQL_COL_LIST || t.id == SL_CQL_COL_SET) {
        sl_cql_wr_option(w, t.p1);
    } else if (t.id == SL_CQL_COL_MAP) {
        sl_cql_wr_option(w, t.p1);
        sl_cql_wr_option(w, t.p2);
    }
}

static void ce_wr_str(sl_cql_wr_t *w, const char *s)
{
    sl_cql_wr_string(w, s, strlen(s));
}

/* ---- Values ------------------------------------------------------------------------------ */

/* The fixed size of a type's values, or 0 for variable-size types. */
static int ce_fixed_size(uint16_t id)
{
    switch (id) {
    case SL_CQL_COL_INT:
    case SL_CQL_COL_FLOAT:
    case SL_CQL_COL_DATE:
        return 4;
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
    case SL_CQL_COL_TIMESTAMP:
    case SL_CQL_COL_TIME:
    case SL_CQL_COL_DOUBLE:
        return 8;
    case SL_CQL_COL_BOOLEAN:
    case SL_CQL_COL_TINYINT:
        return 1;
    case SL_CQL_COL_SMALLINT:
        return 2;
    case SL_CQL_COL_UUID:
    case SL_CQL_COL_TIMEUUID:
        return 16;
    default:
        return 0;
    }
}

static int ce_check_value(const ce_col_t *c, sl_cql_bytes_t v, cn_err_t *err)
{
    if (v.len <= 0) {
        return 0;
    }
    int fixed = ce_fixed_size(c->type.id);
    if (fixed != 0 && v.len != fixed) {
        return cn_fail(err, SL_CQL_ERR_INVALID, "Expected %d or 0 byte %s for column %s (%d)",
                       fixed, ce_type_name(c->type.id), c->name, (int)v.len);
    }
    if (c->type.id == SL_CQL_COL_INET && v.len != 4 && v.len != 16) {
        return cn_fail(err, SL_CQL_ERR_INVALID, "Invalid inet value for column %s (%d bytes)",
                       c->name, (int)v.len);
    }
    return 0;
}

static void ce_put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t ce_get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static int ce_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 'YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]][Z]' as UTC: *days and *ms within the day. */
static int ce_parse_datetime(const char *s, int64_t *days, int64_t *ms, bool date_only)
{
    int y, mo, d, n = 0;
    if (sscanf(s, "%d-%d-%d%n", &y, &mo, &d, &n) != 3 || mo < 1 || mo > 12 || d < 1 || d > 31) {
        return -1;
    }
    *days = sl_cql_date_days(y, mo, d);
    *ms = 0;
    s += n;
    if (*s == '\0') {
        return 0;
    }
    if (date_only || (*s != ' ' && *s != 'T')) {
        return -1;
    }
    int h, mi, sec = 0, m2 = 0;
    if (sscanf(s + 1, "%d:%d%n", &h, &mi, &m2) != 2) {
        return -1;
    }
    s += 1 + m2;
    double frac = 0;
    if (*s == ':') {
        char *end;
        double v = strtod(s + 1, &end);
        sec = (int)v;
        frac = v - sec;
        s = end;
    }
    if (*s == 'Z') {
        s++;
    } else if (strcmp(s, "+0000") == 0) {
        s += 5;
    }
    if (*s != '\0') {
        return -1;
    }
    *ms = ((int64_t)h * 3600 + mi * 60 + sec) * 1000 + (int64_t)llround(frac * 1000);
    return 0;
}

/* Converts a literal to a value of c's type; the bytes live in arena a. */
static int ce_literal(const ce_col_t *c, const cn_tok_t *lit, sl_arena_t *a, sl_cql_bytes_t *out,
                      cn_err_t *err)
{
    uint16_t id = c->type.id;
    out->len = -1;
    out->ptr = NULL;
    if (lit->kind == CN_T_IDENT && strcmp(lit->s, "null") == 0) {
        return 0;
    }
    uint8_t *p = sl_arena_alloc(a, lit->n + 16);
    int fixed = ce_fixed_size(id);
    if (lit->kind == CN_T_NUMBER &&
        (id == SL_CQL_COL_INT || id == SL_CQL_COL_BIGINT || id == SL_CQL_COL_COUNTER ||
         id == SL_CQL_COL_SMALLINT || id == SL_CQL_COL_TINYINT || id == SL_CQL_COL_TIMESTAMP ||
         id == SL_CQL_COL_TIME || id == SL_CQL_COL_DATE)) {
        char *end;
        errno = 0;
        long long v = strtoll(lit->s, &end, 10);
        int bits = fixed * 8;
        bool ok = errno == 0 && *end == '\0';
        if (ok && bits < 64 && id != SL_CQL_COL_DATE) {
            ok = v >= -(1LL << (bits - 1)) && v < (1LL << (bits - 1));
        } else if (ok && id == SL_CQL_COL_DATE) {
            ok = v >= 0 && v <= (long long)UINT32_MAX;
        }
        if (!ok) {
            return cn_fail(err, SL_CQL_ERR_INVALID, "Invalid %s literal %s for column %s",
                           ce_type_name(id), lit->s, c->name);
        }
        ce_put_be(p, (uint64_t)v, fixed);
        out->ptr = p;
        out->len = fixed;
        return 0;
    }
    if ((lit->kind == CN_T_NUMBER ||
         (lit->kind == CN_T_IDENT && (!strcmp(lit->s, "nan") || !strcmp(lit->s, "infinity")))) &&
        (id == SL_CQL_COL_DOUBLE || id == SL_CQL_COL_FLOAT)) {
        double v = strtod(lit->s, NULL);
        uint64_t bits;
        if (id == SL_CQL_COL_DOUBLE) {
            memcpy(&bits, &v, 8);
        } else {
            float f = (float)v;
            uint32_t b32;
            memcpy(&b32, &f, 4);
            bits = b32;
        }
        ce_put_be(p, bits, fixed);
        out->ptr = p;
        out->len = fixed;
        return 0;
    }
    if (lit->kind == CN_T_IDENT && id == SL_CQL_COL_BOOLEAN &&
        (!strcmp(lit->s, "true") || !strcmp(lit->s, "false"))) {
        p[0] = lit->s[0] == 't';
        out->ptr = p;
        out->len = 1;
        return 0;
    }
    if (lit->kind == CN_T_STRING &&
        (id == SL_CQL_COL_VARCHAR || id == SL_CQL_COL_ASCII || id == SL_CQL_COL_BLOB)) {
        if (id == SL_CQL_COL_BLOB) {
            return cn_fail(err, SL_CQL_ERR_INVALID, "Invalid STRING constant for blob column %s",
                           c->name);
        }
        memcpy(p, lit->s, lit->n);
        out->ptr = p;
        out->len = (int32_t)lit->n;
        return 0;
    }
    if (lit->kind == CN_T_STRING && (id == SL_CQL_COL_DATE || id == SL_CQL_COL_TIMESTAMP)) {
        int64_t days, ms;
        if (ce_parse_datetime(lit->s, &days, &ms, id == SL_CQL_COL_DATE) != 0) {
            return cn_fail(err, SL_CQL_ERR_INVALID, "Unable to parse a %s from '%s' (column %s)",
                           ce_type_name(id), lit->s, c->name);
        }
        if (id == SL_CQL_COL_DATE) {
            ce_put_be(p, (uint64_t)(days + (1LL << 31)), 4);
        } else {
            ce_put_be(p, (uint64_t)(days * 86400000LL + ms), 8);
        }
        out->ptr = p;
        out->len = fixed;
        return 0;
    }
    if (lit->kind == CN_T_STRING && id == SL_CQL_COL_INET) {
        if (inet_pton(AF_INET, lit->s, p) == 1) {
            out->len = 4;
        } else if (inet_pton(AF_INET6, lit->s, p) == 1) {
            out->len = 16;
        } else {
            return cn_fail(err, SL_CQL_ERR_INVALID, "Unable to make inet address from '%s'",
                           lit->s);
        }
        out->ptr = p;
        return 0;
    }
    if (lit->kind == CN_T_UUID && (id == SL_CQL_COL_UUID || id == SL_CQL_COL_TIMEUUID)) {
        size_t k = 0;
        for (size_t i = 0; i < 36; i++) {
            if (lit->s[i] == '-') {
                continue;
            }
            if ((k & 1) == 0) {
                p[k / 2] = (uint8_t)(ce_hex(lit->s[i]) << 4);
            } else {
                p[k / 2] |= (uint8_t)ce_hex(lit->s[i]);
            }
            k++;
        }
        out->ptr = p;
        out->len = 16;
        return 0;
    }
    if (lit->kind == CN_T_BLOB && id == SL_CQL_COL_BLOB && lit->n % 2 == 0) {
        for (size_t i = 0; i < lit->n / 2; i++) {
            p[i] = (uint8_t)(ce_hex(lit->s[2 * i]) << 4 | ce_hex(lit->s[2 * i + 1]));
        }
        out->ptr = p;
        out->len = (int32_t)(lit->n / 2);
        return 0;
    }
    return cn_fail(err, SL_CQL_ERR_INVALID, "Invalid literal %s for column %s of type %s", lit->s,
                   c->name, ce_type_name(id));
}

/* ---- Execution context -------------------------------------------------------------------- */

typedef struct ce_ctx {
    const cn_stmt_t *st;
    ce_table_t *t;
    sl_arena_t *a;
    cn_err_t *err;
    sl_cql_bytes_t mv[CN_MAX_TERMS]; /* value of each marker */
    bool bound;                      /* mv holds the request's values */
} ce_ctx_t;

/* The value of a term for column c (checked). Unset values have len -2. */
static int ce_term(ce_ctx_t *x, const cn_term_t *term, const ce_col_t *c, sl_cql_bytes_t *out)
{
    if (term->kind == CN_TERM_LIT) {
        return ce_literal(c, &term->lit, x->a, out, x->err);
    }
    *out = x->mv[term->marker];
    return ce_check_value(c, *out, x->err);
}

static int ce_bind_values(ce_ctx_t *x, const cn_request_t *req)
{
    const cn_stmt_t *st = x->st;
    if (req->names != NULL) {
        for (int i = 0; i < st->n_markers; i++) {
            const char *want = st->marker_col[i];
            bool found = false;
            for (size_t j = 0; j < req->n_values && !found; j++) {
                if (strcasecmp(req->names[j], want) == 0) {
                    x->mv[i] = req->values[j];
                    found = true;
                }
            }
            if (!found) {
                return cn_fail(x->err, SL_CQL_ERR_INVALID, "Missing value for bind variable %s",
                               want);
            }
        }
        return 0;
    }
    if ((size_t)st->n_markers != req->n_values) {
        return cn_fail(x->err, SL_CQL_ERR_INVALID,
                       "There were %d markers(?) in CQL but %zu bound variables", st->n_markers,
                       req->n_values);
    }
    for (int i = 0; i < st->n_markers; i++) {
        x->mv[i] = req->values[i];
    }
    return 0;
}

static int ce_resolve_table(ce_ctx_t *x, const char *session_ks)
{
    const char *ks = x->st->ks != NULL ? x->st->ks : session_ks;
    if (ks == NULL || ks[0] == '\0') {
        return cn_fail(x->err, SL_CQL_ERR_INVALID,
                       "No keyspace has been specified. USE a keyspace, or explicitly specify "
                       "keyspace.tablename");
    }
    x->t = ce_table_find(ks, x->st->name);
    if (x->t == NULL) {
        if (!ce_ks_exists(ks)) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Keyspace %s does not exist", ks);
        }
        return cn_fail(x->err, SL_CQL_ERR_INVALID, "table %s does not exist", x->st->name);
    }
    return 0;
}

static int ce_col_or_fail(ce_ctx_t *x, const char *name)
{
    int i = ce_col_find(x->t, name);
    if (i < 0) {
        cn_fail(x->err, SL_CQL_ERR_INVALID, "Undefined column name %s in table %s.%s", name,
                x->t->ks, x->t->name);
    }
    return i;
}

/* ---- Rows --------------------------------------------------------------------------------- */

static uint64_t ce_key_hash(const ce_table_t *t, const sl_cql_bytes_t *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < t->npk + t->nck; i++) {
        int32_t len = key[i].len;
        for (int k = 0; k < 4; k++) {
            h = (h ^ ((uint32_t)len >> (8 * k) & 0xff)) * 1099511628211ULL;
        }
        for (int32_t k = 0; k < len; k++) {
            h = (h ^ key[i].ptr[k]) * 1099511628211ULL;
        }
    }
    return h;
}

static bool ce_key_eq(const ce_table_t *t, const ce_row_t *r, const sl_cql_bytes_t *key)
{
    for (int i = 0; i < t->npk + t->nck; i++) {
        if (r->cells[i].len != key[i].len ||
            (key[i].len > 0 && memcmp(r->cells[i].p, key[i].ptr, (size_t)key[i].len) != 0)) {
            return false;
        }
    }
    return true;
}

static void ce_index_rebuild(ce_table_t *t)
{
    size_t want = 16;
    while (want < t->nrows * 2 + 2) {
        want *= 2;
    }
    free(t->slots);
    t->slots = sl_xcalloc(want, sizeof(size_t));
    t->nslots = want;
    for (size_t i = 0; i < t->nrows; i++) {
        size_t s = t->rows[i]->hash & (want - 1);
        while (t->slots[s] != 0) {
            s = (s + 1) & (want - 1);
        }
        t->slots[s] = i + 1;
    }
}

static int64_t ce_token(const ce_table_t *t, const sl_cql_bytes_t *key)
{
    if (t->npk == 1) {
        return sl_cql_murmur3_token(key[0].ptr, key[0].len > 0 ? (size_t)key[0].len : 0);
    }
    sl_buf_t b = SL_BUF_INIT;
    for (int i = 0; i < t->npk; i++) {
        size_t n = key[i].len > 0 ? (size_t)key[i].len : 0;
        uint8_t l[2] = {(uint8_t)(n >> 8), (uint8_t)n};
        sl_buf_append(&b, l, 2);
        sl_buf_append(&b, key[i].ptr, n);
        sl_buf_putc(&b, 0);
    }
    int64_t tok = sl_cql_murmur3_token(b.data, b.len);
    sl_buf_free(&b);
    return tok;
}

static void ce_cell_set(ce_cell_t *c, sl_cql_bytes_t v)
{
    free(c->p);
    c->p = NULL;
    c->len = -1;
    if (v.len >= 0) {
        c->p = sl_xmalloc((size_t)v.len + 1);
        if (v.len > 0) {
            memcpy(c->p, v.ptr, (size_t)v.len);
        }
        c->len = v.len;
    }
}

/* Finds the row with primary key key (npk + nck values), creating it if asked. */
static ce_row_t *ce_row_get(ce_table_t *t, const sl_cql_bytes_t *key, bool create)
{
    uint64_t h = ce_key_hash(t, key);
    if (t->nslots > 0) {
        size_t s = h & (t->nslots - 1);
        while (t->slots[s] != 0) {
            ce_row_t *r = t->rows[t->slots[s] - 1];
            if (r->hash == h && ce_key_eq(t, r, key)) {
                return r;
            }
            s = (s + 1) & (t->nslots - 1);
        }
    }
    if (!create) {
        return NULL;
    }
    ce_row_t *r = sl_xcalloc(1, sizeof(*r));
    r->cells = sl_xcalloc((size_t)t->ncols, sizeof(ce_cell_t));
    for (int i = 0; i < t->ncols; i++) {
        r->cells[i].len = -1;
    }
    for (int i = 0; i < t->npk + t->nck; i++) {
        ce_cell_set(&r->cells[i], key[i]);
    }
    r->hash = h;
    r->token = ce_token(t, key);
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->rows = sl_xrealloc(t->rows, t->cap * sizeof(*t->rows));
    }
    t->rows[t->nrows++] = r;
    if (t->nrows * 2 + 2 > t->nslots) {
        ce_index_rebuild(t);
    } else {
        size_t s = h & (t->nslots - 1);
        while (t->slots[s] != 0) {
            s = (s + 1) & (t->nslots - 1);
        }
        t->slots[s] = t->nrows;
    }
    return r;
}

static void ce_row_free(const ce_table_t *t, ce_row_t *r)
{
    for (int i = 0; i < t->ncols; i++) {
        free(r->cells[i].p);
    }
    free(r->cells);
    free(r);
}

/* Fills key[] with the primary key from the statement's WHERE (all of it
 * required unless prefix_ok, which allows a clustering prefix; *nkey says how
 * many were given). Other WHERE columns are refused. */
static int ce_where_key(ce_ctx_t *x, sl_cql_bytes_t *key, int *nkey, bool prefix_ok)
{
    const ce_table_t *t = x->t;
    bool have[CN_MAX_COLS] = {false};
    for (size_t i = 0; i < x->st->n_where; i++) {
        int c = ce_col_or_fail(x, x->st->where[i].col);
        if (c < 0) {
            return -1;
        }
        if (t->cols[c].kind == CE_REGULAR) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID,
                           "Non PRIMARY KEY columns found in where clause: %s", t->cols[c].name);
        }
        if (ce_term(x, &x->st->where[i].term, &t->cols[c], &key[c]) != 0) {
            return -1;
        }
        if (key[c].len < 0) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Invalid %s value for column %s",
                           key[c].len == -2 ? "unset" : "null", t->cols[c].name);
        }
        have[c] = true;
    }
    int n = 0;
    while (n < t->npk + t->nck && have[n]) {
        n++;
    }
    for (int i = 0; i < t->npk; i++) {
        if (!have[i]) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Some partition key parts are missing: %s",
                           t->cols[i].name);
        }
    }
    for (int i = n; i < t->npk + t->nck; i++) {
        if (have[i] || !prefix_ok) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Some clustering keys are missing: %s",
                           t->cols[n].name);
        }
    }
    *nkey = n;
    return 0;
}

/* ---- Statements --------------------------------------------------------------------------- */

/* A new schema_version for this node; its peers report the same one, so a
 * driver waiting for schema agreement never waits. */
static void ce_schema_changed(void)
{
    if (ce.local_row != NULL) {
        uint8_t v[16];
        ce_uuid_random(v);
        ce_cell_set(
            &ce.local_row->cells[ce_col_find(ce_table_find("system", "local"), "schema_version")],
            (sl_cql_bytes_t){v, 16});
        ce_table_t *peers = ce_table_find("system", "peers");
        int col = peers != NULL ? ce_col_find(peers, "schema_version") : -1;
        for (size_t i = 0; col >= 0 && i < peers->nrows; i++) {
            ce_cell_set(&peers->rows[i]->cells[col], (sl_cql_bytes_t){v, 16});
        }
    }
}

static void ce_wr_schema_change(sl_buf_t *out, const char *target, const char *ks, const char *name)
{
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, out);
    sl_cql_wr_int(&w, SL_CQL_RESULT_SCHEMA_CHANGE);
    ce_wr_str(&w, "CREATED");
    ce_wr_str(&w, target);
    ce_wr_str(&w, ks);
    if (name != NULL) {
        ce_wr_str(&w, name);
    }
}

static void ce_wr_void(sl_buf_t *out)
{
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, out);
    sl_cql_wr_int(&w, SL_CQL_RESULT_VOID);
}

/* ---- system_schema ------------------------------------------------------------------------- */

/* Runs an internal statement with bound values; failing is a bug. */
static void ce_internal_bound(const char *q, const sl_cql_bytes_t *vals, size_t n)
{
    bool was = ce.internal;
    sl_buf_t out = SL_BUF_INIT;
    cn_err_t err;
    cn_request_t req = {.keyspace = "", .values = vals, .n_values = n};
    ce.internal = true;
    if (cn_exec_query(q, strlen(q), &req, &out, NULL, &err) != 0) {
        sl_fatal("cqlnode: internal statement failed: %s: %s", err.msg, q);
    }
    ce.internal = was;
    sl_buf_free(&out);
}

/* Serializes a list/set (count items) or a map (count pairs, items k0 v0 k1 v1 ...). */
static sl_cql_bytes_t ce_ser(sl_buf_t *b, const char *const *items, size_t n_items, size_t count)
{
    sl_cql_wr_t w;
    b->len = 0;
    sl_cql_wr_init(&w, b);
    sl_cql_wr_int(&w, (int32_t)count);
    for (size_t i = 0; i < n_items; i++) {
        sl_cql_wr_bytes(&w, (sl_cql_bytes_t){(const uint8_t *)items[i], (int32_t)strlen(items[i])});
    }
    return (sl_cql_bytes_t){(const uint8_t *)b->data, (int32_t)b->len};
}

static sl_cql_bytes_t ce_text(const char *s)
{
    return (sl_cql_bytes_t){(const uint8_t *)s, (int32_t)strlen(s)};
}

static void ce_type_string(char *out, size_t n, cn_type_t t)
{
    if (t.id == SL_CQL_COL_MAP) {
        snprintf(out, n, "map<%s, %s>", ce_type_name(t.p1), ce_type_name(t.p2));
    } else if (t.id == SL_CQL_COL_LIST || t.id == SL_CQL_COL_SET) {
        snprintf(out, n, "%s<%s>", ce_type_name(t.id), ce_type_name(t.p1));
    } else {
        snprintf(out, n, "%s", ce_type_name(t.id));
    }
}

static void ce_schema_keyspace_row(const char *ks, const cn_stmt_t *st)
{
    if (ce_table_find("system_schema", "keyspaces") == NULL) {
        return;
    }
    const char *items[2 * 16];
    size_t n = 0;
    for (size_t i = 0; i < st->n_repl && i < 16; i++) {
        const char *v = st->repl_vals[i];
        if (strcmp(st->repl_keys[i], "class") == 0) {
            static const char *const full[] = {
                "org.apache.cassandra.locator.SimpleStrategy",
                "org.apache.cassandra.locator.NetworkTopologyStrategy",
                "org.apache.cassandra.locator.LocalStrategy"};
            for (size_t k = 0; k < SL_ARRAY_LEN(full); k++) {
                if (strcmp(v, strrchr(full[k], '.') + 1) == 0) {
                    v = full[k];
                }
            }
        }
        items[2 * n] = st->repl_keys[i];
        items[2 * n + 1] = v;
        n++;
    }
    sl_buf_t map = SL_BUF_INIT;
    uint8_t durable = st->durable_writes != 0;
    sl_cql_bytes_t vals[3] = {ce_text(ks), {&durable, 1}, ce_ser(&map, items, 2 * n, n)};
    ce_internal_bound("INSERT INTO system_schema.keyspaces (keyspace_name, durable_writes, "
                      "replication) VALUES (?, ?, ?)",
                      vals, 3);
    sl_buf_free(&map);
}

static void ce_schema_table_rows(const ce_table_t *t)
{
    if (ce_table_find("system_schema", "tables") == NULL ||
        ce_table_find("system_schema", "columns") == NULL) {
        return;
    }
    static const char *const caching[] = {"keys", "ALL", "rows_per_partition", "NONE"};
    static const char *const compaction[] = {
        "class",         "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
        "max_threshold", "32",
        "min_threshold", "4"};
    static const char *const compression[] = {"chunk_length_in_kb", "16", "class",
                                              "org.apache.cassandra.io.compress.LZ4Compressor"};
    const char *flags[] = {"compound", "counter"};
    sl_buf_t b[5] = {SL_BUF_INIT, SL_BUF_INIT, SL_BUF_INIT, SL_BUF_INIT, SL_BUF_INIT};
    uint8_t id[16];
    ce_uuid_random(id);
    sl_cql_bytes_t vals[8] = {
        ce_text(t->ks),
        ce_text(t->name),
        {id, 16},
        ce_ser(&b[0], flags, t->counter ? 2 : 1, t->counter ? 2 : 1),
        ce_ser(&b[1], caching, 4, 2),
        ce_ser(&b[2], compaction, 6, 3),
        ce_ser(&b[3], compression, 4, 2),
        ce_ser(&b[4], NULL, 0, 0),
    };
    ce_internal_bound(
        "INSERT INTO system_schema.tables (keyspace_name, table_name, id, flags, caching, "
        "compaction, compression, extensions, bloom_filter_fp_chance, comment, crc_check_chance, "
        "default_time_to_live, gc_grace_seconds, max_index_interval, memtable_flush_period_in_ms, "
        "min_index_interval, read_repair, speculative_retry, additional_write_policy, cdc) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, 0.01, '', 1.0, 0, 864000, 2048, 0, 128, 'BLOCKING', '99p', "
        "'99p', false)",
        vals, 8);
    for (int c = 0; c < t->ncols; c++) {
        const ce_col_t *col = &t->cols[c];
        char type[64];
        ce_type_string(type, sizeof(type), col->type);
        uint8_t pos[4];
        int32_t position = col->kind == CE_PK ? c : col->kind == CE_CK ? c - t->npk : -1;
        ce_put_be(pos, (uint64_t)(uint32_t)position, 4);
        sl_cql_bytes_t cv[8] = {
            ce_text(t->ks),
            ce_text(t->name),
            ce_text(col->name),
            ce_text(col->kind == CE_CK ? "asc" : "none"),
            ce_text(col->name),
            ce_text(col->kind == CE_PK   ? "partition_key"
                    : col->kind == CE_CK ? "clustering"
                                         : "regular"),
            {pos, 4},
            ce_text(type),
        };
        ce_internal_bound("INSERT INTO system_schema.columns (keyspace_name, table_name, "
                          "column_name, clustering_order, column_name_bytes, kind, position, "
                          "type) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          cv, 8);
    }
    for (int i = 0; i < 5; i++) {
        sl_buf_free(&b[i]);
    }
}

static int ce_create_keyspace(const cn_stmt_t *st, sl_buf_t *out, cn_err_t *err)
{
    if (ce_ks_exists(st->name)) {
        if (st->if_not_exists) {
            ce_wr_void(out);
            return 0;
        }
        snprintf(err->ks, sizeof(err->ks), "%s", st->name);
        err->table[0] = '\0';
        return cn_fail(err, SL_CQL_ERR_ALREADY_EXISTS, "Keyspace %s already exists", st->name);
    }
    if (strlen(st->name) >= CN_NAME_MAX || (ce_is_system(st->name) && !ce.internal)) {
        return cn_fail(err, SL_CQL_ERR_INVALID, "Invalid keyspace name %s", st->name);
    }
    bool has_class = false;
    for (size_t i = 0; i < st->n_repl; i++) {
        has_class = has_class || strcmp(st->repl_keys[i], "class") == 0;
    }
    if (!has_class) {
        return cn_fail(err, SL_CQL_ERR_CONFIG, "Missing replication strategy class");
    }
    ce.ks = sl_xrealloc(ce.ks, (ce.nks + 1) * sizeof(*ce.ks));
    ce.ks[ce.nks++] = sl_xstrdup(st->name);
    ce_schema_keyspace_row(st->name, st);
    ce_schema_changed();
    ce_wr_schema_change(out, "KEYSPACE", st->name, NULL);
    return 0;
}

static int ce_create_table(const cn_stmt_t *st, const char *session_ks, sl_buf_t *out,
                           cn_err_t *err)
{
    const char *ks = st->ks != NULL ? st->ks : session_ks;
    if (ks == NULL || ks[0] == '\0') {
        return cn_fail(err, SL_CQL_ERR_INVALID,
                       "No keyspace has been specified. USE a keyspace, or explicitly specify "
                       "keyspace.tablename");
    }
    if (!ce_ks_exists(ks)) {
        return cn_fail(err, SL_CQL_ERR_INVALID, "Keyspace '%s' doesn't exist", ks);
    }
    if (ce_is_system(ks) && !ce.internal) {
        return cn_fail(err, SL_CQL_ERR_UNAUTHORIZED, "System keyspace %s is not user-modifiable",
                       ks);
    }
    if (ce_table_find(ks, st->name) != NULL) {
        if (st->if_not_exists) {
            ce_wr_void(out);
            return 0;
        }
        snprintf(err->ks, sizeof(err->ks), "%s", ks);
        snprintf(err->table, sizeof(err->table), "%s", st->name);
        return cn_fail(err, SL_CQL_ERR_ALREADY_EXISTS,
                       "Cannot add already existing table \"%s\" "
                       "to keyspace \"%s\"",
                       st->name, ks);
    }
    if (st->n_pk == 0) {
        return cn_fail(err, SL_CQL_ERR_INVALID,
                       "No PRIMARY KEY specifed for table '%s' (exactly "
                       "one required)",
                       st->name);
    }
    if (strlen(st->name) >= CN_NAME_MAX) {
        return cn_fail(err, SL_CQL_ERR_INVALID, "table name too long");
    }
    /* Order: partition key, clustering columns, then the others sorted by name. */
    int order[CN_MAX_COLS], kind[CN_MAX_COLS] = {0};
    int n = 0;
    for (size_t i = 0; i < st->n_defs; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(st->def_names[i], st->def_names[j]) == 0) {
                return cn_fail(err, SL_CQL_ERR_INVALID, "Duplicate column %s", st->def_names[i]);
            }
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t nk = pass == 0 ? st->n_pk : st->n_ck;
        const char *const *keys = pass == 0 ? st->pk : st->ck;
        for (size_t k = 0; k < nk; k++) {
            int found = -1;
            for (size_t i = 0; i < st->n_defs; i++) {
                if (strcmp(st->def_names[i], keys[k]) == 0) {
                    found = (int)i;
                }
            }
            if (found < 0) {
                return cn_fail(err, SL_CQL_ERR_INVALID,
                               "Unknown definition %s referenced in "
                               "PRIMARY KEY",
                               keys[k]);
            }
            if (kind[found] != 0) {
                return cn_fail(err, SL_CQL_ERR_INVALID, "Column %s appears twice in PRIMARY KEY",
                               keys[k]);
            }
            cn_type_t ty = st->def_types[found];
            if (ty.id == SL_CQL_COL_COUNTER || (ty.p1 != 0 && !ce.internal)) {
                return cn_fail(err, SL_CQL_ERR_INVALID,
                               "Invalid %s type for PRIMARY KEY "
                               "component %s",
                               ce_type_name(ty.id), keys[k]);
            }
            kind[found] = pass == 0 ? CE_PK : CE_CK;
            order[n++] = found;
        }
    }
    int first_regular = n;
    for (size_t i = 0; i < st->n_defs; i++) {
        if (kind[i] == 0) {
            int k = n++;
            while (k > first_regular && strcmp(st->def_names[order[k - 1]], st->def_names[i]) > 0) {
                order[k] = order[k - 1];
                k--;
            }
            order[k] = (int)i;
        }
    }
    int counters = 0;
    for (int i = first_regular; i < n; i++) {
        counters += st->def_types[order[i]].id == SL_CQL_COL_COUNTER;
    }
    if (counters > 0 && counters != n - first_regular) {
        return cn_fail(err, SL_CQL_ERR_INVALID,
                       "Cannot mix counter and non counter columns in the same table");
    }
    ce_table_t *t = sl_xcalloc(1, sizeof(*t));
    t->ks = sl_xstrdup(ks);
    t->name = sl_xstrdup(st->name);
    t->ncols = n;
    t->npk = (int)st->n_pk;
    t->nck = (int)st->n_ck;
    t->counter = counters > 0;
    for (int i = 0; i < n; i++) {
        t->cols[i].name = sl_xstrdup(st->def_names[order[i]]);
        t->cols[i].type = st->def_types[order[i]];
        t->cols[i].kind = i < t->npk ? CE_PK : i < t->npk + t->nck ? CE_CK : CE_REGULAR;
    }
    ce.tables = sl_xrealloc(ce.tables, (ce.ntables + 1) * sizeof(*ce.tables));
    ce.tables[ce.ntables++] = t;
    ce_schema_table_rows(t);
    ce_schema_changed();
    ce_wr_schema_change(out, "TABLE", ks, st->name);
    return 0;
}

static int ce_check_writable(ce_ctx_t *x)
{
    if (ce_is_system(x->t->ks) && !ce.internal) {
        return cn_fail(x->err, SL_CQL_ERR_UNAUTHORIZED,
                       "Only superusers can modify %s.%s (not this test node)", x->t->ks,
                       x->t->name);
    }
    if (x->st->has_ttl && x->t->counter) {
        return cn_fail(x->err, SL_CQL_ERR_INVALID, "Cannot set ttl on counter updates");
    }
    return 0;
}

static int ce_insert(ce_ctx_t *x, sl_buf_t *out)
{
    ce_table_t *t = x->t;
    const cn_stmt_t *st = x->st;
    if (ce_check_writable(x) != 0) {
        return -1;
    }
    if (t->counter) {
        return cn_fail(x->err, SL_CQL_ERR_INVALID,
                       "INSERT statements are not allowed on counter tables, use UPDATE instead");
    }
    sl_cql_bytes_t vals[CN_MAX_COLS];
    bool have[CN_MAX_COLS] = {false};
    for (size_t i = 0; i < st->n_cols; i++) {
        int c = ce_col_or_fail(x, st->cols[i]);
        if (c < 0) {
            return -1;
        }
        if (have[c]) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Multiple definitions found for column %s",
                           st->cols[i]);
        }
        if (ce_term(x, &st->vals[i], &t->cols[c], &vals[c]) != 0) {
            return -1;
        }
        have[c] = true;
    }
    for (int c = 0; c < t->npk + t->nck; c++) {
        if (!have[c]) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Some %s key parts are missing: %s",
                           c < t->npk ? "partition" : "clustering", t->cols[c].name);
        }
        if (vals[c].len < 0) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Invalid %s value for %s key column %s",
                           vals[c].len == -2 ? "unset" : "null",
                           c < t->npk ? "partition" : "clustering", t->cols[c].name);
        }
    }
    ce_row_t *r = ce_row_get(t, vals, true);
    for (int c = t->npk + t->nck; c < t->ncols; c++) {
        if (have[c] && vals[c].len != -2) {
            ce_cell_set(&r->cells[c], vals[c]);
        }
    }
    ce_wr_void(out);
    return 0;
}

static int ce_update(ce_ctx_t *x, sl_buf_t *out)
{
    ce_table_t *t = x->t;
    const cn_stmt_t *st = x->st;
    sl_cql_bytes_t key[CN_MAX_COLS];
    int nkey;
    if (ce_check_writable(x) != 0 || ce_where_key(x, key, &nkey, false) != 0) {
        return -1;
    }
    sl_cql_bytes_t vals[CN_MAX_COLS];
    int cols[CN_MAX_COLS];
    for (size_t i = 0; i < st->n_sets; i++) {
        const cn_assign_t *s = &st->sets[i];
        int c = ce_col_or_fail(x, s->col);
        if (c < 0) {
            return -1;
        }
        const ce_col_t *col = &t->cols[c];
        if (col->kind != CE_REGULAR) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "PRIMARY KEY part %s found in SET part",
                           col->name);
        }
        bool is_counter = col->type.id == SL_CQL_COL_COUNTER;
        if (is_counter && s->op == CN_OP_SET) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID,
                           "Cannot set the value of counter column %s (counters can only be "
                           "incremented/decremented, not set)",
                           col->name);
        }
        if (!is_counter && s->op != CN_OP_SET) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID,
                           "Invalid operation (%s = %s %c ?) for non counter column %s", col->name,
                           col->name, s->op == CN_OP_ADD ? '+' : '-', col->name);
        }
        if (ce_term(x, &s->term, col, &vals[i]) != 0) {
            return -1;
        }
        if (is_counter && vals[i].len == -1) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "Invalid null value for counter increment");
        }
        cols[i] = c;
    }
    ce_row_t *r = ce_row_get(t, key, true);
    for (size_t i = 0; i < st->n_sets; i++) {
        int c = cols[i];
        if (vals[i].len == -2) {
            continue;
        }
        if (st->sets[i].op == CN_OP_SET) {
            ce_cell_set(&r->cells[c], vals[i]);
            continue;
        }
        int64_t cur = r->cells[c].len == 8 ? (int64_t)ce_get_be(r->cells[c].p, 8) : 0;
        int64_t d = vals[i].len == 8 ? (int64_t)ce_get_be(vals[i].ptr, 8) : 0;
        uint64_t sum =
            st->sets[i].op == CN_OP_ADD ? (uint64_t)cur + (uint64_t)d : (uint64_t)cur - (uint64_t)d;
        uint8_t b[8];
        ce_put_be(b, sum, 8);
        ce_cell_set(&r->cells[c], (sl_cql_bytes_t){b, 8});
    }
    ce_wr_void(out);
    return 0;
}

static int ce_delete(ce_ctx_t *x, sl_buf_t *out)
{
    ce_table_t *t = x->t;
    sl_cql_bytes_t key[CN_MAX_COLS];
    int nkey;
    if (ce_check_writable(x) != 0 || ce_where_key(x, key, &nkey, true) != 0) {
        return -1;
    }
    size_t keep = 0;
    for (size_t i = 0; i < t->nrows; i++) {
        ce_row_t *r = t->rows[i];
        bool match = true;
        for (int c = 0; c < nkey && match; c++) {
            match = r->cells[c].len == key[c].len &&
                    memcmp(r->cells[c].p, key[c].ptr, (size_t)key[c].len) == 0;
        }
        if (match) {
            ce_row_free(t, r);
        } else {
            t->rows[keep++] = r;
        }
    }
    t->nrows = keep;
    ce_index_rebuild(t);
    ce_wr_void(out);
    return 0;
}

static int ce_cmp_cell(const ce_col_t *col, const ce_cell_t *a, const ce_cell_t *b)
{
    if (a->len <= 0 || b->len <= 0) {
        return (a->len > 0) - (b->len > 0);
    }
    switch (col->type.id) {
    case SL_CQL_COL_INT:
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
    case SL_CQL_COL_TIMESTAMP:
    case SL_CQL_COL_TIME:
    case SL_CQL_COL_SMALLINT:
    case SL_CQL_COL_TINYINT: {
        int bits = a->len * 8;
        int64_t va = (int64_t)(ce_get_be(a->p, a->len) << (64 - bits)) >> (64 - bits);
        int64_t vb = (int64_t)(ce_get_be(b->p, b->len) << (64 - bits)) >> (64 - bits);
        return (va > vb) - (va < vb);
    }
    case SL_CQL_COL_DOUBLE:
    case SL_CQL_COL_FLOAT: {
        double da, db;
        if (a->len == 8) {
            uint64_t u = ce_get_be(a->p, 8), v = ce_get_be(b->p, 8);
            memcpy(&da, &u, 8);
            memcpy(&db, &v, 8);
        } else {
            uint32_t u = (uint32_t)ce_get_be(a->p, 4), v = (uint32_t)ce_get_be(b->p, 4);
            float fa, fb;
            memcpy(&fa, &u, 4);
            memcpy(&fb, &v, 4);
            da = fa;
            db = fb;
        }
        return (da > db) - (da < db);
    }
    default: {
        int r = memcmp(a->p, b->p, (size_t)SL_MIN(a->len, b->len));
        return r != 0 ? r : (a->len > b->len) - (a->len < b->len);
    }
    }
}

static int ce_cmp_rows(const void *pa, const void *pb, void *arg)
{
    const ce_table_t *t = arg;
    const ce_row_t *a = *(ce_row_t *const *)pa, *b = *(ce_row_t *const *)pb;
    if (a->token != b->token) {
        return a->token < b->token ? -1 : 1;
    }
    for (int c = 0; c < t->npk + t->nck; c++) {
        int r = ce_cmp_cell(&t->cols[c], &a->cells[c], &b->cells[c]);
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

/* Rows <metadata> for the selected columns (all columns when n is 0). */
static void ce_wr_rows_meta(sl_cql_wr_t *w, const ce_table_t *t, const int *cols, int n,
                            bool no_metadata)
{
    if (no_metadata) {
        sl_cql_wr_int(w, SL_CQL_META_NO_METADATA);
        sl_cql_wr_int(w, n);
        return;
    }
    sl_cql_wr_int(w, n > 0 ? SL_CQL_META_GLOBAL_TABLES_SPEC : 0);
    sl_cql_wr_int(w, n);
    if (n > 0) {
        ce_wr_str(w, t->ks);
        ce_wr_str(w, t->name);
    }
    for (int i = 0; i < n; i++) {
        ce_wr_str(w, t->cols[cols[i]].name);
        ce_wr_type(w, t->cols[cols[i]].type);
    }
}

static int ce_select_cols(ce_ctx_t *x, int *cols, int *n)
{
    if (x->st->star) {
        for (int i = 0; i < x->t->ncols; i++) {
            cols[i] = i;
        }
        *n = x->t->ncols;
        return 0;
    }
    for (size_t i = 0; i < x->st->n_cols; i++) {
        cols[i] = ce_col_or_fail(x, x->st->cols[i]);
        if (cols[i] < 0) {
            return -1;
        }
    }
    *n = (int)x->st->n_cols;
    return 0;
}

static int ce_select(ce_ctx_t *x, bool skip_metadata, sl_buf_t *out)
{
    ce_table_t *t = x->t;
    const cn_stmt_t *st = x->st;
    int cols[CN_MAX_COLS], n;
    if (ce_select_cols(x, cols, &n) != 0) {
        return -1;
    }
    int wcol[CN_MAX_COLS];
    sl_cql_bytes_t wval[CN_MAX_COLS];
    for (size_t i = 0; i < st->n_where; i++) {
        wcol[i] = ce_col_or_fail(x, st->where[i].col);
        if (wcol[i] < 0 || ce_term(x, &st->where[i].term, &t->cols[wcol[i]], &wval[i]) != 0) {
            return -1;
        }
        if (wval[i].len < 0) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID,
                           "Invalid %s value in condition for column %s",
                           wval[i].len == -2 ? "unset" : "null", st->where[i].col);
        }
    }
    int64_t limit = INT32_MAX;
    if (st->has_limit) {
        ce_col_t lc = {"[limit]", {SL_CQL_COL_INT, 0, 0}, 0};
        sl_cql_bytes_t lv;
        if (ce_term(x, &st->limit, &lc, &lv) != 0) {
            return -1;
        }
        limit = lv.len == 4 ? (int32_t)ce_get_be(lv.ptr, 4) : 0;
        if (limit <= 0) {
            return cn_fail(x->err, SL_CQL_ERR_INVALID, "LIMIT must be strictly positive");
        }
    }
    ce_row_t **match = sl_xmalloc((t->nrows + 1) * sizeof(*match));
    size_t nm = 0;
    for (size_t i = 0; i < t->nrows; i++) {
        ce_row_t *r = t->rows[i];
        bool ok = true;
        for (size_t k = 0; k < st->n_where && ok; k++) {
            const ce_cell_t *c = &r->cells[wcol[k]];
            ok = c->len == wval[k].len && memcmp(c->p, wval[k].ptr, (size_t)c->len) == 0;
        }
        if (ok) {
            match[nm++] = r;
        }
    }
    qsort_r(match, nm, sizeof(*match), ce_cmp_rows, t);
    if ((int64_t)nm > limit) {
        nm = (size_t)limit;
    }
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, out);
    sl_cql_wr_int(&w, SL_CQL_RESULT_ROWS);
    ce_wr_rows_meta(&w, t, cols, n, skip_metadata);
    sl_cql_wr_int(&w, (int32_t)nm);
    for (size_t i = 0; i < nm; i++) {
        for (int k = 0; k < n; k++) {
            const ce_cell_t *c = &match[i]->cells[cols[k]];
            sl_cql_wr_bytes(&w, (sl_cql_bytes_t){c->p, c->len});
        }
    }
    free(match);
    return 0;
}

/* Runs a parsed statement. values: the request's (NULL when preparing). */
static int ce_run(const cn_stmt_t *st, const cn_request_t *req, sl_arena_t *a, sl_buf_t *out,
                  char *new_ks, cn_err_t *err)
{
    ce_ctx_t *x = sl_arena_alloc(a, sizeof(*x));
    memset(x, 0, sizeof(*x));
    x->st = st;
    x->a = a;
    x->err = err;
    switch (st->kind) {
    case CN_ST_CREATE_KEYSPACE:
        return ce_create_keyspace(st, out, err);
    case CN_ST_CREATE_TABLE:
        return ce_create_table(st, req->keyspace, out, err);
    case CN_ST_USE: {
        if (!ce_ks_exists(st->name)) {
            return cn_fail(err, SL_CQL_ERR_INVALID, "Keyspace '%s' does not exist", st->name);
        }
        sl_cql_wr_t w;
        sl_cql_wr_init(&w, out);
        sl_cql_wr_int(&w, SL_CQL_RESULT_SET_KEYSPACE);
        ce_wr_str(&w, st->name);
        if (new_ks != NULL) {
            snprintf(new_ks, CN_NAME_MAX, "%s", st->name);
        }
        return 0;
    }
    default:
        break;
    }
    if (ce_resolve_table(x, req->keyspace) != 0 || ce_bind_values(x, req) != 0) {
        return -1;
    }
    int rc = -1;
    switch (st->kind) {
    case CN_ST_INSERT:
        rc = ce_insert(x, out);
        break;
    case CN_ST_UPDATE:
        rc = ce_update(x, out);
        break;
    case CN_ST_DELETE:
        rc = ce_delete(x, out);
        break;
    case CN_ST_SELECT:
        return ce_select(x, req->skip_metadata, out);
    default:
        return cn_fail(err, SL_CQL_ERR_SERVER, "unhandled statement kind %d", (int)st->kind);
    }
    if (rc == 0 && !ce_is_system(x->t->ks)) {
        cn_stats.rows_written++;
    }
    return rc;
}

int cn_exec_query(const char *q, size_t n, const cn_request_t *req, sl_buf_t *out, char *new_ks,
                  cn_err_t *err)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    cn_stmt_t *st = sl_arena_alloc(&a, sizeof(*st));
    int rc = -1;
    if (cn_parse(q, n, &a, st, err->msg, sizeof(err->msg)) != 0) {
        err->code = SL_CQL_ERR_SYNTAX;
        goto out;
    }
    size_t before = out->len;
    rc = ce_run(st, req, &a, out, new_ks, err);
    if (rc != 0) {
        out->len = before;
    }
out:
    sl_arena_free(&a);
    return rc;
}

static void ce_prep_id(const char *ks, const char *q, size_t n, uint8_t id[16])
{
    uint64_t h1 = 1469598103934665603ULL, h2 = 0x9e3779b97f4a7c15ULL;
    for (const char *p = ks; *p; p++) {
        h1 = (h1 ^ (uint8_t)*p) * 1099511628211ULL;
        h2 = (h2 ^ (uint8_t)*p) * 0x100000001b3ULL + 7;
    }
    h1 = (h1 ^ 0xff) * 1099511628211ULL;
    for (size_t i = 0; i < n; i++) {
        h1 = (h1 ^ (uint8_t)q[i]) * 1099511628211ULL;
        h2 = (h2 ^ (uint8_t)q[i]) * 0x100000001b3ULL + 7;
    }
    ce_put_be(id, h1, 8);
    ce_put_be(id + 8, h2, 8);
}

/* The bind marker's column spec: its name and type. */
static void ce_marker_spec(const ce_table_t *t, const cn_stmt_t *st, int i, const char **name,
                           cn_type_t *type)
{
    static const cn_type_t t_int = {SL_CQL_COL_INT, 0, 0}, t_bigint = {SL_CQL_COL_BIGINT, 0, 0};
    *name = st->marker_col[i];
    switch (st->marker_role[i]) {
    case CN_MARK_LIMIT:
    case CN_MARK_TTL:
        *type = t_int;
        return;
    case CN_MARK_TIMESTAMP:
        *type = t_bigint;
        return;
    default:
        *type = t->cols[ce_col_find(t, st->marker_col[i])].type;
    }
}

int cn_exec_prepare(const char *q, size_t n, const char *keyspace, sl_buf_t *out, cn_err_t *err)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    cn_stmt_t *st = sl_arena_alloc(&a, sizeof(*st));
    ce_ctx_t *x = sl_arena_alloc(&a, sizeof(*x));
    memset(x, 0, sizeof(*x));
    int rc = -1;
    if (cn_parse(q, n, &a, st, err->msg, sizeof(err->msg)) != 0) {
        err->code = SL_CQL_ERR_SYNTAX;
        goto out;
    }
    x->st = st;
    x->a = &a;
    x->err = err;
    bool dml = st->kind == CN_ST_INSERT || st->kind == CN_ST_UPDATE || st->kind == CN_ST_DELETE ||
               st->kind == CN_ST_SELECT;
    if (dml) {
        if (ce_resolve_table(x, keyspace) != 0) {
            goto out;
        }
        for (int i = 0; i < st->n_markers; i++) {
            if (st->marker_role[i] == 0 && ce_col_or_fail(x, st->marker_col[i]) < 0) {
                goto out;
            }
        }
    }
    uint8_t id[16];
    ce_prep_id(keyspace, q, n, id);
    bool known = false;
    for (size_t i = 0; i < ce.nprep && !known; i++) {
        known = memcmp(ce.preps[i].id, id, 16) == 0;
    }
    if (!known) {
        if (ce.nprep == ce.capprep) {
            ce.capprep = ce.capprep ? ce.capprep * 2 : 32;
            ce.preps = sl_xrealloc(ce.preps, ce.capprep * sizeof(*ce.preps));
        }
        ce_prep_t *p = &ce.preps[ce.nprep++];
        memcpy(p->id, id, 16);
        p->query = sl_xstrndup(q, n);
        p->qlen = n;
        p->ks = sl_xstrdup(keyspace);
        p->arena = sl_xcalloc(1, sizeof(*p->arena));
        sl_arena_init(p->arena, 0);
        p->st = sl_arena_alloc(p->arena, sizeof(*p->st));
        char msg[sizeof(err->msg)];
        if (cn_parse(q, n, p->arena, p->st, msg, sizeof(msg)) != 0) {
            sl_fatal("cqlnode: a prepared statement does not parse twice: %s", msg);
        }
    }
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, out);
    sl_cql_wr_int(&w, SL_CQL_RESULT_PREPARED);
    sl_cql_wr_short_bytes(&w, id, 16);
    /* Bind metadata with the partition key's marker indexes (when every
     * partition key column is bound by one marker). */
    const ce_table_t *t = x->t;
    int pk_idx[CN_MAX_COLS];
    int pk_count = 0;
    if (dml) {
        for (int c = 0; c < t->npk; c++) {
            pk_idx[c] = -1;
            for (int i = 0; i < st->n_markers; i++) {
                if (st->marker_role[i] == 0 && strcmp(st->marker_col[i], t->cols[c].name) == 0) {
                    pk_idx[c] = i;
                }
            }
        }
        pk_count = t->npk;
        for (int c = 0; c < t->npk; c++) {
            if (pk_idx[c] < 0) {
                pk_count = 0;
            }
        }
    }
    sl_cql_wr_int(&w, st->n_markers > 0 ? SL_CQL_META_GLOBAL_TABLES_SPEC : 0);
    sl_cql_wr_int(&w, st->n_markers);
    sl_cql_wr_int(&w, pk_count);
    for (int c = 0; c < pk_count; c++) {
        sl_cql_wr_short(&w, (uint16_t)pk_idx[c]);
    }
    if (st->n_markers > 0) {
        ce_wr_str(&w, t->ks);
        ce_wr_str(&w, t->name);
    }
    for (int i = 0; i < st->n_markers; i++) {
        const char *name;
        cn_type_t type;
        ce_marker_spec(t, st, i, &name, &type);
        ce_wr_str(&w, name);
        ce_wr_type(&w, type);
    }
    /* Result metadata: the columns of a SELECT; nothing for the others. */
    if (st->kind == CN_ST_SELECT) {
        int cols[CN_MAX_COLS], nc;
        if (ce_select_cols(x, cols, &nc) != 0) {
            goto out;
        }
        ce_wr_rows_meta(&w, t, cols, nc, false);
    } else {
        sl_cql_wr_int(&w, SL_CQL_META_NO_METADATA);
        sl_cql_wr_int(&w, 0);
    }
    rc = 0;
out:
    sl_arena_free(&a);
    return rc;
}

/* cn_is_data for a parsed statement. */
static bool ce_stmt_is_data(const cn_stmt_t *st, const char *keyspace, bool *counter)
{
    bool data = false;
    *counter = false;
    if (st->kind == CN_ST_INSERT || st->kind == CN_ST_UPDATE || st->kind == CN_ST_DELETE ||
        st->kind == CN_ST_SELECT) {
        const char *ks = st->ks != NULL ? st->ks : keyspace;
        data = ks != NULL && ks[0] != '\0' && !ce_is_system(ks);
        const ce_table_t *t = data ? ce_table_find(ks, st->name) : NULL;
        *counter = t != NULL && t->counter && st->kind != CN_ST_SELECT;
    }
    return data;
}

bool cn_is_data(const char *q, size_t n, const char *keyspace, bool *counter)
{
    sl_arena_t a;
    sl_arena_init(&a, 0);
    cn_stmt_t *st = sl_arena_alloc(&a, sizeof(*st));
    char msg[256];
    bool data = false;
    *counter = false;
    if (cn_parse(q, n, &a, st, msg, sizeof(msg)) == 0) {
        data = ce_stmt_is_data(st, keyspace, counter);
    }
    sl_arena_free(&a);
    return data;
}

bool cn_prepared_is_data(const uint8_t *id, size_t id_len, bool *counter)
{
    for (size_t i = 0; id_len == 16 && i < ce.nprep; i++) {
        if (memcmp(ce.preps[i].id, id, 16) == 0) {
            return ce_stmt_is_data(ce.preps[i].st, ce.preps[i].ks, counter);
        }
    }
    *counter = false;
    return false;
}

int cn_exec_prepared(const uint8_t *id, size_t id_len, const cn_request_t *req, sl_buf_t *out,
                     char *new_ks, cn_err_t *err)
{
    for (size_t i = 0; id_len == 16 && i < ce.nprep; i++) {
        if (memcmp(ce.preps[i].id, id, 16) == 0) {
            cn_request_t r = *req;
            r.keyspace = ce.preps[i].ks;
            /* as cn_exec_query, with the statement parsed at PREPARE */
            sl_arena_t a;
            sl_arena_init(&a, 0);
            size_t before = out->len;
            int rc = ce_run(ce.preps[i].st, &r, &a, out, new_ks, err);
            if (rc != 0) {
                out->len = before;
            }
            sl_arena_free(&a);
            return rc;
        }
    }
    memset(err->id, 0, sizeof(err->id));
    memcpy(err->id, id, SL_MIN(id_len, sizeof(err->id)));
    char hex[2 * 16 + 1] = "";
    for (size_t i = 0; i < SL_MIN(id_len, (size_t)16); i++) {
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    }
    return cn_fail(err, SL_CQL_ERR_UNPREPARED,
                   "Prepared query with ID %s not found (either the query was not prepared on "
                   "this host (maybe the host has been restarted?) or you have prepared too many "
                   "queries and it has been evicted from the internal cache)",
                   hex);
}

/* ---- Startup and dump --------------------------------------------------------------------- */

static void ce_internal(const char *q)
{
    sl_buf_t out = SL_BUF_INIT;
    cn_err_t err;
    cn_request_t req = {.keyspace = ""};
    if (cn_exec_query(q, strlen(q), &req, &out, NULL, &err) != 0) {
        sl_fatal("cqlnode: internal statement failed: %s: %s", err.msg, q);
    }
    sl_buf_free(&out);
}

/* Cassandra 4.0's system_schema tables (those drivers read). */
static const char *const ce_schema_tables[] = {
    "CREATE TABLE system_schema.keyspaces (keyspace_name text PRIMARY KEY, durable_writes "
    "boolean, replication frozen<map<text, text>>)",
    "CREATE TABLE system_schema.tables (keyspace_name text, table_name text, "
    "additional_write_policy text, bloom_filter_fp_chance double, caching frozen<map<text, "
    "text>>, cdc boolean, comment text, compaction frozen<map<text, text>>, compression "
    "frozen<map<text, text>>, crc_check_chance double, default_time_to_live int, extensions "
    "frozen<map<text, blob>>, flags frozen<set<text>>, gc_grace_seconds int, id uuid, "
    "max_index_interval int, memtable_flush_period_in_ms int, min_index_interval int, "
    "read_repair text, speculative_retry text, PRIMARY KEY ((keyspace_name), table_name))",
    "CREATE TABLE system_schema.columns (keyspace_name text, table_name text, column_name text, "
    "clustering_order text, column_name_bytes blob, kind text, position int, type text, "
    "PRIMARY KEY ((keyspace_name), table_name, column_name))",
    "CREATE TABLE system_schema.types (keyspace_name text, type_name text, field_names "
    "frozen<list<text>>, field_types frozen<list<text>>, PRIMARY KEY ((keyspace_name), "
    "type_name))",
    "CREATE TABLE system_schema.functions (keyspace_name text, function_name text, "
    "argument_types frozen<list<text>>, argument_names frozen<list<text>>, body text, "
    "called_on_null_input boolean, language text, return_type text, PRIMARY KEY "
    "((keyspace_name), function_name, argument_types))",
    "CREATE TABLE system_schema.aggregates (keyspace_name text, aggregate_name text, "
    "argument_types frozen<list<text>>, final_func text, initcond text, return_type text, "
    "state_func text, state_type text, PRIMARY KEY ((keyspace_name), aggregate_name, "
    "argument_types))",
    "CREATE TABLE system_schema.views (keyspace_name text, view_name text, base_table_id uuid, "
    "base_table_name text, bloom_filter_fp_chance double, caching frozen<map<text, text>>, cdc "
    "boolean, comment text, compaction frozen<map<text, text>>, compression frozen<map<text, "
    "text>>, crc_check_chance double, default_time_to_live int, extensions frozen<map<text, "
    "blob>>, gc_grace_seconds int, id uuid, include_all_columns boolean, max_index_interval "
    "int, memtable_flush_period_in_ms int, min_index_interval int, read_repair text, "
    "speculative_retry text, additional_write_policy text, where_clause text, PRIMARY KEY "
    "((keyspace_name), view_name))",
    "CREATE TABLE system_schema.indexes (keyspace_name text, table_name text, index_name text, "
    "kind text, options frozen<map<text, text>>, PRIMARY KEY ((keyspace_name), table_name, "
    "index_name))",
    "CREATE TABLE system_schema.triggers (keyspace_name text, table_name text, trigger_name "
    "text, options frozen<map<text, text>>, PRIMARY KEY ((keyspace_name), table_name, "
    "trigger_name))",
};

/* A version-4-shaped uuid derived from a host's address and port, so every
 * node gives a host the same host_id. */
static void ce_host_id(const char *addr, int port, char out[40])
{
    uint8_t u[16];
    uint64_t h1 = 1469598103934665603ULL, h2 = 0x9e3779b97f4a7c15ULL;
    char key[96];
    snprintf(key, sizeof(key), "%s:%d", addr, port);
    for (const char *p = key; *p; p++) {
        h1 = (h1 ^ (uint8_t)*p) * 1099511628211ULL;
        h2 = (h2 ^ (uint8_t)*p) * 0x100000001b3ULL + 7;
    }
    ce_put_be(u, h1, 8);
    ce_put_be(u + 8, h2 ^ (h1 >> 7), 8);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

/* Sets a row's tokens set<text> from a comma-separated list. */
static void ce_set_tokens(ce_table_t *t, ce_row_t *row, const char *tokens)
{
    /* set<text>: [int n] then n [bytes] */
    sl_buf_t set = SL_BUF_INIT;
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, &set);
    char *toks = sl_xstrdup(tokens);
    int32_t n = 0;
    sl_cql_wr_int(&w, 0);
    for (char *save = NULL, *tok = strtok_r(toks, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        sl_cql_wr_bytes(&w, (sl_cql_bytes_t){(const uint8_t *)tok, (int32_t)strlen(tok)});
        n++;
    }
    ce_put_be((uint8_t *)set.data, (uint64_t)n, 4);
    ce_cell_set(&row->cells[ce_col_find(t, "tokens")],
                (sl_cql_bytes_t){(const uint8_t *)set.data, (int32_t)set.len});
    free(toks);
    sl_buf_free(&set);
}

void cn_node_init(const cn_node_conf_t *conf)
{
    ce.internal = true;
    ce_internal("CREATE KEYSPACE system_schema WITH replication = {'class': 'LocalStrategy'}");
    for (size_t i = 0; i < SL_ARRAY_LEN(ce_schema_tables); i++) {
        ce_internal(ce_schema_tables[i]);
    }
    /* system_schema's own rows, written now that its tables exist */
    cn_stmt_t local_ks = {
        .repl_keys = {"class"}, .repl_vals = {"LocalStrategy"}, .n_repl = 1, .durable_writes = 1};
    ce_schema_keyspace_row("system_schema", &local_ks);
    for (size_t i = 0; i < ce.ntables; i++) {
        ce_schema_table_rows(ce.tables[i]);
    }
    ce_internal("CREATE KEYSPACE system WITH replication = {'class': 'LocalStrategy'}");
    ce_internal("CREATE TABLE system.local (key text PRIMARY KEY, bootstrapped text, "
                "broadcast_address inet, broadcast_port int, cluster_name text, cql_version text, "
                "data_center text, gossip_generation int, host_id uuid, listen_address inet, "
                "listen_port int, native_protocol_version text, partitioner text, rack text, "
                "release_version text, rpc_address inet, rpc_port int, schema_version uuid, "
                "tokens set<text>)");
    ce_internal("CREATE TABLE system.peers (peer inet PRIMARY KEY, data_center text, "
                "host_id uuid, preferred_ip inet, rack text, release_version text, "
                "rpc_address inet, schema_version uuid, tokens set<text>)");
    char hid[40];
    ce_host_id(conf->listen, conf->port, hid);
    uint8_t sv[16];
    ce_uuid_random(sv);
    char svs[40];
    snprintf(svs, sizeof(svs),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", sv[0], sv[1],
             sv[2], sv[3], sv[4], sv[5], sv[6], sv[7], sv[8], sv[9], sv[10], sv[11], sv[12], sv[13],
             sv[14], sv[15]);
    sl_buf_t q = SL_BUF_INIT;
    sl_buf_printf(&q,
                  "INSERT INTO system.local (key, bootstrapped, broadcast_address, broadcast_port, "
                  "cluster_name, cql_version, data_center, gossip_generation, host_id, "
                  "listen_address, listen_port, native_protocol_version, partitioner, rack, "
                  "release_version, rpc_address, rpc_port, schema_version) VALUES ('local', "
                  "'COMPLETED', '%s', 7000, '%s', '3.4.5', '%s', 1, %s, '%s', 7000, '4', "
                  "'org.apache.cassandra.dht.Murmur3Partitioner', '%s', '4.0.0', '%s', %d, %s)",
                  conf->listen, conf->cluster_name, conf->dc, hid, conf->listen, conf->rack,
                  conf->listen, conf->port, svs);
    ce_internal(q.data);
    for (size_t i = 0; i < conf->n_peers; i++) {
        const cn_peer_t *p = &conf->peers[i];
        ce_host_id(p->addr, p->port, hid);
        q.len = 0;
        sl_buf_printf(&q,
                      "INSERT INTO system.peers (peer, data_center, host_id, preferred_ip, rack, "
                      "release_version, rpc_address, schema_version) VALUES ('%s', '%s', %s, "
                      "'%s', '%s', '4.0.0', '%s', %s)",
                      p->addr, p->dc != NULL ? p->dc : conf->dc, hid, p->addr, conf->rack, p->addr,
                      svs);
        ce_internal(q.data);
    }
    sl_buf_free(&q);
    ce.internal = false;

    ce_table_t *t = ce_table_find("system", "local");
    sl_cql_bytes_t key = {(const uint8_t *)"local", 5};
    ce.local_row = ce_row_get(t, &key, false);
    ce_set_tokens(t, ce.local_row, conf->tokens);
    t = ce_table_find("system", "peers");
    for (size_t i = 0; i < conf->n_peers; i++) {
        uint8_t addr[4];
        if (inet_pton(AF_INET, conf->peers[i].addr, addr) != 1) {
            sl_fatal("cqlnode: peer %s: not an IPv4 address", conf->peers[i].addr);
        }
        sl_cql_bytes_t pkey = {addr, 4};
        ce_set_tokens(t, ce_row_get(t, &pkey, false), conf->peers[i].tokens);
    }
}

void cn_node_free(void)
{
    for (size_t i = 0; i < ce.ntables; i++) {
        ce_table_t *t = ce.tables[i];
        for (size_t r = 0; r < t->nrows; r++) {
            ce_row_free(t, t->rows[r]);
        }
        for (int c = 0; c < t->ncols; c++) {
            free(t->cols[c].name);
        }
        free(t->rows);
        free(t->slots);
        free(t->ks);
        free(t->name);
        free(t);
    }
    free(ce.tables);
    for (size_t i = 0; i < ce.nks; i++) {
        free(ce.ks[i]);
    }
    free(ce.ks);
    for (size_t i = 0; i < ce.nprep; i++) {
        free(ce.preps[i].query);
        free(ce.preps[i].ks);
        sl_arena_free(ce.preps[i].arena);
        free(ce.preps[i].arena);
    }
    free(ce.preps);
    memset(&ce, 0, sizeof(ce));
}

static void ce_json_value(sl_buf_t *b, const ce_col_t *col, const ce_cell_t *c)
{
    if (c->len < 0) {
        sl_buf_puts(b, "null");
        return;
    }
    switch (col->type.id) {
    case SL_CQL_COL_INT:
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
    case SL_CQL_COL_TIMESTAMP:
    case SL_CQL_COL_TIME:
    case SL_CQL_COL_SMALLINT:
    case SL_CQL_COL_TINYINT:
        if (c->len > 0) {
            int bits = c->len * 8;
            sl_buf_append_i64(b, (int64_t)(ce_get_be(c->p, c->len) << (64 - bits)) >> (64 - bits));
            return;
        }
        break;
    case SL_CQL_COL_DATE:
        if (c->len == 4) {
            sl_buf_append_i64(b, (int64_t)ce_get_be(c->p, 4) - (1LL << 31));
            return;
        }
        break;
    case SL_CQL_COL_BOOLEAN:
        sl_buf_puts(b, c->len > 0 && c->p[0] ? "true" : "false");
        return;
    case SL_CQL_COL_DOUBLE:
    case SL_CQL_COL_FLOAT:
        if (c->len > 0) {
            double d;
            if (c->len == 8) {
                uint64_t u = ce_get_be(c->p, 8);
                memcpy(&d, &u, 8);
            } else {
                uint32_t u = (uint32_t)ce_get_be(c->p, 4);
                float f;
                memcpy(&f, &u, 4);
                d = f;
            }
            if (isfinite(d)) {
                sl_buf_printf(b, "%.17g", d);
            } else {
                sl_buf_printf(b, "\"%g\"", d);
            }
            return;
        }
        break;
    case SL_CQL_COL_VARCHAR:
    case SL_CQL_COL_ASCII:
        sl_buf_putc(b, '"');
        sl_buf_json_escape(b, (const char *)c->p, (size_t)c->len);
        sl_buf_putc(b, '"');
        return;
    case SL_CQL_COL_UUID:
    case SL_CQL_COL_TIMEUUID:
        if (c->len == 16) {
            sl_buf_putc(b, '"');
            for (int i = 0; i < 16; i++) {
                sl_buf_printf(b, "%s%02x", (i == 4 || i == 6 || i == 8 || i == 10) ? "-" : "",
                              c->p[i]);
            }
            sl_buf_putc(b, '"');
            return;
        }
        break;
    case SL_CQL_COL_INET: {
        char s[INET6_ADDRSTRLEN];
        if (inet_ntop(c->len == 4 ? AF_INET : AF_INET6, c->p, s, sizeof(s)) != NULL) {
            sl_buf_printf(b, "\"%s\"", s);
            return;
        }
        break;
    }
    default:
        break;
    }
    sl_buf_puts(b, "\"0x");
    for (int32_t i = 0; i < c->len; i++) {
        sl_buf_printf(b, "%02x", c->p[i]);
    }
    sl_buf_putc(b, '"');
}

int cn_dump(const char *path, const char *extra)
{
    sl_buf_t b = SL_BUF_INIT;
    for (size_t i = 0; i < ce.ntables; i++) {
        ce_table_t *t = ce.tables[i];
        if (ce_is_system(t->ks)) {
            continue;
        }
        ce_row_t **rows = sl_xmalloc((t->nrows + 1) * sizeof(*rows));
        if (t->nrows > 0) { /* an empty table has no rows array */
            memcpy(rows, t->rows, t->nrows * sizeof(*rows));
        }
        qsort_r(rows, t->nrows, sizeof(*rows), ce_cmp_rows, t);
        for (size_t r = 0; r < t->nrows; r++) {
            sl_buf_puts(&b, "{\"keyspace\":\"");
            sl_buf_json_escape(&b, t->ks, strlen(t->ks));
            sl_buf_puts(&b, "\",\"table\":\"");
            sl_buf_json_escape(&b, t->name, strlen(t->name));
            sl_buf_puts(&b, "\",\"row\":{");
            for (int c = 0; c < t->ncols; c++) {
                sl_buf_puts(&b, c ? ",\"" : "\"");
                sl_buf_json_escape(&b, t->cols[c].name, strlen(t->cols[c].name));
                sl_buf_puts(&b, "\":");
                ce_json_value(&b, &t->cols[c], &rows[r]->cells[c]);
            }
            sl_buf_puts(&b, "}}\n");
        }
        free(rows);
    }
    if (extra != NULL) {
        sl_buf_puts(&b, extra);
        sl_buf_putc(&b, '\n');
    }
    sl_buf_t tmp = SL_BUF_INIT;
    sl_buf_printf(&tmp, "%s.tmp", path);
    FILE *f = fopen(tmp.data, "w");
    int rc = -1;
    if (f != NULL) {
        bool ok = fwrite(b.data ? b.data : "", 1, b.len, f) == b.len;
        ok = fclose(f) == 0 && ok;
        rc = ok && rename(tmp.data, path) == 0 ? 0 : -1;
    }
    sl_buf_free(&tmp);
    sl_buf_free(&b);
    return rc;
}
