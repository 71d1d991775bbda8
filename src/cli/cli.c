/* sluice: the command line. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/devbroker.h"
#include "config/config.h"
#include "core/pipeline.h"
#include "util/buf.h"

static const char usage[] =
    "usage: sluice <command> [options]\n"
    "\n"
    "commands:\n"
    "  run CONFIG [--until-end]   run the pipeline described by CONFIG (YAML)\n"
    "                             --until-end: exit 0 once every assigned partition reached\n"
    "                             the end offset it had when the run started\n"
    "  check CONFIG               validate CONFIG; print every error with file:line\n"
    "  dev-broker [options]       a local Kafka-protocol broker for development and tests\n"
    "                             (see sluice dev-broker --help)\n"
    "  config-doc                 print the configuration reference (docs/CONFIG.md)\n"
    "  version, --version         print the version\n"
    "  help, --help               print this help\n"
    "\n"
    "exit codes: 0 success (run: drained and committed after SIGTERM/SIGINT or --until-end),\n"
    "            1 config errors (check/run) or a fatal runtime error, 2 usage error\n";

/* Prints "sluice: MSG 'ARG'" and the usage; returns the usage exit code. */
static int cmd_usage_error(const char *msg, const char *arg)
{
    if (arg != NULL) {
        fprintf(stderr, "sluice: %s '%s'\n\n%s", msg, arg, usage);
    } else {
        fprintf(stderr, "sluice: %s\n\n%s", msg, usage);
    }
    return 2;
}

static int cmd_load(const char *path, sl_config_t *cfg)
{
    sl_errors_t errs = {0};
    int rc = sl_config_load(path, cfg, &errs);
    if (rc != 0) {
        sl_errors_print(&errs);
        fprintf(stderr, "sluice: %zu error%s in %s\n", errs.n, errs.n == 1 ? "" : "s", path);
    }
    sl_errors_free(&errs);
    return rc;
}

static int cmd_check(int argc, char **argv)
{
    if (argc != 2) {
        return cmd_usage_error("check takes one argument: the config file", NULL);
    }
    sl_config_t cfg;
    int rc = cmd_load(argv[1], &cfg);
    if (rc == 0 && cfg.sink->check != NULL) {
        /* the sink's server, when reachable: e.g. table columns against the schema */
        sl_pipeline_info_t info = {cfg.kafka.brokers, cfg.kafka.group,
                                   cfg.out,           cfg.path,
                                   cfg.sink_node,     cfg.agg ? 1 + (int)cfg.agg->mode : 0};
        char err[256] = "";
        int c = cfg.sink->check(cfg.sink_opts, &info, err);
        if (c == 1) {
            fprintf(stderr, "sluice: warning: %s: %s (checked again at start)\n", argv[1], err);
        } else if (c != 0) {
            fprintf(stderr, "sluice: %s: %s\n", argv[1], err);
            rc = -1;
        }
    }
    if (rc == 0) {
        printf("%s: ok\n", argv[1]);
    }
    sl_config_free(&cfg);
    return rc == 0 ? 0 : 1;
}

static int cmd_run(int argc, char **argv)
{
    const char *path = NULL;
    sl_run_opts_t opts = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--until-end") == 0) {
            opts.until_end = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cmd_usage_error("run: unknown option", argv[i]);
        } else if (path == NULL) {
            path = argv[i];
        } else {
            return cmd_usage_error("run: unexpected argument", argv[i]);
        }
    }
    if (path == NULL) {
        return cmd_usage_error("run needs a config file", NULL);
    }
    sl_config_t cfg;
    if (cmd_load(path, &cfg) != 0) {
        sl_config_free(&cfg);
        return 1;
    }
    int rc = sl_pipeline_run(&cfg, &opts);
    sl_config_free(&cfg);
    return rc;
}

static int cmd_config_doc(void)
{
    sl_buf_t out = SL_BUF_INIT;
    sl_config_doc(&out);
    fwrite(out.data, 1, out.len, stdout);
    sl_buf_free(&out);
    return 0;
}

int sl_cli_main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) {
        return cmd_run(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "check") == 0) {
        return cmd_check(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "dev-broker") == 0) {
        return sl_cmd_dev_broker(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "config-doc") == 0) {
        return cmd_config_doc();
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sluice %s (librdkafka %s)\n", SL_VERSION, rd_kafka_version_str());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    return cmd_usage_error("unknown command", cmd);
}
