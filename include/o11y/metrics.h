/* o11y/metrics.h — counters, gauges and histograms; Prometheus 0.0.4 and OpenMetrics 1.0 text.
 *
 * A metric (family) has a name, HELP text and label names fixed at registration. Label values
 * resolve once to a series handle; recording on a handle takes no lock: each thread records into
 * its own cells (allocated on the thread's first record to that series), merged when read.
 * Histograms keep log-linear buckets with a relative error under 1%, so any quantile comes from
 * the buckets, plus exact counts at the configured Prometheus `le` boundaries. */
#ifndef O11Y_METRICS_H
#define O11Y_METRICS_H

#include "o11y/common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y_metrics o11y_metrics; /* a registry */
typedef struct o11y_metric o11y_metric;   /* a family: name, help, labels, series */
typedef struct o11y_series o11y_series;   /* one label-value combination */

typedef enum o11y_metric_type {
    O11Y_COUNTER = 1,
    O11Y_GAUGE = 2,
    O11Y_HISTOGRAM = 3,
} o11y_metric_type;

enum {
    O11Y_METRIC_MAX_LABELS = 8,
    O11Y_METRIC_DEFAULT_MAX_SERIES = 1000,
};

enum o11y_metric_flags {
    O11Y_METRIC_WINDOWS = 1u << 0, /* keep 60 s and 5 min sliding windows (see o11y_series_read) */
    O11Y_METRIC_HIDDEN = 1u << 1,  /* not rendered in the exposition (internal bookkeeping) */
    O11Y_METRIC_EXEMPLARS = 1u << 2, /* histograms: keep, per `le` bucket, the trace id of the
                                        calling thread's current context with an observation
                                        (at most one a second per bucket), rendered as
                                        OpenMetrics exemplars, so a slow bucket leads to a trace
                                        in the logs */
};

/* All-zero except name, help and type is a valid set of options. */
typedef struct o11y_metric_opts {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*, no "__" prefix; counters end in
                         _total; copied */
    const char *help; /* required; copied */
    o11y_metric_type type;
    const char *const *label_names; /* n_labels names, [a-zA-Z_][a-zA-Z0-9_]*, not "le" or
                                       "quantile", no "__" prefix; copied */
    size_t n_labels;
    const double *buckets; /* histogram `le` boundaries, increasing and finite; NULL:
                              the 14 OpenTelemetry boundaries of
                              http.server.request.duration, in seconds */
    size_t n_buckets;
    double unit_scale; /* histogram: recorded values are kept as integers of
                          value * unit_scale (0: 1e9, nanoseconds of seconds); values
                          beyond 2^41 - 1 units are kept in the top bucket */
    size_t max_series; /* 0: 1000; further label combinations are refused */
    unsigned flags;    /* o11y_metric_flags */
    O11Y_RESERVED;     /* zero: room to grow (common.h) */
} o11y_metric_opts;

/* Creates a registry; it starts one thread that snapshots windowed series every 10 s.
 * Returns O11Y_OK or O11Y_ENOMEM. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_metrics_create(o11y_metrics **out /* OUT */);
/* Frees the registry, its metrics and series. No thread may record into it during or after. */
O11Y_API void o11y_metrics_destroy(o11y_metrics *m);

/* The process default registry used by operation tracking (NULL until set; keeps a pointer). */
O11Y_API void o11y_metrics_set_default(o11y_metrics *m);
O11Y_API o11y_metrics *o11y_metrics_default(void);

/* Registers a metric. Returns O11Y_OK, O11Y_EINVAL (a name, label or bucket rule broken; nothing
 * is registered), O11Y_ECONFLICT (the name is taken), O11Y_ELIMIT (over 1024 metrics) or
 * O11Y_ENOMEM. The metric lives as long as the registry. Thread-safe: yes. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_metric_register(o11y_metrics *m,
                                                           const o11y_metric_opts *opts,
                                                           o11y_metric **out /* OUT */);

/* The same, or the family already registered under that name when it has the same type and
 * label names (a registry shared by several services or parts): O11Y_OK with *out either way;
 * O11Y_ECONFLICT (and *out NULL) when the existing one differs. Thread-safe: yes. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_metric_register_or_get(o11y_metrics *m,
                                                                  const o11y_metric_opts *opts,
                                                                  o11y_metric **out /* OUT */);

