/* client/client.c — the client object and o11y_client_call: attempts with their spans, typed
 * errors, and the retry rules of CONTRACT section 11. */
#include "client/client_internal.h"
#include "o11y/error.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

/*=== the catalog the kit knows: CONTRACT section 1, with a sentence for a person ===*/

typedef struct code_info {
    const char *code;
    bool retryable;
    const char *user_message;
} code_info;

static const code_info codes[] = {
    {"VALIDATION_FAILED", false, "Some of the information is not valid. Check it and try again."},
    {"IDEMPOTENCY_KEY_INVALID", false, "The request could not be sent safely. Try again."},
    {"IDEMPOTENCY_KEY_MISSING", false, "The request could not be sent safely. Try again."},
    {"ORIGIN_NOT_ALLOWED", false, "This application is not allowed to use the service."},
    {"NOT_FOUND", false, "What you asked for does not exist."},
    {"PROJECT_NOT_FOUND", false, "The project does not exist. It may have been deleted."},
    {"EPISODE_NOT_FOUND", false, "The episode does not exist. It may have been deleted."},
    {"GENERATION_NOT_FOUND", false, "The generation does not exist."},
    {"METHOD_NOT_ALLOWED", false, "This action is not available here."},
    {"EPISODE_NUMBER_CONFLICT", false,
     "An episode with this number already exists in the project. Choose another number."},
    {"IDEMPOTENCY_KEY_IN_USE", true, "The same request is still being processed. Wait a moment."},
    {"PAYLOAD_TOO_LARGE", false, "What you sent is too large."},
    {"UNSUPPORTED_MEDIA_TYPE", false,
     "The request was sent in a format the service does not accept."},
    {"IDEMPOTENCY_KEY_REUSED", false,
     "This request was already made with different content. Start it again."},
    {"BUSINESS_RULE_VIOLATION", false, "This action is not allowed in the current state."},
    {"RATE_LIMITED", true, "Too many requests. Wait a moment and try again."},
    {"INTERNAL_ERROR", true, "Something went wrong on our side. Try again later."},
    {"NOT_IMPLEMENTED", false, "The service does not support this request."},
    {"SERVICE_UNAVAILABLE", true, "The service is temporarily unavailable. Try again shortly."},
    {"EPISODE_SAVE_FAILED", true, "The episode could not be saved. Try again shortly."},
    {"GENERATION_QUEUE_FULL", true, "Too many generations are waiting. Try again in a moment."},
    {"LLM_UNAVAILABLE", true, "The script generator is unavailable. Try again later."},
    {"NETWORK_ERROR", true, "The service could not be reached. Check your connection."},
    {"TIMEOUT", true, "The service took too long to answer. Try again."},
};

static const code_info *code_find(const char *code)
{
    for (size_t i = 0; code && i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i].code, code) == 0)
            return &codes[i];
    return NULL;
}

const char *o11y_client_user_message(const char *code, int status)
{
    const code_info *ci = code_find(code);
    if (ci)
        return ci->user_message;
    if (status == 401)
        return "You need to sign in again.";
    if (status == 403)
        return "You are not allowed to do this.";
    if (status == 404)
        return "What you asked for does not exist.";
    if (status == 429)
        return "Too many requests. Wait a moment and try again.";
    if (status >= 400 && status < 500)
        return "The request could not be completed.";
    if (status == 502 || status == 503 || status == 504)
        return "The service is temporarily unavailable. Try again shortly.";
    return "Something went wrong. Try again later.";
}

bool o11y_client_code_retryable(const char *code, int status)
{
    const code_info *ci = code_find(code);
    if (ci)
        return ci->retryable;
    const o11y_error_def *def = code ? o11y_error_lookup(code) : NULL;
    if (def)
        return def->retryable;
    return status == 429 || (status >= 500 && status != 501);
}

/*=== small helpers ===*/

