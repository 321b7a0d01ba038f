/* Integration tests: generations and Server-Sent Events over real HTTP (CONTRACT sections 6, 7):
 * the full flow, identical streams for two subscribers, late joins, Last-Event-ID, cancel, bad
 * input, a full queue, 500 subscribers at once, the trace id on every line, a restart. */
#include "harness.h"

#include <curl/curl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static gs_proc svc;
static char project[64], episode[64], other_episode[64];

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const args[] = {"--step-ms", "150", "--workers", "2", NULL};
    if (gs_start(&svc, args) != 0)
        return -1;
    create_project(&svc, project);
    create_episode(&svc, project, 1, episode);
    char other_project[64];
    create_project(&svc, other_project);
    create_episode(&svc, other_project, 1, other_episode);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = gs_stop(&svc);
    gs_cleanup(&svc);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* POST /generations; returns the response (the caller frees it). */
static http_resp start_generation(const gs_proc *p, const char *proj, const char *ep,
                                  const char *prompt, const char *trace)
{
    char h[128];
    snprintf(h, sizeof h, "X-Trace-Id: %s", trace ? trace : "gen-test");
    const char *const headers[] = {h, NULL};
    http_resp r;
    assert_int_equal(post_generation(p, proj, ep, prompt, headers, &r), 0);
    return r;
}

/* Reads a whole event stream (until the server ends it, at most timeout_ms). */
static char *stream(int port, const char *id, const char *last_event_id, int timeout_ms)
{
    char req[512];
    int n =
        snprintf(req, sizeof req,
                 "GET /generations/%s/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
                 "%s%s%sConnection: close\r\n\r\n",
                 id, last_event_id ? "Last-Event-ID: " : "", last_event_id ? last_event_id : "",
                 last_event_id ? "\r\n" : "");
    size_t len;
    return raw_exchange(port, req, (size_t)n, timeout_ms, &len);
}

/* The "event: X" names of a stream, in order, joined by commas. */
static void event_names(const char *text, char *out, size_t len)
{
    out[0] = '\0';
    for (const char *p = text; (p = strstr(p, "\nevent: ")) != NULL;) {
        p += 8;
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%.*s", used ? "," : "", (int)(eol - p), p);
        p = eol;
    }
}

/* The body after the HTTP header block. */
static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : resp;
}

/* The stream's content without its chunked framing (the chunk sizes differ per connection). */
static void dechunk(const char *resp, char *out, size_t len)
{
    const char *p = body_of(resp);
    size_t n = 0;
    for (;;) {
        char *end;
        unsigned long size = strtoul(p, &end, 16);
        if (end == p || size == 0 || strncmp(end, "\r\n", 2) != 0)
            break;
        p = end + 2;
        if (strlen(p) < size || n + size >= len)
            break;
        memcpy(out + n, p, size);
        n += size;
        p += size + 2;
    }
    out[n] = '\0';
}

