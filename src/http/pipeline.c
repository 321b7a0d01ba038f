/* http/pipeline.c — the stages every request goes through (see ARCHITECTURE "One request"). */
#include "http/http_internal.h"

#include "log/api.h"
#include "o11y/error.h"

#include <jansson.h>
#include <strings.h>

static void add_header(o11y_response *res, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    o11y__res_header_put(res, name, name_len, value, value_len);
}
#define add_header_lit(res, lit, v, n) add_header((res), (lit), sizeof(lit) - 1, (v), (n))

/*=== MARK: stage 1: headers ===*/

/* Content-Type: application/json, parameters and case ignored (CONTRACT section 7). */
static bool is_json_type(o11y_str ct)
{
    static const char want[] = "application/json";
    const size_t n = sizeof want - 1;
    if (!ct.ptr || ct.len < n || strncasecmp(ct.ptr, want, n) != 0)
        return false;
    for (size_t i = n; i < ct.len; i++) {
        if (ct.ptr[i] == ';')
            return true;
        if (ct.ptr[i] != ' ' && ct.ptr[i] != '\t')
            return false;
    }
    return true;
}

static void set_context_from_params(o11y_request *req)
{
    const o11y__route *r = req->route;
    /* The path's value overrides the header; an id that is not valid as a header is not sent. */
    if (r->project_param_at) {
        o11y_str project = req->params[r->project_param_at - 1];
        if (o11y_trace_ctx_set_project_id(&req->trace, project.ptr, project.len))
            req->trace.project_id_len = 0, req->trace.project_id[0] = '\0';
    }
    if (r->job_param_at) {
        o11y_str job = req->params[r->job_param_at - 1];
        if (o11y_trace_ctx_set_job_id(&req->trace, job.ptr, job.len))
            req->trace.job_id_len = 0, req->trace.job_id[0] = '\0';
    }
}

/* Answers VALIDATION_FAILED for one field: final, so the handler never runs. */
static void field_failed(o11y_response *res, const char *field, const char *problem)
{
    json_t *details = json_pack("{s:[{s:s,s:s}]}", "fields", "field", field, "problem", problem);
    o11y_res_fail(res, &o11y_err_VALIDATION_FAILED, details, "Request validation failed");
}

static bool decode_params(o11y__exchange *ex)
{
    o11y_request *req = &ex->req;
    for (size_t i = 0; i < req->route->n_params; i++) {
        o11y_str raw = req->params[i];
        if (!o11y__percent_decode(&req->arena, raw.ptr, raw.len, false, &req->params[i])) {
            req->params[i] = (o11y_str){NULL, 0};
            field_failed(&ex->res, req->route->param_names[i],
                         "must be valid percent-encoded UTF-8 without NUL");
            return false;
        }
    }
    return true;
}

/* RFC 9112 section 6.1: the only coding this server decodes is chunked, and it must come last.
 * Returns NULL when the codings are acceptable, else the error code to answer. */
static const o11y_error_def *transfer_coding_error(const o11y__std_headers *std)
{
    if (!std->transfer_encoding)
        return NULL;
    if (std->transfer_encodings > 1)
        return &o11y_err_NOT_IMPLEMENTED;
    const char *p = std->transfer_coding.ptr;
    size_t len = std->transfer_coding.len;
    while (len && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 7 && strncasecmp(p, "chunked", 7) == 0)
        return NULL;
    /* chunked somewhere but not last: the body's end cannot be found (400); any other coding,
     * even before a final chunked, is one we do not decode (501). Either way the connection
     * closes. */
    bool chunked_last = len > 7 && strncasecmp(p + len - 7, "chunked", 7) == 0;
    for (size_t i = 0; !chunked_last && i + 7 <= len; i++)
        if (strncasecmp(p + i, "chunked", 7) == 0)
            return &o11y_err_VALIDATION_FAILED;
    return &o11y_err_NOT_IMPLEMENTED;
}

/* The names compared here all start with a letter: its case folded, one comparison turns most
 * other names of the same length away before strncasecmp (40 instructions a call). */
