/* ratelimit/store.c — the store object, the memory store, and "Q/W".
 *
 * GCRA (the generic cell rate algorithm): a key's whole state is its theoretical arrival time
 * (TAT). With T = window / quota, a request at `now` passes when TAT - (window - T) <= now, and
 * moves TAT to max(TAT, now) + T: requests are spread smoothly, and a key idle for a window has
 * its whole quota (a burst of up to q) back.
 *
 * The memory store keeps each key in one 64-bit word, so a decision is a compare-and-swap with
 * no lock: 22 bits of the key's fingerprint and 42 bits of TAT in 100 µs units since the store's
 * epoch (13 years). A key's slot is found by linear probing over at most eight slots; a slot is
 * free when empty or when its TAT has passed (that key has its whole quota back, the same as a
 * key never seen), so idle keys are reclaimed by the keys that arrive. Two keys with the same
 * fingerprint in one neighbourhood share a state (about one pair in 2^22 / 8): they are limited
 * together, never more loosely. */
#include "ratelimit/ratelimit_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { PROBE = 8, FP_BITS = 22, TAT_BITS = 42, UNIT_NS = 100000, MAX_WINDOW_S = 86400 };

#define TAT_MASK ((UINT64_C(1) << TAT_BITS) - 1)

struct o11y_ratelimit_store {
    const o11y_ratelimit_store_ops *ops;
    void *impl;
};

o11y_status o11y_ratelimit_store_create(const o11y_ratelimit_store_ops *ops, void *impl,
                                        o11y_ratelimit_store **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    if (!ops || !ops->decide || !ops->destroy)
        return O11Y_EINVAL;
    o11y_ratelimit_store *s = o11y__calloc(1, sizeof *s);
    if (!s)
        return O11Y_ENOMEM;
    s->ops = ops;
    s->impl = impl;
    *out = s;
    return O11Y_OK;
}

void o11y_ratelimit_store_destroy(o11y_ratelimit_store *s)
{
    if (!s)
        return;
    s->ops->destroy(s->impl);
    o11y__free(s);
}

o11y_status o11y_ratelimit_decide(o11y_ratelimit_store *s, const char *key, size_t len,
                                  unsigned quota, unsigned window_s, o11y_ratelimit_decision *d)
{
    if (!s || (!key && len) || !d || !quota || !window_s || window_s > MAX_WINDOW_S ||
        quota > 1000000)
        return O11Y_EINVAL;
    return s->ops->decide(s->impl, key ? key : "", len, quota, window_s, d);
}

/*=== MARK: GCRA ===*/

void o11y__gcra(int64_t tat, int64_t now, int64_t emission, int64_t window, int64_t unit,
                unsigned quota, int64_t *new_tat, o11y_ratelimit_decision *d)
{
    int64_t base = tat > now ? tat : now;
    int64_t tolerance = window - emission; /* a burst of quota at once */
    if (base - tolerance > now) {
        /* Refused: the state does not move. */
        int64_t wait = base - tolerance - now;
        d->allowed = false;
        d->remaining = 0;
        d->retry_after_s = (unsigned)((wait + unit - 1) / unit);
        if (d->retry_after_s < 1)
            d->retry_after_s = 1;
        d->reset_s = (unsigned)((tat - now + unit - 1) / unit);
        *new_tat = tat;
        return;
    }
    *new_tat = base + emission;
    int64_t left = (now + window - *new_tat) / emission; /* whole requests still fitting */
    d->allowed = true;
    d->remaining = left < 0 ? 0 : left > quota ? quota : (unsigned)left;
    d->reset_s = (unsigned)((*new_tat - now + unit - 1) / unit);
    d->retry_after_s = 0;
}

/*=== MARK: the memory store ===*/

typedef struct mem_store {
    _Atomic uint64_t *slots;
    size_t mask;
    uint64_t seed; /* a random hash basis: a client cannot aim its keys at one neighbourhood */
    int64_t epoch_ns;
    int64_t (*clock_ns)(void *ctx);
    void *clock_ctx;
} mem_store;

/* The coarse monotonic clock (a few ms of resolution, read in a few ns without a system call):
 * a decision tolerates a few milliseconds, and the fine clock would be a third of its cost. */
