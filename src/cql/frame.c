#include "cql/frame.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const fr_opcode_names[] = {
    [SL_CQL_OP_ERROR] = "ERROR",
    [SL_CQL_OP_STARTUP] = "STARTUP",
    [SL_CQL_OP_READY] = "READY",
    [SL_CQL_OP_AUTHENTICATE] = "AUTHENTICATE",
    [SL_CQL_OP_OPTIONS] = "OPTIONS",
    [SL_CQL_OP_SUPPORTED] = "SUPPORTED",
    [SL_CQL_OP_QUERY] = "QUERY",
    [SL_CQL_OP_RESULT] = "RESULT",
    [SL_CQL_OP_PREPARE] = "PREPARE",
    [SL_CQL_OP_EXECUTE] = "EXECUTE",
    [SL_CQL_OP_REGISTER] = "REGISTER",
    [SL_CQL_OP_EVENT] = "EVENT",
    [SL_CQL_OP_BATCH] = "BATCH",
    [SL_CQL_OP_AUTH_CHALLENGE] = "AUTH_CHALLENGE",
    [SL_CQL_OP_AUTH_RESPONSE] = "AUTH_RESPONSE",
    [SL_CQL_OP_AUTH_SUCCESS] = "AUTH_SUCCESS",
};

static const char *const fr_consistency_names[] = {
    "ANY",          "ONE",         "TWO",    "THREE",        "QUORUM",    "ALL",
    "LOCAL_QUORUM", "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE",
};

const char *sl_cql_opcode_name(int opcode)
{
    if (opcode < 0 || (size_t)opcode >= SL_ARRAY_LEN(fr_opcode_names)) {
        return NULL;
    }
    return fr_opcode_names[opcode];
}

const char *sl_cql_consistency_name(int consistency)
{
    if (consistency < 0 || (size_t)consistency >= SL_ARRAY_LEN(fr_consistency_names)) {
        return NULL;
    }
    return fr_consistency_names[consistency];
}

/* Whether opcode may appear in a frame going in the direction of version. */
static bool fr_opcode_valid(uint8_t opcode, bool response)
{
    switch (opcode) {
    case SL_CQL_OP_ERROR:
    case SL_CQL_OP_READY:
    case SL_CQL_OP_AUTHENTICATE:
    case SL_CQL_OP_SUPPORTED:
    case SL_CQL_OP_RESULT:
    case SL_CQL_OP_EVENT:
    case SL_CQL_OP_AUTH_CHALLENGE:
    case SL_CQL_OP_AUTH_SUCCESS:
        return response;
    case SL_CQL_OP_STARTUP:
    case SL_CQL_OP_OPTIONS:
    case SL_CQL_OP_QUERY:
    case SL_CQL_OP_PREPARE:
    case SL_CQL_OP_EXECUTE:
    case SL_CQL_OP_REGISTER:
    case SL_CQL_OP_BATCH:
    case SL_CQL_OP_AUTH_RESPONSE:
        return !response;
    default:
        return false;
    }
}

static void fr_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void fr_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t fr_get16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t fr_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void sl_cql_header_encode(const sl_cql_header_t *h, uint8_t out[SL_CQL_HEADER_LEN])
{
    out[0] = h->version;
    out[1] = h->flags;
    fr_put16(out + 2, (uint16_t)h->stream);
    out[4] = h->opcode;
    fr_put32(out + 5, h->length);
}

