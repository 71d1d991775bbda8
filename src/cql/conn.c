#include "cql/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cql/result.h"
#include "util/arena.h"

#define CC_DEFAULT_PORT 9042
#define CC_DEFAULT_CONNECT_MS 5000
#define CC_DEFAULT_REQUEST_MS 12000
#define CC_DEFAULT_HEARTBEAT_MS 30000
#define CC_DEFAULT_INFLIGHT 1024
#define CC_READ_CHUNK 65536
#define CC_MAX_READS_PER_CALL 64   /* then let the loop serve other fds */
#define CC_SCRATCH_KEEP (1u << 20) /* compression buffers larger than this are freed after use */

typedef enum cc_slot_state {
    CC_SLOT_FREE = 0,
    CC_SLOT_PENDING,   /* waiting for the response */
    CC_SLOT_TIMED_OUT, /* callback done; reserved until the late response */
} cc_slot_state_t;

/* Who is waiting for a response: the caller or the connection itself. */
typedef enum cc_kind {
    CC_KIND_USER = 0,
    CC_KIND_OPTIONS,
    CC_KIND_STARTUP,
    CC_KIND_AUTH,
    CC_KIND_USE,
    CC_KIND_HEARTBEAT,
} cc_kind_t;

typedef struct cc_slot {
    sl_cql_conn_cb cb;
    void *ctx;
    int64_t deadline;
    uint64_t end_off;   /* output stream position just past the request */
    int32_t prev, next; /* deadline list, -1 terminated */
    uint8_t state;      /* cc_slot_state_t */
    uint8_t kind;       /* cc_kind_t */
} cc_slot_t;

struct sl_cql_conn {
    sl_cql_conn_state_t state;
    int fd;
    char err[512];
    char *host, *keyspace, *user, *password;
    int port;
    int connect_timeout_ms, request_timeout_ms, heartbeat_ms;
    uint32_t max_frame;
    sl_cql_conn_event_cb on_event;
    sl_cql_conn_state_cb on_state;
    void *cb_ctx;

    int64_t now;
    int64_t handshake_deadline;
    int64_t last_io;          /* last successful read or write */
    int32_t heartbeat_stream; /* -1: none outstanding */

    /* Stream ids: a bitmap of used ids and one slot per id. */
    uint32_t max_streams;
    uint64_t *used;
    uint32_t n_words;
    uint32_t hint; /* word to start the next search at */
    cc_slot_t *slots;
    uint32_t inflight;
    uint32_t n_timed_out;     /* slots in state TIMED_OUT */
    int32_t dl_head, dl_tail; /* PENDING slots with a deadline, oldest first */

    sl_buf_t out;
    size_t out_off;       /* bytes of out already written */
    uint64_t out_written; /* total bytes written since creation */
    uint64_t out_queued;  /* total bytes queued since creation */
    sl_buf_t in;
    size_t in_off; /* bytes of in already parsed */

    /* LZ4 body compression (spec section 5): wanted by the caller, asked for
     * in STARTUP (from then on flagged responses are decompressed), and used
     * for requests once the STARTUP is answered (the STARTUP never is). */
    bool want_lz4, lz4_rx, lz4_tx;
    sl_buf_t zbuf; /* compressed request body (scratch) */
    sl_buf_t dbuf; /* decompressed response body, valid during dispatch */

    /* TLS: one SSL_CTX and one SSL per connection; ssl is NULL without TLS
     * and after a failure. tls_hs: the TLS handshake is running (state
     * CONNECTING), waiting for tls_want. tls_wlen: the length of an
     * SSL_write to repeat after WANT_READ/WANT_WRITE (0: none); tls_rd_out:
     * an SSL_read wants the socket writable; tls_wr_in: an SSL_write waits
     * for input (then POLLOUT is not asked for: it would spin). */
    bool tls, tls_verify_host, tls_hs, tls_rd_out, tls_wr_in;
    short tls_want;
    int tls_wlen;
    char *tls_ca, *tls_cert, *tls_key, *tls_name;
    SSL_CTX *ssl_ctx;
    SSL *ssl;

    sl_arena_t arena;     /* handshake response decoding */
    int depth;            /* > 0 while inside process or destroy (callbacks may run) */
    bool destroy_pending; /* destroyed from a callback: free when process returns */
    sl_cql_conn_stats_t st;
};

static void cc_fail(sl_cql_conn_t *conn, sl_cql_conn_state_t state, const char *fmt, ...)
    SL_PRINTF(3, 4);

/* ---- Stream ids ------------------------------------------------------------------------- */

static int32_t cc_stream_alloc(sl_cql_conn_t *conn)
{
    if (conn->inflight >= conn->max_streams) {
        return -1;
    }
    for (uint32_t k = 0; k < conn->n_words; k++) {
        uint32_t w = (conn->hint + k) % conn->n_words;
        uint64_t freebits = ~conn->used[w];
        if (w == conn->n_words - 1 && conn->max_streams % 64 != 0) {
            freebits &= (UINT64_C(1) << (conn->max_streams % 64)) - 1;
        }
        if (freebits != 0) {
            int bit = __builtin_ctzll(freebits);
            conn->used[w] |= UINT64_C(1) << bit;
            conn->hint = w;
            conn->inflight++;
            return (int32_t)(w * 64 + (uint32_t)bit);
        }
    }
    return -1;
}

static void cc_stream_free(sl_cql_conn_t *conn, int32_t id)
{
    if (conn->slots[id].state == CC_SLOT_TIMED_OUT) {
        conn->n_timed_out--;
    }
    conn->used[id / 64] &= ~(UINT64_C(1) << (id % 64));
    conn->slots[id].state = CC_SLOT_FREE;
    conn->slots[id].cb = NULL;
    conn->slots[id].ctx = NULL;
    conn->inflight--;
}

static void cc_dl_push(sl_cql_conn_t *conn, int32_t id)
{
    cc_slot_t *s = &conn->slots[id];
    s->next = -1;
    s->prev = conn->dl_tail;
    if (conn->dl_tail >= 0) {
        conn->slots[conn->dl_tail].next = id;
    } else {
        conn->dl_head = id;
    }
    conn->dl_tail = id;
}

static void cc_dl_remove(sl_cql_conn_t *conn, int32_t id)
{
    cc_slot_t *s = &conn->slots[id];
    if (s->prev >= 0) {
        conn->slots[s->prev].next = s->next;
    } else {
        conn->dl_head = s->next;
    }
    if (s->next >= 0) {
        conn->slots[s->next].prev = s->prev;
    } else {
        conn->dl_tail = s->prev;
    }
    s->prev = s->next = -1;
}

/* ---- State ------------------------------------------------------------------------------ */

const char *sl_cql_conn_state_name(sl_cql_conn_state_t state)
{
    switch (state) {
    case SL_CQL_CONN_CONNECTING:
        return "connecting";
    case SL_CQL_CONN_HANDSHAKING:
        return "handshaking";
    case SL_CQL_CONN_READY:
        return "ready";
    case SL_CQL_CONN_FAILED:
        return "failed";
    case SL_CQL_CONN_CLOSED:
        return "closed";
    }
    return "?";
}

