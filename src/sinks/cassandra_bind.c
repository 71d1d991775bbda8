#include "sinks/cassandra_bind.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    uint16_t id;
    const char *name;
} cb_type_names[] = {
    {SL_CQL_COL_CUSTOM, "custom"},
    {SL_CQL_COL_ASCII, "ascii"},
    {SL_CQL_COL_BIGINT, "bigint"},
    {SL_CQL_COL_BLOB, "blob"},
    {SL_CQL_COL_BOOLEAN, "boolean"},
    {SL_CQL_COL_COUNTER, "counter"},
    {SL_CQL_COL_DECIMAL, "decimal"},
    {SL_CQL_COL_DOUBLE, "double"},
    {SL_CQL_COL_FLOAT, "float"},
    {SL_CQL_COL_INT, "int"},
    {SL_CQL_COL_TIMESTAMP, "timestamp"},
    {SL_CQL_COL_UUID, "uuid"},
    {SL_CQL_COL_VARCHAR, "text"},
    {SL_CQL_COL_VARINT, "varint"},
    {SL_CQL_COL_TIMEUUID, "timeuuid"},
    {SL_CQL_COL_INET, "inet"},
    {SL_CQL_COL_DATE, "date"},
    {SL_CQL_COL_TIME, "time"},
    {SL_CQL_COL_SMALLINT, "smallint"},
    {SL_CQL_COL_TINYINT, "tinyint"},
    {SL_CQL_COL_LIST, "list"},
    {SL_CQL_COL_MAP, "map"},
    {SL_CQL_COL_SET, "set"},
    {SL_CQL_COL_UDT, "user-defined type"},
    {SL_CQL_COL_TUPLE, "tuple"},
};

const char *sl_cass_cql_type_name(uint16_t id)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(cb_type_names); i++) {
        if (cb_type_names[i].id == id) {
            return cb_type_names[i].name;
        }
    }
    return "unknown";
}

bool sl_cass_compatible(sl_type_t t, uint16_t id)
{
    switch (t) {
    case SL_TYPE_INT32:
    case SL_TYPE_INT64:
        return id == SL_CQL_COL_INT || id == SL_CQL_COL_BIGINT || id == SL_CQL_COL_COUNTER ||
               id == SL_CQL_COL_SMALLINT || id == SL_CQL_COL_TINYINT || id == SL_CQL_COL_VARINT;
    case SL_TYPE_DOUBLE:
        return id == SL_CQL_COL_DOUBLE || id == SL_CQL_COL_FLOAT;
    case SL_TYPE_STRING:
        return id == SL_CQL_COL_VARCHAR || id == SL_CQL_COL_ASCII || id == SL_CQL_COL_UUID ||
               id == SL_CQL_COL_TIMEUUID || id == SL_CQL_COL_INET;
    case SL_TYPE_BOOL:
        return id == SL_CQL_COL_BOOLEAN;
    case SL_TYPE_DATE:
        return id == SL_CQL_COL_DATE || id == SL_CQL_COL_TIMESTAMP;
    case SL_TYPE_TIMESTAMP:
        return id == SL_CQL_COL_TIMESTAMP;
    default:
        return false;
    }
}

/* The schema types that can feed a column of CQL type id, for messages. */
static const char *cb_feeders(uint16_t id)
{
    switch (id) {
    case SL_CQL_COL_INT:
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
    case SL_CQL_COL_SMALLINT:
    case SL_CQL_COL_TINYINT:
    case SL_CQL_COL_VARINT:
        return "int32 or int64";
    case SL_CQL_COL_DOUBLE:
    case SL_CQL_COL_FLOAT:
        return "double";
    case SL_CQL_COL_VARCHAR:
    case SL_CQL_COL_ASCII:
    case SL_CQL_COL_UUID:
    case SL_CQL_COL_TIMEUUID:
    case SL_CQL_COL_INET:
        return "string";
    case SL_CQL_COL_BOOLEAN:
        return "bool";
    case SL_CQL_COL_DATE:
        return "date";
    case SL_CQL_COL_TIMESTAMP:
        return "timestamp or date";
    default:
        return NULL;
    }
}

void sl_cass_binding_free(sl_cass_binding_t *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        free(b->markers[i].name);
    }
    free(b->markers);
    free(b->pk);
    memset(b, 0, sizeof(*b));
}

