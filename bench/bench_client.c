/* bench_client — what the client kit costs per call, next to plain libcurl doing the same
 * request on the same kept-alive loopback connection, in interleaved rounds; then many calls in
 * parallel: threads sharing one kit client (a pooled handle per call), threads each with a
 * plain handle, and one thread driving the same number of transfers with curl multi.
 *
 *     bench_client [CALLS_PER_ROUND]   (default 20000)
 *
 * The server is libmicrohttpd in this process answering a small JSON body; its cost is in every
 * figure alike, so the ratio shows the kit's own work: trace headers and span ids, the header
 * callback, the body buffer, the histogram and the log line. */
#include <curl/curl.h>
#include <microhttpd.h>
#include <o11y/client.h>
#include <o11y/log.h>
#include <o11y/metrics.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { THREADS = 4 };

static const char answer[] = "{\"id\":\"proj_1\",\"name\":\"bench\"}";

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **req)
{
    (void)cls, (void)url, (void)method, (void)version, (void)data, (void)size, (void)req;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof answer - 1, (void *)answer, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t s, size_t n, void *ctx)
{
    (void)p, (void)ctx;
    return s * n;
}

static char url[64], base[64];

static void plain_setup(CURL *h)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
}

static double plain_round(int n)
{
    CURL *h = curl_easy_init();
    plain_setup(h);
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        if (curl_easy_perform(h) != CURLE_OK)
            abort();
    double t = now_s() - t0;
    curl_easy_cleanup(h);
    return t;
}

static double kit_round(o11y_client *c, int n)
{
    o11y_client_request rq = {.method = "GET", .path = "/projects/proj_1"};
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        o11y_client_response r;
        if (o11y_client_call(c, &rq, &r) != O11Y_OK)
            abort();
        o11y_client_response_clear(&r);
    }
    return now_s() - t0;
}

typedef struct job {
    o11y_client *c; /* NULL: plain libcurl */
    int n;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    if (j->c)
        kit_round(j->c, j->n);
    else
        plain_round(j->n);
    return NULL;
}

static double parallel(o11y_client *c, int n)
{
    pthread_t t[THREADS];
    job j = {c, n / THREADS};
    double t0 = now_s();
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, &j);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    return now_s() - t0;
}

/* One thread, THREADS transfers at a time through curl multi, each handle reused. */
static double multi_round(int n)
{
    CURLM *m = curl_multi_init();
    CURL *h[THREADS];
    int left = n, running = 0;
    for (int i = 0; i < THREADS; i++) {
        h[i] = curl_easy_init();
        plain_setup(h[i]);
    }
    double t0 = now_s();
    for (int i = 0; i < THREADS && left > 0; i++, left--)
        curl_multi_add_handle(m, h[i]);
    do {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int q;
        while ((msg = curl_multi_info_read(m, &q))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            curl_multi_remove_handle(m, e);
            if (left > 0) {
                left--;
                curl_multi_add_handle(m, e);
                running++;
            }
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    } while (running || left > 0);
    double t = now_s() - t0;
    for (int i = 0; i < THREADS; i++)
        curl_easy_cleanup(h[i]);
    curl_multi_cleanup(m);
    return t;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    if (n < 100)
        n = 100;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, handler,
                         NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)THREADS, MHD_OPTION_END);
    if (!d)
        return 1;
    int port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/projects/proj_1", port);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    /* The kit as a service uses it: a histogram, and a line per call to a log file. */
    o11y_metrics *m = NULL;
    o11y_log_config lc;
    o11y_log_config_init(&lc);
    lc.service_name = "bench";
    lc.file_path = "/dev/null";
    lc.format = O11Y_LOG_FORMAT_JSON;
    o11y_logger *lg = NULL;
    if (o11y_metrics_create(&m) != O11Y_OK || o11y_logger_create(&lc, &lg) != O11Y_OK)
        return 1;
    o11y_client_config cfg;
    o11y_client_config_init(&cfg);
    cfg.base_url = base;
    cfg.metrics = m;
    cfg.logger = lg;
    o11y_client *c = NULL;
    if (o11y_client_create(&cfg, &c) != O11Y_OK)
        return 1;
    plain_round(n / 10); /* warm both paths */
    kit_round(c, n / 10);
    double plain[3], kit[3];
    for (int r = 0; r < 3; r++) {
        plain[r] = plain_round(n);
        kit[r] = kit_round(c, n);
    }
    qsort(plain, 3, sizeof plain[0], cmp);
    qsort(kit, 3, sizeof kit[0], cmp);
    printf("one thread, keep-alive loopback, %d calls per round, medians of 3 interleaved rounds\n",
           n);
    printf("  plain libcurl (easy handle reused): %7.1f us/call  %8.0f calls/s\n",
           plain[1] * 1e6 / n, n / plain[1]);
    printf("  o11y client kit (o11y_client_call): %7.1f us/call  %8.0f calls/s\n", kit[1] * 1e6 / n,
           n / kit[1]);
    printf("  kit / plain throughput: %.3f (kit adds %.1f us per call)\n", plain[1] / kit[1],
           (kit[1] - plain[1]) * 1e6 / n);
    double par_kit = parallel(c, n), par_plain = parallel(NULL, n), multi = multi_round(n);
    printf("%d calls in parallel (%d at a time)\n", n, THREADS);
    printf("  %d threads, one kit client (pooled handles): %8.0f calls/s\n", THREADS, n / par_kit);
    printf("  %d threads, a plain handle each:            %8.0f calls/s\n", THREADS, n / par_plain);
    printf("  1 thread, curl multi with %d handles:        %8.0f calls/s\n", THREADS, n / multi);
    o11y_client_destroy(c);
    o11y_logger_destroy(lg);
    o11y_metrics_destroy(m);
    MHD_stop_daemon(d);
    curl_global_cleanup();
    return 0;
}
