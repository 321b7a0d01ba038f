/* validate.c — request body checks shared by generation-service's routes. */
#include "validate.h"

#include <stdio.h>
#include <string.h>

size_t gs_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

const char *gs_text_field(json_t *obj, const char *name, bool required, bool allow_empty,
                          size_t max_chars, o11y_response *res)
{
    json_t *v = json_object_get(obj, name);
    if (!v) {
        if (required)
            o11y_res_field_error(res, name, "is required");
        return NULL;
    }
    if (!json_is_string(v)) {
        o11y_res_field_error(res, name, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(v);
    if (json_string_length(v) != strlen(s)) {
        o11y_res_field_error(res, name, "must not contain NUL characters");
        return NULL;
    }
    size_t chars = gs_utf8_chars(s);
    if (chars == 0 && !allow_empty) {
        o11y_res_field_error(res, name, "must not be empty");
        return NULL;
    }
    if (chars > max_chars) {
        char problem[64];
        snprintf(problem, sizeof problem, "must be at most %zu characters", max_chars);
        o11y_res_field_error(res, name, problem);
        return NULL;
    }
    return s;
}

void gs_reject_unknown(json_t *obj, const char *const *allowed, size_t n_allowed,
                       o11y_response *res)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < n_allowed; i++)
            known |= strcmp(key, allowed[i]) == 0;
        if (!known) {
            /* The key is the client's: keep what we echo short. */
            char field[80];
            size_t len = strlen(key);
            if (len >= sizeof field) {
                len = sizeof field - 4;
                while (len && ((unsigned char)key[len] & 0xC0) == 0x80)
                    len--; /* cut on a character boundary */
            }
            snprintf(field, sizeof field, "%.*s%s", (int)len, key, key[len] ? "..." : "");
            o11y_res_field_error(res, field, "is not a known field");
        }
    }
}
