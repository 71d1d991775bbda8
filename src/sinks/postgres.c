/* The PostgreSQL sink (libpq): options, the column mapping checked against
 * the table at start, and the lane side that fills jobs (one transaction
 * each) for the lane's worker thread (pg_txn.c). Modes: insert, upsert
 * (ON CONFLICT ... DO UPDATE, per column overwrite or add) and copy. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "sinks/pg_int.h"
#include "sinks/secret.h"
#include "util/log.h"

typedef struct pg_opts {
    char *conninfo;
    char *host, *dbname, *user;
    int64_t port;
    char *password_env, *password_file;
    char *table;
    int mode;
    sl_strlist_t key;
    sl_strlist_t add;
    sl_strmap_t columns;
    bool create_table;
    bool exactly_once;
    char *offsets_table;
    int64_t max_rows;
    int64_t max_bytes;
    int64_t max_delay_ms;
    int64_t connect_timeout_ms;
    int copy_format; /* 0 auto, 1 text, 2 binary */
} pg_opts_t;

static const char *const pg_modes[] = {"insert", "upsert", "copy", NULL};
static const char *const pg_copy_formats[] = {"auto", "text", "binary", NULL};

#define PG_OPT(f) offsetof(pg_opts_t, f)
static const sl_option_t pg_options[] = {
    {"conninfo", SL_OPT_STRING, PG_OPT(conninfo), NULL, false, 0, 0, NULL,
     "libpq connection string, e.g. \"host=db port=5432 dbname=stats user=sluice\" (no "
     "password here: use password_env or password_file); or give host, port, dbname, user."},
    {"host", SL_OPT_STRING, PG_OPT(host), NULL, false, 0, 0, NULL,
     "Server host (overrides conninfo's)."},
    {"port", SL_OPT_INT, PG_OPT(port), "0", false, 0, 65535, NULL,
     "Server port (0: conninfo's, or libpq's default 5432)."},
    {"dbname", SL_OPT_STRING, PG_OPT(dbname), NULL, false, 0, 0, NULL,
     "Database (overrides conninfo's)."},
    {"user", SL_OPT_STRING, PG_OPT(user), NULL, false, 0, 0, NULL, "User (overrides conninfo's)."},
    {"password_env", SL_OPT_STRING, PG_OPT(password_env), NULL, false, 0, 0, NULL,
     "Name of an environment variable holding the password (never logged)."},
    {"password_file", SL_OPT_STRING, PG_OPT(password_file), NULL, false, 0, 0, NULL,
     "File holding the password (a trailing newline is stripped; never logged)."},
    {"table", SL_OPT_STRING, PG_OPT(table), NULL, true, 0, 0, NULL,
     "Target table, optionally schema-qualified (schema.table)."},
    {"mode", SL_OPT_ENUM, PG_OPT(mode), "insert", false, 0, 0, pg_modes,
     "`insert` (multi-row INSERT), `upsert` (INSERT ... ON CONFLICT (key) DO UPDATE) or `copy` "
     "(COPY FROM STDIN, for append-only tables)."},
    {"key", SL_OPT_STRLIST, PG_OPT(key), NULL, false, 0, 0, NULL,
     "upsert: the conflict columns (a unique index or primary key on exactly these)."},
    {"add", SL_OPT_STRLIST, PG_OPT(add), NULL, false, 0, 0, NULL,
     "upsert: columns that add instead of overwrite (`views = t.views + EXCLUDED.views`), e.g. "
     "for the delta sums of `aggregate`."},
    {"columns", SL_OPT_STRMAP, PG_OPT(columns), NULL, false, 0, 0, NULL,
     "Column -> record field; default: every field to the column of the same name."},
    {"create_table", SL_OPT_BOOL, PG_OPT(create_table), "false", false, 0, 0, NULL,
     "Create the table from the schema if it does not exist (primary key: `key`)."},
    {"exactly_once", SL_OPT_BOOL, PG_OPT(exactly_once), "false", false, 0, 0, NULL,
     "Store the Kafka offsets in offsets_table in the same transaction as the rows."},
    {"offsets_table", SL_OPT_STRING, PG_OPT(offsets_table), "sluice_offsets", false, 0, 0, NULL,
     "exactly_once: the table of (group_id, topic, partition, next_offset); created if "
     "missing."},
    {"max_rows", SL_OPT_INT, PG_OPT(max_rows), "0", false, 0, 1000000, NULL,
     "Rows per transaction at most. 0: 20000 in copy mode (each COPY statement costs the "
     "server ~1 ms whatever its size), 5000 otherwise."},
    {"max_bytes", SL_OPT_SIZE, PG_OPT(max_bytes), "8MiB", false, 4096, INT64_C(1) << 30, NULL,
     "Bytes of encoded rows per transaction at most (an aggregate flush is one transaction "
     "whatever its size)."},
    {"max_delay", SL_OPT_DURATION, PG_OPT(max_delay_ms), "100ms", false, 0, 60000, NULL,
     "How long rows wait for more before their transaction starts."},
    {"copy_format", SL_OPT_ENUM, PG_OPT(copy_format), "auto", false, 0, 0, pg_copy_formats,
     "copy: `binary` (the server parses nothing: about a third less of its CPU, but ints and "
     "dates take 8-12 bytes on the wire instead of their digits), `text`, or `auto`: binary "
     "when every column's type has a binary encoding here (integers, floats, bool, date, "
     "timestamps, text, varchar, json, jsonb), else text."},
    {"connect_timeout", SL_OPT_DURATION, PG_OPT(connect_timeout_ms), "10s", false, 1000, 600000,
     NULL, "Connection timeout (libpq connect_timeout)."},
};

