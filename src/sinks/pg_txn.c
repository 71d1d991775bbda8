/* The PostgreSQL sink's worker thread (one per lane): runs each job as one
 * transaction (rows, and with exactly_once the partitions' next offsets),
 * retries it whole on connection loss, serialization failure, deadlock or
 * shutdown of the server, and isolates rows PostgreSQL rejects (data errors)
 * by bisection under savepoints so the others still commit. Results go back
 * to the lane thread as a posted closure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinks/pg_int.h"
#include "util/log.h"

/* PT_UNKNOWN: the connection broke during COMMIT, which may have happened. */
typedef enum { PT_OK = 0, PT_RETRY, PT_DATA, PT_ALL, PT_UNKNOWN, PT_STOP } pt_rc_t;

/* Server notices ("relation ... already exists, skipping") go to the debug
 * log, not to stderr. */
static void pg_notice(void *arg, const char *msg)
{
    (void)arg;
    sl_log_debug("sink.postgres", "server notice", "notice=\"%.*s\"", (int)strcspn(msg, "\n"), msg);
}

PGconn *pg_connect(const pg_shared_t *sh, char *err)
{
    /* expand_dbname: the first value (dbname) is the user's conninfo string */
    PGconn *c = PQconnectdbParams((const char *const *)sh->kw, (const char *const *)sh->val, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        size_t n = strcspn(m, "\n");
        snprintf(err, 256, "%.*s", (int)SL_MIN(n, 200), m);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, pg_notice, NULL);
    return c;
}

void pg_job_free(pg_job_t *j)
{
    if (j == NULL) {
        return;
    }
    for (size_t i = 0; i < j->n; i++) {
        free(j->rows[i].reason);
    }
    free(j->rows);
    free(j->off);
    free(j->offs);
    sl_buf_free(&j->text);
    free(j);
}

/* ---- errors ---------------------------------------------------------------------------------- */

/* What a failed result means for the transaction. */
static pt_rc_t pt_classify(PGconn *c, const PGresult *r)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (st == NULL || PQstatus(c) != CONNECTION_OK) {
        return PT_RETRY; /* the connection went away */
    }
    if (strncmp(st, "08", 2) == 0 || strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 ||
        strncmp(st, "57P", 3) == 0 || strcmp(st, "57014") == 0 || strcmp(st, "55P03") == 0 ||
        strncmp(st, "53", 2) == 0 || strncmp(st, "58", 2) == 0) {
        return PT_RETRY; /* connection, serialization, deadlock, shutdown, resources */
    }
    if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0) {
        return PT_DATA; /* this row's values: find it */
    }
    return PT_ALL; /* the statement itself (privileges, a dropped column): every row */
}

/* "postgres: SQLSTATE 23514: new row ... violates check constraint ..." */
static char *pt_reason(const PGresult *r, PGconn *c)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char buf[300];
    snprintf(buf, sizeof(buf), "postgres: SQLSTATE %s: %s", st ? st : "?",
             m ? m : PQerrorMessage(c));
    buf[strcspn(buf, "\n")] = '\0';
    return sl_xstrdup(buf);
}

static bool pt_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
}

/* ---- writing rows -----------------------------------------------------------------------------
 */

/* Keys remembered per upsert statement (twice its most rows). */
#define PT_SEEN 2048

/* Rows per INSERT statement: PostgreSQL takes at most 65535 parameters. */
static size_t pt_chunk(const pg_shared_t *sh)
{
    return SL_MIN((size_t)1000, 65535 / sh->n_cols);
}

/* The rows of [lo, hi) not dead-lettered by an earlier attempt (those stay
 * out); *nr of them. Caller frees. */
static size_t *pt_rows(const pg_job_t *j, size_t lo, size_t hi, size_t *nr)
{
    size_t *rows = sl_xmalloc((hi - lo + 1) * sizeof(size_t));
    *nr = 0;
    for (size_t i = lo; i < hi; i++) {
        if (!j->rows[i].reported) {
            rows[(*nr)++] = i;
        }
    }
    return rows;
}

/* Builds the INSERT for rows[at..nr): up to pt_chunk rows, and for upsert
 * ending before a key the statement already has (one statement cannot
 * update a row twice: SQLSTATE 21000). Fills sql and vals; returns the
 * number of rows it holds. */
