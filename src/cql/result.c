#include "cql/result.h"

#include "util/utf8.h"
#include <stdio.h>
#include <string.h>

static int rs_fail(sl_cql_rd_t *r, const char *why)
{
    if (r->err == NULL) {
        r->err = why;
    }
    return -1;
}

/* Copies a view into the arena (so it outlives the body); null stays null. */
static sl_cql_bytes_t rs_copy(sl_arena_t *a, sl_cql_bytes_t v)
{
    if (v.len < 0) {
        return (sl_cql_bytes_t){NULL, SL_CQL_LEN_NULL};
    }
    uint8_t *p = sl_arena_alloc(a, (size_t)v.len + 1);
    if (v.len > 0) {
        memcpy(p, v.ptr, (size_t)v.len);
    }
    return (sl_cql_bytes_t){p, v.len};
}

/* ---- Types ------------------------------------------------------------------------------- */

static int rs_type(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_coltype_t *t, int depth)
{
    memset(t, 0, sizeof(*t));
    if (depth > SL_CQL_TYPE_MAX_DEPTH) {
        return rs_fail(r, "type nested too deeply");
    }
    if (sl_cql_rd_option_id(r, &t->id) != 0) {
        return -1;
    }
    switch (t->id) {
    case SL_CQL_COL_CUSTOM:
        return sl_cql_rd_string_dup(r, a, &t->custom);
    case SL_CQL_COL_ASCII:
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_BLOB:
    case SL_CQL_COL_BOOLEAN:
    case SL_CQL_COL_COUNTER:
    case SL_CQL_COL_DECIMAL:
    case SL_CQL_COL_DOUBLE:
    case SL_CQL_COL_FLOAT:
    case SL_CQL_COL_INT:
    case SL_CQL_COL_TIMESTAMP:
    case SL_CQL_COL_UUID:
    case SL_CQL_COL_VARCHAR:
    case SL_CQL_COL_VARINT:
    case SL_CQL_COL_TIMEUUID:
    case SL_CQL_COL_INET:
    case SL_CQL_COL_DATE:
    case SL_CQL_COL_TIME:
    case SL_CQL_COL_SMALLINT:
    case SL_CQL_COL_TINYINT:
        return 0;
    case SL_CQL_COL_LIST:
    case SL_CQL_COL_SET:
    case SL_CQL_COL_MAP: {
        size_t n = t->id == SL_CQL_COL_MAP ? 2 : 1;
        sl_cql_coltype_t *params = sl_arena_alloc(a, n * sizeof(*params));
        for (size_t i = 0; i < n; i++) {
            if (rs_type(r, a, &params[i], depth + 1) != 0) {
                return -1;
            }
        }
        t->params = params;
        t->n_params = n;
        return 0;
    }
    case SL_CQL_COL_UDT:
    case SL_CQL_COL_TUPLE: {
        bool udt = t->id == SL_CQL_COL_UDT;
        uint16_t n;
        if (udt && (sl_cql_rd_string_dup(r, a, &t->udt_keyspace) != 0 ||
                    sl_cql_rd_string_dup(r, a, &t->udt_name) != 0)) {
            return -1;
        }
        if (sl_cql_rd_short(r, &n) != 0) {
            return -1;
        }
        /* A field takes at least 4 bytes (name and id), a component 2. */
        if ((size_t)n * (udt ? 4 : 2) > sl_cql_rd_remaining(r)) {
            return rs_fail(r, "truncated UDT or tuple type");
        }
        sl_cql_coltype_t *params = sl_arena_alloc(a, (size_t)n * sizeof(*params) + 1);
        const char **names = udt ? sl_arena_alloc(a, (size_t)n * sizeof(*names) + 1) : NULL;
        for (size_t i = 0; i < n; i++) {
            if (udt && sl_cql_rd_string_dup(r, a, &names[i]) != 0) {
                return -1;
            }
            if (rs_type(r, a, &params[i], depth + 1) != 0) {
                return -1;
            }
        }
        t->params = params;
        t->n_params = n;
        t->field_names = names;
        return 0;
    }
    default:
        return rs_fail(r, "unknown type option id");
    }
}

