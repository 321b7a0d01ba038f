/* client/sse_parser.c — the event stream format by hand: libcurl hands over bytes and no
 * Debian library parses the format; it is a line splitter and four field names. */
#include "client/sse_parser.h"

#include <stdlib.h>
#include <string.h>

void sse_parser_init(sse_parser *p, size_t max_line, sse_dispatch_fn dispatch, void *ctx)
{
    memset(p, 0, sizeof *p);
    p->max_line = max_line < 16 ? 16 : max_line;
    p->dispatch = dispatch;
    p->ctx = ctx;
    p->retry_ms = -1;
}

void sse_parser_restart(sse_parser *p)
{
    p->line_len = p->data_len = 0;
    p->after_cr = p->pending_id_set = false;
    p->type[0] = '\0';
}

void sse_parser_free(sse_parser *p)
{
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->line_cap = p->data_cap = 0;
}

static bool dispatch(sse_parser *p)
{
    bool own_id = p->pending_id_set;
    if (own_id) {
        memcpy(p->last_id, p->pending_id, sizeof p->last_id);
        p->pending_id_set = false;
        p->any_id = p->last_id[0] != '\0';
    }
    if (p->data_len == 0) { /* no data: nothing to deliver (the format's rule) */
        p->type[0] = '\0';
        return true;
    }
    p->data_len--; /* the last data line's '\n' */
    p->data[p->data_len] = '\0';
    int stop = p->dispatch(p->ctx, p->last_id, own_id, p->type[0] ? p->type : "message", p->data,
                           p->data_len);
    p->data_len = 0;
    p->type[0] = '\0';
    if (stop)
        p->stopped = true;
    return !stop;
}

static bool append_data(sse_parser *p, const char *v, size_t n)
{
    if (p->data_len + n + 2 > p->max_line) {
        p->too_long = true;
        return false;
    }
    if (p->data_len + n + 2 > p->data_cap) {
        size_t cap = p->data_cap ? p->data_cap : 256;
        while (cap < p->data_len + n + 2)
            cap *= 2;
        char *d = realloc(p->data, cap);
        if (!d) {
            p->out_of_memory = true;
            return false;
        }
        p->data = d;
        p->data_cap = cap;
    }
    memcpy(p->data + p->data_len, v, n);
    p->data_len += n;
    p->data[p->data_len++] = '\n';
    p->data[p->data_len] = '\0';
    return true;
}

/* One line, without its end. */
static bool on_line(sse_parser *p, const char *l, size_t n)
{
    if (n == 0)
        return dispatch(p);
    if (l[0] == ':')
        return true; /* a comment: the heartbeat */
    const char *colon = memchr(l, ':', n);
    size_t name = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vn = colon ? n - name - 1 : 0;
    if (vn && *v == ' ')
        v++, vn--;
    if (name == 4 && memcmp(l, "data", 4) == 0)
        return append_data(p, v, vn);
    if (name == 5 && memcmp(l, "event", 5) == 0) {
        if (vn <= SSE_TYPE_MAX) {
            memcpy(p->type, v, vn);
            p->type[vn] = '\0';
        }
    } else if (name == 2 && memcmp(l, "id", 2) == 0) {
        /* An id with a NUL is ignored (the format's rule); one too long for a header, too. */
        if (vn <= SSE_ID_MAX && !memchr(v, '\0', vn)) {
            memcpy(p->pending_id, v, vn);
            p->pending_id[vn] = '\0';
            p->pending_id_set = true;
        }
    } else if (name == 5 && memcmp(l, "retry", 5) == 0) {
        long ms = 0;
        size_t i = 0;
        for (; i < vn && i < 9 && v[i] >= '0' && v[i] <= '9'; i++)
            ms = ms * 10 + (v[i] - '0');
        if (vn && i == vn)
            p->retry_ms = ms;
    }
    return true; /* other fields are ignored, as the format says */
}

bool sse_parser_feed(sse_parser *p, const char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = bytes[i];
        if (ch == '\n' && p->after_cr) {
            p->after_cr = false;
            continue;
        }
        p->after_cr = ch == '\r';
        if (ch == '\n' || ch == '\r') {
            bool go = on_line(p, p->line ? p->line : "", p->line_len);
            p->line_len = 0;
            if (!go)
                return false;
            continue;
        }
        if (p->line_len + 2 > p->max_line) {
            p->too_long = true;
            return false;
        }
        if (p->line_len + 2 > p->line_cap) {
            size_t cap = p->line_cap ? p->line_cap * 2 : 256;
            char *l = realloc(p->line, cap);
            if (!l) {
                p->out_of_memory = true;
                return false;
            }
            p->line = l;
            p->line_cap = cap;
        }
        p->line[p->line_len++] = ch;
        p->line[p->line_len] = '\0';
    }
    return true;
}
