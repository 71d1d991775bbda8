/* One asynchronous CQL v4 connection, driven by the caller's event loop.
 *
 * The connection owns one non-blocking socket and no thread. The caller polls
 * sl_cql_conn_fd() for sl_cql_conn_events(), calls sl_cql_conn_process() with
 * what poll returned (0 on a timeout) and wakes up again no later than
 * sl_cql_conn_next_timeout_ms(). Everything else happens inside process:
 * connecting, the handshake (OPTIONS, STARTUP, SASL PLAIN authentication, USE
 * keyspace), reading and dispatching responses, request timeouts, heartbeats
 * and writing.
 *
 * Requests are appended to one output buffer and written by the next process
 * call, so many requests sent between two calls leave in one send() (write
 * coalescing). Each request gets a stream id from a bitmap; when every id is
 * taken, sl_cql_conn_send returns SL_CQL_SEND_AGAIN (back-pressure).
 *
 * Time: every deadline is on the clock of sl_now_ms() (monotonic ms). The
 * connection caches the now_ms given to the last process call for its timers;
 * a request's deadline counts from sl_now_ms() read when it is sent (an idle
 * connection may not have been processed for a long time). A now_ms smaller
 * than the cached one is ignored.
 *
 * Threads: a connection and its callbacks belong to the thread that calls
 * process; nothing here is thread-safe. Self-contained: depends only on
 * src/util and src/cql. */
#ifndef SL_CQL_CONN_H
#define SL_CQL_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "cql/frame.h"
#include "util/buf.h"
#include "util/common.h"

/* The protocol allows stream ids 0..32767 for requests. */
#define SL_CQL_CONN_MAX_STREAMS 32768

typedef struct sl_cql_conn sl_cql_conn_t;

typedef enum sl_cql_conn_state {
    SL_CQL_CONN_CONNECTING = 1, /* TCP connect in progress */
    SL_CQL_CONN_HANDSHAKING,    /* OPTIONS / STARTUP / AUTH / USE */
    SL_CQL_CONN_READY,          /* requests may be sent */
    SL_CQL_CONN_FAILED,         /* unusable; sl_cql_conn_error() says why */
    SL_CQL_CONN_CLOSED,         /* closed by sl_cql_conn_destroy */
} sl_cql_conn_state_t;

/* How a request ended; the callback runs exactly once per request. */
typedef enum sl_cql_req_status {
    SL_CQL_REQ_OK = 0,  /* a response frame arrived (it may be an ERROR: decode it) */
    SL_CQL_REQ_TIMEOUT, /* no response within request_timeout_ms; a late one is dropped */
    SL_CQL_REQ_LOST,    /* the connection failed or was closed before a response */
} sl_cql_req_status_t;

/* Details of a TIMEOUT or LOST status. */
typedef struct sl_cql_conn_err {
    sl_cql_req_status_t code;
    bool retriable; /* always true: another connection may succeed */
    bool fatal;     /* this connection is unusable (LOST) */
    /* The server may have executed the request: always for TIMEOUT (a
     * frame not yet written stays queued and is still sent), for LOST when
     * the whole frame was written. Retry only idempotent requests then. */
    bool maybe_applied;
    const char *msg; /* borrowed, valid during the callback */
} sl_cql_conn_err_t;

/* Request callback. status OK: frame is the response (borrowed: it and its
 * body are valid during the call only), err is NULL. Otherwise frame is NULL
 * and err says why. The callback may send new requests on this connection and
 * may destroy it (the memory is then freed when process returns). */
typedef void (*sl_cql_conn_cb)(void *ctx, sl_cql_req_status_t status, const sl_cql_frame_t *frame,
                               const sl_cql_conn_err_t *err);
/* EVENT frames (stream -1), borrowed for the call: decode them with
 * sl_cql_response_decode. */
typedef void (*sl_cql_conn_event_cb)(void *ctx, const sl_cql_frame_t *frame);
/* State changes (to READY, FAILED, CLOSED, ...); err is the error text for
 * FAILED (borrowed), else "". */
typedef void (*sl_cql_conn_state_cb)(void *ctx, sl_cql_conn_state_t state, const char *err);

/* Appends one whole request frame with the given stream id to out, as the
 * request builders of cql/frame.h do (wrap them: see sl_cql_conn_send).
 * Returns 0, or -1 with a static message in *err and out unchanged. */
typedef int (*sl_cql_conn_build_fn)(void *arg, sl_buf_t *out, int16_t stream, const char **err);

typedef struct sl_cql_conn_opts {
    const char *host;          /* numeric IPv4/IPv6, or a name (resolved blocking) */
    int port;                  /* 0: 9042 */
    int connect_timeout_ms;    /* TCP connect + handshake; 0: 5000 */
    int request_timeout_ms;    /* per request and per heartbeat; 0: 12000 */
    int heartbeat_interval_ms; /* idle time before an OPTIONS; 0: 30000, < 0: off */
    int max_inflight;          /* stream ids 0..max_inflight-1; 0: 1024; <= 32768 */
    uint32_t max_frame_bytes;  /* larger response bodies fail the connection; 0: 256 MB */
    const char *keyspace;      /* NULL: no USE; quoted unless it starts with '"' */
    const char *user;          /* SASL PLAIN credentials, NULL: none */
    const char *password;
    /* LZ4 frame-body compression (spec section 5) when the server's SUPPORTED
     * lists "lz4" under COMPRESSION; else (or false) frames stay uncompressed.
     * Once negotiated every request after the STARTUP is compressed and
     * responses are decompressed when flagged (the server may send either). */
    bool compression;
    /* TLS (OpenSSL) over the socket: after the TCP connect a non-blocking
     * TLS handshake runs (state stays CONNECTING, within connect_timeout_ms),
     * then the CQL handshake. The server certificate is always verified,
     * against tls_ca_file (PEM; NULL: the system's default CA paths), and
     * its name against tls_server_name (NULL: host) when tls_verify_host.
     * SNI carries tls_server_name or host unless that is an IP address.
     * tls_cert_file/tls_key_file (PEM): a client certificate, NULL: none. */
    bool tls;
    bool tls_verify_host;
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_server_name;
    sl_cql_conn_event_cb on_event; /* optional */
    sl_cql_conn_state_cb on_state; /* optional; may run inside create: must not destroy there */
    void *cb_ctx;                  /* passed to on_event and on_state */
} sl_cql_conn_opts_t;

