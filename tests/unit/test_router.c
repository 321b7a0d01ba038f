/* Tests for http/router.c: templates, matching and the Allow header. */
#include "http/http_internal.h"

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static int handler(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)res, (void)user;
    return 0;
}

static o11y_service *make_service(void)
{
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.log.min_level = O11Y_LOG_OFF;
    o11y_service *svc;
    assert_int_equal(o11y_service_create(&cfg, &svc), O11Y_OK);
    return svc;
}

static const o11y__route *match(o11y_service *svc, const char *path, o11y_str *params)
{
    return o11y__route_match(svc, path, strlen(path), params);
}

static void templates_and_parameters(void **state)
{
    (void)state;
    o11y_service *svc = make_service();
    assert_int_equal(o11y_service_route(svc, O11Y_GET, "/projects/{projectId}/episodes/{episodeId}",
                                        handler, NULL, 0),
                     O11Y_OK);
    assert_int_equal(o11y_service_route(svc, O11Y_GET, "/projects/stats", handler, NULL, 0),
                     O11Y_OK);
    assert_int_equal(
        o11y_service_route(svc, O11Y_GET | O11Y_PATCH, "/projects/{projectId}", handler, NULL, 0),
        O11Y_OK);
    assert_int_equal(
        o11y_service_route(svc, O11Y_DELETE, "/projects/{projectId}", handler, NULL, 0), O11Y_OK);
    o11y_str p[O11Y__MAX_PARAMS];
    const o11y__route *r = match(svc, "/projects/p1/episodes/e%201", p);
    assert_non_null(r);
    assert_string_equal(r->template, "/projects/{projectId}/episodes/{episodeId}");
    assert_int_equal(p[0].len, 2);
    assert_memory_equal(p[0].ptr, "p1", 2);
    assert_int_equal(p[1].len, 5);

    r = match(svc, "/projects/stats", p);
    assert_string_equal(r->template, "/projects/stats"); /* literal beats parameter */
    r = match(svc, "/projects/other", p);
    assert_string_equal(r->template, "/projects/{projectId}");
    assert_string_equal(r->allow, "GET, HEAD, PATCH, DELETE");

    assert_null(match(svc, "/projects", p));
    assert_null(match(svc, "/projects/", p)); /* empty segment */
    assert_null(match(svc, "/projects//episodes/x", p));
    assert_null(match(svc, "projects/x", p));
    assert_null(match(svc, "", p));
    o11y_service_destroy(svc);
}

static void bad_registrations(void **state)
{
    (void)state;
    o11y_service *svc = make_service();
    static const char *const bad[] = {"",       "projects", "/a//b",
                                      "/a/{}",  "/a/{x y}", "/a/{x}/{x}",
                                      "/a/%20", "/a/b?c",   "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(o11y_service_route(svc, O11Y_GET, bad[i], handler, NULL, 0), O11Y_EINVAL);
    assert_int_equal(o11y_service_route(svc, 0, "/a", handler, NULL, 0), O11Y_EINVAL);
    assert_int_equal(o11y_service_route(svc, O11Y_GET, "/a", NULL, NULL, 0), O11Y_EINVAL);
    assert_int_equal(o11y_service_route(svc, O11Y_GET, "/a", handler, NULL, 0), O11Y_OK);
    assert_int_equal(o11y_service_route(svc, O11Y_GET | O11Y_POST, "/a", handler, NULL, 0),
                     O11Y_ECONFLICT);
    assert_int_equal(o11y_service_route(svc, O11Y_GET, "/", handler, NULL, 0), O11Y_OK);
    o11y_str p[O11Y__MAX_PARAMS];
    assert_string_equal(match(svc, "/", p)->template, "/");
    o11y_service_destroy(svc);
}

static void methods(void **state)
{
    (void)state;
    assert_int_equal(o11y_method_parse("GET", 3), O11Y_GET);
    assert_int_equal(o11y_method_parse("get", 3), O11Y_METHOD_OTHER);
    assert_int_equal(o11y_method_parse("BREW", 4), O11Y_METHOD_OTHER);
    assert_string_equal(o11y_method_name(O11Y_PATCH), "PATCH");
    assert_string_equal(o11y_method_name(O11Y_METHOD_OTHER), "_OTHER");
    assert_string_equal(o11y_method_name((o11y_method)(O11Y_GET | O11Y_POST)), "_OTHER");
}

static void percent_decoding(void **state)
{
    (void)state;
    char storage[16];
    o11y__arena arena;
    o11y__arena_init(&arena, storage, sizeof storage, 4096);
    o11y_str out;
    assert_true(o11y__percent_decode(&arena, "a%20b+c", 7, false, &out));
    assert_string_equal(out.ptr, "a b+c");
    assert_true(o11y__percent_decode(&arena, "a%20b+c", 7, true, &out));
    assert_string_equal(out.ptr, "a b c");
    assert_true(o11y__percent_decode(&arena, "caf%C3%A9", 9, false, &out));
    assert_int_equal(out.len, 5);
    assert_false(o11y__percent_decode(&arena, "a%00b", 5, false, &out));
    assert_false(o11y__percent_decode(&arena, "a%zz", 4, false, &out));
    assert_false(o11y__percent_decode(&arena, "a%2", 3, false, &out));
    assert_false(o11y__percent_decode(&arena, "%FF", 3, false, &out));
    /* Earlier results stay valid when the arena takes new chunks. */
    o11y_str first, second;
    assert_true(o11y__percent_decode(&arena, "first", 5, false, &first));
    for (int i = 0; i < 50; i++)
        assert_true(o11y__percent_decode(&arena, "0123456789abcdefghij", 20, false, &second));
    assert_string_equal(first.ptr, "first");
    /* The arena's cap holds: 4096 bytes in all, then decoding fails. */
    int fits = 0;
    while (o11y__percent_decode(&arena, "0123456789abcdefghij", 20, false, &second))
        fits++;
    assert_true(fits > 0 && fits < 4096 / 21);
    o11y__arena_release(&arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(templates_and_parameters),
        cmocka_unit_test(bad_registrations),
        cmocka_unit_test(methods),
        cmocka_unit_test(percent_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
