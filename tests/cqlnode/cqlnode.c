/* cqlnode: an in-memory CQL native protocol v4 server for tests.
 *
 *   cqlnode --port N [--listen 127.0.0.1] [--ready-file PATH] [--dump-file PATH]
 *           [--dump-stats] [--tokens T1,T2] [--cluster-name NAME] [--dc DC] [--rack RACK]
 *           [--peer ADDR:PORT=T1[,T2...][@DC]]... [--schema-file PATH] [--control-file PATH]
 *           [--lz4] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
 *           [--max-protocol 3]
 *
 * --tls-cert/--tls-key (PEM) make the port TLS only: every connection starts
 * with a non-blocking TLS handshake (SSL_accept in the epoll loop) and then
 * speaks CQL over it; a client that does not start TLS is dropped. With
 * --tls-client-ca the node requires a client certificate signed by that CA
 * (like Cassandra's client_encryption_options require_client_auth).
 *
 * --max-protocol 3 plays a Cassandra 2.1 (protocol v3 at most): every v4
 * frame gets a ProtocolError in a v3 frame, as a server that does not speak
 * the client's version answers, and the connection is closed.
 *
 * --lz4 offers COMPRESSION lz4 in SUPPORTED (without it the list is empty and
 * a STARTUP asking for any compression is refused). A STARTUP choosing lz4
 * gets a plain READY; after it every response body is LZ4 compressed and
 * flagged request bodies are decompressed (spec section 5).
 *
 * One thread, one epoll loop, any number of connections. SIGTERM/SIGINT stop
 * it with exit 0; SIGUSR1 writes the user tables as JSON lines to the dump
 * file (with --dump-stats, then a line {"stats":{...}} of request counters).
 * Exit 2 when the port cannot be bound or an option is wrong.
 *
 * A cluster is several processes, each on its own loopback address with the
 * same port (127.0.0.1, 127.0.0.2, ...: drivers tell hosts apart by address),
 * each told of the others with --peer so it lists them in system.peers (in
 * this node's data center, or in DC with @DC). Each
 * node keeps its own schema (--schema-file: CQL statements separated by ';'
 * run at start) and stores only what it receives.
 *
 * Fault injection: SIGUSR2 re-reads --control-file and applies its lines in
 * order, then writes the number of reads so far to PATH.applied:
 *   error CODE [COUNT [MSG]]  answer the next COUNT (default 1; 0: all until
 *                             cleared) QUERY/EXECUTE/BATCH requests on user
 *                             keyspaces with ERROR CODE and its code-specific body
 *   delay MS                  hold every response MS milliseconds (0: off)
 *   drop                      close every client connection now
 *   event TYPE CHANGE ADDR PORT  send an EVENT (TOPOLOGY_CHANGE NEW_NODE|REMOVED_NODE,
 *                             STATUS_CHANGE UP|DOWN) to every connection that
 *                             REGISTERed for TYPE
 *   clear                     no error, no delay */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cqlnode.h"

/* The largest request body accepted (the spec's frame limit is 256 MB). */
#define CS_MAX_BODY (64u * 1024u * 1024u)

/* A response held back by the delay fault. */
typedef struct cs_late cs_late_t;
struct cs_late {
    cs_late_t *next;
    uint64_t due_ms;
    size_t len;
    uint8_t data[];
};

typedef struct cs_conn cs_conn_t;
struct cs_conn {
    cs_conn_t *prev, *next; /* all open connections */
    int fd;
    sl_buf_t in, out;
    size_t out_off;
    bool ready;    /* STARTUP done */
    bool lz4;      /* STARTUP chose lz4: flagged requests and every later response */
    bool closing;  /* close once out is flushed */
    bool want_out; /* EPOLLOUT registered */
    SSL *ssl;      /* with --tls-cert */
    bool tls_hs;   /* TLS handshake not done yet */
    int tls_wlen;  /* an SSL_write to repeat with this length (0: none) */
    char keyspace[CN_NAME_MAX];
    cs_late_t *late, *late_tail; /* due in order */
    uint8_t events;              /* REGISTERed: CS_EV_* bits */
};

#define CS_EV_TOPOLOGY 1
#define CS_EV_STATUS 2
#define CS_EV_SCHEMA 4

static struct {
    int ep;
    cs_conn_t *conns;
    const char *dump_file;
    bool dump_stats;
    const char *control_file;
    uint64_t control_reads;
    /* faults */
    int32_t err_code;
    long err_left; /* > 0: that many more; -1: until cleared; 0: off */
    char err_msg[256];
    uint32_t delay_ms;
    bool drop;
    bool lz4;         /* --lz4: offer COMPRESSION lz4 (spec section 5) */
    int max_protocol; /* --max-protocol: 3 refuses v4 like Cassandra 2.1 */
    SSL_CTX *ssl_ctx; /* --tls-cert/--tls-key: TLS on every connection */
} cs;

static uint64_t cs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void cs_log(const char *fmt, ...) SL_PRINTF(1, 2);

static void cs_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cqlnode: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Appends a whole response frame (version 0x84) with the given body, LZ4
 * compressed (spec section 5) once the STARTUP chose lz4. */
static void cs_frame(cs_conn_t *c, uint8_t version, int16_t stream, uint8_t opcode,
                     const sl_buf_t *body)
{
    size_t len = body != NULL ? body->len : 0;
    sl_buf_t z = SL_BUF_INIT;
    if (c->lz4) {
        int bound = LZ4_compressBound((int)len);
        sl_buf_reserve(&z, 4 + (size_t)bound);
        z.data[0] = (char)(uint8_t)(len >> 24);
        z.data[1] = (char)(uint8_t)(len >> 16);
        z.data[2] = (char)(uint8_t)(len >> 8);
        z.data[3] = (char)(uint8_t)len;
        int n = LZ4_compress_default(len > 0 ? body->data : "", z.data + 4, (int)len, bound);
        if (n <= 0) {
            sl_fatal("LZ4 compression of a %zu-byte response failed", len);
        }
        z.len = 4 + (size_t)n;
        body = &z;
    }
    sl_cql_header_t h = {
        .version = version,
        .flags = c->lz4 ? SL_CQL_FLAG_COMPRESSION : 0,
        .stream = stream,
        .opcode = opcode,
        .length = (uint32_t)(body != NULL ? body->len : 0),
    };
    uint8_t hdr[SL_CQL_HEADER_LEN];
    sl_cql_header_encode(&h, hdr);
    sl_buf_append(&c->out, hdr, sizeof(hdr));
    if (body != NULL && body->len > 0) {
        sl_buf_append(&c->out, body->data, body->len);
    }
    sl_buf_free(&z);
}