/* What sl_cql_conn_send returns. */
typedef enum sl_cql_send_rc {
    SL_CQL_SEND_OK = 0,
    SL_CQL_SEND_AGAIN = 1,    /* every stream id is in use: wait for responses */
    SL_CQL_SEND_DOWN = -1,    /* not READY (connecting, failed, closed): use another */
    SL_CQL_SEND_INVALID = -2, /* the builder refused or produced no valid frame: reject */
} sl_cql_send_rc_t;

typedef struct sl_cql_conn_stats {
    uint64_t frames_sent, frames_received;
    uint64_t bytes_sent, bytes_received;
    uint64_t write_calls, read_calls; /* successful send()/recv() (SSL_write/SSL_read) calls */
    uint64_t timeouts, late_responses, heartbeats;
    uint32_t inflight;  /* reserved stream ids, timed-out ones included */
    uint32_t timed_out; /* of which waiting for a late response */
} sl_cql_conn_stats_t;

/* Creates a connection and starts a non-blocking connect to opts->host
 * (strings are copied; opts is borrowed for the call). Never NULL: a failure
 * to resolve or to start connecting gives a connection in state FAILED with
 * the reason in sl_cql_conn_error(). */
sl_cql_conn_t *sl_cql_conn_create(const sl_cql_conn_opts_t *opts);
/* Fails every pending request (callbacks run with SL_CQL_REQ_LOST), closes
 * the socket and frees the connection. NULL is a no-op. From inside one of
 * the connection's callbacks the memory is freed when the running
 * sl_cql_conn_process returns; do not touch conn after destroying it. */
void sl_cql_conn_destroy(sl_cql_conn_t *conn);

sl_cql_conn_state_t sl_cql_conn_state(const sl_cql_conn_t *conn);
/* The error text of a FAILED connection, else "". Borrowed from conn. */
const char *sl_cql_conn_error(const sl_cql_conn_t *conn);
const char *sl_cql_conn_state_name(sl_cql_conn_state_t state);

/* The socket to poll, or -1 when there is none (failed, closed). */
int sl_cql_conn_fd(const sl_cql_conn_t *conn);
/* The poll events wanted now: POLLOUT while connecting or with unwritten
 * requests, POLLIN while connected (during a TLS handshake, what TLS waits
 * for); 0 without a socket. */
short sl_cql_conn_events(const sl_cql_conn_t *conn);
/* Does all the work that is due: completes the connect, reads and dispatches
 * every complete frame, fires request timeouts, sends a heartbeat, writes the
 * output buffer. revents: what poll returned for the fd (0 is fine). Reads at
 * most a few MB per call, so use level-triggered polling (poll, or epoll
 * without EPOLLET). A connection whose stream ids are all held by timed-out
 * requests is failed. */
void sl_cql_conn_process(sl_cql_conn_t *conn, short revents, int64_t now_ms);
/* The absolute time (sl_now_ms clock) at which process must run again even
 * without socket events, or -1 if no timer is pending. With TLS, decrypted
 * data already buffered by OpenSSL (not visible to poll) makes it now. */
int64_t sl_cql_conn_next_timeout_ms(const sl_cql_conn_t *conn);

/* Sends a request: calls build(arg, out, stream, err) once with a free stream
 * id to append the frame to the output buffer, e.g.
 *   static int build_q(void *arg, sl_buf_t *out, int16_t s, const char **err)
 *   { struct q *q = arg; return sl_cql_req_query(out, s, q->cql, q->len, &q->p, err); }
 * cb(ctx, ...) then runs exactly once, from process or destroy, never from
 * send itself. Returns SL_CQL_SEND_OK, or AGAIN / DOWN / INVALID without
 * calling cb (INVALID: the builder's message is in *err when err is not NULL). */
SL_WUR sl_cql_send_rc_t sl_cql_conn_send(sl_cql_conn_t *conn, sl_cql_conn_build_fn build, void *arg,
                                         sl_cql_conn_cb cb, void *ctx, const char **err);
/* The same with a ready-made request frame (len bytes, borrowed for the
 * call), built with any stream id: the copy gets its own id in bytes 2-3.
 * Handy for resending the same bytes after a retriable failure. The frame
 * must be uncompressed (flag 0x01 clear): the connection compresses it when
 * LZ4 is in use. */
SL_WUR sl_cql_send_rc_t sl_cql_conn_send_frame(sl_cql_conn_t *conn, const uint8_t *frame,
                                               size_t len, sl_cql_conn_cb cb, void *ctx,
                                               const char **err);

/* "lz4" once the STARTUP asked for LZ4 compression (see opts.compression),
 * else NULL: set during the handshake, final when the state is READY. */
const char *sl_cql_conn_compression(const sl_cql_conn_t *conn);

/* Counters since creation. */
void sl_cql_conn_stats(const sl_cql_conn_t *conn, sl_cql_conn_stats_t *out);

#endif
