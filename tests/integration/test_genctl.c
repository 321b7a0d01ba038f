/* Integration tests: genctl against the real generation-service, and end to end: genctl ->
 * generation-service -> chat_backend (an OpenAI-compatible service built on libo11y), three
 * processes with three log files joined into one trace that o11y-trace rebuilds. */
#include "harness.h"

#include <fcntl.h>
#include <o11y/trace.h>
#include <signal.h>
#include <sqlite3.h>
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

/* Runs genctl with --url for p, a key file and a log file in p's folder, then args. */
static int genctl(const gs_proc *p, const char *const *args, char **out, char **err)
{
    char url[64], keys[160], log[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", p->port);
    snprintf(keys, sizeof keys, "%s/genctl.keys", p->dir);
    snprintf(log, sizeof log, "%s/genctl.log", p->dir);
    const char *argv[32] = {GENCTL_BINARY, "--url", url, "--keys-file", keys, "--log-file", log};
    size_t n = 7;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run_program(argv, p->dir, out, err);
}

static json_t *genctl_json(const gs_proc *p, const char *const *args, int want_rc)
{
    char *out, *err;
    int rc = genctl(p, args, &out, &err);
    if (rc != want_rc)
        fprintf(stderr, "genctl exited %d: %s\n", rc, err);
    assert_int_equal(rc, want_rc);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    free(out);
    free(err);
    return doc;
}

static const char *data_str(json_t *doc, const char *key)
{
    return json_string_value(json_object_get(json_object_get(doc, "data"), key));
}

/* Every line of a JSON-lines file (the test fails on a line that is not JSON). */
static json_t *lines_of(const char *path)
{
    size_t len;
    char *text = slurp(path, &len);
    assert_non_null(text);
    json_t *all = json_array();
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(l, 0, NULL);
        assert_non_null(j);
        json_array_append_new(all, j);
    }
    free(text);
    return all;
}

static const char *s(json_t *line, const char *key)
{
    const char *v = json_string_value(json_object_get(line, key));
    return v ? v : "";
}

/* The first line with this event (and, when method is set, metadata.method) in the trace. */
static json_t *find(json_t *lines, const char *trace, const char *event, const char *method,
                    const char *route_part)
{
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        json_t *md = json_object_get(l, "metadata");
        if (strcmp(s(l, "trace_id"), trace) == 0 && strcmp(s(l, "event"), event) == 0 &&
            (!method || strcmp(s(md, "method"), method) == 0) &&
            (!route_part || strstr(s(md, "route"), route_part)))
            return l;
    }
    return NULL;
}