double client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void client_sleep_ms(double ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000),
                          (long)((ms - (double)(int64_t)(ms / 1000) * 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t client_random_below(uint64_t n)
{
    uint64_t r = 0;
    if (n == 0)
        return 0;
    /* Retries are rare: one getrandom each keeps jitter independent across processes that
     * started together (a shared seed would retry in lockstep). */
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint64_t)client_now_ms() * 0x9E3779B97F4A7C15ull;
    return r % n;
}

/* Any wait past this is "far too long" to the caller: its deadline decides. Capping here keeps
 * the seconds-to-milliseconds product in range for every value a server may send (fuzz found a
 * date in the year 2066666518). */
#define RETRY_AFTER_MAX_S (INT64_MAX / 1000)

int64_t client_retry_after_ms(const char *v)
{
    if (!v || !*v)
        return -1;
    if (*v >= '0' && *v <= '9') {
        int64_t s = 0;
        for (; *v >= '0' && *v <= '9'; v++)
            if (s <= RETRY_AFTER_MAX_S)
                s = s * 10 + (*v - '0');
        if (*v)
            return -1;
        return (s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : s) * 1000;
    }
    time_t when = curl_getdate(v, NULL); /* RFC 9110 HTTP-date, and the obsolete forms */
    if (when == -1)
        return -1;
    time_t now = time(NULL);
    if (when <= now)
        return 0;
    int64_t wait_s = (int64_t)when - (int64_t)now;
    return (wait_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : wait_s) * 1000;
}

/*=== the object ===*/

void o11y_client_config_init(o11y_client_config *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof *cfg);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

o11y_status o11y_client_create(const o11y_client_config *cfg, o11y_client **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    if (!cfg || !cfg->base_url)
        return O11Y_EINVAL;
    size_t len = strlen(cfg->base_url);
    if (len > 2048 || strpbrk(cfg->base_url, "?# \t\r\n") ||
        (strncmp(cfg->base_url, "http://", 7) != 0 && strncmp(cfg->base_url, "https://", 8) != 0))
        return O11Y_EINVAL;
    pthread_once(&curl_once, curl_init_once);
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    if (!u)
        return O11Y_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, cfg->base_url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        curl_url_cleanup(u);
        return O11Y_EINVAL;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_cleanup(u);
    o11y_client *c = calloc(1, sizeof *c);
    const char *svc = cfg->service_name ? cfg->service_name : "o11y-client";
    char ua[512];
    snprintf(ua, sizeof ua, "%s o11y-client/%s", svc, O11Y_VERSION_STRING);
    char hostport[300];
    snprintf(hostport, sizeof hostport, "%s%s%s", host, port ? ":" : "", port ? port : "");
    curl_free(host);
    curl_free(port);
    if (!c)
        return O11Y_ENOMEM;
    c->base_url = strndup(cfg->base_url, len - (len && cfg->base_url[len - 1] == '/'));
    c->user_agent = strdup(cfg->user_agent ? cfg->user_agent : ua);
    c->host = strdup(hostport);
    c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000;
    c->attempt_timeout_ms = cfg->attempt_timeout_ms ? cfg->attempt_timeout_ms : 30000;
    c->deadline_ms = cfg->deadline_ms ? cfg->deadline_ms : 60000;
    c->max_attempts = cfg->max_attempts ? cfg->max_attempts : 4;
    c->backoff_base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : 200;
    c->backoff_cap_ms = cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 10000;
    c->logger = cfg->logger;
    c->user_message = cfg->user_message;
    c->user_message_ctx = cfg->user_message_ctx;
    c->log_level = cfg->log_level;
    pthread_mutex_init(&c->lock, NULL);
    if (!c->base_url || !c->user_agent || !c->host) {
        o11y_client_destroy(c);
        return O11Y_ENOMEM;
    }
    if (cfg->metrics) {
        static const char *const labels[] = {"method", "host", "status"};
        static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                         0.5,   0.75, 1,     2.5,  5,     7.5, 10};
        o11y_metric_opts mo = {.name = "http_client_request_duration_seconds",
                               .help = "Duration of outgoing HTTP requests (one per attempt)",
                               .type = O11Y_HISTOGRAM,
                               .label_names = labels,
                               .n_labels = 3,
                               .buckets = buckets,
                               .n_buckets = sizeof buckets / sizeof buckets[0],
                               .flags = O11Y_METRIC_WINDOWS | O11Y_METRIC_EXEMPLARS};
        o11y_status st = o11y_metric_register_or_get(cfg->metrics, &mo, &c->duration);
        if (st != O11Y_OK) {
            o11y_client_destroy(c);
            return st;
        }
    }
    *out = c;
    return O11Y_OK;
}

