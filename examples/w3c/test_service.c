/* w3c_test_service — the test-service side of the W3C Trace Context validation harness
 * (github.com/w3c/trace-context, test/), built on libo11y and its client kit.
 *
 * The harness POSTs a JSON array of {"url", "arguments"} to /test; for each element this
 * service POSTs `arguments` (JSON) to `url` as an outgoing call of the request, so the harness
 * sees what the library propagates: a traceparent with the incoming trace-id and flags and a
 * new parent-id (the call's span), the incoming tracestate (invalid members dropped, at most
 * 32 kept) — or, when the incoming traceparent is not valid, a new trace and no tracestate.
 *
 *     w3c_test_service [--port N] [--log-file PATH]      (default port 5000)
 *     python3 test/test.py http://127.0.0.1:5000/test   (in a clone of the harness)
 */
#include <curl/curl.h>
#include <jansson.h>
#include <o11y/client.h>
#include <o11y/o11y.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_CALLS = 64 };

/* One outgoing call: POST body to url, propagating the request's context. */
static void call(const char *url, const char *body, o11y_trace_ctx *ctx, const char *tracestate)
{
    /* The kit takes a base URL and a path: curl's URL parser splits what the harness sent. */
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        o11y_log_warn("not a URL; call skipped");
        goto done;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    char base[512], target[2048];
    snprintf(base, sizeof base, "%s://%s%s%s", scheme, host, port ? ":" : "", port ? port : "");
    snprintf(target, sizeof target, "%s%s%s", path, query ? "?" : "", query ? query : "");
    o11y_client_config cfg;
    o11y_client_config_init(&cfg);
    cfg.base_url = base;
    cfg.service_name = "w3c-test-service";
    cfg.max_attempts = 1; /* the harness counts calls: exactly one each */
    cfg.deadline_ms = 5000;
    o11y_client *c = NULL;
    if (o11y_client_create(&cfg, &c) != O11Y_OK) {
        o11y_log_warn("not an http(s) URL; call skipped");
        goto done;
    }
    o11y_client_request rq = {
        .method = "POST", .path = target, .body = body, .trace = ctx, .tracestate = tracestate};
    o11y_client_response r;
    if (o11y_client_call(c, &rq, &r) != O11Y_EINVAL)
        o11y_client_response_clear(&r);
    o11y_client_destroy(c);
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
}

static int test(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    o11y_str b = o11y_req_body(req);
    json_t *list = json_loadb(b.ptr ? b.ptr : "", b.len, 0, NULL);
    if (!json_is_array(list) || json_array_size(list) > MAX_CALLS) {
        json_decref(list);
        o11y_res_fail(res, &o11y_err_VALIDATION_FAILED, NULL,
                      "The body must be a JSON array of at most 64 {url, arguments}");
        return 0;
    }
    /* W3C Trace Context section 4.3: tracestate goes on only with a valid traceparent (the
     * pipeline already started a new trace when it was not). */
    o11y_str tp = o11y_req_header(req, "traceparent");
    o11y_traceparent parsed;
    /* the pipeline restarted the trace when the traceparent was invalid or came twice: then the
     * context's parent is not the incoming one */
    bool valid = tp.ptr && o11y_traceparent_parse(tp.ptr, tp.len, &parsed) == O11Y_OK &&
                 strcmp(o11y_req_trace(req)->parent_span_id, parsed.parent_id) == 0;
    o11y_str ts = o11y_req_header(req, "tracestate");
    char *tracestate = valid && ts.ptr ? strndup(ts.ptr, ts.len) : NULL;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *url = json_string_value(json_object_get(item, "url"));
        json_t *args = json_object_get(item, "arguments");
        char *body = args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("[]");
        if (url && body)
            call(url, body, o11y_req_trace(req), tracestate);
        free(body);
    }
    free(tracestate);
    json_decref(list);
    o11y_res_empty(res, 200);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long port = 5000;
    const char *log_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--log-file") == 0 && i + 1 < argc)
            log_file = argv[++i];
        else {
            fprintf(stderr, "usage: w3c_test_service [--port N] [--log-file PATH]\n");
            return 2;
        }
    }
    if (port > 65535) {
        fprintf(stderr, "w3c_test_service: --port takes 0-65535\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "w3c-test-service";
    cfg.version = O11Y_VERSION_STRING;
    cfg.log.file_path = log_file;
    o11y_service *svc;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK)
        return 1;
    if (o11y_service_route(svc, O11Y_POST, "/test", test, NULL, O11Y_ROUTE_JSON) != O11Y_OK) {
        o11y_service_destroy(svc);
        return 1;
    }
    o11y_mhd_config mhd;
    o11y_mhd_config_init(&mhd);
    mhd.port = (uint16_t)port;
    o11y_status st = o11y_mhd_run(svc, &mhd);
    o11y_service_destroy(svc);
    curl_global_cleanup();
    return st == O11Y_OK ? 0 : 1;
}
