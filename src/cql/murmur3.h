/* Cassandra's Murmur3Partitioner token: the first 64 bits (h1) of
 * MurmurHash3_x64_128 with seed 0, computed the way Cassandra's Java code
 * computes it. Cassandra reads the tail bytes (the last len % 16) as Java
 * signed bytes and sign-extends them to 64 bits before shifting, so for keys
 * whose tail holds a byte >= 0x80 the result differs from the reference C
 * murmur3. Pure functions: any thread may call them. */
#ifndef SL_CQL_MURMUR3_H
#define SL_CQL_MURMUR3_H

#include <stddef.h>
#include <stdint.h>

/* Returns h1 of Cassandra's MurmurHash.hash3_x64_128(key, seed 0), with no
 * token normalization (the empty key gives 0). key borrows len bytes; it may
 * be NULL when len is 0. */
int64_t sl_cql_murmur3_h1(const void *key, size_t len);

/* Returns the Murmur3Partitioner token of the partition key (the routing key
 * bytes): INT64_MIN for the empty key, otherwise h1, except that an h1 of
 * INT64_MIN becomes INT64_MAX (Cassandra keeps INT64_MIN for the minimum
 * token only). key borrows len bytes; it may be NULL when len is 0. */
int64_t sl_cql_murmur3_token(const void *key, size_t len);

#endif
