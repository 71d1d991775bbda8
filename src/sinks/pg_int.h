/* Internals of the PostgreSQL sink: postgres.c (options, table checks, the
 * lane side) and pg_txn.c (the per-lane worker thread that runs the
 * transactions). Not for other modules. */
#ifndef SL_SINKS_PG_INT_H
#define SL_SINKS_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/plugin.h"
#include "util/buf.h"

enum { PG_INSERT = 0, PG_UPSERT, PG_COPY };

typedef struct pg_col {
    char *name; /* the table's column */
    size_t field;
    sl_type_t type;
    bool add; /* upsert: column = table.column + EXCLUDED.column */
    int bin;  /* its COPY binary encoding (PG_BIN_*), from the column's type */
} pg_col_t;

/* How a field goes into a column in COPY's binary format (PG_BIN_NONE:
 * only as text, e.g. numeric). */
enum {
    PG_BIN_NONE = 0,
    PG_BIN_INT4,
    PG_BIN_INT8,
    PG_BIN_FLOAT4,
    PG_BIN_FLOAT8,
    PG_BIN_INT_FLOAT8, /* an int32 field into a float8 column */
    PG_BIN_BOOL,
    PG_BIN_DATE,  /* int32 days since 2000-01-01 */
    PG_BIN_TS,    /* int64 microseconds since 2000-01-01 00:00 UTC */
    PG_BIN_TEXT,  /* the bytes (text, varchar, bpchar, name, json) */
    PG_BIN_JSONB, /* version 1, then the text */
};

typedef struct pg_shared {
    char **kw, **val; /* libpq connection keywords/values, NULL-terminated (password inside) */
    char *table_q;    /* the table, quoted */
    char *name;       /* "sink.postgres" */
    int mode;
    size_t *key_fields; /* upsert: the conflict columns' fields */
    size_t n_key;
    const sl_schema_t *schema;
    pg_col_t *cols;
    size_t n_cols;
    char *insert_head;    /* INSERT INTO t AS sl_t (cols) VALUES */
    char *insert_tail;    /* "" or ON CONFLICT (...) DO UPDATE SET ... */
    bool copy_binary;     /* COPY in binary format (copy_format, column types) */
    char *copy_sql;       /* COPY t (cols) FROM STDIN [WITH (FORMAT binary)] */
    char *begin_copy_sql; /* BEGIN;COPY t (cols) FROM STDIN (one round trip less) */
    bool eos;
    char *offsets_q;   /* the offsets table, quoted */
    char *offsets_sql; /* stores one partition's next offset: $1 group .. $4 next */
    char *group;
    int64_t max_rows, max_bytes, max_delay_ms;
    int64_t backoff_ms, backoff_max_ms;
    atomic_bool healthy;
    atomic_uint_fast64_t txns, retries, rejected, reconnects;
} pg_shared_t;

/* One row of a job: the record it came from and, once run, its fate. */
typedef struct pg_row {
    sl_batch_t *batch;
    uint32_t idx;
    uint64_t key; /* upsert: hash of the conflict columns' values */
    bool rejected;
    bool reported; /* rejected and handed to the dead-letter path (before the commit) */
    char *reason;  /* owned, when rejected */
} pg_row_t;

/* The next offset to store per partition (exactly_once). */
typedef struct pg_off {
    char *topic; /* borrowed from the lane's partition (alive while the lane is) */
    int32_t partition;
    int64_t next;
} pg_off_t;

/* One transaction's worth of rows, encoded as text: params mode keeps each
 * value NUL-terminated at off[row * n_cols + col] (SIZE_MAX: SQL NULL);
 * COPY mode keeps one line per row, row r at off[r] .. off[r + 1]. */
typedef struct pg_job {
    struct pg_sink *owner;
    pg_row_t *rows;
    size_t n, cap;
    sl_buf_t text;
    size_t *off;
    size_t n_off, cap_off;
    pg_off_t *offs;
    size_t n_offs, cap_offs;
    int64_t first_ms;    /* when its first row came */
    bool sealed;         /* an aggregate flush: nothing more goes in */
    size_t rejects_left; /* under the sink's mu: rejected rows not yet dead-lettered */
} pg_job_t;

/* A lane's sink instance. */
typedef struct pg_sink {
    pg_shared_t *sh;
    sl_lane_t *lane;
    pg_job_t *cur; /* being filled (lane thread) */
    int jobs_out;  /* jobs handed to the worker, not done (lane thread's view): at most 2 */
    bool flush;    /* dispatch cur as soon as possible */
    bool closed;   /* closed with results still posted: pt_done frees it */
    pthread_t thr;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pg_job_t *todo; /* handed to the worker, not yet taken (under mu): the worker
                     * starts it as soon as it finishes the one it runs */
    bool stop;      /* under mu */
    PGconn *conn;   /* worker thread only */
    int64_t last_log_ms;
} pg_sink_t;

/* pg_txn.c */
int pg_worker_start(pg_sink_t *s, char *err);
void pg_worker_stop(pg_sink_t *s);
/* Connects with the shared settings; returns the connection or NULL with
 * err[256]. */
PGconn *pg_connect(const pg_shared_t *sh, char *err);
void pg_job_free(pg_job_t *j);
/* Reads the offset stored for (group, topic, partition) into *next (-1:
 * none). Returns 0, or -1 with the server's message in err[256]. */
int pg_stored_offset(PGconn *c, const pg_shared_t *sh, const char *topic, int32_t partition,
                     int64_t *next, char *err);

#endif
