#include "sinks/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

#define WRITER_MAX_WAITERS 64

struct sl_writer {
    int fd;
    bool own_fd;
    bool fsync;
    size_t max_bytes;
    char name[48];
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sl_wchunk_t *head, *tail; /* queue */
    size_t queued_bytes;
    sl_lane_t *waiters[WRITER_MAX_WAITERS]; /* lanes refused for lack of room */
    size_t n_waiters;
    bool stop;
    int64_t abandon_at_ms; /* after stop: give up writing at this time */
    atomic_bool healthy;
};

sl_wchunk_t *sl_wchunk_new(sl_lane_t *lane, sl_wchunk_done_fn done)
{
    sl_wchunk_t *c = sl_xcalloc(1, sizeof(*c));
    c->lane = lane;
    c->done = done;
    return c;
}

void sl_wchunk_add_ref(sl_wchunk_t *c, sl_batch_t *b, uint32_t idx)
{
    if (c->n_refs == c->cap_refs) {
        c->cap_refs = c->cap_refs ? c->cap_refs * 2 : 256;
        c->refs = sl_xrealloc(c->refs, c->cap_refs * sizeof(*c->refs));
    }
    c->refs[c->n_refs++] = (sl_wref_t){b, idx};
}

void sl_wchunk_free(sl_wchunk_t *c)
{
    if (c == NULL) {
        return;
    }
    sl_buf_free(&c->data);
    free(c->refs);
    free(c);
}

static void writer_chunk_ok(sl_lane_t *lane, void *arg)
{
    (void)lane;
    sl_wchunk_t *c = arg;
    c->done(c, true);
    sl_wchunk_free(c);
}

static void writer_chunk_abandoned(sl_lane_t *lane, void *arg)
{
    (void)lane;
    sl_wchunk_t *c = arg;
    c->done(c, false);
    sl_wchunk_free(c);
}

/* Writes all of c, retrying failures with backoff. Returns 0, or -1 if the
 * writer was told to stop and the abandon deadline passed. */
static int writer_write(sl_writer_t *w, const sl_wchunk_t *c)
{
    size_t off = 0;
    int64_t backoff = 100, last_log = 0;
    while (off < c->data.len) {
        struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
        int pr = poll(&pfd, 1, 100);
        ssize_t n = -1;
        int e = EAGAIN;
        if (pr > 0) {
            n = write(w->fd, c->data.data + off, c->data.len - off);
            e = errno;
        }
        if (n > 0) {
            off += (size_t)n;
            backoff = 100;
            atomic_store(&w->healthy, true);
            continue;
        }
        pthread_mutex_lock(&w->mu);
        bool give_up = w->stop && sl_now_ms() >= w->abandon_at_ms;
        pthread_mutex_unlock(&w->mu);
        if (give_up) {
            return -1;
        }
        if (n < 0 && e != EAGAIN && e != EINTR) {
            atomic_store(&w->healthy, false);
            if (sl_now_ms() - last_log >= 10000) {
                last_log = sl_now_ms();
                sl_log_error(w->name,
                             "write failed: records are held, not committed; retrying (free "
                             "space / restore the reader)",
                             "error=\"%s\"", strerror(e));
            }
            usleep((useconds_t)backoff * 1000);
            backoff = SL_MIN(backoff * 2, 5000);
        }
    }
    if (w->fsync && fsync(w->fd) != 0 && errno != EINVAL) {
        sl_log_warn(w->name, "fsync failed", "error=\"%s\"", strerror(errno));
    }
    return 0;
}

static void writer_wake_waiters(sl_writer_t *w)
{
    /* caller holds mu */
    for (size_t i = 0; i < w->n_waiters; i++) {
        sl_lane_wake(w->waiters[i]);
    }
    w->n_waiters = 0;
}