static void cc_set_state(sl_cql_conn_t *conn, sl_cql_conn_state_t state)
{
    conn->state = state;
    if (conn->on_state != NULL) {
        conn->on_state(conn->cb_ctx, state, state == SL_CQL_CONN_FAILED ? conn->err : "");
    }
}

/* Closes the socket and ends every request: pending ones get LOST (in the
 * order they were sent), timed-out ones are released silently. */
static void cc_fail(sl_cql_conn_t *conn, sl_cql_conn_state_t state, const char *fmt, ...)
{
    if (conn->state == SL_CQL_CONN_FAILED || conn->state == SL_CQL_CONN_CLOSED) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(conn->err, sizeof(conn->err), fmt, ap);
    va_end(ap);
    if (conn->ssl != NULL) {
        if (state == SL_CQL_CONN_CLOSED && !conn->tls_hs) {
            (void)SSL_shutdown(conn->ssl); /* best effort close_notify, never waits */
        }
        SSL_free(conn->ssl);
        conn->ssl = NULL;
        ERR_clear_error();
    }
    conn->tls_hs = false;
    conn->tls_wlen = 0;
    if (conn->fd >= 0) {
        close(conn->fd);
        conn->fd = -1;
    }
    conn->heartbeat_stream = -1;
    cc_set_state(conn, state);

    /* Detach the deadline list first: callbacks may look at the connection. */
    int32_t id = conn->dl_head;
    conn->dl_head = conn->dl_tail = -1;
    while (id >= 0) {
        cc_slot_t *s = &conn->slots[id];
        int32_t next = s->next;
        s->prev = s->next = -1;
        sl_cql_conn_cb cb = s->kind == CC_KIND_USER ? s->cb : NULL;
        void *ctx = s->ctx;
        sl_cql_conn_err_t e = {
            .code = SL_CQL_REQ_LOST,
            .retriable = true,
            .fatal = true,
            .maybe_applied = conn->out_written >= s->end_off,
            .msg = conn->err,
        };
        cc_stream_free(conn, id);
        if (cb != NULL) {
            cb(ctx, SL_CQL_REQ_LOST, NULL, &e);
        }
        id = next;
    }
    /* Handshake and timed-out slots are not on the list. */
    for (uint32_t i = 0; i < conn->max_streams && conn->inflight > 0; i++) {
        if (conn->slots[i].state != CC_SLOT_FREE) {
            cc_stream_free(conn, (int32_t)i);
        }
    }
    conn->out.len = conn->out_off = 0;
    conn->in.len = conn->in_off = 0;
    if (conn->depth == 0) {
        sl_buf_free(&conn->out);
        sl_buf_free(&conn->in);
    } /* else a callback may still hold a frame pointing into in */
}

/* ---- Creation --------------------------------------------------------------------------- */

static int cc_connect(sl_cql_conn_t *conn)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", conn->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(conn->host, portstr, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(conn->host, portstr, &hints, &res);
    }
    if (rc != 0) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "resolve %s: %s", conn->host, gai_strerror(rc));
        return -1;
    }
    int ret = -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "socket: %s", strerror(errno));
        goto out;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn->fd = fd;
    if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        ret = 1; /* connected at once */
    } else if (errno == EINPROGRESS) {
        ret = 0;
    } else {
        cc_fail(conn, SL_CQL_CONN_FAILED, "connect to %s:%d: %s", conn->host, conn->port,
                strerror(errno));
    }
out:
    freeaddrinfo(res);
    return ret;
}

static void cc_start_handshake(sl_cql_conn_t *conn);

/* ---- TLS -------------------------------------------------------------------------------- */

/* The text of the newest OpenSSL error queue entry (the queue is cleared). */
static const char *cc_ssl_errstr(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        snprintf(buf, size, "no OpenSSL error detail");
    } else {
        ERR_error_string_n(e, buf, size);
    }
    ERR_clear_error();
    return buf;
}

/* Builds the connection's SSL_CTX. Returns 0, or -1 after failing it. */
static int cc_tls_ctx(sl_cql_conn_t *conn)
{
    char eb[160];
    conn->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (conn->ssl_ctx == NULL) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "TLS: SSL_CTX_new: %s", cc_ssl_errstr(eb, sizeof(eb)));
        return -1;
    }
    SSL_CTX *ctx = conn->ssl_ctx;
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* A server closing without close_notify reads as an end of stream. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = conn->tls_ca != NULL ? SSL_CTX_load_verify_locations(ctx, conn->tls_ca, NULL)
                                  : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        if (conn->tls_ca != NULL && access(conn->tls_ca, R_OK) != 0) {
            snprintf(eb, sizeof(eb), "%s", strerror(errno));
            ERR_clear_error();
        } else {
            cc_ssl_errstr(eb, sizeof(eb));
        }
        cc_fail(conn, SL_CQL_CONN_FAILED, "TLS: cannot load the CA certificates from %s: %s",
                conn->tls_ca ? conn->tls_ca : "the default paths", eb);
        return -1;
    }
    if (conn->tls_cert != NULL || conn->tls_key != NULL) {
        const char *cert = conn->tls_cert ? conn->tls_cert : conn->tls_key;
        const char *key = conn->tls_key ? conn->tls_key : conn->tls_cert;
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            cc_fail(conn, SL_CQL_CONN_FAILED, "TLS: cannot load the client certificate %s: %s",
                    cert, cc_ssl_errstr(eb, sizeof(eb)));
            return -1;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            cc_fail(conn, SL_CQL_CONN_FAILED,
                    "TLS: cannot use the client key %s with the certificate %s: %s", key, cert,
                    cc_ssl_errstr(eb, sizeof(eb)));
            return -1;
        }
    }
    return 0;
}

/* The socket under OpenSSL: its own BIO so that writes use send() with
 * MSG_NOSIGNAL like the plain path (OpenSSL's socket BIO uses write(), and a
 * peer that closed would raise SIGPIPE in the whole process). One method
 * for the process, made once; the fd is the BIO's data. */
static BIO_METHOD *cc_bio_method;
static pthread_once_t cc_bio_once = PTHREAD_ONCE_INIT;

