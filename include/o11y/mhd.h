/* o11y/mhd.h — serving an o11y_service with libmicrohttpd (>= 0.9.71). */
#ifndef O11Y_MHD_H
#define O11Y_MHD_H

#include "o11y/common.h"
#include "o11y/http.h"

#include <microhttpd.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y_mhd_server o11y_mhd_server;

/* All-zero is a valid config: zero means default. */
typedef struct o11y_mhd_config {
    const char *bind_address;            /* NULL: "127.0.0.1"; IPv4 or IPv6 literal */
    uint16_t port;                       /* 0: any free port (see o11y_mhd_port) */
    unsigned threads;                    /* 0: one per CPU */
    unsigned connection_timeout_s;       /* idle or trickling connections are closed; 0: 30. A
                                            stream whose client takes nothing this long ends as
                                            O11Y_STREAM_CLIENT_STALLED */
    size_t stream_max_unsent_bytes;      /* a stream whose socket holds more than this that the
                                            client's receive window has not let through is closed
                                            as O11Y_STREAM_CLIENT_TOO_SLOW; 0: 256 KiB */
    unsigned max_connections;            /* 0: 4096; past it a new connection is refused (closed at
                                            once), never left waiting in the listen backlog */
    unsigned max_connections_per_client; /* from one address; 0: max_connections / 4 */
    unsigned request_head_timeout_s;     /* a new connection's request line and headers must all
                                            arrive within this, however they trickle; 0: 10 */
    unsigned body_timeout_s;             /* a body must arrive within this plus one second per
                                            body_min_bytes_per_s received; 0: 10 */
    unsigned body_min_bytes_per_s;       /* 0: 1024 */
    unsigned drain_timeout_ms;           /* how long o11y_mhd_stop waits for in-flight requests;
                                            0: 10000 */
    unsigned shutdown_delay_ms;          /* o11y_mhd_run: after SIGTERM, keep serving this long with
                                            /health/ready at 503, so load balancers stop sending
                                            traffic before the listener closes; 0: none */
    O11Y_RESERVED;                       /* zero: room to grow (common.h) */
} o11y_mhd_config;

/* Fills cfg with the defaults. Must not be NULL. Thread-safe: yes. */
O11Y_API void o11y_mhd_config_init(o11y_mhd_config *cfg);

/* Starts serving svc (keeps a pointer: svc must outlive the server). Returns O11Y_OK,
 * O11Y_EINVAL (bad address), O11Y_EIO (cannot listen, e.g. the port is taken) or O11Y_ENOMEM;
 * on error *out is NULL. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_mhd_start(o11y_service *svc, const o11y_mhd_config *cfg,
                                                     o11y_mhd_server **out /* OUT */);
/* The port actually bound. */
O11Y_API uint16_t o11y_mhd_port(const o11y_mhd_server *srv);
/* Stops accepting, lets in-flight requests finish (up to drain_timeout_ms), closes every
 * connection and frees the server. NULL is a no-op. */
O11Y_API void o11y_mhd_stop(o11y_mhd_server *srv);

/* Starts the server and serves until SIGINT or SIGTERM; SIGHUP reopens the log file. On the
 * signal, readiness turns 503 at once; after shutdown_delay_ms the server stops as o11y_mhd_stop
 * does, and the call returns O11Y_OK (or the start error). Blocks those three signals in
 * the calling thread (and so in every thread it starts) and handles them with sigwait. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_mhd_run(o11y_service *svc, const o11y_mhd_config *cfg);

/*=== adopting the library in an existing libmicrohttpd application ===*/

/* The application keeps its own MHD_start_daemon and hands it the library's callbacks; routes
 * registered on the service go through the pipeline, every other request reaches the
 * application's own handler, as before:
 *
 *     o11y_mhd_embed_config ec = {.fallback = old_handler, .fallback_cls = old_cls,
 *                                 .fallback_completed = old_done, .fallback_completed_cls = ...};
 *     o11y_mhd_embed *e;
 *     o11y_mhd_embed_create(svc, &ec, &e);
 *     MHD_start_daemon(flags | MHD_ALLOW_SUSPEND_RESUME, port, NULL, NULL,
 *                      o11y_mhd_embed_access, e,
 *                      MHD_OPTION_NOTIFY_COMPLETED, o11y_mhd_embed_completed, e,
 *                      MHD_OPTION_URI_LOG_CALLBACK, o11y_mhd_embed_uri_log, e, ...);
 *
 * Requests to the application's routes get the trace context (its o11y log calls carry the
 * trace id), an access line and the metrics (route "unmatched", the status it answered), but
 * their responses are the application's: no trace headers or envelope are added to them. The
 * URI log callback gives routing the raw target (%2F stays a byte of a segment); without it the
 * target libmicrohttpd has already unescaped is used. Streams need MHD_ALLOW_SUSPEND_RESUME. The
 * connection guard of o11y_mhd_start is not there: the daemon's limits are the application's. */
typedef struct o11y_mhd_embed o11y_mhd_embed;

typedef struct o11y_mhd_embed_config {
    MHD_AccessHandlerCallback fallback; /* the application's handler; NULL: 404 from the pipeline */
    void *fallback_cls;
    MHD_RequestCompletedCallback fallback_completed; /* NULL: none */
    void *fallback_completed_cls;
    size_t stream_max_unsent_bytes; /* 0: 256 KiB */
    O11Y_RESERVED;                  /* zero: room to grow (common.h) */
} o11y_mhd_embed_config;

/* cfg may be NULL (no fallback). Keeps svc (it must outlive e). Returns O11Y_OK, O11Y_EINVAL or
 * O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_mhd_embed_create(o11y_service *svc,
                                                            const o11y_mhd_embed_config *cfg,
                                                            o11y_mhd_embed **out /* OUT */);
/* After MHD_stop_daemon. NULL is a no-op. */
O11Y_API void o11y_mhd_embed_destroy(o11y_mhd_embed *e);
/* The three callbacks, with e as their cls. */
O11Y_API enum MHD_Result o11y_mhd_embed_access(void *e, struct MHD_Connection *conn,
                                               const char *url, const char *method,
                                               const char *version, const char *upload_data,
                                               size_t *upload_data_size, void **req_cls);
O11Y_API void o11y_mhd_embed_completed(void *e, struct MHD_Connection *conn, void **req_cls,
                                       enum MHD_RequestTerminationCode toe);
O11Y_API void *o11y_mhd_embed_uri_log(void *e, const char *uri, struct MHD_Connection *conn);

#ifdef __cplusplus
}
#endif
#endif
