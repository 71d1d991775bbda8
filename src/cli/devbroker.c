/* sluice dev-broker (see devbroker.h).
 *
 * Fixed ports. librdkafka 2.0.2's mock binds each broker listener to
 * 127.0.0.1:0 and has no API to choose the port; a bind() that fails inside
 * rd_kafka_mock_cluster_new() is fatal (its error path asserts). So before
 * creating the cluster we bind and listen on 127.0.0.1:base+i ourselves, with
 * SO_REUSEADDR like the mock's own listener (a restart is then not refused
 * because of TIME_WAIT connections left by the previous run). That is both
 * the "is the port free" check and a reservation: while the mock creates its
 * brokers, the bind() defined below sees the i-th bind(fd, 127.0.0.1:0) and
 * moves reserved socket i onto fd with dup3() instead of binding. The mock
 * then calls listen() on a socket that already listens (allowed: it only
 * sets the backlog) and reads the port back with getsockname(). Nothing can
 * take a port between the check and the mock's bind.
 *
 * The executable exports this bind() because librdkafka.so references the
 * symbol, so librdkafka's call resolves here. sl_cmd_dev_broker() checks
 * that every reserved socket was taken and fails otherwise. */
#include "cli/devbroker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "util/common.h"
#include "util/log.h"

#define DB_COMP "dev-broker"
#define DB_DEFAULT_PORT 9092
#define DB_MAX_BROKERS 32
#define DB_MAX_PARTITIONS 10000
#define DB_MAX_TOPIC_LEN 249

static const char db_usage[] =
    "usage: sluice dev-broker [--port N] [--brokers N] [--topic NAME:PARTITIONS]...\n"
    "                         [--bootstrap-file PATH]\n"
    "\n"
    "A Kafka-protocol broker for development and tests: librdkafka's in-process mock\n"
    "cluster, listening on 127.0.0.1. It keeps data in memory only, and keeps at most\n"
    "5 MiB or 100,000 batches per partition: older data is dropped silently, so keep\n"
    "test volumes under that (use more partitions, compress in the producer).\n"
    "Produce, fetch, consumer groups, offset commits and idempotent producers work;\n"
    "topics it does not know are created on first use with 4 partitions.\n"
    "\n"
    "options:\n"
    "  --port N                listen on ports N..N+brokers-1 (default 9092);\n"
    "                          0 lets the system pick free ports\n"
    "  --brokers N             number of brokers, 1..32 (default 1)\n"
    "  --topic NAME:PARTITIONS create a topic (repeatable); PARTITIONS 1..10000\n"
    "  --bootstrap-file PATH   also write the bootstrap address to PATH (atomically,\n"
    "                          once the brokers listen); removed again on exit\n"
    "  -h, --help              print this help\n"
    "\n"
    "Prints the bootstrap address (host:port[,host:port...]) as one line on stdout,\n"
    "logs to stderr, and runs until SIGTERM or SIGINT.\n"
    "exit codes: 0 stopped by a signal, 1 runtime error, 2 usage error or port in use\n";

typedef struct db_topic {
    const char *name; /* borrows argv */
    size_t name_len;
    int partitions;
} db_topic_t;

typedef struct db_opts {
    int port; /* 0: system-chosen ports */
    bool port_given;
    int brokers;
    db_topic_t *topics; /* owned */
    size_t ntopics;
    const char *bootstrap_file; /* borrows argv; NULL if not given */
} db_opts_t;

/* bind() interposition state. The main thread fills db_reserved[] before it
 * sets db_active and clears db_active before it reads db_reserved[] again. */
static int db_reserved[DB_MAX_BROKERS];
static int db_reserved_n;
static atomic_int db_next;
static atomic_bool db_active;

/* Moves reserved listener i onto fd (librdkafka's socket, not yet bound),
 * keeping fd's close-on-exec and non-blocking flags. Returns 0 or -1/errno. */
static int db_adopt(int fd, int i)
{
    int fdflags = fcntl(fd, F_GETFD);
    int flflags = fcntl(fd, F_GETFL);
    if (fdflags == -1 || flflags == -1) {
        return -1;
    }
    if (dup3(db_reserved[i], fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) == -1) {
        return -1;
    }
    if (fcntl(fd, F_SETFL, flflags & O_NONBLOCK) == -1) {
        return -1;
    }
    close(db_reserved[i]);
    db_reserved[i] = -1;
    return 0;
}

/* Interposes the C library's bind() for the whole executable. Outside
 * sl_cmd_dev_broker()'s cluster creation it is exactly the system call. */
int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (atomic_load(&db_active) && addr != NULL && len >= (socklen_t)sizeof(struct sockaddr_in) &&
        addr->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof(sin));
        if (sin.sin_port == 0 && sin.sin_addr.s_addr == htonl(INADDR_LOOPBACK)) {
            int i = atomic_fetch_add(&db_next, 1);
            if (i < db_reserved_n) {
                return db_adopt(fd, i);
            }
        }
    }
    return (int)syscall(SYS_bind, fd, addr, len);
}

