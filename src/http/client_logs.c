/* http/client_logs.c — the frontend log intake (CONTRACT section 10): a batch of the browser
 * kit's records becomes lines of the service's own log, "source":"browser", each in the trace
 * context it names, masked like every line. */
#include "http/http_internal.h"

#include "log/api.h"
#include "o11y/error.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { MAX_FIELDS = 64, MAX_NESTING = 4, MAX_EVENT = 128, MAX_STAMP = 40 };

struct o11y__client_logs {
    size_t max_records, max_bytes;
};

void o11y__client_logs_free(o11y__client_logs *cl)
{
    o11y__free(cl);
}

typedef struct fields {
    o11y_field f[MAX_FIELDS];
    size_t n;
    char *owned[MAX_FIELDS]; /* JSON text of arrays and deep objects */
    size_t n_owned;
} fields;

/* An array, or an object nested too deep, as its JSON text. */
static void add_text(fields *fs, const char *key, json_t *v)
{
    size_t len = 0;
    char *text = o11y__json_dump(v, &len);
    if (text && fs->n_owned < MAX_FIELDS) {
        fs->owned[fs->n_owned++] = text;
        fs->f[fs->n++] = O11Y_STRN(key, text, len);
    } else {
        o11y__free(text);
    }
}

/* The record's metadata as log fields: scalars as they are, objects nested up to MAX_NESTING,
 * arrays (and deeper objects) as their JSON text. limit leaves room for the ends of the objects
 * open around this one; past it the rest is left out. */
static void add_json(fields *fs, json_t *obj, int depth, size_t limit)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (fs->n >= limit)
            return;
        switch (json_typeof(v)) {
        case JSON_STRING:
            fs->f[fs->n++] = O11Y_STRN(key, json_string_value(v), json_string_length(v));
            break;
        case JSON_INTEGER:
            fs->f[fs->n++] = O11Y_INT(key, json_integer_value(v));
            break;
        case JSON_REAL:
            fs->f[fs->n++] = O11Y_DOUBLE(key, json_real_value(v));
            break;
        case JSON_TRUE:
            fs->f[fs->n++] = O11Y_BOOL(key, true);
            break;
        case JSON_FALSE:
            fs->f[fs->n++] = O11Y_BOOL(key, false);
            break;
        case JSON_NULL:
            fs->f[fs->n++] = O11Y_STR(key, NULL);
            break;
        case JSON_OBJECT:
            if (depth < MAX_NESTING && fs->n + 2 <= limit) {
                fs->f[fs->n++] = O11Y_OBJ(key);
                add_json(fs, v, depth + 1, limit - 1);
                fs->f[fs->n++] = O11Y_OBJ_END;
            } else {
                add_text(fs, key, v);
            }
            break;
        case JSON_ARRAY:
            add_text(fs, key, v);
            break;
        }
    }
}

static bool parse_level(const char *s, o11y_log_level *out)
{
    static const struct {
        const char *name;
        o11y_log_level level;
    } levels[] = {{"debug", O11Y_LOG_DEBUG},
                  {"info", O11Y_LOG_INFO},
                  {"warn", O11Y_LOG_WARN},
                  {"warning", O11Y_LOG_WARN},
                  {"error", O11Y_LOG_ERROR}};
    for (size_t i = 0; s && i < sizeof levels / sizeof levels[0]; i++)
        if (strcasecmp(s, levels[i].name) == 0) {
            *out = levels[i].level;
            return true;
        }
    return false;
}

static bool span_valid(const char *s)
{
    if (!s || strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16)
        return false;
    return strcmp(s, "0000000000000000") != 0;
}

static void set_id(char *dst, uint8_t *len, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n && o11y_trace_id_valid(v, n)) {
        memcpy(dst, v, n + 1);
        *len = (uint8_t)n;
    }
}