int sl_cql_rd_type(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_coltype_t *out)
{
    return rs_type(r, a, out, 0);
}

/* ---- RESULT ------------------------------------------------------------------------------ */

/* Reads a Rows <metadata> (prepared false) or a Prepared bind-variable
 * <metadata> (prepared true: pk indexes, no paging state, no No_metadata). */
static int rs_metadata(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_metadata_t *m, bool prepared)
{
    const char *gks = NULL, *gtable = NULL;
    memset(m, 0, sizeof(*m));
    m->paging_state = (sl_cql_bytes_t){NULL, SL_CQL_LEN_NULL};
    if (sl_cql_rd_int(r, &m->flags) != 0 || sl_cql_rd_int(r, &m->n_cols) != 0) {
        return -1;
    }
    if (m->n_cols < 0) {
        return rs_fail(r, "negative column count");
    }
    if (prepared) {
        if (sl_cql_rd_int(r, &m->pk_count) != 0) {
            return -1;
        }
        if (m->pk_count < 0 || (size_t)m->pk_count * 2 > sl_cql_rd_remaining(r)) {
            return rs_fail(r, "bad partition key count");
        }
        uint16_t *pk = sl_arena_alloc(a, (size_t)m->pk_count * sizeof(*pk) + 1);
        for (int32_t i = 0; i < m->pk_count; i++) {
            if (sl_cql_rd_short(r, &pk[i]) != 0) {
                return -1;
            }
            if (pk[i] >= m->n_cols) {
                return rs_fail(r, "partition key index beyond the bind markers");
            }
        }
        m->pk_index = pk;
    } else {
        if (m->flags & SL_CQL_META_HAS_MORE_PAGES) {
            sl_cql_bytes_t ps;
            if (sl_cql_rd_bytes(r, &ps) != 0) {
                return -1;
            }
            m->paging_state = rs_copy(a, ps);
        }
        if (m->flags & SL_CQL_META_NO_METADATA) {
            return 0;
        }
    }
    bool global = (m->flags & SL_CQL_META_GLOBAL_TABLES_SPEC) != 0;
    if (global &&
        (sl_cql_rd_string_dup(r, a, &gks) != 0 || sl_cql_rd_string_dup(r, a, &gtable) != 0)) {
        return -1;
    }
    /* A spec takes at least 4 bytes (name, type id), 8 with its table. */
    if ((size_t)m->n_cols * (global ? 4 : 8) > sl_cql_rd_remaining(r)) {
        return rs_fail(r, "truncated column specs");
    }
    sl_cql_colspec_t *cols = sl_arena_alloc(a, (size_t)m->n_cols * sizeof(*cols) + 1);
    for (int32_t i = 0; i < m->n_cols; i++) {
        sl_cql_colspec_t *c = &cols[i];
        c->keyspace = gks;
        c->table = gtable;
        if (!global && (sl_cql_rd_string_dup(r, a, &c->keyspace) != 0 ||
                        sl_cql_rd_string_dup(r, a, &c->table) != 0)) {
            return -1;
        }
        if (sl_cql_rd_string_dup(r, a, &c->name) != 0 || rs_type(r, a, &c->type, 0) != 0) {
            return -1;
        }
    }
    m->cols = cols;
    return 0;
}

static int rs_rows(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_rows_t *rows)
{
    if (rs_metadata(r, a, &rows->meta, false) != 0 || sl_cql_rd_int(r, &rows->n_rows) != 0) {
        return -1;
    }
    if (rows->n_rows < 0) {
        return rs_fail(r, "negative row count");
    }
    size_t start = r->off;
    if (rows->meta.n_cols > 0) {
        uint64_t cells = (uint64_t)rows->n_rows * (uint64_t)rows->meta.n_cols;
        /* Every cell takes at least its 4-byte length. */
        if (cells > sl_cql_rd_remaining(r) / 4) {
            return rs_fail(r, "truncated rows");
        }
        for (uint64_t i = 0; i < cells; i++) {
            sl_cql_bytes_t cell;
            if (sl_cql_rd_bytes(r, &cell) != 0) {
                return -1;
            }
        }
    }
    rows->content = r->p + start;
    rows->content_len = r->off - start;
    return 0;
}

