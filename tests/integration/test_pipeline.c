/* Integration tests of the library itself: a service built in this process on the public API,
 * served by the libmicrohttpd adapter, called over real HTTP. Covers what generation-service
 * does not exercise: failing handlers, hidden 5xx detail, registered codes, query and header
 * helpers, job ids from the path, the problem type base, a small body limit. */
#include <o11y/o11y.h>
#ifdef TEST_H2O
#include <o11y/h2o.h>
#endif

#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static o11y_service *svc;
static o11y_mhd_server *server;
static gs_proc target; /* only port and log are used: the server runs in this process */

static int fails(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)res, (void)user;
    return -1;
}

static int answers_nothing(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)res, (void)user;
    return 0;
}

static int leaks_internals(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    o11y_res_error(res, "SERVICE_UNAVAILABLE", json_pack("{s:s}", "host", "db.internal"),
                   "connect to 10.1.2.3:5432 failed: ECONNREFUSED");
    return 0;
}

static int custom_code(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    o11y_res_error(res, "QUOTA_EXCEEDED", json_pack("{s:i}", "limit", 10), "Quota of %d used", 10);
    return 0;
}

static int echo_query(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    o11y_str name = {NULL, 0}, flag = {NULL, 0};
    bool has_name = o11y_req_query(req, "name", &name);
    bool has_flag = o11y_req_query(req, "flag", &flag);
    bool has_missing = o11y_req_query(req, "missing", &flag);
    return o11y_res_json(res, 200,
                         json_pack("{s:s%,s:b,s:b,s:b}", "name", has_name ? name.ptr : "",
                                   has_name ? name.len : 0, "hasName", has_name, "hasFlag",
                                   has_flag, "hasMissing", has_missing));
}

static int job_from_path(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    o11y_log_info("inside the handler");
    const o11y_trace_ctx *t = o11y_trace_current();
    return o11y_res_json(res, 200,
                         json_pack("{s:s,s:s,s:s}", "job", t->job_id, "item",
                                   o11y_req_param(req, "itemId").ptr, "route",
                                   o11y_req_route(req)));
}

static int strict_json(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    json_t *body = o11y_req_json(req, res);
    if (!body)
        return 0;
    return o11y_res_json(res, 201, json_pack("{s:I}", "keys", (json_int_t)json_object_size(body)));
}

static int headers(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    o11y_str host = o11y_req_header(req, "host"); /* names are case-insensitive */
    json_t *out =
        json_pack("{s:b,s:b,s:b,s:b,s:b}", "crlf",
                  o11y_res_header(res, "X-Custom", "a\r\nInjected: 1") == O11Y_EINVAL, "owned",
                  o11y_res_header(res, "X-Trace-Id", "mine") == O11Y_EINVAL, "badName",
                  o11y_res_header(res, "Bad Name", "v") == O11Y_EINVAL, "ok",
                  o11y_res_header(res, "X-Custom", "fine") == O11Y_OK, "host", host.ptr != NULL);
    return o11y_res_json(res, 200, out);
}

/* A stream that always has more: only the client's pace limits it. */
static atomic_int firehose_end = -1;

static long firehose_read(void *ctx, char *buf, size_t max)
{
    (void)ctx;
    memset(buf, 'x', max);
    return (long)max;
}

static void firehose_done(void *ctx, o11y_stream_end end)
{
    (void)ctx;
    atomic_store(&firehose_end, (int)end);
}

