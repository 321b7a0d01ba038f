/* metrics/registry.c — registries, families and series: creation, validation, lookup by label
 * values (a read lock, and a per-thread cache), the `le` plan of a histogram. */
#include "metrics/metrics_internal.h"
#include "o11y/trace.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                         0.5,   0.75, 1,     2.5,  5,     7.5, 10};

static _Atomic(o11y_metrics *) default_registry;

/*=== MARK: registry ===*/

static uint64_t dropped_series_total(void *ctx);
static atomic_uint_fast64_t next_metric_id = 1;

static double dropped_series_value(void *ctx)
{
    return (double)dropped_series_total(ctx);
}

o11y_status o11y_metrics_create(o11y_metrics **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_metrics *reg = o11y__calloc(1, sizeof *reg);
    if (!reg)
        return O11Y_ENOMEM;
    reg->id = atomic_fetch_add(&next_metric_id, 1);
    pthread_mutex_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->tick_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&reg->tick_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&reg->ticker, NULL, o11y__metrics_ticker_main, reg) != 0) {
        pthread_cond_destroy(&reg->tick_cond);
        pthread_mutex_destroy(&reg->tick_lock);
        pthread_mutex_destroy(&reg->lock);
        o11y__free(reg);
        return O11Y_ENOMEM;
    }
    o11y_status st = o11y_metric_register_fn(
        reg, "o11y_metric_series_dropped_total",
        "Label combinations refused because a metric reached its series cap", O11Y_COUNTER,
        dropped_series_value, reg);
    if (st != O11Y_OK) {
        o11y_metrics_destroy(reg);
        return st;
    }
    *out = reg;
    return O11Y_OK;
}

static void series_free(o11y_series *s)
{
    o11y__free(atomic_load(&s->exemplars));
    for (int i = 0; i < O11Y__SLOTS; i++)
        o11y__free(atomic_load(&s->shards[i]));
    for (size_t i = 0; s->values && i < s->metric->n_labels; i++)
        o11y__free(s->values[i]);
    for (int i = 0; i < O11Y__RING; i++) {
        o11y__free(s->ring[i].index);
        o11y__free(s->ring[i].value);
    }
    o11y__free(s->values);
    o11y__free(s->label_text);
    o11y__free(s);
}

static void metric_free(o11y_metric *m)
{
    for (size_t i = 0; i < m->n_series; i++)
        series_free(m->series[i]);
    for (size_t i = 0; i < m->n_labels; i++)
        o11y__free(m->labels[i]);
    o11y__free(m->series);
    o11y__free(m->table);
    o11y__free(m->name);
    o11y__free(m->help);
    pthread_rwlock_destroy(&m->lock);
    pthread_mutex_destroy(&m->window_lock);
    o11y__free(m);
}

void o11y_metrics_destroy(o11y_metrics *reg)
{
    if (!reg)
        return;
    o11y_metrics *expected = reg;
    atomic_compare_exchange_strong(&default_registry, &expected, NULL);
    pthread_mutex_lock(&reg->tick_lock);
    reg->stopping = true;
    pthread_cond_signal(&reg->tick_cond);
    pthread_mutex_unlock(&reg->tick_lock);
    pthread_join(reg->ticker, NULL);
    size_t n = atomic_load(&reg->n_metrics);
    for (size_t i = 0; i < n; i++)
        metric_free(reg->metrics[i]);
    pthread_cond_destroy(&reg->tick_cond);
    pthread_mutex_destroy(&reg->tick_lock);
    pthread_mutex_destroy(&reg->lock);
    o11y__free(reg);
}

void o11y_metrics_set_default(o11y_metrics *m)
{
    atomic_store(&default_registry, m);
}

o11y_metrics *o11y_metrics_default(void)
{
    return atomic_load_explicit(&default_registry, memory_order_acquire);
}

const double *o11y_metrics_default_buckets(size_t *n)
{
    if (n)
        *n = O11Y_ARRAY_LEN(default_buckets);
    return default_buckets;
}

o11y_metric *o11y_metrics_find(o11y_metrics *reg, const char *name)
{
    if (!reg || !name)
        return NULL;
    size_t n = atomic_load_explicit(&reg->n_metrics, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(reg->metrics[i]->name, name) == 0)
            return reg->metrics[i];
    return NULL;
}

static uint64_t dropped_series_total(void *ctx)
{
    o11y_metrics *reg = ctx;
    uint64_t total = 0;
    size_t n = atomic_load_explicit(&reg->n_metrics, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        total += atomic_load_explicit(&reg->metrics[i]->dropped_series, memory_order_relaxed);
    return total;
}

/*=== MARK: validation ===*/

static bool name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*. Both: no "__"
 * prefix (reserved for Prometheus' own use). */
static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s || strlen(s) > 200 || strncmp(s, "__", 2) == 0)
        return false;
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, colon))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool valid_help(const char *help)
{
    return help && *help && strlen(help) <= 1024 && o11y__utf8_valid(help, strlen(help));
}

