#include "cql/murmur3.h"

/* All arithmetic is on uint64_t: Java's long wraps on overflow and its >>>
 * is a logical shift, which is what unsigned C arithmetic does. */

#define M3_C1 UINT64_C(0x87c37b91114253d5)
#define M3_C2 UINT64_C(0x4cf5ad432745937f)

static uint64_t m3_rotl(uint64_t v, unsigned n)
{
    return (v << n) | (v >> (64 - n));
}

static uint64_t m3_fmix(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

/* A block word: eight bytes, little-endian, each byte unsigned. */
static uint64_t m3_block(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* A tail byte as Java sees it: (long) of a signed byte. */
static uint64_t m3_sext(uint8_t b)
{
    return b >= 0x80 ? (UINT64_C(0xffffffffffffff00) | b) : b;
}

static uint64_t m3_mix_k1(uint64_t k1)
{
    k1 *= M3_C1;
    k1 = m3_rotl(k1, 31);
    return k1 * M3_C2;
}

static uint64_t m3_mix_k2(uint64_t k2)
{
    k2 *= M3_C2;
    k2 = m3_rotl(k2, 33);
    return k2 * M3_C1;
}

/* Two's complement reinterpretation without implementation-defined casts. */
static int64_t m3_to_signed(uint64_t u)
{
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

int64_t sl_cql_murmur3_h1(const void *key, size_t len)
{
    const uint8_t *data = key;
    size_t nblocks = len / 16;
    uint64_t h1 = 0, h2 = 0;

    for (size_t i = 0; i < nblocks; i++) {
        const uint8_t *blk = data + i * 16;
        h1 ^= m3_mix_k1(m3_block(blk));
        h1 = m3_rotl(h1, 27);
        h1 += h2;
        h1 = h1 * 5 + 0x52dce729;
        h2 ^= m3_mix_k2(m3_block(blk + 8));
        h2 = m3_rotl(h2, 31);
        h2 += h1;
        h2 = h2 * 5 + 0x38495ab5;
    }

    /* tail: the last len % 16 bytes, from index tail on (data may be NULL
     * when len is 0, so no pointer arithmetic on it here) */
    size_t tail = nblocks * 16, rest = len & 15;
    uint64_t k1 = 0, k2 = 0;
    for (size_t i = rest; i > 8; i--) {
        k2 ^= m3_sext(data[tail + i - 1]) << (8 * (i - 9));
    }
    if (rest > 8) {
        h2 ^= m3_mix_k2(k2);
    }
    for (size_t i = rest > 8 ? 8 : rest; i > 0; i--) {
        k1 ^= m3_sext(data[tail + i - 1]) << (8 * (i - 1));
    }
    if (rest > 0) {
        h1 ^= m3_mix_k1(k1);
    }

    /* Java xors in the int length widened to long. */
    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 += h2;
    h2 += h1;
    h1 = m3_fmix(h1);
    h2 = m3_fmix(h2);
    h1 += h2;
    return m3_to_signed(h1);
}

int64_t sl_cql_murmur3_token(const void *key, size_t len)
{
    if (len == 0) {
        return INT64_MIN;
    }
    int64_t h1 = sl_cql_murmur3_h1(key, len);
    return h1 == INT64_MIN ? INT64_MAX : h1;
}
