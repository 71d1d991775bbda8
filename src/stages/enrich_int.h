/* Internals shared by enrich.c (the step, file tables) and enrich_topic.c
 * (tables kept current from a Kafka topic). Not for other modules. */
#ifndef SL_STAGES_ENRICH_INT_H
#define SL_STAGES_ENRICH_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stages/enrich.h"
#include "util/arena.h"

/* One immutable version of a table: rows of (key, fields...) and an index. */
typedef struct en_table {
    sl_value_t *rows; /* n_rows * (1 + n_out): the key, then the fields */
    size_t n_rows, cap_rows;
    uint32_t *slots; /* row + 1, 0: empty */
    size_t n_slots;
    char *data; /* a file's bytes (strings borrow from them), or NULL */
    sl_arena_t arena;
} en_table_t;

typedef struct en_topic en_topic_t;

struct sl_enrich {
    size_t key_field;          /* the record's key field */
    bool int_key;              /* int32/int64 key (else string) */
    size_t n_out;              /* fields added */
    size_t *out_field;         /* their indexes in the record */
    sl_type_t *types;          /* 1 + n_out: the key's (string or int64), then each field's */
    char **names;              /* n_out field names */
    _Atomic(en_table_t *) cur; /* the table lookups use */
    en_topic_t *topic;         /* topic: the table's source, NULL for a file */
};

en_table_t *en_table_new(void);
/* NULL is a no-op. */
void en_table_free(en_table_t *t);
/* Appends a row (all null) to t; returns it. */
sl_value_t *en_new_row(const sl_enrich_t *e, en_table_t *t);
/* Builds t's index; returns -1, or the first row whose key appeared before. */
long en_table_index(const sl_enrich_t *e, en_table_t *t);
/* The row of t holding key (not null), or -1. */
long en_lookup(const sl_enrich_t *e, const en_table_t *t, const sl_value_t *key);

/* enrich_topic.c: parses topic, brokers, load_timeout, refresh (0 or -1
 * with errors added); runs the step for a topic table; stops and frees the
 * topic state (NULL topic: no-op). */
int en_topic_parse(sl_enrich_t *e, const sl_node_t *map, sl_errors_t *errs);
void en_topic_run(const sl_enrich_t *e, sl_value_t *rec, sl_arena_t *arena, unsigned reader);
void en_topic_destroy(sl_enrich_t *e);

#endif
