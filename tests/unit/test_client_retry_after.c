/* Tests for client_retry_after_ms: the Retry-After forms the client kit waits on, the ones it
 * ignores, and the cap that keeps far-off values from overflowing. */
#include "client/client_internal.h"

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define CAP_MS (INT64_MAX / 1000 * 1000)

static void delay_seconds(void **state)
{
    (void)state;
    assert_int_equal(client_retry_after_ms("0"), 0);
    assert_int_equal(client_retry_after_ms("1"), 1000);
    assert_int_equal(client_retry_after_ms("120"), 120000);
    assert_int_equal(client_retry_after_ms("9223372036854775"), CAP_MS);
    /* Past the cap, and past what the digits could hold: the cap, never a wrapped value. */
    assert_int_equal(client_retry_after_ms("9223372036854776"), CAP_MS);
    assert_int_equal(client_retry_after_ms("9223372036854779"), CAP_MS);
    assert_int_equal(client_retry_after_ms("99999999999999999999999999999999"), CAP_MS);
}

static void http_date(void **state)
{
    (void)state;
    assert_int_equal(client_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), 0);
    char future[64];
    time_t later = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&later, &tm);
    strftime(future, sizeof future, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    int64_t ms = client_retry_after_ms(future);
    assert_true(ms > 3590 * 1000 && ms <= 3600 * 1000);
    /* The fuzzer's date: year 2066666518. */
    int64_t far = client_retry_after_ms("Wed, 21 Oct 2066666518");
    assert_true(far == -1 || far == CAP_MS);
}

static void ignored(void **state)
{
    (void)state;
    assert_int_equal(client_retry_after_ms(NULL), -1);
    assert_int_equal(client_retry_after_ms(""), -1);
    assert_int_equal(client_retry_after_ms("12s"), -1);
    assert_int_equal(client_retry_after_ms("1.5"), -1);
    assert_int_equal(client_retry_after_ms("-1"), -1);
    assert_int_equal(client_retry_after_ms("soon"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delay_seconds),
        cmocka_unit_test(http_date),
        cmocka_unit_test(ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