int sl_cql_header_decode(const uint8_t p[SL_CQL_HEADER_LEN], uint8_t want_version,
                         uint32_t max_body, sl_cql_header_t *out, char *err, size_t errlen)
{
    int rc = -1;
    if (max_body == 0) {
        max_body = SL_CQL_MAX_BODY_DEFAULT;
    }
    out->version = p[0];
    out->flags = p[1];
    out->stream = (int16_t)fr_get16(p + 2);
    out->opcode = p[4];
    out->length = fr_get32(p + 5);
    if (out->version != want_version) {
        snprintf(err, errlen, "protocol version 0x%02x, expected 0x%02x", out->version,
                 want_version);
        goto out;
    }
    if (!fr_opcode_valid(out->opcode, (want_version & 0x80) != 0)) {
        const char *name = sl_cql_opcode_name(out->opcode);
        snprintf(err, errlen, "%s opcode 0x%02x in a %s frame", name ? "unexpected" : "unknown",
                 out->opcode, (want_version & 0x80) ? "response" : "request");
        goto out;
    }
    if (out->length > INT32_MAX) {
        snprintf(err, errlen, "negative body length %" PRId32, (int32_t)out->length);
        goto out;
    }
    if (out->length > max_body) {
        snprintf(err, errlen, "body length %" PRIu32 " exceeds the limit of %" PRIu32, out->length,
                 max_body);
        goto out;
    }
    if (errlen > 0) {
        err[0] = '\0';
    }
    rc = 0;
out:
    return rc;
}

sl_cql_parse_status_t sl_cql_frame_parse_ex(const uint8_t *buf, size_t len, uint8_t want_version,
                                            uint32_t max_body, sl_cql_frame_t *out,
                                            size_t *consumed)
{
    *consumed = 0;
    out->err[0] = '\0';
    out->body = NULL;
    out->body_len = 0;
    if (len < SL_CQL_HEADER_LEN) {
        return SL_CQL_PARSE_NEED_MORE;
    }
    if (sl_cql_header_decode(buf, want_version, max_body, &out->hdr, out->err, sizeof(out->err)) !=
        0) {
        return SL_CQL_PARSE_ERROR;
    }
    if (len - SL_CQL_HEADER_LEN < out->hdr.length) {
        return SL_CQL_PARSE_NEED_MORE;
    }
    out->body = buf + SL_CQL_HEADER_LEN;
    out->body_len = out->hdr.length;
    *consumed = SL_CQL_HEADER_LEN + (size_t)out->hdr.length;
    return SL_CQL_PARSE_OK;
}

sl_cql_parse_status_t sl_cql_frame_parse(const uint8_t *buf, size_t len, sl_cql_frame_t *out,
                                         size_t *consumed)
{
    return sl_cql_frame_parse_ex(buf, len, SL_CQL_VERSION_RESPONSE, 0, out, consumed);
}

/* ---- Readers ----------------------------------------------------------------------------- */

void sl_cql_rd_init(sl_cql_rd_t *r, const void *p, size_t len)
{
    r->p = p;
    r->len = p ? len : 0;
    r->off = 0;
    r->err = NULL;
}

size_t sl_cql_rd_remaining(const sl_cql_rd_t *r)
{
    return r->len - r->off;
}

static int fr_fail(sl_cql_rd_t *r, const char *why)
{
    if (r->err == NULL) {
        r->err = why;
    }
    return -1;
}

