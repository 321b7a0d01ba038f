/* Integration tests of idempotency in the library: a service built in-process over the memory
 * store with an injected clock, called over real HTTP. Each asserts the status, the code and how
 * many times the handler created something. */
#include <o11y/o11y.h>

#include "harness.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
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

static o11y_service *svc;
static o11y_mhd_server *server;
static o11y_idem_store *store;
static gs_proc target;
static atomic_int created;                       /* handler runs that created something */
static atomic_int fail_next;                     /* the next create answers 503 */
static atomic_int slow_ms;                       /* the handler sleeps this long */
static _Atomic int64_t fake_now = 1795775400000; /* the injected clock (ms) */

static int64_t clock_ms(void *ctx)
{
    (void)ctx;
    return atomic_load(&fake_now);
}

static int create(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    int ms = atomic_load(&slow_ms);
    if (ms)
        usleep((useconds_t)ms * 1000);
    o11y_str raw = o11y_req_body(req);
    if (raw.len >= 15 && memcmp(raw.ptr, "{\"invalid\":true", 15) == 0) {
        o11y_res_field_error(res, "invalid", "must be false");
        return 0;
    }
    if (atomic_exchange(&fail_next, 0)) {
        o11y_res_error(res, "SERVICE_UNAVAILABLE", NULL, "backend down");
        return 0;
    }
    int n = atomic_fetch_add(&created, 1) + 1;
    o11y_str body = o11y_req_body(req);
    if (o11y_res_header(res, "Location", "/things/1") != O11Y_OK)
        return 1;
    return o11y_res_json(res, 201, json_pack("{s:i,s:s%}", "n", n, "echo", body.ptr, body.len));
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(target.dir, sizeof target.dir, "/tmp/o11y-idem-XXXXXX");
    if (!mkdtemp(target.dir))
        return -1;
    snprintf(target.log, sizeof target.log, "%s/idem.log", target.dir);
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "idem-test";
    cfg.log.file_path = target.log;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK)
        return -1;
    o11y_idem_memory_config mc = {.max_entries = 200, .max_bytes = 64 * 1024};
    if (o11y_idem_store_memory(&mc, &store) != O11Y_OK)
        return -1;
    o11y_idem_config ic = {.store = store,
                           .ttl_s = 60,
                           .lease_s = 5,
                           .clock_ms = clock_ms,
                           .client_header = "Authorization"};
    if (o11y_service_idempotency(svc, &ic) != O11Y_OK ||
        o11y_service_route(svc, O11Y_POST | O11Y_PUT, "/things", create, NULL, 0) != O11Y_OK ||
        o11y_service_route(svc, O11Y_POST, "/strict", create, NULL,
                           O11Y_ROUTE_IDEMPOTENCY_REQUIRED) != O11Y_OK)
        return -1;
    o11y_mhd_config m;
    o11y_mhd_config_init(&m);
    if (o11y_mhd_start(svc, &m, &server) != O11Y_OK)
        return -1;
    target.port = o11y_mhd_port(server);
    target.pid = -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    o11y_mhd_stop(server);
    o11y_service_destroy(svc);
    o11y_idem_store_destroy(store);
    gs_cleanup(&target);
    curl_global_cleanup();
    return 0;
}

static http_resp post(const char *path, const char *key, const char *body)
{
    char h[400];
    snprintf(h, sizeof h, "Idempotency-Key: %s", key ? key : "");
    const char *const with_key[] = {h, NULL};
    http_resp r;
    assert_int_equal(http(&target, "POST", path, key ? with_key : NULL, body, strlen(body), &r), 0);
    return r;
}

static void replay_returns_the_same_body_as_200(void **state)
{
    (void)state;
    int before = atomic_load(&created);
    http_resp a = post("/things", "replay-1", "{\"x\":1}");
    assert_int_equal(a.status, 201);
    char trace[128], v[128];
    resp_header(&a, "X-Trace-Id", trace, sizeof trace);
    assert_null(resp_header(&a, "Idempotent-Replayed", v, sizeof v));
    http_resp b = post("/things", "replay-1", "{\"x\":1}");
    assert_int_equal(b.status, 200);
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len); /* byte for byte */
    assert_string_equal(resp_header(&b, "Idempotent-Replayed", v, sizeof v), "true");
    assert_string_equal(resp_header(&b, "X-Original-Trace-Id", v, sizeof v), trace);
    assert_string_not_equal(resp_header(&b, "X-Trace-Id", v, sizeof v), trace); /* fresh */
    assert_string_equal(resp_header(&b, "Location", v, sizeof v), "/things/1");
    assert_string_equal(resp_header(&b, "Content-Type", v, sizeof v), "application/json");
    assert_int_equal(atomic_load(&created) - before, 1);
    /* A quoted key is the same key. */
    http_resp c = post("/things", "\"replay-1\"", "{\"x\":1}");
    assert_int_equal(c.status, 200);
    assert_int_equal(atomic_load(&created) - before, 1);
    http_resp_free(&a);
    http_resp_free(&b);
    http_resp_free(&c);
}