static int cc_bio_write(BIO *b, const char *data, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do {
        n = send(fd, data, (size_t)len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        BIO_set_retry_write(b);
    }
    return (int)n;
}

static int cc_bio_read(BIO *b, char *data, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do {
        n = recv(fd, data, (size_t)len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        BIO_set_retry_read(b);
    }
    return (int)n;
}

static long cc_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing is buffered here */
}

static int cc_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void cc_bio_init(void)
{
    int type = BIO_get_new_index();
    BIO_METHOD *m =
        type < 0 ? NULL : BIO_meth_new(type | BIO_TYPE_SOURCE_SINK, "sluice cql socket");
    if (m != NULL &&
        (BIO_meth_set_write(m, cc_bio_write) != 1 || BIO_meth_set_read(m, cc_bio_read) != 1 ||
         BIO_meth_set_ctrl(m, cc_bio_ctrl) != 1 || BIO_meth_set_create(m, cc_bio_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    cc_bio_method = m;
}

static bool cc_is_ip(const char *name)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

static void cc_tls_handshake(sl_cql_conn_t *conn);

/* TCP is connected: starts the TLS handshake. */
static void cc_tls_start(sl_cql_conn_t *conn)
{
    char eb[160];
    const char *name = conn->tls_name ? conn->tls_name : conn->host;
    pthread_once(&cc_bio_once, cc_bio_init);
    conn->ssl = SSL_new(conn->ssl_ctx);
    BIO *bio = cc_bio_method != NULL ? BIO_new(cc_bio_method) : NULL;
    if (conn->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        cc_fail(conn, SL_CQL_CONN_FAILED, "TLS with %s:%d: %s", conn->host, conn->port,
                cc_ssl_errstr(eb, sizeof(eb)));
        return;
    }
    BIO_set_data(bio, (void *)(intptr_t)conn->fd);
    SSL_set_bio(conn->ssl, bio, bio); /* the SSL owns it now */
    bool ip = cc_is_ip(name);
    if (!ip && SSL_set_tlsext_host_name(conn->ssl, name) != 1) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "TLS with %s:%d: cannot set the SNI name %s: %s",
                conn->host, conn->port, name, cc_ssl_errstr(eb, sizeof(eb)));
        return;
    }
    if (conn->tls_verify_host) {
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), name)
                    : SSL_set1_host(conn->ssl, name);
        if (ok != 1) {
            cc_fail(conn, SL_CQL_CONN_FAILED,
                    "TLS with %s:%d: cannot set the expected certificate name %s: %s", conn->host,
                    conn->port, name, cc_ssl_errstr(eb, sizeof(eb)));
            return;
        }
    }
    SSL_set_connect_state(conn->ssl);
    conn->tls_hs = true;
    cc_tls_handshake(conn);
}

/* Fails the connection after a TLS error (SSL_get_error code err) with what
 * to check. */
static void cc_tls_failed(sl_cql_conn_t *conn, const char *during, int err)
{
    char eb[160];
    long vr = conn->ssl != NULL ? SSL_get_verify_result(conn->ssl) : X509_V_OK;
    const char *name = conn->tls_name ? conn->tls_name : conn->host;
    if (conn->tls_hs && vr != X509_V_OK) {
        ERR_clear_error();
        bool name_err = vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH;
        char hint[320];
        if (name_err) {
            snprintf(hint, sizeof(hint),
                     "the certificate does not name %s: set tls_server_name to a name it "
                     "carries, or turn tls_verify_host off",
                     name);
        } else {
            snprintf(hint, sizeof(hint),
                     "is the server's certificate signed by a CA in tls_ca_file %s?",
                     conn->tls_ca ? conn->tls_ca : "(unset: the system's default CAs)");
        }
        cc_fail(conn, SL_CQL_CONN_FAILED,
                "TLS handshake with %s:%d failed: certificate verification: %s (%s)", conn->host,
                conn->port, X509_verify_cert_error_string(vr), hint);
    } else if (!conn->tls_hs && conn->state == SL_CQL_CONN_HANDSHAKING) {
        /* TLS 1.3: the server checks the client's certificate after the
         * client's handshake is done, so its refusal shows on the first
         * read or write, as an alert or a reset */
        int e = errno;
        const char *what = err == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0
                               ? (e != 0 ? strerror(e) : "the server closed the connection")
                               : cc_ssl_errstr(eb, sizeof(eb));
        cc_fail(conn, SL_CQL_CONN_FAILED, "TLS %s with %s:%d failed: %s (%s)", during, conn->host,
                conn->port, what,
                conn->tls_cert != NULL
                    ? "did the server refuse the client certificate? it must be signed by a CA "
                      "the server trusts (tls_cert_file)"
                    : "does the server require a client certificate? set tls_cert_file and "
                      "tls_key_file");
    } else if (err == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        int e = errno;
        cc_fail(conn, SL_CQL_CONN_FAILED, "TLS %s with %s:%d failed: %s%s", during, conn->host,
                conn->port, e != 0 ? strerror(e) : "the server closed the connection",
                conn->tls_hs ? " (is TLS enabled on the server's native transport port?)" : "");
    } else if (err == SSL_ERROR_ZERO_RETURN) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "connection closed by the server%s",
                conn->tls_hs ? " during the TLS handshake" : "");
    } else {
        cc_fail(conn, SL_CQL_CONN_FAILED, "TLS %s with %s:%d failed: %s%s", during, conn->host,
                conn->port, cc_ssl_errstr(eb, sizeof(eb)),
                conn->tls_hs ? " (does the server speak TLS on this port?)" : "");
    }
}

/* Drives SSL_connect; on success starts the CQL handshake. */
static void cc_tls_handshake(sl_cql_conn_t *conn)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(conn->ssl);
    if (rc == 1) {
        conn->tls_hs = false;
        conn->last_io = conn->now;
        cc_start_handshake(conn);
        return;
    }
    int err = SSL_get_error(conn->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        conn->tls_want = POLLIN;
    } else if (err == SSL_ERROR_WANT_WRITE) {
        conn->tls_want = POLLOUT;
    } else {
        cc_tls_failed(conn, "handshake", err);
    }
}

/* After the TCP connect: TLS first when configured, else the CQL handshake. */
static void cc_connected(sl_cql_conn_t *conn)
{
    conn->last_io = conn->now;
    if (conn->tls) {
        cc_tls_start(conn);
    } else {
        cc_start_handshake(conn);
    }
}

