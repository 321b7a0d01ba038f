/* Integration tests: the W3C Trace Context test service (examples/w3c/) driven the way the
 * public validation harness drives it: POST /test with a JSON array of {url, arguments}, and a
 * real HTTP server here (libmicrohttpd) in the harness's place, recording what each call
 * carried. */
#include "harness.h"

#include <microhttpd.h>
#include <pthread.h>
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

typedef struct seen {
    char traceparent[128];
    char tracestate[1024]; /* "(none)" when absent */
    char body[512];
} seen;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static seen calls[16];
static size_t n_calls;

typedef struct upload {
    char body[512];
    size_t len;
} upload;

static enum MHD_Result on_call(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **req)
{
    (void)cls, (void)url, (void)method, (void)version;
    if (!*req) {
        *req = calloc(1, sizeof(upload));
        return *req ? MHD_YES : MHD_NO;
    }
    upload *u = *req;
    if (*size) {
        size_t take = *size < sizeof u->body - u->len - 1 ? *size : sizeof u->body - u->len - 1;
        memcpy(u->body + u->len, data, take);
        u->len += take;
        *size = 0;
        return MHD_YES;
    }
    const char *tp = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent");
    const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "tracestate");
    pthread_mutex_lock(&lock);
    if (n_calls < 16) {
        snprintf(calls[n_calls].traceparent, sizeof calls[n_calls].traceparent, "%s",
                 tp ? tp : "(none)");
        snprintf(calls[n_calls].tracestate, sizeof calls[n_calls].tracestate, "%s",
                 ts ? ts : "(none)");
        snprintf(calls[n_calls].body, sizeof calls[n_calls].body, "%s", u->body);
        n_calls++;
    }
    pthread_mutex_unlock(&lock);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **req,
                    enum MHD_RequestTerminationCode code)
{
    (void)cls, (void)c, (void)code;
    free(*req);
    *req = NULL;
}

static struct MHD_Daemon *harness;
static int harness_port, service_port;
static pid_t service;
static char dir[] = "/tmp/o11y-w3c-XXXXXX";