static void *writer_main(void *arg)
{
    sl_writer_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == NULL && !w->stop) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        sl_wchunk_t *c = w->head;
        if (c == NULL) {
            break; /* stopped and empty */
        }
        pthread_mutex_unlock(&w->mu);
        int rc = writer_write(w, c);
        pthread_mutex_lock(&w->mu);
        w->head = c->next;
        if (w->head == NULL) {
            w->tail = NULL;
        }
        w->queued_bytes -= c->data.len;
        writer_wake_waiters(w);
        sl_lane_post(c->lane, rc == 0 ? writer_chunk_ok : writer_chunk_abandoned, c);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* A crash (kill -9, power loss) can leave a partial last line. Its record was
 * never acknowledged, so it will be delivered again: cut the fragment, so the
 * next line does not get glued to it. Returns 0, or -1 with err set. */
static int writer_cut_torn_tail(int fd, const char *path, const char *name, char *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        return 0;
    }
    char buf[4096];
    off_t end = st.st_size;
    while (end > 0) {
        off_t start = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
        ssize_t n = pread(fd, buf, (size_t)(end - start), start);
        if (n <= 0) {
            snprintf(err, 256, "cannot read '%.180s': %s", path, strerror(errno));
            return -1;
        }
        for (ssize_t i = n - 1; i >= 0; i--) {
            if (buf[i] == '\n') {
                off_t keep = start + i + 1;
                if (keep == st.st_size) {
                    return 0; /* ends with a complete line */
                }
                end = keep;
                goto cut;
            }
        }
        end = start;
    }
cut:
    if (ftruncate(fd, end) != 0) {
        snprintf(err, 256, "cannot cut the partial last line of '%.160s': %s", path,
                 strerror(errno));
        return -1;
    }
    sl_log_warn(name,
                "removed a partial last line left by an earlier crash (its record is "
                "delivered again)",
                "path=%s bytes=%lld", path, (long long)(st.st_size - end));
    return 0;
}

sl_writer_t *sl_writer_create(const char *path, bool fsync, size_t max_bytes, const char *name,
                              char *err)
{
    int fd = STDOUT_FILENO;
    if (path != NULL) {
        fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, 256,
                     "cannot open '%.160s' for writing: %s (check the directory exists and is "
                     "writable)",
                     path, strerror(errno));
            return NULL;
        }
        if (writer_cut_torn_tail(fd, path, name, err) != 0) {
            close(fd);
            return NULL;
        }
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        /* our own pipe end: non-blocking so shutdown never hangs on a stalled reader */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    sl_writer_t *w = sl_xcalloc(1, sizeof(*w));
    w->fd = fd;
    w->own_fd = path != NULL;
    w->fsync = fsync;
    w->max_bytes = max_bytes;
    snprintf(w->name, sizeof(w->name), "%s", name);
    atomic_init(&w->healthy, true);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thr, NULL, writer_main, w) != 0) {
        snprintf(err, 256, "cannot start writer thread");
        if (w->own_fd) {
            close(fd);
        }
        free(w);
        return NULL;
    }
    return w;
}

int sl_writer_push(sl_writer_t *w, sl_wchunk_t *c)
{
    pthread_mutex_lock(&w->mu);
    if (w->head != NULL && w->queued_bytes + c->data.len > w->max_bytes) {
        bool known = false;
        for (size_t i = 0; i < w->n_waiters; i++) {
            known |= w->waiters[i] == c->lane;
        }
        if (!known && w->n_waiters < WRITER_MAX_WAITERS) {
            w->waiters[w->n_waiters++] = c->lane;
        }
        pthread_mutex_unlock(&w->mu);
        return 1;
    }
    c->next = NULL;
    if (w->tail) {
        w->tail->next = c;
    } else {
        w->head = c;
    }
    w->tail = c;
    w->queued_bytes += c->data.len;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

bool sl_writer_ok(const sl_writer_t *w)
{
    return atomic_load(&w->healthy);
}

void sl_writer_destroy(sl_writer_t *w, int64_t timeout_ms)
{
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    w->abandon_at_ms = sl_now_ms() + timeout_ms;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thr, NULL);
    if (w->own_fd) {
        close(w->fd);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
