/* backends/curl/check.c — the HTTP health check (libo11y-curl): a GET through the client kit
 * (one attempt, the check's timeout as its deadline), healthy on a 2xx. The error text is the
 * kit's for its code, never the URL (it may hold credentials). */
#include "o11y/client.h"
#include "o11y/curl.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_check {
    o11y_client *client;
    char *path; /* path and query */
} http_check;

static o11y_health_status run_http(void *ctx, char *error, size_t len)
{
    http_check *c = ctx;
    o11y_client_request rq = {.method = "GET", .path = c->path};
    o11y_client_response r;
    o11y_status st = o11y_client_call(c->client, &rq, &r);
    if (st == O11Y_OK) {
        o11y_client_response_clear(&r);
        return O11Y_HEALTH_HEALTHY;
    }
    if (st != O11Y_EBACKEND)
        snprintf(error, len, "%s", o11y_strerror(st));
    else if (strcmp(r.error.code, "TIMEOUT") == 0)
        snprintf(error, len, "timeout");
    else if (r.error.status)
        snprintf(error, len, "HTTP %d", r.error.status);
    else
        snprintf(error, len, "request failed: %s", r.error.message ? r.error.message : "");
    o11y_client_response_clear(&r);
    return O11Y_HEALTH_UNHEALTHY;
}

static void free_check(void *ctx)
{
    http_check *c = ctx;
    o11y_client_destroy(c->client);
    free(c->path);
    free(c);
}

o11y_status o11y_health_add_http(o11y_health *h, const o11y_health_check_opts *opts,
                                 const char *url)
{
    if (!h || !opts || !url ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || strlen(url) > 8192)
        return O11Y_EINVAL;
    /* The kit takes a base URL and a path: split the URL where its path starts. */
    const char *slash = strchr(url + (url[4] == 's' ? 8 : 7), '/');
    const char *query = strchr(url, '?');
    const char *cut = slash ? slash : query ? query : url + strlen(url);
    if (query && query < cut)
        cut = query;
    char *base = strndup(url, (size_t)(cut - url));
    size_t plen = strlen(cut) + 2;
    char *path = malloc(plen);
    http_check *c = calloc(1, sizeof *c);
    if (!base || !path || !c) {
        free(base);
        free(path);
        free(c);
        return O11Y_ENOMEM;
    }
    snprintf(path, plen, "%s%s", *cut == '/' ? "" : "/", cut);
    c->path = path;
    unsigned timeout = opts->timeout_ms ? opts->timeout_ms : O11Y_HEALTH_DEFAULT_TIMEOUT_MS;
    o11y_client_config cc;
    o11y_client_config_init(&cc);
    cc.base_url = base;
    cc.service_name = "o11y-health";
    cc.max_attempts = 1;
    cc.deadline_ms = timeout;
    cc.attempt_timeout_ms = timeout;
    cc.connect_timeout_ms = timeout;
    cc.log_level = O11Y_LOG_DEBUG; /* a check runs every few seconds; its changes are logged */
    o11y_status st = o11y_client_create(&cc, &c->client);
    free(base);
    if (st == O11Y_OK)
        st = o11y_health_add_custom_owned(h, opts, run_http, c, free_check);
    if (st != O11Y_OK)
        free_check(c);
    return st;
}
