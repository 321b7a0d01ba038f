/* adapters/mhd/mhd.c — libmicrohttpd turned into the pipeline's stages. The only file that
 * includes <microhttpd.h>. Per-request state is the pipeline's exchange, created from the raw
 * request target in the URI log callback and handed back by MHD through req_cls. */
#include "o11y/mhd.h"

#include "http/http_internal.h"
#include "o11y/adapter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What the callbacks need: the service, and for an application's own daemon (o11y_mhd_embed)
 * its handlers for the routes it has not moved yet. */
struct o11y_mhd_embed {
    o11y_service *svc;
    size_t stream_max_unsent_bytes;
    o11y_conn_guard *guard; /* NULL on an application's daemon: its sockets are its own */
    MHD_AccessHandlerCallback fallback;
    void *fallback_cls;
    MHD_RequestCompletedCallback fallback_completed;
    void *fallback_completed_cls;
};

struct o11y_mhd_server {
    struct o11y_mhd_embed binding; /* first: the callbacks' cls */
    struct MHD_Daemon *daemon;
    o11y_service *svc;
    uint16_t port;
    unsigned drain_timeout_ms;
    atomic_bool stopping; /* new connections are closed at accept */
};

void o11y_mhd_config_init(o11y_mhd_config *cfg)
{
    *cfg = (o11y_mhd_config){
        .bind_address = "127.0.0.1",
        .connection_timeout_s = 30,
        .max_connections = 4096,
        .max_connections_per_client = 1024,
        .request_head_timeout_s = 10,
        .body_timeout_s = 10,
        .body_min_bytes_per_s = 1024,
        .drain_timeout_ms = 10000,
        .stream_max_unsent_bytes = 256 * 1024,
    };
}

/*=== MARK: callbacks ===*/

static o11y_guarded_conn *guarded(const o11y_mhd_embed *b, struct MHD_Connection *conn)
{
    if (!b->guard)
        return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    o11y_mhd_server *srv = cls;
    if (atomic_load_explicit(&srv->stopping, memory_order_relaxed))
        return MHD_NO;
    return o11y_conn_guard_admit(srv->binding.guard, addr) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    o11y_mhd_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *peer =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        *socket_context = fd ? o11y_conn_guard_begin(srv->binding.guard, fd->connect_fd,
                                                     peer ? peer->client_addr : NULL)
                             : NULL;
    } else {
        o11y_conn_guard_end(srv->binding.guard, *socket_context);
        *socket_context = NULL;
    }
}

static void *on_request_start(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)conn;
    o11y_mhd_embed *b = cls;
    /* The raw target, before MHD unescapes it in place: %00 and %2F stay visible to routing. */
    return o11y__exchange_new(b->svc, uri, strlen(uri));
}

static o11y_str get_header(void *ctx, const char *name)
{
    const char *v = NULL;
    size_t len = 0;
    if (MHD_lookup_connection_value_n(ctx, MHD_HEADER_KIND, name, strlen(name), &v, &len) ==
            MHD_YES &&
        v)
        return (o11y_str){v, len};
    return (o11y_str){NULL, 0};
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_len, const char *value, size_t value_len)
{
    (void)kind;
    o11y__std_headers_add(cls, key, key_len, value ? value : "", value ? value_len : 0);
    return MHD_YES;
}

static void free_body(void *p)
{
    o11y__free(p);
}

static void suspend_conn(void *conn)
{
    MHD_suspend_connection(conn);
}

static void resume_conn(void *conn)
{
    MHD_resume_connection(conn);
}

/* The per-connection bound on a slow client: bytes the kernel holds for it and has not been
 * able to send (its receive window is full). Sent-but-unacknowledged bytes do not count, so a
 * fast client far away is not mistaken for a slow one. Past the bound the stream ends rather
 * than letting one client pin socket memory. A client that takes nothing at all never lets the
 * reader run again; the connection timeout ends it. */
