/* o11y/redis.h — the optional Redis part (libo11y-redis; pkg-config o11y-redis; CMake component
 * redis): an idempotency store shared by a service's instances, and a health check. */
#ifndef O11Y_REDIS_H
#define O11Y_REDIS_H

#include "o11y/health.h"
#include "o11y/idempotency.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A Redis server (hiredis): lock by SET NX PX with an owner token; complete and release are
 * atomic Lua scripts; reconnects after the server restarts. Connects lazily: an unreachable
 * server is not an error here, it makes requests 503. host is copied. Returns O11Y_OK,
 * O11Y_EINVAL or O11Y_ENOMEM. Thread-safe store (one connection under a mutex). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_redis(const char *host, uint16_t port,
                                                            o11y_idem_store **out /* OUT */);

/* PING to host:port within the check's timeout. host is copied. Returns as
 * o11y_health_add_custom. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_health_add_redis(o11y_health *h,
                                                            const o11y_health_check_opts *opts,
                                                            const char *host, uint16_t port);

#ifdef __cplusplus
}
#endif
#endif