/* One record: false when it is rejected (no message, another level, not an object). */
static bool take(o11y_service *svc, json_t *rec)
{
    const char *message = json_string_value(json_object_get(rec, "message"));
    o11y_log_level level;
    if (!json_is_object(rec) || !message || !*message ||
        !parse_level(json_string_value(json_object_get(rec, "level")), &level))
        return false;
    /* The record's own context, each id kept only when valid. */
    o11y_trace_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    set_id(ctx.trace_id, &ctx.trace_id_len, json_string_value(json_object_get(rec, "traceId")));
    set_id(ctx.job_id, &ctx.job_id_len, json_string_value(json_object_get(rec, "jobId")));
    set_id(ctx.project_id, &ctx.project_id_len,
           json_string_value(json_object_get(rec, "projectId")));
    const char *span = json_string_value(json_object_get(rec, "spanId"));
    if (span_valid(span))
        memcpy(ctx.span_id, span, 17);
    fields fs = {.n = 0};
    const char *event = json_string_value(json_object_get(rec, "event"));
    if (event && (strlen(event) > MAX_EVENT || !*event))
        event = NULL;
    const char *session = json_string_value(json_object_get(rec, "sessionId"));
    if (session)
        fs.f[fs.n++] = O11Y_STRN("session_id", session, strnlen(session, 128));
    const char *stamp = json_string_value(json_object_get(rec, "timestamp"));
    if (stamp)
        fs.f[fs.n++] = O11Y_STRN("client_timestamp", stamp, strnlen(stamp, MAX_STAMP));
    json_t *ms = json_object_get(rec, "durationMs");
    if (json_is_number(ms) && json_number_value(ms) >= 0)
        fs.f[fs.n++] = O11Y_DURATION_MS(json_number_value(ms));
    json_t *meta = json_object_get(rec, "metadata");
    if (json_is_object(meta))
        add_json(&fs, meta, 0, MAX_FIELDS);
    o11y_trace_ctx *prev = o11y_trace_set_current(
        ctx.trace_id_len || ctx.job_id_len || ctx.project_id_len || ctx.span_id[0] ? &ctx : NULL);
    o11y__log_sourced(svc->logger, level, "browser", event, message,
                      json_string_length(json_object_get(rec, "message")), fs.f, fs.n);
    o11y_trace_set_current(prev);
    for (size_t i = 0; i < fs.n_owned; i++)
        o11y__free(fs.owned[i]);
    return true;
}

static int intake(o11y_request *req, o11y_response *res, void *user)
{
    const o11y__client_logs *cl = user;
    o11y_str body = o11y_req_body(req);
    if (body.len > cl->max_bytes) {
        o11y_res_fail(res, &o11y_err_PAYLOAD_TOO_LARGE,
                      json_pack("{s:I}", "maxBytes", (json_int_t)cl->max_bytes),
                      "A log batch is at most %zu bytes", cl->max_bytes);
        return 0;
    }
    json_t *batch = o11y_req_json(req, res); /* borrowed; a 400 when not a JSON object */
    if (!batch)
        return 0;
    json_t *logs = json_object_get(batch, "logs");
    if (!json_is_array(logs)) {
        o11y_res_field_error(res, "logs", "must be an array of log records");
        return 0;
    }
    if (json_array_size(logs) > cl->max_records) {
        char problem[64];
        snprintf(problem, sizeof problem, "must hold at most %zu records", cl->max_records);
        o11y_res_field_error(res, "logs", problem);
        return 0;
    }
    size_t accepted = 0, rejected = 0, i;
    json_t *rec;
    json_array_foreach(logs, i, rec)
    {
        if (take(req->svc, rec))
            accepted++;
        else
            rejected++;
    }
    return o11y_res_json(res, 202,
                         json_pack("{s:I,s:I}", "accepted", (json_int_t)accepted, "rejected",
                                   (json_int_t)rejected)) == O11Y_OK
               ? 0
               : 1;
}

o11y_status o11y_service_client_logs(o11y_service *svc, const o11y_client_logs_config *cfg)
{
    if (!svc || svc->client_logs)
        return O11Y_EINVAL;
    o11y__client_logs *cl = o11y__calloc(1, sizeof *cl);
    if (!cl)
        return O11Y_ENOMEM;
    cl->max_records = cfg && cfg->max_records ? cfg->max_records : 100;
    cl->max_bytes = cfg && cfg->max_bytes ? cfg->max_bytes : 64 * 1024;
    const char *route = cfg && cfg->route ? cfg->route : "/client-logs";
    /* Not a JSON-only route: navigator.sendBeacon sends a string as text/plain, the one type
     * a browser may send to another origin without a preflight. */
    o11y_status st = o11y_service_route(svc, O11Y_POST, route, intake, cl, O11Y_ROUTE_NONBLOCKING);
    if (st != O11Y_OK) {
        o11y__free(cl);
        return st;
    }
    svc->client_logs = cl;
    return O11Y_OK;
}