static void key_reused_with_another_request_is_422(void **state)
{
    (void)state;
    int before = atomic_load(&created);
    http_resp a = post("/things", "reuse-1", "{\"x\":1}");
    assert_int_equal(a.status, 201);
    http_resp b = post("/things", "reuse-1", "{\"x\":2}");
    assert_int_equal(b.status, 422);
    assert_string_equal(resp_code(&b), "IDEMPOTENCY_KEY_REUSED");
    http_resp c = post("/things?variant=2", "reuse-1", "{\"x\":1}"); /* the query counts */
    assert_int_equal(c.status, 422);
    assert_int_equal(atomic_load(&created) - before, 1);
    /* Another method is another scope: the same key is new there. */
    const char *const h[] = {"Idempotency-Key: reuse-1", NULL};
    http_resp d;
    assert_int_equal(http(&target, "PUT", "/things", h, "{\"x\":1}", 7, &d), 0);
    assert_int_equal(d.status, 201);
    /* So is another client. */
    const char *const other[] = {"Idempotency-Key: reuse-1", "Authorization: Bearer other", NULL};
    http_resp e;
    assert_int_equal(http(&target, "POST", "/things", other, "{\"x\":1}", 7, &e), 0);
    assert_int_equal(e.status, 201);
    assert_int_equal(atomic_load(&created) - before, 3);
    http_resp_free(&a);
    http_resp_free(&b);
    http_resp_free(&c);
    http_resp_free(&d);
    http_resp_free(&e);
}

static void invalid_keys_are_400_and_create_nothing(void **state)
{
    (void)state;
    int before = atomic_load(&created);
    char long_key[300];
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    static const char *const bad[] = {"\"\"", "\"a\"b\"", "\"a\\\\b\"", "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_resp r = post("/things", bad[i], "{}");
        if (r.status != 400)
            fail_msg("key <%s>: %ld %s", bad[i], r.status, r.body);
        assert_string_equal(resp_code(&r), "IDEMPOTENCY_KEY_INVALID");
        http_resp_free(&r);
    }
    http_resp r = post("/things", long_key, "{}");
    assert_int_equal(r.status, 400);
    assert_string_equal(resp_code(&r), "IDEMPOTENCY_KEY_INVALID");
    http_resp_free(&r);
    long_key[255] = '\0'; /* 255 bytes is the longest valid key */
    r = post("/things", long_key, "{}");
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
    /* Bytes outside 0x21-0x7E, an empty value and two header lines: raw, as curl will not. */
    static const char *const raw[] = {
        "POST /things HTTP/1.1\r\nHost: t\r\nIdempotency-Key: caf\xc3\xa9\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        "POST /things HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\x7f\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        "POST /things HTTP/1.1\r\nHost: t\r\nIdempotency-Key:\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        "POST /things HTTP/1.1\r\nHost: t\r\nIdempotency-Key: one\r\nIdempotency-Key: two\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        size_t len;
        char *resp = raw_exchange(target.port, raw[i], strlen(raw[i]), 2000, &len);
        if (!strstr(resp, "HTTP/1.1 400") || !strstr(resp, "\"IDEMPOTENCY_KEY_INVALID\""))
            fail_msg("raw case %zu: %s", i, resp);
        free(resp);
    }
    /* A route that requires a key. */
    http_resp m = post("/strict", NULL, "{}");
    assert_int_equal(m.status, 400);
    assert_string_equal(resp_code(&m), "IDEMPOTENCY_KEY_MISSING");
    http_resp_free(&m);
    assert_int_equal(atomic_load(&created) - before, 1); /* only the 255-byte key's */
}

static void a_5xx_is_not_stored_and_a_retry_runs_again(void **state)
{
    (void)state;
    int before = atomic_load(&created);
    atomic_store(&fail_next, 1);
    http_resp a = post("/things", "retry-1", "{\"x\":1}");
    assert_int_equal(a.status, 503);
    http_resp b = post("/things", "retry-1", "{\"x\":1}");
    assert_int_equal(b.status, 201);
    http_resp c = post("/things", "retry-1", "{\"x\":1}");
    assert_int_equal(c.status, 200);
    assert_int_equal(atomic_load(&created) - before, 1);
    http_resp_free(&a);
    http_resp_free(&b);
    http_resp_free(&c);
}

