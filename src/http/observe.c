/* http/observe.c — the service's metrics: what every request records, and the two endpoints
 * that serve them (GET /metrics, GET /metrics/summary). */
#include "http/http_internal.h"

#include "metrics/api.h"

#include <jansson.h>

/*=== MARK: registration ===*/

static double log_written(void *ctx)
{
    o11y_log_stats st;
    o11y_logger_stats(ctx, &st);
    return (double)st.lines_written;
}

static double log_dropped(void *ctx)
{
    o11y_log_stats st;
    o11y_logger_stats(ctx, &st);
    return (double)st.lines_dropped;
}

static double log_failed(void *ctx)
{
    o11y_log_stats st;
    o11y_logger_stats(ctx, &st);
    return (double)st.lines_failed;
}

/* Request and operation durations of a C service: most answers take well under a millisecond,
 * so the buckets start at 100 µs (the OpenTelemetry defaults start at 5 ms, where every fast
 * route would land in the first bucket and PromQL quantiles would say nothing). */
static const double duration_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                          1,      2.5,     5,      10};

static o11y_status family(o11y_service *svc, const char *name, const char *help,
                          o11y_metric_type type, const char *const *labels, size_t n,
                          unsigned flags, o11y_metric **out)
{
    o11y_metric_opts o = {.name = name,
                          .help = help,
                          .type = type,
                          .label_names = labels,
                          .n_labels = n,
                          .flags = flags};
    if (type == O11Y_HISTOGRAM) {
        o.buckets = duration_buckets;
        o.n_buckets = O11Y_ARRAY_LEN(duration_buckets);
    }
    return o11y_metric_register_or_get(svc->metrics, &o, out); /* a registry may be shared */
}

static int serve_metrics(o11y_request *req, o11y_response *res, void *user);
static int serve_summary(o11y_request *req, o11y_response *res, void *user);

o11y_status o11y__service_metrics_init(o11y_service *svc, bool routes)
{
    static const char *const method_route_status[] = {"method", "route", "status"};
    static const char *const method_route[] = {"method", "route"};
    static const char *const method_route_class[] = {"method", "route", "class"};
    static const char *const operation[] = {"operation"};
    static const char *const build[] = {"version", "service"};
    o11y_metric *active, *build_info;
    o11y_status st;
#define TRY(call)                                                                                  \
    if ((st = (call)) != O11Y_OK)                                                                  \
        return st;
    TRY(family(svc, "http_server_requests_total", "HTTP requests answered, by route and status",
               O11Y_COUNTER, method_route_status, 3, 0, &svc->m_requests));
    TRY(family(svc, "http_server_request_duration_seconds",
               "Time from the request's first byte to its response, by route", O11Y_HISTOGRAM,
               method_route, 2, O11Y_METRIC_WINDOWS | O11Y_METRIC_EXEMPLARS, &svc->m_duration));
    TRY(family(svc, "http_server_active_requests", "HTTP requests being handled", O11Y_GAUGE, NULL,
               0, 0, &active));
    TRY(family(svc, "o11y_http_errors_total", "4xx and 5xx answers by route (for the summary)",
               O11Y_COUNTER, method_route_class, 3, O11Y_METRIC_WINDOWS | O11Y_METRIC_HIDDEN,
               &svc->m_errors));
    TRY(family(svc, "o11y_operation_duration_seconds", "Duration of tracked operations",
               O11Y_HISTOGRAM, operation, 1, O11Y_METRIC_WINDOWS, &svc->m_operation));
    TRY(family(svc, "o11y_operation_errors_total", "Tracked operations that failed", O11Y_COUNTER,
               operation, 1, O11Y_METRIC_WINDOWS, &svc->m_operation_errors));
    TRY(family(svc, "o11y_operation_client_errors_total",
               "Tracked operations refused for the client's input (a 4xx code)", O11Y_COUNTER,
               operation, 1, O11Y_METRIC_WINDOWS, &svc->m_operation_client_errors));
    TRY(family(svc, "o11y_build_info", "The service's version; the value is always 1", O11Y_GAUGE,
               build, 2, 0, &build_info));
    TRY(o11y_metric_series(active, NULL, &svc->s_active));
    const char *build_values[] = {svc->version, svc->name};
    o11y_series *b;
    TRY(o11y_metric_series(build_info, build_values, &b));
    o11y_gauge_set(b, 1);
    TRY(o11y__metrics_register_process(svc->metrics));
    static const struct {
        const char *name, *help;
        o11y_metric_value_fn fn;
    } log_fns[] = {
        {"o11y_log_lines_written_total", "Log lines written by the log writer", log_written},
        {"o11y_log_lines_dropped_total", "Log lines dropped because the queue was full",
         log_dropped},
        {"o11y_log_lines_failed_total", "Log lines lost to a failing sink (full disk, closed pipe)",
         log_failed},
    };
    for (size_t i = 0; i < O11Y_ARRAY_LEN(log_fns); i++) {
        st = o11y_metric_register_fn(svc->metrics, log_fns[i].name, log_fns[i].help, O11Y_COUNTER,
                                     log_fns[i].fn, svc->logger);
        if (st != O11Y_OK && st != O11Y_ECONFLICT)
            return st;
    }
    o11y_metrics_set_default(svc->metrics);
    if (routes) {
        TRY(o11y_service_route(svc, O11Y_GET, "/metrics", serve_metrics, svc,
                               O11Y_ROUTE_NONBLOCKING));
        TRY(o11y_service_route(svc, O11Y_GET, "/metrics/summary", serve_summary, svc,
                               O11Y_ROUTE_NONBLOCKING));
    }
#undef TRY
    return O11Y_OK;
}