/* Returns a pointer to the next n bytes and moves past them, or NULL. */
static const uint8_t *fr_take(sl_cql_rd_t *r, size_t n, const char *what)
{
    if (r->err != NULL) {
        return NULL;
    }
    if (r->len - r->off < n) {
        fr_fail(r, what);
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

int sl_cql_rd_byte(sl_cql_rd_t *r, uint8_t *out)
{
    const uint8_t *p = fr_take(r, 1, "truncated [byte]");
    if (p == NULL) {
        return -1;
    }
    *out = p[0];
    return 0;
}

int sl_cql_rd_short(sl_cql_rd_t *r, uint16_t *out)
{
    const uint8_t *p = fr_take(r, 2, "truncated [short]");
    if (p == NULL) {
        return -1;
    }
    *out = fr_get16(p);
    return 0;
}

int sl_cql_rd_int(sl_cql_rd_t *r, int32_t *out)
{
    const uint8_t *p = fr_take(r, 4, "truncated [int]");
    if (p == NULL) {
        return -1;
    }
    *out = (int32_t)fr_get32(p);
    return 0;
}

int sl_cql_rd_long(sl_cql_rd_t *r, int64_t *out)
{
    const uint8_t *p = fr_take(r, 8, "truncated [long]");
    if (p == NULL) {
        return -1;
    }
    *out = (int64_t)((uint64_t)fr_get32(p) << 32 | fr_get32(p + 4));
    return 0;
}

int sl_cql_rd_raw(sl_cql_rd_t *r, size_t n, const uint8_t **out)
{
    const uint8_t *p = fr_take(r, n, "truncated bytes");
    if (p == NULL) {
        return -1;
    }
    *out = p;
    return 0;
}

int sl_cql_rd_string(sl_cql_rd_t *r, sl_cql_str_t *out)
{
    uint16_t n;
    const uint8_t *p;
    if (sl_cql_rd_short(r, &n) != 0 || (p = fr_take(r, n, "truncated [string]")) == NULL) {
        return fr_fail(r, "truncated [string]");
    }
    out->data = (const char *)p;
    out->len = n;
    return 0;
}

int sl_cql_rd_long_string(sl_cql_rd_t *r, sl_cql_str_t *out)
{
    int32_t n;
    const uint8_t *p;
    if (sl_cql_rd_int(r, &n) != 0) {
        return -1;
    }
    if (n < 0) {
        return fr_fail(r, "negative [long string] length");
    }
    if ((p = fr_take(r, (size_t)n, "truncated [long string]")) == NULL) {
        return -1;
    }
    out->data = (const char *)p;
    out->len = (size_t)n;
    return 0;
}

int sl_cql_rd_string_dup(sl_cql_rd_t *r, sl_arena_t *a, const char **out)
{
    sl_cql_str_t s;
    if (sl_cql_rd_string(r, &s) != 0) {
        return -1;
    }
    *out = sl_arena_strndup(a, s.data, s.len);
    return 0;
}

int sl_cql_rd_uuid(sl_cql_rd_t *r, uint8_t out[16])
{
    const uint8_t *p = fr_take(r, 16, "truncated [uuid]");
    if (p == NULL) {
        return -1;
    }
    memcpy(out, p, 16);
    return 0;
}

int sl_cql_rd_string_list(sl_cql_rd_t *r, sl_arena_t *a, const char *const **out, size_t *n)
{
    uint16_t count;
    if (sl_cql_rd_short(r, &count) != 0) {
        return -1;
    }
    /* Every [string] takes at least 2 bytes: refuse counts the input cannot hold
     * before allocating for them. */
    if ((size_t)count * 2 > sl_cql_rd_remaining(r)) {
        return fr_fail(r, "truncated [string list]");
    }
    const char **v = sl_arena_alloc(a, (size_t)count * sizeof(*v) + 1);
    for (size_t i = 0; i < count; i++) {
        if (sl_cql_rd_string_dup(r, a, &v[i]) != 0) {
            return -1;
        }
    }
    *out = v;
    *n = count;
    return 0;
}

int sl_cql_rd_bytes(sl_cql_rd_t *r, sl_cql_bytes_t *out)
{
    int32_t n;
    if (sl_cql_rd_int(r, &n) != 0) {
        return -1;
    }
    if (n < 0) {
        out->ptr = NULL;
        out->len = SL_CQL_LEN_NULL;
        return 0;
    }
    const uint8_t *p = fr_take(r, (size_t)n, "truncated [bytes]");
    if (p == NULL) {
        return -1;
    }
    out->ptr = p;
    out->len = n;
    return 0;
}

int sl_cql_rd_value(sl_cql_rd_t *r, sl_cql_bytes_t *out)
{
    int32_t n;
    if (sl_cql_rd_int(r, &n) != 0) {
        return -1;
    }
    if (n == SL_CQL_LEN_NULL || n == SL_CQL_LEN_UNSET) {
        out->ptr = NULL;
        out->len = n;
        return 0;
    }
    if (n < 0) {
        return fr_fail(r, "[value] length below -2");
    }
    const uint8_t *p = fr_take(r, (size_t)n, "truncated [value]");
    if (p == NULL) {
        return -1;
    }
    out->ptr = p;
    out->len = n;
    return 0;
}

int sl_cql_rd_short_bytes(sl_cql_rd_t *r, sl_cql_bytes_t *out)
{
    uint16_t n;
    if (sl_cql_rd_short(r, &n) != 0) {
        return -1;
    }
    const uint8_t *p = fr_take(r, n, "truncated [short bytes]");
    if (p == NULL) {
        return -1;
    }
    out->ptr = p;
    out->len = n;
    return 0;
}

int sl_cql_rd_option_id(sl_cql_rd_t *r, uint16_t *out)
{
    return sl_cql_rd_short(r, out);
}

int sl_cql_rd_inet(sl_cql_rd_t *r, sl_cql_inet_t *out)
{
    uint8_t n;
    const uint8_t *p;
    if (sl_cql_rd_byte(r, &n) != 0) {
        return -1;
    }
    if (n != 4 && n != 16) {
        return fr_fail(r, "[inet] address size is neither 4 nor 16");
    }
    if ((p = fr_take(r, n, "truncated [inet]")) == NULL) {
        return -1;
    }
    memset(out->addr, 0, sizeof(out->addr));
    memcpy(out->addr, p, n);
    out->addr_len = n;
    return sl_cql_rd_int(r, &out->port);
}

int sl_cql_rd_consistency(sl_cql_rd_t *r, uint16_t *out)
{
    if (sl_cql_rd_short(r, out) != 0) {
        return -1;
    }
    if (sl_cql_consistency_name(*out) == NULL) {
        return fr_fail(r, "unknown [consistency]");
    }
    return 0;
}

/* Reads the [short] count of a map whose entries take at least min_entry
 * bytes each and allocates the entries. */
static void *fr_map_begin(sl_cql_rd_t *r, sl_arena_t *a, size_t min_entry, size_t entry_size,
                          size_t *n)
{
    uint16_t count;
    if (sl_cql_rd_short(r, &count) != 0) {
        return NULL;
    }
    if ((size_t)count * min_entry > sl_cql_rd_remaining(r)) {
        fr_fail(r, "truncated map");
        return NULL;
    }
    *n = count;
    return sl_arena_alloc(a, (size_t)count * entry_size + 1);
}

int sl_cql_rd_string_map(sl_cql_rd_t *r, sl_arena_t *a, const sl_cql_strmap_entry_t **out,
                         size_t *n)
{
    size_t count;
    sl_cql_strmap_entry_t *e = fr_map_begin(r, a, 4, sizeof(*e), &count);
    if (e == NULL) {
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        memset(&e[i], 0, sizeof(e[i]));
        if (sl_cql_rd_string_dup(r, a, &e[i].key) != 0 ||
            sl_cql_rd_string_dup(r, a, &e[i].value) != 0) {
            return -1;
        }
    }
    *out = e;
    *n = count;
    return 0;
}

int sl_cql_rd_string_multimap(sl_cql_rd_t *r, sl_arena_t *a, const sl_cql_strmap_entry_t **out,
                              size_t *n)
{
    size_t count;
    sl_cql_strmap_entry_t *e = fr_map_begin(r, a, 4, sizeof(*e), &count);
    if (e == NULL) {
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        memset(&e[i], 0, sizeof(e[i]));
        if (sl_cql_rd_string_dup(r, a, &e[i].key) != 0 ||
            sl_cql_rd_string_list(r, a, &e[i].values, &e[i].n_values) != 0) {
            return -1;
        }
        e[i].value = e[i].n_values > 0 ? e[i].values[0] : NULL;
    }
    *out = e;
    *n = count;
    return 0;
}

int sl_cql_rd_bytes_map(sl_cql_rd_t *r, sl_arena_t *a, const sl_cql_bytesmap_entry_t **out,
                        size_t *n)
{
    size_t count;
    sl_cql_bytesmap_entry_t *e = fr_map_begin(r, a, 6, sizeof(*e), &count);
    if (e == NULL) {
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        if (sl_cql_rd_string_dup(r, a, &e[i].key) != 0 || sl_cql_rd_bytes(r, &e[i].value) != 0) {
            return -1;
        }
    }
    *out = e;
    *n = count;
    return 0;
}

/* ---- Writers ----------------------------------------------------------------------------- */

void sl_cql_wr_init(sl_cql_wr_t *w, sl_buf_t *buf)
{
    w->buf = buf;
    w->err = NULL;
}

static void fr_wfail(sl_cql_wr_t *w, const char *why)
{
    if (w->err == NULL) {
        w->err = why;
    }
}

void sl_cql_wr_raw(sl_cql_wr_t *w, const void *p, size_t n)
{
    if (w->err == NULL && n > 0) {
        sl_buf_append(w->buf, p, n);
    }
}

void sl_cql_wr_byte(sl_cql_wr_t *w, uint8_t v)
{
    sl_cql_wr_raw(w, &v, 1);
}

void sl_cql_wr_short(sl_cql_wr_t *w, uint16_t v)
{
    uint8_t b[2];
    fr_put16(b, v);
    sl_cql_wr_raw(w, b, 2);
}

void sl_cql_wr_int(sl_cql_wr_t *w, int32_t v)
{
    uint8_t b[4];
    fr_put32(b, (uint32_t)v);
    sl_cql_wr_raw(w, b, 4);
}

void sl_cql_wr_long(sl_cql_wr_t *w, int64_t v)
{
    uint8_t b[8];
    fr_put32(b, (uint32_t)((uint64_t)v >> 32));
    fr_put32(b + 4, (uint32_t)v);
    sl_cql_wr_raw(w, b, 8);
}

void sl_cql_wr_string(sl_cql_wr_t *w, const char *s, size_t n)
{
    if (n > UINT16_MAX) {
        fr_wfail(w, "[string] longer than 65535 bytes");
        return;
    }
    sl_cql_wr_short(w, (uint16_t)n);
    sl_cql_wr_raw(w, s, n);
}

void sl_cql_wr_long_string(sl_cql_wr_t *w, const char *s, size_t n)
{
    if (n > INT32_MAX) {
        fr_wfail(w, "[long string] longer than 2^31-1 bytes");
        return;
    }
    sl_cql_wr_int(w, (int32_t)n);
    sl_cql_wr_raw(w, s, n);
}

void sl_cql_wr_uuid(sl_cql_wr_t *w, const uint8_t uuid[16])
{
    sl_cql_wr_raw(w, uuid, 16);
}

void sl_cql_wr_string_list(sl_cql_wr_t *w, const char *const *s, size_t n)
{
    if (n > UINT16_MAX) {
        fr_wfail(w, "[string list] with more than 65535 strings");
        return;
    }
    sl_cql_wr_short(w, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        sl_cql_wr_string(w, s[i], strlen(s[i]));
    }
}

void sl_cql_wr_bytes(sl_cql_wr_t *w, sl_cql_bytes_t v)
{
    if (v.len < 0) {
        sl_cql_wr_int(w, SL_CQL_LEN_NULL);
        return;
    }
    sl_cql_wr_int(w, v.len);
    sl_cql_wr_raw(w, v.ptr, (size_t)v.len);
}

void sl_cql_wr_value(sl_cql_wr_t *w, sl_cql_bytes_t v)
{
    if (v.len < SL_CQL_LEN_UNSET) {
        fr_wfail(w, "[value] length below -2");
        return;
    }
    if (v.len < 0) {
        sl_cql_wr_int(w, v.len);
        return;
    }
    sl_cql_wr_int(w, v.len);
    sl_cql_wr_raw(w, v.ptr, (size_t)v.len);
}

void sl_cql_wr_short_bytes(sl_cql_wr_t *w, const uint8_t *p, size_t n)
{
    if (n > UINT16_MAX) {
        fr_wfail(w, "[short bytes] longer than 65535 bytes");
        return;
    }
    sl_cql_wr_short(w, (uint16_t)n);
    sl_cql_wr_raw(w, p, n);
}

void sl_cql_wr_option(sl_cql_wr_t *w, uint16_t id)
{
    sl_cql_wr_short(w, id);
}

void sl_cql_wr_option_list(sl_cql_wr_t *w, const uint16_t *ids, size_t n)
{
    if (n > UINT16_MAX) {
        fr_wfail(w, "[option list] with more than 65535 options");
        return;
    }
    sl_cql_wr_short(w, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        sl_cql_wr_option(w, ids[i]);
    }
}

void sl_cql_wr_inet(sl_cql_wr_t *w, const sl_cql_inet_t *in)
{
    if (in->addr_len != 4 && in->addr_len != 16) {
        fr_wfail(w, "[inet] address size is neither 4 nor 16");
        return;
    }
    sl_cql_wr_byte(w, in->addr_len);
    sl_cql_wr_raw(w, in->addr, in->addr_len);
    sl_cql_wr_int(w, in->port);
}

void sl_cql_wr_consistency(sl_cql_wr_t *w, uint16_t cl)
{
    if (sl_cql_consistency_name(cl) == NULL) {
        fr_wfail(w, "unknown consistency level");
        return;
    }
    sl_cql_wr_short(w, cl);
}

void sl_cql_wr_string_map(sl_cql_wr_t *w, const char *const *keys, const char *const *values,
                          size_t n)
{
    if (n > UINT16_MAX) {
        fr_wfail(w, "[string map] with more than 65535 entries");
        return;
    }
    sl_cql_wr_short(w, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        sl_cql_wr_string(w, keys[i], strlen(keys[i]));
        sl_cql_wr_string(w, values[i], strlen(values[i]));
    }
}

void sl_cql_wr_string_multimap(sl_cql_wr_t *w, const char *const *keys,
                               const char *const *const *values, const size_t *n_values, size_t n)
{
    if (n > UINT16_MAX) {
        fr_wfail(w, "[string multimap] with more than 65535 entries");
        return;
    }
    sl_cql_wr_short(w, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        sl_cql_wr_string(w, keys[i], strlen(keys[i]));
        sl_cql_wr_string_list(w, values[i], n_values[i]);
    }
}

void sl_cql_wr_bytes_map(sl_cql_wr_t *w, const char *const *keys, const sl_cql_bytes_t *values,
                         size_t n)
{
    if (n > UINT16_MAX) {
        fr_wfail(w, "[bytes map] with more than 65535 entries");
        return;
    }
    sl_cql_wr_short(w, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        sl_cql_wr_string(w, keys[i], strlen(keys[i]));
        sl_cql_wr_bytes(w, values[i]);
    }
}

/* ---- Requests ---------------------------------------------------------------------------- */

/* Starts a request frame: writes its header with a zero length and returns
 * where the frame starts in the buffer. */
static size_t fr_begin(sl_cql_wr_t *w, sl_buf_t *out, uint8_t opcode, int16_t stream)
{
    sl_cql_wr_init(w, out);
    size_t start = out->len;
    if (stream < 0) {
        fr_wfail(w, "request stream id must not be negative");
        return start;
    }
    sl_cql_header_t h = {SL_CQL_VERSION_REQUEST, 0, stream, opcode, 0};
    uint8_t hdr[SL_CQL_HEADER_LEN];
    sl_cql_header_encode(&h, hdr);
    sl_cql_wr_raw(w, hdr, sizeof(hdr));
    return start;
}

/* Finishes the frame begun at start: patches its length, or on any error
 * removes what was written and reports it. */
static int fr_end(sl_cql_wr_t *w, size_t start, const char **err)
{
    if (w->err == NULL) {
        size_t body = w->buf->len - start - SL_CQL_HEADER_LEN;
        if (body > SL_CQL_MAX_BODY_DEFAULT) {
            fr_wfail(w, "request body longer than 256 MiB");
        } else {
            fr_put32((uint8_t *)w->buf->data + start + 5, (uint32_t)body);
        }
    }
    if (w->err != NULL) {
        w->buf->len = start;
        if (w->buf->cap > 0) {
            w->buf->data[start] = '\0';
        }
        if (err != NULL) {
            *err = w->err;
        }
        return -1;
    }
    return 0;
}

static bool fr_serial_ok(uint16_t cl)
{
    return cl == 0 || cl == SL_CQL_SERIAL || cl == SL_CQL_LOCAL_SERIAL;
}

static void fr_params(sl_cql_wr_t *w, const sl_cql_params_t *p)
{
    uint8_t flags = 0;
    if (p->n_values > UINT16_MAX) {
        fr_wfail(w, "more than 65535 values");
    }
    if (p->page_size < 0) {
        fr_wfail(w, "negative page size");
    }
    if (!fr_serial_ok(p->serial_consistency)) {
        fr_wfail(w, "serial consistency must be SERIAL or LOCAL_SERIAL");
    }
    if (p->has_timestamp && p->timestamp < 0) {
        fr_wfail(w, "negative default timestamp");
    }
    if (p->paging_state.ptr != NULL && p->paging_state.len < 0) {
        fr_wfail(w, "negative paging state length");
    }
    if (p->n_values > 0) {
        flags |= 0x01;
        if (p->names != NULL) {
            flags |= 0x40;
        }
    }
    if (p->skip_metadata) {
        flags |= 0x02;
    }
    if (p->page_size > 0) {
        flags |= 0x04;
    }
    if (p->paging_state.ptr != NULL) {
        flags |= 0x08;
    }
    if (p->serial_consistency != 0) {
        flags |= 0x10;
    }
    if (p->has_timestamp) {
        flags |= 0x20;
    }
    sl_cql_wr_consistency(w, p->consistency);
    sl_cql_wr_byte(w, flags);
    if (flags & 0x01) {
        sl_cql_wr_short(w, (uint16_t)p->n_values);
        for (size_t i = 0; i < p->n_values; i++) {
            if (flags & 0x40) {
                sl_cql_wr_string(w, p->names[i], strlen(p->names[i]));
            }
            sl_cql_wr_value(w, p->values[i]);
        }
    }
    if (flags & 0x04) {
        sl_cql_wr_int(w, p->page_size);
    }
    if (flags & 0x08) {
        sl_cql_wr_bytes(w, p->paging_state);
    }
    if (flags & 0x10) {
        sl_cql_wr_consistency(w, p->serial_consistency);
    }
    if (flags & 0x20) {
        sl_cql_wr_long(w, p->timestamp);
    }
}

int sl_cql_req_startup(sl_buf_t *out, int16_t stream, const char *compression, const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_STARTUP, stream);
    const char *keys[] = {"CQL_VERSION", "COMPRESSION"};
    const char *values[] = {"3.0.0", compression};
    sl_cql_wr_string_map(&w, keys, values, compression ? 2 : 1);
    return fr_end(&w, start, err);
}

int sl_cql_req_options(sl_buf_t *out, int16_t stream, const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_OPTIONS, stream);
    return fr_end(&w, start, err);
}