static bool name_is(const char *name, size_t len, const char *lit, size_t lit_len)
{
    return len == lit_len && (name[0] | 0x20) == (lit[0] | 0x20) &&
           strncasecmp(name, lit, len) == 0;
}
#define NAME_IS(name, len, lit) name_is((name), (len), (lit), sizeof(lit) - 1)

static void keep_first(o11y_str *slot, const char *v, size_t len)
{
    if (!slot->ptr)
        *slot = (o11y_str){v, len};
}

static void add_list_line(o11y__std_headers *h, int list, const char *v, size_t len)
{
    if (h->list_lines[list] < 8)
        h->lists[list][h->list_lines[list]] = (o11y_str){v, len};
    if (h->list_lines[list] < UINT8_MAX)
        h->list_lines[list]++;
}

/* A list header sent in several lines, joined into one value in the request's arena. More than
 * eight lines, or more than the carried maximum, is left as its first line (the normalizers then
 * keep what is valid of it). */
static void join_list(o11y_request *req, const o11y__std_headers *std, int list)
{
    unsigned n = std->list_lines[list];
    if (n < 2 || n > 8)
        return;
    size_t total = n - 1;
    for (unsigned i = 0; i < n; i++)
        total += std->lists[list][i].len;
    if (total > O11Y_TRACE_CARRIED_MAX)
        return;
    char *p = o11y__arena_alloc(&req->arena, total + 1);
    if (!p)
        return;
    size_t at = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i)
            p[at++] = ',';
        memcpy(p + at, std->lists[list][i].ptr, std->lists[list][i].len);
        at += std->lists[list][i].len;
    }
    p[at] = '\0';
    req->joined[list] = (o11y_str){p, at};
}

void o11y__std_headers_add(o11y__std_headers *h, const char *name, size_t name_len,
                           const char *value, size_t value_len)
{
    /* Dispatch on the length first: most headers are rejected by one comparison. */
    switch (name_len) {
    case 6:
        if (NAME_IS(name, name_len, "Accept"))
            keep_first(&h->accept, value, value_len);
        else if (NAME_IS(name, name_len, "Origin"))
            keep_first(&h->origin, value, value_len);
        break;
    case 8:
        if (NAME_IS(name, name_len, "X-Job-Id"))
            keep_first(&h->x_job_id, value, value_len);
        break;
    case 7:
        if (NAME_IS(name, name_len, "baggage"))
            add_list_line(h, O11Y__LIST_BAGGAGE, value, value_len);
        break;
    case 10:
        if (NAME_IS(name, name_len, "X-Trace-Id"))
            keep_first(&h->x_trace_id, value, value_len);
        else if (NAME_IS(name, name_len, "tracestate"))
            add_list_line(h, O11Y__LIST_TRACESTATE, value, value_len);
        break;
    case 11:
        if (NAME_IS(name, name_len, "traceparent")) {
            keep_first(&h->traceparent, value, value_len);
            h->traceparents++;
        }
        break;
    case 29:
        if (NAME_IS(name, name_len, "Access-Control-Request-Method"))
            keep_first(&h->acr_method, value, value_len);
        break;
    case 12:
        if (NAME_IS(name, name_len, "X-Project-Id"))
            keep_first(&h->x_project_id, value, value_len);
        else if (NAME_IS(name, name_len, "Content-Type"))
            keep_first(&h->content_type, value, value_len);
        break;
    case 15:
        if (NAME_IS(name, name_len, "Idempotency-Key")) {
            keep_first(&h->idempotency_key, value, value_len);
            h->idempotency_keys++;
        }
        break;
    case 17:
        if (NAME_IS(name, name_len, "Transfer-Encoding")) {
            h->transfer_encoding = true;
            keep_first(&h->transfer_coding, value, value_len);
            h->transfer_encodings++;
        }
        break;
    case 14:
        if (NAME_IS(name, name_len, "Content-Length")) {
            /* A value past 64 bits is simply too large; one that is not digits is malformed
             * (libmicrohttpd refuses it itself; h2o leaves it to us, see adapters/h2o). */
            int64_t n = 0;
            if (!value_len)
                h->malformed_length = true;
            for (size_t i = 0; i < value_len; i++) {
                if (value[i] < '0' || value[i] > '9') {
                    h->malformed_length = true;
                    break;
                }
                if (n > (INT64_MAX - 9) / 10) {
                    n = INT64_MAX;
                    break;
                }
                n = n * 10 + (value[i] - '0');
            }
            if (h->content_length >= 0 && h->content_length != n)
                h->conflicting_length = true;
            h->content_length = n;
        }
        break;
    default:
        break;
    }
    /* "Name : value" reaches us as a name ending in blanks; a proxy may read it differently. */
    if (name_len && (name[name_len - 1] == ' ' || name[name_len - 1] == '\t'))
        h->space_before_colon = true;
}

