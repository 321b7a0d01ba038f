/* log/operation.c — operation tracking on top of the logger. */
#include "o11y/operation.h"

#include "core/internal.h"
#include "o11y/log.h"

o11y_operation o11y_operation_start(const char *name)
{
    return (o11y_operation){.name = name ? name : "unnamed", .start_ns = o11y__now_mono_ns()};
}

void o11y_operation_fail(o11y_operation *op, const char *error_code)
{
    if (op)
        op->error_code = error_code ? error_code : "INTERNAL_ERROR";
}

double o11y_operation_end(o11y_operation *op)
{
    if (!op || op->ended)
        return 0;
    op->ended = true;
    double ms = (double)(o11y__now_mono_ns() - op->start_ns) / 1e6;
    if (op->error_code)
        o11y_log_va(NULL, O11Y_LOG_ERROR, "operation", "operation failed",
                    O11Y_STR("operation", op->name), O11Y_STR("outcome", "failure"),
                    O11Y_STR("error_code", op->error_code), O11Y_DURATION_MS(ms), O11Y__END);
    else
        o11y_log_va(NULL, O11Y_LOG_INFO, "operation", "operation completed",
                    O11Y_STR("operation", op->name), O11Y_STR("outcome", "success"),
                    O11Y_DURATION_MS(ms), O11Y__END);
    return ms;
}

void o11y__operation_cleanup(o11y_operation *op)
{
    o11y_operation_end(op);
}
