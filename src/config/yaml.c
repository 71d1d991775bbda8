/* YAML into sl_node_t trees with libyaml's event parser. Every node remembers
 * where it came from; scalars get ${VAR} interpolation. Features a config does
 * not need (anchors, aliases, tags, several documents) are errors rather than
 * surprises. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/config.h"
#include "util/arena.h"

/* Deeper nesting than any config needs; bounds the recursion below. */
#define SL_YAML_MAX_DEPTH 64

struct sl_doc {
    sl_arena_t arena; /* every node, array and string of the document */
    const char *path; /* in the arena */
    sl_node_t *root;
};

typedef struct sl_yl {
    yaml_parser_t parser;
    sl_doc_t *doc;
    sl_errors_t *errs;
    const char *text; /* the whole input, for positions of reader errors */
    size_t len;
} sl_yl_t;

/* A growable array of node pointers, malloc'ed while a collection is parsed
 * and copied into the arena when it is complete. */
typedef struct sl_yl_vec {
    sl_node_t **items;
    size_t n, cap;
} sl_yl_vec_t;

static void sl_yl_vec_push(sl_yl_vec_t *v, sl_node_t *node)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 8;
        v->items = sl_xrealloc(v->items, v->cap * sizeof(sl_node_t *));
    }
    v->items[v->n++] = node;
}

static sl_node_t **sl_yl_vec_to_arena(sl_yl_t *y, const sl_yl_vec_t *v)
{
    if (v->n == 0) {
        return NULL;
    }
    sl_node_t **a = sl_arena_alloc(&y->doc->arena, v->n * sizeof(sl_node_t *));
    memcpy(a, v->items, v->n * sizeof(sl_node_t *));
    return a;
}

/* libyaml marks are 0-based size_t; ours are 1-based int. */
static int sl_yl_pos(size_t zero_based)
{
    return zero_based < (size_t)INT32_MAX ? (int)zero_based + 1 : INT32_MAX;
}

static sl_node_t *sl_yl_new_node(sl_yl_t *y, sl_node_kind_t kind, yaml_mark_t mark)
{
    sl_node_t *node = sl_arena_alloc(&y->doc->arena, sizeof(*node));
    memset(node, 0, sizeof(*node));
    node->kind = kind;
    node->file = y->doc->path;
    node->line = sl_yl_pos(mark.line);
    node->col = sl_yl_pos(mark.column);
    return node;
}

/* Adds "problem (context at line N)" for a libyaml parser or scanner error. */
static void sl_yl_syntax_error(sl_yl_t *y)
{
    const yaml_parser_t *p = &y->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    int line = 0, col = 0;
    if (p->error == YAML_READER_ERROR) {
        /* reader errors carry a byte offset, not a mark */
        size_t off = SL_MIN(p->problem_offset, y->len);
        line = 1;
        col = 1;
        for (size_t i = 0; i < off; i++) {
            if (y->text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (p->problem_value >= 0) {
            sl_errors_add(y->errs, y->doc->path, line, col, "invalid YAML: %s (0x%x)", problem,
                          (unsigned)p->problem_value);
        } else {
            sl_errors_add(y->errs, y->doc->path, line, col, "invalid YAML: %s", problem);
        }
        return;
    }
    if (p->error == YAML_SCANNER_ERROR || p->error == YAML_PARSER_ERROR) {
        line = sl_yl_pos(p->problem_mark.line);
        col = sl_yl_pos(p->problem_mark.column);
    }

    /* The usual cause of "found character that cannot start any token" is a
     * tab in the indentation: say so. */
    const char *hint = "";
    if (line > 0) {
        size_t i = 0;
        for (int l = 1; l < line && i < y->len; i++) {
            if (y->text[i] == '\n') {
                l++;
            }
        }
        while (i < y->len && (y->text[i] == ' ' || y->text[i] == '\t')) {
            if (y->text[i] == '\t') {
                hint = " (tabs are not allowed in YAML indentation; use spaces)";
                break;
            }
            i++;
        }
    }
    if (p->context != NULL) {
        sl_errors_add(y->errs, y->doc->path, line, col, "invalid YAML: %s (%s at line %zu)%s",
                      problem, p->context, p->context_mark.line + 1, hint);
    } else {
        sl_errors_add(y->errs, y->doc->path, line, col, "invalid YAML: %s%s", problem, hint);
    }
}

/* Reads the next event. Returns 0, or -1 with the syntax error added. */
static int sl_yl_next(sl_yl_t *y, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&y->parser, ev)) {
        sl_yl_syntax_error(y);
        return -1;
    }
    return 0;
}

