/* The CQL test node: an in-memory CQL v4 server used as a test fixture (not a
 * database). Single-threaded: every function here runs on the event loop.
 *
 * cqlnode.c   event loop, connections, frames, the protocol's messages
 * cn_parse.c  tokenizer and parser for the CQL subset the node understands
 * cn_exec.c   schema, tables in memory, statement execution, RESULT bodies */
#ifndef SL_CQLNODE_H
#define SL_CQLNODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cql/frame.h"
#include "cql/result.h"
#include "util/arena.h"
#include "util/buf.h"

#define CN_MAX_COLS 64
#define CN_MAX_TERMS 256
#define CN_NAME_MAX 128

/* A column type: a native type id, or list/set (p1) / map (p1, p2) of native types. */
typedef struct cn_type {
    uint16_t id;
    uint16_t p1, p2;
} cn_type_t;

/* ---- Parser (cn_parse.c) ------------------------------------------------------------------ */

typedef enum cn_tok_kind {
    CN_T_END = 0,
    CN_T_IDENT,  /* unquoted: lowercased */
    CN_T_QIDENT, /* "quoted": as written */
    CN_T_STRING, /* 'text' unescaped */
    CN_T_NUMBER, /* -?digits[.digits][e[+-]digits], as written */
    CN_T_UUID,
    CN_T_BLOB, /* 0x...: s holds the hex digits after 0x */
    CN_T_PUNCT,
    CN_T_NAMED, /* :name bind marker; s is the name */
} cn_tok_kind_t;

typedef struct cn_tok {
    cn_tok_kind_t kind;
    const char *s; /* arena, NUL-terminated */
    size_t n;
    char c; /* CN_T_PUNCT */
} cn_tok_t;

typedef enum cn_term_kind {
    CN_TERM_LIT = 1,
    CN_TERM_MARKER,
} cn_term_kind_t;

typedef struct cn_term {
    cn_term_kind_t kind;
    cn_tok_t lit;     /* LIT: NUMBER, STRING, UUID, BLOB, or IDENT true/false/null */
    int marker;       /* MARKER: its index among the statement's markers */
    const char *name; /* MARKER: the name of a :name marker, else NULL */
} cn_term_t;

typedef enum cn_op {
    CN_OP_SET = 1,
    CN_OP_ADD,
    CN_OP_SUB,
} cn_op_t;

typedef struct cn_assign {
    const char *col;
    cn_op_t op;
    cn_term_t term;
} cn_assign_t;

typedef struct cn_where {
    const char *col;
    cn_term_t term;
} cn_where_t;

typedef enum cn_stmt_kind {
    CN_ST_CREATE_KEYSPACE = 1,
    CN_ST_CREATE_TABLE,
    CN_ST_USE,
    CN_ST_INSERT,
    CN_ST_UPDATE,
    CN_ST_DELETE,
    CN_ST_SELECT,
} cn_stmt_kind_t;

/* Marker roles other than a column: LIMIT ?, USING TTL ?, USING TIMESTAMP ?. */
#define CN_MARK_LIMIT (-2)
#define CN_MARK_TTL (-3)
#define CN_MARK_TIMESTAMP (-4)

typedef struct cn_stmt {
    cn_stmt_kind_t kind;
    const char *ks;   /* NULL: the session's keyspace */
    const char *name; /* table, or keyspace for CREATE KEYSPACE / USE */
    bool if_not_exists;
    /* CREATE KEYSPACE: the replication map as written, durable_writes (-1: not given) */
    const char *repl_keys[16], *repl_vals[16];
    size_t n_repl;
    int durable_writes;
    /* CREATE TABLE */
    const char *def_names[CN_MAX_COLS];
    cn_type_t def_types[CN_MAX_COLS];
    size_t n_defs;
    const char *pk[CN_MAX_COLS];
    size_t n_pk;
    const char *ck[CN_MAX_COLS];
    size_t n_ck;
    /* INSERT: cols and vals; SELECT: cols (star when n_cols is 0) */
    const char *cols[CN_MAX_COLS];
    cn_term_t vals[CN_MAX_COLS];
    size_t n_cols;
    bool star;
    /* UPDATE */
    cn_assign_t sets[CN_MAX_COLS];
    size_t n_sets;
    /* UPDATE, DELETE, SELECT */
    cn_where_t where[CN_MAX_COLS];
    size_t n_where;
    bool has_limit, has_ttl, has_timestamp;
    cn_term_t limit, ttl, timestamp;
    /* Bind markers, in order: the column each binds (its name), or CN_MARK_*. */
    int n_markers;
    const char *marker_col[CN_MAX_TERMS];
    int marker_role[CN_MAX_TERMS]; /* 0: a column (marker_col), else CN_MARK_* */
} cn_stmt_t;