static bool client_too_slow(const o11y_stream *s)
{
    int unsent = 0;
    return s->max_unsent_bytes && s->fd >= 0 && ioctl(s->fd, SIOCOUTQNSD, &unsent) == 0 &&
           unsent > 0 && (size_t)unsent > s->max_unsent_bytes;
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    o11y_stream *s = cls;
    if (client_too_slow(s)) {
        o11y__stream_set_end(s, O11Y_STREAM_CLIENT_TOO_SLOW);
        return (ssize_t)MHD_CONTENT_READER_END_WITH_ERROR;
    }
    long n = o11y__stream_read(s, buf, max);
    return n < 0 ? (ssize_t)MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static enum MHD_Result respond(const o11y_mhd_embed *b, o11y__exchange *ex,
                               struct MHD_Connection *conn)
{
    o11y_conn_guard_answering(guarded(b, conn)); /* the handler's time is not the client's */
    o11y__pipeline_run(ex);
    o11y_response *res = &ex->res;
    struct MHD_Response *r;
    if (res->stream) {
        /* The stream's reader runs on this connection's thread; with nothing to send it
         * suspends the connection instead of returning 0 in a loop. */
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, res->stream,
                                              NULL);
        if (r) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            res->stream->fd = ci ? ci->connect_fd : -1;
            res->stream->max_unsent_bytes = b->stream_max_unsent_bytes;
            o11y__stream_attach(res->stream, ex->req.svc, conn, suspend_conn, resume_conn);
        }
    } else if (res->body_len && res->body == res->body_room) { /* the exchange's: MHD copies */
        r = MHD_create_response_from_buffer(res->body_len, res->body, MHD_RESPMEM_MUST_COPY);
    } else if (res->body_len) {
        r = MHD_create_response_from_buffer_with_free_callback(res->body_len, res->body, free_body);
        if (r)
            res->body = NULL; /* MHD owns it now */
    } else {
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        return MHD_NO;
    if (res->content_type[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    size_t cursor = 0;
    o11y_str name, value;
    while (o11y__res_header_next(res, &cursor, &name, &value))
        MHD_add_response_header(r, name.ptr, value.ptr);
    ex->responded = true;
    ex->bytes_sent = ex->req.method == O11Y_HEAD ? 0 : res->body_len;
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)res->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A route the application has not moved yet: its own handler answers, with the request's
 * trace context current (its log lines carry the trace id) and the access line and metrics
 * written by the pipeline when the request completes. */
static enum MHD_Result to_fallback(const o11y_mhd_embed *b, o11y__exchange *ex,
                                   struct MHD_Connection *conn, const char *url, const char *method,
                                   const char *version, const char *upload_data,
                                   size_t *upload_data_size)
{
    o11y_trace_ctx *prev = o11y_trace_set_current(&ex->req.trace);
    enum MHD_Result r = b->fallback(b->fallback_cls, conn, url, method, version, upload_data,
                                    upload_data_size, &ex->fallback_cls);
    o11y_trace_set_current(prev);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    const o11y_mhd_embed *b = cls;
    o11y__exchange *ex = *req_cls;
    if (!ex && !b->guard) /* an application's daemon without the URI log callback */
        ex = *req_cls = o11y__exchange_new(b->svc, url, strlen(url));
    if (!ex)
        return MHD_NO; /* out of memory at the start: close the connection */
    if (ex->fallback)
        return to_fallback(b, ex, conn, url, method, version, upload_data, upload_data_size);
    if (!ex->started) {
        ex->started = true;
        o11y__std_headers std = {.content_length = -1};
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_header, &std);
        const union MHD_ConnectionInfo *peer =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (peer && peer->client_addr)
            o11y__req_set_peer(&ex->req, peer->client_addr);
        o11y_conn_guard_body(guarded(b, conn));
        /* A body over the limit or of ambiguous length is refused before it is read (no 100
         * Continue is sent; MHD then closes the connection). Other early answers wait for the
         * end of the request, so the connection stays usable; their bodies are discarded. */
        bool final = o11y__pipeline_begin(ex, method, &std, get_header, conn);
        if (final && !ex->req.route && b->fallback && !ex->req.answer_now) {
            ex->fallback = true;
            ex->res.answered = false;
            return to_fallback(b, ex, conn, url, method, version, upload_data, upload_data_size);
        }
        if (final && ex->req.answer_now)
            return respond(b, ex, conn);
        return MHD_YES;
    }
    if (*upload_data_size) {
        o11y_conn_guard_received(guarded(b, conn), *upload_data_size);
        o11y__pipeline_body(ex, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ex->responded)
        return MHD_YES;
    return respond(b, ex, conn);
}

static void on_request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
                            enum MHD_RequestTerminationCode toe)
{
    const o11y_mhd_embed *b = cls;
    o11y__exchange *ex = *req_cls;
    o11y_guarded_conn *gc = guarded(b, conn);
    o11y_conn_guard_idle(gc);
    if (!ex)
        return;
    bool completed = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (ex->fallback) {
        /* The application's response: its status from the server library. */
        const union MHD_ConnectionInfo *st =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        ex->res.status = st && st->http_status ? (int)st->http_status : 499;
        if (b->fallback_completed)
            b->fallback_completed(b->fallback_completed_cls, conn, &ex->fallback_cls, toe);
    } else if (!ex->responded && !ex->res.stream) {
        /* Never answered: 408 when the guard cut a request that missed its deadline, else 499
         * (the client went away), so no series or access line says status 0. */
        ex->res.status = o11y_conn_guard_timed_out(gc) ? 408 : 499;
    }
    if (ex->res.stream && ex->res.stream->conn) {
        ex->bytes_sent = ex->res.stream->bytes;
        o11y__stream_finish(ex->res.stream, completed ? O11Y_STREAM_COMPLETED
                                            : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED
                                                ? O11Y_STREAM_CLIENT_STALLED
                                            : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN
                                                ? O11Y_STREAM_SERVER_STOPPING
                                                : O11Y_STREAM_CLIENT_CLOSED);
        ex->res.stream = NULL;
    }
    o11y__pipeline_done(ex, ex->bytes_sent, completed);
    o11y__exchange_free(ex);
    *req_cls = NULL;
}

/*=== MARK: an application's own daemon ===*/

o11y_status o11y_mhd_embed_create(o11y_service *svc, const o11y_mhd_embed_config *cfg,
                                  o11y_mhd_embed **out)
{
    if (!svc || !out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_mhd_embed *b = o11y__calloc(1, sizeof *b);
    if (!b)
        return O11Y_ENOMEM;
    b->svc = svc;
    b->stream_max_unsent_bytes = 256 * 1024;
    if (cfg) {
        b->fallback = cfg->fallback;
        b->fallback_cls = cfg->fallback_cls;
        b->fallback_completed = cfg->fallback_completed;
        b->fallback_completed_cls = cfg->fallback_completed_cls;
        if (cfg->stream_max_unsent_bytes)
            b->stream_max_unsent_bytes = cfg->stream_max_unsent_bytes;
    }
    *out = b;
    return O11Y_OK;
}

void o11y_mhd_embed_destroy(o11y_mhd_embed *e)
{
    o11y__free(e);
}

enum MHD_Result o11y_mhd_embed_access(void *embed, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    return on_request(embed, conn, url, method, version, upload_data, upload_data_size, req_cls);
}

void o11y_mhd_embed_completed(void *embed, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    on_request_done(embed, conn, req_cls, toe);
}

void *o11y_mhd_embed_uri_log(void *embed, const char *uri, struct MHD_Connection *conn)
{
    return on_request_start(embed, uri, conn);
}

O11Y_PRINTF(2, 0) static void on_mhd_message(void *cls, const char *fmt, va_list ap)
{
    o11y_mhd_server *srv = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        msg[--len] = '\0';
    if (srv->binding.guard)
        o11y_conn_guard_server_message(srv->binding.guard, msg, len);
}

/*=== MARK: lifecycle ===*/

static o11y_status parse_address(const char *addr, uint16_t port, struct sockaddr_storage *ss,
                                 bool *ipv6)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *ipv6 = false;
        return O11Y_OK;
    }
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *ipv6 = true;
        return O11Y_OK;
    }
    return O11Y_EINVAL;
}

