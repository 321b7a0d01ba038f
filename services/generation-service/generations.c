/* generations.c — POST /generations, GET /generations/{id}, GET /generations/{id}/events and
 * DELETE /generations/{id} (CONTRACT section 7). */
#include "generations.h"
#include "errors.h"
#include "validate.h"

#include <o11y/log.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int create(o11y_request *req, o11y_response *res, void *user)
{
    gs_app *app = user;
    json_t *body = o11y_req_json(req, res);
    if (!body)
        return 0;
    static const char *const allowed[] = {"projectId", "episodeId", "prompt", "model"};
    gs_reject_unknown(body, allowed, 4, res);
    const char *project = gs_text_field(body, "projectId", true, false, 160, res);
    const char *episode = gs_text_field(body, "episodeId", true, false, 160, res);
    const char *prompt = gs_text_field(body, "prompt", true, false, app->max_prompt_chars, res);
    const char *model = gs_text_field(body, "model", false, false, 60, res);
    if (o11y_res_has_field_errors(res))
        return 0;
    /* Its responses carry the body's project (CONTRACT section 7). */
    if (o11y_trace_ctx_set_project_id(o11y_req_trace(req), project, strlen(project)) != O11Y_OK)
        o11y_log_debug("project id not usable as a header");
    json_t *p = NULL;
    gs_result r = gs_project_get(app->store, project, &p);
    json_decref(p);
    if (r == GS_NOT_FOUND) {
        o11y_res_fail(res, &o11y_err_PROJECT_NOT_FOUND, NULL, NULL);
        return 0;
    }
    char owner[160];
    if (r == GS_OK)
        r = gs_episode_project(app->store, episode, owner, sizeof owner);
    if (r == GS_NOT_FOUND) {
        o11y_res_fail(res, &o11y_err_EPISODE_NOT_FOUND, NULL, NULL);
        return 0;
    }
    if (r != GS_OK) {
        o11y_res_fail(res, &o11y_err_SERVICE_UNAVAILABLE, NULL, "database: %s",
                      gs_store_last_error(app->store));
        return 0;
    }
    if (strcmp(owner, project) != 0) {
        o11y_res_fail(res, &o11y_err_BUSINESS_RULE_VIOLATION,
                      json_pack("{s:s,s:s}", "projectId", project, "episodeId", episode),
                      "Episode %s is not in project %s", episode, project);
        return 0;
    }
    gs_generation g = {.progress = 0};
    gs_new_id("gen_", g.id, sizeof g.id);
    gs_new_id("job_", g.job_id, sizeof g.job_id);
    snprintf(g.project_id, sizeof g.project_id, "%s", project);
    snprintf(g.episode_id, sizeof g.episode_id, "%s", episode);
    snprintf(g.model, sizeof g.model, "%s", model ? model : app->default_model);
    snprintf(g.status, sizeof g.status, "queued");
    snprintf(g.step, sizeof g.step, "queued");
    g.prompt = (char *)prompt;
    o11y_trace_ctx *ctx = o11y_req_trace(req);
    if (o11y_trace_ctx_set_job_id(ctx, g.job_id, strlen(g.job_id)) != O11Y_OK)
        return 1;
    /* Backpressure is decided before anything is stored (CONTRACT section 1): a refused
     * generation leaves no row behind and says nothing about the service's health. */
    if (!gs_jobs_reserve(app->jobs)) {
        o11y_res_fail(res, &o11y_err_GENERATION_QUEUE_FULL, NULL, NULL);
        return o11y_res_header(res, "Retry-After", "2") == O11Y_OK ? 0 : 1;
    }
    if (gs_generation_insert(app->store, &g) != GS_OK) {
        gs_jobs_unreserve(app->jobs);
        o11y_res_fail(res, &o11y_err_SERVICE_UNAVAILABLE, NULL, "database: %s",
                      gs_store_last_error(app->store));
        return 0;
    }
    /* tracestate and baggage travel with the job to its backend call, well-formed members
     * only (never a raw byte of the request). */
    char tracestate[O11Y_TRACE_CARRIED_MAX + 1], baggage[O11Y_TRACE_CARRIED_MAX + 1];
    o11y_str ts = o11y_req_header(req, "tracestate"), bg = o11y_req_header(req, "baggage");
    o11y_tracestate_normalize(ts.ptr, ts.len, tracestate, sizeof tracestate);
    o11y_baggage_normalize(bg.ptr, bg.len, baggage, sizeof baggage);
    if (gs_jobs_submit(app->jobs, &g, ctx, tracestate, baggage) != 0) {
        snprintf(g.status, sizeof g.status, "failed");
        snprintf(g.error_code, sizeof g.error_code, "INTERRUPTED");
        snprintf(g.error_message, sizeof g.error_message, "The generation could not be queued");
        if (gs_generation_save(app->store, &g) != GS_OK)
            o11y_log_warn("cannot mark the refused generation");
        o11y_res_fail(res, &o11y_err_SERVICE_UNAVAILABLE, NULL, "generation not queued");
        return o11y_res_header(res, "Retry-After", "2") == O11Y_OK ? 0 : 1;
    }
    return o11y_res_json(res, 202,
                         json_pack("{s:s,s:s,s:s}", "id", g.id, "jobId", g.job_id, "status",
                                   "queued")) == O11Y_OK
               ? 0
               : 1;
}

