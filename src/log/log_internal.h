/* log/log_internal.h — building a line field by field, for the library's own hot lines (the
 * access line) without going through o11y_field. */
#ifndef O11Y_LOG_INTERNAL_H
#define O11Y_LOG_INTERNAL_H

#include "core/internal.h"
#include "o11y/log.h"

typedef struct o11y__line {
    o11y__buf b; /* the thread-local line buffer */
    o11y_logger *lg;
    size_t meta_mark; /* where ,"metadata":{ starts, to drop it when it does not fit */
    bool meta_open;
} o11y__line;

/* Starts a line on the calling thread's buffer: everything up to and including message and
 * event. Returns false (and nothing needs ending) when the level is filtered out or lg is NULL.
 * Only one line per thread may be open at a time. */
bool o11y__line_begin(o11y__line *l, o11y_logger *lg, o11y_log_level level, const char *event,
                      const char *msg, size_t msg_len);

/* The same with message and event given as pre-rendered JSON members, e.g.
 * ,"message":"request completed","event":"http_request" (trusted: written as is). */
bool o11y__line_begin_json(o11y__line *l, o11y_logger *lg, o11y_log_level level, const char *json,
                           size_t len);

/* Opens the next metadata member: writes the separator and "key": (key: a plain literal). */
static inline void o11y__line_key(o11y__line *l, const char *key, size_t len)
{
    if (O11Y_UNLIKELY(!l->meta_open)) {
        l->meta_mark = l->b.len;
        l->meta_open = true;
        o11y__buf_lit(&l->b, ",\"metadata\":{");
    } else {
        o11y__buf_putc(&l->b, ',');
    }
    o11y__json_key(&l->b, key, len);
}
#define o11y__line_key_lit(l, lit) o11y__line_key((l), (lit), sizeof(lit) - 1)

/* Closes the line (duration_ms when >= 0) and enqueues it. Never blocks. */
void o11y__line_end(o11y__line *l, double duration_ms);

/* The cap applied to string values of this logger. */
size_t o11y__log_max_value(const o11y_logger *lg);

#endif
