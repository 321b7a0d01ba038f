/* backends/curl/check.c — the HTTP health check (libo11y-curl): GET with libcurl, healthy on a
 * 2xx within the timeout. The error text is curl's for its code, never the URL (it may hold
 * credentials). */
#include "o11y/curl.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_check {
    unsigned timeout_ms;
    char url[];
} http_check;

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p, (void)ctx;
    return size * n;
}

static o11y_health_status run_http(void *ctx, char *error, size_t len)
{
    http_check *c = ctx;
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(error, len, "out of memory");
        return O11Y_HEALTH_UNHEALTHY;
    }
    curl_easy_setopt(curl, CURLOPT_URL, (const char *)c->url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "o11y-health/" O11Y_VERSION_STRING);
    CURLcode rc = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(curl);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(error, len, "timeout");
        return O11Y_HEALTH_UNHEALTHY;
    }
    if (rc != CURLE_OK) {
        snprintf(error, len, "request failed: %s", curl_easy_strerror(rc));
        return O11Y_HEALTH_UNHEALTHY;
    }
    if (code < 200 || code > 299) {
        snprintf(error, len, "HTTP %ld", code);
        return O11Y_HEALTH_UNHEALTHY;
    }
    return O11Y_HEALTH_HEALTHY;
}

o11y_status o11y_health_add_http(o11y_health *h, const o11y_health_check_opts *opts,
                                 const char *url)
{
    if (!h || !opts || !url ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return O11Y_EINVAL;
    size_t len = strlen(url);
    if (len > 8192)
        return O11Y_EINVAL;
    http_check *c = malloc(sizeof *c + len + 1);
    if (!c)
        return O11Y_ENOMEM;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : O11Y_HEALTH_DEFAULT_TIMEOUT_MS;
    memcpy(c->url, url, len + 1);
    o11y_status st = o11y_health_add_custom_owned(h, opts, run_http, c, free);
    if (st != O11Y_OK)
        free(c);
    return st;
}
