/* validate.h — request body checks shared by generation-service's routes. */
#ifndef GS_VALIDATE_H
#define GS_VALIDATE_H

#include <o11y/http.h>

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Code points in a valid UTF-8 string (jansson has already rejected invalid UTF-8). */
size_t gs_utf8_chars(const char *s);

/* The string member `name` of obj, checked: a string without NUL characters, at most max_chars
 * code points, and not empty unless allow_empty. Absent: a field error when required. NULL when
 * absent or invalid (the field error is on res). */
const char *gs_text_field(json_t *obj, const char *name, bool required, bool allow_empty,
                          size_t max_chars, o11y_response *res);

/* Flags every member of obj that is not in allowed[] as "is not a known field", naming it (cut
 * to 80 bytes on a character boundary). The one unknown-field check of every route. */
void gs_reject_unknown(json_t *obj, const char *const *allowed, size_t n_allowed,
                       o11y_response *res);

#endif