static int firehose(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    o11y_stream_release(
        o11y_res_stream(res, 200, "text/plain", firehose_read, firehose_done, NULL));
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(target.dir, sizeof target.dir, "/tmp/o11y-pipe-XXXXXX");
    if (!mkdtemp(target.dir))
        return -1;
    snprintf(target.log, sizeof target.log, "%s/pipe.log", target.dir);
    o11y_error_def quota = {"QUOTA_EXCEEDED", 429, true, "The quota is used up"};
    if (o11y_error_register(&quota) != O11Y_OK)
        return -1;
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "pipeline-test";
    cfg.version = "9.9.9";
    cfg.max_body_bytes = 64;
    cfg.problem_type_base = "https://errors.example.com/";
    cfg.job_param = "jobId";
    cfg.log.file_path = target.log;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK)
        return -1;
    struct {
        unsigned m;
        const char *path;
        o11y_handler_fn fn;
        unsigned flags;
    } routes[] = {
        {O11Y_GET, "/fail", fails, 0},
        {O11Y_GET, "/silent", answers_nothing, 0},
        {O11Y_GET, "/internal", leaks_internals, 0},
        {O11Y_GET, "/custom", custom_code, 0},
        {O11Y_GET, "/query", echo_query, 0},
        {O11Y_GET, "/items/{itemId}/jobs/{jobId}", job_from_path, 0},
        {O11Y_POST | O11Y_PUT, "/strict", strict_json, O11Y_ROUTE_JSON},
        {O11Y_GET, "/headers", headers, 0},
        {O11Y_GET, "/firehose", firehose, 0},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (o11y_service_route(svc, routes[i].m, routes[i].path, routes[i].fn, NULL,
                               routes[i].flags) != O11Y_OK)
            return -1;
    o11y_mhd_config mc;
    o11y_mhd_config_init(&mc);
    mc.port = 0; /* any free port */
    mc.stream_max_unsent_bytes = 1024;
    if (o11y_mhd_start(svc, &mc, &server) != O11Y_OK)
        return -1;
    target.port = o11y_mhd_port(server);
    target.pid = -1;
    return target.port > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    o11y_mhd_stop(server);
    o11y_service_destroy(svc);
    gs_cleanup(&target);
    curl_global_cleanup();
    return 0;
}

static http_resp get(const char *path)
{
    http_resp r;
    assert_int_equal(http(&target, "GET", path, NULL, NULL, 0, &r), 0);
    return r;
}

static void failing_handlers_become_500(void **state)
{
    (void)state;
    static const char *const paths[] = {"/fail", "/silent"};
    for (size_t i = 0; i < 2; i++) {
        http_resp r = get(paths[i]);
        assert_int_equal(r.status, 500);
        assert_string_equal(resp_code(&r), "INTERNAL_ERROR");
        char v[64];
        assert_string_equal(resp_header(&r, "X-Service", v, sizeof v), "pipeline-test");
        http_resp_free(&r);
    }
    json_t *lines = log_wait(&target, "handler_failed", NULL, 2);
    assert_int_equal(json_array_size(lines), 2);
    json_decref(lines);
}

static void server_errors_keep_internals_in_the_log(void **state)
{
    (void)state;
    http_resp r = get("/internal");
    assert_int_equal(r.status, 503);
    assert_string_equal(resp_code(&r), "SERVICE_UNAVAILABLE");
    assert_null(strstr(r.body, "10.1.2.3"));
    assert_null(strstr(r.body, "ECONNREFUSED"));
    assert_null(strstr(r.body, "db.internal"));
    assert_null(json_object_get(json_object_get(r.json, "error"), "details"));
    char trace[128];
    resp_header(&r, "X-Trace-Id", trace, sizeof trace);
    http_resp_free(&r);
    json_t *lines = log_wait(&target, "request_failed", trace, 1);
    json_t *md = json_object_get(json_array_get(lines, 0), "metadata");
    assert_non_null(
        strstr(json_string_value(json_object_get(md, "internal_message")), "ECONNREFUSED"));
    json_decref(lines);
}

static void registered_codes_and_problem_base(void **state)
{
    (void)state;
    http_resp r = get("/custom");
    assert_int_equal(r.status, 429);
    assert_string_equal(resp_code(&r), "QUOTA_EXCEEDED");
    json_t *e = json_object_get(r.json, "error");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "Quota of 10 used");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "details"), "limit")),
                     10);
    http_resp_free(&r);
    const char *const h[] = {"Accept: application/problem+json", NULL};
    assert_int_equal(http(&target, "GET", "/custom", h, NULL, 0, &r), 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "type")),
                        "https://errors.example.com/QUOTA_EXCEEDED");
    assert_int_equal(json_integer_value(json_object_get(r.json, "status")), 429);
    http_resp_free(&r);
}

static void query_parameters(void **state)
{
    (void)state;
    http_resp r = get("/query?flag&name=a%20b+c&name=second");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "a b c");
    assert_true(json_is_true(json_object_get(r.json, "hasFlag")));
    assert_true(json_is_false(json_object_get(r.json, "hasMissing")));
    http_resp_free(&r);
    r = get("/query?name=%00");
    assert_true(json_is_false(json_object_get(r.json, "hasName")));
    http_resp_free(&r);
}

