/* Routing keys: the partition key bytes Cassandra hashes into a token. */
#ifndef SL_CQL_ROUTING_H
#define SL_CQL_ROUTING_H

#include <stddef.h>

#include "cql/types.h"
#include "util/buf.h"
#include "util/common.h"

/* Appends to out the routing key built from the serialized values of the n
 * partition key columns, in partition key order (parts borrowed). One column:
 * its bytes as they are. Several: Cassandra's CompositeType form, for each
 * column [u16 big-endian length][bytes][0x00]. Returns 0, or -1 (out
 * unchanged) if n is 0, a part is null (len < 0), or a part of a composite
 * key is longer than 65535 bytes. Thread-safe for distinct out buffers. */
SL_WUR int sl_cql_routing_key(const sl_cql_bytes_t *parts, size_t n, sl_buf_t *out);

#endif
