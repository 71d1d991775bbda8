/* Time zones: fixed offsets, the system tz database (tzdata, installed by
 * scripts/deps.sh), TZif images built here byte by byte, and rejection of
 * bad names and corrupt images.
 *
 * Where the expected offsets come from: for real zones, Python's zoneinfo
 * on the same /usr/share/zoneinfo (tzdata 2025b), e.g.
 *   /usr/bin/python3 -c "import zoneinfo, datetime as d; print(d.datetime.fromtimestamp(
 *       1711846800, zoneinfo.ZoneInfo('Europe/Paris')).utcoffset())"
 * For the footer rules of built images, worked out by hand from POSIX (each
 * case says how) and checked against Python's zoneinfo and glibc's TZ
 * parser, except where noted. */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "util/buf.h"
#include "util/common.h"
#include "util/tz.h"

#define DAY 86400

/* ---- building TZif images ---- */

/* One local time type of a built image. */
typedef struct {
    int32_t utoff;
    uint8_t isdst;
} tb_type_t;

/* A TZif image laid out as zic writes it (RFC 8536 3). Version 0 has one
 * 32-bit block and no footer; versions '2'..'4' have a decoy 32-bit block
 * (one type, UTC+01:12:01, no transitions) that a reader must skip, then
 * the 64-bit block and the footer. Designations are all "AAA". */
typedef struct {
    char version;
    size_t n_trans;
    const int64_t *at;
    const uint8_t *idx;
    size_t n_types;
    const tb_type_t *types;
    size_t n_leaps; /* leap-second records, (occurrence, correction) pairs */
    const int64_t *leaps;
    int indicators; /* write isstd and isut arrays (all 0) */
    const char *footer;
} tb_spec_t;

/* Where the parts of a built image are, for tests that corrupt them. */
typedef struct {
    size_t hdr;   /* the header of the block a reader uses */
    size_t idx;   /* its transition type indexes */
    size_t types; /* its local time type records */
    size_t end;   /* the end of that block (the footer's newline) */
} tb_layout_t;

static void tb_be(sl_buf_t *b, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        sl_buf_append(b, &c, 1);
    }
}

static void tb_header(sl_buf_t *b, char version, uint32_t ind, uint32_t leaps, uint32_t times,
                      uint32_t types)
{
    sl_buf_append(b, "TZif", 4);
    sl_buf_append(b, &version, 1);
    sl_buf_append(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15);
    tb_be(b, ind, 4);
    tb_be(b, ind, 4);
    tb_be(b, leaps, 4);
    tb_be(b, times, 4);
    tb_be(b, types, 4);
    tb_be(b, 4, 4); /* charcnt: "AAA\0" */
}

/* Returns the image in an exactly-sized heap buffer (ASan catches reads
 * past its end); the caller frees it. */
static uint8_t *tb_build(const tb_spec_t *s, size_t *len, tb_layout_t *lay)
{
    sl_buf_t b = SL_BUF_INIT;
    int tsize = s->version ? 8 : 4;
    uint32_t ind = s->indicators ? (uint32_t)s->n_types : 0;
    tb_layout_t l;
    if (s->version) {
        tb_header(&b, s->version, 0, 0, 0, 1);
        tb_be(&b, 4321, 4);
        sl_buf_append(&b, "\0\0", 2);
        sl_buf_append(&b, "AAA", 4);
    }
    l.hdr = b.len;
    tb_header(&b, s->version, ind, (uint32_t)s->n_leaps, (uint32_t)s->n_trans,
              (uint32_t)s->n_types);
    for (size_t i = 0; i < s->n_trans; i++) {
        tb_be(&b, (uint64_t)s->at[i], tsize);
    }
    l.idx = b.len;
    for (size_t i = 0; i < s->n_trans; i++) {
        sl_buf_append(&b, &s->idx[i], 1);
    }
    l.types = b.len;
    for (size_t i = 0; i < s->n_types; i++) {
        tb_be(&b, (uint32_t)s->types[i].utoff, 4);
        sl_buf_append(&b, &s->types[i].isdst, 1);
        sl_buf_append(&b, "", 1); /* desigidx 0 */
    }
    sl_buf_append(&b, "AAA", 4);
    for (size_t i = 0; i < s->n_leaps; i++) {
        tb_be(&b, (uint64_t)s->leaps[2 * i], tsize);
        tb_be(&b, (uint64_t)s->leaps[2 * i + 1], 4);
    }
    for (uint32_t i = 0; i < 2 * ind; i++) {
        sl_buf_append(&b, "", 1);
    }
    l.end = b.len;
    if (s->version) {
        sl_buf_putc(&b, '\n');
        sl_buf_puts(&b, s->footer ? s->footer : "");
        sl_buf_putc(&b, '\n');
    }
    uint8_t *out = malloc(b.len);
    memcpy(out, b.data, b.len);
    *len = b.len;
    if (lay) {
        *lay = l;
    }
    sl_buf_free(&b);
    return out;
}

/* An image with no transitions and one standard type: the footer rules at
 * all times (RFC 8536 3.2). */
static uint8_t *tb_footer_only(const char *footer, size_t *len)
{
    static const tb_type_t std = {0, 0};
    tb_spec_t s = {.version = '3', .n_types = 1, .types = &std, .footer = footer};
    return tb_build(&s, len, NULL);
}

static sl_tz_t *tb_parse(const uint8_t *img, size_t len, char *err, size_t errlen)
{
    err[0] = '\0';
    return sl_tz_parse("built", img, len, err, errlen);
}

