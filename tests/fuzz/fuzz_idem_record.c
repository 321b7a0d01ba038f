/* Fuzz target: the stored idempotency record's decoder. Any bytes (a damaged row, a Redis value
 * written by something else) decode safely, and a record that decodes whole encodes back to the
 * same bytes. */
#include "idempotency/idem_internal.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    o11y__idem_record rec;
    o11y__idem_record_kind kind = o11y__idem_record_decode(copy, size, &rec);
    if (kind == O11Y__IDEM_RECORD_FULL) {
        o11y__buf b;
        o11y__buf_init(&b, SIZE_MAX / 2);
        o11y__idem_record_encode(&b, &rec);
        if (b.overflow || b.len != size || memcmp(b.ptr, copy, size) != 0)
            abort();
        o11y__buf_release(&b);
    }
    if (kind == O11Y__IDEM_RECORD_STATUS_ONLY && (size != 2 || rec.status < 100))
        abort();
    free(copy);
    return 0;
}