static size_t pt_stmt(const pg_shared_t *sh, const pg_job_t *j, const size_t *rows, size_t at,
                      size_t nr, sl_buf_t *sql, const char **vals)
{
    size_t nc = sh->n_cols, n = SL_MIN(pt_chunk(sh), nr - at);
    if (sh->mode == PG_UPSERT) {
        uint64_t seen[PT_SEEN];
        memset(seen, 0, sizeof(seen));
        for (size_t r = 0; r < n; r++) {
            uint64_t k = j->rows[rows[at + r]].key | 1; /* 0 marks an empty slot */
            size_t slot = (size_t)k % PT_SEEN;
            while (seen[slot] != 0 && seen[slot] != k) {
                slot = (slot + 1) % PT_SEEN;
            }
            if (seen[slot] == k) {
                n = r;
                break;
            }
            seen[slot] = k;
        }
    }
    sql->len = 0;
    sl_buf_puts(sql, sh->insert_head);
    for (size_t r = 0; r < n; r++) {
        sl_buf_puts(sql, r ? ",(" : "(");
        for (size_t k = 0; k < nc; k++) {
            sl_buf_printf(sql, "%s$%zu", k ? "," : "", r * nc + k + 1);
            size_t o = j->off[rows[at + r] * nc + k];
            vals[r * nc + k] = o == SIZE_MAX ? NULL : j->text.data + o;
        }
        sl_buf_putc(sql, ')');
    }
    sl_buf_puts(sql, sh->insert_tail);
    return n;
}

/* COPY of rows[0..nr) (with_begin: "BEGIN; COPY ...", one round trip
 * less). Returns NULL, or the failed result (caller clears). */
