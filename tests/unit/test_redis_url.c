/* Tests for o11y_redis_parse_url: the URL forms it takes and the ones it refuses. */
#include "o11y/redis.h"

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

static void accepted(void **state)
{
    (void)state;
    static const struct {
        const char *url, *host, *user, *password;
        unsigned port, db;
    } table[] = {
        {"redis://127.0.0.1:6380", "127.0.0.1", NULL, NULL, 6380, 0},
        {"redis://cache", "cache", NULL, NULL, 6379, 0},
        {"redis://:pw@h:1/2", "h", NULL, "pw", 1, 2},
        {"redis://alice:p%40ss%3Aw@h/15", "h", "alice", "p@ss:w", 6379, 15},
        {"redis://alice@h", "h", "alice", NULL, 6379, 0},
        {"redis://[::1]:7000/1", "::1", NULL, NULL, 7000, 1},
        {"redis://h:6379/", "h", NULL, NULL, 6379, 0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char buf[256];
        o11y_redis_target t;
        if (o11y_redis_parse_url(table[i].url, buf, sizeof buf, &t) != O11Y_OK)
            fail_msg("refused %s", table[i].url);
        assert_string_equal(t.host, table[i].host);
        assert_int_equal(t.port, table[i].port);
        assert_int_equal(t.db, table[i].db);
        if (table[i].user)
            assert_string_equal(t.user, table[i].user);
        else
            assert_null(t.user);
        if (table[i].password)
            assert_string_equal(t.password, table[i].password);
        else
            assert_null(t.password);
    }
}

static void refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "rediss://h:6379", "http://h",      "redis://",      "redis://:pw@", "redis://h:0",
        "redis://h:70000", "redis://h:12x", "redis://h/abc", "redis://h/-1", "redis://[::1",
        "redis://a%zzb",   "redis://a%00b", "redis://h:",    NULL,
    };
    for (size_t i = 0; bad[i]; i++) {
        char buf[256];
        o11y_redis_target t;
        if (o11y_redis_parse_url(bad[i], buf, sizeof buf, &t) == O11Y_OK)
            fail_msg("accepted %s", bad[i]);
    }
    char tiny[4];
    o11y_redis_target t;
    assert_int_equal(o11y_redis_parse_url("redis://longhostname", tiny, sizeof tiny, &t),
                     O11Y_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
