/* Integration tests: o11y-trace over real generation-service logs — a request and its job as
 * one tree, found by trace id or job id, across rotated and gzipped files, past garbage. */
#include "harness.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static gs_proc svc;
static char job_id[64];

enum { TOOL_OK = 0, TOOL_NOT_FOUND = 1, TOOL_USAGE = 2 };

/* Runs o11y-trace with args; its stdout (malloc'd) into *out, its stderr into *err. */
static int tool(const char *const *args, char **out, char **err)
{
    const char *argv[16] = {O11Y_TRACE_BINARY};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = run_program(argv, svc.dir, out, err);
    assert_non_null(*out);
    assert_non_null(*err);
    return rc;
}

static json_t *tool_json(const char *id, const char *path, int want_rc)
{
    char *out, *err;
    const char *const args[] = {"--json", id, path, NULL};
    assert_int_equal(tool(args, &out, &err), want_rc);
    json_error_t e;
    json_t *doc = json_loads(out, 0, &e);
    if (!doc)
        fail_msg("not JSON: %s (stderr %s)", out, err);
    free(out);
    free(err);
    return doc;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const args[] = {"--step-ms", "30", NULL};
    if (gs_start(&svc, args) != 0)
        return -1;
    char project[64], episode[64];
    create_project(&svc, project);
    create_episode(&svc, project, 1, episode);
    const char *const h[] = {"X-Trace-Id: ot-trace-1",
                             "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                             NULL};
    http_resp r;
    if (post_generation(&svc, project, episode, "bees", h, &r) != 0 || r.status != 202)
        return -1;
    snprintf(job_id, sizeof job_id, "%s", json_string_value(json_object_get(r.json, "jobId")));
    char path[128];
    snprintf(path, sizeof path, "/generations/%s",
             json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    /* Another request about the same generation, in a trace of its own. */
    const char *const other[] = {"X-Trace-Id: ot-other", NULL};
    if (http(&svc, "GET", path, other, NULL, 0, &r) != 0)
        return -1;
    http_resp_free(&r);
    json_t *done = log_wait(&svc, "generation_completed", "ot-trace-1", 1);
    size_t found = json_array_size(done);
    json_decref(done);
    return found == 1 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = gs_stop(&svc);
    gs_cleanup(&svc);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* The span named name, or fails. */
static json_t *span_named(json_t *doc, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(doc, "spans"), i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            return s;
    }
    fail_msg("no span %s", name);
    return NULL;
}

static size_t count_events(json_t *span, const char *event)
{
    size_t i, n = 0;
    json_t *l;
    json_array_foreach(json_object_get(span, "lines"), i, l)
    {
        const char *e = json_string_value(json_object_get(l, "event"));
        n += e && strcmp(e, event) == 0;
    }
    return n;
}

static size_t total_lines(json_t *doc)
{
    size_t i, n = 0;
    json_t *s;
    json_array_foreach(json_object_get(doc, "spans"), i, s) n +=
        json_array_size(json_object_get(s, "lines"));
    return n;
}

static void a_request_and_its_job_are_one_span(void **state)
{
    (void)state;
    json_t *doc = tool_json("ot-trace-1", svc.log, TOOL_OK);
    assert_int_equal(json_array_size(json_object_get(doc, "spans")), 1);
    json_t *post = span_named(doc, "POST /generations");
    assert_int_equal(json_integer_value(json_object_get(post, "status")), 202);
    assert_string_equal(json_string_value(json_object_get(post, "service")), "generation-service");
    assert_string_equal(json_string_value(json_object_get(post, "parentSpanId")),
                        "00f067aa0ba902b7");
    assert_int_equal(count_events(post, "http_request"), 1);
    assert_int_equal(count_events(post, "generation_started"), 1);
    assert_int_equal(count_events(post, "generation_completed"), 1);
    assert_int_equal(count_events(post, "generation_progress"), 4);
    assert_true(json_real_value(json_object_get(post, "durationMs")) >= 4 * 30 - 5);
    assert_false(json_is_true(json_object_get(post, "failed")));
    json_decref(doc);
}

static void a_job_id_finds_its_trace(void **state)
{
    (void)state;
    json_t *by_trace = tool_json("ot-trace-1", svc.log, TOOL_OK);
    json_t *by_job = tool_json(job_id, svc.log, TOOL_OK);
    /* The job's lines, the POST's, and the other trace's GET (it carries the job id). */
    json_t *post = span_named(by_job, "POST /generations");
    assert_int_equal(count_events(post, "generation_completed"), 1);
    json_t *get = span_named(by_job, "GET /generations/{id}");
    assert_int_equal(json_integer_value(json_object_get(get, "status")), 200);
    assert_int_equal(total_lines(by_job), total_lines(by_trace) + 1);
    json_decref(by_trace);
    json_decref(by_job);
}

/* The log split in two, the older half gzipped, in a directory with a hidden file. */
static void rotated_and_gzipped_files_in_a_directory(void **state)
{
    (void)state;
    size_t len;
    char *log = read_log_raw(&svc, &len);
    char *mid = memchr(log + len / 2, '\n', len - len / 2);
    assert_non_null(mid);
    size_t first = (size_t)(mid + 1 - log);
    char dir[160], path[200];
    snprintf(dir, sizeof dir, "%s/rotated", svc.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/service.log.1.gz", dir);
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, log, (unsigned)first), (int)first);
    assert_int_equal(gzclose(gz), Z_OK);
    snprintf(path, sizeof path, "%s/service.log", dir);
    FILE *f = fopen(path, "wb");
    assert_int_equal(fwrite(mid + 1, 1, len - first, f), len - first);
    fclose(f);
    snprintf(path, sizeof path, "%s/.hidden", dir);
    f = fopen(path, "wb");
    fputs("{\"trace_id\":\"ot-trace-1\",\"timestamp\":\"2020-01-01T00:00:00.000Z\"}\n", f);
    fclose(f);
    free(log);
    json_t *whole = tool_json("ot-trace-1", svc.log, TOOL_OK);
    json_t *split = tool_json("ot-trace-1", dir, TOOL_OK);
    assert_int_equal(total_lines(split), total_lines(whole));
    assert_true(json_equal(json_object_get(split, "spans"), json_object_get(whole, "spans")));
    json_decref(whole);
    json_decref(split);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void bad_input(void **state)
{
    (void)state;
    char path[200];
    /* Garbage holding the id, a line with a broken timestamp, a 3 MiB line holding it, and the
     * real log after them. */
    snprintf(path, sizeof path, "%s/garbage.log", svc.dir);
    size_t huge = 3u << 20;
    char *text = malloc(huge + 4096);
    size_t n = (size_t)sprintf(text, "not json \"ot-trace-1\"\n"
                                     "{\"trace_id\":\"ot-trace-1\",\"timestamp\":\"yesterday\"}\n"
                                     "{\"trace_id\":\"ot-trace-1\"");
    memset(text + n, 'x', huge);
    n += huge;
    text[n++] = '\n';
    write_file(path, text, n);
    free(text);
    char *out, *err;
    const char *const both[] = {"--json", "ot-trace-1", path, svc.log, NULL};
    assert_int_equal(tool(both, &out, &err), TOOL_OK);
    json_t *doc = json_loads(out, 0, NULL);
    json_t *clean = tool_json("ot-trace-1", svc.log, TOOL_OK);
    assert_true(json_equal(json_object_get(doc, "spans"), json_object_get(clean, "spans")));
    assert_int_equal(json_integer_value(json_object_get(doc, "unparsableLines")), 1);
    assert_non_null(strstr(err, "skipped 1 lines that are not JSON, 1 over 1 MiB"));
    json_decref(doc);
    json_decref(clean);
    free(out);
    free(err);

    /* A damaged gzip file: said, exit 2. */
    snprintf(path, sizeof path, "%s/damaged.log.gz", svc.dir);
    write_file(path, "\x1f\x8b\x08\x00garbage", 11);
    const char *const damaged[] = {"ot-trace-1", path, NULL};
    assert_int_equal(tool(damaged, &out, &err), TOOL_USAGE);
    assert_non_null(strstr(err, "damaged.log.gz"));
    free(out);
    free(err);

    /* A missing path, an id nothing has, an id no service would accept. */
    const char *const missing[] = {"ot-trace-1", "/nonexistent/o11y.log", NULL};
    assert_int_equal(tool(missing, &out, &err), TOOL_USAGE);
    assert_non_null(strstr(err, "/nonexistent/o11y.log: No such file or directory"));
    free(out);
    free(err);
    const char *const absent[] = {"no-such-trace", svc.log, NULL};
    assert_int_equal(tool(absent, &out, &err), TOOL_NOT_FOUND);
    assert_non_null(strstr(err, "no line has trace or job id no-such-trace"));
    free(out);
    free(err);
    const char *const invalid[] = {"a\"b", svc.log, NULL};
    assert_int_equal(tool(invalid, &out, &err), TOOL_USAGE);
    assert_null(strstr(err, "a\"b")); /* never echoed */
    free(out);
    free(err);
}

static void the_tree_for_people(void **state)
{
    (void)state;
    char *out, *err;
    const char *const args[] = {"--width", "100", "ot-trace-1", svc.log, NULL};
    assert_int_equal(tool(args, &out, &err), TOOL_OK);
    assert_non_null(strstr(out, "1 span, "));
    assert_non_null(strstr(out, "POST /generations"));
    assert_non_null(strstr(out, " 202 #"));
    assert_non_null(strstr(out, "INFO  generation_completed"));
    assert_null(strstr(out, "\033[")); /* not a terminal: no colours */
    free(out);
    free(err);
}

/* A forged line cannot drive the terminal: control characters print as '?'. */
static void escape_sequences_never_reach_the_terminal(void **state)
{
    (void)state;
    char path[200];
    snprintf(path, sizeof path, "%s/forged.log", svc.dir);
    const char line[] = "{\"timestamp\":\"2026-11-29T13:00:00.000Z\",\"level\":\"ERROR\","
                        "\"service\":\"evil\\u001b]0;owned\\u0007\",\"trace_id\":\"forged-1\","
                        "\"span_id\":\"aaaaaaaaaaaaaaaa\",\"event\":\"x\\u001b[2J\","
                        "\"message\":\"\\u001b[31mred\\r\\nINFO fake line\"}\n";
    write_file(path, line, sizeof line - 1);
    char *out, *err;
    const char *const args[] = {"forged-1", path, NULL};
    assert_int_equal(tool(args, &out, &err), TOOL_OK);
    assert_null(strchr(out, '\033'));
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\a'));
    assert_non_null(strstr(out, "x?[2J: ?[31mred??INFO fake line"));
    free(out);
    free(err);
}

/* --follow prints the job's lines as they are written and ends with the job. */
static void follow_a_live_job(void **state)
{
    (void)state;
    gs_proc slow;
    const char *const args[] = {"--step-ms", "300", NULL};
    assert_int_equal(gs_start(&slow, args), 0);
    char project[64], episode[64];
    create_project(&slow, project);
    create_episode(&slow, project, 1, episode);
    const char *const h[] = {"X-Trace-Id: ot-live-1", NULL};
    http_resp r;
    assert_int_equal(post_generation(&slow, project, episode, "bees", h, &r), 0);
    assert_int_equal(r.status, 202);
    char job[64];
    snprintf(job, sizeof job, "%s", json_string_value(json_object_get(r.json, "jobId")));
    http_resp_free(&r);
    const char *const argv[] = {O11Y_TRACE_BINARY, "--follow", job, slow.log, NULL};
    /* The job takes about 1.5 s; the tool was started well before its end. */
    char *out, *err;
    assert_int_equal(run_program(argv, slow.dir, &out, &err), 0);
    free(err);
    json_t *done = log_wait(&slow, "generation_completed", "ot-live-1", 1);
    assert_int_equal(json_array_size(done), 1);
    json_decref(done);
    /* Live lines first (time, service, level, event), then the tree. */
    const char *live = strstr(out, "generation-service   INFO  generation_completed");
    const char *tree = strstr(out, "1 span, ");
    assert_non_null(live);
    assert_non_null(tree);
    assert_true(live < tree);
    free(out);
    assert_int_equal(gs_stop(&slow), 0);
    gs_cleanup(&slow);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_request_and_its_job_are_one_span),
        cmocka_unit_test(a_job_id_finds_its_trace),
        cmocka_unit_test(rotated_and_gzipped_files_in_a_directory),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(the_tree_for_people),
        cmocka_unit_test(escape_sequences_never_reach_the_terminal),
        cmocka_unit_test(follow_a_live_job),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