static void cs_error(cs_conn_t *c, uint8_t version, int16_t stream, const cn_err_t *err)
{
    sl_buf_t body = SL_BUF_INIT;
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, &body);
    sl_cql_wr_int(&w, err->code);
    sl_cql_wr_string(&w, err->msg, strlen(err->msg));
    /* the code-specific part (spec section 9), as a replica set of one would give */
    switch (err->code) {
    case SL_CQL_ERR_UNAVAILABLE:
        sl_cql_wr_short(&w, err->cl);
        sl_cql_wr_int(&w, 1); /* required */
        sl_cql_wr_int(&w, 0); /* alive */
        break;
    case SL_CQL_ERR_WRITE_TIMEOUT:
    case SL_CQL_ERR_WRITE_FAILURE:
        sl_cql_wr_short(&w, err->cl);
        sl_cql_wr_int(&w, 0); /* received */
        sl_cql_wr_int(&w, 1); /* blockfor */
        if (err->code == SL_CQL_ERR_WRITE_FAILURE) {
            sl_cql_wr_int(&w, 1); /* numfailures */
        }
        sl_cql_wr_string(&w, err->write_type, strlen(err->write_type));
        break;
    case SL_CQL_ERR_READ_TIMEOUT:
    case SL_CQL_ERR_READ_FAILURE:
        sl_cql_wr_short(&w, err->cl);
        sl_cql_wr_int(&w, 0); /* received */
        sl_cql_wr_int(&w, 1); /* blockfor */
        if (err->code == SL_CQL_ERR_READ_FAILURE) {
            sl_cql_wr_int(&w, 1); /* numfailures */
        }
        sl_cql_wr_byte(&w, 0); /* data_present */
        break;
    case SL_CQL_ERR_FUNCTION_FAILURE:
        sl_cql_wr_string(&w, "ks", 2);
        sl_cql_wr_string(&w, "fn", 2);
        sl_cql_wr_short(&w, 0); /* arg_types: empty string list */
        break;
    case SL_CQL_ERR_ALREADY_EXISTS:
        sl_cql_wr_string(&w, err->ks, strlen(err->ks));
        sl_cql_wr_string(&w, err->table, strlen(err->table));
        break;
    case SL_CQL_ERR_UNPREPARED:
        sl_cql_wr_short_bytes(&w, err->id, sizeof(err->id));
        break;
    default:
        break;
    }
    cs_frame(c, version, stream, SL_CQL_OP_ERROR, &body);
    sl_buf_free(&body);
}

static void cs_protocol_error(cs_conn_t *c, uint8_t version, int16_t stream, const char *msg)
{
    cn_err_t err;
    cn_fail(&err, SL_CQL_ERR_PROTOCOL, "%s", msg);
    cs_error(c, version, stream, &err);
}

static void cs_supported(cs_conn_t *c, int16_t stream)
{
    static const char *const keys[] = {"COMPRESSION", "CQL_VERSION", "PROTOCOL_VERSIONS"};
    static const char *const compression[] = {"lz4"};
    static const char *const cql_version[] = {"3.4.5"};
    static const char *const versions[] = {"4/v4"};
    static const char *const *const values[] = {compression, cql_version, versions};
    const size_t n_values[] = {cs.lz4 ? 1 : 0, 1, 1};
    sl_buf_t body = SL_BUF_INIT;
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, &body);
    sl_cql_wr_string_multimap(&w, keys, values, n_values, SL_ARRAY_LEN(keys));
    cs_frame(c, SL_CQL_VERSION_RESPONSE, stream, SL_CQL_OP_SUPPORTED, &body);
    sl_buf_free(&body);
}

/* Reads <query_parameters> (4.1.4) after the consistency. */
static int cs_sig_wr = -1;

/* Async-signal-safe: hands the signal number to the event loop. */
static void cs_on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;
    ssize_t w = write(cs_sig_wr, &b, 1);
    (void)w;
    errno = saved;
}

static int cs_read_params(sl_cql_rd_t *r, sl_arena_t *a, cn_request_t *req)
{
    uint16_t cl;
    uint8_t flags;
    if (sl_cql_rd_consistency(r, &cl) != 0 || sl_cql_rd_byte(r, &flags) != 0) {
        return -1;
    }
    req->consistency = cl;
    if (flags & 0x01) {
        uint16_t n;
        if (sl_cql_rd_short(r, &n) != 0) {
            return -1;
        }
        sl_cql_bytes_t *vals = sl_arena_alloc(a, (n + 1u) * sizeof(*vals));
        const char **names = (flags & 0x40) ? sl_arena_alloc(a, (n + 1u) * sizeof(*names)) : NULL;
        for (uint16_t i = 0; i < n; i++) {
            if (names != NULL && sl_cql_rd_string_dup(r, a, &names[i]) != 0) {
                return -1;
            }
            if (sl_cql_rd_value(r, &vals[i]) != 0) {
                return -1;
            }
        }
        req->values = vals;
        req->names = names;
        req->n_values = n;
    }
    req->skip_metadata = (flags & 0x02) != 0;
    int32_t page_size;
    sl_cql_bytes_t paging;
    uint16_t serial;
    int64_t ts;
    if ((flags & 0x04) && sl_cql_rd_int(r, &page_size) != 0) {
        return -1;
    }
    if ((flags & 0x08) && sl_cql_rd_bytes(r, &paging) != 0) {
        return -1;
    }
    if ((flags & 0x10) && sl_cql_rd_consistency(r, &serial) != 0) {
        return -1;
    }
    if ((flags & 0x20) && sl_cql_rd_long(r, &ts) != 0) {
        return -1;
    }
    return r->err != NULL ? -1 : 0;
}

static void cs_result(cs_conn_t *c, int16_t stream, int rc, const sl_buf_t *body,
                      const cn_err_t *err)
{
    if (rc == 0) {
        cs_frame(c, SL_CQL_VERSION_RESPONSE, stream, SL_CQL_OP_RESULT, body);
    } else {
        cs_error(c, SL_CQL_VERSION_RESPONSE, stream, err);
    }
}

