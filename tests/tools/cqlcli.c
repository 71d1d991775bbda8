/* cqlcli: a small CQL v4 client built on src/cql/conn.c, for tests.
 *
 *   cqlcli --host H --port P [--keyspace K] [--user U --password P] [--lz4]
 *          [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
 *          [--tls-server-name NAME] [--tls-no-verify-host] SCRIPT
 *
 * --lz4 asks for LZ4 compression; --tls (implied by any --tls-* option)
 * speaks TLS, verifying the server against --tls-ca (default: the system's
 * CAs) and its name unless --tls-no-verify-host.
 *
 * SCRIPT holds one command a line (blank lines and lines starting with '#'
 * are skipped):
 *
 *   query CQL                          QUERY without values
 *   query CQL ;; TYPE:V TYPE:V ...     QUERY with values, typed explicitly
 *   prepare NAME CQL                   PREPARE, remembered as NAME
 *   execute NAME V1 V2 ...             EXECUTE, values typed from NAME's bind metadata
 *   batch logged|unlogged|counter NAME V1 ... ; NAME V1 ...
 *   pipeline N NAME V1 ...             N EXECUTEs sent at once (all in flight
 *                                      together); "$i" in a value is replaced
 *                                      by the request's index 0..N-1
 *
 * Values: int, bigint, counter, text/varchar/ascii, boolean (true/false),
 * double, date (YYYY-MM-DD), timestamp (ms since the epoch); "null" is null;
 * 'single quotes' hold spaces ('' is a quote).
 *
 * Output on stdout, one line per result: "void", "keyspace K",
 * "schema_change CHANGE TARGET KS NAME", "prepared NAME bind=N", "rows N"
 * followed by one JSON object per row, "pipeline N ok=N streams=N" (distinct
 * stream ids of the responses), and "error NAME (0xCODE) class=CLASS: MSG".
 * Exits 0 if every request succeeded, 1 on any error, 2 on usage errors. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cql/conn.h"
#include "cql/frame.h"
#include "cql/result.h"
#include "cql/types.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/common.h"

#define CC_MAX_STMTS 64
#define CC_MAX_VALUES 256
#define CC_MAX_BATCH 256
#define CC_MAX_PIPELINE 32768
#define CC_LINE_MAX 65536

static const char cc_usage[] =
    "usage: cqlcli --host H --port P [--keyspace K] [--user U --password P] [--lz4]\n"
    "              [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]\n"
    "              [--tls-server-name NAME] [--tls-no-verify-host] SCRIPT\n";

typedef struct cc_stmt {
    const char *name;       /* arena */
    sl_cql_prepared_t prep; /* arena */
} cc_stmt_t;

typedef struct cc_cli {
    sl_cql_conn_t *conn;
    sl_arena_t keep; /* prepared statements, for the whole run */
    cc_stmt_t stmts[CC_MAX_STMTS];
    size_t n_stmts;
    int pending; /* requests whose callback has not run */
    int errors;
    /* pipeline accounting */
    bool quiet; /* do not print void results */
    int ok;
    uint8_t *seen; /* one byte per stream id */
    int distinct;
} cc_cli_t;

typedef struct cc_req {
    cc_cli_t *cli;
    char *prepare_name; /* PREPARE: owned */
} cc_req_t;

/* ---- Script tokens ------------------------------------------------------------------------ */

/* Splits s (modified in place) into whitespace-separated tokens; a 'quoted'
 * part of a token may hold spaces, and '' in it is a quote. Returns the
 * count, or -1 (too many tokens, unterminated quote). */
static int cc_split(char *s, char **tok, int max)
{
    int n = 0;
    char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            return n;
        }
        if (n == max) {
            return -1;
        }
        char *w = p;
        tok[n++] = w;
        bool quoted = false;
        while (*p != '\0' && (quoted || (*p != ' ' && *p != '\t'))) {
            if (*p != '\'') {
                *w++ = *p++;
            } else if (quoted && p[1] == '\'') {
                *w++ = '\'';
                p += 2;
            } else {
                quoted = !quoted;
                p++;
            }
        }
        if (quoted) {
            return -1;
        }
        if (*p != '\0') {
            p++;
        }
        *w = '\0';
    }
}

/* ---- Values ------------------------------------------------------------------------------- */

static int cc_parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

/* Appends the serialized value of text s for column type id to out.
 * Returns 0, or -1 with a message in *err. */
