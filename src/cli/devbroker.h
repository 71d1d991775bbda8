/* `sluice dev-broker`: librdkafka's in-process mock cluster as a local
 * Kafka-protocol broker for development and tests, optionally on fixed ports. */
#ifndef SL_CLI_DEVBROKER_H
#define SL_CLI_DEVBROKER_H

/* Runs `sluice dev-broker [options]`; argv[0] is "dev-broker" (argv is
 * borrowed). Prints the bootstrap address on stdout, then serves until
 * SIGTERM or SIGINT. Returns the process exit code: 0 after a signal,
 * 1 on a runtime error, 2 on a usage error or when a wanted port is in use.
 * Main thread only, at most once per process; returns with SIGTERM and
 * SIGINT blocked.
 *
 * Fixed ports work because devbroker.c also defines bind(): an executable
 * that links this file answers librdkafka's bind() calls itself. It only
 * acts while sl_cmd_dev_broker() creates the cluster, and passes every
 * other call straight to the kernel. */
int sl_cmd_dev_broker(int argc, char **argv);

#endif