sl_cql_conn_t *sl_cql_conn_create(const sl_cql_conn_opts_t *opts)
{
    sl_cql_conn_t *conn = sl_xcalloc(1, sizeof(*conn));
    conn->fd = -1;
    conn->state = SL_CQL_CONN_CONNECTING;
    conn->host = sl_xstrdup(opts->host ? opts->host : "127.0.0.1");
    conn->port = opts->port > 0 ? opts->port : CC_DEFAULT_PORT;
    conn->keyspace = opts->keyspace && opts->keyspace[0] ? sl_xstrdup(opts->keyspace) : NULL;
    conn->user = opts->user ? sl_xstrdup(opts->user) : NULL;
    conn->password = sl_xstrdup(opts->password ? opts->password : "");
    conn->connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : CC_DEFAULT_CONNECT_MS;
    conn->request_timeout_ms =
        opts->request_timeout_ms > 0 ? opts->request_timeout_ms : CC_DEFAULT_REQUEST_MS;
    conn->heartbeat_ms = opts->heartbeat_interval_ms == 0  ? CC_DEFAULT_HEARTBEAT_MS
                         : opts->heartbeat_interval_ms < 0 ? -1
                                                           : opts->heartbeat_interval_ms;
    conn->max_frame = opts->max_frame_bytes;
    conn->want_lz4 = opts->compression;
    int n = opts->max_inflight > 0 ? opts->max_inflight : CC_DEFAULT_INFLIGHT;
    conn->max_streams = (uint32_t)SL_MIN(n, SL_CQL_CONN_MAX_STREAMS);
    conn->n_words = (conn->max_streams + 63) / 64;
    conn->used = sl_xcalloc(conn->n_words, sizeof(uint64_t));
    conn->slots = sl_xcalloc(conn->max_streams, sizeof(cc_slot_t));
    conn->dl_head = conn->dl_tail = -1;
    conn->heartbeat_stream = -1;
    conn->on_event = opts->on_event;
    conn->on_state = opts->on_state;
    conn->cb_ctx = opts->cb_ctx;
    sl_arena_init(&conn->arena, 4096);
    conn->now = sl_now_ms();
    conn->last_io = conn->now;
    conn->handshake_deadline = conn->now + conn->connect_timeout_ms;
    conn->tls = opts->tls;
    conn->tls_verify_host = opts->tls_verify_host;
    conn->tls_ca = opts->tls_ca_file && opts->tls_ca_file[0] ? sl_xstrdup(opts->tls_ca_file) : NULL;
    conn->tls_cert =
        opts->tls_cert_file && opts->tls_cert_file[0] ? sl_xstrdup(opts->tls_cert_file) : NULL;
    conn->tls_key =
        opts->tls_key_file && opts->tls_key_file[0] ? sl_xstrdup(opts->tls_key_file) : NULL;
    conn->tls_name = opts->tls_server_name && opts->tls_server_name[0]
                         ? sl_xstrdup(opts->tls_server_name)
                         : NULL;
    if (conn->tls && cc_tls_ctx(conn) != 0) {
        return conn;
    }

    int rc = cc_connect(conn);
    if (rc == 1) {
        cc_connected(conn);
    }
    return conn;
}

static void cc_free(sl_cql_conn_t *conn)
{
    free(conn->host);
    free(conn->keyspace);
    free(conn->user);
    if (conn->password != NULL) {
        explicit_bzero(conn->password, strlen(conn->password));
        free(conn->password);
    }
    free(conn->used);
    free(conn->slots);
    sl_buf_free(&conn->out);
    sl_buf_free(&conn->in);
    sl_buf_free(&conn->zbuf);
    sl_buf_free(&conn->dbuf);
    sl_arena_free(&conn->arena);
    SSL_free(conn->ssl);
    SSL_CTX_free(conn->ssl_ctx);
    free(conn->tls_ca);
    free(conn->tls_cert);
    free(conn->tls_key);
    free(conn->tls_name);
    free(conn);
}

void sl_cql_conn_destroy(sl_cql_conn_t *conn)
{
    if (conn == NULL) {
        return;
    }
    if (conn->depth > 0) {
        /* From a callback: finish the work, free when the outer call returns. */
        conn->destroy_pending = true;
        cc_fail(conn, SL_CQL_CONN_CLOSED, "connection closed by the client");
        return;
    }
    conn->depth++;
    cc_fail(conn, SL_CQL_CONN_CLOSED, "connection closed by the client");
    conn->depth--;
    cc_free(conn);
}

sl_cql_conn_state_t sl_cql_conn_state(const sl_cql_conn_t *conn)
{
    return conn->state;
}

const char *sl_cql_conn_error(const sl_cql_conn_t *conn)
{
    return conn->state == SL_CQL_CONN_FAILED ? conn->err : "";
}

int sl_cql_conn_fd(const sl_cql_conn_t *conn)
{
    return conn->fd;
}

short sl_cql_conn_events(const sl_cql_conn_t *conn)
{
    if (conn->fd < 0) {
        return 0;
    }
    if (conn->state == SL_CQL_CONN_CONNECTING) {
        return conn->tls_hs ? conn->tls_want : POLLOUT;
    }
    bool out = (conn->out.len > conn->out_off && !conn->tls_wr_in) || conn->tls_rd_out;
    return (short)(POLLIN | (out ? POLLOUT : 0));
}

const char *sl_cql_conn_compression(const sl_cql_conn_t *conn)
{
    return conn->lz4_rx ? "lz4" : NULL;
}

void sl_cql_conn_stats(const sl_cql_conn_t *conn, sl_cql_conn_stats_t *out)
{
    *out = conn->st;
    out->inflight = conn->inflight;
    out->timed_out = conn->n_timed_out;
}

/* ---- Sending ---------------------------------------------------------------------------- */

/* Checks that the frame appended at out->data + start is one request frame
 * with the given stream id. */
static int cc_check_frame(const sl_buf_t *out, size_t start, int32_t stream)
{
    if (out->len - start < SL_CQL_HEADER_LEN) {
        return -1;
    }
    const uint8_t *p = (const uint8_t *)out->data + start;
    uint32_t len = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
    if (p[0] != SL_CQL_VERSION_REQUEST || ((p[2] << 8) | p[3]) != stream ||
        (size_t)len != out->len - start - SL_CQL_HEADER_LEN || len > SL_CQL_MAX_BODY_DEFAULT) {
        return -1;
    }
    return 0;
}

static void cc_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Replaces the body of the checked frame at out->data + start by its LZ4
 * form: the uncompressed length as a big-endian [int], then the LZ4 block;
 * sets the compression flag and the new length. Returns 0 or -1 (out is then
 * unchanged). */
static int cc_compress_frame(sl_cql_conn_t *conn, size_t start)
{
    size_t body_off = start + SL_CQL_HEADER_LEN;
    size_t blen = conn->out.len - body_off;
    int bound = LZ4_compressBound((int)blen);
    if (blen > (size_t)LZ4_MAX_INPUT_SIZE || bound <= 0) {
        return -1;
    }
    conn->zbuf.len = 0;
    sl_buf_reserve(&conn->zbuf, (size_t)bound);
    int n = LZ4_compress_default(conn->out.data + body_off, conn->zbuf.data, (int)blen, bound);
    if (n <= 0 || 4u + (size_t)n > SL_CQL_MAX_BODY_DEFAULT) {
        return -1;
    }
    uint8_t ulen[4];
    cc_put_be32(ulen, (uint32_t)blen);
    conn->out.len = body_off;
    sl_buf_append(&conn->out, ulen, sizeof(ulen));
    sl_buf_append(&conn->out, conn->zbuf.data, (size_t)n);
    uint8_t *h = (uint8_t *)conn->out.data + start;
    h[1] |= SL_CQL_FLAG_COMPRESSION;
    cc_put_be32(h + 5, 4u + (uint32_t)n);
    if (conn->zbuf.cap > CC_SCRATCH_KEEP) {
        sl_buf_free(&conn->zbuf);
    }
    return 0;
}

/* A request's deadline counts from when it is sent, not from the last
 * process call (an idle connection may not have been processed for long). */