/* Parses one statement (a trailing ';' is allowed) into *out, allocating
 * from a. Returns 0, or -1 with a Syntax-error message in err. */
int cn_parse(const char *q, size_t n, sl_arena_t *a, cn_stmt_t *out, char *err, size_t errlen);

/* Parses a type name ("int", "set<text>") into *out. Returns 0 or -1. */
int cn_type_parse(const char *name, cn_type_t *out);

/* ---- Execution (cn_exec.c) ---------------------------------------------------------------- */

/* An error to send as an ERROR frame. */
typedef struct cn_err {
    int32_t code;
    char msg[512];
    char ks[CN_NAME_MAX], table[CN_NAME_MAX]; /* AlreadyExists */
    uint8_t id[16];                           /* Unprepared */
    uint16_t cl;                              /* Unavailable, timeouts, failures */
    char write_type[32];                      /* Write_timeout, Write_failure */
} cn_err_t;

/* Another node of the cluster, announced in system.peers. */
typedef struct cn_peer {
    const char *addr;   /* IPv4 address: peer and rpc_address */
    int port;           /* native port (only feeds the host_id) */
    const char *tokens; /* comma-separated */
    const char *dc;     /* its data center (NULL: this node's) */
} cn_peer_t;

typedef struct cn_node_conf {
    const char *listen;       /* IPv4 address, e.g. 127.0.0.1 */
    const char *tokens;       /* comma-separated tokens of this node */
    const char *cluster_name; /* system.local cluster_name */
    const char *dc, *rack;
    int port; /* system.local rpc_port */
    const cn_peer_t *peers;
    size_t n_peers;
} cn_node_conf_t;

/* Counters for the dump's stats line. requests counts every frame; queries,
 * executes, prepares and batches their opcodes; rows_written each INSERT,
 * UPDATE or DELETE applied to a user table (one per batch statement);
 * errors_injected the ERRORs sent by fault injection. */
typedef struct cn_stats {
    uint64_t requests, queries, executes, prepares, batches, rows_written, errors_injected;
} cn_stats_t;

extern cn_stats_t cn_stats;

/* Creates the node's schema (system.local, and system.peers with a row per
 * peer). Every node derives a host's host_id from its address and port, so
 * all nodes agree on it; peers report this node's schema_version. */
void cn_node_init(const cn_node_conf_t *conf);
void cn_node_free(void);

/* One query's inputs. values borrow from the request frame. */
typedef struct cn_request {
    const char *keyspace; /* the connection's keyspace ("" for none) */
    const sl_cql_bytes_t *values;
    const char *const *names; /* NULL, or a name per value */
    size_t n_values;
    bool skip_metadata;
    uint16_t consistency;
} cn_request_t;

/* Parses and runs one statement; on success appends the RESULT body to out
 * and returns 0 (a USE also copies the keyspace to new_ks, CN_NAME_MAX
 * bytes); on failure returns -1 with *err set and out unchanged. */
int cn_exec_query(const char *q, size_t n, const cn_request_t *req, sl_buf_t *out, char *new_ks,
                  cn_err_t *err);
/* PREPARE: appends the Prepared RESULT body to out, or returns -1 with *err. */
int cn_exec_prepare(const char *q, size_t n, const char *keyspace, sl_buf_t *out, cn_err_t *err);
/* EXECUTE of a prepared id: as cn_exec_query (Unprepared for an unknown id). */
int cn_exec_prepared(const uint8_t *id, size_t id_len, const cn_request_t *req, sl_buf_t *out,
                     char *new_ks, cn_err_t *err);
/* Whether a statement is a data request (INSERT, UPDATE, DELETE or SELECT on
 * a user keyspace) for fault injection; *counter tells a counter-table write.
 * Statements that do not parse are not data requests. */
bool cn_is_data(const char *q, size_t n, const char *keyspace, bool *counter);
/* The same for a prepared id (false for an unknown id). */
bool cn_prepared_is_data(const uint8_t *id, size_t id_len, bool *counter);
/* Writes every user table as JSON lines (one object per row) to path, then
 * the line extra (borrowed; NULL for none) if given. */
int cn_dump(const char *path, const char *extra);

/* Formats into err->msg and sets err->code; returns -1 for convenience. */
int cn_fail(cn_err_t *err, int32_t code, const char *fmt, ...) SL_PRINTF(3, 4);

#endif