static void sl_yl_check_anchor_tag(sl_yl_t *y, const sl_node_t *node, const yaml_char_t *anchor,
                                   const yaml_char_t *tag, bool *str_tag)
{
    if (anchor != NULL) {
        sl_errors_add(y->errs, y->doc->path, node->line, node->col,
                      "YAML anchors (&%s) are not supported; repeat the value instead",
                      (const char *)anchor);
    }
    if (tag == NULL) {
        return;
    }
    if (str_tag != NULL && strcmp((const char *)tag, YAML_STR_TAG) == 0) {
        *str_tag = true;
        return;
    }
    sl_errors_add(y->errs, y->doc->path, node->line, node->col,
                  "YAML tags (%s) are not supported (only !!str on scalars)", (const char *)tag);
}

static bool sl_yl_is_name_start(char c)
{
    return c == '_' || isalpha((unsigned char)c);
}

static bool sl_yl_is_name_char(char c)
{
    return c == '_' || isalnum((unsigned char)c);
}

/* Appends the n bytes of s to out with ${VAR}, ${VAR:-default} and $$
 * replaced. Errors are added at line:col (the scalar's position). A '$' not
 * followed by '{' or '$' is kept, so regexes like "^a+$" need no escaping. */
static void sl_yl_interpolate(sl_yl_t *y, const char *s, size_t n, int line, int col, sl_buf_t *out)
{
    size_t i = 0;
    while (i < n) {
        const char *dollar = memchr(s + i, '$', n - i);
        if (dollar == NULL) {
            sl_buf_append(out, s + i, n - i);
            break;
        }
        size_t d = (size_t)(dollar - s);
        sl_buf_append(out, s + i, d - i);
        if (d + 1 < n && s[d + 1] == '$') {
            sl_buf_putc(out, '$');
            i = d + 2;
            continue;
        }
        if (d + 1 >= n || s[d + 1] != '{') {
            sl_buf_putc(out, '$');
            i = d + 1;
            continue;
        }
        /* ${NAME} or ${NAME:-default} */
        size_t name = d + 2, e = name;
        const char *close = memchr(s + name, '}', n - name);
        if (close == NULL) {
            sl_errors_add(y->errs, y->doc->path, line, col,
                          "unterminated '${' in '%.*s' (expected ${NAME} or ${NAME:-default}; "
                          "write $$ for a literal $)",
                          (int)SL_MIN(n, 200), s);
            return;
        }
        size_t end = (size_t)(close - s);
        if (e < end && sl_yl_is_name_start(s[e])) {
            while (e < end && sl_yl_is_name_char(s[e])) {
                e++;
            }
        }
        bool has_default = e + 1 < end && s[e] == ':' && s[e + 1] == '-';
        if (e == name || (e != end && !has_default)) {
            sl_errors_add(y->errs, y->doc->path, line, col,
                          "malformed '%.*s' (expected ${NAME} or ${NAME:-default}, NAME made of "
                          "letters, digits and _; write $$ for a literal $)",
                          (int)SL_MIN(end + 1 - d, 200), s + d);
            return;
        }
        char *var = sl_xstrndup(s + name, e - name);
        const char *val = getenv(var);
        if (has_default && (val == NULL || val[0] == '\0')) {
            sl_buf_append(out, s + e + 2, end - (e + 2));
        } else if (val != NULL) {
            sl_buf_puts(out, val);
        } else {
            sl_errors_add(y->errs, y->doc->path, line, col,
                          "environment variable %s is not set (use ${%s:-default} or export it)",
                          var, var);
        }
        free(var);
        i = end + 1;
    }
}

