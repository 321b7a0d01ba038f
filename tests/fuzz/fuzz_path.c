/* Fuzz target: the request target: route matching, path parameters' percent-decoding and the
 * query string. A decoded parameter is NUL-free UTF-8 inside the arena; nothing reads past the
 * target. Input: the raw request target (path and query, any bytes). */
#include "http/http_internal.h"

#include <o11y/o11y.h>

#include <stdlib.h>

static o11y_service *svc;

static int unused(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    o11y_res_empty(res, 204);
    return 0;
}

/* A plain structural UTF-8 check (lead byte, then continuations), independent of the
 * decoder's own. */
static bool utf8_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!n || i + n > len)
            return false;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] >> 6) != 2)
                return false;
        i += n;
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "fuzz";
    cfg.log.file_path = "/dev/null";
    static const char *const routes[] = {"/projects/{projectId}",
                                         "/projects/{projectId}/episodes/{episodeId}",
                                         "/projects/new", "/a/{x}/b/{y}/c/{z}", "/"};
    if (o11y_service_create(&cfg, &svc) != O11Y_OK)
        abort();
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (o11y_service_route(svc, O11Y_GET, routes[i], unused, NULL, 0) != O11Y_OK)
            abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    o11y__exchange *ex = o11y__exchange_new(svc, (const char *)data, size);
    if (!ex)
        return 0;
    o11y_request *req = &ex->req;
    o11y_str raw[O11Y__MAX_PARAMS];
    const o11y__route *r = o11y__route_match(svc, req->uri, req->path_len, raw);
    for (size_t i = 0; r && i < r->n_params; i++) {
        if (raw[i].ptr < req->uri || raw[i].ptr + raw[i].len > req->uri + req->path_len)
            abort();
        o11y_str out;
        if (o11y__percent_decode(&req->arena, raw[i].ptr, raw[i].len, false, &out)) {
            if (memchr(out.ptr, '\0', out.len) || out.ptr[out.len] != '\0' ||
                !utf8_valid(out.ptr, out.len))
                abort();
        }
    }
    static const char *const names[] = {"limit", "after", "include", "days", ""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        o11y_str v;
        if (o11y_req_query(req, names[i], &v) && v.len && memchr(v.ptr, '\0', v.len))
            abort();
    }
    o11y__exchange_free(ex);
    return 0;
}
