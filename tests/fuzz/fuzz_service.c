/* Fuzz target: request bodies of every generation-service route through the whole pipeline
 * (routing, limits, idempotency, handler, error rendering) with real SQLite. Every answer is a
 * valid status; an error is the contract's envelope; nothing crashes or leaks. Input: the first
 * byte picks the route and method, the second says whether to send an Idempotency-Key, the
 * rest is the body. */
#include "http/http_internal.h"

#include "../../services/generation-service/errors.h"
#include "../../services/generation-service/generations.h"
#include "../../services/generation-service/jobs.h"
#include "../../services/generation-service/routes.h"
#include "../../services/generation-service/store.h"

#include <o11y/o11y.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static o11y_service *svc;
static gs_store *store;
static gs_app app;
static o11y_idem_store *idem;
static char project[64], episode[64], generation[64];
static char paths[9][256];
static char db_path[64];

static void remove_db(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char f[80];
        snprintf(f, sizeof f, "%s%s", db_path, suffixes[i]);
        unlink(f);
    }
}

static const struct {
    const char *method;
    int path;
} routes[] = {
    {"POST", 0}, {"GET", 1}, {"POST", 2},   {"GET", 2}, {"GET", 3}, {"PATCH", 3}, {"DELETE", 3},
    {"POST", 4}, {"GET", 5}, {"DELETE", 5}, {"GET", 6}, {"PUT", 1}, {"GET", 7},   {"POST", 8},
};

static o11y_str no_header(void *ctx, const char *name)
{
    (void)ctx, (void)name;
    return (o11y_str){NULL, 0};
}

/* One request, as an adapter drives the pipeline. Returns the status. */
static int exchange(const char *method, const char *path, const char *body, size_t len,
                    const char *key)
{
    o11y__exchange *ex = o11y__exchange_new(svc, path, strlen(path));
    if (!ex)
        return 0;
    o11y__std_headers std = {.content_length = (int64_t)len};
    static const char json[] = "application/json";
    o11y__std_headers_add(&std, "Content-Type", 12, json, sizeof json - 1);
    if (key)
        o11y__std_headers_add(&std, "Idempotency-Key", 15, key, strlen(key));
    bool final = o11y__pipeline_begin(ex, method, &std, no_header, NULL);
    if (!(final && ex->req.answer_now) && len)
        o11y__pipeline_body(ex, body, len);
    o11y__pipeline_run(ex);
    int status = ex->res.status;
    if (status < 100 || status > 599)
        abort();
    if (status >= 400 && !ex->res.stream) {
        json_error_t err;
        json_t *j = json_loadb(ex->res.body, ex->res.body_len, 0, &err);
        json_t *e = json_object_get(j, "error");
        if (!json_is_string(json_object_get(e, "code")) ||
            !json_is_string(json_object_get(e, "traceId")))
            abort();
        json_decref(j);
    }
    o11y__pipeline_done(ex, ex->res.body_len, true);
    o11y__exchange_free(ex);
    return status;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char db[64], err[256];
    snprintf(db, sizeof db, "/tmp/o11y-fuzz-%d.db", (int)getpid());
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = "fuzz";
    cfg.log.file_path = "/dev/null";
    if (gs_errors_register() != O11Y_OK || o11y_service_create(&cfg, &svc) != O11Y_OK ||
        !(store = gs_store_open(db, 0, err, 256)))
        abort();
    gs_jobs_config jc = {.workers = 1, .queue_cap = 8, .step_ms = 1, .jobs_kept = 16};
    app = (gs_app){.store = store,
                   .jobs = gs_jobs_start(store, &jc),
                   .max_prompt_chars = 4000,
                   .default_model = "builtin-scriptwriter"};
    if (!app.jobs || gs_routes_register(svc, store) != O11Y_OK ||
        gs_generation_routes(svc, &app) != O11Y_OK ||
        o11y_service_client_logs(svc, NULL) != O11Y_OK ||
        o11y_idem_store_memory(NULL, &idem) != O11Y_OK)
        abort();
    o11y_idem_config ic = {.store = idem, .ttl_s = 60};
    if (o11y_service_idempotency(svc, &ic) != O11Y_OK)
        abort();
    json_t *p = NULL, *e = NULL;
    if (gs_project_create(store, "fuzz", &p) != GS_OK)
        abort();
    snprintf(project, sizeof project, "%s", json_string_value(json_object_get(p, "id")));
    if (gs_episode_create(store, project, 1, "one", NULL, &e) != GS_OK)
        abort();
    snprintf(episode, sizeof episode, "%s", json_string_value(json_object_get(e, "id")));
    json_decref(p);
    json_decref(e);
    snprintf(generation, sizeof generation, "gen_missing");
    snprintf(paths[0], sizeof paths[0], "/projects");
    snprintf(paths[1], sizeof paths[1], "/projects/%s", project);
    snprintf(paths[2], sizeof paths[2], "/projects/%s/episodes", project);
    snprintf(paths[3], sizeof paths[3], "/projects/%s/episodes/%s", project, episode);
    snprintf(paths[4], sizeof paths[4], "/generations");
    snprintf(paths[5], sizeof paths[5], "/generations/%s", generation);
    snprintf(paths[6], sizeof paths[6], "/stats/episodes?days=3");
    snprintf(paths[7], sizeof paths[7], "/metrics/summary");
    snprintf(paths[8], sizeof paths[8], "/client-logs");
    snprintf(db_path, sizeof db_path, "%s", db);
    atexit(remove_db);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n_routes = sizeof routes / sizeof routes[0];
    size_t r = data[0] % n_routes;
    char key[32];
    static unsigned long counter;
    snprintf(key, sizeof key, "k%lu", counter++ % 64); /* keys repeat: replays and 422s */
    exchange(routes[r].method, paths[routes[r].path], (const char *)data + 2, size - 2,
             data[1] & 1 ? key : NULL);
    return 0;
}
