/* backends/redis/check.c — the Redis health check (libo11y-redis): PING within the timeout. */
#include "o11y/redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct redis_check {
    unsigned timeout_ms;
    uint16_t port;
    char host[];
} redis_check;

static void set_error(char *error, size_t len, const char *msg)
{
    snprintf(error, len, "%s", msg);
}

static o11y_health_status run_redis(void *ctx, char *error, size_t len)
{
    redis_check *c = ctx;
    struct timeval tv = {(time_t)(c->timeout_ms / 1000), (suseconds_t)(c->timeout_ms % 1000) * 1000};
    redisContext *r = redisConnectWithTimeout(c->host, c->port, tv);
    o11y_health_status st = O11Y_HEALTH_UNHEALTHY;
    if (!r) {
        set_error(error, len, "out of memory");
        return st;
    }
    if (!r->err)
        redisSetTimeout(r, tv);
    redisReply *reply = r->err ? NULL : redisCommand(r, "PING");
    if (reply && reply->type == REDIS_REPLY_STATUS && reply->str && strcmp(reply->str, "PONG") == 0)
        st = O11Y_HEALTH_HEALTHY;
    else if (reply)
        set_error(error, len, "unexpected reply to PING");
    else if (r->err == REDIS_ERR_IO && (errno == EAGAIN || errno == ETIMEDOUT || errno == EINPROGRESS))
        set_error(error, len, "timeout");
    else if (r->err == REDIS_ERR_IO && errno == ECONNREFUSED)
        set_error(error, len, "connection refused");
    else
        set_error(error, len, r->err == REDIS_ERR_EOF ? "connection closed" : "connection failed");
    if (reply)
        freeReplyObject(reply);
    redisFree(r);
    return st;
}

o11y_status o11y_health_add_redis(o11y_health *h, const o11y_health_check_opts *opts,
                                  const char *host, uint16_t port)
{
    if (!h || !opts || !host || !port || strlen(host) > 255)
        return O11Y_EINVAL;
    size_t len = strlen(host);
    redis_check *c = malloc(sizeof *c + len + 1);
    if (!c)
        return O11Y_ENOMEM;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : O11Y_HEALTH_DEFAULT_TIMEOUT_MS;
    c->port = port;
    memcpy(c->host, host, len + 1);
    o11y_status st = o11y_health_add_custom_owned(h, opts, run_redis, c, free);
    if (st != O11Y_OK)
        free(c);
    return st;
}
