/* legacy_mhd.c — an existing libmicrohttpd application adopting the library one route at a time.
 * Its own daemon and handler stay; /hello/{name} and the health and metrics routes move to the
 * library, every other request reaches the old handler as before.
 * Usage: legacy_mhd [PORT] [LOG_FILE]   (PORT 0: any free port; prints "listening on N") */
#include <jansson.h>
#include <microhttpd.h>
#include <o11y/o11y.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*=== the application as it was ===*/

typedef struct old_app {
    unsigned long served;
} old_app;

static enum MHD_Result old_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls)
{
    (void)method, (void)version, (void)upload_data, (void)upload_data_size;
    old_app *app = cls;
    if (!*req_cls) { /* the old code's own per-request state, untouched by the library */
        *req_cls = app;
        return MHD_YES;
    }
    app->served++;
    /* The old code may log through the library now: the line carries the request's trace id. */
    o11y_log_info("old handler", O11Y_STR("url", url));
    bool known = strcmp(url, "/legacy") == 0;
    const char *body = known ? "legacy answer\n" : "old 404\n";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(conn, known ? 200 : 404, r);
    MHD_destroy_response(r);
    return ret;
}

static void old_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    *req_cls = NULL;
}

/*=== the route moved to the library ===*/

static int hello(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    o11y_str name = o11y_req_param(req, "name");
    return o11y_res_json(res, 200, json_pack("{s:s%}", "hello", name.ptr, name.len)) == O11Y_OK ? 0
                                                                                                : 1;
}

int main(int argc, char **argv)
{
    unsigned port = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 8080;
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "legacy-app";
    cfg.log.file_path = argc > 2 ? argv[2] : NULL;
    o11y_service *svc;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK ||
        o11y_service_route(svc, O11Y_GET, "/hello/{name}", hello, NULL, 0) != O11Y_OK)
        return 1;
    old_app app = {0};
    o11y_mhd_embed_config ec = {
        .fallback = old_handler, .fallback_cls = &app, .fallback_completed = old_completed};
    o11y_mhd_embed *e;
    if (o11y_mhd_embed_create(svc, &ec, &e) != O11Y_OK)
        return 1;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* The application's own daemon, as it was, with the library's three callbacks. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port,
        NULL, NULL, o11y_mhd_embed_access, e, MHD_OPTION_NOTIFY_COMPLETED, o11y_mhd_embed_completed,
        e, MHD_OPTION_URI_LOG_CALLBACK, o11y_mhd_embed_uri_log, e, MHD_OPTION_END);
    if (!d)
        return 1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on %u\n", info ? (unsigned)info->port : port);
    fflush(stdout);
    int sig;
    sigwait(&sigs, &sig);
    MHD_stop_daemon(d);
    o11y_mhd_embed_destroy(e);
    o11y_service_destroy(svc);
    return 0;
}
