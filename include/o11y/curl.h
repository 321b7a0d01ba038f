/* o11y/curl.h — the optional libcurl part (libo11y-curl; pkg-config o11y-curl; CMake component
 * curl): the HTTP health check. */
#ifndef O11Y_CURL_H
#define O11Y_CURL_H

#include "o11y/health.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GET url (http or https) with libcurl; a 2xx answer within the timeout is healthy.
 * Credentials and query in url are never shown. url is copied. Returns as
 * o11y_health_add_custom, or O11Y_EINVAL for another scheme. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_health_add_http(o11y_health *h,
                                                           const o11y_health_check_opts *opts,
                                                           const char *url);

#ifdef __cplusplus
}
#endif
#endif