bool o11y__pipeline_begin(o11y__exchange *ex, const char *method, const o11y__std_headers *std,
                          o11y__header_fn get_header, void *header_ctx)
{
    o11y_request *req = &ex->req;
    o11y_response *res = &ex->res;
    o11y_service *svc = req->svc;
    req->get_header = get_header;
    req->header_ctx = header_ctx;
    req->method = o11y_method_parse(method, strlen(method));
    /* Two traceparent lines are invalid (W3C Trace Context section 3.2): a new trace. */
    o11y_trace_ctx_from_headers(&req->trace, std->x_trace_id,
                                std->traceparents > 1 ? (o11y_str){NULL, 0} : std->traceparent,
                                std->x_job_id, std->x_project_id);
    o11y__cors_match(ex, std);
    join_list(req, std, O11Y__LIST_TRACESTATE);
    join_list(req, std, O11Y__LIST_BAGGAGE);
    req->accept = std->accept;
    int64_t content_length = std->content_length;
    atomic_fetch_add_explicit(&svc->active_requests, 1, memory_order_relaxed);
    o11y_gauge_add(svc->s_active, 1);
    req->counted_active = true;

    if (std->conflicting_length || std->malformed_length ||
        (std->transfer_encoding && content_length >= 0) || std->space_before_colon) {
        /* RFC 9112 sections 5.1 and 6.3: the body's length is ambiguous (the shape of request
         * smuggling). Refuse it before reading anything and close the connection. */
        req->answer_now = res->close = true;
        o11y_res_fail(res, &o11y_err_VALIDATION_FAILED, NULL,
                      std->space_before_colon ? "Whitespace between a header name and its colon"
                      : std->malformed_length
                          ? "Content-Length is not a number"
                          : "Conflicting Content-Length or Transfer-Encoding headers");
        return true;
    }
    const o11y_error_def *coding_error = transfer_coding_error(std);
    if (coding_error) {
        req->answer_now = res->close = true;
        o11y_res_fail(res, coding_error, NULL,
                      coding_error == &o11y_err_NOT_IMPLEMENTED
                          ? "Only the chunked transfer coding is supported"
                          : "chunked must be the final transfer coding");
        return true;
    }
    /* The declared size first, whatever the route: a client that waits for 100 Continue is
     * told now, and nothing of an oversized body is read, even to discard it. */
    if (content_length > 0 && (uint64_t)content_length > svc->max_body) {
        req->body_too_large = req->answer_now = res->close = true;
        o11y_res_fail(res, &o11y_err_PAYLOAD_TOO_LARGE,
                      json_pack("{s:I}", "maxBytes", (json_int_t)svc->max_body),
                      "The request body is larger than %zu bytes", svc->max_body);
        return true;
    }
    o11y_str raw[O11Y__MAX_PARAMS];
    req->route = o11y__route_match(svc, req->uri, req->path_len, raw);
    if (!req->route) {
        o11y_res_fail(res, &o11y_err_NOT_FOUND, NULL, NULL);
        return true;
    }
    memcpy(req->params, raw, sizeof raw);
    if (req->preflight) { /* answered here: never rate-limited, never a handler */
        o11y__cors_preflight(ex);
        return true;
    }
    o11y_method effective =
        req->method == O11Y_HEAD && !(req->route->methods & O11Y_HEAD) ? O11Y_GET : req->method;
    req->method_index = o11y__method_index(effective);
    if (req->method_index < 0 || !(req->route->methods & effective)) {
        res->allow = req->route->allow;
        o11y_res_fail(res, &o11y_err_METHOD_NOT_ALLOWED, NULL, NULL);
        return true;
    }
    if (!decode_params(ex))
        return true;
    set_context_from_params(req);
    if (o11y__ratelimit_check(ex, content_length > 0 || std->transfer_encoding))
        return true;
    bool has_body = effective & (O11Y_POST | O11Y_PUT | O11Y_PATCH);
    if (has_body && (req->route->flags[req->method_index] & O11Y_ROUTE_JSON) &&
        !is_json_type(std->content_type)) {
        o11y_res_fail(res, &o11y_err_UNSUPPORTED_MEDIA_TYPE, NULL, NULL);
        return true;
    }
    return o11y__idem_check_key(ex, std);
}

