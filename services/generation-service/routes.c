/* routes.c — projects and episodes: validation, storage calls, events. */
#include "routes.h"
#include "errors.h"
#include "validate.h"

#include "events.h"
#include <o11y/log.h>
#include <o11y/operation.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    NUMBER_MIN = 1,
    NUMBER_MAX = 100000,
    TITLE_MAX_CHARS = 200,
    NAME_MAX_CHARS = 200,
    CONTENT_MAX_BYTES = 512 * 1024,
};

/*=== MARK: validation ===*/

static bool number_field(json_t *obj, bool required, int64_t *out, o11y_response *res)
{
    json_t *v = json_object_get(obj, "number");
    if (!v) {
        if (required)
            o11y_res_field_error(res, "number", "is required");
        return false;
    }
    if (!json_is_integer(v)) {
        o11y_res_field_error(res, "number", "must be an integer between 1 and 100000");
        return false;
    }
    json_int_t n = json_integer_value(v);
    if (n < NUMBER_MIN || n > NUMBER_MAX) {
        o11y_res_field_error(res, "number", "must be an integer between 1 and 100000");
        return false;
    }
    *out = n;
    return true;
}

static const char *content_field(json_t *obj, bool *present, o11y_response *res)
{
    json_t *v = json_object_get(obj, "content");
    *present = v != NULL;
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        o11y_res_field_error(res, "content", "must be a string");
        return NULL;
    }
    if (json_string_length(v) > CONTENT_MAX_BYTES) {
        o11y_res_field_error(res, "content", "must be at most 524288 bytes");
        return NULL;
    }
    if (json_string_length(v) != strlen(json_string_value(v))) {
        o11y_res_field_error(res, "content", "must not contain NUL characters");
        return NULL;
    }
    return json_string_value(v);
}

/*=== MARK: answers ===*/

static void store_failure(o11y_response *res, gs_store *st, gs_result r,
                          const o11y_error_def *save_code)
{
    switch (r) {
    case GS_UNAVAILABLE:
        o11y_res_fail(res, save_code, NULL, "database unavailable: %s", gs_store_last_error(st));
        break;
    default:
        o11y_res_fail(res, &o11y_err_INTERNAL_ERROR, NULL, "database error: %s",
                      gs_store_last_error(st));
    }
}

static void not_found(o11y_response *res, bool project_missing)
{
    if (project_missing)
        o11y_res_fail(res, &o11y_err_PROJECT_NOT_FOUND, NULL, NULL);
    else
        o11y_res_fail(res, &o11y_err_EPISODE_NOT_FOUND, NULL, NULL);
}

/* Answers a read: the resource with 200, or the error its result calls for. */
static int answer_read(o11y_response *res, gs_store *st, gs_result r, json_t *found,
                       bool project_missing)
{
    if (r == GS_NOT_FOUND)
        not_found(res, project_missing);
    else if (r != GS_OK)
        store_failure(res, st, r, &o11y_err_SERVICE_UNAVAILABLE);
    else
        return o11y_res_json(res, 200, found) == O11Y_OK ? 0 : 1;
    return 0;
}

static const char *param(o11y_request *req, const char *name)
{
    /* Decoded parameters are NUL-terminated and contain no NUL (the pipeline checked). */
    return o11y_req_param(req, name).ptr;
}

/*=== MARK: projects ===*/

static int create_project(o11y_request *req, o11y_response *res, void *user)
{
    gs_store *st = user;
    json_t *body = o11y_req_json(req, res);
    if (!body)
        return 0;
    static const char *const allowed[] = {"name"};
    gs_reject_unknown(body, allowed, 1, res);
    const char *name = gs_text_field(body, "name", true, false, NAME_MAX_CHARS, res);
    if (o11y_res_has_field_errors(res))
        return 0;
    json_t *project;
    gs_result r = gs_project_create(st, name, &project);
    if (r != GS_OK) {
        store_failure(res, st, r, &o11y_err_SERVICE_UNAVAILABLE);
        return 0;
    }
    const char *id = json_string_value(json_object_get(project, "id"));
    if (o11y_trace_ctx_set_project_id(o11y_req_trace(req), id, strlen(id)) != O11Y_OK)
        return 1;
    o11y_log_info("project created", O11Y_STR("project_id", id));
    return o11y_res_json(res, 201, project) == O11Y_OK ? 0 : 1;
}