static int cc_encode(uint16_t id, const char *s, sl_buf_t *out, const char **err)
{
    int64_t i;
    switch (id) {
    case SL_CQL_COL_INT:
        if (cc_parse_i64(s, &i) != 0 || i < INT32_MIN || i > INT32_MAX) {
            *err = "bad int";
            return -1;
        }
        sl_cql_encode_int(out, (int32_t)i);
        return 0;
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
        if (cc_parse_i64(s, &i) != 0) {
            *err = "bad bigint";
            return -1;
        }
        sl_cql_encode_bigint(out, i);
        return 0;
    case SL_CQL_COL_TIMESTAMP:
        if (cc_parse_i64(s, &i) != 0) {
            *err = "bad timestamp (milliseconds since the epoch)";
            return -1;
        }
        sl_cql_encode_timestamp(out, i);
        return 0;
    case SL_CQL_COL_VARCHAR:
    case SL_CQL_COL_ASCII:
        sl_cql_encode_text(out, s, strlen(s));
        return 0;
    case SL_CQL_COL_BOOLEAN: {
        uint8_t b;
        if (strcmp(s, "true") == 0) {
            b = 1;
        } else if (strcmp(s, "false") == 0) {
            b = 0;
        } else {
            *err = "bad boolean";
            return -1;
        }
        sl_buf_append(out, &b, 1);
        return 0;
    }
    case SL_CQL_COL_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0') {
            *err = "bad double";
            return -1;
        }
        uint64_t bits;
        memcpy(&bits, &d, sizeof(bits));
        sl_cql_encode_bigint(out, (int64_t)bits);
        return 0;
    }
    case SL_CQL_COL_DATE: {
        int y, m, d;
        char tail;
        if (sscanf(s, "%d-%d-%d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 || d > 31) {
            *err = "bad date (YYYY-MM-DD)";
            return -1;
        }
        if (sl_cql_encode_date(out, sl_cql_date_days(y, m, d)) != 0) {
            *err = "date out of range";
            return -1;
        }
        return 0;
    }
    default:
        *err = "unsupported column type";
        return -1;
    }
}

static int cc_type_id(const char *name, uint16_t *id)
{
    static const struct {
        const char *name;
        uint16_t id;
    } types[] = {
        {"int", SL_CQL_COL_INT},         {"bigint", SL_CQL_COL_BIGINT},
        {"counter", SL_CQL_COL_COUNTER}, {"text", SL_CQL_COL_VARCHAR},
        {"varchar", SL_CQL_COL_VARCHAR}, {"ascii", SL_CQL_COL_ASCII},
        {"boolean", SL_CQL_COL_BOOLEAN}, {"double", SL_CQL_COL_DOUBLE},
        {"date", SL_CQL_COL_DATE},       {"timestamp", SL_CQL_COL_TIMESTAMP},
    };
    for (size_t k = 0; k < SL_ARRAY_LEN(types); k++) {
        if (strcmp(types[k].name, name) == 0) {
            *id = types[k].id;
            return 0;
        }
    }
    return -1;
}

/* A list of encoded values: bytes in buf, then views built by cc_vals_finish. */
typedef struct cc_vals {
    sl_buf_t buf;
    int32_t len[CC_MAX_VALUES]; /* -1: null */
    size_t off[CC_MAX_VALUES];
    sl_cql_bytes_t views[CC_MAX_VALUES];
    size_t n;
} cc_vals_t;

/* Encodes one value (text s, "$i" replaced by idx when idx >= 0). */
static int cc_vals_add(cc_vals_t *v, uint16_t id, const char *s, long idx, const char **err)
{
    char tmp[4096];
    if (v->n == CC_MAX_VALUES) {
        *err = "too many values";
        return -1;
    }
    const char *at = idx >= 0 ? strstr(s, "$i") : NULL;
    if (at != NULL) {
        int n = snprintf(tmp, sizeof(tmp), "%.*s%ld%s", (int)(at - s), s, idx, at + 2);
        if (n < 0 || (size_t)n >= sizeof(tmp)) {
            *err = "value too long";
            return -1;
        }
        s = tmp;
    }
    v->off[v->n] = v->buf.len;
    if (strcmp(s, "null") == 0) {
        v->len[v->n++] = SL_CQL_LEN_NULL;
        return 0;
    }
    if (cc_encode(id, s, &v->buf, err) != 0) {
        return -1;
    }
    v->len[v->n] = (int32_t)(v->buf.len - v->off[v->n]);
    v->n++;
    return 0;
}