/* The image is rejected with a message naming the problem. */
static void tb_rejects(const uint8_t *img, size_t len, const char *why, int line)
{
    char err[512];
    sl_tz_t *tz = tb_parse(img, len, err, sizeof(err));
    if (tz != NULL || strstr(err, why) == NULL || strstr(err, "time zone 'built'") == NULL) {
        fprintf(stderr, "%s:%d: image not rejected with \"%s\" (got \"%s\")\n", __FILE__, line, why,
                tz ? "(accepted)" : err);
        test_failures_++;
    }
    sl_tz_destroy(tz);
}
#define REJECTS(img, len, why) tb_rejects(img, len, why, __LINE__)

static int32_t tb_offset(const char *footer, int64_t t)
{
    size_t len;
    char err[512];
    uint8_t *img = tb_footer_only(footer, &len);
    sl_tz_t *tz = tb_parse(img, len, err, sizeof(err));
    int32_t off = tz ? sl_tz_offset(tz, t) : INT32_MIN;
    if (tz == NULL) {
        fprintf(stderr, "footer \"%s\" rejected: %s\n", footer, err);
    }
    sl_tz_destroy(tz);
    free(img);
    return off;
}

static sl_tz_t *load_ok(const char *name)
{
    char err[512] = "";
    sl_tz_t *tz = sl_tz_load(name, NULL, err, sizeof(err));
    if (tz == NULL) {
        fprintf(stderr, "loading %s: %s\n", name, err);
    }
    return tz;
}

/* The name is rejected, with a message containing want. */
static void load_fails(const char *name, const char *dir, const char *want, int line)
{
    char err[512] = "";
    sl_tz_t *tz = sl_tz_load(name, dir, err, sizeof(err));
    if (tz != NULL || strstr(err, want) == NULL) {
        fprintf(stderr, "%s:%d: loading '%s' did not fail with \"%s\" (got \"%s\")\n", __FILE__,
                line, name ? name : "(null)", want, tz ? "(loaded)" : err);
        test_failures_++;
    }
    sl_tz_destroy(tz);
}
#define LOAD_FAILS(name, dir, want) load_fails(name, dir, want, __LINE__)

/* ---- fixed offsets ---- */

TEST(utc_names_are_zero)
{
    const char *names[] = {"UTC", "Z", "Etc/UTC", "GMT"};
    const int64_t ts[] = {INT64_MIN, -5364662400, 0, 1711846800, 4118083200, INT64_MAX};
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        sl_tz_t *tz = load_ok(names[i]);
        CHECK(tz != NULL);
        if (tz == NULL) {
            continue;
        }
        CHECK_STR(sl_tz_name(tz), names[i]);
        for (size_t j = 0; j < SL_ARRAY_LEN(ts); j++) {
            CHECK_INT(sl_tz_offset(tz, ts[j]), 0);
        }
        sl_tz_destroy(tz);
    }
    /* fixed names do not need tzdata: a missing directory does not matter */
    char err[256];
    sl_tz_t *tz = sl_tz_load("Etc/UTC", "/nonexistent/zoneinfo", err, sizeof(err));
    CHECK(tz != NULL);
    sl_tz_destroy(tz);
}

TEST(fixed_offsets)
{
    static const struct {
        const char *name;
        int32_t off;
    } ok[] = {
        {"+05:30", 19800},  {"-08:00", -28800}, {"+0530", 19800},  {"+05", 18000},
        {"-0330", -12600},  {"+00:00", 0},      {"-00", 0},        {"+18:00", 64800},
        {"-18:00", -64800}, {"+1800", 64800},   {"+12:45", 45900}, {"-09:30", -34200},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++) {
        sl_tz_t *tz = load_ok(ok[i].name);
        CHECK(tz != NULL);
        if (tz == NULL) {
            continue;
        }
        CHECK_STR(sl_tz_name(tz), ok[i].name);
        CHECK_INT(sl_tz_offset(tz, INT64_MIN), ok[i].off);
        CHECK_INT(sl_tz_offset(tz, 1711846800), ok[i].off);
        CHECK_INT(sl_tz_offset(tz, INT64_MAX), ok[i].off);
        sl_tz_destroy(tz);
    }
    const char *bad[] = {"+18:01", "-19:00",    "+25",     "+5",    "+5:30", "+05:3",
                         "+05:60", "+05:",      "+05:30x", "++05",  "+",     "-",
                         "+053",   "+05:30:00", "+0a:00",  "-08 00"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        LOAD_FAILS(bad[i], NULL, "invalid time zone offset");
        LOAD_FAILS(bad[i], NULL, "between -18:00 and +18:00");
    }
}

/* ---- the system tz database ---- */