/* If an error is being injected and the request is a data request, answers
 * it with that error and returns true. write_type: for Write_timeout and
 * Write_failure. */
static bool cs_inject(cs_conn_t *c, int16_t stream, bool data, uint16_t cl, const char *write_type)
{
    if (cs.err_left == 0 || !data) {
        return false;
    }
    if (cs.err_left > 0) {
        cs.err_left--;
    }
    cn_err_t err;
    memset(&err, 0, sizeof(err));
    cn_fail(&err, cs.err_code, "%s", cs.err_msg);
    err.cl = cl;
    snprintf(err.write_type, sizeof(err.write_type), "%s", write_type);
    if (cs.err_code == SL_CQL_ERR_UNPREPARED) {
        memset(err.id, 0xee, sizeof(err.id));
    }
    cs_error(c, SL_CQL_VERSION_RESPONSE, stream, &err);
    cn_stats.errors_injected++;
    return true;
}

static void cs_batch(cs_conn_t *c, int16_t stream, sl_cql_rd_t *r, sl_arena_t *a)
{
    uint8_t type;
    uint16_t n;
    cn_err_t err;
    memset(&err, 0, sizeof(err));
    if (sl_cql_rd_byte(r, &type) != 0 || sl_cql_rd_short(r, &n) != 0) {
        cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "malformed BATCH");
        return;
    }
    if (type > 2) {
        cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "unknown BATCH type");
        return;
    }
    /* Decode everything first so a malformed batch applies nothing. */
    typedef struct {
        uint8_t kind;
        sl_cql_str_t query;
        sl_cql_bytes_t id;
        cn_request_t req;
    } stmt_t;
    stmt_t *st = sl_arena_alloc(a, (n + 1u) * sizeof(*st));
    bool ok = true;
    for (uint16_t i = 0; i < n && ok; i++) {
        memset(&st[i], 0, sizeof(st[i]));
        uint16_t nv = 0;
        ok = sl_cql_rd_byte(r, &st[i].kind) == 0 && st[i].kind <= 1;
        if (ok) {
            ok = st[i].kind == 0 ? sl_cql_rd_long_string(r, &st[i].query) == 0
                                 : sl_cql_rd_short_bytes(r, &st[i].id) == 0;
        }
        ok = ok && sl_cql_rd_short(r, &nv) == 0;
        sl_cql_bytes_t *vals = sl_arena_alloc(a, (nv + 1u) * sizeof(*vals));
        for (uint16_t k = 0; k < nv && ok; k++) {
            ok = sl_cql_rd_value(r, &vals[k]) == 0;
        }
        st[i].req.values = vals;
        st[i].req.n_values = nv;
        st[i].req.keyspace = c->keyspace;
    }
    uint16_t cl;
    uint8_t flags = 0;
    ok = ok && sl_cql_rd_consistency(r, &cl) == 0 && sl_cql_rd_byte(r, &flags) == 0;
    if (!ok) {
        cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream,
                          r->err != NULL ? r->err : "malformed BATCH");
        return;
    }
    static const char *const write_types[] = {"BATCH", "UNLOGGED_BATCH", "COUNTER"};
    if (cs_inject(c, stream, n > 0, cl, write_types[type])) {
        return;
    }
    sl_buf_t scratch = SL_BUF_INIT;
    int rc = 0;
    for (uint16_t i = 0; i < n && rc == 0; i++) {
        scratch.len = 0;
        if (st[i].kind == 0) {
            /* BATCH may only hold INSERT, UPDATE and DELETE: refuse others up front. */
            rc = cn_exec_query(st[i].query.data, st[i].query.len, &st[i].req, &scratch, NULL, &err);
        } else {
            rc = cn_exec_prepared(st[i].id.ptr, (size_t)SL_MAX(st[i].id.len, 0), &st[i].req,
                                  &scratch, NULL, &err);
        }
        if (rc == 0 && scratch.len >= 4 && scratch.data[3] != SL_CQL_RESULT_VOID) {
            rc = cn_fail(&err, SL_CQL_ERR_INVALID,
                         "Invalid statement in batch: only UPDATE, INSERT and DELETE statements "
                         "are allowed.");
        }
    }
    sl_buf_free(&scratch);
    sl_buf_t body = SL_BUF_INIT;
    if (rc == 0) {
        sl_cql_wr_t w;
        sl_cql_wr_init(&w, &body);
        sl_cql_wr_int(&w, SL_CQL_RESULT_VOID);
    }
    cs_result(c, stream, rc, &body, &err);
    sl_buf_free(&body);
}

/* Decompresses the LZ4 body of a flagged request into z; *plain is the
 * frame with that body and the flag cleared. Returns 0 or -1 (corrupt). */
static int cs_decompress(const sl_cql_frame_t *f, sl_buf_t *z, sl_cql_frame_t *plain)
{
    if (f->body_len < 4) {
        return -1;
    }
    const uint8_t *b = f->body;
    uint32_t n = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    if (n > CS_MAX_BODY) {
        return -1;
    }
    sl_buf_reserve(z, (size_t)n + 1);
    int got = LZ4_decompress_safe((const char *)b + 4, z->data, (int)(f->body_len - 4), (int)n);
    if (got < 0 || (uint32_t)got != n) {
        return -1;
    }
    z->len = n;
    *plain = *f;
    plain->hdr.flags = (uint8_t)(f->hdr.flags & ~SL_CQL_FLAG_COMPRESSION);
    plain->hdr.length = n;
    plain->body = (const uint8_t *)z->data;
    plain->body_len = n;
    return 0;
}

