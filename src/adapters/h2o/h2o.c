/* adapters/h2o/h2o.c — h2o (libh2o-evloop) driving the pipeline through o11y/adapter.h: the only
 * file that includes h2o's headers. An event loop per thread, each with a listening socket of its
 * own on the same port (SO_REUSEPORT: the kernel spreads connections, no accept lock);
 * HTTP/1.1, HTTP/2 over TLS chosen by ALPN, h2c with prior knowledge. A streamed response is an
 * h2o generator: it sends what the stream has, and when the stream has nothing it simply waits;
 * the stream's wake (from any thread) reaches the loop as an h2o_multithread message. */
#define H2O_USE_LIBUV 0
#define H2O_USE_EPOLL 1
#include "o11y/h2o.h"

#include "adapters/h2o/head.h"
#include "o11y/adapter.h"
#include "o11y/error.h"
#include "o11y/health.h"
#include "o11y/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <h2o/multithread.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MSG_WAKE, MSG_CLOSE_LISTENER, MSG_EXIT, MSG_RESPOND };

typedef struct loop_msg {
    h2o_multithread_message_t super; /* first: what the queue links */
    int kind;
} loop_msg;

struct conn_state;

typedef struct loop_thread {
    o11y_h2o_server *srv;
    struct conn_state *conns;     /* this loop's guarded connections, for the tick */
    struct stream_state *streams; /* this loop's open streams, for the tick */
    h2o_timeout_t tick;
    h2o_timeout_entry_t tick_entry;
    pthread_t thread;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept;
    int listen_fd;
    h2o_socket_t *listener; /* NULL once closed */
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;
    loop_msg close_msg, exit_msg;
    bool exit;
    bool idle;        /* no connection left when the loop ended: the context can be disposed of */
    atomic_bool busy; /* stopping: a connection is still receiving a request or saying goodbye */
    struct request_state *spare_states; /* finished, for the loop's next requests */
    size_t n_spare_states;
} loop_thread;

typedef struct route_handler {
    h2o_handler_t super;
    o11y_h2o_server *srv;
} route_handler;

struct o11y_h2o_server {
    o11y_service *svc;
    o11y_conn_guard *guard;
    size_t stream_max_unsent_bytes;
    uint64_t stall_ms; /* a chunk not taken by the client in this long ends its stream */
    h2o_globalconf_t config;
    SSL_CTX *ssl;
    loop_thread *loops;
    unsigned n_loops;
    uint16_t port;
    unsigned drain_timeout_ms;
    atomic_uint listeners_closed;
    pthread_mutex_t ready_lock;
    pthread_cond_t ready_cond;
    unsigned loops_ready;
    /* Handlers may block (a database): with handler_threads they run on this pool, and the
     * loop answers when they are done. */
    pthread_t *workers;
    unsigned n_workers;
    pthread_mutex_t jobs_lock;
    pthread_cond_t jobs_cond;
    struct request_state *jobs_head, *jobs_tail;
    bool workers_stop;
};

/* A connection, as the guard sees it. Loop-owned; freed when both the socket and the last
 * request that points at it are gone (refs). */
typedef enum conn_phase { PHASE_HEAD, PHASE_BODY, PHASE_ANSWER, PHASE_H2 } conn_phase;

typedef struct conn_state {
    struct conn_state *next, *prev;
    loop_thread *lt;
    h2o_socket_t *sock; /* NULL once closed */
    int guard_fd;       /* a duplicate of the socket, what the reaper shuts down: its number
                           stays this connection's until the guard has let go of it */
    o11y_guarded_conn *gc;
    conn_phase phase;
    unsigned refs;        /* the socket, and each request pointing here */
    size_t body_reported; /* body bytes told to the guard */
    char *head;           /* in PHASE_BODY: the head, for the 408's access line (or NULL) */
    size_t head_len;
    struct sockaddr_storage peer;
} conn_state;

/* A request's state beyond its exchange: freed with the request's memory pool, when the access
 * line is written. */
typedef struct request_state {
    o11y_exchange *ex;
    struct stream_state *stream;
    uint64_t bytes;
    loop_thread *lt;
    conn_state *conn;     /* NULL: not guarded */
    h2o_req_t *req;       /* NULL once h2o has let go of the request */
    bool in_worker;       /* a worker runs the handler: the loop must not answer or free */
    bool abandoned;       /* h2o let go of the request while the handler ran */
    loop_msg respond_msg; /* MSG_RESPOND: the worker is done */
    struct request_state *next_job;
    /* The request's headers, copied: the exchange and its handler read these, never h2o's
     * memory, which h2o may free when the client goes away. */
    o11y_str *names, *values; /* in the same allocation, behind the state */
    size_t n_headers;
    char *framing; /* the framing lines h2o kept to itself (own_answer_setup) */
    size_t framing_used;
    bool spare_size;                  /* allocated with HEADER_ROOM: may be kept for reuse */
    struct request_state *next_spare; /* in lt->spare_states */
} request_state;

/* A request state and its copy of the headers are one allocation. Those whose headers fit in
 * HEADER_ROOM (nearly all) are kept by their loop for its next requests, up to SPARE_STATES:
 * malloc and free were 300 instructions a request (callgrind). */
enum { HEADER_ROOM = 2048, SPARE_STATES = 64 };

/* What the request's memory pool holds: the state lives longer than the pool when a worker is
 * still running the handler. */
typedef struct request_ref {
    request_state *rs;
} request_ref;

/* A streamed response. Its memory is the adapter's (not the request's pool): a wake may be
 * queued when the request ends, and the loop frees it when the message has been seen. */
typedef struct stream_state {
    h2o_generator_t gen; /* first: h2o hands it back */
    loop_msg wake;       /* kind MSG_WAKE */
    atomic_bool queued;  /* wake is in the loop's queue */
    loop_thread *lt;
    struct stream_state *next, *prev; /* the loop's open streams, for the tick */
    struct conn_state *conn;          /* NULL: unguarded */
    h2o_req_t *req;                   /* NULL once the request is over */
    o11y_stream *s;
    uint64_t bytes;
    uint64_t sent_at_ms; /* when the chunk in flight was handed to h2o */
    bool sending, over, gone;
    bool too_slow, stalled; /* ended by the adapter: the client's fault */
    char buf[8192];
} stream_state;

