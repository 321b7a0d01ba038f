/* Integration tests of health checks with real parts: a service built in-process with checks
 * against a server that accepts and never answers, a socket that never accepts, a real HTTP
 * dependency answering 500 then 200, and custom checks that hang or return garbage. */
#include <o11y/curl.h>
#include <o11y/o11y.h>
#include <o11y/redis.h>
#include <o11y/sqlite.h>

#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
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

enum { TIMEOUT_MS = 300, INTERVAL_MS = 200 };

static o11y_service *svc;
static o11y_mhd_server *server;
static gs_proc target;

/* A dependency over real HTTP whose answer the test flips. */
static struct MHD_Daemon *dependency;
static atomic_int dependency_status = 500;
static atomic_int dependency_hits;

/* A server that accepts and never answers, and a socket that never accepts. */
static int silent_fd = -1, deaf_fd = -1;
static pthread_t silent_thread;
static atomic_bool stop_silent;

static atomic_int custom_health = O11Y_HEALTH_HEALTHY;

static enum MHD_Result dependency_handler(void *cls, struct MHD_Connection *c, const char *url,
                                          const char *method, const char *version,
                                          const char *upload, size_t *upload_size, void **req)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload, (void)upload_size;
    static int marker;
    if (!*req) {
        *req = &marker;
        return MHD_YES;
    }
    atomic_fetch_add(&dependency_hits, 1);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)atomic_load(&dependency_status), r);
    MHD_destroy_response(r);
    return ret;
}

static int listen_on_free_port(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static void *silent_main(void *arg)
{
    (void)arg;
    int held[64];
    int n = 0;
    while (!atomic_load(&stop_silent)) {
        int fd = accept(silent_fd, NULL, NULL); /* accept, read nothing, answer nothing */
        if (fd >= 0 && n < 64)
            held[n++] = fd;
        else if (fd >= 0)
            close(fd);
    }
    for (int i = 0; i < n; i++)
        close(held[i]);
    return NULL;
}

static o11y_health_status hangs(void *ctx, char *message, size_t len)
{
    (void)ctx, (void)message, (void)len;
    usleep(700000); /* past its 300 ms timeout, within the 1 s a shutdown waits for it */
    return O11Y_HEALTH_HEALTHY;
}

static o11y_health_status garbage(void *ctx, char *message, size_t len)
{
    (void)ctx;
    memset(message, 'x', len + 1); /* fills the buffer to the brim, no NUL of its own */
    return (o11y_health_status)42;
}

static o11y_health_status switchable(void *ctx, char *message, size_t len)
{
    (void)ctx;
    o11y_health_status st = (o11y_health_status)atomic_load(&custom_health);
    if (st != O11Y_HEALTH_HEALTHY)
        snprintf(message, len, "queue depth over limit \"\n\x01");
    return st;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(target.dir, sizeof target.dir, "/tmp/o11y-health-XXXXXX");
    if (!mkdtemp(target.dir))
        return -1;
    snprintf(target.log, sizeof target.log, "%s/health.log", target.dir);
    int silent_port, deaf_port;
    silent_fd = listen_on_free_port(16, &silent_port);
    deaf_fd = listen_on_free_port(1, &deaf_port);
    if (silent_fd < 0 || deaf_fd < 0)
        return -1;
    pthread_create(&silent_thread, NULL, silent_main, NULL);
    dependency = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                  dependency_handler, NULL, MHD_OPTION_END);
    if (!dependency)
        return -1;
    int dep_port = MHD_get_daemon_info(dependency, MHD_DAEMON_INFO_BIND_PORT)->port;

    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "health-test";
    cfg.version = "1.2.3";
    cfg.log.file_path = target.log;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK)
        return -1;
    o11y_health *h = o11y_service_health(svc);
    char url[128];
    o11y_health_check_opts o = {.timeout_ms = TIMEOUT_MS, .interval_ms = INTERVAL_MS};
    o.name = "dependency";
    snprintf(url, sizeof url, "http://user:secret@127.0.0.1:%d/health?token=abc", dep_port);
    if (o11y_health_add_http(h, &o, url) != O11Y_OK)
        return -1;
    o.name = "silent";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", silent_port);
    if (o11y_health_add_http(h, &o, url) != O11Y_OK)
        return -1;
    o.name = "deaf";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", deaf_port);
    if (o11y_health_add_http(h, &o, url) != O11Y_OK)
        return -1;
    o.name = "hangs";
    if (o11y_health_add_custom(h, &o, hangs, NULL) != O11Y_OK)
        return -1;
    o.name = "garbage";
    if (o11y_health_add_custom(h, &o, garbage, NULL) != O11Y_OK)
        return -1;
    o.name = "queue";
    o.critical = true;
    if (o11y_health_add_custom(h, &o, switchable, NULL) != O11Y_OK)
        return -1;
    o11y_mhd_config mc;
    o11y_mhd_config_init(&mc);
    if (o11y_mhd_start(svc, &mc, &server) != O11Y_OK)
        return -1;
    target.port = o11y_mhd_port(server);
    target.pid = -1;
    usleep((TIMEOUT_MS + INTERVAL_MS) * 1000); /* a first round */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    o11y_mhd_stop(server);
    o11y_service_destroy(svc);
    MHD_stop_daemon(dependency);
    atomic_store(&stop_silent, true);
    shutdown(silent_fd, SHUT_RDWR); /* accept() returns, the loop sees the flag */
    pthread_join(silent_thread, NULL);
    close(silent_fd);
    close(deaf_fd);
    gs_cleanup(&target);
    curl_global_cleanup();
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static json_t *dependency_named(json_t *doc, const char *name)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(doc, "dependencies"), i, d)
    {
        if (strcmp(json_string_value(json_object_get(d, "name")), name) == 0)
            return d;
    }
    return NULL;
}