/* Builds the views once buf no longer moves. */
static void cc_vals_finish(cc_vals_t *v)
{
    for (size_t k = 0; k < v->n; k++) {
        v->views[k].len = v->len[k];
        v->views[k].ptr =
            v->len[k] < 0 ? NULL : (const uint8_t *)v->buf.data + (v->len[k] > 0 ? v->off[k] : 0);
        if (v->len[k] == 0) {
            v->views[k].ptr = (const uint8_t *)""; /* empty, not null */
        }
    }
}

/* Encodes tok[0..n-1] with the bind metadata of st; idx as in cc_vals_add. */
static int cc_vals_bind(cc_vals_t *v, const cc_stmt_t *st, char **tok, int n, long idx,
                        const char **err)
{
    const sl_cql_metadata_t *bind = &st->prep.bind;
    if (n != bind->n_cols) {
        *err = "wrong number of values for the prepared statement";
        return -1;
    }
    for (int k = 0; k < n; k++) {
        if (cc_vals_add(v, bind->cols[k].type.id, tok[k], idx, err) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- Printing results --------------------------------------------------------------------- */

static const char *cc_class_name(sl_cql_errclass_t cls)
{
    switch (cls) {
    case SL_CQL_ERRCLASS_RETRIABLE:
        return "retriable";
    case SL_CQL_ERRCLASS_PERMANENT:
        return "permanent";
    case SL_CQL_ERRCLASS_FATAL:
        return "fatal";
    case SL_CQL_ERRCLASS_REPREPARE:
        return "reprepare";
    }
    return "unknown";
}

/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm). */
static void cc_civil(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void cc_print_cell(sl_buf_t *o, const sl_cql_coltype_t *t, sl_cql_bytes_t v)
{
    int32_t i32;
    int64_t i64;
    bool b;
    double d;
    float f;
    sl_cql_str_t s;
    uint8_t u[16];
    if (v.len < 0) {
        sl_buf_puts(o, "null");
        return;
    }
    switch (t->id) {
    case SL_CQL_COL_INT:
        if (sl_cql_val_int(v, &i32) == 0) {
            sl_buf_append_i64(o, i32);
            return;
        }
        break;
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
    case SL_CQL_COL_TIMESTAMP:
        if (sl_cql_val_bigint(v, &i64) == 0) {
            sl_buf_append_i64(o, i64);
            return;
        }
        break;
    case SL_CQL_COL_BOOLEAN:
        if (sl_cql_val_boolean(v, &b) == 0) {
            sl_buf_puts(o, b ? "true" : "false");
            return;
        }
        break;
    case SL_CQL_COL_DOUBLE:
        if (sl_cql_val_double(v, &d) == 0) {
            if (isfinite(d)) {
                sl_buf_printf(o, "%.17g", d);
            } else {
                sl_buf_puts(o, "null");
            }
            return;
        }
        break;
    case SL_CQL_COL_FLOAT:
        if (sl_cql_val_float(v, &f) == 0) {
            if (isfinite(f)) {
                sl_buf_printf(o, "%.9g", (double)f);
            } else {
                sl_buf_puts(o, "null");
            }
            return;
        }
        break;
    case SL_CQL_COL_DATE:
        if (sl_cql_val_date(v, &i64) == 0) {
            int64_t y;
            unsigned m, dd;
            cc_civil(i64, &y, &m, &dd);
            sl_buf_printf(o, "\"%04" PRId64 "-%02u-%02u\"", y, m, dd);
            return;
        }
        break;
    case SL_CQL_COL_VARCHAR:
    case SL_CQL_COL_ASCII:
        if (sl_cql_val_text(v, &s) == 0) {
            sl_buf_putc(o, '"');
            sl_buf_json_escape(o, s.data, s.len);
            sl_buf_putc(o, '"');
            return;
        }
        break;
    case SL_CQL_COL_UUID:
    case SL_CQL_COL_TIMEUUID:
        if (sl_cql_val_uuid(v, u) == 0) {
            sl_buf_putc(o, '"');
            for (int k = 0; k < 16; k++) {
                sl_buf_printf(o, "%s%02x", k == 4 || k == 6 || k == 8 || k == 10 ? "-" : "", u[k]);
            }
            sl_buf_putc(o, '"');
            return;
        }
        break;
    default:
        break;
    }
    /* anything else (or undecodable): hex */
    sl_buf_puts(o, "\"0x");
    for (int32_t k = 0; k < v.len; k++) {
        sl_buf_printf(o, "%02x", v.ptr[k]);
    }
    sl_buf_putc(o, '"');
}

static void cc_print_rows(const sl_cql_rows_t *rows)
{
    printf("rows %" PRId32 "\n", rows->n_rows);
    int32_t nc = rows->meta.n_cols;
    sl_cql_bytes_t *cells = sl_xcalloc(nc > 0 ? (size_t)nc : 1, sizeof(*cells));
    sl_cql_row_iter_t it;
    sl_buf_t o = SL_BUF_INIT;
    sl_cql_rows_iter(rows, &it);
    while (sl_cql_rows_next(&it, cells)) {
        sl_buf_reset(&o);
        sl_buf_putc(&o, '{');
        for (int32_t k = 0; k < nc; k++) {
            const sl_cql_colspec_t *c = rows->meta.cols != NULL ? &rows->meta.cols[k] : NULL;
            sl_buf_printf(&o, "%s\"", k > 0 ? ", " : "");
            if (c != NULL) {
                sl_buf_json_escape(&o, c->name, strlen(c->name));
            } else {
                sl_buf_printf(&o, "%" PRId32, k);
            }
            sl_buf_puts(&o, "\": ");
            static const sl_cql_coltype_t blob = {.id = SL_CQL_COL_BLOB};
            cc_print_cell(&o, c != NULL ? &c->type : &blob, cells[k]);
        }
        sl_buf_putc(&o, '}');
        puts(o.data);
    }
    sl_buf_free(&o);
    free(cells);
}

/* ---- Requests ----------------------------------------------------------------------------- */

static void cc_fail(cc_cli_t *cli, const char *fmt, ...) SL_PRINTF(2, 3);

/* Counts an error and prints "error ..." on stdout and stderr. */
static void cc_fail(cc_cli_t *cli, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cli->errors++;
    printf("error %s\n", msg);
    fprintf(stderr, "cqlcli: error %s\n", msg);
}

static void cc_on_response(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *frame,
                           const sl_cql_conn_err_t *err)
{
    cc_req_t *req = ctx;
    cc_cli_t *cli = req->cli;
    sl_arena_t tmp;
    sl_arena_init(&tmp, 0);
    cli->pending--;
    if (status != SL_CQL_REQ_OK) {
        cc_fail(cli, "%s: %s", status == SL_CQL_REQ_TIMEOUT ? "timeout" : "lost", err->msg);
        goto out;
    }
    sl_cql_response_t r;
    char msg[256];
    /* prepared metadata must outlive the frame: decode PREPARE into keep */
    sl_arena_t *a = req->prepare_name != NULL ? &cli->keep : &tmp;
    if (sl_cql_response_decode(frame, a, &r, msg, sizeof(msg)) != 0) {
        cc_fail(cli, "undecodable response: %s", msg);
        goto out;
    }
    if (cli->seen != NULL && frame->hdr.stream >= 0 && !cli->seen[frame->hdr.stream]) {
        cli->seen[frame->hdr.stream] = 1;
        cli->distinct++;
    }
    if (r.opcode == SL_CQL_OP_ERROR) {
        char code[64];
        const char *name = sl_cql_error_name(r.error.code);
        snprintf(code, sizeof(code), "%s (0x%04" PRIx32 ") class=%s", name != NULL ? name : "?",
                 (uint32_t)r.error.code, cc_class_name(r.error.cls));
        cc_fail(cli, "%s: %s", code, r.error.message != NULL ? r.error.message : "");
        goto out;
    }
    if (r.opcode != SL_CQL_OP_RESULT) {
        const char *name = sl_cql_opcode_name(r.opcode);
        cc_fail(cli, "unexpected response %s", name != NULL ? name : "?");
        goto out;
    }
    cli->ok++;
    switch (r.result.kind) {
    case SL_CQL_RESULT_VOID:
        if (!cli->quiet) {
            puts("void");
        }
        break;
    case SL_CQL_RESULT_SET_KEYSPACE:
        printf("keyspace %s\n", r.result.keyspace);
        break;
    case SL_CQL_RESULT_SCHEMA_CHANGE: {
        const sl_cql_schema_change_t *s = &r.result.schema;
        printf("schema_change %s %s %s %s\n", s->change_type, s->target, s->keyspace,
               s->name != NULL ? s->name : "-");
        break;
    }
    case SL_CQL_RESULT_PREPARED:
        if (req->prepare_name == NULL || cli->n_stmts == CC_MAX_STMTS) {
            cc_fail(cli, "unexpected or too many PREPARED results");
            break;
        }
        cli->stmts[cli->n_stmts].name =
            sl_arena_strndup(&cli->keep, req->prepare_name, strlen(req->prepare_name));
        cli->stmts[cli->n_stmts].prep = r.result.prepared;
        cli->n_stmts++;
        printf("prepared %s bind=%" PRId32 "\n", req->prepare_name, r.result.prepared.bind.n_cols);
        break;
    case SL_CQL_RESULT_ROWS:
        cc_print_rows(&r.result.rows);
        break;
    default:
        cc_fail(cli, "unknown result kind");
        break;
    }
out:
    sl_arena_free(&tmp);
    free(req->prepare_name);
    free(req);
}

/* One round of the event loop: poll, then process. Returns 0, or -1 when the
 * connection failed or closed. */
static int cc_step(cc_cli_t *cli)
{
    sl_cql_conn_state_t st = sl_cql_conn_state(cli->conn);
    if (st == SL_CQL_CONN_FAILED || st == SL_CQL_CONN_CLOSED) {
        fprintf(stderr, "cqlcli: connection %s: %s\n", sl_cql_conn_state_name(st),
                sl_cql_conn_error(cli->conn));
        printf("error connection: %s\n", sl_cql_conn_error(cli->conn));
        cli->errors++;
        return -1;
    }
    struct pollfd pfd = {.fd = sl_cql_conn_fd(cli->conn), .events = sl_cql_conn_events(cli->conn)};
    int64_t next = sl_cql_conn_next_timeout_ms(cli->conn);
    int timeout = -1;
    if (next >= 0) {
        int64_t left = next - sl_now_ms();
        timeout = left < 0 ? 0 : (int)SL_MIN(left, 60000);
    }
    int n = poll(&pfd, 1, timeout);
    if (n < 0 && errno != EINTR) {
        perror("cqlcli: poll");
        cli->errors++;
        return -1;
    }
    sl_cql_conn_process(cli->conn, n > 0 ? pfd.revents : 0, sl_now_ms());
    return 0;
}

/* Runs the event loop until no request is pending (wait_ready: until the
 * connection is READY). Returns 0, or -1 when the connection failed. */
static int cc_loop(cc_cli_t *cli, bool wait_ready)
{
    while (wait_ready ? sl_cql_conn_state(cli->conn) != SL_CQL_CONN_READY : cli->pending > 0) {
        if (cc_step(cli) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Sends one request (build/arg as sl_cql_conn_send), running the loop while
 * every stream id is taken. Returns 0, or -1 (counted as an error). */
static int cc_send(cc_cli_t *cli, sl_cql_conn_build_fn build, void *arg, const char *prepare_name)
{
    for (;;) {
        cc_req_t *req = sl_xcalloc(1, sizeof(*req));
        req->cli = cli;
        req->prepare_name = prepare_name != NULL ? sl_xstrdup(prepare_name) : NULL;
        const char *err = NULL;
        sl_cql_send_rc_t rc = sl_cql_conn_send(cli->conn, build, arg, cc_on_response, req, &err);
        if (rc == SL_CQL_SEND_OK) {
            cli->pending++;
            return 0;
        }
        free(req->prepare_name);
        free(req);
        if (rc != SL_CQL_SEND_AGAIN) {
            cc_fail(cli, "send: %s",
                    rc == SL_CQL_SEND_DOWN ? "connection down" : (err != NULL ? err : "invalid"));
            return -1;
        }
        if (cc_step(cli) != 0) {
            return -1;
        }
    }
}

typedef struct cc_query_arg {
    const char *cql;
    const sl_cql_params_t *params;
} cc_query_arg_t;

static int cc_build_query(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    const cc_query_arg_t *q = arg;
    return sl_cql_req_query(out, stream, q->cql, strlen(q->cql), q->params, err);
}

static int cc_build_prepare(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    const char *cql = arg;
    return sl_cql_req_prepare(out, stream, cql, strlen(cql), err);
}

typedef struct cc_exec_arg {
    const cc_stmt_t *st;
    const sl_cql_params_t *params;
} cc_exec_arg_t;

static int cc_build_execute(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    const cc_exec_arg_t *e = arg;
    return sl_cql_req_execute(out, stream, e->st->prep.id.ptr, (size_t)e->st->prep.id.len,
                              e->params, err);
}

static int cc_build_batch(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    return sl_cql_req_batch(out, stream, arg, err);
}

/* ---- Commands ----------------------------------------------------------------------------- */

static const cc_stmt_t *cc_find(const cc_cli_t *cli, const char *name)
{
    for (size_t k = cli->n_stmts; k > 0; k--) {
        if (strcmp(cli->stmts[k - 1].name, name) == 0) {
            return &cli->stmts[k - 1];
        }
    }
    return NULL;
}

/* "query CQL [;; TYPE:V ...]" (rest is what follows "query "). */
static int cc_cmd_query(cc_cli_t *cli, char *rest)
{
    static cc_vals_t v;
    const char *err = NULL;
    sl_buf_reset(&v.buf);
    v.n = 0;
    char *sep = strstr(rest, ";;");
    if (sep != NULL) {
        *sep = '\0';
        char *tok[CC_MAX_VALUES];
        int n = cc_split(sep + 2, tok, CC_MAX_VALUES);
        if (n < 0) {
            cc_fail(cli, "bad values: %s", sep + 2);
            return -1;
        }
        for (int k = 0; k < n; k++) {
            char *colon = strchr(tok[k], ':');
            uint16_t id;
            if (colon == NULL) {
                cc_fail(cli, "value %s: want TYPE:VALUE", tok[k]);
                return -1;
            }
            *colon = '\0';
            if (cc_type_id(tok[k], &id) != 0 || cc_vals_add(&v, id, colon + 1, -1, &err) != 0) {
                cc_fail(cli, "value of type %s: %s", tok[k], err != NULL ? err : "unknown type");
                return -1;
            }
        }
        cc_vals_finish(&v);
    }
    /* the query is sent as written, without the blanks around it */
    while (*rest == ' ' || *rest == '\t') {
        rest++;
    }
    size_t len = strlen(rest);
    while (len > 0 && (rest[len - 1] == ' ' || rest[len - 1] == '\t')) {
        rest[--len] = '\0';
    }
    sl_cql_params_t p = {.consistency = SL_CQL_ONE, .values = v.views, .n_values = v.n};
    cc_query_arg_t q = {.cql = rest, .params = &p};
    if (cc_send(cli, cc_build_query, &q, NULL) != 0) {
        return -1;
    }
    return cc_loop(cli, false);
}

static int cc_cmd_prepare(cc_cli_t *cli, char *rest)
{
    while (*rest == ' ') {
        rest++;
    }
    char *sp = strchr(rest, ' ');
    if (sp == NULL) {
        cc_fail(cli, "usage: prepare NAME CQL");
        return -1;
    }
    *sp = '\0';
    if (cc_send(cli, cc_build_prepare, sp + 1, rest) != 0) {
        return -1;
    }
    return cc_loop(cli, false);
}

/* Sends one EXECUTE of tok[0] (the name) with tok[1..n-1]; does not wait. */
static int cc_send_execute(cc_cli_t *cli, char **tok, int n, long idx)
{
    static cc_vals_t v;
    const char *err = NULL;
    sl_buf_reset(&v.buf);
    v.n = 0;
    const cc_stmt_t *st = cc_find(cli, tok[0]);
    if (st == NULL) {
        cc_fail(cli, "no prepared statement %s", tok[0]);
        return -1;
    }
    if (cc_vals_bind(&v, st, tok + 1, n - 1, idx, &err) != 0) {
        cc_fail(cli, "execute %s: %s", tok[0], err);
        return -1;
    }
    cc_vals_finish(&v);
    sl_cql_params_t p = {.consistency = SL_CQL_ONE, .values = v.views, .n_values = v.n};
    cc_exec_arg_t e = {.st = st, .params = &p};
    return cc_send(cli, cc_build_execute, &e, NULL);
}

static int cc_cmd_execute(cc_cli_t *cli, char **tok, int n)
{
    if (n < 1) {
        cc_fail(cli, "usage: execute NAME V1 ...");
        return -1;
    }
    if (cc_send_execute(cli, tok, n, -1) != 0) {
        return -1;
    }
    return cc_loop(cli, false);
}

static int cc_cmd_pipeline(cc_cli_t *cli, char **tok, int n)
{
    int64_t count;
    if (n < 2 || cc_parse_i64(tok[0], &count) != 0 || count < 1 || count > CC_MAX_PIPELINE) {
        cc_fail(cli, "usage: pipeline N NAME V1 ... (N in 1..32768)");
        return -1;
    }
    int errors = cli->errors;
    cli->quiet = true;
    cli->ok = 0;
    cli->distinct = 0;
    cli->seen = sl_xcalloc(SL_CQL_CONN_MAX_STREAMS, 1);
    int rc = 0;
    /* every EXECUTE is queued before the loop runs: they leave coalesced */
    for (int64_t k = 0; k < count && rc == 0; k++) {
        rc = cc_send_execute(cli, tok + 1, n - 1, (long)k);
    }
    if (cc_loop(cli, false) != 0) {
        rc = -1;
    }
    printf("pipeline %" PRId64 " ok=%d errors=%d streams=%d\n", count, cli->ok,
           cli->errors - errors, cli->distinct);
    free(cli->seen);
    cli->seen = NULL;
    cli->quiet = false;
    return rc;
}

static int cc_cmd_batch(cc_cli_t *cli, char **tok, int n)
{
    static cc_vals_t v;
    sl_cql_batch_stmt_t stmts[CC_MAX_BATCH];
    size_t first[CC_MAX_BATCH];
    size_t n_stmts = 0;
    const char *err = NULL;
    sl_buf_reset(&v.buf);
    v.n = 0;
    sl_cql_batch_t b = {.consistency = SL_CQL_ONE};
    if (n < 2) {
        goto usage;
    }
    if (strcmp(tok[0], "logged") == 0) {
        b.type = SL_CQL_BATCH_LOGGED;
    } else if (strcmp(tok[0], "unlogged") == 0) {
        b.type = SL_CQL_BATCH_UNLOGGED;
    } else if (strcmp(tok[0], "counter") == 0) {
        b.type = SL_CQL_BATCH_COUNTER;
    } else {
        goto usage;
    }
    for (int k = 1; k < n;) {
        int end = k;
        while (end < n && strcmp(tok[end], ";") != 0) {
            end++;
        }
        if (end == k || n_stmts == CC_MAX_BATCH) {
            goto usage;
        }
        const cc_stmt_t *st = cc_find(cli, tok[k]);
        if (st == NULL) {
            cc_fail(cli, "no prepared statement %s", tok[k]);
            return -1;
        }
        first[n_stmts] = v.n;
        if (cc_vals_bind(&v, st, tok + k + 1, end - k - 1, -1, &err) != 0) {
            cc_fail(cli, "batch %s: %s", tok[k], err);
            return -1;
        }
        stmts[n_stmts] = (sl_cql_batch_stmt_t){
            .id = st->prep.id.ptr,
            .id_len = (size_t)st->prep.id.len,
            .n_values = v.n - first[n_stmts],
        };
        n_stmts++;
        k = end + 1;
    }
    cc_vals_finish(&v);
    for (size_t k = 0; k < n_stmts; k++) {
        stmts[k].values = v.views + first[k];
    }
    b.stmts = stmts;
    b.n_stmts = n_stmts;
    if (cc_send(cli, cc_build_batch, &b, NULL) != 0) {
        return -1;
    }
    return cc_loop(cli, false);
usage:
    cc_fail(cli, "usage: batch logged|unlogged|counter NAME V1 ... ; NAME V1 ...");
    return -1;
}

/* Runs one script line (modified in place). Returns 0, or -1 to stop. */
static int cc_line(cc_cli_t *cli, char *line, int lineno)
{
    char *tok[CC_MAX_VALUES + 4];
    while (*line == ' ' || *line == '\t') {
        line++;
    }
    if (*line == '\0' || *line == '#') {
        return 0;
    }
    char *rest = line;
    while (*rest != '\0' && *rest != ' ' && *rest != '\t') {
        rest++;
    }
    if (*rest != '\0') {
        *rest++ = '\0';
    }
    int rc;
    if (strcmp(line, "query") == 0) {
        return cc_cmd_query(cli, rest);
    }
    if (strcmp(line, "prepare") == 0) {
        return cc_cmd_prepare(cli, rest);
    }
    int n = cc_split(rest, tok, (int)SL_ARRAY_LEN(tok));
    if (n < 0) {
        fprintf(stderr, "cqlcli: line %d: too many values or unterminated quote\n", lineno);
        cli->errors++;
        return -1;
    }
    if (strcmp(line, "execute") == 0) {
        rc = cc_cmd_execute(cli, tok, n);
    } else if (strcmp(line, "batch") == 0) {
        rc = cc_cmd_batch(cli, tok, n);
    } else if (strcmp(line, "pipeline") == 0) {
        rc = cc_cmd_pipeline(cli, tok, n);
    } else {
        fprintf(stderr, "cqlcli: line %d: unknown command %s\n", lineno, line);
        cli->errors++;
        return -1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    sl_cql_conn_opts_t opts = {
        .request_timeout_ms = 10000, .heartbeat_interval_ms = -1, .tls_verify_host = true};
    const char *script = NULL;
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k];
        const char *v = k + 1 < argc ? argv[k + 1] : NULL;
        if (strcmp(a, "--host") == 0 && v != NULL) {
            opts.host = v;
            k++;
        } else if (strcmp(a, "--port") == 0 && v != NULL) {
            opts.port = atoi(v);
            k++;
        } else if (strcmp(a, "--keyspace") == 0 && v != NULL) {
            opts.keyspace = v;
            k++;
        } else if (strcmp(a, "--user") == 0 && v != NULL) {
            opts.user = v;
            k++;
        } else if (strcmp(a, "--password") == 0 && v != NULL) {
            opts.password = v;
            k++;
        } else if (strcmp(a, "--lz4") == 0) {
            opts.compression = true;
        } else if (strcmp(a, "--tls") == 0) {
            opts.tls = true;
        } else if (strcmp(a, "--tls-no-verify-host") == 0) {
            opts.tls = true;
            opts.tls_verify_host = false;
        } else if (strcmp(a, "--tls-ca") == 0 && v != NULL) {
            opts.tls = true;
            opts.tls_ca_file = v;
            k++;
        } else if (strcmp(a, "--tls-cert") == 0 && v != NULL) {
            opts.tls = true;
            opts.tls_cert_file = v;
            k++;
        } else if (strcmp(a, "--tls-key") == 0 && v != NULL) {
            opts.tls = true;
            opts.tls_key_file = v;
            k++;
        } else if (strcmp(a, "--tls-server-name") == 0 && v != NULL) {
            opts.tls = true;
            opts.tls_server_name = v;
            k++;
        } else if (a[0] != '-' && script == NULL) {
            script = a;
        } else {
            fputs(cc_usage, stderr);
            return 2;
        }
    }
    if (opts.host == NULL || opts.port <= 0 || opts.port > 65535 || script == NULL ||
        (opts.user == NULL) != (opts.password == NULL)) {
        fputs(cc_usage, stderr);
        return 2;
    }
    FILE *f = fopen(script, "r");
    if (f == NULL) {
        fprintf(stderr, "cqlcli: %s: %s\n", script, strerror(errno));
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cc_cli_t cli = {0};
    sl_arena_init(&cli.keep, 0);
    cli.conn = sl_cql_conn_create(&opts);
    int rc = cc_loop(&cli, true);
    char *line = sl_xmalloc(CC_LINE_MAX);
    int lineno = 0;
    while (rc == 0 && fgets(line, CC_LINE_MAX, f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
            line[--len] = '\0';
        }
        /* an error response does not stop the script; a broken connection does */
        if (cc_line(&cli, line, lineno) != 0 && sl_cql_conn_state(cli.conn) != SL_CQL_CONN_READY) {
            rc = -1;
        }
    }
    free(line);
    fclose(f);
    sl_cql_conn_stats_t stats;
    sl_cql_conn_stats(cli.conn, &stats);
    fprintf(stderr,
            "cqlcli: frames sent %" PRIu64 " received %" PRIu64 ", write calls %" PRIu64
            ", errors %d\n",
            stats.frames_sent, stats.frames_received, stats.write_calls, cli.errors);
    sl_cql_conn_destroy(cli.conn);
    sl_arena_free(&cli.keep);
    return cli.errors == 0 && rc == 0 ? 0 : 1;
}
