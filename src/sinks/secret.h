/* Secrets (passwords) for sinks: from an environment variable or a file,
 * never logged. */
#ifndef SL_SINKS_SECRET_H
#define SL_SINKS_SECRET_H

/* Reads the secret named by env (a variable name) or file (a path; trailing
 * newlines stripped), at most one of them set; who prefixes messages
 * ("sink.postgres"). Returns 0 with *out the secret (gives ownership; NULL
 * when neither is set), or -1 with err[256] telling what to do. */
int sl_secret_read(const char *env, const char *file, const char *who, char **out, char *err);

#endif
