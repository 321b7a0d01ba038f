/* Integration tests: generation-service with an OpenAI-compatible backend — a real HTTP server
 * in this process that streams chat-completion chunks, or fails. */
#include "harness.h"

#include <curl/curl.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static struct MHD_Daemon *fake;
static atomic_int fail_with;  /* 0: stream; else the HTTP status to answer */
static atomic_int bad_key;    /* requests with another Authorization */
static atomic_int fail_first; /* answer this many more chat requests 503 first */
static atomic_int chat_requests;
static atomic_int port_of_fake;
/* The Idempotency-Keys of the first two chat requests since the counter was reset. */
static char got_keys[2][160];
/* The trace headers of the last chat request (written by the fake's thread, read after the
 * generation finished). */
static char got_trace_id[160], got_traceparent[80], got_job_id[160], got_tracestate[256],
    got_baggage[256];

static const char *const chunks[] = {
    "data: {\"choices\":[{\"delta\":{\"content\":\"HOST: Welcome \"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"to the show.\\n\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"GUEST: Thanks.\"}}],"
    "\"usage\":{\"total_tokens\":42}}\n\n",
    "data: [DONE]\n\n",
};

static ssize_t stream_chunks(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    size_t *next = cls;
    if (*next >= sizeof chunks / sizeof chunks[0])
        return MHD_CONTENT_READER_END_OF_STREAM;
    usleep(50000); /* a real backend streams over time */
    size_t n = strlen(chunks[*next]);
    if (n > max)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    memcpy(buf, chunks[(*next)++], n);
    return (ssize_t)n;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req)
{
    (void)cls, (void)version, (void)upload;
    static int marker;
    if (!*req) {
        *req = &marker;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *r;
    unsigned status = 200;
    if (strcmp(url, "/v1/models") == 0) {
        r = MHD_create_response_from_buffer(11, (void *)"{\"data\":[]}", MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/chat/completions") == 0) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!auth || strcmp(auth, "Bearer sk-test-secret-123") != 0)
            atomic_fetch_add(&bad_key, 1);
        const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Trace-Id");
        const char *tp = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent");
        const char *job = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Job-Id");
        snprintf(got_trace_id, sizeof got_trace_id, "%s", t ? t : "");
        snprintf(got_traceparent, sizeof got_traceparent, "%s", tp ? tp : "");
        snprintf(got_job_id, sizeof got_job_id, "%s", job ? job : "");
        const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "tracestate");
        const char *bg = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "baggage");
        snprintf(got_tracestate, sizeof got_tracestate, "%s", ts ? ts : "(none)");
        snprintf(got_baggage, sizeof got_baggage, "%s", bg ? bg : "(none)");
        int nth = atomic_fetch_add(&chat_requests, 1);
        const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
        if (nth < 2)
            snprintf(got_keys[nth], sizeof got_keys[nth], "%s", key ? key : "(none)");
        if (atomic_load(&fail_first) > 0) {
            atomic_fetch_sub(&fail_first, 1);
            status = 503;
            r = MHD_create_response_from_buffer(24, (void *)"{\"error\":\"internal oops\"}",
                                                MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(r, "Retry-After", "0");
        } else if (atomic_load(&fail_with)) {
            status = (unsigned)atomic_load(&fail_with);
            r = MHD_create_response_from_buffer(24, (void *)"{\"error\":\"internal oops\"}",
                                                MHD_RESPMEM_PERSISTENT);
        } else {
            size_t *next = calloc(1, sizeof *next);
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, stream_chunks, next,
                                                  free);
            MHD_add_response_header(r, "Content-Type", "text/event-stream");
        }
    } else {
        status = 404;
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static gs_proc svc;
static char project[64], episode[64];

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fake = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                            NULL, NULL, handler, NULL, MHD_OPTION_END);
    if (!fake)
        return -1;
    char url[64];
    atomic_store(&port_of_fake, MHD_get_daemon_info(fake, MHD_DAEMON_INFO_BIND_PORT)->port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", atomic_load(&port_of_fake));
    setenv("TEST_LLM_KEY", "sk-test-secret-123", 1);
    const char *const args[] = {
        "--llm-url", url, "--llm-key-env", "TEST_LLM_KEY", "--health-interval-ms", "200", NULL};
    if (gs_start(&svc, args) != 0)
        return -1;
    create_project(&svc, project);
    create_episode(&svc, project, 1, episode);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = gs_stop(&svc);
    gs_cleanup(&svc);
    MHD_stop_daemon(fake);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

static json_t *run_with(char gen[64], const char *extra1, const char *extra2)
{
    const char *const extra[] = {extra1, extra2, NULL};
    http_resp r;
    assert_int_equal(post_generation(&svc, project, episode, "An interview", extra, &r), 0);
    assert_int_equal(r.status, 202);
    snprintf(gen, 64, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/generations/%s", gen);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(http(&svc, "GET", path, NULL, NULL, 0, &r), 0);
        const char *st = json_string_value(json_object_get(r.json, "status"));
        if (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0) {
            json_t *g = json_incref(r.json);
            http_resp_free(&r);
            return g;
        }
        http_resp_free(&r);
        usleep(50000);
    }
    fail_msg("the generation did not finish");
    return NULL;
}

static json_t *run(char gen[64])
{
    return run_with(gen, NULL, NULL);
}

static void streams_from_the_backend(void **state)
{
    (void)state;
    atomic_store(&fail_with, 0);
    char gen[64];
    json_t *g = run(gen);
    assert_string_equal(json_string_value(json_object_get(g, "status")), "completed");
    assert_string_equal(got_tracestate, "(none)"); /* none came, none goes */
    assert_string_equal(got_baggage, "(none)");
    assert_string_equal(json_string_value(json_object_get(g, "output")),
                        "HOST: Welcome to the show.\nGUEST: Thanks.");
    assert_int_equal(json_integer_value(json_object_get(g, "totalTokens")), 42);
    assert_string_equal(json_string_value(json_object_get(g, "model")), "gpt-4o-mini");
    json_decref(g);
    assert_int_equal(atomic_load(&bad_key), 0); /* the key went out as a bearer token */
    /* The key is never logged; the backend is a healthy dependency. */
    json_t *lines = log_wait(&svc, "generation_completed", NULL, 1);
    json_decref(lines);
    size_t len;
    char *log = read_log_raw(&svc, &len);
    assert_null(strstr(log, "sk-test-secret"));
    free(log);
    http_resp r;
    assert_int_equal(http(&svc, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "healthy");
    http_resp_free(&r);
}

/* The backend call is a span under the POST's: the backend receives the trace, the job and a
 * traceparent naming the call's span, whose line names the POST's span as its parent. */
static void the_backend_call_is_a_child_span(void **state)
{
    (void)state;
    atomic_store(&fail_with, 0);
    char gen[64];
    /* tracestate and baggage pass on, their invalid members dropped. */
    json_t *g = run_with(gen, "tracestate: rojo=00f067aa0ba902b7, Bad=1,k=a=b ,congo=t61rc",
                         "baggage: userId = alice;p1, bad key=1");
    assert_string_equal(json_string_value(json_object_get(g, "status")), "completed");
    json_decref(g);
    assert_string_equal(got_tracestate, "rojo=00f067aa0ba902b7,congo=t61rc");
    assert_string_equal(got_baggage, "userId=alice;p1");
    json_t *calls = log_wait(&svc, "http_client_request", got_trace_id, 1);
    assert_int_equal(json_array_size(calls), 1);
    json_t *call = json_array_get(calls, 0);
    const char *span = json_string_value(json_object_get(call, "span_id"));
    const char *parent = json_string_value(json_object_get(call, "parent_span_id"));
    assert_non_null(span);
    assert_non_null(parent);
    json_t *md = json_object_get(call, "metadata");
    assert_int_equal(json_integer_value(json_object_get(md, "status")), 200);
    char host[32];
    snprintf(host, sizeof host, "127.0.0.1:%d", atomic_load(&port_of_fake));
    assert_string_equal(json_string_value(json_object_get(md, "host")), host);
    assert_string_equal(json_string_value(json_object_get(md, "outcome")), "response");
    assert_string_equal(json_string_value(json_object_get(call, "job_id")), got_job_id);
    assert_int_equal(strncmp(got_job_id, "job_", 4), 0);
    /* traceparent: the same 128 bits as the UUIDv7 trace id, the call's span as parent-id. */
    char hex[33];
    size_t n = 0;
    for (const char *p = got_trace_id; *p && n < 32; p++)
        if (*p != '-')
            hex[n++] = *p;
    hex[n] = '\0';
    char want[56];
    snprintf(want, sizeof want, "00-%s-%s-01", hex, span);
    assert_string_equal(got_traceparent, want);
    /* The parent is the POST's span: its access line. */
    json_t *access = log_wait(&svc, "http_request", got_trace_id, 1);
    bool found = false;
    size_t i;
    json_t *l;
    json_array_foreach(access, i, l)
    {
        const char *m =
            json_string_value(json_object_get(json_object_get(l, "metadata"), "method"));
        if (m && strcmp(m, "POST") == 0) {
            found = true;
            assert_string_equal(json_string_value(json_object_get(l, "span_id")), parent);
        }
    }
    assert_true(found);
    json_decref(access);
    json_decref(calls);

    /* o11y-trace rebuilds the tree: the POST, and the call under it. */
    const char *const argv[] = {O11Y_TRACE_BINARY, "--json", got_trace_id, svc.log, NULL};
    char *text, *err;
    assert_int_equal(run_program(argv, svc.dir, &text, &err), 0);
    json_t *doc = json_loads(text, 0, NULL);
    free(text);
    free(err);
    json_t *spans = json_object_get(doc, "spans");
    assert_int_equal(json_array_size(spans), 2);
    json_t *root = json_array_get(spans, 0), *child = json_array_get(spans, 1);
    assert_string_equal(json_string_value(json_object_get(root, "name")), "POST /generations");
    assert_int_equal(json_integer_value(json_object_get(root, "depth")), 0);
    char name[80];
    snprintf(name, sizeof name, "-> POST 127.0.0.1:%d/chat/completions",
             atomic_load(&port_of_fake));
    assert_string_equal(json_string_value(json_object_get(child, "name")), name);
    assert_int_equal(json_integer_value(json_object_get(child, "depth")), 1);
    assert_int_equal(json_integer_value(json_object_get(child, "status")), 200);
    assert_string_equal(json_string_value(json_object_get(child, "parentSpanId")),
                        json_string_value(json_object_get(root, "spanId")));
    json_decref(doc);
}

static void backend_failure_fails_the_generation(void **state)
{
    (void)state;
    atomic_store(&fail_with, 500);
    char gen[64];
    json_t *g = run(gen);
    assert_string_equal(json_string_value(json_object_get(g, "status")), "failed");
    json_t *err = json_object_get(g, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "LLM_UNAVAILABLE");
    const char *msg = json_string_value(json_object_get(err, "message"));
    assert_non_null(strstr(msg, "HTTP 500"));
    assert_null(strstr(msg, "oops")); /* the backend's own text stays out */
    assert_null(strstr(msg, "127.0.0.1"));
    json_decref(g);
    json_t *failed = log_wait(&svc, "generation_failed", NULL, 1);
    assert_true(json_array_size(failed) >= 1);
    json_decref(failed);
    atomic_store(&fail_with, 0);
}

/* A 503 before the first token is retried (the job id is the Idempotency-Key: the same on both
 * attempts), under the same trace; the generation completes. */
static void a_busy_backend_is_retried(void **state)
{
    (void)state;
    atomic_store(&fail_with, 0);
    atomic_store(&chat_requests, 0);
    atomic_store(&fail_first, 1);
    char gen[64];
    json_t *g = run(gen);
    assert_string_equal(json_string_value(json_object_get(g, "status")), "completed");
    json_decref(g);
    assert_int_equal(atomic_load(&chat_requests), 2);
    assert_int_equal(strncmp(got_keys[0], "job_", 4), 0);
    assert_string_equal(got_keys[0], got_keys[1]);
    json_t *retries = log_wait(&svc, "http_client_retry", got_trace_id, 1);
    assert_int_equal(json_array_size(retries), 1);
    json_t *md = json_object_get(json_array_get(retries, 0), "metadata");
    assert_int_equal(json_integer_value(json_object_get(md, "status")), 503);
    json_decref(retries);
    /* the client histogram is in the service's exposition */
    http_resp r;
    assert_int_equal(http(&svc, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr(r.body, "http_client_request_duration_seconds_count{method=\"POST\""));
    assert_non_null(strstr(r.body, "status=\"503\"} 1"));
    http_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streams_from_the_backend),
        cmocka_unit_test(the_backend_call_is_a_child_span),
        cmocka_unit_test(backend_failure_fails_the_generation),
        cmocka_unit_test(a_busy_backend_is_retried),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