void sl_cql_rows_iter(const sl_cql_rows_t *rows, sl_cql_row_iter_t *it)
{
    sl_cql_rd_init(&it->rd, rows->content, rows->content_len);
    it->left = rows->n_rows;
    it->n_cols = rows->meta.n_cols;
}

bool sl_cql_rows_next(sl_cql_row_iter_t *it, sl_cql_bytes_t *cells)
{
    if (it->left <= 0) {
        return false;
    }
    for (int32_t i = 0; i < it->n_cols; i++) {
        if (sl_cql_rd_bytes(&it->rd, &cells[i]) != 0) {
            it->left = 0; /* cannot happen: decoding checked the rows */
            return false;
        }
    }
    it->left--;
    return true;
}

static int rs_schema_change(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_schema_change_t *s)
{
    memset(s, 0, sizeof(*s));
    if (sl_cql_rd_string_dup(r, a, &s->change_type) != 0 ||
        sl_cql_rd_string_dup(r, a, &s->target) != 0 ||
        sl_cql_rd_string_dup(r, a, &s->keyspace) != 0) {
        return -1;
    }
    if (strcmp(s->target, "KEYSPACE") == 0) {
        return 0;
    }
    bool table = strcmp(s->target, "TABLE") == 0 || strcmp(s->target, "TYPE") == 0;
    bool function = strcmp(s->target, "FUNCTION") == 0 || strcmp(s->target, "AGGREGATE") == 0;
    if (!table && !function) {
        return rs_fail(r, "unknown schema change target");
    }
    if (sl_cql_rd_string_dup(r, a, &s->name) != 0) {
        return -1;
    }
    if (function) {
        return sl_cql_rd_string_list(r, a, &s->arg_types, &s->n_arg_types);
    }
    return 0;
}

static int rs_result(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_result_t *res)
{
    sl_cql_bytes_t id;
    if (sl_cql_rd_int(r, &res->kind) != 0) {
        return -1;
    }
    switch (res->kind) {
    case SL_CQL_RESULT_VOID:
        return 0;
    case SL_CQL_RESULT_ROWS:
        return rs_rows(r, a, &res->rows);
    case SL_CQL_RESULT_SET_KEYSPACE:
        return sl_cql_rd_string_dup(r, a, &res->keyspace);
    case SL_CQL_RESULT_PREPARED:
        if (sl_cql_rd_short_bytes(r, &id) != 0) {
            return -1;
        }
        if (id.len == 0) {
            return rs_fail(r, "empty prepared statement id");
        }
        res->prepared.id = rs_copy(a, id);
        if (rs_metadata(r, a, &res->prepared.bind, true) != 0) {
            return -1;
        }
        return rs_metadata(r, a, &res->prepared.result, false);
    case SL_CQL_RESULT_SCHEMA_CHANGE:
        return rs_schema_change(r, a, &res->schema);
    default:
        return rs_fail(r, "unknown RESULT kind");
    }
}

/* ---- EVENT ------------------------------------------------------------------------------- */

static int rs_event(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_event_t *ev)
{
    const char *type;
    if (sl_cql_rd_string_dup(r, a, &type) != 0) {
        return -1;
    }
    if (strcmp(type, "SCHEMA_CHANGE") == 0) {
        ev->kind = SL_CQL_EVENT_SCHEMA_CHANGE;
        return rs_schema_change(r, a, &ev->schema);
    }
    if (strcmp(type, "TOPOLOGY_CHANGE") == 0) {
        ev->kind = SL_CQL_EVENT_TOPOLOGY_CHANGE;
    } else if (strcmp(type, "STATUS_CHANGE") == 0) {
        ev->kind = SL_CQL_EVENT_STATUS_CHANGE;
    } else {
        return rs_fail(r, "unknown event type");
    }
    if (sl_cql_rd_string_dup(r, a, &ev->change) != 0) {
        return -1;
    }
    return sl_cql_rd_inet(r, &ev->addr);
}

/* ---- ERROR ------------------------------------------------------------------------------- */

