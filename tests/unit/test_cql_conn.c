/* sl_cql_conn against a scripted CQL server living in the test: a loopback
 * listening socket whose accepted side the test drives between calls to the
 * client, in the same thread. Response frames are written by hand from
 * native_protocol_v4.spec; request frames are parsed by hand here, so the
 * expected bytes do not come from the code under test. */
#include <errno.h>
#include <lz4.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cql/conn.h"
#include "cql/result.h"
#include "test.h"
#include "util/buf.h"

/* ---- Test clock: real time plus a skew the tests advance ----------------------------- */

static int64_t g_skew;

static int64_t tnow(void)
{
    return sl_now_ms() + g_skew;
}

/* ---- The scripted server -------------------------------------------------------------- */

typedef struct srv {
    int lfd, fd, port;
    sl_buf_t in;
    size_t off;
    int reads; /* successful recv() calls */
} srv_t;

typedef struct rq {
    uint8_t version, flags, opcode;
    int16_t stream;
    uint32_t len;
    const uint8_t *body; /* into srv->in, valid until the next read */
} rq_t;

static void srv_listen(srv_t *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->lfd, 8) != 0) {
        sl_fatal("listen: %s", strerror(errno));
    }
    socklen_t al = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
}

static void srv_close_conn(srv_t *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

static void srv_free(srv_t *s)
{
    srv_close_conn(s);
    close(s->lfd);
    sl_buf_free(&s->in);
}

/* One turn of the client's loop: poll its fd for up to ms, then process. */
static void pump(sl_cql_conn_t *c, int ms)
{
    struct pollfd p = {.fd = sl_cql_conn_fd(c), .events = sl_cql_conn_events(c)};
    short rev = 0;
    if (p.fd >= 0 && poll(&p, 1, ms) > 0) {
        rev = p.revents;
    }
    sl_cql_conn_process(c, rev, tnow());
}

/* Runs the client until its state is st or 3 s have passed. */
static bool pump_until_state(sl_cql_conn_t *c, sl_cql_conn_state_t st)
{
    int64_t end = sl_now_ms() + 3000;
    while (sl_cql_conn_state(c) != st && sl_now_ms() < end) {
        pump(c, 5);
    }
    return sl_cql_conn_state(c) == st;
}

static bool srv_accept(srv_t *s, sl_cql_conn_t *c)
{
    int64_t end = sl_now_ms() + 3000;
    while (sl_now_ms() < end) {
        pump(c, 0);
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 5) > 0) {
            s->fd = accept(s->lfd, NULL, NULL);
            return s->fd >= 0;
        }
    }
    return false;
}

/* Returns the next request frame the client sent, running the client while
 * waiting (3 s at most); false on timeout or EOF. */
static bool srv_next(srv_t *s, sl_cql_conn_t *c, rq_t *r)
{
    int64_t end = sl_now_ms() + 3000;
    for (;;) {
        size_t avail = s->in.len - s->off;
        if (avail >= 9) {
            const uint8_t *p = (const uint8_t *)s->in.data + s->off;
            uint32_t len = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
            if (avail >= 9 + (size_t)len) {
                r->version = p[0];
                r->flags = p[1];
                r->stream = (int16_t)(p[2] << 8 | p[3]);
                r->opcode = p[4];
                r->len = len;
                r->body = p + 9;
                s->off += 9 + len;
                return true;
            }
        }
        if (sl_now_ms() > end) {
            return false;
        }
        if (c != NULL) {
            pump(c, 0);
        }
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        if (poll(&pf, 1, 5) <= 0) {
            continue;
        }
        if (s->off == s->in.len) {
            s->in.len = 0;
            s->off = 0;
        }
        sl_buf_reserve(&s->in, 1 << 16);
        ssize_t n = recv(s->fd, s->in.data + s->in.len, s->in.cap - s->in.len - 1, 0);
        if (n <= 0) {
            return false;
        }
        s->in.len += (size_t)n;
        s->reads++;
    }
}

