/* metrics/operation.c — operation tracking: one log line per operation and, when a default
 * registry is set, o11y_operation_duration_seconds{operation} and
 * o11y_operation_errors_total{operation}. */
#include "o11y/operation.h"

#include "core/internal.h"
#include "metrics/metrics_internal.h"
#include "o11y/error.h"
#include "o11y/log.h"
#include "o11y/metrics.h"

o11y_operation o11y_operation_start(const char *name)
{
    return (o11y_operation){.name = name ? name : "unnamed", .start_ns = o11y__now_mono_ns()};
}

void o11y_operation_fail(o11y_operation *op, const char *error_code)
{
    if (op)
        op->error_code = error_code ? error_code : "INTERNAL_ERROR";
}

/* The default registry's two operation metrics, found by name once per thread and registry
 * (registry ids are never reused, so a cached pair can never belong to a dead registry). */
static _Thread_local struct {
    uint64_t registry_id;
    o11y_metric *duration, *errors, *client_errors;
} found;

/* A code whose catalog status is 4xx: the client's request was refused, the operation did not
 * fail (a page for bad input would be a false alarm). Unknown codes count as failures. */
static bool is_client_error(const char *code)
{
    const o11y_error_def *def = code ? o11y_error_lookup(code) : NULL;
    return def && def->status < 500;
}

static void record(const o11y_operation *op, double ms, bool client_error)
{
    o11y_metrics *reg = o11y_metrics_default();
    if (!reg)
        return;
    if (found.registry_id != reg->id) {
        found.duration = o11y_metrics_find(reg, "o11y_operation_duration_seconds");
        found.errors = o11y_metrics_find(reg, "o11y_operation_errors_total");
        found.client_errors = o11y_metrics_find(reg, "o11y_operation_client_errors_total");
        found.registry_id = found.duration && found.errors && found.client_errors
                                ? reg->id
                                : 0; /* retry until all three */
    }
    o11y_series *s;
    const char *labels[] = {op->name};
    if (found.duration && o11y_metric_series(found.duration, labels, &s) == O11Y_OK)
        o11y_histogram_observe(s, ms / 1e3);
    /* Both counters are resolved on success too, so their series show 0. */
    if (found.errors && o11y_metric_series(found.errors, labels, &s) == O11Y_OK && op->error_code &&
        !client_error)
        o11y_counter_inc(s);
    if (found.client_errors && o11y_metric_series(found.client_errors, labels, &s) == O11Y_OK &&
        client_error)
        o11y_counter_inc(s);
}

double o11y_operation_end(o11y_operation *op)
{
    if (!op || op->ended)
        return 0;
    op->ended = true;
    double ms = (double)(o11y__now_mono_ns() - op->start_ns) / 1e6;
    bool client_error = op->error_code && is_client_error(op->error_code);
    if (client_error)
        o11y_log_va(NULL, O11Y_LOG_WARN, "operation", "operation rejected",
                    O11Y_STR("operation", op->name), O11Y_STR("outcome", "client_error"),
                    O11Y_STR("error_code", op->error_code), O11Y_DURATION_MS(ms), O11Y__END);
    else if (op->error_code)
        o11y_log_va(NULL, O11Y_LOG_ERROR, "operation", "operation failed",
                    O11Y_STR("operation", op->name), O11Y_STR("outcome", "failure"),
                    O11Y_STR("error_code", op->error_code), O11Y_DURATION_MS(ms), O11Y__END);
    else
        o11y_log_va(NULL, O11Y_LOG_INFO, "operation", "operation completed",
                    O11Y_STR("operation", op->name), O11Y_STR("outcome", "success"),
                    O11Y_DURATION_MS(ms), O11Y__END);
    record(op, ms, client_error);
    return ms;
}

void o11y__operation_cleanup(o11y_operation *op)
{
    o11y_operation_end(op);
}
