/* Fuzz target: reading back a request head in the h2o adapter (adapters/h2o/head.c). Any bytes:
 * no read past them, every field inside them, names without a colon or a line break, values
 * without a line break or blanks at either end. */
#include "adapters/h2o/head.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct bounds {
    const char *start, *end;
} bounds;

static void inside(const bounds *b, o11y_str s)
{
    if (s.ptr < b->start || s.ptr + s.len > b->end)
        abort();
}

static void on_field(void *ctx, o11y_str name, o11y_str value)
{
    inside(ctx, name);
    inside(ctx, value);
    if (memchr(name.ptr, ':', name.len) || memchr(name.ptr, '\n', name.len) ||
        memchr(name.ptr, '\r', name.len) || memchr(value.ptr, '\n', value.len) ||
        memchr(value.ptr, '\r', value.len))
        abort();
    if (value.len && (value.ptr[0] == ' ' || value.ptr[value.len - 1] == '\t' ||
                      value.ptr[value.len - 1] == ' ' || value.ptr[0] == '\t'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so a read past the end is caught by ASan. */
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    bounds b = {copy, copy + size};
    o11y_str method, target;
    if (o11y__head_parse(copy, size, &method, &target, on_field, &b)) {
        inside(&b, method);
        inside(&b, target);
        if (!method.len || method.len > 16 || !target.len)
            abort();
    }
    free(copy);
    return 0;
}