static int sl_yl_node(sl_yl_t *y, yaml_event_t *ev, int depth, sl_node_t **out);

static sl_node_t *sl_yl_scalar(sl_yl_t *y, yaml_event_t *ev)
{
    sl_node_t *node = sl_yl_new_node(y, SL_NODE_SCALAR, ev->start_mark);
    bool str_tag = false;
    sl_yl_check_anchor_tag(y, node, ev->data.scalar.anchor, ev->data.scalar.tag, &str_tag);
    node->quoted = str_tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;

    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if (memchr(s, '\0', n) != NULL) {
        sl_errors_add(y->errs, y->doc->path, node->line, node->col,
                      "scalar contains a NUL character");
    }
    sl_buf_t b = SL_BUF_INIT;
    sl_yl_interpolate(y, s, n, node->line, node->col, &b);
    node->scalar = sl_arena_strndup(&y->doc->arena, b.data ? b.data : "", b.len);
    sl_buf_free(&b);
    return node;
}

/* Parses the rest of a sequence whose start event was ev. */
static int sl_yl_seq(sl_yl_t *y, yaml_event_t *ev, int depth, sl_node_t **out)
{
    int rc = -1;
    sl_yl_vec_t items = {NULL, 0, 0};
    sl_node_t *node = sl_yl_new_node(y, SL_NODE_SEQ, ev->start_mark);
    sl_yl_check_anchor_tag(y, node, ev->data.sequence_start.anchor, ev->data.sequence_start.tag,
                           NULL);
    for (;;) {
        yaml_event_t item;
        if (sl_yl_next(y, &item) != 0) {
            goto out;
        }
        if (item.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&item);
            break;
        }
        sl_node_t *child;
        if (sl_yl_node(y, &item, depth + 1, &child) != 0) {
            goto out;
        }
        sl_yl_vec_push(&items, child);
    }
    node->values = sl_yl_vec_to_arena(y, &items);
    node->n = items.n;
    *out = node;
    rc = 0;
out:
    free(items.items);
    return rc;
}

/* Parses the rest of a mapping whose start event was ev. */
static int sl_yl_map(sl_yl_t *y, yaml_event_t *ev, int depth, sl_node_t **out)
{
    int rc = -1;
    sl_yl_vec_t keys = {NULL, 0, 0}, values = {NULL, 0, 0};
    sl_node_t *node = sl_yl_new_node(y, SL_NODE_MAP, ev->start_mark);
    sl_yl_check_anchor_tag(y, node, ev->data.mapping_start.anchor, ev->data.mapping_start.tag,
                           NULL);
    for (;;) {
        yaml_event_t kev, vev;
        if (sl_yl_next(y, &kev) != 0) {
            goto out;
        }
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        sl_node_t *key, *value;
        if (sl_yl_node(y, &kev, depth + 1, &key) != 0) {
            goto out;
        }
        if (sl_yl_next(y, &vev) != 0) {
            goto out;
        }
        if (sl_yl_node(y, &vev, depth + 1, &value) != 0) {
            goto out;
        }
        if (key->kind != SL_NODE_SCALAR) {
            sl_errors_add(y->errs, y->doc->path, key->line, key->col,
                          "map keys must be scalars, got %s", sl_node_kind_name(key));
            continue;
        }
        bool dup = false;
        for (size_t i = 0; i < keys.n && !dup; i++) {
            if (strcmp(keys.items[i]->scalar, key->scalar) == 0) {
                sl_errors_add(y->errs, y->doc->path, key->line, key->col,
                              "duplicate key '%s' (first at line %d)", key->scalar,
                              keys.items[i]->line);
                dup = true;
            }
        }
        if (!dup) {
            sl_yl_vec_push(&keys, key);
            sl_yl_vec_push(&values, value);
        }
    }
    node->keys = sl_yl_vec_to_arena(y, &keys);
    node->values = sl_yl_vec_to_arena(y, &values);
    node->n = keys.n;
    *out = node;
    rc = 0;
out:
    free(keys.items);
    free(values.items);
    return rc;
}