static const struct {
    int32_t code;
    const char *name;
    sl_cql_errclass_t cls;
    bool maybe_applied;
} rs_errors[] = {
    /* A server-side bug (spec 9). Retried on another node, for idempotent
     * requests only since it may strike after the write was applied; the
     * DataStax drivers do the same. Callers bound retries. */
    {SL_CQL_ERR_SERVER, "Server_error", SL_CQL_ERRCLASS_RETRIABLE, true},
    /* Our frames violate the protocol: retrying sends the same bytes. */
    {SL_CQL_ERR_PROTOCOL, "Protocol_error", SL_CQL_ERRCLASS_FATAL, false},
    {SL_CQL_ERR_AUTH, "Authentication_error", SL_CQL_ERRCLASS_FATAL, false},
    /* Refused by the coordinator before anything was sent to replicas. */
    {SL_CQL_ERR_UNAVAILABLE, "Unavailable", SL_CQL_ERRCLASS_RETRIABLE, false},
    {SL_CQL_ERR_OVERLOADED, "Overloaded", SL_CQL_ERRCLASS_RETRIABLE, false},
    {SL_CQL_ERR_IS_BOOTSTRAPPING, "Is_bootstrapping", SL_CQL_ERRCLASS_RETRIABLE, false},
    /* TRUNCATE is idempotent; it may have reached some replicas. */
    {SL_CQL_ERR_TRUNCATE, "Truncate_error", SL_CQL_ERRCLASS_RETRIABLE, true},
    /* Replicas may have applied the write: see write_type and maybe_applied. */
    {SL_CQL_ERR_WRITE_TIMEOUT, "Write_timeout", SL_CQL_ERRCLASS_RETRIABLE, true},
    {SL_CQL_ERR_READ_TIMEOUT, "Read_timeout", SL_CQL_ERRCLASS_RETRIABLE, false},
    /* Non-timeout failures on replicas (tombstone overflow, a replica's
     * exception): they repeat, so the drivers rethrow them. */
    {SL_CQL_ERR_READ_FAILURE, "Read_failure", SL_CQL_ERRCLASS_PERMANENT, false},
    {SL_CQL_ERR_FUNCTION_FAILURE, "Function_failure", SL_CQL_ERRCLASS_PERMANENT, false},
    {SL_CQL_ERR_WRITE_FAILURE, "Write_failure", SL_CQL_ERRCLASS_PERMANENT, true},
    {SL_CQL_ERR_SYNTAX, "Syntax_error", SL_CQL_ERRCLASS_PERMANENT, false},
    {SL_CQL_ERR_UNAUTHORIZED, "Unauthorized", SL_CQL_ERRCLASS_PERMANENT, false},
    {SL_CQL_ERR_INVALID, "Invalid", SL_CQL_ERRCLASS_PERMANENT, false},
    {SL_CQL_ERR_CONFIG, "Config_error", SL_CQL_ERRCLASS_PERMANENT, false},
    {SL_CQL_ERR_ALREADY_EXISTS, "Already_exists", SL_CQL_ERRCLASS_PERMANENT, false},
    {SL_CQL_ERR_UNPREPARED, "Unprepared", SL_CQL_ERRCLASS_REPREPARE, false},
};

static int rs_error_index(int32_t code)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(rs_errors); i++) {
        if (rs_errors[i].code == code) {
            return (int)i;
        }
    }
    return -1;
}

sl_cql_errclass_t sl_cql_error_class(int32_t code)
{
    int i = rs_error_index(code);
    return i < 0 ? SL_CQL_ERRCLASS_PERMANENT : rs_errors[i].cls;
}

bool sl_cql_error_maybe_applied(int32_t code)
{
    int i = rs_error_index(code);
    return i < 0 ? true : rs_errors[i].maybe_applied;
}

const char *sl_cql_error_name(int32_t code)
{
    int i = rs_error_index(code);
    return i < 0 ? NULL : rs_errors[i].name;
}

bool sl_cql_error_retry_ok(const sl_cql_error_t *e, bool idempotent)
{
    if (e->cls != SL_CQL_ERRCLASS_RETRIABLE || e->write_type == SL_CQL_WRITE_COUNTER) {
        return false;
    }
    return idempotent || !e->maybe_applied;
}