void o11y_h2o_config_init(o11y_h2o_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind_address = "127.0.0.1";
    cfg->drain_timeout_ms = 10000;
    cfg->io_timeout_s = 30;
}

/*=== requests ===*/

static o11y_str lookup(void *ctx, const char *name)
{
    const request_state *rs = ctx;
    size_t n = strlen(name);
    for (size_t i = 0; i < rs->n_headers; i++)
        if (rs->names[i].len == n && strncasecmp(rs->names[i].ptr, name, n) == 0)
            return rs->values[i];
    return (o11y_str){NULL, 0};
}

static void conn_release(conn_state *cs)
{
    if (cs && --cs->refs == 0) {
        free(cs->head);
        free(cs);
    }
}

/* On the loop's thread: the spare list is the loop's. */
static void free_request_state(request_state *rs)
{
    conn_release(rs->conn);
    free(rs->framing);
    loop_thread *lt = rs->lt;
    if (rs->spare_size && lt && lt->n_spare_states < SPARE_STATES) {
        rs->next_spare = lt->spare_states;
        lt->spare_states = rs;
        lt->n_spare_states++;
        return;
    }
    free(rs);
}

static void free_spare_states(loop_thread *lt)
{
    while (lt->spare_states) {
        request_state *rs = lt->spare_states;
        lt->spare_states = rs->next_spare;
        free(rs);
    }
    lt->n_spare_states = 0;
}

static void free_stream(stream_state *st)
{
    free(st);
}

static void unlink_stream(stream_state *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else if (st->lt->streams == st)
        st->lt->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->next = st->prev = NULL;
}

/* The request's pool is being cleared: the request is over. */
static void on_request_over(void *p)
{
    request_state *rs = ((request_ref *)p)->rs;
    if (!rs)
        return; /* the request was refused before it had a state */
    rs->req = NULL;
    conn_state *cs = rs->conn;
    if (cs && cs->sock && cs->phase == PHASE_ANSWER) {
        cs->phase = PHASE_HEAD; /* the next request's head, within the idle time */
        o11y_conn_guard_idle(cs->gc);
    }
    if (rs->in_worker) {
        rs->abandoned = true; /* the worker's message ends it */
        return;
    }
    bool completed = true;
    if (rs->stream) {
        stream_state *st = rs->stream;
        completed = st->over;
        /* After this returns no wake is in flight or will come (o11y_stream_server_attach). */
        completed = st->over && !st->too_slow;
        rs->bytes = o11y_stream_server_end(st->s, st->too_slow  ? O11Y_STREAM_CLIENT_TOO_SLOW
                                                  : st->stalled ? O11Y_STREAM_CLIENT_STALLED
                                                  : st->over    ? O11Y_STREAM_COMPLETED
                                                  : st->gone    ? O11Y_STREAM_CLIENT_CLOSED
                                                                : O11Y_STREAM_SERVER_STOPPING);
        st->req = NULL;
        unlink_stream(st);
        if (atomic_load(&st->queued))
            st->gone = true; /* the loop frees it when it sees the message */
        else
            free_stream(st);
    }
    o11y_exchange_done(rs->ex, rs->bytes, completed);
    free_request_state(rs);
}

/* The bound on a slow client, as on libmicrohttpd: bytes the kernel holds for the connection and
 * has not been able to send (the client's receive window is full). Sent-but-unacknowledged bytes
 * do not count, so a fast client far away is not mistaken for a slow one. Over HTTP/2 it is the
 * connection's socket: a client that reads none of its streams. */
static bool client_too_slow(const stream_state *st)
{
    int unsent = 0;
    size_t max = st->lt->srv->stream_max_unsent_bytes;
    return st->conn && st->conn->sock && ioctl(st->conn->guard_fd, SIOCOUTQNSD, &unsent) == 0 &&
           unsent > 0 && (size_t)unsent > max;
}

