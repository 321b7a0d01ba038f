/* bench_ratelimit — rate-limit decisions:
 * - the memory store: ns per decision with 1 and 2 threads, on one hot key and on 100,000
 *   distinct keys (a quota of a million a day: every decision is allowed, so every one writes);
 * - the Redis store (a redis-server on the given port): round trips per decision, counted by the
 *   server (INFO commandstats), and decisions per second from one thread.
 * Usage: bench_ratelimit [REDIS_PORT] */
#include <o11y/ratelimit.h>
#include <o11y/redis.h>

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DECISIONS = 500000, KEYS = 100000 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The distinct keys, made before timing: formatting a key is not the store's cost. */
static char keys[KEYS][16];
static size_t key_lens[KEYS];

typedef struct run {
    o11y_ratelimit_store *s;
    bool distinct;
    unsigned seed;
    double seconds;
} run;

static void *worker(void *arg)
{
    run *r = arg;
    char key[32];
    size_t len = 3;
    memcpy(key, "hot", 3);
    unsigned x = r->seed * 40503u;
    o11y_ratelimit_decision d;
    double t0 = now_s();
    for (int i = 0; i < DECISIONS; i++) {
        const char *k = key;
        if (r->distinct) {
            /* The keys in turn from a random start: the key itself is read from memory the
             * hardware prefetches (in the stage it is on the stack), while its slot, found by
             * the hash, is as scattered as real clients' are. */
            size_t j = (x + (unsigned)i) % KEYS;
            k = keys[j];
            len = key_lens[j];
        }
        if (o11y_ratelimit_decide(r->s, k, len, 1000000, 86400, &d) != O11Y_OK || !d.allowed)
            abort();
    }
    r->seconds = now_s() - t0;
    return NULL;
}

static double ns_per_decision(bool distinct, int threads)
{
    o11y_ratelimit_store *s;
    if (o11y_ratelimit_store_memory(NULL, &s) != O11Y_OK)
        abort();
    run r[2];
    pthread_t t[2];
    for (int i = 0; i < threads; i++) {
        r[i] = (run){.s = s, .distinct = distinct, .seed = (unsigned)i + 1};
        pthread_create(&t[i], NULL, worker, &r[i]);
    }
    double worst = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        worst = r[i].seconds > worst ? r[i].seconds : worst;
    }
    o11y_ratelimit_store_destroy(s);
    return worst * 1e9 / DECISIONS; /* each thread's time per decision of its own */
}

static long long evalsha_calls(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    long long calls = 0;
    const char *at = r && r->str ? strstr(r->str, "cmdstat_evalsha:calls=") : NULL;
    if (at)
        calls = atoll(at + strlen("cmdstat_evalsha:calls="));
    if (r)
        freeReplyObject(r);
    return calls;
}

int main(int argc, char **argv)
{
    for (int i = 0; i < KEYS; i++)
        key_lens[i] = (size_t)snprintf(keys[i], sizeof keys[i], "10.%d.%d", i / 256, i % 256);
    printf("memory store, ns per decision (each thread %d decisions):\n", DECISIONS);
    for (int threads = 1; threads <= 2; threads++)
        printf("  %d thread%s: hot key %.1f ns, %d distinct keys %.1f ns\n", threads,
               threads > 1 ? "s" : " ", ns_per_decision(false, threads), KEYS,
               ns_per_decision(true, threads));
    if (argc < 2)
        return 0;
    int port = atoi(argv[1]);
    o11y_redis_target t = {.host = "127.0.0.1", .port = (uint16_t)port};
    o11y_ratelimit_store *s;
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err || o11y_ratelimit_store_redis(&t, &s) != O11Y_OK)
        return 1;
    o11y_ratelimit_decision d;
    if (o11y_ratelimit_decide(s, "warm", 4, 30, 60, &d) != O11Y_OK) /* loads the script */
        return 1;
    enum { N = 20000 };
    long long before = evalsha_calls(c);
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        char key[32];
        int len = snprintf(key, sizeof key, "client-%d", i % 1000);
        if (o11y_ratelimit_decide(s, key, (size_t)len, 30, 60, &d) != O11Y_OK)
            return 1;
    }
    double secs = now_s() - t0;
    long long calls = evalsha_calls(c) - before;
    printf("redis store: %.2f round trips per decision (EVALSHA calls counted by the server), "
           "%.0f decisions/s from one thread, %.1f us each\n",
           (double)calls / N, N / secs, secs * 1e6 / N);
    o11y_ratelimit_store_destroy(s);
    redisFree(c);
    return 0;
}
