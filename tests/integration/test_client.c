/* Integration tests: the C client kit (o11y/client.h) against the real generation-service, and
 * against raw sockets for the answers a service never gives (a proxy's HTML 502, a cut body, a
 * stream of garbage or a 100 MB line, a Retry-After of a year, a server that never answers). */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <o11y/client.h>
#include <o11y/error.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static o11y_client *client_to(int port, unsigned max_attempts, unsigned deadline_ms,
                              o11y_metrics *metrics)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    o11y_client_config cfg;
    o11y_client_config_init(&cfg);
    cfg.base_url = url;
    cfg.service_name = "test-client";
    cfg.max_attempts = max_attempts;
    cfg.deadline_ms = deadline_ms;
    cfg.backoff_base_ms = 20;
    cfg.backoff_cap_ms = 100;
    cfg.metrics = metrics;
    o11y_client *c = NULL;
    assert_int_equal(o11y_client_create(&cfg, &c), O11Y_OK);
    return c;
}

static json_t *access_lines_now(const gs_proc *p, const char *trace_id)
{
    json_t *all = read_log(p), *out = json_array();
    size_t i;
    json_t *l;
    json_array_foreach(all, i, l)
    {
        const char *ev = json_string_value(json_object_get(l, "event"));
        const char *t = json_string_value(json_object_get(l, "trace_id"));
        if (ev && strcmp(ev, "http_request") == 0 && t && strcmp(t, trace_id) == 0)
            json_array_append(out, l);
    }
    json_decref(all);
    return out;
}

/* http_request lines of the service with this trace id, once at least n are written (the log
 * writer is asynchronous; up to 5 s). */
static json_t *access_lines(const gs_proc *p, const char *trace_id, size_t n)
{
    json_t *out = NULL;
    for (int tries = 0; tries < 100; tries++) {
        json_decref(out);
        out = access_lines_now(p, trace_id);
        if (json_array_size(out) >= n)
            break;
        usleep(50000);
    }
    return out;
}

static int line_status(json_t *l)
{
    return (int)json_integer_value(json_object_get(json_object_get(l, "metadata"), "status"));
}

/* Seconds of a log line's timestamp within its day ("...THH:MM:SS.mmmZ"). */
static double line_seconds(json_t *l)
{
    const char *ts = json_string_value(json_object_get(l, "timestamp"));
    int h = 0, m = 0;
    double s = 0;
    assert_non_null(ts);
    assert_int_equal(sscanf(ts + 11, "%d:%d:%lf", &h, &m, &s), 3);
    return h * 3600.0 + m * 60.0 + s;
}

static void expect_error(const o11y_client_response *r, int status, const char *code,
                         const o11y_trace_ctx *sent)
{
    assert_int_equal(r->status, status);
    assert_int_equal(r->error.status, status);
    assert_string_equal(r->error.code, code);
    assert_non_null(r->error.message);
    assert_true(strlen(r->error.message) > 0);
    assert_string_equal(r->error.trace_id, sent->trace_id);
    assert_string_equal(r->trace_id, sent->trace_id);
    assert_int_equal(strlen(r->error.timestamp), 24);
    assert_int_equal(r->error.timestamp[23], 'Z');
    assert_int_equal(r->error.retryable, o11y_client_code_retryable(code, status));
    assert_string_equal(r->error.user_message, o11y_client_user_message(code, status));
}

static o11y_status call(o11y_client *c, const char *method, const char *path, const char *body,
                        const char *const *headers, const o11y_trace_ctx *trace,
                        o11y_client_response *r)
{
    o11y_client_request rq = {
        .method = method, .path = path, .body = body, .headers = headers, .trace = trace};
    return o11y_client_call(c, &rq, r);
}