/* Request deadlines are seconds away: the coarse clock is precise enough,
 * and a send is too frequent for a full clock read each (perf: 2% of the
 * sink's CPU). */
static void cc_refresh_now(sl_cql_conn_t *conn)
{
    int64_t now = sl_now_coarse_ms();
    if (now > conn->now) {
        conn->now = now;
    }
}

/* Queues a frame on a new stream. kind CC_KIND_USER gets the deadline list;
 * handshake steps are covered by the handshake deadline. */
static sl_cql_send_rc_t cc_send(sl_cql_conn_t *conn, cc_kind_t kind, sl_cql_conn_build_fn build,
                                void *arg, const uint8_t *frame, size_t frame_len,
                                sl_cql_conn_cb cb, void *ctx, const char **err)
{
    int32_t id = cc_stream_alloc(conn);
    if (id < 0) {
        return SL_CQL_SEND_AGAIN;
    }
    size_t start = conn->out.len;
    const char *berr = NULL;
    int rc;
    if (build != NULL) {
        rc = build(arg, &conn->out, (int16_t)id, &berr);
    } else {
        sl_buf_append(&conn->out, frame, frame_len);
        if (frame_len >= SL_CQL_HEADER_LEN) {
            conn->out.data[start + 2] = (char)(uint8_t)(id >> 8);
            conn->out.data[start + 3] = (char)(uint8_t)id;
        }
        rc = 0;
    }
    if (rc == 0 && cc_check_frame(&conn->out, start, id) != 0) {
        rc = -1;
        berr = "the request is not one whole v4 request frame";
    }
    if (rc == 0 && ((uint8_t)conn->out.data[start + 1] & SL_CQL_FLAG_COMPRESSION)) {
        rc = -1;
        berr = "the request frame is flagged compressed (the connection compresses)";
    }
    if (rc == 0 && conn->lz4_tx && cc_compress_frame(conn, start) != 0) {
        rc = -1;
        berr = "LZ4 compression of the request body failed";
    }
    if (rc != 0) {
        conn->out.len = start;
        if (conn->out.cap > 0) {
            conn->out.data[start] = '\0';
        }
        cc_stream_free(conn, id);
        if (err != NULL) {
            *err = berr ? berr : "the request builder failed";
        }
        return SL_CQL_SEND_INVALID;
    }
    cc_slot_t *s = &conn->slots[id];
    s->state = CC_SLOT_PENDING;
    s->kind = (uint8_t)kind;
    s->cb = cb;
    s->ctx = ctx;
    s->prev = s->next = -1;
    conn->out_queued += conn->out.len - start;
    s->end_off = conn->out_queued;
    conn->st.frames_sent++;
    if (kind == CC_KIND_USER || kind == CC_KIND_HEARTBEAT) {
        s->deadline = conn->now + conn->request_timeout_ms;
        cc_dl_push(conn, id);
    } else {
        s->deadline = conn->handshake_deadline;
    }
    return SL_CQL_SEND_OK;
}

sl_cql_send_rc_t sl_cql_conn_send(sl_cql_conn_t *conn, sl_cql_conn_build_fn build, void *arg,
                                  sl_cql_conn_cb cb, void *ctx, const char **err)
{
    if (conn->state != SL_CQL_CONN_READY) {
        return SL_CQL_SEND_DOWN;
    }
    cc_refresh_now(conn);
    return cc_send(conn, CC_KIND_USER, build, arg, NULL, 0, cb, ctx, err);
}

sl_cql_send_rc_t sl_cql_conn_send_frame(sl_cql_conn_t *conn, const uint8_t *frame, size_t len,
                                        sl_cql_conn_cb cb, void *ctx, const char **err)
{
    if (conn->state != SL_CQL_CONN_READY) {
        return SL_CQL_SEND_DOWN;
    }
    cc_refresh_now(conn);
    return cc_send(conn, CC_KIND_USER, NULL, NULL, frame, len, cb, ctx, err);
}

/* ---- Handshake -------------------------------------------------------------------------- */

static int cc_build_options(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    (void)arg;
    return sl_cql_req_options(out, stream, err);
}

static int cc_build_startup(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    return sl_cql_req_startup(out, stream, arg, err); /* arg: the compression or NULL */
}

/* Whether a SUPPORTED response lists "lz4" under COMPRESSION. */
static bool cc_offers_lz4(const sl_cql_response_t *r)
{
    for (size_t i = 0; i < r->n_supported; i++) {
        const sl_cql_strmap_entry_t *e = &r->supported[i];
        if (e->key == NULL || strcasecmp(e->key, "COMPRESSION") != 0) {
            continue;
        }
        for (size_t j = 0; j < e->n_values; j++) {
            if (e->values[j] != NULL && strcasecmp(e->values[j], "lz4") == 0) {
                return true;
            }
        }
    }
    return false;
}

static int cc_build_auth(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    sl_cql_conn_t *conn = arg;
    sl_buf_t token = SL_BUF_INIT;
    sl_cql_sasl_plain(&token, conn->user, conn->password);
    sl_cql_bytes_t t = {(const uint8_t *)token.data, (int32_t)token.len};
    int rc = sl_cql_req_auth_response(out, stream, t, err);
    if (token.data != NULL) {
        explicit_bzero(token.data, token.len);
    }
    sl_buf_free(&token);
    return rc;
}

static int cc_build_use(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    const char *ks = arg;
    sl_buf_t q = SL_BUF_INIT;
    sl_buf_puts(&q, "USE ");
    if (ks[0] == '"') {
        sl_buf_puts(&q, ks);
    } else {
        sl_buf_putc(&q, '"');
        for (const char *c = ks; *c; c++) {
            if (*c == '"') {
                sl_buf_putc(&q, '"');
            }
            sl_buf_putc(&q, *c);
        }
        sl_buf_putc(&q, '"');
    }
    sl_cql_params_t p = {.consistency = SL_CQL_ONE};
    int rc = sl_cql_req_query(out, stream, q.data, q.len, &p, err);
    sl_buf_free(&q);
    return rc;
}

static void cc_handshake_step(sl_cql_conn_t *conn, cc_kind_t kind, sl_cql_conn_build_fn build,
                              void *arg)
{
    const char *err = NULL;
    if (cc_send(conn, kind, build, arg, NULL, 0, NULL, NULL, &err) != SL_CQL_SEND_OK) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "handshake: cannot build request: %s",
                err ? err : "no stream id");
    }
}

static void cc_start_handshake(sl_cql_conn_t *conn)
{
    cc_set_state(conn, SL_CQL_CONN_HANDSHAKING);
    cc_handshake_step(conn, CC_KIND_OPTIONS, cc_build_options, NULL);
}

static void cc_after_auth(sl_cql_conn_t *conn)
{
    if (conn->keyspace != NULL) {
        cc_handshake_step(conn, CC_KIND_USE, cc_build_use, conn->keyspace);
    } else {
        cc_set_state(conn, SL_CQL_CONN_READY);
    }
}

