/* Fuzzes the aggregate commit-metadata reader (sl_agg_restore): the bytes
 * come from Kafka's committed offsets, written by anyone in the group.
 * Properties on top of "never crashes, never reads past the input":
 *  - it accepts or refuses (0 / -1), nothing else;
 *  - what it accepted is carried on: the metadata written next for the
 *    same partition is accepted again and carries a boundary at least as
 *    late as the one read. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/schema.h"
#include "stages/aggregate.h"

static sl_doc_t *doc;
static sl_schema_t schema;
static sl_agg_conf_t *conf;

static void fz_setup(void)
{
    static const char text[] = "schema:\n"
                               "  site: {type: int64}\n"
                               "  ts: {type: timestamp}\n"
                               "aggregate:\n"
                               "  group_by: [site]\n"
                               "  window: {field: ts, size: 1h}\n"
                               "  compute: {n: count()}\n"
                               "  output: absolute\n";
    sl_errors_t errs = {0};
    int bad = 0;
    doc = sl_doc_load_string("fuzz.yaml", text, strlen(text), &errs);
    const sl_node_t *root = sl_doc_root(doc);
    if (sl_schema_parse(sl_node_get(root, "schema"), "fuzz.yaml", &schema, &errs) != 0) {
        abort();
    }
    sl_schema_finish(&schema);
    conf = sl_agg_conf_parse(sl_node_get(root, "aggregate"), "fuzz.yaml", &schema, &errs, &bad);
    if (conf == NULL) {
        abort();
    }
    sl_errors_free(&errs);
}

static int64_t fz_closed(const char *meta)
{
    const char *p = strstr(meta, "closed=");
    return p ? strtoll(p + 7, NULL, 10) : INT64_MIN;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (conf == NULL) {
        fz_setup();
    }
    sl_agg_t *a = sl_agg_create(conf, &schema);
    uint32_t slot = size > 0 ? data[0] % 40 : 0;
    int rc = sl_agg_restore(a, slot, 3, data, size);
    if (rc != 0 && rc != -1) {
        abort();
    }
    char meta[96];
    size_t n = sl_agg_commit_meta(a, slot, 3, 42, meta, sizeof(meta));
    if (n == 0) {
        abort(); /* absolute mode always writes metadata */
    }
    if (rc == 0) {
        char in[96];
        memcpy(in, data, size);
        in[size] = '\0';
        if (fz_closed(meta) < fz_closed(in)) {
            abort(); /* the boundary read must be carried on */
        }
        sl_agg_t *b = sl_agg_create(conf, &schema);
        if (sl_agg_restore(b, slot, 3, meta, n) != 0) {
            abort();
        }
        sl_agg_destroy(b);
    }
    sl_agg_destroy(a);
    return 0;
}