static const char *json_id(const o11y_client_response *r, char out[80])
{
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    snprintf(out, 80, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    return out;
}

/* Every code the service produces without special conditions, as the typed error. */
static void every_error_is_typed(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--max-body", "2048", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    o11y_client *c = client_to(p.port, 1, 5000, NULL);
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    o11y_client_response r;
    char project[80], other[80], episode[80], path[256];

    assert_int_equal(call(c, "POST", "/projects", "{\"name\":\"p\"}", NULL, &t, &r), O11Y_OK);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.error.code, "");
    assert_string_equal(r.trace_id, t.trace_id);
    json_id(&r, project);
    o11y_client_response_clear(&r);
    assert_int_equal(call(c, "POST", "/projects", "{\"name\":\"q\"}", NULL, &t, &r), O11Y_OK);
    json_id(&r, other);
    o11y_client_response_clear(&r);
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    assert_int_equal(call(c, "POST", path, "{\"number\":1,\"title\":\"t\"}", NULL, &t, &r),
                     O11Y_OK);
    json_id(&r, episode);
    o11y_client_response_clear(&r);

    /* 400 VALIDATION_FAILED with details.fields */
    assert_int_equal(call(c, "POST", "/projects", "{}", NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 400, "VALIDATION_FAILED", &t);
    assert_non_null(r.error.details);
    assert_non_null(strstr(r.error.details, "\"fields\""));
    assert_false(r.error.retryable);
    assert_int_equal(r.attempts, 1);
    o11y_client_response_clear(&r);
    /* 400 IDEMPOTENCY_KEY_INVALID */
    char long_key[320] = "Idempotency-Key: ";
    memset(long_key + strlen(long_key), 'k', 300);
    const char *bad_key[] = {long_key, NULL};
    assert_int_equal(call(c, "POST", "/projects", "{\"name\":\"p\"}", bad_key, &t, &r),
                     O11Y_EBACKEND);
    expect_error(&r, 400, "IDEMPOTENCY_KEY_INVALID", &t);
    o11y_client_response_clear(&r);
    /* 404s */
    assert_int_equal(call(c, "GET", "/nothing/here", NULL, NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 404, "NOT_FOUND", &t);
    o11y_client_response_clear(&r);
    assert_int_equal(
        call(c, "GET", "/projects/proj_00000000000000000000000000000000", NULL, NULL, &t, &r),
        O11Y_EBACKEND);
    expect_error(&r, 404, "PROJECT_NOT_FOUND", &t);
    assert_string_equal(r.error.user_message,
                        "The project does not exist. It may have been deleted.");
    o11y_client_response_clear(&r);
    snprintf(path, sizeof path, "/projects/%s/episodes/ep_00000000000000000000000000000000",
             project);
    assert_int_equal(call(c, "GET", path, NULL, NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 404, "EPISODE_NOT_FOUND", &t);
    o11y_client_response_clear(&r);
    assert_int_equal(
        call(c, "GET", "/generations/gen_00000000000000000000000000000000", NULL, NULL, &t, &r),
        O11Y_EBACKEND);
    expect_error(&r, 404, "GENERATION_NOT_FOUND", &t);
    o11y_client_response_clear(&r);
    /* 405 */
    assert_int_equal(call(c, "DELETE", "/projects", NULL, NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 405, "METHOD_NOT_ALLOWED", &t);
    o11y_client_response_clear(&r);
    /* 409 EPISODE_NUMBER_CONFLICT, with its details */
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    assert_int_equal(call(c, "POST", path, "{\"number\":1,\"title\":\"again\"}", NULL, &t, &r),
                     O11Y_EBACKEND);
    expect_error(&r, 409, "EPISODE_NUMBER_CONFLICT", &t);
    assert_non_null(r.error.details);
    assert_non_null(strstr(r.error.details, project));
    assert_int_equal(r.attempts, 1);
    o11y_client_response_clear(&r);
    /* 413 */
    char big[4096];
    snprintf(big, sizeof big, "{\"name\":\"%03000d\"}", 7);
    assert_int_equal(call(c, "POST", "/projects", big, NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 413, "PAYLOAD_TOO_LARGE", &t);
    o11y_client_response_clear(&r);
    /* 415 */
    const char *text_plain[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(call(c, "POST", "/projects", "{\"name\":\"p\"}", text_plain, &t, &r),
                     O11Y_EBACKEND);
    expect_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE", &t);
    o11y_client_response_clear(&r);
    /* 422 IDEMPOTENCY_KEY_REUSED: one key, two bodies */
    o11y_client_request rq = {.method = "POST",
                              .path = "/projects",
                              .body = "{\"name\":\"first\"}",
                              .idempotency_key = "reuse-1",
                              .trace = &t};
    assert_int_equal(o11y_client_call(c, &rq, &r), O11Y_OK);
    o11y_client_response_clear(&r);
    rq.body = "{\"name\":\"second\"}";
    assert_int_equal(o11y_client_call(c, &rq, &r), O11Y_EBACKEND);
    expect_error(&r, 422, "IDEMPOTENCY_KEY_REUSED", &t);
    o11y_client_response_clear(&r);
    /* 422 BUSINESS_RULE_VIOLATION: the episode is not in that project */
    char gen[512];
    snprintf(gen, sizeof gen, "{\"projectId\":\"%s\",\"episodeId\":\"%s\",\"prompt\":\"x\"}", other,
             episode);
    assert_int_equal(call(c, "POST", "/generations", gen, NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 422, "BUSINESS_RULE_VIOLATION", &t);
    o11y_client_response_clear(&r);
    /* problem details carry the same facts */
    o11y_client_request pd = {.method = "GET",
                              .path = "/projects/proj_00000000000000000000000000000000",
                              .accept = "application/problem+json",
                              .trace = &t};
    assert_int_equal(o11y_client_call(c, &pd, &r), O11Y_EBACKEND);
    expect_error(&r, 404, "PROJECT_NOT_FOUND", &t);
    assert_non_null(strstr(r.content_type, "application/problem+json"));
    o11y_client_response_clear(&r);
    /* Without a context the call starts a trace: the error names the server's echo of it. */
    assert_int_equal(call(c, "GET", "/nothing", NULL, NULL, NULL, &r), O11Y_EBACKEND);
    assert_true(o11y_trace_id_valid(r.error.trace_id, strlen(r.error.trace_id)));
    assert_string_not_equal(r.error.trace_id, t.trace_id);
    assert_string_equal(r.error.trace_id, r.trace_id);
    o11y_client_response_clear(&r);

    /* Every call above reached the service under the trace it was given. */
    json_t *lines = access_lines(&p, t.trace_id, 17);
    assert_int_equal(json_array_size(lines), 17);
    json_decref(lines);
    o11y_client_destroy(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static const char *say_it_my_way(const char *code, int status, void *ctx)
{
    (void)status;
    return strcmp(code, "NOT_FOUND") == 0 ? (const char *)ctx : NULL;
}

static void user_messages_can_be_overridden(void **state)
{
    (void)state;
    gs_proc p;
    assert_int_equal(gs_start(&p, NULL), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", p.port);
    o11y_client_config cfg;
    o11y_client_config_init(&cfg);
    cfg.base_url = url; /* a trailing slash is fine */
    cfg.user_message = say_it_my_way;
    static char mine[] = "Nothing to see here.";
    cfg.user_message_ctx = mine;
    o11y_client *c = NULL;
    assert_int_equal(o11y_client_create(&cfg, &c), O11Y_OK);
    o11y_client_response r;
    assert_int_equal(call(c, "GET", "/nothing", NULL, NULL, NULL, &r), O11Y_EBACKEND);
    assert_string_equal(r.error.user_message, "Nothing to see here.");
    o11y_client_response_clear(&r);
    assert_int_equal(
        call(c, "GET", "/projects/proj_00000000000000000000000000000000", NULL, NULL, NULL, &r),
        O11Y_EBACKEND);
    assert_string_equal(r.error.user_message, o11y_client_user_message("PROJECT_NOT_FOUND", 404));
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    /* bad configurations */
    const char *bad[] = {"ftp://x", "http://h/p?q=1", "http://h/#f", "nohttp", "http://a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.base_url = bad[i];
        assert_int_equal(o11y_client_create(&cfg, &c), O11Y_EINVAL);
        assert_null(c);
    }
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* A full database and a removed one, as the kit types them: 503 EPISODE_SAVE_FAILED (retried
 * with a key, not without) and 503 SERVICE_UNAVAILABLE. */
static void storage_failures_are_typed(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--db-max-bytes", "98304", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char project[64];
    create_project(&p, project);
    o11y_client *c = client_to(p.port, 3, 10000, NULL);
    static char body[20000];
    char path[128];
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    o11y_client_response r;
    o11y_status st = O11Y_OK;
    for (int i = 1; i <= 50 && st == O11Y_OK; i++) {
        int n = snprintf(body, sizeof body, "{\"number\":%d,\"title\":\"t\",\"content\":\"", i);
        memset(body + n, 'c', 16000);
        snprintf(body + n + 16000, 8, "\"}");
        st = call(c, "POST", path, body, NULL, &t, &r);
        if (st == O11Y_OK)
            o11y_client_response_clear(&r);
    }
    assert_int_equal(st, O11Y_EBACKEND);
    expect_error(&r, 503, "EPISODE_SAVE_FAILED", &t);
    assert_true(r.error.retryable);
    assert_int_equal(r.attempts, 1); /* a POST without a key */
    assert_null(strstr(r.error.message, "SQL"));
    o11y_client_response_clear(&r);
    o11y_client_request rq = {
        .method = "POST", .path = path, .body = body, .idempotency_key = "full-db", .trace = &t};
    assert_int_equal(o11y_client_call(c, &rq, &r), O11Y_EBACKEND);
    assert_string_equal(r.error.code, "EPISODE_SAVE_FAILED");
    assert_int_equal(r.attempts, 3); /* with one: retried, the same key each time */
    o11y_client_response_clear(&r);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -f %s %s-wal %s-shm", p.db, p.db, p.db);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "/projects/%s", project);
    o11y_client *once = client_to(p.port, 1, 10000, NULL);
    assert_int_equal(call(once, "POST", "/projects", "{\"name\":\"lost\"}", NULL, &t, &r),
                     O11Y_EBACKEND);
    expect_error(&r, 503, "SERVICE_UNAVAILABLE", &t);
    assert_string_equal(r.error.message, "A dependency is unavailable"); /* no internals */
    o11y_client_response_clear(&r);
    o11y_client_destroy(once);
    o11y_client_destroy(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* 503 GENERATION_QUEUE_FULL is retried with the same trace id, after Retry-After; a 422 and a
 * POST without a key are not retried. */
static void queue_full_is_retried_and_422_is_not(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {
        "--workers", "1", "--queue", "1", "--step-ms", "3000", "--rate-limit-generations",
        "0",         NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char project[64], episode[64];
    create_project(&p, project);
    create_episode(&p, project, 1, episode);
    char body[512];
    snprintf(body, sizeof body, "{\"projectId\":\"%s\",\"episodeId\":\"%s\",\"prompt\":\"x\"}",
             project, episode);
    o11y_client *c = client_to(p.port, 3, 20000, NULL);
    o11y_client_response r;
    /* one running (the worker has taken it), then one waiting: the queue is full */
    for (int i = 0; i < 2; i++) {
        o11y_status st = call(c, "POST", "/generations", body, NULL, NULL, &r);
        if (st != O11Y_OK)
            fprintf(stderr, "POST /generations %d: %s %s\n", r.status, r.error.code,
                    r.error.message ? r.error.message : "");
        assert_int_equal(st, O11Y_OK);
        assert_int_equal(r.status, 202);
        char path[128];
        json_t *queued = json_loads(r.body, 0, NULL);
        snprintf(path, sizeof path, "/generations/%s",
                 json_string_value(json_object_get(queued, "id")));
        json_decref(queued);
        o11y_client_response_clear(&r);
        for (int k = 0; i == 0 && k < 200; k++) { /* until the worker has taken the first */
            assert_int_equal(call(c, "GET", path, NULL, NULL, NULL, &r), O11Y_OK);
            bool running = strstr(r.body, "\"status\":\"running\"") != NULL;
            o11y_client_response_clear(&r);
            if (running)
                break;
            usleep(10000);
        }
    }
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    /* without a key: not safe to repeat, one attempt */
    assert_int_equal(call(c, "POST", "/generations", body, NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 503, "GENERATION_QUEUE_FULL", &t);
    assert_true(r.error.retryable);
    assert_int_equal(r.attempts, 1);
    o11y_client_response_clear(&r);
    json_t *lines = access_lines(&p, t.trace_id, 1);
    assert_int_equal(json_array_size(lines), 1);
    json_decref(lines);

    o11y_trace_ctx t2;
    o11y_trace_ctx_new(&t2);
    o11y_client_request rq = {.method = "POST",
                              .path = "/generations",
                              .body = body,
                              .idempotency_key = "queue-full-key",
                              .trace = &t2};
    double t0 = now_ms();
    assert_int_equal(o11y_client_call(c, &rq, &r), O11Y_EBACKEND);
    double took = now_ms() - t0;
    expect_error(&r, 503, "GENERATION_QUEUE_FULL", &t2);
    assert_int_equal(r.attempts, 3);
    assert_true(took >= 3900); /* Retry-After: 2, twice */
    o11y_client_response_clear(&r);
    lines = access_lines(&p, t2.trace_id, 3);
    assert_int_equal(json_array_size(lines), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(line_status(json_array_get(lines, i)), 503);
    /* the server saw the attempts at least Retry-After apart */
    for (size_t i = 1; i < 3; i++)
        assert_true(line_seconds(json_array_get(lines, i)) -
                        line_seconds(json_array_get(lines, i - 1)) >=
                    1.95);
    /* each attempt its own span under the caller's, one trace */
    const char *s0 = json_string_value(json_object_get(json_array_get(lines, 0), "parent_span_id"));
    const char *s1 = json_string_value(json_object_get(json_array_get(lines, 1), "parent_span_id"));
    assert_non_null(s0);
    assert_non_null(s1);
    assert_string_not_equal(s0, s1);
    json_decref(lines);

    /* 422 (the same key with another body) is final */
    o11y_trace_ctx t3;
    o11y_trace_ctx_new(&t3);
    rq.trace = &t3;
    rq.idempotency_key = "reused-once";
    rq.body = "{\"projectId\":\"p\",\"episodeId\":\"e\",\"prompt\":\"a\"}";
    assert_int_equal(o11y_client_call(c, &rq, &r), O11Y_EBACKEND);
    o11y_client_response_clear(&r);
    rq.body = "{\"projectId\":\"p\",\"episodeId\":\"e\",\"prompt\":\"b\"}";
    assert_int_equal(o11y_client_call(c, &rq, &r), O11Y_EBACKEND);
    expect_error(&r, 422, "IDEMPOTENCY_KEY_REUSED", &t3);
    assert_int_equal(r.attempts, 1);
    o11y_client_response_clear(&r);
    lines = access_lines(&p, t3.trace_id, 2);
    assert_int_equal(json_array_size(lines), 2);
    json_decref(lines);
    o11y_client_destroy(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

typedef struct first_call {
    int port;
    o11y_client_response r;
    o11y_status st;
} first_call;

static void *make_first_call(void *arg)
{
    first_call *f = arg;
    o11y_client *c = client_to(f->port, 1, 10000, NULL);
    o11y_client_request rq = {.method = "POST",
                              .path = "/projects",
                              .body = "{\"name\":\"in use\"}",
                              .idempotency_key = "in-use-key"};
    f->st = o11y_client_call(c, &rq, &f->r);
    o11y_client_destroy(c);
    return NULL;
}

static void *release_later(void *arg)
{
    usleep(700000);
    sqlite3_exec(arg, "COMMIT", NULL, NULL, NULL);
    return NULL;
}

/* 409 IDEMPOTENCY_KEY_IN_USE is retried with the same key until the first call's answer comes
 * back as a replay: one project, not two. The first call is held in flight by a write lock on
 * the service's database (released within its 2 s busy timeout). */
static void in_use_is_retried_until_the_replay(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--threads", "4", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char ignored[64];
    create_project(&p, ignored); /* the schema exists */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p.db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    first_call f = {.port = p.port};
    pthread_t first, releaser;
    assert_int_equal(pthread_create(&first, NULL, make_first_call, &f), 0);
    usleep(300000); /* the first call holds the key, waiting for the database */
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    o11y_client_request rq = {.method = "POST",
                              .path = "/projects",
                              .body = "{\"name\":\"in use\"}",
                              .idempotency_key = "in-use-key",
                              .trace = &t};
    o11y_client_response r;
    /* one attempt: the typed 409 */
    o11y_client *single = client_to(p.port, 1, 10000, NULL);
    assert_int_equal(o11y_client_call(single, &rq, &r), O11Y_EBACKEND);
    expect_error(&r, 409, "IDEMPOTENCY_KEY_IN_USE", &t);
    assert_true(r.error.retryable);
    assert_false(o11y_client_key_spent(&r));
    o11y_client_response_clear(&r);
    o11y_client_destroy(single);
    /* with retries: 409, then (Retry-After: 1) the first call's answer */
    assert_int_equal(pthread_create(&releaser, NULL, release_later, db), 0);
    o11y_client *c = client_to(p.port, 4, 10000, NULL);
    o11y_trace_ctx t2;
    o11y_trace_ctx_new(&t2);
    rq.trace = &t2;
    o11y_status st = o11y_client_call(c, &rq, &r);
    pthread_join(first, NULL);
    pthread_join(releaser, NULL);
    assert_int_equal(f.st, O11Y_OK);
    assert_int_equal(f.r.status, 201);
    assert_int_equal(st, O11Y_OK);
    assert_int_equal(r.status, 200); /* a replayed 201 (CONTRACT section 4) */
    assert_true(r.attempts >= 2);
    assert_true(o11y_client_key_spent(&r));
    size_t attempts = r.attempts;
    char a[80], b[80];
    assert_string_equal(json_id(&r, a), json_id(&f.r, b)); /* the replay: one project */
    o11y_client_response_clear(&r);
    o11y_client_response_clear(&f.r);
    sqlite3_close(db);
    json_t *lines = access_lines(&p, t2.trace_id, attempts);
    assert_int_equal(json_array_size(lines), attempts); /* the server counted every attempt */
    assert_int_equal(line_status(json_array_get(lines, 0)), 409);
    assert_int_equal(line_status(json_array_get(lines, json_array_size(lines) - 1)), 200);
    json_decref(lines);
    o11y_client_destroy(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* 429 with Retry-After: the retry waits for it (the server's clock says so). */
static void rate_limited_waits_for_retry_after(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--rate-limit-all", "1/2", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    o11y_client *once = client_to(p.port, 1, 10000, NULL);
    o11y_client *c = client_to(p.port, 4, 10000, NULL);
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    o11y_client_response r;
    const char *path = "/projects/proj_00000000000000000000000000000000";
    assert_int_equal(call(once, "GET", path, NULL, NULL, &t, &r), O11Y_EBACKEND);
    assert_string_equal(r.error.code, "PROJECT_NOT_FOUND");
    o11y_client_response_clear(&r);
    assert_int_equal(call(once, "GET", path, NULL, NULL, &t, &r), O11Y_EBACKEND);
    expect_error(&r, 429, "RATE_LIMITED", &t);
    assert_true(r.error.retryable);
    assert_false(o11y_client_key_spent(&r));
    o11y_client_response_clear(&r);
    o11y_trace_ctx t2;
    o11y_trace_ctx_new(&t2);
    assert_int_equal(call(c, "GET", path, NULL, NULL, &t2, &r), O11Y_EBACKEND);
    assert_string_equal(r.error.code, "PROJECT_NOT_FOUND"); /* let through at last */
    assert_true(r.attempts >= 2);
    size_t attempts = r.attempts;
    o11y_client_response_clear(&r);
    json_t *lines = access_lines(&p, t2.trace_id, attempts);
    size_t n = json_array_size(lines);
    assert_int_equal(n, attempts);
    assert_true(n >= 2);
    assert_int_equal(line_status(json_array_get(lines, 0)), 429);
    assert_int_equal(line_status(json_array_get(lines, n - 1)), 404);
    /* Retry-After is whole seconds: the wait before the last attempt is at least 1 s */
    assert_true(line_seconds(json_array_get(lines, n - 1)) -
                    line_seconds(json_array_get(lines, n - 2)) >=
                0.95);
    json_decref(lines);
    o11y_client_destroy(once);
    o11y_client_destroy(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/*=== a raw HTTP server with scripted answers ===*/

typedef enum reply_mode {
    REPLY_FIXED,     /* send reply, close */
    REPLY_NEVER,     /* read the request, never answer */
    REPLY_HOLD,      /* send reply, then keep the connection open and silent */
    REPLY_HUGE_LINE, /* an event stream with a 100 MB line */
} reply_mode;

typedef struct script {
    int fd, port;
    reply_mode mode;
    const char *reply;
    atomic_int requests;
    atomic_bool stop;
    pthread_t thread;
    int held[16]; /* REPLY_NEVER: connections kept open, unanswered */
    int n_held;
    char first_head[4096];
} script;

static void read_head(int fd, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    while (len + 1 < cap && !strstr(out, "\r\n\r\n")) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 2000) <= 0)
            return;
        ssize_t n = recv(fd, out + len, cap - len - 1, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        out[len] = '\0';
    }
}

static void *script_main(void *arg)
{
    script *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pf = {s->fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        char head[4096];
        read_head(fd, head, sizeof head);
        if (atomic_fetch_add(&s->requests, 1) == 0)
            snprintf(s->first_head, sizeof s->first_head, "%s", head);
        if ((s->mode == REPLY_NEVER || s->mode == REPLY_HOLD) && s->n_held < 16) {
            if (s->mode == REPLY_HOLD)
                send(fd, s->reply, strlen(s->reply), MSG_NOSIGNAL);
            s->held[s->n_held++] = fd;
            continue;
        }
        if (s->mode == REPLY_FIXED) {
            send(fd, s->reply, strlen(s->reply), MSG_NOSIGNAL);
        } else {
            const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ";
            send(fd, h, strlen(h), MSG_NOSIGNAL);
            static char chunk[65536];
            memset(chunk, 'a', sizeof chunk);
            /* 100 MB without a line end, or until the client hangs up */
            for (size_t sent = 0; sent < ((size_t)100 << 20); sent += sizeof chunk)
                if (send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) <= 0)
                    break;
        }
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    for (int i = 0; i < s->n_held; i++)
        close(s->held[i]);
    return NULL;
}

static void script_start(script *s, reply_mode mode, const char *reply)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->reply = reply;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    assert_int_equal(listen(s->fd, 16), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, script_main, s), 0);
}

static void script_stop(script *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

static void a_proxy_html_502_is_http_502(void **state)
{
    (void)state;
    script s;
    script_start(&s, REPLY_FIXED,
                 "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 37\r\n"
                 "Connection: close\r\n\r\n<html><h1>502 Bad Gateway</h1></html>");
    o11y_client *c = client_to(s.port, 3, 10000, NULL);
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    o11y_client_response r;
    assert_int_equal(call(c, "GET", "/x", NULL, NULL, &t, &r), O11Y_EBACKEND);
    assert_int_equal(r.status, 502);
    assert_string_equal(r.error.code, "HTTP_502");
    assert_true(r.error.retryable);
    assert_string_equal(r.error.trace_id, t.trace_id); /* no body, no header: the one sent */
    assert_null(r.error.details);
    assert_string_equal(r.error.user_message, o11y_client_user_message("HTTP_502", 502));
    assert_int_equal(r.attempts, 3);
    assert_int_equal(atomic_load(&s.requests), 3); /* a GET is retried */
    /* what went out: the trace headers and the kit's User-Agent */
    assert_non_null(strstr(s.first_head, "X-Trace-Id: "));
    assert_non_null(strstr(s.first_head, t.trace_id));
    assert_non_null(strstr(s.first_head, "traceparent: 00-"));
    assert_non_null(strstr(s.first_head, "User-Agent: test-client o11y-client/"));
    o11y_client_response_clear(&r);
    /* a POST without a key: once */
    atomic_store(&s.requests, 0);
    assert_int_equal(call(c, "POST", "/x", "{}", NULL, &t, &r), O11Y_EBACKEND);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(atomic_load(&s.requests), 1);
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    script_stop(&s);
}

static void a_truncated_body_is_a_network_error(void **state)
{
    (void)state;
    script s;
    script_start(&s, REPLY_FIXED,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                 "{\"id\":\"cut");
    o11y_client *c = client_to(s.port, 2, 10000, NULL);
    o11y_client_response r;
    assert_int_equal(call(c, "GET", "/x", NULL, NULL, NULL, &r), O11Y_EBACKEND);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error.code, "NETWORK_ERROR");
    assert_string_equal(r.error.message, "The response was cut short");
    assert_true(r.error.retryable);
    assert_int_equal(r.attempts, 2);
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    script_stop(&s);
}

static void retry_after_of_a_year_or_the_past(void **state)
{
    (void)state;
    script s;
    const char *envelope =
        "{\"success\":false,\"error\":{\"code\":\"SERVICE_UNAVAILABLE\",\"message\":\"down\"}}";
    char year[512];
    snprintf(year, sizeof year,
             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
             "Retry-After: 31536000\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(envelope), envelope);
    script_start(&s, REPLY_FIXED, year);
    o11y_client *c = client_to(s.port, 4, 10000, NULL);
    o11y_client_response r;
    double t0 = now_ms();
    assert_int_equal(call(c, "GET", "/x", NULL, NULL, NULL, &r), O11Y_EBACKEND);
    /* a year does not fit the deadline: the call ends now with the answer */
    assert_true(now_ms() - t0 < 2000);
    assert_string_equal(r.error.code, "SERVICE_UNAVAILABLE");
    assert_string_equal(r.error.message, "down");
    assert_int_equal(r.attempts, 1);
    o11y_client_response_clear(&r);
    script_stop(&s);

    script_start(&s, REPLY_FIXED,
                 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                 "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 4\r\n"
                 "Connection: close\r\n\r\ndown");
    o11y_client_destroy(c);
    c = client_to(s.port, 4, 10000, NULL);
    t0 = now_ms();
    assert_int_equal(call(c, "GET", "/x", NULL, NULL, NULL, &r), O11Y_EBACKEND);
    /* a date in the past: no wait beyond the backoff (at most 100 ms here) */
    assert_true(now_ms() - t0 < 3000);
    assert_string_equal(r.error.code, "HTTP_503");
    assert_int_equal(r.attempts, 4);
    assert_int_equal(atomic_load(&s.requests), 4);
    o11y_client_response_clear(&r);
    script_stop(&s);
    o11y_client_destroy(c);
}

static void a_server_that_never_answers_meets_the_deadline(void **state)
{
    (void)state;
    script s;
    script_start(&s, REPLY_NEVER, NULL);
    o11y_client *c = client_to(s.port, 4, 1500, NULL);
    o11y_client_response r;
    double t0 = now_ms();
    assert_int_equal(call(c, "GET", "/x", NULL, NULL, NULL, &r), O11Y_EBACKEND);
    double took = now_ms() - t0;
    assert_true(took >= 1400);
    assert_true(took < 4000);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error.code, "TIMEOUT");
    assert_true(r.error.retryable);
    assert_int_equal(r.attempts, 1); /* the attempt used the whole deadline: none after it */
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    script_stop(&s);
}

/*=== Server-Sent Events ===*/

typedef struct collected {
    char ids[64][16];
    char types[64][16];
    size_t n;
    size_t stop_after; /* 0: never */
} collected;

static int collect_event(const o11y_sse_event *ev, void *ctx)
{
    collected *c = ctx;
    if (c->n < 64) {
        snprintf(c->ids[c->n], sizeof c->ids[c->n], "%s", ev->id);
        snprintf(c->types[c->n], sizeof c->types[c->n], "%s", ev->event);
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void garbage_lines_in_a_stream_are_ignored(void **state)
{
    (void)state;
    script s;
    script_start(&s, REPLY_FIXED,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                 "garbage without a colon\n\x01\x02\xff binary: junk\n: a comment\r\n"
                 "id: 1\nevent: progress\nbogus: field\ndata: {\"percentage\":50}\n\n"
                 "data\n\n"
                 "id: 2\r\nevent: completed\r\ndata: {}\r\n\r\n");
    o11y_client *c = client_to(s.port, 1, 5000, NULL);
    collected got = {0};
    o11y_sse_opts o = {.on_event = collect_event, .ctx = &got};
    o11y_client_request rq = {.path = "/events"};
    o11y_client_response r;
    assert_int_equal(o11y_client_sse(c, &rq, &o, &r), O11Y_OK);
    /* "data" alone is an event with empty data and the last id (1) */
    assert_int_equal(got.n, 3);
    assert_string_equal(got.types[0], "progress");
    assert_string_equal(got.ids[0], "1");
    assert_string_equal(got.types[1], "message");
    assert_string_equal(got.types[2], "completed");
    assert_string_equal(got.ids[2], "2");
    assert_int_equal(atomic_load(&s.requests), 1);
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    script_stop(&s);
}

static void a_100_mb_line_ends_the_stream(void **state)
{
    (void)state;
    script s;
    script_start(&s, REPLY_HUGE_LINE, NULL);
    o11y_client *c = client_to(s.port, 1, 5000, NULL);
    collected got = {0};
    o11y_sse_opts o = {.on_event = collect_event, .ctx = &got};
    o11y_client_request rq = {.path = "/events"};
    o11y_client_response r;
    assert_int_equal(o11y_client_sse(c, &rq, &o, &r), O11Y_EBACKEND);
    assert_int_equal(got.n, 0);
    assert_string_equal(r.error.code, "NETWORK_ERROR");
    assert_non_null(strstr(r.error.message, "longer than 1048576 bytes"));
    assert_int_equal(atomic_load(&s.requests), 1); /* not retried: it would come again */
    long rss_kb = proc_status(getpid(), "VmRSS:");
    assert_true(rss_kb > 0 && rss_kb < 200 * 1024);
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    script_stop(&s);
}

/* A stream that names no ids cannot be resumed once it delivered: reconnecting would start it
 * over, so the drop is final. */
static void a_stream_without_ids_is_not_resumed_midway(void **state)
{
    (void)state;
    script s;
    script_start(&s, REPLY_FIXED,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
                 "\r\ndata: one\n\ndata: two\n\n");
    o11y_client *c = client_to(s.port, 1, 5000, NULL);
    collected got = {0};
    o11y_sse_opts o = {.on_event = collect_event, .ctx = &got};
    o11y_client_request rq = {.path = "/events"};
    o11y_client_response r;
    assert_int_equal(o11y_client_sse(c, &rq, &o, &r), O11Y_EBACKEND);
    assert_int_equal(got.n, 2);
    assert_string_equal(r.error.code, "NETWORK_ERROR");
    assert_string_equal(r.error.message, "The event stream ended before its final event");
    assert_int_equal(atomic_load(&s.requests), 1);
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    script_stop(&s);
}

/* Silence past twice the heartbeat is a drop: reconnect (with the last id), up to the limit. */
static void heartbeat_silence_is_a_drop(void **state)
{
    (void)state;
    script s;
    script_start(&s, REPLY_HOLD,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                 "retry: 50\n: hello\n\nid: 4\nevent: progress\ndata: {}\n\n");
    o11y_client *c = client_to(s.port, 1, 5000, NULL);
    collected got = {0};
    o11y_sse_opts o = {
        .on_event = collect_event, .ctx = &got, .heartbeat_ms = 150, .max_reconnects = 2};
    o11y_client_request rq = {.path = "/events"};
    o11y_client_response r;
    double t0 = now_ms();
    assert_int_equal(o11y_client_sse(c, &rq, &o, &r), O11Y_EBACKEND);
    double took = now_ms() - t0;
    /* id 4 came once; the replays of it were skipped */
    assert_int_equal(got.n, 1);
    assert_string_equal(got.ids[0], "4");
    assert_string_equal(r.error.message, "The event stream went silent past its heartbeat");
    /* the first connection delivered, then two in a row without a new event: the limit */
    assert_int_equal(atomic_load(&s.requests), 3);
    assert_true(took >= 3 * 300);
    assert_non_null(strstr(s.first_head, "Accept: text/event-stream"));
    o11y_client_response_clear(&r);
    o11y_client_destroy(c);
    script_stop(&s);
}

/* A TCP proxy in front of the service that cuts the first connection in the middle of event 3
 * (after "id: 3\n", before its data). */
typedef struct cutter {
    int fd, port, upstream;
    atomic_int connections;
    atomic_bool stop;
    pthread_t thread;
} cutter;

static void *cutter_main(void *arg)
{
    cutter *k = arg;
    while (!atomic_load(&k->stop)) {
        struct pollfd lp = {k->fd, POLLIN, 0};
        if (poll(&lp, 1, 50) <= 0)
            continue;
        int down = accept(k->fd, NULL, NULL);
        if (down < 0)
            continue;
        int up = raw_connect(k->upstream);
        bool cut = atomic_fetch_add(&k->connections, 1) == 0;
        char seen[65536];
        size_t seen_len = 0;
        bool open = up >= 0;
        while (open && !atomic_load(&k->stop)) {
            struct pollfd pf[2] = {{down, POLLIN, 0}, {up, POLLIN, 0}};
            if (poll(pf, 2, 50) <= 0)
                continue;
            char buf[16384];
            if (pf[0].revents) {
                ssize_t n = recv(down, buf, sizeof buf, 0);
                if (n <= 0 || send(up, buf, (size_t)n, MSG_NOSIGNAL) != n)
                    open = false;
            }
            if (open && pf[1].revents) {
                ssize_t n = recv(up, buf, sizeof buf, 0);
                if (n <= 0) {
                    open = false;
                    break;
                }
                size_t pass = (size_t)n;
                if (cut && seen_len + (size_t)n < sizeof seen) {
                    memcpy(seen + seen_len, buf, (size_t)n);
                    seen[seen_len + (size_t)n] = '\0';
                    char *m = strstr(seen, "\nid: 3\n");
                    if (m) {
                        size_t end = (size_t)(m - seen) + 7;
                        pass = end > seen_len ? end - seen_len : 0;
                        open = false;
                    }
                    seen_len += (size_t)n;
                }
                if (pass)
                    send(down, buf, pass, MSG_NOSIGNAL);
            }
        }
        if (up >= 0)
            close(up);
        shutdown(down, SHUT_RDWR);
        close(down);
    }
    return NULL;
}

static void a_stream_cut_mid_event_resumes_exactly_once(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--step-ms", "300", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char project[64], episode[64];
    create_project(&p, project);
    create_episode(&p, project, 1, episode);
    http_resp g;
    assert_int_equal(post_generation(&p, project, episode, "cut me", NULL, &g), 0);
    assert_int_equal(g.status, 202);
    char path[128];
    snprintf(path, sizeof path, "/generations/%s/events",
             json_string_value(json_object_get(g.json, "id")));
    http_resp_free(&g);

    cutter k = {.upstream = p.port};
    k.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(k.fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(k.fd, (struct sockaddr *)&a, &al);
    k.port = ntohs(a.sin_port);
    assert_int_equal(listen(k.fd, 8), 0);
    assert_int_equal(pthread_create(&k.thread, NULL, cutter_main, &k), 0);

    o11y_client *c = client_to(k.port, 1, 5000, NULL);
    collected got = {0};
    o11y_sse_opts o = {.on_event = collect_event, .ctx = &got};
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    o11y_client_request rq = {.path = path, .trace = &t};
    o11y_client_response r;
    assert_int_equal(o11y_client_sse(c, &rq, &o, &r), O11Y_OK);
    assert_int_equal(atomic_load(&k.connections), 2);
    assert_int_equal(r.attempts, 2);
    /* progress 1..4 and completed 5: each once, in order */
    assert_int_equal(got.n, 5);
    for (size_t i = 0; i < 5; i++) {
        char want[8];
        snprintf(want, sizeof want, "%zu", i + 1);
        assert_string_equal(got.ids[i], want);
    }
    assert_string_equal(got.types[4], "completed");
    o11y_client_response_clear(&r);
    /* both connections were this trace's, the second resumed after event 2 */
    json_t *lines = log_wait(&p, "sse_connection_closed", t.trace_id, 2);
    assert_int_equal(json_array_size(lines), 2);
    json_decref(lines);
    atomic_store(&k.stop, true);
    pthread_join(k.thread, NULL);
    close(k.fd);
    o11y_client_destroy(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/*=== idempotency keys ===*/

static void keys_persist_and_follow_the_rules(void **state)
{
    (void)state;
    char dir[] = "/tmp/o11y-keys-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/keys", dir);
    o11y_client_keys *k = NULL;
    assert_int_equal(o11y_client_keys_open(path, &k), O11Y_OK);
    char k1[O11Y_CLIENT_KEY_MAX + 1], k2[O11Y_CLIENT_KEY_MAX + 1];
    assert_int_equal(o11y_client_keys_get_or_create(k, "project create A", k1), O11Y_OK);
    assert_int_equal(strlen(k1), 36);
    assert_int_equal(o11y_client_keys_get_or_create(k, "project create A", k2), O11Y_OK);
    assert_string_equal(k1, k2);
    o11y_client_keys_close(k);
    /* a restarted process finds it */
    assert_int_equal(o11y_client_keys_open(path, &k), O11Y_OK);
    assert_int_equal(o11y_client_keys_get_or_create(k, "project create A", k2), O11Y_OK);
    assert_string_equal(k1, k2);
    assert_int_equal(o11y_client_keys_invalidate(k, k1), O11Y_OK);
    assert_int_equal(o11y_client_keys_invalidate(k, k1), O11Y_ENOTFOUND);
    assert_int_equal(o11y_client_keys_get_or_create(k, "project create A", k2), O11Y_OK);
    assert_string_not_equal(k1, k2);
    assert_int_equal(o11y_client_keys_create(k, "project create A", k1), O11Y_OK);
    assert_string_not_equal(k1, k2);
    assert_int_equal(o11y_client_keys_invalidate(k, "project create A"), O11Y_OK);
    /* bad operations */
    assert_int_equal(o11y_client_keys_get_or_create(k, "", k1), O11Y_EINVAL);
    assert_int_equal(o11y_client_keys_get_or_create(k, "tab\there", k1), O11Y_EINVAL);
    assert_int_equal(o11y_client_keys_get_or_create(k, "line\nbreak", k1), O11Y_EINVAL);
    char longop[300];
    memset(longop, 'o', sizeof longop - 1);
    longop[sizeof longop - 1] = '\0';
    assert_int_equal(o11y_client_keys_get_or_create(k, longop, k1), O11Y_EINVAL);
    o11y_client_keys_close(k);
    /* a file that is not a key file is never used or overwritten */
    FILE *f = fopen(path, "w");
    fputs("my precious data\n", f);
    fclose(f);
    assert_int_equal(o11y_client_keys_open(path, &k), O11Y_EIO);
    assert_null(k);
    size_t len;
    char *text = slurp(path, &len);
    assert_string_equal(text, "my precious data\n");
    free(text);

    /* the spending rule */
    o11y_client_response r = {.status = 201};
    assert_true(o11y_client_key_spent(&r));
    r.status = 404;
    assert_true(o11y_client_key_spent(&r));
    r.status = 400;
    snprintf(r.error.code, sizeof r.error.code, "VALIDATION_FAILED");
    assert_false(o11y_client_key_spent(&r));
    snprintf(r.error.code, sizeof r.error.code, "IDEMPOTENCY_KEY_INVALID");
    assert_true(o11y_client_key_spent(&r));
    r.status = 409;
    snprintf(r.error.code, sizeof r.error.code, "IDEMPOTENCY_KEY_IN_USE");
    assert_false(o11y_client_key_spent(&r));
    r.status = 429;
    assert_false(o11y_client_key_spent(&r));
    r.status = 503;
    assert_false(o11y_client_key_spent(&r));
    r.status = 0;
    assert_false(o11y_client_key_spent(&r));
    unlink(path);
    char lock[160];
    snprintf(lock, sizeof lock, "%s.lock", path);
    unlink(lock);
    rmdir(dir);
}

/* The call that was cut off (Ctrl-C) after the server created the project, made again: the key
 * from the file makes it a replay, and one project exists. */
static void a_create_repeated_after_a_crash_creates_once(void **state)
{
    (void)state;
    gs_proc p;
    assert_int_equal(gs_start(&p, NULL), 0);
    char path[160];
    snprintf(path, sizeof path, "%s/keys", p.dir);
    o11y_client_keys *k = NULL;
    assert_int_equal(o11y_client_keys_open(path, &k), O11Y_OK);
    char key[O11Y_CLIENT_KEY_MAX + 1];
    assert_int_equal(o11y_client_keys_get_or_create(k, "create project X", key), O11Y_OK);
    o11y_client_keys_close(k); /* the process "dies" here, after sending: */
    char hdr[300];
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", key);
    const char *h[] = {"Content-Type: application/json", hdr, NULL};
    http_resp first;
    assert_int_equal(http(&p, "POST", "/projects", h, "{\"name\":\"X\"}", 12, &first), 0);
    assert_int_equal(first.status, 201);

    assert_int_equal(o11y_client_keys_open(path, &k), O11Y_OK);
    o11y_client *c = client_to(p.port, 4, 5000, NULL);
    o11y_client_request rq = {.method = "POST", .path = "/projects", .body = "{\"name\":\"X\"}"};
    o11y_client_response r;
    assert_int_equal(o11y_client_call_idempotent(c, k, "create project X", &rq, &r), O11Y_OK);
    assert_int_equal(r.status, 200); /* the replay */
    char id[80];
    assert_string_equal(json_id(&r, id), json_string_value(json_object_get(first.json, "id")));
    o11y_client_response_clear(&r);
    http_resp_free(&first);
    /* the 201 spent the key: the next create is a new project */
    char again[O11Y_CLIENT_KEY_MAX + 1];
    assert_int_equal(o11y_client_keys_get_or_create(k, "create project X", again), O11Y_OK);
    assert_string_not_equal(again, key);
    /* a validation failure keeps it (the fixed request is the same operation) */
    rq.body = "{}";
    assert_int_equal(o11y_client_call_idempotent(c, k, "create project X", &rq, &r), O11Y_EBACKEND);
    assert_string_equal(r.error.code, "VALIDATION_FAILED");
    o11y_client_response_clear(&r);
    assert_int_equal(o11y_client_keys_get_or_create(k, "create project X", key), O11Y_OK);
    assert_string_equal(again, key);
    o11y_client_keys_close(k);
    o11y_client_destroy(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/*=== one client, many threads; metrics and log lines ===*/

typedef struct worker {
    o11y_client *c;
    int ok;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 50; i++) {
        o11y_client_response r;
        if (call(w->c, "GET", "/health/live", NULL, NULL, NULL, &r) == O11Y_OK && r.status == 200)
            w->ok++;
        o11y_client_response_clear(&r);
    }
    return NULL;
}

static void one_client_many_threads_metrics_and_lines(void **state)
{
    (void)state;
    gs_proc p;
    assert_int_equal(gs_start(&p, NULL), 0);
    o11y_metrics *m = NULL;
    assert_int_equal(o11y_metrics_create(&m), O11Y_OK);
    char logpath[160];
    snprintf(logpath, sizeof logpath, "%s/client.log", p.dir);
    o11y_log_config lc;
    o11y_log_config_init(&lc);
    lc.service_name = "test-client";
    lc.file_path = logpath;
    lc.format = O11Y_LOG_FORMAT_JSON;
    o11y_logger *lg = NULL;
    assert_int_equal(o11y_logger_create(&lc, &lg), O11Y_OK);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", p.port);
    o11y_client_config cfg;
    o11y_client_config_init(&cfg);
    cfg.base_url = url;
    cfg.metrics = m;
    cfg.logger = lg;
    o11y_client *c = NULL;
    assert_int_equal(o11y_client_create(&cfg, &c), O11Y_OK);
    worker w[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){.c = c};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, 50);
    }
    /* one call in a known span, to find its line */
    o11y_trace_ctx t;
    o11y_trace_ctx_new(&t);
    o11y_client_response r;
    assert_int_equal(call(c, "GET", "/projects/proj_00000000000000000000000000000000?x=secret",
                          NULL, NULL, &t, &r),
                     O11Y_EBACKEND);
    o11y_client_response_clear(&r);
    size_t len = 0;
    char *text = o11y_metrics_render(m, O11Y_EXPO_PROMETHEUS, &len);
    char want[200];
    snprintf(want, sizeof want,
             "http_client_request_duration_seconds_count{method=\"GET\",host=\"127.0.0.1:%d\","
             "status=\"200\"} 400",
             p.port);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want,
             "http_client_request_duration_seconds_count{method=\"GET\",host=\"127.0.0.1:%d\","
             "status=\"404\"} 1",
             p.port);
    assert_non_null(strstr(text, want));
    o11y_free(text);
    o11y_client_destroy(c);
    assert_int_equal(o11y_logger_flush(lg, 2000), O11Y_OK);
    o11y_logger_destroy(lg);
    char *log = slurp(logpath, &len);
    assert_non_null(log);
    size_t requests = 0;
    json_t *mine = NULL;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        if (strcmp(json_string_value(json_object_get(j, "event")), "http_client_request") == 0)
            requests++;
        const char *tid = json_string_value(json_object_get(j, "trace_id"));
        if (tid && strcmp(tid, t.trace_id) == 0) {
            json_decref(mine);
            mine = json_incref(j);
        }
        json_decref(j);
    }
    free(log);
    assert_int_equal(requests, 401); /* one line per call */
    assert_non_null(mine);
    assert_string_equal(json_string_value(json_object_get(mine, "parent_span_id")), t.span_id);
    json_t *md = json_object_get(mine, "metadata");
    assert_string_equal(json_string_value(json_object_get(md, "route")),
                        "/projects/proj_00000000000000000000000000000000"); /* no query */
    assert_int_equal(json_integer_value(json_object_get(md, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(md, "code")), "PROJECT_NOT_FOUND");
    /* the server's line for it is a child of the attempt's span */
    json_t *lines = access_lines(&p, t.trace_id, 1);
    assert_int_equal(json_array_size(lines), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(lines, 0), "parent_span_id")),
        json_string_value(json_object_get(mine, "span_id")));
    json_decref(lines);
    json_decref(mine);
    o11y_metrics_destroy(m);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_error_is_typed),
        cmocka_unit_test(user_messages_can_be_overridden),
        cmocka_unit_test(storage_failures_are_typed),
        cmocka_unit_test(queue_full_is_retried_and_422_is_not),
        cmocka_unit_test(in_use_is_retried_until_the_replay),
        cmocka_unit_test(rate_limited_waits_for_retry_after),
        cmocka_unit_test(a_proxy_html_502_is_http_502),
        cmocka_unit_test(a_truncated_body_is_a_network_error),
        cmocka_unit_test(retry_after_of_a_year_or_the_past),
        cmocka_unit_test(a_server_that_never_answers_meets_the_deadline),
        cmocka_unit_test(garbage_lines_in_a_stream_are_ignored),
        cmocka_unit_test(a_100_mb_line_ends_the_stream),
        cmocka_unit_test(a_stream_without_ids_is_not_resumed_midway),
        cmocka_unit_test(heartbeat_silence_is_a_drop),
        cmocka_unit_test(a_stream_cut_mid_event_resumes_exactly_once),
        cmocka_unit_test(keys_persist_and_follow_the_rules),
        cmocka_unit_test(a_create_repeated_after_a_crash_creates_once),
        cmocka_unit_test(one_client_many_threads_metrics_and_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