static const sl_option_table_t pg_table = {
    "sink.postgres",
    "PostgreSQL through libpq: one transaction per batch of rows, retried whole on connection "
    "loss, serialization failure or deadlock; rows PostgreSQL rejects (constraint, invalid "
    "input, value too long) are found by bisection and dead-lettered with their SQLSTATE, the "
    "others commit.",
    pg_options, SL_ARRAY_LEN(pg_options)};

/* ---- identifiers and SQL -------------------------------------------------------------------- */

/* Appends name as a quoted identifier; "schema.table" quotes each part. */
static void pg_ident(sl_buf_t *b, const char *name, bool qualified)
{
    const char *dot = qualified ? strchr(name, '.') : NULL;
    if (dot != NULL) {
        char *schema = sl_xstrndup(name, (size_t)(dot - name));
        pg_ident(b, schema, false);
        free(schema);
        sl_buf_putc(b, '.');
        name = dot + 1;
    }
    sl_buf_putc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"') {
            sl_buf_putc(b, '"');
        }
        sl_buf_putc(b, *p);
    }
    sl_buf_putc(b, '"');
}

static char *pg_ident_dup(const char *name, bool qualified)
{
    sl_buf_t b = SL_BUF_INIT;
    pg_ident(&b, name, qualified);
    return b.data;
}

/* PostgreSQL types that take a field of type t (by typname). */
static bool pg_type_ok(sl_type_t t, const char *typname, char typtype)
{
    static const char *const ints32[] = {"int4", "int8", "numeric", "float8", NULL};
    static const char *const ints64[] = {"int8", "numeric", NULL};
    static const char *const doubles[] = {"float4", "float8", "numeric", NULL};
    static const char *const strings[] = {"text", "varchar", "bpchar", "name", "json", "jsonb",
                                          "uuid", "citext",  "inet",   "cidr", "xml",  NULL};
    static const char *const dates[] = {"date", "timestamp", "timestamptz", NULL};
    static const char *const stamps[] = {"timestamptz", "timestamp", NULL};
    static const char *const bools[] = {"bool", NULL};
    const char *const *ok = t == SL_TYPE_INT32    ? ints32
                            : t == SL_TYPE_INT64  ? ints64
                            : t == SL_TYPE_DOUBLE ? doubles
                            : t == SL_TYPE_STRING ? strings
                            : t == SL_TYPE_DATE   ? dates
                            : t == SL_TYPE_BOOL   ? bools
                                                  : stamps;
    if (t == SL_TYPE_STRING && typtype == 'e') {
        return true; /* an enum takes its labels as text */
    }
    for (size_t i = 0; ok[i]; i++) {
        if (strcmp(ok[i], typname) == 0) {
            return true;
        }
    }
    return false;
}

/* The binary encoding of field type t into a column of type typname, or
 * PG_BIN_NONE where only text is exact (numeric; a date into a timestamp,
 * which text input places at midnight of the session's time zone). */
static int pg_bin_kind(sl_type_t t, const char *typname)
{
    static const struct {
        sl_type_t t;
        const char *typname;
        int bin;
    } kinds[] = {
        {SL_TYPE_INT32, "int4", PG_BIN_INT4},          {SL_TYPE_INT32, "int8", PG_BIN_INT8},
        {SL_TYPE_INT32, "float8", PG_BIN_INT_FLOAT8},  {SL_TYPE_INT64, "int8", PG_BIN_INT8},
        {SL_TYPE_DOUBLE, "float4", PG_BIN_FLOAT4},     {SL_TYPE_DOUBLE, "float8", PG_BIN_FLOAT8},
        {SL_TYPE_BOOL, "bool", PG_BIN_BOOL},           {SL_TYPE_DATE, "date", PG_BIN_DATE},
        {SL_TYPE_TIMESTAMP, "timestamptz", PG_BIN_TS}, {SL_TYPE_TIMESTAMP, "timestamp", PG_BIN_TS},
        {SL_TYPE_STRING, "text", PG_BIN_TEXT},         {SL_TYPE_STRING, "varchar", PG_BIN_TEXT},
        {SL_TYPE_STRING, "bpchar", PG_BIN_TEXT},       {SL_TYPE_STRING, "name", PG_BIN_TEXT},
        {SL_TYPE_STRING, "json", PG_BIN_TEXT},         {SL_TYPE_STRING, "jsonb", PG_BIN_JSONB},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(kinds); i++) {
        if (kinds[i].t == t && strcmp(kinds[i].typname, typname) == 0) {
            return kinds[i].bin;
        }
    }
    return PG_BIN_NONE;
}

static const char *pg_type_for(sl_type_t t)
{
    switch (t) {
    case SL_TYPE_INT32:
        return "integer";
    case SL_TYPE_INT64:
        return "bigint";
    case SL_TYPE_DOUBLE:
        return "double precision";
    case SL_TYPE_BOOL:
        return "boolean";
    case SL_TYPE_DATE:
        return "date";
    case SL_TYPE_TIMESTAMP:
        return "timestamptz";
    default:
        return "text";
    }
}

/* ---- init ------------------------------------------------------------------------------------ */

static int pg_err(char *err, const char *fmt, ...) SL_PRINTF(2, 3);
static int pg_err(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, 256, fmt, ap);
    va_end(ap);
    return -1;
}

