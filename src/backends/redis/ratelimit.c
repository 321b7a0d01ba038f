/* backends/redis/ratelimit.c — the Redis rate-limit store (libo11y-redis): one limit across every
 * instance of a service. A decision is one round trip: EVALSHA of a GCRA script that reads the
 * key's theoretical arrival time, decides, and writes it back, atomically on the server and on
 * the server's clock (TIME), so instances with skewed clocks agree. After NOSCRIPT (a restarted
 * or flushed server) the script is loaded again. A few connections, each under its own mutex,
 * serve the threads; after a failure no connection is tried for a second, so a dead server costs
 * a request nothing but the failed decision (the stage then fails open, or closed). */
#include "backends/redis/connect.h"

#include "o11y/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { POOL = 4, TIMEOUT_MS = 200, RETRY_AFTER_FAILURE_MS = 1000, KEY_MAX = 600 };

/* KEYS[1] the key; ARGV: the emission interval, the window (µs), the quota. Returns
 * {allowed, remaining, reset_s, retry_after_s}. */
static const char gcra_lua[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "
    "local e = tonumber(ARGV[1]) local w = tonumber(ARGV[2]) local q = tonumber(ARGV[3]) "
    "local stored = redis.call('GET', KEYS[1]) "
    "local tat = now if stored then tat = tonumber(stored) end "
    "local base = tat if base < now then base = now end "
    "if base - (w - e) > now then "
    "  local retry = math.ceil((base - (w - e) - now) / 1000000) if retry < 1 then retry = 1 end "
    "  return {0, 0, math.ceil((tat - now) / 1000000), retry} end "
    "local new = base + e "
    "redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + "
    "1) "
    "local left = math.floor((now + w - new) / e) "
    "if left < 0 then left = 0 end if left > q then left = q end "
    "return {1, left, math.ceil((new - now) / 1000000), 0}";

typedef struct conn {
    pthread_mutex_t lock;
    redisContext *c;
} conn;

typedef struct rl_redis {
    redis_target target;
    conn pool[POOL];
    pthread_mutex_t sha_lock;
    char sha[41]; /* the script's SHA-1 once loaded, else "" */
    _Atomic int64_t down_until_ns;
    atomic_uint next;
} rl_redis;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static _Thread_local unsigned my_conn = POOL; /* POOL: not chosen yet */

static bool load_script(rl_redis *r, redisContext *c)
{
    redisReply *reply = redisCommand(c, "SCRIPT LOAD %s", gcra_lua);
    bool ok = reply && reply->type == REDIS_REPLY_STRING && reply->len == 40;
    if (ok) {
        pthread_mutex_lock(&r->sha_lock);
        memcpy(r->sha, reply->str, 40);
        r->sha[40] = '\0';
        pthread_mutex_unlock(&r->sha_lock);
    }
    if (reply)
        freeReplyObject(reply);
    return ok;
}

static redisReply *evalsha(rl_redis *r, redisContext *c, const char *key, size_t len, const char *e,
                           const char *w, const char *q)
{
    char sha[41];
    pthread_mutex_lock(&r->sha_lock);
    memcpy(sha, r->sha, sizeof sha);
    pthread_mutex_unlock(&r->sha_lock);
    if (!sha[0]) {
        if (!load_script(r, c))
            return NULL;
        return evalsha(r, c, key, len, e, w, q);
    }
    redisReply *reply = redisCommand(c, "EVALSHA %s 1 %b %s %s %s", sha, key, len, e, w, q);
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(reply);
        if (!load_script(r, c))
            return NULL;
        pthread_mutex_lock(&r->sha_lock);
        memcpy(sha, r->sha, sizeof sha);
        pthread_mutex_unlock(&r->sha_lock);
        reply = redisCommand(c, "EVALSHA %s 1 %b %s %s %s", sha, key, len, e, w, q);
    }
    return reply;
}

