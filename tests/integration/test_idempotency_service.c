/* Integration tests: generation-service's idempotency across processes with real parts — two
 * instances sharing one redis-server and one SQLite file; Redis stopped and restarted under load;
 * the SQLite store across a SIGKILL. Each counts the episodes that exist afterwards. */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static const char *const JSON_CT = "Content-Type: application/json";

static http_resp post_episode(const gs_proc *p, const char *project, const char *key, int number)
{
    char path[128], body[96], h[96];
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    int n = snprintf(body, sizeof body, "{\"number\":%d,\"title\":\"Episode %d\"}", number, number);
    snprintf(h, sizeof h, "Idempotency-Key: %s", key ? key : "");
    const char *const with_key[] = {JSON_CT, h, NULL};
    const char *const without[] = {JSON_CT, NULL};
    http_resp r;
    if (http(p, "POST", path, key ? with_key : without, body, (size_t)n, &r) != 0)
        r.status = -1;
    return r;
}

static size_t episode_count(const gs_proc *p, const char *project)
{
    char path[128];
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    http_resp r;
    assert_int_equal(http(p, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    size_t n = (size_t)json_integer_value(json_object_get(r.json, "total"));
    http_resp_free(&r);
    return n;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return system("command -v redis-server >/dev/null 2>&1") == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

typedef struct racer {
    const gs_proc *p;
    const char *project;
    long status;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    http_resp resp = post_episode(r->p, r->project, "shared-key", 1);
    r->status = resp.status;
    http_resp_free(&resp);
    return NULL;
}

static void two_instances_one_redis_create_once(void **state)
{
    (void)state;
    int rport = harness_free_port();
    pid_t redis = redis_start(rport);
    assert_true(redis > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rport);
    gs_proc a, b;
    const char *const args_a[] = {"--idempotency", "redis", "--redis-url", url, NULL};
    assert_int_equal(gs_start(&a, args_a), 0);
    const char *const args_b[] = {"--idempotency", "redis", "--redis-url", url, "--db", a.db, NULL};
    assert_int_equal(gs_start(&b, args_b), 0);
    char project[64];
    create_project(&a, project);

    enum { N = 50 };
    pthread_t t[N];
    racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (racer){i % 2 ? &b : &a, project, 0};
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    int created = 0, other = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        created += r[i].status == 201;
        other += r[i].status == 409 || r[i].status == 200;
    }
    assert_int_equal(created, 1);
    assert_int_equal(created + other, N);
    assert_int_equal(episode_count(&a, project), 1);
    assert_int_equal(episode_count(&b, project), 1);
    /* A replay through the other instance. */
    http_resp again = post_episode(&b, project, "shared-key", 1);
    assert_int_equal(again.status, 200);
    char v[16];
    assert_string_equal(resp_header(&again, "Idempotent-Replayed", v, sizeof v), "true");
    http_resp_free(&again);

    /* Redis goes away: key-bearing requests are refused (fail closed), the others work. */
    redis_stop(redis);
    http_resp down = post_episode(&a, project, "while-down", 2);
    assert_int_equal(down.status, 503);
    assert_string_equal(resp_code(&down), "SERVICE_UNAVAILABLE");
    assert_non_null(resp_header(&down, "Retry-After", v, sizeof v));
    assert_null(strstr(down.body, "redis")); /* no internals in a 5xx */
    http_resp_free(&down);
    http_resp plain = post_episode(&a, project, NULL, 3);
    assert_int_equal(plain.status, 201);
    http_resp_free(&plain);
    assert_int_equal(episode_count(&a, project), 2);

    /* Redis is back on the same port: the same service recovers, no restart. */
    redis = redis_start(rport);
    assert_true(redis > 0);
    http_resp back = post_episode(&a, project, "after-restart", 4);
    assert_int_equal(back.status, 201);
    http_resp_free(&back);
    back = post_episode(&b, project, "after-restart", 4);
    assert_int_equal(back.status, 200);
    http_resp_free(&back);
    assert_int_equal(episode_count(&a, project), 3);

    assert_int_equal(gs_stop(&a), 0);
    assert_int_equal(gs_stop(&b), 0);
    redis_stop(redis);
    gs_cleanup(&a);
    gs_cleanup(&b);
}

typedef struct burst {
    const gs_proc *p;
    const char *project;
    int number;
    long status;
    char body[512];
} burst;

static void *send_one(void *arg)
{
    burst *b = arg;
    char key[32];
    snprintf(key, sizeof key, "kill-%d", b->number);
    http_resp r = post_episode(b->p, b->project, key, b->number);
    b->status = r.status;
    if (r.body)
        snprintf(b->body, sizeof b->body, "%s", r.body);
    http_resp_free(&r);
    return NULL;
}

static void sqlite_store_survives_sigkill(void **state)
{
    (void)state;
    const char *const args[] = {"--idempotency", "sqlite", "--idempotency-lease-s", "1", NULL};
    gs_proc svc;
    assert_int_equal(gs_start(&svc, args), 0);
    char project[64];
    create_project(&svc, project);
    enum { N = 40 };
    pthread_t t[N];
    burst b[N];
    for (int i = 0; i < N; i++) {
        b[i] = (burst){&svc, project, i + 1, 0, ""};
        pthread_create(&t[i], NULL, send_one, &b[i]);
        if (i == N / 2)
            kill(svc.pid, SIGKILL); /* mid-burst: some done, some in flight, some refused */
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    waitpid(svc.pid, NULL, 0);
    svc.pid = 0;

    /* Restart on the same file; after the lease, retry every key. */
    gs_proc again;
    const char *const args2[] = {"--idempotency", "sqlite", "--idempotency-lease-s", "1", "--db",
                                 svc.db,          NULL};
    assert_int_equal(gs_start(&again, args2), 0);
    usleep(1100000);
    for (int i = 0; i < N; i++) {
        burst retry = {&again, project, i + 1, 0, ""};
        send_one(&retry);
        if (b[i].status == 201) {
            /* Answered before the kill: stored durably, replayed byte for byte. */
            assert_int_equal(retry.status, 200);
            assert_string_equal(retry.body, b[i].body);
        } else {
            /* Never answered: the retry runs the handler once, finds the episode made by the
             * crashed run whose response was never stored (409), or replays the response that
             * was stored just before the kill but never reached the client (200). */
            char number[32];
            snprintf(number, sizeof number, "\"number\":%d,", i + 1);
            if (retry.status == 200 ? !strstr(retry.body, number)
                                    : retry.status != 201 && retry.status != 409)
                fail_msg("key %d: retry %ld %s", i + 1, retry.status, retry.body);
        }
    }
    /* Every number exists exactly once. */
    assert_int_equal(episode_count(&again, project), N);
    assert_int_equal(gs_stop(&again), 0);
    gs_cleanup(&again);
    gs_cleanup(&svc);
}

/* Keys in a Redis database, counted with redis-cli. */
static int redis_keys(int port, const char *password, int db)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "redis-cli -p %d -a '%s' --no-auth-warning -n %d KEYS 'o11y:idem:*' | grep -c .", port,
             password, db);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

static void redis_with_credentials_and_a_database(void **state)
{
    (void)state;
    int port = harness_free_port();
    const char *const auth[] = {"--requirepass", "s3cret-pw", "--user", "alice", "on",
                                ">alice-pw",     "~*",        "&*",     "+@all", NULL};
    pid_t redis = redis_start_with(port, auth);
    assert_true(redis > 0);
    struct {
        const char *login, *db_path;
        int db;
    } ok[] = {{":s3cret-pw", "/3", 3}, {"alice:alice-pw", "", 0}};
    for (size_t i = 0; i < 2; i++) {
        char url[128];
        snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d%s", ok[i].login, port, ok[i].db_path);
        const char *const args[] = {
            "--redis-url", url, "--idempotency", "redis", "--health-interval-ms", "100", NULL};
        gs_proc g;
        assert_int_equal(gs_start(&g, args), 0);
        char project[64];
        create_project(&g, project);
        char key[32];
        snprintf(key, sizeof key, "cred-%zu", i);
        http_resp r = post_episode(&g, project, key, 1);
        assert_int_equal(r.status, 201);
        http_resp_free(&r);
        r = post_episode(&g, project, key, 1);
        assert_int_equal(r.status, 200); /* replayed from Redis, in the URL's database */
        http_resp_free(&r);
        assert_true(redis_keys(port, "s3cret-pw", ok[i].db) >= 1);
        usleep(300000);
        http_resp h;
        assert_int_equal(http(&g, "GET", "/health/ready", NULL, NULL, 0, &h), 0);
        assert_int_equal(h.status, 200);
        http_resp_free(&h);
        assert_int_equal(gs_stop(&g), 0);
        gs_cleanup(&g);
    }
    /* A wrong password: the keys are refused (503, fail closed), Redis is unhealthy, and no
     * password reaches the log. */
    char url[128];
    snprintf(url, sizeof url, "redis://:wrong-pw@127.0.0.1:%d/1", port);
    const char *const args[] = {
        "--redis-url", url, "--idempotency", "redis", "--health-interval-ms", "100", NULL};
    gs_proc g;
    assert_int_equal(gs_start(&g, args), 0);
    char project[64];
    create_project(&g, project);
    http_resp r = post_episode(&g, project, "cred-bad", 1);
    assert_int_equal(r.status, 503);
    http_resp_free(&r);
    usleep(300000);
    http_resp h;
    assert_int_equal(http(&g, "GET", "/health", NULL, NULL, 0, &h), 0);
    assert_int_equal(h.status, 503);
    assert_non_null(strstr(h.body, "AUTH refused"));
    http_resp_free(&h);
    assert_int_equal(gs_stop(&g), 0);
    size_t len;
    char *log = read_log_raw(&g, &len);
    assert_null(strstr(log, "wrong-pw"));
    assert_null(strstr(log, "s3cret"));
    free(log);
    gs_cleanup(&g);
    redis_stop(redis);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_instances_one_redis_create_once),
        cmocka_unit_test(sqlite_store_survives_sigkill),
        cmocka_unit_test(redis_with_credentials_and_a_database),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
