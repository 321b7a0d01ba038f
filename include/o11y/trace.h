/* o11y/trace.h — trace context: parse, validate, generate, the thread's current context, and the
 * headers of outgoing calls (CONTRACT section 2, W3C Trace Context level 1). */
#ifndef O11Y_TRACE_H
#define O11Y_TRACE_H

#include "o11y/common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    O11Y_TRACE_ID_MAX = 128,   /* longest valid X-Trace-Id, X-Job-Id or X-Project-Id */
    O11Y_TRACEPARENT_LEN = 55, /* "00-" 32 hex "-" 16 hex "-" 2 hex */
};

/* A request's trace context: a small value type, copied freely (e.g. into work handed to another
 * thread). Every id is NUL-terminated text, "" when absent; the _len fields give its length. */
typedef struct o11y_trace_ctx {
    char trace_id[O11Y_TRACE_ID_MAX + 1];
    char job_id[O11Y_TRACE_ID_MAX + 1];
    char project_id[O11Y_TRACE_ID_MAX + 1];
    char span_id[17];        /* this unit of work's span, 16 lowercase hex */
    char parent_span_id[17]; /* from an incoming traceparent, or "" */
    uint8_t trace_flags;     /* W3C trace-flags; bit 0: sampled */
    uint8_t trace_id_len, job_id_len, project_id_len;
} o11y_trace_ctx;

/* A parsed traceparent header. */
typedef struct o11y_traceparent {
    uint8_t version;
    char trace_id[33];
    char parent_id[17];
    uint8_t flags;
} o11y_traceparent;

/* True when s is a valid X-Trace-Id / X-Job-Id / X-Project-Id: 1-128 bytes of [A-Za-z0-9._:-]. */
O11Y_API bool o11y_trace_id_valid(const char *s, size_t len);

/* Parses a traceparent value strictly (W3C Trace Context section 3.2): lowercase hex only;
 * version 00 is exactly 55 bytes; a higher version is at least 55 bytes and, when longer, has
 * '-' at byte 55; version ff, an all-zero trace-id and an all-zero parent-id are invalid.
 * Returns O11Y_OK or O11Y_EINVAL (out untouched). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_traceparent_parse(const char *s, size_t len,
                                                             o11y_traceparent *out /* OUT */);

/* Builds the context of an incoming request from its header values (each may be {NULL, 0}).
 * Trace id: a valid X-Trace-Id, else a valid traceparent's trace-id, else a new UUIDv7.
 * Invalid values are ignored, never copied. Always succeeds. */
O11Y_API void o11y_trace_ctx_from_headers(o11y_trace_ctx *ctx /* OUT */, o11y_str x_trace_id,
                                          o11y_str traceparent, o11y_str x_job_id,
                                          o11y_str x_project_id);

/* A fresh context with a new trace id and span id (work that starts without a request). */
O11Y_API void o11y_trace_ctx_new(o11y_trace_ctx *ctx /* OUT */);

/* A span of work under parent (an outgoing call, a step): *out gets parent's trace, job and
 * project ids and flags, a new span id, and parent's span id as its parent. Neither may be NULL,
 * nor alias the other. Always succeeds; thread-safe (touches only its arguments). */
O11Y_API void o11y_trace_ctx_child(const o11y_trace_ctx *parent, o11y_trace_ctx *out /* OUT */);
/* Set the job or project id; O11Y_EINVAL (ctx unchanged) when the value is not valid. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_trace_ctx_set_job_id(o11y_trace_ctx *ctx, const char *s,
                                                                size_t len);
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_trace_ctx_set_project_id(o11y_trace_ctx *ctx,
                                                                    const char *s, size_t len);

/* Writes a new lowercase UUIDv7 and a NUL into out. Per-thread generator: no lock, no syscall. */
O11Y_API void o11y_trace_new_id(char out[37]);

/* What an outgoing call passes on of the incoming tracestate and baggage (CONTRACT section 2):
 * a header longer than this is dropped whole. */
enum { O11Y_TRACE_CARRIED_MAX = 8192 };

/* Normalizes an incoming tracestate (W3C Trace Context section 3.3) for passing on: list
 * members whose key or value is invalid are dropped, as is a later member with a key already
 * seen; at most 32 are kept, in order, joined by ','. A value over O11Y_TRACE_CARRIED_MAX bytes
 * is dropped whole. Writes the result and a NUL into out (cap bytes; len + 1 always suffices:
 * the result is never longer than the input) and returns its length, 0 when nothing is left or
 * out is too small. in NULL: 0 (out ""); out NULL or cap 0: 0, nothing written. Never reads
 * past len; pure, thread-safe. */
O11Y_API size_t o11y_tracestate_normalize(const char *in, size_t len, char *out, size_t cap);
/* The same for baggage (W3C Baggage): members are key=value with optional ;properties, keys
 * tokens (RFC 9110), values baggage octets (percent-encoding kept as it is); invalid members are
 * dropped, whitespace around the separators removed, at most 64 members kept. */
O11Y_API size_t o11y_baggage_normalize(const char *in, size_t len, char *out, size_t cap);

/* The calling thread's current context, or NULL. The library sets it for the duration of a
 * request's handler; log calls on this thread carry it. Returns borrowed, valid until the
 * current context changes. */
O11Y_API o11y_trace_ctx *o11y_trace_current(void);
/* Makes ctx the thread's current context (keeps a pointer: ctx must outlive its use; NULL
 * clears). Returns the previous one, so nested scopes can restore it. */
O11Y_API o11y_trace_ctx *o11y_trace_set_current(o11y_trace_ctx *ctx);

/* The 128-bit W3C trace-id (32 lowercase hex digits and a NUL) that stands for ctx's trace id
 * in traceparent headers: its own bits when the trace id is a UUID or 32 hex digits, otherwise a
 * hash of it, so every service derives the same one from the same X-Trace-Id. */
O11Y_API void o11y_trace_w3c_id(const o11y_trace_ctx *ctx, char out[33]);

/* Formats the traceparent header of an outgoing call, "00-<w3c trace-id>-<span id>-<flags>",
 * into out (55 bytes and a NUL). Send it with X-Trace-Id: ctx->trace_id. */
O11Y_API void o11y_trace_format_traceparent(const o11y_trace_ctx *ctx, char out[56]);

#ifdef __cplusplus
}
#endif
#endif
