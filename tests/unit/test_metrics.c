/* Tests for src/metrics: registration rules, exact counts under threads, quantile error against
 * exact samples, windows, and the exposition compared with golden files. */
#include "metrics/metrics_internal.h"
#include "o11y/error.h"
#include "o11y/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static o11y_metrics *reg(void)
{
    o11y_metrics *m;
    assert_int_equal(o11y_metrics_create(&m), O11Y_OK);
    return m;
}

static o11y_status try_register(o11y_metrics *m, const char *name, o11y_metric_type type,
                                const char *const *labels, size_t n)
{
    o11y_metric_opts o = {
        .name = name, .help = "help", .type = type, .label_names = labels, .n_labels = n};
    o11y_metric *out;
    return o11y_metric_register(m, &o, &out);
}

static void registration_rules(void **state)
{
    (void)state;
    o11y_metrics *m = reg();
    static const char *const ok_labels[] = {"method", "route"};
    assert_int_equal(try_register(m, "http_x_total", O11Y_COUNTER, ok_labels, 2), O11Y_OK);
    assert_int_equal(try_register(m, "http_x_total", O11Y_COUNTER, ok_labels, 2), O11Y_ECONFLICT);
    assert_int_equal(try_register(m, "ns:gauge_1", O11Y_GAUGE, NULL, 0), O11Y_OK);
    static const char *const bad_names[] = {"", "1abc", "__reserved", "a-b", "a b", "é"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        assert_int_equal(try_register(m, bad_names[i], O11Y_GAUGE, NULL, 0), O11Y_EINVAL);
    assert_int_equal(try_register(m, "no_suffix", O11Y_COUNTER, NULL, 0), O11Y_EINVAL);
    assert_int_equal(try_register(m, "gauge_total", O11Y_GAUGE, NULL, 0), O11Y_EINVAL);
    assert_int_equal(try_register(m, "h_bucket", O11Y_HISTOGRAM, NULL, 0), O11Y_EINVAL);
    static const char *const le[] = {"le"}, *const quantile[] = {"quantile"},
                             *const dunder[] = {"__x"}, *const colon[] = {"a:b"},
                             *const dup[] = {"a", "a"};
    assert_int_equal(try_register(m, "g1", O11Y_GAUGE, le, 1), O11Y_EINVAL);
    assert_int_equal(try_register(m, "g2", O11Y_GAUGE, quantile, 1), O11Y_EINVAL);
    assert_int_equal(try_register(m, "g3", O11Y_GAUGE, dunder, 1), O11Y_EINVAL);
    assert_int_equal(try_register(m, "g4", O11Y_GAUGE, colon, 1), O11Y_EINVAL);
    assert_int_equal(try_register(m, "g5", O11Y_GAUGE, dup, 2), O11Y_EINVAL);
    o11y_metric_opts no_help = {.name = "g6", .type = O11Y_GAUGE};
    o11y_metric *out;
    assert_int_equal(o11y_metric_register(m, &no_help, &out), O11Y_EINVAL);
    double unsorted[] = {1, 0.5};
    o11y_metric_opts bad_buckets = {
        .name = "h1", .help = "h", .type = O11Y_HISTOGRAM, .buckets = unsorted, .n_buckets = 2};
    assert_int_equal(o11y_metric_register(m, &bad_buckets, &out), O11Y_EINVAL);
    double inf[] = {1, INFINITY};
    bad_buckets.buckets = inf;
    assert_int_equal(o11y_metric_register(m, &bad_buckets, &out), O11Y_EINVAL);
    o11y_metrics_destroy(m);
}

static void series_cap_refuses_and_counts(void **state)
{
    (void)state;
    o11y_metrics *m = reg();
    static const char *const labels[] = {"user"};
    o11y_metric_opts o = {.name = "per_user_total",
                          .help = "h",
                          .type = O11Y_COUNTER,
                          .label_names = labels,
                          .n_labels = 1,
                          .max_series = 10};
    o11y_metric *c;
    assert_int_equal(o11y_metric_register(m, &o, &c), O11Y_OK);
    o11y_series *s;
    for (int i = 0; i < 25; i++) {
        char v[16];
        snprintf(v, sizeof v, "u%d", i);
        const char *values[] = {v};
        assert_int_equal(o11y_metric_series(c, values, &s), i < 10 ? O11Y_OK : O11Y_ELIMIT);
    }
    const char *again[] = {"u3"};
    assert_int_equal(o11y_metric_series(c, again, &s), O11Y_OK); /* existing ones still resolve */
    size_t len;
    char *text = o11y_metrics_render(m, O11Y_EXPO_PROMETHEUS, &len);
    assert_non_null(strstr(text, "o11y_metric_series_dropped_total 15\n"));
    o11y_free(text);
    o11y_metrics_destroy(m);
}

enum { PER_THREAD = 1000000 };

typedef struct worker {
    o11y_series *counter, *hist;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        o11y_counter_inc(w->counter);
        o11y_histogram_observe(w->hist, (double)(i % 1000) / 1e4);
    }
    return NULL;
}

