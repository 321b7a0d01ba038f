/* metrics/window.c — the 60 s and 5 min windows: a registry thread snapshots, every 10 s, the
 * series that ask for windows; a window is now minus the snapshot that old. */
#include "metrics/metrics_internal.h"
#include "o11y/trace.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

/*=== MARK: windows ===*/

static void snapshot_series(o11y_series *s, uint64_t *scratch)
{
    o11y_metric *m = s->metric;
    uint64_t count;
    double sum;
    o11y__series_merge(s, &count, &sum, NULL, m->type == O11Y_HISTOGRAM ? scratch : NULL);
    o11y__snapshot snap = {.count = count, .sum = sum};
    if (m->type == O11Y_HISTOGRAM) {
        uint32_t n = 0;
        for (size_t i = 0; i < O11Y__N_BUCKETS; i++)
            n += scratch[i] != 0;
        snap.index = o11y__malloc(sizeof(uint32_t) * (n ? n : 1));
        snap.value = o11y__malloc(sizeof(uint64_t) * (n ? n : 1));
        if (!snap.index || !snap.value) {
            o11y__free(snap.index);
            o11y__free(snap.value);
            return; /* this tick is skipped; the window stretches by 10 s */
        }
        for (size_t i = 0; i < O11Y__N_BUCKETS; i++) {
            if (scratch[i]) {
                snap.index[snap.n] = (uint32_t)i;
                snap.value[snap.n++] = scratch[i];
            }
        }
    }
    pthread_mutex_lock(&m->window_lock);
    o11y__snapshot *slot = &s->ring[s->ring_next];
    o11y__free(slot->index);
    o11y__free(slot->value);
    *slot = snap;
    s->ring_next = (s->ring_next + 1) % O11Y__RING;
    if (s->ring_filled < O11Y__RING)
        s->ring_filled++;
    pthread_mutex_unlock(&m->window_lock);
}

static void tick_series(o11y_series *s, void *scratch)
{
    snapshot_series(s, scratch);
}

void o11y__metrics_tick(o11y_metrics *reg)
{
    uint64_t *scratch = o11y__malloc(sizeof(uint64_t) * O11Y__N_BUCKETS);
    if (!scratch)
        return;
    size_t n = atomic_load(&reg->n_metrics);
    for (size_t i = 0; i < n; i++) {
        o11y_metric *m = reg->metrics[i];
        if (m->flags & O11Y_METRIC_WINDOWS)
            o11y_metric_foreach(m, tick_series, scratch);
    }
    o11y__free(scratch);
}

void *o11y__metrics_ticker_main(void *arg)
{
    o11y_metrics *reg = arg;
    pthread_mutex_lock(&reg->tick_lock);
    while (!reg->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += O11Y__TICK_SECONDS;
        pthread_cond_timedwait(&reg->tick_cond, &reg->tick_lock, &ts);
        if (reg->stopping)
            break;
        pthread_mutex_unlock(&reg->tick_lock);
        o11y__metrics_tick(reg);
        pthread_mutex_lock(&reg->tick_lock);
    }
    pthread_mutex_unlock(&reg->tick_lock);
    return NULL;
}