/*=== MARK: stage 2: body ===*/

bool o11y__pipeline_body(o11y__exchange *ex, const char *data, size_t len)
{
    o11y_request *req = &ex->req;
    if (req->body_too_large || ex->res.answered)
        return false;
    o11y__buf_append(&req->body, data, len);
    if (req->body.overflow) {
        /* Chunked or lying Content-Length: stop buffering at once, discard the rest. */
        req->body_too_large = true;
        o11y__buf_release(&req->body);
        o11y__buf_init(&req->body, 0);
        size_t max = req->svc->max_body;
        o11y_res_fail(&ex->res, &o11y_err_PAYLOAD_TOO_LARGE,
                      json_pack("{s:I}", "maxBytes", (json_int_t)max),
                      "The request body is larger than %zu bytes", max);
        return false;
    }
    return true;
}

/*=== MARK: stage 3: the handler and the response ===*/

static void run_handler(o11y__exchange *ex)
{
    o11y_request *req = &ex->req;
    o11y_response *res = &ex->res;
    int i = req->method_index;
    int rc = req->route->handlers[i](req, res, req->route->users[i]);
    if (o11y_res_has_field_errors(res)) {
        json_t *details = json_pack("{s:O}", "fields", res->field_errors);
        if (details && res->field_errors_left_out)
            json_object_set_new(details, "moreFields",
                                json_integer((json_int_t)res->field_errors_left_out));
        o11y_res_fail(res, &o11y_err_VALIDATION_FAILED, details, "Request validation failed");
    } else if (rc != 0 || !res->answered) {
        o11y_log_va(req->svc->logger, O11Y_LOG_ERROR, "handler_failed",
                    rc ? "handler reported failure" : "handler returned no response",
                    O11Y_STR("route", req->route->template), O11Y_INT("rc", rc), O11Y__END);
        o11y_res_fail(res, &o11y_err_INTERNAL_ERROR, NULL, NULL);
    }
}

