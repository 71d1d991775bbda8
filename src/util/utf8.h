/* UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF), and the pieces of \u escapes: hex digits and encoding. Inline: the JSON decoder calls
 * it on its hot path. */
#ifndef SL_UTIL_UTF8_H
#define SL_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Returns the length (2-4) of the valid multi-byte sequence at s (n >= 1
 * bytes available), or 0 if it is not one. ASCII bytes return 0 too: callers
 * handle them first. */
static inline size_t sl_utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need;
    if (c < 0xC2) {
        return 0; /* ASCII, or 0x80-0xc1 which never start a sequence */
    } else if (c < 0xE0) {
        need = 2;
    } else if (c < 0xF0) {
        need = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlongs */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c < 0xF5) {
        need = 4;
        lo = c == 0xF0 ? 0x90 : 0x80; /* no overlongs */
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < need || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return need;
}

/* Returns true if s[0..n) is entirely valid UTF-8. */
static inline bool sl_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = sl_utf8_seq_len(s + i, n - i);
        if (k == 0) {
            return false;
        }
        i += k;
    }
    return true;
}

/* Reads the 4 hex digits of a \u escape at p (4 bytes available) into *out.
 * Returns 0, or -1 if one is not a hex digit. */
static inline int sl_utf8_hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], x;
        if (c - '0' <= 9) {
            x = c - '0';
        } else if ((c | 0x20) - 'a' <= 5) {
            x = (c | 0x20) - 'a' + 10;
        } else {
            return -1;
        }
        v = v << 4 | x;
    }
    *out = v;
    return 0;
}

/* Writes code point cp (<= U+10FFFF) as UTF-8 at o (room for 4 bytes);
 * returns the bytes written. */
static inline size_t sl_utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

#endif