static void ttl_expiry_makes_the_key_new(void **state)
{
    (void)state;
    int before = atomic_load(&created);
    http_resp a = post("/things", "ttl-1", "{\"x\":1}");
    assert_int_equal(a.status, 201);
    atomic_fetch_add(&fake_now, 59 * 1000);
    http_resp b = post("/things", "ttl-1", "{\"x\":1}");
    assert_int_equal(b.status, 200);
    atomic_fetch_add(&fake_now, 2 * 1000); /* past the 60 s TTL */
    http_resp c = post("/things", "ttl-1", "{\"x\":1}");
    assert_int_equal(c.status, 201);
    assert_int_equal(atomic_load(&created) - before, 2);
    http_resp_free(&a);
    http_resp_free(&b);
    http_resp_free(&c);
}

typedef struct racer {
    const char *key;
    long status;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    http_resp resp;
    char h[64];
    snprintf(h, sizeof h, "Idempotency-Key: %s", r->key);
    const char *const headers[] = {h, NULL};
    if (http(&target, "POST", "/things", headers, "{\"x\":1}", 7, &resp) == 0)
        r->status = resp.status;
    const char *code = resp_code(&resp);
    if (r->status == 409 && (!code || strcmp(code, "IDEMPOTENCY_KEY_IN_USE") != 0))
        r->status = -409;
    char v[16];
    if (r->status == 409 && !resp_header(&resp, "Retry-After", v, sizeof v))
        r->status = -1;
    http_resp_free(&resp);
    return NULL;
}

static void fifty_concurrent_requests_create_once(void **state)
{
    (void)state;
    int before = atomic_load(&created);
    atomic_store(&slow_ms, 200); /* keep the first in flight while the others arrive */
    enum { N = 50 };
    pthread_t t[N];
    racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (racer){"race-1", 0};
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    int ok201 = 0, in_use = 0, replayed = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok201 += r[i].status == 201;
        in_use += r[i].status == 409;
        replayed += r[i].status == 200;
    }
    atomic_store(&slow_ms, 0);
    assert_int_equal(ok201, 1);
    assert_int_equal(ok201 + in_use + replayed, N);
    assert_true(in_use > 0);
    assert_int_equal(atomic_load(&created) - before, 1);
}

static void lease_expiry_frees_an_abandoned_key(void **state)
{
    (void)state;
    int before = atomic_load(&created);
    atomic_store(&slow_ms, 400);
    racer r = {"lease-1", 0};
    pthread_t t;
    pthread_create(&t, NULL, race, &r);
    usleep(150000);
    http_resp busy = post("/things", "lease-1", "{\"x\":1}");
    assert_int_equal(busy.status, 409); /* in flight, within its lease */
    http_resp_free(&busy);
    /* The holder stalls past its 5 s lease (as a crashed process would): the key is free. */
    atomic_fetch_add(&fake_now, 6 * 1000);
    atomic_store(&slow_ms, 0);
    http_resp again = post("/things", "lease-1", "{\"x\":1}");
    assert_int_equal(again.status, 201);
    http_resp_free(&again);
    pthread_join(t, NULL);
    assert_int_equal(r.status, 201);
    assert_int_equal(atomic_load(&created) - before, 2);
    /* The later holder's response is the one kept. */
    http_resp replay = post("/things", "lease-1", "{\"x\":1}");
    assert_int_equal(replay.status, 200);
    http_resp_free(&replay);
}

static http_resp post_as(const char *client, const char *key, const char *body)
{
    char auth[128], h[400];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", client);
    snprintf(h, sizeof h, "Idempotency-Key: %s", key);
    const char *const headers[] = {auth, h, NULL};
    http_resp r;
    assert_int_equal(http(&target, "POST", "/things", headers, body, strlen(body), &r), 0);
    return r;
}

static void one_client_cannot_take_keys_from_others(void **state)
{
    (void)state;
    /* The store holds 200 keys, 12 per client (a sixteenth). One client sends 300 keys: all
     * pass, its own oldest completed keys make room (CONTRACT section 4). */
    int before = atomic_load(&created);
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "flood-%d", i);
        http_resp r = post_as("flooder", key, "{}");
        assert_int_equal(r.status, 201);
        http_resp_free(&r);
    }
    assert_int_equal(atomic_load(&created) - before, 300);
    /* Another client still gets keys, and its keys are kept. */
    http_resp r = post_as("quiet", "mine", "{}");
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
    r = post_as("quiet", "mine", "{}");
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    /* The flooder's latest keys are kept: a retry replays without running the handler. */
    before = atomic_load(&created);
    for (int i = 290; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "flood-%d", i);
        r = post_as("flooder", key, "{}");
        assert_int_equal(r.status, 200);
        http_resp_free(&r);
    }
    assert_int_equal(atomic_load(&created) - before, 0);
}