static sl_cql_write_type_t rs_write_type(const char *s)
{
    static const char *const names[] = {
        [SL_CQL_WRITE_SIMPLE] = "SIMPLE",
        [SL_CQL_WRITE_BATCH] = "BATCH",
        [SL_CQL_WRITE_UNLOGGED_BATCH] = "UNLOGGED_BATCH",
        [SL_CQL_WRITE_COUNTER] = "COUNTER",
        [SL_CQL_WRITE_BATCH_LOG] = "BATCH_LOG",
        [SL_CQL_WRITE_CAS] = "CAS",
        [SL_CQL_WRITE_VIEW] = "VIEW",
        [SL_CQL_WRITE_CDC] = "CDC",
    };
    for (size_t i = SL_CQL_WRITE_SIMPLE; i < SL_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            return (sl_cql_write_type_t)i;
        }
    }
    return SL_CQL_WRITE_OTHER;
}

static int rs_error(sl_cql_rd_t *r, sl_arena_t *a, sl_cql_error_t *e)
{
    uint8_t b = 0;
    if (sl_cql_rd_int(r, &e->code) != 0 || sl_cql_rd_string_dup(r, a, &e->message) != 0) {
        return -1;
    }
    e->cls = sl_cql_error_class(e->code);
    e->maybe_applied = sl_cql_error_maybe_applied(e->code);
    switch (e->code) {
    case SL_CQL_ERR_UNAVAILABLE:
        return sl_cql_rd_short(r, &e->consistency) != 0 || sl_cql_rd_int(r, &e->required) != 0 ||
                       sl_cql_rd_int(r, &e->alive) != 0
                   ? -1
                   : 0;
    case SL_CQL_ERR_WRITE_TIMEOUT:
    case SL_CQL_ERR_WRITE_FAILURE:
    case SL_CQL_ERR_READ_TIMEOUT:
    case SL_CQL_ERR_READ_FAILURE: {
        bool failure = e->code == SL_CQL_ERR_WRITE_FAILURE || e->code == SL_CQL_ERR_READ_FAILURE;
        bool write = e->code == SL_CQL_ERR_WRITE_TIMEOUT || e->code == SL_CQL_ERR_WRITE_FAILURE;
        if (sl_cql_rd_short(r, &e->consistency) != 0 || sl_cql_rd_int(r, &e->received) != 0 ||
            sl_cql_rd_int(r, &e->blockfor) != 0) {
            return -1;
        }
        if (failure && sl_cql_rd_int(r, &e->numfailures) != 0) {
            return -1;
        }
        if (write) {
            if (sl_cql_rd_string_dup(r, a, &e->write_type_name) != 0) {
                return -1;
            }
            e->write_type = rs_write_type(e->write_type_name);
            return 0;
        }
        if (sl_cql_rd_byte(r, &b) != 0) {
            return -1;
        }
        e->data_present = b != 0;
        return 0;
    }
    case SL_CQL_ERR_FUNCTION_FAILURE:
        if (sl_cql_rd_string_dup(r, a, &e->keyspace) != 0 ||
            sl_cql_rd_string_dup(r, a, &e->function) != 0) {
            return -1;
        }
        return sl_cql_rd_string_list(r, a, &e->arg_types, &e->n_arg_types);
    case SL_CQL_ERR_ALREADY_EXISTS:
        if (sl_cql_rd_string_dup(r, a, &e->keyspace) != 0) {
            return -1;
        }
        return sl_cql_rd_string_dup(r, a, &e->table);
    case SL_CQL_ERR_UNPREPARED: {
        sl_cql_bytes_t id;
        if (sl_cql_rd_short_bytes(r, &id) != 0) {
            return -1;
        }
        e->unprepared_id = rs_copy(a, id);
        return 0;
    }
    default:
        return 0;
    }
}

/* ---- Responses --------------------------------------------------------------------------- */