static void srv_write(srv_t *s, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(s->fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) {
            sl_fatal("server send: %s", strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
}

/* Appends a response frame: version 0x84, flags 0, stream, opcode, length. */
static void frame(sl_buf_t *b, int16_t stream, uint8_t opcode, const sl_buf_t *body)
{
    uint32_t len = body ? (uint32_t)body->len : 0;
    uint8_t h[9] = {0x84,
                    0,
                    (uint8_t)((uint16_t)stream >> 8),
                    (uint8_t)stream,
                    opcode,
                    (uint8_t)(len >> 24),
                    (uint8_t)(len >> 16),
                    (uint8_t)(len >> 8),
                    (uint8_t)len};
    sl_buf_append(b, h, 9);
    if (len > 0) {
        sl_buf_append(b, body->data, len);
    }
}

static void reply(srv_t *s, int16_t stream, uint8_t opcode, const sl_buf_t *body)
{
    sl_buf_t b = SL_BUF_INIT;
    frame(&b, stream, opcode, body);
    srv_write(s, b.data, b.len);
    sl_buf_free(&b);
}

/* Body helpers: [short], [int], [string]. */
static void b_short(sl_buf_t *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    sl_buf_append(b, x, 2);
}

static void b_int(sl_buf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    sl_buf_append(b, x, 4);
}

static void b_str(sl_buf_t *b, const char *s)
{
    b_short(b, (uint16_t)strlen(s));
    sl_buf_puts(b, s);
}

static void reply_supported(srv_t *s, int16_t stream)
{
    sl_buf_t b = SL_BUF_INIT; /* [string multimap] {CQL_VERSION: [3.0.0]} */
    b_short(&b, 1);
    b_str(&b, "CQL_VERSION");
    b_short(&b, 1);
    b_str(&b, "3.0.0");
    reply(s, stream, 0x06, &b);
    sl_buf_free(&b);
}

static void reply_void(srv_t *s, int16_t stream)
{
    sl_buf_t b = SL_BUF_INIT;
    b_int(&b, 1); /* RESULT kind Void */
    reply(s, stream, 0x08, &b);
    sl_buf_free(&b);
}

static void reply_error(srv_t *s, int16_t stream, uint32_t code, const char *msg)
{
    sl_buf_t b = SL_BUF_INIT;
    b_int(&b, code);
    b_str(&b, msg);
    reply(s, stream, 0x00, &b);
    sl_buf_free(&b);
}

/* The STARTUP body: [string map] {CQL_VERSION: 3.0.0}. */
static const uint8_t k_startup_body[] = {0x00, 0x01, 0x00, 0x0b, 'C', 'Q', 'L', '_',
                                         'V',  'E',  'R',  'S',  'I', 'O', 'N', 0x00,
                                         0x05, '3',  '.',  '0',  '.', '0'};

/* ---- Client-side recording ------------------------------------------------------------ */

typedef struct rec {
    int calls;
    sl_cql_req_status_t status;
    int16_t stream; /* of the response */
    uint8_t opcode;
    bool retriable, maybe_applied;
    int expect_stream;
    uint8_t flags;       /* of the response */
    size_t body_len;     /* of the response */
    int32_t result_kind; /* RESULT: the first [int] of the body, else -1 */
} rec_t;

static void rec_cb(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *f,
                   const sl_cql_conn_err_t *err)
{
    rec_t *r = ctx;
    r->calls++;
    r->status = status;
    if (f != NULL) {
        r->stream = f->hdr.stream;
        r->opcode = f->hdr.opcode;
        r->flags = f->hdr.flags;
        r->body_len = f->body_len;
        r->result_kind = -1;
        if (f->hdr.opcode == 0x08 && f->body_len >= 4) {
            const uint8_t *p = f->body;
            r->result_kind =
                (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        }
    } else {
        r->retriable = err->retriable;
        r->maybe_applied = err->maybe_applied;
    }
}

typedef struct qarg {
    const char *cql;
} qarg_t;

static int build_query(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    qarg_t *q = arg;
    sl_cql_params_t p = {.consistency = SL_CQL_ONE};
    return sl_cql_req_query(out, stream, q->cql, strlen(q->cql), &p, err);
}

static int build_broken(void *arg, sl_buf_t *out, int16_t stream, const char **err)
{
    (void)arg;
    (void)stream;
    (void)err;
    sl_buf_puts(out, "junk"); /* "succeeds" without a frame */
    return 0;
}

static sl_cql_conn_t *client(const srv_t *s, sl_cql_conn_opts_t *o)
{
    o->host = "127.0.0.1";
    o->port = s->port;
    return sl_cql_conn_create(o);
}

/* Answers OPTIONS and STARTUP (READY): the plain handshake. */
static bool srv_handshake(srv_t *s, sl_cql_conn_t *c)
{
    rq_t r;
    if (!srv_accept(s, c) || !srv_next(s, c, &r) || r.opcode != 0x05 || r.len != 0) {
        return false;
    }
    reply_supported(s, r.stream);
    if (!srv_next(s, c, &r) || r.opcode != 0x01 || r.len != sizeof(k_startup_body) ||
        memcmp(r.body, k_startup_body, r.len) != 0) {
        return false;
    }
    reply(s, r.stream, 0x02, NULL);
    return pump_until_state(c, SL_CQL_CONN_READY);
}

/* Sends QUERY cql with a recorder; returns the send code. */
static sl_cql_send_rc_t send_q(sl_cql_conn_t *c, qarg_t *q, rec_t *r)
{
    return sl_cql_conn_send(c, build_query, q, rec_cb, r, NULL);
}

/* ---- Tests ---------------------------------------------------------------------------- */

typedef struct states {
    sl_cql_conn_state_t seen[8];
    int n;
} states_t;

static void on_state(void *ctx, sl_cql_conn_state_t st, const char *err)
{
    states_t *s = ctx;
    (void)err;
    if (s->n < 8) {
        s->seen[s->n++] = st;
    }
}

TEST(handshake_plain)
{
    srv_t s;
    srv_listen(&s);
    states_t st = {0};
    sl_cql_conn_opts_t o = {.on_state = on_state, .cb_ctx = &st};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(sl_cql_conn_fd(c) >= 0);
    CHECK(srv_handshake(&s, c));
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_READY);
    CHECK_STR(sl_cql_conn_error(c), "");
    CHECK_INT(st.n, 2);
    CHECK_INT(st.seen[0], SL_CQL_CONN_HANDSHAKING);
    CHECK_INT(st.seen[1], SL_CQL_CONN_READY);
    sl_cql_conn_stats_t stats;
    sl_cql_conn_stats(c, &stats);
    CHECK_INT(stats.inflight, 0);
    sl_cql_conn_destroy(c);
    CHECK_INT(st.seen[st.n - 1], SL_CQL_CONN_CLOSED);
    sl_cql_conn_destroy(NULL);
    srv_free(&s);
}

static void auth_script(bool good)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.user = "user", .password = "password"};
    sl_cql_conn_t *c = client(&s, &o);
    rq_t r;
    CHECK(srv_accept(&s, c));
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x05);
    reply_supported(&s, r.stream);
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x01);
    sl_buf_t b = SL_BUF_INIT;
    b_str(&b, "org.apache.cassandra.auth.PasswordAuthenticator");
    reply(&s, r.stream, 0x03, &b); /* AUTHENTICATE */
    sl_buf_free(&b);
    CHECK(srv_next(&s, c, &r));
    CHECK_INT(r.opcode, 0x0F); /* AUTH_RESPONSE */
    /* [bytes] of "\0user\0password" (RFC 4616). */
    static const uint8_t tok[] = {0, 0,   0,   14,  0,   'u', 's', 'e', 'r',
                                  0, 'p', 'a', 's', 's', 'w', 'o', 'r', 'd'};
    CHECK_INT(r.len, sizeof(tok));
    CHECK(r.len == sizeof(tok) && memcmp(r.body, tok, sizeof(tok)) == 0);
    if (good) {
        b_int(&b, 0xffffffffu); /* AUTH_SUCCESS with a null token */
        reply(&s, r.stream, 0x10, &b);
        sl_buf_free(&b);
        CHECK(pump_until_state(c, SL_CQL_CONN_READY));
    } else {
        reply_error(&s, r.stream, 0x0100, "Provided username user and/or password are incorrect");
        CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
        CHECK_CONTAINS(sl_cql_conn_error(c),
                       "Provided username user and/or password are incorrect");
        CHECK_CONTAINS(sl_cql_conn_error(c), "authentication");
        CHECK_INT(sl_cql_conn_fd(c), -1);
        CHECK_INT(sl_cql_conn_events(c), 0);
        qarg_t q = {"SELECT 1"};
        rec_t rr = {0};
        CHECK_INT(send_q(c, &q, &rr), SL_CQL_SEND_DOWN);
    }
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

TEST(handshake_auth)
{
    auth_script(true);
}

TEST(handshake_auth_bad_credentials)
{
    auth_script(false);
}

TEST(handshake_auth_required_without_user)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {0};
    sl_cql_conn_t *c = client(&s, &o);
    rq_t r;
    CHECK(srv_accept(&s, c));
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x05);
    reply_supported(&s, r.stream);
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x01);
    sl_buf_t b = SL_BUF_INIT;
    b_str(&b, "org.apache.cassandra.auth.PasswordAuthenticator");
    reply(&s, r.stream, 0x03, &b);
    sl_buf_free(&b);
    CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
    CHECK_CONTAINS(sl_cql_conn_error(c), "requires authentication");
    CHECK_CONTAINS(sl_cql_conn_error(c), "PasswordAuthenticator");
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