void o11y_client_destroy(o11y_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_idle; i++)
        curl_easy_cleanup(c->idle[i]);
    pthread_mutex_destroy(&c->lock);
    free(c->base_url);
    free(c->user_agent);
    free(c->host);
    free(c);
}

CURL *client_take_handle(o11y_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->n_idle)
        h = c->idle[--c->n_idle];
    pthread_mutex_unlock(&c->lock);
    if (h)
        curl_easy_reset(h); /* keeps the handle's live connections */
    else
        h = curl_easy_init();
    return h;
}

void client_give_handle(o11y_client *c, CURL *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->n_idle < CLIENT_POOL_MAX) {
        c->idle[c->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    curl_easy_cleanup(h);
}

/*=== one attempt ===*/

void client_attempt_span(const o11y_trace_ctx *parent, const o11y_trace_ctx *base,
                         o11y_trace_ctx *out)
{
    o11y_trace_ctx_child(parent ? parent : base, out);
    if (!parent)
        out->parent_span_id[0] = '\0';
}

static struct curl_slist *add(struct curl_slist *h, const char *name, const char *value)
{
    if (!h)
        return NULL;
    size_t nl = strlen(name), vl = strlen(value), n = nl + vl + 3;
    char stack[512];
    char *line = n <= sizeof stack ? stack : malloc(n);
    if (!line) {
        curl_slist_free_all(h);
        return NULL;
    }
    memcpy(line, name, nl);
    memcpy(line + nl, ": ", 2);
    memcpy(line + nl + 2, value, vl + 1);
    struct curl_slist *r = curl_slist_append(h, line);
    if (line != stack)
        free(line);
    if (!r)
        curl_slist_free_all(h);
    return r;
}

static bool has_header(const char *const *lines, const char *name)
{
    size_t n = strlen(name);
    for (; lines && *lines; lines++)
        if (strncasecmp(*lines, name, n) == 0 && (*lines)[n] == ':')
            return true;
    return false;
}

struct curl_slist *client_headers(const o11y_client *c, const o11y_client_request *req,
                                  const o11y_trace_ctx *span, const char *accept)
{
    (void)c;
    struct curl_slist *h = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    h = add(h, "Accept", accept);
    h = add(h, "X-Trace-Id", span->trace_id);
    char tp[O11Y_TRACEPARENT_LEN + 1];
    o11y_trace_format_traceparent(span, tp);
    h = add(h, "traceparent", tp);
    if (span->job_id_len)
        h = add(h, "X-Job-Id", span->job_id);
    if (span->project_id_len)
        h = add(h, "X-Project-Id", span->project_id);
    char carried[O11Y_TRACE_CARRIED_MAX + 1];
    if (req->tracestate && o11y_tracestate_normalize(req->tracestate, strlen(req->tracestate),
                                                     carried, sizeof carried))
        h = add(h, "tracestate", carried);
    if (req->baggage &&
        o11y_baggage_normalize(req->baggage, strlen(req->baggage), carried, sizeof carried))
        h = add(h, "baggage", carried);
    if (req->body && !has_header(req->headers, "Content-Type"))
        h = add(h, "Content-Type", "application/json");
    if (req->idempotency_key)
        h = add(h, "Idempotency-Key", req->idempotency_key);
    for (const char *const *x = req->headers; h && x && *x; x++) {
        struct curl_slist *r = curl_slist_append(h, *x);
        if (!r)
            curl_slist_free_all(h);
        h = r;
    }
    return h;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= cap)
        n = 0; /* too long to be valid: as if absent */
    memcpy(dst, v, n);
    dst[n] = '\0';
}

