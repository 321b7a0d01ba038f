/* Integration tests: generation-service's health with a real redis-server that the test starts,
 * stops and restarts on a free loopback port, and readiness across SIGTERM. */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* Polls /health (at most timeout_ms) until dependency `name` has status `want`. */
static bool wait_dependency(const gs_proc *p, const char *name, const char *want, int timeout_ms,
                            json_t **doc)
{
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        http_resp r;
        if (http(p, "GET", "/health", NULL, NULL, 0, &r) == 0 && r.json) {
            size_t i;
            json_t *d;
            json_array_foreach(json_object_get(r.json, "dependencies"), i, d)
            {
                if (strcmp(json_string_value(json_object_get(d, "name")), name) == 0 &&
                    strcmp(json_string_value(json_object_get(d, "status")), want) == 0) {
                    if (doc)
                        *doc = json_incref(r.json);
                    http_resp_free(&r);
                    return true;
                }
            }
        }
        http_resp_free(&r);
        usleep(50000);
    }
    return false;
}

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

static void redis_down_degrades_and_recovers(void **state)
{
    (void)state;
    if (system("command -v redis-server >/dev/null 2>&1") != 0)
        fail_msg("redis-server is not installed (scripts/deps.sh installs it)");
    int port = harness_free_port();
    pid_t redis = redis_start(port);
    assert_true(redis > 0);
    char addr[32], llm[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    snprintf(llm, sizeof llm, "http://127.0.0.1:%d/health", harness_free_port()); /* nobody there */
    const char *const args[] = {
        "--redis", addr, "--llm-url", llm, "--health-interval-ms", "200", "--health-timeout-ms",
        "300",     NULL};
    gs_proc svc;
    assert_int_equal(gs_start(&svc, args), 0);
    /* Each check reports on its own thread; a critical one counts as unhealthy until its
     * first result, so wait for all three before judging the overall status. */
    json_t *doc = NULL;
    assert_true(wait_dependency(&svc, "database", "healthy", 3000, NULL));
    assert_true(wait_dependency(&svc, "llm", "unhealthy", 3000, NULL));
    assert_true(wait_dependency(&svc, "redis", "healthy", 3000, &doc));
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "degraded"); /* llm */
    json_decref(doc);

    /* Redis goes away: optional, so degraded (200) and still ready, within an interval. */
    redis_stop(redis);
    assert_true(wait_dependency(&svc, "redis", "unhealthy", 200 + 300 + 500, &doc));
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "degraded");
    json_decref(doc);
    http_resp r;
    assert_int_equal(http(&svc, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(http(&svc, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr(r.body, "o11y_dependency_up{name=\"redis\"} 0"));
    http_resp_free(&r);

    /* Back on the same port: healthy again within an interval. */
    redis = redis_start(port);
    assert_true(redis > 0);
    assert_true(wait_dependency(&svc, "redis", "healthy", 200 + 300 + 500, NULL));
    redis_stop(redis);
    assert_int_equal(gs_stop(&svc), 0);
    json_t *lines = read_log(&svc);
    json_t *changes = log_events(lines, "dependency_status_changed");
    size_t redis_changes = 0, i;
    json_t *l;
    json_array_foreach(changes, i, l)
    {
        const char *name =
            json_string_value(json_object_get(json_object_get(l, "metadata"), "name"));
        redis_changes += strcmp(name, "redis") == 0;
    }
    assert_true(redis_changes >= 3); /* unknown->healthy, ->unhealthy, ->healthy */
    json_decref(changes);
    json_decref(lines);
    gs_cleanup(&svc);
}

static void readiness_turns_503_on_sigterm_before_the_listener_closes(void **state)
{
    (void)state;
    const char *const args[] = {"--shutdown-delay-ms", "1500", "--health-interval-ms", "200", NULL};
    gs_proc svc;
    assert_int_equal(gs_start(&svc, args), 0);
    http_resp r;
    bool ready = false;
    for (int i = 0; i < 60 && !ready; i++) {
        assert_int_equal(http(&svc, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
        ready = r.status == 200;
        http_resp_free(&r);
        if (!ready)
            usleep(50000);
    }
    assert_true(ready);
    kill(svc.pid, SIGTERM);
    usleep(200000);
    /* Still listening, and saying it is not ready. */
    assert_int_equal(http(&svc, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "unhealthy");
    http_resp_free(&r);
    assert_int_equal(http(&svc, "GET", "/health/live", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(gs_wait_exit(&svc, 15000), 0);
    gs_cleanup(&svc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redis_down_degrades_and_recovers),
        cmocka_unit_test(readiness_turns_503_on_sigterm_before_the_listener_closes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