static int64_t real_clock(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t pack(uint64_t fp, int64_t tat)
{
    return (fp << TAT_BITS) | ((uint64_t)tat & TAT_MASK);
}

static o11y_status mem_decide(void *impl, const char *key, size_t len, unsigned quota,
                              unsigned window_s, o11y_ratelimit_decision *d)
{
    mem_store *m = impl;
    uint64_t h = o11y__fnv1a(m->seed, key, len);
    h ^= h >> 31;
    uint64_t fp = (h >> (64 - FP_BITS)) | 1; /* never 0: an empty slot is 0 */
    int64_t now = (m->clock_ns(m->clock_ctx) - m->epoch_ns) / UNIT_NS;
    int64_t window = (int64_t)window_s * (1000000000 / UNIT_NS);
    int64_t emission = window / quota > 0 ? window / quota : 1;
    for (int attempt = 0; attempt < 16; attempt++) {
        _Atomic uint64_t *mine = NULL, *free_slot = NULL, *oldest = NULL;
        uint64_t mine_v = 0, free_v = 0, oldest_v = 0;
        for (size_t i = 0; i < PROBE; i++) {
            _Atomic uint64_t *slot = &m->slots[(h + i) & m->mask];
            uint64_t v = atomic_load_explicit(slot, memory_order_acquire);
            if (v && (v >> TAT_BITS) == fp) {
                mine = slot, mine_v = v;
                break;
            }
            int64_t tat = (int64_t)(v & TAT_MASK);
            if (!free_slot && (!v || tat <= now))
                free_slot = slot, free_v = v;
            if (!oldest || tat < (int64_t)(oldest_v & TAT_MASK))
                oldest = slot, oldest_v = v;
        }
        _Atomic uint64_t *slot = mine ? mine : free_slot ? free_slot : oldest;
        uint64_t seen = mine ? mine_v : free_slot ? free_v : oldest_v;
        int64_t tat = mine ? (int64_t)(mine_v & TAT_MASK) : now; /* a new key: whole quota */
        int64_t new_tat;
        o11y__gcra(tat, now, emission, window, 1000000000 / UNIT_NS, quota, &new_tat, d);
        if (!d->allowed)
            return O11Y_OK; /* nothing to write */
        if (atomic_compare_exchange_strong_explicit(slot, &seen, pack(fp, new_tat),
                                                    memory_order_acq_rel, memory_order_acquire))
            return O11Y_OK;
        /* Another decision on this neighbourhood won: decide again on what it wrote. */
    }
    /* Sixteen lost races in a row on one key: let the request through rather than spin. */
    d->allowed = true;
    d->remaining = 0;
    d->reset_s = window_s;
    d->retry_after_s = 0;
    return O11Y_OK;
}

static void mem_destroy(void *impl)
{
    mem_store *m = impl;
    o11y__free((void *)m->slots);
    o11y__free(m);
}

static const o11y_ratelimit_store_ops mem_ops = {mem_decide, mem_destroy};

o11y_status o11y_ratelimit_store_memory(const o11y_ratelimit_memory_config *cfg,
                                        o11y_ratelimit_store **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    size_t want = cfg && cfg->max_keys ? cfg->max_keys : (size_t)1 << 18;
    if (want > ((size_t)1 << 30))
        return O11Y_EINVAL;
    size_t n = 64;
    while (n < want)
        n <<= 1;
    mem_store *m = o11y__calloc(1, sizeof *m);
    if (!m || !(m->slots = o11y__calloc(n, sizeof *m->slots))) {
        o11y__free(m);
        return O11Y_ENOMEM;
    }
    m->mask = n - 1;
    m->seed = o11y__rand64() | 1;
    m->clock_ns = cfg && cfg->clock_ns ? cfg->clock_ns : real_clock;
    m->clock_ctx = cfg ? cfg->clock_ctx : NULL;
    m->epoch_ns = m->clock_ns(m->clock_ctx) - 2 * (int64_t)MAX_WINDOW_S * 1000000000;
    o11y_status st = o11y_ratelimit_store_create(&mem_ops, m, out);
    if (st != O11Y_OK)
        mem_destroy(m);
    return st;
}

/*=== MARK: "Q/W" ===*/

o11y_status o11y_ratelimit_parse(const char *s, unsigned *quota, unsigned *window_s)
{
    if (!s || !quota || !window_s)
        return O11Y_EINVAL;
    if (strcmp(s, "0") == 0) {
        *quota = 0;
        *window_s = 0;
        return O11Y_OK;
    }
    unsigned long q = 0, w = 0;
    char *end;
    if (*s < '0' || *s > '9')
        return O11Y_EINVAL;
    q = strtoul(s, &end, 10);
    if (*end != '/' || end[1] < '0' || end[1] > '9')
        return O11Y_EINVAL;
    w = strtoul(end + 1, &end, 10);
    if (*end || q == 0 || q > 1000000 || w == 0 || w > MAX_WINDOW_S)
        return O11Y_EINVAL;
    *quota = (unsigned)q;
    *window_s = (unsigned)w;
    return O11Y_OK;
}
