/* The Cassandra sink's options, loaded the way `sluice check` loads them, and
 * the startup errors its init reports before any server is involved (or when
 * none answers). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/pipeline.h"
#include "core/plugin.h"
#include "test.h"

static const char head[] = "source:\n"
                           "  kafka: {brokers: 127.0.0.1:9092, topics: [site_events], group: g}\n"
                           "schema:\n"
                           "  date:    {type: date, required: true}\n"
                           "  site_id: {type: int32, required: true}\n"
                           "  views:   {type: int64, required: true}\n"
                           "  clicks:  {type: int64}\n"
                           "  seen:    {type: timestamp}\n"
                           "  name:    {type: string}\n"
                           "dead_letter:\n"
                           "  file: {path: /dev/null}\n"
                           "sink:\n"
                           "  cassandra:\n"; /* options follow from line 14 */

static char path[64];

/* Loads head + sink options (each line indented by the caller); returns the
 * load result, with errors in errs. */
static int load(const char *sink_opts, sl_config_t *cfg, sl_errors_t *errs)
{
    snprintf(path, sizeof(path), "/tmp/sl-cass-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(head, f);
    fputs(sink_opts, f);
    fclose(f);
    memset(cfg, 0, sizeof(*cfg));
    int rc = sl_config_load(path, cfg, errs);
    unlink(path);
    return rc;
}

/* Expects exactly one error at line `line` containing msg. */
static void expect_error(const char *sink_opts, int line, const char *msg)
{
    sl_config_t cfg;
    sl_errors_t errs = {0};
    CHECK_INT(load(sink_opts, &cfg, &errs), -1);
    CHECK_INT(errs.n, 1);
    if (errs.n >= 1) {
        char at[96];
        snprintf(at, sizeof(at), "%s:%d:", path, line);
        CHECK(strncmp(errs.msgs[0], at, strlen(at)) == 0);
        if (strncmp(errs.msgs[0], at, strlen(at)) != 0) {
            fprintf(stderr, "  got: %s\n  want prefix: %s\n", errs.msgs[0], at);
        }
        CHECK_CONTAINS(errs.msgs[0], msg);
    }
    sl_errors_free(&errs);
    sl_config_free(&cfg);
}

static const char stmt[] = "    statement: \"UPDATE stats.site_stats SET views = views + :views "
                           "WHERE date = :date AND site_id = :site_id\"\n";

TEST(valid_config_loads)
{
    sl_config_t cfg;
    sl_errors_t errs = {0};
    char opts[1024];
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1, 127.0.0.2]\n"
             "    port: 9043\n"
             "    keyspace: stats\n"
             "    local_dc: dc1\n"
             "    consistency: local_one\n"
             "%s"
             "    writetime: none\n"
             "    batch_max_rows: 1\n"
             "    batch_max_bytes: 8KiB\n"
             "    max_in_flight: 100\n"
             "    connections_per_host: 2\n"
             "    token_aware: false\n"
             "    connect_timeout: 1s\n"
             "    request_timeout: 2s\n"
             "    startup_timeout: 3s\n"
             "    counter_unknown: retry\n",
             stmt);
    CHECK_INT(load(opts, &cfg, &errs), 0);
    CHECK_INT(errs.n, 0);
    for (size_t i = 0; i < errs.n; i++) {
        fprintf(stderr, "  %s\n", errs.msgs[i]);
    }
    CHECK(cfg.sink != NULL && strcmp(cfg.sink->name, "cassandra") == 0);
    CHECK_STR(cfg.sink_name, "sink.cassandra");
    CHECK(cfg.sink->pollfds != NULL && cfg.sink->io != NULL && cfg.sink->metrics != NULL);
    sl_errors_free(&errs);
    sl_config_free(&cfg);

    /* one contact point as a scalar; everything else defaults */
    snprintf(opts, sizeof(opts), "    contact_points: localhost\n%s", stmt);
    CHECK_INT(load(opts, &cfg, &errs), 0);
    CHECK_INT(errs.n, 0);
    sl_errors_free(&errs);
    sl_config_free(&cfg);
}

TEST(option_errors_name_the_line)
{
    char opts[1024];
    expect_error(stmt, 14, "missing required option 'contact_points' in sink.cassandra");
    expect_error("    contact_points: [127.0.0.1]\n", 14,
                 "missing required option 'statement' in sink.cassandra");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n%s    consistency: serial\n",
             stmt);
    expect_error(opts, 16, "consistency");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n%s    batch_max_rows: 0\n",
             stmt);
    expect_error(opts, 16, "batch_max_rows");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n%s    port: 70000\n", stmt);
    expect_error(opts, 16, "port");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n%s    counter_unknown: drop\n",
             stmt);
    expect_error(opts, 16, "counter_unknown");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n%s    password: secret\n", stmt);
    expect_error(opts, 16, "unknown option 'password' in sink.cassandra");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n%s    startup_timeout: soon\n",
             stmt);
    expect_error(opts, 16, "startup_timeout");
}