/* Handles one request frame. */
static void cs_request(cs_conn_t *c, const sl_cql_frame_t *f)
{
    int16_t stream = f->hdr.stream;
    sl_cql_rd_t r;
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_buf_t zbody = SL_BUF_INIT;
    sl_cql_frame_t plain;
    cn_stats.requests++;
    if ((f->hdr.flags & SL_CQL_FLAG_COMPRESSION) && c->lz4) {
        if (cs_decompress(f, &zbody, &plain) != 0) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "Corrupt LZ4 frame body");
            c->closing = true;
            goto out;
        }
        f = &plain;
    }
    sl_cql_rd_init(&r, f->body, f->body_len);
    if (f->hdr.flags & SL_CQL_FLAG_COMPRESSION) {
        cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream,
                          "Compressed frame received but no compression was negotiated");
        c->closing = true;
        goto out;
    }
    if (f->hdr.flags & SL_CQL_FLAG_CUSTOM_PAYLOAD) {
        const sl_cql_bytesmap_entry_t *payload;
        size_t n;
        if (sl_cql_rd_bytes_map(&r, &a, &payload, &n) != 0) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "malformed custom payload");
            goto out;
        }
    }
    uint8_t op = f->hdr.opcode;
    if (!c->ready && op != SL_CQL_OP_OPTIONS && op != SL_CQL_OP_STARTUP) {
        char msg[96];
        snprintf(msg, sizeof(msg), "Unexpected message %s, expecting STARTUP or OPTIONS",
                 sl_cql_opcode_name(op) ? sl_cql_opcode_name(op) : "?");
        cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, msg);
        goto out;
    }
    cn_err_t err;
    memset(&err, 0, sizeof(err));
    sl_buf_t body = SL_BUF_INIT;
    switch (op) {
    case SL_CQL_OP_OPTIONS:
        cs_supported(c, stream);
        break;
    case SL_CQL_OP_STARTUP: {
        const sl_cql_strmap_entry_t *opts;
        size_t n;
        if (c->ready) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream,
                              "Unexpected message STARTUP, the connection is already initialized");
            break;
        }
        if (sl_cql_rd_string_map(&r, &a, &opts, &n) != 0) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "malformed STARTUP");
            break;
        }
        bool has_version = false, lz4 = false;
        const char *bad = NULL;
        for (size_t i = 0; i < n; i++) {
            if (strcasecmp(opts[i].key, "CQL_VERSION") == 0) {
                has_version = true;
            } else if (strcasecmp(opts[i].key, "COMPRESSION") == 0) {
                if (cs.lz4 && strcasecmp(opts[i].value, "lz4") == 0) {
                    lz4 = true;
                } else {
                    bad = opts[i].value;
                }
            }
        }
        if (!has_version) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream,
                              "Missing value CQL_VERSION in STARTUP message");
        } else if (bad != NULL) {
            char msg[160];
            snprintf(msg, sizeof(msg), "Unknown compression algorithm: %.100s", bad);
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, msg);
        } else {
            c->ready = true;
            cs_frame(c, SL_CQL_VERSION_RESPONSE, stream, SL_CQL_OP_READY, NULL);
            c->lz4 = lz4; /* READY goes plain; every later frame compressed */
        }
        break;
    }
    case SL_CQL_OP_REGISTER: {
        const char *const *events;
        size_t n;
        if (sl_cql_rd_string_list(&r, &a, &events, &n) != 0) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "malformed REGISTER");
            break;
        }
        for (size_t i = 0; i < n; i++) {
            c->events |= strcmp(events[i], "TOPOLOGY_CHANGE") == 0 ? CS_EV_TOPOLOGY
                         : strcmp(events[i], "STATUS_CHANGE") == 0 ? CS_EV_STATUS
                         : strcmp(events[i], "SCHEMA_CHANGE") == 0 ? CS_EV_SCHEMA
                                                                   : 0;
        }
        cs_frame(c, SL_CQL_VERSION_RESPONSE, stream, SL_CQL_OP_READY, NULL);
        break;
    }
    case SL_CQL_OP_QUERY: {
        sl_cql_str_t q;
        cn_request_t req = {.keyspace = c->keyspace};
        if (sl_cql_rd_long_string(&r, &q) != 0 || cs_read_params(&r, &a, &req) != 0) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "malformed QUERY");
            break;
        }
        cn_stats.queries++;
        bool counter = false; /* classify only while injecting: it parses the query again */
        bool data = cs.err_left != 0 && cn_is_data(q.data, q.len, c->keyspace, &counter);
        if (cs_inject(c, stream, data, req.consistency, counter ? "COUNTER" : "SIMPLE")) {
            break;
        }
        int rc = cn_exec_query(q.data, q.len, &req, &body, c->keyspace, &err);
        cs_result(c, stream, rc, &body, &err);
        break;
    }
    case SL_CQL_OP_PREPARE: {
        sl_cql_str_t q;
        if (sl_cql_rd_long_string(&r, &q) != 0) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "malformed PREPARE");
            break;
        }
        cn_stats.prepares++;
        int rc = cn_exec_prepare(q.data, q.len, c->keyspace, &body, &err);
        cs_result(c, stream, rc, &body, &err);
        break;
    }
    case SL_CQL_OP_EXECUTE: {
        sl_cql_bytes_t id;
        cn_request_t req = {.keyspace = c->keyspace};
        if (sl_cql_rd_short_bytes(&r, &id) != 0 || cs_read_params(&r, &a, &req) != 0) {
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, "malformed EXECUTE");
            break;
        }
        cn_stats.executes++;
        bool counter = false;
        bool data =
            cs.err_left != 0 && cn_prepared_is_data(id.ptr, (size_t)SL_MAX(id.len, 0), &counter);
        if (cs_inject(c, stream, data, req.consistency, counter ? "COUNTER" : "SIMPLE")) {
            break;
        }
        int rc = cn_exec_prepared(id.ptr, (size_t)id.len, &req, &body, c->keyspace, &err);
        cs_result(c, stream, rc, &body, &err);
        break;
    }
    case SL_CQL_OP_BATCH:
        cn_stats.batches++;
        cs_batch(c, stream, &r, &a);
        break;
    case SL_CQL_OP_AUTH_RESPONSE:
        cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream,
                          "Unexpected AUTH_RESPONSE: this node requires no authentication");
        break;
    default: {
        char msg[64];
        snprintf(msg, sizeof(msg), "Unknown opcode %d", op);
        cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, msg);
        break;
    }
    }
    sl_buf_free(&body);
out:
    sl_buf_free(&zbody);
    sl_arena_free(&a);
}