static o11y_status validate(const o11y_metric_opts *o)
{
    if (!o || !valid_name(o->name, true) || !valid_help(o->help) ||
        o->n_labels > O11Y_METRIC_MAX_LABELS || (o->n_labels && !o->label_names))
        return O11Y_EINVAL;
    if (o->type != O11Y_COUNTER && o->type != O11Y_GAUGE && o->type != O11Y_HISTOGRAM)
        return O11Y_EINVAL;
    if ((o->type == O11Y_COUNTER) != ends_with(o->name, "_total"))
        return O11Y_EINVAL; /* counters end in _total, and only counters */
    if (o->type == O11Y_HISTOGRAM && (ends_with(o->name, "_bucket") ||
                                      ends_with(o->name, "_count") || ends_with(o->name, "_sum")))
        return O11Y_EINVAL;
    for (size_t i = 0; i < o->n_labels; i++) {
        const char *l = o->label_names[i];
        if (!valid_name(l, false) || strcmp(l, "le") == 0 || strcmp(l, "quantile") == 0)
            return O11Y_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->label_names[j], l) == 0)
                return O11Y_EINVAL;
    }
    if (o->type == O11Y_HISTOGRAM && o->buckets) {
        if (o->n_buckets == 0 || o->n_buckets > O11Y__MAX_LE)
            return O11Y_EINVAL;
        for (size_t i = 0; i < o->n_buckets; i++)
            if (!isfinite(o->buckets[i]) || (i && o->buckets[i] <= o->buckets[i - 1]))
                return O11Y_EINVAL;
    }
    if (o->unit_scale < 0 || !isfinite(o->unit_scale))
        return O11Y_EINVAL;
    return O11Y_OK;
}

