/* http/http_internal.h — the pipeline's types and the stages an adapter drives. */
#ifndef O11Y_HTTP_INTERNAL_H
#define O11Y_HTTP_INTERNAL_H

#include "core/internal.h"
#include "idempotency/api.h"
#include "o11y/error.h"
#include "o11y/health.h"
#include "o11y/http.h"
#include "o11y/idempotency.h"
#include "o11y/metrics.h"

#include <pthread.h>
#include <stdatomic.h>

enum {
    O11Y__MAX_PARAMS = 8,
    O11Y__MAX_SEGMENTS = 32,
    O11Y__MAX_ROUTES = 256,
    O11Y__N_METHODS = 7, /* bits of o11y_method */
    O11Y__MAX_RES_HEADERS = 16,
};

enum { O11Y__STAT_METHODS = O11Y__N_METHODS + 1, O11Y__STATUS_CACHE = 8 };

/* A route's metric series, resolved once (at registration for its methods, on first use for the
 * rest); index O11Y__N_METHODS stands for methods outside the table (_OTHER). */
typedef struct o11y__route_stats {
    _Atomic(o11y_series *) duration[O11Y__STAT_METHODS];
    _Atomic(o11y_series *) errors[O11Y__STAT_METHODS][2]; /* 4xx, 5xx */
    struct {
        atomic_int status;
        _Atomic(o11y_series *) series;
    } requests[O11Y__STAT_METHODS][O11Y__STATUS_CACHE];
} o11y__route_stats;

typedef struct o11y__route {
    char *template;
    size_t template_len;
    char *segments[O11Y__MAX_SEGMENTS]; /* "" for a parameter */
    size_t segment_lens[O11Y__MAX_SEGMENTS];
    char *param_names[O11Y__MAX_PARAMS];
    uint8_t param_at[O11Y__MAX_SEGMENTS]; /* segment -> 1 + parameter index, 0: literal */
    size_t n_segments, n_params;
    /* 1 + the index of the service's project and job parameters, 0: the route has none
     * (found once here, not by name on every request) */
    uint8_t project_param_at, job_param_at;
    unsigned methods;
    o11y_handler_fn handlers[O11Y__N_METHODS];
    void *users[O11Y__N_METHODS];
    unsigned flags[O11Y__N_METHODS];
    char allow[64]; /* the Allow header value */
    o11y__route_stats stats;
} o11y__route;

/* The idempotency stage's outcomes: the label values of o11y_idempotency_requests_total. */
typedef enum o11y__idem_outcome {
    O11Y__IDEM_OUTCOME_NEW,
    O11Y__IDEM_OUTCOME_REPLAYED,
    O11Y__IDEM_OUTCOME_IN_USE,
    O11Y__IDEM_OUTCOME_REUSED,
    O11Y__IDEM_OUTCOME_INVALID,
    O11Y__IDEM_OUTCOME_MISSING,
    O11Y__IDEM_OUTCOME_STORE_ERROR,
    O11Y__IDEM_OUTCOME_STATUS_ONLY,
    O11Y__IDEM_OUTCOMES
} o11y__idem_outcome;
extern const char *const o11y__idem_outcome_names[O11Y__IDEM_OUTCOMES];

typedef struct o11y__ratelimit o11y__ratelimit; /* ratelimit_stage.c */

enum { O11Y__LIST_TRACESTATE = 0, O11Y__LIST_BAGGAGE = 1 };

typedef struct o11y__cors o11y__cors;
typedef struct o11y__client_logs o11y__client_logs;

struct o11y_service {
    char *name, *version, *problem_base, *project_param, *job_param;
    char *service_header; /* X-Service value */
    size_t service_header_len;
    o11y_logger *logger;
    bool owns_logger, access_log;
    size_t max_body;
    o11y__route *routes[O11Y__MAX_ROUTES];
    size_t n_routes;
    atomic_long active_requests;
    int64_t started_ns; /* CLOCK_REALTIME */
    o11y_metrics *metrics;
    bool owns_metrics;
    o11y_metric *m_requests, *m_duration, *m_errors, *m_operation, *m_operation_errors,
        *m_operation_client_errors;
    o11y_series *s_active;
    o11y__route_stats unmatched;
    o11y_health *health;
    pthread_mutex_t streams_lock;
    o11y_stream *streams;  /* open streamed responses */
    o11y_idem_config idem; /* idem.store NULL: idempotency off */
    char *idem_client_header;
    o11y__ratelimit *ratelimit;     /* NULL: no rate limiting */
    o11y__cors *cors;               /* NULL: no CORS headers, preflights are 405 */
    o11y__client_logs *client_logs; /* the frontend log intake's settings, NULL: off */
    o11y_metric *m_idem;
    o11y_series *s_idem[O11Y__IDEM_OUTCOMES];
};

