/* metrics/summary.c — see summary.h. Reads the series' cells and windows like the exposition
 * does; groups every unmatched request into the one operation "unmatched". */
#include "metrics/api.h"

#include "metrics/metrics_internal.h"

#include <stdio.h>

/* One line of the summary: the series that make it up, accumulated per window. */
typedef struct summary_group {
    char name[300];
    uint64_t count[3], errors[3], client_errors[3];
    double sum[3];
    uint64_t *buckets[3];
} summary_group;

typedef struct summary {
    summary_group *groups;
    size_t n, cap;
    o11y_metric *histogram;
    o11y_metric *client_errors; /* for operations: the family that counts 4xx codes */
    bool ok;
} summary;

static summary_group *group_for(summary *sm, const char *name)
{
    for (size_t i = 0; i < sm->n; i++)
        if (strcmp(sm->groups[i].name, name) == 0)
            return &sm->groups[i];
    if (sm->n == sm->cap) {
        size_t cap = sm->cap ? sm->cap * 2 : 16;
        summary_group *g = o11y__realloc(sm->groups, cap * sizeof *g);
        if (!g)
            return NULL;
        sm->groups = g;
        sm->cap = cap;
    }
    summary_group *g = &sm->groups[sm->n];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    for (int w = 0; w < 3; w++) {
        g->buckets[w] = o11y__calloc(O11Y__N_BUCKETS, sizeof(uint64_t));
        if (!g->buckets[w]) {
            for (int k = 0; k < w; k++)
                o11y__free(g->buckets[k]);
            return NULL;
        }
    }
    sm->n++;
    return g;
}

/* "GET /projects/{projectId}"; every unmatched request is the one operation "unmatched". */
static void group_name(const o11y_series *s, size_t n_labels, char *out, size_t len)
{
    if (n_labels == 1)
        snprintf(out, len, "%s", o11y_series_label(s, 0));
    else if (strcmp(o11y_series_label(s, 1), "unmatched") == 0)
        snprintf(out, len, "unmatched");
    else
        snprintf(out, len, "%s %s", o11y_series_label(s, 0), o11y_series_label(s, 1));
}

static void add_duration(o11y_series *s, void *ctx)
{
    summary *sm = ctx;
    char name[300];
    group_name(s, s->metric->n_labels, name, sizeof name);
    summary_group *g = group_for(sm, name);
    if (!g) {
        sm->ok = false;
        return;
    }
    for (int w = 0; w < 3; w++)
        if (o11y__series_accumulate(s, (o11y_window)w, &g->count[w], &g->sum[w], g->buckets[w]))
            sm->ok = false;
}

static void add_errors(o11y_series *s, void *ctx)
{
    summary *sm = ctx;
    char name[300];
    group_name(s, s->metric->n_labels == 3 ? 2 : 1, name, sizeof name);
    summary_group *g = group_for(sm, name);
    if (!g) {
        sm->ok = false;
        return;
    }
    bool client = s->metric->n_labels == 3 ? strcmp(o11y_series_label(s, 2), "4xx") == 0
                                           : s->metric == sm->client_errors;
    for (int w = 0; w < 3; w++) {
        double ignored = 0;
        o11y__series_accumulate(s, (o11y_window)w, client ? &g->client_errors[w] : &g->errors[w],
                                &ignored, NULL);
    }
}

static json_t *group_json(const summary *sm, const summary_group *g, int w, bool named)
{
    o11y_series_stats st;
    o11y__stats_from_buckets(sm->histogram, g->buckets[w], g->count[w], g->sum[w], &st);
    json_t *o = json_object();
    if (named)
        json_object_set_new(o, "operation", json_string(g->name));
    json_object_set_new(o, "request_count", json_integer((json_int_t)st.count));
    json_object_set_new(o, "avg_response_time_ms", json_real(st.avg * 1e3));
    json_object_set_new(o, "p95_response_time_ms", json_real(st.p95 * 1e3));
    json_object_set_new(o, "p99_response_time_ms", json_real(st.p99 * 1e3));
    json_object_set_new(o, "error_count", json_integer((json_int_t)g->errors[w]));
    json_object_set_new(o, "client_error_count", json_integer((json_int_t)g->client_errors[w]));
    json_object_set_new(o, "error_rate",
                        json_real(st.count ? (double)g->errors[w] / (double)st.count : 0));
    return o;
}

static json_t *groups_json(summary *sm)
{
    json_t *list = json_array();
    for (size_t i = 0; i < sm->n; i++) {
        if (sm->groups[i].count[0] == 0)
            continue; /* registered, never called */
        json_t *o = group_json(sm, &sm->groups[i], O11Y_WINDOW_LIFETIME, true);
        json_object_set_new(o, "last_60s", group_json(sm, &sm->groups[i], O11Y_WINDOW_60S, false));
        json_object_set_new(o, "last_5m", group_json(sm, &sm->groups[i], O11Y_WINDOW_5M, false));
        json_array_append_new(list, o);
    }
    return list;
}

static void summary_release(summary *sm)
{
    for (size_t i = 0; i < sm->n; i++)
        for (int w = 0; w < 3; w++)
            o11y__free(sm->groups[i].buckets[w]);
    o11y__free(sm->groups);
}

static json_t *totals_json(const summary *sm)
{
    uint64_t count = 0, errors = 0, client = 0;
    for (size_t i = 0; i < sm->n; i++) {
        count += sm->groups[i].count[0];
        errors += sm->groups[i].errors[0];
        client += sm->groups[i].client_errors[0];
    }
    return json_pack("{s:I,s:I,s:I,s:f}", "request_count", (json_int_t)count, "error_count",
                     (json_int_t)errors, "client_error_count", (json_int_t)client, "error_rate",
                     count ? (double)errors / (double)count : 0.0);
}

o11y_status o11y__metrics_summary(const o11y__summary_families *f, json_t **routes_out,
                                  json_t **ops_out, json_t **totals_out)
{
    summary routes = {.histogram = f->route_durations, .ok = true};
    summary ops = {.histogram = f->op_durations, .client_errors = f->op_client_errors, .ok = true};
    if (f->route_durations)
        o11y_metric_foreach(f->route_durations, add_duration, &routes);
    if (f->route_errors)
        o11y_metric_foreach(f->route_errors, add_errors, &routes);
    if (f->op_durations)
        o11y_metric_foreach(f->op_durations, add_duration, &ops);
    if (f->op_errors)
        o11y_metric_foreach(f->op_errors, add_errors, &ops);
    if (f->op_client_errors)
        o11y_metric_foreach(f->op_client_errors, add_errors, &ops);
    o11y_status st = O11Y_ENOMEM;
    if (routes.ok && ops.ok) {
        *routes_out = groups_json(&routes);
        *ops_out = groups_json(&ops);
        *totals_out = totals_json(&routes);
        st = *routes_out && *ops_out && *totals_out ? O11Y_OK : O11Y_ENOMEM;
        if (st != O11Y_OK) {
            json_decref(*routes_out);
            json_decref(*ops_out);
            json_decref(*totals_out);
        }
    }
    summary_release(&routes);
    summary_release(&ops);
    return st;
}