int sl_cql_req_auth_response(sl_buf_t *out, int16_t stream, sl_cql_bytes_t token, const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_AUTH_RESPONSE, stream);
    sl_cql_wr_bytes(&w, token);
    return fr_end(&w, start, err);
}

void sl_cql_sasl_plain(sl_buf_t *token, const char *user, const char *password)
{
    sl_buf_putc(token, '\0');
    sl_buf_append(token, user, strlen(user));
    sl_buf_putc(token, '\0');
    sl_buf_append(token, password, strlen(password));
}

int sl_cql_req_query(sl_buf_t *out, int16_t stream, const char *query, size_t query_len,
                     const sl_cql_params_t *p, const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_QUERY, stream);
    sl_cql_wr_long_string(&w, query, query_len);
    fr_params(&w, p);
    return fr_end(&w, start, err);
}

int sl_cql_req_prepare(sl_buf_t *out, int16_t stream, const char *query, size_t query_len,
                       const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_PREPARE, stream);
    sl_cql_wr_long_string(&w, query, query_len);
    return fr_end(&w, start, err);
}

int sl_cql_req_execute(sl_buf_t *out, int16_t stream, const uint8_t *id, size_t id_len,
                       const sl_cql_params_t *p, const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_EXECUTE, stream);
    if (id_len == 0) {
        fr_wfail(&w, "empty prepared statement id");
    }
    sl_cql_wr_short_bytes(&w, id, id_len);
    fr_params(&w, p);
    return fr_end(&w, start, err);
}

