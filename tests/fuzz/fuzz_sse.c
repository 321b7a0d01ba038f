/* Fuzz target: the event stream parser of the client kit. The input is split at a point chosen
 * by its first byte and fed in two calls, then fed again whole; the events must be the same
 * either way (a stream's meaning never depends on how TCP cut it), no event's data may exceed
 * the line bound, and no type or id may hold a line break. */
#include "client/sse_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct digest {
    uint64_t h;
    size_t events;
} digest;

static uint64_t mix(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

static int on_event(void *ctx, const char *id, bool own_id, const char *type, const char *data,
                    size_t len)
{
    digest *d = ctx;
    if (len > 4096 || strlen(type) > SSE_TYPE_MAX || strpbrk(type, "\r\n") || strpbrk(id, "\r\n") ||
        memchr(data, '\r', len))
        abort();
    d->h = mix(d->h, id, strlen(id));
    d->h = mix(d->h, own_id ? "1" : "0", 1);
    d->h = mix(d->h, type, strlen(type));
    d->h = mix(d->h, data, len);
    d->events++;
    return 0;
}

static digest run(const char *in, size_t n, size_t cut)
{
    digest d = {1469598103934665603ull, 0};
    sse_parser p;
    sse_parser_init(&p, 4096, on_event, &d);
    bool ok = sse_parser_feed(&p, in, cut) && sse_parser_feed(&p, in + cut, n - cut);
    d.h = mix(d.h, ok ? "ok" : "end", ok ? 2 : 3);
    d.h = mix(d.h, p.last_id, strlen(p.last_id));
    sse_parser_free(&p);
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    size_t cut = n ? data[0] % (n + 1) : 0;
    digest a = run(in, n, cut), b = run(in, n, 0);
    if (a.h != b.h || a.events != b.events)
        abort();
    return 0;
}
