/* Pieces of the cluster session (cql/cluster.c) that need no server, exported
 * so unit tests can check them. Not part of the session's API: only
 * cluster.c and tests include this file. Pure functions over their
 * arguments; any thread may call them on objects it does not share. */
#ifndef SL_CQL_CLUSTER_INTERNAL_H
#define SL_CQL_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cql/result.h"
#include "cql/ring.h"
#include "cql/types.h"
#include "util/buf.h"
#include "util/common.h"

/* The token that the values of one row route to, from the partition key
 * bind markers of a PREPARE result (bind->pk_index, pk_count). scratch is a
 * buffer the caller owns (reset here, kept for reuse). Returns false when the
 * statement has no partition key markers, a marker index is out of range of
 * n_values, or a key value is null or unset. */
bool sl_cql_cluster_route_token(const sl_cql_metadata_t *bind, const sl_cql_bytes_t *values,
                                size_t n_values, sl_buf_t *scratch, int64_t *token);

/* Replicas for every token range of a ring, computed once per topology. */
typedef struct sl_cql_replmap {
    int64_t *tokens; /* the ring's tokens, sorted (owned) */
    size_t n;
    size_t stride; /* entries per token in reps */
    int *reps;     /* n * stride host indexes in ring order, -1 after the last */
} sl_cql_replmap_t;

/* Builds m (gives ownership: free with sl_cql_replmap_free) for nhosts
 * hosts (hosts[i] borrowed for the call; a host with no tokens is not on the
 * ring) of which local[i] are in the local data center. The replicas of a
 * range, in ring order, keep only local hosts:
 *   per_dc false (SimpleStrategy): the first rf distinct hosts clockwise from
 *     the owner, whatever their data center, then the local ones of them;
 *   per_dc true (NetworkTopologyStrategy): the first rf distinct local hosts
 *     clockwise from the owner.
 * rf 0 is treated as 1. Returns 0, or -1 (m empty) when two hosts share a
 * token. An empty ring gives an empty map. */
SL_WUR int sl_cql_replmap_build(sl_cql_replmap_t *m, const sl_cql_ring_host_t *hosts,
                                const bool *local, size_t nhosts, size_t rf, bool per_dc);
/* The replicas of token (the range of the first ring token >= token, wrapping):
 * sets *out to them (borrowed from m) and returns how many (0: empty map). */
size_t sl_cql_replmap_get(const sl_cql_replmap_t *m, int64_t token, const int **out);
/* Frees what m owns and empties it; an empty map is fine. */
void sl_cql_replmap_free(sl_cql_replmap_t *m);

/* Exponential backoff with jitter: the next backoff after prev (0: none
 * yet) is min_ms, then doubles up to max_ms; *delay_ms is that backoff
 * scaled by a random factor in [0.5, 1] from *seed (updated). Returns the
 * new backoff. */
int sl_cql_backoff_next(int prev, int min_ms, int max_ms, uint64_t *seed, int *delay_ms);

#endif
