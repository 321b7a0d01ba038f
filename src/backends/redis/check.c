/* backends/redis/check.c — the Redis health check (libo11y-redis): connect (AUTH, SELECT when
 * asked) and PING within the timeout. */
#include "backends/redis/connect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct redis_check {
    unsigned timeout_ms;
    redis_target target;
} redis_check;

static o11y_health_status run_redis(void *ctx, char *error, size_t len)
{
    redis_check *c = ctx;
    redisContext *r = redis_target_connect(&c->target, c->timeout_ms, error, len);
    if (!r)
        return O11Y_HEALTH_UNHEALTHY;
    redisReply *reply = redisCommand(r, "PING");
    o11y_health_status st = O11Y_HEALTH_UNHEALTHY;
    if (reply && reply->type == REDIS_REPLY_STATUS && reply->str && strcmp(reply->str, "PONG") == 0)
        st = O11Y_HEALTH_HEALTHY;
    else
        snprintf(error, len, "%s",
                 reply                     ? "unexpected reply to PING"
                 : r->err == REDIS_ERR_EOF ? "connection closed"
                                           : "timeout");
    if (reply)
        freeReplyObject(reply);
    redisFree(r);
    return st;
}

static void check_free(void *ctx)
{
    redis_check *c = ctx;
    redis_target_free(&c->target);
    free(c);
}

o11y_status o11y_health_add_redis_target(o11y_health *h, const o11y_health_check_opts *opts,
                                         const o11y_redis_target *t)
{
    if (!h || !opts || !t || !t->host)
        return O11Y_EINVAL;
    redis_check *c = calloc(1, sizeof *c);
    if (!c || !redis_target_copy(t, &c->target)) {
        free(c);
        return O11Y_ENOMEM;
    }
    if (!c->target.port)
        c->target.port = 6379;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : O11Y_HEALTH_DEFAULT_TIMEOUT_MS;
    o11y_status st = o11y_health_add_custom_owned(h, opts, run_redis, c, check_free);
    if (st != O11Y_OK)
        check_free(c);
    return st;
}

o11y_status o11y_health_add_redis(o11y_health *h, const o11y_health_check_opts *opts,
                                  const char *host, uint16_t port)
{
    if (!port)
        return O11Y_EINVAL;
    o11y_redis_target t = {.host = host, .port = port};
    return o11y_health_add_redis_target(h, opts, &t);
}
