/* Fuzzes the TZif parser (sl_tz_parse) and the zone-name checks of
 * sl_tz_load. Properties checked on top of "never crashes, never hangs,
 * never reads past the input":
 *  - a rejection has a non-empty, bounded message that names the zone;
 *  - an accepted image gives an offset within +-26 hours at every instant
 *    tried: the int64 extremes, instants around the epoch, 1901, 2038 and
 *    the 400-year cycle, and instants read from the input itself (so the
 *    fuzzer can aim at its own transitions);
 *  - lookups are pure: the same instant gives the same offset again;
 *  - a short input taken as a zone name, loaded from a directory that does
 *    not exist, either fails with a message or is a fixed offset within
 *    +-18 hours (no name may reach the file system outside that
 *    directory, and none reaches any file here at all). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"
#include "util/tz.h"

#define FZ_MAX_OFFSET (26 * 3600)
#define FZ_MAX_FIXED (18 * 3600)
#define FZ_MISSING_DIR "/nonexistent/sluice-fuzz-zoneinfo"

static void fz_fail(const char *what, int64_t t, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_tzif: %s (t = %lld, input %zu bytes)\n", what, (long long)t, size);
    for (size_t i = 0; i < size && i < 256; i++) {
        fprintf(stderr, "%02x%s", data[i], i % 32 == 31 ? "\n" : "");
    }
    fputc('\n', stderr);
    abort();
}

static void fz_check_err(const char *err, size_t cap, const char *name, const uint8_t *data,
                         size_t size)
{
    size_t n = strnlen(err, cap);
    if (n == 0 || n == cap || strstr(err, name) == NULL) {
        fz_fail("rejected without a proper message", 0, data, size);
    }
}

static void fz_check_offset(const sl_tz_t *tz, int64_t t, const uint8_t *data, size_t size)
{
    int32_t off = sl_tz_offset(tz, t);
    if (off < -FZ_MAX_OFFSET || off > FZ_MAX_OFFSET) {
        fz_fail("offset beyond 26 hours", t, data, size);
    }
    if (sl_tz_offset(tz, t) != off) {
        fz_fail("offset not stable", t, data, size);
    }
}

static void fz_names(const uint8_t *data, size_t size)
{
    char name[64], err[512];
    if (size == 0 || size >= sizeof(name) || memchr(data, '\0', size) != NULL) {
        return;
    }
    memcpy(name, data, size);
    name[size] = '\0';
    err[0] = '\0';
    sl_tz_t *tz = sl_tz_load(name, FZ_MISSING_DIR, err, sizeof(err));
    if (tz == NULL) {
        size_t n = strnlen(err, sizeof(err));
        if (n == 0 || n == sizeof(err)) {
            fz_fail("name rejected without a proper message", 0, data, size);
        }
        return;
    }
    int32_t off = sl_tz_offset(tz, 0);
    if (off < -FZ_MAX_FIXED || off > FZ_MAX_FIXED || sl_tz_offset(tz, INT64_MIN) != off ||
        sl_tz_offset(tz, INT64_MAX) != off || strcmp(sl_tz_name(tz), name) != 0) {
        fz_fail("a name loaded as something other than a fixed offset", 0, data, size);
    }
    sl_tz_destroy(tz);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t fixed[] = {
        INT64_MIN,
        INT64_MIN + 1,
        -(INT64_C(1) << 59),
        -INT64_C(12622780800) - 1, /* the 400-year cycle around the epoch */
        -INT64_C(12622780800),
        -INT64_C(2147483648) - 1, /* 1901 */
        -INT64_C(2147483648),
        -5364662400, /* 1800 */
        -86401,
        -1,
        0,
        1,
        86399,
        1711846800,
        INT64_C(2147483647), /* 2038 */
        INT64_C(2147483648),
        INT64_C(4102444800), /* 2100 */
        INT64_C(12622780800) - 1,
        INT64_C(12622780800),
        INT64_C(253402300799), /* 9999-12-31 */
        INT64_C(1) << 59,
        INT64_MAX - 1,
        INT64_MAX,
    };
    char err[512];

    fz_names(data, size);

    err[0] = '\0';
    sl_tz_t *tz = sl_tz_parse("fuzz", data, size, err, sizeof(err));
    if (tz == NULL) {
        fz_check_err(err, sizeof(err), "'fuzz'", data, size);
        return 0;
    }
    if (strcmp(sl_tz_name(tz), "fuzz") != 0) {
        fz_fail("the name is not kept", 0, data, size);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(fixed); i++) {
        fz_check_offset(tz, fixed[i], data, size);
    }
    /* Every 8 bytes of the input at every offset, read as a big-endian
     * instant (as TZif stores transitions), and its neighbours. */
    for (size_t i = 0; i + 8 <= size && i < 1024; i++) {
        uint64_t u = 0;
        for (size_t j = 0; j < 8; j++) {
            u = u << 8 | data[i + j];
        }
        int64_t t = u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
        fz_check_offset(tz, t, data, size);
        if (t > INT64_MIN) {
            fz_check_offset(tz, t - 1, data, size);
        }
        if (t < INT64_MAX) {
            fz_check_offset(tz, t + 1, data, size);
        }
    }
    sl_tz_destroy(tz);
    return 0;
}