static int get_project(o11y_request *req, o11y_response *res, void *user)
{
    json_t *project = NULL;
    gs_result r = gs_project_get(user, param(req, "projectId"), &project);
    return answer_read(res, user, r, project, true);
}

/*=== MARK: episodes ===*/

static int create_episode(o11y_request *req, o11y_response *res, void *user)
{
    gs_store *st = user;
    const char *project_id = param(req, "projectId");
    O11Y_OPERATION_SCOPE(op, "episode_creation");
    json_t *body = o11y_req_json(req, res);
    if (!body) {
        o11y_operation_fail(&op, "VALIDATION_FAILED");
        return 0;
    }
    static const char *const allowed[] = {"number", "title", "content"};
    gs_reject_unknown(body, allowed, 3, res);
    int64_t number = 0;
    bool has_content;
    number_field(body, true, &number, res);
    const char *title = gs_text_field(body, "title", true, false, TITLE_MAX_CHARS, res);
    const char *content = content_field(body, &has_content, res);
    if (o11y_res_has_field_errors(res)) {
        o11y_operation_fail(&op, "VALIDATION_FAILED");
        return 0;
    }
    json_t *episode;
    gs_result r = gs_episode_create(st, project_id, number, title, content, &episode);
    if (r == GS_CONFLICT) {
        o11y_res_fail(
            res, &o11y_err_EPISODE_NUMBER_CONFLICT,
            json_pack("{s:s,s:I}", "projectId", project_id, "episodeNumber", (json_int_t)number),
            "Episode number %lld already exists in project %s", (long long)number, project_id);
    } else if (r == GS_NOT_FOUND) {
        o11y_res_fail(res, &o11y_err_PROJECT_NOT_FOUND, NULL, NULL);
    } else if (r != GS_OK) {
        store_failure(res, st, r, &o11y_err_EPISODE_SAVE_FAILED);
    }
    if (r != GS_OK) {
        o11y_operation_fail(&op, r == GS_CONFLICT    ? "EPISODE_NUMBER_CONFLICT"
                                 : r == GS_NOT_FOUND ? "PROJECT_NOT_FOUND"
                                                     : "EPISODE_SAVE_FAILED");
        return 0;
    }
    gs_event_episode_created(project_id, json_string_value(json_object_get(episode, "id")), number,
                             title);
    return o11y_res_json(res, 201, episode) == O11Y_OK ? 0 : 1;
}

/* A decimal query parameter in [min, max]; absent: *out keeps its default. False (with a
 * field error) when present and not such a number. */
static bool query_int(o11y_request *req, const char *name, int64_t min, int64_t max, int64_t *out,
                      o11y_response *res)
{
    o11y_str v;
    if (!o11y_req_query(req, name, &v))
        return true;
    int64_t n = 0;
    bool ok = v.len > 0 && v.len <= 9;
    for (size_t i = 0; ok && i < v.len; i++) {
        ok = v.ptr[i] >= '0' && v.ptr[i] <= '9';
        n = n * 10 + (v.ptr[i] - '0');
    }
    if (!ok || n < min || n > max) {
        char problem[80];
        snprintf(problem, sizeof problem, "must be an integer between %lld and %lld",
                 (long long)min, (long long)max);
        o11y_res_field_error(res, name, problem);
        return false;
    }
    *out = n;
    return true;
}

enum { PAGE_DEFAULT = 50, PAGE_MAX = 200, PAGE_MAX_BYTES = 8 * 1024 * 1024 };