/* A response to one of the connection's own requests. */
static void cc_internal_response(sl_cql_conn_t *conn, cc_kind_t kind, const sl_cql_frame_t *f)
{
    if (kind == CC_KIND_HEARTBEAT || kind == CC_KIND_USER) {
        return; /* any answer, even an ERROR, proves the connection alive */
    }
    sl_cql_response_t r;
    char derr[128];
    sl_arena_reset(&conn->arena);
    if (sl_cql_response_decode(f, &conn->arena, &r, derr, sizeof(derr)) != 0) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "bad %s response: %s",
                sl_cql_opcode_name(f->hdr.opcode) ? sl_cql_opcode_name(f->hdr.opcode) : "?", derr);
        return;
    }
    const char *step = kind == CC_KIND_OPTIONS   ? "OPTIONS"
                       : kind == CC_KIND_STARTUP ? "STARTUP"
                       : kind == CC_KIND_AUTH    ? "authentication"
                       : kind == CC_KIND_USE     ? "USE keyspace"
                                                 : "heartbeat";
    if (r.opcode == SL_CQL_OP_ERROR) {
        const char *name = sl_cql_error_name(r.error.code);
        cc_fail(conn, SL_CQL_CONN_FAILED, "%s failed: %s (%s 0x%04x)", step,
                r.error.message ? r.error.message : "", name ? name : "error",
                (unsigned)r.error.code);
        return;
    }
    switch (kind) {
    case CC_KIND_OPTIONS:
        if (r.opcode != SL_CQL_OP_SUPPORTED) {
            break;
        }
        if (conn->want_lz4 && cc_offers_lz4(&r)) {
            /* the response to the STARTUP may already be compressed */
            conn->lz4_rx = true;
            cc_handshake_step(conn, CC_KIND_STARTUP, cc_build_startup, (void *)"lz4");
        } else {
            cc_handshake_step(conn, CC_KIND_STARTUP, cc_build_startup, NULL);
        }
        return;
    case CC_KIND_STARTUP:
        if (r.opcode == SL_CQL_OP_READY || r.opcode == SL_CQL_OP_AUTHENTICATE) {
            conn->lz4_tx = conn->lz4_rx; /* STARTUP answered: compress from now on */
        }
        if (r.opcode == SL_CQL_OP_READY) {
            cc_after_auth(conn);
            return;
        }
        if (r.opcode != SL_CQL_OP_AUTHENTICATE) {
            break;
        }
        if (conn->user == NULL) {
            cc_fail(conn, SL_CQL_CONN_FAILED,
                    "the server requires authentication (%s) but no user is configured",
                    r.authenticator ? r.authenticator : "?");
            return;
        }
        cc_handshake_step(conn, CC_KIND_AUTH, cc_build_auth, conn);
        return;
    case CC_KIND_AUTH:
        if (r.opcode == SL_CQL_OP_AUTH_SUCCESS) {
            cc_after_auth(conn);
            return;
        }
        if (r.opcode == SL_CQL_OP_AUTH_CHALLENGE) {
            cc_fail(conn, SL_CQL_CONN_FAILED,
                    "authentication: unexpected AUTH_CHALLENGE (only SASL PLAIN is supported)");
            return;
        }
        break;
    case CC_KIND_USE:
        if (r.opcode != SL_CQL_OP_RESULT) {
            break;
        }
        cc_set_state(conn, SL_CQL_CONN_READY);
        return;
    case CC_KIND_HEARTBEAT:
    case CC_KIND_USER:
        return;
    }
    cc_fail(conn, SL_CQL_CONN_FAILED, "%s: unexpected %s response", step,
            sl_cql_opcode_name(r.opcode) ? sl_cql_opcode_name(r.opcode) : "?");
}

/* ---- Reading ---------------------------------------------------------------------------- */

/* Decompresses the LZ4 body of f into conn->dbuf and describes the result
 * in *plain (flag cleared). Returns 0, or -1 after failing the connection. */
static int cc_decompress(sl_cql_conn_t *conn, const sl_cql_frame_t *f, sl_cql_frame_t *plain)
{
    if (f->body_len < 4) {
        cc_fail(conn, SL_CQL_CONN_FAILED,
                "corrupt LZ4 frame on stream %d: a body of %zu bytes has no length", f->hdr.stream,
                f->body_len);
        return -1;
    }
    const uint8_t *b = f->body;
    uint32_t ulen = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    uint32_t max = conn->max_frame > 0 ? conn->max_frame : SL_CQL_MAX_BODY_DEFAULT;
    if (ulen > max || ulen > (uint32_t)LZ4_MAX_INPUT_SIZE) {
        cc_fail(conn, SL_CQL_CONN_FAILED,
                "LZ4 frame on stream %d declares %u uncompressed bytes, more than the %u allowed",
                f->hdr.stream, ulen, max);
        return -1;
    }
    conn->dbuf.len = 0;
    sl_buf_reserve(&conn->dbuf, (size_t)ulen + 1);
    int n = LZ4_decompress_safe((const char *)b + 4, conn->dbuf.data, (int)(f->body_len - 4),
                                (int)ulen);
    if (n < 0 || (uint32_t)n != ulen) {
        cc_fail(conn, SL_CQL_CONN_FAILED,
                "corrupt LZ4 frame on stream %d: %zu compressed bytes do not decompress to the "
                "declared %u bytes",
                f->hdr.stream, f->body_len - 4, ulen);
        return -1;
    }
    *plain = *f;
    plain->hdr.flags = (uint8_t)(f->hdr.flags & ~SL_CQL_FLAG_COMPRESSION);
    plain->hdr.length = ulen;
    plain->body = (const uint8_t *)conn->dbuf.data;
    plain->body_len = ulen;
    return 0;
}

static void cc_dispatch_plain(sl_cql_conn_t *conn, const sl_cql_frame_t *f);

static void cc_dispatch(sl_cql_conn_t *conn, const sl_cql_frame_t *f)
{
    conn->st.frames_received++;
    if (!(f->hdr.flags & SL_CQL_FLAG_COMPRESSION)) {
        cc_dispatch_plain(conn, f);
        return;
    }
    if (!conn->lz4_rx) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "compressed frame on stream %d, none negotiated",
                f->hdr.stream);
        return;
    }
    sl_cql_frame_t plain;
    if (cc_decompress(conn, f, &plain) != 0) {
        return;
    }
    cc_dispatch_plain(conn, &plain);
    if (conn->dbuf.cap > CC_SCRATCH_KEEP) {
        sl_buf_free(&conn->dbuf);
    }
}

