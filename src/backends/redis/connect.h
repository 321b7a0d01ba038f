/* backends/redis/connect.h — one way to reach a Redis server for the store and the check:
 * connect within a timeout, then AUTH and SELECT when the target asks for them. */
#ifndef O11Y_REDIS_CONNECT_H
#define O11Y_REDIS_CONNECT_H

#include "o11y/redis.h"

#include <hiredis/hiredis.h>

/* An owned copy of a target (strings duplicated). */
typedef struct redis_target {
    char *host, *user, *password;
    uint16_t port;
    unsigned db;
} redis_target;

/* Copies t into out; false on ENOMEM (out is then empty). */
bool redis_target_copy(const o11y_redis_target *t, redis_target *out);
void redis_target_free(redis_target *t);

/* A ready connection (authenticated, on its database), or NULL with a reason in error that
 * never holds the password. */
redisContext *redis_target_connect(const redis_target *t, unsigned timeout_ms, char *error,
                                   size_t error_len);

#endif