size_t client_on_header(char *data, size_t size, size_t n, void *ctx)
{
    client_answer_headers *ah = ctx;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        memset(ah, 0, sizeof *ah); /* a new response (after a 1xx): only the last one counts */
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t name = (size_t)(colon - data), vlen = len - name - 1;
    if (name == 10 && strncasecmp(data, "X-Trace-Id", 10) == 0) {
        copy_value(ah->trace_id, sizeof ah->trace_id, colon + 1, vlen);
        if (!o11y_trace_id_valid(ah->trace_id, strlen(ah->trace_id)))
            ah->trace_id[0] = '\0'; /* never keep what a proxy could have forged */
    } else if (name == 11 && strncasecmp(data, "Retry-After", 11) == 0) {
        copy_value(ah->retry_after, sizeof ah->retry_after, colon + 1, vlen);
    } else if (name == 12 && strncasecmp(data, "Content-Type", 12) == 0) {
        copy_value(ah->content_type, sizeof ah->content_type, colon + 1, vlen);
    }
    return len;
}

typedef struct body_buf {
    char *p;
    size_t len, cap;
    bool too_large;
} body_buf;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    body_buf *b = ctx;
    size_t len = size * n;
    if (b->len + len + 1 > CLIENT_BODY_MAX) {
        b->too_large = true;
        return 0;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return len;
}

static char *dup_text(const char *s)
{
    return s ? strdup(s) : NULL;
}

void client_type_error(const o11y_client *c, o11y_client_error *err, int status, const char *body,
                       size_t body_len, CURLcode rc, const char *why,
                       const client_answer_headers *ah, const char *sent_trace_id)
{
    free(err->message);
    free(err->details);
    memset(err, 0, sizeof *err);
    err->status = status;
    const char *trace = ah && ah->trace_id[0] ? ah->trace_id : sent_trace_id;
    snprintf(err->trace_id, sizeof err->trace_id, "%s", trace ? trace : "");
    if (status == 0) {
        bool timeout = rc == CURLE_OPERATION_TIMEDOUT;
        snprintf(err->code, sizeof err->code, "%s", timeout ? "TIMEOUT" : "NETWORK_ERROR");
        if (why)
            err->message = strdup(why);
        else
            err->message = strdup(timeout ? "The request timed out" : curl_easy_strerror(rc));
    } else {
        json_t *j = body && body_len ? json_loadb(body, body_len, 0, NULL) : NULL;
        json_t *e = json_object_get(j, "error");
        json_t *src = json_is_object(e) ? e : j; /* the envelope, or problem details */
        const char *code = json_string_value(json_object_get(src, "code"));
        bool valid = code && *code && strlen(code) < sizeof err->code &&
                     strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(code);
        if (valid) {
            snprintf(err->code, sizeof err->code, "%s", code);
            const char *msg = json_string_value(json_object_get(src, "message"));
            if (!msg)
                msg = json_string_value(json_object_get(src, "detail"));
            if (!msg)
                msg = json_string_value(json_object_get(src, "title"));
            const o11y_error_def *def = msg ? NULL : o11y_error_lookup(err->code);
            if (!msg && def)
                msg = def->message;
            char fallback[32];
            if (!msg) { /* a server that names a code and no message: still something to show */
                snprintf(fallback, sizeof fallback, "HTTP %d", status);
                msg = fallback;
            }
            err->message = dup_text(msg);
            json_t *details = json_object_get(src, "details");
            if (json_is_object(details))
                err->details = json_dumps(details, JSON_COMPACT);
            const char *t = json_string_value(json_object_get(src, "traceId"));
            if (t && o11y_trace_id_valid(t, strlen(t)))
                snprintf(err->trace_id, sizeof err->trace_id, "%s", t);
            const char *ts = json_string_value(json_object_get(src, "timestamp"));
            if (ts && strlen(ts) < sizeof err->timestamp)
                snprintf(err->timestamp, sizeof err->timestamp, "%s", ts);
        } else {
            /* Not the contract's JSON (a proxy's HTML page, a truncated body): the status is
             * all there is. */
            snprintf(err->code, sizeof err->code, "HTTP_%d", status);
            char m[64];
            snprintf(m, sizeof m, "HTTP %d", status);
            err->message = strdup(m);
        }
        json_decref(j);
    }
    err->retryable = o11y_client_code_retryable(err->code, status);
    const char *um =
        c->user_message ? c->user_message(err->code, status, c->user_message_ctx) : NULL;
    err->user_message = um ? um : o11y_client_user_message(err->code, status);
}

const char *client_outcome(const o11y_client_error *e, int status)
{
    if (status)
        return "response";
    return strcmp(e->code, "TIMEOUT") == 0 ? "timeout" : "network_error";
}