static void use_script(bool good)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.keyspace = "Sluice_ks"};
    sl_cql_conn_t *c = client(&s, &o);
    rq_t r;
    CHECK(srv_accept(&s, c));
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x05);
    reply_supported(&s, r.stream);
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x01);
    reply(&s, r.stream, 0x02, NULL);
    CHECK(srv_next(&s, c, &r));
    CHECK_INT(r.opcode, 0x07);
    /* <query: long string><consistency ONE><flags 0> */
    static const char q[] = "USE \"Sluice_ks\"";
    sl_buf_t want = SL_BUF_INIT;
    b_int(&want, (uint32_t)strlen(q));
    sl_buf_puts(&want, q);
    b_short(&want, 0x0001);
    sl_buf_putc(&want, 0);
    CHECK(r.len == want.len && memcmp(r.body, want.data, want.len) == 0);
    sl_buf_free(&want);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_HANDSHAKING);
    if (good) {
        sl_buf_t b = SL_BUF_INIT;
        b_int(&b, 3); /* Set_keyspace */
        b_str(&b, "Sluice_ks");
        reply(&s, r.stream, 0x08, &b);
        sl_buf_free(&b);
        CHECK(pump_until_state(c, SL_CQL_CONN_READY));
    } else {
        reply_error(&s, r.stream, 0x2200, "Keyspace 'Sluice_ks' does not exist");
        CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
        CHECK_CONTAINS(sl_cql_conn_error(c), "USE");
        CHECK_CONTAINS(sl_cql_conn_error(c), "does not exist");
    }
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

TEST(use_keyspace)
{
    use_script(true);
}

TEST(use_keyspace_error)
{
    use_script(false);
}

TEST(pipelined_out_of_order)
{
    enum { N = 1000 };
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.max_inflight = 2048};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    int reads_before = s.reads;
    sl_cql_conn_stats_t st0, st1;
    sl_cql_conn_stats(c, &st0);

    static char texts[N][32];
    static qarg_t qs[N];
    static rec_t recs[N];
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof(texts[i]), "SELECT %d", i);
        qs[i].cql = texts[i];
        recs[i].expect_stream = -1;
        CHECK_INT(send_q(c, &qs[i], &recs[i]), SL_CQL_SEND_OK);
    }
    /* Nothing leaves before the loop runs: all 1000 wait in one buffer. */
    CHECK(sl_cql_conn_events(c) & POLLOUT);
    pump(c, 0);
    sl_cql_conn_stats(c, &st1);
    CHECK(st1.write_calls - st0.write_calls <= 3);
    CHECK_INT(st1.frames_sent - st0.frames_sent, N);

    /* The server sees every query once, each with a distinct stream. */
    static int16_t stream_of[N];
    static bool seen_stream[32768];
    memset(seen_stream, 0, sizeof(seen_stream));
    int got = 0;
    for (int i = 0; i < N; i++) {
        rq_t r;
        if (!srv_next(&s, c, &r)) {
            break;
        }
        CHECK_INT(r.opcode, 0x07);
        uint32_t ql = (uint32_t)r.body[0] << 24 | (uint32_t)r.body[1] << 16 |
                      (uint32_t)r.body[2] << 8 | r.body[3];
        char num[16] = {0};
        memcpy(num, r.body + 4 + 7, SL_MIN(ql - 7, sizeof(num) - 1)); /* "SELECT " */
        int idx = atoi(num);
        CHECK(idx >= 0 && idx < N);
        CHECK(r.stream >= 0 && !seen_stream[r.stream]);
        seen_stream[r.stream] = true;
        stream_of[idx] = r.stream;
        recs[idx].expect_stream = r.stream;
        got++;
    }
    CHECK_INT(got, N);
    /* Coalescing: 1000 frames arrive in a handful of reads. */
    CHECK(s.reads - reads_before <= 20);

    /* Answer in a shuffled order, in odd-sized chunks that split frames. */
    static int order[N];
    for (int i = 0; i < N; i++) {
        order[i] = i;
    }
    uint32_t seed = 12345;
    for (int i = N - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        int j = (int)((seed >> 8) % (uint32_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    sl_buf_t all = SL_BUF_INIT;
    for (int i = 0; i < N; i++) {
        sl_buf_t body = SL_BUF_INIT;
        b_int(&body, 1);
        frame(&all, stream_of[order[i]], 0x08, &body);
        sl_buf_free(&body);
    }
    size_t off = 0, chunk = 7;
    while (off < all.len) {
        size_t n = SL_MIN(chunk, all.len - off);
        srv_write(&s, all.data + off, n);
        off += n;
        chunk = chunk * 3 % 1009 + 1;
        pump(c, 0);
    }
    sl_buf_free(&all);
    int64_t end = sl_now_ms() + 3000;
    int done = 0;
    while (sl_now_ms() < end) {
        done = 0;
        for (int i = 0; i < N; i++) {
            done += recs[i].calls > 0;
        }
        if (done == N) {
            break;
        }
        pump(c, 5);
    }
    CHECK_INT(done, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        bad += recs[i].calls != 1 || recs[i].status != SL_CQL_REQ_OK ||
               recs[i].stream != recs[i].expect_stream || recs[i].opcode != 0x08;
    }
    CHECK_INT(bad, 0);
    sl_cql_conn_stats(c, &st1);
    CHECK_INT(st1.inflight, 0);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_READY);
    sl_cql_conn_destroy(c);
    for (int i = 0; i < N; i++) {
        CHECK_INT(recs[i].calls, 1); /* destroy fired nothing more */
    }
    srv_free(&s);
}

TEST(stream_exhaustion_backpressure)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.max_inflight = 4};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"SELECT 1"};
    rec_t r[6] = {0};
    for (int i = 0; i < 4; i++) {
        CHECK_INT(send_q(c, &q, &r[i]), SL_CQL_SEND_OK);
    }
    CHECK_INT(send_q(c, &q, &r[4]), SL_CQL_SEND_AGAIN);
    rq_t rq;
    int16_t first = -1;
    for (int i = 0; i < 4; i++) {
        CHECK(srv_next(&s, c, &rq));
        CHECK(rq.stream >= 0 && rq.stream < 4);
        if (i == 2) {
            first = rq.stream;
        }
    }
    reply_void(&s, first);
    int64_t end = sl_now_ms() + 3000;
    while (r[2].calls == 0 && sl_now_ms() < end) {
        pump(c, 5);
    }
    CHECK_INT(r[2].calls, 1);
    CHECK_INT(send_q(c, &q, &r[5]), SL_CQL_SEND_OK);
    CHECK(srv_next(&s, c, &rq));
    CHECK_INT(rq.stream, first); /* the freed id is reused */
    CHECK_INT(r[4].calls, 0);    /* AGAIN never calls back */
    sl_cql_conn_destroy(c);
    for (int i = 0; i < 6; i++) {
        CHECK_INT(r[i].calls, i == 4 ? 0 : 1);
    }
    CHECK_INT(r[0].status, SL_CQL_REQ_LOST);
    srv_free(&s);
}

TEST(invalid_requests)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.max_inflight = 1};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    rec_t r = {0};
    const char *err = NULL;
    CHECK_INT(sl_cql_conn_send(c, build_broken, NULL, rec_cb, &r, &err), SL_CQL_SEND_INVALID);
    CHECK(err != NULL);
    static const uint8_t short_frame[] = {0x04, 0, 0, 0, 0x05};
    CHECK_INT(sl_cql_conn_send_frame(c, short_frame, sizeof(short_frame), rec_cb, &r, NULL),
              SL_CQL_SEND_INVALID);
    /* A ready-made OPTIONS frame built with stream 0x7777: the copy gets id 0. */
    static const uint8_t opts_frame[] = {0x04, 0, 0x77, 0x77, 0x05, 0, 0, 0, 0};
    CHECK_INT(sl_cql_conn_send_frame(c, opts_frame, sizeof(opts_frame), rec_cb, &r, NULL),
              SL_CQL_SEND_OK);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq));
    CHECK_INT(rq.stream, 0);
    CHECK_INT(rq.opcode, 0x05);
    reply_supported(&s, 0);
    int64_t end = sl_now_ms() + 3000;
    while (r.calls == 0 && sl_now_ms() < end) {
        pump(c, 5);
    }
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.opcode, 0x06);
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

