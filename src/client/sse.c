/* client/sse.c — following a Server-Sent Events stream (WHATWG HTML "server-sent events", the
 * event stream format and reconnection) with the rules of CONTRACT section 11: resume with
 * Last-Event-ID, wait the server's retry:, treat heartbeat silence as a drop, deliver each event
 * once. The format itself is sse_parser.c. */
#include "client/client_internal.h"
#include "client/sse_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ERROR_BODY_MAX = 1 << 20 };

typedef struct sse_state {
    const o11y_sse_opts *opts;
    double heartbeat_ms;
    CURL *handle;
    client_answer_headers *ah;
    sse_parser parser;
    /* the answer */
    bool checked, is_stream;
    long status;
    char *err_body;
    size_t err_len;
    /* the stream's progress */
    bool have_numeric, stop, final_seen, cancelled;
    unsigned long long last_numeric;
    double deadline; /* monotonic ms; infinity without one */
    size_t delivered;
    double last_byte_ms;
} sse_state;

static bool is_final(const sse_state *s, const char *event)
{
    static const char *const defaults[] = {"completed", "failed", "cancelled", NULL};
    const char *const *f = s->opts->final_events ? s->opts->final_events : defaults;
    for (; *f; f++)
        if (strcmp(*f, event) == 0)
            return true;
    return false;
}

static bool parse_u64(const char *v, unsigned long long *out)
{
    if (!*v || strlen(v) > 19 || strspn(v, "0123456789") != strlen(v))
        return false;
    *out = strtoull(v, NULL, 10);
    return true;
}

static int on_event(void *ctx, const char *id, bool own_id, const char *type, const char *data,
                    size_t data_len)
{
    sse_state *s = ctx;
    unsigned long long n;
    /* A server that replays from an older id than asked (or a proxy that repeats) must not
     * make the caller see an event twice. Only an event that names its id counts: one without
     * an id field keeps the last one (the format's rule) and is new. */
    bool numeric = own_id && parse_u64(id, &n);
    if (numeric && s->have_numeric && n <= s->last_numeric)
        return 0;
    if (numeric) {
        s->have_numeric = true;
        s->last_numeric = n;
    }
    o11y_sse_event ev = {.id = id, .event = type, .data = data, .data_len = data_len};
    s->delivered++;
    if (s->opts->on_event(&ev, s->opts->ctx) != 0)
        s->stop = true;
    if (is_final(s, type))
        s->final_seen = s->stop = true;
    return s->stop;
}

static bool check_answer(sse_state *s)
{
    s->checked = true;
    curl_easy_getinfo(s->handle, CURLINFO_RESPONSE_CODE, &s->status);
    s->is_stream =
        s->status == 200 && strncasecmp(s->ah->content_type, "text/event-stream", 17) == 0;
    return true;
}

static size_t on_bytes(char *data, size_t size, size_t nmemb, void *ctx)
{
    sse_state *s = ctx;
    size_t len = size * nmemb;
    s->last_byte_ms = client_now_ms();
    if (!s->checked)
        check_answer(s);
    if (!s->is_stream) { /* an error answer: keep (some of) its body for the typed error */
        size_t room = ERROR_BODY_MAX - s->err_len;
        size_t take = len < room ? len : room;
        char *p = realloc(s->err_body, s->err_len + take + 1);
        if (!p)
            return 0;
        memcpy(p + s->err_len, data, take);
        s->err_len += take;
        p[s->err_len] = '\0';
        s->err_body = p;
        return len;
    }
    return sse_parser_feed(&s->parser, data, len) ? len : 0;
}

static int on_tick(void *ctx, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    sse_state *s = ctx;
    if (s->opts->should_stop && s->opts->should_stop(s->opts->ctx)) {
        s->cancelled = s->stop = true;
        return 1;
    }
    double now = client_now_ms();
    if (now >= s->deadline)
        return 1;
    /* Silence for twice the heartbeat interval is a dead connection that TCP has not noticed. */
    return now - s->last_byte_ms > 2 * s->heartbeat_ms ? 1 : 0;
}

