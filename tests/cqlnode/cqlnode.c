/* cqlnode: an in-memory CQL native protocol v4 server for tests.
 *
 *   cqlnode --port N [--listen 127.0.0.1] [--ready-file PATH] [--dump-file PATH]
 *           [--tokens T1,T2] [--cluster-name NAME] [--dc DC] [--rack RACK]
 *
 * One thread, one epoll loop, any number of connections. SIGTERM/SIGINT stop
 * it with exit 0; SIGUSR1 writes the user tables as JSON lines to the dump
 * file. Exit 2 when the port cannot be bound. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cqlnode.h"

/* The largest request body accepted (the spec's frame limit is 256 MB). */
#define CS_MAX_BODY (64u * 1024u * 1024u)

typedef struct cs_conn cs_conn_t;
struct cs_conn {
    cs_conn_t *prev, *next; /* all open connections */
    int fd;
    sl_buf_t in, out;
    size_t out_off;
    bool ready;    /* STARTUP done */
    bool closing;  /* close once out is flushed */
    bool want_out; /* EPOLLOUT registered */
    char keyspace[CN_NAME_MAX];
};

static struct {
    int ep;
    cs_conn_t *conns;
    const char *dump_file;
    uint64_t requests;
} cs;

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

/* Appends a whole response frame (version 0x84) with the given body. */
static void cs_frame(cs_conn_t *c, uint8_t version, int16_t stream, uint8_t opcode,
                     const sl_buf_t *body)
{
    sl_cql_header_t h = {
        .version = version,
        .flags = 0,
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
}

static void cs_error(cs_conn_t *c, uint8_t version, int16_t stream, const cn_err_t *err)
{
    sl_buf_t body = SL_BUF_INIT;
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, &body);
    sl_cql_wr_int(&w, err->code);
    sl_cql_wr_string(&w, err->msg, strlen(err->msg));
    if (err->code == SL_CQL_ERR_ALREADY_EXISTS) {
        sl_cql_wr_string(&w, err->ks, strlen(err->ks));
        sl_cql_wr_string(&w, err->table, strlen(err->table));
    } else if (err->code == SL_CQL_ERR_UNPREPARED) {
        sl_cql_wr_short_bytes(&w, err->id, sizeof(err->id));
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
    static const char *const compression[] = {NULL};
    static const char *const cql_version[] = {"3.4.5"};
    static const char *const versions[] = {"4/v4"};
    static const char *const *const values[] = {compression, cql_version, versions};
    static const size_t n_values[] = {0, 1, 1};
    sl_buf_t body = SL_BUF_INIT;
    sl_cql_wr_t w;
    sl_cql_wr_init(&w, &body);
    sl_cql_wr_string_multimap(&w, keys, values, n_values, SL_ARRAY_LEN(keys));
    cs_frame(c, SL_CQL_VERSION_RESPONSE, stream, SL_CQL_OP_SUPPORTED, &body);
    sl_buf_free(&body);
}

/* Reads <query_parameters> (4.1.4) after the consistency. */
static int cs_read_params(sl_cql_rd_t *r, sl_arena_t *a, cn_request_t *req)
{
    uint16_t cl;
    uint8_t flags;
    if (sl_cql_rd_consistency(r, &cl) != 0 || sl_cql_rd_byte(r, &flags) != 0) {
        return -1;
    }
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

/* Handles one request frame. */
static void cs_request(cs_conn_t *c, const sl_cql_frame_t *f)
{
    int16_t stream = f->hdr.stream;
    sl_cql_rd_t r;
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_rd_init(&r, f->body, f->body_len);
    cs.requests++;
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
        bool has_version = false;
        const char *bad = NULL;
        for (size_t i = 0; i < n; i++) {
            if (strcasecmp(opts[i].key, "CQL_VERSION") == 0) {
                has_version = true;
            } else if (strcasecmp(opts[i].key, "COMPRESSION") == 0) {
                bad = opts[i].value;
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
        int rc = cn_exec_prepared(id.ptr, (size_t)id.len, &req, &body, c->keyspace, &err);
        cs_result(c, stream, rc, &body, &err);
        break;
    }
    case SL_CQL_OP_BATCH:
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
    sl_arena_free(&a);
}

/* Handles the whole frames in c->in. */
static void cs_process(cs_conn_t *c)
{
    size_t off = 0;
    while (!c->closing && c->in.len - off >= 1) {
        const uint8_t *p = (const uint8_t *)c->in.data + off;
        size_t left = c->in.len - off;
        if (p[0] != SL_CQL_VERSION_REQUEST) {
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
                         "(4/v4)",
                         p[0]);
            }
            cs_protocol_error(c, SL_CQL_VERSION_RESPONSE, stream, msg);
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
        cs_request(c, &f);
        off += used;
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
    close(c->fd);
    sl_buf_free(&c->in);
    sl_buf_free(&c->out);
    free(c);
}

/* Writes what it can; returns -1 if the connection is gone. */
static int cs_flush(cs_conn_t *c)
{
    while (c->out_off < c->out.len) {
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
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(cs.ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
    return 0;
}

static void cs_readable(cs_conn_t *c)
{
    for (;;) {
        sl_buf_reserve(&c->in, 65536);
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
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(cs.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            cs_log("epoll_ctl: %s", strerror(errno));
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

static void cs_usage(void)
{
    fprintf(stderr, "usage: cqlnode --port N [--listen ADDR] [--ready-file PATH] "
                    "[--dump-file PATH] [--tokens T1,T2] [--cluster-name NAME] [--dc DC] "
                    "[--rack RACK]\n");
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
    int port = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (val == NULL) {
            cs_usage();
            return 2;
        }
        i++;
        if (strcmp(arg, "--port") == 0) {
            port = atoi(val);
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
        } else {
            cs_usage();
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        cs_usage();
        return 2;
    }
    conf.port = port;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

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
    cs_log("listening on %s:%d", conf.listen, port);

    bool running = true;
    while (running) {
        struct epoll_event evs[64];
        int n = epoll_wait(cs.ep, evs, SL_ARRAY_LEN(evs), -1);
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
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                    if (si.ssi_signo == SIGUSR1) {
                        if (cs.dump_file == NULL) {
                            cs_log("SIGUSR1: no --dump-file given");
                        } else if (cn_dump(cs.dump_file) != 0) {
                            cs_log("cannot write %s: %s", cs.dump_file, strerror(errno));
                        }
                    } else {
                        running = false;
                    }
                }
            } else {
                cs_conn_t *c = p;
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    cs_readable(c); /* may close c */
                } else if ((evs[i].events & EPOLLOUT) && cs_flush(c) != 0) {
                    cs_close(c);
                }
            }
        }
    }
    cs_log("stopping after %llu requests", (unsigned long long)cs.requests);
    while (cs.conns != NULL) {
        cs_close(cs.conns);
    }
    close(lfd);
    close(sfd);
    close(cs.ep);
    cn_node_free();
    return 0;
}
