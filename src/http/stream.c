/* http/stream.c — streamed responses. A stream's connection never holds a thread while it waits:
 * when the reader has nothing, the adapter suspends the connection, and o11y_stream_wake resumes
 * it. The lock closes the race where data arrives between "nothing" and "asleep". */
#include "http/http_internal.h"

static void unref(o11y_stream *s)
{
    pthread_mutex_lock(&s->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last) {
        pthread_cond_destroy(&s->resumed);
        pthread_mutex_destroy(&s->lock);
        o11y__free(s);
    }
}

o11y_stream *o11y_res_stream(o11y_response *res, int status, const char *content_type,
                             o11y_stream_read_fn read, o11y_stream_done_fn done, void *ctx)
{
    if (!res || !read || status < 200 || status > 599)
        return NULL;
    o11y_stream *s = o11y__calloc(1, sizeof *s);
    if (!s || o11y_res_body(res, status, content_type, NULL, 0) != O11Y_OK) {
        o11y__free(s);
        o11y_res_fail(res, &o11y_err_INTERNAL_ERROR, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->resumed, NULL);
    s->refs = 2; /* the caller's, and the connection's */
    s->read = read;
    s->done = done;
    s->ctx = ctx;
    s->fd = -1;
    res->stream = s;
    return s;
}

void o11y_stream_wake(o11y_stream *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    bool resume = false;
    if (!s->over) {
        if (s->suspended) {
            s->suspended = false;
            resume = true;
        } else {
            s->wake_pending = true;
        }
    }
    if (resume && s->sync_end)
        s->resuming++;
    pthread_mutex_unlock(&s->lock);
    /* Outside the lock: the server may hold its own lock while it calls back into ours. The
     * connection cannot end meanwhile: libmicrohttpd does not touch a suspended connection, and
     * other adapters' finish waits for resuming to drop to zero. */
    if (resume) {
        s->resume(s->conn);
        if (s->sync_end) {
            pthread_mutex_lock(&s->lock);
            if (--s->resuming == 0)
                pthread_cond_broadcast(&s->resumed);
            pthread_mutex_unlock(&s->lock);
        }
    }
}

o11y_status o11y_stream_set_farewell(o11y_stream *s, const char *text, size_t len)
{
    if (!s || (len && !text) || len > sizeof s->farewell)
        return O11Y_EINVAL;
    pthread_mutex_lock(&s->lock);
    memcpy(s->farewell, text, len);
    s->farewell_len = len;
    pthread_mutex_unlock(&s->lock);
    return O11Y_OK;
}

void o11y_stream_retain(o11y_stream *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->refs++;
    pthread_mutex_unlock(&s->lock);
}

void o11y_stream_release(o11y_stream *s)
{
    if (s)
        unref(s);
}

long o11y__stream_read(o11y_stream *s, char *buf, size_t max)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool closing = s->closing;
        s->wake_pending = false;
        if (closing && !s->end_known) {
            s->end_known = true;
            s->end = O11Y_STREAM_SERVER_STOPPING;
        }
        size_t farewell =
            closing && !s->farewell_sent && s->farewell_len <= max ? s->farewell_len : 0;
        if (farewell) {
            memcpy(buf, s->farewell, farewell);
            s->farewell_sent = true;
            s->bytes += farewell;
        }
        pthread_mutex_unlock(&s->lock);
        if (closing)
            return farewell ? (long)farewell : -1;
        long n = s->read(s->ctx, buf, max);
        if (n > 0)
            s->bytes += (uint64_t)n;
        if (n != 0)
            return n < 0 ? -1 : n;
        pthread_mutex_lock(&s->lock);
        if (s->wake_pending || s->closing) {
            /* Data arrived while the reader ran: read again rather than answer "nothing",
             * which the server would not retry on its own (its socket events are edges). */
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        s->suspended = true;
        s->suspend(s->conn);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
}

static void unlink_stream(o11y_stream *s)
{
    o11y_service *svc = s->svc;
    if (!svc)
        return;
    pthread_mutex_lock(&svc->streams_lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (svc->streams == s)
        svc->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    pthread_mutex_unlock(&svc->streams_lock);
}

void o11y__stream_set_end(o11y_stream *s, o11y_stream_end end)
{
    pthread_mutex_lock(&s->lock);
    if (!s->end_known) {
        s->end_known = true;
        s->end = end;
    }
    pthread_mutex_unlock(&s->lock);
}

void o11y__stream_finish(o11y_stream *s, o11y_stream_end end)
{
    unlink_stream(s);
    pthread_mutex_lock(&s->lock);
    bool first = !s->over;
    s->over = true;
    s->suspended = false;
    if (s->end_known)
        end = s->end;
    while (s->sync_end && s->resuming > 0)
        pthread_cond_wait(&s->resumed, &s->lock);
    pthread_mutex_unlock(&s->lock);
    if (first && s->done)
        s->done(s->ctx, end);
    unref(s);
}

void o11y__streams_close_all(o11y_service *svc)
{
    pthread_mutex_lock(&svc->streams_lock);
    for (o11y_stream *s = svc->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->closing = true;
        bool resume = s->suspended && !s->over;
        s->suspended = false;
        pthread_mutex_unlock(&s->lock);
        if (resume)
            s->resume(s->conn);
    }
    pthread_mutex_unlock(&svc->streams_lock);
}

void o11y__stream_attach(o11y_stream *s, o11y_service *svc, void *conn, void (*suspend)(void *),
                         void (*resume)(void *))
{
    s->conn = conn;
    s->suspend = suspend;
    s->resume = resume;
    s->svc = svc;
    pthread_mutex_lock(&svc->streams_lock);
    s->next = svc->streams;
    if (s->next)
        s->next->prev = s;
    svc->streams = s;
    pthread_mutex_unlock(&svc->streams_lock);
}