o11y_status o11y_mhd_start(o11y_service *svc, const o11y_mhd_config *cfg_in, o11y_mhd_server **out)
{
    if (!svc || !out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_mhd_config cfg;
    o11y_mhd_config_init(&cfg);
    if (cfg_in) {
        if (cfg_in->bind_address)
            cfg.bind_address = cfg_in->bind_address;
        cfg.port = cfg_in->port;
        cfg.threads = cfg_in->threads;
        if (cfg_in->connection_timeout_s)
            cfg.connection_timeout_s = cfg_in->connection_timeout_s;
        if (cfg_in->max_connections)
            cfg.max_connections = cfg.max_connections_per_client = cfg_in->max_connections;
        if (cfg_in->max_connections_per_client)
            cfg.max_connections_per_client = cfg_in->max_connections_per_client;
        else if (cfg_in->max_connections)
            cfg.max_connections_per_client = cfg.max_connections / 4 ? cfg.max_connections / 4 : 1;
        if (cfg_in->request_head_timeout_s)
            cfg.request_head_timeout_s = cfg_in->request_head_timeout_s;
        if (cfg_in->body_timeout_s)
            cfg.body_timeout_s = cfg_in->body_timeout_s;
        if (cfg_in->body_min_bytes_per_s)
            cfg.body_min_bytes_per_s = cfg_in->body_min_bytes_per_s;
        if (cfg_in->drain_timeout_ms)
            cfg.drain_timeout_ms = cfg_in->drain_timeout_ms;
        if (cfg_in->stream_max_unsent_bytes)
            cfg.stream_max_unsent_bytes = cfg_in->stream_max_unsent_bytes;
    }
    if (!cfg.threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.threads = n > 0 && n < 256 ? (unsigned)n : 2;
    }
    struct sockaddr_storage ss;
    bool ipv6;
    if (parse_address(cfg.bind_address, cfg.port, &ss, &ipv6) != O11Y_OK)
        return O11Y_EINVAL;
    o11y_mhd_server *srv = o11y__calloc(1, sizeof *srv);
    if (!srv)
        return O11Y_ENOMEM;
    srv->svc = svc;
    o11y_conn_guard_config gcfg = {
        .max_connections = cfg.max_connections,
        .max_per_client = cfg.max_connections_per_client,
        .head_timeout_s = cfg.request_head_timeout_s,
        .idle_timeout_s = cfg.connection_timeout_s,
        .body_timeout_s = cfg.body_timeout_s,
        .body_min_bytes_per_s = cfg.body_min_bytes_per_s,
    };
    srv->binding.svc = svc;
    srv->binding.stream_max_unsent_bytes = cfg.stream_max_unsent_bytes;
    srv->binding.guard = o11y_conn_guard_start(&gcfg, svc->metrics, svc->logger);
    if (!srv->binding.guard) {
        o11y__free(srv);
        return O11Y_ENOMEM;
    }
    srv->drain_timeout_ms = cfg.drain_timeout_ms;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO | (ipv6 ? MHD_USE_IPv6 : 0);
    /* The guard refuses past max_connections; the server library's own limit sits well above
     * it, since at its limit it stops accepting and clients hang in the backlog. */
    srv->daemon = MHD_start_daemon(
        flags, cfg.port, on_accept, srv, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_message, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, cfg.threads, MHD_OPTION_URI_LOG_CALLBACK, on_request_start,
        srv, MHD_OPTION_NOTIFY_COMPLETED, on_request_done, srv, MHD_OPTION_CONNECTION_TIMEOUT,
        cfg.connection_timeout_s, MHD_OPTION_CONNECTION_LIMIT, 2 * cfg.max_connections + 64,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        o11y_conn_guard_stop(srv->binding.guard);
        o11y__free(srv);
        return O11Y_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : cfg.port;
    *out = srv;
    return O11Y_OK;
}

uint16_t o11y_mhd_port(const o11y_mhd_server *srv)
{
    return srv ? srv->port : 0;
}

void o11y_mhd_stop(o11y_mhd_server *srv)
{
    if (!srv)
        return;
    /* New connections are refused from here on. The listening socket is closed by putting an
     * idle socket on its descriptor (dup2): the kernel then closes the listening socket (a
     * client's SYN gets a reset) and drops it from every worker's epoll set, while the daemon
     * keeps a valid descriptor to close at the end. A connection that raced into the accept
     * queue is closed at accept. Not MHD_quiesce_daemon: in libmicrohttpd 0.9.75 with a thread
     * pool on epoll, quiesce and a worker both remove the listening socket from the worker's
     * epoll set and the loser's failure is a panic (abort), which CI met once in a few hundred
     * stops; nor shutdown(2) alone, which leaves the socket readable in the epoll sets and a
     * worker spinning on accept for the whole drain. */
    atomic_store(&srv->stopping, true);
    const union MHD_DaemonInfo *lfd = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    int idle = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd && lfd->listen_fd != MHD_INVALID_SOCKET && idle >= 0)
        dup2(idle, lfd->listen_fd);
    if (idle >= 0)
        close(idle);
    o11y__streams_close_all(srv->svc); /* streams end; suspended connections wake to see it */
    int64_t deadline = o11y__now_mono_ns() + (int64_t)srv->drain_timeout_ms * 1000000;
    while (atomic_load(&srv->svc->active_requests) > 0 && o11y__now_mono_ns() < deadline) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(srv->daemon);
    o11y_conn_guard_stop(srv->binding.guard); /* every connection has been closed */
    o11y__free(srv);
}

typedef struct mhd_run {
    o11y_service *svc;
    const o11y_mhd_config *cfg;
    o11y_mhd_server *srv;
} mhd_run;

static o11y_status mhd_run_start(void *ctx)
{
    mhd_run *r = ctx;
    return o11y_mhd_start(r->svc, r->cfg, &r->srv);
}

static void mhd_run_stop(void *ctx)
{
    o11y_mhd_stop(((mhd_run *)ctx)->srv);
}

static uint16_t mhd_run_port(void *ctx)
{
    return ((mhd_run *)ctx)->srv->port;
}

o11y_status o11y_mhd_run(o11y_service *svc, const o11y_mhd_config *cfg)
{
    mhd_run r = {svc, cfg, NULL};
    o11y_server_run run = {.start = mhd_run_start,
                           .stop = mhd_run_stop,
                           .port = mhd_run_port,
                           .ctx = &r,
                           .server = "libmicrohttpd",
                           .shutdown_delay_ms = cfg ? cfg->shutdown_delay_ms : 0};
    return o11y_service_run_server(svc, &run);
}
