/* A Murmur3 token ring: which host owns a token and which hosts hold its
 * replicas under SimpleStrategy. Hosts are numbered by their index in the
 * array given to sl_cql_ring_create. A token range (prev, t] belongs to the
 * host of ring token t; tokens past the last ring token wrap to the first.
 * A ring is immutable once built: any number of threads may query it. */
#ifndef SL_CQL_RING_H
#define SL_CQL_RING_H

#include <stddef.h>
#include <stdint.h>

#include "util/common.h"

/* One host's tokens (borrowed for the duration of sl_cql_ring_create). */
typedef struct {
    const int64_t *tokens;
    size_t ntokens;
} sl_cql_ring_host_t;

typedef struct sl_cql_ring sl_cql_ring_t;

/* Builds the sorted ring of all hosts' tokens; a host may have no tokens.
 * On success returns 0 and gives ownership of *ringp (free it with
 * sl_cql_ring_destroy). Returns -1 and sets *ringp to NULL if two entries
 * share a token or nhosts exceeds INT32_MAX. */
SL_WUR int sl_cql_ring_create(const sl_cql_ring_host_t *hosts, size_t nhosts,
                              sl_cql_ring_t **ringp);
/* Frees the ring; NULL is a no-op. */
void sl_cql_ring_destroy(sl_cql_ring_t *ring);

/* Returns the number of tokens on the ring. */
size_t sl_cql_ring_size(const sl_cql_ring_t *ring);

/* Returns the index of the host owning token (the host of the first ring
 * token >= token, wrapping to the first), or -1 if the ring is empty.
 * O(log n). */
int sl_cql_ring_owner(const sl_cql_ring_t *ring, int64_t token);

/* SimpleStrategy replicas of token with replication factor rf: the owner,
 * then the next distinct hosts walking the ring clockwise. Writes them in
 * that order to out (room for rf entries, borrowed) and returns how many:
 * min(rf, number of hosts with tokens). */
size_t sl_cql_ring_replicas(const sl_cql_ring_t *ring, int64_t token, size_t rf, int *out);

#endif
