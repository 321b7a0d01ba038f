/* o11y/client.h — the client kit (CONTRACT section 11), part of libo11y-curl (pkg-config
 * o11y-curl; CMake component curl): calls to a service that speaks the contract, with the trace
 * headers of the current context, typed errors, safe retries, idempotency keys, and a
 * Server-Sent Events consumer that resumes after a drop.
 *
 *     o11y_client_config cfg;
 *     o11y_client_config_init(&cfg);
 *     cfg.base_url = "http://127.0.0.1:8001";
 *     o11y_client *c;
 *     if (o11y_client_create(&cfg, &c) != O11Y_OK) ...
 *     o11y_client_request rq = {.method = "GET", .path = "/projects/p1"};
 *     o11y_client_response rs;
 *     if (o11y_client_call(c, &rq, &rs) != O11Y_OK)
 *         fprintf(stderr, "%s (trace %s)\n", rs.error.user_message, rs.error.trace_id);
 *     o11y_client_response_clear(&rs);
 */
#ifndef O11Y_CLIENT_H
#define O11Y_CLIENT_H

#include "o11y/common.h"
#include "o11y/log.h"
#include "o11y/metrics.h"
#include "o11y/trace.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y_client o11y_client;

/* A person's sentence for an error code, or NULL to keep the kit's own (see
 * o11y_client_user_message). status is the HTTP status, 0 without a response. */
typedef const char *(*o11y_client_user_message_fn)(const char *code, int status, void *ctx);

typedef struct o11y_client_config {
    const char *base_url;        /* required: http(s)://host[:port][/prefix]; copied */
    const char *service_name;    /* who calls, for the User-Agent; NULL: "o11y-client" */
    const char *user_agent;      /* NULL: "<service_name> o11y-client/<version>" */
    unsigned connect_timeout_ms; /* 0: 5,000 */
    unsigned attempt_timeout_ms; /* one attempt, 0: 30,000 (an SSE stream has none) */
    unsigned deadline_ms;        /* a whole call with its retries, 0: 60,000 */
    unsigned max_attempts;       /* 0: 4; 1 turns retries off */
    unsigned backoff_base_ms;    /* full jitter: a wait is random in [0, min(cap, base*2^n)) */
    unsigned backoff_cap_ms;     /* 0: 200 and 10,000 */
    o11y_metrics *metrics;       /* NULL: none; else http_client_request_duration_seconds */
    o11y_logger *logger;         /* NULL: the default logger */
    o11y_client_user_message_fn user_message; /* NULL: the kit's sentences */
    void *user_message_ctx;
    o11y_log_level log_level; /* every line's level; 0: INFO for a 2xx, WARN otherwise (DEBUG
                                 suits periodic checks) */
    O11Y_RESERVED;            /* zero: room to grow (common.h) */
} o11y_client_config;

/* Zeroes cfg: every member at its default. */
O11Y_API void o11y_client_config_init(o11y_client_config *cfg);

/* Creates a client. Returns O11Y_OK, O11Y_EINVAL (no base URL, another scheme, a URL with a
 * query or fragment, over 2,048 bytes), O11Y_ECONFLICT (metrics: the histogram's name is taken
 * with other labels) or O11Y_ENOMEM. Thread-safe object: any number of threads may call through
 * one client at once (each call takes a pooled libcurl handle, so connections are kept alive
 * between calls). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_client_create(const o11y_client_config *cfg,
                                                         o11y_client **out /* OUT */);
/* Frees the client; no call may be running. NULL: nothing. */
O11Y_API void o11y_client_destroy(o11y_client *c);

/* One call. Every member but method and path may be zero. */
typedef struct o11y_client_request {
    const char *method; /* "GET", "POST", ... (upper case) */
    const char *path;   /* appended to the base URL: "/projects?limit=5" */
    const char *body;   /* JSON text sent as application/json; NULL: no body */
    size_t body_len;    /* 0 with a body: strlen(body) */
    /* Sent as Idempotency-Key; it makes a POST or PATCH safe to retry (the same key on every
     * attempt). 1-255 printable ASCII bytes. */
    const char *idempotency_key;
    const char *const *headers; /* more "Name: value" lines, NULL-terminated; never logged */
    /* The call's parent context: NULL takes the thread's current one (o11y_trace_current), and
     * without one the call starts a trace. Each attempt is a child span of it. */
    const o11y_trace_ctx *trace;
    const char *tracestate; /* passed on when set, normalized (o11y_tracestate_normalize) */
    const char *baggage;    /* likewise (o11y_baggage_normalize) */
    unsigned deadline_ms;   /* 0: the client's */
    const char *accept;     /* NULL: "application/json" */
    O11Y_RESERVED;          /* zero: room to grow (common.h) */
} o11y_client_request;