static void counts_are_exact_under_two_threads(void **state)
{
    (void)state;
    o11y_metrics *m = reg();
    o11y_metric_opts co = {.name = "ops_total", .help = "h", .type = O11Y_COUNTER};
    o11y_metric_opts ho = {.name = "op_seconds", .help = "h", .type = O11Y_HISTOGRAM};
    o11y_metric *c, *h;
    assert_int_equal(o11y_metric_register(m, &co, &c), O11Y_OK);
    assert_int_equal(o11y_metric_register(m, &ho, &h), O11Y_OK);
    worker w;
    assert_int_equal(o11y_metric_series(c, NULL, &w.counter), O11Y_OK);
    assert_int_equal(o11y_metric_series(h, NULL, &w.hist), O11Y_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, hammer, &w);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    o11y_series_stats st;
    assert_int_equal(o11y_series_read(w.counter, O11Y_WINDOW_LIFETIME, &st), O11Y_OK);
    assert_int_equal(st.count, 2 * PER_THREAD);
    assert_int_equal(o11y_series_read(w.hist, O11Y_WINDOW_LIFETIME, &st), O11Y_OK);
    assert_int_equal(st.count, 2 * PER_THREAD);
    uint64_t le[O11Y__MAX_LE + 1], count;
    double sum;
    o11y__series_merge(w.hist, &count, &sum, le, NULL);
    uint64_t total = 0;
    for (size_t i = 0; i <= h->n_le; i++)
        total += le[i];
    assert_int_equal(total, 2 * PER_THREAD);
    /* Values 0..0.0999: exactly le 0.005 takes 0..0.005 inclusive = 51 of every 1000. */
    assert_int_equal(le[0], 2 * (PER_THREAD / 1000) * 51);
    o11y_metrics_destroy(m);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng_state = 88172645463325252ull;
static double uniform01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double normal01(void)
{
    double u1 = uniform01(), u2 = uniform01();
    return sqrt(-2 * log(u1 > 0 ? u1 : 1e-12)) * cos(2 * M_PI * u2);
}

enum { SAMPLES = 200000 };

static void check_distribution(const char *what, double (*gen)(int i))
{
    o11y_metrics *m = reg();
    o11y_metric_opts o = {.name = "dist_seconds", .help = "h", .type = O11Y_HISTOGRAM};
    o11y_metric *h;
    o11y_series *s;
    assert_int_equal(o11y_metric_register(m, &o, &h), O11Y_OK);
    assert_int_equal(o11y_metric_series(h, NULL, &s), O11Y_OK);
    double *x = malloc(sizeof(double) * SAMPLES);
    for (int i = 0; i < SAMPLES; i++) {
        x[i] = gen(i);
        o11y_histogram_observe(s, x[i]);
    }
    qsort(x, SAMPLES, sizeof *x, cmp_double);
    static const double qs[] = {0.5, 0.9, 0.95, 0.99, 0.999};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        double exact = x[(size_t)ceil(qs[k] * SAMPLES) - 1];
        double est = o11y_histogram_quantile(s, qs[k]);
        double err = fabs(est - exact) / exact;
        if (err > 0.01)
            fail_msg("%s q%.3f: exact %.9g estimate %.9g error %.4f", what, qs[k], exact, est, err);
    }
    free(x);
    o11y_metrics_destroy(m);
}

