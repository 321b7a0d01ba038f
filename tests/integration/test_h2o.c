/* Integration tests: generation-service on the h2o adapter over HTTP/2 (CONTRACT section 12), with
 * libcurl as the client: h2c with prior knowledge, h2 over TLS chosen by ALPN (a self-signed
 * certificate made here with openssl), HTTP/1.1 over the same TLS port, the contract's headers in
 * lowercase, the envelope, and many streams (requests and SSE subscribers) on one connection. The
 * HTTP/1.1 behaviour is the other integration tests, run again with GS_SERVER=h2o. */
#include "harness.h"

#include <curl/curl.h>
#include <sqlite3.h>
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

typedef struct got {
    char headers[8192];
    size_t hlen;
    char *body;
    size_t blen;
} got;

static size_t on_header(char *d, size_t s, size_t n, void *ctx)
{
    got *g = ctx;
    size_t len = s * n;
    if (g->hlen + len < sizeof g->headers) {
        memcpy(g->headers + g->hlen, d, len);
        g->hlen += len;
        g->headers[g->hlen] = '\0';
    }
    return len;
}

static size_t on_body(char *d, size_t s, size_t n, void *ctx)
{
    got *g = ctx;
    size_t len = s * n;
    char *p = realloc(g->body, g->blen + len + 1);
    if (!p)
        return 0;
    memcpy(p + g->blen, d, len);
    g->body = p;
    g->blen += len;
    g->body[g->blen] = '\0';
    return len;
}

static CURL *easy(const char *url, long version, got *g, const char *cafile)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, version);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (cafile) {
        curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L); /* the certificate names "localhost" */
    }
    return c;
}

/* Every contract header, named in lowercase as HTTP/2 requires. */
static void expect_contract_headers_lowercase(const got *g)
{
    assert_non_null(strstr(g->headers, "\r\nx-trace-id: "));
    assert_non_null(strstr(g->headers, "\r\nx-service: generation-service"));
    assert_non_null(strstr(g->headers, "\r\nx-processing-time: "));
    assert_non_null(strstr(g->headers, "\r\ncontent-type: application/json"));
    assert_null(strstr(g->headers, "X-Trace-Id"));
    assert_null(strstr(g->headers, "\r\nconnection:"));
}

static char cert_dir[] = "/tmp/o11y-tls-XXXXXX";
static char cert[128], key[128];

/* A self-signed certificate for the TLS tests, made with openssl. */
static int make_cert(void **state)
{
    (void)state;
    if (!mkdtemp(cert_dir))
        return -1;
    snprintf(cert, sizeof cert, "%s/cert.pem", cert_dir);
    snprintf(key, sizeof key, "%s/key.pem", cert_dir);
    const char *gen[] = {"/usr/bin/openssl",
                         "req",
                         "-x509",
                         "-newkey",
                         "ec",
                         "-pkeyopt",
                         "ec_paramgen_curve:prime256v1",
                         "-nodes",
                         "-keyout",
                         key,
                         "-out",
                         cert,
                         "-days",
                         "1",
                         "-subj",
                         "/CN=localhost",
                         NULL};
    char *out, *err;
    int rc = run_program(gen, cert_dir, &out, &err);
    free(out);
    free(err);
    return rc == 0 ? 0 : -1;
}

static int remove_cert(void **state)
{
    (void)state;
    unlink(cert);
    unlink(key);
    char p[160];
    snprintf(p, sizeof p, "%s/run.out", cert_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/run.err", cert_dir);
    unlink(p);
    rmdir(cert_dir);
    return 0;
}

static void h2c_with_prior_knowledge(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--server", "h2o", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/projects/proj_00000000000000000000000000000000",
             p.port);
    got g = {0};
    CURL *c = easy(url, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, &g, NULL);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long version = 0, status = 0;
    curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &version);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(version, CURL_HTTP_VERSION_2_0);
    assert_int_equal(status, 404);
    expect_contract_headers_lowercase(&g);
    json_t *j = json_loads(g.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "PROJECT_NOT_FOUND");
    json_decref(j);
    free(g.body);
    curl_easy_cleanup(c);
    /* 100 concurrent streams on one cleartext connection (nghttp2's h2load) */
    char target[96], *out, *err;
    snprintf(target, sizeof target, "http://127.0.0.1:%d/health/live", p.port);
    const char *load[] = {"/usr/bin/h2load", "-n", "1000", "-c", "1", "-m", "100", target, NULL};
    assert_int_equal(run_program(load, p.dir, &out, &err), 0);
    assert_non_null(strstr(out, "1000 succeeded, 0 failed, 0 errored"));
    assert_non_null(strstr(out, "1000 2xx"));
    free(out);
    free(err);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* POST body to an https URL of the service (the harness speaks plain HTTP); the answer's JSON. */
