/* Config loading: YAML into a small node tree that remembers file:line:col,
 * ${VAR} / ${VAR:-default} interpolation in scalars, option tables that bind
 * map nodes into C structs, and an error list that collects every problem
 * (so `sluice check` prints all of them, not the first). */
#ifndef SL_CONFIG_CONFIG_H
#define SL_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/common.h"

/* ---- errors --------------------------------------------------------------- */

typedef struct sl_errors {
    char **msgs; /* owned; each "file:line:col: message" */
    size_t n;
    size_t cap;
} sl_errors_t;

/* Records an error at file:line:col (line/col 1-based; 0 leaves them out). */
void sl_errors_add(sl_errors_t *e, const char *file, int line, int col, const char *fmt, ...)
    SL_PRINTF(5, 6);
/* Prints every error, one per line, to stderr prefixed with "sluice: ", in
 * order of line and column (as they stand in the file). */
void sl_errors_print(const sl_errors_t *e);
void sl_errors_free(sl_errors_t *e);

/* ---- the node tree -------------------------------------------------------- */

typedef enum { SL_NODE_SCALAR = 0, SL_NODE_MAP, SL_NODE_SEQ } sl_node_kind_t;

typedef struct sl_node sl_node_t;
struct sl_node {
    sl_node_kind_t kind;
    const char *file; /* borrowed from the document */
    int line, col;    /* 1-based position of the node */
    /* SCALAR: the interpolated text (NUL-terminated); quoted tells whether the
     * YAML scalar was quoted (then "null"/"true" etc. are plain strings). */
    char *scalar;
    bool quoted;
    /* MAP: n keys/values (keys are scalar nodes). SEQ: n items in values. */
    sl_node_t **keys;
    sl_node_t **values;
    size_t n;
};

typedef struct sl_doc sl_doc_t; /* owns all nodes; opaque */

/* Loads a YAML file. Each scalar gets ${VAR} and ${VAR:-default} replaced from
 * the environment ($$ is a literal $); an unset variable without default is an
 * error naming the variable and line. Duplicate map keys, anchors/aliases,
 * tags other than !!str, multiple documents, non-scalar keys and nesting
 * deeper than 64 levels are errors. Returns the document
 * (gives ownership) or NULL with errors added; its root may be NULL for an
 * empty file. */
sl_doc_t *sl_doc_load_file(const char *path, sl_errors_t *errs);
/* Same, from memory; name is used in messages. */
sl_doc_t *sl_doc_load_string(const char *name, const char *text, size_t len, sl_errors_t *errs);
const sl_node_t *sl_doc_root(const sl_doc_t *doc);
const char *sl_doc_path(const sl_doc_t *doc);
void sl_doc_free(sl_doc_t *doc);

/* Returns the value for key in a MAP node, or NULL (also for non-maps). */
const sl_node_t *sl_node_get(const sl_node_t *map, const char *key);
/* Returns a short name of the node's kind for messages: "a scalar", "a map"... */
const char *sl_node_kind_name(const sl_node_t *node);
/* Checks that every key of the map is one of known (NULL-terminated); the
 * first other one is reported at its position as "what: unknown key 'k'
 * (known: a, b, ...)". Returns 0, or -1 after adding that error. */
int sl_node_check_keys(const sl_node_t *map, const char *const *known, const char *what,
                       sl_errors_t *errs) SL_WUR;
/* Returns true if node is NULL or a YAML null: an unquoted scalar that is
 * empty, "~" or "null" (`key:` with nothing after it). */
bool sl_node_is_null(const sl_node_t *node);

/* ---- scalar parsing (shared by option tables and schema) ------------------ */

/* Each returns 0 and stores the value, or -1 (the caller reports the error). */
int sl_parse_bool(const char *s, bool *out) SL_WUR;     /* true/false/yes/no/on/off */
int sl_parse_int(const char *s, int64_t *out) SL_WUR;   /* decimal, optional sign */
int sl_parse_double(const char *s, double *out) SL_WUR; /* finite only */
/* Durations: 250ms, 30s, 5m, 1h, 1d, a bare integer is ms; a fraction is fine
 * if the result is whole milliseconds ("1.5s", not "1.5ms"). Not negative. */
int sl_parse_duration_ms(const char *s, int64_t *out) SL_WUR;
/* Sizes in bytes: 512, 512B, 64KiB, 1MiB, 2GiB, 1TiB; kB/KB, MB, GB, TB are
 * powers of 1000. A fraction is fine if the result is whole bytes. */
int sl_parse_size(const char *s, int64_t *out) SL_WUR;

/* ---- option tables -------------------------------------------------------- */

typedef enum {
    SL_OPT_STRING = 0, /* char * (owned by the struct after apply) */
    SL_OPT_INT,        /* int64_t */
    SL_OPT_BOOL,       /* bool */
    SL_OPT_DOUBLE,     /* double */
    SL_OPT_DURATION,   /* int64_t milliseconds */
    SL_OPT_SIZE,       /* int64_t bytes */
    SL_OPT_ENUM,       /* int: index into enum_values */
    SL_OPT_STRLIST,    /* sl_strlist_t: a YAML sequence of scalars, or one scalar */
    SL_OPT_STRMAP,     /* sl_strmap_t: a YAML map of scalar -> scalar (pass-through properties) */
    SL_OPT_HOSTPORT,   /* char * "host:port", validated */
} sl_opt_type_t;

typedef struct sl_strlist {
    char **items; /* owned */
    size_t n;
} sl_strlist_t;

typedef struct sl_strmap {
    char **keys; /* owned */
    char **values;
    int *lines; /* line of each entry, for errors reported later (e.g. by librdkafka) */
    size_t n;
} sl_strmap_t;

typedef struct sl_option {
    const char *name;
    sl_opt_type_t type;
    size_t offset;                  /* offsetof the field in the target struct */
    const char *def;                /* default as text (parsed like YAML input), NULL: none */
    bool required;                  /* must be present (then def is NULL) */
    int64_t min, max;               /* bounds for INT/DURATION/SIZE when min < max */
    const char *const *enum_values; /* NULL-terminated, for ENUM */
    const char *doc;                /* one sentence for docs/CONFIG.md */
} sl_option_t;

/* A named table, for docs and for errors: section is the YAML path,
 * e.g. "source.kafka" or "sink.stdout". */
typedef struct sl_option_table {
    const char *section;
    const char *doc; /* a paragraph about the section */
    const sl_option_t *options;
    size_t n_options;
} sl_option_table_t;

/* Sets every option's default into target, then applies the entries of map
 * (which may be NULL: defaults only). Unknown keys, wrong node kinds, bad
 * values, out-of-range numbers and missing required options are added to errs
 * with the node's file:line. Returns 0 if no error was added.
 * The option fields of target are overwritten without being read (it may be
 * uninitialised; sl_options_free() it before applying again); on error they
 * still hold what was set and must be freed with sl_options_free(). A YAML
 * null (`key:` with nothing, `~`) counts as absent, for map and values alike;
 * an ENUM without default that stays absent is -1. */
int sl_options_apply(const sl_option_table_t *table, void *target, const sl_node_t *map,
                     const char *file, sl_errors_t *errs) SL_WUR;
/* Frees what apply allocated inside target (strings, lists, maps). */
void sl_options_free(const sl_option_table_t *table, void *target);

/* Appends a Markdown section documenting the table to out (for docs/CONFIG.md):
 * "### `section`", the paragraph, then a table: option | type | default | doc. */
void sl_options_doc(const sl_option_table_t *table, sl_buf_t *out);

#endif
