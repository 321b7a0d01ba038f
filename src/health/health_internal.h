/* health/health_internal.h — the health object, its checks, and what the http module needs. */
#ifndef O11Y_HEALTH_INTERNAL_H
#define O11Y_HEALTH_INTERNAL_H

#include "core/internal.h"
#include "health/api.h"
#include "o11y/health.h"
#include "o11y/log.h"
#include "o11y/metrics.h"

#include <pthread.h>
#include <stdatomic.h>

enum { O11Y__MAX_CHECKS = 32, O11Y__CHECK_ERROR_LEN = 120 };

typedef enum check_kind { CHECK_TCP, CHECK_CUSTOM } check_kind;

typedef struct o11y__check {
    o11y_health *health;
    char name[65];
    bool critical;
    unsigned timeout_ms, interval_ms;
    check_kind kind;
    char *target; /* URL, host or path (copied) */
    uint16_t port;
    o11y_health_fn fn;
    void *ctx;
    void (*free_ctx)(void *ctx); /* NULL: ctx is the caller's */
    pthread_t thread;
    o11y_series *up, *duration;
    /* Guarded by the health object's lock. */
    bool has_result;
    o11y_health_status status;
    char error[O11Y__CHECK_ERROR_LEN];
    double response_ms;
    int64_t running_since; /* CLOCK_MONOTONIC ns while a run is in progress, else 0 */
} o11y__check;

struct o11y_health {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC: interval sleeps, stop */
    bool stopping;
    atomic_bool shutting_down;
    o11y__check *checks[O11Y__MAX_CHECKS];
    size_t n_checks;
    char *service, *version;
    int64_t started_ns; /* CLOCK_REALTIME */
    o11y_logger *logger;
    o11y_metric *m_up, *m_duration;
};

/* Runs one check once, within its timeout; fills error (sanitised) when not healthy. */
o11y_health_status o11y__check_run(o11y__check *c, char *error, size_t error_len);

#endif
