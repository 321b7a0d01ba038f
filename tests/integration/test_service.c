/* Integration tests: generation-service over real HTTP (CONTRACT sections 1, 2, 3, 6, 7).
 * Every bad input asserts the exact status and code, and that nothing was stored or lost. */
#include "harness.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static gs_proc svc;
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return gs_start(&svc, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = gs_stop(&svc);
    /* A clean stop flushes the log: its last line says so, and every line is JSON. */
    json_t *lines = read_log(&svc);
    json_t *last = json_array_get(lines, json_array_size(lines) - 1);
    const char *event = json_string_value(json_object_get(last, "event"));
    bool flushed = event && strcmp(event, "service_stopped") == 0;
    json_decref(lines);
    gs_cleanup(&svc);
    curl_global_cleanup();
    if (rc != 0 || !flushed) {
        fprintf(stderr, "service exit %d, log flushed %d\n", rc, flushed);
        return -1;
    }
    return 0;
}

static http_resp req(const char *method, const char *path, const char *const *headers,
                     const char *body)
{
    http_resp r;
    assert_int_equal(http(&svc, method, path, headers, body, body ? strlen(body) : 0, &r), 0);
    return r;
}

static void expect_error(http_resp *r, long status, const char *code)
{
    if (r->status != status || !resp_code(r) || strcmp(resp_code(r), code) != 0)
        fail_msg("want %ld %s, got %ld %s", status, code, r->status, r->body);
    char ct[128], cc[64], trace[256];
    assert_non_null(resp_header(r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "application/json");
    assert_non_null(resp_header(r, "Cache-Control", cc, sizeof cc));
    assert_string_equal(cc, "no-store");
    json_t *e = json_object_get(r->json, "error");
    assert_true(json_is_false(json_object_get(r->json, "success")));
    assert_non_null(json_string_value(json_object_get(e, "message")));
    assert_non_null(resp_header(r, "X-Trace-Id", trace, sizeof trace));
    assert_string_equal(json_string_value(json_object_get(e, "traceId")), trace);
    const char *ts = json_string_value(json_object_get(e, "timestamp"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
}

static size_t episode_count(const char *project)
{
    char path[256];
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    http_resp r = req("GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    size_t n = (size_t)json_integer_value(json_object_get(r.json, "count"));
    assert_int_equal(n, json_array_size(json_object_get(r.json, "items")));
    http_resp_free(&r);
    return n;
}

static http_resp post_episode(const char *project, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    return req("POST", path, JSON_CT, body);
}

/*=== MARK: the happy path ===*/

static void projects_and_episodes_round_trip(void **state)
{
    (void)state;
    char p[64], path[256], hdr[256];
    create_project(&svc, p);
    assert_memory_equal(p, "proj_", 5);

    http_resp r = req("GET", "/projects/nope", NULL, NULL);
    expect_error(&r, 404, "PROJECT_NOT_FOUND");
    http_resp_free(&r);

    snprintf(path, sizeof path, "/projects/%s", p);
    r = req("GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Show");
    assert_string_equal(resp_header(&r, "X-Project-Id", hdr, sizeof hdr), p);
    http_resp_free(&r);

    r = post_episode(p, "{\"number\":2,\"title\":\"Second\",\"content\":\"Two\"}");
    assert_int_equal(r.status, 201);
    char ep2[64];
    snprintf(ep2, sizeof ep2, "%s", json_string_value(json_object_get(r.json, "id")));
    assert_memory_equal(ep2, "ep_", 3);
    assert_string_equal(json_string_value(json_object_get(r.json, "projectId")), p);
    http_resp_free(&r);
    r = post_episode(p, "{\"number\":1,\"title\":\"Pilot\"}");
    assert_int_equal(r.status, 201);
    assert_true(json_is_null(json_object_get(r.json, "content")));
    http_resp_free(&r);

    snprintf(path, sizeof path, "/projects/%s/episodes", p);
    r = req("GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "number")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 1), "number")), 2);
    http_resp_free(&r);

    snprintf(path, sizeof path, "/projects/%s/episodes/%s", p, ep2);
    r = req("PATCH", path, JSON_CT, "{\"title\":\"Renamed\",\"number\":3}");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "title")), "Renamed");
    assert_int_equal(json_integer_value(json_object_get(r.json, "number")), 3);
    assert_string_equal(json_string_value(json_object_get(r.json, "content")), "Two");
    http_resp_free(&r);

    r = req("GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "title")), "Renamed");
    http_resp_free(&r);

    r = req("DELETE", path, NULL, NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    http_resp_free(&r);
    r = req("GET", path, NULL, NULL);
    expect_error(&r, 404, "EPISODE_NOT_FOUND");
    http_resp_free(&r);
    r = req("DELETE", path, NULL, NULL);
    expect_error(&r, 404, "EPISODE_NOT_FOUND");
    http_resp_free(&r);
    snprintf(path, sizeof path, "/projects/proj_missing/episodes/%s", ep2);
    r = req("GET", path, NULL, NULL);
    expect_error(&r, 404, "PROJECT_NOT_FOUND");
    http_resp_free(&r);
    r = req("GET", "/projects/proj_missing/episodes", NULL, NULL);
    expect_error(&r, 404, "PROJECT_NOT_FOUND");
    http_resp_free(&r);
    r = post_episode("proj_missing", "{\"number\":1,\"title\":\"x\"}");
    expect_error(&r, 404, "PROJECT_NOT_FOUND");
    http_resp_free(&r);
    assert_int_equal(episode_count(p), 1);
}

static void episode_events_carry_the_trace(void **state)
{
    (void)state;
    char p[64], path[256], trace[256];
    create_project(&svc, p);
    const char *const h[] = {"Content-Type: application/json", "X-Trace-Id: trace-events-1", NULL};
    snprintf(path, sizeof path, "/projects/%s/episodes", p);
    http_resp r = req("POST", path, h, "{\"number\":7,\"title\":\"Seven\"}");
    assert_int_equal(r.status, 201);
    assert_string_equal(resp_header(&r, "X-Trace-Id", trace, sizeof trace), "trace-events-1");
    char ep[64];
    snprintf(ep, sizeof ep, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    const char *const h2[] = {"Content-Type: application/json", "X-Trace-Id: trace-events-2", NULL};
    snprintf(path, sizeof path, "/projects/%s/episodes/%s", p, ep);
    r = req("PATCH", path, h2, "{\"title\":\"Seven!\"}");
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    const char *const h3[] = {"X-Trace-Id: trace-events-3", NULL};
    r = req("DELETE", path, h3, NULL);
    assert_int_equal(r.status, 204);
    http_resp_free(&r);

    json_t *created = log_wait(&svc, "episode_created", "trace-events-1", 1);
    assert_int_equal(json_array_size(created), 1);
    json_t *c = json_array_get(created, 0);
    json_t *md = json_object_get(c, "metadata");
    assert_string_equal(json_string_value(json_object_get(c, "project_id")), p);
    assert_string_equal(json_string_value(json_object_get(md, "project_id")), p);
    assert_string_equal(json_string_value(json_object_get(md, "episode_id")), ep);
    assert_int_equal(json_integer_value(json_object_get(md, "episode_number")), 7);
    assert_string_equal(json_string_value(json_object_get(md, "title")), "Seven");
    json_decref(created);
    json_t *updated = log_wait(&svc, "episode_updated", "trace-events-2", 1);
    assert_int_equal(json_array_size(updated), 1);
    md = json_object_get(json_array_get(updated, 0), "metadata");
    assert_string_equal(json_string_value(json_object_get(json_object_get(md, "changes"), "title")),
                        "Seven!");
    json_decref(updated);
    json_t *deleted = log_wait(&svc, "episode_deleted", "trace-events-3", 1);
    assert_int_equal(json_array_size(deleted), 1);
    md = json_object_get(json_array_get(deleted, 0), "metadata");
    assert_int_equal(json_integer_value(json_object_get(md, "episode_number")), 7);
    json_decref(deleted);

    /* One access line per request, with the contract's fields. */
    json_t *access = log_wait(&svc, "http_request", "trace-events-2", 1);
    assert_int_equal(json_array_size(access), 1);
    json_t *a = json_array_get(access, 0);
    md = json_object_get(a, "metadata");
    assert_string_equal(json_string_value(json_object_get(md, "method")), "PATCH");
    assert_string_equal(json_string_value(json_object_get(md, "route")),
                        "/projects/{projectId}/episodes/{episodeId}");
    assert_string_equal(json_string_value(json_object_get(md, "path")), path);
    assert_int_equal(json_integer_value(json_object_get(md, "status")), 200);
    assert_true(json_integer_value(json_object_get(md, "bytes")) > 0);
    assert_true(json_is_number(json_object_get(a, "duration_ms")));
    json_decref(access);
}

/*=== MARK: trace headers ===*/

static bool is_uuid7(const char *s)
{
    return s && strlen(s) == 36 && s[14] == '7' && s[8] == '-' &&
           strspn(s, "0123456789abcdef-") == 36;
}

static void trace_headers_on_every_response(void **state)
{
    (void)state;
    static const char *const paths[] = {"/projects/x", "/nope", "/projects/x/episodes/y"};
    for (size_t i = 0; i < 3; i++) {
        http_resp r = req("GET", paths[i], NULL, NULL);
        char v[256];
        assert_true(is_uuid7(resp_header(&r, "X-Trace-Id", v, sizeof v)));
        assert_string_equal(resp_header(&r, "X-Service", v, sizeof v), "generation-service");
        const char *pt = resp_header(&r, "X-Processing-Time", v, sizeof v);
        assert_non_null(pt);
        char *end;
        double ms = strtod(pt, &end);
        assert_true(*end == '\0' && ms >= 0 && strchr(pt, '.') != NULL);
        http_resp_free(&r);
    }
}

static void incoming_trace_ids(void **state)
{
    (void)state;
    char v[256];
    const char *const valid[] = {"X-Trace-Id: abc.DEF_1:2-3", "X-Job-Id: job_456",
                                 "X-Project-Id: proj_789", NULL};
    http_resp r = req("GET", "/nope", valid, NULL);
    assert_string_equal(resp_header(&r, "X-Trace-Id", v, sizeof v), "abc.DEF_1:2-3");
    assert_string_equal(resp_header(&r, "X-Job-Id", v, sizeof v), "job_456");
    assert_string_equal(resp_header(&r, "X-Project-Id", v, sizeof v), "proj_789");
    http_resp_free(&r);

    const char *const tp[] = {
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", NULL};
    r = req("GET", "/nope", tp, NULL);
    assert_string_equal(resp_header(&r, "X-Trace-Id", v, sizeof v),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    http_resp_free(&r);
    /* The request is a span of its own whose parent is the traceparent's parent-id. */
    json_t *access = log_wait(&svc, "http_request", "4bf92f3577b34da6a3ce929d0e0e4736", 1);
    assert_int_equal(json_array_size(access), 1);
    json_t *line = json_array_get(access, 0);
    const char *span = json_string_value(json_object_get(line, "span_id"));
    assert_non_null(span);
    assert_int_equal(strlen(span), 16);
    assert_int_equal(strspn(span, "0123456789abcdef"), 16);
    assert_string_not_equal(span, "00f067aa0ba902b7");
    assert_string_equal(json_string_value(json_object_get(line, "parent_span_id")),
                        "00f067aa0ba902b7");
    json_decref(access);
    /* Without a traceparent: a span, no parent (absent, not null). */
    access = log_wait(&svc, "http_request", "abc.DEF_1:2-3", 1);
    line = json_array_get(access, 0);
    assert_int_equal(strlen(json_string_value(json_object_get(line, "span_id"))), 16);
    assert_null(json_object_get(line, "parent_span_id"));
    json_decref(access);

    const char *const bad_tp[] = {
        "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", NULL};
    r = req("GET", "/projects/x", bad_tp, NULL);
    assert_int_equal(r.status, 404); /* an invalid traceparent never fails the request */
    assert_true(is_uuid7(resp_header(&r, "X-Trace-Id", v, sizeof v)));
    http_resp_free(&r);

    /* The path's project overrides the header. */
    const char *const other[] = {"X-Project-Id: proj_header", NULL};
    r = req("GET", "/projects/proj_path", other, NULL);
    assert_string_equal(resp_header(&r, "X-Project-Id", v, sizeof v), "proj_path");
    http_resp_free(&r);
}

static void invalid_trace_values_are_never_echoed_or_logged(void **state)
{
    (void)state;
    static char huge[10 * 1024 + 32];
    snprintf(huge, sizeof huge, "X-Trace-Id: ");
    memset(huge + 12, 'q', 10 * 1024);
    const char *const cases[][2] = {
        {huge, NULL},
        {"X-Trace-Id: evil\"quote", NULL},
        {"X-Trace-Id: evil\\backslash", NULL},
        {"X-Trace-Id: evil\xc3\xa9utf8", NULL},
        {"X-Job-Id: eviljob\xff", NULL},
        {"X-Project-Id: evil project", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_resp r = req("GET", "/nope", cases[i], NULL);
        expect_error(&r, 404, "NOT_FOUND");
        char v[256];
        assert_true(is_uuid7(resp_header(&r, "X-Trace-Id", v, sizeof v)));
        assert_null(resp_header(&r, "X-Job-Id", v, sizeof v));
        assert_null(resp_header(&r, "X-Project-Id", v, sizeof v));
        assert_null(strstr(r.headers, "evil"));
        assert_null(strstr(r.body, "evil"));
        http_resp_free(&r);
    }
    /* CR/LF cannot be sent inside a header line; a folded (obs-fold) line is the closest a
     * client gets. Whatever the server does with it, nothing of it comes back. */
    const char raw[] = "GET /nope HTTP/1.1\r\nHost: x\r\nX-Trace-Id: evilfold\r\n \"injected\r\n"
                       "Connection: close\r\n\r\n";
    size_t len;
    char *resp = raw_exchange(svc.port, raw, sizeof raw - 1, 2000, &len);
    assert_non_null(resp);
    assert_null(strstr(resp, "evilfold"));
    assert_null(strstr(resp, "injected"));
    free(resp);
    json_t *lines = log_wait(&svc, "http_request", NULL, 1);
    json_decref(lines);
    usleep(100000);
    char *log = read_log_raw(&svc, &len);
    assert_null(strstr(log, "evil"));
    assert_null(strstr(log, "qqqqqqqq"));
    free(log);
}

/*=== MARK: bad input ===*/

static void malformed_bodies(void **state)
{
    (void)state;
    char p[64];
    create_project(&svc, p);
    static char deep[2 * 100000 + 64];
    size_t n = (size_t)snprintf(deep, sizeof deep, "{\"number\":1,\"title\":\"t\",\"x\":");
    for (int i = 0; i < 100000; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100000; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    static char big_title[1000000 + 64];
    n = (size_t)snprintf(big_title, sizeof big_title, "{\"number\":1,\"title\":\"");
    memset(big_title + n, 'a', 1000000);
    snprintf(big_title + n + 1000000, 64, "\"}");
    char long201[1024] = "{\"number\":1,\"title\":\"";
    for (int i = 0; i < 201; i++)
        strcat(long201, "\xc3\xa9");
    strcat(long201, "\"}");
    const char *const bodies[] = {
        "{\"number\":1,",                                   /* malformed */
        "[{\"number\":1,\"title\":\"t\"}]",                 /* array, not object */
        "{}",                                               /* missing fields */
        "{\"title\":\"t\"}",                                /* missing number */
        "{\"number\":\"1\",\"title\":\"t\"}",               /* wrong type */
        "{\"number\":1,\"title\":5}",                       /* wrong type */
        "{\"number\":0,\"title\":\"t\"}",                   /* zero */
        "{\"number\":-1,\"title\":\"t\"}",                  /* negative */
        "{\"number\":9223372036854775808,\"title\":\"t\"}", /* 2^63 */
        "{\"number\":100001,\"title\":\"t\"}",              /* over the range */
        "{\"number\":1.5,\"title\":\"t\"}",                 /* float */
        "{\"number\":1.0,\"title\":\"t\"}",                 /* float, even when whole */
        "{\"number\":\"one\",\"title\":\"t\"}",             /* string */
        "{\"number\":1,\"title\":\"\"}",                    /* empty title */
        big_title,                                          /* 1 MB title */
        long201,                                            /* 201 code points */
        "{\"number\":1,\"title\":\"bad \xff\xfe utf8\"}",   /* invalid UTF-8 */
        "{\"number\":1,\"title\":\"nul \\u0000 char\"}",    /* \u0000 */
        "{\"number\":1,\"number\":2,\"title\":\"t\"}",      /* duplicate keys */
        deep,                                               /* nesting 100,000 deep */
        "{\"number\":1,\"title\":\"t\",\"content\":null}",  /* null */
        "{\"number\":1,\"title\":null}",                    /* null */
        "{\"number\":1,\"title\":\"t\",\"extra\":true}",    /* unknown field */
        "",                                                 /* empty body */
        "{\"number\":1,\"title\":\"t\"} trailing",          /* trailing data */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        http_resp r = post_episode(p, bodies[i]);
        if (r.status != 400)
            fail_msg("body %zu: want 400, got %ld %s", i, r.status, r.body);
        expect_error(&r, 400, "VALIDATION_FAILED");
        /* Nothing of the invalid bytes comes back raw. */
        assert_null(strstr(r.body, "\xff\xfe"));
        http_resp_free(&r);
    }
    assert_int_equal(episode_count(p), 0);
    assert_true(gs_alive(&svc));

    /* Field-level details name the fields. */
    http_resp r = post_episode(p, "{\"extra\":1}");
    json_t *fields =
        json_object_get(json_object_get(json_object_get(r.json, "error"), "details"), "fields");
    assert_true(json_array_size(fields) >= 3);
    bool named[3] = {false};
    size_t k;
    json_t *f;
    json_array_foreach(fields, k, f)
    {
        const char *name = json_string_value(json_object_get(f, "field"));
        named[0] |= strcmp(name, "extra") == 0;
        named[1] |= strcmp(name, "number") == 0;
        named[2] |= strcmp(name, "title") == 0;
        assert_non_null(json_string_value(json_object_get(f, "problem")));
    }
    assert_true(named[0] && named[1] && named[2]);
    http_resp_free(&r);

    /* The limits themselves are accepted: 200 code points, 512 KiB of content, 100000. */
    char ok200[1024] = "{\"number\":100000,\"title\":\"";
    for (int i = 0; i < 200; i++)
        strcat(ok200, "\xc3\xa9");
    strcat(ok200, "\"}");
    r = post_episode(p, ok200);
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
    assert_int_equal(episode_count(p), 1);
}

static void content_types(void **state)
{
    (void)state;
    char p[64], path[256];
    create_project(&svc, p);
    snprintf(path, sizeof path, "/projects/%s/episodes", p);
    const char *const plain[] = {"Content-Type: text/plain", NULL};
    http_resp r = req("POST", path, plain, "{\"number\":1,\"title\":\"t\"}");
    expect_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    http_resp_free(&r);
    const char *const none[] = {"Content-Type:", NULL};
    r = req("POST", path, none, "{\"number\":1,\"title\":\"t\"}");
    expect_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    http_resp_free(&r);
    const char *const almost[] = {"Content-Type: application/jsonx", NULL};
    r = req("POST", path, almost, "{\"number\":1,\"title\":\"t\"}");
    expect_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    http_resp_free(&r);
    assert_int_equal(episode_count(p), 0);
    const char *const params[] = {"Content-Type: Application/JSON; charset=utf-8", NULL};
    r = req("POST", path, params, "{\"number\":1,\"title\":\"t\"}");
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
    assert_int_equal(episode_count(p), 1);
}

static void bodies_over_the_limit(void **state)
{
    (void)state;
    char p[64], path[256];
    create_project(&svc, p);
    snprintf(path, sizeof path, "/projects/%s/episodes", p);
    size_t len = (1u << 20) + 1;
    char *body = malloc(len);
    memset(body, ' ', len);
    body[0] = '{';
    body[len - 1] = '}';
    http_resp r;
    assert_int_equal(http(&svc, "POST", path, JSON_CT, body, len, &r), 0);
    expect_error(&r, 413, "PAYLOAD_TOO_LARGE");
    http_resp_free(&r);
    /* Chunked: no Content-Length to refuse up front; refused once the limit is crossed. */
    const char *const chunked[] = {"Content-Type: application/json", "Transfer-Encoding: chunked",
                                   NULL};
    assert_int_equal(http(&svc, "POST", path, chunked, body, len, &r), 0);
    expect_error(&r, 413, "PAYLOAD_TOO_LARGE");
    http_resp_free(&r);
    free(body);
    assert_int_equal(episode_count(p), 0);
    assert_true(gs_alive(&svc));
}

static void unknown_routes_and_wrong_methods(void **state)
{
    (void)state;
    static const char *const unknown[] = {"/", "/project", "/projects/x/y",
                                          "/projects/x/episodes/y/z", "/PROJECTS/x"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        http_resp r = req("GET", unknown[i], NULL, NULL);
        expect_error(&r, 404, "NOT_FOUND");
        http_resp_free(&r);
    }
    static const struct {
        const char *method, *path, *allow;
    } wrong[] = {
        {"GET", "/projects", "POST"},
        {"PUT", "/projects/x", "GET, HEAD"},
        {"DELETE", "/projects/x/episodes", "GET, HEAD, POST"},
        {"POST", "/projects/x/episodes/y", "GET, HEAD, PATCH, DELETE"},
        {"BREW", "/projects/x", "GET, HEAD"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        http_resp r = req(wrong[i].method, wrong[i].path, JSON_CT, "{}");
        expect_error(&r, 405, "METHOD_NOT_ALLOWED");
        char allow[128];
        assert_string_equal(resp_header(&r, "Allow", allow, sizeof allow), wrong[i].allow);
        http_resp_free(&r);
    }
    http_resp r = req("POST", "/projects", JSON_CT, "{\"name\":\"x\"}");
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
}

static void conflicts(void **state)
{
    (void)state;
    char p[64], path[256];
    create_project(&svc, p);
    http_resp r = post_episode(p, "{\"number\":3,\"title\":\"Three\"}");
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
    r = post_episode(p, "{\"number\":4,\"title\":\"Four\"}");
    char ep4[64];
    snprintf(ep4, sizeof ep4, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    r = post_episode(p, "{\"number\":3,\"title\":\"Again\"}");
    expect_error(&r, 409, "EPISODE_NUMBER_CONFLICT");
    json_t *d = json_object_get(json_object_get(r.json, "error"), "details");
    assert_string_equal(json_string_value(json_object_get(d, "projectId")), p);
    assert_int_equal(json_integer_value(json_object_get(d, "episodeNumber")), 3);
    http_resp_free(&r);
    snprintf(path, sizeof path, "/projects/%s/episodes/%s", p, ep4);
    r = req("PATCH", path, JSON_CT, "{\"number\":3}");
    expect_error(&r, 409, "EPISODE_NUMBER_CONFLICT");
    http_resp_free(&r);
    r = req("PATCH", path, JSON_CT, "{}");
    expect_error(&r, 400, "VALIDATION_FAILED");
    http_resp_free(&r);
    r = req("PATCH", path, JSON_CT, "{\"title\":\"\"}");
    expect_error(&r, 400, "VALIDATION_FAILED");
    http_resp_free(&r);
    r = req("PATCH", path, JSON_CT, "{\"number\":null}");
    expect_error(&r, 400, "VALIDATION_FAILED");
    http_resp_free(&r);
    /* Nothing changed: still 3 and 4, with their titles. */
    r = req("GET", path, NULL, NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "number")), 4);
    assert_string_equal(json_string_value(json_object_get(r.json, "title")), "Four");
    http_resp_free(&r);
    assert_int_equal(episode_count(p), 2);
}

static void hostile_paths(void **state)
{
    (void)state;
    char p[64];
    create_project(&svc, p);
    char path[256];
    snprintf(path, sizeof path, "/projects/%s%%00/episodes", p);
    http_resp r = req("GET", path, NULL, NULL);
    expect_error(&r, 400, "VALIDATION_FAILED");
    http_resp_free(&r);
    r = req("GET", "/projects/%ff%fe", NULL, NULL);
    expect_error(&r, 400, "VALIDATION_FAILED");
    http_resp_free(&r);
    r = req("GET", "/projects/%zz", NULL, NULL);
    expect_error(&r, 400, "VALIDATION_FAILED");
    http_resp_free(&r);
    r = req("GET", "/projects/..", NULL, NULL);
    expect_error(&r, 404, "PROJECT_NOT_FOUND");
    http_resp_free(&r);
    r = req("GET", "/projects/../projects/x", NULL, NULL);
    expect_error(&r, 404, "NOT_FOUND");
    http_resp_free(&r);
    r = req("GET", "/projects/%2e%2e/episodes", NULL, NULL);
    expect_error(&r, 404, "PROJECT_NOT_FOUND");
    http_resp_free(&r);
    /* 8 KB of segments, and one 8 KB segment. */
    static char deep[8300];
    size_t n = 0;
    while (n < 8192) {
        memcpy(deep + n, "/a", 2);
        n += 2;
    }
    deep[n] = '\0';
    r = req("GET", deep, NULL, NULL);
    expect_error(&r, 404, "NOT_FOUND");
    http_resp_free(&r);
    memcpy(deep, "/projects/", 10);
    memset(deep + 10, 'x', 8192);
    deep[8202] = '\0';
    r = req("GET", deep, NULL, NULL);
    expect_error(&r, 404, "PROJECT_NOT_FOUND");
    char v[64];
    assert_null(resp_header(&r, "X-Project-Id", v, sizeof v)); /* too long to be an id */
    http_resp_free(&r);
    /* Query strings do not change routing. */
    snprintf(path, sizeof path, "/projects/%s?x=%%00&y", p);
    r = req("GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_true(gs_alive(&svc));
    assert_int_equal(episode_count(p), 0);
}

static void problem_details_on_request(void **state)
{
    (void)state;
    const char *const h[] = {"Accept: application/problem+json", NULL};
    http_resp r = req("GET", "/projects/none", h, NULL);
    assert_int_equal(r.status, 404);
    char v[128], trace[256];
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "application/problem+json");
    assert_int_equal(json_integer_value(json_object_get(r.json, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(r.json, "code")), "PROJECT_NOT_FOUND");
    assert_string_equal(json_string_value(json_object_get(r.json, "type")), "about:blank");
    resp_header(&r, "X-Trace-Id", trace, sizeof trace);
    assert_string_equal(json_string_value(json_object_get(r.json, "traceId")), trace);
    http_resp_free(&r);
    const char *const both[] = {"Accept: application/json;q=1, application/problem+json;q=0.5",
                                NULL};
    r = req("GET", "/projects/none", both, NULL);
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "application/json");
    http_resp_free(&r);
}

/*=== MARK: a full database ===*/

static void full_database_answers_503_and_keeps_data(void **state)
{
    (void)state;
    gs_proc small;
    const char *const args[] = {"--db-max-bytes", "98304", NULL};
    assert_int_equal(gs_start(&small, args), 0);
    gs_proc saved = svc;
    svc = small;
    char p[64];
    create_project(&svc, p);
    static char body[20000];
    size_t created = 0;
    http_resp r = {0};
    for (int i = 1; i <= 50; i++) {
        int n =
            snprintf(body, sizeof body, "{\"number\":%d,\"title\":\"t%d\",\"content\":\"", i, i);
        memset(body + n, 'c', 16000);
        snprintf(body + n + 16000, 8, "\"}");
        r = post_episode(p, body);
        if (r.status != 201)
            break;
        created++;
        http_resp_free(&r);
    }
    assert_true(created > 0);
    expect_error(&r, 503, "EPISODE_SAVE_FAILED");
    /* No internals: no SQLite words, no paths. */
    assert_null(strstr(r.body, "database"));
    assert_null(strstr(r.body, "SQL"));
    assert_null(strstr(r.body, small.dir));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "error"), "message")),
        "The episode could not be saved");
    http_resp_free(&r);
    assert_int_equal(episode_count(p), created);
    /* Reads still work, and the operator can see why in the log. */
    json_t *failed = log_wait(&svc, "request_failed", NULL, 1);
    assert_true(json_array_size(failed) >= 1);
    const char *internal = json_string_value(json_object_get(
        json_object_get(json_array_get(failed, 0), "metadata"), "internal_message"));
    assert_non_null(strstr(internal, "full"));
    json_decref(failed);
    assert_int_equal(gs_stop(&svc), 0);
    /* Restart on the same file, without the cap: everything written before is still there. */
    gs_proc again;
    const char *const same_db[] = {"--db", small.db, NULL};
    assert_int_equal(gs_start(&again, same_db), 0);
    svc = again;
    assert_int_equal(episode_count(p), created);
    r = post_episode(p, "{\"number\":99,\"title\":\"after\"}");
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
    assert_int_equal(gs_stop(&svc), 0);
    svc = saved;
    gs_cleanup(&again);
    gs_cleanup(&small);
}

/*=== MARK: shutdown ===*/

static void sigterm_finishes_in_flight_requests(void **state)
{
    (void)state;
    gs_proc own;
    assert_int_equal(gs_start(&own, NULL), 0);
    gs_proc saved = svc;
    svc = own;
    char p[64];
    create_project(&svc, p);
    /* A request whose body is half sent when SIGTERM arrives. */
    const char body[] = "{\"number\":5,\"title\":\"in flight\"}";
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /projects/%s/episodes HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "X-Trace-Id: in-flight-1\r\n\r\n",
                     p, sizeof body - 1);
    int fd = raw_connect(svc.port);
    assert_true(fd >= 0);
    assert_int_equal(send(fd, head, (size_t)n, MSG_NOSIGNAL), n);
    assert_int_equal(send(fd, body, 10, MSG_NOSIGNAL), 10);
    usleep(200000);
    kill(svc.pid, SIGTERM);
    usleep(300000);
    /* No new connections while draining. */
    int late = raw_connect(svc.port);
    assert_true(late < 0);
    assert_int_equal(send(fd, body + 10, sizeof body - 1 - 10, MSG_NOSIGNAL),
                     (ssize_t)(sizeof body - 1 - 10));
    size_t len;
    char *resp = raw_read(fd, 2000, &len);
    assert_non_null(strstr(resp, "HTTP/1.1 201"));
    free(resp);
    close(fd);
    assert_int_equal(gs_wait_exit(&svc, 15000), 0);
    json_t *lines = read_log(&svc);
    json_t *access = log_events(lines, "http_request");
    bool logged = false;
    size_t i;
    json_t *l;
    json_array_foreach(access, i, l)
    {
        const char *t = json_string_value(json_object_get(l, "trace_id"));
        logged |= t && strcmp(t, "in-flight-1") == 0;
    }
    const char *last = json_string_value(
        json_object_get(json_array_get(lines, json_array_size(lines) - 1), "event"));
    assert_true(logged);
    assert_string_equal(last, "service_stopped");
    json_decref(access);
    json_decref(lines);
    svc = saved;
    gs_cleanup(&own);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(projects_and_episodes_round_trip),
        cmocka_unit_test(episode_events_carry_the_trace),
        cmocka_unit_test(trace_headers_on_every_response),
        cmocka_unit_test(incoming_trace_ids),
        cmocka_unit_test(invalid_trace_values_are_never_echoed_or_logged),
        cmocka_unit_test(malformed_bodies),
        cmocka_unit_test(content_types),
        cmocka_unit_test(bodies_over_the_limit),
        cmocka_unit_test(unknown_routes_and_wrong_methods),
        cmocka_unit_test(conflicts),
        cmocka_unit_test(hostile_paths),
        cmocka_unit_test(problem_details_on_request),
        cmocka_unit_test(full_database_answers_503_and_keeps_data),
        cmocka_unit_test(sigterm_finishes_in_flight_requests),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
