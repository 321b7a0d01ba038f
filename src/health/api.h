/* health/api.h — what the health module offers the service object and its routes: the health
 * object's life and its documents. The checks' insides stay in health_internal.h. */
#ifndef O11Y_HEALTH_API_H
#define O11Y_HEALTH_API_H

#include "core/internal.h"
#include "o11y/health.h"
#include "o11y/log.h"
#include "o11y/metrics.h"

/* Creates the health object of a service (strings copied; logger and metrics borrowed, may be
 * NULL). */
o11y_status o11y__health_create(const char *service, const char *version, o11y_logger *logger,
                                o11y_metrics *metrics, o11y_health **out);
/* Stops every check (waiting at most a check's timeout for one in progress) and frees. */
void o11y__health_destroy(o11y_health *h);

typedef enum o11y__health_doc {
    O11Y__HEALTH_FULL,  /* /health */
    O11Y__HEALTH_READY, /* /health/ready: critical checks only, 503 when not ready */
} o11y__health_doc;

/* Renders the contract's document (or the IETF health+json one when health_json) into b and
 * returns the HTTP status it calls for. */
int o11y__health_render(o11y_health *h, o11y__health_doc doc, bool health_json, o11y__buf *b);

#endif
