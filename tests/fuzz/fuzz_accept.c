/* Fuzz target: Accept negotiation (RFC 9110 section 12.5.1) for error bodies. Any header value
 * gives one of the two formats, without reading past it. */
#include <o11y/error.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so a read past the end is caught by ASan. */
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    o11y_error_format f = o11y_error_negotiate(copy, size);
    if (f != O11Y_ERROR_ENVELOPE && f != O11Y_ERROR_PROBLEM)
        abort();
    free(copy);
    return 0;
}
