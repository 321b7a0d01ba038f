/* o11y/log.h — structured JSON log lines (CONTRACT section 3), written asynchronously.
 *
 * A log call formats its line on the calling thread into a thread-local buffer and enqueues it
 * into a bounded lock-free queue; one writer thread drains the queue with batched writes. A full
 * queue drops the line and counts it, so a caller never waits; a failing sink (full disk, closed
 * pipe) is counted and never blocks or crashes the caller. */
#ifndef O11Y_LOG_H
#define O11Y_LOG_H

#include "o11y/common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y_logger o11y_logger;

typedef enum o11y_log_level {
    O11Y_LOG_DEFAULT = 0, /* in a config: INFO */
    O11Y_LOG_DEBUG = 1,
    O11Y_LOG_INFO = 2,
    O11Y_LOG_WARN = 3,
    O11Y_LOG_ERROR = 4,
    O11Y_LOG_FATAL = 5,
    O11Y_LOG_OFF = 6, /* as a minimum level: nothing is logged */
} o11y_log_level;

/* "DEBUG", "INFO", ...; never NULL. */
O11Y_API const char *o11y_log_level_name(o11y_log_level level);
/* Parses "debug", "INFO", "warn", "warning", "error", "fatal", "off" (any case).
 * Returns O11Y_OK or O11Y_EINVAL. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_log_level_parse(const char *s, o11y_log_level *out);

/* How lines are written. Either way the line carries the same fields. */
typedef enum o11y_log_format {
    O11Y_LOG_FORMAT_AUTO = 0,   /* PRETTY when the output is a terminal, else JSON */
    O11Y_LOG_FORMAT_JSON = 1,   /* one JSON object per line (CONTRACT section 3) */
    O11Y_LOG_FORMAT_PRETTY = 2, /* for people at a terminal: time, level, message, then the
                                   context and metadata as key=value; coloured on a terminal
                                   unless NO_COLOR is set */
} o11y_log_format;

/* Parses "auto", "json", "pretty". Returns O11Y_OK or O11Y_EINVAL. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_log_format_parse(const char *s, o11y_log_format *out);

/* All-zero is a valid config: zero means default. */
typedef struct o11y_log_config {
    const char *service_name;     /* NULL: "unknown"; copied */
    o11y_log_level min_level;     /* DEFAULT: INFO */
    const char *file_path;        /* NULL: standard output; else appended to, reopened on
                                     o11y_logger_reopen (logrotate); copied */
    size_t queue_bytes;           /* 0: 4 MiB; rounded up to a power of two, at least 256 KiB */
    size_t max_line_bytes;        /* 0: 16 KiB, at most 60 KiB; metadata that does not fit is
                                     replaced by "metadata_truncated":true, never split */
    size_t max_value_bytes;       /* 0: 4 KiB; longer strings are cut, ending in U+2026 */
    const char *const *mask_keys; /* NULL-terminated extra sensitive keys; copied */
    o11y_log_format format;       /* 0: AUTO */
    O11Y_RESERVED;                /* zero: room to grow (common.h) */
} o11y_log_config;

/* Fills cfg with the defaults. Must not be NULL. Thread-safe: yes. */
O11Y_API void o11y_log_config_init(o11y_log_config *cfg);

/* Creates a logger and starts its writer thread. Strings in cfg are copied.
 * Returns O11Y_OK, O11Y_EINVAL (bad cfg), O11Y_EIO (the file cannot be opened; errno is kept)
 * or O11Y_ENOMEM; on error *out is NULL. Thread-safe: yes. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_logger_create(const o11y_log_config *cfg,
                                                         o11y_logger **out /* OUT */);
/* Writes every queued line, stops the writer thread and frees the logger. NULL is a no-op.
 * No other thread may log to lg during or after the call. If lg is the default logger, the
 * default is cleared. */
O11Y_API void o11y_logger_destroy(o11y_logger *lg);

/* Asks the writer to reopen the log file at its next batch (after logrotate moved it).
 * Async-signal-safe: may be called from a SIGHUP handler. */
O11Y_API void o11y_logger_reopen(o11y_logger *lg);

