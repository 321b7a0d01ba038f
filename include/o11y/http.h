/* o11y/http.h — the server-agnostic HTTP pipeline: a service with its routes, the request a
 * handler reads and the response it fills. An adapter (o11y/mhd.h) feeds it real requests.
 *
 * For every request the pipeline, without the handler doing anything: builds the trace context
 * (CONTRACT section 2) and makes it the thread's current context; answers 404 NOT_FOUND, 405
 * METHOD_NOT_ALLOWED (+ Allow), 413 PAYLOAD_TOO_LARGE and 415 UNSUPPORTED_MEDIA_TYPE itself;
 * turns a failed handler into 500 INTERNAL_ERROR; renders every error as the envelope or as RFC
 * 9457 problem details (CONTRACT section 1); adds X-Trace-Id, X-Job-Id, X-Project-Id,
 * X-Processing-Time and X-Service; writes one access line ("event":"http_request"); and records
 * http_server_requests_total, http_server_request_duration_seconds and
 * http_server_active_requests, served with the process metrics at GET /metrics (Prometheus text
 * or OpenMetrics) and as JSON at GET /metrics/summary. */
#ifndef O11Y_HTTP_H
#define O11Y_HTTP_H

#include "o11y/common.h"
#include "o11y/error.h"
#include "o11y/health.h"
#include "o11y/idempotency.h"
#include "o11y/log.h"
#include "o11y/metrics.h"
#include "o11y/trace.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct json_t; /* jansson's; include <jansson.h> to use the JSON helpers */

typedef struct o11y_service o11y_service;
typedef struct o11y_request o11y_request;
typedef struct o11y_response o11y_response;

/* Methods, as bits so a route can take several. */
typedef enum o11y_method {
    O11Y_METHOD_OTHER = 0,
    O11Y_GET = 1 << 0,
    O11Y_HEAD = 1 << 1,
    O11Y_POST = 1 << 2,
    O11Y_PUT = 1 << 3,
    O11Y_PATCH = 1 << 4,
    O11Y_DELETE = 1 << 5,
    O11Y_OPTIONS = 1 << 6,
} o11y_method;

/* The method for a request line's token (case-sensitive, RFC 9110); O11Y_METHOD_OTHER if none. */
O11Y_API o11y_method o11y_method_parse(const char *s, size_t len);
/* "GET", ...; "_OTHER" for O11Y_METHOD_OTHER or a combination. */
O11Y_API const char *o11y_method_name(o11y_method m);

/* A handler answers through the o11y_res_* helpers and returns 0. A non-zero return, or a
 * return without an answer, becomes 500 INTERNAL_ERROR (logged with the route). */
typedef int (*o11y_handler_fn)(o11y_request *req, o11y_response *res, void *user);

enum o11y_route_flags {
    O11Y_ROUTE_JSON = 1u << 0, /* POST/PUT/PATCH bodies must be application/json (else 415) */
    O11Y_ROUTE_IDEMPOTENCY_REQUIRED = 1u << 1, /* no Idempotency-Key: 400 (o11y/idempotency.h) */
    O11Y_ROUTE_NO_IDEMPOTENCY = 1u << 2,       /* keys are ignored on this route */
    /* The handler never waits (no database, no network, no lock held long): an event-loop
     * adapter (h2o) runs it on the loop instead of handing it to a handler thread. */
    O11Y_ROUTE_NONBLOCKING = 1u << 3,
};

/* All-zero is a valid config: zero means default. */
typedef struct o11y_service_config {
    const char *service_name;      /* NULL: "unknown-service"; copied */
    const char *version;           /* NULL: "0.0.0"; copied */
    o11y_logger *logger;           /* NULL: the service creates one from `log` and owns it */
    o11y_log_config log;           /* used when logger is NULL; its service_name defaults to ours */
    size_t max_body_bytes;         /* 0: 1 MiB; larger bodies get 413 */
    const char *problem_type_base; /* RFC 9457 "type" prefix (+ code); NULL: "about:blank" */
    const char *project_param;     /* path parameter that sets X-Project-Id; NULL: "projectId" */
    const char *job_param;         /* path parameter that sets X-Job-Id; NULL: "jobId" */
    bool access_log_off;           /* true: no http_request lines */
    o11y_metrics *metrics;         /* NULL: the service creates a registry and owns it */
    bool no_metrics_routes;        /* true: no GET /metrics and /metrics/summary */
    bool no_health_routes;         /* true: no GET /health, /health/live, /health/ready */
    O11Y_RESERVED;                 /* zero: room to grow (common.h) */
} o11y_service_config;