/* The typed error of CONTRACT section 11. */
typedef struct o11y_client_error {
    int status;    /* the HTTP status; 0 when no response came */
    char code[64]; /* "EPISODE_NOT_FOUND", "HTTP_502" (not JSON), "NETWORK_ERROR", "TIMEOUT" */
    char *message; /* the server's message, or the kit's for a failure without one; malloc'd */
    char *details; /* the "details" object as compact JSON text, or NULL; malloc'd */
    char trace_id[O11Y_TRACE_ID_MAX + 1]; /* from the body, else X-Trace-Id, else the sent one */
    char timestamp[40];                   /* from the body, "" when absent */
    bool retryable;                       /* from the catalog (CONTRACT section 1) */
    const char *user_message;             /* a sentence for a person; never NULL after a call */
} o11y_client_error;

/* What a call got. Owned by the caller after the call: o11y_client_response_clear frees it. */
typedef struct o11y_client_response {
    int status;         /* of the last attempt; 0 when none answered */
    char *body;         /* the last answer's body, NUL-terminated (also on errors), or NULL */
    size_t body_len;    /* a body over 64 MiB ends the attempt as a NETWORK_ERROR */
    char *content_type; /* the answer's Content-Type, or NULL */
    char trace_id[O11Y_TRACE_ID_MAX + 1]; /* the call's trace id (sent, echoed by the server) */
    unsigned attempts;                    /* how many were made */
    o11y_client_error error;              /* code "" on success */
} o11y_client_response;

/* Makes the call: attempts until a 2xx, an answer not worth retrying, max_attempts, or the
 * deadline (no attempt starts that the deadline cannot finish: a wait that would pass it ends
 * the call with the last error). Retried: 409 IDEMPOTENCY_KEY_IN_USE, 429, 502, 503, 504 and
 * failures without a response, but only for GET, HEAD, PUT, DELETE, OPTIONS, or POST/PATCH with
 * an idempotency key. A wait is the full-jitter backoff or the answer's Retry-After (seconds or
 * HTTP-date), whichever is longer. Writes one http_client_request line per call and an
 * http_client_retry line per retried attempt, each in its attempt's span; records each attempt
 * in the histogram. Returns O11Y_OK (2xx), O11Y_EBACKEND (resp->error says what went wrong),
 * O11Y_EINVAL (bad request members; resp untouched) or O11Y_ENOMEM. Thread-safe: yes. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_client_call(o11y_client *c,
                                                       const o11y_client_request *req,
                                                       o11y_client_response *resp /* OUT */);
/* Frees what a response holds and zeroes it. NULL: nothing. */
O11Y_API void o11y_client_response_clear(o11y_client_response *resp);

/* The kit's sentence for a person for code (and status when the code is unknown, e.g. HTTP_502);
 * never NULL; static. */
O11Y_API const char *o11y_client_user_message(const char *code, int status);
/* Whether code is worth retrying by the catalog (CONTRACT section 1), for status when the code
 * is not in it (5xx but 501: yes). NETWORK_ERROR and TIMEOUT: yes. */
O11Y_API bool o11y_client_code_retryable(const char *code, int status);

/*=== idempotency keys ===*/

enum { O11Y_CLIENT_KEY_MAX = 255, O11Y_CLIENT_OPERATION_MAX = 200 };

typedef struct o11y_client_keys o11y_client_keys;

/* A key store. path NULL: in memory. Otherwise keys also live in that file (created 0600 when
 * missing; each change is written to a temporary file and renamed over it, under an flock, so
 * several processes may share it), and a tool restarted after a crash or Ctrl-C finds the key
 * of a call that may still be in flight. Returns O11Y_OK, O11Y_EIO (the file cannot be read or
 * is not a key file) or O11Y_ENOMEM. Thread-safe object. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_client_keys_open(const char *path,
                                                            o11y_client_keys **out /* OUT */);