static pid_t start_backend(int port, const char *log)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(CHAT_BACKEND_BINARY, CHAT_BACKEND_BINARY, "--port", p, "--log-file", log,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd = raw_connect(port);
        if (fd >= 0) {
            close(fd);
            return pid;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void one_trace_across_three_processes(void **state)
{
    (void)state;
    char dir[] = "/tmp/o11y-e2e-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char backend_log[128];
    snprintf(backend_log, sizeof backend_log, "%s/backend.log", dir);
    int bport = harness_free_port();
    pid_t backend = start_backend(bport, backend_log);
    assert_true(backend > 0);
    char llm[64];
    snprintf(llm, sizeof llm, "http://127.0.0.1:%d/v1", bport);
    gs_proc p;
    const char *args[] = {"--llm-url", llm, NULL};
    assert_int_equal(gs_start(&p, args), 0);

    json_t *proj = genctl_json(&p, (const char *[]){"--json", "project", "create", "E2E", NULL}, 0);
    char project[64];
    snprintf(project, sizeof project, "%s", data_str(proj, "id"));
    json_decref(proj);
    json_t *ep = genctl_json(&p,
                             (const char *[]){"--json", "episode", "create", "--project", project,
                                              "--number", "1", "--title", "Pilot", NULL},
                             0);
    char episode[64];
    snprintf(episode, sizeof episode, "%s", data_str(ep, "id"));
    json_decref(ep);
    json_t *gen = genctl_json(&p,
                              (const char *[]){"--json", "generate", "--project", project,
                                               "--episode", episode, "--prompt", "a pilot", NULL},
                              0);
    const char *trace = json_string_value(json_object_get(gen, "traceId"));
    assert_non_null(trace);
    json_t *g = json_object_get(json_object_get(gen, "data"), "generation");
    assert_string_equal(s(g, "status"), "completed");
    assert_non_null(strstr(s(g, "output"), "HOST: Welcome back to the show."));
    assert_true(json_array_size(json_object_get(json_object_get(gen, "data"), "events")) >= 2);
    char job[64];
    snprintf(job, sizeof job, "%s", s(g, "jobId"));

    assert_int_equal(gs_stop(&p), 0);
    kill(backend, SIGTERM);
    int status = -1;
    waitpid(backend, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0); /* drained and stopped */
    char genctl_log[160];
    snprintf(genctl_log, sizeof genctl_log, "%s/genctl.log", p.dir);
    json_t *files[3] = {lines_of(genctl_log), lines_of(p.log), lines_of(backend_log)};
    /* every line of every process that names the job carries the one trace id, and each
     * process wrote some */
    for (size_t f = 0; f < 3; f++) {
        size_t in_trace = 0, i;
        json_t *l;
        json_array_foreach(files[f], i, l)
        {
            if (strcmp(s(l, "job_id"), job) == 0)
                assert_string_equal(s(l, "trace_id"), trace);
            in_trace += strcmp(s(l, "trace_id"), trace) == 0;
        }
        assert_true(in_trace >= 1);
    }
    /* spans chain parent to child: genctl's command -> its POST -> the service's POST ->
     * the service's backend call -> the backend's request */
    json_t *root = json_array_get(files[0], json_array_size(files[0]) - 1); /* genctl_finished */
    assert_string_equal(s(root, "event"), "genctl_finished");
    assert_string_equal(s(root, "trace_id"), trace);
    json_t *cpost = find(files[0], trace, "http_client_request", "POST", "/generations");
    json_t *spost = find(files[1], trace, "http_request", "POST", "/generations");
    json_t *scall = find(files[1], trace, "http_client_request", "POST", "/chat/completions");
    json_t *bpost = find(files[2], trace, "http_request", "POST", "/v1/chat/completions");
    assert_non_null(cpost);
    assert_non_null(spost);
    assert_non_null(scall);
    assert_non_null(bpost);
    assert_string_equal(s(cpost, "parent_span_id"), s(root, "span_id"));
    assert_string_equal(s(spost, "parent_span_id"), s(cpost, "span_id"));
    assert_string_equal(s(scall, "parent_span_id"), s(spost, "span_id"));
    assert_string_equal(s(bpost, "parent_span_id"), s(scall, "span_id"));
    assert_string_equal(s(bpost, "job_id"), job);
    /* the follower's stream is a child of the command too */
    json_t *sse = find(files[0], trace, "http_client_request", "GET", "/events");
    assert_non_null(sse);
    assert_string_equal(s(sse, "parent_span_id"), s(root, "span_id"));
    for (size_t f = 0; f < 3; f++)
        json_decref(files[f]);

    /* o11y-trace rebuilds the tree from the three files */
    const char *argv[] = {O11Y_TRACE_BINARY, "--json", trace, genctl_log, p.log, backend_log, NULL};
    char *out, *err;
    assert_int_equal(run_program(argv, dir, &out, &err), 0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    free(out);
    free(err);
    json_t *spans = json_object_get(doc, "spans");
    json_t *first = json_array_get(spans, 0);
    assert_string_equal(s(first, "name"), "genctl generate");
    assert_string_equal(s(first, "service"), "genctl");
    assert_int_equal(json_integer_value(json_object_get(first, "depth")), 0);
    bool backend_at_4 = false;
    size_t i;
    json_t *sp;
    json_array_foreach(spans, i, sp)
    {
        if (strcmp(s(sp, "service"), "chat-backend") == 0 &&
            strcmp(s(sp, "name"), "POST /v1/chat/completions") == 0)
            backend_at_4 = json_integer_value(json_object_get(sp, "depth")) == 4;
    }
    assert_true(backend_at_4);
    json_decref(doc);
    json_decref(gen);
    gs_cleanup(&p);
    unlink(backend_log);
    rmdir(dir);
}

/* Ctrl-C during `genctl episode create`, then the same command again: one episode. The first
 * call is held inside the service by a write lock on its database, so the interrupt lands while
 * the create is in flight. */
static void ctrl_c_then_rerun_creates_once(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--threads", "4", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char project[64];
    create_project(&p, project);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p.db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    char url[64], keys[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", p.port);
    snprintf(keys, sizeof keys, "%s/genctl.keys", p.dir);
    const char *create[] = {GENCTL_BINARY, "--url",   url,         "--keys-file", keys,
                            "episode",     "create",  "--project", project,       "--number",
                            "7",           "--title", "Seven",     NULL};
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(create[0], (char *const *)create);
        _exit(127);
    }
    usleep(500000);
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status)); /* interrupted, no answer seen */
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    /* the same command again: the kept key makes it a replay (a new key would get 409) */
    char *out, *err;
    assert_int_equal(run_program(create, p.dir, &out, &err), 0);
    assert_non_null(strstr(out, "\"number\": 7"));
    free(out);
    free(err);
    json_t *list = genctl_json(
        &p, (const char *[]){"--json", "episode", "list", "--project", project, NULL}, 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(list, "data"), "total")),
                     1);
    json_decref(list);
    /* the replay spent the key: the same command now is a new create, refused as a conflict */
    assert_int_equal(run_program(create, p.dir, &out, &err), 4);
    assert_non_null(strstr(err, "EPISODE_NUMBER_CONFLICT"));
    free(out);
    free(err);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