/* Handles the whole frames in c->in. */
static void cs_process(cs_conn_t *c)
{
    size_t off = 0;
    while (!c->closing && c->in.len - off >= 1) {
        const uint8_t *p = (const uint8_t *)c->in.data + off;
        size_t left = c->in.len - off;
        if (p[0] != SL_CQL_VERSION_REQUEST || cs.max_protocol == 3) {
            /* Like Cassandra: answer with the version we speak, keep the
             * stream id, and close once the error is written. Drivers then
             * retry with a lower version on a new connection. */
            if (left < 4) {
                break;
            }
            int16_t stream = (int16_t)((p[2] << 8) | p[3]);
            char msg[160];
            if (p[0] & 0x80) {
                snprintf(msg, sizeof(msg),
                         "Invalid message direction: a response frame "
                         "(version byte 0x%02x) sent to the server",
                         p[0]);
            } else {
                snprintf(msg, sizeof(msg),
                         "Invalid or unsupported protocol version (%d); supported versions are "
                         "(%d/v%d)",
                         p[0], cs.max_protocol, cs.max_protocol);
            }
            cs_protocol_error(c, (uint8_t)(0x80 | cs.max_protocol), stream, msg);
            c->closing = true;
            break;
        }
        sl_cql_frame_t f;
        size_t used = 0;
        sl_cql_parse_status_t st =
            sl_cql_frame_parse_ex(p, left, SL_CQL_VERSION_REQUEST, CS_MAX_BODY, &f, &used);
        if (st == SL_CQL_PARSE_NEED_MORE) {
            break;
        }
        if (st == SL_CQL_PARSE_ERROR) {
            int16_t stream = left >= 4 ? (int16_t)((p[2] << 8) | p[3]) : 0;
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, f.err);
            c->closing = true;
            break;
        }
        size_t before = c->out.len;
        cs_request(c, &f);
        off += used;
        if (cs.delay_ms > 0 && !c->closing && c->out.len > before) {
            /* hold this response back: move it from out to the late queue */
            size_t len = c->out.len - before;
            cs_late_t *l = sl_xmalloc(sizeof(*l) + len);
            l->next = NULL;
            l->due_ms = cs_now_ms() + cs.delay_ms;
            l->len = len;
            memcpy(l->data, c->out.data + before, len);
            c->out.len = before;
            if (c->late_tail != NULL) {
                c->late_tail->next = l;
            } else {
                c->late = l;
            }
            c->late_tail = l;
        }
    }
    sl_buf_consume(&c->in, off);
}

static void cs_close(cs_conn_t *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        cs.conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    epoll_ctl(cs.ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    while (c->late != NULL) {
        cs_late_t *l = c->late;
        c->late = l->next;
        free(l);
    }
    sl_buf_free(&c->in);
    sl_buf_free(&c->out);
    free(c);
}

static void cs_events(cs_conn_t *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(cs.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = (events & EPOLLOUT) != 0;
}

/* SSL_write of the unwritten output (the same length again after a WANT_*).
 * Returns the bytes written, 0 to wait, -1 when the connection is broken. */
static ssize_t cs_tls_write(cs_conn_t *c)
{
    size_t left = c->out.len - c->out_off;
    int len = c->tls_wlen > 0 ? c->tls_wlen : (int)(left < (1u << 30) ? left : (1u << 30));
    ERR_clear_error();
    int n = SSL_write(c->ssl, c->out.data + c->out_off, len);
    if (n > 0) {
        c->tls_wlen = 0;
        return n;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        c->tls_wlen = len;
        return 0;
    }
    return -1;
}

/* Writes what it can; returns -1 if the connection is gone. */
static int cs_flush(cs_conn_t *c)
{
    while (c->out_off < c->out.len) {
        if (c->ssl != NULL) {
            ssize_t w = cs_tls_write(c);
            if (w < 0) {
                return -1;
            }
            if (w == 0) {
                break;
            }
            c->out_off += (size_t)w;
            continue;
        }
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -1;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.len) {
        c->out.len = 0;
        c->out_off = 0;
        if (c->closing) {
            return -1;
        }
    }
    bool want = c->out_off < c->out.len;
    if (want != c->want_out) {
        cs_events(c, EPOLLIN | (want ? EPOLLOUT : 0));
    }
    return 0;
}

static void cs_readable(cs_conn_t *c)
{
    for (;;) {
        sl_buf_reserve(&c->in, 65536);
        if (c->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, c->in.data + c->in.len, (int)(c->in.cap - c->in.len - 1));
            if (r <= 0) {
                int err = SSL_get_error(c->ssl, r);
                if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                    break;
                }
                cs_close(c); /* close_notify, end of stream or a TLS error */
                return;
            }
            c->in.len += (size_t)r;
            c->in.data[c->in.len] = '\0';
            cs_process(c);
            if (c->closing) {
                break;
            }
            continue;
        }
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            cs_close(c);
            return;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        cs_process(c);
        if (c->closing) {
            break;
        }
    }
    if (cs_flush(c) != 0) {
        cs_close(c);
    }
}

/* Drives SSL_accept; once done, reads what already arrived. May close c. */
static void cs_tls_accept(cs_conn_t *c)
{
    ERR_clear_error();
    int rc = SSL_accept(c->ssl);
    if (rc == 1) {
        c->tls_hs = false;
        cs_events(c, EPOLLIN);
        cs_readable(c);
        return;
    }
    int err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        cs_events(c, EPOLLIN);
    } else if (err == SSL_ERROR_WANT_WRITE) {
        cs_events(c, EPOLLOUT);
    } else {
        unsigned long e = ERR_peek_last_error();
        char eb[160];
        if (e != 0) {
            ERR_error_string_n(e, eb, sizeof(eb));
        } else {
            snprintf(eb, sizeof(eb), "connection closed by the client");
        }
        cs_log("TLS handshake failed: %s", eb);
        ERR_clear_error();
        cs_close(c);
    }
}

static void cs_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                cs_log("accept: %s", strerror(errno));
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        cs_conn_t *c = sl_xcalloc(1, sizeof(*c));
        c->fd = fd;
        if (cs.ssl_ctx != NULL) {
            c->ssl = SSL_new(cs.ssl_ctx);
            if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
                cs_log("SSL_new failed");
                SSL_free(c->ssl);
                close(fd);
                free(c);
                continue;
            }
            SSL_set_accept_state(c->ssl);
            c->tls_hs = true;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(cs.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            cs_log("epoll_ctl: %s", strerror(errno));
            SSL_free(c->ssl);
            close(fd);
            free(c);
            continue;
        }
        c->next = cs.conns;
        if (cs.conns != NULL) {
            cs.conns->prev = c;
        }
        cs.conns = c;
    }
}

