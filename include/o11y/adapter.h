/* o11y/adapter.h — what a server library's adapter drives: the pipeline's stages for one
 * request, the response they produce, and streamed responses. The libmicrohttpd adapter is
 * built into libo11y; others (libo11y-h2o) are built on this header alone. An application
 * never needs it.
 *
 *     o11y_exchange *ex = o11y_exchange_new(svc, target, target_len);
 *     for each request header line: o11y_exchange_add_header(ex, name, nlen, value, vlen);
 *     o11y_exchange_set_peer(ex, peer_sockaddr);
 *     bool final = o11y_exchange_begin(ex, method, lookup, lookup_ctx);
 *     if (!(final && o11y_exchange_refuses_body(ex)))
 *         for each piece of body: o11y_exchange_body(ex, data, len);
 *     o11y_exchange_run(ex);           (the handler, error rendering, the standard headers)
 *     send o11y_exchange_status/content_type/header_at/body, or its stream;
 *     o11y_exchange_done(ex, bytes_sent, completed);   (access line, metrics; frees ex)
 *
 * One exchange is used by one thread at a time; exchange_new and done on the same thread. */
#ifndef O11Y_ADAPTER_H
#define O11Y_ADAPTER_H

#include "o11y/common.h"
#include "o11y/http.h"
#include "o11y/log.h"
#include "o11y/metrics.h"

#include <stdbool.h>
#include <stddef.h>

struct sockaddr;

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y__exchange o11y_exchange;

/* Looks up a request header by name (case-insensitive): its first value, {NULL, 0} when
 * absent. The adapter's; valid until the exchange is done. */
typedef o11y_str (*o11y_header_lookup_fn)(void *ctx, const char *name);

/* A new exchange for the raw request target (path and query, as received: not decoded).
 * NULL when out of memory. */
O11Y_API o11y_exchange *o11y_exchange_new(o11y_service *svc, const char *target, size_t len);
/* Each request header line, in order, before begin. The bytes are borrowed until done. */
O11Y_API void o11y_exchange_add_header(o11y_exchange *ex, const char *name, size_t name_len,
                                       const char *value, size_t value_len);
/* The peer's address (struct sockaddr of AF_INET or AF_INET6; others are ignored). */
O11Y_API void o11y_exchange_set_peer(o11y_exchange *ex, const void *sockaddr);
/* Stage 1: trace context, size and smuggling checks, routing, rate limits, the idempotency
 * key. True when the answer is already decided (the body is then read and dropped, or, when
 * o11y_exchange_refuses_body, not read and the connection closed). */
O11Y_API bool o11y_exchange_begin(o11y_exchange *ex, const char *method,
                                  o11y_header_lookup_fn lookup, void *lookup_ctx);
/* The answer must go before the body is read, and the connection close after it. */
O11Y_API bool o11y_exchange_refuses_body(const o11y_exchange *ex);
/* The server library refused the request itself (a head it could not take, a body past its own
 * limit): call after begin, instead of body. Unless stage 1 has decided the answer already (the
 * pipeline's own refusal of the same request is the contract's), the answer becomes err, with
 * detail (NULL: err's message) as its message, and the connection closes after it. Then run,
 * as for any request. NULL err means o11y_err_VALIDATION_FAILED. */
O11Y_API void o11y_exchange_refuse(o11y_exchange *ex, const o11y_error_def *err,
                                   const char *detail);
/* Stage 2: a piece of the body. False once it is over the limit (the answer is then 413). */
O11Y_API bool o11y_exchange_body(o11y_exchange *ex, const void *data, size_t len);
/* After begin: the matched route's handler never waits (O11Y_ROUTE_NONBLOCKING) and no
 * idempotency store will be consulted for the request (no key, or a method or route without
 * keys), so an event loop may run stage 3 itself. False when no route matched. */
O11Y_API bool o11y_exchange_nonblocking(const o11y_exchange *ex);
/* Stage 3: the handler (unless the answer is decided), error rendering, standard headers. */
O11Y_API void o11y_exchange_run(o11y_exchange *ex);