static void failures_name_their_trace_and_exit_by_class(void **state)
{
    (void)state;
    gs_proc p;
    assert_int_equal(gs_start(&p, NULL), 0);
    char project[64];
    create_project(&p, project);
    char *out, *err;
    /* 404: exit 3, the trace id printed, and the service logged that trace */
    assert_int_equal(genctl(&p,
                            (const char *[]){"episode", "get", "--project", project, "--episode",
                                             "ep_00000000000000000000000000000000", NULL},
                            &out, &err),
                     3);
    assert_non_null(strstr(err, "EPISODE_NOT_FOUND"));
    assert_non_null(strstr(err, "The episode does not exist. It may have been deleted."));
    const char *t = strstr(err, "trace ");
    assert_non_null(t);
    char trace[64];
    assert_int_equal(sscanf(t, "trace %63s", trace), 1);
    json_t *lines = log_wait(&p, "http_request", trace, 1);
    assert_int_equal(json_array_size(lines), 1);
    json_decref(lines);
    free(out);
    free(err);
    /* --json: one document with the typed error */
    json_t *doc = genctl_json(&p,
                              (const char *[]){"--json", "episode", "create", "--project", project,
                                               "--number", "1", "--title", "", NULL},
                              4);
    assert_false(json_is_true(json_object_get(doc, "ok")));
    json_t *e = json_object_get(doc, "error");
    assert_string_equal(s(e, "code"), "VALIDATION_FAILED");
    assert_int_equal(json_integer_value(json_object_get(e, "status")), 400);
    assert_true(o11y_trace_id_valid(s(doc, "traceId"), strlen(s(doc, "traceId"))));
    assert_non_null(json_object_get(e, "details"));
    json_decref(doc);
    /* usage errors never reach the service: exit 2 */
    const char *const bad[][8] = {
        {"bogus", NULL},
        {"--idempotency-key", "has space", "project", "create", "x", NULL},
        {"project", "get", "../../etc", NULL},
        {"episode", "create", "--project", "p1", "--number", "-3", "--title", NULL},
        {"generate", "--project", "p1", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(genctl(&p, bad[i], &out, &err), 2);
        free(out);
        free(err);
    }
    const char *ftp[] = {GENCTL_BINARY, "--url", "ftp://127.0.0.1", "health", NULL};
    assert_int_equal(run_program(ftp, p.dir, &out, &err), 2);
    free(out);
    free(err);
    /* nobody listening: exit 6, with a trace id */
    char closed[64];
    snprintf(closed, sizeof closed, "http://127.0.0.1:%d", harness_free_port());
    const char *down[] = {GENCTL_BINARY, "--url", closed, "--timeout-ms", "800", "health", NULL};
    assert_int_equal(run_program(down, p.dir, &out, &err), 6);
    assert_non_null(strstr(err, "NETWORK_ERROR"));
    assert_non_null(strstr(err, "trace "));
    free(out);
    free(err);
    /* health: 0 and the dependencies */
    assert_int_equal(genctl(&p, (const char *[]){"health", NULL}, &out, &err), 0);
    assert_non_null(strstr(out, "database"));
    free(out);
    free(err);
    /* cancel of a finished or unknown generation */
    assert_int_equal(
        genctl(&p, (const char *[]){"cancel", "gen_00000000000000000000000000000000", NULL}, &out,
               &err),
        3);
    assert_non_null(strstr(err, "GENERATION_NOT_FOUND"));
    free(out);
    free(err);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

/* Not a terminal: plain progress lines, then the script. */
static void generate_prints_plain_lines_off_a_terminal(void **state)
{
    (void)state;
    gs_proc p;
    const char *args[] = {"--step-ms", "50", NULL};
    assert_int_equal(gs_start(&p, args), 0);
    char project[64], episode[64];
    create_project(&p, project);
    create_episode(&p, project, 1, episode);
    char *out, *err;
    assert_int_equal(genctl(&p,
                            (const char *[]){"generate", "--project", project, "--episode", episode,
                                             "--prompt", "plain", NULL},
                            &out, &err),
                     0);
    assert_non_null(strstr(out, "progress 25% outline\nprogress 50% scenes\n"));
    assert_non_null(strstr(out, "completed\n"));
    assert_non_null(strstr(out, "\"plain\""));
    assert_null(strchr(out, '\r')); /* no bar */
    assert_non_null(strstr(err, "trace "));
    free(out);
    free(err);
    assert_int_equal(gs_stop(&p), 0);
    gs_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_trace_across_three_processes),
        cmocka_unit_test(ctrl_c_then_rerun_creates_once),
        cmocka_unit_test(failures_name_their_trace_and_exit_by_class),
        cmocka_unit_test(generate_prints_plain_lines_off_a_terminal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
