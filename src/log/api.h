/* log/api.h — what the log module offers the http pipeline: the access line, written from its
 * values (the line's insides stay in log_internal.h). */
#ifndef O11Y_LOG_API_H
#define O11Y_LOG_API_H

#include "core/internal.h"
#include "o11y/log.h"

/* A request's access line (CONTRACT section 3, "event":"http_request"), written by the log
 * module from these values on the calling thread's buffer: the http pipeline hands the values
 * over and never touches a line's insides. route is a template checked at registration (written
 * as is); the path is escaped and capped at 1,024 bytes. Level ERROR for a 5xx, else INFO. */
typedef struct o11y__access_line {
    const char *method;
    const char *route;
    size_t route_len;
    const char *path;
    size_t path_len;
    int status;
    uint64_t bytes;
    bool aborted;
    double elapsed_ms;
} o11y__access_line;
void o11y__log_access(o11y_logger *lg, const o11y__access_line *a);

/* A line written for someone else (the frontend log intake: source "browser"): as
 * o11y_log_fields, with a top-level "source" after the message and event, and a message of a
 * given length (it may come from a request, escaped and capped like any value). */
void o11y__log_sourced(o11y_logger *lg, o11y_log_level level, const char *source, const char *event,
                       const char *message, size_t message_len, const o11y_field *fields, size_t n);

#endif