/* Registers GET /health, /health/live and /health/ready. */
o11y_status o11y__service_health_routes(o11y_service *svc);

/* Registers the service's metrics (HTTP, process, log, build info, operations) and the
 * /metrics and /metrics/summary routes. */
o11y_status o11y__service_metrics_init(o11y_service *svc, bool routes);
/* Resolves a route's series for the methods it serves. */
void o11y__route_stats_prepare(o11y_service *svc, o11y__route *r);
/* Records one finished request. */
void o11y__record_request(o11y_service *svc, const o11y__route *r, o11y_method method, int status,
                          double seconds);
/* Sets the response body, taking ownership of body (freed with o11y__free). */
void o11y__res_body_owned(o11y_response *res, int status, const char *content_type, char *body,
                          size_t len);

typedef o11y_str (*o11y__header_fn)(void *ctx, const char *name);

/* The request headers the pipeline itself reads, gathered by the adapter in one pass. */
typedef struct o11y__std_headers {
    o11y_str x_trace_id, traceparent, x_job_id, x_project_id;
    o11y_str accept, content_type;
    int64_t content_length; /* -1: absent (chunked or no body) */
    bool transfer_encoding;
    o11y_str transfer_coding;    /* the first Transfer-Encoding value */
    unsigned transfer_encodings; /* header lines seen */
    bool space_before_colon;     /* a header name ending in blanks (RFC 9112 section 5.1) */
    bool conflicting_length;     /* two Content-Length values that differ */
    bool malformed_length;       /* a Content-Length that is not digits */
    o11y_str idempotency_key;
    unsigned idempotency_keys; /* header lines seen: two or more is invalid */
    unsigned traceparents;     /* header lines seen: two or more is invalid (W3C) */
    /* tracestate and baggage are lists: several lines are one list (RFC 9110 section 5.3) */
    o11y_str lists[2][8]; /* O11Y__LIST_TRACESTATE, O11Y__LIST_BAGGAGE */
    uint8_t list_lines[2];
    o11y_str origin, acr_method; /* Origin, Access-Control-Request-Method */
} o11y__std_headers;

/* Fills h from one header (name case-insensitive); other names are ignored. */
void o11y__std_headers_add(o11y__std_headers *h, const char *name, size_t name_len,
                           const char *value, size_t value_len);

/* A streamed response: shared by the adapter (one reference until the connection ends) and the
 * handler's side (one reference until o11y_stream_release). */
struct o11y_stream {
    pthread_mutex_t lock;
    int refs;
    bool suspended;    /* the connection sleeps: wake must resume it */
    bool wake_pending; /* a wake arrived while the reader ran: do not sleep */
    bool over;         /* done has been called */
    bool closing;      /* the server is stopping: end the stream */
    bool end_known;    /* end was decided before the connection ended */
    o11y_stream_end end;
    o11y_stream_read_fn read;
    o11y_stream_done_fn done;
    void *ctx;
    uint64_t bytes;     /* written so far, for the access line */
    char farewell[256]; /* sent once when the server stops the stream */
    size_t farewell_len;
    bool farewell_sent;
    /* Set by the adapter. */
    void *conn;
    void (*suspend)(void *conn);
    void (*resume)(void *conn);
    int fd; /* the connection's socket, -1 if unknown */
    /* o11y_stream_server_attach: finishing waits until no resume is running, so an adapter may
     * free its connection state once the stream has ended (libmicrohttpd's own lock keeps
     * that adapter safe without it). */
    bool sync_end;
    int resuming;
    pthread_cond_t resumed;
    size_t max_unsent_bytes;         /* 0: no bound */
    struct o11y_stream *next, *prev; /* the service's open streams */
    o11y_service *svc;
};

/* Called by the adapter's reader: the bytes, 0 after putting the connection to sleep, -1 at the
 * end. */
long o11y__stream_read(o11y_stream *s, char *buf, size_t max);
/* The connection is over: calls done once and drops the adapter's reference. end is what the
 * server saw; a reason decided earlier (the stream's own end, too slow, stopping) wins. */
void o11y__stream_finish(o11y_stream *s, o11y_stream_end end);
/* Decides how the stream ends, before the adapter closes the connection. */
void o11y__stream_set_end(o11y_stream *s, o11y_stream_end end);
/* Hands the stream to the adapter's connection (and lists it among the service's streams). */
void o11y__stream_attach(o11y_stream *s, o11y_service *svc, void *conn, void (*suspend)(void *),
                         void (*resume)(void *));
/* Ends every open stream of the service (stopping): their connections end after a last read. */
void o11y__streams_close_all(o11y_service *svc);