O11Y_API void o11y_client_keys_close(o11y_client_keys *k);
/* A new random key (a UUID) for operation, replacing any it had. operation: 1-200 printable
 * ASCII bytes. out gets the key and a NUL. Returns O11Y_OK, O11Y_EINVAL, O11Y_EIO (not saved:
 * the key is still returned and kept in memory) or O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_client_keys_create(o11y_client_keys *k,
                                                              const char *operation,
                                                              char out[O11Y_CLIENT_KEY_MAX + 1]);
/* The operation's key until it is invalidated, created on first use. Returns as create. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_client_keys_get_or_create(
    o11y_client_keys *k, const char *operation, char out[O11Y_CLIENT_KEY_MAX + 1]);
/* Forgets a key, named by itself or by its operation. Returns O11Y_OK, O11Y_ENOTFOUND or
 * O11Y_EIO. */
O11Y_API o11y_status o11y_client_keys_invalidate(o11y_client_keys *k, const char *key_or_operation);
/* Whether a call that ended this way used up its key (CONTRACT section 11): after a 2xx, and
 * after a 4xx other than 400 VALIDATION_FAILED, 409 IDEMPOTENCY_KEY_IN_USE and 429. */
O11Y_API bool o11y_client_key_spent(const o11y_client_response *resp);

/* postIdempotent: takes operation's key (get_or_create), makes the call with it (req's own
 * idempotency_key is ignored), and invalidates the key when the answer spent it. Returns as
 * o11y_client_call; O11Y_EIO when the key file could not be written before the call (the call
 * is not made: a key that a restart cannot find could create twice). */
O11Y_API O11Y_WARN_UNUSED o11y_status
o11y_client_call_idempotent(o11y_client *c, o11y_client_keys *k, const char *operation,
                            const o11y_client_request *req, o11y_client_response *resp /* OUT */);

/*=== Server-Sent Events ===*/

/* One event. Borrowed for the callback. id "" when the event had none; event "message" when it
 * named no type. */
typedef struct o11y_sse_event {
    const char *id;
    const char *event;
    const char *data; /* the data lines joined by '\n', NUL-terminated */
    size_t data_len;
} o11y_sse_event;

/* Called once per event, in order; a non-zero return stops the stream (o11y_client_sse then
 * returns O11Y_OK). */
typedef int (*o11y_sse_event_fn)(const o11y_sse_event *ev, void *ctx);

typedef struct o11y_sse_opts {
    o11y_sse_event_fn on_event; /* required */
    void *ctx;
    const char *last_event_id; /* resume after this id; NULL: from the start */
    /* The events after which the stream is over; NULL: "completed", "failed", "cancelled"
     * (NULL-terminated). */
    const char *const *final_events;
    unsigned heartbeat_ms;   /* the server's heartbeat; no byte for twice this is a drop;
                                0: 15,000 */
    unsigned max_reconnects; /* in a row without an event; 0: 10 */
    size_t max_line;         /* a longer line ends the stream (NETWORK_ERROR); 0: 1 MiB */
    /* Polled while the stream is open (several times a second, also in silence): non-zero ends
     * it as a stop (e.g. the user cancelled). NULL: never. */
    int (*should_stop)(void *ctx);
    O11Y_RESERVED; /* zero: room to grow (common.h) */
} o11y_sse_opts;

/* Follows req->path as an event stream (Accept: text/event-stream): req->method (NULL: GET)
 * with its body, e.g. a POST to an OpenAI-compatible chat completion, until a final event, the
 * callback or should_stop says stop, or the stream cannot be resumed. After a drop (closed
 * connection, heartbeat silence, a retryable error answer) it reconnects with Last-Event-ID,
 * waiting the server's retry: (else 1 s, doubling to 30 s while attempts fail), and never
 * delivers an event twice: an event whose numeric id is not above the last one's is skipped.
 * It reconnects only when that is safe: the method may be repeated (as for o11y_client_call)
 * and either no event came yet or the stream names its events (an id to resume from): a
 * stream without ids that dropped midway would start over. req->deadline_ms, when set, bounds
 * the whole (the client's deadline does not: a stream may last); max_reconnects bounds the
 * reconnects. Writes a line per connection as o11y_client_call does. Returns O11Y_OK (a final
 * event or a stop), O11Y_EBACKEND (resp->error: an answer that is not a stream, a drop that
 * cannot be resumed, reconnects exhausted) or O11Y_EINVAL. Thread-safe: yes. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_client_sse(o11y_client *c,
                                                      const o11y_client_request *req,
                                                      const o11y_sse_opts *opts,
                                                      o11y_client_response *resp /* OUT */);

#ifdef __cplusplus
}
#endif
#endif
