/* metrics/metrics.c — registry, series, the recording hot path and the readers.
 *
 * Recording: each thread owns a slot (0..62) for its lifetime, and records into its own shard of
 * a series with plain loads and stores, so no two threads ever write the same cache line and no
 * lock or atomic read-modify-write is taken. Threads beyond 63 share the last slot and use
 * atomic adds there. Readers merge the shards with relaxed loads: a read may miss the
 * observations of the last few nanoseconds, never count one twice. */
#include "metrics/metrics_internal.h"
#include "o11y/trace.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                         0.5,   0.75, 1,     2.5,  5,     7.5, 10};

static _Atomic(o11y_metrics *) default_registry;

/*=== MARK: slots ===*/

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t slots_taken; /* bit per slot 0..62 */
static pthread_key_t slot_key;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;
static _Thread_local int my_slot = -1;

static void slot_release(void *value)
{
    int slot = (int)(intptr_t)value - 1;
    if (slot < 0 || slot >= O11Y__SHARED_SLOT)
        return;
    pthread_mutex_lock(&slot_lock);
    slots_taken &= ~(1ull << slot);
    pthread_mutex_unlock(&slot_lock);
}

static void slot_key_create(void)
{
    pthread_key_create(&slot_key, slot_release);
}

static int slot_acquire(void)
{
    pthread_once(&slot_once, slot_key_create);
    pthread_mutex_lock(&slot_lock);
    int slot = O11Y__SHARED_SLOT;
    for (int i = 0; i < O11Y__SHARED_SLOT; i++) {
        if (!(slots_taken & (1ull << i))) {
            slots_taken |= 1ull << i;
            slot = i;
            break;
        }
    }
    pthread_mutex_unlock(&slot_lock);
    /* Released when the thread exits; the shards stay with their series for the next owner. */
    pthread_setspecific(slot_key, (void *)(intptr_t)(slot + 1));
    my_slot = slot;
    return slot;
}

static inline int current_slot(void)
{
    int slot = my_slot;
    return O11Y_LIKELY(slot >= 0) ? slot : slot_acquire();
}

/*=== MARK: buckets ===*/

/* Linear below 128 units, then 64 buckets per power of two: with s = max(e - 6, 0) for the top
 * bit e, the bucket is (s << 6) + (u >> s), which is u itself below 128. */
static inline size_t bucket_index(uint64_t u) /* u < 2^41 */
{
    int e = 63 - __builtin_clzll(u | 1);
    int sh = e > 6 ? e - 6 : 0;
    return ((size_t)sh << 6) + (size_t)(u >> sh);
}

static size_t bucket_index_checked(uint64_t u)
{
    return u >> (O11Y__MAX_EXP + 1) ? O11Y__N_BUCKETS - 1 : bucket_index(u);
}

double o11y__bucket_value(size_t idx)
{
    if (idx < O11Y__LINEAR)
        return (double)idx;
    size_t rel = idx - O11Y__LINEAR;
    int e = 7 + (int)(rel / O11Y__PER_OCTAVE);
    double width = ldexp(1.0, e - 6);
    double lower = (double)(O11Y__PER_OCTAVE + rel % O11Y__PER_OCTAVE) * width;
    return lower + width / 2;
}

/*=== MARK: hot path ===*/