int sl_cql_response_decode_body(uint8_t opcode, uint8_t flags, const uint8_t *body, size_t len,
                                sl_arena_t *a, sl_cql_response_t *out, char *err, size_t errlen)
{
    int rc = -1;
    sl_cql_rd_t r;
    memset(out, 0, sizeof(*out));
    out->opcode = opcode;
    out->flags = flags;
    out->token = (sl_cql_bytes_t){NULL, SL_CQL_LEN_NULL};
    sl_cql_rd_init(&r, body, len);
    if (flags & SL_CQL_FLAG_COMPRESSION) {
        rs_fail(&r, "compressed body (compression is not supported)");
        goto out;
    }
    if (flags & SL_CQL_FLAG_TRACING) {
        out->has_tracing_id = true;
        if (sl_cql_rd_uuid(&r, out->tracing_id) != 0) {
            goto out;
        }
    }
    if ((flags & SL_CQL_FLAG_WARNING) &&
        sl_cql_rd_string_list(&r, a, &out->warnings, &out->n_warnings) != 0) {
        goto out;
    }
    if ((flags & SL_CQL_FLAG_CUSTOM_PAYLOAD) &&
        sl_cql_rd_bytes_map(&r, a, &out->payload, &out->n_payload) != 0) {
        goto out;
    }
    int st = 0;
    switch (opcode) {
    case SL_CQL_OP_ERROR:
        st = rs_error(&r, a, &out->error);
        break;
    case SL_CQL_OP_READY:
        break;
    case SL_CQL_OP_AUTHENTICATE:
        st = sl_cql_rd_string_dup(&r, a, &out->authenticator);
        break;
    case SL_CQL_OP_SUPPORTED:
        st = sl_cql_rd_string_multimap(&r, a, &out->supported, &out->n_supported);
        break;
    case SL_CQL_OP_RESULT:
        st = rs_result(&r, a, &out->result);
        break;
    case SL_CQL_OP_EVENT:
        st = rs_event(&r, a, &out->event);
        break;
    case SL_CQL_OP_AUTH_CHALLENGE:
    case SL_CQL_OP_AUTH_SUCCESS:
        st = sl_cql_rd_bytes(&r, &out->token);
        break;
    default:
        st = rs_fail(&r, "not a response opcode");
        break;
    }
    if (st != 0 || r.err != NULL) {
        rs_fail(&r, "malformed body");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0 && errlen > 0) {
        const char *name = sl_cql_opcode_name(opcode);
        snprintf(err, errlen, "%s: %s (at byte %zu of %zu)", name ? name : "?", r.err, r.off,
                 r.len);
    }
    return rc;
}

int sl_cql_response_decode(const sl_cql_frame_t *f, sl_arena_t *a, sl_cql_response_t *out,
                           char *err, size_t errlen)
{
    int rc = sl_cql_response_decode_body(f->hdr.opcode, f->hdr.flags, f->body, f->body_len, a, out,
                                         err, errlen);
    out->stream = f->hdr.stream;
    return rc;
}

/* ---- Values ------------------------------------------------------------------------------ */

static uint64_t rs_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

int sl_cql_val_int(sl_cql_bytes_t v, int32_t *out)
{
    if (v.len != 4) {
        return -1;
    }
    *out = (int32_t)(uint32_t)rs_be(v.ptr, 4);
    return 0;
}

int sl_cql_val_bigint(sl_cql_bytes_t v, int64_t *out)
{
    if (v.len != 8) {
        return -1;
    }
    *out = (int64_t)rs_be(v.ptr, 8);
    return 0;
}

int sl_cql_val_smallint(sl_cql_bytes_t v, int16_t *out)
{
    if (v.len != 2) {
        return -1;
    }
    *out = (int16_t)(uint16_t)rs_be(v.ptr, 2);
    return 0;
}

int sl_cql_val_tinyint(sl_cql_bytes_t v, int8_t *out)
{
    if (v.len != 1) {
        return -1;
    }
    *out = (int8_t)v.ptr[0];
    return 0;
}

int sl_cql_val_boolean(sl_cql_bytes_t v, bool *out)
{
    if (v.len != 1) {
        return -1;
    }
    *out = v.ptr[0] != 0;
    return 0;
}

int sl_cql_val_double(sl_cql_bytes_t v, double *out)
{
    if (v.len != 8) {
        return -1;
    }
    uint64_t u = rs_be(v.ptr, 8);
    memcpy(out, &u, sizeof(*out));
    return 0;
}

int sl_cql_val_float(sl_cql_bytes_t v, float *out)
{
    if (v.len != 4) {
        return -1;
    }
    uint32_t u = (uint32_t)rs_be(v.ptr, 4);
    memcpy(out, &u, sizeof(*out));
    return 0;
}

