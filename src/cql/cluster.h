/* A CQL cluster session: connections to every host of the local data
 * center, discovered from system.local / system.peers, prepared statements
 * kept prepared on each of them, and token-aware routing of requests.
 *
 * Like a connection (cql/conn.h), a session owns no thread: the caller's
 * event loop polls the sockets sl_cql_cluster_pollfds() lists, hands the
 * results to sl_cql_cluster_process(), and wakes up no later than
 * sl_cql_cluster_next_timeout_ms(). A session and its callbacks belong to the
 * thread that calls process. One session per thread (Sluice: one per lane).
 * Requests sent between two process calls get their deadlines from the time
 * given to the last call (as in cql/conn.h), so call process after every
 * wake-up from poll, before sending.
 *
 * What happens inside process:
 * - A control connection to the first contact point that answers (then the
 *   others in turn) reads system.local and system.peers (address, data
 *   center, rack, tokens) and the keyspace's replication from
 *   system_schema.keyspaces, registers for TOPOLOGY_CHANGE and STATUS_CHANGE
 *   events, and refreshes all that when an event arrives or the control
 *   connection is lost.
 * - Each host of the local data center (opts.local_dc, or the data center of
 *   the contact point the control connection reached) gets
 *   connections_per_host connections. Hosts of other data centers get none.
 *   A peer's address is its rpc_address (its peer address when rpc_address is
 *   0.0.0.0 or ::); the port is opts.port for every host.
 * - A connection that fails marks its host down; the host is tried again
 *   after an exponential backoff with jitter (reconnect_min_ms doubling up
 *   to reconnect_max_ms), and at once on a STATUS_CHANGE UP event for it.
 * - Every statement registered with sl_cql_cluster_prepare() is PREPAREd on
 *   each connection when it becomes ready, before the connection takes
 *   EXECUTEs of that statement. An Unprepared error (0x2500) makes the
 *   session PREPARE the statement on that connection again; the request is
 *   reported to its callback with class SL_CQL_ERRCLASS_REPREPARE, and the
 *   caller resends it (nothing was executed).
 *
 * Routing: a request for a prepared statement carries the values of its
 * first statement; the session builds the routing key from the partition key
 * bind markers the PREPARE result named (cql/routing.h), hashes it with
 * Murmur3 (cql/murmur3.h) and sends to the first replica of that token (ring
 * order, SimpleStrategy or NetworkTopologyStrategy replicas in the local data
 * center) that has a ready connection with a free stream id; when no replica
 * can take it, to the next ready local host in round-robin order. Requests
 * without routing information go round-robin.
 *
 * Self-contained: depends only on src/util and src/cql. Not thread-safe. */
#ifndef SL_CQL_CLUSTER_H
#define SL_CQL_CLUSTER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cql/conn.h" /* sl_cql_send_rc_t */
#include "cql/frame.h"
#include "cql/result.h"
#include "util/common.h"

typedef struct sl_cql_cluster sl_cql_cluster_t;

typedef struct sl_cql_cluster_opts {
    const char *const *contact_points; /* numeric addresses or names; n_contact_points >= 1 */
    size_t n_contact_points;
    int port; /* 0: 9042 */
    const char
        *keyspace; /* USE on every connection, and the replication to route by; may be NULL */
    const char *local_dc;      /* NULL: the data center of the first contact point reached */
    const char *user;          /* SASL PLAIN (PasswordAuthenticator); NULL: none */
    const char *password;      /* never logged, never in an error message */
    int connections_per_host;  /* 0: 1 */
    int max_inflight;          /* per connection; 0: 1024 */
    int connect_timeout_ms;    /* 0: 5000 */
    int request_timeout_ms;    /* 0: 12000 */
    int heartbeat_interval_ms; /* 0: 30000 */
    int reconnect_min_ms;      /* 0: 500 */
    int reconnect_max_ms;      /* 0: 30000 */
    bool token_aware;          /* false: round-robin over local hosts */
    bool compression;          /* LZ4 frame compression where the server offers it; false: none */
    /* TLS on every connection: see the tls fields of sl_cql_conn_opts_t
     * (cql/conn.h). Hosts are reached by address, so with tls_verify_host
     * each node's certificate must name its address unless
     * tls_server_name gives the one name every certificate carries. */
    bool tls;
    bool tls_verify_host;
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_server_name;
    /* Log lines (connections lost, hosts up/down, topology) go here; NULL:
     * none. level: 0 debug, 1 info, 2 warn, 3 error. */
    void (*log)(void *ctx, int level, const char *msg);
    void *log_ctx;
} sl_cql_cluster_opts_t;

/* Creates a session and starts connecting to the contact points (strings are
 * copied). Returns NULL with a message in err (errlen bytes) only for bad
 * options; unreachable hosts are not an error here (see
 * sl_cql_cluster_ready and sl_cql_cluster_error). */
sl_cql_cluster_t *sl_cql_cluster_create(const sl_cql_cluster_opts_t *opts, char *err,
                                        size_t errlen);
/* Fails every pending request (callbacks run with SL_CQL_REQ_LOST), closes
 * every connection and frees the session. NULL is a no-op. Not from inside a
 * callback of the session. */
void sl_cql_cluster_destroy(sl_cql_cluster_t *c);

/* Fills fds (room for max) with the sockets to poll and the events wanted,
 * and returns how many it filled. A session has at most
 * 1 + hosts * connections_per_host sockets. */
int sl_cql_cluster_pollfds(const sl_cql_cluster_t *c, struct pollfd *fds, int max);
/* Does all the work that is due. fds/n: the array the last pollfds call
 * filled, with revents set by poll (n 0, or revents 0, is fine: timers and
 * writes are still handled). */
