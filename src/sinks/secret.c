#include "sinks/secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/common.h"

int sl_secret_read(const char *env, const char *file, const char *who, char **out, char *err)
{
    *out = NULL;
    if (env && file) {
        snprintf(err, 256, "%s: both password_env and password_file are set: keep one", who);
        return -1;
    }
    if (env) {
        const char *p = getenv(env);
        if (p == NULL) {
            snprintf(err, 256,
                     "%s: password_env names %s, which is not set: export it with the password",
                     who, env);
            return -1;
        }
        *out = sl_xstrdup(p);
        return 0;
    }
    if (file == NULL) {
        return 0;
    }
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        snprintf(err, 256, "%s: cannot read password_file %s (%s): fix the path or its permissions",
                 who, file, strerror(errno));
        return -1;
    }
    sl_buf_t b = SL_BUF_INIT;
    char chunk[256];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        sl_buf_append(&b, chunk, got);
    }
    fclose(f);
    while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r')) {
        b.len--;
    }
    *out = sl_xstrndup(b.data ? b.data : "", b.len);
    memset(chunk, 0, sizeof(chunk));
    if (b.data) {
        memset(b.data, 0, b.cap);
    }
    sl_buf_free(&b);
    return 0;
}