static inline void cell_add(_Atomic uint64_t *c, uint64_t n, bool shared)
{
    if (O11Y_UNLIKELY(shared))
        atomic_fetch_add_explicit(c, n, memory_order_relaxed);
    else
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

static size_t shard_cells(const o11y_metric *m)
{
    if (m->type != O11Y_HISTOGRAM)
        return 0;
    return O11Y__N_BUCKETS + m->n_split + (m->le_slow ? m->n_le + 1 : 0);
}

static o11y__shard *new_shard(o11y_series *s, int slot)
{
    size_t size = sizeof(o11y__shard) + shard_cells(s->metric) * sizeof(uint64_t);
    o11y__shard *sh = o11y__aligned_calloc(64, size);
    if (!sh) {
        atomic_fetch_add_explicit(&s->metric->dropped_values, 1, memory_order_relaxed);
        return NULL;
    }
    o11y__shard *expected = NULL;
    /* Only the shared slot can race here. */
    if (!atomic_compare_exchange_strong(&s->shards[slot], &expected, sh)) {
        o11y__free(sh);
        return expected;
    }
    return sh;
}

static inline o11y__shard *my_shard(o11y_series *s, int slot)
{
    o11y__shard *sh = atomic_load_explicit(&s->shards[slot], memory_order_acquire);
    return O11Y_LIKELY(sh != NULL) ? sh : new_shard(s, slot);
}

void o11y_counter_add(o11y_series *s, uint64_t n)
{
    int slot = current_slot();
    o11y__shard *sh = my_shard(s, slot);
    if (sh)
        cell_add(&sh->count, n, slot == O11Y__SHARED_SLOT);
}

void o11y_gauge_add(o11y_series *s, int64_t delta)
{
    int slot = current_slot();
    o11y__shard *sh = my_shard(s, slot);
    if (sh)
        cell_add(&sh->count, (uint64_t)delta, slot == O11Y__SHARED_SLOT); /* two's complement */
}

void o11y_gauge_set(o11y_series *s, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    atomic_store_explicit(&s->gauge_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&s->gauge_was_set, true, memory_order_relaxed);
}

static inline void sum_add(_Atomic uint64_t *bits, double v, bool shared)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed), next;
    do {
        double d;
        memcpy(&d, &old, sizeof d);
        d += v;
        memcpy(&next, &d, sizeof next);
        if (O11Y_LIKELY(!shared)) {
            atomic_store_explicit(bits, next, memory_order_relaxed);
            return;
        }
    } while (!atomic_compare_exchange_weak_explicit(bits, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static size_t le_search(const o11y_metric *m, double value)
{
    size_t lo = 0, hi = m->n_le;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (value <= m->le[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static inline __attribute__((always_inline)) void
observe_into(const o11y_metric *m, o11y__shard *sh, bool shared, double value, size_t idx)
{
    size_t cell = idx;
    int split = m->split[idx];
    if (O11Y_UNLIKELY(split >= 0) && value > m->le[m->le_of[idx]])
        cell = O11Y__N_BUCKETS + (size_t)split;
    sum_add(&sh->sum_bits, value, shared);
    cell_add(&sh->cells[cell], 1, shared);
    _Atomic uint64_t *word = &sh->occupied[idx >> 6];
    uint64_t bit = 1ull << (idx & 63), bits = atomic_load_explicit(word, memory_order_relaxed);
    if (O11Y_UNLIKELY(!(bits & bit))) { /* once per bucket and thread */
        if (shared)
            atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
        else
            atomic_store_explicit(word, bits | bit, memory_order_relaxed);
    }
    if (O11Y_UNLIKELY(m->le_slow))
        cell_add(&sh->cells[O11Y__N_BUCKETS + m->n_split + le_search(m, value)], 1, shared);
}

/* Values the fast path does not take: NaN, negative and infinite ones are dropped and counted;
 * finite ones beyond the top bucket's range are kept in the top bucket. */
static void observe_outlier(o11y_series *s, double value)
{
    if (!(value >= 0 && value < INFINITY)) {
        atomic_fetch_add_explicit(&s->metric->dropped_values, 1, memory_order_relaxed);
        return;
    }
    int slot = current_slot();
    o11y__shard *sh = my_shard(s, slot);
    if (sh)
        observe_into(s->metric, sh, slot == O11Y__SHARED_SLOT, value, O11Y__N_BUCKETS - 1);
}

/* The exemplar of value's `le` bucket: the current trace id, at most once a second per bucket
 * (sampling: a busy route costs a clock read and a compare), skipped when another thread is
 * writing it. */
static void keep_exemplar(o11y_series *s, double value)
{
    const o11y_trace_ctx *ctx = o11y_trace_current();
    if (!ctx || !ctx->trace_id_len || ctx->trace_id_len >= 64)
        return;
    const o11y_metric *m = s->metric;
    o11y__exemplar *ex = atomic_load_explicit(&s->exemplars, memory_order_acquire);
    if (!ex) {
        o11y__exemplar *fresh = o11y__calloc(m->n_le + 1, sizeof *fresh);
        if (!fresh)
            return;
        o11y__exemplar *expected = NULL;
        if (atomic_compare_exchange_strong(&s->exemplars, &expected, fresh))
            ex = fresh;
        else
            o11y__free(fresh), ex = expected;
    }
    size_t i = le_search(m, value); /* n_le: +Inf */
    o11y__exemplar *e = &ex[i];
    int64_t now_ns = o11y__now_mono_ns(), now_s = now_ns / 1000000000;
    if (atomic_load_explicit(&e->at_s, memory_order_relaxed) == now_s)
        return;
    uint64_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
    if ((seq & 1) || !atomic_compare_exchange_strong(&e->seq, &seq, seq + 1))
        return;
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    atomic_store_explicit(&e->value_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&e->unix_ms, o11y__now_real_ns() / 1000000, memory_order_relaxed);
    char padded[64] = {0};
    memcpy(padded, ctx->trace_id, ctx->trace_id_len);
    for (size_t w = 0; w < 8; w++) {
        uint64_t word;
        memcpy(&word, padded + 8 * w, 8);
        atomic_store_explicit(&e->trace_words[w], word, memory_order_relaxed);
    }
    atomic_store_explicit(&e->at_s, now_s, memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq + 2, memory_order_release);
}

bool o11y__exemplar_read(const o11y_series *s, size_t le_index, o11y__exemplar_copy *out)
{
    o11y__exemplar *ex = atomic_load_explicit(&s->exemplars, memory_order_acquire);
    if (!ex || le_index > s->metric->n_le)
        return false;
    o11y__exemplar *e = &ex[le_index];
    uint64_t before = atomic_load_explicit(&e->seq, memory_order_acquire);
    if (before == 0 || (before & 1))
        return false;
    uint64_t bits = atomic_load_explicit(&e->value_bits, memory_order_relaxed);
    memcpy(&out->value, &bits, sizeof bits);
    out->unix_ms = atomic_load_explicit(&e->unix_ms, memory_order_relaxed);
    for (size_t w = 0; w < 8; w++) {
        uint64_t word = atomic_load_explicit(&e->trace_words[w], memory_order_relaxed);
        memcpy(out->trace_id + 8 * w, &word, 8);
    }
    out->trace_id[64] = '\0';
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&e->seq, memory_order_relaxed) == before;
}

void o11y_histogram_observe(o11y_series *s, double value)
{
    const o11y_metric *m = s->metric;
    if (O11Y_UNLIKELY(m->flags & O11Y_METRIC_EXEMPLARS) && value >= 0 && value < INFINITY)
        keep_exemplar(s, value);
    if (O11Y_UNLIKELY(!(value >= 0 && value <= m->max_value))) {
        observe_outlier(s, value);
        return;
    }
    int slot = current_slot();
    o11y__shard *sh = my_shard(s, slot);
    if (O11Y_UNLIKELY(!sh))
        return;
    /* value <= max_value keeps the units under 2^41: a signed conversion is exact and cheap. */
    uint64_t units = (uint64_t)(int64_t)(value * m->scale + 0.5);
    observe_into(m, sh, slot == O11Y__SHARED_SLOT, value, bucket_index(units));
}

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

static void *ticker_main(void *arg)
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

/*=== MARK: registry ===*/

static uint64_t dropped_series_total(void *ctx);
static atomic_uint_fast64_t next_metric_id = 1;

static double dropped_series_value(void *ctx)
{
    return (double)dropped_series_total(ctx);
}

o11y_status o11y_metrics_create(o11y_metrics **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_metrics *reg = o11y__calloc(1, sizeof *reg);
    if (!reg)
        return O11Y_ENOMEM;
    reg->id = atomic_fetch_add(&next_metric_id, 1);
    pthread_mutex_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->tick_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&reg->tick_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&reg->ticker, NULL, ticker_main, reg) != 0) {
        pthread_cond_destroy(&reg->tick_cond);
        pthread_mutex_destroy(&reg->tick_lock);
        pthread_mutex_destroy(&reg->lock);
        o11y__free(reg);
        return O11Y_ENOMEM;
    }
    o11y_status st = o11y_metric_register_fn(
        reg, "o11y_metric_series_dropped_total",
        "Label combinations refused because a metric reached its series cap", O11Y_COUNTER,
        dropped_series_value, reg);
    if (st != O11Y_OK) {
        o11y_metrics_destroy(reg);
        return st;
    }
    *out = reg;
    return O11Y_OK;
}

static void series_free(o11y_series *s)
{
    o11y__free(atomic_load(&s->exemplars));
    for (int i = 0; i < O11Y__SLOTS; i++)
        o11y__free(atomic_load(&s->shards[i]));
    for (size_t i = 0; s->values && i < s->metric->n_labels; i++)
        o11y__free(s->values[i]);
    for (int i = 0; i < O11Y__RING; i++) {
        o11y__free(s->ring[i].index);
        o11y__free(s->ring[i].value);
    }
    o11y__free(s->values);
    o11y__free(s->label_text);
    o11y__free(s);
}

static void metric_free(o11y_metric *m)
{
    for (size_t i = 0; i < m->n_series; i++)
        series_free(m->series[i]);
    for (size_t i = 0; i < m->n_labels; i++)
        o11y__free(m->labels[i]);
    o11y__free(m->series);
    o11y__free(m->table);
    o11y__free(m->name);
    o11y__free(m->help);
    pthread_rwlock_destroy(&m->lock);
    pthread_mutex_destroy(&m->window_lock);
    o11y__free(m);
}

void o11y_metrics_destroy(o11y_metrics *reg)
{
    if (!reg)
        return;
    o11y_metrics *expected = reg;
    atomic_compare_exchange_strong(&default_registry, &expected, NULL);
    pthread_mutex_lock(&reg->tick_lock);
    reg->stopping = true;
    pthread_cond_signal(&reg->tick_cond);
    pthread_mutex_unlock(&reg->tick_lock);
    pthread_join(reg->ticker, NULL);
    size_t n = atomic_load(&reg->n_metrics);
    for (size_t i = 0; i < n; i++)
        metric_free(reg->metrics[i]);
    pthread_cond_destroy(&reg->tick_cond);
    pthread_mutex_destroy(&reg->tick_lock);
    pthread_mutex_destroy(&reg->lock);
    o11y__free(reg);
}

void o11y_metrics_set_default(o11y_metrics *m)
{
    atomic_store(&default_registry, m);
}

o11y_metrics *o11y_metrics_default(void)
{
    return atomic_load_explicit(&default_registry, memory_order_acquire);
}

const double *o11y_metrics_default_buckets(size_t *n)
{
    if (n)
        *n = O11Y_ARRAY_LEN(default_buckets);
    return default_buckets;
}

o11y_metric *o11y_metrics_find(o11y_metrics *reg, const char *name)
{
    if (!reg || !name)
        return NULL;
    size_t n = atomic_load_explicit(&reg->n_metrics, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(reg->metrics[i]->name, name) == 0)
            return reg->metrics[i];
    return NULL;
}

static uint64_t dropped_series_total(void *ctx)
{
    o11y_metrics *reg = ctx;
    uint64_t total = 0;
    size_t n = atomic_load_explicit(&reg->n_metrics, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        total += atomic_load_explicit(&reg->metrics[i]->dropped_series, memory_order_relaxed);
    return total;
}

/*=== MARK: validation ===*/

static bool name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*. Both: no "__"
 * prefix (reserved for Prometheus' own use). */
static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s || strlen(s) > 200 || strncmp(s, "__", 2) == 0)
        return false;
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, colon))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool valid_help(const char *help)
{
    return help && *help && strlen(help) <= 1024 && o11y__utf8_valid(help, strlen(help));
}

static o11y_status validate(const o11y_metric_opts *o)
{
    if (!o || !valid_name(o->name, true) || !valid_help(o->help) ||
        o->n_labels > O11Y_METRIC_MAX_LABELS || (o->n_labels && !o->label_names))
        return O11Y_EINVAL;
    if (o->type != O11Y_COUNTER && o->type != O11Y_GAUGE && o->type != O11Y_HISTOGRAM)
        return O11Y_EINVAL;
    if ((o->type == O11Y_COUNTER) != ends_with(o->name, "_total"))
        return O11Y_EINVAL; /* counters end in _total, and only counters */
    if (o->type == O11Y_HISTOGRAM && (ends_with(o->name, "_bucket") ||
                                      ends_with(o->name, "_count") || ends_with(o->name, "_sum")))
        return O11Y_EINVAL;
    for (size_t i = 0; i < o->n_labels; i++) {
        const char *l = o->label_names[i];
        if (!valid_name(l, false) || strcmp(l, "le") == 0 || strcmp(l, "quantile") == 0)
            return O11Y_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->label_names[j], l) == 0)
                return O11Y_EINVAL;
    }
    if (o->type == O11Y_HISTOGRAM && o->buckets) {
        if (o->n_buckets == 0 || o->n_buckets > O11Y__MAX_LE)
            return O11Y_EINVAL;
        for (size_t i = 0; i < o->n_buckets; i++)
            if (!isfinite(o->buckets[i]) || (i && o->buckets[i] <= o->buckets[i - 1]))
                return O11Y_EINVAL;
    }
    if (o->unit_scale < 0 || !isfinite(o->unit_scale))
        return O11Y_EINVAL;
    return O11Y_OK;
}