TEST(timeout_then_late_response)
{
    g_skew = 0;
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {
        .max_inflight = 2, .request_timeout_ms = 1000, .heartbeat_interval_ms = -1};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"SELECT slow"};
    rec_t r1 = {0}, r2 = {0}, r3 = {0};
    CHECK_INT(send_q(c, &q, &r1), SL_CQL_SEND_OK);
    int64_t dl = sl_cql_conn_next_timeout_ms(c);
    CHECK(dl > 0 && dl <= tnow() + 1000);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq));
    int16_t slow = rq.stream;

    g_skew += 1500;
    pump(c, 0);
    CHECK_INT(r1.calls, 1);
    CHECK_INT(r1.status, SL_CQL_REQ_TIMEOUT);
    CHECK(r1.retriable);
    CHECK(r1.maybe_applied);
    sl_cql_conn_stats_t st;
    sl_cql_conn_stats(c, &st);
    CHECK_INT(st.inflight, 1); /* still reserved */
    CHECK_INT(st.timed_out, 1);
    CHECK_INT(st.timeouts, 1);
    CHECK_INT(sl_cql_conn_next_timeout_ms(c), -1);

    /* The id is not reused while the late answer may still come. */
    CHECK_INT(send_q(c, &q, &r2), SL_CQL_SEND_OK);
    CHECK_INT(send_q(c, &q, &r3), SL_CQL_SEND_AGAIN);
    CHECK(srv_next(&s, c, &rq));
    CHECK(rq.stream != slow);
    int16_t fast = rq.stream;

    reply_void(&s, slow); /* late */
    reply_void(&s, fast);
    int64_t end = sl_now_ms() + 3000;
    while (r2.calls == 0 && sl_now_ms() < end) {
        pump(c, 5);
    }
    CHECK_INT(r1.calls, 1);
    CHECK_INT(r2.calls, 1);
    CHECK_INT(r2.stream, fast);
    sl_cql_conn_stats(c, &st);
    CHECK_INT(st.late_responses, 1);
    CHECK_INT(st.inflight, 0);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_READY);
    sl_cql_conn_destroy(c);
    CHECK_INT(r1.calls, 1);
    srv_free(&s);
    g_skew = 0;
}

/* A request that times out before a byte of it was written stays queued and
 * still reaches the server: its fate is unknown, never "not applied" (a
 * caller that believed otherwise would resend a counter update twice). */
TEST(timeout_before_written_is_maybe_applied)
{
    g_skew = 0;
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.request_timeout_ms = 1000, .heartbeat_interval_ms = -1};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"UPDATE counters"};
    rec_t r = {0};
    CHECK_INT(send_q(c, &q, &r), SL_CQL_SEND_OK); /* queued, not written yet */
    g_skew += 1500;
    pump(c, 0); /* timers run before the write */
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.status, SL_CQL_REQ_TIMEOUT);
    CHECK(r.maybe_applied);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq)); /* and the server does get it */
    sl_cql_conn_destroy(c);
    srv_free(&s);
    g_skew = 0;
}

/* A request sent on a connection that was not processed for longer than the
 * request timeout gets a whole timeout from when it is sent. */
TEST(deadline_counts_from_send)
{
    g_skew = 0;
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.request_timeout_ms = 1000, .heartbeat_interval_ms = -1};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    struct timespec ts = {1, 200 * 1000 * 1000}; /* idle, unprocessed, past a timeout */
    nanosleep(&ts, NULL);
    qarg_t q = {"INSERT"};
    rec_t r = {0};
    CHECK_INT(send_q(c, &q, &r), SL_CQL_SEND_OK);
    CHECK(sl_cql_conn_next_timeout_ms(c) >= sl_now_ms() + 900);
    pump(c, 0);
    CHECK_INT(r.calls, 0);
    sl_cql_conn_destroy(c);
    CHECK_INT(r.calls, 1);
    srv_free(&s);
}

TEST(connection_loss_fails_all_pending)
{
    enum { N = 10 };
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {0};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"INSERT"};
    rec_t r[N] = {0};
    for (int i = 0; i < N; i++) {
        CHECK_INT(send_q(c, &q, &r[i]), SL_CQL_SEND_OK);
    }
    rq_t rq;
    for (int i = 0; i < N; i++) {
        CHECK(srv_next(&s, c, &rq));
    }
    reply_void(&s, rq.stream); /* the last one is answered */
    srv_close_conn(&s);
    CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
    CHECK_CONTAINS(sl_cql_conn_error(c), "closed by the server");
    for (int i = 0; i < N; i++) {
        CHECK_INT(r[i].calls, 1);
        if (i < N - 1) {
            CHECK_INT(r[i].status, SL_CQL_REQ_LOST);
            CHECK(r[i].retriable);
            CHECK(r[i].maybe_applied); /* it was written */
        } else {
            CHECK_INT(r[i].status, SL_CQL_REQ_OK);
        }
    }
    sl_cql_conn_stats_t st;
    sl_cql_conn_stats(c, &st);
    CHECK_INT(st.inflight, 0);
    sl_cql_conn_destroy(c);
    for (int i = 0; i < N; i++) {
        CHECK_INT(r[i].calls, 1);
    }
    srv_free(&s);
}

TEST(destroy_fails_unwritten_requests)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {0};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"INSERT"};
    rec_t r[3] = {0};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(send_q(c, &q, &r[i]), SL_CQL_SEND_OK);
    }
    sl_cql_conn_destroy(c); /* never written */
    for (int i = 0; i < 3; i++) {
        CHECK_INT(r[i].calls, 1);
        CHECK_INT(r[i].status, SL_CQL_REQ_LOST);
        CHECK(r[i].retriable);
        CHECK(!r[i].maybe_applied);
    }
    srv_free(&s);
}

TEST(heartbeat_when_idle)
{
    g_skew = 0;
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.heartbeat_interval_ms = 1000, .request_timeout_ms = 500};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    int64_t t = sl_cql_conn_next_timeout_ms(c);
    CHECK(t > tnow() && t <= tnow() + 1000);
    pump(c, 0);
    sl_cql_conn_stats_t st;
    sl_cql_conn_stats(c, &st);
    CHECK_INT(st.heartbeats, 0);

    g_skew += 1100;
    pump(c, 0);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq));
    CHECK_INT(rq.opcode, 0x05); /* OPTIONS */
    CHECK_INT(rq.len, 0);
    reply_supported(&s, rq.stream);
    int64_t end = sl_now_ms() + 3000;
    do {
        pump(c, 5);
        sl_cql_conn_stats(c, &st);
    } while (st.inflight > 0 && sl_now_ms() < end);
    CHECK_INT(st.heartbeats, 1);
    CHECK_INT(st.inflight, 0);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_READY);

    /* Idle again, and this time nobody answers. */
    g_skew += 1100;
    pump(c, 0);
    CHECK(srv_next(&s, c, &rq));
    CHECK_INT(rq.opcode, 0x05);
    g_skew += 600;
    pump(c, 0);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_FAILED);
    CHECK_CONTAINS(sl_cql_conn_error(c), "heartbeat");
    sl_cql_conn_stats(c, &st);
    CHECK_INT(st.inflight, 0);
    CHECK_INT(st.timed_out, 0);
    sl_cql_conn_destroy(c);
    srv_free(&s);
    g_skew = 0;
}