int sl_cass_binding_build(const sl_cql_metadata_t *bind, const sl_schema_t *schema,
                          sl_cass_binding_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (bind->n_cols > 0 && bind->cols == NULL) {
        snprintf(err, errlen,
                 "Cassandra sent no bind marker metadata for the statement: check the server "
                 "speaks CQL protocol v4");
        return -1;
    }
    out->n = (size_t)bind->n_cols;
    out->markers = sl_xcalloc(out->n ? out->n : 1, sizeof(*out->markers));
    for (size_t i = 0; i < out->n; i++) {
        const sl_cql_colspec_t *col = &bind->cols[i];
        sl_cass_marker_t *m = &out->markers[i];
        m->name = sl_xstrdup(col->name ? col->name : "");
        m->cql = col->type.id;
        const char *cql_name = sl_cass_cql_type_name(m->cql);
        m->field = sl_schema_find(schema, m->name, strlen(m->name));
        if (cb_feeders(m->cql) == NULL) {
            snprintf(err, errlen,
                     "bind marker '%s' is a column of CQL type %s, which sink.cassandra cannot "
                     "bind: use a column of a scalar type (int, bigint, counter, smallint, "
                     "tinyint, varint, double, float, text, ascii, uuid, timeuuid, inet, "
                     "boolean, date, timestamp)",
                     m->name, cql_name);
            goto fail;
        }
        if (m->field < 0) {
            snprintf(err, errlen,
                     "bind marker '%s' of the statement has no schema field of that name: add "
                     "a field '%s' (%s) to schema, or rename the marker",
                     m->name, m->name, cb_feeders(m->cql));
            goto fail;
        }
        sl_type_t t = schema->fields[m->field].type;
        if (!sl_cass_compatible(t, m->cql)) {
            snprintf(err, errlen,
                     "bind marker '%s' is a column of CQL type %s but schema field '%s' is %s: "
                     "declare the field as %s, or bind another column",
                     m->name, cql_name, m->name, sl_type_name(t), cb_feeders(m->cql));
            goto fail;
        }
        if (m->cql == SL_CQL_COL_COUNTER) {
            out->counter = true;
        }
    }
    out->n_pk = bind->pk_count > 0 ? (size_t)bind->pk_count : 0;
    out->pk = sl_xcalloc(out->n_pk ? out->n_pk : 1, sizeof(*out->pk));
    for (size_t k = 0; k < out->n_pk; k++) {
        uint16_t mi = bind->pk_index[k];
        if (mi >= out->n) {
            snprintf(err, errlen,
                     "Cassandra named bind marker %u as a partition key column of a statement "
                     "with %zu markers: report this server bug",
                     (unsigned)mi, out->n);
            goto fail;
        }
        out->pk[k] = mi;
        out->markers[mi].pk = true;
    }
    return 0;
fail:
    sl_cass_binding_free(out);
    return -1;
}

static int cb_int_range(const char *field, int64_t v, int64_t lo, int64_t hi, const char *cql,
                        sl_reason_t *why)
{
    if (v < lo || v > hi) {
        snprintf(why->text, sizeof(why->text),
                 "field '%s': %" PRId64 " is out of range for CQL %s (%" PRId64 "..%" PRId64 ")",
                 field, v, cql, lo, hi);
        return -1;
    }
    return 0;
}

