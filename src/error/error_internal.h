/* error/error_internal.h — rendering into a caller's buffer, for the http pipeline. */
#ifndef O11Y_ERROR_INTERNAL_H
#define O11Y_ERROR_INTERNAL_H

#include "core/internal.h"
#include "o11y/error.h"

/* Appends the rendered body to b; *status_out gets the HTTP status of the code actually used. */
void o11y__error_render(o11y__buf *b, const o11y_error_info *info, o11y_error_format format,
                        int *status_out);

#endif