/* Waits until every line enqueued before the call has been written (or failed), at most
 * timeout_ms. Returns O11Y_OK or O11Y_ELIMIT on timeout. */
O11Y_API o11y_status o11y_logger_flush(o11y_logger *lg, int timeout_ms);

typedef struct o11y_log_stats {
    uint64_t lines_written; /* handed to the sink successfully */
    uint64_t lines_dropped; /* the queue was full */
    uint64_t lines_failed;  /* the sink's write failed (EIO, ENOSPC, EPIPE, ...) */
    uint64_t write_errors;  /* failed write calls */
    uint64_t bytes_written;
} o11y_log_stats;
/* Counters since the logger was created, read without a lock (each one consistent, not all
 * together). lg NULL: all zero. Thread-safe: yes. */
O11Y_API void o11y_logger_stats(const o11y_logger *lg, o11y_log_stats *out /* OUT */);

O11Y_API void o11y_logger_set_min_level(o11y_logger *lg, o11y_log_level level);
O11Y_API bool o11y_logger_enabled(const o11y_logger *lg, o11y_log_level level);

/* The process-wide default logger used when a call passes NULL (keeps a pointer). */
O11Y_API void o11y_logger_set_default(o11y_logger *lg);
O11Y_API o11y_logger *o11y_logger_default(void);

/*=== typed metadata ===*/

typedef enum o11y_field_type {
    O11Y_FIELD_END = 0, /* terminates a variadic list */
    O11Y_FIELD_STR,
    O11Y_FIELD_INT,
    O11Y_FIELD_DOUBLE,
    O11Y_FIELD_BOOL,
    O11Y_FIELD_OBJ_BEGIN, /* a nested object; its fields follow, up to O11Y_FIELD_OBJ_END */
    O11Y_FIELD_OBJ_END,
    O11Y_FIELD_DURATION_MS, /* the top-level "duration_ms" (double) */
} o11y_field_type;

/* One key and value. Strings are borrowed for the call; NULL renders as null. Values of
 * sensitive keys (password, token, secret, authorization, cookie, api_key, ... and the
 * configured ones; case-insensitive, '-' same as '_', also as a "_suffix") become "***". */
typedef struct o11y_field {
    const char *key;
    o11y_field_type type;
    union {
        struct {
            const char *ptr;
            size_t len; /* SIZE_MAX: NUL-terminated */
        } s;
        int64_t i;
        double d;
        bool b;
    } v;
} o11y_field;

#define O11Y_STR(k, val)                                                                           \
    ((o11y_field){.key = (k), .type = O11Y_FIELD_STR, .v.s = {(val), SIZE_MAX}})
#define O11Y_STRN(k, p, n) ((o11y_field){.key = (k), .type = O11Y_FIELD_STR, .v.s = {(p), (n)}})
#define O11Y_INT(k, val)   ((o11y_field){.key = (k), .type = O11Y_FIELD_INT, .v.i = (int64_t)(val)})
#define O11Y_DOUBLE(k, val)                                                                        \
    ((o11y_field){.key = (k), .type = O11Y_FIELD_DOUBLE, .v.d = (double)(val)})
#define O11Y_BOOL(k, val) ((o11y_field){.key = (k), .type = O11Y_FIELD_BOOL, .v.b = (val)})
#define O11Y_OBJ(k)       ((o11y_field){.key = (k), .type = O11Y_FIELD_OBJ_BEGIN})
#define O11Y_OBJ_END      ((o11y_field){.key = NULL, .type = O11Y_FIELD_OBJ_END})
#define O11Y_DURATION_MS(val)                                                                      \
    ((o11y_field){.key = "duration_ms", .type = O11Y_FIELD_DURATION_MS, .v.d = (double)(val)})
#define O11Y__END ((o11y_field){.key = NULL, .type = O11Y_FIELD_END})

/* Writes one line: timestamp, level, service, the thread's current trace context (trace_id,
 * job_id, project_id; absent ones omitted), message, event (when not NULL), metadata (when any
 * field), duration_ms (when given). lg NULL: the default logger (no default: nothing).
 * Borrows everything. Never blocks. Thread-safe: yes. */