typedef struct evrec {
    int calls;
    int kind;
    char change[32];
} evrec_t;

static void on_event(void *ctx, const sl_cql_frame_t *f)
{
    evrec_t *e = ctx;
    e->calls++;
    sl_arena_t a;
    sl_arena_init(&a, 0);
    sl_cql_response_t r;
    char err[96];
    if (sl_cql_response_decode(f, &a, &r, err, sizeof(err)) == 0) {
        e->kind = (int)r.event.kind;
        snprintf(e->change, sizeof(e->change), "%s", r.event.change ? r.event.change : "");
    }
    sl_arena_free(&a);
}

TEST(event_dispatch)
{
    srv_t s;
    srv_listen(&s);
    evrec_t ev = {0};
    sl_cql_conn_opts_t o = {.on_event = on_event, .cb_ctx = &ev};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    sl_buf_t b = SL_BUF_INIT;
    b_str(&b, "STATUS_CHANGE");
    b_str(&b, "UP");
    sl_buf_putc(&b, 4); /* [inet] 127.0.0.2:9042 */
    static const uint8_t addr[] = {127, 0, 0, 2};
    sl_buf_append(&b, addr, 4);
    b_int(&b, 9042);
    reply(&s, -1, 0x0C, &b);
    sl_buf_free(&b);
    int64_t end = sl_now_ms() + 3000;
    while (ev.calls == 0 && sl_now_ms() < end) {
        pump(c, 5);
    }
    CHECK_INT(ev.calls, 1);
    CHECK_INT(ev.kind, SL_CQL_EVENT_STATUS_CHANGE);
    CHECK_STR(ev.change, "UP");
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_READY);
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

static void bad_input_script(const uint8_t *bytes, size_t n, bool close_after, const char *msg,
                             uint32_t max_frame)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.max_frame_bytes = max_frame};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"INSERT"};
    rec_t r = {0};
    CHECK_INT(send_q(c, &q, &r), SL_CQL_SEND_OK);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq));
    srv_write(&s, bytes, n);
    if (close_after) {
        srv_close_conn(&s);
    }
    CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
    CHECK_CONTAINS(sl_cql_conn_error(c), msg);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.status, SL_CQL_REQ_LOST);
    CHECK(r.retriable);
    CHECK(r.maybe_applied); /* the server received it */
    CHECK_INT(sl_cql_conn_fd(c), -1);
    sl_cql_conn_destroy(c);
    CHECK_INT(r.calls, 1);
    srv_free(&s);
}

TEST(garbage_response_fails_cleanly)
{
    static const uint8_t garbage[] = {0x99, 0, 0, 0, 0x08, 0, 0, 0, 4, 0, 0, 0, 1};
    bad_input_script(garbage, sizeof(garbage), false, "malformed", 0);
}

TEST(truncated_response_fails_cleanly)
{
    /* RESULT Void on stream 0 announcing 4 body bytes, only 2 sent. */
    static const uint8_t part[] = {0x84, 0, 0, 0, 0x08, 0, 0, 0, 4, 0, 0};
    bad_input_script(part, sizeof(part), true, "inside a frame", 0);
}

TEST(response_on_unknown_stream_fails)
{
    static const uint8_t stray[] = {0x84, 0, 0x01, 0x23, 0x08, 0, 0, 0, 4, 0, 0, 0, 1};
    bad_input_script(stray, sizeof(stray), false, "no request", 0);
}

TEST(oversized_response_fails_cleanly)
{
    /* A RESULT announcing 1000 body bytes; the client allows 100. */
    static const uint8_t big[] = {0x84, 0, 0, 0, 0x08, 0, 0, 0x03, 0xe8};
    bad_input_script(big, sizeof(big), false, "malformed", 100);
}

TEST(connect_refused)
{
    srv_t s;
    srv_listen(&s);
    int port = s.port;
    srv_free(&s); /* nobody listens there now */
    sl_cql_conn_opts_t o = {.host = "127.0.0.1", .port = port};
    sl_cql_conn_t *c = sl_cql_conn_create(&o);
    CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
    CHECK_CONTAINS(sl_cql_conn_error(c), "refused");
    sl_cql_conn_destroy(c);
}

TEST(handshake_timeout)
{
    g_skew = 0;
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.connect_timeout_ms = 200};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_accept(&s, c)); /* accepts but never answers */
    CHECK(sl_cql_conn_next_timeout_ms(c) <= tnow() + 200);
    g_skew += 300;
    pump(c, 0);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_FAILED);
    CHECK_CONTAINS(sl_cql_conn_error(c), "timed out");
    sl_cql_conn_destroy(c);
    srv_free(&s);
    g_skew = 0;
}

/* ---- TLS (no certificate needed: setup errors, a silent and a plain server) ------------ */

/* Reads raw bytes (not frames) until at least want have arrived, running
 * the client meanwhile; false after 3 s or at EOF. */
static bool srv_read_raw(srv_t *s, sl_cql_conn_t *c, size_t want)
{
    int64_t end = sl_now_ms() + 3000;
    while (s->in.len < want) {
        if (sl_now_ms() > end) {
            return false;
        }
        pump(c, 0);
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        if (poll(&pf, 1, 5) <= 0) {
            continue;
        }
        sl_buf_reserve(&s->in, 1 << 16);
        ssize_t n = recv(s->fd, s->in.data + s->in.len, s->in.cap - s->in.len - 1, 0);
        if (n <= 0) {
            return false;
        }
        s->in.len += (size_t)n;
    }
    return true;
}

TEST(tls_bad_ca_file_fails_at_create)
{
    sl_cql_conn_opts_t o = {
        .host = "127.0.0.1", .port = 9, .tls = true, .tls_ca_file = "/nonexistent/ca.pem"};
    sl_cql_conn_t *c = sl_cql_conn_create(&o);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_FAILED);
    CHECK_STR(sl_cql_conn_error(c), "TLS: cannot load the CA certificates from "
                                    "/nonexistent/ca.pem: No such file or directory");
    CHECK_INT(sl_cql_conn_fd(c), -1);
    sl_cql_conn_destroy(c);
}