struct o11y_response {
    int status;
    o11y_stream *stream; /* a streamed response (the adapter takes it over) */
    bool answered;
    char *body; /* owned, or body_room */
    size_t body_len;
    char *body_room; /* the exchange's O11Y__BODY_INLINE bytes for a small body */
    char content_type[96];
    const o11y_error_def *error; /* the catalog entry answered, or NULL */
    char *error_message;         /* owned */
    struct json_t *error_details;
    struct json_t *field_errors;
    o11y__buf headers; /* o11y__res_header_put's records */
    size_t n_headers;
    const char *allow;            /* for 405 */
    bool close;                   /* ask the adapter to close the connection after the response */
    size_t field_errors_left_out; /* past O11Y__MAX_FIELD_ERRORS (CONTRACT section 1) */
};

/* A response header is kept as its two lengths (2 bytes each, as the list is at most 16 KiB),
 * then "Name\0Value\0": the adapters get both lengths without a strlen each (five headers a
 * request, 300 instructions). All or nothing: false when the list is full. */
static inline bool o11y__res_header_put(o11y_response *res, const char *name, size_t name_len,
                                        const char *value, size_t value_len)
{
    o11y__buf *h = &res->headers;
    size_t need = 4 + name_len + 1 + value_len + 1;
    if (name_len > UINT16_MAX || value_len > UINT16_MAX || !o11y__buf_reserve(h, need)) {
        h->overflow = false; /* the list stays as it was */
        return false;
    }
    char *p = h->ptr + h->len;
    uint16_t lens[2] = {(uint16_t)name_len, (uint16_t)value_len};
    memcpy(p, lens, sizeof lens);
    memcpy(p + 4, name, name_len);
    p[4 + name_len] = '\0';
    memcpy(p + 5 + name_len, value, value_len);
    p[5 + name_len + value_len] = '\0';
    h->len += need;
    res->n_headers++;
    return true;
}

/* The header at *cursor (0 for the first), and *cursor moved past it; false past the last. */
static inline bool o11y__res_header_next(const o11y_response *res, size_t *cursor, o11y_str *name,
                                         o11y_str *value)
{
    const o11y__buf *h = &res->headers;
    if (*cursor + 4 > h->len)
        return false;
    const char *p = h->ptr + *cursor;
    uint16_t lens[2];
    memcpy(lens, p, sizeof lens);
    *name = (o11y_str){p + 4, lens[0]};
    *value = (o11y_str){p + 4 + lens[0] + 1, lens[1]};
    *cursor += 4 + (size_t)lens[0] + 1 + lens[1] + 1;
    return true;
}

enum { O11Y__MAX_FIELD_ERRORS = 100 };

struct o11y_request {
    o11y_service *svc;
    o11y_method method;
    char method_name[16];
    char *uri; /* owned copy of the request target */
    size_t path_len;
    const char *query;
    size_t query_len;
    const o11y__route *route;
    int method_index;
    o11y_str params[O11Y__MAX_PARAMS];
    o11y__arena arena; /* decoded parameters and query values */
    o11y__buf body;
    bool body_too_large;
    bool answer_now; /* answer before reading the body, then close the connection */
    o11y_trace_ctx trace;
    o11y_trace_ctx *prev_trace;
    int64_t start_ns, handler_start_ns, handler_end_ns;
    o11y__header_fn get_header;
    void *header_ctx;
    struct json_t *json;
    o11y_str accept; /* the Accept header: negotiated only when an error is rendered */
    bool counted_active;
    uint8_t peer[16]; /* the peer's address: 4 bytes (IPv4) or 16 (IPv6) */
    uint8_t peer_len; /* 0: unknown */
    /* Idempotency: the key's scope id (when a key came), the fingerprint, our lock. */
    o11y_idem_key idem;
    size_t idem_key_len;
    uint8_t idem_fp[O11Y_IDEM_FP_BYTES];
    uint64_t idem_token;
    bool idem_held;
    /* tracestate / baggage sent in several lines, joined with ',' (NULL ptr: one line or none,
     * read through get_header). */
    o11y_str joined[2];
    /* CORS: the allowed origin as configured (NULL: none or not allowed), a preflight. */
    const char *cors_origin;
    bool preflight, preflight_ok;
};

enum {
    O11Y__URI_INLINE = 512,
    O11Y__HEADERS_INLINE = 512,
    O11Y__ARENA_INLINE = 256,
    O11Y__BODY_INLINE = 1024,
};

/* Frees the response's body unless it is in the exchange's own room. */
static inline void o11y__res_body_free(o11y_response *res)
{
    if (res->body != res->body_room)
        o11y__free(res->body);
    res->body = NULL;
}

/* A request and its response, allocated together for one exchange, and recycled through a
 * per-thread cache: a request costs no malloc in the steady state. */