static void pump(stream_state *st)
{
    if (!st->req || st->sending || st->over)
        return;
    if (client_too_slow(st)) {
        st->too_slow = true;
        st->over = true; /* h2o aborts the response: HTTP/1.1 closes, HTTP/2 resets the stream */
        h2o_send(st->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    long n = o11y_stream_server_read(st->s, st->buf, sizeof st->buf);
    if (n > 0) {
        st->sending = true;
        st->sent_at_ms = h2o_now(st->lt->loop);
        h2o_iovec_t v = h2o_iovec_init(st->buf, (size_t)n);
        h2o_send(st->req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
    } else if (n < 0) {
        st->over = true;
        h2o_send(st->req, NULL, 0, H2O_SEND_STATE_FINAL);
    }
    /* n == 0: the stream suspended itself; its wake comes as a message */
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    stream_state *st = (stream_state *)gen;
    st->sending = false;
    pump(st);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    stream_state *st = (stream_state *)gen;
    st->gone = !st->over; /* the client went away (or the connection broke) */
}

static void stream_suspend(void *conn)
{
    (void)conn; /* nothing to do: the generator sends only when the stream has something */
}

/* Any thread: the stream has something again (or must end). */
static void stream_resume(void *conn)
{
    stream_state *st = conn;
    if (!atomic_exchange(&st->queued, true))
        h2o_multithread_send_message(&st->lt->receiver, &st->wake.super);
}

/* The exchange's status and headers into h2o's response. */
static void set_response_head(h2o_req_t *req, o11y_exchange *ex)
{
    int status = o11y_exchange_status(ex);
    bool h2 = req->version >= 0x200;
    req->res.status = status;
    req->res.reason = o11y_http_status_phrase(status);
    /* The exchange's strings stay valid until it is done, after the response has gone: h2o
     * points at them, no copy (HTTP/2 lowercases names into its pool). */
    /* One reservation and one allocation for all the names, rather than h2o's per header. */
    size_t count = o11y_exchange_header_count(ex), cursor = 0;
    h2o_vector_reserve(&req->pool, &req->res.headers, req->res.headers.size + count + 1);
    const char *ct = o11y_exchange_content_type(ex);
    if (ct[0]) /* h2o's token for the name, as h2o_add_header would */
        req->res.headers.entries[req->res.headers.size++] =
            (h2o_header_t){&H2O_TOKEN_CONTENT_TYPE->buf, NULL, h2o_iovec_init(ct, strlen(ct))};
    h2o_iovec_t *names = h2o_mem_alloc_pool(&req->pool, (count ? count : 1) * sizeof *names);
    o11y_str name, value;
    while (o11y_exchange_header_next(ex, &cursor, &name, &value)) {
        size_t nlen = name.len;
        if (nlen == 10 && (name.ptr[0] | 0x20) == 'c' && strcasecmp(name.ptr, "Connection") == 0) {
            req->http1_is_persistent = 0; /* HTTP/1.1 closes; HTTP/2 has no such header */
            continue;
        }
        if (h2) { /* HTTP/2 field names are lowercase (RFC 9113 section 8.2.1), and h2o's
                   * tokens (its HPACK static table) are looked up by them */
            char *n = h2o_mem_alloc_pool(&req->pool, nlen);
            for (size_t i = 0; i < nlen; i++)
                n[i] = (char)(name.ptr[i] >= 'A' && name.ptr[i] <= 'Z' ? name.ptr[i] + 32
                                                                       : name.ptr[i]);
            h2o_add_header_by_str(&req->pool, &req->res.headers, n, nlen, 1, NULL, value.ptr,
                                  value.len);
            continue;
        }
        h2o_iovec_t *n = names++;
        *n = h2o_iovec_init(name.ptr, nlen);
        req->res.headers.entries[req->res.headers.size++] =
            (h2o_header_t){n, NULL, h2o_iovec_init(value.ptr, value.len)};
    }
    if (o11y_exchange_close_after(ex))
        req->http1_is_persistent = 0;
}

static void respond(loop_thread *lt, h2o_req_t *req, request_state *rs)
{
    o11y_exchange *ex = rs->ex;
    set_response_head(req, ex);
    o11y_stream *s = o11y_exchange_stream(ex);
    if (s) {
        stream_state *st = calloc(1, sizeof *st);
        if (!st) {
            rs->bytes = o11y_stream_server_end(s, O11Y_STREAM_SERVER_STOPPING);
            h2o_send_error_503(req, "Service Unavailable", "out of memory", 0);
            return;
        }
        st->gen.proceed = on_proceed;
        st->gen.stop = on_stop;
        st->wake.kind = MSG_WAKE;
        st->lt = lt;
        st->req = req;
        st->s = s;
        st->conn = rs->conn;
        st->next = lt->streams;
        if (st->next)
            st->next->prev = st;
        lt->streams = st;
        rs->stream = st;
        o11y_stream_server_attach(s, ex, st, stream_suspend, stream_resume);
        h2o_start_response(req, &st->gen);
        pump(st);
        return;
    }
    size_t len = 0;
    const void *body = o11y_exchange_body_bytes(ex, &len);
    rs->bytes = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")) ? 0 : len;
    req->res.content_length = len; /* a Content-Length, not chunks */
    h2o_send_inline(req, body, len);
}

/* An obs-fold continuation line (RFC 9112 section 5.2) reaches us from h2o's parser as a header
 * without a name: it joins the line before, with a space, as libmicrohttpd does, so the value
 * is checked whole (and a folded X-Trace-Id is refused as invalid, never echoed in part). */
static void join_folded_lines(h2o_req_t *req)
{
    for (size_t i = 1; i < req->headers.size; i++) {
        h2o_header_t *h = &req->headers.entries[i];
        if (h->name->len)
            continue;
        h2o_header_t *prev = NULL;
        for (size_t k = i; k-- > 0 && !prev;)
            if (req->headers.entries[k].name->len)
                prev = &req->headers.entries[k];
        if (!prev)
            continue;
        size_t len = prev->value.len + 1 + h->value.len;
        char *joined = h2o_mem_alloc_pool(&req->pool, len);
        memcpy(joined, prev->value.base, prev->value.len);
        joined[prev->value.len] = ' ';
        memcpy(joined + prev->value.len + 1, h->value.base, h->value.len);
        prev->value = h2o_iovec_init(joined, len);
    }
}

/* A request's state, with its header lines (obs-fold already joined) copied behind it in the
 * same allocation. */
static request_state *new_request_state(loop_thread *lt, h2o_req_t *req)
{
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < req->headers.size; i++)
        if (req->headers.entries[i].name->len) {
            n++;
            bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
        }
    size_t room = 2 * n * sizeof(o11y_str) + bytes;
    request_state *rs = NULL;
    if (room <= HEADER_ROOM && lt->spare_states) {
        rs = lt->spare_states;
        lt->spare_states = rs->next_spare;
        lt->n_spare_states--;
    } else if (!(rs = malloc(sizeof *rs + (room <= HEADER_ROOM ? HEADER_ROOM : room)))) {
        return NULL;
    }
    memset(rs, 0, sizeof *rs);
    rs->spare_size = room <= HEADER_ROOM;
    rs->lt = lt;
    rs->names = (o11y_str *)(void *)(rs + 1);
    rs->values = rs->names + n;
    char *at = (char *)(rs->values + n);
    for (size_t i = 0; i < req->headers.size; i++) {
        h2o_header_t *h = &req->headers.entries[i];
        if (!h->name->len)
            continue;
        memcpy(at, h->name->base, h->name->len);
        rs->names[rs->n_headers] = (o11y_str){at, h->name->len};
        at += h->name->len;
        memcpy(at, h->value.base, h->value.len);
        rs->values[rs->n_headers] = (o11y_str){at, h->value.len};
        at += h->value.len;
        rs->n_headers++;
    }
    return rs;
}

static void enqueue_job(o11y_h2o_server *srv, request_state *rs)
{
    pthread_mutex_lock(&srv->jobs_lock);
    rs->next_job = NULL;
    if (srv->jobs_tail)
        srv->jobs_tail->next_job = rs;
    else
        srv->jobs_head = rs;
    srv->jobs_tail = rs;
    pthread_cond_signal(&srv->jobs_cond);
    pthread_mutex_unlock(&srv->jobs_lock);
}

static void *worker_main(void *arg)
{
    o11y_h2o_server *srv = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        pthread_mutex_lock(&srv->jobs_lock);
        while (!srv->jobs_head && !srv->workers_stop)
            pthread_cond_wait(&srv->jobs_cond, &srv->jobs_lock);
        request_state *rs = srv->jobs_head;
        if (rs) {
            srv->jobs_head = rs->next_job;
            if (!srv->jobs_head)
                srv->jobs_tail = NULL;
        }
        pthread_mutex_unlock(&srv->jobs_lock);
        if (!rs)
            return NULL; /* stopping, and nothing left */
        o11y_exchange_run(rs->ex);
        h2o_multithread_send_message(&rs->lt->receiver, &rs->respond_msg.super);
    }
}

static void on_conn_close(void *data);

static loop_thread *loop_of(o11y_h2o_server *srv, h2o_req_t *req)
{
    for (unsigned i = 0; i < srv->n_loops; i++)
        if (&srv->loops[i].ctx == req->conn->ctx)
            return &srv->loops[i];
    return NULL;
}

/* h2o keeps a request's Content-Length and Transfer-Encoding lines out of req->headers (it
 * frames the body itself). When h2o refused the request for them, the pipeline must see them to
 * give the contract's answer (501 for an unknown coding, 400 for chunked not last, 413 for the
 * declared size): they are read back from the head, still in the connection's input. */
static void add_framing_line(void *ctx, o11y_str name, o11y_str value)
{
    request_state *rs = ctx;
    if (!((name.len == 14 && strncasecmp(name.ptr, "content-length", 14) == 0) ||
          (name.len == 17 && strncasecmp(name.ptr, "transfer-encoding", 17) == 0)))
        return;
    char *at = rs->framing + rs->framing_used; /* the input may go before the exchange does */
    memcpy(at, name.ptr, name.len);
    memcpy(at + name.len, value.ptr, value.len);
    o11y_exchange_add_header(rs->ex, at, name.len, at + name.len, value.len);
    rs->framing_used += name.len + value.len;
}

static void add_framing_lines(request_state *rs, h2o_req_t *req)
{
    h2o_socket_t *sock = req->version < 0x200 && req->conn->callbacks->get_socket
                             ? req->conn->callbacks->get_socket(req->conn)
                             : NULL;
    if (!sock || !sock->input || !sock->input->size)
        return;
    const char *head = sock->input->bytes;
    const char *end = memmem(head, sock->input->size, "\r\n\r\n", 4);
    if (!end || !(rs->framing = malloc((size_t)(end - head))))
        return;
    o11y_str method, target;
    o11y__head_parse(head, (size_t)(end - head), &method, &target, add_framing_line, rs);
}

/* A request's state and exchange, begun (stage 1): NULL when out of memory. *final as
 * o11y_exchange_begin's result. The state is freed with the request's pool (on_request_over).
 * refused: h2o answered the request itself (see add_framing_lines). */
static request_state *begin_exchange(o11y_h2o_server *srv, h2o_req_t *req, bool refused,
                                     bool *final)
{
    loop_thread *lt = loop_of(srv, req);
    join_folded_lines(req);
    request_state *rs = lt ? new_request_state(lt, req) : NULL;
    request_ref *ref = rs ? h2o_mem_alloc_shared(&req->pool, sizeof *ref, on_request_over) : NULL;
    h2o_iovec_t target = req->input.path.len ? req->input.path : req->path;
    if (!ref || !(rs->ex = o11y_exchange_new(srv->svc, target.base ? target.base : "/",
                                             target.base ? target.len : 1))) {
        if (ref)
            ref->rs = NULL;
        if (rs)
            free_request_state(rs);
        return NULL;
    }
    ref->rs = rs;
    rs->req = req;
    h2o_socket_t *sock =
        req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    conn_state *cs = sock && sock->on_close.cb == on_conn_close ? sock->on_close.data : NULL;
    if (cs && !refused) {
        rs->conn = cs;
        cs->refs++;
        cs->phase = req->version >= 0x200 ? PHASE_H2 : PHASE_ANSWER;
        o11y_conn_guard_answering(cs->gc);
        free(cs->head);
        cs->head = NULL;
    }
    rs->respond_msg.kind = MSG_RESPOND;
    o11y_exchange *ex = rs->ex;
    for (size_t i = 0; i < rs->n_headers; i++)
        o11y_exchange_add_header(ex, rs->names[i].ptr, rs->names[i].len, rs->values[i].ptr,
                                 rs->values[i].len);
    if (refused)
        add_framing_lines(rs, req);
    struct sockaddr_storage peer;
    if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&peer) > 0)
        o11y_exchange_set_peer(ex, &peer);
    char method[17];
    size_t mlen = req->method.len < 16 ? req->method.len : 16;
    if (mlen)
        memcpy(method, req->method.base, mlen);
    method[mlen] = '\0';
    *final = o11y_exchange_begin(ex, mlen ? method : "GET", lookup, rs);
    return rs;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    o11y_h2o_server *srv = ((route_handler *)self)->srv;
    bool final = false;
    request_state *rs = begin_exchange(srv, req, false, &final);
    if (!rs) {
        h2o_send_error_503(req, "Service Unavailable", "out of memory", 0);
        return 0;
    }
    loop_thread *lt = rs->lt;
    o11y_exchange *ex = rs->ex;
    /* h2o has the whole body already (its own limit sits above the service's) */
    if (!(final && o11y_exchange_refuses_body(ex)) && req->entity.base && req->entity.len)
        o11y_exchange_body(ex, req->entity.base, req->entity.len);
    if (!final && srv->n_workers && !o11y_exchange_nonblocking(ex)) {
        rs->in_worker = true; /* the handler may block: not on the loop */
        enqueue_job(srv, rs);
        return 0;
    }
    o11y_exchange_run(ex);
    respond(lt, req, rs);
    return 0;
}