static void full_flow_in_order(void **state)
{
    (void)state;
    http_resp r = start_generation(&svc, project, episode, "A pilot about bees", "flow-trace-1");
    assert_int_equal(r.status, 202);
    const char *id = json_string_value(json_object_get(r.json, "id"));
    const char *job = json_string_value(json_object_get(r.json, "jobId"));
    assert_memory_equal(id, "gen_", 4);
    assert_memory_equal(job, "job_", 4);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "queued");
    char v[128];
    assert_string_equal(resp_header(&r, "X-Job-Id", v, sizeof v), job);
    assert_string_equal(resp_header(&r, "X-Project-Id", v, sizeof v), project);
    char gen[64], jobid[64];
    snprintf(gen, sizeof gen, "%s", id);
    snprintf(jobid, sizeof jobid, "%s", job);
    http_resp_free(&r);

    char *text = stream(svc.port, gen, NULL, 5000);
    /* header names in any case: h2o writes its own in lowercase */
    assert_non_null(strcasestr(text, "Content-Type: text/event-stream"));
    assert_non_null(strcasestr(text, "Cache-Control: no-cache"));
    assert_non_null(strcasestr(text, "X-Accel-Buffering: no"));
    assert_non_null(strstr(body_of(text), "retry: "));
    char names[256];
    event_names(text, names, sizeof names);
    assert_string_equal(names, "progress,progress,progress,progress,completed");
    /* ids from 1, increasing; percentages increasing */
    int last_pct = -1, last_id = 0;
    for (const char *p = text; (p = strstr(p, "\nid: ")) != NULL; p++) {
        int idv = atoi(p + 5);
        assert_int_equal(idv, last_id + 1);
        last_id = idv;
        const char *pct = strstr(p, "\"percentage\":");
        const char *next = strstr(p + 1, "\nid: ");
        if (pct && (!next || pct < next)) {
            int v2 = atoi(pct + 13);
            assert_true(v2 > last_pct);
            last_pct = v2;
        }
    }
    assert_int_equal(last_pct, 100);
    free(text);

    char path[128];
    snprintf(path, sizeof path, "/generations/%s", gen);
    assert_int_equal(http(&svc, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "completed");
    assert_int_equal(json_integer_value(json_object_get(r.json, "progress")), 100);
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "output")), "bees"));
    assert_true(json_integer_value(json_object_get(r.json, "totalTokens")) > 0);
    assert_string_equal(resp_header(&r, "X-Job-Id", v, sizeof v), jobid);
    http_resp_free(&r);

    /* The POST's trace id is on every line about this generation. */
    json_t *started = log_wait(&svc, "generation_completed", "flow-trace-1", 1);
    assert_int_equal(json_array_size(started), 1);
    json_decref(started);
    json_t *lines = read_log(&svc);
    size_t i, about = 0;
    json_t *l;
    /* The job's lines belong to the POST's span: the span id of its access line. */
    const char *span = NULL;
    json_array_foreach(lines, i, l)
    {
        const char *ev = json_string_value(json_object_get(l, "event"));
        const char *t = json_string_value(json_object_get(l, "trace_id"));
        const char *method =
            json_string_value(json_object_get(json_object_get(l, "metadata"), "method"));
        if (ev && t && method && !strcmp(ev, "http_request") && !strcmp(t, "flow-trace-1") &&
            !strcmp(method, "POST"))
            span = json_string_value(json_object_get(l, "span_id"));
    }
    assert_non_null(span);
    assert_int_equal(strlen(span), 16);
    assert_int_equal(strspn(span, "0123456789abcdef"), 16);
    assert_true(strcmp(span, "0000000000000000") != 0);
    json_array_foreach(lines, i, l)
    {
        const char *gid =
            json_string_value(json_object_get(json_object_get(l, "metadata"), "generation_id"));
        if (gid && strcmp(gid, gen) == 0) {
            about++;
            assert_string_equal(json_string_value(json_object_get(l, "span_id")), span);
            assert_string_equal(json_string_value(json_object_get(l, "trace_id")), "flow-trace-1");
            assert_string_equal(json_string_value(json_object_get(l, "job_id")), jobid);
            assert_string_equal(json_string_value(json_object_get(l, "project_id")), project);
        }
    }
    assert_int_equal(about, 6); /* started, 4 progress, completed */
    json_decref(lines);
}

typedef struct reader {
    const char *id;
    const char *last;
    char *text;
} reader;

static void *read_stream(void *arg)
{
    reader *r = arg;
    r->text = stream(svc.port, r->id, r->last, 10000);
    return NULL;
}