void client_observe(o11y_client *c, const char *event, const o11y_client_request *req,
                    const char *method, o11y_trace_ctx *span, int status, const char *code,
                    const char *outcome, unsigned attempt, double ms)
{
    char st[16];
    if (status)
        snprintf(st, sizeof st, "%d", status);
    else
        snprintf(st, sizeof st, "%s", strcmp(code, "TIMEOUT") == 0 ? "timeout" : "error");
    o11y_trace_ctx *prev = o11y_trace_set_current(span);
    if (c->duration) {
        const char *values[] = {method, c->host, st};
        o11y_series *s = NULL;
        if (o11y_metric_series(c->duration, values, &s) == O11Y_OK)
            o11y_histogram_observe(s, ms / 1e3);
    }
    /* The route is the path without its query (which may carry anything). */
    size_t route_len = strcspn(req->path, "?#");
    bool ok = status >= 200 && status <= 299;
    o11y_log_level level = c->log_level ? c->log_level : ok ? O11Y_LOG_INFO : O11Y_LOG_WARN;
    o11y_log_va(c->logger, level, event,
                strcmp(event, "http_client_retry") == 0 ? "outgoing call attempt failed; retrying"
                                                        : "outgoing call completed",
                O11Y_STR("method", method), O11Y_STR("host", c->host),
                O11Y_STRN("route", req->path, route_len), O11Y_INT("status", status),
                O11Y_STR("code", code[0] ? code : NULL), O11Y_STR("outcome", outcome),
                O11Y_INT("attempt", attempt), O11Y_DURATION_MS(ms), O11Y__END);
    o11y_trace_set_current(prev);
}

/*=== the call ===*/

enum { ATTEMPT_MIN_MS = 50 };

bool client_repeatable(const char *m, bool has_key)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "PUT") == 0 ||
           strcmp(m, "DELETE") == 0 || strcmp(m, "OPTIONS") == 0 ||
           (has_key && (strcmp(m, "POST") == 0 || strcmp(m, "PATCH") == 0));
}

/* The answers CONTRACT section 11 retries; other retryable codes (500) are reported as such but
 * not repeated by the kit. */
bool client_answer_retried(const o11y_client_error *e)
{
    if (e->status == 0)
        return true;
    if (e->status == 409)
        return strcmp(e->code, "IDEMPOTENCY_KEY_IN_USE") == 0;
    return e->status == 429 || e->status == 502 || e->status == 503 || e->status == 504;
}

static bool key_valid(const char *k)
{
    size_t n = 0;
    for (; k[n]; n++)
        if ((unsigned char)k[n] < 0x20 || (unsigned char)k[n] > 0x7e)
            return false;
    return n >= 1 && n <= O11Y_CLIENT_KEY_MAX;
}