static o11y_status rl_decide(void *impl, const char *key, size_t len, unsigned quota,
                             unsigned window_s, o11y_ratelimit_decision *d)
{
    rl_redis *r = impl;
    if (now_ns() < atomic_load_explicit(&r->down_until_ns, memory_order_relaxed))
        return O11Y_EBACKEND;
    if (len > KEY_MAX)
        return O11Y_EINVAL;
    char full[KEY_MAX + 16];
    memcpy(full, "o11y:rl:", 8);
    memcpy(full + 8, key, len);
    uint64_t window_us = (uint64_t)window_s * 1000000;
    uint64_t emission_us = window_us / quota ? window_us / quota : 1;
    char e[24], w[24], q[16];
    snprintf(e, sizeof e, "%llu", (unsigned long long)emission_us);
    snprintf(w, sizeof w, "%llu", (unsigned long long)window_us);
    snprintf(q, sizeof q, "%u", quota);
    if (my_conn == POOL)
        my_conn = atomic_fetch_add(&r->next, 1) % POOL;
    conn *c = &r->pool[my_conn];
    pthread_mutex_lock(&c->lock);
    bool ok = false;
    /* Twice at most: a connection made before the server restarted fails on its first use,
     * and a fresh one then answers at once. */
    for (int attempt = 0; attempt < 2 && !ok; attempt++) {
        bool fresh = !c->c || c->c->err;
        if (fresh) {
            if (c->c)
                redisFree(c->c);
            char why[128];
            c->c = redis_target_connect(&r->target, TIMEOUT_MS, why, sizeof why);
        }
        redisReply *reply = c->c ? evalsha(r, c->c, full, 8 + len, e, w, q) : NULL;
        ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4;
        for (size_t i = 0; ok && i < 4; i++)
            ok = reply->element[i]->type == REDIS_REPLY_INTEGER && reply->element[i]->integer >= 0;
        if (ok) {
            d->allowed = reply->element[0]->integer == 1;
            d->remaining = (unsigned)reply->element[1]->integer;
            d->reset_s = (unsigned)reply->element[2]->integer;
            d->retry_after_s = (unsigned)reply->element[3]->integer;
        }
        if (reply)
            freeReplyObject(reply);
        if (!ok && c->c) { /* whatever went wrong, the next try starts on a new connection */
            redisFree(c->c);
            c->c = NULL;
        }
        if (fresh)
            break; /* a new connection failed too: the server is down */
    }
    pthread_mutex_unlock(&c->lock);
    if (!ok)
        atomic_store_explicit(&r->down_until_ns, now_ns() + RETRY_AFTER_FAILURE_MS * 1000000LL,
                              memory_order_relaxed);
    return ok ? O11Y_OK : O11Y_EBACKEND;
}

static void rl_destroy(void *impl)
{
    rl_redis *r = impl;
    for (int i = 0; i < POOL; i++) {
        if (r->pool[i].c)
            redisFree(r->pool[i].c);
        pthread_mutex_destroy(&r->pool[i].lock);
    }
    pthread_mutex_destroy(&r->sha_lock);
    redis_target_free(&r->target);
    free(r);
}

static const o11y_ratelimit_store_ops rl_ops = {rl_decide, rl_destroy};

o11y_status o11y_ratelimit_store_redis(const o11y_redis_target *t, o11y_ratelimit_store **out)
{
    if (!t || !t->host || !out)
        return O11Y_EINVAL;
    *out = NULL;
    rl_redis *r = calloc(1, sizeof *r);
    if (!r || !redis_target_copy(t, &r->target)) {
        free(r);
        return O11Y_ENOMEM;
    }
    if (!r->target.port)
        r->target.port = 6379;
    for (int i = 0; i < POOL; i++)
        pthread_mutex_init(&r->pool[i].lock, NULL);
    pthread_mutex_init(&r->sha_lock, NULL);
    o11y_status st = o11y_ratelimit_store_create(&rl_ops, r, out);
    if (st != O11Y_OK)
        rl_destroy(r);
    return st;
}