/* Builds the node that starts with ev (consumed) and everything below it.
 * Returns 0 with *out set (semantic errors are only added to the list), or
 * -1 when parsing cannot go on (syntax error, too deep). */
static int sl_yl_node(sl_yl_t *y, yaml_event_t *ev, int depth, sl_node_t **out)
{
    int rc = -1;
    if (depth > SL_YAML_MAX_DEPTH) {
        sl_errors_add(y->errs, y->doc->path, sl_yl_pos(ev->start_mark.line),
                      sl_yl_pos(ev->start_mark.column), "nesting deeper than %d levels",
                      SL_YAML_MAX_DEPTH);
        goto out;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        *out = sl_yl_scalar(y, ev);
        rc = 0;
        break;
    case YAML_SEQUENCE_START_EVENT:
        rc = sl_yl_seq(y, ev, depth, out);
        break;
    case YAML_MAPPING_START_EVENT:
        rc = sl_yl_map(y, ev, depth, out);
        break;
    case YAML_ALIAS_EVENT: {
        sl_node_t *node = sl_yl_new_node(y, SL_NODE_SCALAR, ev->start_mark);
        sl_errors_add(y->errs, y->doc->path, node->line, node->col,
                      "YAML aliases (*%s) are not supported; repeat the value instead",
                      (const char *)ev->data.alias.anchor);
        node->scalar = sl_arena_strndup(&y->doc->arena, "", 0);
        *out = node;
        rc = 0;
        break;
    }
    default:
        sl_errors_add(y->errs, y->doc->path, sl_yl_pos(ev->start_mark.line),
                      sl_yl_pos(ev->start_mark.column), "unexpected YAML event %d", (int)ev->type);
        break;
    }
out:
    yaml_event_delete(ev);
    return rc;
}

/* Parses the event stream into doc->root. Returns 0 if it could be read to
 * the end (errors may still have been added), -1 otherwise. */
static int sl_yl_stream(sl_yl_t *y)
{
    int rc = -1;
    yaml_event_t ev;
    if (sl_yl_next(y, &ev) != 0) {
        return -1;
    }
    yaml_event_delete(&ev); /* STREAM-START */
    if (sl_yl_next(y, &ev) != 0) {
        return -1;
    }
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return 0; /* empty file */
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */

    if (sl_yl_next(y, &ev) != 0) {
        return -1;
    }
    if (sl_yl_node(y, &ev, 1, &y->doc->root) != 0) {
        return -1;
    }
    const sl_node_t *root = y->doc->root;
    if (root->kind == SL_NODE_SCALAR && !root->quoted && root->scalar[0] == '\0') {
        y->doc->root = NULL; /* "---" and nothing else */
    }
    if (sl_yl_next(y, &ev) != 0) {
        return -1;
    }
    yaml_event_delete(&ev); /* DOCUMENT-END */

    if (sl_yl_next(y, &ev) != 0) {
        return -1;
    }
    if (ev.type == YAML_DOCUMENT_START_EVENT) {
        sl_errors_add(y->errs, y->doc->path, sl_yl_pos(ev.start_mark.line),
                      sl_yl_pos(ev.start_mark.column),
                      "more than one YAML document ('---' starts another one); a config is one "
                      "document");
        goto out;
    }
    rc = 0;
out:
    yaml_event_delete(&ev);
    return rc;
}

