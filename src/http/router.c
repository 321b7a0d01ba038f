/* http/router.c — the route table: registration, matching, method names. */
#include "http/http_internal.h"

#include "o11y/error.h"

#include <stdio.h>

static const char *const method_names[O11Y__N_METHODS] = {"GET",   "HEAD",   "POST",   "PUT",
                                                          "PATCH", "DELETE", "OPTIONS"};

o11y_method o11y_method_parse(const char *s, size_t len)
{
    for (int i = 0; i < O11Y__N_METHODS; i++)
        if (strlen(method_names[i]) == len && memcmp(method_names[i], s, len) == 0)
            return (o11y_method)(1u << i);
    return O11Y_METHOD_OTHER;
}

int o11y__method_index(o11y_method m)
{
    for (int i = 0; i < O11Y__N_METHODS; i++)
        if ((unsigned)m == 1u << i)
            return i;
    return -1;
}

const char *o11y_method_name(o11y_method m)
{
    int i = o11y__method_index(m);
    return i < 0 ? "_OTHER" : method_names[i];
}

/*=== MARK: registration ===*/

void o11y__route_free(o11y__route *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_segments; i++)
        o11y__free(r->segments[i]);
    for (size_t i = 0; i < r->n_params; i++)
        o11y__free(r->param_names[i]);
    o11y__free(r->template);
    o11y__free(r);
}

static bool param_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Literal characters allowed in a template: printable ASCII without '%' (templates are never
 * escaped), '{' '}', '?', '#', and without '"' and '\\', so a template is valid JSON string text
 * as it is (the access line copies it unescaped). */
static bool literal_valid(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '%' || c == '{' || c == '}' || c == '?' || c == '#' ||
            c == '"' || c == '\\')
            return false;
    }
    return true;
}

static o11y_status compile_template(const char *tmpl, o11y__route **out)
{
    size_t len = strlen(tmpl);
    if (len == 0 || tmpl[0] != '/' || len > 1024)
        return O11Y_EINVAL;
    o11y__route *r = o11y__calloc(1, sizeof *r);
    if (!r || !(r->template = o11y__strndup(tmpl, len))) {
        o11y__route_free(r);
        return O11Y_ENOMEM;
    }
    r->template_len = len;
    o11y_status st = O11Y_EINVAL;
    const char *p = tmpl + 1, *end = tmpl + len;
    while (len > 1 && p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash ? slash : end;
        size_t seg_len = (size_t)(seg_end - p);
        if (r->n_segments == O11Y__MAX_SEGMENTS)
            goto fail;
        if (seg_len >= 2 && p[0] == '{' && p[seg_len - 1] == '}') {
            if (r->n_params == O11Y__MAX_PARAMS || !param_name_valid(p + 1, seg_len - 2))
                goto fail;
            for (size_t i = 0; i < r->n_params; i++)
                if (strlen(r->param_names[i]) == seg_len - 2 &&
                    memcmp(r->param_names[i], p + 1, seg_len - 2) == 0)
                    goto fail;
            if (!(r->param_names[r->n_params] = o11y__strndup(p + 1, seg_len - 2)))
                goto nomem;
            r->param_at[r->n_segments] = (uint8_t)(++r->n_params);
            r->segments[r->n_segments] = NULL;
        } else {
            if (!literal_valid(p, seg_len))
                goto fail;
            if (!(r->segments[r->n_segments] = o11y__strndup(p, seg_len)))
                goto nomem;
            r->segment_lens[r->n_segments] = seg_len;
        }
        r->n_segments++;
        if (!slash)
            break;
        p = slash + 1;
    }
    *out = r;
    return O11Y_OK;
nomem:
    st = O11Y_ENOMEM;
fail:
    o11y__route_free(r);
    return st;
}

