/* o11y/h2o.h — the h2o server adapter (libo11y-h2o; pkg-config o11y-h2o; CMake component h2o):
 * HTTP/1.1, HTTP/2 over TLS (ALPN), h2c with prior knowledge, an event loop per thread, streamed
 * responses without a thread per stream, and the same pipeline as the libmicrohttpd adapter. */
#ifndef O11Y_H2O_H
#define O11Y_H2O_H

#include "o11y/http.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y_h2o_config {
    const char *bind_address;  /* NULL: "127.0.0.1"; an IPv4 or IPv6 literal */
    uint16_t port;             /* 0: any free port (o11y_h2o_port) */
    unsigned threads;          /* event loops, each with its own listening socket; 0: one per CPU */
    const char *tls_cert_file; /* both set: TLS, HTTP/2 and HTTP/1.1 by ALPN; else cleartext */
    const char *tls_key_file;
    unsigned drain_timeout_ms;  /* after stop: in-flight requests this long at most; 0: 10,000 */
    unsigned shutdown_delay_ms; /* o11y_h2o_run: after SIGTERM, serve this long first */
    unsigned io_timeout_s;      /* a connection silent this long is closed; 0: 30 */
    /* Handlers that may block (a database) run on this many threads of their own, and the
     * loop answers when they are done; 0: handlers run on the loop (fastest, for handlers that
     * never block). */
    size_t handler_threads;
    /* The connection guard (o11y/adapter.h), as o11y_mhd_config's: */
    unsigned max_connections;            /* 0: 4096; past it a new connection is closed at once */
    unsigned max_connections_per_client; /* from one address; 0: max_connections / 4 */
    unsigned request_head_timeout_s;     /* the request head (and a TLS handshake) must all
                                            arrive within this; 0: 10 */
    unsigned body_timeout_s;             /* a body within this plus a second per
                                            body_min_bytes_per_s received; 0: 10 */
    unsigned body_min_bytes_per_s;       /* 0: 1024 */
    size_t stream_max_unsent_bytes;      /* a stream whose socket holds more than this that the
                                            client's window has not let through ends as
                                            O11Y_STREAM_CLIENT_TOO_SLOW; 0: 256 KiB. A stream
                                            whose client takes nothing for io_timeout_s ends as
                                            O11Y_STREAM_CLIENT_STALLED (HTTP/1.1) */
    O11Y_RESERVED;                       /* zero: room to grow (common.h) */
} o11y_h2o_config;

typedef struct o11y_h2o_server o11y_h2o_server;

/* The defaults: 127.0.0.1, any free port, a loop per CPU, cleartext, 10 s drain, 30 s I/O, the
 * connection guard's limits as for libmicrohttpd. */
O11Y_API void o11y_h2o_config_init(o11y_h2o_config *cfg);
/* Starts serving svc. Returns O11Y_OK, O11Y_EINVAL (bad address, one TLS file without the
 * other), O11Y_EIO (cannot listen, or the certificate or key cannot be loaded) or O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_h2o_start(o11y_service *svc, const o11y_h2o_config *cfg,
                                                     o11y_h2o_server **out /* OUT */);
/* The port actually bound. */
O11Y_API uint16_t o11y_h2o_port(const o11y_h2o_server *srv);
/* Stops: new connections are refused, open streams send their farewell and end, in-flight
 * requests get drain_timeout_ms, then the loops stop and everything is freed. NULL: nothing. */
O11Y_API void o11y_h2o_stop(o11y_h2o_server *srv);
/* Starts, serves until SIGINT or SIGTERM (SIGHUP reopens the log), then stops; as o11y_mhd_run. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_h2o_run(o11y_service *svc, const o11y_h2o_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