/*=== the response, after run ===*/

O11Y_API int o11y_exchange_status(const o11y_exchange *ex);
/* "" when the response has no Content-Type. */
O11Y_API const char *o11y_exchange_content_type(const o11y_exchange *ex);
/* How many response headers there are (the Content-Type aside). */
O11Y_API size_t o11y_exchange_header_count(const o11y_exchange *ex);
/* The response headers in order: *cursor starts at 0, and each call gives the next name and
 * value (lengths given, NUL-terminated too; valid until done); false past the last. */
O11Y_API bool o11y_exchange_header_next(const o11y_exchange *ex, size_t *cursor /* IN/OUT */,
                                        o11y_str *name /* OUT */, o11y_str *value /* OUT */);
/* The body (NULL, 0 for none or a stream). Valid until done. */
O11Y_API const void *o11y_exchange_body_bytes(const o11y_exchange *ex, size_t *len /* OUT */);
/* The connection should close after this response. */
O11Y_API bool o11y_exchange_close_after(const o11y_exchange *ex);
/* The streamed response, or NULL. */
O11Y_API o11y_stream *o11y_exchange_stream(const o11y_exchange *ex);
/* Stage 4, once the response has been sent (or the client went away): the access line and the
 * metrics, and the exchange is freed. A stream must have been ended first
 * (o11y_stream_server_end). */
O11Y_API void o11y_exchange_done(o11y_exchange *ex, uint64_t bytes_sent, bool completed);
/* A request never answered because the server cut it for missing a deadline (the connection
 * guard): its access line and metrics say 408 rather than 499. Before done. */
O11Y_API void o11y_exchange_timed_out(o11y_exchange *ex);

/*=== streamed responses, the server's side ===*/

/* Ties a stream to its connection: suspend(conn) is called (on the reading thread, under the
 * stream's lock) when the reader found nothing to send; resume(conn) is called from any thread
 * when there is something again (or the stream must end), and must make the reader run again
 * on the connection's thread. Once o11y_stream_server_end has returned, no resume is running
 * and none will come: the adapter may free conn. */
O11Y_API void o11y_stream_server_attach(o11y_stream *s, o11y_exchange *ex, void *conn,
                                        void (*suspend)(void *conn), void (*resume)(void *conn));
/* The next bytes to send: > 0 bytes written into buf, 0 nothing now (the stream suspended
 * itself: resume will come), < 0 the stream is over. */
O11Y_API long o11y_stream_server_read(o11y_stream *s, char *buf, size_t max);
/* The connection is over: the stream's owner hears why (once). Returns the bytes the stream
 * sent, for o11y_exchange_done. */
O11Y_API uint64_t o11y_stream_server_end(o11y_stream *s, o11y_stream_end why);

/*=== the connection guard ===
 * Limits and deadlines for a server library that lacks them: past max_connections, or past
 * max_per_client from one address, a new connection is refused at once (never left in the
 * backlog); a request head must arrive within head_timeout_s however it trickles, a body within
 * body_timeout_s plus a second per body_min_bytes_per_s received, and a kept-alive connection
 * may idle idle_timeout_s. A reaper thread shuts down (shutdown(2)) the socket of a connection
 * past its deadline, so the server library sees its input end and closes it as for a client
 * that went away. Counted in http_server_connections_refused_total{reason} and
 * http_server_connections_timed_out_total{phase}; logged at most once in 10 s. */

typedef struct o11y_conn_guard o11y_conn_guard;
typedef struct o11y_guarded_conn o11y_guarded_conn;

typedef struct o11y_conn_guard_config {
    unsigned max_connections;      /* refused past this many open connections */
    unsigned max_per_client;       /* refused past this many from one address */
    unsigned head_timeout_s;       /* a new connection's request head must arrive in this */
    unsigned idle_timeout_s;       /* between requests on a kept-alive connection */
    unsigned body_timeout_s;       /* a body's base allowance ... */
    unsigned body_min_bytes_per_s; /* ... plus one second per this many bytes received */
    O11Y_RESERVED;                 /* zero: room to grow (common.h) */
} o11y_conn_guard_config;

