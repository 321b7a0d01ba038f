/* metrics/api.h — what the metrics module offers the http pipeline beyond the public API: the
 * process metrics and the /metrics/summary aggregation. */
#ifndef O11Y_METRICS_API_H
#define O11Y_METRICS_API_H

#include "o11y/metrics.h"

#include <jansson.h>

/* Registers the process_* metrics (ECONFLICT-tolerant). */
o11y_status o11y__metrics_register_process(o11y_metrics *m);

/* The families a summary reads (any may be NULL). Route families are labelled
 * {method, route} (durations) and {method, route, class} (errors: class 4xx or 5xx); operation
 * families {operation}. */
typedef struct o11y__summary_families {
    o11y_metric *route_durations, *route_errors;
    o11y_metric *op_durations, *op_errors, *op_client_errors;
} o11y__summary_families;

/* Per route and per operation: request_count, avg/p95/p99 in ms, error_count (5xx),
 * client_error_count (4xx), error_rate, with last_60s and last_5m; and totals over the routes.
 * New references in *routes, *operations, *totals. O11Y_ENOMEM on failure (nothing returned). */
o11y_status o11y__metrics_summary(const o11y__summary_families *f, json_t **routes,
                                  json_t **operations, json_t **totals);

#endif