typedef struct o11y__exchange {
    o11y_request req;
    o11y_response res;
    /* The adapter's own per-request state. */
    bool started, responded;
    bool timed_out;     /* o11y_exchange_timed_out: never answered, 408 */
    bool fallback;      /* answered by an application's own handler (o11y_mhd_embed) */
    void *fallback_cls; /* that handler's req_cls */
    uint64_t bytes_sent;
    o11y__std_headers std; /* gathered header by header (o11y_exchange_add_header) */
    struct o11y__exchange *next_free;
    /* Not cleared between uses: written before read. */
    char uri_inline[O11Y__URI_INLINE];
    char headers_inline[O11Y__HEADERS_INLINE];
    char arena_inline[O11Y__ARENA_INLINE];
    char body_inline[O11Y__BODY_INLINE]; /* res.body_room: a small body needs no malloc */
} o11y__exchange;

/* Creates an exchange for the request target uri (copied). NULL on ENOMEM. */
o11y__exchange *o11y__exchange_new(o11y_service *svc, const char *uri, size_t uri_len);
/* Releases everything the exchange holds and returns it to the calling thread's cache. */
void o11y__exchange_free(o11y__exchange *ex);

/* Records the peer's address (a struct sockaddr of AF_INET or AF_INET6; others are ignored). */
void o11y__req_set_peer(o11y_request *req, const void *sockaddr);

/* Stage 1, once the headers are in: trace context, routing, limits. get_header serves the
 * handler's o11y_req_header calls. Returns true when the response is final already (404, 405,
 * 413, 415, 400). */
bool o11y__pipeline_begin(o11y__exchange *ex, const char *method, const o11y__std_headers *std,
                          o11y__header_fn get_header, void *header_ctx);
/* Stage 2, for each piece of body: buffers it up to the limit. Returns false once the body is
 * over the limit (the response is then 413; later pieces are discarded). */
bool o11y__pipeline_body(o11y__exchange *ex, const char *data, size_t len);
/* Stage 3: runs the handler (unless the response is final) and completes the response: error
 * rendering and the standard headers. */
void o11y__pipeline_run(o11y__exchange *ex);
/* Stage 4, when the response has been sent: the access line. */
void o11y__pipeline_done(o11y__exchange *ex, uint64_t bytes_sent, bool completed);

/* The rate-limit stage, after routing and before the body (true: the answer is final, 429 or a
 * 503 when the store is down and the service fails closed). body_follows: the request declares a
 * body, which the answer then leaves unread (the connection closes). */
bool o11y__ratelimit_check(o11y__exchange *ex, bool body_follows);

/* CORS (cors.c): which configured origin the request's Origin is, and whether it is a
 * preflight; the preflight's answer (204 or 403); the headers every response gets. */
void o11y__cors_match(o11y__exchange *ex, const o11y__std_headers *std);
void o11y__cors_preflight(o11y__exchange *ex);
void o11y__cors_headers(o11y__exchange *ex,
                        void (*add)(o11y_response *, const char *, size_t, const char *, size_t));
void o11y__cors_free(o11y__cors *c);
void o11y__client_logs_free(o11y__client_logs *cl);
void o11y__ratelimit_free(o11y__ratelimit *rl);

/* Idempotency stages: the key before the body (true: the response is final, 400); before the
 * handler (false: answered without it: replay, 409, 422, 503); after it (store or release). */
bool o11y__idem_check_key(o11y__exchange *ex, const o11y__std_headers *std);
/* An Idempotency-Key header value (CONTRACT section 4): a bare key or an sf-string; the key is
 * 1-255 bytes of 0x21-0x7E. False when it is not one. */
bool o11y__idem_parse_key(o11y_str value, o11y_str *key);
bool o11y__idem_before_handler(o11y__exchange *ex);
void o11y__idem_after_handler(o11y__exchange *ex);

/* Routing: the best template for path (literal segments beat parameters), or NULL. Fills params
 * with raw (still escaped) segments. */
const o11y__route *o11y__route_match(const o11y_service *svc, const char *path, size_t len,
                                     o11y_str params[O11Y__MAX_PARAMS]);
int o11y__method_index(o11y_method m);
/* Frees a route of the table (NULL: no-op). */
void o11y__route_free(o11y__route *r);

/* Compact JSON text of j in library-owned memory (free with o11y__free); NULL on failure. */
char *o11y__json_dump(const struct json_t *j, size_t *len);

/* Percent-decodes src into memory from the arena (NUL-terminated); false on a bad escape, NUL,
 * invalid UTF-8 or an exhausted arena. */
bool o11y__percent_decode(o11y__arena *arena, const char *src, size_t len, bool plus_is_space,
                          o11y_str *out);

#endif
