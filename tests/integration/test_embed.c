/* Integration test: an existing libmicrohttpd application (examples/legacy_mhd.c) adopting the
 * library on its own daemon: the moved route goes through the pipeline, the old routes still
 * reach the old handler, and both are observed (trace context, access line, metrics). */
#include "harness.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static gs_proc app;

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&app, 0, sizeof app);
    snprintf(app.dir, sizeof app.dir, "/tmp/o11y-embed-XXXXXX");
    if (!mkdtemp(app.dir))
        return -1;
    snprintf(app.log, sizeof app.log, "%s/app.log", app.dir);
    int out[2];
    if (pipe(out) != 0)
        return -1;
    app.pid = fork();
    if (app.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        execl(LEGACY_BINARY, LEGACY_BINARY, "0", app.log, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[64] = "";
    FILE *f = fdopen(out[0], "r");
    if (!f || !fgets(line, sizeof line, f) || sscanf(line, "listening on %d", &app.port) != 1)
        return -1;
    fclose(f);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kill(app.pid, SIGTERM);
    int status = 0;
    waitpid(app.pid, &status, 0);
    gs_cleanup(&app);
    curl_global_cleanup();
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void the_moved_route_goes_through_the_pipeline(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http(&app, "GET", "/hello/ann", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "hello")), "ann");
    char v[128];
    assert_non_null(resp_header(&r, "X-Trace-Id", v, sizeof v));
    assert_string_equal(resp_header(&r, "X-Service", v, sizeof v), "legacy-app");
    http_resp_free(&r);
    /* A wrong method on it is the pipeline's 405, in the envelope. */
    assert_int_equal(http(&app, "DELETE", "/hello/ann", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(resp_code(&r), "METHOD_NOT_ALLOWED");
    http_resp_free(&r);
}

static void old_routes_reach_the_old_handler_and_are_observed(void **state)
{
    (void)state;
    const char *const h[] = {"X-Trace-Id: legacy-trace-1", NULL};
    http_resp r;
    assert_int_equal(http(&app, "GET", "/legacy", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy answer\n");
    char v[128];
    assert_null(resp_header(&r, "X-Service", v, sizeof v)); /* the application's own answer */
    http_resp_free(&r);
    assert_int_equal(http(&app, "GET", "/nope", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "old 404\n"); /* not the pipeline's 404 */
    http_resp_free(&r);
    /* The old handler's log line and the access line carry the request's trace id. */
    json_t *access = log_wait(&app, "http_request", "legacy-trace-1", 1);
    assert_int_equal(json_array_size(access), 1);
    json_t *md = json_object_get(json_array_get(access, 0), "metadata");
    assert_int_equal(json_integer_value(json_object_get(md, "status")), 200);
    json_decref(access);
    json_t *lines = read_log(&app);
    bool traced = false;
    for (size_t i = 0; i < json_array_size(lines); i++) {
        json_t *l = json_array_get(lines, i);
        const char *msg = json_string_value(json_object_get(l, "message"));
        const char *t = json_string_value(json_object_get(l, "trace_id"));
        traced |= msg && t && strcmp(msg, "old handler") == 0 && strcmp(t, "legacy-trace-1") == 0;
    }
    json_decref(lines);
    assert_true(traced);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_moved_route_goes_through_the_pipeline),
        cmocka_unit_test(old_routes_reach_the_old_handler_and_are_observed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
