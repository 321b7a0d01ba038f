/* spans.c — from matched log lines to a tree of spans, printed as a waterfall or as JSON. */
#include "spans.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { LINES_SHOWN_HEAD = 12, LINES_SHOWN_TAIL = 4 };

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* "2026-11-29T13:00:00.123Z" to milliseconds since the epoch; NAN when it is not one. */
static double parse_time(const char *s)
{
    struct tm tm = {0};
    int ms = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &n) != 7 ||
        n != 24)
        return NAN;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) * 1000.0 + ms;
}

static span *find_or_add(span_set *set, const char *id, const char *service)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->spans[i].id, id) == 0 &&
            (id[0] || strcmp(set->spans[i].service, service) == 0))
            return &set->spans[i];
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        span *grown = realloc(set->spans, cap * sizeof *grown);
        if (!grown)
            return NULL;
        set->spans = grown;
        set->cap = cap;
    }
    span *s = &set->spans[set->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->service, sizeof s->service, "%s", service);
    s->parent_index = SIZE_MAX;
    return s;
}

void spans_add_line(span_set *set, const char *line, size_t len, char **ids, size_t n_ids)
{
    json_error_t err;
    json_t *j = json_loadb(line, len, 0, &err);
    if (!json_is_object(j)) {
        json_decref(j);
        set->unparsable++;
        return;
    }
    const char *trace = str(j, "trace_id"), *job = str(j, "job_id");
    bool wanted = false;
    for (size_t i = 0; i < n_ids && !wanted; i++)
        wanted = strcmp(trace, ids[i]) == 0 || strcmp(job, ids[i]) == 0;
    double at = parse_time(str(j, "timestamp"));
    if (!wanted || isnan(at)) {
        json_decref(j);
        return;
    }
    span *s = find_or_add(set, str(j, "span_id"), str(j, "service"));
    if (!s) {
        json_decref(j);
        return;
    }
    /* The same line from two copies of a file (a rotated file and its .gz) counts once. */
    for (size_t i = 0; i < s->n_lines; i++)
        if (s->lines[i].at_ms == at && json_equal(s->lines[i].line, j)) {
            json_decref(j);
            return;
        }
    if (s->n_lines == s->cap_lines) {
        size_t cap = s->cap_lines ? s->cap_lines * 2 : 8;
        span_line *grown = realloc(s->lines, cap * sizeof *grown);
        if (!grown) {
            json_decref(j);
            return;
        }
        s->lines = grown;
        s->cap_lines = cap;
    }
    s->lines[s->n_lines++] = (span_line){at, set->seq++, j};
    set->n_total++;
    set->last = j;
}

bool spans_job_ended(const span_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        for (size_t k = 0; k < set->spans[i].n_lines; k++) {
            const char *e = str(set->spans[i].lines[k].line, "event");
            if (!strcmp(e, "generation_completed") || !strcmp(e, "generation_failed") ||
                !strcmp(e, "generation_cancelled"))
                return true;
        }
    return false;
}

static int by_time(const void *a, const void *b)
{
    const span_line *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq; /* the order they were read */
}

void spans_finish(span_set *set)
{
    set->start_ms = INFINITY;
    set->end_ms = -INFINITY;
    for (size_t i = 0; i < set->n; i++) {
        span *s = &set->spans[i];
        if (s->n_lines > 1)
            qsort(s->lines, s->n_lines, sizeof *s->lines, by_time);
        s->start_ms = s->n_lines ? s->lines[0].at_ms : 0;
        s->end_ms = s->n_lines ? s->lines[s->n_lines - 1].at_ms : 0;
        for (size_t k = 0; k < s->n_lines; k++) {
            json_t *l = s->lines[k].line, *md = json_object_get(l, "metadata");
            const char *event = str(l, "event"), *level = str(l, "level");
            if (!strcmp(level, "ERROR") || !strcmp(level, "FATAL"))
                s->failed = true;
            if (!s->parent[0])
                snprintf(s->parent, sizeof s->parent, "%s", str(l, "parent_span_id"));
            bool server = !strcmp(event, "http_request"),
                 client = !strcmp(event, "http_client_request");
            if (server || client) {
                /* Written when the exchange ended: it began duration_ms earlier. */
                double d = json_number_value(json_object_get(l, "duration_ms"));
                double began = s->lines[k].at_ms - d;
                if (began < s->start_ms)
                    s->start_ms = began;
                s->status = (long)json_integer_value(json_object_get(md, "status"));
                if (server)
                    snprintf(s->name, sizeof s->name, "%s %s", str(md, "method"),
                             *str(md, "route") ? str(md, "route") : str(md, "path"));
                else
                    snprintf(s->name, sizeof s->name, "-> %s %s%s", str(md, "method"),
                             str(md, "host"), str(md, "route"));
                if (s->status >= 500 || (client && strcmp(str(md, "outcome"), "response") != 0))
                    s->failed = true;
            }
        }
        if (!s->name[0] && s->n_lines) {
            const json_t *first = s->lines[0].line;
            snprintf(s->name, sizeof s->name, "%s",
                     *str(first, "event") ? str(first, "event") : str(first, "message"));
        }
        if (s->n_lines && s->start_ms < set->start_ms)
            set->start_ms = s->start_ms;
        if (s->n_lines && s->end_ms > set->end_ms)
            set->end_ms = s->end_ms;
    }
    for (size_t i = 0; i < set->n; i++)
        for (size_t k = 0; set->spans[i].parent[0] && k < set->n; k++)
            if (k != i && strcmp(set->spans[k].id, set->spans[i].parent) == 0)
                set->spans[i].parent_index = k;
}