static void path_sets_the_job_and_the_context_reaches_the_handler(void **state)
{
    (void)state;
    const char *const h[] = {"X-Job-Id: job_from_header", "X-Trace-Id: pipe-trace-1", NULL};
    http_resp r;
    assert_int_equal(http(&target, "GET", "/items/it%201/jobs/job_99", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "job")), "job_99");
    assert_string_equal(json_string_value(json_object_get(r.json, "item")), "it 1");
    assert_string_equal(json_string_value(json_object_get(r.json, "route")),
                        "/items/{itemId}/jobs/{jobId}");
    char v[64];
    assert_string_equal(resp_header(&r, "X-Job-Id", v, sizeof v), "job_99");
    http_resp_free(&r);
    json_t *lines = read_log(&target);
    size_t i;
    json_t *l;
    bool seen = false;
    json_array_foreach(lines, i, l)
    {
        const char *m = json_string_value(json_object_get(l, "message"));
        const char *t = json_string_value(json_object_get(l, "trace_id"));
        if (m && t && strcmp(m, "inside the handler") == 0 && strcmp(t, "pipe-trace-1") == 0)
            seen = strcmp(json_string_value(json_object_get(l, "job_id")), "job_99") == 0;
    }
    json_decref(lines);
    if (!seen) { /* the line may still be in the queue */
        assert_int_equal(o11y_logger_flush(o11y_service_logger(svc), 5000), O11Y_OK);
        lines = read_log(&target);
        json_array_foreach(lines, i, l)
        {
            const char *m = json_string_value(json_object_get(l, "message"));
            if (m && strcmp(m, "inside the handler") == 0)
                seen = strcmp(json_string_value(json_object_get(l, "job_id")), "job_99") == 0;
        }
        json_decref(lines);
    }
    assert_true(seen);
}

