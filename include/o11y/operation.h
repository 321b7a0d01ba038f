/* o11y/operation.h — timing a block of work: the original OperationTracker and
 * @track_performance. One log line per operation: "event":"operation" with its name, outcome
 * and duration_ms, carrying the thread's trace context. */
#ifndef O11Y_OPERATION_H
#define O11Y_OPERATION_H

#include "o11y/common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A caller-owned value; fields are private to the library. */
typedef struct o11y_operation {
    const char *name;       /* borrowed: a string that outlives the operation (a literal) */
    const char *error_code; /* borrowed; NULL while the operation succeeds */
    int64_t start_ns;
    bool ended;
} o11y_operation;

/* Starts timing. name is borrowed until the operation ends. */
O11Y_API o11y_operation o11y_operation_start(const char *name);
/* Marks the operation failed with an error code (borrowed until it ends); the last call wins. */
O11Y_API void o11y_operation_fail(o11y_operation *op, const char *error_code);
/* Ends the operation and logs it (INFO on success, ERROR on failure) to the default logger.
 * A second call is a no-op. Returns the duration in milliseconds. */
O11Y_API double o11y_operation_end(o11y_operation *op);

/* Times the rest of the enclosing block: ends (and logs) when `var` goes out of scope, on every
 * path out of the block. */
#define O11Y_OPERATION_SCOPE(var, name)                                                            \
    __attribute__((cleanup(o11y__operation_cleanup))) o11y_operation var =                         \
        o11y_operation_start(name)
/* The cleanup function of O11Y_OPERATION_SCOPE (not for direct use): o11y_operation_end. */
O11Y_API void o11y__operation_cleanup(o11y_operation *op);

#ifdef __cplusplus
}
#endif
#endif
