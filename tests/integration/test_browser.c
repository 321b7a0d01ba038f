/* Integration tests: what browsers need from generation-service, over real HTTP: CORS on every
 * kind of answer and the preflight (CONTRACT section 9), and the frontend log intake (section
 * 10). */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static const char app[] = "Origin: http://app.example.com";

static char *header(const http_resp *r, const char *name)
{
    static char buf[8][1024];
    static int next;
    char *b = buf[next++ % 8];
    return (char *)resp_header(r, name, b, 1024);
}

/* The headers an allowed origin gets on a non-preflight answer. */
static void expect_cors(const http_resp *r)
{
    assert_non_null(header(r, "Access-Control-Allow-Origin"));
    assert_string_equal(header(r, "Access-Control-Allow-Origin"), "http://app.example.com");
    assert_string_equal(header(r, "Vary"), "Origin");
    const char *expose = header(r, "Access-Control-Expose-Headers");
    assert_non_null(expose);
    assert_non_null(strstr(expose, "X-Trace-Id"));
    assert_non_null(strstr(expose, "Retry-After"));
    assert_non_null(strstr(expose, "Idempotent-Replayed"));
    assert_non_null(strstr(expose, "RateLimit-Policy"));
}

static void every_answer_to_an_allowed_origin_carries_cors(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--cors-origins",
                          "http://app.example.com, http://localhost:5173",
                          "--max-body",
                          "2048",
                          "--rate-limit-generations",
                          "1/60",
                          "--step-ms",
                          "20",
                          NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char project[64], episode[64];
    create_project(&p, project);
    create_episode(&p, project, 1, episode);
    http_resp r;
    /* 404 */
    const char *h[] = {app, NULL};
    assert_int_equal(
        http(&p, "GET", "/projects/proj_00000000000000000000000000000000", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    expect_cors(&r);
    http_resp_free(&r);
    /* 413 (refused before the body) and 415 */
    char big[4096];
    memset(big, 'x', sizeof big);
    const char *json_h[] = {app, "Content-Type: application/json", NULL};
    assert_int_equal(http(&p, "POST", "/projects", json_h, big, sizeof big, &r), 0);
    assert_int_equal(r.status, 413);
    expect_cors(&r);
    http_resp_free(&r);
    const char *text_h[] = {app, "Content-Type: text/plain", NULL};
    assert_int_equal(http(&p, "POST", "/projects", text_h, "{}", 2, &r), 0);
    assert_int_equal(r.status, 415);
    expect_cors(&r);
    http_resp_free(&r);
    /* a replay */
    const char *key_h[] = {app, "Content-Type: application/json", "Idempotency-Key: cors-1", NULL};
    assert_int_equal(http(&p, "POST", "/projects", key_h, "{\"name\":\"a\"}", 12, &r), 0);
    assert_int_equal(r.status, 201);
    expect_cors(&r);
    http_resp_free(&r);
    assert_int_equal(http(&p, "POST", "/projects", key_h, "{\"name\":\"a\"}", 12, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
    expect_cors(&r);
    http_resp_free(&r);
    /* the stream, then 429 */
    const char *gen_h[] = {app, NULL};
    assert_int_equal(post_generation(&p, project, episode, "cors", gen_h, &r), 0);
    assert_int_equal(r.status, 202);
    expect_cors(&r);
    char path[128];
    snprintf(path, sizeof path, "/generations/%s/events",
             json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    assert_int_equal(http(&p, "GET", path, h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "event: completed"));
    expect_cors(&r);
    http_resp_free(&r);
    assert_int_equal(post_generation(&p, project, episode, "again", gen_h, &r), 0);
    assert_int_equal(r.status, 429);
    expect_cors(&r);
    http_resp_free(&r);
    /* the second configured origin; another origin and none get only Vary */
    const char *local[] = {"Origin: http://localhost:5173", NULL};
    assert_int_equal(http(&p, "GET", "/health/live", local, NULL, 0, &r), 0);
    assert_string_equal(header(&r, "Access-Control-Allow-Origin"), "http://localhost:5173");
    http_resp_free(&r);
    const char *others[][2] = {{"Origin: http://evil.example", NULL},
                               {"Origin: http://app.example.com.evil.example", NULL},
                               {"Origin: HTTP://APP.EXAMPLE.COM", NULL},
                               {"Origin: null", NULL},
                               {NULL, NULL}};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_int_equal(
            http(&p, "GET", "/health/live", others[i][0] ? others[i] : NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        assert_null(header(&r, "Access-Control-Allow-Origin"));
        assert_null(header(&r, "Access-Control-Expose-Headers"));
        assert_string_equal(header(&r, "Vary"), "Origin");
        http_resp_free(&r);
    }
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void preflights_are_answered_by_the_pipeline(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--cors-origins", "http://app.example.com", "--rate-limit-all", "2/60",
                          NULL};
    assert_int_equal(gs_start(&p, args), 0);
    const char *pre[] = {app, "Access-Control-Request-Method: POST",
                         "Access-Control-Request-Headers: content-type, idempotency-key", NULL};
    http_resp r;
    /* more preflights than the limit allows requests: never limited */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(http(&p, "OPTIONS", "/projects", pre, NULL, 0, &r), 0);
        assert_int_equal(r.status, 204);
        assert_string_equal(header(&r, "Access-Control-Allow-Origin"), "http://app.example.com");
        assert_string_equal(header(&r, "Vary"), "Origin");
        assert_non_null(strstr(header(&r, "Access-Control-Allow-Methods"), "POST"));
        const char *allowed = header(&r, "Access-Control-Allow-Headers");
        assert_non_null(strstr(allowed, "Idempotency-Key"));
        assert_non_null(strstr(allowed, "traceparent"));
        assert_non_null(strstr(allowed, "Last-Event-ID"));
        assert_string_equal(header(&r, "Access-Control-Max-Age"), "600");
        assert_non_null(header(&r, "X-Trace-Id"));
        assert_int_equal(r.body_len, 0);
        http_resp_free(&r);
    }
    /* a route with parameters: its methods */
    assert_int_equal(http(&p, "OPTIONS", "/projects/p1/episodes/e1", pre, NULL, 0, &r), 0);
    assert_int_equal(r.status, 204);
    const char *methods = header(&r, "Access-Control-Allow-Methods");
    assert_non_null(strstr(methods, "PATCH"));
    assert_non_null(strstr(methods, "DELETE"));
    http_resp_free(&r);
    /* another origin: 403 in the envelope, Vary, nothing else */
    const char *evil[] = {"Origin: http://evil.example", "Access-Control-Request-Method: POST",
                          NULL};
    assert_int_equal(http(&p, "OPTIONS", "/projects", evil, NULL, 0, &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(resp_code(&r), "ORIGIN_NOT_ALLOWED");
    assert_null(header(&r, "Access-Control-Allow-Origin"));
    assert_string_equal(header(&r, "Vary"), "Origin");
    http_resp_free(&r);
    /* no route: 404 with the CORS headers */
    assert_int_equal(http(&p, "OPTIONS", "/nothing/here", pre, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(resp_code(&r), "NOT_FOUND");
    assert_string_equal(header(&r, "Access-Control-Allow-Origin"), "http://app.example.com");
    http_resp_free(&r);
    /* OPTIONS without Access-Control-Request-Method is not a preflight: 405 */
    const char *plain[] = {app, NULL};
    assert_int_equal(http(&p, "OPTIONS", "/projects", plain, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    http_resp_free(&r);
    /* the preflights are in the access log as 204, none as an error (the writer is
     * asynchronous: wait for them) */
    size_t ok = 0;
    for (int tries = 0; tries < 100 && ok < 6; tries++) {
        usleep(50000);
        json_t *lines = read_log(&p);
        json_t *access = log_events(lines, "http_request");
        size_t i;
        json_t *l;
        ok = 0;
        json_array_foreach(access, i, l)
        {
            json_t *md = json_object_get(l, "metadata");
            if (strcmp(json_string_value(json_object_get(md, "method")), "OPTIONS") == 0 &&
                json_integer_value(json_object_get(md, "status")) == 204) {
                ok++;
                assert_string_equal(json_string_value(json_object_get(l, "level")), "INFO");
            }
        }
        json_decref(access);
        json_decref(lines);
    }
    assert_int_equal(ok, 6);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void cors_configuration_is_checked(void **state)
{
    (void)state;
    const char *bad[] = {"ftp://x.example",        "http://app.example.com/path",
                         "app.example.com",        "http://user@app.example.com",
                         "http://APP.example.com", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gs_proc p;
        const char *args[] = {"--cors-origins", bad[i], NULL};
        /* The service refuses to start: gs_start sees it exit. */
        assert_int_not_equal(gs_start(&p, args), 0);
        gs_cleanup(&p);
    }
    /* "*": any origin, as "*" */
    gs_proc p;
    const char *any[] = {"--cors-origins", "*", NULL};
    assert_int_equal(gs_start(&p, any), 0);
    const char *h[] = {"Origin: http://anything.example", NULL};
    http_resp r;
    assert_int_equal(http(&p, "GET", "/health/live", h, NULL, 0, &r), 0);
    assert_string_equal(header(&r, "Access-Control-Allow-Origin"), "*");
    assert_null(header(&r, "Access-Control-Allow-Credentials"));
    http_resp_free(&r);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
    /* off by default: no Vary, preflights are 405 */
    assert_int_equal(gs_start(&p, NULL), 0);
    const char *pre[] = {app, "Access-Control-Request-Method: POST", NULL};
    assert_int_equal(http(&p, "OPTIONS", "/projects", pre, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    assert_null(header(&r, "Vary"));
    assert_null(header(&r, "Access-Control-Allow-Origin"));
    http_resp_free(&r);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/*=== the frontend log intake ===*/

static int post_logs(const gs_proc *p, const char *content_type, const char *body, http_resp *r)
{
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    const char *h[] = {ct, NULL};
    return http(p, "POST", "/client-logs", h, body, strlen(body), r);
}

static json_t *browser_lines(const gs_proc *p)
{
    json_t *all = read_log(p), *out = json_array();
    size_t i;
    json_t *l;
    json_array_foreach(all, i, l)
    {
        const char *src = json_string_value(json_object_get(l, "source"));
        if (src && strcmp(src, "browser") == 0)
            json_array_append(out, l);
    }
    json_decref(all);
    return out;
}

static json_t *browser_lines_wait(const gs_proc *p, size_t n)
{
    json_t *lines = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(lines);
        lines = browser_lines(p);
        if (json_array_size(lines) >= n)
            break;
        usleep(50000);
    }
    return lines;
}

static void browser_records_become_log_lines(void **state)
{
    (void)state;
    gs_proc p;
    assert_int_equal(gs_start(&p, NULL), 0);
    const char *batch =
        "{\"logs\":["
        "{\"timestamp\":\"2026-11-29T10:00:00.000Z\",\"level\":\"info\",\"message\":\"clicked "
        "generate\",\"traceId\":\"0193f0a2-7c1e-7d3a-9b1c-2f4e5d6a7b8c\",\"spanId\":"
        "\"00f067aa0ba902b7\",\"jobId\":\"job_1\",\"projectId\":\"proj_1\",\"event\":"
        "\"user_action\",\"sessionId\":\"s-1\",\"durationMs\":12.5,\"metadata\":{\"element\":"
        "\"button#generate\",\"password\":\"hunter2\",\"nested\":{\"apiKey\":\"k\",\"n\":1},"
        "\"list\":[1,2,3]}},"
        "{\"level\":\"fatal\",\"message\":\"not a level we take\"},"
        "{\"level\":\"info\"},"
        "\"not an object\","
        "{\"level\":\"WARN\",\"message\":\"bad ids\",\"traceId\":\"bad id!\",\"spanId\":\"XYZ\"}"
        "]}";
    http_resp r;
    assert_int_equal(post_logs(&p, "application/json", batch, &r), 0);
    assert_int_equal(r.status, 202);
    assert_int_equal(json_integer_value(json_object_get(r.json, "accepted")), 2);
    assert_int_equal(json_integer_value(json_object_get(r.json, "rejected")), 3);
    http_resp_free(&r);
    json_t *lines = browser_lines_wait(&p, 2);
    assert_int_equal(json_array_size(lines), 2);
    json_t *a = json_array_get(lines, 0), *b = json_array_get(lines, 1);
    assert_string_equal(json_string_value(json_object_get(a, "message")), "clicked generate");
    assert_string_equal(json_string_value(json_object_get(a, "level")), "INFO");
    assert_string_equal(json_string_value(json_object_get(a, "service")), "generation-service");
    assert_string_equal(json_string_value(json_object_get(a, "trace_id")),
                        "0193f0a2-7c1e-7d3a-9b1c-2f4e5d6a7b8c");
    assert_string_equal(json_string_value(json_object_get(a, "span_id")), "00f067aa0ba902b7");
    assert_string_equal(json_string_value(json_object_get(a, "job_id")), "job_1");
    assert_string_equal(json_string_value(json_object_get(a, "event")), "user_action");
    assert_true(json_real_value(json_object_get(a, "duration_ms")) == 12.5);
    json_t *md = json_object_get(a, "metadata");
    assert_string_equal(json_string_value(json_object_get(md, "element")), "button#generate");
    assert_string_equal(json_string_value(json_object_get(md, "password")), "***");
    assert_string_equal(json_string_value(json_object_get(json_object_get(md, "nested"), "apiKey")),
                        "***");
    assert_string_equal(json_string_value(json_object_get(md, "list")), "[1,2,3]");
    assert_string_equal(json_string_value(json_object_get(md, "session_id")), "s-1");
    /* the record with bad ids is kept without them */
    assert_string_equal(json_string_value(json_object_get(b, "level")), "WARN");
    assert_null(json_object_get(b, "trace_id"));
    assert_null(json_object_get(b, "span_id"));
    json_decref(lines);
    /* sendBeacon's text/plain is taken too */
    assert_int_equal(post_logs(&p, "text/plain;charset=UTF-8",
                               "{\"logs\":[{\"level\":\"debug\",\"message\":\"page hidden\"}]}",
                               &r),
                     0);
    assert_int_equal(r.status, 202);
    http_resp_free(&r);
    /* the backend's line for the same user action shares the trace */
    const char *t[] = {"X-Trace-Id: 0193f0a2-7c1e-7d3a-9b1c-2f4e5d6a7b8c", NULL};
    assert_int_equal(http(&p, "GET", "/health/live", t, NULL, 0, &r), 0);
    http_resp_free(&r);
    json_t *both = log_wait(&p, "http_request", "0193f0a2-7c1e-7d3a-9b1c-2f4e5d6a7b8c", 1);
    assert_int_equal(json_array_size(both), 1);
    json_decref(both);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void bad_batches_are_refused_whole(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--rate-limit-client-logs", "0", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    http_resp r;
    const char *not_batches[] = {"{\"logs\":{}}", "[]", "garbage", "{\"logs\":\"x\"}", "{}"};
    for (size_t i = 0; i < sizeof not_batches / sizeof not_batches[0]; i++) {
        assert_int_equal(post_logs(&p, "application/json", not_batches[i], &r), 0);
        assert_int_equal(r.status, 400);
        assert_string_equal(resp_code(&r), "VALIDATION_FAILED");
        http_resp_free(&r);
    }
    /* 101 records: 400, none written */
    size_t cap = 101 * 40 + 32, len = 0;
    char *many = malloc(cap);
    len += (size_t)snprintf(many + len, cap - len, "{\"logs\":[");
    for (int i = 0; i < 101; i++)
        len += (size_t)snprintf(many + len, cap - len, "%s{\"level\":\"info\",\"message\":\"m\"}",
                                i ? "," : "");
    snprintf(many + len, cap - len, "]}");
    assert_int_equal(post_logs(&p, "application/json", many, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(resp_code(&r), "VALIDATION_FAILED");
    http_resp_free(&r);
    free(many);
    /* over 64 KiB: 413 */
    size_t big_len = 70 * 1024;
    char *big = malloc(big_len + 64);
    int n = snprintf(big, 64, "{\"logs\":[{\"level\":\"info\",\"message\":\"");
    memset(big + n, 'm', big_len);
    snprintf(big + n + big_len, 16, "\"}]}");
    assert_int_equal(post_logs(&p, "application/json", big, &r), 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(resp_code(&r), "PAYLOAD_TOO_LARGE");
    http_resp_free(&r);
    free(big);
    usleep(100000);
    json_t *lines = browser_lines(&p);
    assert_int_equal(json_array_size(lines), 0);
    json_decref(lines);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void the_intake_is_rate_limited_and_can_be_off(void **state)
{
    (void)state;
    gs_proc p;
    assert_int_equal(gs_start(&p, NULL), 0);
    http_resp r;
    int limited = 0;
    for (int i = 0; i < 12; i++) {
        assert_int_equal(post_logs(&p, "application/json",
                                   "{\"logs\":[{\"level\":\"info\",\"message\":\"m\"}]}", &r),
                         0);
        if (r.status == 429) {
            limited++;
            assert_string_equal(resp_code(&r), "RATE_LIMITED");
        } else {
            assert_int_equal(r.status, 202);
        }
        http_resp_free(&r);
    }
    assert_true(limited >= 1); /* 10 a second per client */
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
    const char *off[] = {"--client-logs", "off", NULL};
    assert_int_equal(gs_start(&p, off), 0);
    assert_int_equal(post_logs(&p, "application/json", "{\"logs\":[]}", &r), 0);
    assert_int_equal(r.status, 404);
    http_resp_free(&r);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* The console's files from --console-dir: content types, caching, ETags, a redirect. */
static void the_console_is_served_with_types_and_caching(void **state)
{
    (void)state;
    char dir[] = "/tmp/o11y-console-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *files[][2] = {{"index.html", "<!doctype html><title>c</title>"},
                              {"console.js", "console.log(1)"},
                              {"console.css", "body{}"}};
    for (size_t i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        FILE *f = fopen(path, "w");
        fputs(files[i][1], f);
        fclose(f);
    }
    gs_proc p;
    const char *args[] = {"--console-dir", dir, NULL};
    assert_int_equal(gs_start(&p, args), 0);
    http_resp r;
    assert_int_equal(http(&p, "GET", "/console", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 301);
    assert_string_equal(header(&r, "Location"), "/console/index.html");
    http_resp_free(&r);
    assert_int_equal(http(&p, "GET", "/console/index.html", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_string_equal(header(&r, "Cache-Control"), "no-cache");
    assert_string_equal(header(&r, "X-Content-Type-Options"), "nosniff");
    assert_non_null(strstr(header(&r, "Content-Security-Policy"), "script-src 'self'"));
    assert_non_null(header(&r, "X-Trace-Id"));
    assert_string_equal(r.body, files[0][1]);
    http_resp_free(&r);
    assert_int_equal(http(&p, "GET", "/console/console.js", NULL, NULL, 0, &r), 0);
    assert_string_equal(header(&r, "Content-Type"), "text/javascript; charset=utf-8");
    assert_string_equal(header(&r, "Cache-Control"), "public, max-age=300");
    char etag[64];
    snprintf(etag, sizeof etag, "If-None-Match: %s", header(&r, "ETag"));
    http_resp_free(&r);
    const char *cond[] = {etag, NULL};
    assert_int_equal(http(&p, "GET", "/console/console.js", cond, NULL, 0, &r), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    http_resp_free(&r);
    assert_int_equal(http(&p, "GET", "/console/console.css", NULL, NULL, 0, &r), 0);
    assert_string_equal(header(&r, "Content-Type"), "text/css; charset=utf-8");
    http_resp_free(&r);
    /* nothing else: no other file, no way out of the folder */
    const char *missing[] = {"/console/nope.js", "/console/..%2fgs.db", "/console/%2e%2e",
                             "/console/.hidden"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        assert_int_equal(http(&p, "GET", missing[i], NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 404);
        assert_string_equal(resp_code(&r), "NOT_FOUND");
        http_resp_free(&r);
    }
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
    /* a folder without index.html: no console, the service runs */
    char empty[] = "/tmp/o11y-noconsole-XXXXXX";
    assert_non_null(mkdtemp(empty));
    const char *none[] = {"--console-dir", empty, NULL};
    assert_int_equal(gs_start(&p, none), 0);
    assert_int_equal(http(&p, "GET", "/console", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    http_resp_free(&r);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
    rmdir(empty);
    for (size_t i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_answer_to_an_allowed_origin_carries_cors),
        cmocka_unit_test(preflights_are_answered_by_the_pipeline),
        cmocka_unit_test(cors_configuration_is_checked),
        cmocka_unit_test(browser_records_become_log_lines),
        cmocka_unit_test(bad_batches_are_refused_whole),
        cmocka_unit_test(the_intake_is_rate_limited_and_can_be_off),
        cmocka_unit_test(the_console_is_served_with_types_and_caching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