bool client_request_valid(const o11y_client_request *req)
{
    if (!req || !req->method || !req->path || req->path[0] != '/' ||
        strpbrk(req->path, " \t\r\n") || strlen(req->path) > 8192)
        return false;
    size_t m = strlen(req->method);
    if (m == 0 || m > 16 || strspn(req->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != m)
        return false;
    if (req->idempotency_key && !key_valid(req->idempotency_key))
        return false;
    for (const char *const *h = req->headers; h && *h; h++)
        if (strpbrk(*h, "\r\n") || !strchr(*h, ':'))
            return false;
    return true;
}

char *client_begin(const o11y_client *c, const o11y_client_request *req, o11y_client_response *resp,
                   const o11y_trace_ctx **parent, o11y_trace_ctx *base)
{
    memset(resp, 0, sizeof *resp);
    size_t url_len = strlen(c->base_url) + strlen(req->path) + 1;
    char *url = malloc(url_len);
    if (!url)
        return NULL;
    snprintf(url, url_len, "%s%s", c->base_url, req->path);
    *parent = req->trace ? req->trace : o11y_trace_current();
    if (*parent)
        *base = **parent;
    else
        o11y_trace_ctx_new(base);
    snprintf(resp->trace_id, sizeof resp->trace_id, "%s", base->trace_id);
    return url;
}

o11y_status o11y_client_call(o11y_client *c, const o11y_client_request *req,
                             o11y_client_response *resp)
{
    if (!c || !resp || !client_request_valid(req))
        return O11Y_EINVAL;
    const o11y_trace_ctx *parent;
    o11y_trace_ctx base;
    char *url = client_begin(c, req, resp, &parent, &base);
    if (!url)
        return O11Y_ENOMEM;
    bool repeatable = client_repeatable(req->method, req->idempotency_key != NULL);
    double deadline = client_now_ms() + (req->deadline_ms ? req->deadline_ms : c->deadline_ms);
    size_t body_len = req->body ? (req->body_len ? req->body_len : strlen(req->body)) : 0;
    o11y_status result = O11Y_EBACKEND;
    for (unsigned attempt = 1;; attempt++) {
        o11y_trace_ctx span;
        client_attempt_span(parent, &base, &span);
        CURL *h = client_take_handle(c);
        struct curl_slist *hdrs =
            h ? client_headers(c, req, &span, req->accept ? req->accept : "application/json")
              : NULL;
        if (!hdrs) {
            client_give_handle(c, h);
            free(url);
            o11y_client_response_clear(resp);
            return O11Y_ENOMEM;
        }
        body_buf body = {0};
        client_answer_headers ah = {0};
        double remaining = deadline - client_now_ms();
        long timeout =
            (long)(remaining < c->attempt_timeout_ms ? remaining : c->attempt_timeout_ms);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        if (strcmp(req->method, "HEAD") == 0)
            curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        if (req->body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, client_on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &ah);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout > 1 ? timeout : 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        double t0 = client_now_ms();
        CURLcode rc = curl_easy_perform(h);
        double ms = client_now_ms() - t0;
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdrs);
        client_give_handle(c, h);
        resp->attempts = attempt;
        free(resp->body);
        free(resp->content_type);
        resp->body = body.p;
        resp->body_len = body.len;
        resp->content_type = ah.content_type[0] ? strdup(ah.content_type) : NULL;
        resp->status = rc == CURLE_OK ? (int)status : 0;
        if (ah.trace_id[0])
            snprintf(resp->trace_id, sizeof resp->trace_id, "%s", ah.trace_id);
        if (rc == CURLE_OK && status >= 200 && status <= 299) {
            free(resp->error.message);
            free(resp->error.details);
            memset(&resp->error, 0, sizeof resp->error);
            client_observe(c, "http_client_request", req, req->method, &span, (int)status, "",
                           "response", attempt, ms);
            result = O11Y_OK;
            break;
        }
        const char *why = body.too_large             ? "The response was larger than 64 MiB"
                          : rc == CURLE_PARTIAL_FILE ? "The response was cut short"
                                                     : NULL;
        client_type_error(c, &resp->error, rc == CURLE_OK ? (int)status : 0, body.p, body.len, rc,
                          why, &ah, span.trace_id);
        /* Retry only what the contract retries, only when repeating is safe, and only when the
         * wait leaves the deadline room for another attempt. */
        double wait = -1;
        if (repeatable && client_answer_retried(&resp->error) && attempt < c->max_attempts) {
            uint64_t ceiling = (uint64_t)c->backoff_base_ms
                               << (attempt - 1 < 20 ? attempt - 1 : 20);
            if (ceiling > c->backoff_cap_ms)
                ceiling = c->backoff_cap_ms;
            wait = (double)client_random_below(ceiling);
            int64_t ra = client_retry_after_ms(ah.retry_after);
            if ((double)ra > wait)
                wait = (double)ra;
            /* An attempt needs some time of its own: one that could have less than
             * ATTEMPT_MIN_MS before the deadline is not started. */
            if (client_now_ms() + wait + ATTEMPT_MIN_MS > deadline)
                wait = -1;
        }
        client_observe(c, wait >= 0 ? "http_client_retry" : "http_client_request", req, req->method,
                       &span, resp->status, resp->error.code,
                       client_outcome(&resp->error, resp->status), attempt, ms);
        if (wait < 0)
            break;
        client_sleep_ms(wait);
    }
    free(url);
    return result;
}

void o11y_client_response_clear(o11y_client_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    free(resp->content_type);
    free(resp->error.message);
    free(resp->error.details);
    memset(resp, 0, sizeof *resp);
}