static o11y_status add_metric(o11y_metrics *reg, o11y_metric *m)
{
    pthread_mutex_lock(&reg->lock);
    o11y_status st = O11Y_OK;
    size_t n = atomic_load(&reg->n_metrics);
    if (o11y_metrics_find(reg, m->name))
        st = O11Y_ECONFLICT;
    else if (n == O11Y__MAX_METRICS)
        st = O11Y_ELIMIT;
    else {
        reg->metrics[n] = m;
        atomic_store_explicit(&reg->n_metrics, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&reg->lock);
    return st;
}

static o11y_metric *metric_new(o11y_metrics *reg, const char *name, const char *help)
{
    o11y_metric *m = o11y__calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->registry = reg;
    m->id = atomic_fetch_add(&next_metric_id, 1);
    pthread_rwlock_init(&m->lock, NULL);
    pthread_mutex_init(&m->window_lock, NULL);
    m->name = o11y__strdup(name);
    m->help = o11y__strdup(help);
    if (!m->name || !m->help) {
        metric_free(m);
        return NULL;
    }
    return m;
}

/* The highest unit value that maps to bucket idx. */
static double bucket_top(size_t idx)
{
    if (idx < O11Y__LINEAR)
        return (double)idx;
    if (idx == O11Y__N_BUCKETS - 1)
        return INFINITY;
    size_t rel = idx - O11Y__LINEAR;
    int e = 7 + (int)(rel / O11Y__PER_OCTAVE);
    double width = ldexp(1.0, e - 6);
    return (double)(O11Y__PER_OCTAVE + rel % O11Y__PER_OCTAVE + 1) * width - 1;
}

static size_t units_bucket(double units)
{
    if (units <= 0)
        return 0;
    return bucket_index_checked(units < 0x1p62 ? (uint64_t)units : UINT64_MAX);
}

/* Fills le_of and split (see metrics_internal.h). A bucket is split when a boundary lies within
 * one unit of it, so rounding to units can never put a value on the wrong side. */
static void plan_le(o11y_metric *m)
{
    for (size_t i = 0; i < O11Y__N_BUCKETS; i++)
        m->split[i] = -1;
    for (size_t k = 0; k < m->n_le && !m->le_slow; k++) {
        double b = m->le[k] * m->scale;
        for (size_t idx = units_bucket(b - 1); idx <= units_bucket(b + 1); idx++) {
            if (m->split[idx] >= 0) { /* two boundaries in one bucket */
                m->le_slow = true;
                break;
            }
            m->split[idx] = (int16_t)m->n_split++;
            m->le_of[idx] = (uint8_t)k;
        }
    }
    if (m->le_slow) {
        for (size_t i = 0; i < O11Y__N_BUCKETS; i++)
            m->split[i] = -1;
        m->n_split = 0;
        return;
    }
    for (size_t idx = 0, k = 0; idx < O11Y__N_BUCKETS; idx++) {
        if (m->split[idx] >= 0)
            continue;
        double top = (bucket_top(idx) + 0.5) / m->scale;
        while (k < m->n_le && m->le[k] < top)
            k++;
        m->le_of[idx] = (uint8_t)k;
    }
}

o11y_status o11y_metric_register_or_get(o11y_metrics *reg, const o11y_metric_opts *o,
                                        o11y_metric **out)
{
    o11y_status st = o11y_metric_register(reg, o, out);
    if (st != O11Y_ECONFLICT)
        return st;
    o11y_metric *m = o11y_metrics_find(reg, o->name);
    bool same = m && m->type == o->type && m->n_labels == o->n_labels;
    for (size_t i = 0; same && i < o->n_labels; i++)
        same = strcmp(m->labels[i], o->label_names[i]) == 0;
    *out = same ? m : NULL;
    return same ? O11Y_OK : O11Y_ECONFLICT;
}

o11y_status o11y_metric_register(o11y_metrics *reg, const o11y_metric_opts *o, o11y_metric **out)
{
    if (!reg || !out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_status st = validate(o);
    if (st != O11Y_OK)
        return st;
    o11y_metric *m = metric_new(reg, o->name, o->help);
    if (!m)
        return O11Y_ENOMEM;
    m->type = o->type;
    m->flags = o->flags;
    m->max_series = o->max_series ? o->max_series : O11Y_METRIC_DEFAULT_MAX_SERIES;
    m->scale = o->unit_scale > 0 ? o->unit_scale : 1e9;
    m->max_value = (0x1p41 - 1) / m->scale;
    for (size_t i = 0; i < o->n_labels; i++) {
        if (!(m->labels[i] = o11y__strdup(o->label_names[i]))) {
            metric_free(m);
            return O11Y_ENOMEM;
        }
        m->n_labels = i + 1;
    }
    if (m->type == O11Y_HISTOGRAM) {
        const double *b = o->buckets ? o->buckets : default_buckets;
        m->n_le = o->buckets ? o->n_buckets : O11Y_ARRAY_LEN(default_buckets);
        for (size_t i = 0; i < m->n_le; i++) {
            m->le[i] = b[i];
            o11y__buf t; /* le="0.005", rendered once */
            o11y__buf_init_fixed(&t, m->le_text[i], sizeof m->le_text[i] - 1);
            o11y__buf_lit(&t, "le=\"");
            o11y__json_f64(&t, b[i]);
            o11y__buf_putc(&t, '"');
            m->le_text[i][t.len] = '\0';
        }
    }
    if (m->type == O11Y_HISTOGRAM)
        plan_le(m);
    st = add_metric(reg, m);
    if (st != O11Y_OK) {
        metric_free(m);
        return st;
    }
    *out = m;
    return O11Y_OK;
}

o11y_status o11y_metric_register_fn(o11y_metrics *reg, const char *name, const char *help,
                                    o11y_metric_type type, o11y_metric_value_fn fn, void *ctx)
{
    o11y_metric_opts o = {.name = name, .help = help, .type = type};
    if (!reg || !fn || type == O11Y_HISTOGRAM)
        return O11Y_EINVAL;
    o11y_status st = validate(&o);
    if (st != O11Y_OK)
        return st;
    o11y_metric *m = metric_new(reg, name, help);
    if (!m)
        return O11Y_ENOMEM;
    m->type = type;
    m->fn = fn;
    m->fn_ctx = ctx;
    st = add_metric(reg, m);
    if (st != O11Y_OK)
        metric_free(m);
    return st;
}

/*=== MARK: series ===*/

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 0x100000001B3ull;
        h = (h ^ 0xFF) * 0x100000001B3ull; /* separator: ("a","bc") differs from ("ab","c") */
    }
    return h;
}

