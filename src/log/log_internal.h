/* log/log_internal.h — building a line field by field, for the library's own hot lines (the
 * access line) without going through o11y_field. */
#ifndef O11Y_LOG_INTERNAL_H
#define O11Y_LOG_INTERNAL_H

#include "core/internal.h"
#include "log/api.h"
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

/* Closes the line (duration_ms when >= 0) and enqueues it. Never blocks. */
void o11y__line_end(o11y__line *l, double duration_ms);

#endif