void spans_trace_ids(const span_set *set, char ***ids, size_t *n_ids)
{
    for (size_t i = 0; i < set->n; i++)
        for (size_t k = 0; k < set->spans[i].n_lines; k++) {
            const char *t = str(set->spans[i].lines[k].line, "trace_id");
            bool have = !*t;
            for (size_t m = 0; m < *n_ids && !have; m++)
                have = strcmp((*ids)[m], t) == 0;
            if (have || *n_ids >= 64)
                continue;
            char **grown = realloc(*ids, (*n_ids + 1) * sizeof **ids);
            if (!grown)
                return;
            *ids = grown;
            if (((*ids)[*n_ids] = strdup(t)) != NULL)
                (*n_ids)++;
        }
}

/* Spans in tree order: each root by start time, then its children the same way. */
static void order(const span_set *set, size_t parent, int depth, size_t *out, int *depths,
                  size_t *n, bool *placed)
{
    for (;;) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < set->n; i++) {
            if (placed[i] || set->spans[i].parent_index != parent)
                continue;
            if (best == SIZE_MAX || set->spans[i].start_ms < set->spans[best].start_ms)
                best = i;
        }
        if (best == SIZE_MAX)
            return;
        placed[best] = true;
        out[*n] = best;
        depths[(*n)++] = depth;
        order(set, best, depth + 1, out, depths, n, placed);
    }
}

/* A parent chain that loops (a damaged or forged file) would make every span in it a child:
 * those are shown as roots. */
static size_t tree_order(const span_set *set, size_t *out, int *depths)
{
    bool *placed = calloc(set->n ? set->n : 1, sizeof *placed);
    size_t n = 0;
    if (!placed)
        return 0;
    order(set, SIZE_MAX, 0, out, depths, &n, placed);
    for (size_t i = 0; i < set->n; i++)
        if (!placed[i]) {
            placed[i] = true;
            out[n] = i;
            depths[n++] = 0;
            order(set, i, 1, out, depths, &n, placed);
        }
    free(placed);
    return n;
}

/* Text from a log file, for a terminal: a control character (an escape sequence forged into
 * a message) is printed as '?', so a file cannot drive the terminal. At most max bytes; pads
 * to pad with spaces. */
static void put_text(FILE *out, const char *s, size_t max, size_t pad)
{
    size_t n = 0;
    for (; s[n] && n < max; n++) {
        unsigned char c = (unsigned char)s[n];
        fputc(c < 0x20 || c == 0x7f ? '?' : c, out);
    }
    for (; n < pad; n++)
        fputc(' ', out);
}

static void print_duration(FILE *out, double ms)
{
    if (ms < 1000)
        fprintf(out, "%7.1fms", ms);
    else
        fprintf(out, "%7.2fs ", ms / 1000);
}

/* Lines under a span: events and errors, and the gaps where nothing was logged. */
static void print_lines(const span_set *set, const span *s, FILE *out, bool terminal, int depth)
{
    double total = set->end_ms - set->start_ms, gap_ms = total * 0.3 > 100 ? total * 0.3 : 100;
    size_t shown = 0;
    for (size_t k = 0; k < s->n_lines; k++) {
        const json_t *l = s->lines[k].line;
        const char *event = str(l, "event"), *level = str(l, "level");
        if (!strcmp(event, "http_request") || !strcmp(event, "http_client_request"))
            continue;
        if (k > 0 && s->lines[k].at_ms - s->lines[k - 1].at_ms > gap_ms)
            fprintf(out, "%*s  %s %.0f ms with no line\n", depth * 2 + 2, "",
                    terminal ? "\u22ef" : "...", s->lines[k].at_ms - s->lines[k - 1].at_ms);
        shown++;
        if (shown > LINES_SHOWN_HEAD && k + LINES_SHOWN_TAIL < s->n_lines) {
            if (shown == LINES_SHOWN_HEAD + 1)
                fprintf(out, "%*s  ... %zu more lines\n", depth * 2 + 2, "",
                        s->n_lines - k - LINES_SHOWN_TAIL);
            continue;
        }
        bool bad = !strcmp(level, "ERROR") || !strcmp(level, "FATAL") || !strcmp(level, "WARN");
        fprintf(out, "%*s  +%.0fms %s", depth * 2 + 2, "", s->lines[k].at_ms - set->start_ms,
                terminal && bad ? "\033[31m" : "");
        put_text(out, level, 5, 5);
        fprintf(out, "%s ", terminal && bad ? "\033[0m" : "");
        put_text(out, *event ? event : str(l, "message"), 4096, 0);
        if (*event && bad) {
            fputs(": ", out);
            put_text(out, str(l, "message"), 4096, 0);
        }
        fputc('\n', out);
    }
}

