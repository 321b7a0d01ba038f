/* client/client_internal.h — what the call path (client.c) and the event stream (sse.c) share:
 * the client object, its pool of libcurl handles, one attempt's headers, and the typed error. */
#ifndef O11Y_CLIENT_INTERNAL_H
#define O11Y_CLIENT_INTERNAL_H

#include "o11y/client.h"

#include <curl/curl.h>
#include <pthread.h>

enum { CLIENT_POOL_MAX = 32, CLIENT_BODY_MAX = 64 << 20 };

struct o11y_client {
    char *base_url;
    char *user_agent;
    char *host; /* for the metric label and log lines: never the URL (it may hold credentials) */
    unsigned connect_timeout_ms, attempt_timeout_ms, deadline_ms;
    unsigned max_attempts, backoff_base_ms, backoff_cap_ms;
    o11y_logger *logger;
    o11y_client_user_message_fn user_message;
    void *user_message_ctx;
    o11y_log_level log_level; /* 0: by outcome */
    o11y_metric *duration;    /* NULL without a registry */
    /* Idle handles: a handle keeps its connections, so taking one back reuses a kept-alive
     * connection without a shared cache and its locks. */
    pthread_mutex_t lock;
    CURL *idle[CLIENT_POOL_MAX];
    size_t n_idle;
};

/* A pooled handle, reset; NULL when out of memory. */
CURL *client_take_handle(o11y_client *c);
void client_give_handle(o11y_client *c, CURL *h);

/* One attempt's span: a child of parent, or (no parent) a root span in base's trace. */
void client_attempt_span(const o11y_trace_ctx *parent, const o11y_trace_ctx *base,
                         o11y_trace_ctx *out);

/* The request headers of one attempt: trace headers from span, the carried tracestate/baggage,
 * User-Agent is set on the handle. NULL when out of memory. */
struct curl_slist *client_headers(const o11y_client *c, const o11y_client_request *req,
                                  const o11y_trace_ctx *span, const char *accept);

/* What an answer's headers said (only the last response's, after 1xx or redirects). */
typedef struct client_answer_headers {
    char trace_id[O11Y_TRACE_ID_MAX + 1];
    char retry_after[64];
    char content_type[128];
} client_answer_headers;
size_t client_on_header(char *data, size_t size, size_t n, void *ctx);

/* Fills err for an answer (status > 0, body may be NULL) or a transfer failure (status 0, rc
 * not CURLE_OK). sent_trace_id is the fallback trace id. */
void client_type_error(const o11y_client *c, o11y_client_error *err, int status, const char *body,
                       size_t body_len, CURLcode rc, const char *why,
                       const client_answer_headers *ah, const char *sent_trace_id);

/* What every call starts with: resp zeroed, the URL (malloc'd; NULL when out of memory), the
 * parent context (req->trace, else the thread's current one, else NULL with base a new trace;
 * otherwise base is a copy of the parent) and resp->trace_id from it. */
char *client_begin(const o11y_client *c, const o11y_client_request *req, o11y_client_response *resp,
                   const o11y_trace_ctx **parent, o11y_trace_ctx *base);

/* Whether the contract retries this error (409 IN_USE, 429, 502, 503, 504, no answer). */
bool client_answer_retried(const o11y_client_error *e);

/* Records one attempt in the histogram and writes its log line in its span. outcome:
 * "response", "timeout", "network_error" or "cancelled". */
void client_observe(o11y_client *c, const char *event, const o11y_client_request *req,
                    const char *method, o11y_trace_ctx *span, int status, const char *code,
                    const char *outcome, unsigned attempt, double ms);
/* The outcome of an attempt that ended with this error (code "" for a 2xx). */
const char *client_outcome(const o11y_client_error *e, int status);
/* Method, path, key and extra headers are well-formed. */
bool client_request_valid(const o11y_client_request *req);
/* Whether a method may be repeated (CONTRACT section 11). */
bool client_repeatable(const char *method, bool has_key);

/* Milliseconds on the monotonic clock. */
double client_now_ms(void);
/* Retry-After as milliseconds from now (seconds or HTTP-date; a past date is 0); -1 when absent
 * or not valid. */
int64_t client_retry_after_ms(const char *value);
/* Sleeps ms milliseconds (through EINTR). */
void client_sleep_ms(double ms);
/* A uniformly random number in [0, n). */
uint64_t client_random_below(uint64_t n);

#endif
