/* http/health_routes.c — GET /health, /health/live and /health/ready (CONTRACT section 5).
 * They read the health object's stored results: no dependency I/O on a probe. */
#include "http/http_internal.h"

#include "health/api.h"

#include <strings.h>

/* application/health+json (the IETF draft's media type) when named, and preferred at least as
 * much as JSON. */
static bool wants_health_json(o11y_request *req)
{
    o11y_str accept = o11y_req_header(req, "Accept");
    int q_health = o11y_accept_quality(accept.ptr, accept.len, "application/health+json", true);
    int q_json = o11y_accept_quality(accept.ptr, accept.len, "application/json", false);
    return q_health > 0 && q_health >= q_json;
}

static int answer(o11y_response *res, int status, const char *type, o11y__buf *b)
{
    size_t len = 0;
    char *body = o11y__buf_take(b, &len);
    o11y__buf_release(b);
    if (!body)
        return 1;
    o11y__res_body_owned(res, status, type, body, len);
    return o11y_res_header(res, "Cache-Control", "no-store") == O11Y_OK ? 0 : 1;
}

static int serve(o11y_request *req, o11y_response *res, o11y_health *h, o11y__health_doc doc)
{
    bool ietf = wants_health_json(req);
    o11y__buf b;
    o11y__buf_init(&b, 1 << 20);
    int status = o11y__health_render(h, doc, ietf, &b);
    return answer(res, status, ietf ? "application/health+json" : "application/json", &b);
}

static int health(o11y_request *req, o11y_response *res, void *user)
{
    return serve(req, res, user, O11Y__HEALTH_FULL);
}

static int ready(o11y_request *req, o11y_response *res, void *user)
{
    return serve(req, res, user, O11Y__HEALTH_READY);
}

static int live(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    o11y__buf b;
    o11y__buf_init(&b, 64);
    o11y__buf_lit(&b, "{\"status\":\"healthy\"}");
    return answer(res, 200, "application/json", &b);
}

o11y_status o11y__service_health_routes(o11y_service *svc)
{
    o11y_status st =
        o11y_service_route(svc, O11Y_GET, "/health", health, svc->health, O11Y_ROUTE_NONBLOCKING);
    if (st == O11Y_OK)
        st = o11y_service_route(svc, O11Y_GET, "/health/live", live, svc->health,
                                O11Y_ROUTE_NONBLOCKING);
    if (st == O11Y_OK)
        st = o11y_service_route(svc, O11Y_GET, "/health/ready", ready, svc->health,
                                O11Y_ROUTE_NONBLOCKING);
    return st;
}
