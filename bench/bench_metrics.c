/* bench_metrics — recording costs side by side, 1 and 2 threads: histogram observe on a
 * resolved handle, counter increment, lookup by label values + observe; the floor (a plain
 * atomic increment) and the foil (a mutex-protected histogram of the same buckets). Then the
 * render time of /metrics with 1,000 and 10,000 series. Figures only. */
#include "metrics/metrics_internal.h"
#include "o11y/error.h"
#include "o11y/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OPS = 20000000 };

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct job {
    const char *name;
    void (*run)(void *ctx, long n);
    void *ctx;
} job;

typedef struct thread_arg {
    const job *j;
    long n;
    pthread_barrier_t *go;
} thread_arg;

static void *worker(void *arg)
{
    thread_arg *t = arg;
    pthread_barrier_wait(t->go);
    t->j->run(t->j->ctx, t->n);
    return NULL;
}

/* ns per operation per thread with `threads` threads running the same job at once. */
static double measure(const job *j, int threads)
{
    pthread_t t[2];
    thread_arg a[2];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    long n = OPS / threads;
    for (int i = 0; i < threads; i++) {
        a[i] = (thread_arg){j, n, &go};
        pthread_create(&t[i], NULL, worker, &a[i]);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = now_ns();
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    int64_t t1 = now_ns();
    pthread_barrier_destroy(&go);
    return (double)(t1 - t0) / (double)n;
}

static double value_for(long i)
{
    return (double)(i & 1023) * 1e-4; /* 0 .. 0.1 s */
}

__attribute__((noinline)) void bench_observe(o11y_series *s, double v)
{
    o11y_histogram_observe(s, v);
}

static void run_observe(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        bench_observe(ctx, value_for(i));
}

static void run_counter(void *ctx, long n)
{
    for (long i = 0; i < n; i++)
        o11y_counter_inc(ctx);
}

static void run_lookup(void *ctx, long n)
{
    static const char *const values[] = {"GET", "/projects/{projectId}"};
    for (long i = 0; i < n; i++) {
        o11y_series *s;
        if (o11y_metric_series(ctx, values, &s) == O11Y_OK)
            o11y_histogram_observe(s, value_for(i));
    }
}

static _Atomic uint64_t plain_counter;
static void run_atomic(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++)
        atomic_fetch_add_explicit(&plain_counter, 1, memory_order_relaxed);
}

/* The foil: one histogram of the same buckets behind a mutex. */
static struct {
    pthread_mutex_t lock;
    uint64_t count, le[16], buckets[O11Y__N_BUCKETS];
    double sum;
} locked = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void run_mutex(void *ctx, long n)
{
    (void)ctx;
    size_t nb;
    const double *b = o11y_metrics_default_buckets(&nb);
    for (long i = 0; i < n; i++) {
        double v = value_for(i);
        size_t k = 0;
        while (k < nb && v > b[k])
            k++;
        uint64_t u = (uint64_t)(v * 1e9);
        pthread_mutex_lock(&locked.lock);
        locked.count++;
        locked.sum += v;
        locked.le[k]++;
        locked.buckets[u % O11Y__N_BUCKETS]++;
        pthread_mutex_unlock(&locked.lock);
    }
}

static void render_bench(int series)
{
    o11y_metrics *m;
    if (o11y_metrics_create(&m) != O11Y_OK)
        return;
    static const char *const labels[] = {"method", "route"};
    o11y_metric_opts o = {.name = "http_server_request_duration_seconds",
                          .help = "Latency",
                          .type = O11Y_HISTOGRAM,
                          .label_names = labels,
                          .n_labels = 2,
                          .max_series = (size_t)series};
    o11y_metric *h;
    if (o11y_metric_register(m, &o, &h) != O11Y_OK)
        return;
    for (int i = 0; i < series; i++) {
        char route[64];
        snprintf(route, sizeof route, "/route/%d", i);
        const char *values[] = {"GET", route};
        o11y_series *s;
        if (o11y_metric_series(h, values, &s) == O11Y_OK)
            for (int k = 0; k < 20; k++)
                o11y_histogram_observe(s, value_for(k * 37));
    }
    size_t len = 0;
    double best = 1e18;
    size_t lines = 0;
    for (int round = 0; round < 5; round++) {
        int64_t t0 = now_ns();
        char *text = o11y_metrics_render(m, O11Y_EXPO_PROMETHEUS, &len);
        int64_t t1 = now_ns();
        if ((double)(t1 - t0) < best)
            best = (double)(t1 - t0);
        lines = 0;
        for (size_t i = 0; text && i < len; i++)
            lines += text[i] == '\n';
        o11y_free(text);
    }
    printf("render %5d histogram series: %zu lines, %.0f KB in %.2f ms = %.0f ns per line\n",
           series, lines, (double)len / 1024, best / 1e6, best / (double)lines);
    o11y_metrics_destroy(m);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--callgrind") == 0) {
        o11y_metrics *m;
        o11y_metric_opts o = {.name = "x_seconds", .help = "h", .type = O11Y_HISTOGRAM};
        o11y_metric *h;
        o11y_series *s;
        if (o11y_metrics_create(&m) || o11y_metric_register(m, &o, &h) ||
            o11y_metric_series(h, NULL, &s))
            return 1;
        for (long i = 0; i < 100000; i++)
            bench_observe(s, value_for(i));
        o11y_metrics_destroy(m);
        return 0;
    }
    o11y_metrics *m;
    if (o11y_metrics_create(&m) != O11Y_OK)
        return 1;
    static const char *const labels[] = {"method", "route"};
    o11y_metric_opts ho = {.name = "http_server_request_duration_seconds",
                           .help = "Latency",
                           .type = O11Y_HISTOGRAM,
                           .label_names = labels,
                           .n_labels = 2};
    o11y_metric_opts co = {.name = "requests_total", .help = "Requests", .type = O11Y_COUNTER};
    o11y_metric *h, *c;
    o11y_series *hs, *cs;
    static const char *const values[] = {"GET", "/projects/{projectId}"};
    if (o11y_metric_register(m, &ho, &h) || o11y_metric_register(m, &co, &c) ||
        o11y_metric_series(h, values, &hs) || o11y_metric_series(c, NULL, &cs))
        return 1;
    const job jobs[] = {
        {"histogram observe, resolved handle", run_observe, hs},
        {"counter increment, resolved handle", run_counter, cs},
        {"lookup by label values + observe", run_lookup, h},
        {"plain atomic increment (the floor)", run_atomic, NULL},
        {"mutex-protected histogram (the foil)", run_mutex, NULL},
    };
    printf("%-40s %12s %14s\n", "ns per operation", "1 thread", "2 threads, each");
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++)
        printf("%-40s %12.1f %14.1f\n", jobs[i].name, measure(&jobs[i], 1), measure(&jobs[i], 2));
    o11y_series_stats st;
    (void)o11y_series_read(hs, O11Y_WINDOW_LIFETIME, &st);
    printf("(observations recorded: %llu, none lost)\n", (unsigned long long)st.count);
    o11y_metrics_destroy(m);
    render_bench(1000);
    render_bench(10000);
    return 0;
}
