/* chat_backend — a small OpenAI-compatible chat backend built on libo11y: POST
 * /v1/chat/completions answers a short script as a server-sent chat-completion stream, GET
 * /v1/models lists one model. It lets generation-service run end to end without an API key
 * (--llm-url http://127.0.0.1:PORT/v1), and its own log lines join the caller's trace: the
 * pipeline reads X-Trace-Id and traceparent like any o11y service.
 *
 *     chat_backend [--port N] [--log-file PATH]
 */
#include <jansson.h>
#include <o11y/o11y.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const lines[] = {"HOST: Welcome back to the show.\n",
                                    "GUEST: Glad to be here.\n", "HOST: Let's begin.\n"};

static int models(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    return o11y_res_json(res, 200,
                         json_pack("{s:s,s:[{s:s,s:s}]}", "object", "list", "data", "id",
                                   "chat-backend-1", "object", "model")) == O11Y_OK
               ? 0
               : 1;
}

static int completions(o11y_request *req, o11y_response *res, void *user)
{
    (void)user;
    json_t *body = o11y_req_json(req, res); /* borrowed: freed with the request */
    if (!body)
        return 0; /* answered: not JSON */
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        o11y_res_field_error(res, "messages", "must be a non-empty array");
        return 0;
    }
    o11y_log_info("completion requested", O11Y_INT("messages", (int64_t)json_array_size(messages)));
    /* The whole stream at once: each chunk a "data:" event, then [DONE]. */
    char out[2048];
    size_t len = 0;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        json_t *chunk = json_pack("{s:[{s:{s:s}}]}", "choices", "delta", "content", lines[i]);
        char *text = json_dumps(chunk, JSON_COMPACT);
        json_decref(chunk);
        len += (size_t)snprintf(out + len, sizeof out - len, "data: %s\n\n", text ? text : "{}");
        free(text);
    }
    len += (size_t)snprintf(out + len, sizeof out - len,
                            "data: {\"choices\":[],\"usage\":{\"total_tokens\":24}}\n\n"
                            "data: [DONE]\n\n");
    return o11y_res_body(res, 200, "text/event-stream", out, len) == O11Y_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    unsigned long port = 8090;
    const char *log_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--log-file") == 0 && i + 1 < argc)
            log_file = argv[++i];
        else {
            fprintf(stderr, "usage: chat_backend [--port N] [--log-file PATH]\n");
            return 2;
        }
    }
    if (port > 65535) {
        fprintf(stderr, "chat_backend: --port takes 0-65535\n");
        return 2;
    }
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "chat-backend";
    cfg.version = O11Y_VERSION_STRING;
    cfg.log.file_path = log_file;
    cfg.log.format = O11Y_LOG_FORMAT_JSON;
    o11y_service *svc;
    if (o11y_service_create(&cfg, &svc) != O11Y_OK)
        return 1;
    if (o11y_service_route(svc, O11Y_GET, "/v1/models", models, NULL, 0) != O11Y_OK ||
        o11y_service_route(svc, O11Y_POST, "/v1/chat/completions", completions, NULL,
                           O11Y_ROUTE_JSON) != O11Y_OK) {
        o11y_service_destroy(svc);
        return 1;
    }
    o11y_mhd_config mhd;
    o11y_mhd_config_init(&mhd);
    mhd.port = (uint16_t)port;
    o11y_status st = o11y_mhd_run(svc, &mhd); /* until SIGINT/SIGTERM */
    o11y_service_destroy(svc);
    return st == O11Y_OK ? 0 : 1;
}
