/* Tests for error/error.c: the catalog, negotiation and both renderings (CONTRACT section 1). */
#include "o11y/error.h"

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <string.h>

/* 2026-11-27T10:30:00.123Z */
#define FIXED_NS 1795775400123000000LL

/* A service's own codes, declared the way error.h says (generation-service's errors.h too). */
#define TEST_ERRORS(X)                                                                             \
    X(PROJECT_NOT_FOUND, 404, false, "The project does not exist")                                 \
    X(EPISODE_NUMBER_CONFLICT, 409, false, "The episode number is already used in the project")    \
    X(EPISODE_SAVE_FAILED, 503, true, "The episode could not be saved")
TEST_ERRORS(O11Y_ERROR_DECLARE)
TEST_ERRORS(O11Y_ERROR_DEFINE)

static int register_service_codes(void **state)
{
    (void)state;
    /* Before registration the library knows only its generic catalog. */
    if (o11y_error_lookup("PROJECT_NOT_FOUND"))
        return -1;
    int failed = 0;
#define REGISTER(code, status, retryable, message)                                                 \
    failed |= o11y_error_register(&o11y_err_##code) != O11Y_OK;
    TEST_ERRORS(REGISTER)
#undef REGISTER
    return failed;
}

static void catalog_has_the_contract_codes(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int status;
        bool retryable;
    } want[] = {
        {"VALIDATION_FAILED", 400, false},
        {"IDEMPOTENCY_KEY_INVALID", 400, false},
        {"IDEMPOTENCY_KEY_MISSING", 400, false},
        {"ORIGIN_NOT_ALLOWED", 403, false},
        {"NOT_FOUND", 404, false},
        {"METHOD_NOT_ALLOWED", 405, false},
        {"IDEMPOTENCY_KEY_IN_USE", 409, true},
        {"PAYLOAD_TOO_LARGE", 413, false},
        {"UNSUPPORTED_MEDIA_TYPE", 415, false},
        {"IDEMPOTENCY_KEY_REUSED", 422, false},
        {"BUSINESS_RULE_VIOLATION", 422, false},
        {"RATE_LIMITED", 429, true},
        {"INTERNAL_ERROR", 500, true},
        {"NOT_IMPLEMENTED", 501, false},
        {"SERVICE_UNAVAILABLE", 503, true},
        /* registered by the group setup, as a service does */
        {"PROJECT_NOT_FOUND", 404, false},
        {"EPISODE_NUMBER_CONFLICT", 409, false},
        {"EPISODE_SAVE_FAILED", 503, true},
    };
    /* The constants are the catalog's entries themselves. */
    assert_ptr_equal(o11y_error_lookup("NOT_FOUND"), &o11y_err_NOT_FOUND);
    assert_int_equal(o11y_err_RATE_LIMITED.status, 429);
    assert_string_equal(o11y_error_lookup("PROJECT_NOT_FOUND")->message,
                        o11y_err_PROJECT_NOT_FOUND.message);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const o11y_error_def *d = o11y_error_lookup(want[i].code);
        assert_non_null(d);
        assert_int_equal(d->status, want[i].status);
        assert_int_equal(d->retryable, want[i].retryable);
    }
    assert_null(o11y_error_lookup("NO_SUCH_CODE"));
    assert_null(o11y_error_lookup(NULL));
}

static void registration_rules(void **state)
{
    (void)state;
    o11y_error_def d = {"QUOTA_EXCEEDED", 429, true, "The quota is used up"};
    assert_int_equal(o11y_error_register(&d), O11Y_OK);
    assert_int_equal(o11y_error_register(&d), O11Y_OK); /* identical: fine */
    assert_int_equal(o11y_error_lookup("QUOTA_EXCEEDED")->status, 429);
    o11y_error_def clash = {"QUOTA_EXCEEDED", 400, false, "other"};
    assert_int_equal(o11y_error_register(&clash), O11Y_ECONFLICT);
    o11y_error_def builtin = {"NOT_FOUND", 410, false, "gone"};
    assert_int_equal(o11y_error_register(&builtin), O11Y_ECONFLICT);
    static const char *const bad_codes[] = {"lower_case", "_LEAD", "TRAIL_",  "DOUBLE__UNDER",
                                            "9START",     "",      "SPACE IN"};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        o11y_error_def b = {bad_codes[i], 400, false, "m"};
        assert_int_equal(o11y_error_register(&b), O11Y_EINVAL);
    }
    o11y_error_def bad_status = {"OK_CODE", 200, false, "m"};
    assert_int_equal(o11y_error_register(&bad_status), O11Y_EINVAL);
    assert_int_equal(o11y_error_register(NULL), O11Y_EINVAL);
}