static int cs_dump(void)
{
    char line[512];
    snprintf(line, sizeof(line),
             "{\"stats\":{\"requests\":%llu,\"queries\":%llu,\"executes\":%llu,"
             "\"prepares\":%llu,\"batches\":%llu,\"rows_written\":%llu,"
             "\"errors_injected\":%llu}}",
             (unsigned long long)cn_stats.requests, (unsigned long long)cn_stats.queries,
             (unsigned long long)cn_stats.executes, (unsigned long long)cn_stats.prepares,
             (unsigned long long)cn_stats.batches, (unsigned long long)cn_stats.rows_written,
             (unsigned long long)cn_stats.errors_injected);
    return cn_dump(cs.dump_file, cs.dump_stats ? line : NULL);
}

static void cs_usage(void)
{
    fprintf(stderr, "usage: cqlnode --port N [--listen ADDR] [--ready-file PATH] "
                    "[--dump-file PATH] [--dump-stats] [--tokens T1,T2] [--cluster-name NAME] "
                    "[--dc DC] [--rack RACK] [--peer ADDR:PORT=T1[,T2...][@DC]]... "
                    "[--schema-file PATH] [--control-file PATH] [--lz4] [--max-protocol 3] "
                    "[--delay MS (every response, like the control file's delay)] "
                    "[--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n");
}

/* Reads a whole file into b (NUL-terminated). Returns 0 or -1 (errno set). */
static int cs_read_file(const char *path, sl_buf_t *b)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        sl_buf_append(b, chunk, n);
    }
    int rc = ferror(f) ? -1 : 0;
    fclose(f);
    sl_buf_putc(b, '\0');
    b->len--;
    return rc;
}

/* Runs the statements of a schema file (separated by ';' outside quotes;
 * "--" starts a comment to the end of the line). Returns 0 or -1. */
static int cs_schema_file(const char *path)
{
    sl_buf_t b = SL_BUF_INIT;
    int rc = -1;
    char ks[CN_NAME_MAX] = "";
    if (cs_read_file(path, &b) != 0) {
        cs_log("--schema-file %s: %s", path, strerror(errno));
        goto out;
    }
    char *p = b.data != NULL ? b.data : "";
    for (;;) {
        char *start = p;
        char quote = 0;
        for (; *p != '\0' && (quote != 0 || *p != ';'); p++) {
            if (quote != 0) {
                quote = *p == quote ? 0 : quote;
            } else if (*p == '\'' || *p == '"') {
                quote = *p;
            } else if (p[0] == '-' && p[1] == '-') {
                while (*p != '\0' && *p != '\n') {
                    *p++ = ' ';
                }
                p--;
            }
        }
        bool last = *p == '\0';
        *p = '\0';
        size_t n = strspn(start, " \t\r\n") == strlen(start) ? 0 : strlen(start);
        if (n > 0) {
            sl_buf_t res = SL_BUF_INIT;
            cn_err_t err;
            memset(&err, 0, sizeof(err));
            cn_request_t req = {.keyspace = ks};
            int qrc = cn_exec_query(start, n, &req, &res, ks, &err);
            sl_buf_free(&res);
            if (qrc != 0) {
                cs_log("--schema-file %s: %s: %s", path, err.msg, start);
                goto out;
            }
        }
        if (last) {
            break;
        }
        p++;
    }
    rc = 0;
out:
    sl_buf_free(&b);
    return rc;
}

/* Applies one control line; returns 0 or -1 for a line it does not know. */
static int cs_control_line(char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t", &save);
    if (cmd == NULL || cmd[0] == '#') {
        return 0;
    }
    if (strcmp(cmd, "error") == 0) {
        char *code = strtok_r(NULL, " \t", &save);
        char *count = strtok_r(NULL, " \t", &save);
        char *msg = strtok_r(NULL, "", &save);
        char *end = NULL;
        long v = code != NULL ? strtol(code, &end, 0) : -1;
        if (code == NULL || *end != '\0' || v < 0 || v > 0xffff) {
            return -1;
        }
        long left = 1;
        if (count != NULL) {
            left = strtol(count, &end, 10);
            if (*end != '\0' || left < 0) {
                return -1;
            }
        }
        cs.err_code = (int32_t)v;
        cs.err_left = left == 0 ? -1 : left;
        snprintf(cs.err_msg, sizeof(cs.err_msg), "%s",
                 msg != NULL ? msg : "Error injected by cqlnode");
        return 0;
    }
    if (strcmp(cmd, "delay") == 0) {
        char *ms = strtok_r(NULL, " \t", &save);
        char *end = NULL;
        long v = ms != NULL ? strtol(ms, &end, 10) : -1;
        if (ms == NULL || *end != '\0' || v < 0 || v > 600000) {
            return -1;
        }
        cs.delay_ms = (uint32_t)v;
        return 0;
    }
    if (strcmp(cmd, "event") == 0) {
        /* event TOPOLOGY_CHANGE|STATUS_CHANGE CHANGE ADDR PORT: an EVENT frame
         * (stream -1) to every connection REGISTERed for that type */
        char *type = strtok_r(NULL, " \t", &save);
        char *change = strtok_r(NULL, " \t", &save);
        char *addr = strtok_r(NULL, " \t", &save);
        char *port = strtok_r(NULL, " \t", &save);
        sl_cql_inet_t in = {0};
        char *end = NULL;
        long pv = port != NULL ? strtol(port, &end, 10) : -1;
        uint8_t bit = type == NULL                           ? 0
                      : strcmp(type, "TOPOLOGY_CHANGE") == 0 ? CS_EV_TOPOLOGY
                      : strcmp(type, "STATUS_CHANGE") == 0   ? CS_EV_STATUS
                                                             : 0;
        if (bit == 0 || change == NULL || addr == NULL || port == NULL || *end != '\0' || pv < 0 ||
            pv > 65535) {
            return -1;
        }
        if (inet_pton(AF_INET, addr, in.addr) == 1) {
            in.addr_len = 4;
        } else if (inet_pton(AF_INET6, addr, in.addr) == 1) {
            in.addr_len = 16;
        } else {
            return -1;
        }
        in.port = (int32_t)pv;
        sl_buf_t body = SL_BUF_INIT;
        sl_cql_wr_t w;
        sl_cql_wr_init(&w, &body);
        sl_cql_wr_string(&w, type, strlen(type));
        sl_cql_wr_string(&w, change, strlen(change));
        sl_cql_wr_inet(&w, &in);
        int sent = 0;
        for (cs_conn_t *c = cs.conns; c != NULL; c = c->next) {
            if (c->ready && (c->events & bit)) {
                cs_frame(c, SL_CQL_VERSION_RESPONSE, -1, SL_CQL_OP_EVENT, &body);
                (void)cs_flush(c); /* a failed socket shows on its next event */
                sent++;
            }
        }
        cs_log("control: %s %s %s:%ld sent to %d connection(s)", type, change, addr, pv, sent);
        sl_buf_free(&body);
        return 0;
    }
    if (strcmp(cmd, "drop") == 0) {
        cs.drop = true; /* after this round of events: they may name connections */
        return 0;
    }
    if (strcmp(cmd, "clear") == 0) {
        cs.err_left = 0;
        cs.delay_ms = 0;
        return 0;
    }
    return -1;
}

