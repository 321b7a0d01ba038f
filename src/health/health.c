/* health/health.c — the health object: one thread per check, the latest results, the report.
 *
 * A check's thread runs it, stores the result, and sleeps for its interval. Readers never do
 * I/O: they read the stored results under the lock, and a run still in progress past its
 * timeout reads as "timeout", so even a custom check that hangs cannot hang a probe. */
#include "health/health_internal.h"

#include <stdio.h>
#include <time.h>

static const char *const status_names[] = {"healthy", "degraded", "unhealthy"};

const char *o11y_health_status_name(o11y_health_status s)
{
    return (unsigned)s <= O11Y_HEALTH_UNHEALTHY ? status_names[s] : "unhealthy";
}

/*=== MARK: lifecycle ===*/

o11y_status o11y__health_create(const char *service, const char *version, o11y_logger *logger,
                                o11y_metrics *metrics, o11y_health **out)
{
    *out = NULL;
    o11y_health *h = o11y__calloc(1, sizeof *h);
    if (!h)
        return O11Y_ENOMEM;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
    h->logger = logger;
    h->started_ns = o11y__now_real_ns();
    h->service = o11y__strdup(service);
    h->version = o11y__strdup(version);
    o11y_status st = h->service && h->version ? O11Y_OK : O11Y_ENOMEM;
    static const char *const name[] = {"name"};
    o11y_metric_opts up = {.name = "o11y_dependency_up",
                           .help = "1 while the dependency answers its check, else 0",
                           .type = O11Y_GAUGE,
                           .label_names = name,
                           .n_labels = 1};
    o11y_metric_opts dur = {.name = "o11y_dependency_check_duration_seconds",
                            .help = "Time a dependency check took",
                            .type = O11Y_HISTOGRAM,
                            .label_names = name,
                            .n_labels = 1};
    if (st == O11Y_OK && metrics) {
        st = o11y_metric_register(metrics, &up, &h->m_up);
        if (st == O11Y_ECONFLICT)
            h->m_up = o11y_metrics_find(metrics, up.name), st = O11Y_OK;
        if (st == O11Y_OK)
            st = o11y_metric_register(metrics, &dur, &h->m_duration);
        if (st == O11Y_ECONFLICT)
            h->m_duration = o11y_metrics_find(metrics, dur.name), st = O11Y_OK;
    }
    if (st != O11Y_OK) {
        o11y__health_destroy(h);
        return st;
    }
    *out = h;
    return O11Y_OK;
}

void o11y__health_destroy(o11y_health *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    pthread_cond_broadcast(&h->wake);
    pthread_mutex_unlock(&h->lock);
    bool any_stuck = false;
    for (size_t i = 0; i < h->n_checks; i++) {
        o11y__check *c = h->checks[i];
        /* A built-in check returns within its timeout; a custom one may not: give it that long,
         * then leave it (and its memory) to finish on its own rather than hang the shutdown. */
        struct timespec limit;
        clock_gettime(CLOCK_REALTIME, &limit);
        limit.tv_sec += (time_t)(c->timeout_ms / 1000 + 1);
        if (pthread_timedjoin_np(c->thread, NULL, &limit) != 0) {
            pthread_detach(c->thread);
            any_stuck = true;
            continue;
        }
        if (c->free_ctx)
            c->free_ctx(c->ctx);
        o11y__free(c->target);
        o11y__free(c);
    }
    if (any_stuck)
        return; /* the stuck threads still reference h */
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    o11y__free(h->service);
    o11y__free(h->version);
    o11y__free(h);
}

void o11y_health_shutting_down(o11y_health *h)
{
    if (h)
        atomic_store(&h->shutting_down, true);
}

/*=== MARK: the check threads ===*/

static void record_result(o11y__check *c, o11y_health_status st, const char *error, double ms)
{
    o11y_health *h = c->health;
    pthread_mutex_lock(&h->lock);
    if (h->stopping) { /* the logger and the metrics may be gone already */
        c->running_since = 0;
        pthread_mutex_unlock(&h->lock);
        return;
    }
    bool changed = !c->has_result || c->status != st;
    const char *from = c->has_result ? o11y_health_status_name(c->status) : "unknown";
    c->has_result = true;
    c->status = st;
    c->response_ms = ms;
    snprintf(c->error, sizeof c->error, "%s", st == O11Y_HEALTH_HEALTHY ? "" : error);
    c->running_since = 0;
    pthread_mutex_unlock(&h->lock);
    if (c->up)
        o11y_gauge_set(c->up, st == O11Y_HEALTH_UNHEALTHY ? 0 : 1);
    if (c->duration)
        o11y_histogram_observe(c->duration, ms / 1e3);
    if (changed)
        o11y_log_va(h->logger, st == O11Y_HEALTH_UNHEALTHY ? O11Y_LOG_WARN : O11Y_LOG_INFO,
                    "dependency_status_changed", "dependency status changed",
                    O11Y_STR("name", c->name), O11Y_STR("from", from),
                    O11Y_STR("to", o11y_health_status_name(st)),
                    O11Y_STR("error", st == O11Y_HEALTH_HEALTHY ? NULL : error),
                    O11Y_BOOL("critical", c->critical), O11Y__END);
}