TEST(tls_handshake_timeout)
{
    g_skew = 0;
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.connect_timeout_ms = 200, .tls = true};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_accept(&s, c));
    CHECK(srv_read_raw(&s, c, 5));          /* the ClientHello record, never answered */
    CHECK_INT((uint8_t)s.in.data[0], 0x16); /* TLS handshake record */
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_CONNECTING);
    CHECK_INT(sl_cql_conn_events(c), POLLIN); /* waits for the ServerHello */
    g_skew += 300;
    pump(c, 0);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_FAILED);
    char want[128];
    snprintf(want, sizeof(want), "TLS handshake with 127.0.0.1:%d timed out after 200 ms", s.port);
    CHECK_STR(sl_cql_conn_error(c), want);
    sl_cql_conn_destroy(c);
    srv_free(&s);
    g_skew = 0;
}

TEST(tls_against_plain_server_fails_cleanly)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.tls = true};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_accept(&s, c));
    CHECK(srv_read_raw(&s, c, 5));
    reply_error(&s, 0, 0x000A, "Invalid or unsupported protocol version"); /* as Cassandra */
    srv_close_conn(&s);
    CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
    CHECK_CONTAINS(sl_cql_conn_error(c), "TLS handshake with 127.0.0.1:");
    CHECK_CONTAINS(sl_cql_conn_error(c), "(does the server speak TLS on this port?)");
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

typedef struct killer {
    sl_cql_conn_t *conn;
    int calls;
    sl_cql_req_status_t status;
} killer_t;

static void destroy_cb(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *f,
                       const sl_cql_conn_err_t *err)
{
    killer_t *k = ctx;
    k->calls++;
    k->status = status;
    sl_cql_conn_destroy(k->conn);
    /* What the callback was given stays valid until it returns. */
    if (f != NULL) {
        CHECK(f->body_len == 4 && f->body[3] == 1);
    } else {
        CHECK(err->msg != NULL && err->msg[0] != '\0');
    }
}

TEST(destroy_from_callback)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {0};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"INSERT"};
    killer_t k = {.conn = c};
    rec_t others[3] = {0};
    CHECK_INT(sl_cql_conn_send(c, build_query, &q, destroy_cb, &k, NULL), SL_CQL_SEND_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(send_q(c, &q, &others[i]), SL_CQL_SEND_OK);
    }
    rq_t rq;
    int16_t first = -1;
    for (int i = 0; i < 4; i++) {
        CHECK(srv_next(&s, c, &rq));
        if (i == 0) {
            first = rq.stream;
        }
    }
    /* Two responses in one read: the first callback destroys the connection. */
    sl_buf_t b = SL_BUF_INIT, body = SL_BUF_INIT;
    b_int(&body, 1);
    frame(&b, first, 0x08, &body);
    frame(&b, rq.stream, 0x08, &body);
    srv_write(&s, b.data, b.len);
    sl_buf_free(&b);
    sl_buf_free(&body);
    int64_t end = sl_now_ms() + 3000;
    while (k.calls == 0 && sl_now_ms() < end) {
        struct pollfd p = {.fd = sl_cql_conn_fd(c), .events = POLLIN};
        if (poll(&p, 1, 5) > 0) {
            sl_cql_conn_process(c, p.revents, tnow()); /* frees c before returning */
        }
    }
    CHECK_INT(k.calls, 1);
    CHECK_INT(k.status, SL_CQL_REQ_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(others[i].calls, 1);
        CHECK_INT(others[i].status, SL_CQL_REQ_LOST);
    }
    srv_free(&s);
}

TEST(destroy_from_lost_callback)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {0};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"INSERT"};
    killer_t k = {.conn = c};
    rec_t other = {0};
    CHECK_INT(sl_cql_conn_send(c, build_query, &q, destroy_cb, &k, NULL), SL_CQL_SEND_OK);
    CHECK_INT(send_q(c, &q, &other), SL_CQL_SEND_OK);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq));
    CHECK(srv_next(&s, c, &rq));
    srv_close_conn(&s);
    int64_t end = sl_now_ms() + 3000;
    while (k.calls == 0 && sl_now_ms() < end) {
        struct pollfd p = {.fd = sl_cql_conn_fd(c), .events = POLLIN};
        if (poll(&p, 1, 5) > 0) {
            sl_cql_conn_process(c, p.revents, tnow());
        }
    }
    CHECK_INT(k.calls, 1);
    CHECK_INT(k.status, SL_CQL_REQ_LOST);
    CHECK_INT(other.calls, 1);
    CHECK_INT(other.status, SL_CQL_REQ_LOST);
    srv_free(&s);
}

TEST(all_ids_orphaned_fails_connection)
{
    g_skew = 0;
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {
        .max_inflight = 3, .request_timeout_ms = 100, .heartbeat_interval_ms = -1};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c));
    qarg_t q = {"SELECT"};
    rec_t r[3] = {0};
    for (int i = 0; i < 2; i++) {
        CHECK_INT(send_q(c, &q, &r[i]), SL_CQL_SEND_OK);
    }
    g_skew += 200;
    pump(c, 0);
    CHECK_INT(r[0].status, SL_CQL_REQ_TIMEOUT);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_READY); /* one id left */
    CHECK_INT(send_q(c, &q, &r[2]), SL_CQL_SEND_OK);
    g_skew += 200;
    pump(c, 0);
    CHECK_INT(r[2].calls, 1);
    CHECK_INT(r[2].status, SL_CQL_REQ_TIMEOUT);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_FAILED);
    CHECK_CONTAINS(sl_cql_conn_error(c), "timed out");
    sl_cql_conn_stats_t st;
    sl_cql_conn_stats(c, &st);
    CHECK_INT(st.inflight, 0);
    CHECK_INT(st.timed_out, 0);
    sl_cql_conn_destroy(c);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(r[i].calls, 1);
    }
    srv_free(&s);
    g_skew = 0;
}

/* ---- LZ4 compression (spec section 5) -------------------------------------------------- */

/* An LZ4 block holding the n bytes at p as one literal-only sequence, encoded
 * by hand from the LZ4 block format (token: literal length in the high
 * nibble, 15 meaning "more length bytes follow"; no match in the last
 * sequence), so the responses below do not come from liblz4's compressor. */
static void lz4_literals(sl_buf_t *b, const void *p, size_t n)
{
    if (n < 15) {
        sl_buf_putc(b, (char)(uint8_t)(n << 4));
    } else {
        sl_buf_putc(b, (char)0xF0);
        size_t r = n - 15;
        for (; r >= 255; r -= 255) {
            sl_buf_putc(b, (char)0xFF);
        }
        sl_buf_putc(b, (char)(uint8_t)r);
    }
    if (n > 0) {
        sl_buf_append(b, p, n);
    }
}

/* Writes a response frame with the compression flag: the body is the
 * uncompressed length as a big-endian [int], then the LZ4 block. */
static void reply_lz4(srv_t *s, int16_t stream, uint8_t opcode, const void *body, size_t n)
{
    sl_buf_t z = SL_BUF_INIT;
    b_int(&z, (uint32_t)n);
    lz4_literals(&z, body, n);
    sl_buf_t b = SL_BUF_INIT;
    frame(&b, stream, opcode, &z);
    b.data[1] = 0x01;
    srv_write(s, b.data, b.len);
    sl_buf_free(&b);
    sl_buf_free(&z);
}