/* SIGUSR2: applies the control file's lines, then writes PATH.applied. */
static void cs_control(void)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_buf_t tmp = SL_BUF_INIT;
    if (cs.control_file == NULL) {
        cs_log("SIGUSR2: no --control-file given");
        goto out;
    }
    if (cs_read_file(cs.control_file, &b) != 0) {
        cs_log("cannot read %s: %s", cs.control_file, strerror(errno));
        goto out;
    }
    char *save = NULL;
    for (char *line = strtok_r(b.data != NULL ? b.data : "", "\r\n", &save); line != NULL;
         line = strtok_r(NULL, "\r\n", &save)) {
        char copy[512];
        snprintf(copy, sizeof(copy), "%s", line);
        if (cs_control_line(line) != 0) {
            cs_log("%s: ignoring bad line: %s", cs.control_file, copy);
        } else if (copy[0] != '\0') {
            cs_log("control: %s", copy);
        }
    }
    cs.control_reads++;
    sl_buf_printf(&tmp, "%s.applied.tmp", cs.control_file);
    FILE *f = fopen(tmp.data, "w");
    char final[4096];
    snprintf(final, sizeof(final), "%s.applied", cs.control_file);
    if (f == NULL || fprintf(f, "%llu\n", (unsigned long long)cs.control_reads) < 0 ||
        fclose(f) != 0 || rename(tmp.data, final) != 0) {
        cs_log("cannot write %s: %s", final, strerror(errno));
    }
out:
    sl_buf_free(&tmp);
    sl_buf_free(&b);
}

/* Moves the due delayed responses to their connections' output; returns the
 * epoll timeout until the next one (-1: none). */
static int cs_release_late(void)
{
    uint64_t now = cs_now_ms();
    uint64_t next = UINT64_MAX;
    cs_conn_t *c = cs.conns;
    while (c != NULL) {
        cs_conn_t *following = c->next;
        bool moved = false;
        while (c->late != NULL && c->late->due_ms <= now) {
            cs_late_t *l = c->late;
            sl_buf_append(&c->out, l->data, l->len);
            c->late = l->next;
            if (c->late == NULL) {
                c->late_tail = NULL;
            }
            free(l);
            moved = true;
        }
        if (moved && cs_flush(c) != 0) {
            cs_close(c);
        } else if (c->late != NULL) {
            next = SL_MIN(next, c->late->due_ms);
        }
        c = following;
    }
    return next == UINT64_MAX ? -1 : (int)SL_MIN(next - now, (uint64_t)INT32_MAX);
}

/* Parses --peer ADDR:PORT=T1[,T2...][@DC] into *p (pointing into arg,
 * modified). */
static int cs_peer_parse(char *arg, cn_peer_t *p)
{
    char *at = strchr(arg, '@');
    p->dc = NULL;
    if (at != NULL) {
        *at = '\0';
        if (at[1] == '\0') {
            return -1;
        }
        p->dc = at + 1;
    }
    char *eq = strchr(arg, '=');
    char *colon = strchr(arg, ':');
    if (eq == NULL || colon == NULL || colon > eq || eq[1] == '\0') {
        return -1;
    }
    *colon = '\0';
    *eq = '\0';
    struct in_addr ia;
    p->addr = arg;
    p->port = atoi(colon + 1);
    p->tokens = eq + 1;
    return inet_pton(AF_INET, arg, &ia) == 1 && p->port > 0 && p->port <= 65535 ? 0 : -1;
}