static void two_subscribers_late_join_and_resume(void **state)
{
    (void)state;
    http_resp r = start_generation(&svc, project, episode, "Two readers", NULL);
    char gen[64];
    snprintf(gen, sizeof gen, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    reader a = {gen, NULL, NULL}, b = {gen, NULL, NULL};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, read_stream, &a);
    usleep(200000); /* b joins late, after the first event */
    pthread_create(&tb, NULL, read_stream, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    static char da[8192], db[8192];
    dechunk(a.text, da, sizeof da);
    dechunk(b.text, db, sizeof db);
    assert_true(strlen(da) > 0);
    assert_string_equal(da, db); /* identical, history included */
    char names[256];
    event_names(a.text, names, sizeof names);
    assert_string_equal(names, "progress,progress,progress,progress,completed");
    free(a.text);
    free(b.text);
    /* After it finished: the whole history; Last-Event-ID 3 resumes at 4; garbage restarts. */
    char *late = stream(svc.port, gen, NULL, 3000);
    event_names(late, names, sizeof names);
    assert_string_equal(names, "progress,progress,progress,progress,completed");
    free(late);
    char *resumed = stream(svc.port, gen, "3", 3000);
    event_names(resumed, names, sizeof names);
    assert_string_equal(names, "progress,completed");
    assert_non_null(strstr(resumed, "id: 4\n"));
    assert_null(strstr(resumed, "id: 3\n"));
    free(resumed);
    char *garbage = stream(svc.port, gen, "not-a-number", 3000);
    event_names(garbage, names, sizeof names);
    assert_string_equal(names, "progress,progress,progress,progress,completed");
    free(garbage);
}

static void cancel_mid_way(void **state)
{
    (void)state;
    http_resp r = start_generation(&svc, project, episode, "Cancel me", NULL);
    char gen[64], path[128];
    snprintf(gen, sizeof gen, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    reader a = {gen, NULL, NULL};
    pthread_t ta;
    pthread_create(&ta, NULL, read_stream, &a);
    usleep(200000); /* after the first step */
    snprintf(path, sizeof path, "/generations/%s", gen);
    assert_int_equal(http(&svc, "DELETE", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "cancelled");
    assert_true(json_integer_value(json_object_get(r.json, "progress")) < 100);
    http_resp_free(&r);
    pthread_join(ta, NULL);
    char names[256];
    event_names(a.text, names, sizeof names);
    assert_non_null(strstr(names, "cancelled"));
    assert_null(strstr(names, "completed"));
    free(a.text);
    /* Cancelling a finished generation changes nothing and answers its final state. */
    assert_int_equal(http(&svc, "DELETE", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "cancelled");
    http_resp_free(&r);
}

static void bad_requests(void **state)
{
    (void)state;
    static const char *const unknown[][2] = {{"GET", "/generations/gen_nope"},
                                             {"DELETE", "/generations/gen_nope"},
                                             {"GET", "/generations/gen_nope/events"}};
    for (size_t i = 0; i < 3; i++) {
        http_resp r;
        assert_int_equal(http(&svc, unknown[i][0], unknown[i][1], NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 404);
        assert_string_equal(resp_code(&r), "GENERATION_NOT_FOUND");
        http_resp_free(&r);
    }
    http_resp r = start_generation(&svc, "proj_nope", episode, "x", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(resp_code(&r), "PROJECT_NOT_FOUND");
    char v[64];
    assert_string_equal(resp_header(&r, "X-Project-Id", v, sizeof v), "proj_nope");
    http_resp_free(&r);
    r = start_generation(&svc, project, "ep_nope", "x", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(resp_code(&r), "EPISODE_NOT_FOUND");
    http_resp_free(&r);
    r = start_generation(&svc, project, other_episode, "x", NULL);
    assert_int_equal(r.status, 422);
    assert_string_equal(resp_code(&r), "BUSINESS_RULE_VIOLATION");
    http_resp_free(&r);
    r = start_generation(&svc, project, episode, "", NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(resp_code(&r), "VALIDATION_FAILED");
    http_resp_free(&r);
    char *long_prompt = malloc(4100);
    memset(long_prompt, 'p', 4001);
    long_prompt[4001] = '\0';
    r = start_generation(&svc, project, episode, long_prompt, NULL);
    assert_int_equal(r.status, 400);
    http_resp_free(&r);
    free(long_prompt);
    const char *const ct[] = {"Content-Type: application/json", NULL};
    assert_int_equal(http(&svc, "POST", "/generations", ct, "{\"projectId\":1}", 15, &r), 0);
    assert_int_equal(r.status, 400);
    http_resp_free(&r);
}

static void a_full_queue_answers_503(void **state)
{
    (void)state;
    gs_proc small;
    const char *const args[] = {"--workers", "1", "--queue", "1", "--step-ms", "400", NULL};
    assert_int_equal(gs_start(&small, args), 0);
    char p[64], e[64];
    create_project(&small, p);
    create_episode(&small, p, 1, e);
    long statuses[3];
    for (int i = 0; i < 3; i++) {
        http_resp r = start_generation(&small, p, e, "queue", NULL);
        statuses[i] = r.status;
        if (r.status == 503) {
            /* Backpressure, told apart from an outage (CONTRACT section 1). */
            assert_string_equal(resp_code(&r), "GENERATION_QUEUE_FULL");
            char v[16];
            assert_non_null(resp_header(&r, "Retry-After", v, sizeof v));
        }
        http_resp_free(&r);
        usleep(50000); /* the first is taken by the worker; the second waits in the queue */
    }
    assert_int_equal(statuses[0], 202);
    assert_int_equal(statuses[1], 202);
    assert_int_equal(statuses[2], 503);
    /* Not a dependency failure: /health stays healthy. */
    http_resp h;
    assert_int_equal(http(&small, "GET", "/health/ready", NULL, NULL, 0, &h), 0);
    assert_int_equal(h.status, 200);
    http_resp_free(&h);
    assert_int_equal(gs_stop(&small), 0);
    /* Nothing was stored for the refused one: the database holds exactly the two accepted. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "sqlite3 %s 'SELECT count(*) FROM generations'", small.db);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    int rows = -1;
    assert_int_equal(fscanf(f, "%d", &rows), 1);
    pclose(f);
    assert_int_equal(rows, 2);
    gs_cleanup(&small);
}

static void five_hundred_subscribers(void **state)
{
    (void)state;
    enum { N = 500 };
    http_resp r = start_generation(&svc, project, episode, "Crowd", NULL);
    char gen[64];
    snprintf(gen, sizeof gen, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    static int fds[N];
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET /generations/%s/events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     gen);
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(svc.port);
        assert_true(fds[i] >= 0);
        assert_int_equal(send(fds[i], req, (size_t)n, MSG_NOSIGNAL), n);
    }
    long threads_during = proc_status(svc.pid, "Threads:");
    /* Every subscriber sees the stream end with "completed". */
    int done = 0;
    static char buf[N][2048];
    static size_t got[N];
    memset(got, 0, sizeof got);
    /* Until every stream has ended, or 30 s: a deadline in time, not in poll rounds (with 500
     * sockets trickling, rounds come back quickly). */
    time_t deadline = time(NULL) + 30;
    while (done < N && time(NULL) < deadline) {
        struct pollfd pfd[N];
        for (int i = 0; i < N; i++)
            pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pfd, N, 100) <= 0)
            continue;
        for (int i = 0; i < N; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) || fds[i] < 0)
                continue;
            ssize_t k = recv(fds[i], buf[i] + got[i], sizeof buf[i] - 1 - got[i], 0);
            if (k > 0) {
                got[i] += (size_t)k;
                buf[i][got[i]] = '\0';
            } else {
                close(fds[i]);
                fds[i] = -1;
                done++;
            }
        }
    }
    int completed = 0;
    for (int i = 0; i < N; i++) {
        bool ok = strstr(buf[i], "event: completed") != NULL;
        completed += ok;
        if (!ok && completed + 3 > i) /* a few, to see what went wrong */
            fprintf(stderr, "subscriber %d got %zu bytes:\n%s\n", i, got[i], buf[i]);
        if (fds[i] >= 0)
            close(fds[i]);
    }
    assert_int_equal(completed, N);
    /* No thread per connection: the server's threads stayed few. */
    assert_true(threads_during > 0 && threads_during < 32);
}

static void heartbeats_and_a_client_that_stops_reading(void **state)
{
    (void)state;
    gs_proc hb;
    const char *const args[] = {"--step-ms", "300", "--heartbeat-ms", "100", NULL};
    assert_int_equal(gs_start(&hb, args), 0);
    char p[64], e[64];
    create_project(&hb, p);
    create_episode(&hb, p, 1, e);
    http_resp r = start_generation(&hb, p, e, "slow steps", NULL);
    char gen[64];
    snprintf(gen, sizeof gen, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    /* A client that connects and never reads a byte. */
    int stalled = raw_connect(hb.port);
    char req[256];
    int n =
        snprintf(req, sizeof req, "GET /generations/%s/events HTTP/1.1\r\nHost: t\r\n\r\n", gen);
    assert_int_equal(send(stalled, req, (size_t)n, MSG_NOSIGNAL), n);
    /* Another reads the whole stream: heartbeat comments between the 300 ms steps, and the
     * stalled neighbour slows nothing. */
    time_t t0 = time(NULL);
    char *text = stream(hb.port, gen, NULL, 5000);
    assert_true(time(NULL) - t0 < 4);
    assert_non_null(strstr(text, ": heartbeat"));
    char names[256];
    event_names(text, names, sizeof names);
    assert_string_equal(names, "progress,progress,progress,progress,completed");
    free(text);
    close(stalled);
    /* The vanished client is noticed and logged with its reason. */
    json_t *closed = log_wait(&hb, "sse_connection_closed", NULL, 2);
    assert_true(json_array_size(closed) >= 2);
    json_decref(closed);
    assert_int_equal(gs_stop(&hb), 0);
    gs_cleanup(&hb);
}

static void a_restart_fails_what_was_running(void **state)
{
    (void)state;
    gs_proc one;
    const char *const args[] = {"--step-ms", "5000", NULL};
    assert_int_equal(gs_start(&one, args), 0);
    char p[64], e[64];
    create_project(&one, p);
    create_episode(&one, p, 1, e);
    http_resp r = start_generation(&one, p, e, "never finishes", NULL);
    char gen[64], path[128];
    snprintf(gen, sizeof gen, "%s", json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    usleep(200000);
    kill(one.pid, SIGKILL);
    waitpid(one.pid, NULL, 0);
    one.pid = 0;
    gs_proc two;
    const char *const again[] = {"--db", one.db, NULL};
    assert_int_equal(gs_start(&two, again), 0);
    snprintf(path, sizeof path, "/generations/%s", gen);
    assert_int_equal(http(&two, "GET", path, NULL, NULL, 0, &r), 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "failed");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
        "INTERRUPTED");
    http_resp_free(&r);
    /* Its stream is the final state, then the end. */
    char *text = stream(two.port, gen, NULL, 3000);
    char names[64];
    event_names(text, names, sizeof names);
    assert_string_equal(names, "failed");
    free(text);
    assert_int_equal(gs_stop(&two), 0);
    gs_cleanup(&two);
    gs_cleanup(&one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_flow_in_order),
        cmocka_unit_test(two_subscribers_late_join_and_resume),
        cmocka_unit_test(cancel_mid_way),
        cmocka_unit_test(bad_requests),
        cmocka_unit_test(a_full_queue_answers_503),
        cmocka_unit_test(five_hundred_subscribers),
        cmocka_unit_test(heartbeats_and_a_client_that_stops_reading),
        cmocka_unit_test(a_restart_fails_what_was_running),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