/* Parses a whole decimal integer in [min, max]; returns 0 or -1. */
static int db_parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Kafka topic names: 1..249 of [a-zA-Z0-9._-], and not "." or "..". */
static bool db_topic_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > DB_MAX_TOPIC_LEN || (n == 1 && s[0] == '.') ||
        (n == 2 && s[0] == '.' && s[1] == '.')) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static int db_usage_error(const char *fmt, ...) SL_PRINTF(1, 2);

static int db_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sluice dev-broker: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see sluice dev-broker --help)\n", stderr);
    return 2;
}

/* Adds NAME:PARTITIONS to o->topics; returns 0 or a usage exit code. */
static int db_add_topic(db_opts_t *o, const char *spec)
{
    const char *colon = strrchr(spec, ':');
    if (colon == NULL) {
        return db_usage_error("--topic wants NAME:PARTITIONS, got '%s'", spec);
    }
    size_t n = (size_t)(colon - spec);
    if (!db_topic_name_ok(spec, n)) {
        return db_usage_error("invalid topic name in '%s': use 1..249 of [a-zA-Z0-9._-]", spec);
    }
    int parts;
    if (db_parse_int(colon + 1, 1, DB_MAX_PARTITIONS, &parts) != 0) {
        return db_usage_error("invalid partition count in '%s': use 1..10000", spec);
    }
    for (size_t i = 0; i < o->ntopics; i++) {
        if (o->topics[i].name_len == n && memcmp(o->topics[i].name, spec, n) == 0) {
            return db_usage_error("topic given twice: '%s'", spec);
        }
    }
    o->topics = sl_xrealloc(o->topics, (o->ntopics + 1) * sizeof(*o->topics));
    o->topics[o->ntopics++] = (db_topic_t){.name = spec, .name_len = n, .partitions = parts};
    return 0;
}

/* Parses argv into o. Returns 0, a usage exit code (2), or -1 after --help. */
static int db_parse_args(int argc, char **argv, db_opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        char name[32];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(db_usage, stdout);
            return -1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            return db_usage_error("unexpected argument '%s'", arg);
        }
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof(name)) {
            return db_usage_error("unknown option '%s'", arg);
        }
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return db_usage_error("option %s needs a value", name);
        }
        if (strcmp(name, "--port") == 0) {
            if (db_parse_int(val, 0, 65535, &o->port) != 0) {
                return db_usage_error("invalid --port '%s': use 0..65535", val);
            }
            o->port_given = true;
        } else if (strcmp(name, "--brokers") == 0) {
            if (db_parse_int(val, 1, DB_MAX_BROKERS, &o->brokers) != 0) {
                return db_usage_error("invalid --brokers '%s': use 1..32", val);
            }
        } else if (strcmp(name, "--topic") == 0) {
            int rc = db_add_topic(o, val);
            if (rc != 0) {
                return rc;
            }
        } else if (strcmp(name, "--bootstrap-file") == 0) {
            if (val[0] == '\0') {
                return db_usage_error("--bootstrap-file needs a path");
            }
            o->bootstrap_file = val;
        } else {
            return db_usage_error("unknown option '%s'", name);
        }
    }
    if (o->port != 0 && o->port + o->brokers - 1 > 65535) {
        return db_usage_error("--port plus --brokers goes past port 65535");
    }
    return 0;
}

static void db_close_reserved(void)
{
    for (int i = 0; i < db_reserved_n; i++) {
        if (db_reserved[i] != -1) {
            close(db_reserved[i]);
            db_reserved[i] = -1;
        }
    }
    db_reserved_n = 0;
}

/* Binds and listens on 127.0.0.1:port..port+n-1 into db_reserved[]. Returns 0,
 * or an exit code after printing why: 2 if a port is in use or not allowed. */
static int db_reserve_ports(const db_opts_t *o)
{
    for (int i = 0; i < o->brokers; i++) {
        int port = o->port + i;
        int on = 1;
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr = {.s_addr = htonl(INADDR_LOOPBACK)}};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
            bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 || listen(fd, 5) == -1) {
            int err = errno;
            if (fd != -1) {
                close(fd);
            }
            db_close_reserved();
            if (err == EADDRINUSE) {
                fprintf(stderr,
                        "sluice dev-broker: port %d is in use: stop what uses it or pass %s\n",
                        port, o->port_given ? "another --port" : "--port (0 picks free ports)");
                return 2;
            }
            fprintf(stderr, "sluice dev-broker: cannot listen on 127.0.0.1:%d: %s\n", port,
                    strerror(err));
            return err == EACCES ? 2 : 1;
        }
        db_reserved[db_reserved_n++] = fd;
    }
    return 0;
}

/* Checks that broker i of bootstraps "127.0.0.1:P0,127.0.0.1:P1,..." listens
 * on port base+i. */
static bool db_bootstraps_match(const char *bootstraps, int base, int n)
{
    const char *p = bootstraps;
    for (int i = 0; i < n; i++) {
        const char *colon = strchr(p, ':');
        if (colon == NULL) {
            return false;
        }
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (port != base + i || (*end != ',' && *end != '\0')) {
            return false;
        }
        p = end + (*end == ',');
    }
    return *p == '\0';
}

