/* metrics/read.c — reading series: merged shards, quantiles from the buckets, windows' deltas,
 * the per-series statistics of o11y_series_read. */
#include "metrics/metrics_internal.h"
#include "o11y/trace.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

/*=== MARK: reading ===*/

void o11y__series_merge(const o11y_series *s, uint64_t *count, double *sum, uint64_t *le,
                        uint64_t *buckets)
{
    const o11y_metric *m = s->metric;
    uint64_t c = 0;
    double total = 0;
    if (le)
        memset(le, 0, sizeof(uint64_t) * (m->n_le + 1));
    if (buckets)
        memset(buckets, 0, sizeof(uint64_t) * O11Y__N_BUCKETS);
    for (int i = 0; i < O11Y__SLOTS; i++) {
        const o11y__shard *sh = atomic_load_explicit(&s->shards[i], memory_order_acquire);
        if (!sh)
            continue;
        if (m->type != O11Y_HISTOGRAM) {
            c += atomic_load_explicit(&sh->count, memory_order_relaxed);
            continue;
        }
        uint64_t bits = atomic_load_explicit(&sh->sum_bits, memory_order_relaxed);
        double d;
        memcpy(&d, &bits, sizeof d);
        total += d;
        for (size_t w = 0; w < O11Y__N_BUCKETS / 64; w++) {
            for (uint64_t set = atomic_load_explicit(&sh->occupied[w], memory_order_relaxed); set;
                 set &= set - 1) {
                size_t j = w * 64 + (size_t)__builtin_ctzll(set);
                uint64_t n = atomic_load_explicit(&sh->cells[j], memory_order_relaxed);
                uint64_t above = 0;
                if (m->split[j] >= 0)
                    above = atomic_load_explicit(&sh->cells[O11Y__N_BUCKETS + (size_t)m->split[j]],
                                                 memory_order_relaxed);
                if (!(n | above))
                    continue;
                c += n + above;
                if (buckets)
                    buckets[j] += n + above;
                if (le && !m->le_slow) {
                    le[m->le_of[j]] += n;
                    if (above)
                        le[m->le_of[j] + 1] += above;
                }
            }
        }
        for (size_t j = 0; le && m->le_slow && j <= m->n_le; j++)
            le[j] += atomic_load_explicit(&sh->cells[O11Y__N_BUCKETS + m->n_split + j],
                                          memory_order_relaxed);
    }
    if (count)
        *count = c;
    if (sum)
        *sum = total;
}

double o11y__quantile(const o11y_metric *m, const uint64_t *buckets, uint64_t total, double q)
{
    if (total == 0)
        return 0;
    q = q < 0 ? 0 : q > 1 ? 1 : q;
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < O11Y__N_BUCKETS; i++) {
        seen += buckets[i];
        if (seen >= rank)
            return o11y__bucket_value(i) / m->scale;
    }
    return o11y__bucket_value(O11Y__N_BUCKETS - 1) / m->scale;
}

double o11y_histogram_quantile(const o11y_series *s, double q)
{
    if (!s || s->metric->type != O11Y_HISTOGRAM)
        return 0;
    uint64_t *b = o11y__malloc(sizeof(uint64_t) * O11Y__N_BUCKETS);
    if (!b)
        return 0;
    uint64_t n;
    o11y__series_merge(s, &n, NULL, NULL, b);
    uint64_t total = 0;
    for (size_t i = 0; i < O11Y__N_BUCKETS; i++)
        total += b[i];
    double v = o11y__quantile(s->metric, b, total, q);
    o11y__free(b);
    return v;
}