/* A local port on which nothing listens (bound, not listening: refused). */
static int closed_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_INT(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    CHECK_INT(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* Loads the options and runs the sink's init; returns its result with the
 * message in err. */
static int init_with(const char *sink_opts, char *err)
{
    sl_config_t cfg;
    sl_errors_t errs = {0};
    err[0] = '\0';
    int rc = load(sink_opts, &cfg, &errs);
    CHECK_INT(rc, 0);
    for (size_t i = 0; i < errs.n; i++) {
        fprintf(stderr, "  %s\n", errs.msgs[i]);
    }
    sl_errors_free(&errs);
    if (rc != 0) {
        sl_config_free(&cfg);
        return 99;
    }
    sl_pipeline_info_t info = {"127.0.0.1:9092", "g", &cfg.schema, cfg.path, cfg.sink_node, 0};
    void *shared = NULL;
    rc = cfg.sink->init(&shared, cfg.sink_opts, &info, err);
    if (rc == 0) {
        cfg.sink->fini(shared);
    }
    sl_config_free(&cfg);
    return rc;
}

TEST(init_errors_tell_what_to_do)
{
    int fd;
    int port = closed_port(&fd);
    char opts[1024], err[256], want[256];
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    port: %d\n    startup_timeout: 300ms\n%s", port,
             stmt);
    CHECK_INT(init_with(opts, err), -1);
    snprintf(want, sizeof(want),
             "sink.cassandra: cannot reach Cassandra at 127.0.0.1:%d within 300ms (connection "
             "refused): start it or fix contact_points",
             port);
    CHECK_STR(err, want);

    /* passwords: from the environment or a file, never in a message */
    unsetenv("SL_TEST_CASS_PW");
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    port: %d\n    user: u\n"
             "    password_env: SL_TEST_CASS_PW\n%s",
             port, stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err, "sink.cassandra: password_env names SL_TEST_CASS_PW, which is not set: export "
                   "it with the password");
    setenv("SL_TEST_CASS_PW", "hunter2-secret", 1);
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    port: %d\n    user: u\n"
             "    password_env: SL_TEST_CASS_PW\n    startup_timeout: 100ms\n%s",
             port, stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_CONTAINS(err, "cannot reach Cassandra"); /* got as far as connecting */
    CHECK(strstr(err, "hunter2") == NULL);
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    user: u\n    password_env: SL_TEST_CASS_PW\n"
             "    password_file: /nonexistent\n%s",
             stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err, "sink.cassandra: both password_env and password_file are set: keep one");
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    user: u\n    password_file: /nonexistent/pw\n%s",
             stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err, "sink.cassandra: cannot read password_file /nonexistent/pw (No such file or "
                   "directory): fix the path or its permissions");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n    user: u\n%s", stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err,
              "sink.cassandra: user is set but no password: set password_env or password_file");
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    password_env: SL_TEST_CASS_PW\n%s", stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err, "sink.cassandra: a password is set but no user: set user");
    /* a password file's trailing newline is stripped (and it is read) */
    char pw[] = "/tmp/sl-cass-pw-XXXXXX";
    int pfd = mkstemp(pw);
    CHECK(pfd >= 0);
    CHECK_INT(write(pfd, "s3cret\n", 7), 7);
    close(pfd);
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    port: %d\n    user: u\n"
             "    password_file: %s\n    startup_timeout: 100ms\n%s",
             port, pw, stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_CONTAINS(err, "cannot reach Cassandra");
    CHECK(strstr(err, "s3cret") == NULL);
    unlink(pw);
    unsetenv("SL_TEST_CASS_PW");

    /* writetime */
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n    writetime: ts\n%s", stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err, "sink.cassandra: writetime 'ts' is neither none, kafka nor a schema field: fix "
                   "it or add a timestamp field of that name");
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n    writetime: name\n%s", stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err, "sink.cassandra: writetime field 'name' is string: declare it as timestamp");
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    port: %d\n    writetime: seen\n"
             "    startup_timeout: 100ms\n%s",
             port, stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_CONTAINS(err, "cannot reach Cassandra"); /* a timestamp field is fine */

    /* TLS options */
    snprintf(opts, sizeof(opts), "    contact_points: [127.0.0.1]\n    tls_ca_file: /x/ca.pem\n%s",
             stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err,
              "sink.cassandra: tls_ca_file is set but tls is false: set tls: true or remove it");
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    tls: true\n    tls_cert_file: /x/c.pem\n%s",
             stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_STR(err, "sink.cassandra: tls_cert_file and tls_key_file go together: set both");
    snprintf(opts, sizeof(opts),
             "    contact_points: [127.0.0.1]\n    port: %d\n    tls: true\n"
             "    tls_ca_file: /nonexistent/ca.pem\n    startup_timeout: 300ms\n%s",
             port, stmt);
    CHECK_INT(init_with(opts, err), -1);
    CHECK_CONTAINS(err, "cannot load the CA certificates from /nonexistent/ca.pem");
    close(fd);
}

TEST_MAIN(T(valid_config_loads), T(option_errors_name_the_line), T(init_errors_tell_what_to_do))
