/* Integration tests: generation-service's /metrics and /metrics/summary after known traffic,
 * checked by promtool and scraped by a real Prometheus server on a free loopback port. */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

enum { PROJECT_GETS = 25 };

static gs_proc svc;
static char project_a[64], project_b[64];

static int wait_until_recorded(void);

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (gs_start(&svc, NULL) != 0)
        return -1;
    /* Known traffic: 25 reads of missing projects (404), 2 creates (201), 1 unmatched (404). */
    for (int i = 0; i < PROJECT_GETS; i++) {
        char path[64];
        snprintf(path, sizeof path, "/projects/missing-%d", i);
        http_resp r;
        if (http(&svc, "GET", path, NULL, NULL, 0, &r) != 0 || r.status != 404)
            return -1;
        http_resp_free(&r);
    }
    create_project(&svc, project_a);
    create_project(&svc, project_b);
    static const char *const ct[] = {"Content-Type: application/json", NULL};
    for (int i = 1; i <= 4; i++) {
        char path[128], body[64];
        snprintf(path, sizeof path, "/projects/%s/episodes", i <= 3 ? project_a : project_b);
        int n = snprintf(body, sizeof body, "{\"number\":%d,\"title\":\"t\"}", i);
        http_resp e;
        if (http(&svc, "POST", path, ct, body, (size_t)n, &e) != 0 || e.status != 201)
            return -1;
        http_resp_free(&e);
    }
    http_resp r;
    if (http(&svc, "GET", "/no/such/route", NULL, NULL, 0, &r) != 0)
        return -1;
    http_resp_free(&r);
    return wait_until_recorded();
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = gs_stop(&svc);
    gs_cleanup(&svc);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* Sum of the samples of name whose label text contains every needle. */
static double sample_sum(const char *text, const char *name, const char *needle)
{
    double total = 0;
    size_t n = strlen(name);
    char line[4096];
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len < sizeof line) {
            memcpy(line, p, len);
            line[len] = '\0';
            const char *space = strrchr(line, ' ');
            if (strncmp(line, name, n) == 0 && (line[n] == '{' || line[n] == ' ') && space &&
                (!needle || strstr(line, needle)))
                total += strtod(space + 1, NULL);
        }
        p = eol ? eol + 1 : NULL;
    }
    return total;
}

/* A request is counted when the server finishes it, which can be just after the client has
 * read the response; so wait (bounded) until the setup traffic shows up in a scrape. */
static int wait_until_recorded(void)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        http_resp r;
        if (http(&svc, "GET", "/metrics", NULL, NULL, 0, &r) != 0)
            return -1;
        int done = sample_sum(r.body, "http_server_requests_total", "route=\"unmatched\"") == 1 &&
                   sample_sum(r.body, "http_server_requests_total",
                              "route=\"/projects/{projectId}/episodes\",status=\"201\"") == 4;
        http_resp_free(&r);
        if (done)
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

static int run_capture(const char *cmd, char *out, size_t len)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    return pclose(p);
}