/*=== what h2o answers itself ===
 * h2o refuses some requests before any handler sees them (a body past its own limit, a transfer
 * coding it does not know, a head it cannot parse), with a text/plain body of its own. Those
 * answers pass through the filters of the host's fallback path: this one gives them an exchange
 * of their own, so they carry the contract's envelope, the trace headers and an access line.
 * The pipeline, run on the same head, usually reaches the same refusal by itself (413 for the
 * declared size, 501 for the coding); otherwise the status's catalog code is the answer. */

typedef struct own_answer_filter {
    h2o_filter_t super;
    o11y_h2o_server *srv;
} own_answer_filter;

typedef struct own_answer {
    h2o_ostream_t super;
    request_state *rs;
} own_answer;

static const o11y_error_def *error_for_status(int status)
{
    switch (status) {
    case 413:
        return &o11y_err_PAYLOAD_TOO_LARGE;
    case 501:
        return &o11y_err_NOT_IMPLEMENTED;
    case 503:
        return &o11y_err_SERVICE_UNAVAILABLE;
    case 404:
        return &o11y_err_NOT_FOUND;
    default:
        return status >= 500 ? &o11y_err_INTERNAL_ERROR : &o11y_err_VALIDATION_FAILED;
    }
}

/* h2o's body is dropped; ours goes with its last piece. */
static void own_answer_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n,
                            h2o_send_state_t state)
{
    (void)bufs;
    (void)n;
    own_answer *oa = (own_answer *)self;
    if (h2o_send_state_is_in_progress(state)) {
        h2o_ostream_send_next(self, req, NULL, 0, state);
        return;
    }
    size_t len = 0;
    const void *body = o11y_exchange_body_bytes(oa->rs->ex, &len);
    bool head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    h2o_iovec_t v = h2o_iovec_init(body, head ? 0 : len);
    oa->rs->bytes = v.len;
    h2o_ostream_send_next(self, req, &v, v.len ? 1 : 0, state);
}