/* SUPPORTED {COMPRESSION: [snappy, lz4], CQL_VERSION: [3.0.0]}. */
static void reply_supported_lz4(srv_t *s, int16_t stream)
{
    sl_buf_t b = SL_BUF_INIT;
    b_short(&b, 2);
    b_str(&b, "COMPRESSION");
    b_short(&b, 2);
    b_str(&b, "snappy");
    b_str(&b, "lz4");
    b_str(&b, "CQL_VERSION");
    b_short(&b, 1);
    b_str(&b, "3.0.0");
    reply(s, stream, 0x06, &b);
    sl_buf_free(&b);
}

/* The STARTUP body asking for lz4: {CQL_VERSION: 3.0.0, COMPRESSION: lz4}. */
static void startup_lz4_body(sl_buf_t *b)
{
    b_short(b, 2);
    b_str(b, "CQL_VERSION");
    b_str(b, "3.0.0");
    b_str(b, "COMPRESSION");
    b_str(b, "lz4");
}

/* The handshake with lz4 offered: the STARTUP must ask for it, uncompressed.
 * READY is sent compressed when ready_compressed (the spec allows it). */
static bool srv_handshake_lz4(srv_t *s, sl_cql_conn_t *c, bool ready_compressed)
{
    rq_t r;
    if (!srv_accept(s, c) || !srv_next(s, c, &r) || r.opcode != 0x05 || r.len != 0 ||
        r.flags != 0) {
        return false;
    }
    reply_supported_lz4(s, r.stream);
    sl_buf_t want = SL_BUF_INIT;
    startup_lz4_body(&want);
    bool ok = srv_next(s, c, &r) && r.opcode == 0x01 && r.flags == 0 && r.len == want.len &&
              memcmp(r.body, want.data, want.len) == 0;
    sl_buf_free(&want);
    if (!ok) {
        return false;
    }
    if (ready_compressed) {
        reply_lz4(s, r.stream, 0x02, NULL, 0);
    } else {
        reply(s, r.stream, 0x02, NULL);
    }
    return pump_until_state(c, SL_CQL_CONN_READY);
}

/* Decompresses a flagged request body with liblz4 (the reference decoder):
 * the first 4 bytes must be the big-endian uncompressed length. */
static bool rq_decompress(const rq_t *r, sl_buf_t *out)
{
    if (!(r->flags & 0x01) || r->len < 4) {
        return false;
    }
    const uint8_t *p = r->body;
    uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    out->len = 0;
    sl_buf_reserve(out, n + 1);
    int got = LZ4_decompress_safe((const char *)p + 4, out->data, (int)r->len - 4, (int)n);
    if (got < 0 || (uint32_t)got != n) {
        return false;
    }
    out->len = n;
    return true;
}

/* The QUERY body for cql at ONE without flags: [long string][short][byte]. */
static void query_body(sl_buf_t *b, const char *cql)
{
    b_int(b, (uint32_t)strlen(cql));
    sl_buf_puts(b, cql);
    b_short(b, 0x0001);
    sl_buf_putc(b, 0);
}

static void lz4_roundtrip(bool ready_compressed)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.compression = true};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake_lz4(&s, c, ready_compressed));
    CHECK(sl_cql_conn_compression(c) != NULL);
    CHECK_STR(sl_cql_conn_compression(c), "lz4");

    /* A compressible request: repeated text must shrink and come back whole. */
    char big[2048];
    memcpy(big, "INSERT INTO t (k) VALUES ('", 27);
    memset(big + 27, 'x', sizeof(big) - 27 - 3);
    memcpy(big + sizeof(big) - 3, "')", 3);
    qarg_t q1 = {big}, q2 = {"SELECT 1"};
    rec_t r1 = {0}, r2 = {0};
    CHECK_INT(send_q(c, &q1, &r1), SL_CQL_SEND_OK);
    CHECK_INT(send_q(c, &q2, &r2), SL_CQL_SEND_OK);
    rq_t a, b;
    CHECK(srv_next(&s, c, &a));
    CHECK(srv_next(&s, c, &b));
    CHECK_INT(a.opcode, 0x07);
    CHECK_INT(a.flags, 0x01);
    CHECK_INT(b.flags, 0x01);
    CHECK(a.len < 200); /* 2 KB of mostly 'x' */
    sl_buf_t got = SL_BUF_INIT, want = SL_BUF_INIT;
    CHECK(rq_decompress(&a, &got));
    query_body(&want, big);
    CHECK_INT(got.len, want.len);
    CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
    want.len = 0;
    CHECK(rq_decompress(&b, &got));
    query_body(&want, "SELECT 1");
    CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);

    /* Responses: one compressed (dispatched decompressed), one plain. */
    uint8_t rows_void[4] = {0, 0, 0, 1};
    reply_lz4(&s, b.stream, 0x08, rows_void, sizeof(rows_void));
    reply_void(&s, a.stream);
    int64_t end = sl_now_ms() + 3000;
    while ((r1.calls == 0 || r2.calls == 0) && sl_now_ms() < end) {
        pump(c, 5);
    }
    CHECK_INT(r1.calls, 1);
    CHECK_INT(r2.calls, 1);
    CHECK_INT(r1.status, SL_CQL_REQ_OK);
    CHECK_INT(r2.status, SL_CQL_REQ_OK);
    CHECK_INT(r2.opcode, 0x08);
    CHECK_INT(r2.stream, b.stream);
    CHECK_INT(r2.flags, 0); /* the callback sees the frame decompressed */
    CHECK_INT(r2.body_len, 4);
    CHECK_INT(r2.result_kind, 1);
    CHECK_INT(sl_cql_conn_state(c), SL_CQL_CONN_READY);
    sl_buf_free(&got);
    sl_buf_free(&want);
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

TEST(lz4_negotiated_roundtrip)
{
    lz4_roundtrip(false);
}

TEST(lz4_ready_compressed)
{
    lz4_roundtrip(true);
}

/* With authentication: the STARTUP goes plain, the AUTH_RESPONSE after the
 * AUTHENTICATE compressed; a compressed AUTH_SUCCESS completes the handshake;
 * the USE keyspace QUERY is compressed too. */
