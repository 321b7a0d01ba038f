/* Unit tests of the in-memory idempotency store's bounds (CONTRACT section 4): per-client
 * shares, eviction of a client's own oldest completed keys, keys in flight never evicted, and
 * a response that cannot be kept leaving its status. */
#include "idempotency/idem_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

enum { NOW = 1000000, LEASE = 60000, TTL = 3600000 };

static const uint8_t FP[O11Y_IDEM_FP_BYTES] = {1, 2, 3};

static o11y_idem_key key(uint64_t client, int n)
{
    o11y_idem_key k = {.client = client};
    snprintf(k.id, sizeof k.id, "%016llx-%d", (unsigned long long)client, n);
    return k;
}

static o11y_idem_result begin(o11y_idem_store *s, o11y_idem_key k, uint64_t *token, char **blob,
                              size_t *len)
{
    *blob = NULL;
    *len = 0;
    return s->ops->begin(s->impl, &k, FP, NOW, LEASE, token, blob, len);
}

/* A record of the stage's shape as far as the store cares: status first, then n bytes. */
static o11y_idem_stored complete(o11y_idem_store *s, o11y_idem_key k, uint64_t token, int status,
                                 size_t n)
{
    char *rec = calloc(1, n + 2);
    rec[0] = (char)(status & 0xff);
    rec[1] = (char)(status >> 8);
    o11y_idem_stored r = s->ops->complete(s->impl, &k, token, FP, rec, n + 2, NOW, NOW + TTL);
    free(rec);
    return r;
}

static o11y_idem_store *store(size_t entries, size_t bytes)
{
    o11y_idem_memory_config c = {.max_entries = entries, .max_bytes = bytes};
    o11y_idem_store *s = NULL;
    assert_int_equal(o11y_idem_store_memory(&c, &s), O11Y_OK);
    return s;
}

static void a_client_in_flight_past_its_share_is_refused(void **state)
{
    (void)state;
    o11y_idem_store *s = store(160, 1 << 20); /* 10 keys per client */
    uint64_t tok;
    char *blob;
    size_t len;
    for (int i = 0; i < 10; i++)
        assert_int_equal(begin(s, key(7, i), &tok, &blob, &len), O11Y_IDEM_NEW);
    /* All ten in flight: nothing of its own can go, and nobody else's is taken. */
    assert_int_equal(begin(s, key(7, 10), &tok, &blob, &len), O11Y_IDEM_FULL);
    assert_int_equal(begin(s, key(8, 0), &tok, &blob, &len), O11Y_IDEM_NEW);
    o11y_idem_store_destroy(s);
}

static void past_its_share_a_client_loses_its_own_oldest_completed_keys(void **state)
{
    (void)state;
    o11y_idem_store *s = store(160, 1 << 20);
    uint64_t tok;
    char *blob;
    size_t len;
    o11y_idem_key other = key(9, 0);
    assert_int_equal(begin(s, other, &tok, &blob, &len), O11Y_IDEM_NEW);
    assert_int_equal(complete(s, other, tok, 201, 10), O11Y_IDEM_STORED);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(begin(s, key(7, i), &tok, &blob, &len), O11Y_IDEM_NEW);
        assert_int_equal(complete(s, key(7, i), tok, 201, 10), O11Y_IDEM_STORED);
    }
    /* Its last ten replay; its first is gone; the other client's key is untouched. */
    for (int i = 990; i < 1000; i++) {
        assert_int_equal(begin(s, key(7, i), &tok, &blob, &len), O11Y_IDEM_REPLAY);
        free(blob);
    }
    assert_int_equal(begin(s, key(7, 0), &tok, &blob, &len), O11Y_IDEM_NEW);
    assert_int_equal(begin(s, other, &tok, &blob, &len), O11Y_IDEM_REPLAY);
    assert_int_equal(len, 12);
    free(blob);
    o11y_idem_store_destroy(s);
}

static void a_response_over_the_share_keeps_its_status(void **state)
{
    (void)state;
    o11y_idem_store *s = store(160, 16 * 1000); /* 1,000 bytes per client */
    uint64_t tok;
    char *blob;
    size_t len;
    o11y_idem_key k = key(5, 1);
    assert_int_equal(begin(s, k, &tok, &blob, &len), O11Y_IDEM_NEW);
    assert_int_equal(complete(s, k, tok, 201, 5000), O11Y_IDEM_STATUS_ONLY);
    assert_int_equal(begin(s, k, &tok, &blob, &len), O11Y_IDEM_REPLAY);
    assert_int_equal(len, O11Y_IDEM_STATUS_BYTES);
    assert_int_equal((unsigned char)blob[0] | (unsigned char)blob[1] << 8, 201);
    free(blob);
    /* Two responses of 600 bytes: the second makes room by dropping the first's body. */
    o11y_idem_key a = key(5, 2), b = key(5, 3);
    assert_int_equal(begin(s, a, &tok, &blob, &len), O11Y_IDEM_NEW);
    assert_int_equal(complete(s, a, tok, 200, 600), O11Y_IDEM_STORED);
    assert_int_equal(begin(s, b, &tok, &blob, &len), O11Y_IDEM_NEW);
    assert_int_equal(complete(s, b, tok, 200, 600), O11Y_IDEM_STORED);
    assert_int_equal(begin(s, a, &tok, &blob, &len), O11Y_IDEM_REPLAY);
    assert_int_equal(len, O11Y_IDEM_STATUS_BYTES);
    free(blob);
    assert_int_equal(begin(s, b, &tok, &blob, &len), O11Y_IDEM_REPLAY);
    assert_int_equal(len, 602);
    free(blob);
    o11y_idem_store_destroy(s);
}

static void a_full_store_refuses_rather_than_evicting_others(void **state)
{
    (void)state;
    /* 32 keys, 2 per client: sixteen clients fill it with keys in flight. */
    o11y_idem_store *s = store(32, 1 << 20);
    uint64_t tok;
    char *blob;
    size_t len;
    for (uint64_t c = 0; c < 16; c++)
        for (int i = 0; i < 2; i++)
            assert_int_equal(begin(s, key(c + 100, i), &tok, &blob, &len), O11Y_IDEM_NEW);
    assert_int_equal(begin(s, key(500, 0), &tok, &blob, &len), O11Y_IDEM_FULL);
    o11y_idem_store_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_client_in_flight_past_its_share_is_refused),
        cmocka_unit_test(past_its_share_a_client_loses_its_own_oldest_completed_keys),
        cmocka_unit_test(a_response_over_the_share_keeps_its_status),
        cmocka_unit_test(a_full_store_refuses_rather_than_evicting_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