static int cb_encode_one(const sl_cass_marker_t *m, const sl_field_t *f, const sl_value_t *v,
                         sl_buf_t *data, sl_reason_t *why)
{
    char q[64];
    switch (m->cql) {
    case SL_CQL_COL_INT:
        if (cb_int_range(f->name, v->u.i, INT32_MIN, INT32_MAX, "int", why) != 0) {
            return -1;
        }
        sl_cql_encode_int(data, (int32_t)v->u.i);
        return 0;
    case SL_CQL_COL_BIGINT:
    case SL_CQL_COL_COUNTER:
        sl_cql_encode_bigint(data, v->u.i);
        return 0;
    case SL_CQL_COL_SMALLINT:
        if (cb_int_range(f->name, v->u.i, INT16_MIN, INT16_MAX, "smallint", why) != 0) {
            return -1;
        }
        sl_cql_encode_smallint(data, (int16_t)v->u.i);
        return 0;
    case SL_CQL_COL_TINYINT:
        if (cb_int_range(f->name, v->u.i, INT8_MIN, INT8_MAX, "tinyint", why) != 0) {
            return -1;
        }
        sl_cql_encode_tinyint(data, (int8_t)v->u.i);
        return 0;
    case SL_CQL_COL_VARINT:
        sl_cql_encode_varint(data, v->u.i);
        return 0;
    case SL_CQL_COL_DOUBLE:
        sl_cql_encode_double(data, v->u.d);
        return 0;
    case SL_CQL_COL_FLOAT:
        if (isfinite(v->u.d) && fabs(v->u.d) > FLT_MAX) {
            snprintf(why->text, sizeof(why->text),
                     "field '%s': %g is out of range for CQL float (at most %g in magnitude)",
                     f->name, v->u.d, (double)FLT_MAX);
            return -1;
        }
        sl_cql_encode_float(data, (float)v->u.d);
        return 0;
    case SL_CQL_COL_BOOLEAN:
        sl_cql_encode_boolean(data, v->u.b);
        return 0;
    case SL_CQL_COL_DATE:
        if (sl_cql_encode_date(data, v->u.i) != 0) {
            snprintf(why->text, sizeof(why->text),
                     "field '%s': %" PRId64 " days is out of range "
                     "for CQL date",
                     f->name, v->u.i);
            return -1;
        }
        return 0;
    case SL_CQL_COL_TIMESTAMP:
        if (f->type == SL_TYPE_DATE) {
            sl_cql_encode_timestamp(data, v->u.i * INT64_C(86400000));
        } else {
            /* µs to ms, rounding down (also before the epoch) */
            int64_t ms = v->u.i / 1000 - (v->u.i % 1000 < 0 ? 1 : 0);
            sl_cql_encode_timestamp(data, ms);
        }
        return 0;
    case SL_CQL_COL_VARCHAR:
        sl_cql_encode_text(data, v->u.s.ptr, v->u.s.len);
        return 0;
    case SL_CQL_COL_ASCII:
        for (size_t i = 0; i < v->u.s.len; i++) {
            if ((unsigned char)v->u.s.ptr[i] >= 0x80) {
                snprintf(why->text, sizeof(why->text),
                         "field '%s': \"%s\" is not ASCII (the column is CQL ascii)", f->name,
                         sl_value_quote(v->u.s.ptr, v->u.s.len, q, sizeof(q)));
                return -1;
            }
        }
        sl_cql_encode_text(data, v->u.s.ptr, v->u.s.len);
        return 0;
    case SL_CQL_COL_UUID:
    case SL_CQL_COL_TIMEUUID: {
        uint8_t u[16];
        if (sl_cql_uuid_parse(v->u.s.ptr, v->u.s.len, u) != 0) {
            snprintf(why->text, sizeof(why->text),
                     "field '%s': \"%s\" is not a uuid (8-4-4-4-12 hex digits)", f->name,
                     sl_value_quote(v->u.s.ptr, v->u.s.len, q, sizeof(q)));
            return -1;
        }
        if (m->cql == SL_CQL_COL_TIMEUUID && (u[6] >> 4) != 1) {
            snprintf(why->text, sizeof(why->text),
                     "field '%s': \"%s\" is a version %d uuid, not a timeuuid (version 1)", f->name,
                     sl_value_quote(v->u.s.ptr, v->u.s.len, q, sizeof(q)), u[6] >> 4);
            return -1;
        }
        sl_buf_append(data, u, sizeof(u));
        return 0;
    }
    case SL_CQL_COL_INET: {
        uint8_t a[16];
        size_t n = 0;
        if (sl_cql_inet_parse(v->u.s.ptr, v->u.s.len, a, &n) != 0) {
            snprintf(why->text, sizeof(why->text),
                     "field '%s': \"%s\" is not an IPv4 or IPv6 address", f->name,
                     sl_value_quote(v->u.s.ptr, v->u.s.len, q, sizeof(q)));
            return -1;
        }
        sl_buf_append(data, a, n);
        return 0;
    }
    default:
        snprintf(why->text, sizeof(why->text), "field '%s': cannot bind to CQL %s", f->name,
                 sl_cass_cql_type_name(m->cql));
        return -1;
    }
}

int sl_cass_encode(const sl_cass_binding_t *b, const sl_schema_t *schema, const sl_value_t *rec,
                   sl_buf_t *data, sl_cql_bytes_t *vals, uint32_t *offs, sl_reason_t *why)
{
    size_t start = data->len;
    for (size_t i = 0; i < b->n; i++) {
        const sl_cass_marker_t *m = &b->markers[i];
        const sl_value_t *v = &rec[m->field];
        size_t at = data->len;
        offs[i] = (uint32_t)at;
        vals[i].ptr = NULL;
        if (v->is_null) {
            if (m->pk) {
                snprintf(why->text, sizeof(why->text), "partition key column '%s' is null",
                         m->name);
                goto fail;
            }
            vals[i].len = SL_CQL_LEN_UNSET; /* not null: no tombstone */
            continue;
        }
        if (cb_encode_one(m, &schema->fields[m->field], v, data, why) != 0) {
            goto fail;
        }
        if (data->len - at > INT32_MAX) {
            snprintf(why->text, sizeof(why->text), "field '%s': value over 2 GiB",
                     schema->fields[m->field].name);
            goto fail;
        }
        vals[i].len = (int32_t)(data->len - at);
    }
    return 0;
fail:
    data->len = start;
    if (data->cap > 0) {
        data->data[start] = '\0';
    }
    return -1;
}