static bool same_values(const o11y_series *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    return true;
}

static o11y_series *find_locked(const o11y_metric *m, const char *const *values, uint64_t h)
{
    if (!m->table_cap)
        return NULL;
    for (size_t i = h & (m->table_cap - 1);; i = (i + 1) & (m->table_cap - 1)) {
        uint32_t slot = m->table[i];
        if (!slot)
            return NULL;
        o11y_series *s = m->series[slot - 1];
        if (s->hash == h && same_values(s, values, m->n_labels))
            return s;
    }
}

void o11y__prom_escape(o11y__buf *b, const char *s, size_t len, bool quote)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            o11y__buf_lit(b, "\\\\");
        } else if (c == '\n') {
            o11y__buf_lit(b, "\\n");
        } else if (c == '"' && quote) {
            o11y__buf_lit(b, "\\\"");
        } else if (c >= 0x80) {
            size_t n = 1;
            while (i + n < len && n < 4 && ((unsigned char)s[i + n] & 0xC0) == 0x80)
                n++;
            if (o11y__utf8_valid(s + i, n))
                o11y__buf_append(b, s + i, n);
            else {
                o11y__buf_lit(b, "\xEF\xBF\xBD");
                n = 1;
            }
            i += n;
            continue;
        } else {
            o11y__buf_putc(b, (char)c);
        }
        i++;
    }
}