int sl_cql_req_batch(sl_buf_t *out, int16_t stream, const sl_cql_batch_t *b, const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_BATCH, stream);
    uint8_t flags = 0;
    if (b->type != SL_CQL_BATCH_LOGGED && b->type != SL_CQL_BATCH_UNLOGGED &&
        b->type != SL_CQL_BATCH_COUNTER) {
        fr_wfail(&w, "unknown batch type");
    }
    if (b->n_stmts > UINT16_MAX) {
        fr_wfail(&w, "more than 65535 statements in a batch");
    }
    if (!fr_serial_ok(b->serial_consistency)) {
        fr_wfail(&w, "serial consistency must be SERIAL or LOCAL_SERIAL");
    }
    if (b->has_timestamp && b->timestamp < 0) {
        fr_wfail(&w, "negative default timestamp");
    }
    sl_cql_wr_byte(&w, (uint8_t)b->type);
    sl_cql_wr_short(&w, (uint16_t)b->n_stmts);
    for (size_t i = 0; i < b->n_stmts && w.err == NULL; i++) {
        const sl_cql_batch_stmt_t *s = &b->stmts[i];
        if (s->id != NULL) {
            if (s->id_len == 0) {
                fr_wfail(&w, "empty prepared statement id");
            }
            sl_cql_wr_byte(&w, 1);
            sl_cql_wr_short_bytes(&w, s->id, s->id_len);
        } else {
            sl_cql_wr_byte(&w, 0);
            sl_cql_wr_long_string(&w, s->query, s->query_len);
        }
        if (s->n_values > UINT16_MAX) {
            fr_wfail(&w, "more than 65535 values");
        }
        sl_cql_wr_short(&w, (uint16_t)s->n_values);
        for (size_t j = 0; j < s->n_values; j++) {
            sl_cql_wr_value(&w, s->values[j]);
        }
    }
    if (b->serial_consistency != 0) {
        flags |= 0x10;
    }
    if (b->has_timestamp) {
        flags |= 0x20;
    }
    sl_cql_wr_consistency(&w, b->consistency);
    sl_cql_wr_byte(&w, flags);
    if (flags & 0x10) {
        sl_cql_wr_consistency(&w, b->serial_consistency);
    }
    if (flags & 0x20) {
        sl_cql_wr_long(&w, b->timestamp);
    }
    return fr_end(&w, start, err);
}

int sl_cql_req_register(sl_buf_t *out, int16_t stream, const char *const *events, size_t n,
                        const char **err)
{
    sl_cql_wr_t w;
    size_t start = fr_begin(&w, out, SL_CQL_OP_REGISTER, stream);
    if (n == 0) {
        fr_wfail(&w, "REGISTER needs at least one event type");
    }
    sl_cql_wr_string_list(&w, events, n);
    return fr_end(&w, start, err);
}