static void own_answer_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    o11y_h2o_server *srv = ((own_answer_filter *)self)->srv;
    bool final = false;
    request_state *rs = req->res.status >= 400 ? begin_exchange(srv, req, true, &final) : NULL;
    if (rs) {
        o11y_exchange_refuse(rs->ex, error_for_status(req->res.status), NULL);
        o11y_exchange_run(rs->ex);
        req->res.headers = (h2o_headers_t){NULL, 0, 0};
        set_response_head(req, rs->ex);
        size_t len = 0;
        o11y_exchange_body_bytes(rs->ex, &len);
        req->res.content_length = len;
        own_answer *oa = (own_answer *)h2o_add_ostream(req, sizeof *oa, slot);
        oa->super.do_send = own_answer_send;
        oa->rs = rs;
        slot = &oa->super.next;
    } /* else (out of memory) h2o's own answer goes as it is */
    h2o_setup_next_ostream(req, slot);
}

/*=== loops ===*/

/* A request cut in its body by the guard never reached a handler (h2o hands a request over
 * with its whole body): its access line, 408, is made from the head kept at the tick. */
typedef struct cut_fields {
    request_state *rs;
    size_t max;
} cut_fields;

static void add_cut_field(void *ctx, o11y_str name, o11y_str value)
{
    cut_fields *f = ctx;
    request_state *rs = f->rs;
    if (rs->n_headers < f->max) {
        rs->names[rs->n_headers] = name;
        rs->values[rs->n_headers] = value;
        rs->n_headers++;
    }
}

static void log_cut_request(conn_state *cs)
{
    size_t max = 1;
    for (size_t i = 0; i < cs->head_len; i++)
        max += cs->head[i] == '\n';
    request_state rs = {0};
    rs.names = malloc(max * 2 * sizeof *rs.names);
    if (!rs.names)
        return;
    rs.values = rs.names + max;
    cut_fields f = {&rs, max};
    o11y_str method, target;
    if (o11y__head_parse(cs->head, cs->head_len, &method, &target, add_cut_field, &f) &&
        (rs.ex = o11y_exchange_new(cs->lt->srv->svc, target.ptr, target.len))) {
        for (size_t i = 0; i < rs.n_headers; i++)
            o11y_exchange_add_header(rs.ex, rs.names[i].ptr, rs.names[i].len, rs.values[i].ptr,
                                     rs.values[i].len);
        o11y_exchange_set_peer(rs.ex, &cs->peer);
        char m[17];
        memcpy(m, method.ptr, method.len);
        m[method.len] = '\0';
        o11y_exchange_begin(rs.ex, m, lookup, &rs);
        o11y_exchange_timed_out(rs.ex);
        o11y_exchange_done(rs.ex, 0, false);
    }
    free(rs.names);
}

static void on_conn_close(void *data)
{
    conn_state *cs = data;
    loop_thread *lt = cs->lt;
    if (cs->phase == PHASE_BODY && cs->head && o11y_conn_guard_timed_out(cs->gc))
        log_cut_request(cs);
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        lt->conns = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    o11y_conn_guard_end(lt->srv->guard, cs->gc);
    close(cs->guard_fd);
    cs->sock = NULL;
    conn_release(cs);
}

static bool is_http2(h2o_socket_t *sock)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n";
    if (sock->ssl) {
        h2o_iovec_t alpn = h2o_socket_ssl_get_selected_protocol(sock);
        if (alpn.len == 2 && memcmp(alpn.base, "h2", 2) == 0)
            return true;
    }
    return sock->input->size >= sizeof preface - 1 &&
           memcmp(sock->input->bytes, preface, sizeof preface - 1) == 0;
}

/* Every 200 ms: which waiting connections have their head in (h2o says nothing until the body
 * is complete too), and how far their bodies have come. */
