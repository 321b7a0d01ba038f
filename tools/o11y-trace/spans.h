/* spans.h — a request's tree from its log lines: one span per span_id, parents from
 * parent_span_id, times from the lines' timestamps and the access lines' durations. */
#ifndef OTRACE_SPANS_H
#define OTRACE_SPANS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct span_line {
    double at_ms; /* since the epoch */
    size_t seq;   /* read order: lines of one millisecond keep it */
    json_t *line; /* owned */
} span_line;

typedef struct span {
    char id[17], parent[17];
    char service[64];
    char name[160]; /* "POST /generations", "→ POST 127.0.0.1 /chat/completions", or an event */
    long status;    /* of its HTTP answer or call; 0: none */
    double start_ms, end_ms;
    span_line *lines; /* in time order */
    size_t n_lines, cap_lines;
    size_t parent_index; /* into the set; SIZE_MAX: a root */
    bool failed;         /* an ERROR line, a 5xx, or a failed call */
} span;

typedef struct span_set {
    span *spans;
    size_t n, cap;
    size_t unparsable; /* lines holding the id that are not JSON objects */
    double start_ms, end_ms;
    size_t seq;     /* lines read */
    size_t n_total; /* lines kept */
    json_t *last;   /* the line kept last (borrowed) */
} span_set;

/* Adds one log line (the bytes of a line that matched); keeps it when its trace_id or job_id
 * is one of ids[0..n_ids). */
void spans_add_line(span_set *set, const char *line, size_t len, char **ids, size_t n_ids);
/* True when a kept line ends a generation (completed, failed or cancelled). */
bool spans_job_ended(const span_set *set);
/* Orders lines, derives names, times and parents. */
void spans_finish(span_set *set);
/* The trace ids of the kept lines (for a job id: the traces its lines belong to); appended to
 * *ids unless present. */
void spans_trace_ids(const span_set *set, char ***ids, size_t *n_ids);
void spans_print_tree(const span_set *set, FILE *out, bool terminal, int width);
void spans_print_json(const span_set *set, FILE *out);
/* One line of --follow's live output. */
void spans_print_live(const json_t *line, FILE *out);
void spans_free(span_set *set);

#endif
