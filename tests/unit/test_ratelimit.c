/* Tests for ratelimit/store.c: GCRA's exact counts and refill on an injected clock, the memory
 * store's bound under a scan of many keys, and "Q/W". */
#include "ratelimit/ratelimit_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static int64_t fake_ns = 1000000000000;

static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return __atomic_load_n(&fake_ns, __ATOMIC_RELAXED);
}

static o11y_ratelimit_store *store(size_t keys)
{
    o11y_ratelimit_memory_config c = {.max_keys = keys, .clock_ns = fake_clock};
    o11y_ratelimit_store *s = NULL;
    assert_int_equal(o11y_ratelimit_store_memory(&c, &s), O11Y_OK);
    return s;
}

static o11y_ratelimit_decision decide(o11y_ratelimit_store *s, const char *key, unsigned q,
                                      unsigned w)
{
    o11y_ratelimit_decision d;
    assert_int_equal(o11y_ratelimit_decide(s, key, strlen(key), q, w, &d), O11Y_OK);
    return d;
}

static void quota_then_refusal_then_refill(void **state)
{
    (void)state;
    o11y_ratelimit_store *s = store(0);
    /* 30 per 60 s: a burst of 30 passes, the 31st is refused with Retry-After 2 (one emission
     * interval); remaining counts down. */
    for (unsigned i = 0; i < 30; i++) {
        o11y_ratelimit_decision d = decide(s, "client-a", 30, 60);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 29 - i);
    }
    o11y_ratelimit_decision d = decide(s, "client-a", 30, 60);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_after_s, 2);
    assert_int_equal(d.reset_s, 60);
    /* Another key is untouched. */
    assert_true(decide(s, "client-b", 30, 60).allowed);
    /* Two seconds later exactly one more passes (smooth refill), then refused again. */
    fake_ns += 2000000000;
    assert_true(decide(s, "client-a", 30, 60).allowed);
    assert_false(decide(s, "client-a", 30, 60).allowed);
    /* A whole window later, the whole quota is back. */
    fake_ns += 60000000000;
    for (unsigned i = 0; i < 30; i++)
        assert_true(decide(s, "client-a", 30, 60).allowed);
    assert_false(decide(s, "client-a", 30, 60).allowed);
    o11y_ratelimit_store_destroy(s);
}

static void a_scan_of_many_keys_stays_bounded(void **state)
{
    (void)state;
    /* 1,024 slots and 200,000 distinct clients, one request each: every one passes (none is
     * anyone else's), and the table never grows: the oldest state in a neighbourhood goes. */
    o11y_ratelimit_store *s = store(1024);
    char key[32];
    for (unsigned i = 0; i < 200000; i++) {
        snprintf(key, sizeof key, "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
        assert_true(decide(s, key, 3, 60).allowed);
    }
    o11y_ratelimit_store_destroy(s);
    /* With room (65,536 slots, 10,000 clients), a limited client stays limited through the
     * scan: only keys with their whole quota back, or the oldest of a full neighbourhood, go. */
    s = store(65536);
    for (unsigned i = 0; i < 3; i++)
        assert_true(decide(s, "heavy", 3, 60).allowed);
    for (unsigned i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "10.0.%u.%u", i >> 8, i & 255);
        assert_true(decide(s, key, 3, 60).allowed);
    }
    assert_false(decide(s, "heavy", 3, 60).allowed);
    /* Idle keys are reclaimed: a window later, every client has its quota back. */
    fake_ns += 61000000000;
    assert_true(decide(s, "heavy", 3, 60).allowed);
    o11y_ratelimit_store_destroy(s);
}

typedef struct hammer {
    o11y_ratelimit_store *s;
    atomic_int allowed;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    for (int i = 0; i < 5000; i++) {
        o11y_ratelimit_decision d;
        if (o11y_ratelimit_decide(h->s, "hot", 3, 100, 1000, &d) == O11Y_OK && d.allowed)
            atomic_fetch_add(&h->allowed, 1);
    }
    return NULL;
}

static void concurrent_decisions_never_overshoot(void **state)
{
    (void)state;
    /* Four threads on one key, the clock frozen: exactly the quota passes. */
    o11y_ratelimit_store *s = store(0);
    hammer h = {.s = s};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer_main, &h);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&h.allowed), 100);
    o11y_ratelimit_store_destroy(s);
}

static void quota_per_window_text(void **state)
{
    (void)state;
    unsigned q, w;
    assert_int_equal(o11y_ratelimit_parse("30/60", &q, &w), O11Y_OK);
    assert_int_equal(q, 30);
    assert_int_equal(w, 60);
    assert_int_equal(o11y_ratelimit_parse("0", &q, &w), O11Y_OK);
    assert_int_equal(q, 0);
    static const char *const bad[] = {"",      "30",     "30/",      "/60",        "0/60",   "30/0",
                                      "-1/60", "30/60s", "30/86401", "1000001/60", " 30/60", NULL};
    for (size_t i = 0; bad[i]; i++)
        if (o11y_ratelimit_parse(bad[i], &q, &w) == O11Y_OK)
            fail_msg("accepted %s", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quota_then_refusal_then_refill),
        cmocka_unit_test(a_scan_of_many_keys_stays_bounded),
        cmocka_unit_test(concurrent_decisions_never_overshoot),
        cmocka_unit_test(quota_per_window_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