/* Forwards librdkafka's log lines (syslog levels) to sl_log. */
static void db_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers") != NULL) {
        return; /* the handle only hosts the mock; it never connects anywhere */
    }
    sl_log_level_t l = level <= 3   ? SL_LOG_ERROR
                       : level == 4 ? SL_LOG_WARN
                       : level <= 6 ? SL_LOG_INFO
                                    : SL_LOG_DEBUG;
    sl_log(l, DB_COMP, buf, "fac=%s", fac);
}

/* Writes "text\n" to path via path.tmp.PID + rename(). Returns 0 or -1/errno. */
static int db_write_file_atomic(const char *path, const char *text)
{
    size_t cap = strlen(path) + 32;
    char *tmp = sl_xmalloc(cap);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    int rc = -1;
    FILE *f = fopen(tmp, "we");
    if (f == NULL) {
        goto out;
    }
    int werr = fprintf(f, "%s\n", text) < 0;
    if (fclose(f) != 0 || werr) {
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        errno = err;
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    return rc;
}

/* Blocks until SIGTERM or SIGINT arrives; returns its number. */
static int db_wait_signal(const sigset_t *set)
{
    for (;;) {
        int sig = sigwaitinfo(set, NULL);
        if (sig > 0) {
            return sig;
        }
    }
}

int sl_cmd_dev_broker(int argc, char **argv)
{
    db_opts_t o = {.port = DB_DEFAULT_PORT, .brokers = 1};
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mcluster = NULL;
    bool file_written = false;
    char errstr[512];
    int rc = db_parse_args(argc, argv, &o);
    if (rc != 0) {
        rc = rc < 0 ? 0 : rc;
        goto out;
    }

    /* Signals are taken with sigwaitinfo(): block them before librdkafka
     * starts threads, which inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (o.bootstrap_file != NULL && unlink(o.bootstrap_file) != 0 && errno != ENOENT) {
        fprintf(stderr, "sluice dev-broker: cannot remove old %s: %s\n", o.bootstrap_file,
                strerror(errno));
        rc = 1;
        goto out;
    }
    if (o.port != 0 && (rc = db_reserve_ports(&o)) != 0) {
        goto out;
    }

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, db_log_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        sl_log_error(DB_COMP, "cannot create the librdkafka handle", "err=\"%s\"", errstr);
        rc = 1;
        goto out;
    }

    atomic_store(&db_next, 0);
    atomic_store(&db_active, o.port != 0);
    mcluster = rd_kafka_mock_cluster_new(rk, o.brokers);
    atomic_store(&db_active, false);
    int taken = atomic_load(&db_next);
    db_close_reserved();
    if (mcluster == NULL) {
        sl_log_error(DB_COMP, "cannot create the mock cluster", NULL);
        rc = 1;
        goto out;
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
    if (o.port != 0 &&
        (taken != o.brokers || !db_bootstraps_match(bootstraps, o.port, o.brokers))) {
        sl_log_error(DB_COMP, "fixed ports did not take effect: is bind() interposed?",
                     "bootstrap=%s binds_seen=%d", bootstraps, taken);
        rc = 1;
        goto out;
    }

    int rf = SL_MIN(3, o.brokers);
    for (size_t i = 0; i < o.ntopics; i++) {
        char *name = sl_xstrndup(o.topics[i].name, o.topics[i].name_len);
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mcluster, name, o.topics[i].partitions, rf);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            sl_log_error(DB_COMP, "cannot create topic", "topic=%s err=\"%s\"", name,
                         rd_kafka_err2str(err));
            free(name);
            rc = 1;
            goto out;
        }
        sl_log_info(DB_COMP, "topic created", "topic=%s partitions=%d", name,
                    o.topics[i].partitions);
        free(name);
    }

    if (o.bootstrap_file != NULL) {
        if (db_write_file_atomic(o.bootstrap_file, bootstraps) != 0) {
            sl_log_error(DB_COMP, "cannot write the bootstrap file", "path=\"%s\" err=\"%s\"",
                         o.bootstrap_file, strerror(errno));
            rc = 1;
            goto out;
        }
        file_written = true;
    }
    printf("%s\n", bootstraps);
    fflush(stdout);
    sl_log_info(DB_COMP, "ready", "bootstrap=%s brokers=%d", bootstraps, o.brokers);

    int sig = db_wait_signal(&sigs);
    sl_log_info(DB_COMP, "stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
out:
    if (file_written && unlink(o.bootstrap_file) != 0) {
        sl_log_warn(DB_COMP, "cannot remove the bootstrap file", "path=\"%s\" err=\"%s\"",
                    o.bootstrap_file, strerror(errno));
    }
    if (mcluster != NULL) {
        rd_kafka_mock_cluster_destroy(mcluster);
    }
    if (rk != NULL) {
        rd_kafka_destroy(rk);
    }
    db_close_reserved();
    free(o.topics);
    return rc;
}