static double gen_uniform(int i)
{
    (void)i;
    return 0.001 + uniform01() * 2.0; /* 1 ms .. 2 s */
}

static double gen_lognormal(int i)
{
    (void)i;
    return exp(log(0.05) + 0.8 * normal01()); /* median 50 ms */
}

static double gen_bimodal(int i)
{
    (void)i;
    double v = uniform01() < 0.8 ? 0.002 + 0.0005 * normal01() : 0.8 + 0.1 * normal01();
    return v > 1e-6 ? v : 1e-6;
}

static double gen_outlier(int i)
{
    return i == 777 ? 3600.0 : 0.010 + uniform01() * 0.005;
}

static void quantiles_within_one_percent(void **state)
{
    (void)state;
    check_distribution("uniform", gen_uniform);
    check_distribution("log-normal", gen_lognormal);
    check_distribution("bimodal", gen_bimodal);
    check_distribution("one huge outlier", gen_outlier);
}

static void bad_values_are_dropped_not_recorded(void **state)
{
    (void)state;
    o11y_metrics *m = reg();
    o11y_metric_opts o = {.name = "v_seconds", .help = "h", .type = O11Y_HISTOGRAM};
    o11y_metric *h;
    o11y_series *s;
    assert_int_equal(o11y_metric_register(m, &o, &h), O11Y_OK);
    assert_int_equal(o11y_metric_series(h, NULL, &s), O11Y_OK);
    o11y_histogram_observe(s, -1);
    o11y_histogram_observe(s, NAN);
    o11y_histogram_observe(s, INFINITY);
    o11y_histogram_observe(s, 1e300); /* huge but finite: counted, in the top bucket */
    o11y_series_stats st;
    assert_int_equal(o11y_series_read(s, O11Y_WINDOW_LIFETIME, &st), O11Y_OK);
    assert_int_equal(st.count, 1);
    assert_int_equal(atomic_load(&h->dropped_values), 3);
    assert_int_equal(o11y_series_read(s, O11Y_WINDOW_60S, &st), O11Y_EINVAL); /* no windows */
    o11y_metrics_destroy(m);
}

static void windows_subtract_old_snapshots(void **state)
{
    (void)state;
    o11y_metrics *m = reg();
    o11y_metric_opts o = {
        .name = "w_seconds", .help = "h", .type = O11Y_HISTOGRAM, .flags = O11Y_METRIC_WINDOWS};
    o11y_metric *h;
    o11y_series *s;
    assert_int_equal(o11y_metric_register(m, &o, &h), O11Y_OK);
    assert_int_equal(o11y_metric_series(h, NULL, &s), O11Y_OK);
    for (int i = 0; i < 100; i++)
        o11y_histogram_observe(s, 1.0); /* old traffic, slow */
    /* Seven ticks (70 s) pass: the slow traffic leaves the 60 s window, not the 5 min one. */
    o11y__metrics_tick(m);
    for (int i = 0; i < 6; i++)
        o11y__metrics_tick(m);
    for (int i = 0; i < 50; i++)
        o11y_histogram_observe(s, 0.010);
    o11y_series_stats life, w60, w5;
    assert_int_equal(o11y_series_read(s, O11Y_WINDOW_LIFETIME, &life), O11Y_OK);
    assert_int_equal(o11y_series_read(s, O11Y_WINDOW_60S, &w60), O11Y_OK);
    assert_int_equal(o11y_series_read(s, O11Y_WINDOW_5M, &w5), O11Y_OK);
    assert_int_equal(life.count, 150);
    assert_int_equal(w60.count, 50);
    assert_true(fabs(w60.p99 - 0.010) / 0.010 < 0.01);
    assert_int_equal(w5.count, 150);
    assert_true(fabs(life.p99 - 1.0) < 0.01);
    o11y_metrics_destroy(m);
}

