/* backends/redis/idem_store.c — the Redis idempotency store (libo11y-redis, hiredis 0.14):
 * shared by every instance of a service.
 * A key's value is 'L' + fingerprint + token while locked (expiring with the lease), and 'C' +
 * fingerprint + the stored response once completed (expiring with the TTL). Each operation is
 * one Lua script, so it is atomic and one round trip: a new key costs two (begin, complete), a
 * replay one. One connection under a mutex; after an error it reconnects on the next call. */
#include "backends/redis/connect.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TIMEOUT_MS = 500 };

/* The lock is taken only where the key is absent (what SET NX does), inside the script so the
 * same round trip can also answer a replay. */
static const char begin_lua[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then "
    "  redis.call('SET', KEYS[1], 'L' .. ARGV[1] .. ARGV[2], 'PX', ARGV[3], 'NX') "
    "  return {0} "
    "end "
    "if string.sub(v, 2, 33) ~= ARGV[1] then return {3} end "
    "if string.sub(v, 1, 1) == 'L' then return {2} end "
    "return {1, string.sub(v, 34)}";
static const char complete_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0";
/* Our lock is the value whose token (its last 16 characters) is ours. */
static const char release_lua[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v and string.sub(v, 1, 1) == 'L' and string.sub(v, 34) == ARGV[1] then "
    "  redis.call('DEL', KEYS[1]) return 1 end return 0";

typedef struct redis_store {
    o11y_idem_store *store; /* for its error slot */
    pthread_mutex_t lock;
    redisContext *c;
    redis_target target;
} redis_store;

static bool connected(redis_store *r)
{
    if (r->c && !r->c->err)
        return true;
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
    char why[128];
    r->c = redis_target_connect(&r->target, TIMEOUT_MS, why, sizeof why);
    if (!r->c) {
        o11y_idem_store_set_error(r->store, "redis %s:%u: %s", r->target.host,
                                  (unsigned)r->target.port, why);
        return false;
    }
    return true;
}

static void key_name(const o11y_idem_key *k, char out[80])
{
    snprintf(out, 80, "o11y:idem:%s", k->id);
}

static const char hex_digits[] = "0123456789abcdef";

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[p[i] >> 4];
        out[2 * i + 1] = hex_digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* 16 lowercase hex digits of v, without a NUL. */
static void hex_u64(uint64_t v, char out[16])
{
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex_digits[v & 15];
}

/* The value of a held lock: 'L', the fingerprint in hex, the token in hex. */
static void lock_value(const uint8_t fp[O11Y_IDEM_FP_BYTES], uint64_t token, char out[50])
{
    out[0] = 'L';
    hex(fp, O11Y_IDEM_FP_BYTES, out + 1);
    hex_u64(token, out + 33);
    out[49] = '\0';
}

static redisReply *call(redis_store *r, const char *fmt, ...)
{
    redisReply *reply = NULL;
    /* A connection to a server that restarted fails on its first use: reconnect and try once
     * more. Nothing reached the old server, so the retry cannot apply a step twice. */
    for (int attempt = 0; attempt < 2 && !reply; attempt++) {
        if (!connected(r))
            return NULL;
        va_list ap;
        va_start(ap, fmt);
        reply = redisvCommand(r->c, fmt, ap);
        va_end(ap);
        if (!reply)
            o11y_idem_store_set_error(r->store, "redis: %s", r->c->errstr);
        if (!reply && r->c->err != REDIS_ERR_IO && r->c->err != REDIS_ERR_EOF)
            return NULL;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        o11y_idem_store_set_error(r->store, "redis: %.100s", reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

static o11y_idem_result redis_begin(void *impl, const o11y_idem_key *k,
                                    const uint8_t fp[O11Y_IDEM_FP_BYTES], int64_t now,
                                    int64_t lease_ms, uint64_t *token, char **blob,
                                    size_t *blob_len)
{
    (void)now;
    redis_store *r = impl;
    char key[80], fph[33], tok[17], lease[24];
    key_name(k, key);
    hex(fp, O11Y_IDEM_FP_BYTES, fph);
    *token = o11y_idem_token();
    hex_u64(*token, tok);
    tok[16] = '\0';
    snprintf(lease, sizeof lease, "%lld", (long long)lease_ms);
    pthread_mutex_lock(&r->lock);
    redisReply *reply = call(r, "EVAL %s 1 %s %s %s %s", begin_lua, key, fph, tok, lease);
    o11y_idem_result res = O11Y_IDEM_STORE_ERROR;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        switch (reply->element[0]->integer) {
        case 0:
            res = O11Y_IDEM_NEW;
            break;
        case 2:
            res = O11Y_IDEM_IN_USE;
            break;
        case 3:
            res = O11Y_IDEM_REUSED;
            break;
        case 1:
            if (reply->elements == 2 && reply->element[1]->type == REDIS_REPLY_STRING &&
                (*blob = malloc(reply->element[1]->len + 1)) != NULL) {
                memcpy(*blob, reply->element[1]->str, reply->element[1]->len);
                *blob_len = reply->element[1]->len;
                res = O11Y_IDEM_REPLAY;
            }
            break;
        default:
            break;
        }
    }
    if (reply)
        freeReplyObject(reply);
    pthread_mutex_unlock(&r->lock);
    return res;
}

static o11y_idem_stored redis_complete(void *impl, const o11y_idem_key *k, uint64_t token,
                                       const uint8_t fp[O11Y_IDEM_FP_BYTES], const char *blob,
                                       size_t blob_len, int64_t now, int64_t expires_ms)
{
    redis_store *r = impl;
    char key[80], lockv[50], ttl[24];
    key_name(k, key);
    lock_value(fp, token, lockv);
    long long ms = (long long)(expires_ms - now);
    snprintf(ttl, sizeof ttl, "%lld", ms > 0 ? ms : 1);
    /* The completed value: 'C', the fingerprint in hex, the record. */
    size_t len = 33 + blob_len;
    char *value = malloc(len);
    if (!value)
        return O11Y_IDEM_NOT_STORED;
    value[0] = 'C';
    memcpy(value + 1, lockv + 1, 32);
    memcpy(value + 33, blob, blob_len);
    pthread_mutex_lock(&r->lock);
    redisReply *reply = call(r, "EVAL %s 1 %s %s %b %s", complete_lua, key, lockv, value, len, ttl);
    o11y_idem_stored result = O11Y_IDEM_STORED;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "OOM", 3) == 0 &&
        blob_len > O11Y_IDEM_STATUS_BYTES) {
        /* Over the server's maxmemory: keep the status alone (idem_internal.h). */
        o11y_idem_store_set_error(r->store, "redis: out of memory for a %zu-byte response",
                                  blob_len);
        freeReplyObject(reply);
        reply = call(r, "EVAL %s 1 %s %s %b %s", complete_lua, key, lockv, value,
                     (size_t)33 + O11Y_IDEM_STATUS_BYTES, ttl);
        result = O11Y_IDEM_STATUS_ONLY;
    }
    if (!reply || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
        result = O11Y_IDEM_NOT_STORED;
    if (reply)
        freeReplyObject(reply);
    pthread_mutex_unlock(&r->lock);
    free(value);
    return result;
}

static void redis_release(void *impl, const o11y_idem_key *k, uint64_t token)
{
    redis_store *r = impl;
    char key[80], tok[17];
    key_name(k, key);
    hex_u64(token, tok);
    tok[16] = '\0';
    pthread_mutex_lock(&r->lock);
    redisReply *reply = call(r, "EVAL %s 1 %s %s", release_lua, key, tok);
    if (reply)
        freeReplyObject(reply);
    pthread_mutex_unlock(&r->lock);
}

static void redis_destroy(void *impl)
{
    redis_store *r = impl;
    if (r->c)
        redisFree(r->c);
    pthread_mutex_destroy(&r->lock);
    redis_target_free(&r->target);
    free(r);
}

static const o11y_idem_store_ops redis_ops = {redis_begin, redis_complete, redis_release,
                                              redis_destroy};

o11y_status o11y_idem_store_redis_target(const o11y_redis_target *t, o11y_idem_store **out)
{
    if (!t || !t->host || !out)
        return O11Y_EINVAL;
    *out = NULL;
    redis_store *r = calloc(1, sizeof *r);
    if (!r || !redis_target_copy(t, &r->target)) {
        free(r);
        return O11Y_ENOMEM;
    }
    if (!r->target.port)
        r->target.port = 6379;
    pthread_mutex_init(&r->lock, NULL);
    o11y_status st = o11y_idem_store_create(&redis_ops, r, out);
    if (st != O11Y_OK) {
        redis_destroy(r);
        return st;
    }
    r->store = *out;
    return O11Y_OK;
}

o11y_status o11y_idem_store_redis(const char *host, uint16_t port, o11y_idem_store **out)
{
    if (!port)
        return O11Y_EINVAL;
    o11y_redis_target t = {.host = host, .port = port};
    return o11y_idem_store_redis_target(&t, out);
}