static void scrape_is_valid_prometheus_text(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&svc, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char ct[128], trace[128];
    assert_string_equal(resp_header(&r, "Content-Type", ct, sizeof ct),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(resp_header(&r, "X-Trace-Id", trace, sizeof trace));
    assert_int_equal(sample_sum(r.body, "http_server_requests_total",
                                "route=\"/projects/{projectId}\",status=\"404\""),
                     PROJECT_GETS);
    assert_int_equal(
        sample_sum(r.body, "http_server_requests_total", "route=\"/projects\",status=\"201\""), 2);
    assert_int_equal(sample_sum(r.body, "http_server_requests_total", "route=\"unmatched\""), 1);
    assert_int_equal(sample_sum(r.body, "http_server_request_duration_seconds_count",
                                "route=\"/projects/{projectId}\""),
                     PROJECT_GETS);
    assert_non_null(
        strstr(r.body, "o11y_build_info{version=\"0.1.0\",service=\"generation-service\"} 1"));
    /* The duration buckets resolve a fast route: they start at 100 µs, and a GET answered from
     * SQLite does not land in the first 5 ms bucket with everything else. */
    assert_non_null(strstr(r.body, "http_server_request_duration_seconds_bucket{method=\"GET\","
                                   "route=\"/projects/{projectId}\",le=\"0.0001\"}"));
    assert_true(sample_sum(r.body, "http_server_request_duration_seconds_bucket",
                           "route=\"/projects/{projectId}\",le=\"0.001\"") > 0);
    static const char *const process[] = {"process_cpu_seconds_total ",
                                          "process_resident_memory_bytes ",
                                          "process_virtual_memory_bytes ",
                                          "process_open_fds ",
                                          "process_max_fds ",
                                          "process_start_time_seconds ",
                                          "process_threads ",
                                          "http_server_active_requests ",
                                          "o11y_log_lines_dropped_total ",
                                          "o11y_metric_series_dropped_total "};
    for (size_t i = 0; i < sizeof process / sizeof process[0]; i++)
        assert_non_null(strstr(r.body, process[i]));
    assert_null(strstr(r.body, "missing-")); /* no raw path ever becomes a label */
    assert_null(strstr(r.body, project_a));  /* nor a project id */
    /* promtool finds nothing to say. */
    char file[160], cmd[256], out[4096];
    snprintf(file, sizeof file, "%s/scrape.prom", svc.dir);
    FILE *f = fopen(file, "w");
    fwrite(r.body, 1, r.body_len, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", file);
    int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0 || out[0])
        fail_msg("promtool: rc %d: %s", rc, out);
    http_resp_free(&r);
}

static void openmetrics_on_request(void **state)
{
    (void)state;
    const char *const h[] = {"Accept: application/openmetrics-text; version=1.0.0", NULL};
    http_resp r;
    assert_int_equal(http(&svc, "GET", "/metrics", h, NULL, 0, &r), 0);
    char ct[128];
    assert_string_equal(resp_header(&r, "Content-Type", ct, sizeof ct),
                        "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert_true(r.body_len > 6 && strcmp(r.body + r.body_len - 6, "# EOF\n") == 0);
    assert_non_null(strstr(r.body, "# TYPE http_server_requests counter\n"));
    http_resp_free(&r);
    /* Exemplars: a request's trace id on its duration bucket, so a slow bucket leads to the
     * request's log lines. Only OpenMetrics carries them. */
    const char *const traced[] = {"X-Trace-Id: exemplar-trace-1", NULL};
    assert_int_equal(http(&svc, "GET", "/stats/episodes", traced, NULL, 0, &r), 0);
    http_resp_free(&r);
    char *line = NULL;
    for (int i = 0; i < 100 && !line; i++) {
        assert_int_equal(http(&svc, "GET", "/metrics", h, NULL, 0, &r), 0);
        char *at = strstr(r.body, "# {trace_id=\"exemplar-trace-1\"} ");
        if (at) {
            char *start = at;
            while (start > r.body && start[-1] != '\n')
                start--;
            line = strndup(start, (size_t)(strchr(at, '\n') - start));
        }
        http_resp_free(&r);
        if (!line)
            usleep(20000);
    }
    assert_non_null(line);
    assert_non_null(strstr(line, "http_server_request_duration_seconds_bucket{"));
    assert_non_null(strstr(line, "route=\"/stats/episodes\""));
    free(line);
    assert_int_equal(http(&svc, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_null(strstr(r.body, "trace_id=")); /* Prometheus text 0.0.4 has no exemplars */
    http_resp_free(&r);
}

static json_t *find_operation(json_t *list, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "operation")), name) == 0)
            return o;
    }
    return NULL;
}

static void summary_per_route_and_operation(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&svc, "GET", "/metrics/summary", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "service")),
                        "generation-service");
    json_t *ops = json_object_get(r.json, "operations");
    json_t *get = find_operation(ops, "GET /projects/{projectId}");
    assert_non_null(get);
    assert_int_equal(json_integer_value(json_object_get(get, "request_count")), PROJECT_GETS);
    assert_int_equal(json_integer_value(json_object_get(get, "client_error_count")), PROJECT_GETS);
    assert_int_equal(json_integer_value(json_object_get(get, "error_count")), 0);
    assert_true(json_real_value(json_object_get(get, "error_rate")) == 0.0);
    double avg = json_real_value(json_object_get(get, "avg_response_time_ms"));
    double p95 = json_real_value(json_object_get(get, "p95_response_time_ms"));
    double p99 = json_real_value(json_object_get(get, "p99_response_time_ms"));
    assert_true(avg > 0 && p95 > 0 && p99 >= p95);
    json_t *w = json_object_get(get, "last_60s");
    assert_int_equal(json_integer_value(json_object_get(w, "request_count")), PROJECT_GETS);
    json_t *unmatched = find_operation(ops, "unmatched");
    assert_non_null(unmatched);
    assert_int_equal(json_integer_value(json_object_get(unmatched, "request_count")), 1);
    json_t *post = find_operation(ops, "POST /projects");
    assert_int_equal(json_integer_value(json_object_get(post, "request_count")), 2);
    http_resp_free(&r);
}

