/* bench_idempotency — what a keyed request costs in each store: begin + complete for a new key,
 * begin for a replay; the SHA-256 fingerprint of a typical request beside them; and, for Redis,
 * the round trips per request counted by the server itself. Figures only.
 *   bench_idempotency [REDIS_PORT] */
#include "idempotency/idem_internal.h"
#include "o11y/idempotency.h"
#include "o11y/redis.h"
#include "o11y/sqlite.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void make_key(o11y_idem_key *k, const char *tag, long i)
{
    snprintf(k->id, sizeof k->id, "%s-%058ld", tag, i);
}

static const char record[] = "\xc9\x00" /* a 201 with a typical episode body */
                             "{\"id\":\"ep_0193f0a27c1e7d3a9b1c2f4e5d6a7b8c\",\"number\":1}";

/* EVAL calls the server has answered: each is one round trip of the store. */
static long long redis_evals(int port)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err)
        return -1;
    redisReply *r = redisCommand(c, "INFO commandstats");
    long long n = 0;
    const char *p = r && r->str ? strstr(r->str, "cmdstat_eval:calls=") : NULL;
    if (p)
        n = atoll(p + strlen("cmdstat_eval:calls="));
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

typedef struct figures {
    double new_ns, replay_ns;
    long long new_trips, replay_trips;
} figures;

static figures run_store(o11y_idem_store *s, const char *tag, long n, int redis_port)
{
    long long c0 = redis_port ? redis_evals(redis_port) : 0;
    uint8_t fp[O11Y_IDEM_FP_BYTES] = {1, 2, 3};
    int64_t now = 1795775400000;
    o11y_idem_key k;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        make_key(&k, tag, i);
        uint64_t token;
        char *blob = NULL;
        size_t len;
        if (s->ops->begin(s->impl, &k, fp, now, 60000, &token, &blob, &len) == O11Y_IDEM_NEW)
            s->ops->complete(s->impl, &k, token, fp, record, sizeof record - 1, now, now + 3600000);
    }
    int64_t t1 = now_ns();
    long long c1 = redis_port ? redis_evals(redis_port) : 0;
    t1 = now_ns();
    for (long i = 0; i < n; i++) {
        make_key(&k, tag, i);
        uint64_t token;
        char *blob = NULL;
        size_t len = 0;
        if (s->ops->begin(s->impl, &k, fp, now, 60000, &token, &blob, &len) == O11Y_IDEM_REPLAY)
            o11y__free(blob);
    }
    int64_t t2 = now_ns();
    long long c2 = redis_port ? redis_evals(redis_port) : 0;
    return (figures){(double)(t1 - t0) / (double)n, (double)(t2 - t1) / (double)n, c1 - c0,
                     c2 - c1};
}

static double fingerprint_ns(long n)
{
    static const char body[] = "{\"number\":12,\"title\":\"The twelfth episode\",\"content\":null}";
    static const char path[] = "/projects/proj_0193f0a27c1e7d3a9b1c2f4e5d6a7b8c/episodes";
    const o11y_str parts[] = {{"POST", 5}, {path, sizeof path - 1}, {"?", 1}, {"", 0},
                              {"\n", 1},   {body, sizeof body - 1}};
    const o11y_str scope[] = {
        {"POST", 5}, {"/projects/{projectId}/episodes", 31}, {"", 0}, {"\n", 1}, {"key-123", 7}};
    uint8_t out[32];
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        o11y__sha256(parts, 6, out);
        o11y__sha256(scope, 5, out);
    }
    return (double)(now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
    int redis_port = argc > 1 ? atoi(argv[1]) : 0;
    o11y_idem_store *s;
    printf("%-36s %14s %14s\n", "per keyed request", "new key", "replay");
    if (o11y_idem_store_memory(NULL, &s) == O11Y_OK) {
        figures f = run_store(s, "mem", 50000, 0); /* within the default 100,000 keys */
        printf("%-36s %11.0f ns %11.0f ns\n", "memory store", f.new_ns, f.replay_ns);
        o11y_idem_store_destroy(s);
    }
    printf("%-36s %11.0f ns\n", "SHA-256 fingerprint + scope", fingerprint_ns(200000));
    char path[] = "/tmp/o11y-idem-bench-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0 && (close(fd), o11y_idem_store_sqlite(path, &s) == O11Y_OK)) {
        figures f = run_store(s, "sql", 5000, 0);
        printf("%-36s %11.0f ns %11.0f ns  (%.0f new keys/s, WAL, synchronous=NORMAL)\n",
               "sqlite store", f.new_ns, f.replay_ns, 1e9 / f.new_ns);
        o11y_idem_store_destroy(s);
    }
    char wal[64];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    unlink(path);
    if (redis_port > 0 && o11y_idem_store_redis("127.0.0.1", (uint16_t)redis_port, &s) == O11Y_OK) {
        long n = 5000;
        figures f = run_store(s, "red", n, redis_port);
        printf("%-36s %11.0f ns %11.0f ns  (%.0f new keys/s)\n", "redis store", f.new_ns,
               f.replay_ns, 1e9 / f.new_ns);
        printf("redis round trips per key: new %.2f, replay %.2f (counted by the server)\n",
               (double)f.new_trips / (double)n, (double)f.replay_trips / (double)n);
        o11y_idem_store_destroy(s);
    }
    return 0;
}
