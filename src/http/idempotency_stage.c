/* http/idempotency_stage.c — the idempotency stage of the pipeline (CONTRACT section 4).
 *
 * Before the body: the Idempotency-Key is parsed (400 IDEMPOTENCY_KEY_INVALID or _MISSING).
 * Before the handler: the request is fingerprinted and the key begun in the store: replay,
 * 409 in use, 422 reused, 503 when the store cannot answer, or locked and on to the handler.
 * After the handler: a 5xx releases the key; anything else is stored for the TTL. */
#include "http/http_internal.h"

#include "idempotency/api.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>

enum { RECORD_MAX_HEADER = 1024 };

/*=== MARK: configuration ===*/

static int64_t real_clock_ms(void *ctx)
{
    (void)ctx;
    return o11y__now_real_ns() / 1000000;
}

o11y_status o11y_service_idempotency(o11y_service *svc, const o11y_idem_config *cfg)
{
    if (!svc || !cfg || !cfg->store || cfg->ttl_s > 30 * 86400 || cfg->lease_s > 86400)
        return O11Y_EINVAL;
    char *client = NULL;
    if (cfg->client_header && !(client = o11y__strdup(cfg->client_header)))
        return O11Y_ENOMEM;
    static const char *const outcome[] = {"outcome"};
    o11y_metric_opts o = {.name = "o11y_idempotency_requests_total",
                          .help = "Requests with an Idempotency-Key, by outcome",
                          .type = O11Y_COUNTER,
                          .label_names = outcome,
                          .n_labels = 1};
    o11y_status st = o11y_metric_register_or_get(svc->metrics, &o, &svc->m_idem);
    /* Each outcome's series resolved once, here: a request only counts. */
    for (int i = 0; st == O11Y_OK && i < O11Y__IDEM_OUTCOMES; i++) {
        const char *values[] = {o11y__idem_outcome_names[i]};
        st = o11y_metric_series(svc->m_idem, values, &svc->s_idem[i]);
    }
    if (st != O11Y_OK) {
        o11y__free(client);
        return st;
    }
    o11y__free(svc->idem_client_header);
    svc->idem = *cfg;
    svc->idem.client_header = svc->idem_client_header = client;
    if (!svc->idem.ttl_s)
        svc->idem.ttl_s = 3600;
    if (!svc->idem.lease_s)
        svc->idem.lease_s = 60;
    if (!svc->idem.clock_ms)
        svc->idem.clock_ms = real_clock_ms;
    return O11Y_OK;
}

/*=== MARK: outcomes ===*/

const char *const o11y__idem_outcome_names[O11Y__IDEM_OUTCOMES] = {
    "new", "replayed", "in_use", "reused", "invalid", "missing", "store_error", "status_only"};

static void count_outcome(o11y_service *svc, o11y__idem_outcome what)
{
    if (svc->s_idem[what])
        o11y_counter_inc(svc->s_idem[what]);
}

static void outcome(o11y__exchange *ex, o11y__idem_outcome what_id)
{
    o11y_request *req = &ex->req;
    o11y_service *svc = req->svc;
    count_outcome(svc, what_id);
    const char *what = o11y__idem_outcome_names[what_id];
    char key_id[17] = "";
    if (req->idem_key_len)
        memcpy(key_id, req->idem.id, 16);
    o11y_trace_ctx *prev = o11y_trace_set_current(&req->trace);
    o11y_log_va(svc->logger, O11Y_LOG_INFO, "idempotency", "idempotency", O11Y_STR("outcome", what),
                O11Y_STR("route", o11y_req_route(req)),
                O11Y_STR("key_id", key_id[0] ? key_id : NULL), O11Y__END);
    o11y_trace_set_current(prev);
}

/*=== MARK: before the body: the key ===*/