static json_t *post_tls(const char *url, const char *body)
{
    got g = {0};
    CURL *c = easy(url, CURL_HTTP_VERSION_2TLS, &g, cert);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    json_t *j = json_loads(g.body, 0, NULL);
    assert_non_null(j);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(g.body);
    return j;
}

/* Many requests and ten SSE subscribers of one generation as streams of one TLS connection, as
 * a browser multiplexes them (over HTTP/1.1 a browser opens at most six connections). */
static void many_streams_on_one_connection(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--server", "h2o",       "--step-ms", "100", "--tls-cert",
                          cert,       "--tls-key", key,         NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char url0[128], body[256], gen[64];
    snprintf(url0, sizeof url0, "https://127.0.0.1:%d/projects", p.port);
    json_t *pj = post_tls(url0, "{\"name\":\"h2\"}");
    const char *project = json_string_value(json_object_get(pj, "id"));
    snprintf(url0, sizeof url0, "https://127.0.0.1:%d/projects/%s/episodes", p.port, project);
    json_t *ej = post_tls(url0, "{\"number\":1,\"title\":\"t\"}");
    snprintf(body, sizeof body, "{\"projectId\":\"%s\",\"episodeId\":\"%s\",\"prompt\":\"many\"}",
             project, json_string_value(json_object_get(ej, "id")));
    snprintf(url0, sizeof url0, "https://127.0.0.1:%d/generations", p.port);
    json_t *gj = post_tls(url0, body);
    snprintf(gen, sizeof gen, "%s", json_string_value(json_object_get(gj, "id")));
    json_decref(pj);
    json_decref(ej);
    json_decref(gj);
    enum { N = 30, SSE = 10 };
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    got g[N];
    CURL *e[N];
    memset(g, 0, sizeof g);
    for (int i = 0; i < N; i++) {
        char url[160];
        if (i < SSE)
            snprintf(url, sizeof url, "https://127.0.0.1:%d/generations/%s/events", p.port, gen);
        else
            snprintf(url, sizeof url, "https://127.0.0.1:%d/health/live", p.port);
        e[i] = easy(url, CURL_HTTP_VERSION_2TLS, &g[i], cert);
        curl_easy_setopt(e[i], CURLOPT_PIPEWAIT, 1L);
        curl_multi_add_handle(m, e[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)))
            if (msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK)
                fprintf(stderr, "transfer failed: %s\n", curl_easy_strerror(msg->data.result));
        if (running)
            curl_multi_poll(m, NULL, 0, 200, NULL);
    }
    long connects = 0;
    for (int i = 0; i < N; i++) {
        long status = 0, version = 0, c = 0;
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(e[i], CURLINFO_HTTP_VERSION, &version);
        curl_easy_getinfo(e[i], CURLINFO_NUM_CONNECTS, &c);
        connects += c;
        assert_int_equal(status, 200);
        assert_int_equal(version, CURL_HTTP_VERSION_2_0);
        if (i < SSE) { /* every event, in order, to each subscriber */
            const char *ids[] = {"id: 1\n", "id: 2\n", "id: 3\n", "id: 4\n", "id: 5\n"};
            const char *at = g[i].body;
            for (size_t k = 0; k < 5; k++) {
                at = strstr(at, ids[k]);
                assert_non_null(at);
            }
            assert_non_null(strstr(g[i].body, "event: completed"));
        }
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        free(g[i].body);
    }
    curl_multi_cleanup(m);
    assert_int_equal(connects, 1); /* one connection carried them all */
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* 100 SSE subscribers of one generation as 100 streams of one h2c connection (h2load): each
 * stream carries the whole event stream, byte for byte the one a single subscriber gets. */