static void on_tick(h2o_timeout_entry_t *entry)
{
    loop_thread *lt = H2O_STRUCT_FROM_MEMBER(loop_thread, tick_entry, entry);
    for (conn_state *cs = lt->conns; cs; cs = cs->next) {
        h2o_buffer_t *in = cs->sock->input;
        if (cs->phase == PHASE_HEAD && in && in->size && is_http2(cs->sock)) {
            cs->phase = PHASE_H2; /* HTTP/2 has its own idle timeout, and streams, not heads */
            o11y_conn_guard_answering(cs->gc);
        }
        if (cs->phase == PHASE_HEAD && in && in->size) {
            const char *end = memmem(in->bytes, in->size, "\r\n\r\n", 4);
            size_t len = end ? (size_t)(end - in->bytes) + 4 : 0;
            if (end && (cs->head = malloc(len)))
                memcpy(cs->head, in->bytes, len);
            if (end) {
                cs->phase = PHASE_BODY;
                cs->head_len = len;
                cs->body_reported = 0;
                o11y_conn_guard_body(cs->gc);
            }
        }
        /* The body gathers in the input behind its head until it is complete (h2o 2.2's
         * bytes_read counts only the last read). */
        size_t got =
            in && cs->phase == PHASE_BODY && in->size > cs->head_len ? in->size - cs->head_len : 0;
        if (got > cs->body_reported) {
            o11y_conn_guard_received(cs->gc, got - cs->body_reported);
            cs->body_reported = got;
        }
    }
    /* A client that takes nothing at all never lets h2o ask for more: past the stall time its
     * connection is shut down, as libmicrohttpd's connection timeout does. Over HTTP/2 one
     * stream's window may stay shut while others flow, and h2o 2.2 cannot reset one stream
     * from here: only HTTP/1.1 streams are ended this way. */
    uint64_t now = h2o_now(lt->loop);
    for (stream_state *st = lt->streams; st; st = st->next)
        if (st->sending && !st->stalled && st->conn && st->conn->sock && st->req &&
            st->req->version < 0x200 && now - st->sent_at_ms >= lt->srv->stall_ms) {
            st->stalled = true;
            shutdown(st->conn->guard_fd, SHUT_RDWR);
        }
    h2o_timeout_link(lt->loop, &lt->tick, &lt->tick_entry);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err)
        return;
    loop_thread *lt = listener->data;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (!sock)
        return;
    o11y_conn_guard *guard = lt->srv->guard;
    struct sockaddr_storage peer;
    if (!h2o_socket_getpeername(sock, (struct sockaddr *)&peer))
        peer.ss_family = AF_UNSPEC;
    if (!o11y_conn_guard_admit(guard, (struct sockaddr *)&peer)) {
        h2o_socket_close(sock); /* refused at once, never left waiting */
        return;
    }
    conn_state *cs = calloc(1, sizeof *cs);
    if (cs && (cs->guard_fd = fcntl(h2o_socket_get_fd(sock), F_DUPFD_CLOEXEC, 0)) < 0) {
        free(cs);
        cs = NULL;
    }
    if (cs) { /* else unguarded, never refused for it */
        cs->lt = lt;
        cs->sock = sock;
        cs->refs = 1;
        cs->peer = peer;
        cs->gc = o11y_conn_guard_begin(guard, cs->guard_fd, (struct sockaddr *)&peer);
        cs->next = lt->conns;
        if (cs->next)
            cs->next->prev = cs;
        lt->conns = cs;
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = cs;
    }
    h2o_accept(&lt->accept, sock);
}

static void on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    loop_thread *lt = H2O_STRUCT_FROM_MEMBER(loop_thread, receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        loop_msg *m = H2O_STRUCT_FROM_MEMBER(loop_msg, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        if (m->kind == MSG_WAKE) {
            stream_state *st = H2O_STRUCT_FROM_MEMBER(stream_state, wake, m);
            atomic_store(&st->queued, false);
            if (st->gone && !st->req)
                free_stream(st);
            else
                pump(st);
        } else if (m->kind == MSG_RESPOND) {
            request_state *rs = H2O_STRUCT_FROM_MEMBER(request_state, respond_msg, m);
            rs->in_worker = false;
            if (rs->abandoned) { /* h2o let go of the request while the handler ran */
                o11y_stream *s = o11y_exchange_stream(rs->ex);
                if (s)
                    rs->bytes = o11y_stream_server_end(s, O11Y_STREAM_CLIENT_CLOSED);
                o11y_exchange_done(rs->ex, rs->bytes, false);
                free_request_state(rs);
            } else {
                respond(lt, rs->req, rs);
            }
        } else if (m->kind == MSG_CLOSE_LISTENER) {
            if (lt->listener) {
                h2o_socket_read_stop(lt->listener);
                h2o_socket_close(lt->listener); /* closes the descriptor: refused from now */
                lt->listener = NULL;
            }
            h2o_context_request_shutdown(&lt->ctx); /* idle keep-alive connections, GOAWAY */
            atomic_store(&lt->busy, true);          /* until the loop has looked */
            atomic_fetch_add(&lt->srv->listeners_closed, 1);
        } else if (m->kind == MSG_EXIT) {
            /* Connections left (idle keep-alive ones, an HTTP/2 connection in its graceful
             * goodbye) end on the loop's next turns: their timeouts are made to expire now.
             * h2o 2.2 has no call that closes a context's connections, and its context may only
             * be disposed of once none is left. */
            lt->ctx.http1.req_timeout.timeout = 0;
            lt->ctx.http2.idle_timeout.timeout = 0;
            lt->ctx.http2.graceful_shutdown_timeout.timeout = 0;
            lt->ctx.handshake_timeout.timeout = 0;
            lt->exit = true;
        }
    }
}

static bool timeouts_empty(h2o_context_t *c)
{
    h2o_timeout_t *all[] = {&c->zero_timeout,
                            &c->one_sec_timeout,
                            &c->hundred_ms_timeout,
                            &c->handshake_timeout,
                            &c->http1.req_timeout,
                            &c->http2.idle_timeout,
                            &c->http2.graceful_shutdown_timeout,
                            &c->proxy.io_timeout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!h2o_linklist_is_empty(&all[i]->_entries))
            return false;
    return true;
}

/* Everything of a loop is made on the loop's own thread: h2o keeps per-thread state (the
 * recycling lists its socket buffers come from are thread-local, and a socket's buffer remembers
 * the list of the thread that created the socket). A socket made on the starting thread but read
 * on a loop thread took its buffers from the starting thread's list, and two loops doing so
 * raced on it: a buffer handed out twice, a use-after-free in a socket read under ASan. */