static o11y_series *series_new(o11y_metric *m, const char *const *values, uint64_t h)
{
    o11y_series *s = o11y__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->metric = m;
    s->hash = h;
    s->values = o11y__calloc(m->n_labels ? m->n_labels : 1, sizeof(char *));
    o11y__buf t;
    o11y__buf_init(&t, 64 * 1024);
    bool ok = s->values != NULL;
    for (size_t i = 0; ok && i < m->n_labels; i++) {
        ok = (s->values[i] = o11y__strdup(values[i])) != NULL;
        if (i)
            o11y__buf_putc(&t, ',');
        o11y__buf_cstr(&t, m->labels[i]);
        o11y__buf_lit(&t, "=\"");
        o11y__prom_escape(&t, values[i], strlen(values[i]), true);
        o11y__buf_putc(&t, '"');
    }
    s->label_text = ok ? o11y__buf_take(&t, &s->label_len) : NULL;
    o11y__buf_release(&t);
    if (!s->label_text) {
        series_free(s);
        return NULL;
    }
    return s;
}

static bool grow_locked(o11y_metric *m)
{
    if (m->n_series == m->cap_series) {
        size_t cap = m->cap_series ? m->cap_series * 2 : 8;
        o11y_series **p = o11y__realloc(m->series, cap * sizeof *p);
        if (!p)
            return false;
        m->series = p;
        m->cap_series = cap;
    }
    if ((m->n_series + 1) * 2 > m->table_cap) { /* keep the table at most half full */
        size_t cap = m->table_cap ? m->table_cap * 2 : 16;
        uint32_t *t = o11y__calloc(cap, sizeof *t);
        if (!t)
            return false;
        for (size_t i = 0; i < m->n_series; i++) {
            size_t j = m->series[i]->hash & (cap - 1);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = (uint32_t)(i + 1);
        }
        o11y__free(m->table);
        m->table = t;
        m->table_cap = cap;
    }
    return true;
}

