/* metrics/metrics_internal.h — the registry's types, shared by recording, reading and rendering. */
#ifndef O11Y_METRICS_INTERNAL_H
#define O11Y_METRICS_INTERNAL_H

#include "core/internal.h"
#include "o11y/metrics.h"

#include <pthread.h>
#include <stdatomic.h>

enum {
    O11Y__SLOTS = 64, /* per-series cells: one per recording thread; the last is shared */
    O11Y__SHARED_SLOT = O11Y__SLOTS - 1,
    O11Y__LINEAR = 128,    /* values below this many units each have a bucket */
    O11Y__PER_OCTAVE = 64, /* above: 64 buckets per power of two (relative width <= 1/64) */
    O11Y__MAX_EXP = 40,    /* values up to 2^41 - 1 units; larger ones land in the top bucket */
    O11Y__N_BUCKETS = O11Y__LINEAR + (O11Y__MAX_EXP - 7 + 1) * O11Y__PER_OCTAVE,
    O11Y__MAX_LE = 64,
    O11Y__MAX_METRICS = 1024,
    O11Y__RING = 31, /* window snapshots, 10 s apart: 5 minutes and the current one */
    O11Y__TICK_SECONDS = 10,
};

/* One thread's cells of one series. Written by that thread alone (plain loads and stores),
 * except in the shared slot (atomic read-modify-write); read by anyone with relaxed loads.
 * Histogram cells: the log-linear buckets, then the split cells (below), then, only when the
 * metric's boundaries are too close for splitting, n_le + 1 exact `le` counts. */
typedef struct o11y__shard {
    _Alignas(64) _Atomic uint64_t count; /* counter value, gauge delta */
    _Atomic uint64_t sum_bits;           /* histogram: the sum, as a double's bits */
    /* Histogram: one bit per bucket that has ever held a value, so readers visit the few
     * occupied buckets instead of all 2,304 (a scrape of 1,000 series stays under a millisecond).
     */
    _Atomic uint64_t occupied[O11Y__N_BUCKETS / 64];
    _Atomic uint64_t cells[];
} o11y__shard;

/* A sparse copy of a series taken by the ticker, for the sliding windows. */
typedef struct o11y__snapshot {
    uint64_t count;
    double sum;
    uint32_t n;      /* non-zero buckets */
    uint32_t *index; /* bucket index, increasing */
    uint64_t *value;
} o11y__snapshot;

/* One exemplar of an `le` bucket (OpenMetrics): written by at most one thread at a time (the one
 * that wins the sequence's CAS from even to odd), read when the sequence is even and unchanged
 * around the copy. */
typedef struct o11y__exemplar {
    _Atomic uint64_t seq;
    _Atomic int64_t at_s; /* CLOCK_MONOTONIC second of the last write */
    /* Relaxed atomics, so a reader racing a writer is a retry, not a data race. */
    _Atomic uint64_t value_bits;
    _Atomic int64_t unix_ms;
    _Atomic uint64_t trace_words[8]; /* the trace id, NUL-padded: at most 63 bytes */
} o11y__exemplar;

/* A copy of one, read by the exposition. */
typedef struct o11y__exemplar_copy {
    double value;
    int64_t unix_ms;
    char trace_id[65];
} o11y__exemplar_copy;

struct o11y_series {
    o11y_metric *metric;
    _Atomic(o11y__exemplar *) exemplars; /* n_le + 1 of them, allocated on the first one */
    char **values;                       /* the label values as given */
    char *label_text; /* a="x",b="y" escaped for the exposition, "" without labels */
    size_t label_len;
    uint64_t hash;
    _Atomic(o11y__shard *) shards[O11Y__SLOTS];
    _Atomic uint64_t gauge_bits; /* o11y_gauge_set */
    atomic_bool gauge_was_set;
    /* Windows: guarded by the metric's window_lock. */
    o11y__snapshot ring[O11Y__RING];
    unsigned ring_next, ring_filled;
};