static const char *dep_field(json_t *doc, const char *name, const char *field)
{
    return json_string_value(json_object_get(dependency_named(doc, name), field));
}

static void hanging_dependencies_never_hang_the_endpoint(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++) {
        double t0 = now_ms();
        http_resp r;
        assert_int_equal(http(&target, "GET", "/health", NULL, NULL, 0, &r), 0);
        double dt = now_ms() - t0;
        if (dt > TIMEOUT_MS + 200)
            fail_msg("/health took %.0f ms", dt);
        assert_non_null(r.json);
        assert_string_equal(dep_field(r.json, "silent", "status"), "unhealthy");
        assert_string_equal(dep_field(r.json, "silent", "error"), "timeout");
        assert_string_equal(dep_field(r.json, "deaf", "status"), "unhealthy");
        assert_string_equal(dep_field(r.json, "hangs", "error"), "timeout");
        http_resp_free(&r);
        usleep(50000);
    }
}

static void garbage_from_a_custom_check_is_contained(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&target, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_string_equal(dep_field(r.json, "garbage", "status"), "unhealthy");
    assert_string_equal(dep_field(r.json, "garbage", "error"),
                        "the check returned an invalid status");
    http_resp_free(&r);
}

static void http_dependency_500_then_200(void **state)
{
    (void)state;
    atomic_store(&dependency_status, 500);
    usleep((TIMEOUT_MS + 2 * INTERVAL_MS) * 1000);
    http_resp r;
    assert_int_equal(http(&target, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_string_equal(dep_field(r.json, "dependency", "status"), "unhealthy");
    assert_string_equal(dep_field(r.json, "dependency", "error"), "HTTP 500");
    assert_null(strstr(r.body, "secret")); /* credentials in the URL never shown */
    assert_null(strstr(r.body, "token=abc"));
    http_resp_free(&r);
    atomic_store(&dependency_status, 200);
    usleep((TIMEOUT_MS + 2 * INTERVAL_MS) * 1000);
    assert_int_equal(http(&target, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_string_equal(dep_field(r.json, "dependency", "status"), "healthy");
    assert_null(json_object_get(dependency_named(r.json, "dependency"), "error"));
    http_resp_free(&r);
    /* Each change was logged once, with the credentials nowhere in the log. */
    assert_int_equal(o11y_logger_flush(o11y_service_logger(svc), 5000), O11Y_OK);
    json_t *changes = log_wait(&target, "dependency_status_changed", NULL, 1);
    size_t i, to_healthy = 0;
    json_t *l;
    json_array_foreach(changes, i, l)
    {
        json_t *md = json_object_get(l, "metadata");
        if (strcmp(json_string_value(json_object_get(md, "name")), "dependency") == 0 &&
            strcmp(json_string_value(json_object_get(md, "to")), "healthy") == 0)
            to_healthy++;
    }
    json_decref(changes);
    assert_int_equal(to_healthy, 1);
    size_t len;
    char *log = read_log_raw(&target, &len);
    assert_null(strstr(log, "secret"));
    free(log);
}

static void a_burst_of_probes_makes_no_dependency_traffic(void **state)
{
    (void)state;
    int before = atomic_load(&dependency_hits);
    double t0 = now_ms();
    CURL *c = curl_easy_init();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", target.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    fclose(devnull);
    double seconds = (now_ms() - t0) / 1e3;
    int hits = atomic_load(&dependency_hits) - before;
    /* Only the check's own schedule reaches the dependency: one per interval. */
    int allowed = (int)(seconds * 1000 / INTERVAL_MS) + 2;
    if (hits > allowed)
        fail_msg("%d dependency requests during %.2f s of probes (at most %d)", hits, seconds,
                 allowed);
}

static void critical_checks_decide_readiness(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&target, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200); /* the critical check is fine; optional ones are not */
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "healthy");
    assert_int_equal(json_array_size(json_object_get(r.json, "dependencies")), 1);
    char cc[64];
    assert_string_equal(resp_header(&r, "Cache-Control", cc, sizeof cc), "no-store");
    http_resp_free(&r);
    assert_int_equal(http(&target, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "degraded");
    assert_string_equal(json_string_value(json_object_get(r.json, "version")), "1.2.3");
    assert_true(json_is_integer(json_object_get(r.json, "uptime")));
    http_resp_free(&r);

    atomic_store(&custom_health, O11Y_HEALTH_UNHEALTHY);
    usleep((TIMEOUT_MS + 2 * INTERVAL_MS) * 1000);
    assert_int_equal(http(&target, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "unhealthy");
    assert_string_equal(dep_field(r.json, "queue", "error"), "queue depth over limit \"\n\x01");
    http_resp_free(&r);
    assert_int_equal(http(&target, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    http_resp_free(&r);
    assert_int_equal(http(&target, "GET", "/health/live", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"healthy\"}");
    http_resp_free(&r);

    /* A dependency reporting itself degraded degrades the service, never more. */
    atomic_store(&custom_health, O11Y_HEALTH_DEGRADED);
    usleep((TIMEOUT_MS + 2 * INTERVAL_MS) * 1000);
    assert_int_equal(http(&target, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "degraded");
    http_resp_free(&r);
    atomic_store(&custom_health, O11Y_HEALTH_HEALTHY);
}

static void health_json_on_request(void **state)
{
    (void)state;
    const char *const h[] = {"Accept: application/health+json", NULL};
    http_resp r;
    assert_int_equal(http(&target, "GET", "/health", h, NULL, 0, &r), 0);
    char ct[64];
    assert_string_equal(resp_header(&r, "Content-Type", ct, sizeof ct), "application/health+json");
    const char *st = json_string_value(json_object_get(r.json, "status"));
    assert_true(strcmp(st, "warn") == 0 || strcmp(st, "fail") == 0);
    json_t *silent = json_array_get(
        json_object_get(json_object_get(r.json, "checks"), "silent:responseTime"), 0);
    assert_string_equal(json_string_value(json_object_get(silent, "status")), "fail");
    assert_string_equal(json_string_value(json_object_get(silent, "output")), "timeout");
    http_resp_free(&r);
}

static void dependency_metrics_are_exported(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&target, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr(r.body, "o11y_dependency_up{name=\"silent\"} 0"));
    assert_non_null(strstr(r.body, "o11y_dependency_up{name=\"dependency\"} 1"));
    assert_non_null(strstr(r.body, "o11y_dependency_check_duration_seconds_count{name=\"deaf\"}"));
    http_resp_free(&r);
}

static o11y_health_status slow_first(void *ctx, char *message, size_t len)
{
    (void)ctx, (void)message, (void)len;
    usleep(400000);
    return O11Y_HEALTH_HEALTHY;
}

static void not_ready_before_the_first_round(void **state)
{
    (void)state;
    /* A second service, whose one critical check takes 400 ms to answer the first time. */
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "slow-start";
    cfg.logger = o11y_service_logger(svc);
    cfg.metrics = o11y_service_metrics(svc);
    o11y_service *slow;
    assert_int_equal(o11y_service_create(&cfg, &slow), O11Y_OK);
    o11y_health_check_opts o = {.name = "warmup", .critical = true, .timeout_ms = 1000};
    assert_int_equal(o11y_health_add_custom(o11y_service_health(slow), &o, slow_first, NULL),
                     O11Y_OK);
    o11y_mhd_config mc;
    o11y_mhd_config_init(&mc);
    o11y_mhd_server *srv;
    assert_int_equal(o11y_mhd_start(slow, &mc, &srv), O11Y_OK);
    gs_proc p = {.port = o11y_mhd_port(srv)};
    http_resp r;
    assert_int_equal(http(&p, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "not checked yet"));
    http_resp_free(&r);
    usleep(700000);
    assert_int_equal(http(&p, "GET", "/health/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    o11y_mhd_stop(srv);
    o11y_service_destroy(slow);
    o11y_logger_set_default(o11y_service_logger(svc)); /* the second service took the defaults */
    o11y_metrics_set_default(o11y_service_metrics(svc));
}

static void bad_checks_are_refused(void **state)
{
    (void)state;
    o11y_health *h = o11y_service_health(svc);
    o11y_health_check_opts o = {.name = "bad name"};
    assert_int_equal(o11y_health_add_tcp(h, &o, "127.0.0.1", 1), O11Y_EINVAL);
    o.name = "queue";
    assert_int_equal(o11y_health_add_tcp(h, &o, "127.0.0.1", 1), O11Y_ECONFLICT);
    o.name = "ftp";
    assert_int_equal(o11y_health_add_http(h, &o, "ftp://127.0.0.1/"), O11Y_EINVAL);
    assert_int_equal(o11y_health_add_tcp(h, &o, "127.0.0.1", 0), O11Y_EINVAL);
    assert_int_equal(o11y_health_add_custom(h, &o, NULL, NULL), O11Y_EINVAL);
    assert_int_equal(o11y_health_add_http(h, NULL, "http://x/"), O11Y_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hanging_dependencies_never_hang_the_endpoint),
        cmocka_unit_test(garbage_from_a_custom_check_is_contained),
        cmocka_unit_test(http_dependency_500_then_200),
        cmocka_unit_test(a_burst_of_probes_makes_no_dependency_traffic),
        cmocka_unit_test(critical_checks_decide_readiness),
        cmocka_unit_test(health_json_on_request),
        cmocka_unit_test(dependency_metrics_are_exported),
        cmocka_unit_test(not_ready_before_the_first_round),
        cmocka_unit_test(bad_checks_are_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