/* Fills cfg with the defaults (its log member too). Must not be NULL. Thread-safe: yes. */
O11Y_API void o11y_service_config_init(o11y_service_config *cfg);

/* The C counterpart of the original setup_observability(app, service_name, version): creates
 * the service (and its logger unless one is given), and makes the logger the process default.
 * Strings are copied. Returns O11Y_OK, O11Y_EINVAL, O11Y_EIO (log file) or O11Y_ENOMEM; on error
 * *out is NULL. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_create(const o11y_service_config *cfg,
                                                          o11y_service **out /* OUT */);
/* Frees the service and the logger it owns (flushing it). No request may be in flight. */
O11Y_API void o11y_service_destroy(o11y_service *svc);

O11Y_API o11y_logger *o11y_service_logger(const o11y_service *svc);
/* The service's metric registry (the process default registry too). */
O11Y_API o11y_metrics *o11y_service_metrics(const o11y_service *svc);
/* The service's health object: add dependency checks to it (o11y/health.h). */
O11Y_API o11y_health *o11y_service_health(const o11y_service *svc);
O11Y_API const char *o11y_service_name(const o11y_service *svc);
O11Y_API const char *o11y_service_version(const o11y_service *svc);

/* Registers a handler for the methods (a bit set; GET also answers HEAD) on a path template
 * such as "/projects/{projectId}/episodes/{episodeId}". Literal segments win over parameters
 * when two templates match. Copies the template; keeps user. Not thread-safe: register before
 * serving. Returns O11Y_OK, O11Y_EINVAL (template not of that form, more than 8 parameters or
 * 32 segments, no method), O11Y_ECONFLICT (the method is taken on that template), O11Y_ELIMIT
 * (over 256 templates) or O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_route(o11y_service *svc, unsigned methods,
                                                         const char *path_template,
                                                         o11y_handler_fn fn, void *user,
                                                         unsigned flags);

/*=== browsers ===*/

/* Cross-origin requests (CONTRACT section 9). */
typedef struct o11y_cors_config {
    /* Comma-separated exact origins as browsers send them ("https://app.example.com,
     * http://localhost:5173": scheme, lowercase host, optional port, no path), at most 64; or
     * "*" (any origin, without credentials). Copied. */
    const char *origins;
    bool allow_credentials;    /* Access-Control-Allow-Credentials: true (not with "*") */
    const char *allow_headers; /* request headers a preflight allows beyond the contract's
                                  (comma-separated names); NULL: none; copied */
    unsigned max_age_s;        /* Access-Control-Max-Age; 0: 600 */
    O11Y_RESERVED;             /* zero: room to grow (common.h) */
} o11y_cors_config;

/* Turns CORS on. Every response then carries Vary: Origin; one to an allowed Origin also
 * Access-Control-Allow-Origin (the configured string, never the request's bytes) and
 * Access-Control-Expose-Headers (the trace headers, Retry-After, the idempotency and rate-limit
 * fields), errors, replays and streams included. A preflight (OPTIONS with
 * Access-Control-Request-Method) is answered by the pipeline: 204 with the route's methods, the
 * allowed headers and Max-Age; 403 ORIGIN_NOT_ALLOWED for another origin; 404 without a route;
 * never rate-limited, never a handler. Returns O11Y_OK, O11Y_EINVAL (an origin or header list
 * that is not valid, "*" with credentials, called twice) or O11Y_ENOMEM. Call before serving. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_cors(o11y_service *svc,
                                                        const o11y_cors_config *cfg);

/* The frontend log intake (CONTRACT section 10). */
typedef struct o11y_client_logs_config {
    const char *route;  /* NULL: "/client-logs"; copied */
    size_t max_records; /* per batch; 0: 100 */
    size_t max_bytes;   /* per batch; 0: 65,536 */
    O11Y_RESERVED;      /* zero: room to grow (common.h) */
} o11y_client_logs_config;

