/* Fuzzes the enrich step's table loader (src/stages/enrich.c): the input is
 * the table file, loaded as CSV when its first byte is even and as NDJSON
 * otherwise (that byte is dropped), against a fixed key and typed columns.
 * Properties on top of "never crashes": a rejected table always comes with
 * exactly one error naming the config position; a loaded table adds its six
 * fields and answers lookups of keys -3..49 (hits and misses). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/schema.h"
#include "stages/enrich.h"

static sl_schema_t fz_record;

static void fz_init(void)
{
    if (fz_record.n_fields > 0) {
        return;
    }
    static const struct {
        const char *name;
        sl_type_t type;
    } f[] = {{"id", SL_TYPE_INT64}, {"name", SL_TYPE_STRING}};
    fz_record.fields = sl_xcalloc(2, sizeof(sl_field_t));
    for (size_t i = 0; i < 2; i++) {
        fz_record.fields[i].name = sl_xstrdup(f[i].name);
        fz_record.fields[i].name_len = strlen(f[i].name);
        fz_record.fields[i].type = f[i].type;
        fz_record.fields[i].def.is_null = true;
    }
    fz_record.n_fields = 2;
    sl_schema_finish(&fz_record);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fz_init();
    bool csv = (data[0] & 1) == 0;
    char path[128];
    snprintf(path, sizeof(path), "/tmp/fuzz-enrich-%d.%s", (int)getpid(), csv ? "csv" : "ndjson");
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return 0;
    }
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    char text[512];
    snprintf(text, sizeof(text),
             "enrich: {key: id, file: %s, fields: {age: int32, w: double, ok: bool, d: date, t: "
             "timestamp, s: string}}\n",
             path);
    sl_errors_t errs = {0};
    sl_doc_t *doc = sl_doc_load_string("fz.yaml", text, strlen(text), &errs);
    const sl_node_t *map = sl_node_get(sl_doc_root(doc), "enrich");
    /* a copy of the record schema per input: the step appends to it */
    sl_schema_t rec = {0};
    rec.fields = sl_xcalloc(fz_record.n_fields, sizeof(sl_field_t));
    for (size_t i = 0; i < fz_record.n_fields; i++) {
        rec.fields[i] = fz_record.fields[i];
        rec.fields[i].name = sl_xstrdup(fz_record.fields[i].name);
    }
    rec.n_fields = fz_record.n_fields;
    sl_schema_finish(&rec);
    sl_enrich_t *e = sl_enrich_parse(map, NULL, &rec, &errs);
    if (e == NULL) {
        if (errs.n != 1 || strstr(errs.msgs[0], "fz.yaml:1:") == NULL) {
            fprintf(stderr, "fuzz_enrich: %zu errors: %s\n", errs.n, errs.n ? errs.msgs[0] : "");
            abort();
        }
    } else {
        if (rec.n_fields != 8) {
            abort();
        }
        sl_value_t v[8];
        for (long k = -3; k < 50; k++) {
            for (int i = 0; i < 8; i++) {
                v[i].is_null = true;
            }
            v[0] = (sl_value_t){.is_null = false, .u.i = k};
            sl_enrich_run(e, v, NULL, 0);
        }
        sl_enrich_destroy(e);
    }
    sl_schema_free(&rec);
    sl_doc_free(doc);
    sl_errors_free(&errs);
    unlink(path);
    return 0;
}
