/* Fuzz target: the Idempotency-Key header (CONTRACT section 4). An accepted key lies inside the
 * value and is 1-255 bytes of 0x21-0x7E, without quotes or backslashes when quoted. */
#include "http/http_internal.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    o11y_str key;
    if (o11y__idem_parse_key((o11y_str){copy, size}, &key)) {
        if (key.len == 0 || key.len > 255 || key.ptr < copy || key.ptr + key.len > copy + size)
            abort();
        for (size_t i = 0; i < key.len; i++)
            if ((unsigned char)key.ptr[i] < 0x21 || (unsigned char)key.ptr[i] > 0x7E)
                abort();
    }
    free(copy);
    return 0;
}
