/* o11y/error.h — the error catalog (CONTRACT section 1) and the envelope / RFC 9457 rendering. */
#ifndef O11Y_ERROR_H
#define O11Y_ERROR_H

#include "o11y/common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's catalog, generic codes only (CONTRACT section 1):
 * X(CODE, status, retryable, default message). A service's own codes (PROJECT_NOT_FOUND, ...)
 * are its own table, registered at start-up (see generation-service's errors.h). */
#define O11Y_ERROR_CATALOG(X)                                                                      \
    X(VALIDATION_FAILED, 400, false, "The request is not valid")                                   \
    X(IDEMPOTENCY_KEY_INVALID, 400, false, "The Idempotency-Key header is not valid")              \
    X(IDEMPOTENCY_KEY_MISSING, 400, false, "This route requires an Idempotency-Key header")        \
    X(ORIGIN_NOT_ALLOWED, 403, false, "The request's origin is not allowed")                       \
    X(NOT_FOUND, 404, false, "No route matches the request")                                       \
    X(METHOD_NOT_ALLOWED, 405, false, "The route does not allow this method")                      \
    X(IDEMPOTENCY_KEY_IN_USE, 409, true, "A request with this Idempotency-Key is in progress")     \
    X(PAYLOAD_TOO_LARGE, 413, false, "The request body is larger than the limit")                  \
    X(UNSUPPORTED_MEDIA_TYPE, 415, false, "The request body must be application/json")             \
    X(IDEMPOTENCY_KEY_REUSED, 422, false, "The Idempotency-Key was used with another request")     \
    X(BUSINESS_RULE_VIOLATION, 422, false, "The request breaks a business rule")                   \
    X(RATE_LIMITED, 429, true, "Too many requests")                                                \
    X(INTERNAL_ERROR, 500, true, "An unexpected error occurred")                                   \
    X(NOT_IMPLEMENTED, 501, false, "The server does not support a feature the request uses")       \
    X(SERVICE_UNAVAILABLE, 503, true, "A dependency is unavailable")

/* One catalog entry. Codes are UPPER_SNAKE_CASE; status is 400-599. */
typedef struct o11y_error_def {
    const char *code;
    int status;
    bool retryable;
    const char *message; /* default message for a person; the only message a 5xx ever carries */
} o11y_error_def;

/* Every code of the catalog as a constant, o11y_err_CODE: an answer names its code by one, so a
 * misspelt code fails to compile instead of becoming a 500 (in the way libuv makes its error
 * names from one table). A service declares its own the same way:
 *     #define MY_ERRORS(X) X(PROJECT_NOT_FOUND, 404, false, "The project does not exist")
 *     MY_ERRORS(O11Y_ERROR_DECLARE)            (in a header: extern const o11y_error_def ...)
 *     MY_ERRORS(O11Y_ERROR_DEFINE)             (in one .c file)
 * and registers each with o11y_error_register at start-up. */
#define O11Y_ERROR_DECLARE(code, status, retryable, message)                                       \
    extern const o11y_error_def o11y_err_##code;
#define O11Y_ERROR_DEFINE(code, status, retryable, message)                                        \
    const o11y_error_def o11y_err_##code = {#code, status, retryable, message};
#define O11Y__ERROR_EXPORT(code, status, retryable, message)                                       \
    O11Y_API extern const o11y_error_def o11y_err_##code;
O11Y_ERROR_CATALOG(O11Y__ERROR_EXPORT)

/* The RFC 9110 reason phrase of an HTTP status ("Not Found"); for a status without one, "OK",
 * "Redirection", "Client Error" or "Server Error" by its class. Never NULL; static; thread-safe. */
O11Y_API const char *o11y_http_status_phrase(int status);

/* The entry for code, or NULL when neither built in nor registered. Returns borrowed, valid
 * for the life of the process. Thread-safe: yes (lock-free reads). */
O11Y_API const o11y_error_def *o11y_error_lookup(const char *code);

/* Adds a service's own code at start-up. Copies def. Registering an identical entry again is
 * O11Y_OK. Returns O11Y_EINVAL (code not UPPER_SNAKE_CASE or longer than 64 bytes, status
 * outside 400-599, NULL message), O11Y_ECONFLICT (code exists with other values), O11Y_ELIMIT
 * (more than 256 registered codes) or O11Y_ENOMEM. Thread-safe: yes. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_error_register(const o11y_error_def *def);

/* Calls fn for every entry, built-in first, in catalog order. */
O11Y_API void o11y_error_foreach(void (*fn)(const o11y_error_def *def, void *ctx), void *ctx);

typedef enum o11y_error_format {
    O11Y_ERROR_ENVELOPE = 0, /* {"success":false,"error":{...}}, application/json */
    O11Y_ERROR_PROBLEM = 1,  /* RFC 9457 application/problem+json */
} o11y_error_format;

/* Chooses the format from an Accept header value (may be NULL): problem details when
 * application/problem+json is listed with a q-value at least that of application/json. */
O11Y_API o11y_error_format o11y_error_negotiate(const char *accept, size_t len);

/* The one Accept negotiator of the library (RFC 9110 section 12.5.1), for errors, /metrics and
 * /health: the q-value in thousandths (0-1000) that the Accept value (len bytes, may be NULL)
 * gives the media type `type` ("application/json"), from the most specific range that matches
 * (type/subtype, then type/asterisk, then asterisk/asterisk; exact_only: type/subtype alone). -1
 * when no range matches; with accept NULL, 1000 (or -1 when exact_only). Thread-safe: yes. */
O11Y_API int o11y_accept_quality(const char *accept, size_t len, const char *type, bool exact_only);

/* Everything an error response says. */
typedef struct o11y_error_info {
    const char *code;         /* must be in the catalog; an unknown code renders INTERNAL_ERROR */
    const char *message;      /* NULL: the catalog's; ignored for a 5xx */
    const char *details_json; /* a JSON object's text, or NULL; dropped for a 5xx */
    size_t details_len;
    o11y_str trace_id;
    int64_t timestamp_ns;     /* Unix time; 0: now */
    const char *problem_base; /* RFC 9457 "type" prefix; NULL: "about:blank" */
} o11y_error_info;

/* Renders the error body. Returns owned, NUL-terminated (free with o11y_free), and its length
 * and HTTP status through the OUT parameters; NULL on ENOMEM. Thread-safe: yes. */
O11Y_API char *o11y_error_render(const o11y_error_info *info, o11y_error_format format,
                                 size_t *len /* OUT */, int *status /* OUT, may be NULL */);

/* Frees memory the library returned as owned. NULL is a no-op. */
O11Y_API void o11y_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