static void json_routes_and_the_body_limit(void **state)
{
    (void)state;
    const char *const ct[] = {"Content-Type: application/json", NULL};
    http_resp r;
    assert_int_equal(http(&target, "PUT", "/strict", ct, "{\"a\":1,\"b\":2}", 13, &r), 0);
    assert_int_equal(r.status, 201);
    assert_int_equal(json_integer_value(json_object_get(r.json, "keys")), 2);
    http_resp_free(&r);
    char big[100];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[99] = '}';
    assert_int_equal(http(&target, "POST", "/strict", ct, big, sizeof big, &r), 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(resp_code(&r), "PAYLOAD_TOO_LARGE");
    http_resp_free(&r);
    assert_int_equal(http(&target, "POST", "/strict", ct, "[]", 2, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(resp_code(&r), "VALIDATION_FAILED");
    http_resp_free(&r);
}

static void response_headers_are_checked(void **state)
{
    (void)state;
    http_resp r = get("/headers");
    assert_int_equal(r.status, 200);
    static const char *const keys[] = {"crlf", "owned", "badName", "ok", "host"};
    for (size_t i = 0; i < 5; i++)
        assert_true(json_is_true(json_object_get(r.json, keys[i])));
    char v[64];
    assert_string_equal(resp_header(&r, "X-Custom", v, sizeof v), "fine");
    assert_null(strstr(r.headers, "Injected"));
    assert_true(strncmp(resp_header(&r, "X-Trace-Id", v, sizeof v), "mine", 4) != 0);
    http_resp_free(&r);
}

/* Asks for the firehose and never reads; returns how the server ended it (-1: not in 10 s). */
static int firehose_without_reading(int port, int *fd_out)
{
    atomic_store(&firehose_end, -1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096; /* set before connect: the window the server sees stays small */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char req[] = "GET /firehose HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)(sizeof req - 1));
    for (int i = 0; i < 1000 && atomic_load(&firehose_end) < 0; i++)
        usleep(10000);
    *fd_out = fd;
    return atomic_load(&firehose_end);
}

/* What o11y_service_cors refuses, on a service of its own (CORS is set once, before serving). */
static void cors_configuration_is_refused_when_wrong(void **state)
{
    (void)state;
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.log.file_path = "/dev/null";
    o11y_service *s = NULL;
    assert_int_equal(o11y_service_create(&cfg, &s), O11Y_OK);
    o11y_cors_config any_with_credentials = {.origins = "*", .allow_credentials = true};
    assert_int_equal(o11y_service_cors(s, &any_with_credentials), O11Y_EINVAL);
    o11y_cors_config bad_headers = {.origins = "http://a.example", .allow_headers = "X-A\r\nX: y"};
    assert_int_equal(o11y_service_cors(s, &bad_headers), O11Y_EINVAL);
    o11y_cors_config none = {.origins = ""};
    assert_int_equal(o11y_service_cors(s, &none), O11Y_EINVAL);
    assert_int_equal(o11y_service_cors(s, NULL), O11Y_EINVAL);
    o11y_cors_config good = {.origins = "http://a.example,https://b.example:8443",
                             .allow_credentials = true,
                             .allow_headers = "X-Client-Version"};
    assert_int_equal(o11y_service_cors(s, &good), O11Y_OK);
    assert_int_equal(o11y_service_cors(s, &good), O11Y_EINVAL); /* once */
    assert_int_equal(o11y_service_client_logs(s, NULL), O11Y_OK);
    assert_int_equal(o11y_service_client_logs(s, NULL), O11Y_EINVAL);
    o11y_service_destroy(s);
}

static void a_client_that_stops_reading_is_closed_as_too_slow(void **state)
{
    (void)state;
    int fd;
    assert_int_equal(firehose_without_reading(target.port, &fd), O11Y_STREAM_CLIENT_TOO_SLOW);
    /* The server goes on serving, and nothing more is produced for the closed stream: reading
     * drains what was in flight and then gets nothing more. (libmicrohttpd frees the socket on
     * its next sweep, which can be as late as the connection timeout.) */
    http_resp r = get("/query?name=a");
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    struct timeval wait = {0, 500 * 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait), 0);
    char buf[65536];
    ssize_t n;
    size_t total = 0;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        total += (size_t)n;
    assert_true(n == 0 || errno == EAGAIN || errno == ECONNRESET);
    assert_true(total < 1024 * 1024); /* bounded: nowhere near an endless stream */
    close(fd);
}

static void a_client_that_takes_nothing_is_closed_as_stalled(void **state)
{
    (void)state;
    /* No byte bound to trip here: the connection timeout ends it. */
    o11y_mhd_config mc;
    o11y_mhd_config_init(&mc);
    mc.port = 0;
    mc.connection_timeout_s = 1;
    mc.stream_max_unsent_bytes = 1u << 30;
    o11y_mhd_server *patient;
    assert_int_equal(o11y_mhd_start(svc, &mc, &patient), O11Y_OK);
    int fd;
    int end = firehose_without_reading(o11y_mhd_port(patient), &fd);
    close(fd);
    o11y_mhd_stop(patient);
    assert_int_equal(end, O11Y_STREAM_CLIENT_STALLED);
}

#ifdef TEST_H2O
/* The same two bounds on the h2o adapter: its generator sends a chunk and waits for h2o to ask
 * for more, so a slow client is seen by the socket's unsent bytes and a stalled one by a chunk
 * never taken. */
/* How an h2o server of its own ends the firehose of a client that never reads. */
static int firehose_end_on_h2o(unsigned io_timeout_s, size_t max_unsent_bytes)
{
    o11y_h2o_config hc;
    o11y_h2o_config_init(&hc);
    hc.threads = 1;
    if (io_timeout_s)
        hc.io_timeout_s = io_timeout_s;
    hc.stream_max_unsent_bytes = max_unsent_bytes;
    o11y_h2o_server *srv;
    assert_int_equal(o11y_h2o_start(svc, &hc, &srv), O11Y_OK);
    int fd;
    int end = firehose_without_reading(o11y_h2o_port(srv), &fd);
    close(fd);
    o11y_h2o_stop(srv);
    return end;
}

static void on_h2o_a_client_that_stops_reading_is_closed_as_too_slow(void **state)
{
    (void)state;
    assert_int_equal(firehose_end_on_h2o(0, 0), O11Y_STREAM_CLIENT_TOO_SLOW);
}

static void on_h2o_a_client_that_takes_nothing_is_closed_as_stalled(void **state)
{
    (void)state;
    assert_int_equal(firehose_end_on_h2o(1, 1u << 30), O11Y_STREAM_CLIENT_STALLED);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failing_handlers_become_500),
        cmocka_unit_test(server_errors_keep_internals_in_the_log),
        cmocka_unit_test(registered_codes_and_problem_base),
        cmocka_unit_test(query_parameters),
        cmocka_unit_test(path_sets_the_job_and_the_context_reaches_the_handler),
        cmocka_unit_test(json_routes_and_the_body_limit),
        cmocka_unit_test(response_headers_are_checked),
        cmocka_unit_test(cors_configuration_is_refused_when_wrong),
        cmocka_unit_test(a_client_that_stops_reading_is_closed_as_too_slow),
        cmocka_unit_test(a_client_that_takes_nothing_is_closed_as_stalled),
#ifdef TEST_H2O
        cmocka_unit_test(on_h2o_a_client_that_stops_reading_is_closed_as_too_slow),
        cmocka_unit_test(on_h2o_a_client_that_takes_nothing_is_closed_as_stalled),
#endif
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