void spans_print_tree(const span_set *set, FILE *out, bool terminal, int width)
{
    size_t *idx = malloc((set->n ? set->n : 1) * sizeof *idx);
    int *depths = malloc((set->n ? set->n : 1) * sizeof *depths);
    if (!idx || !depths) {
        free(idx);
        free(depths);
        return;
    }
    size_t n = tree_order(set, idx, depths);
    double total = set->end_ms - set->start_ms;
    fprintf(out, "%zu span%s, %.1f ms from first to last line\n", set->n, set->n == 1 ? "" : "s",
            total);
    int bar_width = width - 86;
    if (bar_width < 10)
        bar_width = 10;
    for (size_t r = 0; r < n; r++) {
        const span *s = &set->spans[idx[r]];
        int depth = depths[r];
        char label[200];
        snprintf(label, sizeof label, "%*s%s", depth * 2, "", s->name);
        put_text(out, label, 44, 44);
        fputc(' ', out);
        put_text(out, s->service, 20, 20);
        fputs(" +", out);
        print_duration(out, s->start_ms - set->start_ms);
        fputc(' ', out);
        print_duration(out, s->end_ms - s->start_ms);
        if (s->status)
            fprintf(out, " %3ld ", s->status);
        else
            fprintf(out, "     ");
        /* The bar: where the span lies within the whole. */
        int from = total > 0 ? (int)((s->start_ms - set->start_ms) / total * bar_width) : 0;
        int len = total > 0 ? (int)ceil((s->end_ms - s->start_ms) / total * bar_width) : bar_width;
        if (len < 1)
            len = 1;
        if (from + len > bar_width)
            len = bar_width - from > 0 ? bar_width - from : 1;
        fprintf(out, "%*s%s", from, "", terminal ? (s->failed ? "\033[31m" : "\033[36m") : "");
        for (int i = 0; i < len; i++)
            fputs(terminal ? "\u2588" : "#", out);
        fprintf(out, "%s\n", terminal ? "\033[0m" : "");
        print_lines(set, s, out, terminal, depth);
    }
    free(idx);
    free(depths);
}

/* Milliseconds to the microsecond: the timestamps' own resolution is a millisecond. */
static double us(double ms)
{
    return round(ms * 1000) / 1000;
}

void spans_print_json(const span_set *set, FILE *out)
{
    size_t *idx = malloc((set->n ? set->n : 1) * sizeof *idx);
    int *depths = malloc((set->n ? set->n : 1) * sizeof *depths);
    json_t *doc = json_object(), *arr = json_array();
    size_t n = idx && depths ? tree_order(set, idx, depths) : 0;
    for (size_t r = 0; r < n; r++) {
        const span *s = &set->spans[idx[r]];
        json_t *lines = json_array();
        for (size_t k = 0; k < s->n_lines; k++) {
            const json_t *l = s->lines[k].line;
            json_t *o =
                json_pack("{s:f,s:s,s:s}", "offsetMs", us(s->lines[k].at_ms - set->start_ms),
                          "level", str(l, "level"), "message", str(l, "message"));
            if (*str(l, "event"))
                json_object_set_new(o, "event", json_string(str(l, "event")));
            json_array_append_new(lines, o);
        }
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:i,s:f,s:f,s:b,s:i,s:o}", "spanId", s->id, "service",
                      s->service, "name", s->name, "depth", depths[r], "offsetMs",
                      us(s->start_ms - set->start_ms), "durationMs", us(s->end_ms - s->start_ms),
                      "failed", s->failed, "status", (json_int_t)s->status, "lines", lines);
        if (s->parent[0])
            json_object_set_new(o, "parentSpanId", json_string(s->parent));
        json_array_append_new(arr, o);
    }
    json_object_set_new(doc, "spans", arr);
    json_object_set_new(doc, "durationMs", json_real(set->n ? us(set->end_ms - set->start_ms) : 0));
    json_object_set_new(doc, "unparsableLines", json_integer((json_int_t)set->unparsable));
    json_dumpf(doc, out, JSON_COMPACT | JSON_REAL_PRECISION(12));
    fputc('\n', out);
    json_decref(doc);
    free(idx);
    free(depths);
}

void spans_print_live(const json_t *line, FILE *out)
{
    const char *ts = str(line, "timestamp");
    put_text(out, strlen(ts) >= 23 ? ts + 11 : ts, 12, 12);
    fputc(' ', out);
    put_text(out, str(line, "service"), 20, 20);
    fputc(' ', out);
    put_text(out, str(line, "level"), 5, 5);
    fputc(' ', out);
    put_text(out, *str(line, "event") ? str(line, "event") : str(line, "message"), 4096, 0);
    fputc('\n', out);
}

void spans_free(span_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        for (size_t k = 0; k < set->spans[i].n_lines; k++)
            json_decref(set->spans[i].lines[k].line);
        free(set->spans[i].lines);
    }
    free(set->spans);
    memset(set, 0, sizeof *set);
}
