#include "cql/routing.h"

int sl_cql_routing_key(const sl_cql_bytes_t *parts, size_t n, sl_buf_t *out)
{
    if (n == 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (parts[i].len < 0 || (n > 1 && parts[i].len > 0xffff)) {
            return -1;
        }
    }
    if (n == 1) {
        sl_buf_append(out, parts[0].ptr, (size_t)parts[0].len);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t len[2] = {(uint8_t)(parts[i].len >> 8), (uint8_t)parts[i].len};
        sl_buf_append(out, len, 2);
        sl_buf_append(out, parts[i].ptr, (size_t)parts[i].len);
        sl_buf_putc(out, '\0');
    }
    return 0;
}