/* Starts the reaper thread. metrics and logger may be NULL. NULL on failure. */
O11Y_API o11y_conn_guard *o11y_conn_guard_start(const o11y_conn_guard_config *cfg,
                                                o11y_metrics *metrics, o11y_logger *logger);
/* Stops the reaper and frees the guard; every connection must have ended. NULL: nothing. */
O11Y_API void o11y_conn_guard_stop(o11y_conn_guard *g);
/* The accept policy: false refuses the peer now (counted; logged at most once in 10 s).
 * Thread-safe. */
O11Y_API bool o11y_conn_guard_admit(o11y_conn_guard *g, const struct sockaddr *peer);
/* A connection began (fd, peer) or ended: its accounting. fd is what the reaper shuts down: it
 * must stay open until end has returned (so its number is never another connection's). begin
 * returns NULL on ENOMEM (the connection is then left unguarded, never refused for it).
 * Thread-safe. */
O11Y_API o11y_guarded_conn *o11y_conn_guard_begin(o11y_conn_guard *g, int fd,
                                                  const struct sockaddr *peer);
O11Y_API void o11y_conn_guard_end(o11y_conn_guard *g, o11y_guarded_conn *c);
/* Phase changes, from the connection's own thread. NULL c is a no-op. */
O11Y_API void o11y_conn_guard_body(o11y_guarded_conn *c);               /* the head is in */
O11Y_API void o11y_conn_guard_received(o11y_guarded_conn *c, size_t n); /* n more body bytes */
O11Y_API void o11y_conn_guard_answering(o11y_guarded_conn *c); /* no deadline while answering */
O11Y_API void o11y_conn_guard_idle(o11y_guarded_conn *c);      /* a request ended: next head */
/* True when the reaper ended this connection's request (the access line's 408). */
O11Y_API bool o11y_conn_guard_timed_out(const o11y_guarded_conn *c);
/* Counts a message of the server library and logs it at most once in 10 s, with the number left
 * out since the last line: one client's aborted connections never flood the log. msg need not
 * be NUL-terminated. Thread-safe. */
O11Y_API void o11y_conn_guard_server_message(o11y_conn_guard *g, const char *msg, size_t len);

/*=== the server's life ===*/

/* How an adapter's o11y_*_run serves until a signal (o11y_service_run_server). */
typedef struct o11y_server_run {
    /* Starts serving (the server's threads inherit the signal mask set before); its status is
     * returned when not O11Y_OK. */
    o11y_status (*start)(void *ctx);
    void (*stop)(void *ctx); /* stops: drains, then frees the server */
    uint16_t (*port)(void *ctx);
    void *ctx;
    const char *server;         /* the service_started line's "server" */
    bool tls;                   /* the service_started line's "tls" */
    unsigned shutdown_delay_ms; /* after SIGTERM, keep serving this long with /health/ready 503 */
    O11Y_RESERVED;              /* zero: room to grow (common.h) */
} o11y_server_run;

/* Call once, from the application's main thread (run and its members must not be NULL):
 * blocks SIGINT, SIGTERM and SIGHUP, starts the server, logs service_started, and serves until
 * SIGINT or SIGTERM (SIGHUP reopens the log file): then /health/ready answers 503, the line
 * service_stopping is logged, the server keeps serving shutdown_delay_ms, stops, and
 * service_stopped is logged. The signal mask is restored. Returns start's status, or O11Y_OK. */
O11Y_API o11y_status o11y_service_run_server(o11y_service *svc, const o11y_server_run *run);

/* Every open stream sends its farewell and ends (a stopping server calls it first). */
O11Y_API void o11y_service_close_streams(o11y_service *svc);
/* Requests begun and not done. */
O11Y_API long o11y_service_active_requests(const o11y_service *svc);
/* The service's request body limit (an adapter's own limit should sit above it, so the
 * pipeline's 413 in the contract's envelope is the one a client sees). */
O11Y_API size_t o11y_service_max_body(const o11y_service *svc);

#ifdef __cplusplus
}
#endif
#endif