/* Dispatches an uncompressed frame. */
static void cc_dispatch_plain(sl_cql_conn_t *conn, const sl_cql_frame_t *f)
{
    if (f->hdr.stream < 0) {
        if (f->hdr.opcode != SL_CQL_OP_EVENT) {
            cc_fail(conn, SL_CQL_CONN_FAILED, "%s frame on stream %d",
                    sl_cql_opcode_name(f->hdr.opcode), f->hdr.stream);
            return;
        }
        if (conn->on_event != NULL) {
            conn->on_event(conn->cb_ctx, f);
        }
        return;
    }
    int32_t id = f->hdr.stream;
    if ((uint32_t)id >= conn->max_streams || conn->slots[id].state == CC_SLOT_FREE) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "response on stream %d, which has no request", id);
        return;
    }
    cc_slot_t *s = &conn->slots[id];
    if (s->state == CC_SLOT_TIMED_OUT) {
        conn->st.late_responses++;
        cc_stream_free(conn, id);
        return;
    }
    cc_kind_t kind = (cc_kind_t)s->kind;
    sl_cql_conn_cb cb = s->cb;
    void *ctx = s->ctx;
    if (kind == CC_KIND_USER || kind == CC_KIND_HEARTBEAT) {
        cc_dl_remove(conn, id);
    }
    if (kind == CC_KIND_HEARTBEAT) {
        conn->heartbeat_stream = -1;
    }
    cc_stream_free(conn, id);
    if (kind == CC_KIND_USER) {
        if (cb != NULL) {
            cb(ctx, SL_CQL_REQ_OK, f, NULL);
        }
        return;
    }
    cc_internal_response(conn, kind, f);
}

/* Parses and dispatches every whole frame in the input buffer. */
static void cc_parse(sl_cql_conn_t *conn)
{
    while (conn->state == SL_CQL_CONN_HANDSHAKING || conn->state == SL_CQL_CONN_READY) {
        sl_cql_frame_t f;
        size_t used = 0;
        sl_cql_parse_status_t ps = sl_cql_frame_parse_ex(
            (const uint8_t *)conn->in.data + conn->in_off, conn->in.len - conn->in_off,
            SL_CQL_VERSION_RESPONSE, conn->max_frame, &f, &used);
        if (ps == SL_CQL_PARSE_NEED_MORE) {
            break;
        }
        if (ps == SL_CQL_PARSE_ERROR) {
            uint8_t v = (uint8_t)conn->in.data[conn->in_off];
            if (v >= 0x81 && v < SL_CQL_VERSION_RESPONSE) {
                /* a server that does not speak v4 answers in its own version
                 * (spec section 1 / Cassandra 2.1 and older) */
                cc_fail(conn, SL_CQL_CONN_FAILED,
                        "the server speaks CQL native protocol v%d at most; Sluice speaks v4: "
                        "it needs Cassandra 2.2 or later (or a compatible server)",
                        v & 0x7f);
                return;
            }
            cc_fail(conn, SL_CQL_CONN_FAILED, "malformed response: %s", f.err);
            return;
        }
        conn->in_off += used;
        cc_dispatch(conn, &f);
    }
    if (conn->state != SL_CQL_CONN_HANDSHAKING && conn->state != SL_CQL_CONN_READY) {
        return; /* failed or closed meanwhile: the buffers are empty */
    }
    if (conn->in_off == conn->in.len) {
        conn->in.len = 0;
        conn->in_off = 0;
    } else if (conn->in_off > 0) {
        memmove(conn->in.data, conn->in.data + conn->in_off, conn->in.len - conn->in_off);
        conn->in.len -= conn->in_off;
        conn->in_off = 0;
    }
}

/* The end of the stream (n == 0 from recv, or TLS close): what arrived
 * before still counts. */
static void cc_eof(sl_cql_conn_t *conn)
{
    size_t partial = conn->in.len - conn->in_off;
    cc_parse(conn);
    if (partial > 0 && conn->state != SL_CQL_CONN_FAILED) {
        cc_fail(conn, SL_CQL_CONN_FAILED,
                "connection closed by the server inside a frame (%zu bytes of it)",
                conn->in.len - conn->in_off);
    } else {
        cc_fail(conn, SL_CQL_CONN_FAILED, "connection closed by the server");
    }
}

/* Reads with SSL_read: one TLS record at most per call, so it reads until
 * OpenSSL wants more from the socket; data it still holds when the call
 * limit is reached makes sl_cql_conn_next_timeout_ms() return now. */
static void cc_read_tls(sl_cql_conn_t *conn)
{
    conn->tls_rd_out = false;
    for (int i = 0; i < CC_MAX_READS_PER_CALL * 4; i++) {
        sl_buf_reserve(&conn->in, CC_READ_CHUNK);
        size_t room = conn->in.cap - conn->in.len - 1;
        ERR_clear_error();
        errno = 0;
        int n =
            SSL_read(conn->ssl, conn->in.data + conn->in.len, (int)SL_MIN(room, (size_t)INT_MAX));
        if (n > 0) {
            conn->in.len += (size_t)n;
            conn->st.read_calls++;
            conn->st.bytes_received += (uint64_t)n;
            conn->last_io = conn->now;
            continue;
        }
        int err = SSL_get_error(conn->ssl, n);
        if (err == SSL_ERROR_WANT_READ) {
            break;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            conn->tls_rd_out = true;
            break;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            cc_eof(conn);
            return;
        }
        cc_tls_failed(conn, "read", err);
        return;
    }
    cc_parse(conn);
}

static void cc_read(sl_cql_conn_t *conn)
{
    if (conn->ssl != NULL) {
        cc_read_tls(conn);
        return;
    }
    for (int i = 0; i < CC_MAX_READS_PER_CALL; i++) {
        sl_buf_reserve(&conn->in, CC_READ_CHUNK);
        size_t room = conn->in.cap - conn->in.len - 1;
        ssize_t n = recv(conn->fd, conn->in.data + conn->in.len, room, 0);
        if (n > 0) {
            conn->in.len += (size_t)n;
            conn->st.read_calls++;
            conn->st.bytes_received += (uint64_t)n;
            conn->last_io = conn->now;
            if ((size_t)n < room) {
                break; /* drained for now */
            }
            continue;
        }
        if (n == 0) {
            cc_eof(conn);
            return;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        }
        cc_fail(conn, SL_CQL_CONN_FAILED, "recv from %s:%d: %s", conn->host, conn->port,
                strerror(errno));
        return;
    }
    cc_parse(conn);
}

/* ---- Writing ---------------------------------------------------------------------------- */

/* One SSL_write of the unwritten output. After WANT_READ/WANT_WRITE the
 * same length is written again (the bytes from out_off do not change; the
 * buffer may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). Returns the bytes
 * written, 0 to wait for the socket, -1 after failing the connection. */
static ssize_t cc_write_tls(sl_cql_conn_t *conn)
{
    size_t left = conn->out.len - conn->out_off;
    int len = conn->tls_wlen > 0 ? conn->tls_wlen : (int)SL_MIN(left, (size_t)(1u << 30));
    ERR_clear_error();
    errno = 0;
    int n = SSL_write(conn->ssl, conn->out.data + conn->out_off, len);
    conn->tls_wr_in = false;
    if (n > 0) {
        conn->tls_wlen = 0;
        return n;
    }
    int err = SSL_get_error(conn->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        conn->tls_wlen = len;
        conn->tls_wr_in = err == SSL_ERROR_WANT_READ;
        return 0;
    }
    cc_tls_failed(conn, "write", err);
    return -1;
}