void sl_cass_resolve(sl_cql_bytes_t *vals, const uint32_t *offs, size_t n, const sl_buf_t *data)
{
    for (size_t i = 0; i < n; i++) {
        vals[i].ptr = vals[i].len >= 0 ? (const uint8_t *)data->data + offs[i] : NULL;
    }
}

/* ---- grouping ------------------------------------------------------------------------------ */

static uint64_t cb_group_hash(const sl_cass_item_t *it)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)it->ts;
    for (size_t i = 0; i < it->key_len; i++) {
        h = (h ^ it->key[i]) * 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool cb_same_group(const sl_cass_item_t *a, const sl_cass_item_t *b)
{
    return a->ts == b->ts && a->key_len == b->key_len &&
           (a->key_len == 0 || memcmp(a->key, b->key, a->key_len) == 0);
}

static int cb_pos_cmp(const void *pa, const void *pb)
{
    const sl_cass_item_t *a = pa, *b = pb;
    return a->pos < b->pos ? -1 : (a->pos > b->pos ? 1 : 0);
}

/* Whether item j writes a row that an item of the request whose items are
 * linked from first (through next) also writes. */
static bool cb_row_conflict(const sl_cass_item_t *items, const uint32_t *next, uint32_t first,
                            size_t j)
{
    if (items[j].row == NULL) {
        return true;
    }
    for (uint32_t k = first; k != UINT32_MAX; k = next[k]) {
        if (items[k].row == NULL || (items[k].row_len == items[j].row_len &&
                                     memcmp(items[k].row, items[j].row, items[j].row_len) == 0)) {
            return true;
        }
    }
    return false;
}

/* One pass in pos order with a hash table from (partition, timestamp) to
 * that group's open request: linear in n (a sort by key cost ~12% of the
 * sink's CPU). Each item joins its group's open request if it fits, else
 * opens a new one; requests are numbered as opened, so in order of their
 * first item. */
size_t sl_cass_group(sl_cass_item_t *items, size_t n, size_t max_rows, size_t max_bytes,
                     bool distinct_rows, uint32_t *starts)
{
    if (n == 0) {
        starts[0] = 0;
        return 0;
    }
    if (max_rows == 0) {
        max_rows = 1;
    }
    for (size_t i = 1; i < n; i++) {
        if (items[i].pos < items[i - 1].pos) {
            qsort(items, n, sizeof(*items), cb_pos_cmp);
            break;
        }
    }
    size_t cap = 16;
    while (cap < 2 * n) {
        cap *= 2;
    }
    /* table: request + 1 per slot (0: empty); per request: first, last,
     * rows, bytes; per item: the next item of its request */
    uint32_t *table = sl_xcalloc(cap, sizeof(uint32_t));
    uint32_t *first = sl_xmalloc(n * sizeof(uint32_t));
    uint32_t *last = sl_xmalloc(n * sizeof(uint32_t));
    uint32_t *rows = sl_xmalloc(n * sizeof(uint32_t));
    size_t *bytes = sl_xmalloc(n * sizeof(size_t));
    uint32_t *next = sl_xmalloc(n * sizeof(uint32_t));
    size_t nr = 0;
    for (size_t j = 0; j < n; j++) {
        next[j] = UINT32_MAX;
        size_t slot = (size_t)cb_group_hash(&items[j]) & (cap - 1);
        while (table[slot] != 0 && !cb_same_group(&items[first[table[slot] - 1]], &items[j])) {
            slot = (slot + 1) & (cap - 1);
        }
        if (table[slot] != 0) {
            uint32_t q = table[slot] - 1;
            if (rows[q] < max_rows && bytes[q] + items[j].bytes <= max_bytes &&
                !(distinct_rows && cb_row_conflict(items, next, first[q], j))) {
                next[last[q]] = (uint32_t)j;
                last[q] = (uint32_t)j;
                rows[q]++;
                bytes[q] += items[j].bytes;
                continue;
            }
        }
        first[nr] = last[nr] = (uint32_t)j;
        rows[nr] = 1;
        bytes[nr] = items[j].bytes;
        table[slot] = (uint32_t)++nr; /* the group's open request is now this one */
    }
    sl_cass_item_t *tmp = sl_xmalloc(n * sizeof(*tmp));
    size_t k = 0;
    for (size_t q = 0; q < nr; q++) {
        starts[q] = (uint32_t)k;
        for (uint32_t j = first[q]; j != UINT32_MAX; j = next[j]) {
            tmp[k++] = items[j];
        }
    }
    starts[nr] = (uint32_t)k;
    memcpy(items, tmp, n * sizeof(*items));
    free(tmp);
    free(next);
    free(bytes);
    free(rows);
    free(last);
    free(first);
    free(table);
    return nr;
}