/* Compares text with tests/golden/NAME, or writes it there when O11Y_UPDATE_GOLDEN is set. */
static void golden(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, name);
    if (getenv("O11Y_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        return;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("no golden file %s (run with O11Y_UPDATE_GOLDEN=1)", path);
    static char want[65536];
    size_t n = fread(want, 1, sizeof want - 1, f);
    want[n] = '\0';
    fclose(f);
    if (strcmp(want, text) != 0)
        fail_msg("%s differs:\n--- want\n%s\n--- got\n%s", name, want, text);
}

static o11y_metrics *exposition_fixture(void)
{
    o11y_metrics *m = reg();
    static const char *const labels[] = {"method", "route"};
    o11y_metric_opts co = {.name = "http_requests_total",
                           .help = "Requests \\ with \"quotes\"\nand a newline",
                           .type = O11Y_COUNTER,
                           .label_names = labels,
                           .n_labels = 2};
    double buckets[] = {0.1, 1, 2.5};
    o11y_metric_opts ho = {.name = "latency_seconds",
                           .help = "Latency",
                           .type = O11Y_HISTOGRAM,
                           .label_names = labels,
                           .n_labels = 2,
                           .buckets = buckets,
                           .n_buckets = 3};
    o11y_metric_opts go = {.name = "temperature", .help = "A gauge", .type = O11Y_GAUGE};
    o11y_metric *c, *h, *g;
    assert_int_equal(o11y_metric_register(m, &co, &c), O11Y_OK);
    assert_int_equal(o11y_metric_register(m, &ho, &h), O11Y_OK);
    assert_int_equal(o11y_metric_register(m, &go, &g), O11Y_OK);
    o11y_series *s;
    const char *v1[] = {"GET", "/a"};
    const char *v2[] = {"POST", "/b\\\"\n\xff"}; /* backslash, quote, newline, invalid UTF-8 */
    assert_int_equal(o11y_metric_series(c, v1, &s), O11Y_OK);
    o11y_counter_add(s, 3);
    assert_int_equal(o11y_metric_series(c, v2, &s), O11Y_OK);
    o11y_counter_inc(s);
    assert_int_equal(o11y_metric_series(h, v1, &s), O11Y_OK);
    o11y_histogram_observe(s, 0.05);
    o11y_histogram_observe(s, 0.1); /* le is inclusive */
    o11y_histogram_observe(s, 2);
    o11y_histogram_observe(s, 30);
    assert_int_equal(o11y_metric_series(g, NULL, &s), O11Y_OK);
    o11y_gauge_set(s, -1.5);
    return m;
}

static void exposition_matches_golden_files(void **state)
{
    (void)state;
    o11y_metrics *m = exposition_fixture();
    size_t len;
    char *prom = o11y_metrics_render(m, O11Y_EXPO_PROMETHEUS, &len);
    golden("metrics.prom", prom);
    o11y_free(prom);
    char *om = o11y_metrics_render(m, O11Y_EXPO_OPENMETRICS, &len);
    golden("metrics.openmetrics", om);
    o11y_free(om);
    o11y_metrics_destroy(m);
    assert_int_equal(o11y_exposition_negotiate("application/openmetrics-text; version=1.0.0", 44),
                     O11Y_EXPO_OPENMETRICS);
    assert_int_equal(o11y_exposition_negotiate("text/plain", 10), O11Y_EXPO_PROMETHEUS);
    assert_int_equal(o11y_exposition_negotiate(NULL, 0), O11Y_EXPO_PROMETHEUS);
}

static void bucket_layout_is_monotonic(void **state)
{
    (void)state;
    double prev = -1;
    for (size_t i = 0; i < O11Y__N_BUCKETS; i++) {
        double v = o11y__bucket_value(i);
        assert_true(v > prev);
        prev = v;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registration_rules),
        cmocka_unit_test(series_cap_refuses_and_counts),
        cmocka_unit_test(counts_are_exact_under_two_threads),
        cmocka_unit_test(quantiles_within_one_percent),
        cmocka_unit_test(bad_values_are_dropped_not_recorded),
        cmocka_unit_test(windows_subtract_old_snapshots),
        cmocka_unit_test(exposition_matches_golden_files),
        cmocka_unit_test(bucket_layout_is_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
