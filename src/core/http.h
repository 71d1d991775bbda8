/* The HTTP endpoint: GET /metrics (Prometheus text), /healthz (alive),
 * /readyz (ready to work). Runs on its own thread (libmicrohttpd). */
#ifndef SL_CORE_HTTP_H
#define SL_CORE_HTTP_H

#include "util/buf.h"

typedef struct sl_http sl_http_t;

/* render appends the metrics; ready returns 1/0 and appends a reason. Both
 * run on the HTTP thread. */
typedef void (*sl_http_render_fn)(void *ctx, sl_buf_t *out);
typedef int (*sl_http_ready_fn)(void *ctx, sl_buf_t *why);

/* Listens on "host:port". Returns NULL with err[256] set (e.g. port in use). */
sl_http_t *sl_http_start(const char *listen, sl_http_render_fn render, sl_http_ready_fn ready,
                         void *ctx, char *err);
/* Stops the server. NULL is a no-op. */
void sl_http_stop(sl_http_t *http);

#endif
