/* o11y/redis.h — the optional Redis part (libo11y-redis; pkg-config o11y-redis; CMake component
 * redis): an idempotency store shared by a service's instances, and a health check. */
#ifndef O11Y_REDIS_H
#define O11Y_REDIS_H

#include "o11y/health.h"
#include "o11y/idempotency.h"
#include "o11y/ratelimit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a Redis server is and how to log in. */
typedef struct o11y_redis_target {
    const char *host;     /* name or address */
    uint16_t port;        /* 0: 6379 */
    const char *user;     /* NULL: the default user (AUTH password) */
    const char *password; /* NULL: no AUTH. Never logged, never in an error text */
    unsigned db;          /* SELECT db when not 0 */
    O11Y_RESERVED;        /* zero: room to grow (common.h) */
} o11y_redis_target;

/* Parses redis://[[user]:password@]host[:port][/db] (user, password percent-decoded; an IPv6
 * host in brackets) into out, whose strings point into buf (buf_len at least the URL's length
 * plus 4). rediss:// is O11Y_EINVAL: the hiredis this links is built without TLS. Returns
 * O11Y_OK or O11Y_EINVAL; the URL itself is never kept or shown. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_redis_parse_url(const char *url, char *buf,
                                                           size_t buf_len,
                                                           o11y_redis_target *out /* OUT */);

/* The store on a target with credentials and a database (strings copied). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_redis_target(const o11y_redis_target *t,
                                                                   o11y_idem_store **out
                                                                   /* OUT */);
/* The check on a target with credentials and a database (strings copied). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_health_add_redis_target(
    o11y_health *h, const o11y_health_check_opts *opts, const o11y_redis_target *t);

/* A Redis server (hiredis): lock by SET NX PX with an owner token; complete and release are
 * atomic Lua scripts; reconnects after the server restarts. Connects lazily: an unreachable
 * server is not an error here, it makes requests 503. host is copied. Returns O11Y_OK,
 * O11Y_EINVAL or O11Y_ENOMEM. Thread-safe store (one connection under a mutex). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_redis(const char *host, uint16_t port,
                                                            o11y_idem_store **out /* OUT */);

/* The rate-limit store shared by every instance (o11y/ratelimit.h): one EVALSHA round trip per
 * decision, atomic on the server and on its clock; reloaded after NOSCRIPT. A server that does
 * not answer makes decide return O11Y_EBACKEND at once for a second (the stage fails open unless
 * configured closed). Strings copied. Returns O11Y_OK, O11Y_EINVAL or O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_ratelimit_store_redis(const o11y_redis_target *t,
                                                                 o11y_ratelimit_store **out
                                                                 /* OUT */);

/* PING to host:port within the check's timeout. host is copied. Returns as
 * o11y_health_add_custom. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_health_add_redis(o11y_health *h,
                                                            const o11y_health_check_opts *opts,
                                                            const char *host, uint16_t port);

#ifdef __cplusplus
}
#endif
#endif