static pg_col_t *pg_col_find(pg_shared_t *sh, const char *name)
{
    for (size_t i = 0; i < sh->n_cols; i++) {
        if (strcmp(sh->cols[i].name, name) == 0) {
            return &sh->cols[i];
        }
    }
    return NULL;
}

/* The column mapping from the options and the record schema. */
static int pg_map(pg_shared_t *sh, const pg_opts_t *o, const sl_schema_t *schema, char *err)
{
    sh->cols = sl_xcalloc(schema->n_fields + o->columns.n + 1, sizeof(pg_col_t));
    if (o->columns.n > 0) {
        for (size_t i = 0; i < o->columns.n; i++) {
            const char *f = o->columns.values[i];
            int fi = sl_schema_find(schema, f, strlen(f));
            if (fi < 0) {
                return pg_err(err,
                              "sink.postgres: columns.%s names field '%s', which the record "
                              "does not have",
                              o->columns.keys[i], f);
            }
            sh->cols[sh->n_cols++] = (pg_col_t){sl_xstrdup(o->columns.keys[i]), (size_t)fi,
                                                schema->fields[fi].type, false, PG_BIN_NONE};
        }
    } else {
        for (size_t f = 0; f < schema->n_fields; f++) {
            if (!schema->fields[f].hidden) {
                sh->cols[sh->n_cols++] = (pg_col_t){sl_xstrdup(schema->fields[f].name), f,
                                                    schema->fields[f].type, false, PG_BIN_NONE};
            }
        }
    }
    sh->key_fields = sl_xcalloc(o->key.n + 1, sizeof(size_t));
    for (size_t i = 0; i < o->key.n; i++) {
        const pg_col_t *c = pg_col_find(sh, o->key.items[i]);
        if (c == NULL) {
            return pg_err(err, "sink.postgres: key column '%s' is not one of the columns written",
                          o->key.items[i]);
        }
        sh->key_fields[sh->n_key++] = c->field;
    }
    for (size_t i = 0; i < o->add.n; i++) {
        pg_col_t *c = pg_col_find(sh, o->add.items[i]);
        if (c == NULL) {
            return pg_err(err, "sink.postgres: add column '%s' is not one of the columns written",
                          o->add.items[i]);
        }
        if (c->type != SL_TYPE_INT32 && c->type != SL_TYPE_INT64 && c->type != SL_TYPE_DOUBLE) {
            return pg_err(err,
                          "sink.postgres: add column '%s' takes field of type %s: only "
                          "numbers add",
                          c->name, sl_type_name(c->type));
        }
        c->add = true;
    }
    if (o->mode == PG_UPSERT && o->key.n == 0) {
        return pg_err(err, "sink.postgres: mode upsert needs key: [the conflict columns]");
    }
    if (o->mode != PG_UPSERT && (o->key.n > 0 || o->add.n > 0) && !o->create_table) {
        return pg_err(err, "sink.postgres: key and add go with mode: upsert");
    }
    return 0;
}

/* The statements' text. */
static void pg_sql(pg_shared_t *sh, const pg_opts_t *o)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_buf_printf(&b, "INSERT INTO %s AS sl_t (", sh->table_q);
    for (size_t i = 0; i < sh->n_cols; i++) {
        if (i) {
            sl_buf_putc(&b, ',');
        }
        pg_ident(&b, sh->cols[i].name, false);
    }
    sl_buf_puts(&b, ") VALUES ");
    sh->insert_head = b.data;
    sl_buf_t t = SL_BUF_INIT;
    sl_buf_puts(&t, "");
    if (o->mode == PG_UPSERT) {
        sl_buf_puts(&t, " ON CONFLICT (");
        for (size_t i = 0; i < o->key.n; i++) {
            if (i) {
                sl_buf_putc(&t, ',');
            }
            pg_ident(&t, o->key.items[i], false);
        }
        sl_buf_puts(&t, ") DO ");
        size_t set = 0;
        for (size_t i = 0; i < sh->n_cols; i++) {
            const pg_col_t *c = &sh->cols[i];
            bool is_key = false;
            for (size_t k = 0; k < o->key.n; k++) {
                is_key |= strcmp(o->key.items[k], c->name) == 0;
            }
            if (is_key) {
                continue;
            }
            sl_buf_puts(&t, set++ ? ", " : "UPDATE SET ");
            pg_ident(&t, c->name, false);
            sl_buf_puts(&t, " = ");
            if (c->add) {
                sl_buf_puts(&t, "sl_t.");
                pg_ident(&t, c->name, false);
                sl_buf_puts(&t, " + ");
            }
            sl_buf_puts(&t, "EXCLUDED.");
            pg_ident(&t, c->name, false);
        }
        if (set == 0) {
            sl_buf_puts(&t, "NOTHING");
        }
    }
    sh->insert_tail = t.data;
}

/* copy: chooses the format from copy_format and the columns' types (read by
 * pg_check_table) and builds the COPY statements. Returns 0 or -1 with err. */