static void a_hundred_subscribers_on_one_connection(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--server", "h2o", "--step-ms", "400", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char project[64], episode[64];
    create_project(&p, project);
    create_episode(&p, project, 1, episode);
    http_resp r;
    assert_int_equal(post_generation(&p, project, episode, "hundred", NULL, &r), 0);
    assert_int_equal(r.status, 202);
    char target[160];
    snprintf(target, sizeof target, "http://127.0.0.1:%d/generations/%s/events", p.port,
             json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    const char *load[] = {"/usr/bin/h2load", "-n", "100", "-c", "1", "-m", "100", target, NULL};
    char *out, *err;
    assert_int_equal(run_program(load, p.dir, &out, &err), 0);
    assert_non_null(strstr(out, "100 succeeded, 0 failed, 0 errored"));
    /* the data of all streams: 100 times one subscriber's */
    unsigned long long data = 0;
    const char *traffic = strstr(out, "traffic:");
    assert_non_null(traffic);
    const char *d = strstr(traffic, "data");
    assert_non_null(d);
    while (d > traffic && d[-1] != '(')
        d--;
    data = strtoull(d, NULL, 10);
    free(out);
    free(err);
    got one = {0};
    CURL *c = easy(target, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, &one, NULL);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    assert_non_null(strstr(one.body, "event: completed"));
    assert_int_equal(data, 100 * (unsigned long long)one.blen);
    free(one.body);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds a GET of path takes (status must be want). */
static double timed_get(const gs_proc *p, const char *path, int want)
{
    double t0 = now_s();
    http_resp r;
    assert_int_equal(http(p, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, want);
    http_resp_free(&r);
    return now_s() - t0;
}

/* Every handler thread waits on the database (a write lock held here): routes flagged
 * O11Y_ROUTE_NONBLOCKING (health, metrics, the OpenAPI document) are answered on the loop at
 * once, while a route that reads the database waits its turn. */
static void nonblocking_routes_stay_on_the_loop(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--server", "h2o", "--threads", "1", NULL}; /* 4 handler threads */
    assert_int_equal(gs_start(&p, args), 0);
    char project[64];
    create_project(&p, project); /* the schema exists */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p.db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    enum { WRITERS = 6 };
    int fds[WRITERS];
    static const char post[] = "POST /projects HTTP/1.1\r\nHost: t\r\nContent-Type: "
                               "application/json\r\nContent-Length: 12\r\n\r\n{\"name\":\"x\"}";
    for (int i = 0; i < WRITERS; i++) {
        fds[i] = raw_connect(p.port);
        assert_true(fds[i] >= 0);
        assert_int_equal(send(fds[i], post, sizeof post - 1, MSG_NOSIGNAL),
                         (ssize_t)sizeof post - 1);
    }
    usleep(300000); /* the four handler threads now wait for the lock (2 s busy timeout) */
    double t0 = now_s();
    assert_true(timed_get(&p, "/health/live", 200) < 0.5);
    assert_true(timed_get(&p, "/openapi.json", 200) < 0.5);
    assert_true(timed_get(&p, "/metrics", 200) < 0.5);
    double waited = now_s() - t0;
    /* A database route queues behind the writers: it cannot answer before the lock's wait
     * ends (the proof that the three above did not go through the pool). */
    char path[128];
    snprintf(path, sizeof path, "/projects/%s", project);
    double db_route = timed_get(&p, path, 200);
    assert_true(db_route > 0.8 - waited);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    for (int i = 0; i < WRITERS; i++) {
        size_t len;
        free(raw_read(fds[i], 5000, &len));
        close(fds[i]);
    }
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void h2_over_tls_by_alpn(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--server", "h2o", "--tls-cert", cert, "--tls-key", key, NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/health/live", p.port);
    got g = {0};
    CURL *c = easy(url, CURL_HTTP_VERSION_2TLS, &g, cert);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long version = 0, status = 0;
    curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &version);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(version, CURL_HTTP_VERSION_2_0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(g.headers, "\r\nx-trace-id: "));
    free(g.body);
    curl_easy_cleanup(c);
    /* HTTP/1.1 on the same port, by ALPN */
    got g1 = {0};
    c = easy(url, CURL_HTTP_VERSION_1_1, &g1, cert);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &version);
    assert_int_equal(version, CURL_HTTP_VERSION_1_1);
    assert_non_null(strcasestr(g1.headers, "X-Trace-Id: "));
    free(g1.body);
    curl_easy_cleanup(c);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
    /* one file alone, or a key that is not the certificate's: the service refuses to start */
    const char *half[] = {"--server", "h2o", "--tls-cert", cert, NULL};
    assert_int_not_equal(gs_start(&p, half), 0);
    gs_cleanup(&p);
    const char *swapped[] = {"--server", "h2o", "--tls-cert", key, "--tls-key", cert, NULL};
    assert_int_not_equal(gs_start(&p, swapped), 0);
    gs_cleanup(&p);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(h2c_with_prior_knowledge),
        cmocka_unit_test(many_streams_on_one_connection),
        cmocka_unit_test(a_hundred_subscribers_on_one_connection),
        cmocka_unit_test(h2_over_tls_by_alpn),
        cmocka_unit_test(nonblocking_routes_stay_on_the_loop),
    };
    int rc = cmocka_run_group_tests(tests, make_cert, remove_cert);
    curl_global_cleanup();
    return rc;
}
