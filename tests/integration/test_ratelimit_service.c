/* Integration tests of rate limiting (429 RATE_LIMITED, RateLimit-Policy, RateLimit,
 * Retry-After) against the real generation-service: exact counts and refill, idempotency keys
 * untouched by a 429, exempt routes, X-Forwarded-For behind trusted proxies, and one quota for
 * two instances sharing a real redis-server that is killed and restarted under traffic. */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
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

static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void generation_body(const gs_proc *p, char *body, size_t len)
{
    char proj[64], ep[64];
    create_project(p, proj);
    create_episode(p, proj, 1, ep);
    snprintf(body, len, "{\"projectId\":\"%s\",\"episodeId\":\"%s\",\"prompt\":\"p\"}", proj, ep);
}

static long post_body(const gs_proc *p, const char *body, const char *key, http_resp *out)
{
    char h[128];
    snprintf(h, sizeof h, "Idempotency-Key: %s", key ? key : "");
    const char *const headers[] = {"Content-Type: application/json", h, NULL};
    assert_int_equal(
        http(p, "POST", "/generations", key ? headers : JSON_CT, body, strlen(body), out), 0);
    return out->status;
}

static void q_pass_then_429_with_the_fields_then_refill(void **state)
{
    (void)state;
    gs_proc p;
    const char *const args[] = {"--rate-limit-generations", "3/2", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char body[256];
    generation_body(&p, body, sizeof body);
    char v[128];
    for (int i = 0; i < 3; i++) {
        http_resp r;
        assert_int_equal(post_body(&p, body, NULL, &r), 202);
        assert_string_equal(resp_header(&r, "RateLimit-Policy", v, sizeof v),
                            "\"generations\";q=3;w=2");
        char want[64];
        snprintf(want, sizeof want, "\"generations\";r=%d;", 2 - i);
        assert_int_equal(strncmp(resp_header(&r, "RateLimit", v, sizeof v), want, strlen(want)), 0);
        http_resp_free(&r);
    }
    http_resp r;
    assert_int_equal(post_body(&p, body, NULL, &r), 429);
    assert_string_equal(resp_code(&r), "RATE_LIMITED");
    assert_true(atoi(resp_header(&r, "Retry-After", v, sizeof v)) >= 1);
    assert_string_equal(resp_header(&r, "RateLimit-Policy", v, sizeof v),
                        "\"generations\";q=3;w=2");
    assert_non_null(strstr(resp_header(&r, "RateLimit", v, sizeof v), "r=0"));
    assert_string_equal(resp_header(&r, "Cache-Control", v, sizeof v), "no-store");
    http_resp_free(&r);
    /* Other routes are not under this policy. */
    assert_int_equal(http(&p, "GET", "/projects/nope", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_null(resp_header(&r, "RateLimit", v, sizeof v));
    http_resp_free(&r);
    /* The whole quota is back after the window. */
    usleep(2100000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(post_body(&p, body, NULL, &r), 202);
        http_resp_free(&r);
    }
    assert_int_equal(post_body(&p, body, NULL, &r), 429);
    http_resp_free(&r);
    /* Counted, and the rate_limited line never holds the raw key. */
    assert_int_equal(http(&p, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr(
        r.body, "o11y_rate_limit_decisions_total{policy=\"generations\",decision=\"limited\"} 2"));
    assert_non_null(strstr(
        r.body, "o11y_rate_limit_decisions_total{policy=\"generations\",decision=\"allowed\"} 6"));
    http_resp_free(&r);
    json_t *limited = log_wait(&p, "rate_limited", NULL, 1);
    assert_true(json_array_size(limited) >= 1);
    json_t *md = json_object_get(json_array_get(limited, 0), "metadata");
    assert_string_equal(json_string_value(json_object_get(md, "policy")), "generations");
    assert_int_equal(strlen(json_string_value(json_object_get(md, "key_hash"))), 16);
    json_decref(limited);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void a_429_never_consumes_an_idempotency_key(void **state)
{
    (void)state;
    gs_proc p;
    const char *const args[] = {"--rate-limit-generations", "1/2", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char body[256];
    generation_body(&p, body, sizeof body);
    http_resp r;
    assert_int_equal(post_body(&p, body, "first", &r), 202);
    http_resp_free(&r);
    /* Limited before the key is begun: nothing stored under it. */
    assert_int_equal(post_body(&p, body, "second", &r), 429);
    http_resp_free(&r);
    usleep(2100000);
    /* The same key after the window: a fresh request (202), not a replay or a conflict. */
    assert_int_equal(post_body(&p, body, "second", &r), 202);
    char v[16];
    assert_null(resp_header(&r, "Idempotent-Replayed", v, sizeof v));
    http_resp_free(&r);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void health_and_metrics_are_never_limited(void **state)
{
    (void)state;
    gs_proc p;
    const char *const args[] = {"--rate-limit-all", "2/60", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    http_resp r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(http(&p, "GET", "/projects/x", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 404);
        http_resp_free(&r);
    }
    assert_int_equal(http(&p, "GET", "/projects/x", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 429);
    http_resp_free(&r);
    static const char *const exempt[] = {"/health", "/health/live", "/health/ready", "/metrics",
                                         "/metrics/summary"};
    for (int round = 0; round < 5; round++) {
        for (size_t i = 0; i < sizeof exempt / sizeof exempt[0]; i++) {
            assert_int_equal(http(&p, "GET", exempt[i], NULL, NULL, 0, &r), 0);
            if (r.status == 429)
                fail_msg("%s was limited", exempt[i]);
            char v[64];
            assert_null(resp_header(&r, "RateLimit", v, sizeof v));
            http_resp_free(&r);
        }
    }
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* A request from a chosen loopback source with the given extra header lines; the status. */
static int status_from(const char *source, int port, const char *headers)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in src = {.sin_family = AF_INET},
                       dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, source, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof dst), 0);
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "GET /projects/x HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n", headers);
    assert_true(send(fd, req, (size_t)n, MSG_NOSIGNAL) == n);
    size_t len;
    char *resp = raw_read(fd, 2000, &len);
    close(fd);
    int status = 0;
    if (resp)
        sscanf(resp, "HTTP/1.1 %d", &status);
    free(resp);
    return status;
}

static void forwarded_for_counts_only_behind_a_trusted_proxy(void **state)
{
    (void)state;
    gs_proc p;
    const char *const args[] = {"--rate-limit-all", "2/60", "--trusted-proxies",
                                "127.0.0.1/32, 10.0.0.0/8", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    /* Through the trusted proxy (127.0.0.1), each forwarded client has its own quota; hops of
     * other trusted proxies (10.x) on the right are skipped. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(status_from("127.0.0.1", p.port, "X-Forwarded-For: 203.0.113.5\r\n"), 404);
        assert_int_equal(
            status_from("127.0.0.1", p.port, "X-Forwarded-For: 203.0.113.6, 10.1.2.3\r\n"), 404);
    }
    assert_int_equal(status_from("127.0.0.1", p.port, "X-Forwarded-For: 203.0.113.5\r\n"), 429);
    assert_int_equal(
        status_from("127.0.0.1", p.port, "X-Forwarded-For: 198.51.100.1, 203.0.113.6\r\n"),
        429); /* the rightmost untrusted hop decides, not the leftmost */
    /* Malformed or huge: the peer (the proxy itself) decides; it has its own quota of 2. */
    assert_int_equal(status_from("127.0.0.1", p.port, "X-Forwarded-For: not-an-address\r\n"), 404);
    char huge[3100] = "X-Forwarded-For: ";
    for (int i = 0; i < 200; i++)
        strcat(huge, "192.0.2.1, ");
    strcat(huge, "203.0.113.9\r\n");
    assert_int_equal(status_from("127.0.0.1", p.port, huge), 404);
    assert_int_equal(status_from("127.0.0.1", p.port, "X-Forwarded-For: 1.2.3.4:80\r\n"), 429);
    /* From an untrusted peer the header is ignored: 127.0.0.2 is limited as itself. */
    for (int i = 0; i < 2; i++)
        assert_int_equal(status_from("127.0.0.2", p.port, "X-Forwarded-For: 203.0.113.77\r\n"),
                         404);
    assert_int_equal(status_from("127.0.0.2", p.port, "X-Forwarded-For: 203.0.113.78\r\n"), 429);
    assert_int_equal(gs_stop(&p), 0);
    /* No raw header value reached the log. */
    size_t len;
    char *log = read_log_raw(&p, &len);
    assert_null(strstr(log, "203.0.113"));
    assert_null(strstr(log, "not-an-address"));
    free(log);
    gs_cleanup(&p);
}

/*=== MARK: Redis ===*/

typedef struct burst {
    const gs_proc *p;
    atomic_int created, limited, other;
} burst;

static void *post_project(void *arg)
{
    burst *b = arg;
    http_resp r;
    if (http(b->p, "POST", "/projects", JSON_CT, "{\"name\":\"r\"}", 12, &r) != 0) {
        atomic_fetch_add(&b->other, 1);
        return NULL;
    }
    if (r.status == 201)
        atomic_fetch_add(&b->created, 1);
    else if (r.status == 429)
        atomic_fetch_add(&b->limited, 1);
    else
        atomic_fetch_add(&b->other, 1);
    http_resp_free(&r);
    return NULL;
}

static void two_instances_share_one_quota_in_redis(void **state)
{
    (void)state;
    int rport = harness_free_port();
    pid_t redis = redis_start(rport);
    assert_true(redis > 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", rport);
    const char *const args[] = {"--redis",
                                addr,
                                "--rate-limit-store",
                                "redis",
                                "--rate-limit-all",
                                "30/60",
                                "--rate-limit-generations",
                                "0",
                                "--threads",
                                "8",
                                NULL};
    gs_proc a, b;
    assert_int_equal(gs_start(&a, args), 0);
    assert_int_equal(gs_start(&b, args), 0);
    /* 2 x 30 concurrent POSTs from one client, half to each instance: exactly 30 pass. */
    enum { N = 60 };
    burst ba = {.p = &a}, bb = {.p = &b};
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, post_project, i % 2 ? (void *)&ba : (void *)&bb);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    int created = atomic_load(&ba.created) + atomic_load(&bb.created);
    int limited = atomic_load(&ba.limited) + atomic_load(&bb.limited);
    if (created != 30 || limited != 30)
        fail_msg("created %d, limited %d, other %d", created, limited,
                 atomic_load(&ba.other) + atomic_load(&bb.other));
    /* Redis killed mid-traffic: requests keep flowing (fail open), counted, logged once or so. */
    redis_stop(redis);
    double t0 = now_s();
    for (int i = 0; i < 40; i++) {
        http_resp r;
        assert_int_equal(http(i % 2 ? &a : &b, "GET", "/projects/x", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 404);
        http_resp_free(&r);
    }
    assert_true(now_s() - t0 < 10);
    http_resp m;
    assert_int_equal(http(&a, "GET", "/metrics", NULL, NULL, 0, &m), 0);
    /* the policy in use counted its store errors (another policy's zero does not count) */
    const char *se =
        strstr(m.body, "o11y_rate_limit_decisions_total{policy=\"all\",decision=\"store_error\"} ");
    assert_non_null(se);
    assert_true(atol(strchr(se, '}') + 2) > 0);
    http_resp_free(&m);
    /* Restarted on the same port: enforcement resumes (the quota is a fresh one). */
    redis = redis_start(rport);
    assert_true(redis > 0);
    usleep(1200000); /* the store waits a second after a failure before trying again */
    int limited_again = 0;
    for (int i = 0; i < 40 && !limited_again; i++) {
        http_resp r;
        assert_int_equal(http(i % 2 ? &a : &b, "GET", "/projects/x", NULL, NULL, 0, &r), 0);
        limited_again = r.status == 429;
        http_resp_free(&r);
    }
    assert_true(limited_again);
    assert_int_equal(gs_stop(&a), 0);
    assert_int_equal(gs_stop(&b), 0);
    json_t *lines = read_log(&a);
    json_t *store_errors = log_events(lines, "rate_limit_store_error");
    size_t store_lines = json_array_size(store_errors);
    json_decref(store_errors);
    json_decref(lines);
    assert_true(store_lines >= 1 && store_lines <= 3);
    redis_stop(redis);
    gs_cleanup(&a);
    gs_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(q_pass_then_429_with_the_fields_then_refill),
        cmocka_unit_test(a_429_never_consumes_an_idempotency_key),
        cmocka_unit_test(health_and_metrics_are_never_limited),
        cmocka_unit_test(forwarded_for_counts_only_behind_a_trusted_proxy),
        cmocka_unit_test(two_instances_share_one_quota_in_redis),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