static void a_response_too_large_to_keep_keeps_its_status(void **state)
{
    (void)state;
    /* The store keeps 64 KiB, 4 KiB per client: a 6 KB response cannot be kept. Its key stays
     * completed with its status, so a retry never runs the handler again (CONTRACT section 4):
     * it is told the key completed (422, non-retryable) instead of failing open. */
    char body[6200];
    int n = snprintf(body, sizeof body, "{\"pad\":\"");
    memset(body + n, 'x', 6000);
    snprintf(body + n + 6000, sizeof body - (size_t)n - 6000, "\"}");
    int before = atomic_load(&created);
    http_resp r = post_as("big", "large-1", body);
    assert_int_equal(r.status, 201);
    char trace[128];
    assert_non_null(resp_header(&r, "X-Trace-Id", trace, sizeof trace));
    http_resp_free(&r);
    for (int i = 0; i < 3; i++) {
        r = post_as("big", "large-1", body);
        if (r.status != 422 || strcmp(resp_code(&r), "IDEMPOTENCY_KEY_REUSED") != 0)
            fail_msg("want 422, got %ld %s", r.status, r.body);
        json_t *d = json_object_get(json_object_get(r.json, "error"), "details");
        assert_int_equal(json_integer_value(json_object_get(d, "originalStatus")), 201);
        assert_true(json_is_false(json_object_get(d, "responseKept")));
        char v[32];
        assert_string_equal(resp_header(&r, "Cache-Control", v, sizeof v), "no-store");
        http_resp_free(&r);
    }
    assert_int_equal(atomic_load(&created) - before, 1);
    json_t *lines = log_wait(&target, "idempotency", trace, 2); /* new, then status_only */
    bool said = false;
    for (size_t i = 0; i < json_array_size(lines); i++) {
        json_t *meta = json_object_get(json_array_get(lines, i), "metadata");
        const char *o = json_string_value(json_object_get(meta, "outcome"));
        said |= o && strcmp(o, "status_only") == 0;
    }
    json_decref(lines);
    assert_true(said);
}

static void a_handler_validation_failure_is_not_stored(void **state)
{
    (void)state;
    /* CONTRACT section 4: a 400 VALIDATION_FAILED, even from the handler, leaves the key free,
     * so the client fixes the body and retries with the same key. */
    int before = atomic_load(&created);
    http_resp r = post_as("fixer", "fix-1", "{\"invalid\":true}");
    assert_int_equal(r.status, 400);
    assert_string_equal(resp_code(&r), "VALIDATION_FAILED");
    http_resp_free(&r);
    r = post_as("fixer", "fix-1", "{\"invalid\":false}");
    assert_int_equal(r.status, 201);
    http_resp_free(&r);
    assert_int_equal(atomic_load(&created) - before, 1);
}

static void outcomes_are_logged_and_counted(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&target, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    static const char *const outcomes[] = {"new",     "replayed", "in_use",     "reused",
                                           "invalid", "missing",  "status_only"};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
        char needle[96];
        snprintf(needle, sizeof needle, "o11y_idempotency_requests_total{outcome=\"%s\"}",
                 outcomes[i]);
        if (!strstr(r.body, needle))
            fail_msg("no %s", needle);
    }
    http_resp_free(&r);
    json_t *lines = log_wait(&target, "idempotency", NULL, 5);
    assert_true(json_array_size(lines) >= 5);
    json_decref(lines);
    size_t len;
    char *log = read_log_raw(&target, &len);
    assert_null(strstr(log, "replay-1")); /* keys themselves never reach the log */
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replay_returns_the_same_body_as_200),
        cmocka_unit_test(key_reused_with_another_request_is_422),
        cmocka_unit_test(invalid_keys_are_400_and_create_nothing),
        cmocka_unit_test(a_5xx_is_not_stored_and_a_retry_runs_again),
        cmocka_unit_test(ttl_expiry_makes_the_key_new),
        cmocka_unit_test(fifty_concurrent_requests_create_once),
        cmocka_unit_test(lease_expiry_frees_an_abandoned_key),
        cmocka_unit_test(one_client_cannot_take_keys_from_others),
        cmocka_unit_test(a_response_too_large_to_keep_keeps_its_status),
        cmocka_unit_test(a_handler_validation_failure_is_not_stored),
        cmocka_unit_test(outcomes_are_logged_and_counted),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