O11Y_API void o11y_log_fields(o11y_logger *lg, o11y_log_level level, const char *event,
                              const char *message, const o11y_field *fields, size_t n_fields);

/* Variadic form: fields by value, ended by O11Y__END (the macros below add it). */
O11Y_API void o11y_log_va(o11y_logger *lg, o11y_log_level level, const char *event,
                          const char *message, ...);

/* The checked forms: a message, then up to 24 fields made with the macros above. Each argument
 * is checked at compile time (_Generic), so o11y_log_info("x", "count", 3) does not compile:
 * write o11y_log_info("x", O11Y_INT("count", 3)). */
#define o11y_log_debug(...)                                                                        \
    o11y_log_va(NULL, O11Y_LOG_DEBUG, NULL, O11Y__CHECKED(__VA_ARGS__), O11Y__END)
#define o11y_log_info(...)                                                                         \
    o11y_log_va(NULL, O11Y_LOG_INFO, NULL, O11Y__CHECKED(__VA_ARGS__), O11Y__END)
#define o11y_log_warn(...)                                                                         \
    o11y_log_va(NULL, O11Y_LOG_WARN, NULL, O11Y__CHECKED(__VA_ARGS__), O11Y__END)
#define o11y_log_error(...)                                                                        \
    o11y_log_va(NULL, O11Y_LOG_ERROR, NULL, O11Y__CHECKED(__VA_ARGS__), O11Y__END)
/* A domain event: level INFO, "event":name, message name, then its fields (checked the same
 * way). A service defines its catalog of events as functions on this (see generation-service's
 * events.c). */
#define o11y_log_event(...)                                                                        \
    o11y_log_va(NULL, O11Y_LOG_INFO, O11Y__FIRST(__VA_ARGS__, 0), O11Y__CHECKED(__VA_ARGS__),      \
                O11Y__END)

/* The argument checks behind the macros above. C++ has no _Generic: there they pass unchecked. */
#ifdef __cplusplus
#define O11Y__F(x) (x)
#define O11Y__M(m) (m)
#else
#define O11Y__F(x) _Generic((x), o11y_field : (x))
#define O11Y__M(m) _Generic((m), char * : (m), const char * : (m))
#endif
#define O11Y__FIRST(a, ...) (a)
#define O11Y__CAT(a, b)     O11Y__CAT_(a, b)
#define O11Y__CAT_(a, b)    a##b
#define O11Y__NARG(...)                                                                            \
    O11Y__NARG_(__VA_ARGS__, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, \
                7, 6, 5, 4, 3, 2, 1, 0)
#define O11Y__NARG_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17,    \
                    _18, _19, _20, _21, _22, _23, _24, _25, n, ...)                                \
    n