static void episode_statistics_per_day_and_project(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&svc, "GET", "/stats/episodes?days=1", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "days")), 1);
    json_t *by_day = json_object_get(r.json, "byDay");
    assert_int_equal(json_array_size(by_day), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(by_day, 0), "count")), 4);
    json_t *by_project = json_object_get(r.json, "byProject");
    assert_int_equal(json_array_size(by_project), 2);
    size_t i;
    json_t *o;
    json_array_foreach(by_project, i, o)
    {
        const char *p = json_string_value(json_object_get(o, "projectId"));
        assert_int_equal(json_integer_value(json_object_get(o, "count")),
                         strcmp(p, project_a) == 0 ? 3 : 1);
    }
    http_resp_free(&r);
    static const char *const bad[] = {
        "days=0", "days=366", "days=abc", "days=", "days=-1", "days=1.5", "days=99999999999"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char path[64];
        snprintf(path, sizeof path, "/stats/episodes?%s", bad[k]);
        assert_int_equal(http(&svc, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 400);
        assert_string_equal(resp_code(&r), "VALIDATION_FAILED");
        http_resp_free(&r);
    }
    assert_int_equal(http(&svc, "GET", "/stats/episodes", NULL, NULL, 0, &r), 0);
    assert_int_equal(json_integer_value(json_object_get(r.json, "days")), 7);
    http_resp_free(&r);
}

/*=== MARK: a real Prometheus ===*/

static double prom_query(int port, const char *query)
{
    gs_proc p = {.port = port};
    CURL *c = curl_easy_init();
    char *escaped = curl_easy_escape(c, query, 0);
    char path[1024];
    snprintf(path, sizeof path, "/api/v1/query?query=%s", escaped);
    curl_free(escaped);
    curl_easy_cleanup(c);
    http_resp r;
    double v = NAN;
    if (http(&p, "GET", path, NULL, NULL, 0, &r) == 0 && r.json) {
        json_t *result = json_object_get(json_object_get(r.json, "data"), "result");
        json_t *value = json_array_get(json_object_get(json_array_get(result, 0), "value"), 1);
        if (json_is_string(value))
            v = strtod(json_string_value(value), NULL);
    }
    http_resp_free(&r);
    return v;
}

static void prometheus_scrapes_and_answers_promql(void **state)
{
    (void)state;
    if (system("command -v prometheus >/dev/null 2>&1") != 0)
        fail_msg("prometheus is not installed (scripts/deps.sh installs it)");
    int port = harness_free_port();
    assert_true(port > 0);
    char cfg[160], data[160], listen[64], plog[160];
    snprintf(plog, sizeof plog, "%s/prometheus.log", svc.dir);
    snprintf(cfg, sizeof cfg, "%s/prometheus.yml", svc.dir);
    snprintf(data, sizeof data, "%s/tsdb", svc.dir);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: generation-service\n"
            "    static_configs:\n      - targets: ['127.0.0.1:%d']\n",
            svc.port);
    fclose(f);
    char flag_cfg[200], flag_data[200], flag_listen[100];
    snprintf(flag_cfg, sizeof flag_cfg, "--config.file=%s", cfg);
    snprintf(flag_data, sizeof flag_data, "--storage.tsdb.path=%s", data);
    snprintf(flag_listen, sizeof flag_listen, "--web.listen-address=%s", listen);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen(plog, "w", stdout) || !freopen(plog, "a", stderr))
            _exit(126);
        execlp("prometheus", "prometheus", flag_cfg, flag_data, flag_listen, (char *)NULL);
        _exit(127);
    }
    /* Wait for a scrape that saw all the traffic (at most 60 s). */
    const char *q = "sum(http_server_requests_total{route=\"/projects/{projectId}\"})";
    double got = NAN;
    for (int i = 0; i < 600 && !(got == PROJECT_GETS); i++) {
        usleep(100000);
        got = prom_query(port, q);
    }
    double p99 = prom_query(port, "histogram_quantile(0.99, sum by (le) "
                                  "(http_server_request_duration_seconds_bucket"
                                  "{route=\"/projects/{projectId}\"}))");
    double up = prom_query(port, "up{job=\"generation-service\"}");
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    if (!(got == PROJECT_GETS)) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "tail -n 20 %s >&2", plog);
        if (system(cmd) != 0)
            fprintf(stderr, "no prometheus log\n");
        fail_msg("prometheus answered %g, want %d", got, PROJECT_GETS);
    }
    assert_true(up == 1);
    /* Within the bucket bounds: above 0, at most the first boundary that holds every request. */
    assert_true(isfinite(p99) && p99 > 0 && p99 <= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scrape_is_valid_prometheus_text),
        cmocka_unit_test(openmetrics_on_request),
        cmocka_unit_test(summary_per_route_and_operation),
        cmocka_unit_test(episode_statistics_per_day_and_project),
        cmocka_unit_test(prometheus_scrapes_and_answers_promql),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
