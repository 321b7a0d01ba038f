/* o11y/health.h — dependency checks that never hang, served as /health, /health/live and
 * /health/ready (CONTRACT section 5).
 *
 * Checks run in the background, each on its own interval and in parallel with the others; the
 * endpoints only read the latest results, so a burst of probes causes no dependency traffic and
 * a hanging dependency never hangs a probe. */
#ifndef O11Y_HEALTH_H
#define O11Y_HEALTH_H

#include "o11y/common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y_health o11y_health;

typedef enum o11y_health_status {
    O11Y_HEALTH_HEALTHY = 0,
    O11Y_HEALTH_DEGRADED = 1,
    O11Y_HEALTH_UNHEALTHY = 2,
} o11y_health_status;

/* "healthy", "degraded", "unhealthy". */
O11Y_API const char *o11y_health_status_name(o11y_health_status s);

/* All-zero except name is a valid set of options. */
typedef struct o11y_health_check_opts {
    const char *name;     /* 1-64 bytes of [A-Za-z0-9._-]; copied */
    bool critical;        /* down: the service is unhealthy (else degraded) and not ready */
    unsigned timeout_ms;  /* 0: O11Y_HEALTH_DEFAULT_TIMEOUT_MS, 800 (under the kubelet's 1 s
                             probe timeout) */
    unsigned interval_ms; /* 0: 5000 */
    O11Y_RESERVED;        /* zero: room to grow (common.h) */
} o11y_health_check_opts;

/* A custom check (the original's custom_checker). Writes at most message_len bytes of a
 * human-readable reason into message (it may leave it empty) and returns the status. Runs on the
 * check's own thread; when it overruns its timeout the check reads "timeout" until it returns. */
typedef o11y_health_status (*o11y_health_fn)(void *ctx, char *message, size_t message_len);

/* Adding a check: names are unique per health object. Each returns O11Y_OK, O11Y_EINVAL (bad
 * name or argument), O11Y_ECONFLICT (name taken), O11Y_ELIMIT (over 32 checks) or O11Y_ENOMEM.
 * The check starts at once. Thread-safe: yes. */

/* A TCP connection to host:port (numeric or resolvable host). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_health_add_tcp(o11y_health *h,
                                                          const o11y_health_check_opts *opts,
                                                          const char *host, uint16_t port);
/* A custom callback (ctx is kept and passed back; it stays the caller's). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_health_add_custom(o11y_health *h,
                                                             const o11y_health_check_opts *opts,
                                                             o11y_health_fn fn, void *ctx);
/* The same, and the health object owns ctx: free_ctx(ctx) runs when the check is freed (with the
 * service), never while fn may run. On an error return ctx is still the caller's. The optional
 * libraries' checks (HTTP in o11y-curl, SQLite in o11y-sqlite, Redis in o11y-redis) are built
 * on it. */
O11Y_API O11Y_WARN_UNUSED o11y_status
o11y_health_add_custom_owned(o11y_health *h, const o11y_health_check_opts *opts, o11y_health_fn fn,
                             void *ctx, void (*free_ctx)(void *ctx));

/* The default per-check timeout, for checks that keep to it themselves. */
enum { O11Y_HEALTH_DEFAULT_TIMEOUT_MS = 800 };

/* The overall status: unhealthy when a critical check is down, degraded when an optional one is
 * down or any reports itself degraded, else healthy. */
O11Y_API o11y_health_status o11y_health_overall(const o11y_health *h);
/* True when every critical check has a result, none is down, and no shutdown has begun. */
O11Y_API bool o11y_health_ready(const o11y_health *h);
/* Marks the start of shutdown: readiness answers 503 from now on. Async-signal-safe. */
O11Y_API void o11y_health_shutting_down(o11y_health *h);

#ifdef __cplusplus
}
#endif
#endif
