/* o11y/ratelimit.h — rate limiting (the contract's section on 429): policies of q requests per w
 * seconds per key (GCRA: smooth, with a burst of up to q), answered 429 RATE_LIMITED with
 * Retry-After and the IETF RateLimit-Policy and RateLimit fields, decided before the body is
 * read and before an idempotency key is begun, in a store that is either this process's memory
 * (lock-free, bounded) or Redis shared by every instance (o11y/redis.h). */
#ifndef O11Y_RATELIMIT_H
#define O11Y_RATELIMIT_H

#include "o11y/common.h"
#include "o11y/http.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/*=== stores ===*/

typedef struct o11y_ratelimit_store o11y_ratelimit_store;

/* One decision on one key. */
typedef struct o11y_ratelimit_decision {
    bool allowed;
    unsigned remaining;     /* requests still allowed now (the RateLimit field's r) */
    unsigned reset_s;       /* seconds until the whole quota is available again (t) */
    unsigned retry_after_s; /* refused: seconds until the next request would pass, at least 1 */
} o11y_ratelimit_decision;

/* A store's operations (impl as given to o11y_ratelimit_store_create); called from many threads
 * at once. decide counts a request on key (any bytes, len of them) against quota per window_s
 * and fills *d: O11Y_OK, or O11Y_EBACKEND when the store did not answer (the stage then fails
 * open or closed, as configured). */
typedef struct o11y_ratelimit_store_ops {
    o11y_status (*decide)(void *impl, const char *key, size_t len, unsigned quota,
                          unsigned window_s, o11y_ratelimit_decision *d);
    void (*destroy)(void *impl);
} o11y_ratelimit_store_ops;

/* Wraps a backend (impl owned: freed by ops->destroy). O11Y_EINVAL or O11Y_ENOMEM (impl is then
 * the caller's). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_ratelimit_store_create(
    const o11y_ratelimit_store_ops *ops, void *impl, o11y_ratelimit_store **out /* OUT */);

/* The memory store. All-zero is a valid config. */
typedef struct o11y_ratelimit_memory_config {
    size_t max_keys; /* slots, rounded up to a power of two; 0: 262,144 (2 MiB). Keys idle long
                        enough to have their whole quota back are reclaimed as others arrive;
                        when the table is full of active keys, the one closest to a full quota
                        in its neighbourhood is forgotten (counted), so a scan of a million
                        addresses cannot grow it */
    int64_t (*clock_ns)(void *ctx); /* monotonic ns; NULL: the real clock (tests inject) */
    void *clock_ctx;
    O11Y_RESERVED; /* zero: room to grow (common.h) */
} o11y_ratelimit_memory_config;

/* Lock-free: one hash, a probe of at most eight slots and one compare-and-swap per decision;
 * each slot is a 64-bit word (the key's fingerprint and its theoretical arrival time). Returns
 * O11Y_OK, O11Y_EINVAL or O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_ratelimit_store_memory(
    const o11y_ratelimit_memory_config *cfg, o11y_ratelimit_store **out /* OUT */);
/* Counts a request on key and decides (what the stage does; for tools and benchmarks).
 * Returns as the store's decide, or O11Y_EINVAL (quota 0, window 0 or over a day). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_ratelimit_decide(o11y_ratelimit_store *s,
                                                            const char *key, size_t len,
                                                            unsigned quota, unsigned window_s,
                                                            o11y_ratelimit_decision *d /* OUT */);
/* NULL is a no-op. No request may be using the store. */
O11Y_API void o11y_ratelimit_store_destroy(o11y_ratelimit_store *s);

/*=== policies on a service ===*/

typedef enum o11y_ratelimit_key {
    O11Y_RATELIMIT_BY_CLIENT = 0, /* the peer's address, or behind a trusted proxy the first
                                     untrusted address of X-Forwarded-For */
    O11Y_RATELIMIT_BY_HEADER = 1, /* the value of a header (an API key), hashed; a request
                                     without it is keyed by client */
    O11Y_RATELIMIT_BY_FN = 2,     /* a function of the service's */
} o11y_ratelimit_key;

/* Writes the key of req into buf (at most len bytes) and returns its length; 0: the request is
 * not limited by this policy. Runs before the body is read. */
typedef size_t (*o11y_ratelimit_key_fn)(o11y_request *req, char *buf, size_t len, void *ctx);

typedef struct o11y_ratelimit_policy {
    const char *name;  /* 1-32 of [A-Za-z0-9_.-], shown in RateLimit-Policy; copied */
    unsigned quota;    /* q: requests ... (1-1,000,000) */
    unsigned window_s; /* ... per w seconds (1-86,400) */
    const char *route; /* the route template it applies to (registered before); NULL: every
                          route but /health*, /metrics* and CORS preflights */
    unsigned methods;  /* o11y_method bits it applies to; 0: every method */
    o11y_ratelimit_key key;
    const char *header;           /* BY_HEADER; copied */
    o11y_ratelimit_key_fn key_fn; /* BY_FN */
    void *key_ctx;
    O11Y_RESERVED; /* zero: room to grow (common.h) */
} o11y_ratelimit_policy;

typedef struct o11y_ratelimit_config {
    o11y_ratelimit_store *store; /* kept; must outlive the service */
    const char *trusted_proxies; /* comma-separated CIDRs ("10.0.0.0/8,::1/128") whose
                                    X-Forwarded-For counts; copied; NULL: none */
    bool fail_closed;            /* the store does not answer: 503 instead of letting requests
                                    through (the default: through, counted and logged) */
    unsigned log_interval_s;     /* store errors and limited requests are logged at most once
                                    per this per policy; 0: 10 */
    O11Y_RESERVED;               /* zero: room to grow (common.h) */
} o11y_ratelimit_config;

/* Turns rate limiting on for the service (call before adding policies). Copies cfg (not the
 * store). Returns O11Y_OK, O11Y_EINVAL (no store, a malformed CIDR) or O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_ratelimit(o11y_service *svc,
                                                             const o11y_ratelimit_config *cfg);
/* Adds a policy (copied). A request under several policies counts against each and is refused
 * by any; its answer carries every one in RateLimit-Policy and RateLimit. Returns O11Y_OK,
 * O11Y_EINVAL (a bad name, quota or window; a route not registered; rate limiting not on),
 * O11Y_ELIMIT (over 8 policies) or O11Y_ENOMEM. Call before serving. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_ratelimit_policy(o11y_service *svc,
                                                                    const o11y_ratelimit_policy *p);

/* Parses "Q/W" (a quota per window in seconds) or "0" (off: *quota 0). O11Y_OK or O11Y_EINVAL. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_ratelimit_parse(const char *s, unsigned *quota,
                                                           unsigned *window_s);

#ifdef __cplusplus
}
#endif
#endif