/* RFC 9651 sf-string or a bare token: after unquoting, 1-255 bytes of 0x21-0x7E. */
bool o11y__idem_parse_key(o11y_str v, o11y_str *key)
{
    const char *p = v.ptr;
    size_t len = v.len;
    if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
        p++;
        len -= 2;
        for (size_t i = 0; i < len; i++)
            if (p[i] == '"' || p[i] == '\\')
                return false; /* escapes are not part of a key */
    }
    if (len == 0 || len > O11Y__IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7E)
            return false;
    *key = (o11y_str){p, len};
    return true;
}

/* Who holds a key, for the store's per-client shares: the configured principal header when the
 * request has it, else the peer address. FNV-1a with a per-process random basis, so a client
 * cannot aim its identity at another's. */
static uint64_t client_identity(const o11y_request *req, o11y_str principal)
{
    static _Atomic uint64_t basis;
    uint64_t h = atomic_load_explicit(&basis, memory_order_relaxed);
    if (!h) {
        uint64_t fresh = o11y_idem_token() | 1;
        uint64_t expected = 0;
        h = atomic_compare_exchange_strong(&basis, &expected, fresh) ? fresh : expected;
    }
    const uint8_t *p = principal.ptr ? (const uint8_t *)principal.ptr : req->peer;
    size_t len = principal.ptr ? principal.len : req->peer_len;
    const char kind = principal.ptr ? 'P' : 'A'; /* a principal never equals an address */
    h = o11y__fnv1a(h, &kind, 1);
    h = o11y__fnv1a(h, p, len);
    return h;
}

bool o11y__idem_check_key(o11y__exchange *ex, const o11y__std_headers *std)
{
    o11y_request *req = &ex->req;
    o11y_service *svc = req->svc;
    o11y_method m = req->method;
    if (!svc->idem.store || !(m & (O11Y_POST | O11Y_PUT | O11Y_PATCH)))
        return false;
    bool required = req->route->flags[req->method_index] & O11Y_ROUTE_IDEMPOTENCY_REQUIRED;
    if (req->route->flags[req->method_index] & O11Y_ROUTE_NO_IDEMPOTENCY)
        return false;
    o11y_str key;
    if (std->idempotency_keys == 0) {
        if (!required)
            return false;
        o11y_res_fail(&ex->res, &o11y_err_IDEMPOTENCY_KEY_MISSING, NULL, NULL);
        outcome(ex, O11Y__IDEM_OUTCOME_MISSING);
        return true;
    }
    if (std->idempotency_keys > 1 || !o11y__idem_parse_key(std->idempotency_key, &key)) {
        o11y_res_fail(&ex->res, &o11y_err_IDEMPOTENCY_KEY_INVALID, NULL,
                      std->idempotency_keys > 1
                          ? "Send one Idempotency-Key header"
                          : "The Idempotency-Key must be 1-255 printable ASCII characters");
        outcome(ex, O11Y__IDEM_OUTCOME_INVALID);
        return true;
    }
    /* The scope: method, route, the principal (when configured) and the key. */
    const char *method = o11y_method_name(m);
    o11y_str client = svc->idem.client_header ? o11y_req_header(req, svc->idem.client_header)
                                              : (o11y_str){NULL, 0};
    o11y__idem_key_make(&req->idem, method,
                        (o11y_str){req->route->template, req->route->template_len}, client, key);
    req->idem.client = client_identity(req, client);
    req->idem_key_len = key.len;
    return false;
}

/*=== MARK: the stored record ===*/

static const char *find_header(const o11y_response *res, const char *name)
{
    size_t cursor = 0;
    o11y_str n, v;
    while (o11y__res_header_next(res, &cursor, &n, &v))
        if (strcasecmp(n.ptr, name) == 0)
            return v.ptr;
    return NULL;
}

/*=== MARK: before and after the handler ===*/

/* Adds a header to an answer the pipeline makes; a full header list (16 entries, which these
 * answers never reach) leaves the answer without it rather than failing it. */
static bool header(o11y_response *res, const char *name, const char *value)
{
    return o11y_res_header(res, name, value) == O11Y_OK;
}

static void add_retry_after(o11y_response *res)
{
    header(res, "Retry-After", "1");
}