static o11y_error_format neg(const char *accept)
{
    return o11y_error_negotiate(accept, accept ? strlen(accept) : 0);
}

static void negotiation(void **state)
{
    (void)state;
    assert_int_equal(neg(NULL), O11Y_ERROR_ENVELOPE);
    assert_int_equal(neg("*/*"), O11Y_ERROR_ENVELOPE);
    assert_int_equal(neg("application/json"), O11Y_ERROR_ENVELOPE);
    assert_int_equal(neg("application/problem+json"), O11Y_ERROR_PROBLEM);
    assert_int_equal(neg("Application/Problem+JSON"), O11Y_ERROR_PROBLEM);
    assert_int_equal(neg("application/json, application/problem+json"), O11Y_ERROR_PROBLEM);
    assert_int_equal(neg("application/json;q=0.9, application/problem+json;q=0.5"),
                     O11Y_ERROR_ENVELOPE);
    assert_int_equal(neg("application/json;q=0.5, application/problem+json;q=0.5"),
                     O11Y_ERROR_PROBLEM);
    assert_int_equal(neg("application/problem+json;q=0"), O11Y_ERROR_ENVELOPE);
    assert_int_equal(neg("text/html, application/problem+json ; q=0.8, */*;q=0.1"),
                     O11Y_ERROR_PROBLEM);
}

static int quality(const char *accept, const char *type, bool exact)
{
    return o11y_accept_quality(accept, accept ? strlen(accept) : 0, type, exact);
}

/* The one negotiator behind errors, /metrics and /health. */
static void accept_quality(void **state)
{
    (void)state;
    assert_int_equal(quality(NULL, "application/json", false), 1000);
    assert_int_equal(quality(NULL, "application/json", true), -1);
    assert_int_equal(quality("text/html", "application/json", false), -1);
    assert_int_equal(quality("*/*;q=0.1", "application/json", false), 100);
    assert_int_equal(quality("*/*;q=0.1", "application/json", true), -1);
    /* The most specific range decides, whatever its q. */
    assert_int_equal(quality("application/*;q=0.2, */*;q=0.9", "application/json", false), 200);
    assert_int_equal(quality("application/json;q=0.3, application/*", "application/json", false),
                     300);
    assert_int_equal(quality("Application/JSON ; q=0.75", "application/json", true), 750);
    assert_int_equal(quality("application/json;q=2", "application/json", false), 0);
    /* What a Prometheus server sends: OpenMetrics first. */
    static const char prom[] = "application/openmetrics-text;version=1.0.0,"
                               "application/openmetrics-text;version=0.0.1;q=0.75,"
                               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_int_equal(quality(prom, "application/openmetrics-text", true), 1000);
    assert_int_equal(quality(prom, "text/plain", false), 500);
}

static json_t *render(const o11y_error_info *info, o11y_error_format f, int *status)
{
    size_t len;
    char *body = o11y_error_render(info, f, &len, status);
    assert_non_null(body);
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(j);
    o11y_free(body);
    return j;
}

static void envelope_shape(void **state)
{
    (void)state;
    const char details[] = "{\"projectId\":\"proj_123\",\"episodeNumber\":3}";
    o11y_error_info info = {
        .code = "EPISODE_NUMBER_CONFLICT",
        .message = "Episode number 3 already exists in project proj_123",
        .details_json = details,
        .details_len = sizeof details - 1,
        .trace_id = {"trace-1", 7},
        .timestamp_ns = FIXED_NS,
    };
    int status = 0;
    size_t len;
    char *body = o11y_error_render(&info, O11Y_ERROR_ENVELOPE, &len, &status);
    assert_int_equal(status, 409);
    assert_string_equal(body,
                        "{\"success\":false,\"error\":{\"code\":\"EPISODE_NUMBER_CONFLICT\","
                        "\"message\":\"Episode number 3 already exists in project proj_123\","
                        "\"details\":{\"projectId\":\"proj_123\",\"episodeNumber\":3},"
                        "\"traceId\":\"trace-1\",\"timestamp\":\"2026-11-27T10:30:00.123Z\"}}");
    o11y_free(body);
}