/*=== MARK: recording ===*/

static int stat_index(o11y_method m)
{
    int i = o11y__method_index(m);
    return i < 0 ? O11Y__N_METHODS : i;
}

static const char *stat_method(int i)
{
    return i == O11Y__N_METHODS ? "_OTHER" : o11y_method_name((o11y_method)(1u << i));
}

/* The series in *slot, resolved by label values the first time. */
static o11y_series *resolve(_Atomic(o11y_series *) *slot, o11y_metric *m, const char *const *values)
{
    o11y_series *s = atomic_load_explicit(slot, memory_order_acquire);
    if (O11Y_LIKELY(s != NULL) || !m)
        return s;
    if (o11y_metric_series(m, values, &s) != O11Y_OK)
        return NULL;
    atomic_store_explicit(slot, s, memory_order_release);
    return s;
}

void o11y__route_stats_prepare(o11y_service *svc, o11y__route *r)
{
    unsigned m = r->methods; /* HEAD, answered by GET routes, is resolved when one arrives */
    for (int i = 0; i < O11Y__N_METHODS; i++) {
        if (!(m & (1u << i)))
            continue;
        const char *values[] = {stat_method(i), r->template};
        resolve(&r->stats.duration[i], svc->m_duration, values);
    }
}

/* Resolves http_server_requests_total{method,route,status} into *slot (NULL: just look up). */
static o11y_series *resolve_status(o11y_service *svc, _Atomic(o11y_series *) *slot, int mi,
                                   const char *route, int status)
{
    char code[8];
    o11y__buf b;
    o11y__buf_init_fixed(&b, code, sizeof code - 1);
    o11y__json_i64(&b, status);
    code[b.len] = '\0';
    const char *values[] = {stat_method(mi), route, code};
    if (slot)
        return resolve(slot, svc->m_requests, values);
    o11y_series *s = NULL;
    return o11y_metric_series(svc->m_requests, values, &s) == O11Y_OK ? s : NULL;
}

static o11y_series *requests_series(o11y_service *svc, o11y__route_stats *st, int mi,
                                    const char *route, int status)
{
    /* A few statuses per route and method: a small cache claimed with a compare-and-swap. */
    for (int i = 0; i < O11Y__STATUS_CACHE; i++) {
        int seen = atomic_load_explicit(&st->requests[mi][i].status, memory_order_acquire);
        if (seen == status) {
            o11y_series *s =
                atomic_load_explicit(&st->requests[mi][i].series, memory_order_acquire);
            return s ? s : resolve_status(svc, &st->requests[mi][i].series, mi, route, status);
        }
        if (seen == 0 &&
            (atomic_compare_exchange_strong(&st->requests[mi][i].status, &seen, status) ||
             seen == status))
            return resolve_status(svc, &st->requests[mi][i].series, mi, route, status);
    }
    return resolve_status(svc, NULL, mi, route, status); /* more statuses than the cache holds */
}

void o11y__record_request(o11y_service *svc, const o11y__route *r, o11y_method method, int status,
                          double seconds)
{
    o11y__route_stats *st = r ? (o11y__route_stats *)&r->stats : &svc->unmatched;
    const char *route = r ? r->template : "unmatched";
    int mi = stat_index(method);
    const char *values[] = {stat_method(mi), route};
    o11y_series *d = resolve(&st->duration[mi], svc->m_duration, values);
    if (d)
        o11y_histogram_observe(d, seconds);
    o11y_series *c = requests_series(svc, st, mi, route, status);
    if (c)
        o11y_counter_inc(c);
    if (status >= 400) {
        int server = status >= 500;
        const char *evalues[] = {stat_method(mi), route, server ? "5xx" : "4xx"};
        o11y_series *e = resolve(&st->errors[mi][server], svc->m_errors, evalues);
        if (e)
            o11y_counter_inc(e);
    }
}

/*=== MARK: GET /metrics ===*/

static int serve_metrics(o11y_request *req, o11y_response *res, void *user)
{
    o11y_service *svc = user;
    o11y_str accept = o11y_req_header(req, "Accept");
    o11y_exposition f = o11y_exposition_negotiate(accept.ptr, accept.len);
    size_t len;
    char *text = o11y_metrics_render(svc->metrics, f, &len);
    if (!text)
        return 1;
    o11y__res_body_owned(res, 200, o11y_exposition_content_type(f), text, len);
    return 0;
}

/*=== MARK: GET /metrics/summary ===*/

static int serve_summary(o11y_request *req, o11y_response *res, void *user)
{
    (void)req;
    o11y_service *svc = user;
    const o11y__summary_families fams = {
        .route_durations = svc->m_duration,
        .route_errors = svc->m_errors,
        .op_durations = svc->m_operation,
        .op_errors = svc->m_operation_errors,
        .op_client_errors = svc->m_operation_client_errors,
    };
    json_t *routes = NULL, *ops = NULL, *totals = NULL;
    if (o11y__metrics_summary(&fams, &routes, &ops, &totals) != O11Y_OK)
        return 1;
    int64_t uptime = (o11y__now_real_ns() - svc->started_ns) / 1000000000;
    json_t *body = json_pack("{s:s,s:s,s:I,s:o,s:o,s:o}", "service", svc->name, "version",
                             svc->version, "uptimeSeconds", (json_int_t)uptime, "operations",
                             routes, "trackedOperations", ops, "totals", totals);
    return body && o11y_res_json(res, 200, body) == O11Y_OK ? 0 : 1;
}