static void cc_write(sl_cql_conn_t *conn)
{
    while (conn->ssl != NULL && conn->out.len > conn->out_off) {
        ssize_t n = cc_write_tls(conn);
        if (n < 0) {
            return;
        }
        if (n == 0) {
            break;
        }
        conn->out_off += (size_t)n;
        conn->out_written += (uint64_t)n;
        conn->st.write_calls++;
        conn->st.bytes_sent += (uint64_t)n;
        conn->last_io = conn->now;
    }
    while (conn->ssl == NULL && conn->out.len > conn->out_off) {
        ssize_t n = send(conn->fd, conn->out.data + conn->out_off, conn->out.len - conn->out_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            conn->out_off += (size_t)n;
            conn->out_written += (uint64_t)n;
            conn->st.write_calls++;
            conn->st.bytes_sent += (uint64_t)n;
            conn->last_io = conn->now;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        cc_fail(conn, SL_CQL_CONN_FAILED, "send to %s:%d: %s", conn->host, conn->port,
                n < 0 ? strerror(errno) : "wrote nothing");
        return;
    }
    if (conn->out_off == conn->out.len) {
        conn->out.len = 0;
        conn->out_off = 0;
        if (conn->out.cap > 0) {
            conn->out.data[0] = '\0';
        }
    } else if (conn->out_off > conn->out.len / 2) {
        memmove(conn->out.data, conn->out.data + conn->out_off, conn->out.len - conn->out_off);
        conn->out.len -= conn->out_off;
        conn->out_off = 0;
        conn->out.data[conn->out.len] = '\0';
    }
}

/* ---- Timers ----------------------------------------------------------------------------- */

static void cc_timers(sl_cql_conn_t *conn)
{
    if ((conn->state == SL_CQL_CONN_CONNECTING || conn->state == SL_CQL_CONN_HANDSHAKING) &&
        conn->now >= conn->handshake_deadline) {
        cc_fail(conn, SL_CQL_CONN_FAILED, "%s %s:%d timed out after %d ms",
                conn->tls_hs                            ? "TLS handshake with"
                : conn->state == SL_CQL_CONN_CONNECTING ? "connect to"
                                                        : "handshake with",
                conn->host, conn->port, conn->connect_timeout_ms);
        return;
    }
    while (conn->dl_head >= 0 && conn->slots[conn->dl_head].deadline <= conn->now) {
        int32_t id = conn->dl_head;
        cc_slot_t *s = &conn->slots[id];
        cc_dl_remove(conn, id);
        if (s->kind == CC_KIND_HEARTBEAT) {
            cc_fail(conn, SL_CQL_CONN_FAILED, "no heartbeat response from %s:%d within %d ms",
                    conn->host, conn->port, conn->request_timeout_ms);
            return;
        }
        s->state = CC_SLOT_TIMED_OUT;
        conn->n_timed_out++;
        conn->st.timeouts++;
        /* Always maybe applied: a frame not (fully) written yet stays in the
         * output buffer and still reaches the server once the socket drains. */
        sl_cql_conn_err_t e = {
            .code = SL_CQL_REQ_TIMEOUT,
            .retriable = true,
            .fatal = false,
            .maybe_applied = true,
            .msg = "no response within the request timeout",
        };
        sl_cql_conn_cb cb = s->cb;
        void *ctx = s->ctx;
        s->cb = NULL;
        s->ctx = NULL;
        if (cb != NULL) {
            cb(ctx, SL_CQL_REQ_TIMEOUT, NULL, &e);
        }
        if (conn->state != SL_CQL_CONN_READY) {
            return;
        }
        if (conn->n_timed_out == conn->max_streams) {
            cc_fail(conn, SL_CQL_CONN_FAILED,
                    "every stream id (%u) is held by a request that timed out on %s:%d",
                    conn->max_streams, conn->host, conn->port);
            return;
        }
    }
    if (conn->state == SL_CQL_CONN_READY && conn->heartbeat_ms > 0 && conn->heartbeat_stream < 0 &&
        conn->now - conn->last_io >= conn->heartbeat_ms) {
        if (cc_send(conn, CC_KIND_HEARTBEAT, cc_build_options, NULL, NULL, 0, NULL, NULL, NULL) ==
            SL_CQL_SEND_OK) {
            conn->heartbeat_stream = conn->dl_tail;
            conn->st.heartbeats++;
        }
    }
}

int64_t sl_cql_conn_next_timeout_ms(const sl_cql_conn_t *conn)
{
    switch (conn->state) {
    case SL_CQL_CONN_CONNECTING:
    case SL_CQL_CONN_HANDSHAKING:
        return conn->handshake_deadline;
    case SL_CQL_CONN_READY:
        break;
    default:
        return -1;
    }
    if (conn->ssl != NULL && SSL_pending(conn->ssl) > 0) {
        return conn->now; /* decrypted input poll cannot see */
    }
    int64_t t = -1;
    if (conn->dl_head >= 0) {
        t = conn->slots[conn->dl_head].deadline;
    }
    if (conn->heartbeat_ms > 0 && conn->heartbeat_stream < 0 &&
        conn->inflight < conn->max_streams) {
        int64_t hb = conn->last_io + conn->heartbeat_ms;
        if (t < 0 || hb < t) {
            t = hb;
        }
    }
    return t;
}

/* ---- The loop hook ---------------------------------------------------------------------- */

void sl_cql_conn_process(sl_cql_conn_t *conn, short revents, int64_t now_ms)
{
    if (conn->destroy_pending) {
        return;
    }
    conn->depth++;
    if (now_ms > conn->now) {
        conn->now = now_ms;
    }
    if (conn->state == SL_CQL_CONN_CONNECTING && !conn->tls_hs &&
        (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            cc_fail(conn, SL_CQL_CONN_FAILED, "connect to %s:%d: %s", conn->host, conn->port,
                    strerror(soerr));
        } else {
            cc_connected(conn);
        }
    } else if (conn->state == SL_CQL_CONN_CONNECTING && conn->tls_hs &&
               (revents & (POLLIN | POLLOUT | POLLHUP | POLLERR))) {
        cc_tls_handshake(conn);
    } else if ((conn->state == SL_CQL_CONN_HANDSHAKING || conn->state == SL_CQL_CONN_READY) &&
               ((revents & (POLLIN | POLLHUP | POLLERR)) ||
                (conn->tls_rd_out && (revents & POLLOUT)) ||
                (conn->ssl != NULL && SSL_pending(conn->ssl) > 0))) {
        cc_read(conn);
    }
    cc_timers(conn);
    if ((conn->state == SL_CQL_CONN_HANDSHAKING || conn->state == SL_CQL_CONN_READY) &&
        conn->out.len > conn->out_off) {
        cc_write(conn);
    }
    conn->depth--;
    if (conn->depth == 0 && conn->destroy_pending) {
        cc_free(conn);
    }
}
