/* metrics/cells.c — the recording hot path: each thread owns a slot (0..62) for its lifetime,
 * and records into its own shard of a series with plain loads and stores, so no two threads ever
 * write the same cache line and no lock or atomic read-modify-write is taken. Threads beyond 63
 * share the last slot and use atomic adds there. Readers (read.c) merge the shards with relaxed
 * loads: a read may miss the observations of the last few nanoseconds, never count one twice.
 * Histogram buckets, exact `le` counts and exemplars live here too. */
#include "metrics/metrics_internal.h"
#include "o11y/trace.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

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

size_t o11y__bucket_index_checked(uint64_t u)
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

size_t o11y__le_search(const o11y_metric *m, double value)
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
        cell_add(&sh->cells[O11Y__N_BUCKETS + m->n_split + o11y__le_search(m, value)], 1, shared);
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
    size_t i = o11y__le_search(m, value); /* n_le: +Inf */
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