static void problem_details_shape(void **state)
{
    (void)state;
    o11y_error_info info = {
        .code = "PROJECT_NOT_FOUND", .trace_id = {"t", 1}, .timestamp_ns = FIXED_NS};
    int status;
    json_t *j = render(&info, O11Y_ERROR_PROBLEM, &status);
    assert_int_equal(status, 404);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "about:blank");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "PROJECT_NOT_FOUND");
    assert_string_equal(json_string_value(json_object_get(j, "traceId")), "t");
    assert_string_equal(json_string_value(json_object_get(j, "timestamp")),
                        "2026-11-27T10:30:00.123Z");
    /* RFC 9457 section 4.2.1: with about:blank the title is the status phrase. */
    assert_string_equal(json_string_value(json_object_get(j, "title")), "Not Found");
    assert_non_null(json_object_get(j, "detail"));
    json_decref(j);

    info.code = "PAYLOAD_TOO_LARGE";
    j = render(&info, O11Y_ERROR_PROBLEM, &status);
    assert_string_equal(json_string_value(json_object_get(j, "title")), "Content Too Large");
    json_decref(j);
    info.code = "NOT_IMPLEMENTED";
    j = render(&info, O11Y_ERROR_PROBLEM, &status);
    assert_int_equal(status, 501);
    assert_string_equal(json_string_value(json_object_get(j, "title")), "Not Implemented");
    json_decref(j);

    info.code = "PROJECT_NOT_FOUND";
    info.problem_base = "https://errors.example/";
    j = render(&info, O11Y_ERROR_PROBLEM, &status);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "https://errors.example/PROJECT_NOT_FOUND");
    /* A type of the service's own: the title describes that type. */
    assert_string_equal(json_string_value(json_object_get(j, "title")),
                        "The project does not exist");
    json_decref(j);
}

static void server_errors_never_leak(void **state)
{
    (void)state;
    const char details[] = "{\"sql\":\"INSERT INTO episodes\"}";
    o11y_error_info info = {
        .code = "EPISODE_SAVE_FAILED",
        .message = "disk I/O error at /var/lib/db.sqlite: ENOSPC",
        .details_json = details,
        .details_len = sizeof details - 1,
        .trace_id = {"t", 1},
    };
    int status;
    for (int f = 0; f < 2; f++) {
        size_t len;
        char *body = o11y_error_render(&info, (o11y_error_format)f, &len, &status);
        assert_int_equal(status, 503);
        assert_null(strstr(body, "ENOSPC"));
        assert_null(strstr(body, "/var/lib"));
        assert_null(strstr(body, "INSERT"));
        assert_non_null(strstr(body, "The episode could not be saved"));
        o11y_free(body);
    }
}

static void unknown_code_is_internal_error(void **state)
{
    (void)state;
    o11y_error_info info = {.code = "WHATEVER", .message = "secret", .trace_id = {"t", 1}};
    int status;
    json_t *j = render(&info, O11Y_ERROR_ENVELOPE, &status);
    assert_int_equal(status, 500);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "INTERNAL_ERROR");
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        "An unexpected error occurred");
    json_decref(j);
}

static void messages_are_escaped(void **state)
{
    (void)state;
    o11y_error_info info = {
        .code = "VALIDATION_FAILED", .message = "bad \"quote\"\n\x01 \xff", .trace_id = {"t", 1}};
    int status;
    json_t *j = render(&info, O11Y_ERROR_ENVELOPE, &status);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        "bad \"quote\"\n\x01 \xEF\xBF\xBD");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(catalog_has_the_contract_codes),
        cmocka_unit_test(registration_rules),
        cmocka_unit_test(negotiation),
        cmocka_unit_test(accept_quality),
        cmocka_unit_test(envelope_shape),
        cmocka_unit_test(problem_details_shape),
        cmocka_unit_test(server_errors_never_leak),
        cmocka_unit_test(unknown_code_is_internal_error),
        cmocka_unit_test(messages_are_escaped),
    };
    return cmocka_run_group_tests(tests, register_service_codes, NULL);
}
