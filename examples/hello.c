/* The README's example: a libmicrohttpd service instrumented with one setup call. */
#include <jansson.h>
#include <o11y/o11y.h>

static int hello(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    o11y_str name = o11y_req_param(req, "name");
    o11y_log_info("greeting", O11Y_STRN("name", name.ptr, name.len)); /* carries the trace ids */
    if (name.len > 64) {
        o11y_res_fail(res, &o11y_err_VALIDATION_FAILED, NULL, "name is too long");
        return 0;
    }
    json_t *body = json_pack("{s:s%}", "hello", name.ptr, name.len);
    return o11y_res_json(res, 200, body) == O11Y_OK ? 0 : 1;
}

int main(void)
{
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "hello-service";
    o11y_service *svc;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK ||
        o11y_service_route(svc, O11Y_GET, "/hello/{name}", hello, NULL, 0) != O11Y_OK)
        return 1;
    o11y_mhd_config mhd;
    o11y_mhd_config_init(&mhd);
    mhd.port = 8080;
    o11y_status st = o11y_mhd_run(svc, &mhd); /* until SIGINT/SIGTERM; drains, then returns */
    o11y_service_destroy(svc);
    return st == O11Y_OK ? 0 : 1;
}