static int list_episodes(o11y_request *req, o11y_response *res, void *user)
{
    int64_t limit = PAGE_DEFAULT, after = 0;
    bool ok = query_int(req, "limit", 1, PAGE_MAX, &limit, res);
    ok &= query_int(req, "after", 0, NUMBER_MAX, &after, res);
    o11y_str include;
    bool with_content = false;
    if (o11y_req_query(req, "include", &include)) {
        with_content = include.len == 7 && memcmp(include.ptr, "content", 7) == 0;
        if (!with_content) {
            o11y_res_field_error(res, "include", "must be content");
            ok = false;
        }
    }
    if (!ok)
        return 0;
    gs_episode_page page = {.after = after,
                            .limit = (unsigned)limit,
                            .with_content = with_content,
                            .max_bytes = PAGE_MAX_BYTES};
    json_t *items = NULL;
    int64_t total = 0, next = -1;
    gs_result r = gs_episode_list(user, param(req, "projectId"), &page, &items, &total, &next);
    json_t *body = NULL;
    if (r == GS_OK) {
        body = json_pack("{s:I,s:I,s:o}", "count", (json_int_t)json_array_size(items), "total",
                         (json_int_t)total, "items", items);
        if (body && next >= 0) { /* absent, not null, on the last page */
            char cursor[24];
            snprintf(cursor, sizeof cursor, "%lld", (long long)next);
            json_object_set_new(body, "nextCursor", json_string(cursor));
        }
    }
    return answer_read(res, user, r, body, true);
}

static int get_episode(o11y_request *req, o11y_response *res, void *user)
{
    json_t *episode = NULL;
    bool project_missing;
    gs_result r = gs_episode_get(user, param(req, "projectId"), param(req, "episodeId"), &episode,
                                 &project_missing);
    return answer_read(res, user, r, episode, project_missing);
}

static int update_episode(o11y_request *req, o11y_response *res, void *user)
{
    gs_store *st = user;
    const char *project_id = param(req, "projectId");
    const char *episode_id = param(req, "episodeId");
    json_t *body = o11y_req_json(req, res);
    if (!body)
        return 0;
    static const char *const allowed[] = {"number", "title", "content"};
    gs_reject_unknown(body, allowed, 3, res);
    if (json_object_size(body) == 0)
        o11y_res_field_error(res, "body", "must set at least one of number, title, content");
    gs_episode_patch patch = {0};
    patch.has_number = number_field(body, false, &patch.number, res);
    patch.title = gs_text_field(body, "title", false, true, TITLE_MAX_CHARS, res);
    patch.has_title = patch.title != NULL;
    if (json_object_get(body, "title") && patch.title && !*patch.title)
        o11y_res_field_error(res, "title", "must not be empty");
    patch.content = content_field(body, &patch.has_content, res);
    if (o11y_res_has_field_errors(res))
        return 0;
    json_t *episode;
    bool project_missing;
    gs_result r = gs_episode_update(st, project_id, episode_id, &patch, &episode, &project_missing);
    if (r == GS_CONFLICT)
        o11y_res_fail(res, &o11y_err_EPISODE_NUMBER_CONFLICT,
                      json_pack("{s:s,s:I}", "projectId", project_id, "episodeNumber",
                                (json_int_t)patch.number),
                      "Episode number %lld already exists in project %s", (long long)patch.number,
                      project_id);
    else if (r == GS_NOT_FOUND)
        not_found(res, project_missing);
    else if (r != GS_OK)
        store_failure(res, st, r, &o11y_err_EPISODE_SAVE_FAILED);
    if (r != GS_OK)
        return 0;
    o11y_field changes[3];
    size_t n = 0;
    if (patch.has_number)
        changes[n++] = O11Y_INT("number", patch.number);
    if (patch.has_title)
        changes[n++] = O11Y_STR("title", patch.title);
    if (patch.has_content)
        changes[n++] =
            O11Y_INT("content_length", patch.content ? (int64_t)strlen(patch.content) : 0);
    gs_event_episode_updated(project_id, episode_id, changes, n);
    return o11y_res_json(res, 200, episode) == O11Y_OK ? 0 : 1;
}