static int setup(void **state)
{
    (void)state;
    harness = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                               NULL, NULL, on_call, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_done,
                               NULL, MHD_OPTION_END);
    if (!harness || !mkdtemp(dir))
        return -1;
    harness_port = MHD_get_daemon_info(harness, MHD_DAEMON_INFO_BIND_PORT)->port;
    service_port = harness_free_port();
    char port[16], log[128];
    snprintf(port, sizeof port, "%d", service_port);
    snprintf(log, sizeof log, "%s/w3c.log", dir);
    service = fork();
    if (service == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(W3C_BINARY, W3C_BINARY, "--port", port, "--log-file", log, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd = raw_connect(service_port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    kill(service, SIGTERM);
    int status = -1;
    waitpid(service, &status, 0);
    MHD_stop_daemon(harness);
    char log[128];
    snprintf(log, sizeof log, "%s/w3c.log", dir);
    unlink(log);
    rmdir(dir);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* POSTs the harness's instruction with these trace headers (NULL: absent); returns the number
 * of calls the harness side received. */
static size_t drive(const char *traceparent, const char *tracestate, const char *body)
{
    pthread_mutex_lock(&lock);
    n_calls = 0;
    memset(calls, 0, sizeof calls);
    pthread_mutex_unlock(&lock);
    char tp[256], ts[2048], instruction[1024];
    const char *headers[4] = {"Content-Type: application/json"};
    size_t h = 1;
    if (traceparent) {
        snprintf(tp, sizeof tp, "traceparent: %s", traceparent);
        headers[h++] = tp;
    }
    if (tracestate) {
        snprintf(ts, sizeof ts, "tracestate: %s", tracestate);
        headers[h++] = ts;
    }
    headers[h] = NULL;
    if (!body) {
        snprintf(instruction, sizeof instruction,
                 "[{\"url\":\"http://127.0.0.1:%d/callback\",\"arguments\":[]}]", harness_port);
        body = instruction;
    }
    gs_proc p = {.port = service_port};
    http_resp r;
    assert_int_equal(http(&p, "POST", "/test", headers, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    pthread_mutex_lock(&lock);
    size_t n = n_calls;
    pthread_mutex_unlock(&lock);
    return n;
}

static void a_valid_traceparent_keeps_its_trace_and_gets_a_new_parent(void **state)
{
    (void)state;
    assert_int_equal(
        drive("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "foo=1,bar=2", NULL), 1);
    assert_int_equal(strlen(calls[0].traceparent), 55);
    assert_int_equal(strncmp(calls[0].traceparent, "00-0af7651916cd43dd8448eb211c80319c-", 36), 0);
    assert_int_equal(strncmp(calls[0].traceparent + 36, "b7ad6b7169203331", 16) != 0, 1);
    assert_string_equal(calls[0].traceparent + 52, "-01");
    assert_string_equal(calls[0].tracestate, "foo=1,bar=2");
    assert_string_equal(calls[0].body, "[]");
    /* flags as received */
    assert_int_equal(drive("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", NULL, NULL),
                     1);
    assert_string_equal(calls[0].traceparent + 52, "-00");
    assert_string_equal(calls[0].tracestate, "(none)");
    /* a later version with more fields: parsed as 00, sent as 00 */
    assert_int_equal(
        drive("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds", NULL,
              NULL),
        1);
    assert_int_equal(strncmp(calls[0].traceparent, "00-0af7651916cd43dd8448eb211c80319c-", 36), 0);
}

static void an_invalid_traceparent_restarts_the_trace_without_tracestate(void **state)
{
    (void)state;
    const char *invalid[] = {
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",   /* upper case */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* version ff */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",   /* zero trace-id */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",   /* zero parent-id */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", /* 00 with more */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",   /* bad flags */
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        assert_int_equal(drive(invalid[i], "foo=1", NULL), 1);
        assert_int_equal(strlen(calls[0].traceparent), 55);
        assert_int_equal(
            strncmp(calls[0].traceparent + 3, "0af7651916cd43dd8448eb211c80319c", 32) != 0, 1);
        assert_string_equal(calls[0].tracestate, "(none)");
    }
}

static void tracestate_keeps_32_valid_members(void **state)
{
    (void)state;
    char ts[1024] = "";
    size_t len = 0;
    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(ts + len, sizeof ts - len, "%sk%d=v%d", i ? "," : "", i, i);
    assert_int_equal(drive("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ts, NULL), 1);
    size_t members = 1;
    for (const char *p = calls[0].tracestate; *p; p++)
        members += *p == ',';
    assert_int_equal(members, 32);
    assert_int_equal(strncmp(calls[0].tracestate, "k0=v0,k1=v1,", 12), 0);
    /* invalid members go, valid ones stay in order */
    assert_int_equal(drive("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                           "a=1,FOO=2,b=x=y,c=3", NULL),
                     1);
    assert_string_equal(calls[0].tracestate, "a=1,c=3");
}

static void every_element_is_called_with_its_arguments(void **state)
{
    (void)state;
    char body[1024];
    snprintf(body, sizeof body,
             "[{\"url\":\"http://127.0.0.1:%d/a\",\"arguments\":[{\"url\":\"http://x/\","
             "\"arguments\":[]}]},{\"url\":\"http://127.0.0.1:%d/b\",\"arguments\":[]}]",
             harness_port, harness_port);
    assert_int_equal(drive("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL, body),
                     2);
    assert_string_equal(calls[0].body, "[{\"url\":\"http://x/\",\"arguments\":[]}]");
    assert_string_equal(calls[1].body, "[]");
    /* each call its own span */
    assert_string_not_equal(calls[0].traceparent, calls[1].traceparent);
    /* not an array: 400 in the contract's envelope */
    gs_proc p = {.port = service_port};
    const char *h[] = {"Content-Type: application/json", NULL};
    http_resp r;
    assert_int_equal(http(&p, "POST", "/test", h, "{}", 2, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(resp_code(&r), "VALIDATION_FAILED");
    http_resp_free(&r);
}

/* Headers in several lines: two traceparents are invalid (a new trace); tracestate lines are
 * one list. */
static void repeated_headers_follow_the_specification(void **state)
{
    (void)state;
    pthread_mutex_lock(&lock);
    n_calls = 0;
    pthread_mutex_unlock(&lock);
    char body[256];
    snprintf(body, sizeof body, "[{\"url\":\"http://127.0.0.1:%d/c\",\"arguments\":[]}]",
             harness_port);
    const char *split[] = {"Content-Type: application/json",
                           "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                           "tracestate: a=1,b=2", "tracestate: c=3", NULL};
    gs_proc p = {.port = service_port};
    http_resp r;
    assert_int_equal(http(&p, "POST", "/test", split, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_string_equal(calls[0].tracestate, "a=1,b=2,c=3");
    assert_int_equal(strncmp(calls[0].traceparent, "00-0af7651916cd43dd8448eb211c80319c-", 36), 0);
    pthread_mutex_lock(&lock);
    n_calls = 0;
    pthread_mutex_unlock(&lock);
    const char *twice[] = {"Content-Type: application/json",
                           "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                           "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203332-01",
                           "tracestate: a=1", NULL};
    assert_int_equal(http(&p, "POST", "/test", twice, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_not_equal(strncmp(calls[0].traceparent + 3, "0af7651916cd43dd8448eb211c80319c", 32),
                         0);
    assert_string_equal(calls[0].tracestate, "(none)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_valid_traceparent_keeps_its_trace_and_gets_a_new_parent),
        cmocka_unit_test(an_invalid_traceparent_restarts_the_trace_without_tracestate),
        cmocka_unit_test(tracestate_keeps_32_valid_members),
        cmocka_unit_test(every_element_is_called_with_its_arguments),
        cmocka_unit_test(repeated_headers_follow_the_specification),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