typedef struct lookup_entry {
    uint64_t metric_id, hash;
    o11y_series *series;
} lookup_entry;
static _Thread_local lookup_entry lookup_cache[64];

o11y_status o11y_metric_series(o11y_metric *m, const char *const *values, o11y_series **out)
{
    if (!m || !out || m->fn || (m->n_labels && !values))
        return O11Y_EINVAL;
    *out = NULL;
    static const char *const none[1] = {""};
    if (!m->n_labels)
        values = none;
    for (size_t i = 0; i < m->n_labels; i++)
        if (!values[i])
            return O11Y_EINVAL;
    uint64_t h = hash_values(values, m->n_labels);
    /* A per-thread cache first: threads looking up the same series share no cache line. Keyed
     * by the metric's id, which no other metric ever gets, so a stale entry never matches. */
    lookup_entry *e =
        &lookup_cache[(h ^ m->id * 0x9E3779B97F4A7C15ull) % O11Y_ARRAY_LEN(lookup_cache)];
    if (e->metric_id == m->id && e->hash == h && same_values(e->series, values, m->n_labels)) {
        *out = e->series;
        return O11Y_OK;
    }
    pthread_rwlock_rdlock(&m->lock);
    o11y_series *s = find_locked(m, values, h);
    pthread_rwlock_unlock(&m->lock);
    if (s) {
        *e = (lookup_entry){m->id, h, s};
        *out = s;
        return O11Y_OK;
    }
    pthread_rwlock_wrlock(&m->lock);
    o11y_status st = O11Y_OK;
    if ((s = find_locked(m, values, h)) != NULL) {
        /* created meanwhile */
    } else if (m->n_series >= m->max_series) {
        atomic_fetch_add_explicit(&m->dropped_series, 1, memory_order_relaxed);
        st = O11Y_ELIMIT;
    } else if (!grow_locked(m) || !(s = series_new(m, values, h))) {
        st = O11Y_ENOMEM;
    } else {
        m->series[m->n_series++] = s;
        size_t j = h & (m->table_cap - 1);
        while (m->table[j])
            j = (j + 1) & (m->table_cap - 1);
        m->table[j] = (uint32_t)m->n_series;
    }
    pthread_rwlock_unlock(&m->lock);
    *out = st == O11Y_OK ? s : NULL;
    return st;
}