static PGresult *pt_copy(pg_sink_t *s, pg_job_t *j, const size_t *rows, size_t nr, bool with_begin)
{
    PGresult *r = PQexec(s->conn, with_begin ? s->sh->begin_copy_sql : s->sh->copy_sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        return r;
    }
    PQclear(r);
    /* binary format: signature, flags, header extension length; the rows;
     * a field count of -1 */
    static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    static const char trailer[2] = "\377\377";
    bool bin = s->sh->copy_binary;
    int ok = !bin || PQputCopyData(s->conn, header, sizeof(header)) == 1;
    for (size_t i = 0; i < nr && ok;) {
        size_t k = i + 1; /* a run of consecutive rows goes in one piece */
        while (k < nr && rows[k] == rows[k - 1] + 1) {
            k++;
        }
        size_t a = j->off[rows[i]], e = j->off[rows[k - 1] + 1];
        ok = PQputCopyData(s->conn, j->text.data + a, (int)(e - a)) == 1;
        i = k;
    }
    ok = ok && (!bin || PQputCopyData(s->conn, trailer, sizeof(trailer)) == 1);
    ok = PQputCopyEnd(s->conn, ok ? NULL : "sluice: putCopyData failed") == 1 && ok;
    r = PQgetResult(s->conn);
    PGresult *extra;
    while ((extra = PQgetResult(s->conn)) != NULL) {
        PQclear(extra);
    }
    if (ok && PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Runs rows [lo, hi) of j, one statement at a time: INSERT statements of
 * up to pt_chunk rows, or one COPY. Returns NULL, or the failed result
 * (caller clears). */
static PGresult *pt_write(pg_sink_t *s, pg_job_t *j, size_t lo, size_t hi)
{
    const pg_shared_t *sh = s->sh;
    size_t nr;
    size_t *rows = pt_rows(j, lo, hi, &nr);
    PGresult *fail = NULL;
    if (nr == 0) {
        free(rows);
        return NULL;
    }
    if (sh->mode == PG_COPY) {
        fail = pt_copy(s, j, rows, nr, false);
        free(rows);
        return fail;
    }
    const char **vals = sl_xmalloc(pt_chunk(sh) * sh->n_cols * sizeof(char *));
    sl_buf_t sql = SL_BUF_INIT;
    for (size_t at = 0, n; at < nr && fail == NULL; at += n) {
        n = pt_stmt(sh, j, rows, at, nr, &sql, vals);
        PGresult *r =
            PQexecParams(s->conn, sql.data, (int)(n * sh->n_cols), NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fail = r;
        } else {
            PQclear(r);
        }
    }
    sl_buf_free(&sql);
    free(vals);
    free(rows);
    return fail;
}

/* Writes rows [lo, hi) under a savepoint, splitting on data errors until
 * each failing row is found and marked rejected. */
static pt_rc_t pt_bisect(pg_sink_t *s, pg_job_t *j, size_t lo, size_t hi)
{
    if (!pt_exec(s->conn, "SAVEPOINT sl_rows")) {
        return PT_RETRY;
    }
    PGresult *r = pt_write(s, j, lo, hi);
    if (r == NULL) {
        return pt_exec(s->conn, "RELEASE SAVEPOINT sl_rows") ? PT_OK : PT_RETRY;
    }
    pt_rc_t rc = pt_classify(s->conn, r);
    if (rc == PT_RETRY || !pt_exec(s->conn, "ROLLBACK TO SAVEPOINT sl_rows")) {
        PQclear(r);
        return PT_RETRY;
    }
    if (hi - lo == 1 || rc == PT_ALL) {
        for (size_t i = lo; i < hi; i++) {
            j->rows[i].rejected = true;
            j->rows[i].reason = pt_reason(r, s->conn);
        }
        PQclear(r);
        return PT_OK;
    }
    PQclear(r);
    size_t mid = lo + (hi - lo) / 2;
    rc = pt_bisect(s, j, lo, mid);
    return rc == PT_OK ? pt_bisect(s, j, mid, hi) : rc;
}

/* ---- rows PostgreSQL rejected: dead-lettered before the commit ----------------------------------
 */

/* On the lane thread: one rejected row reached the dead-letter path. */
static void pt_reject_acked(void *arg)
{
    pg_job_t *j = arg;
    pg_sink_t *s = j->owner;
    pthread_mutex_lock(&s->mu);
    j->rejects_left--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* On the lane thread: sends the job's newly rejected rows to the
 * dead-letter path, each watched until it is done. */
static void pt_rejects_post(sl_lane_t *lane, void *arg)
{
    (void)lane;
    pg_job_t *j = arg;
    pg_sink_t *s = j->owner;
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++) {
        n += j->rows[i].rejected && !j->rows[i].reported;
    }
    pthread_mutex_lock(&s->mu);
    j->rejects_left = n; /* all of them before the first can be acknowledged */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < j->n; i++) {
        pg_row_t *r = &j->rows[i];
        if (r->rejected && !r->reported) {
            r->reported = true;
            atomic_fetch_add(&s->sh->rejected, 1);
            sl_batch_watch(r->batch, r->idx, pt_reject_acked, j);
            sl_batch_result(r->batch, r->idx, SL_STATUS_REJECT, r->reason);
        }
    }
}

/* Dead-letters the rows this attempt rejected and waits until the
 * dead-letter path has them, so the commit (and with exactly_once the
 * offsets past them) never gets ahead of their dead letters. Returns false
 * if Sluice stops meanwhile. */
static bool pt_report_rejects(pg_sink_t *s, pg_job_t *j)
{
    bool any = false;
    for (size_t i = 0; i < j->n && !any; i++) {
        any = j->rows[i].rejected && !j->rows[i].reported;
    }
    if (!any) {
        return true;
    }
    pthread_mutex_lock(&s->mu);
    j->rejects_left = SIZE_MAX; /* posted, not counted yet */
    pthread_mutex_unlock(&s->mu);
    sl_lane_post(s->lane, pt_rejects_post, j);
    pthread_mutex_lock(&s->mu);
    while (j->rejects_left != 0 && !s->stop) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return !stop;
}

/* The parameters of sh->offsets_sql for one partition: group, topic,
 * partition, next. part/next: buffers of 16 and 24. */
static void pt_offset_params(const pg_shared_t *sh, const pg_off_t *o, const char **v, char *part,
                             char *next)
{
    snprintf(part, 16, "%d", (int)o->partition);
    snprintf(next, 24, "%lld", (long long)o->next);
    v[0] = sh->group;
    v[1] = o->topic;
    v[2] = part;
    v[3] = next;
}

/* Stores the job's partitions' next offsets (exactly_once). */
static PGresult *pt_offsets(pg_sink_t *s, pg_job_t *j)
{
    for (size_t i = 0; i < j->n_offs; i++) {
        char part[16], next[24];
        const char *v[4];
        pt_offset_params(s->sh, &j->offs[i], v, part, next);
        PGresult *r = PQexecParams(s->conn, s->sh->offsets_sql, 4, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            return r;
        }
        PQclear(r);
    }
    return NULL;
}

/* The whole transaction in one round trip (libpq pipeline mode): BEGIN, the
 * INSERT statements, the offsets (exactly_once) and COMMIT go out together,
 * then the results are read. COPY cannot be pipelined: it goes first as
 * "BEGIN; COPY ...", and the offsets and COMMIT follow in one pipeline.
 * A data error comes back as PT_DATA (the caller bisects, one statement at
 * a time); the server has skipped everything after the failed command. */
static pt_rc_t pt_txn_pipelined(pg_sink_t *s, pg_job_t *j)
{
    PGconn *c = s->conn;
    const pg_shared_t *sh = s->sh;
    size_t nr;
    size_t *rows = pt_rows(j, 0, j->n, &nr);
    if (sh->mode == PG_COPY) {
        PGresult *r = nr > 0 ? pt_copy(s, j, rows, nr, true) : NULL;
        bool began = nr > 0 || pt_exec(c, "BEGIN");
        if (r != NULL || !began) {
            pt_rc_t rc = r ? pt_classify(c, r) : PT_RETRY;
            PQclear(r);
            free(rows);
            (void)pt_exec(c, "ROLLBACK");
            return rc == PT_ALL ? PT_DATA : rc;
        }
    }
    if (PQenterPipelineMode(c) != 1) {
        free(rows);
        return PT_RETRY;
    }
    size_t cmds = 0;
    bool sent = true;
    const char **vals = NULL;
    sl_buf_t sql = SL_BUF_INIT;
    if (sh->mode != PG_COPY) {
        sent = PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
        cmds++;
        vals = sl_xmalloc(pt_chunk(sh) * sh->n_cols * sizeof(char *));
        for (size_t at = 0, n; at < nr && sent; at += n, cmds++) {
            n = pt_stmt(sh, j, rows, at, nr, &sql, vals);
            sent = PQsendQueryParams(c, sql.data, (int)(n * sh->n_cols), NULL, vals, NULL, NULL,
                                     0) == 1;
        }
    }
    for (size_t i = 0; sh->eos && i < j->n_offs && sent; i++, cmds++) {
        char part[16], next[24];
        const char *v[4];
        pt_offset_params(sh, &j->offs[i], v, part, next);
        sent = PQsendQueryParams(c, sh->offsets_sql, 4, NULL, v, NULL, NULL, 0) == 1;
    }
    sent = sent && PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
    cmds++;
    sent = sent && PQpipelineSync(c) == 1;
    sl_buf_free(&sql);
    free(vals);
    free(rows);
    pt_rc_t rc = PT_OK;
    for (size_t i = 0; sent && i <= cmds; i++) { /* the commands (COMMIT last), the sync point */
        PGresult *r = PQgetResult(c);
        if (r == NULL) {
            rc = PT_UNKNOWN; /* the connection went away */
            break;
        }
        ExecStatusType st = PQresultStatus(r);
        if (i == cmds) { /* the sync point */
            if (st != PGRES_PIPELINE_SYNC && rc == PT_OK) {
                rc = PT_UNKNOWN;
            }
            PQclear(r);
            break;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED &&
            rc == PT_OK) {
            if (PQstatus(c) != CONNECTION_OK) {
                rc = PT_UNKNOWN; /* COMMIT went out: it may have happened */
            } else if (i == cmds - 1) {
                rc = PT_RETRY; /* COMMIT refused: rolled back */
            } else {
                rc = pt_classify(c, r);
                rc = rc == PT_ALL ? PT_DATA : rc;
            }
        }
        PQclear(r);
        while ((r = PQgetResult(c)) != NULL) { /* the end of this command's results */
            PQclear(r);
        }
    }
    if (!sent) {
        rc = PT_RETRY; /* COMMIT never went out */
    }
    if (PQexitPipelineMode(c) != 1 || PQstatus(c) != CONNECTION_OK) {
        /* results left unread, or no connection: start afresh */
        PQfinish(s->conn);
        s->conn = NULL;
        return rc;
    }
    if (rc != PT_OK) {
        (void)pt_exec(c, "ROLLBACK"); /* the transaction block, left aborted */
    }
    return rc;
}

/* One attempt at the job's transaction. bisect: find the rejected rows,
 * one statement at a time under savepoints. */
static pt_rc_t pt_txn(pg_sink_t *s, pg_job_t *j, bool bisect)
{
    for (size_t i = 0; i < j->n; i++) {
        if (!j->rows[i].reported) {
            free(j->rows[i].reason);
            j->rows[i].reason = NULL;
            j->rows[i].rejected = false;
        }
    }
    if (!bisect) {
        return pt_txn_pipelined(s, j);
    }
    if (!pt_exec(s->conn, "BEGIN")) {
        return PT_RETRY;
    }
    pt_rc_t rc = pt_bisect(s, j, 0, j->n);
    if (rc == PT_OK && s->sh->eos) {
        PGresult *r = pt_offsets(s, j);
        if (r != NULL) {
            /* the offsets table itself failed: not the rows' fault */
            sl_log_warn(s->sh->name, "storing offsets failed: retrying the transaction",
                        "error=\"%s\"", PQresultErrorMessage(r));
            PQclear(r);
            rc = PT_RETRY;
        }
    }
    if (rc == PT_OK && !pt_report_rejects(s, j)) {
        rc = PT_STOP;
    }
    if (rc != PT_OK) {
        (void)pt_exec(s->conn, "ROLLBACK");
        return rc;
    }
    PGresult *r = PQexec(s->conn, "COMMIT");
    rc = PQresultStatus(r) == PGRES_COMMAND_OK ? PT_OK
         : PQstatus(s->conn) != CONNECTION_OK  ? PT_UNKNOWN
                                               : PT_RETRY; /* refused: rolled back */
    PQclear(r);
    return rc;
}

int pg_stored_offset(PGconn *c, const pg_shared_t *sh, const char *topic, int32_t partition,
                     int64_t *next, char *err)
{
    char sql[300], part[16];
    snprintf(sql, sizeof(sql),
             "SELECT next_offset FROM %s WHERE group_id = $1 AND topic = $2 AND partition = $3",
             sh->offsets_q);
    snprintf(part, sizeof(part), "%d", (int)partition);
    const char *v[3] = {sh->group, topic, part};
    PGresult *r = PQexecParams(c, sql, 3, NULL, v, NULL, NULL, 0);
    int rc = 0;
    *next = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, 256, "%s: reading %s failed: %s", sh->name, sh->offsets_q,
                 PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = '\0';
        rc = -1;
    } else if (PQntuples(r) == 1) {
        *next = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    }
    PQclear(r);
    return rc;
}