sl_doc_t *sl_doc_load_string(const char *name, const char *text, size_t len, sl_errors_t *errs)
{
    size_t errs_before = errs->n;
    sl_doc_t *doc = sl_xcalloc(1, sizeof(*doc));
    sl_arena_init(&doc->arena, 0);
    if (name == NULL) {
        name = "<config>";
    }
    doc->path = sl_arena_strndup(&doc->arena, name, strlen(name));

    sl_yl_t y;
    memset(&y, 0, sizeof(y));
    y.doc = doc;
    y.errs = errs;
    y.text = text;
    y.len = len;
    if (!yaml_parser_initialize(&y.parser)) {
        sl_fatal("out of memory initialising the YAML parser");
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)(text ? text : ""),
                                 text ? len : 0);
    int rc = sl_yl_stream(&y);
    yaml_parser_delete(&y.parser);
    if (rc != 0 || errs->n != errs_before) {
        sl_doc_free(doc);
        return NULL;
    }
    return doc;
}

sl_doc_t *sl_doc_load_file(const char *path, sl_errors_t *errs)
{
    sl_doc_t *doc = NULL;
    sl_buf_t text = SL_BUF_INIT;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        sl_errors_add(errs, path, 0, 0, "cannot open: %s", strerror(errno));
        goto out;
    }
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        sl_buf_append(&text, chunk, got);
    }
    if (ferror(f)) {
        sl_errors_add(errs, path, 0, 0, "cannot read: %s", strerror(errno));
        goto out;
    }
    doc = sl_doc_load_string(path, text.data ? text.data : "", text.len, errs);
out:
    if (f != NULL) {
        fclose(f);
    }
    sl_buf_free(&text);
    return doc;
}

const sl_node_t *sl_doc_root(const sl_doc_t *doc)
{
    return doc ? doc->root : NULL;
}

const char *sl_doc_path(const sl_doc_t *doc)
{
    return doc ? doc->path : NULL;
}

void sl_doc_free(sl_doc_t *doc)
{
    if (doc == NULL) {
        return;
    }
    sl_arena_free(&doc->arena);
    free(doc);
}

const sl_node_t *sl_node_get(const sl_node_t *map, const char *key)
{
    if (map == NULL || map->kind != SL_NODE_MAP) {
        return NULL;
    }
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i]->scalar, key) == 0) {
            return map->values[i];
        }
    }
    return NULL;
}

const char *sl_node_kind_name(const sl_node_t *node)
{
    if (node == NULL) {
        return "nothing";
    }
    switch (node->kind) {
    case SL_NODE_SCALAR:
        return "a scalar";
    case SL_NODE_MAP:
        return "a map";
    case SL_NODE_SEQ:
        return "a list";
    }
    return "an unknown node";
}

bool sl_node_is_null(const sl_node_t *node)
{
    if (node == NULL) {
        return true;
    }
    if (node->kind != SL_NODE_SCALAR || node->quoted) {
        return false;
    }
    const char *s = node->scalar;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

int sl_node_check_keys(const sl_node_t *map, const char *const *known, const char *what,
                       sl_errors_t *errs)
{
    for (size_t i = 0; i < map->n; i++) {
        const sl_node_t *k = map->keys[i];
        size_t j = 0;
        while (known[j] && strcmp(known[j], k->scalar) != 0) {
            j++;
        }
        if (known[j] == NULL) {
            sl_buf_t names = SL_BUF_INIT;
            for (j = 0; known[j]; j++) {
                sl_buf_printf(&names, "%s%s", j ? ", " : "", known[j]);
            }
            sl_errors_add(errs, k->file, k->line, k->col, "%s: unknown key '%s' (known: %s)", what,
                          k->scalar, names.data ? names.data : "");
            sl_buf_free(&names);
            return -1;
        }
    }
    return 0;
}