/* Value of a metric computed when the exposition is rendered (process metrics, queue sizes). */
typedef double (*o11y_metric_value_fn)(void *ctx);
/* Registers a counter or gauge without labels whose value comes from fn at each render. Same
 * name rules and returns as o11y_metric_register. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_metric_register_fn(o11y_metrics *m, const char *name,
                                                              const char *help,
                                                              o11y_metric_type type,
                                                              o11y_metric_value_fn fn, void *ctx);

/* The series for these label values (n_labels strings, copied), created on first use. Values
 * may hold any bytes; they are escaped in the exposition. Returns O11Y_OK, O11Y_EINVAL, O11Y_ELIMIT
 * (the metric holds max_series already: counted in o11y_metric_series_dropped_total) or
 * O11Y_ENOMEM. The series lives as long as the registry. Thread-safe: yes (a read lock when the
 * series exists). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_metric_series(o11y_metric *metric,
                                                         const char *const *label_values,
                                                         o11y_series **out /* OUT */);

/*=== recording: no lock; the first record of a thread to a series allocates its cells ===*/

O11Y_API void o11y_counter_add(o11y_series *s, uint64_t n);
static inline void o11y_counter_inc(o11y_series *s)
{
    o11y_counter_add(s, 1);
}
/* Gauges either move (add) or are set, not both. */
O11Y_API void o11y_gauge_add(o11y_series *s, int64_t delta);
O11Y_API void o11y_gauge_set(o11y_series *s, double value);
/* Records one observation; negative and NaN values are ignored and counted as dropped. */
O11Y_API void o11y_histogram_observe(o11y_series *s, double value);

/*=== reading ===*/

typedef enum o11y_window {
    O11Y_WINDOW_LIFETIME = 0,
    O11Y_WINDOW_60S = 1, /* needs O11Y_METRIC_WINDOWS; 10 s resolution */
    O11Y_WINDOW_5M = 2,
} o11y_window;

typedef struct o11y_series_stats {
    uint64_t count;            /* counter: its value; histogram: observations */
    double sum;                /* histogram: sum of observations; gauge: its value */
    double avg, p50, p95, p99; /* histogram; 0 when empty */
} o11y_series_stats;

/* Reads a series over a window. Returns O11Y_OK, or O11Y_EINVAL (no windows on this metric). */
O11Y_API o11y_status o11y_series_read(const o11y_series *s, o11y_window w,
                                      o11y_series_stats *out /* OUT */);
/* The q-quantile (0..1) of a histogram series over its lifetime, from the buckets. */
O11Y_API double o11y_histogram_quantile(const o11y_series *s, double q);

/* The label value at index i of a series (borrowed, valid as long as the registry). */
O11Y_API const char *o11y_series_label(const o11y_series *s, size_t i);
/* Calls fn for each series of a metric, in creation order. */
O11Y_API void o11y_metric_foreach(o11y_metric *metric, void (*fn)(o11y_series *s, void *ctx),
                                  void *ctx);
/* The metric registered under name, or NULL. */
O11Y_API o11y_metric *o11y_metrics_find(o11y_metrics *m, const char *name);

typedef enum o11y_exposition {
    O11Y_EXPO_PROMETHEUS = 0,  /* text/plain; version=0.0.4 */
    O11Y_EXPO_OPENMETRICS = 1, /* application/openmetrics-text; version=1.0.0 */
} o11y_exposition;

/* Chooses the format from an Accept header value (may be NULL). */
O11Y_API o11y_exposition o11y_exposition_negotiate(const char *accept, size_t len);
/* The Content-Type of a format. */
O11Y_API const char *o11y_exposition_content_type(o11y_exposition f);

/* Renders every metric. Returns owned text (free with o11y_free) and its length; NULL on
 * ENOMEM. Thread-safe: yes; recording goes on meanwhile. */
O11Y_API char *o11y_metrics_render(o11y_metrics *m, o11y_exposition f, size_t *len /* OUT */);

/* The default `le` boundaries (seconds): 0.005 0.01 0.025 0.05 0.075 0.1 0.25 0.5 0.75 1 2.5 5
 * 7.5 10. */
O11Y_API const double *o11y_metrics_default_buckets(size_t *n /* OUT */);

#ifdef __cplusplus
}
#endif
#endif
