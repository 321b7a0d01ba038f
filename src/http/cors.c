/* http/cors.c — cross-origin requests from browsers (CONTRACT section 9): the allowed origins,
 * the preflight answered by the pipeline, and the headers on every response. An allowed origin
 * is answered with the configured string, never the request's bytes. */
#include "http/http_internal.h"

#include "o11y/error.h"

#include <stdio.h>
#include <string.h>

struct o11y__cors {
    bool any; /* "*" */
    bool credentials;
    char **origins;
    size_t n;
    char *allow_headers; /* the preflight's Access-Control-Allow-Headers */
    char max_age[16];
};

static const char base_allow_headers[] = "Content-Type, Idempotency-Key, X-Trace-Id, traceparent, "
                                         "tracestate, baggage, X-Job-Id, X-Project-Id, "
                                         "Last-Event-ID";
static const char expose_headers[] =
    "X-Trace-Id, X-Job-Id, X-Project-Id, X-Processing-Time, X-Service, Retry-After, "
    "Idempotent-Replayed, X-Original-Trace-Id, RateLimit, RateLimit-Policy";

/* scheme://host[:port], as a browser serializes an origin: no path, no blanks, no userinfo. */
static bool origin_valid(const char *s, size_t n)
{
    size_t skip = n > 7 && strncmp(s, "http://", 7) == 0    ? 7
                  : n > 8 && strncmp(s, "https://", 8) == 0 ? 8
                                                            : 0;
    if (!skip || n > 256)
        return false;
    for (size_t i = skip; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                  c == ':' || c == '[' || c == ']';
        if (!ok)
            return false;
    }
    return true;
}

/* A header name list: tokens separated by commas and blanks. */
static bool header_list_valid(const char *s)
{
    for (; *s; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == ',' || c == ' ';
        if (!ok)
            return false;
    }
    return true;
}

void o11y__cors_free(o11y__cors *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        o11y__free(c->origins[i]);
    o11y__free(c->origins);
    o11y__free(c->allow_headers);
    o11y__free(c);
}

o11y_status o11y_service_cors(o11y_service *svc, const o11y_cors_config *cfg)
{
    if (!svc || !cfg || !cfg->origins || !*cfg->origins || svc->cors)
        return O11Y_EINVAL;
    if (cfg->allow_headers &&
        (!header_list_valid(cfg->allow_headers) || strlen(cfg->allow_headers) > 1024))
        return O11Y_EINVAL;
    o11y__cors *c = o11y__calloc(1, sizeof *c);
    if (!c)
        return O11Y_ENOMEM;
    c->credentials = cfg->allow_credentials;
    snprintf(c->max_age, sizeof c->max_age, "%u", cfg->max_age_s ? cfg->max_age_s : 600);
    o11y_status st = O11Y_OK;
    if (strcmp(cfg->origins, "*") == 0) {
        c->any = true;
        if (cfg->allow_credentials)
            st = O11Y_EINVAL; /* the Fetch standard refuses credentials with "*" */
    } else {
        for (const char *p = cfg->origins; st == O11Y_OK && *p;) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            while (len && (*p == ' '))
                p++, len--;
            while (len && p[len - 1] == ' ')
                len--;
            if (!origin_valid(p, len) || c->n == 64) {
                st = O11Y_EINVAL;
                break;
            }
            char **grown = o11y__realloc(c->origins, (c->n + 1) * sizeof *grown);
            char *copy = grown ? o11y__strndup(p, len) : NULL;
            if (grown)
                c->origins = grown;
            if (!copy) {
                st = O11Y_ENOMEM;
                break;
            }
            c->origins[c->n++] = copy;
            p = end ? end + 1 : p + len;
        }
    }
    size_t n =
        sizeof base_allow_headers + (cfg->allow_headers ? strlen(cfg->allow_headers) + 2 : 0);
    c->allow_headers = st == O11Y_OK ? o11y__malloc(n) : NULL;
    if (st == O11Y_OK && !c->allow_headers)
        st = O11Y_ENOMEM;
    if (st != O11Y_OK) {
        o11y__cors_free(c);
        return st;
    }
    snprintf(c->allow_headers, n, "%s%s%s", base_allow_headers, cfg->allow_headers ? ", " : "",
             cfg->allow_headers ? cfg->allow_headers : "");
    svc->cors = c;
    return O11Y_OK;
}

void o11y__cors_match(o11y__exchange *ex, const o11y__std_headers *std)
{
    const o11y__cors *c = ex->req.svc->cors;
    if (!c)
        return;
    ex->req.preflight = ex->req.method == O11Y_OPTIONS && std->acr_method.ptr != NULL;
    if (!std->origin.ptr)
        return;
    if (c->any) {
        ex->req.cors_origin = "*";
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        if (strlen(c->origins[i]) == std->origin.len &&
            memcmp(c->origins[i], std->origin.ptr, std->origin.len) == 0)
            ex->req.cors_origin = c->origins[i];
}

void o11y__cors_preflight(o11y__exchange *ex)
{
    o11y_request *req = &ex->req;
    if (!req->cors_origin) {
        o11y_res_fail(&ex->res, &o11y_err_ORIGIN_NOT_ALLOWED, NULL, NULL);
        return;
    }
    o11y_res_empty(&ex->res, 204);
    req->preflight_ok = true;
}

void o11y__cors_headers(o11y__exchange *ex,
                        void (*add)(o11y_response *, const char *, size_t, const char *, size_t))
{
    const o11y__cors *c = ex->req.svc->cors;
    o11y_response *res = &ex->res;
    add(res, "Vary", 4, "Origin", 6); /* caches must not mix origins, allowed or not */
    const char *origin = ex->req.cors_origin;
    if (!origin)
        return;
    add(res, "Access-Control-Allow-Origin", 27, origin, strlen(origin));
    if (c->credentials)
        add(res, "Access-Control-Allow-Credentials", 32, "true", 4);
    if (ex->req.preflight_ok) {
        const char *methods = ex->req.route ? ex->req.route->allow : "";
        add(res, "Access-Control-Allow-Methods", 28, methods, strlen(methods));
        add(res, "Access-Control-Allow-Headers", 28, c->allow_headers, strlen(c->allow_headers));
        add(res, "Access-Control-Max-Age", 22, c->max_age, strlen(c->max_age));
    } else {
        add(res, "Access-Control-Expose-Headers", 29, expose_headers, sizeof expose_headers - 1);
    }
}
