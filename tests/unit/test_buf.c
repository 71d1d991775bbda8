#include <stdint.h>

#include "test.h"
#include "util/buf.h"

static const char *esc(sl_buf_t *b, const char *s, size_t n)
{
    sl_buf_reset(b);
    sl_buf_json_escape(b, s, n);
    return b->data;
}

TEST(escape_passes_plain_text_through)
{
    sl_buf_t b = SL_BUF_INIT;
    CHECK_STR(esc(&b, "hello world", 11), "hello world");
    CHECK_STR(esc(&b, "caf\xc3\xa9", 5), "caf\xc3\xa9"); /* UTF-8 as is */
    CHECK_INT(esc(&b, "", 0)[0], 0);
    sl_buf_free(&b);
}

TEST(escape_quotes_backslashes_and_controls)
{
    sl_buf_t b = SL_BUF_INIT;
    CHECK_STR(esc(&b, "a\"b", 3), "a\\\"b");
    CHECK_STR(esc(&b, "\\", 1), "\\\\");
    CHECK_STR(esc(&b, "x\ny\tz\r", 6), "x\\ny\\tz\\r");
    CHECK_STR(esc(&b, "\x01", 1), "\\u0001");
    CHECK_STR(esc(&b, "\x1f\x7f", 2), "\\u001f\\u007f");
    /* an embedded NUL is escaped, and the bytes after it kept */
    CHECK_STR(esc(&b, "a\0b", 3), "a\\u0000b");
    /* escapes at both ends and back to back */
    CHECK_STR(esc(&b, "\"\"x\"", 4), "\\\"\\\"x\\\"");
    sl_buf_free(&b);
}

TEST(escape_appends)
{
    sl_buf_t b = SL_BUF_INIT;
    sl_buf_puts(&b, "[");
    sl_buf_json_escape(&b, "q\"", 2);
    sl_buf_puts(&b, "]");
    CHECK_STR(b.data, "[q\\\"]");
    CHECK_INT(b.len, 5);
    sl_buf_free(&b);
}

TEST(append_i64_formats_every_magnitude)
{
    sl_buf_t b = SL_BUF_INIT;
    const struct {
        int64_t v;
        const char *s;
    } cases[] = {
        {0, "0"},
        {7, "7"},
        {-7, "-7"},
        {10, "10"},
        {3491, "3491"},
        {-1000000, "-1000000"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_buf_reset(&b);
        sl_buf_append_i64(&b, cases[i].v);
        CHECK_STR(b.data, cases[i].s);
    }
    sl_buf_free(&b);
}

TEST_MAIN(T(escape_passes_plain_text_through), T(escape_quotes_backslashes_and_controls),
          T(escape_appends), T(append_i64_formats_every_magnitude))