static void render_error(o11y__exchange *ex)
{
    o11y_request *req = &ex->req;
    o11y_response *res = &ex->res;
    const o11y_error_def *def = res->error;
    if (def->status >= 500 && (res->error_message || res->error_details)) {
        /* Internal detail goes to the log only (CONTRACT section 1). */
        size_t ignored;
        char *details = res->error_details ? o11y__json_dump(res->error_details, &ignored) : NULL;
        o11y_log_va(req->svc->logger, O11Y_LOG_ERROR, "request_failed", "request failed",
                    O11Y_STR("error_code", def->code), O11Y_STR("route", o11y_req_route(req)),
                    O11Y_STR("internal_message", res->error_message),
                    O11Y_STR("internal_details", details), O11Y__END);
        o11y__free(details);
    }
    size_t details_len = 0;
    char *details = res->error_details ? o11y__json_dump(res->error_details, &details_len) : NULL;
    o11y_error_info info = {
        .code = def->code,
        .message = res->error_message,
        .details_json = details,
        .details_len = details ? details_len : 0,
        .trace_id = {req->trace.trace_id, req->trace.trace_id_len},
        .problem_base = req->svc->problem_base,
    };
    int status = 500;
    size_t len = 0;
    o11y_error_format format = o11y_error_negotiate(req->accept.ptr, req->accept.len);
    char *body = o11y_error_render(&info, format, &len, &status);
    o11y__free(details);
    o11y__res_body_free(res);
    res->body = body;
    res->body_len = body ? len : 0;
    res->status = status;
    const char *ct = format == O11Y_ERROR_PROBLEM ? "application/problem+json" : "application/json";
    memcpy(res->content_type, ct, strlen(ct) + 1);
    add_header_lit(res, "Cache-Control", "no-store", 8);
    if (res->allow)
        add_header_lit(res, "Allow", res->allow, strlen(res->allow));
}

void o11y__pipeline_run(o11y__exchange *ex)
{
    o11y_request *req = &ex->req;
    o11y_response *res = &ex->res;
    req->handler_start_ns = o11y__now_mono_ns();
    req->prev_trace = o11y_trace_set_current(&req->trace);
    bool handled = false;
    if (!res->answered && o11y__idem_before_handler(ex)) {
        run_handler(ex);
        handled = true;
    }
    if (res->error)
        render_error(ex);
    if (handled)
        o11y__idem_after_handler(ex); /* the body as sent: the envelope of an error included */
    o11y_trace_set_current(req->prev_trace);
    req->handler_end_ns = o11y__now_mono_ns();

    o11y_trace_ctx *t = &req->trace;
    add_header_lit(res, "X-Trace-Id", t->trace_id, t->trace_id_len);
    if (t->job_id_len)
        add_header_lit(res, "X-Job-Id", t->job_id, t->job_id_len);
    if (t->project_id_len)
        add_header_lit(res, "X-Project-Id", t->project_id, t->project_id_len);
    char ms[32];
    o11y__buf b;
    o11y__buf_init_fixed(&b, ms, sizeof ms);
    o11y__json_fixed3(&b, (double)(req->handler_end_ns - req->handler_start_ns) / 1e6);
    add_header_lit(res, "X-Processing-Time", ms, b.len);
    add_header_lit(res, "X-Service", req->svc->service_header, req->svc->service_header_len);
    if (req->svc->cors)
        o11y__cors_headers(ex, add_header);
    if (res->close)
        add_header_lit(res, "Connection", "close", 5);
}

/*=== MARK: stage 4: the access line ===*/

void o11y__pipeline_done(o11y__exchange *ex, uint64_t bytes_sent, bool completed)
{
    o11y_request *req = &ex->req;
    o11y_service *svc = req->svc;
    if (!req->counted_active)
        return; /* the server library refused the request before the pipeline saw it */
    int status = ex->res.status;
    double elapsed_ms = (double)(o11y__now_mono_ns() - req->start_ns) / 1e6;
    /* The request's context is current for its observation too: exemplars carry its trace. */
    o11y_trace_ctx *prev = o11y_trace_set_current(&req->trace);
    o11y__record_request(svc, req->route, req->method, status, elapsed_ms / 1e3);
    o11y_gauge_add(svc->s_active, -1);
    atomic_fetch_sub_explicit(&svc->active_requests, 1, memory_order_relaxed);
    if (!svc->access_log) {
        o11y_trace_set_current(prev);
        return;
    }
    o11y__access_line a = {
        .method = o11y_method_name(req->method),
        .route = req->route ? req->route->template : "unmatched",
        .route_len = req->route ? req->route->template_len : sizeof "unmatched" - 1,
        .path = req->uri,
        .path_len = req->path_len,
        .status = status,
        .bytes = bytes_sent,
        .aborted = !completed,
        .elapsed_ms = elapsed_ms,
    };
    o11y__log_access(svc->logger, &a);
    o11y_trace_set_current(prev);
}
