/* http/adapter.c — o11y/adapter.h: the pipeline's stages for adapters outside libo11y, as thin
 * calls into the internal ones the libmicrohttpd adapter uses. */
#include "o11y/adapter.h"

#include "http/http_internal.h"
#include "o11y/error.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

o11y_exchange *o11y_exchange_new(o11y_service *svc, const char *target, size_t len)
{
    return svc && target ? o11y__exchange_new(svc, target, len) : NULL;
}

void o11y_exchange_add_header(o11y_exchange *ex, const char *name, size_t name_len,
                              const char *value, size_t value_len)
{
    o11y__std_headers_add(&ex->std, name, name_len, value ? value : "", value ? value_len : 0);
}

void o11y_exchange_set_peer(o11y_exchange *ex, const void *sockaddr)
{
    if (sockaddr)
        o11y__req_set_peer(&ex->req, sockaddr);
}

bool o11y_exchange_begin(o11y_exchange *ex, const char *method, o11y_header_lookup_fn lookup,
                         void *lookup_ctx)
{
    ex->started = true;
    return o11y__pipeline_begin(ex, method, &ex->std, lookup, lookup_ctx);
}

bool o11y_exchange_refuses_body(const o11y_exchange *ex)
{
    return ex->req.answer_now;
}

void o11y_exchange_refuse(o11y_exchange *ex, const o11y_error_def *err, const char *detail)
{
    ex->req.answer_now = ex->res.close = true;
    if (ex->res.answered)
        return;
    if (!err)
        err = &o11y_err_VALIDATION_FAILED;
    if (detail)
        o11y_res_fail(&ex->res, err, NULL, "%s", detail);
    else
        o11y_res_fail(&ex->res, err, NULL, NULL);
}

bool o11y_exchange_body(o11y_exchange *ex, const void *data, size_t len)
{
    return o11y__pipeline_body(ex, data, len);
}

bool o11y_exchange_nonblocking(const o11y_exchange *ex)
{
    const o11y_request *req = &ex->req;
    if (!req->route || req->method_index < 0)
        return false;
    unsigned flags = req->route->flags[req->method_index];
    bool keyed = req->svc->idem.store && (req->method & (O11Y_POST | O11Y_PUT | O11Y_PATCH)) &&
                 !(flags & O11Y_ROUTE_NO_IDEMPOTENCY) && ex->std.idempotency_keys > 0;
    return (flags & O11Y_ROUTE_NONBLOCKING) && !keyed;
}

void o11y_exchange_run(o11y_exchange *ex)
{
    o11y__pipeline_run(ex);
    ex->responded = true;
}

int o11y_exchange_status(const o11y_exchange *ex)
{
    return ex->res.status;
}

const char *o11y_exchange_content_type(const o11y_exchange *ex)
{
    return ex->res.content_type;
}

size_t o11y_exchange_header_count(const o11y_exchange *ex)
{
    return ex->res.n_headers;
}

bool o11y_exchange_header_next(const o11y_exchange *ex, size_t *cursor, o11y_str *name,
                               o11y_str *value)
{
    return o11y__res_header_next(&ex->res, cursor, name, value);
}

const void *o11y_exchange_body_bytes(const o11y_exchange *ex, size_t *len)
{
    *len = ex->res.stream ? 0 : ex->res.body_len;
    return *len ? ex->res.body : NULL;
}

bool o11y_exchange_close_after(const o11y_exchange *ex)
{
    return ex->res.close;
}

o11y_stream *o11y_exchange_stream(const o11y_exchange *ex)
{
    return ex->res.stream;
}

void o11y_exchange_done(o11y_exchange *ex, uint64_t bytes_sent, bool completed)
{
    if (!ex)
        return;
    if (!ex->responded)
        ex->res.status = ex->timed_out ? 408 : 499; /* cut, or the client went away */
    ex->res.stream = NULL; /* ended by the adapter (o11y_stream_server_end) */
    o11y__pipeline_done(ex, bytes_sent, completed);
    o11y__exchange_free(ex);
}

void o11y_exchange_timed_out(o11y_exchange *ex)
{
    ex->timed_out = true;
}

void o11y_stream_server_attach(o11y_stream *s, o11y_exchange *ex, void *conn,
                               void (*suspend)(void *conn), void (*resume)(void *conn))
{
    s->fd = -1;
    s->sync_end = true;
    o11y__stream_attach(s, ex->req.svc, conn, suspend, resume);
}

long o11y_stream_server_read(o11y_stream *s, char *buf, size_t max)
{
    return o11y__stream_read(s, buf, max);
}

uint64_t o11y_stream_server_end(o11y_stream *s, o11y_stream_end why)
{
    uint64_t bytes = s->bytes;
    o11y__stream_finish(s, why);
    return bytes;
}

o11y_status o11y_service_run_server(o11y_service *svc, const o11y_server_run *run)
{
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    o11y_status st = run->start(run->ctx);
    if (st != O11Y_OK) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return st;
    }
    o11y_log_va(svc->logger, O11Y_LOG_INFO, "service_started", "service started",
                O11Y_STR("version", svc->version), O11Y_STR("server", run->server),
                O11Y_INT("port", run->port(run->ctx)), O11Y_BOOL("tls", run->tls), O11Y__END);
    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            o11y_logger_reopen(svc->logger);
            continue;
        }
        o11y_health_shutting_down(svc->health);
        unsigned delay = run->shutdown_delay_ms;
        o11y_log_va(svc->logger, O11Y_LOG_INFO, "service_stopping", "service stopping",
                    O11Y_STR("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"),
                    O11Y_INT("shutdown_delay_ms", delay), O11Y__END);
        if (delay) { /* still serving: probes see the 503 and traffic drains away */
            struct timespec ts = {(time_t)(delay / 1000), (long)(delay % 1000) * 1000000};
            while (nanosleep(&ts, &ts) != 0)
                ;
        }
        break;
    }
    run->stop(run->ctx);
    o11y_log_va(svc->logger, O11Y_LOG_INFO, "service_stopped", "service stopped", O11Y__END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return O11Y_OK;
}

void o11y_service_close_streams(o11y_service *svc)
{
    o11y__streams_close_all(svc);
}

long o11y_service_active_requests(const o11y_service *svc)
{
    return atomic_load(&((o11y_service *)svc)->active_requests);
}

size_t o11y_service_max_body(const o11y_service *svc)
{
    return svc->max_body;
}
