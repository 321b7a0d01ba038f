/* metrics/render.c — the text expositions: Prometheus 0.0.4 and OpenMetrics 1.0.
 * https://prometheus.io/docs/instrumenting/exposition_formats/ and the OpenMetrics 1.0 spec. */
#include "metrics/metrics_internal.h"
#include "o11y/error.h"

#include <math.h>
#include <strings.h>

o11y_exposition o11y_exposition_negotiate(const char *accept, size_t len)
{
    /* OpenMetrics when named, and preferred at least as much as the text format. */
    int q_om = o11y_accept_quality(accept, len, "application/openmetrics-text", true);
    int q_text = o11y_accept_quality(accept, len, "text/plain", false);
    return q_om > 0 && q_om >= q_text ? O11Y_EXPO_OPENMETRICS : O11Y_EXPO_PROMETHEUS;
}

const char *o11y_exposition_content_type(o11y_exposition f)
{
    return f == O11Y_EXPO_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                      : "text/plain; version=0.0.4; charset=utf-8";
}

static void put_double(o11y__buf *b, double v)
{
    if (isnan(v))
        o11y__buf_lit(b, "NaN");
    else if (isinf(v))
        o11y__buf_cstr(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9e15)
        o11y__json_i64(b, (int64_t)v);
    else
        o11y__json_f64(b, v);
}

/* "name", or for OpenMetrics counters the family name without _total. */
static void put_family(o11y__buf *b, const o11y_metric *m, o11y_exposition f)
{
    size_t len = strlen(m->name);
    if (f == O11Y_EXPO_OPENMETRICS && m->type == O11Y_COUNTER)
        len -= sizeof "_total" - 1;
    o11y__buf_append(b, m->name, len);
}

static void put_header(o11y__buf *b, const o11y_metric *m, o11y_exposition f)
{
    static const char *const types[] = {"", "counter", "gauge", "histogram"};
    o11y__buf_lit(b, "# HELP ");
    put_family(b, m, f);
    o11y__buf_putc(b, ' ');
    o11y__prom_escape(b, m->help, strlen(m->help), f == O11Y_EXPO_OPENMETRICS);
    o11y__buf_lit(b, "\n# TYPE ");
    put_family(b, m, f);
    o11y__buf_putc(b, ' ');
    o11y__buf_cstr(b, types[m->type]);
    o11y__buf_putc(b, '\n');
}

/* name{labels[,extra]} — braces only when there is a label. */
static void put_sample_name(o11y__buf *b, const char *name, const char *suffix,
                            const o11y_series *s, const char *extra)
{
    o11y__buf_cstr(b, name);
    if (suffix)
        o11y__buf_cstr(b, suffix);
    bool labels = s && s->label_len;
    if (!labels && !extra) {
        o11y__buf_putc(b, ' ');
        return;
    }
    o11y__buf_putc(b, '{');
    if (labels)
        o11y__buf_append(b, s->label_text, s->label_len);
    if (extra) {
        if (labels)
            o11y__buf_putc(b, ',');
        o11y__buf_cstr(b, extra);
    }
    o11y__buf_lit(b, "} ");
}

typedef struct render_ctx {
    o11y__buf *b;
    o11y_exposition f;
    uint64_t *le;
} render_ctx;

static void render_series(o11y_series *s, void *arg)
{
    render_ctx *rc = arg;
    o11y__buf *b = rc->b;
    const o11y_metric *m = s->metric;
    uint64_t count;
    double sum;
    o11y__series_merge(s, &count, &sum, m->type == O11Y_HISTOGRAM ? rc->le : NULL, NULL);
    if (m->type == O11Y_COUNTER) {
        put_sample_name(b, m->name, NULL, s, NULL);
        o11y__json_u64(b, count);
    } else if (m->type == O11Y_GAUGE) {
        put_sample_name(b, m->name, NULL, s, NULL);
        if (atomic_load_explicit(&s->gauge_was_set, memory_order_relaxed)) {
            uint64_t bits = atomic_load_explicit(&s->gauge_bits, memory_order_relaxed);
            double d;
            memcpy(&d, &bits, sizeof d);
            put_double(b, d);
        } else {
            o11y__json_i64(b, (int64_t)count);
        }
    } else {
        /* Cumulative counts per boundary; +Inf is the total. The shards are read once, so the
         * buckets, _count and _sum of one series agree with each other. */
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= m->n_le; i++) {
            cumulative += rc->le[i];
            put_sample_name(b, m->name, "_bucket", s, i < m->n_le ? m->le_text[i] : "le=\"+Inf\"");
            o11y__json_u64(b, i < m->n_le ? cumulative : count);
            o11y__exemplar_copy ex;
            if (rc->f == O11Y_EXPO_OPENMETRICS && (m->flags & O11Y_METRIC_EXEMPLARS) &&
                o11y__exemplar_read(s, i, &ex)) {
                /* OpenMetrics 1.0: # {labels} value timestamp. The id was valid when kept (it
                 * came from a trace context), so it needs no escaping. */
                o11y__buf_lit(b, " # {trace_id=\"");
                o11y__buf_cstr(b, ex.trace_id);
                o11y__buf_lit(b, "\"} ");
                put_double(b, ex.value);
                o11y__buf_putc(b, ' ');
                o11y__json_fixed3(b, (double)ex.unix_ms / 1000.0);
            }
            o11y__buf_putc(b, '\n');
        }
        put_sample_name(b, m->name, "_sum", s, NULL);
        put_double(b, sum);
        o11y__buf_putc(b, '\n');
        put_sample_name(b, m->name, "_count", s, NULL);
        o11y__json_u64(b, count);
    }
    o11y__buf_putc(b, '\n');
}

static void render_metric(o11y_metric *m, render_ctx *rc)
{
    if (m->flags & O11Y_METRIC_HIDDEN)
        return;
    if (!m->fn) {
        pthread_rwlock_rdlock(&m->lock);
        size_t n = m->n_series;
        pthread_rwlock_unlock(&m->lock);
        if (n == 0)
            return; /* a family without samples says nothing */
    }
    put_header(rc->b, m, rc->f);
    if (m->fn) {
        put_sample_name(rc->b, m->name, NULL, NULL, NULL);
        put_double(rc->b, m->fn(m->fn_ctx));
        o11y__buf_putc(rc->b, '\n');
        return;
    }
    o11y_metric_foreach(m, render_series, rc);
}

char *o11y_metrics_render(o11y_metrics *reg, o11y_exposition f, size_t *len)
{
    if (!reg || !len)
        return NULL;
    o11y__buf b;
    o11y__buf_init(&b, (size_t)1 << 31);
    uint64_t le[O11Y__MAX_LE + 1];
    render_ctx rc = {.b = &b, .f = f, .le = le};
    size_t n = atomic_load_explicit(&reg->n_metrics, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        render_metric(reg->metrics[i], &rc);
    if (f == O11Y_EXPO_OPENMETRICS)
        o11y__buf_lit(&b, "# EOF\n");
    char *out = o11y__buf_take(&b, len);
    o11y__buf_release(&b);
    return out;
}
