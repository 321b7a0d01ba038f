/* errors.c — see errors.h. */
#include "errors.h"

GS_ERRORS(O11Y_ERROR_DEFINE)

o11y_status gs_errors_register(void)
{
    static const o11y_error_def *const all[] = {
#define GS_X(code, status, retryable, message) &o11y_err_##code,
        GS_ERRORS(GS_X)
#undef GS_X
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        o11y_status st = o11y_error_register(all[i]);
        if (st != O11Y_OK)
            return st;
    }
    return O11Y_OK;
}