int main(int argc, char **argv)
{
    cn_node_conf_t conf = {
        .listen = "127.0.0.1",
        .tokens = "0",
        .cluster_name = "cqlnode",
        .dc = "dc1",
        .rack = "r1",
    };
    const char *ready_file = NULL;
    const char *schema_file = NULL;
    const char *tls_cert = NULL, *tls_key = NULL, *tls_client_ca = NULL;
    cn_peer_t peers[64];
    size_t n_peers = 0;
    int port = -1;
    cs.max_protocol = 4;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--dump-stats") == 0) {
            cs.dump_stats = true;
            continue;
        }
        if (strcmp(arg, "--lz4") == 0) {
            cs.lz4 = true;
            continue;
        }
        if (val == NULL) {
            cs_usage();
            return 2;
        }
        i++;
        if (strcmp(arg, "--port") == 0) {
            port = atoi(val);
        } else if (strcmp(arg, "--delay") == 0) {
            cs.delay_ms = (uint32_t)atoi(val);
        } else if (strcmp(arg, "--max-protocol") == 0) {
            cs.max_protocol = atoi(val);
            if (cs.max_protocol != 3 && cs.max_protocol != 4) {
                cs_usage();
                return 2;
            }
        } else if (strcmp(arg, "--listen") == 0) {
            conf.listen = val;
        } else if (strcmp(arg, "--ready-file") == 0) {
            ready_file = val;
        } else if (strcmp(arg, "--dump-file") == 0) {
            cs.dump_file = val;
        } else if (strcmp(arg, "--tokens") == 0) {
            conf.tokens = val;
        } else if (strcmp(arg, "--cluster-name") == 0) {
            conf.cluster_name = val;
        } else if (strcmp(arg, "--dc") == 0) {
            conf.dc = val;
        } else if (strcmp(arg, "--rack") == 0) {
            conf.rack = val;
        } else if (strcmp(arg, "--peer") == 0) {
            char given[256];
            snprintf(given, sizeof(given), "%s", val);
            if (n_peers == SL_ARRAY_LEN(peers) || cs_peer_parse(val, &peers[n_peers]) != 0) {
                cs_log("--peer %s: want ADDR:PORT=TOKEN[,TOKEN...][@DC] (at most %zu)", given,
                       SL_ARRAY_LEN(peers));
                return 2;
            }
            n_peers++;
        } else if (strcmp(arg, "--schema-file") == 0) {
            schema_file = val;
        } else if (strcmp(arg, "--control-file") == 0) {
            cs.control_file = val;
        } else if (strcmp(arg, "--tls-cert") == 0) {
            tls_cert = val;
        } else if (strcmp(arg, "--tls-key") == 0) {
            tls_key = val;
        } else if (strcmp(arg, "--tls-client-ca") == 0) {
            tls_client_ca = val;
        } else {
            cs_usage();
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        cs_usage();
        return 2;
    }
    if ((tls_cert == NULL) != (tls_key == NULL) || (tls_client_ca != NULL && tls_cert == NULL)) {
        cs_log("--tls-cert and --tls-key go together; --tls-client-ca needs them");
        return 2;
    }
    if (tls_cert != NULL) {
        cs.ssl_ctx = SSL_CTX_new(TLS_server_method());
        if (cs.ssl_ctx == NULL || SSL_CTX_use_certificate_chain_file(cs.ssl_ctx, tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(cs.ssl_ctx, tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(cs.ssl_ctx) != 1) {
            char eb[160];
            ERR_error_string_n(ERR_get_error(), eb, sizeof(eb));
            cs_log("--tls-cert %s --tls-key %s: %s", tls_cert, tls_key, eb);
            return 2;
        }
        SSL_CTX_set_mode(cs.ssl_ctx,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (tls_client_ca != NULL) {
            if (SSL_CTX_load_verify_locations(cs.ssl_ctx, tls_client_ca, NULL) != 1) {
                char eb[160];
                ERR_error_string_n(ERR_get_error(), eb, sizeof(eb));
                cs_log("--tls-client-ca %s: %s", tls_client_ca, eb);
                return 2;
            }
            SSL_CTX_set_verify(cs.ssl_ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    conf.port = port;
    conf.peers = peers;
    conf.n_peers = n_peers;

    /* Signals reach the loop through a self-pipe. (A blocked mask plus
     * signalfd only works if every thread blocks them; under sanitizers a
     * runtime thread may not, and SIGUSR1 then killed the node.) */
    int sig_pipe[2];
    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        cs_log("pipe: %s", strerror(errno));
        return 1;
    }
    cs_sig_wr = sig_pipe[1];
    int sfd = sig_pipe[0];
    struct sigaction act = {0};
    act.sa_handler = cs_on_signal;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGUSR1, &act, NULL);
    sigaction(SIGUSR2, &act, NULL);
    signal(SIGPIPE, SIG_IGN); /* SSL_write uses write(): a gone client must not kill the node */

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, conf.listen, &sa.sin_addr) != 1) {
        cs_log("--listen %s: not an IPv4 address", conf.listen);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 512) != 0) {
        cs_log("cannot listen on %s:%d: %s (address in use?)", conf.listen, port, strerror(errno));
        return 2;
    }
    cn_node_init(&conf);
    if (schema_file != NULL && cs_schema_file(schema_file) != 0) {
        return 2;
    }

    cs.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lfd};
    epoll_ctl(cs.ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sfd};
    epoll_ctl(cs.ep, EPOLL_CTL_ADD, sfd, &sev);

    if (ready_file != NULL) {
        sl_buf_t tmp = SL_BUF_INIT;
        sl_buf_printf(&tmp, "%s.tmp", ready_file);
        FILE *f = fopen(tmp.data, "w");
        if (f == NULL || fprintf(f, "%s:%d\n", conf.listen, port) < 0 || fclose(f) != 0 ||
            rename(tmp.data, ready_file) != 0) {
            cs_log("cannot write %s: %s", ready_file, strerror(errno));
            return 1;
        }
        sl_buf_free(&tmp);
    }
    cs_log("listening on %s:%d%s", conf.listen, port, cs.ssl_ctx != NULL ? " (TLS)" : "");

    bool running = true;
    while (running) {
        struct epoll_event evs[64];
        int n = epoll_wait(cs.ep, evs, SL_ARRAY_LEN(evs), cs_release_late());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            cs_log("epoll_wait: %s", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &lfd) {
                cs_accept(lfd);
            } else if (p == &sfd) {
                unsigned char signo;
                while (read(sfd, &signo, 1) == 1) {
                    if (signo == SIGUSR1) {
                        if (cs.dump_file == NULL) {
                            cs_log("SIGUSR1: no --dump-file given");
                        } else if (cs_dump() != 0) {
                            cs_log("cannot write %s: %s", cs.dump_file, strerror(errno));
                        }
                    } else if (signo == SIGUSR2) {
                        cs_control();
                    } else {
                        running = false;
                    }
                }
            } else {
                cs_conn_t *c = p;
                if (c->tls_hs) {
                    cs_tls_accept(c); /* may close c */
                } else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    cs_readable(c); /* may close c */
                } else if ((evs[i].events & EPOLLOUT) && cs_flush(c) != 0) {
                    cs_close(c);
                }
            }
        }
        if (cs.drop) {
            cs_log("control: dropping every client connection");
            while (cs.conns != NULL) {
                cs_close(cs.conns);
            }
            cs.drop = false;
        }
    }
    cs_log("stopping after %llu requests", (unsigned long long)cn_stats.requests);
    while (cs.conns != NULL) {
        cs_close(cs.conns);
    }
    close(lfd);
    close(sfd);
    close(sig_pipe[1]);
    close(cs.ep);
    SSL_CTX_free(cs.ssl_ctx);
    cn_node_free();
    return 0;
}
