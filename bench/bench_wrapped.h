/* bench_wrapped.h — what bench_server and bench_h2o serve: the same small JSON body, answered
 * bare by each server library and through o11y by this handler on this service. */
#ifndef BENCH_WRAPPED_H
#define BENCH_WRAPPED_H

#include <o11y/o11y.h>

#include <stdbool.h>

static const char body[] = "{\"id\":\"proj_0193f0a27c1e7d3a9b1c2f4e5d6a7b8c\",\"name\":\"Show\","
                           "\"createdAt\":\"2026-11-27T10:30:00.123Z\"}";

static int wrapped(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    return o11y_res_body(res, 200, NULL, body, sizeof body - 1) == O11Y_OK ? 0 : 1;
}

/* The service with GET /projects/{projectId} on wrapped, logging to log with the access line
 * on or off; NULL when it cannot be made. */
static o11y_service *bench_service(const char *log, bool access_log)
{
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "bench-service";
    cfg.log.file_path = log;
    cfg.access_log_off = !access_log;
    o11y_service *svc;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK)
        return NULL;
    if (o11y_service_route(svc, O11Y_GET, "/projects/{projectId}", wrapped, NULL, 0) != O11Y_OK) {
        o11y_service_destroy(svc);
        return NULL;
    }
    return svc;
}

#endif
