/* errors.h — generation-service's own error codes (CONTRACT section 1), one table: each code is
 * a constant (o11y_err_CODE), so a misspelt code does not compile. Registered at start-up. */
#ifndef GS_ERRORS_H
#define GS_ERRORS_H

#include <o11y/error.h>

#define GS_ERRORS(X)                                                                               \
    X(PROJECT_NOT_FOUND, 404, false, "The project does not exist")                                 \
    X(EPISODE_NOT_FOUND, 404, false, "The episode does not exist")                                 \
    X(GENERATION_NOT_FOUND, 404, false, "The generation does not exist")                           \
    X(EPISODE_NUMBER_CONFLICT, 409, false, "The episode number is already used in the project")    \
    X(EPISODE_SAVE_FAILED, 503, true, "The episode could not be saved")                            \
    X(GENERATION_QUEUE_FULL, 503, true, "Too many generations are waiting; retry later")

GS_ERRORS(O11Y_ERROR_DECLARE)

/* Registers every code above with the library (before serving). */
o11y_status gs_errors_register(void);

#endif