void sl_cql_cluster_process(sl_cql_cluster_t *c, const struct pollfd *fds, int n, int64_t now_ms);
/* The absolute time (sl_now_ms clock) at which process must run again even
 * without socket events, or -1 if none. */
int64_t sl_cql_cluster_next_timeout_ms(const sl_cql_cluster_t *c);

/* True when discovery is done and at least one local host has a ready
 * connection on which every registered statement is prepared (statements
 * that failed to prepare, see sl_cql_cluster_prepare_error, do not count:
 * sending them gives SL_CQL_SEND_INVALID with the server's message). */
bool sl_cql_cluster_ready(const sl_cql_cluster_t *c);
/* Why the session cannot send now (e.g. "127.0.0.1:9042: connection refused;
 * no host of data center dc1 is up"), or "" when it can. Borrowed. */
const char *sl_cql_cluster_error(const sl_cql_cluster_t *c);

/* ---- hosts ------------------------------------------------------------------ */

typedef struct sl_cql_host_info {
    const char *address; /* "127.0.0.2" (borrowed) */
    const char *dc, *rack;
    bool local;        /* in the local data center */
    bool up;           /* has a ready connection */
    uint64_t requests; /* requests sent to it by this session */
    /* Has a ready connection on which every registered statement is
     * prepared (requests for it can go there now). */
    bool ready;
} sl_cql_host_info_t;

/* Number of hosts discovered (all data centers), and host i of them. Hosts
 * are never removed from the list, so an index (sl_cql_outcome_t.host) stays
 * valid for the session's life: a host that left the cluster stays, with
 * local and up false and no connections. */
size_t sl_cql_cluster_hosts(const sl_cql_cluster_t *c);
void sl_cql_cluster_host(const sl_cql_cluster_t *c, size_t i, sl_cql_host_info_t *out);

/* ---- statements --------------------------------------------------------------- */

/* Registers a statement to prepare on every connection (cql is copied) and
 * returns its handle (>= 0), or -1 with a message in err. Preparing starts at
 * once on ready connections. */
int sl_cql_cluster_prepare(sl_cql_cluster_t *c, const char *cql, size_t len, char *err,
                           size_t errlen);
/* The PREPARE result of statement h from the first host that answered
 * (bind markers with names and types, partition key indexes), or NULL while
 * no host has answered yet. Borrowed from the session; valid until destroy. */
const sl_cql_prepared_t *sl_cql_cluster_prepared(const sl_cql_cluster_t *c, int h);
/* Non-NULL when a host refused to prepare statement h (a syntax or invalid
 * query error: the server's message). Such a statement is never sent. */
const char *sl_cql_cluster_prepare_error(const sl_cql_cluster_t *c, int h);

/* ---- requests ----------------------------------------------------------------- */

/* How a request ended. The callback runs exactly once per request, from
 * process or destroy, never from the send call. */
typedef struct sl_cql_outcome {
    bool ok;                           /* a RESULT arrived */
    const sl_cql_response_t *response; /* ok: the decoded RESULT (borrowed for the call) */
    /* Not ok: */
    sl_cql_errclass_t cls; /* RETRIABLE, PERMANENT, FATAL or REPREPARE */
    int32_t code;          /* the server's error code, or -1 for TIMEOUT/LOST */
    bool maybe_applied;    /* the request may have been executed */
    sl_cql_write_type_t write_type;
    const char *message; /* "host 127.0.0.2: Write_timeout: ..." (borrowed for the call) */
    int host;            /* index of the host it was sent to (sl_cql_cluster_host) */
} sl_cql_outcome_t;

typedef void (*sl_cql_cluster_cb)(void *ctx, const sl_cql_outcome_t *outcome);

/* One request: EXECUTE of a prepared statement (n_rows == 1, batch_type
 * ignored) or a BATCH of n_rows executions of it (n_rows > 1). rows[i] holds
 * the n_values values of row i, in bind marker order. Routing uses rows[0]. */
typedef struct sl_cql_request {
    int stmt; /* handle from sl_cql_cluster_prepare */
    const sl_cql_bytes_t *const *rows;
    size_t n_rows;
    size_t n_values; /* per row: must equal the statement's bind marker count */
    sl_cql_batch_type_t batch_type;
    uint16_t consistency;
    bool has_timestamp;
    int64_t timestamp; /* microseconds (default timestamp flag) */
} sl_cql_request_t;

/* Sends req (borrowed for the call) to the host routing picks. Returns
 * SL_CQL_SEND_OK (cb will run), SL_CQL_SEND_AGAIN (no ready connection has a
 * free stream id now, or the statement is not prepared anywhere yet: try
 * again after process), SL_CQL_SEND_DOWN (no local host is up) or
 * SL_CQL_SEND_INVALID (bad request: wrong value count, a statement that
 * failed to prepare, a frame over the size limit; message in *err). */
SL_WUR sl_cql_send_rc_t sl_cql_cluster_send(sl_cql_cluster_t *c, const sl_cql_request_t *req,
                                            sl_cql_cluster_cb cb, void *ctx, const char **err);

/* Sends an unprepared QUERY (cql borrowed for the call, no values) to the next
 * ready local host, round-robin. Same returns as sl_cql_cluster_send. */
SL_WUR sl_cql_send_rc_t sl_cql_cluster_query(sl_cql_cluster_t *c, const char *cql, size_t len,
                                             uint16_t consistency, sl_cql_cluster_cb cb, void *ctx,
                                             const char **err);

/* The token rows[0] of req routes to, and whether it has one (false: the
 * statement has no partition key markers or a key value is null). */
bool sl_cql_cluster_token(const sl_cql_cluster_t *c, int stmt, const sl_cql_bytes_t *values,
                          size_t n_values, int64_t *token);

#endif