static o11y_status add_metric(o11y_metrics *reg, o11y_metric *m)
{
    pthread_mutex_lock(&reg->lock);
    o11y_status st = O11Y_OK;
    size_t n = atomic_load(&reg->n_metrics);
    if (o11y_metrics_find(reg, m->name))
        st = O11Y_ECONFLICT;
    else if (n == O11Y__MAX_METRICS)
        st = O11Y_ELIMIT;
    else {
        reg->metrics[n] = m;
        atomic_store_explicit(&reg->n_metrics, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&reg->lock);
    return st;
}

static o11y_metric *metric_new(o11y_metrics *reg, const char *name, const char *help)
{
    o11y_metric *m = o11y__calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->registry = reg;
    m->id = atomic_fetch_add(&next_metric_id, 1);
    pthread_rwlock_init(&m->lock, NULL);
    pthread_mutex_init(&m->window_lock, NULL);
    m->name = o11y__strdup(name);
    m->help = o11y__strdup(help);
    if (!m->name || !m->help) {
        metric_free(m);
        return NULL;
    }
    return m;
}

/* The highest unit value that maps to bucket idx. */
static double bucket_top(size_t idx)
{
    if (idx < O11Y__LINEAR)
        return (double)idx;
    if (idx == O11Y__N_BUCKETS - 1)
        return INFINITY;
    size_t rel = idx - O11Y__LINEAR;
    int e = 7 + (int)(rel / O11Y__PER_OCTAVE);
    double width = ldexp(1.0, e - 6);
    return (double)(O11Y__PER_OCTAVE + rel % O11Y__PER_OCTAVE + 1) * width - 1;
}

static size_t units_bucket(double units)
{
    if (units <= 0)
        return 0;
    return o11y__bucket_index_checked(units < 0x1p62 ? (uint64_t)units : UINT64_MAX);
}

/* Fills le_of and split (see metrics_internal.h). A bucket is split when a boundary lies within
 * one unit of it, so rounding to units can never put a value on the wrong side. */
static void plan_le(o11y_metric *m)
{
    for (size_t i = 0; i < O11Y__N_BUCKETS; i++)
        m->split[i] = -1;
    for (size_t k = 0; k < m->n_le && !m->le_slow; k++) {
        double b = m->le[k] * m->scale;
        for (size_t idx = units_bucket(b - 1); idx <= units_bucket(b + 1); idx++) {
            if (m->split[idx] >= 0) { /* two boundaries in one bucket */
                m->le_slow = true;
                break;
            }
            m->split[idx] = (int16_t)m->n_split++;
            m->le_of[idx] = (uint8_t)k;
        }
    }
    if (m->le_slow) {
        for (size_t i = 0; i < O11Y__N_BUCKETS; i++)
            m->split[i] = -1;
        m->n_split = 0;
        return;
    }
    for (size_t idx = 0, k = 0; idx < O11Y__N_BUCKETS; idx++) {
        if (m->split[idx] >= 0)
            continue;
        double top = (bucket_top(idx) + 0.5) / m->scale;
        while (k < m->n_le && m->le[k] < top)
            k++;
        m->le_of[idx] = (uint8_t)k;
    }
}

o11y_status o11y_metric_register_or_get(o11y_metrics *reg, const o11y_metric_opts *o,
                                        o11y_metric **out)
{
    o11y_status st = o11y_metric_register(reg, o, out);
    if (st != O11Y_ECONFLICT)
        return st;
    o11y_metric *m = o11y_metrics_find(reg, o->name);
    bool same = m && m->type == o->type && m->n_labels == o->n_labels;
    for (size_t i = 0; same && i < o->n_labels; i++)
        same = strcmp(m->labels[i], o->label_names[i]) == 0;
    *out = same ? m : NULL;
    return same ? O11Y_OK : O11Y_ECONFLICT;
}

o11y_status o11y_metric_register(o11y_metrics *reg, const o11y_metric_opts *o, o11y_metric **out)
{
    if (!reg || !out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_status st = validate(o);
    if (st != O11Y_OK)
        return st;
    o11y_metric *m = metric_new(reg, o->name, o->help);
    if (!m)
        return O11Y_ENOMEM;
    m->type = o->type;
    m->flags = o->flags;
    m->max_series = o->max_series ? o->max_series : O11Y_METRIC_DEFAULT_MAX_SERIES;
    m->scale = o->unit_scale > 0 ? o->unit_scale : 1e9;
    m->max_value = (0x1p41 - 1) / m->scale;
    for (size_t i = 0; i < o->n_labels; i++) {
        if (!(m->labels[i] = o11y__strdup(o->label_names[i]))) {
            metric_free(m);
            return O11Y_ENOMEM;
        }
        m->n_labels = i + 1;
    }
    if (m->type == O11Y_HISTOGRAM) {
        const double *b = o->buckets ? o->buckets : default_buckets;
        m->n_le = o->buckets ? o->n_buckets : O11Y_ARRAY_LEN(default_buckets);
        for (size_t i = 0; i < m->n_le; i++) {
            m->le[i] = b[i];
            o11y__buf t; /* le="0.005", rendered once */
            o11y__buf_init_fixed(&t, m->le_text[i], sizeof m->le_text[i] - 1);
            o11y__buf_lit(&t, "le=\"");
            o11y__json_f64(&t, b[i]);
            o11y__buf_putc(&t, '"');
            m->le_text[i][t.len] = '\0';
        }
    }
    if (m->type == O11Y_HISTOGRAM)
        plan_le(m);
    st = add_metric(reg, m);
    if (st != O11Y_OK) {
        metric_free(m);
        return st;
    }
    *out = m;
    return O11Y_OK;
}

o11y_status o11y_metric_register_fn(o11y_metrics *reg, const char *name, const char *help,
                                    o11y_metric_type type, o11y_metric_value_fn fn, void *ctx)
{
    o11y_metric_opts o = {.name = name, .help = help, .type = type};
    if (!reg || !fn || type == O11Y_HISTOGRAM)
        return O11Y_EINVAL;
    o11y_status st = validate(&o);
    if (st != O11Y_OK)
        return st;
    o11y_metric *m = metric_new(reg, name, help);
    if (!m)
        return O11Y_ENOMEM;
    m->type = type;
    m->fn = fn;
    m->fn_ctx = ctx;
    st = add_metric(reg, m);
    if (st != O11Y_OK)
        metric_free(m);
    return st;
}

/*=== MARK: series ===*/

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = O11Y__FNV_BASIS;
    static const unsigned char separator = 0xFF; /* ("a","bc") differs from ("ab","c") */
    for (size_t i = 0; i < n; i++) {
        h = o11y__fnv1a(h, values[i], strlen(values[i]));
        h = o11y__fnv1a(h, &separator, 1);
    }
    return h;
}

static bool same_values(const o11y_series *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    return true;
}

static o11y_series *find_locked(const o11y_metric *m, const char *const *values, uint64_t h)
{
    if (!m->table_cap)
        return NULL;
    for (size_t i = h & (m->table_cap - 1);; i = (i + 1) & (m->table_cap - 1)) {
        uint32_t slot = m->table[i];
        if (!slot)
            return NULL;
        o11y_series *s = m->series[slot - 1];
        if (s->hash == h && same_values(s, values, m->n_labels))
            return s;
    }
}

void o11y__prom_escape(o11y__buf *b, const char *s, size_t len, bool quote)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            o11y__buf_lit(b, "\\\\");
        } else if (c == '\n') {
            o11y__buf_lit(b, "\\n");
        } else if (c == '"' && quote) {
            o11y__buf_lit(b, "\\\"");
        } else if (c >= 0x80) {
            size_t n = 1;
            while (i + n < len && n < 4 && ((unsigned char)s[i + n] & 0xC0) == 0x80)
                n++;
            if (o11y__utf8_valid(s + i, n))
                o11y__buf_append(b, s + i, n);
            else {
                o11y__buf_lit(b, "\xEF\xBF\xBD");
                n = 1;
            }
            i += n;
            continue;
        } else {
            o11y__buf_putc(b, (char)c);
        }
        i++;
    }
}