static void loop_init(loop_thread *lt)
{
    o11y_h2o_server *srv = lt->srv;
    lt->loop = h2o_evloop_create();
    h2o_context_init(&lt->ctx, lt->loop, &srv->config);
    lt->accept =
        (h2o_accept_ctx_t){.ctx = &lt->ctx, .hosts = srv->config.hosts, .ssl_ctx = srv->ssl};
    lt->queue = h2o_multithread_create_queue(lt->loop);
    h2o_multithread_register_receiver(lt->queue, &lt->receiver, on_messages);
    lt->close_msg.kind = MSG_CLOSE_LISTENER;
    lt->exit_msg.kind = MSG_EXIT;
    lt->listener = h2o_evloop_socket_create(lt->loop, lt->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    lt->listener->data = lt;
    h2o_socket_read_start(lt->listener, on_accept);
    h2o_timeout_init(lt->loop, &lt->tick, 200);
    lt->tick_entry.cb = on_tick;
    h2o_timeout_link(lt->loop, &lt->tick, &lt->tick_entry);
    pthread_mutex_lock(&srv->ready_lock);
    srv->loops_ready++;
    pthread_cond_broadcast(&srv->ready_cond);
    pthread_mutex_unlock(&srv->ready_lock);
}

static void *loop_main(void *arg)
{
    loop_thread *lt = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the application's thread */
    loop_init(lt);
    while (!lt->exit) {
        h2o_evloop_run(lt->loop, lt->listener ? 100 : 10);
        /* Stopping: h2o has closed the idle connections; one still waiting for a request's
         * head or body, or an HTTP/2 connection finishing its streams, keeps the drain going
         * (h2o hands a request over only once its body is complete). */
        if (!lt->listener)
            atomic_store(&lt->busy, !h2o_linklist_is_empty(&lt->ctx.http1.req_timeout._entries) ||
                                        !h2o_linklist_is_empty(
                                            &lt->ctx.http2.graceful_shutdown_timeout._entries));
    }
    /* Let the connections left close (see MSG_EXIT), for at most two seconds. */
    for (int i = 0; i < 200 && !timeouts_empty(&lt->ctx); i++)
        h2o_evloop_run(lt->loop, 10);
    lt->idle = timeouts_empty(&lt->ctx);
    h2o_timeout_unlink(&lt->tick_entry);
    h2o_timeout_dispose(lt->loop, &lt->tick);
    if (lt->idle) {
        h2o_multithread_unregister_receiver(lt->queue, &lt->receiver);
        h2o_multithread_destroy_queue(lt->queue);
        h2o_evloop_run(lt->loop, 0); /* the queue's socket is freed on the loop's next turn */
        h2o_context_dispose(&lt->ctx);
        h2o_evloop_destroy(lt->loop);
    } /* else a connection would not close: its memory is left rather than freed in use, and the
       * queue stays, since a late wake may still post to it */
    free_spare_states(lt); /* after the context: disposing of it may end requests */
    return NULL;
}

static int listen_on(const char *addr, uint16_t port, uint16_t *bound)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    } else {
        errno = EINVAL;
        return -2;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        *bound = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}

static SSL_CTX *tls_context(const char *cert, const char *key)
{
    SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
    if (!ssl)
        return NULL;
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ssl, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ssl) != 1) {
        ERR_clear_error();
        SSL_CTX_free(ssl);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ssl, h2o_http2_alpn_protocols);
    return ssl;
}

static void free_server(o11y_h2o_server *srv)
{
    for (unsigned i = 0; i < srv->n_loops; i++) {
        loop_thread *lt = &srv->loops[i];
        if (lt->listen_fd >= 0 && !lt->loop)
            close(lt->listen_fd);
    }
    free(srv->loops);
    free(srv->workers);
    o11y_conn_guard_stop(srv->guard);
    h2o_config_dispose(&srv->config);
    if (srv->ssl)
        SSL_CTX_free(srv->ssl);
    free(srv);
}