static int delete_episode(o11y_request *req, o11y_response *res, void *user)
{
    const char *project_id = param(req, "projectId");
    const char *episode_id = param(req, "episodeId");
    int64_t number = 0;
    bool project_missing;
    gs_result r = gs_episode_delete(user, project_id, episode_id, &number, &project_missing);
    if (r == GS_NOT_FOUND) {
        not_found(res, project_missing);
        return 0;
    }
    if (r != GS_OK) {
        store_failure(res, user, r, &o11y_err_EPISODE_SAVE_FAILED);
        return 0;
    }
    gs_event_episode_deleted(project_id, episode_id, number);
    o11y_res_empty(res, 204);
    return 0;
}

/*=== MARK: statistics ===*/

/* Episode creation per day and per project, from the database: project ids are data here, never
 * metric labels. */
static int episode_stats(o11y_request *req, o11y_response *res, void *user)
{
    int days = 7;
    o11y_str v;
    if (o11y_req_query(req, "days", &v)) {
        char *end;
        long n = v.len && v.len < 8 ? strtol(v.ptr, &end, 10) : 0;
        if (!v.len || v.len >= 8 || *end || n < 1 || n > 365 || v.ptr[0] == '+' ||
            v.ptr[0] == '-') {
            o11y_res_field_error(res, "days", "must be an integer between 1 and 365");
            return 0;
        }
        days = (int)n;
    }
    json_t *stats;
    gs_result r = gs_episode_stats(user, days, &stats);
    if (r != GS_OK) {
        store_failure(res, user, r, &o11y_err_SERVICE_UNAVAILABLE);
        return 0;
    }
    return o11y_res_json(res, 200, stats) == O11Y_OK ? 0 : 1;
}

/* The OpenAPI document (openapi.json, embedded by cmake/embed.cmake). */
extern const unsigned char gs_openapi_json[];
extern const size_t gs_openapi_json_len;

static int openapi(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    if (o11y_res_header(res, "Cache-Control", "public, max-age=300") != O11Y_OK)
        return 1;
    return o11y_res_body(res, 200, "application/json", gs_openapi_json, gs_openapi_json_len) ==
                   O11Y_OK
               ? 0
               : 1;
}

o11y_status gs_routes_register(o11y_service *svc, gs_store *store)
{
    static const struct {
        unsigned methods;
        const char *path;
        o11y_handler_fn fn;
        unsigned flags;
    } routes[] = {
        {O11Y_POST, "/projects", create_project, O11Y_ROUTE_JSON},
        {O11Y_GET, "/projects/{projectId}", get_project, 0},
        {O11Y_POST, "/projects/{projectId}/episodes", create_episode, O11Y_ROUTE_JSON},
        {O11Y_GET, "/projects/{projectId}/episodes", list_episodes, 0},
        {O11Y_GET, "/projects/{projectId}/episodes/{episodeId}", get_episode, 0},
        {O11Y_PATCH, "/projects/{projectId}/episodes/{episodeId}", update_episode, O11Y_ROUTE_JSON},
        {O11Y_DELETE, "/projects/{projectId}/episodes/{episodeId}", delete_episode, 0},
        {O11Y_GET, "/stats/episodes", episode_stats, 0},
        {O11Y_GET, "/openapi.json", openapi, O11Y_ROUTE_NONBLOCKING},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        o11y_status st = o11y_service_route(svc, routes[i].methods, routes[i].path, routes[i].fn,
                                            store, routes[i].flags);
        if (st != O11Y_OK)
            return st;
    }
    return O11Y_OK;
}