static int pg_copy_sql(pg_shared_t *sh, const pg_opts_t *o, char *err)
{
    const pg_col_t *text_only = NULL;
    for (size_t i = 0; i < sh->n_cols && text_only == NULL; i++) {
        text_only = sh->cols[i].bin == PG_BIN_NONE ? &sh->cols[i] : NULL;
    }
    if (o->copy_format == 2 && text_only != NULL) {
        return pg_err(err,
                      "sink.postgres: copy_format: binary, but column %s.%s has no binary "
                      "encoding here for a %s field: use copy_format: text (or auto)",
                      o->table, text_only->name, sl_type_name(text_only->type));
    }
    sh->copy_binary = o->copy_format != 1 && text_only == NULL;
    sl_buf_t c = SL_BUF_INIT;
    sl_buf_printf(&c, "COPY %s (", sh->table_q);
    for (size_t i = 0; i < sh->n_cols; i++) {
        if (i) {
            sl_buf_putc(&c, ',');
        }
        pg_ident(&c, sh->cols[i].name, false);
    }
    sl_buf_puts(&c, sh->copy_binary ? ") FROM STDIN WITH (FORMAT binary)" : ") FROM STDIN");
    sh->copy_sql = c.data;
    sl_buf_t bc = SL_BUF_INIT;
    sl_buf_printf(&bc, "BEGIN;%s", sh->copy_sql);
    sh->begin_copy_sql = bc.data;
    return 0;
}

/* Checks the table against the mapping (creating it or the offsets table
 * if asked). Returns 0 or -1 with err. */