struct o11y_metric {
    o11y_metrics *registry;
    uint64_t id; /* unique in the process, never reused: keys the per-thread lookup cache */
    char *name, *help;
    o11y_metric_type type;
    unsigned flags;
    char *labels[O11Y_METRIC_MAX_LABELS];
    size_t n_labels;
    double le[O11Y__MAX_LE];
    char le_text[O11Y__MAX_LE][40]; /* le="0.005" */
    size_t n_le;
    /* Exact `le` counts without a search per observation: every value of a bucket falls under
     * the same boundary, except in the few buckets within a unit of a boundary; those are split
     * in two cells, by one comparison. le_of: the boundary index of a bucket's values (of its
     * lower part when split); split: -1, or the extra cell of the part above le[le_of]. When two
     * boundaries share a bucket, le_slow: exact counts kept by a binary search instead. */
    uint8_t le_of[O11Y__N_BUCKETS];
    int16_t split[O11Y__N_BUCKETS];
    size_t n_split;
    bool le_slow;
    double scale;
    double max_value; /* the largest value the fast path takes: 2^41 - 1 units */
    size_t max_series;
    o11y_metric_value_fn fn;
    void *fn_ctx;
    _Atomic uint64_t dropped_series;
    _Atomic uint64_t dropped_values;

    pthread_rwlock_t lock; /* series, n_series, table */
    o11y_series **series;
    size_t n_series, cap_series;
    uint32_t *table; /* open addressing: index + 1 into series, 0 empty */
    size_t table_cap;
    pthread_mutex_t window_lock;
};

struct o11y_metrics {
    uint64_t id;          /* unique in the process, never reused */
    pthread_mutex_t lock; /* registration */
    o11y_metric *metrics[O11Y__MAX_METRICS];
    _Atomic size_t n_metrics;
    pthread_t ticker;
    pthread_mutex_t tick_lock;
    pthread_cond_t tick_cond;
    bool stopping;
};

/* The merged (all threads) view of a series; buckets may be NULL when not wanted. */
void o11y__series_merge(const o11y_series *s, uint64_t *count, double *sum, uint64_t *le,
                        uint64_t *buckets);
/* The value that stands for bucket idx (its midpoint), in units. */
double o11y__bucket_value(size_t idx);
/* The q-quantile of merged buckets, in the metric's unit; 0 when empty. */
double o11y__quantile(const o11y_metric *m, const uint64_t *buckets, uint64_t total, double q);
/* Prometheus text escaping: backslash and newline, and '"' when quote (label values, not HELP);
 * invalid UTF-8 becomes U+FFFD. */
void o11y__prom_escape(o11y__buf *b, const char *s, size_t len, bool quote);
/* Takes a window snapshot of every windowed series (the ticker calls it every 10 s). */
void o11y__metrics_tick(o11y_metrics *m);

/* Adds a series' count, sum and (histograms, when buckets is not NULL) bucket counts over a
 * window to the accumulators. O11Y_EINVAL for a window on a metric without windows. */
o11y_status o11y__series_accumulate(const o11y_series *s, o11y_window w, uint64_t *count,
                                    double *sum, uint64_t *buckets);
/* Average and quantiles from accumulated buckets. */
void o11y__stats_from_buckets(const o11y_metric *m, const uint64_t *b, uint64_t count, double sum,
                              o11y_series_stats *out);

/* A consistent copy of the exemplar of `le` boundary le_index (n_le: +Inf); false when there is
 * none, or it is being written. */
bool o11y__exemplar_read(const o11y_series *s, size_t le_index, o11y__exemplar_copy *out);

/* Shared by the metrics files. */
size_t o11y__le_search(const o11y_metric *m, double value); /* cells.c */
size_t o11y__bucket_index_checked(uint64_t units);          /* cells.c */
void *o11y__metrics_ticker_main(void *registry);            /* window.c */

#endif