int sl_cql_val_date(sl_cql_bytes_t v, int64_t *out)
{
    if (v.len != 4) {
        return -1;
    }
    *out = (int64_t)rs_be(v.ptr, 4) - ((int64_t)1 << 31);
    return 0;
}

int sl_cql_val_timestamp(sl_cql_bytes_t v, int64_t *out)
{
    return sl_cql_val_bigint(v, out);
}

int sl_cql_val_uuid(sl_cql_bytes_t v, uint8_t out[16])
{
    if (v.len != 16) {
        return -1;
    }
    memcpy(out, v.ptr, 16);
    return 0;
}

int sl_cql_val_text(sl_cql_bytes_t v, sl_cql_str_t *out)
{
    if (v.len < 0 || !sl_utf8_valid(v.ptr, (size_t)v.len)) {
        return -1;
    }
    out->data = v.len > 0 ? (const char *)v.ptr : "";
    out->len = (size_t)v.len;
    return 0;
}

int sl_cql_val_ascii(sl_cql_bytes_t v, sl_cql_str_t *out)
{
    if (v.len < 0) {
        return -1;
    }
    for (int32_t i = 0; i < v.len; i++) {
        if (v.ptr[i] >= 0x80) {
            return -1;
        }
    }
    out->data = v.len > 0 ? (const char *)v.ptr : "";
    out->len = (size_t)v.len;
    return 0;
}

int sl_cql_val_blob(sl_cql_bytes_t v, sl_cql_bytes_t *out)
{
    if (v.len < 0) {
        return -1;
    }
    *out = v;
    return 0;
}

int sl_cql_val_inet(sl_cql_bytes_t v, sl_cql_inet_t *out)
{
    if (v.len != 4 && v.len != 16) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->addr_len = (uint8_t)v.len;
    memcpy(out->addr, v.ptr, (size_t)v.len);
    return 0;
}

/* Checks a collection of per_entry [bytes] per entry and starts *it over it. */
static int rs_coll(sl_cql_bytes_t v, int per_entry, sl_cql_coll_iter_t *it, int32_t *n)
{
    sl_cql_rd_t r;
    int32_t count;
    if (v.len < 0) {
        return -1;
    }
    sl_cql_rd_init(&r, v.ptr, (size_t)v.len);
    if (sl_cql_rd_int(&r, &count) != 0 || count < 0 ||
        (uint64_t)count * (uint64_t)per_entry > sl_cql_rd_remaining(&r) / 4) {
        return -1;
    }
    it->rd = r;
    for (int64_t i = 0; i < (int64_t)count * per_entry; i++) {
        sl_cql_bytes_t e;
        if (sl_cql_rd_bytes(&r, &e) != 0) {
            return -1;
        }
    }
    if (sl_cql_rd_remaining(&r) != 0) {
        return -1;
    }
    it->left = count;
    *n = count;
    return 0;
}

int sl_cql_val_list(sl_cql_bytes_t v, sl_cql_coll_iter_t *it, int32_t *n)
{
    return rs_coll(v, 1, it, n);
}

int sl_cql_val_set(sl_cql_bytes_t v, sl_cql_coll_iter_t *it, int32_t *n)
{
    return rs_coll(v, 1, it, n);
}

int sl_cql_val_map(sl_cql_bytes_t v, sl_cql_coll_iter_t *it, int32_t *n)
{
    return rs_coll(v, 2, it, n);
}

bool sl_cql_coll_next(sl_cql_coll_iter_t *it, sl_cql_bytes_t *elem)
{
    if (it->left <= 0 || sl_cql_rd_bytes(&it->rd, elem) != 0) {
        return false;
    }
    it->left--;
    return true;
}

bool sl_cql_map_next(sl_cql_coll_iter_t *it, sl_cql_bytes_t *key, sl_cql_bytes_t *value)
{
    if (it->left <= 0 || sl_cql_rd_bytes(&it->rd, key) != 0 ||
        sl_cql_rd_bytes(&it->rd, value) != 0) {
        return false;
    }
    it->left--;
    return true;
}