static int pg_check_table(pg_shared_t *sh, const pg_opts_t *o, PGconn *c, bool dry, char *err)
{
    const char *v[1] = {sh->table_q};
    PGresult *r =
        PQexecParams(c,
                     "SELECT a.attname, t.typname, t.typtype, a.attnotnull AND NOT a.atthasdef "
                     "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                     "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                     1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_err(err, "sink.postgres: reading table %s failed: %s", o->table,
               PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0 && o->create_table && dry) {
        PQclear(r);
        static const char *const created[] = {
            [SL_TYPE_INT32] = "int4", [SL_TYPE_INT64] = "int8", [SL_TYPE_DOUBLE] = "float8",
            [SL_TYPE_BOOL] = "bool",  [SL_TYPE_DATE] = "date",  [SL_TYPE_TIMESTAMP] = "timestamptz",
            [SL_TYPE_STRING] = "text"};
        for (size_t i = 0; i < sh->n_cols; i++) {
            sl_type_t t = sh->cols[i].type;
            const char *tn = (size_t)t < SL_ARRAY_LEN(created) ? created[t] : NULL;
            sh->cols[i].bin = tn ? pg_bin_kind(t, tn) : PG_BIN_NONE;
        }
        return 0; /* created at start, as pg_type_for says */
    }
    if (PQntuples(r) == 0 && o->create_table) {
        PQclear(r);
        sl_buf_t b = SL_BUF_INIT;
        sl_buf_printf(&b, "CREATE TABLE IF NOT EXISTS %s (", sh->table_q);
        for (size_t i = 0; i < sh->n_cols; i++) {
            sl_buf_puts(&b, i ? ", " : "");
            pg_ident(&b, sh->cols[i].name, false);
            sl_buf_printf(&b, " %s", pg_type_for(sh->cols[i].type));
        }
        for (size_t i = 0; i < o->key.n; i++) {
            sl_buf_puts(&b, i ? ", " : ", PRIMARY KEY (");
            pg_ident(&b, o->key.items[i], false);
        }
        sl_buf_puts(&b, o->key.n ? "))" : ")");
        r = PQexec(c, b.data);
        sl_buf_free(&b);
        int rc = PQresultStatus(r) == PGRES_COMMAND_OK
                     ? 0
                     : pg_err(err, "sink.postgres: creating table %s failed: %s", o->table,
                              PQresultErrorMessage(r));
        PQclear(r);
        return rc == 0 ? pg_check_table(sh, o, c, dry, err) : -1;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return pg_err(err,
                      "sink.postgres: table %s does not exist: create it, or set "
                      "create_table: true",
                      o->table);
    }
    int rc = 0;
    for (size_t i = 0; i < sh->n_cols && rc == 0; i++) {
        const pg_col_t *col = &sh->cols[i];
        int row = -1;
        for (int k = 0; k < PQntuples(r); k++) {
            if (strcmp(PQgetvalue(r, k, 0), col->name) == 0) {
                row = k;
            }
        }
        if (row < 0) {
            rc = pg_err(err,
                        "sink.postgres: table %s has no column '%s': add it, or map the "
                        "field elsewhere with columns:",
                        o->table, col->name);
        } else if (pg_type_ok(col->type, PQgetvalue(r, row, 1), PQgetvalue(r, row, 2)[0])) {
            sh->cols[i].bin = pg_bin_kind(col->type, PQgetvalue(r, row, 1));
        } else {
            rc = pg_err(err,
                        "sink.postgres: column %s.%s is %s but field '%s' is %s: change the "
                        "column's type (%s fits) or the field's",
                        o->table, col->name, PQgetvalue(r, row, 1), col->name,
                        sl_type_name(col->type), pg_type_for(col->type));
        }
    }
    for (int k = 0; k < PQntuples(r) && rc == 0; k++) {
        if (PQgetvalue(r, k, 3)[0] == 't' && pg_col_find(sh, PQgetvalue(r, k, 0)) == NULL) {
            rc = pg_err(err,
                        "sink.postgres: column %s.%s is NOT NULL without a default and "
                        "no field is written to it: map one with columns:",
                        o->table, PQgetvalue(r, k, 0));
        }
    }
    PQclear(r);
    if (rc == 0 && o->mode == PG_UPSERT) {
        /* the server checks ON CONFLICT's target against the table's indexes */
        sl_buf_t b = SL_BUF_INIT;
        sl_buf_puts(&b, "PREPARE sl_check AS ");
        sl_buf_puts(&b, sh->insert_head);
        sl_buf_putc(&b, '(');
        for (size_t i = 0; i < sh->n_cols; i++) {
            sl_buf_printf(&b, "%s$%zu", i ? "," : "", i + 1);
        }
        sl_buf_putc(&b, ')');
        sl_buf_puts(&b, sh->insert_tail);
        r = PQexec(c, b.data);
        sl_buf_free(&b);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = pg_err(err, "sink.postgres: the upsert into %s is refused: %s", o->table,
                        PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
        }
        PQclear(r);
        PQclear(PQexec(c, "DEALLOCATE sl_check"));
    }
    if (rc == 0 && sh->eos && !dry) {
        sl_buf_t b = SL_BUF_INIT;
        sl_buf_printf(&b,
                      "CREATE TABLE IF NOT EXISTS %s (group_id text NOT NULL, topic text NOT "
                      "NULL, partition integer NOT NULL, next_offset bigint NOT NULL, "
                      "PRIMARY KEY (group_id, topic, partition))",
                      sh->offsets_q);
        r = PQexec(c, b.data);
        sl_buf_free(&b);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = pg_err(err, "sink.postgres: creating offsets table %s failed: %s",
                        o->offsets_table, PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    if (rc != 0) {
        err[strcspn(err, "\n")] = '\0';
    }
    return rc;
}

static void pg_fini(void *shared);

/* init, or with dry (sluice check) only the checks: nothing is created.
 * Returns 0, -1 with err, or (dry) 1 when the server cannot be reached. */
static int pg_setup(void **shared, const void *opts, const sl_pipeline_info_t *info, bool dry,
                    char *err)
{
    const pg_opts_t *o = opts;
    pg_shared_t *sh = sl_xcalloc(1, sizeof(*sh));
    *shared = sh;
    sh->name = sl_xstrdup("sink.postgres");
    sh->mode = o->mode;
    sh->eos = o->exactly_once;
    sh->group = sl_xstrdup(info->source_group ? info->source_group : "");
    sh->max_rows = o->max_rows ? o->max_rows : sh->mode == PG_COPY ? 20000 : 5000;
    sh->max_bytes = o->max_bytes;
    sh->schema = info->schema;
    sh->max_delay_ms = o->max_delay_ms;
    sh->backoff_ms = 100;
    sh->backoff_max_ms = 10000;
    sh->table_q = pg_ident_dup(o->table, true);
    sh->offsets_q = pg_ident_dup(o->offsets_table, true);
    sl_buf_t os = SL_BUF_INIT;
    sl_buf_printf(&os,
                  "INSERT INTO %s AS sl_o (group_id, topic, partition, next_offset) VALUES ($1, "
                  "$2, $3, $4) ON CONFLICT (group_id, topic, partition) DO UPDATE SET "
                  "next_offset = GREATEST(sl_o.next_offset, EXCLUDED.next_offset)",
                  sh->offsets_q);
    sh->offsets_sql = os.data;
    atomic_init(&sh->healthy, true);
    char *password = NULL;
    if (o->exactly_once && info->aggregate == 2) { /* absolute mode */
        pg_err(err, "sink.postgres: exactly_once goes with aggregate output: delta (its sums "
                    "are applied once); absolute totals are idempotent upserts already: drop "
                    "exactly_once");
        pg_fini(sh);
        *shared = NULL;
        return -1;
    }
    if (sl_secret_read(o->password_env, o->password_file, "sink.postgres", &password, err) != 0 ||
        pg_map(sh, o, info->schema, err) != 0) {
        free(password);
        pg_fini(sh);
        *shared = NULL;
        return -1;
    }
    /* libpq keywords: the conninfo string first (as dbname, expanded), then
     * what the fields and Sluice set, which override it */
    char timeout[24], port[16];
    snprintf(timeout, sizeof(timeout), "%lld", (long long)(o->connect_timeout_ms / 1000));
    snprintf(port, sizeof(port), "%lld", (long long)o->port);
    const char *kw[] = {"dbname",           "host",    "port", "dbname", "user", "connect_timeout",
                        "application_name", "password"};
    const char *val[] = {o->conninfo ? o->conninfo : "",
                         o->host,
                         o->port ? port : NULL,
                         o->dbname,
                         o->user,
                         timeout,
                         "sluice",
                         password};
    sh->kw = sl_xcalloc(SL_ARRAY_LEN(kw) + 1, sizeof(char *));
    sh->val = sl_xcalloc(SL_ARRAY_LEN(kw) + 1, sizeof(char *));
    for (size_t i = 0, n = 0; i < SL_ARRAY_LEN(kw); i++) {
        if (val[i] != NULL) {
            sh->kw[n] = sl_xstrdup(kw[i]);
            sh->val[n++] = sl_xstrdup(val[i]);
        }
    }
    free(password);
    pg_sql(sh, o);
    PGconn *c = pg_connect(sh, err);
    if (c == NULL) {
        char why[256];
        snprintf(why, sizeof(why), "%s", err);
        pg_err(err,
               "sink.postgres: cannot connect (%s): check conninfo and that the server "
               "runs",
               why);
        pg_fini(sh);
        *shared = NULL;
        return dry ? 1 : -1;
    }
    int rc = pg_check_table(sh, o, c, dry, err);
    PQfinish(c);
    if (rc == 0 && sh->mode == PG_COPY) {
        rc = pg_copy_sql(sh, o, err);
    }
    if (rc != 0) {
        pg_fini(sh);
        *shared = NULL;
        return -1;
    }
    return 0;
}

static int pg_init(void **shared, const void *opts, const sl_pipeline_info_t *info, char *err)
{
    return pg_setup(shared, opts, info, false, err);
}

static int pg_check(const void *opts, const sl_pipeline_info_t *info, char *err)
{
    void *sh = NULL;
    int rc = pg_setup(&sh, opts, info, true, err);
    pg_fini(sh);
    return rc;
}

static void pg_fini(void *shared)
{
    pg_shared_t *sh = shared;
    if (sh == NULL) {
        return;
    }
    for (size_t i = 0; sh->kw && sh->kw[i]; i++) {
        memset(sh->val[i], 0, strlen(sh->val[i])); /* the password among them */
        free(sh->kw[i]);
        free(sh->val[i]);
    }
    free(sh->kw);
    free(sh->val);
    for (size_t i = 0; i < sh->n_cols; i++) {
        free(sh->cols[i].name);
    }
    free(sh->cols);
    free(sh->key_fields);
    free(sh->insert_head);
    free(sh->insert_tail);
    free(sh->copy_sql);
    free(sh->begin_copy_sql);
    free(sh->table_q);
    free(sh->offsets_q);
    free(sh->offsets_sql);
    free(sh->group);
    free(sh->name);
    free(sh);
}

/* ---- the lane side ----------------------------------------------------------------------------
 */

static int pg_open(void **ctx, void *shared, const sl_plugin_env_t *env, char *err)
{
    pg_sink_t *s = sl_xcalloc(1, sizeof(*s));
    s->sh = shared;
    s->lane = env->lane;
    if (pg_worker_start(s, err) != 0) {
        free(s);
        return -1;
    }
    *ctx = s;
    return 0;
}

/* Appends value v of type t as PostgreSQL text input (no quoting). */
static void pg_text(sl_buf_t *b, const sl_value_t *v, sl_type_t t)
{
    char d[11];
    switch (t) {
    case SL_TYPE_STRING:
        sl_buf_append(b, v->u.s.ptr, v->u.s.len);
        return;
    case SL_TYPE_DOUBLE:
        sl_buf_printf(b, "%.17g", v->u.d);
        return;
    case SL_TYPE_BOOL:
        sl_buf_putc(b, v->u.b ? 't' : 'f');
        return;
    case SL_TYPE_DATE:
        sl_date_format(v->u.i, d);
        sl_buf_puts(b, d);
        return;
    case SL_TYPE_TIMESTAMP: {
        int64_t us = v->u.i, day = us / INT64_C(86400000000);
        int64_t rem = us % INT64_C(86400000000);
        if (rem < 0) {
            rem += INT64_C(86400000000);
            day--;
        }
        sl_date_format(day, d);
        int64_t s = rem / 1000000;
        sl_buf_printf(b, "%s %02d:%02d:%02d.%06d+00", d, (int)(s / 3600), (int)(s / 60 % 60),
                      (int)(s % 60), (int)(rem % 1000000));
        return;
    }
    default:
        sl_buf_printf(b, "%" PRId64, v->u.i);
        return;
    }
}

/* COPY text format: backslash escapes for the few bytes that need them. */
static void pg_copy_text(sl_buf_t *b, const sl_value_t *v, sl_type_t t)
{
    if (t != SL_TYPE_STRING) {
        pg_text(b, v, t);
        return;
    }
    for (size_t i = 0; i < v->u.s.len; i++) {
        char ch = v->u.s.ptr[i];
        const char *esc = ch == '\\'   ? "\\\\"
                          : ch == '\t' ? "\\t"
                          : ch == '\n' ? "\\n"
                          : ch == '\r' ? "\\r"
                                       : NULL;
        if (esc) {
            sl_buf_puts(b, esc);
        } else {
            sl_buf_putc(b, ch);
        }
    }
}

static void pg_be(sl_buf_t *b, uint64_t v, int bytes)
{
    char out[8];
    for (int i = 0; i < bytes; i++) {
        out[i] = (char)(v >> (8 * (bytes - 1 - i)));
    }
    sl_buf_append(b, out, (size_t)bytes);
}

/* COPY binary format: one field, its int32 length first (PostgreSQL's
 * *_recv functions: network byte order; dates and timestamps from
 * 2000-01-01). */
static void pg_copy_bin(sl_buf_t *b, const sl_value_t *v, int bin)
{
    static const int64_t days_1970_2000 = 10957;
    switch (bin) {
    case PG_BIN_INT4:
    case PG_BIN_DATE:
        pg_be(b, 4, 4);
        pg_be(b, (uint32_t)(bin == PG_BIN_DATE ? v->u.i - days_1970_2000 : v->u.i), 4);
        return;
    case PG_BIN_INT8:
    case PG_BIN_TS:
        pg_be(b, 8, 4);
        pg_be(
            b,
            (uint64_t)(bin == PG_BIN_TS ? v->u.i - days_1970_2000 * INT64_C(86400000000) : v->u.i),
            8);
        return;
    case PG_BIN_FLOAT4: {
        float f = (float)v->u.d;
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        pg_be(b, 4, 4);
        pg_be(b, u, 4);
        return;
    }
    case PG_BIN_INT_FLOAT8:
    case PG_BIN_FLOAT8: {
        double d = bin == PG_BIN_FLOAT8 ? v->u.d : (double)v->u.i;
        uint64_t u;
        memcpy(&u, &d, sizeof(u));
        pg_be(b, 8, 4);
        pg_be(b, u, 8);
        return;
    }
    case PG_BIN_BOOL:
        pg_be(b, 1, 4);
        sl_buf_putc(b, v->u.b ? 1 : 0);
        return;
    case PG_BIN_JSONB:
        pg_be(b, (uint32_t)v->u.s.len + 1, 4);
        sl_buf_putc(b, 1);
        sl_buf_append(b, v->u.s.ptr, v->u.s.len);
        return;
    default: /* PG_BIN_TEXT */
        pg_be(b, (uint32_t)v->u.s.len, 4);
        sl_buf_append(b, v->u.s.ptr, v->u.s.len);
        return;
    }
}

/* One COPY row: binary (field count, then each field with its length; -1:
 * NULL) or text (tab-separated, \N: NULL, newline-terminated). */
static void pg_copy_row(const pg_shared_t *sh, sl_buf_t *b, const sl_value_t *v)
{
    if (sh->copy_binary) {
        pg_be(b, sh->n_cols, 2);
        for (size_t k = 0; k < sh->n_cols; k++) {
            const pg_col_t *c = &sh->cols[k];
            if (v[c->field].is_null) {
                pg_be(b, UINT32_MAX, 4);
            } else {
                pg_copy_bin(b, &v[c->field], c->bin);
            }
        }
        return;
    }
    for (size_t k = 0; k < sh->n_cols; k++) {
        const pg_col_t *c = &sh->cols[k];
        if (k) {
            sl_buf_putc(b, '\t');
        }
        if (v[c->field].is_null) {
            sl_buf_puts(b, "\\N");
        } else {
            pg_copy_text(b, &v[c->field], c->type);
        }
    }
    sl_buf_putc(b, '\n');
}

static void pg_job_off(pg_job_t *j, size_t off)
{
    if (j->n_off == j->cap_off) {
        j->cap_off = j->cap_off ? j->cap_off * 2 : 1024;
        j->off = sl_xrealloc(j->off, j->cap_off * sizeof(size_t));
    }
    j->off[j->n_off++] = off;
}

/* Notes that the job covers partition (topic, partition) up to next
 * (exactly_once: the offset stored with the rows). */
static void pg_job_note(pg_job_t *j, const char *topic, int32_t partition, int64_t next)
{
    for (size_t i = 0; i < j->n_offs; i++) {
        if (j->offs[i].partition == partition && strcmp(j->offs[i].topic, topic) == 0) {
            j->offs[i].next = SL_MAX(j->offs[i].next, next);
            return;
        }
    }
    if (j->n_offs == j->cap_offs) {
        j->cap_offs = j->cap_offs ? j->cap_offs * 2 : 8;
        j->offs = sl_xrealloc(j->offs, j->cap_offs * sizeof(pg_off_t));
    }
    j->offs[j->n_offs++] = (pg_off_t){(char *)topic, partition, next};
}

/* Notes the record's partition offset: one past the highest row of the job. */
static void pg_job_note_offset(pg_job_t *j, sl_batch_t *b, uint32_t idx)
{
    sl_origin_t o;
    sl_batch_origin(b, idx, &o);
    if (o.offset >= 0) {
        pg_job_note(j, o.topic, o.partition, o.offset + 1);
    }
}

static void pg_job_add(pg_sink_t *s, pg_job_t *j, sl_batch_t *b, uint32_t idx)
{
    const pg_shared_t *sh = s->sh;
    if (j->n == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 256;
        j->rows = sl_xrealloc(j->rows, j->cap * sizeof(pg_row_t));
    }
    const sl_value_t *v = sl_batch_values(b, idx);
    uint64_t key =
        sh->mode == PG_UPSERT ? sl_schema_hash(sh->schema, v, sh->key_fields, sh->n_key, 0) : 0;
    j->rows[j->n++] = (pg_row_t){b, idx, key, false, false, NULL};
    if (sh->mode == PG_COPY) {
        if (j->n_off == 0) {
            pg_job_off(j, 0);
        }
        pg_copy_row(sh, &j->text, v);
        pg_job_off(j, j->text.len);
    } else {
        for (size_t k = 0; k < sh->n_cols; k++) {
            const pg_col_t *c = &sh->cols[k];
            if (v[c->field].is_null) {
                pg_job_off(j, SIZE_MAX);
            } else {
                pg_job_off(j, j->text.len);
                pg_text(&j->text, &v[c->field], c->type);
                sl_buf_putc(&j->text, '\0');
            }
        }
    }
    if (sh->eos) {
        pg_job_note_offset(j, b, idx);
    }
}

/* True when the job being filled reached max_rows or max_bytes. */
static bool pg_job_full(const pg_sink_t *s)
{
    return s->cur != NULL &&
           ((int64_t)s->cur->n >= s->sh->max_rows || (int64_t)s->cur->text.len >= s->sh->max_bytes);
}

/* The rows of an aggregate flush go in one transaction of their own, with
 * the partitions' positions the flush covers: the sums of a flush are
 * applied once, or not at all. */
static size_t pg_submit_flush(pg_sink_t *s, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    if (s->cur != NULL && s->cur->n > 0) {
        s->flush = true;
        return 0; /* after the rows before it */
    }
    if (s->cur == NULL) {
        s->cur = sl_xcalloc(1, sizeof(pg_job_t));
        s->cur->owner = s;
    }
    s->cur->first_ms = sl_now_ms();
    for (size_t i = 0; i < n; i++) {
        pg_job_add(s, s->cur, b, idx[i]);
    }
    for (size_t i = 0; i < b->n_agg_offs; i++) {
        const sl_part_offset_t *po = &b->agg_offs[i];
        pg_job_note(s->cur, po->topic, po->partition, po->next);
    }
    s->cur->sealed = true;
    s->flush = true;
    return n;
}

/* Hands the current job to the worker unless one already waits for it: the
 * worker goes from one transaction straight to the next (in order, so the
 * stored offsets only move forward) while the lane fills a third. */
static void pg_dispatch(pg_sink_t *s)
{
    if (s->cur == NULL || s->cur->n == 0 || s->jobs_out >= 2) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool taken = s->todo == NULL;
    if (taken) {
        s->todo = s->cur;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (taken) {
        s->cur = NULL;
        s->jobs_out++;
        s->flush = false;
    }
}

static size_t pg_submit(void *ctx, sl_batch_t *b, const uint32_t *idx, size_t n)
{
    pg_sink_t *s = ctx;
    size_t took = 0;
    if (s->cur != NULL && s->cur->sealed) {
        pg_dispatch(s);
        if (s->cur != NULL) {
            return 0; /* an aggregate flush waits for the worker */
        }
    }
    if (b->agg) {
        took = pg_submit_flush(s, b, idx, n);
        pg_dispatch(s);
        return took;
    }
    while (took < n) {
        if (pg_job_full(s)) {
            pg_dispatch(s);
            if (s->cur != NULL) {
                break; /* full: the worker is busy */
            }
        }
        if (s->cur == NULL) {
            s->cur = sl_xcalloc(1, sizeof(pg_job_t));
            s->cur->owner = s;
            s->cur->first_ms = sl_now_ms();
        }
        pg_job_add(s, s->cur, b, idx[took++]);
    }
    if (pg_job_full(s)) {
        pg_dispatch(s);
    }
    return took;
}

static void pg_poll(void *ctx)
{
    pg_sink_t *s = ctx;
    if (s->cur != NULL && (s->flush || sl_now_ms() - s->cur->first_ms >= s->sh->max_delay_ms)) {
        pg_dispatch(s);
    }
}

static void pg_flush(void *ctx)
{
    pg_sink_t *s = ctx;
    s->flush = true;
    pg_dispatch(s);
}

static int pg_pollfds(void *ctx, struct pollfd *fds, int max, int *timeout_ms)
{
    (void)fds;
    (void)max;
    pg_sink_t *s = ctx;
    if (s->cur != NULL && s->jobs_out < 2) {
        int64_t due = s->cur->first_ms + s->sh->max_delay_ms - sl_now_ms();
        *timeout_ms = (int)SL_MAX(0, SL_MIN(due, *timeout_ms));
    }
    return 0;
}

static int pg_stored_offsets(void *shared, const char *const *topics, const int32_t *partitions,
                             int64_t *next, size_t n, char *err)
{
    pg_shared_t *sh = shared;
    for (size_t i = 0; i < n; i++) {
        next[i] = -1;
    }
    if (!sh->eos) {
        return 0;
    }
    char why[256];
    PGconn *c = pg_connect(sh, why);
    if (c == NULL) {
        return pg_err(err, "sink.postgres: cannot connect (%s)", why);
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = pg_stored_offset(c, sh, topics[i], partitions[i], &next[i], err);
    }
    PQfinish(c);
    return rc;
}

/* One transaction running, one waiting and one filling (pg_dispatch). */
static int64_t pg_in_flight_need(const void *shared)
{
    return 3 * ((const pg_shared_t *)shared)->max_rows;
}

static bool pg_ready(void *shared)
{
    return atomic_load(&((pg_shared_t *)shared)->healthy);
}

static void pg_metrics(void *shared, sl_buf_t *out)
{
    pg_shared_t *sh = shared;
    sl_prom_header(out, "sluice_postgres_transactions_total", "counter",
                   "Transactions committed by the PostgreSQL sink.");
    sl_buf_printf(out, "sluice_postgres_transactions_total %llu\n",
                  (unsigned long long)atomic_load(&sh->txns));
    sl_prom_header(out, "sluice_postgres_retries_total", "counter",
                   "Transactions retried whole (connection loss, serialization failure, "
                   "deadlock, server shutdown).");
    sl_buf_printf(out, "sluice_postgres_retries_total %llu\n",
                  (unsigned long long)atomic_load(&sh->retries));
    sl_prom_header(out, "sluice_postgres_rejected_total", "counter",
                   "Rows PostgreSQL rejected (dead-lettered with their SQLSTATE).");
    sl_buf_printf(out, "sluice_postgres_rejected_total %llu\n",
                  (unsigned long long)atomic_load(&sh->rejected));
}

static void pg_close(void *ctx)
{
    pg_sink_t *s = ctx;
    pg_worker_stop(s); /* it took any job handed to it and posted its results */
    if (s->cur != NULL) {
        for (size_t i = 0; i < s->cur->n; i++) {
            sl_batch_result(s->cur->rows[i].batch, s->cur->rows[i].idx, SL_STATUS_RETRY, NULL);
        }
        pg_job_free(s->cur);
        s->cur = NULL;
    }
    if (s->jobs_out > 0) {
        s->closed = true; /* its results are posted: the last of them frees s */
    } else {
        free(s);
    }
}

const sl_sink_plugin_t sl_sink_postgres = {
    .name = "postgres",
    .options = &pg_table,
    .opts_size = sizeof(pg_opts_t),
    .init = pg_init,
    .check = pg_check,
    .open = pg_open,
    .submit = pg_submit,
    .poll = pg_poll,
    .flush = pg_flush,
    .pollfds = pg_pollfds,
    .io = NULL,
    .stored_offsets = pg_stored_offsets,
    .in_flight_need = pg_in_flight_need,
    .ready = pg_ready,
    .metrics = pg_metrics,
    .close = pg_close,
    .fini = pg_fini,
};