static void replay(o11y__exchange *ex, const char *blob, size_t len)
{
    o11y_request *req = &ex->req;
    o11y_response *res = &ex->res;
    o11y__idem_record rec;
    o11y__idem_record_kind kind = o11y__idem_record_decode(blob, len, &rec);
    int status = rec.status;
    if (kind == O11Y__IDEM_RECORD_STATUS_ONLY) {
        /* Completed, but the store could not keep the response (idem_internal.h): the handler
         * must not run again, and the client learns how the first request ended. */
        o11y_res_fail(res, &o11y_err_IDEMPOTENCY_KEY_REUSED,
                      json_pack("{s:i,s:b}", "originalStatus", status, "responseKept", 0),
                      "This Idempotency-Key already completed with status %d; its response "
                      "is no longer kept",
                      status);
        return;
    }
    if (kind != O11Y__IDEM_RECORD_FULL) {
        o11y_res_fail(res, &o11y_err_INTERNAL_ERROR, NULL, "unreadable idempotency record");
        return;
    }
    o11y_str trace = rec.trace_id, type = rec.content_type, location = rec.location,
             job = rec.job_id, project = rec.project_id, body = rec.body;
    char ct[96];
    snprintf(ct, sizeof ct, "%.*s", (int)type.len, type.ptr);
    if (o11y_res_body(res, status == 201 ? 200 : status, ct[0] ? ct : NULL, body.ptr, body.len) !=
        O11Y_OK) {
        o11y_res_fail(res, &o11y_err_INTERNAL_ERROR, NULL, "out of memory");
        return;
    }
    if (!ct[0])
        res->content_type[0] = '\0';
    char value[RECORD_MAX_HEADER + 1];
    if (location.len) {
        snprintf(value, sizeof value, "%.*s", (int)location.len, location.ptr);
        header(res, "Location", value);
    }
    /* The stored ids were valid when stored; an invalid one (a damaged record) is left out. */
    if (job.len && o11y_trace_ctx_set_job_id(&req->trace, job.ptr, job.len) != O11Y_OK)
        job.len = 0;
    if (project.len &&
        o11y_trace_ctx_set_project_id(&req->trace, project.ptr, project.len) != O11Y_OK)
        project.len = 0;
    if (status >= 400) /* a replayed error keeps its error headers (CONTRACT section 4) */
        header(res, "Cache-Control", "no-store");
    header(res, "Idempotent-Replayed", "true");
    snprintf(value, sizeof value, "%.*s", (int)trace.len, trace.ptr);
    if (o11y_trace_id_valid(value, trace.len))
        header(res, "X-Original-Trace-Id", value);
}

bool o11y__idem_before_handler(o11y__exchange *ex)
{
    o11y_request *req = &ex->req;
    o11y_response *res = &ex->res;
    o11y_service *svc = req->svc;
    if (!req->idem_key_len)
        return true;
    const o11y_idem_config *c = &svc->idem;
    o11y__idem_fingerprint(
        req->idem_fp, o11y_method_name(req->method), (o11y_str){req->uri, req->path_len},
        (o11y_str){req->query, req->query_len}, (o11y_str){req->body.ptr, req->body.len});
    char *blob = NULL;
    size_t len = 0;
    int64_t now = c->clock_ms(c->clock_ctx);
    o11y_idem_result r =
        o11y__idem_begin(c->store, &req->idem, req->idem_fp, now, (int64_t)c->lease_s * 1000,
                         &req->idem_token, &blob, &len);
    switch (r) {
    case O11Y_IDEM_NEW:
        req->idem_held = true;
        outcome(ex, O11Y__IDEM_OUTCOME_NEW);
        return true;
    case O11Y_IDEM_REPLAY:
        replay(ex, blob, len);
        o11y__free(blob);
        outcome(ex, O11Y__IDEM_OUTCOME_REPLAYED);
        return false;
    case O11Y_IDEM_IN_USE:
        o11y_res_fail(res, &o11y_err_IDEMPOTENCY_KEY_IN_USE, NULL, NULL);
        add_retry_after(res);
        outcome(ex, O11Y__IDEM_OUTCOME_IN_USE);
        return false;
    case O11Y_IDEM_REUSED:
        o11y_res_fail(res, &o11y_err_IDEMPOTENCY_KEY_REUSED, NULL, NULL);
        outcome(ex, O11Y__IDEM_OUTCOME_REUSED);
        return false;
    case O11Y_IDEM_FULL:
    case O11Y_IDEM_STORE_ERROR:
        break;
    }
    char why[160];
    o11y__idem_store_last_error(c->store, why, sizeof why);
    outcome(ex, O11Y__IDEM_OUTCOME_STORE_ERROR);
    if (c->fail_open)
        return true; /* explicitly chosen: run unprotected */
    o11y_res_fail(res, &o11y_err_SERVICE_UNAVAILABLE, NULL, "idempotency store: %s", why);
    add_retry_after(res);
    return false;
}