TEST(paris_2024_and_far_away)
{
    sl_tz_t *tz = load_ok("Europe/Paris");
    CHECK(tz != NULL);
    if (tz == NULL) {
        return;
    }
    CHECK_STR(sl_tz_name(tz), "Europe/Paris");
    /* 2024-03-31 01:00:00Z: CET -> CEST */
    CHECK_INT(sl_tz_offset(tz, 1711846800 - 1), 3600);
    CHECK_INT(sl_tz_offset(tz, 1711846800), 7200);
    CHECK_INT(sl_tz_offset(tz, 1711846800 + 1), 7200);
    /* 2024-10-27 01:00:00Z: CEST -> CET */
    CHECK_INT(sl_tz_offset(tz, 1729990800 - 1), 7200);
    CHECK_INT(sl_tz_offset(tz, 1729990800), 3600);
    CHECK_INT(sl_tz_offset(tz, 1717200000), 7200); /* 2024-06-01 */
    /* 2100-07-01 and 2100-01-01: after the file's last transition (2037),
     * from the footer "CET-1CEST,M3.5.0,M10.5.0/3" */
    CHECK_INT(sl_tz_offset(tz, 4118083200), 7200);
    CHECK_INT(sl_tz_offset(tz, 4102444800), 3600);
    /* 1800-01-01: before the first transition, local mean time +0:09:21 */
    CHECK_INT(sl_tz_offset(tz, -5364662400), 561);
    /* the extremes stay well defined */
    CHECK_INT(sl_tz_offset(tz, INT64_MIN), 561);
    int32_t far = sl_tz_offset(tz, INT64_MAX);
    CHECK(far == 3600 || far == 7200);
    sl_tz_destroy(tz);
}

TEST(new_york_2024)
{
    sl_tz_t *tz = load_ok("America/New_York");
    CHECK(tz != NULL);
    if (tz == NULL) {
        return;
    }
    /* 2024-03-10 07:00:00Z (02:00 EST): EST -> EDT */
    CHECK_INT(sl_tz_offset(tz, 1710054000 - 1), -18000);
    CHECK_INT(sl_tz_offset(tz, 1710054000), -14400);
    /* 2024-11-03 06:00:00Z (02:00 EDT): EDT -> EST */
    CHECK_INT(sl_tz_offset(tz, 1730613600 - 1), -14400);
    CHECK_INT(sl_tz_offset(tz, 1730613600), -18000);
    CHECK_INT(sl_tz_offset(tz, 4118083200), -14400);  /* 2100-07-01, footer */
    CHECK_INT(sl_tz_offset(tz, -5364662400), -17762); /* 1800-01-01, LMT -4:56:02 */
    sl_tz_destroy(tz);
}

TEST(lord_howe_half_hour_dst)
{
    sl_tz_t *tz = load_ok("Australia/Lord_Howe");
    CHECK(tz != NULL);
    if (tz == NULL) {
        return;
    }
    CHECK_INT(sl_tz_offset(tz, 1705276800), 39600); /* 2024-01-15: +11 */
    CHECK_INT(sl_tz_offset(tz, 1719792000), 37800); /* 2024-07-01: +10:30 */
    /* 2024-04-06 15:00:00Z (02:00 +11): DST ends */
    CHECK_INT(sl_tz_offset(tz, 1712415600 - 1), 39600);
    CHECK_INT(sl_tz_offset(tz, 1712415600), 37800);
    /* 2024-10-05 15:30:00Z (02:00 +10:30): DST starts */
    CHECK_INT(sl_tz_offset(tz, 1728142200 - 1), 37800);
    CHECK_INT(sl_tz_offset(tz, 1728142200), 39600);
    /* 2100, from the footer "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0" */
    CHECK_INT(sl_tz_offset(tz, 4103654400), 39600); /* 2100-01-15 */
    CHECK_INT(sl_tz_offset(tz, 4118083200), 37800); /* 2100-07-01 */
    sl_tz_destroy(tz);
}

TEST(sydney_dst_in_january)
{
    sl_tz_t *tz = load_ok("Australia/Sydney");
    CHECK(tz != NULL);
    if (tz == NULL) {
        return;
    }
    CHECK_INT(sl_tz_offset(tz, 1705276800), 39600); /* 2024-01-15: AEDT */
    CHECK_INT(sl_tz_offset(tz, 1721001600), 36000); /* 2024-07-15: AEST */
    /* 2024-04-06 16:00:00Z and 2024-10-05 16:00:00Z */
    CHECK_INT(sl_tz_offset(tz, 1712419200 - 1), 39600);
    CHECK_INT(sl_tz_offset(tz, 1712419200), 36000);
    CHECK_INT(sl_tz_offset(tz, 1728144000 - 1), 36000);
    CHECK_INT(sl_tz_offset(tz, 1728144000), 39600);
    /* 2200-01-01 and 2200-07-01, from the footer (DST spans the new year) */
    CHECK_INT(sl_tz_offset(tz, 7258118400), 39600);
    CHECK_INT(sl_tz_offset(tz, 7273756800), 36000);
    sl_tz_destroy(tz);
}

TEST(kolkata)
{
    sl_tz_t *tz = load_ok("Asia/Kolkata");
    CHECK(tz != NULL);
    if (tz == NULL) {
        return;
    }
    CHECK_INT(sl_tz_offset(tz, 1704067200), 19800);  /* 2024-01-01 */
    CHECK_INT(sl_tz_offset(tz, 4102444800), 19800);  /* 2100-01-01, footer "IST-5:30" */
    CHECK_INT(sl_tz_offset(tz, -5364662400), 21208); /* 1800-01-01, LMT +5:53:28 */
    CHECK_INT(sl_tz_offset(tz, INT64_MAX), 19800);
    sl_tz_destroy(tz);
}

/* ---- names that must not load ---- */