static o11y_series *series_new(o11y_metric *m, const char *const *values, uint64_t h)
{
    o11y_series *s = o11y__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->metric = m;
    s->hash = h;
    s->values = o11y__calloc(m->n_labels ? m->n_labels : 1, sizeof(char *));
    o11y__buf t;
    o11y__buf_init(&t, 64 * 1024);
    bool ok = s->values != NULL;
    for (size_t i = 0; ok && i < m->n_labels; i++) {
        ok = (s->values[i] = o11y__strdup(values[i])) != NULL;
        if (i)
            o11y__buf_putc(&t, ',');
        o11y__buf_cstr(&t, m->labels[i]);
        o11y__buf_lit(&t, "=\"");
        o11y__prom_escape(&t, values[i], strlen(values[i]), true);
        o11y__buf_putc(&t, '"');
    }
    s->label_text = ok ? o11y__buf_take(&t, &s->label_len) : NULL;
    o11y__buf_release(&t);
    if (!s->label_text) {
        series_free(s);
        return NULL;
    }
    return s;
}

static bool grow_locked(o11y_metric *m)
{
    if (m->n_series == m->cap_series) {
        size_t cap = m->cap_series ? m->cap_series * 2 : 8;
        o11y_series **p = o11y__realloc(m->series, cap * sizeof *p);
        if (!p)
            return false;
        m->series = p;
        m->cap_series = cap;
    }
    if ((m->n_series + 1) * 2 > m->table_cap) { /* keep the table at most half full */
        size_t cap = m->table_cap ? m->table_cap * 2 : 16;
        uint32_t *t = o11y__calloc(cap, sizeof *t);
        if (!t)
            return false;
        for (size_t i = 0; i < m->n_series; i++) {
            size_t j = m->series[i]->hash & (cap - 1);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = (uint32_t)(i + 1);
        }
        o11y__free(m->table);
        m->table = t;
        m->table_cap = cap;
    }
    return true;
}

typedef struct lookup_entry {
    uint64_t metric_id, hash;
    o11y_series *series;
} lookup_entry;
static _Thread_local lookup_entry lookup_cache[64];

o11y_status o11y_metric_series(o11y_metric *m, const char *const *values, o11y_series **out)
{
    if (!m || !out || m->fn || (m->n_labels && !values))
        return O11Y_EINVAL;
    *out = NULL;
    static const char *const none[1] = {""};
    if (!m->n_labels)
        values = none;
    for (size_t i = 0; i < m->n_labels; i++)
        if (!values[i])
            return O11Y_EINVAL;
    uint64_t h = hash_values(values, m->n_labels);
    /* A per-thread cache first: threads looking up the same series share no cache line. Keyed
     * by the metric's id, which no other metric ever gets, so a stale entry never matches. */
    lookup_entry *e =
        &lookup_cache[(h ^ m->id * 0x9E3779B97F4A7C15ull) % O11Y_ARRAY_LEN(lookup_cache)];
    if (e->metric_id == m->id && e->hash == h && same_values(e->series, values, m->n_labels)) {
        *out = e->series;
        return O11Y_OK;
    }
    pthread_rwlock_rdlock(&m->lock);
    o11y_series *s = find_locked(m, values, h);
    pthread_rwlock_unlock(&m->lock);
    if (s) {
        *e = (lookup_entry){m->id, h, s};
        *out = s;
        return O11Y_OK;
    }
    pthread_rwlock_wrlock(&m->lock);
    o11y_status st = O11Y_OK;
    if ((s = find_locked(m, values, h)) != NULL) {
        /* created meanwhile */
    } else if (m->n_series >= m->max_series) {
        atomic_fetch_add_explicit(&m->dropped_series, 1, memory_order_relaxed);
        st = O11Y_ELIMIT;
    } else if (!grow_locked(m) || !(s = series_new(m, values, h))) {
        st = O11Y_ENOMEM;
    } else {
        m->series[m->n_series++] = s;
        size_t j = h & (m->table_cap - 1);
        while (m->table[j])
            j = (j + 1) & (m->table_cap - 1);
        m->table[j] = (uint32_t)m->n_series;
    }
    pthread_rwlock_unlock(&m->lock);
    *out = st == O11Y_OK ? s : NULL;
    return st;
}
