#include "cql/ring.h"

#include <stdlib.h>

typedef struct {
    int64_t token;
    int host;
} rg_entry_t;

struct sl_cql_ring {
    rg_entry_t *entries; /* sorted by token, tokens distinct */
    size_t n;
    size_t nowners; /* hosts with at least one token */
};

static int rg_cmp(const void *a, const void *b)
{
    int64_t x = ((const rg_entry_t *)a)->token, y = ((const rg_entry_t *)b)->token;
    return (x > y) - (x < y);
}

int sl_cql_ring_create(const sl_cql_ring_host_t *hosts, size_t nhosts, sl_cql_ring_t **ringp)
{
    *ringp = NULL;
    if (nhosts > INT32_MAX) {
        return -1;
    }
    sl_cql_ring_t *ring = sl_xcalloc(1, sizeof(*ring));
    for (size_t h = 0; h < nhosts; h++) {
        ring->n += hosts[h].ntokens;
        ring->nowners += hosts[h].ntokens > 0;
    }
    ring->entries = sl_xmalloc((ring->n ? ring->n : 1) * sizeof(rg_entry_t));
    size_t k = 0;
    for (size_t h = 0; h < nhosts; h++) {
        for (size_t i = 0; i < hosts[h].ntokens; i++) {
            ring->entries[k++] = (rg_entry_t){hosts[h].tokens[i], (int)h};
        }
    }
    qsort(ring->entries, ring->n, sizeof(rg_entry_t), rg_cmp);
    for (size_t i = 1; i < ring->n; i++) {
        if (ring->entries[i].token == ring->entries[i - 1].token) {
            sl_cql_ring_destroy(ring);
            return -1;
        }
    }
    *ringp = ring;
    return 0;
}

void sl_cql_ring_destroy(sl_cql_ring_t *ring)
{
    if (ring == NULL) {
        return;
    }
    free(ring->entries);
    free(ring);
}

size_t sl_cql_ring_size(const sl_cql_ring_t *ring)
{
    return ring->n;
}

/* Index of the first entry with token >= t, wrapping to 0 past the end.
 * The ring must not be empty. */
static size_t rg_find(const sl_cql_ring_t *ring, int64_t t)
{
    size_t lo = 0, hi = ring->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring->entries[mid].token < t) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo == ring->n ? 0 : lo;
}

int sl_cql_ring_owner(const sl_cql_ring_t *ring, int64_t token)
{
    if (ring->n == 0) {
        return -1;
    }
    return ring->entries[rg_find(ring, token)].host;
}

size_t sl_cql_ring_replicas(const sl_cql_ring_t *ring, int64_t token, size_t rf, int *out)
{
    size_t want = SL_MIN(rf, ring->nowners), count = 0;
    if (want == 0) {
        return 0;
    }
    size_t i = rg_find(ring, token);
    for (size_t step = 0; step < ring->n && count < want; step++) {
        int host = ring->entries[i].host;
        size_t j = 0;
        while (j < count && out[j] != host) {
            j++;
        }
        if (j == count) {
            out[count++] = host;
        }
        i = i + 1 == ring->n ? 0 : i + 1;
    }
    return count;
}