static void *check_main(void *arg)
{
    o11y__check *c = arg;
    o11y_health *h = c->health;
    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        int64_t start = o11y__now_mono_ns();
        c->running_since = start;
        pthread_mutex_unlock(&h->lock);
        char error[O11Y__CHECK_ERROR_LEN];
        o11y_health_status st = o11y__check_run(c, error, sizeof error);
        double ms = (double)(o11y__now_mono_ns() - start) / 1e6;
        if (ms > c->timeout_ms && st != O11Y_HEALTH_UNHEALTHY) {
            st = O11Y_HEALTH_UNHEALTHY; /* answered, but too late to count */
            snprintf(error, sizeof error, "timeout");
        }
        record_result(c, st, error, ms);
        pthread_mutex_lock(&h->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = (int64_t)until.tv_nsec + (int64_t)c->interval_ms * 1000000;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        while (!h->stopping && pthread_cond_timedwait(&h->wake, &h->lock, &until) == 0)
            ; /* woken for stopping, or spuriously: the loop condition tells */
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/*=== MARK: adding checks ===*/

static bool check_name_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static o11y_status add_check(o11y_health *h, const o11y_health_check_opts *o, check_kind kind,
                             const char *target, uint16_t port, o11y_health_fn fn, void *ctx)
{
    if (!h || !o || !check_name_valid(o->name) || (kind != CHECK_CUSTOM && !target) ||
        (kind == CHECK_CUSTOM && !fn) || o->timeout_ms > 600000 || o->interval_ms > 86400000)
        return O11Y_EINVAL;
    o11y__check *c = o11y__calloc(1, sizeof *c);
    if (!c)
        return O11Y_ENOMEM;
    snprintf(c->name, sizeof c->name, "%s", o->name);
    c->health = h;
    c->critical = o->critical;
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : O11Y_HEALTH_DEFAULT_TIMEOUT_MS;
    c->interval_ms = o->interval_ms ? o->interval_ms : 5000;
    c->kind = kind;
    c->port = port;
    c->fn = fn;
    c->ctx = ctx;
    if (target && !(c->target = o11y__strdup(target))) {
        o11y__free(c);
        return O11Y_ENOMEM;
    }
    const char *labels[] = {c->name};
    if (h->m_up && o11y_metric_series(h->m_up, labels, &c->up) != O11Y_OK)
        c->up = NULL;
    if (h->m_duration && o11y_metric_series(h->m_duration, labels, &c->duration) != O11Y_OK)
        c->duration = NULL;
    pthread_mutex_lock(&h->lock);
    o11y_status st = O11Y_OK;
    for (size_t i = 0; i < h->n_checks; i++)
        if (strcmp(h->checks[i]->name, c->name) == 0)
            st = O11Y_ECONFLICT;
    if (st == O11Y_OK && h->n_checks == O11Y__MAX_CHECKS)
        st = O11Y_ELIMIT;
    if (st == O11Y_OK && pthread_create(&c->thread, NULL, check_main, c) != 0)
        st = O11Y_ENOMEM;
    if (st == O11Y_OK)
        h->checks[h->n_checks++] = c;
    pthread_mutex_unlock(&h->lock);
    if (st != O11Y_OK) {
        o11y__free(c->target);
        o11y__free(c);
    }
    return st;
}

o11y_status o11y_health_add_tcp(o11y_health *h, const o11y_health_check_opts *o, const char *host,
                                uint16_t port)
{
    return port ? add_check(h, o, CHECK_TCP, host, port, NULL, NULL) : O11Y_EINVAL;
}

o11y_status o11y_health_add_custom(o11y_health *h, const o11y_health_check_opts *o,
                                   o11y_health_fn fn, void *ctx)
{
    return add_check(h, o, CHECK_CUSTOM, NULL, 0, fn, ctx);
}

o11y_status o11y_health_add_custom_owned(o11y_health *h, const o11y_health_check_opts *o,
                                         o11y_health_fn fn, void *ctx, void (*free_ctx)(void *))
{
    o11y_status st = add_check(h, o, CHECK_CUSTOM, NULL, 0, fn, ctx);
    if (st == O11Y_OK && free_ctx) {
        pthread_mutex_lock(&h->lock);
        for (size_t i = 0; i < h->n_checks; i++)
            if (strcmp(h->checks[i]->name, o->name) == 0)
                h->checks[i]->free_ctx = free_ctx;
        pthread_mutex_unlock(&h->lock);
    }
    return st;
}

/*=== MARK: reading ===*/

/* A check's status as a reader sees it (lock held): a run past its timeout is a timeout. */
static o11y_health_status effective(const o11y__check *c, int64_t now, const char **error)
{
    if (c->running_since && now - c->running_since > (int64_t)c->timeout_ms * 1000000) {
        *error = "timeout";
        return O11Y_HEALTH_UNHEALTHY;
    }
    *error = c->error;
    return c->has_result ? c->status : O11Y_HEALTH_UNHEALTHY;
}

typedef struct verdict {
    o11y_health_status overall;
    o11y_health_status critical; /* over the critical checks alone (/health/ready) */
    bool ready;
} verdict;

static o11y_health_status worse(o11y_health_status a, o11y_health_status b)
{
    return a > b ? a : b;
}

static verdict judge(const o11y_health *h, int64_t now)
{
    verdict v = {O11Y_HEALTH_HEALTHY, O11Y_HEALTH_HEALTHY, !atomic_load(&h->shutting_down)};
    for (size_t i = 0; i < h->n_checks; i++) {
        const o11y__check *c = h->checks[i];
        const char *err;
        o11y_health_status st = effective(c, now, &err);
        if (c->critical && !c->has_result)
            v.ready = false; /* before the first round */
        if (c->critical)
            v.critical = worse(v.critical, st);
        if (st == O11Y_HEALTH_UNHEALTHY) {
            if (c->critical) {
                v.overall = O11Y_HEALTH_UNHEALTHY;
                v.ready = false;
            } else if (v.overall == O11Y_HEALTH_HEALTHY) {
                v.overall = O11Y_HEALTH_DEGRADED;
            }
        } else if (st == O11Y_HEALTH_DEGRADED && v.overall == O11Y_HEALTH_HEALTHY) {
            v.overall = O11Y_HEALTH_DEGRADED; /* a dependency degraded: never unhealthy */
        }
    }
    return v;
}

o11y_health_status o11y_health_overall(const o11y_health *h)
{
    o11y_health *mh = (o11y_health *)h;
    pthread_mutex_lock(&mh->lock);
    verdict v = judge(h, o11y__now_mono_ns());
    pthread_mutex_unlock(&mh->lock);
    return v.overall;
}

bool o11y_health_ready(const o11y_health *h)
{
    o11y_health *mh = (o11y_health *)h;
    pthread_mutex_lock(&mh->lock);
    verdict v = judge(h, o11y__now_mono_ns());
    pthread_mutex_unlock(&mh->lock);
    return v.ready;
}

/*=== MARK: the documents ===*/

static void put_str(o11y__buf *b, const char *key, const char *value)
{
    o11y__buf_putc(b, '"');
    o11y__buf_cstr(b, key);
    o11y__buf_lit(b, "\":");
    o11y__json_str(b, value, strlen(value), 512);
}

/* The status a document shows: /health/ready speaks for the critical checks alone. */
static o11y_health_status shown_status(o11y__health_doc doc, verdict v)
{
    if (doc == O11Y__HEALTH_READY)
        return v.ready ? v.critical : O11Y_HEALTH_UNHEALTHY;
    return v.overall;
}

/* A check as a document shows it; false when the document leaves it out. */
static bool check_view(const o11y__check *c, o11y__health_doc doc, int64_t now,
                       o11y_health_status *st, const char **err)
{
    if (doc == O11Y__HEALTH_READY && !c->critical)
        return false;
    *st = effective(c, now, err);
    if (!c->has_result && strcmp(*err, "timeout") != 0)
        *err = "not checked yet";
    else if (!**err)
        *err = o11y_health_status_name(*st);
    return true;
}

/* CONTRACT section 5: {"status","service","timestamp","version","dependencies":[...],"uptime"} */
static void render_contract(o11y_health *h, o11y__health_doc doc, verdict v, int64_t now,
                            o11y__buf *b)
{
    char ts[O11Y__RFC3339_LEN + 1] = {0};
    o11y__rfc3339_ms(o11y__now_real_ns(), ts);
    o11y__buf_putc(b, '{');
    put_str(b, "status", o11y_health_status_name(shown_status(doc, v)));
    o11y__buf_putc(b, ',');
    put_str(b, "service", h->service);
    o11y__buf_putc(b, ',');
    put_str(b, "timestamp", ts);
    o11y__buf_putc(b, ',');
    put_str(b, "version", h->version);
    o11y__buf_lit(b, ",\"dependencies\":[");
    bool first = true;
    for (size_t i = 0; i < h->n_checks; i++) {
        const o11y__check *c = h->checks[i];
        o11y_health_status st;
        const char *err;
        if (!check_view(c, doc, now, &st, &err))
            continue;
        if (!first)
            o11y__buf_putc(b, ',');
        first = false;
        o11y__buf_putc(b, '{');
        put_str(b, "name", c->name);
        o11y__buf_putc(b, ',');
        put_str(b, "status", o11y_health_status_name(st));
        o11y__buf_lit(b, ",\"responseTime\":");
        o11y__json_i64(b, (int64_t)(c->response_ms + 0.5));
        o11y__buf_lit(b, ",\"critical\":");
        o11y__buf_cstr(b, c->critical ? "true" : "false");
        if (st != O11Y_HEALTH_HEALTHY) {
            o11y__buf_putc(b, ',');
            put_str(b, "error", err);
        }
        o11y__buf_putc(b, '}');
    }
    o11y__buf_lit(b, "],\"uptime\":");
    o11y__json_i64(b, (o11y__now_real_ns() - h->started_ns) / 1000000000);
    o11y__buf_putc(b, '}');
}

/* The IETF health check draft (draft-inadarei-api-health-check): pass / warn / fail. */
static void render_health_json(o11y_health *h, o11y__health_doc doc, verdict v, int64_t now,
                               o11y__buf *b)
{
    static const char *const ietf[] = {"pass", "warn", "fail"};
    char ts[O11Y__RFC3339_LEN + 1] = {0};
    o11y__rfc3339_ms(o11y__now_real_ns(), ts);
    o11y__buf_putc(b, '{');
    put_str(b, "status", ietf[shown_status(doc, v)]);
    o11y__buf_putc(b, ',');
    put_str(b, "version", h->version);
    o11y__buf_putc(b, ',');
    put_str(b, "serviceId", h->service);
    o11y__buf_lit(b, ",\"description\":\"health of ");
    o11y__json_str_body(b, h->service, strlen(h->service), 256);
    o11y__buf_lit(b, "\",\"checks\":{");
    bool first = true;
    for (size_t i = 0; i < h->n_checks; i++) {
        const o11y__check *c = h->checks[i];
        o11y_health_status st;
        const char *err;
        if (!check_view(c, doc, now, &st, &err))
            continue;
        if (!first)
            o11y__buf_putc(b, ',');
        first = false;
        o11y__buf_putc(b, '"');
        o11y__json_str_body(b, c->name, strlen(c->name), 64);
        o11y__buf_lit(b, ":responseTime\":[{");
        put_str(b, "componentId", c->name);
        o11y__buf_lit(b, ",\"componentType\":\"component\",");
        put_str(b, "status", ietf[st]);
        o11y__buf_lit(b, ",\"observedValue\":");
        o11y__json_i64(b, (int64_t)(c->response_ms + 0.5));
        o11y__buf_lit(b, ",\"observedUnit\":\"ms\",");
        put_str(b, "time", ts);
        if (st != O11Y_HEALTH_HEALTHY) {
            o11y__buf_putc(b, ',');
            put_str(b, "output", err);
        }
        o11y__buf_lit(b, "}]");
    }
    o11y__buf_lit(b, "}}");
}

int o11y__health_render(o11y_health *h, o11y__health_doc doc, bool health_json, o11y__buf *b)
{
    pthread_mutex_lock(&h->lock);
    int64_t now = o11y__now_mono_ns();
    verdict v = judge(h, now);
    if (health_json)
        render_health_json(h, doc, v, now, b);
    else
        render_contract(h, doc, v, now, b);
    pthread_mutex_unlock(&h->lock);
    if (doc == O11Y__HEALTH_READY)
        return v.ready ? 200 : 503;
    return v.overall == O11Y_HEALTH_UNHEALTHY ? 503 : 200;
}
