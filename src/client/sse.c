/* client/sse.c — following a Server-Sent Events stream (WHATWG HTML "server-sent events", the
 * event stream format and reconnection) with the rules of CONTRACT section 11: resume with
 * Last-Event-ID, wait the server's retry:, treat heartbeat silence as a drop, deliver each event
 * once. The parser is by hand: libcurl hands over bytes, and no Debian library parses the
 * format; it is a line splitter and four field names. */
#include "client/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { LAST_ID_MAX = 1024, ERROR_BODY_MAX = 1 << 20 };

typedef struct sse_state {
    const o11y_sse_opts *opts;
    size_t max_line;
    double heartbeat_ms;
    CURL *handle;
    client_answer_headers *ah;
    /* the answer */
    bool checked, is_stream;
    long status;
    char *err_body;
    size_t err_len;
    /* the parser */
    char *line;
    size_t line_len, line_cap;
    bool after_cr; /* a CR ended the last line: a following LF belongs to it */
    char *data;
    size_t data_len, data_cap;
    char event[128];
    char pending_id[LAST_ID_MAX + 1]; /* the id field of the event being read */
    bool pending_id_set;
    /* the stream's progress */
    char last_id[LAST_ID_MAX + 1]; /* what Last-Event-ID says on a reconnect */
    bool have_numeric, line_too_long, stop, final_seen, cancelled;
    bool any_id; /* the stream has named an event: it can be resumed */
    unsigned long long last_numeric;
    long retry_ms;   /* from retry:, -1 until the server says */
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

static void dispatch(sse_state *s)
{
    bool own_id = s->pending_id_set;
    if (s->pending_id_set) {
        snprintf(s->last_id, sizeof s->last_id, "%s", s->pending_id);
        s->pending_id_set = false;
        s->any_id = s->last_id[0] != '\0';
    }
    if (s->data_len == 0) { /* no data: nothing to deliver (the spec's rule) */
        s->event[0] = '\0';
        return;
    }
    s->data_len--; /* the last data line's '\n' */
    s->data[s->data_len] = '\0';
    unsigned long long n;
    bool numeric = own_id && parse_u64(s->last_id, &n);
    /* A server that replays from an older id than asked (or a proxy that repeats) must not
     * make the caller see an event twice. Only an event that names its id counts: one without
     * an id field keeps the last one (the format's rule) and is new. */
    bool duplicate = numeric && s->have_numeric && n <= s->last_numeric;
    if (numeric && !duplicate) {
        s->have_numeric = true;
        s->last_numeric = n;
    }
    const char *type = s->event[0] ? s->event : "message";
    if (!duplicate) {
        o11y_sse_event ev = {
            .id = s->last_id, .event = type, .data = s->data, .data_len = s->data_len};
        s->delivered++;
        if (s->opts->on_event(&ev, s->opts->ctx) != 0)
            s->stop = true;
        if (is_final(s, type)) {
            s->final_seen = true;
            s->stop = true;
        }
    }
    s->data_len = 0;
    s->event[0] = '\0';
}

static bool append_data(sse_state *s, const char *v, size_t n)
{
    if (s->data_len + n + 2 > s->max_line) {
        s->line_too_long = true;
        return false;
    }
    if (s->data_len + n + 2 > s->data_cap) {
        size_t cap = s->data_cap ? s->data_cap : 256;
        while (cap < s->data_len + n + 2)
            cap *= 2;
        char *p = realloc(s->data, cap);
        if (!p)
            return false;
        s->data = p;
        s->data_cap = cap;
    }
    memcpy(s->data + s->data_len, v, n);
    s->data_len += n;
    s->data[s->data_len++] = '\n';
    s->data[s->data_len] = '\0';
    return true;
}

/* One line (without its end). Returns false to abort the transfer. */
static bool on_line(sse_state *s, const char *l, size_t n)
{
    if (n == 0) {
        dispatch(s);
        return !s->stop;
    }
    if (l[0] == ':')
        return true; /* a comment: the heartbeat */
    const char *colon = memchr(l, ':', n);
    size_t name = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vn = colon ? n - name - 1 : 0;
    if (vn && *v == ' ')
        v++, vn--;
    if (name == 4 && memcmp(l, "data", 4) == 0)
        return append_data(s, v, vn);
    if (name == 5 && memcmp(l, "event", 5) == 0) {
        if (vn < sizeof s->event) {
            memcpy(s->event, v, vn);
            s->event[vn] = '\0';
        }
    } else if (name == 2 && memcmp(l, "id", 2) == 0) {
        if (vn <= LAST_ID_MAX && !memchr(v, '\0', vn)) {
            memcpy(s->pending_id, v, vn);
            s->pending_id[vn] = '\0';
            s->pending_id_set = true;
        }
    } else if (name == 5 && memcmp(l, "retry", 5) == 0) {
        if (vn && vn <= 9 && strspn(v, "0123456789") >= vn)
            s->retry_ms = strtol(v, NULL, 10);
    }
    return true; /* other fields are ignored, as the format says */
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
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch == '\n' && s->after_cr) {
            s->after_cr = false;
            continue;
        }
        s->after_cr = ch == '\r';
        if (ch == '\n' || ch == '\r') {
            bool go = on_line(s, s->line ? s->line : "", s->line_len);
            s->line_len = 0;
            if (!go)
                return 0;
            continue;
        }
        if (s->line_len + 2 > s->max_line) {
            s->line_too_long = true;
            return 0;
        }
        if (s->line_len + 2 > s->line_cap) {
            size_t cap = s->line_cap ? s->line_cap * 2 : 256;
            char *p = realloc(s->line, cap);
            if (!p)
                return 0;
            s->line = p;
            s->line_cap = cap;
        }
        s->line[s->line_len++] = ch;
        s->line[s->line_len] = '\0';
    }
    return len;
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
        (strlen(opts->last_event_id) > LAST_ID_MAX || strpbrk(opts->last_event_id, "\r\n")))
        return O11Y_EINVAL;
    memset(resp, 0, sizeof *resp);
    size_t url_len = strlen(c->base_url) + strlen(req->path) + 1;
    char *url = malloc(url_len);
    if (!url)
        return O11Y_ENOMEM;
    snprintf(url, url_len, "%s%s", c->base_url, req->path);
    const o11y_trace_ctx *parent = req->trace ? req->trace : o11y_trace_current();
    o11y_trace_ctx base;
    if (!parent)
        o11y_trace_ctx_new(&base);
    else
        base = *parent;
    snprintf(resp->trace_id, sizeof resp->trace_id, "%s", base.trace_id);
    bool repeatable = client_repeatable(get.method, get.idempotency_key != NULL);
    client_answer_headers ah = {0};
    sse_state s = {.opts = opts,
                   .max_line = opts->max_line ? opts->max_line : 1u << 20,
                   .heartbeat_ms = opts->heartbeat_ms ? opts->heartbeat_ms : 15000,
                   .ah = &ah,
                   .retry_ms = -1,
                   .deadline = req->deadline_ms ? client_now_ms() + req->deadline_ms : 1e300};
    if (opts->last_event_id)
        snprintf(s.last_id, sizeof s.last_id, "%s", opts->last_event_id);
    unsigned long long n;
    if (parse_u64(s.last_id, &n)) {
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
        if (hdrs && s.last_id[0]) {
            char line[LAST_ID_MAX + 32];
            snprintf(line, sizeof line, "Last-Event-ID: %s", s.last_id);
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
        s.line_len = s.data_len = 0;
        s.after_cr = s.pending_id_set = false;
        s.event[0] = '\0';
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
        if (s.line_too_long) {
            char m[96];
            snprintf(m, sizeof m, "An event stream line was longer than %zu bytes", s.max_line);
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
            retry = !late && (s.any_id || s.delivered == 0);
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
        double wait = s.retry_ms >= 0 ? (double)s.retry_ms : 1000;
        for (unsigned i = 1; i < failures && wait < 30000; i++)
            wait *= 2;
        if (wait > 30000)
            wait = 30000;
        if (retry_after > wait)
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
    free(s.line);
    free(s.data);
    free(s.err_body);
    free(url);
    return result;
}