#define O11Y__CHECKED(...) O11Y__CAT(O11Y__C, O11Y__NARG(__VA_ARGS__))(__VA_ARGS__)
#define O11Y__C1(m)        O11Y__M(m)
#define O11Y__C2(m, ...)   O11Y__M(m), O11Y__F1(__VA_ARGS__)
#define O11Y__C3(m, ...)   O11Y__M(m), O11Y__F2(__VA_ARGS__)
#define O11Y__C4(m, ...)   O11Y__M(m), O11Y__F3(__VA_ARGS__)
#define O11Y__C5(m, ...)   O11Y__M(m), O11Y__F4(__VA_ARGS__)
#define O11Y__C6(m, ...)   O11Y__M(m), O11Y__F5(__VA_ARGS__)
#define O11Y__C7(m, ...)   O11Y__M(m), O11Y__F6(__VA_ARGS__)
#define O11Y__C8(m, ...)   O11Y__M(m), O11Y__F7(__VA_ARGS__)
#define O11Y__C9(m, ...)   O11Y__M(m), O11Y__F8(__VA_ARGS__)
#define O11Y__C10(m, ...)  O11Y__M(m), O11Y__F9(__VA_ARGS__)
#define O11Y__C11(m, ...)  O11Y__M(m), O11Y__F10(__VA_ARGS__)
#define O11Y__C12(m, ...)  O11Y__M(m), O11Y__F11(__VA_ARGS__)
#define O11Y__C13(m, ...)  O11Y__M(m), O11Y__F12(__VA_ARGS__)
#define O11Y__C14(m, ...)  O11Y__M(m), O11Y__F13(__VA_ARGS__)
#define O11Y__C15(m, ...)  O11Y__M(m), O11Y__F14(__VA_ARGS__)
#define O11Y__C16(m, ...)  O11Y__M(m), O11Y__F15(__VA_ARGS__)
#define O11Y__C17(m, ...)  O11Y__M(m), O11Y__F16(__VA_ARGS__)
#define O11Y__C18(m, ...)  O11Y__M(m), O11Y__F17(__VA_ARGS__)
#define O11Y__C19(m, ...)  O11Y__M(m), O11Y__F18(__VA_ARGS__)
#define O11Y__C20(m, ...)  O11Y__M(m), O11Y__F19(__VA_ARGS__)
#define O11Y__C21(m, ...)  O11Y__M(m), O11Y__F20(__VA_ARGS__)
#define O11Y__C22(m, ...)  O11Y__M(m), O11Y__F21(__VA_ARGS__)
#define O11Y__C23(m, ...)  O11Y__M(m), O11Y__F22(__VA_ARGS__)
#define O11Y__C24(m, ...)  O11Y__M(m), O11Y__F23(__VA_ARGS__)
#define O11Y__C25(m, ...)  O11Y__M(m), O11Y__F24(__VA_ARGS__)
#define O11Y__F1(a)        O11Y__F(a)
#define O11Y__F2(a, ...)   O11Y__F(a), O11Y__F1(__VA_ARGS__)
#define O11Y__F3(a, ...)   O11Y__F(a), O11Y__F2(__VA_ARGS__)
#define O11Y__F4(a, ...)   O11Y__F(a), O11Y__F3(__VA_ARGS__)
#define O11Y__F5(a, ...)   O11Y__F(a), O11Y__F4(__VA_ARGS__)
#define O11Y__F6(a, ...)   O11Y__F(a), O11Y__F5(__VA_ARGS__)
#define O11Y__F7(a, ...)   O11Y__F(a), O11Y__F6(__VA_ARGS__)
#define O11Y__F8(a, ...)   O11Y__F(a), O11Y__F7(__VA_ARGS__)
#define O11Y__F9(a, ...)   O11Y__F(a), O11Y__F8(__VA_ARGS__)
#define O11Y__F10(a, ...)  O11Y__F(a), O11Y__F9(__VA_ARGS__)
#define O11Y__F11(a, ...)  O11Y__F(a), O11Y__F10(__VA_ARGS__)
#define O11Y__F12(a, ...)  O11Y__F(a), O11Y__F11(__VA_ARGS__)
#define O11Y__F13(a, ...)  O11Y__F(a), O11Y__F12(__VA_ARGS__)
#define O11Y__F14(a, ...)  O11Y__F(a), O11Y__F13(__VA_ARGS__)
#define O11Y__F15(a, ...)  O11Y__F(a), O11Y__F14(__VA_ARGS__)
#define O11Y__F16(a, ...)  O11Y__F(a), O11Y__F15(__VA_ARGS__)
#define O11Y__F17(a, ...)  O11Y__F(a), O11Y__F16(__VA_ARGS__)
#define O11Y__F18(a, ...)  O11Y__F(a), O11Y__F17(__VA_ARGS__)
#define O11Y__F19(a, ...)  O11Y__F(a), O11Y__F18(__VA_ARGS__)
#define O11Y__F20(a, ...)  O11Y__F(a), O11Y__F19(__VA_ARGS__)
#define O11Y__F21(a, ...)  O11Y__F(a), O11Y__F20(__VA_ARGS__)
#define O11Y__F22(a, ...)  O11Y__F(a), O11Y__F21(__VA_ARGS__)
#define O11Y__F23(a, ...)  O11Y__F(a), O11Y__F22(__VA_ARGS__)
#define O11Y__F24(a, ...)  O11Y__F(a), O11Y__F23(__VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
