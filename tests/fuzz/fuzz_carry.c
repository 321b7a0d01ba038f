/* Fuzz target: tracestate and baggage as an outgoing call passes them on. Whatever the input,
 * the result is no longer than it, holds only printable ASCII (nothing that could end a header
 * line), and is its own normal form. Input: a selector byte (even: tracestate, odd: baggage)
 * and the header's value. */
#include <o11y/trace.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    size_t (*normalize)(const char *, size_t, char *, size_t) =
        data[0] % 2 ? o11y_baggage_normalize : o11y_tracestate_normalize;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    static char out[O11Y_TRACE_CARRIED_MAX + 1], again[O11Y_TRACE_CARRIED_MAX + 1];
    size_t n = normalize(in, len, out, len + 1);
    if (n > len || strlen(out) != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (out[i] < 0x20 || out[i] > 0x7e)
            abort();
    if (normalize(out, n, again, n + 1) != n || memcmp(out, again, n) != 0)
        abort();
    return 0;
}