/* The stored generation, with X-Job-Id and X-Project-Id set from it; NULL after answering 404. */
static json_t *load(o11y_request *req, o11y_response *res, gs_app *app)
{
    json_t *g = NULL;
    gs_result r = gs_generation_get(app->store, o11y_req_param(req, "id").ptr, &g);
    if (r == GS_NOT_FOUND) {
        o11y_res_fail(res, &o11y_err_GENERATION_NOT_FOUND, NULL, NULL);
        return NULL;
    }
    if (r != GS_OK) {
        o11y_res_fail(res, &o11y_err_SERVICE_UNAVAILABLE, NULL, "database: %s",
                      gs_store_last_error(app->store));
        return NULL;
    }
    o11y_trace_ctx *ctx = o11y_req_trace(req);
    const char *job = json_string_value(json_object_get(g, "jobId"));
    const char *project = json_string_value(json_object_get(g, "projectId"));
    if (o11y_trace_ctx_set_job_id(ctx, job, strlen(job)) != O11Y_OK ||
        o11y_trace_ctx_set_project_id(ctx, project, strlen(project)) != O11Y_OK)
        o11y_log_debug("generation ids not usable as headers");
    return g;
}

static int get(o11y_request *req, o11y_response *res, void *user)
{
    json_t *g = load(req, res, user);
    return g && o11y_res_json(res, 200, g) != O11Y_OK ? 1 : 0;
}

static int cancel(o11y_request *req, o11y_response *res, void *user)
{
    gs_app *app = user;
    json_t *g = load(req, res, app);
    if (!g)
        return 0;
    json_decref(g);
    /* A finished generation is left as it is: the answer is its final state. */
    gs_jobs_cancel(app->jobs, o11y_req_param(req, "id").ptr, "cancelled by the client");
    g = load(req, res, app);
    return g && o11y_res_json(res, 200, g) != O11Y_OK ? 1 : 0;
}

static int events(o11y_request *req, o11y_response *res, void *user)
{
    gs_app *app = user;
    json_t *g = load(req, res, app);
    if (!g)
        return 0;
    /* Last-Event-ID: resume after it; anything but a plain number means from the start. */
    long after = 0;
    o11y_str last = o11y_req_header(req, "Last-Event-ID");
    if (last.ptr && last.len > 0 && last.len < 10) {
        char tmp[16];
        memcpy(tmp, last.ptr, last.len);
        tmp[last.len] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        if (*end == '\0' && v > 0 && tmp[0] != '+')
            after = v;
    }
    o11y_str ua = o11y_req_header(req, "User-Agent");
    char agent[200];
    snprintf(agent, sizeof agent, "%.*s", (int)(ua.len < 190 ? ua.len : 190), ua.ptr ? ua.ptr : "");
    bool live = gs_jobs_subscribe(app->jobs, o11y_req_param(req, "id").ptr, after, res, agent,
                                  o11y_req_trace(req));
    if (!live) {
        /* Not in memory any more (an older generation, or one from before a restart): its
         * final state, as the one event that ends the stream. */
        const char *status = json_string_value(json_object_get(g, "status"));
        char text[512];
        int n = snprintf(text, sizeof text, "retry: 3000\n\nid: 1\nevent: %s\ndata: %s\n\n",
                         strcmp(status, "completed") == 0   ? "completed"
                         : strcmp(status, "cancelled") == 0 ? "cancelled"
                                                            : "failed",
                         strcmp(status, "completed") == 0
                             ? "{\"outputLength\":0,\"totalTokens\":0,\"durationMs\":0}"
                         : strcmp(status, "cancelled") == 0
                             ? "{\"reason\":\"cancelled\"}"
                             : "{\"code\":\"INTERRUPTED\",\"message\":\"not running\"}");
        json_decref(g);
        if (o11y_res_body(res, 200, "text/event-stream", text, (size_t)n) != O11Y_OK)
            return 1;
    } else {
        json_decref(g);
    }
    if (o11y_res_header(res, "Cache-Control", "no-cache") != O11Y_OK ||
        o11y_res_header(res, "X-Accel-Buffering", "no") != O11Y_OK)
        return 1;
    return 0;
}

o11y_status gs_generation_routes(o11y_service *svc, gs_app *app)
{
    o11y_status st =
        o11y_service_route(svc, O11Y_POST, "/generations", create, app, O11Y_ROUTE_JSON);
    if (st == O11Y_OK)
        st = o11y_service_route(svc, O11Y_GET, "/generations/{id}", get, app, 0);
    if (st == O11Y_OK)
        st = o11y_service_route(svc, O11Y_DELETE, "/generations/{id}", cancel, app, 0);
    if (st == O11Y_OK)
        st = o11y_service_route(svc, O11Y_GET, "/generations/{id}/events", events, app, 0);
    return st;
}
