#include "core/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

struct sl_http {
    struct MHD_Daemon *d;
    sl_http_render_fn render;
    sl_http_ready_fn ready;
    void *ctx;
};

static enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *type,
                                  sl_buf_t *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        body->len, body->data ? body->data : (char *)"", MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    sl_buf_free(body);
    return ret;
}

static enum MHD_Result http_handle(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_size, void **state)
{
    (void)version;
    (void)upload_data;
    (void)upload_size;
    (void)state;
    sl_http_t *h = cls;
    sl_buf_t body = SL_BUF_INIT;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        sl_buf_puts(&body, "method not allowed\n");
        return http_reply(c, 405, "text/plain", &body);
    }
    if (strcmp(url, "/metrics") == 0) {
        h->render(h->ctx, &body);
        return http_reply(c, 200, "text/plain; version=0.0.4", &body);
    }
    if (strcmp(url, "/healthz") == 0) {
        sl_buf_puts(&body, "ok\n");
        return http_reply(c, 200, "text/plain", &body);
    }
    if (strcmp(url, "/readyz") == 0) {
        int ok = h->ready(h->ctx, &body);
        return http_reply(c, ok ? 200 : 503, "text/plain", &body);
    }
    sl_buf_puts(&body, "not found: try /metrics, /healthz or /readyz\n");
    return http_reply(c, 404, "text/plain", &body);
}

sl_http_t *sl_http_start(const char *listen, sl_http_render_fn render, sl_http_ready_fn ready,
                         void *ctx, char *err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
        snprintf(err, 256, "metrics.listen '%s' must be host:port", listen);
        return NULL;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *h = host;
    if (h[0] == '[') { /* [v6]:port */
        h++;
        h[strlen(h) - 1] = '\0';
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(h, colon + 1, &hints, &ai) != 0 || ai == NULL) {
        snprintf(err, 256, "metrics.listen: cannot resolve '%s'", listen);
        return NULL;
    }
    sl_http_t *s = sl_xcalloc(1, sizeof(*s));
    s->render = render;
    s->ready = ready;
    s->ctx = ctx;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, http_handle, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (s->d == NULL) {
        snprintf(err, 256,
                 "cannot listen on %s for /metrics (in use?): change metrics.listen or stop what "
                 "uses it",
                 listen);
        free(s);
        return NULL;
    }
    return s;
}

void sl_http_stop(sl_http_t *http)
{
    if (http == NULL) {
        return;
    }
    MHD_stop_daemon(http->d);
    free(http);
}
