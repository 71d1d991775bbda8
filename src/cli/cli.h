/* The sluice command line, callable from any main() (the sluice binary, and
 * test binaries that register extra plugins first). */
#ifndef SL_CLI_CLI_H
#define SL_CLI_CLI_H

/* Runs the command in argv; returns the process exit code (0 ok, 1 config or
 * runtime error, 2 usage error). */
int sl_cli_main(int argc, char **argv);

#endif