static double gauge_value(const o11y_series *s, uint64_t deltas)
{
    if (atomic_load_explicit(&s->gauge_was_set, memory_order_relaxed)) {
        uint64_t bits = atomic_load_explicit(&s->gauge_bits, memory_order_relaxed);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    return (double)(int64_t)deltas;
}

o11y_status o11y__series_accumulate(const o11y_series *s, o11y_window w, uint64_t *count,
                                    double *sum, uint64_t *buckets)
{
    const o11y_metric *m = s->metric;
    if (w != O11Y_WINDOW_LIFETIME && !(m->flags & O11Y_METRIC_WINDOWS))
        return O11Y_EINVAL;
    bool hist = m->type == O11Y_HISTOGRAM && buckets;
    uint64_t *b = hist ? o11y__malloc(sizeof(uint64_t) * O11Y__N_BUCKETS) : NULL;
    if (hist && !b)
        return O11Y_ENOMEM;
    uint64_t c;
    double total;
    o11y__series_merge(s, &c, &total, NULL, b);
    if (w != O11Y_WINDOW_LIFETIME) {
        /* The window is now minus the snapshot taken that long ago (or the oldest one). */
        unsigned back = w == O11Y_WINDOW_60S ? 60 / O11Y__TICK_SECONDS : 300 / O11Y__TICK_SECONDS;
        o11y_metric *mm = (o11y_metric *)m;
        pthread_mutex_lock(&mm->window_lock);
        /* With less history than the window, the window is everything since the series began
         * (the ring holds 31 snapshots and a window at most 30 back, so it has not wrapped). */
        if (back <= s->ring_filled) {
            const o11y__snapshot *base = &s->ring[(s->ring_next + O11Y__RING - back) % O11Y__RING];
            c -= base->count < c ? base->count : c;
            total -= base->sum;
            for (uint32_t i = 0; b && i < base->n; i++)
                b[base->index[i]] -=
                    base->value[i] < b[base->index[i]] ? base->value[i] : b[base->index[i]];
        }
        pthread_mutex_unlock(&mm->window_lock);
    }
    *count += c;
    *sum += total > 0 ? total : 0;
    for (size_t i = 0; b && i < O11Y__N_BUCKETS; i++)
        buckets[i] += b[i];
    o11y__free(b);
    return O11Y_OK;
}

void o11y__stats_from_buckets(const o11y_metric *m, const uint64_t *b, uint64_t count, double sum,
                              o11y_series_stats *out)
{
    *out = (o11y_series_stats){.count = count, .sum = sum};
    out->avg = count ? sum / (double)count : 0;
    if (m->type != O11Y_HISTOGRAM || !b)
        return;
    uint64_t total = 0;
    for (size_t i = 0; i < O11Y__N_BUCKETS; i++)
        total += b[i];
    out->p50 = o11y__quantile(m, b, total, 0.50);
    out->p95 = o11y__quantile(m, b, total, 0.95);
    out->p99 = o11y__quantile(m, b, total, 0.99);
}

o11y_status o11y_series_read(const o11y_series *s, o11y_window w, o11y_series_stats *out)
{
    if (!s || !out)
        return O11Y_EINVAL;
    const o11y_metric *m = s->metric;
    if (m->type == O11Y_GAUGE) {
        uint64_t deltas;
        o11y__series_merge(s, &deltas, NULL, NULL, NULL);
        *out = (o11y_series_stats){.sum = gauge_value(s, deltas)};
        return w == O11Y_WINDOW_LIFETIME ? O11Y_OK : O11Y_EINVAL;
    }
    uint64_t *b = m->type == O11Y_HISTOGRAM ? o11y__calloc(O11Y__N_BUCKETS, sizeof *b) : NULL;
    if (m->type == O11Y_HISTOGRAM && !b)
        return O11Y_ENOMEM;
    uint64_t count = 0;
    double sum = 0;
    o11y_status st = o11y__series_accumulate(s, w, &count, &sum, b);
    if (st == O11Y_OK)
        o11y__stats_from_buckets(m, b, count, sum, out);
    o11y__free(b);
    return st;
}

const char *o11y_series_label(const o11y_series *s, size_t i)
{
    return s && i < s->metric->n_labels ? s->values[i] : NULL;
}

void o11y_metric_foreach(o11y_metric *metric, void (*fn)(o11y_series *s, void *ctx), void *ctx)
{
    if (!metric || !fn)
        return;
    /* fn runs under the read lock: it must not create series of this metric. */
    pthread_rwlock_rdlock(&metric->lock);
    for (size_t i = 0; i < metric->n_series; i++)
        fn(metric->series[i], ctx);
    pthread_rwlock_unlock(&metric->lock);
}
