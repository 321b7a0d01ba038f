/* idempotency/record.c — the stored response's byte layout, the one format every store keeps:
 * status(2) | trace(1+n) | content type(1+n) | location(2+n) | job(1+n) | project(1+n) |
 * body(4+n), lengths and integers little-endian. A record of the status alone (2 bytes) says
 * the key completed but its response could not be kept (idem_internal.h). */
#include "idempotency/idem_internal.h"

static void put_u(o11y__buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        o11y__buf_putc(b, (char)(v >> (8 * i)));
}

static void put_field(o11y__buf *b, o11y_str s, int len_bytes)
{
    put_u(b, s.len, len_bytes);
    o11y__buf_append(b, s.ptr ? s.ptr : "", s.len);
}

void o11y__idem_record_encode(o11y__buf *b, const o11y__idem_record *r)
{
    put_u(b, (uint64_t)r->status, O11Y_IDEM_STATUS_BYTES);
    put_field(b, r->trace_id, 1);
    put_field(b, r->content_type, 1);
    put_field(b, r->location, 2);
    put_field(b, r->job_id, 1);
    put_field(b, r->project_id, 1);
    put_field(b, r->body, 4);
}

void o11y__idem_record_encode_status(o11y__buf *b, int status)
{
    put_u(b, (uint64_t)status, O11Y_IDEM_STATUS_BYTES);
}

typedef struct reader {
    const unsigned char *p, *end;
    bool ok;
} reader;

static uint64_t get_u(reader *r, int bytes)
{
    uint64_t v = 0;
    if (r->end - r->p < bytes) {
        r->ok = false;
        return 0;
    }
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += bytes;
    return v;
}

static o11y_str get_field(reader *r, int len_bytes)
{
    uint64_t len = get_u(r, len_bytes);
    if (!r->ok || (uint64_t)(r->end - r->p) < len) {
        r->ok = false;
        return (o11y_str){"", 0};
    }
    o11y_str s = {(const char *)r->p, (size_t)len};
    r->p += len;
    return s;
}

o11y__idem_record_kind o11y__idem_record_decode(const char *blob, size_t len,
                                                o11y__idem_record *out)
{
    memset(out, 0, sizeof *out);
    reader r = {(const unsigned char *)blob, (const unsigned char *)blob + len, blob != NULL};
    out->status = (int)get_u(&r, O11Y_IDEM_STATUS_BYTES);
    if (!r.ok || out->status < 100 || out->status > 599)
        return O11Y__IDEM_RECORD_BAD;
    if (len == O11Y_IDEM_STATUS_BYTES)
        return O11Y__IDEM_RECORD_STATUS_ONLY;
    out->trace_id = get_field(&r, 1);
    out->content_type = get_field(&r, 1);
    out->location = get_field(&r, 2);
    out->job_id = get_field(&r, 1);
    out->project_id = get_field(&r, 1);
    out->body = get_field(&r, 4);
    if (!r.ok || r.p != r.end) /* every byte accounted for, or the record is damaged */
        return O11Y__IDEM_RECORD_BAD;
    return O11Y__IDEM_RECORD_FULL;
}