/* After a COMMIT whose outcome is unknown (exactly_once): did it happen?
 * Yes if every partition's stored offset reached the job's. Returns 1, 0,
 * or -1 when the server cannot tell now. */
static int pt_committed(pg_sink_t *s, const pg_job_t *j)
{
    if (j->n_offs == 0) {
        return 0; /* nothing to tell by: write again (at-least-once) */
    }
    for (size_t i = 0; i < j->n_offs; i++) {
        int64_t next;
        char err[256];
        if (pg_stored_offset(s->conn, s->sh, j->offs[i].topic, j->offs[i].partition, &next, err) !=
            0) {
            return -1;
        }
        if (next < j->offs[i].next) {
            return 0;
        }
    }
    return 1;
}

/* ---- the thread --------------------------------------------------------------------------------
 */

/* Sleeps ms unless asked to stop; returns true if stopping. */
static bool pt_wait(pg_sink_t *s, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    if (!s->stop) {
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void pt_log(pg_sink_t *s, const char *what, const char *detail)
{
    int64_t now = sl_now_ms();
    if (now - s->last_log_ms >= 1000) {
        s->last_log_ms = now;
        sl_log_warn(s->sh->name, what, "error=\"%s\"", detail);
    }
}

/* Runs j until it commits (or Sluice stops: then false, nothing reported
 * as written). */
static bool pt_run(pg_sink_t *s, pg_job_t *j)
{
    pg_shared_t *sh = s->sh;
    int64_t backoff = sh->backoff_ms;
    bool unknown = false; /* the last COMMIT's outcome */
    for (;;) {
        if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
            char err[256];
            PQfinish(s->conn);
            s->conn = pg_connect(sh, err);
            if (s->conn == NULL) {
                atomic_store(&sh->healthy, false);
                pt_log(s, "cannot connect: retrying (records wait, the source is paused)", err);
                if (pt_wait(s, backoff)) {
                    return false;
                }
                backoff = SL_MIN(backoff * 2, sh->backoff_max_ms);
                continue;
            }
            atomic_fetch_add(&sh->reconnects, 1);
        }
        if (unknown) {
            /* exactly_once: writing it again could apply it twice */
            int done = pt_committed(s, j);
            if (done == 1) {
                sl_log_info(sh->name, "the transaction whose COMMIT was cut off had committed",
                            NULL);
                return true;
            }
            if (done < 0) {
                PQfinish(s->conn);
                s->conn = NULL;
                if (pt_wait(s, backoff)) {
                    return false;
                }
                backoff = SL_MIN(backoff * 2, sh->backoff_max_ms);
                continue;
            }
            unknown = false;
        }
        pt_rc_t rc = pt_txn(s, j, false);
        if (rc == PT_DATA) {
            rc = pt_txn(s, j, true);
        }
        if (rc == PT_STOP) {
            return false;
        }
        if (rc == PT_OK) {
            atomic_store(&sh->healthy, true);
            atomic_fetch_add(&sh->txns, 1);
            return true;
        }
        unknown = rc == PT_UNKNOWN && sh->eos;
        atomic_fetch_add(&sh->retries, 1);
        pt_log(s, "transaction failed: retrying it whole",
               s->conn ? PQerrorMessage(s->conn) : "no connection");
        if (PQstatus(s->conn) != CONNECTION_OK) {
            PQfinish(s->conn);
            s->conn = NULL;
        }
        if (pt_wait(s, backoff)) {
            return false;
        }
        backoff = SL_MIN(backoff * 2, sh->backoff_max_ms);
    }
}

/* On the lane thread: the job's results. */
static void pt_done(sl_lane_t *lane, void *arg)
{
    (void)lane;
    pg_job_t *j = arg;
    pg_sink_t *s = j->owner;
    for (size_t i = 0; i < j->n; i++) {
        pg_row_t *r = &j->rows[i];
        if (r->reported) {
            continue; /* dead-lettered before the commit */
        }
        if (j->first_ms < 0) {
            sl_batch_result(r->batch, r->idx, SL_STATUS_RETRY, NULL); /* abandoned at stop */
        } else if (r->rejected) {
            atomic_fetch_add(&s->sh->rejected, 1); /* cannot happen: reported before */
            sl_batch_result(r->batch, r->idx, SL_STATUS_REJECT, r->reason);
        } else {
            sl_batch_result(r->batch, r->idx, SL_STATUS_OK, NULL);
        }
    }
    pg_job_free(j);
    if (--s->jobs_out == 0 && s->closed) {
        free(s);
    }
}

static void *pt_main(void *arg)
{
    pg_sink_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->todo == NULL && !s->stop) {
            pthread_cond_wait(&s->cv, &s->mu);
        }
        pg_job_t *j = s->todo;
        s->todo = NULL;
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (j == NULL && stop) {
            break;
        }
        if (!pt_run(s, j)) {
            j->first_ms = -1; /* not written: offered again after a restart */
        }
        sl_lane_post(s->lane, pt_done, j);
    }
    PQfinish(s->conn);
    s->conn = NULL;
    return NULL;
}

int pg_worker_start(pg_sink_t *s, char *err)
{
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thr, NULL, pt_main, s) != 0) {
        snprintf(err, 256, "%s: cannot start the worker thread", s->sh->name);
        return -1;
    }
    s->started = true;
    return 0;
}

void pg_worker_stop(pg_sink_t *s)
{
    if (!s->started) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thr, NULL);
    s->started = false;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}