o11y_status o11y_client_sse(o11y_client *c, const o11y_client_request *req,
                            const o11y_sse_opts *opts, o11y_client_response *resp)
{
    if (!c || !req || !opts || !opts->on_event || !resp)
        return O11Y_EINVAL;
    o11y_client_request get = *req;
    if (!get.method)
        get.method = "GET";
    if (!client_request_valid(&get))
        return O11Y_EINVAL;
    if (opts->last_event_id &&
        (strlen(opts->last_event_id) > SSE_ID_MAX || strpbrk(opts->last_event_id, "\r\n")))
        return O11Y_EINVAL;
    const o11y_trace_ctx *parent;
    o11y_trace_ctx base;
    char *url = client_begin(c, req, resp, &parent, &base);
    if (!url)
        return O11Y_ENOMEM;
    bool repeatable = client_repeatable(get.method, get.idempotency_key != NULL);
    client_answer_headers ah = {0};
    sse_state s = {.opts = opts,
                   .heartbeat_ms = opts->heartbeat_ms ? opts->heartbeat_ms : 15000,
                   .ah = &ah,
                   .deadline = req->deadline_ms ? client_now_ms() + req->deadline_ms : 1e300};
    sse_parser_init(&s.parser, opts->max_line ? opts->max_line : 1u << 20, on_event, &s);
    if (opts->last_event_id) {
        snprintf(s.parser.last_id, sizeof s.parser.last_id, "%s", opts->last_event_id);
        s.parser.any_id = s.parser.last_id[0] != '\0';
    }
    unsigned long long n;
    if (parse_u64(s.parser.last_id, &n)) {
        s.have_numeric = true;
        s.last_numeric = n;
    }
    unsigned max_reconnects = opts->max_reconnects ? opts->max_reconnects : 10;
    unsigned failures = 0;
    o11y_status result = O11Y_EBACKEND;
    for (unsigned attempt = 1;; attempt++) {
        o11y_trace_ctx span;
        client_attempt_span(parent, &base, &span);
        CURL *h = client_take_handle(c);
        struct curl_slist *hdrs = h ? client_headers(c, &get, &span, "text/event-stream") : NULL;
        if (hdrs && s.parser.last_id[0]) {
            char line[SSE_ID_MAX + 32];
            snprintf(line, sizeof line, "Last-Event-ID: %s", s.parser.last_id);
            struct curl_slist *r = curl_slist_append(hdrs, line);
            if (!r)
                curl_slist_free_all(hdrs);
            hdrs = r;
        }
        if (!hdrs) {
            client_give_handle(c, h);
            result = O11Y_ENOMEM;
            break;
        }
        memset(&ah, 0, sizeof ah);
        s.handle = h;
        s.checked = s.is_stream = false;
        s.status = 0;
        sse_parser_restart(&s.parser);
        s.last_byte_ms = client_now_ms();
        size_t delivered_before = s.delivered;
        curl_easy_setopt(h, CURLOPT_URL, url);
        if (get.body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, get.body);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(get.body_len ? get.body_len : strlen(get.body)));
        }
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, get.method);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_bytes);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, client_on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &ah);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_tick);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, &s);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        double t0 = client_now_ms();
        CURLcode rc = curl_easy_perform(h);
        double ms = client_now_ms() - t0;
        if (!s.checked)
            check_answer(&s);
        curl_slist_free_all(hdrs);
        client_give_handle(c, h);
        resp->attempts = attempt;
        resp->status = (int)s.status;
        if (ah.trace_id[0])
            snprintf(resp->trace_id, sizeof resp->trace_id, "%s", ah.trace_id);
        if (s.stop) {
            client_observe(c, "http_client_request", &get, get.method, &span, (int)s.status, "",
                           s.cancelled ? "cancelled" : "response", attempt, ms);
            result = O11Y_OK;
            break;
        }
        bool retry;
        int64_t retry_after = -1;
        if (s.parser.too_long) {
            char m[96];
            snprintf(m, sizeof m, "An event stream line was longer than %zu bytes",
                     s.parser.max_line);
            client_type_error(c, &resp->error, 0, NULL, 0, CURLE_WRITE_ERROR, m, &ah,
                              span.trace_id);
            retry = false; /* the same stream would send the same line again */
        } else if (s.status && !s.is_stream) {
            client_type_error(c, &resp->error, (int)s.status, s.err_body, s.err_len, rc, NULL, &ah,
                              span.trace_id);
            retry_after = client_retry_after_ms(ah.retry_after);
            /* A Retry-After beyond five minutes is not a wait a follower should sit through. */
            retry = client_answer_retried(&resp->error) && retry_after <= 300000;
        } else {
            /* The stream ended or went silent before a final event: a drop. */
            bool late = client_now_ms() >= s.deadline;
            const char *why = late ? "The event stream passed its deadline"
                              : rc == CURLE_ABORTED_BY_CALLBACK
                                  ? "The event stream went silent past its heartbeat"
                                  : "The event stream ended before its final event";
            client_type_error(c, &resp->error, 0, NULL, 0,
                              late             ? CURLE_OPERATION_TIMEDOUT
                              : rc == CURLE_OK ? CURLE_PARTIAL_FILE
                                               : rc,
                              why, &ah, span.trace_id);
            /* Resuming needs an id to resume from, or nothing delivered yet. */
            retry = !late && (s.parser.any_id || s.delivered == 0);
        }
        if (!repeatable)
            retry = false;
        free(s.err_body);
        s.err_body = NULL;
        s.err_len = 0;
        failures = s.delivered > delivered_before ? 1 : failures + 1;
        if (retry && failures > max_reconnects)
            retry = false;
        client_observe(c, retry ? "http_client_retry" : "http_client_request", &get, get.method,
                       &span, resp->status, resp->error.code,
                       client_outcome(&resp->error, resp->status), attempt, ms);
        if (!retry)
            break;
        /* The server's retry: (else 1 s), doubled for each failure in a row, capped at 30 s;
         * a longer Retry-After on an error answer wins. */
        double wait = s.parser.retry_ms >= 0 ? (double)s.parser.retry_ms : 1000;
        for (unsigned i = 1; i < failures && wait < 30000; i++)
            wait *= 2;
        if (wait > 30000)
            wait = 30000;
        if ((double)retry_after > wait)
            wait = (double)retry_after;
        if (client_now_ms() + wait >= s.deadline)
            break;
        client_sleep_ms(wait);
    }
    if (result == O11Y_OK) {
        free(resp->error.message);
        free(resp->error.details);
        memset(&resp->error, 0, sizeof resp->error);
    }
    sse_parser_free(&s.parser);
    free(s.err_body);
    free(url);
    return result;
}