TEST(unknown_names_say_what_to_do)
{
    char err[512];
    CHECK(sl_tz_load("Europe/Pariss", NULL, err, sizeof(err)) == NULL);
    CHECK_STR(err, "unknown time zone 'Europe/Pariss': not in /usr/share/zoneinfo (install "
                   "tzdata, or use a name such as Europe/Paris or an offset such as +02:00)");
    LOAD_FAILS("Europe/Paris", "/nonexistent/zoneinfo", "not in /nonexistent/zoneinfo");
    LOAD_FAILS("Europe", NULL, "is a directory");
    LOAD_FAILS("Europe/Paris/", NULL, "unknown time zone");
    LOAD_FAILS("", NULL, "empty time zone name");
    LOAD_FAILS(NULL, NULL, "empty time zone name");
    LOAD_FAILS("Europe/Paris\n", NULL, "invalid character");
    LOAD_FAILS("Europe Paris", NULL, "invalid character");
    LOAD_FAILS("zone.tab", NULL, "invalid character");
    LOAD_FAILS("Europe/Par\xc3\xads", NULL, "invalid character");
    char longname[400];
    memset(longname, 'A', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    LOAD_FAILS(longname, NULL, "too long");
    /* no message buffer: still fails cleanly */
    CHECK(sl_tz_load("Europe/Pariss", NULL, NULL, 0) == NULL);
    CHECK(sl_tz_load("Europe/Pariss", NULL, err, 1) == NULL);
    CHECK_INT(err[0], 0);
}

TEST(path_traversal_is_rejected)
{
    const char *bad[] = {"../../etc/passwd",
                         "Europe/../../../etc/passwd",
                         "Europe/../Europe/Paris",
                         "..",
                         "/etc/passwd",
                         "/usr/share/zoneinfo/Europe/Paris",
                         "Europe/..",
                         "..Europe"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        LOAD_FAILS(bad[i], NULL, "without '/' at the start or '..'");
    }
}

/* ---- loading from a directory ---- */

TEST(load_from_a_directory)
{
    char dir[] = "/tmp/sl_test_tz_XXXXXX", path[256], err[512];
    if (mkdtemp(dir) == NULL) {
        CHECK(!"mkdtemp");
        return;
    }
    static const tb_type_t types[] = {{-3600, 0}, {7200, 1}};
    static const int64_t at[] = {1000};
    static const uint8_t idx[] = {1};
    tb_spec_t s = {.version = '2',
                   .n_trans = 1,
                   .at = at,
                   .idx = idx,
                   .n_types = 2,
                   .types = types,
                   .footer = "<+02>-2"};
    size_t len;
    uint8_t *img = tb_build(&s, &len, NULL);
    snprintf(path, sizeof(path), "%s/Test", dir);
    CHECK_INT(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/Test/Zone", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(img, 1, len, f) == len);
    fclose(f);
    snprintf(path, sizeof(path), "%s/Bad", dir);
    f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(img, 1, len - 3, f) == len - 3); /* footer cut */
    fclose(f);
    snprintf(path, sizeof(path), "%s/Text", dir);
    f = fopen(path, "wb");
    CHECK(f != NULL &&
          fputs("Europe/Paris is a zone name, and this text is not a TZif file.\n", f) >= 0);
    fclose(f);
    free(img);

    sl_tz_t *tz = sl_tz_load("Test/Zone", dir, err, sizeof(err));
    CHECK(tz != NULL);
    if (tz != NULL) {
        CHECK_STR(sl_tz_name(tz), "Test/Zone");
        CHECK_INT(sl_tz_offset(tz, 999), -3600);
        CHECK_INT(sl_tz_offset(tz, 1000), 7200);
        CHECK_INT(sl_tz_offset(tz, INT64_MAX), 7200);
    }
    sl_tz_destroy(tz);
    LOAD_FAILS("Bad", dir, "is not a valid TZif file");
    LOAD_FAILS("Bad", dir, "not terminated by a newline");
    LOAD_FAILS("Text", dir, "bad magic");
    LOAD_FAILS("Text", dir, "reinstall tzdata");
    LOAD_FAILS("Test", dir, "is a directory");
    snprintf(path, sizeof(path), "%s/Fifo", dir);
    CHECK_INT(mkfifo(path, 0600), 0);
    LOAD_FAILS("Fifo", dir, "is not a time zone file"); /* and does not block */
    CHECK_INT(unlink(path), 0);
    LOAD_FAILS("Nope", dir, "not in /tmp/sl_test_tz_");

    snprintf(path, sizeof(path), "%s/Test/Zone", dir);
    CHECK_INT(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/Test", dir);
    CHECK_INT(rmdir(path), 0);
    snprintf(path, sizeof(path), "%s/Bad", dir);
    CHECK_INT(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/Text", dir);
    CHECK_INT(unlink(path), 0);
    CHECK_INT(rmdir(dir), 0);
}

/* ---- built images ---- */

TEST(version1_image)
{
    /* 32-bit times, one of them negative (sign extension), no footer */
    static const tb_type_t types[] = {{3600, 0}, {7200, 1}, {-1800, 0}};
    static const int64_t at[] = {-2000000000, 100, 2000000000};
    static const uint8_t idx[] = {1, 2, 0};
    tb_spec_t s = {.version = 0, .n_trans = 3, .at = at, .idx = idx, .n_types = 3, .types = types};
    size_t len;
    char err[512];
    uint8_t *img = tb_build(&s, &len, NULL);
    sl_tz_t *tz = tb_parse(img, len, err, sizeof(err));
    CHECK(tz != NULL);
    if (tz != NULL) {
        CHECK_STR(sl_tz_name(tz), "built");
        CHECK_INT(sl_tz_offset(tz, INT64_MIN), 3600); /* type 0 */
        CHECK_INT(sl_tz_offset(tz, -2000000001), 3600);
        CHECK_INT(sl_tz_offset(tz, -2000000000), 7200);
        CHECK_INT(sl_tz_offset(tz, 99), 7200);
        CHECK_INT(sl_tz_offset(tz, 100), -1800);
        CHECK_INT(sl_tz_offset(tz, 1999999999), -1800);
        /* no footer: the last transition's type stays */
        CHECK_INT(sl_tz_offset(tz, 2000000000), 3600);
        CHECK_INT(sl_tz_offset(tz, INT64_MAX), 3600);
    }
    sl_tz_destroy(tz);
    free(img);
}

TEST(version2_to_4_images_use_the_64bit_block)
{
    /* Times beyond 32 bits; leap-second records and indicators present
     * (ignored); the decoy v1 block's +4321 must never show. Footer
     * "<-03>3": a fixed UTC-3 after the last transition. */
    static const tb_type_t types[] = {{600, 0}, {3600, 0}, {7200, 1}};
    static const int64_t at[] = {-(INT64_C(1) << 40), INT64_C(1) << 33, INT64_C(1) << 34};
    static const uint8_t idx[] = {1, 2, 1};
    static const int64_t leaps[] = {78796800, 1, 94694401, 2};
    const char versions[] = {'2', '3', '4'};
    for (size_t v = 0; v < SL_ARRAY_LEN(versions); v++) {
        tb_spec_t s = {.version = versions[v],
                       .n_trans = 3,
                       .at = at,
                       .idx = idx,
                       .n_types = 3,
                       .types = types,
                       .n_leaps = 2,
                       .leaps = leaps,
                       .indicators = 1,
                       .footer = "<-03>3"};
        size_t len;
        char err[512];
        uint8_t *img = tb_build(&s, &len, NULL);
        sl_tz_t *tz = tb_parse(img, len, err, sizeof(err));
        CHECK(tz != NULL);
        if (tz != NULL) {
            CHECK_INT(sl_tz_offset(tz, INT64_MIN), 600);
            CHECK_INT(sl_tz_offset(tz, -(INT64_C(1) << 40) - 1), 600);
            CHECK_INT(sl_tz_offset(tz, -(INT64_C(1) << 40)), 3600);
            CHECK_INT(sl_tz_offset(tz, 0), 3600);
            CHECK_INT(sl_tz_offset(tz, (INT64_C(1) << 33) - 1), 3600);
            CHECK_INT(sl_tz_offset(tz, INT64_C(1) << 33), 7200);
            /* on and after the last transition the footer rules (RFC 8536 3.2) */
            CHECK_INT(sl_tz_offset(tz, (INT64_C(1) << 34) - 1), 7200);
            CHECK_INT(sl_tz_offset(tz, INT64_C(1) << 34), -10800);
            CHECK_INT(sl_tz_offset(tz, INT64_MAX), -10800);
        }
        sl_tz_destroy(tz);
        free(img);
    }
}

TEST(empty_footer_and_no_transitions)
{
    static const tb_type_t types[] = {{-18000, 0}, {-14400, 1}};
    static const int64_t at[] = {0, 1000};
    static const uint8_t idx[] = {1, 0};
    size_t len;
    char err[512];
    /* empty footer: the last transition's type stays */
    tb_spec_t s = {.version = '2',
                   .n_trans = 2,
                   .at = at,
                   .idx = idx,
                   .n_types = 2,
                   .types = types,
                   .footer = ""};
    uint8_t *img = tb_build(&s, &len, NULL);
    sl_tz_t *tz = tb_parse(img, len, err, sizeof(err));
    CHECK(tz != NULL);
    if (tz != NULL) {
        CHECK_INT(sl_tz_offset(tz, -1), -18000);
        CHECK_INT(sl_tz_offset(tz, 0), -14400);
        CHECK_INT(sl_tz_offset(tz, 1000), -18000);
        CHECK_INT(sl_tz_offset(tz, INT64_MAX), -18000);
    }
    sl_tz_destroy(tz);
    free(img);
    /* no transitions, empty footer: type 0 always */
    tb_spec_t s2 = {.version = '2', .n_types = 2, .types = types + 1, .footer = ""};
    s2.n_types = 1;
    img = tb_build(&s2, &len, NULL);
    tz = tb_parse(img, len, err, sizeof(err));
    CHECK(tz != NULL);
    if (tz != NULL) {
        CHECK_INT(sl_tz_offset(tz, INT64_MIN), -14400);
        CHECK_INT(sl_tz_offset(tz, INT64_MAX), -14400);
    }
    sl_tz_destroy(tz);
    free(img);
    /* no transitions, a footer: the footer always, even before 1970 */
    CHECK_INT(tb_offset("CET-1CEST,M3.5.0,M10.5.0/3", -5364662400), 3600);    /* 1800-01-01 */
    CHECK_INT(tb_offset("CET-1CEST,M3.5.0,M10.5.0/3", -5349024000), 7200);    /* 1800-07-01 */
    CHECK_INT(tb_offset("CET-1CEST,M3.5.0,M10.5.0/3", 1711846800), 7200);     /* 2024-03-31 */
    CHECK_INT(tb_offset("CET-1CEST,M3.5.0,M10.5.0/3", 1711846800 - 1), 3600); /* 01:00Z */
    /* 2018-03-25 01:00Z: March 2018 began on a Thursday, so its fifth
     * Sunday would be April 1; "week 5" must step back to the 25th */
    CHECK_INT(tb_offset("CET-1CEST,M3.5.0,M10.5.0/3", 1521939600 - 1), 3600);
    CHECK_INT(tb_offset("CET-1CEST,M3.5.0,M10.5.0/3", 1521939600), 7200);
}

TEST(type0_rules_before_the_first_transition)
{
    /* RFC 8536 3.2: before the first transition, time type 0 — even when it
     * is a DST type (zic always makes type 0 the right one). */
    static const tb_type_t types[] = {{7200, 1}, {3600, 0}};
    static const int64_t at[] = {0};
    static const uint8_t idx[] = {1};
    tb_spec_t s = {.version = '2',
                   .n_trans = 1,
                   .at = at,
                   .idx = idx,
                   .n_types = 2,
                   .types = types,
                   .footer = ""};
    size_t len;
    char err[512];
    uint8_t *img = tb_build(&s, &len, NULL);
    sl_tz_t *tz = tb_parse(img, len, err, sizeof(err));
    CHECK(tz != NULL);
    if (tz != NULL) {
        CHECK_INT(sl_tz_offset(tz, -1), 7200);
        CHECK_INT(sl_tz_offset(tz, 0), 3600);
    }
    sl_tz_destroy(tz);
    free(img);
}

TEST(footer_rule_forms)
{
    /* Mm.w.d with a negative time: 2024's last Sunday of March is the 31st,
     * -1:00 in -02 is 2024-03-31 01:00Z; last Sunday of October, 0:00 in
     * -01 is 2024-10-27 01:00Z (America/Nuuk's rule). */
    const char *nuuk = "<-02>2<-01>,M3.5.0/-1,M10.5.0/0";
    CHECK_INT(tb_offset(nuuk, 1711846800 - 1), -7200);
    CHECK_INT(tb_offset(nuuk, 1711846800), -3600);
    CHECK_INT(tb_offset(nuuk, 1729990800 - 1), -3600);
    CHECK_INT(tb_offset(nuuk, 1729990800), -7200);
    /* A time past 24h: the 4th Thursday of March 2024 is the 28th, 26:00
     * is the 29th 02:00 +02 = 2024-03-29 00:00Z; the end, last Sunday of
     * October at 02:00 +03, is 2024-10-26 23:00Z (Asia/Jerusalem's). */
    const char *jerusalem = "IST-2IDT,M3.4.4/26,M10.5.0";
    CHECK_INT(tb_offset(jerusalem, 1711670400 - 1), 7200);
    CHECK_INT(tb_offset(jerusalem, 1711670400), 10800);
    CHECK_INT(tb_offset(jerusalem, 1729983600 - 1), 10800);
    CHECK_INT(tb_offset(jerusalem, 1729983600), 7200);
    /* Jn never counts Feb 29: J60 is March 1 in 2024 too, 02:00 -03 =
     * 05:00Z. The zero-based n counts it: day 300 is Oct 27 in 2024 and
     * Oct 28 in 2023, -1:00 in -02 = 01:00Z that day. (Python's zoneinfo
     * puts the n form one day early; glibc agrees with these.) */
    const char *julian = "XST3XDT,J60/2,300/-1";
    CHECK_INT(tb_offset(julian, 1709208000), -10800); /* 2024-02-29 12:00Z */
    CHECK_INT(tb_offset(julian, 1709269200 - 1), -10800);
    CHECK_INT(tb_offset(julian, 1709269200), -7200);
    CHECK_INT(tb_offset(julian, 1729990800 - 1), -7200);
    CHECK_INT(tb_offset(julian, 1729990800), -10800);
    CHECK_INT(tb_offset(julian, 1698454800 - 1), -7200);
    CHECK_INT(tb_offset(julian, 1698454800), -10800);
    /* J59 is Feb 28 in every year: at 24:00 -03 it is 2024-02-29 03:00Z in
     * a leap year, 2023-03-01 03:00Z in another (glibc agrees; Python's
     * zoneinfo moves J59 to Feb 29 in leap years) */
    const char *j59 = "XST3XDT,J59/24,300/-1";
    CHECK_INT(tb_offset(j59, 1709175600 - 1), -10800);
    CHECK_INT(tb_offset(j59, 1709175600), -7200);
    CHECK_INT(tb_offset(j59, 1677639600 - 1), -10800);
    CHECK_INT(tb_offset(j59, 1677639600), -7200);
    /* DST all year (RFC 8536 3.3.1): starts Jan 1 00:00, ends Dec 31 at
     * 24:00 + 1h, which is the next start */
    const char *always = "EST5EDT,0/0,J365/25";
    CHECK_INT(tb_offset(always, 1704067200), -14400);     /* 2024-01-01 00:00Z */
    CHECK_INT(tb_offset(always, 1735707600 - 1), -14400); /* 2025-01-01 05:00Z */
    CHECK_INT(tb_offset(always, 1735707600), -14400);
    CHECK_INT(tb_offset(always, 1751328000), -14400); /* 2025-07-01 */
    CHECK_INT(tb_offset(always, INT64_MIN), -14400);
    CHECK_INT(tb_offset(always, INT64_MAX), -14400);
    /* The DST offset defaults to std + 1h, and can be given with seconds:
     * "<+0530>-5:30<+0645>-6:45:15" is +5:30 / +6:45:15 */
    CHECK_INT(tb_offset("AAA-5:30BBB,M1.1.0,M12.5.0", 1719792000), 23400); /* 2024-07-01 */
    CHECK_INT(tb_offset("<+0530>-5:30<+0645>-6:45:15,M1.1.0,M12.5.0", 1719792000), 24315);
    /* Southern hemisphere: DST over the new year (Sydney's rule) */
    const char *sydney = "AEST-10AEDT,M10.1.0,M4.1.0/3";
    CHECK_INT(tb_offset(sydney, 1704067200), 39600); /* 2024-01-01 */
    CHECK_INT(tb_offset(sydney, 1719792000), 36000); /* 2024-07-01 */
    /* Offsets at their POSIX limits: -24:59:59 is UTC+24:59:59, and the
     * default DST an hour ahead of that */
    CHECK_INT(tb_offset("AAA-24:59:59", 0), 89999);
    CHECK_INT(tb_offset("AAA24:59:59", 0), -89999);
    CHECK_INT(tb_offset("AAA-24:59:59BBB,J1/0,J365/24", 1719792000), 93599);
}

TEST(every_truncation_is_rejected)
{
    static const tb_type_t types[] = {{3600, 0}, {7200, 1}};
    static const int64_t at[] = {-100, 100};
    static const uint8_t idx[] = {1, 0};
    static const int64_t leaps[] = {78796800, 1};
    const char versions[] = {0, '2', '4'};
    for (size_t v = 0; v < SL_ARRAY_LEN(versions); v++) {
        tb_spec_t s = {.version = versions[v],
                       .n_trans = 2,
                       .at = at,
                       .idx = idx,
                       .n_types = 2,
                       .types = types,
                       .n_leaps = 1,
                       .leaps = leaps,
                       .indicators = 1,
                       .footer = "CET-1CEST,M3.5.0,M10.5.0/3"};
        size_t len;
        char err[512];
        uint8_t *img = tb_build(&s, &len, NULL);
        sl_tz_t *tz = tb_parse(img, len, err, sizeof(err));
        CHECK(tz != NULL);
        sl_tz_destroy(tz);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *part = malloc(cut ? cut : 1);
            memcpy(part, img, cut);
            err[0] = '\0';
            tz = sl_tz_parse("built", part, cut, err, sizeof(err));
            if (tz != NULL || strncmp(err, "time zone 'built': invalid TZif data: ", 38) != 0 ||
                strlen(err) < 45) {
                fprintf(stderr, "version %d cut at %zu of %zu: %s\n", versions[v], cut, len,
                        tz ? "accepted" : err);
                test_failures_++;
            }
            sl_tz_destroy(tz);
            free(part);
        }
        free(img);
    }
    char err[256];
    CHECK(sl_tz_parse("built", NULL, 0, err, sizeof(err)) == NULL);
    CHECK_CONTAINS(err, "header truncated");
}

TEST(corrupt_images_are_rejected)
{
    static const tb_type_t types[] = {{3600, 0}, {7200, 1}};
    static const int64_t at[] = {-100, 100};
    static const uint8_t idx[] = {1, 0};
    tb_spec_t s = {.version = '2',
                   .n_trans = 2,
                   .at = at,
                   .idx = idx,
                   .n_types = 2,
                   .types = types,
                   .footer = "CET-1CEST,M3.5.0,M10.5.0/3"};
    tb_layout_t l;
    size_t len;
    uint8_t *img = tb_build(&s, &len, &l);
    uint8_t *c = malloc(len);
#define RESET() memcpy(c, img, len)
#define PUT32(off, v)                                                                              \
    do {                                                                                           \
        uint32_t v_ = (v);                                                                         \
        c[(off)] = (uint8_t)(v_ >> 24);                                                            \
        c[(off) + 1] = (uint8_t)(v_ >> 16);                                                        \
        c[(off) + 2] = (uint8_t)(v_ >> 8);                                                         \
        c[(off) + 3] = (uint8_t)v_;                                                                \
    } while (0)

    REJECTS(img, 0, "header truncated");
    REJECTS(img, 43, "header truncated");
    RESET();
    c[3] = 'F';
    REJECTS(c, len, "bad magic");
    RESET();
    c[4] = '5';
    REJECTS(c, len, "unsupported TZif version");
    RESET();
    c[4] = '1';
    REJECTS(c, len, "unsupported TZif version");
    RESET();
    c[l.hdr + 4] = '3';
    REJECTS(c, len, "second header says version 3");
    RESET();
    c[l.hdr] = 'X';
    REJECTS(c, len, "bad magic in the second header");
    /* counts that exceed the data, in either block */
    RESET();
    PUT32(32, 0xffffffffu); /* v1 timecnt */
    REJECTS(c, len, "version 1 data block truncated");
    RESET();
    PUT32(l.hdr + 32, 0xffffffffu); /* timecnt */
    REJECTS(c, len, "data block truncated");
    RESET();
    PUT32(l.hdr + 28, 1000); /* leapcnt */
    REJECTS(c, len, "data block truncated");
    RESET();
    PUT32(l.hdr + 40, 0x7fffffffu); /* charcnt */
    REJECTS(c, len, "data block truncated");
    RESET();
    PUT32(l.hdr + 36, 0);
    REJECTS(c, len, "bad local time type count 0");
    RESET();
    PUT32(l.hdr + 36, 300);
    REJECTS(c, len, "bad local time type count 300");
    RESET();
    PUT32(l.hdr + 20, 1); /* isutcnt 1 with typecnt 2 */
    REJECTS(c, len, "bad indicator counts");
    /* indexes and values out of range */
    RESET();
    c[l.idx + 1] = 2;
    REJECTS(c, len, "transition 1: local time type 2 is out of range");
    RESET();
    c[l.idx] = 255;
    REJECTS(c, len, "transition 0: local time type 255 is out of range");
    RESET();
    c[l.types + 6 + 5] = 4; /* desigidx == charcnt */
    REJECTS(c, len, "designation index 4 is out of range");
    RESET();
    c[l.types + 4] = 2;
    REJECTS(c, len, "isdst is 2");
    RESET();
    PUT32(l.types, 93600); /* +26:00 */
    REJECTS(c, len, "UTC offset 93600 s is out of range");
    RESET();
    PUT32(l.types + 6, 0x80000000u);
    REJECTS(c, len, "UTC offset -2147483648 s is out of range");
    RESET();
    memcpy(c + l.hdr + 44 + 8, c + l.hdr + 44, 8);
    REJECTS(c, len, "transition 1 is not after transition 0");
    /* the footer */
    RESET();
    c[l.end] = ' ';
    REJECTS(c, len, "missing footer");
    RESET();
    c[len - 1] = ' ';
    REJECTS(c, len, "not terminated by a newline");
    RESET();
    c[l.end + 4] = '\0';
    REJECTS(c, len, "not a valid POSIX TZ rule");
    REJECTS(img, l.end, "missing footer");
    free(c);
    free(img);

    const char *bad_footers[] = {
        "CET",                           /* no offset */
        "CET-1CEST",                     /* DST without a rule */
        "CE-1",                          /* name too short */
        "<AB>-1",                        /* quoted name too short */
        "<ABC-1",                        /* unterminated quote */
        "<A_C>-1",                       /* bad character in a quoted name */
        "CET-25",                        /* offset hour past 24 */
        "CET-1:60",                      /* minutes */
        "CET-1:00:60",                   /* seconds */
        "CET-1CEST,M13.1.0,M10.5.0",     /* month */
        "CET-1CEST,M0.1.0,M10.5.0",      /* month */
        "CET-1CEST,M3.6.0,M10.5.0",      /* week */
        "CET-1CEST,M3.0.0,M10.5.0",      /* week */
        "CET-1CEST,M3.5.7,M10.5.0",      /* weekday */
        "CET-1CEST,M3.5,M10.5.0",        /* incomplete */
        "CET-1CEST,J0,J365",             /* Jn starts at 1 */
        "CET-1CEST,J1,J366",             /* Jn ends at 365 */
        "CET-1CEST,366,J365",            /* n ends at 365 */
        "CET-1CEST,M3.5.0/168,M10.5.0",  /* time past 167h */
        "CET-1CEST,M3.5.0/-168,M10.5.0", /* time before -167h */
        "CET-1CEST,M3.5.0,M10.5.0,",     /* trailing comma */
        "CET-1CEST,M3.5.0",              /* one date */
        "CET-1 ",                        /* trailing space */
        "CET-1CEST-2-3,M3.5.0,M10.5.0",  /* junk */
        "CET-1CEST,M3.5.0/2:00:00:00,M10.5.0",
        "CET-0001", /* too many hour digits */
        "-1",       /* no name */
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad_footers); i++) {
        img = tb_footer_only(bad_footers[i], &len);
        REJECTS(img, len, "is not a valid POSIX TZ rule");
        free(img);
    }
    /* the shown footer is sanitised */
    img = tb_footer_only("C\x01T-1", &len);
    REJECTS(img, len, "'C?T-1'");
    free(img);
#undef RESET
#undef PUT32
}

/* ---- threads ---- */

static const int64_t thread_ts[] = {INT64_MIN,  -5364662400, 0,          1711846799, 1711846800,
                                    1729990799, 1729990800,  4118083200, INT64_MAX};

static void *thread_lookups(void *arg)
{
    const sl_tz_t *tz = arg;
    int64_t sum = 0;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < SL_ARRAY_LEN(thread_ts); i++) {
            sum += sl_tz_offset(tz, thread_ts[i]);
        }
    }
    return (void *)(intptr_t)(sum / 2000);
}

TEST(one_zone_shared_by_threads)
{
    sl_tz_t *tz = load_ok("Europe/Paris");
    CHECK(tz != NULL);
    if (tz == NULL) {
        return;
    }
    int64_t want = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(thread_ts); i++) {
        want += sl_tz_offset(tz, thread_ts[i]);
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        CHECK_INT(pthread_create(&th[i], NULL, thread_lookups, tz), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *got;
        CHECK_INT(pthread_join(th[i], &got), 0);
        CHECK_INT((intptr_t)got, want);
    }
    sl_tz_destroy(tz);
    sl_tz_destroy(NULL);
}

TEST_MAIN(T(utc_names_are_zero), T(fixed_offsets), T(paris_2024_and_far_away), T(new_york_2024),
          T(lord_howe_half_hour_dst), T(sydney_dst_in_january), T(kolkata),
          T(unknown_names_say_what_to_do), T(path_traversal_is_rejected), T(load_from_a_directory),
          T(version1_image), T(version2_to_4_images_use_the_64bit_block),
          T(empty_footer_and_no_transitions), T(type0_rules_before_the_first_transition),
          T(footer_rule_forms), T(every_truncation_is_rejected), T(corrupt_images_are_rejected),
          T(one_zone_shared_by_threads))