o11y_status o11y_h2o_start(o11y_service *svc, const o11y_h2o_config *cfg, o11y_h2o_server **out)
{
    if (!svc || !out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_h2o_config c;
    if (cfg)
        c = *cfg;
    else
        o11y_h2o_config_init(&c);
    if (!c.bind_address)
        c.bind_address = "127.0.0.1";
    if (!!c.tls_cert_file != !!c.tls_key_file)
        return O11Y_EINVAL;
    unsigned n = c.threads;
    if (!n) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 && cpus < 256 ? (unsigned)cpus : 1;
    }
    o11y_h2o_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return O11Y_ENOMEM;
    srv->svc = svc;
    pthread_mutex_init(&srv->ready_lock, NULL);
    pthread_cond_init(&srv->ready_cond, NULL);
    srv->drain_timeout_ms = c.drain_timeout_ms ? c.drain_timeout_ms : 10000;
    h2o_config_init(&srv->config);
    srv->config.server_name = h2o_iovec_init(H2O_STRLIT("o11y"));
    size_t max_body = o11y_service_max_body(svc);
    /* h2o's own limit above the service's: a body between the two gets the contract's 413 */
    srv->config.max_request_entity_size = max_body * 4 > (64u << 20) ? max_body * 4 : 64u << 20;
    uint64_t io_ms = (uint64_t)(c.io_timeout_s ? c.io_timeout_s : 30) * 1000;
    srv->config.http1.req_timeout = io_ms;
    srv->config.http2.idle_timeout = io_ms;
    srv->config.http2.graceful_shutdown_timeout = 2000;
    h2o_hostconf_t *host =
        h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    route_handler *h = (route_handler *)h2o_create_handler(path, sizeof *h);
    h->super.on_req = on_req;
    h->srv = srv;
    own_answer_filter *f = (own_answer_filter *)h2o_create_filter(&host->fallback_path, sizeof *f);
    f->super.on_setup_ostream = own_answer_setup;
    f->srv = srv;
    o11y_conn_guard_config gcfg = {
        .max_connections = c.max_connections ? c.max_connections : 4096,
        .head_timeout_s = c.request_head_timeout_s ? c.request_head_timeout_s : 10,
        .idle_timeout_s = c.io_timeout_s ? c.io_timeout_s : 30,
        .body_timeout_s = c.body_timeout_s ? c.body_timeout_s : 10,
        .body_min_bytes_per_s = c.body_min_bytes_per_s ? c.body_min_bytes_per_s : 1024,
    };
    gcfg.max_per_client = c.max_connections_per_client ? c.max_connections_per_client
                          : c.max_connections          ? (c.max_connections + 3) / 4
                                                       : 1024;
    srv->stream_max_unsent_bytes =
        c.stream_max_unsent_bytes ? c.stream_max_unsent_bytes : 256 * 1024;
    srv->stall_ms = (uint64_t)(c.io_timeout_s ? c.io_timeout_s : 30) * 1000;
    srv->guard = o11y_conn_guard_start(&gcfg, o11y_service_metrics(svc), o11y_service_logger(svc));
    if (!srv->guard) {
        free_server(srv);
        return O11Y_ENOMEM;
    }
    if (c.tls_cert_file && !(srv->ssl = tls_context(c.tls_cert_file, c.tls_key_file))) {
        free_server(srv);
        return O11Y_EIO;
    }
    srv->loops = calloc(n, sizeof *srv->loops);
    if (!srv->loops) {
        free_server(srv);
        return O11Y_ENOMEM;
    }
    srv->n_loops = n;
    for (unsigned i = 0; i < n; i++)
        srv->loops[i].listen_fd = -1;
    /* Every loop listens on the port the first one got. */
    uint16_t port = c.port;
    for (unsigned i = 0; i < n; i++) {
        int fd = listen_on(c.bind_address, port, &port);
        if (fd < 0) {
            free_server(srv);
            return fd == -2 ? O11Y_EINVAL : O11Y_EIO;
        }
        srv->loops[i].listen_fd = fd;
    }
    srv->port = port;
    pthread_mutex_init(&srv->jobs_lock, NULL);
    pthread_cond_init(&srv->jobs_cond, NULL);
    if (c.handler_threads) {
        srv->workers = calloc(c.handler_threads, sizeof *srv->workers);
        for (unsigned i = 0; srv->workers && i < c.handler_threads; i++)
            if (pthread_create(&srv->workers[i], NULL, worker_main, srv) == 0)
                srv->n_workers++;
    }
    unsigned started = 0;
    while (started < n) {
        srv->loops[started].srv = srv;
        if (pthread_create(&srv->loops[started].thread, NULL, loop_main, &srv->loops[started]))
            break;
        started++;
    }
    /* Ready when every loop can take messages (o11y_h2o_stop sends them). */
    pthread_mutex_lock(&srv->ready_lock);
    while (srv->loops_ready < started)
        pthread_cond_wait(&srv->ready_cond, &srv->ready_lock);
    pthread_mutex_unlock(&srv->ready_lock);
    if (started < n) { /* no thread for a loop: the ones running stop, the rest never ran */
        for (unsigned i = started; i < n; i++)
            close(srv->loops[i].listen_fd);
        srv->n_loops = started;
        o11y_h2o_stop(srv);
        return O11Y_ENOMEM;
    }
    *out = srv;
    return O11Y_OK;
}

uint16_t o11y_h2o_port(const o11y_h2o_server *srv)
{
    return srv ? srv->port : 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void o11y_h2o_stop(o11y_h2o_server *srv)
{
    if (!srv)
        return;
    /* 1. No new connections: each loop closes its own listening socket. */
    for (unsigned i = 0; i < srv->n_loops; i++)
        h2o_multithread_send_message(&srv->loops[i].receiver, &srv->loops[i].close_msg.super);
    while (atomic_load(&srv->listeners_closed) < srv->n_loops)
        sleep_ms(1);
    /* 2. Streams say farewell and end; in-flight requests get the drain time. */
    o11y_service_close_streams(srv->svc);
    int64_t deadline = now_ms() + srv->drain_timeout_ms;
    for (;;) {
        bool busy = o11y_service_active_requests(srv->svc) > 0;
        for (unsigned i = 0; i < srv->n_loops && !busy; i++)
            busy = atomic_load(&srv->loops[i].busy);
        if (!busy || now_ms() >= deadline)
            break;
        sleep_ms(2);
    }
    /* 3. The handlers' workers end (their answers are all in), then the loops. */
    pthread_mutex_lock(&srv->jobs_lock);
    srv->workers_stop = true;
    pthread_cond_broadcast(&srv->jobs_cond);
    pthread_mutex_unlock(&srv->jobs_lock);
    for (unsigned i = 0; i < srv->n_workers; i++)
        pthread_join(srv->workers[i], NULL);
    for (unsigned i = 0; i < srv->n_loops; i++)
        h2o_multithread_send_message(&srv->loops[i].receiver, &srv->loops[i].exit_msg.super);
    /* Each loop disposes of its own h2o objects on its own thread (loop_main); h2o's objects
     * are never touched from two threads. */
    for (unsigned i = 0; i < srv->n_loops; i++)
        pthread_join(srv->loops[i].thread, NULL);
    free_server(srv);
}

typedef struct h2o_run {
    o11y_service *svc;
    const o11y_h2o_config *cfg;
    o11y_h2o_server *srv;
} h2o_run;

static o11y_status h2o_run_start(void *ctx)
{
    h2o_run *r = ctx;
    return o11y_h2o_start(r->svc, r->cfg, &r->srv);
}

static void h2o_run_stop(void *ctx)
{
    o11y_h2o_stop(((h2o_run *)ctx)->srv);
}

static uint16_t h2o_run_port(void *ctx)
{
    return ((h2o_run *)ctx)->srv->port;
}

o11y_status o11y_h2o_run(o11y_service *svc, const o11y_h2o_config *cfg)
{
    h2o_run r = {svc, cfg, NULL};
    o11y_server_run run = {.start = h2o_run_start,
                           .stop = h2o_run_stop,
                           .port = h2o_run_port,
                           .ctx = &r,
                           .server = "h2o",
                           .tls = cfg && cfg->tls_cert_file,
                           .shutdown_delay_ms = cfg ? cfg->shutdown_delay_ms : 0};
    return o11y_service_run_server(svc, &run);
}