TEST(lz4_auth_and_use_compressed)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {
        .compression = true, .user = "user", .password = "password", .keyspace = "ks"};
    sl_cql_conn_t *c = client(&s, &o);
    rq_t r;
    CHECK(srv_accept(&s, c));
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x05);
    reply_supported_lz4(&s, r.stream);
    CHECK(srv_next(&s, c, &r) && r.opcode == 0x01);
    CHECK_INT(r.flags, 0);
    sl_buf_t b = SL_BUF_INIT;
    b_str(&b, "org.apache.cassandra.auth.PasswordAuthenticator");
    reply(&s, r.stream, 0x03, &b); /* AUTHENTICATE, plain */
    CHECK(srv_next(&s, c, &r));
    CHECK_INT(r.opcode, 0x0F);
    CHECK_INT(r.flags, 0x01);
    static const uint8_t tok[] = {0, 0,   0,   14,  0,   'u', 's', 'e', 'r',
                                  0, 'p', 'a', 's', 's', 'w', 'o', 'r', 'd'};
    sl_buf_t got = SL_BUF_INIT;
    CHECK(rq_decompress(&r, &got));
    CHECK(got.len == sizeof(tok) && memcmp(got.data, tok, sizeof(tok)) == 0);
    static const uint8_t null_token[] = {0xff, 0xff, 0xff, 0xff};
    reply_lz4(&s, r.stream, 0x10, null_token, sizeof(null_token)); /* AUTH_SUCCESS */
    CHECK(srv_next(&s, c, &r));
    CHECK_INT(r.opcode, 0x07);
    CHECK_INT(r.flags, 0x01);
    CHECK(rq_decompress(&r, &got));
    sl_buf_free(&b);
    query_body(&b, "USE \"ks\"");
    CHECK(got.len == b.len && memcmp(got.data, b.data, b.len) == 0);
    sl_buf_free(&b);
    b_int(&b, 3); /* RESULT Set_keyspace "ks", compressed */
    b_str(&b, "ks");
    reply_lz4(&s, r.stream, 0x08, b.data, b.len);
    CHECK(pump_until_state(c, SL_CQL_CONN_READY));
    CHECK_STR(sl_cql_conn_compression(c), "lz4");
    /* a ready-made frame already flagged compressed is refused */
    static const uint8_t flagged[] = {0x04, 0x01, 0, 0, 0x05, 0, 0, 0, 0};
    const char *err = NULL;
    CHECK_INT(sl_cql_conn_send_frame(c, flagged, sizeof(flagged), rec_cb, NULL, &err),
              SL_CQL_SEND_INVALID);
    CHECK(err != NULL);
    sl_buf_free(&b);
    sl_buf_free(&got);
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

TEST(lz4_not_offered_stays_plain)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.compression = true};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake(&s, c)); /* checks the STARTUP has no COMPRESSION */
    CHECK(sl_cql_conn_compression(c) == NULL);
    qarg_t q = {"SELECT 1"};
    rec_t r = {0};
    CHECK_INT(send_q(c, &q, &r), SL_CQL_SEND_OK);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq));
    CHECK_INT(rq.flags, 0);
    sl_buf_t want = SL_BUF_INIT;
    query_body(&want, "SELECT 1");
    CHECK(rq.len == want.len && memcmp(rq.body, want.data, want.len) == 0);
    sl_buf_free(&want);
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

TEST(lz4_offered_but_not_wanted)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {0};
    sl_cql_conn_t *c = client(&s, &o);
    rq_t r;
    CHECK(srv_accept(&s, c) && srv_next(&s, c, &r) && r.opcode == 0x05);
    reply_supported_lz4(&s, r.stream);
    CHECK(srv_next(&s, c, &r));
    CHECK_INT(r.opcode, 0x01);
    CHECK(r.len == sizeof(k_startup_body) && memcmp(r.body, k_startup_body, r.len) == 0);
    reply(&s, r.stream, 0x02, NULL);
    CHECK(pump_until_state(c, SL_CQL_CONN_READY));
    CHECK(sl_cql_conn_compression(c) == NULL);
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

/* After an lz4 handshake, answers a query with the given raw frame bytes and
 * expects the connection to fail with msg. */
static void lz4_bad_response(const uint8_t *bytes, size_t n, const char *msg, uint32_t max_frame)
{
    srv_t s;
    srv_listen(&s);
    sl_cql_conn_opts_t o = {.compression = true, .max_frame_bytes = max_frame};
    sl_cql_conn_t *c = client(&s, &o);
    CHECK(srv_handshake_lz4(&s, c, false));
    qarg_t q = {"INSERT"};
    rec_t r = {0};
    CHECK_INT(send_q(c, &q, &r), SL_CQL_SEND_OK);
    rq_t rq;
    CHECK(srv_next(&s, c, &rq));
    srv_write(&s, bytes, n);
    CHECK(pump_until_state(c, SL_CQL_CONN_FAILED));
    CHECK_CONTAINS(sl_cql_conn_error(c), msg);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.status, SL_CQL_REQ_LOST);
    sl_cql_conn_destroy(c);
    srv_free(&s);
}

TEST(lz4_corrupt_body_fails)
{
    /* declares 4 bytes; the block is a token asking for 15+ literals it lacks */
    static const uint8_t bad[] = {0x84, 0x01, 0, 0, 0x08, 0, 0, 0, 7, 0, 0, 0, 4, 0xF0, 0x20, 1};
    lz4_bad_response(bad, sizeof(bad), "corrupt LZ4 frame on stream 0", 0);
    /* a valid block of 4 bytes, but 5 declared */
    static const uint8_t shortish[] = {0x84, 0x01, 0, 0, 0x08, 0, 0, 0, 9,
                                       0,    0,    0, 5, 0x40, 0, 0, 0, 1};
    lz4_bad_response(shortish, sizeof(shortish), "corrupt LZ4", 0);
    /* a body too short to hold the length */
    static const uint8_t tiny[] = {0x84, 0x01, 0, 0, 0x08, 0, 0, 0, 2, 0, 0};
    lz4_bad_response(tiny, sizeof(tiny), "has no length", 0);
    /* a declared length over max_frame_bytes is refused before allocating */
    static const uint8_t huge[] = {0x84, 0x01, 0, 0, 0x08, 0, 0, 0, 5, 0x10, 0, 0, 0, 0};
    lz4_bad_response(huge, sizeof(huge), "more than the 1000 allowed", 1000);
}

TEST(compressed_response_without_negotiation_fails)
{
    static const uint8_t z[] = {0x84, 0x01, 0, 0, 0x08, 0, 0, 0, 9, 0, 0, 0, 4, 0x40, 0, 0, 0, 1};
    bad_input_script(z, sizeof(z), false, "none negotiated", 0);
}

TEST_MAIN(T(handshake_plain), T(handshake_auth), T(handshake_auth_bad_credentials),
          T(handshake_auth_required_without_user), T(use_keyspace), T(use_keyspace_error),
          T(pipelined_out_of_order), T(stream_exhaustion_backpressure), T(invalid_requests),
          T(timeout_then_late_response), T(timeout_before_written_is_maybe_applied),
          T(deadline_counts_from_send), T(connection_loss_fails_all_pending),
          T(destroy_fails_unwritten_requests), T(heartbeat_when_idle), T(event_dispatch),
          T(garbage_response_fails_cleanly), T(truncated_response_fails_cleanly),
          T(response_on_unknown_stream_fails), T(oversized_response_fails_cleanly),
          T(connect_refused), T(handshake_timeout), T(destroy_from_callback),
          T(destroy_from_lost_callback), T(all_ids_orphaned_fails_connection),
          T(lz4_negotiated_roundtrip), T(lz4_ready_compressed), T(lz4_auth_and_use_compressed),
          T(lz4_not_offered_stays_plain), T(lz4_offered_but_not_wanted), T(lz4_corrupt_body_fails),
          T(compressed_response_without_negotiation_fails), T(tls_bad_ca_file_fails_at_create),
          T(tls_handshake_timeout), T(tls_against_plain_server_fails_cleanly))