/* Adds POST route: {"logs":[record, ...]} from the browser kit, each record
 * {timestamp, level, message, traceId?, spanId?, jobId?, projectId?, event?, sessionId?,
 * metadata?, durationMs?}. Each valid record becomes one line of the service's log with
 * "source":"browser" in the record's own trace context (an invalid id is left out), masking
 * applied; levels debug, info, warn and error only. Answers 202 {"accepted":N,"rejected":M}
 * (a record without a message or with another level is rejected alone); a body that is not such
 * a batch or holds more than max_records is 400 VALIDATION_FAILED, over max_bytes 413. The body
 * may come as application/json or text/plain (navigator.sendBeacon). Rate-limit it with a
 * policy on its route (o11y/ratelimit.h). cfg NULL: the defaults. Returns as
 * o11y_service_route, or O11Y_EINVAL when the intake is already on. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_client_logs(o11y_service *svc,
                                                               const o11y_client_logs_config *cfg);

/*=== the request (borrowed by the handler; everything returned is valid until it returns) ===*/

O11Y_API o11y_method o11y_req_method(const o11y_request *req);
/* The path as sent, percent-escapes kept, without the query. */
O11Y_API o11y_str o11y_req_path(const o11y_request *req);
/* The matched template, e.g. "/projects/{projectId}"; "unmatched" when none. */
O11Y_API const char *o11y_req_route(const o11y_request *req);
/* A path parameter, percent-decoded (valid UTF-8, no NUL: the pipeline answered 400 otherwise);
 * {NULL, 0} when the route has no such parameter. */
O11Y_API o11y_str o11y_req_param(const o11y_request *req, const char *name);
/* The first value of a query parameter, percent-decoded ('+' is a space). Returns false when
 * absent or not decodable (bad escape, NUL, invalid UTF-8). */
O11Y_API bool o11y_req_query(o11y_request *req, const char *name, o11y_str *out /* OUT */);
/* A request header (first occurrence, case-insensitive name); {NULL, 0} when absent. The list
 * headers tracestate and baggage sent in several lines (up to eight) come back as one value,
 * the lines joined with ',' (RFC 9110 section 5.3; W3C Trace Context section 3.3). */
O11Y_API o11y_str o11y_req_header(const o11y_request *req, const char *name);
O11Y_API o11y_str o11y_req_body(const o11y_request *req);
/* The request's trace context, also the thread's current context during the handler. */
O11Y_API o11y_trace_ctx *o11y_req_trace(o11y_request *req);
/* The peer's IP address as text ("127.0.0.1", "::1") into buf (at least 46 bytes for IPv6);
 * false when the server library did not say (buf is then ""). The peer is the connection's
 * other end: behind a proxy, the proxy. */
O11Y_API bool o11y_req_peer_address(const o11y_request *req, char *buf, size_t len);

/* Parses the body as one JSON object (jansson; duplicate keys, invalid UTF-8, \u0000, nesting
 * deeper than 2048 and integers beyond 64 bits are rejected). On failure answers res with 400
 * VALIDATION_FAILED (details: position, line, column, reason) and returns NULL. The result is
 * borrowed, freed with the request. */
O11Y_API struct json_t *o11y_req_json(o11y_request *req, o11y_response *res);

/*=== the response ===*/

/* Adds a header. Copies. O11Y_EINVAL for a name that is not a token, a value with CR, LF or NUL,
 * or one of the headers the pipeline owns (X-Trace-Id, X-Service, ...); O11Y_ELIMIT past 16. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_res_header(o11y_response *res, const char *name,
                                                      const char *value);
/* Sets the status and body (copied). content_type NULL: application/json. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_res_body(o11y_response *res, int status,
                                                    const char *content_type, const void *body,
                                                    size_t len);
/* Sets the status and a JSON body. Takes ownership of body (decref), on success and failure. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_res_json(o11y_response *res, int status,
                                                    struct json_t *body);
/* Sets a status without a body (204, 304). */
O11Y_API void o11y_res_empty(o11y_response *res, int status);
/* Answers with an error of the catalog, named by its constant: o11y_res_fail(res,
 * &o11y_err_NOT_FOUND, NULL, NULL) (error.h). details: a JSON object or NULL (ownership taken);
 * fmt: the message for a person, NULL for the catalog's. The status comes from def. For a 5xx
 * the message and details are logged, never sent. NULL def answers INTERNAL_ERROR. */