static void build_allow(o11y__route *r)
{
    unsigned m = r->methods;
    if (m & O11Y_GET)
        m |= O11Y_HEAD;
    size_t n = 0;
    r->allow[0] = '\0';
    for (int i = 0; i < O11Y__N_METHODS; i++) {
        if (!(m & (1u << i)))
            continue;
        int w = snprintf(r->allow + n, sizeof r->allow - n, "%s%s", n ? ", " : "", method_names[i]);
        if (w > 0)
            n += (size_t)w;
    }
}

o11y_status o11y_service_route(o11y_service *svc, unsigned methods, const char *path_template,
                               o11y_handler_fn fn, void *user, unsigned flags)
{
    if (!svc || !path_template || !fn || methods == 0 || methods >= (1u << O11Y__N_METHODS))
        return O11Y_EINVAL;
    o11y__route *r = NULL;
    for (size_t i = 0; i < svc->n_routes; i++)
        if (strcmp(svc->routes[i]->template, path_template) == 0)
            r = svc->routes[i];
    bool is_new = r == NULL;
    if (is_new) {
        if (svc->n_routes == O11Y__MAX_ROUTES)
            return O11Y_ELIMIT;
        o11y_status st = compile_template(path_template, &r);
        if (st != O11Y_OK)
            return st;
        for (size_t i = 0; i < r->n_params; i++) {
            if (strcmp(r->param_names[i], svc->project_param) == 0)
                r->project_param_at = (uint8_t)(i + 1);
            if (strcmp(r->param_names[i], svc->job_param) == 0)
                r->job_param_at = (uint8_t)(i + 1);
        }
    }
    if (r->methods & methods) {
        if (is_new)
            o11y__route_free(r);
        return O11Y_ECONFLICT;
    }
    for (int i = 0; i < O11Y__N_METHODS; i++) {
        if (!(methods & (1u << i)))
            continue;
        r->handlers[i] = fn;
        r->users[i] = user;
        r->flags[i] = flags;
    }
    r->methods |= methods;
    build_allow(r);
    if (is_new)
        svc->routes[svc->n_routes++] = r;
    o11y__route_stats_prepare(svc, r);
    return O11Y_OK;
}

/*=== MARK: matching ===*/

/* Scores a match: one bit per segment, literal segments high, so the template with literals
 * earliest wins (e.g. /projects/stats over /projects/{projectId}). -1: no match. */
static int64_t match_score(const o11y__route *r, const o11y_str *segs, size_t n_segs)
{
    if (r->n_segments != n_segs)
        return -1;
    int64_t score = 0;
    for (size_t i = 0; i < n_segs; i++) {
        score <<= 1;
        if (r->param_at[i])
            continue;
        if (segs[i].len != r->segment_lens[i] || memcmp(segs[i].ptr, r->segments[i], segs[i].len))
            return -1;
        score |= 1;
    }
    return score;
}

const o11y__route *o11y__route_match(const o11y_service *svc, const char *path, size_t len,
                                     o11y_str params[O11Y__MAX_PARAMS])
{
    o11y_str segs[O11Y__MAX_SEGMENTS];
    size_t n = 0;
    if (len == 0 || path[0] != '/')
        return NULL;
    if (len > 1) {
        const char *p = path + 1, *end = path + len;
        for (;;) {
            const char *slash = memchr(p, '/', (size_t)(end - p));
            const char *seg_end = slash ? slash : end;
            if (seg_end == p || n == O11Y__MAX_SEGMENTS)
                return NULL; /* empty segment or deeper than any template */
            segs[n++] = (o11y_str){p, (size_t)(seg_end - p)};
            if (!slash)
                break;
            p = slash + 1;
        }
    }
    const o11y__route *best = NULL;
    int64_t best_score = -1;
    for (size_t i = 0; i < svc->n_routes; i++) {
        int64_t s = match_score(svc->routes[i], segs, n);
        if (s > best_score) {
            best_score = s;
            best = svc->routes[i];
        }
    }
    if (best) {
        for (size_t i = 0; i < n; i++)
            if (best->param_at[i])
                params[best->param_at[i] - 1] = segs[i];
    }
    return best;
}