void o11y__idem_after_handler(o11y__exchange *ex)
{
    o11y_request *req = &ex->req;
    o11y_response *res = &ex->res;
    if (!req->idem_held)
        return;
    req->idem_held = false;
    const o11y_idem_config *c = &req->svc->idem;
    /* Nothing stored for a 5xx, nor for a body the client can fix (CONTRACT section 4): a
     * retry with the same key runs the handler again. */
    if (res->status >= 500 || res->error == &o11y_err_VALIDATION_FAILED) {
        o11y__idem_release(c->store, &req->idem, req->idem_token);
        return;
    }
    o11y__buf b;
    o11y__buf_init(&b, (size_t)64 << 20);
    const char *location = find_header(res, "Location");
    size_t location_len = location ? strlen(location) : 0;
    o11y__idem_record rec = {
        .status = res->status,
        .trace_id = {req->trace.trace_id, req->trace.trace_id_len},
        .content_type = {res->content_type, strlen(res->content_type)},
        .location = {location ? location : "", location_len < RECORD_MAX_HEADER ? location_len : 0},
        .job_id = {req->trace.job_id, req->trace.job_id_len},
        .project_id = {req->trace.project_id, req->trace.project_id_len},
        .body = {res->body ? res->body : "", res->body_len},
    };
    o11y__idem_record_encode(&b, &rec);
    int64_t now = c->clock_ms(c->clock_ctx);
    if (b.overflow) { /* larger than any store keeps: its status alone */
        o11y__buf_release(&b);
        o11y__buf_init(&b, 16);
        o11y__idem_record_encode_status(&b, res->status);
    }
    o11y_idem_stored stored =
        b.ptr ? o11y__idem_complete(c->store, &req->idem, req->idem_token, req->idem_fp, b.ptr,
                                    b.len, now, now + (int64_t)c->ttl_s * 1000)
              : O11Y_IDEM_NOT_STORED;
    o11y__buf_release(&b);
    if (stored != O11Y_IDEM_STORED) {
        /* The answer goes out all the same. Not stored: a retry runs the handler again once
         * the lease ends; status only: a retry is told the key completed. Say so where an
         * operator looks. */
        char why[160];
        o11y__idem_store_last_error(c->store, why, sizeof why);
        bool none = stored == O11Y_IDEM_NOT_STORED;
        count_outcome(req->svc,
                      none ? O11Y__IDEM_OUTCOME_STORE_ERROR : O11Y__IDEM_OUTCOME_STATUS_ONLY);
        o11y_trace_ctx *prev = o11y_trace_set_current(&req->trace);
        o11y_log_va(req->svc->logger, none ? O11Y_LOG_ERROR : O11Y_LOG_WARN, "idempotency",
                    none ? "response not stored" : "only the response's status was stored",
                    O11Y_STR("outcome", none ? "store_error" : "status_only"),
                    O11Y_STR("error", why), O11Y__END);
        o11y_trace_set_current(prev);
    }
}