O11Y_API void o11y_res_fail(o11y_response *res, const o11y_error_def *def, struct json_t *details,
                            const char *fmt, ...) O11Y_PRINTF(4, 5);
/* The same, with the code as a string (for codes known only at run time, e.g. relayed from
 * another service). An unknown code answers INTERNAL_ERROR and logs an ERROR line naming it, so
 * a typo shows at once; prefer o11y_res_fail, where a typo does not compile. */
O11Y_API void o11y_res_error(o11y_response *res, const char *code, struct json_t *details,
                             const char *fmt, ...) O11Y_PRINTF(4, 5);
/*=== streamed responses (Server-Sent Events and the like) ===*/

typedef struct o11y_stream o11y_stream;

/* Writes up to max bytes of the stream into buf. Returns the count, 0 when nothing is ready (the
 * connection then sleeps, holding no thread, until o11y_stream_wake), or -1 at the end. Runs on
 * a server thread: it must not block. */
typedef long (*o11y_stream_read_fn)(void *ctx, char *buf, size_t max);
/* How a stream ended. */
typedef enum o11y_stream_end {
    O11Y_STREAM_COMPLETED,       /* the reader returned -1 and the client has it all */
    O11Y_STREAM_CLIENT_CLOSED,   /* the client went away */
    O11Y_STREAM_CLIENT_TOO_SLOW, /* more than the server's bound sat unsent to it: closed */
    O11Y_STREAM_CLIENT_STALLED,  /* it took nothing for the connection timeout: closed */
    O11Y_STREAM_SERVER_STOPPING, /* the server is stopping (or never sent the response) */
} o11y_stream_end;

/* Called once, when the stream is over. After it returns, read is never called again. */
typedef void (*o11y_stream_done_fn)(void *ctx, o11y_stream_end end);

/* Answers with a stream of unknown length. Returns a handle the caller owns one reference of
 * (o11y_stream_release), to wake the stream when new data is ready; NULL on ENOMEM (the response
 * is then 500). ctx is kept until done has been called. */
O11Y_API o11y_stream *o11y_res_stream(o11y_response *res, int status, const char *content_type,
                                      o11y_stream_read_fn read, o11y_stream_done_fn done,
                                      void *ctx);
/* Data is ready: the stream's connection calls read again. Thread-safe; a no-op once the stream
 * is over. */
O11Y_API void o11y_stream_wake(o11y_stream *s);
/* Bytes sent once, last, when the server stops while the stream is open (copied; at most 256),
 * before the stream ends cleanly: for Server-Sent Events, "retry: 1000\n\n" tells clients to
 * reconnect (to this or another instance) with Last-Event-ID. Returns O11Y_EINVAL when too long.
 * Call before the stream can be stopped (right after o11y_res_stream). */
O11Y_API o11y_status o11y_stream_set_farewell(o11y_stream *s, const char *text, size_t len);
/* Takes one more reference (for a waker that runs outside the lock that guards its list of
 * streams). */
O11Y_API void o11y_stream_retain(o11y_stream *s);
/* Drops the caller's reference. NULL is a no-op. */
O11Y_API void o11y_stream_release(o11y_stream *s);

/* Records a field-level problem; a response with any becomes 400 VALIDATION_FAILED with
 * details.fields = [{"field","problem"}...], whatever else the handler answered. Copies. */
O11Y_API void o11y_res_field_error(o11y_response *res, const char *field, const char *problem);
/* True when the handler recorded field errors. */
O11Y_API bool o11y_res_has_field_errors(const o11y_response *res);

#ifdef __cplusplus
}
#endif
#endif
