/* o11y-trace — follow one request or job across the log files of any number of services.
 *
 *   o11y-trace [--json] [--follow] [--width N] ID PATH...
 *
 * ID is a trace id or a job id; each PATH a log file (rotated ones and .gz too) or a directory.
 * Prints the request's tree: one row per span (service, route or operation, start offset,
 * duration, status) with a waterfall bar, and under each span its events, errors and the gaps
 * where nothing was logged. --json prints the same as one document. --follow then keeps
 * reading the files and prints the id's lines as they are written, until its job ends (a
 * generation_completed, _failed or _cancelled line) or Ctrl-C, and prints the tree again.
 * Exit: 0 found, 1 nothing found, 2 bad usage or an unreadable path. */
#include "scan.h"
#include "spans.h"

#include <errno.h>
#include <o11y/trace.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

typedef struct collect {
    span_set *set;
    char **ids;
    size_t n_ids;
    bool live; /* --follow: print each new line */
    bool ended;
} collect;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void on_line(const char *line, size_t len, void *ctx)
{
    collect *c = ctx;
    size_t before = c->set->n_total;
    spans_add_line(c->set, line, len, c->ids, c->n_ids);
    if (c->set->n_total == before || !c->live)
        return;
    const json_t *added = c->set->last;
    spans_print_live(added, stdout);
    fflush(stdout);
    const char *event = json_string_value(json_object_get(added, "event"));
    if (event && (!strcmp(event, "generation_completed") || !strcmp(event, "generation_failed") ||
                  !strcmp(event, "generation_cancelled")))
        c->ended = true;
}

static int usage(FILE *to)
{
    fprintf(to, "usage: o11y-trace [--json] [--follow] [--width N] TRACE_OR_JOB_ID PATH...\n"
                "  PATH: log files (plain or .gz) or directories of them\n");
    return 2;
}

/* The needle: the id as a JSON string value, quotes included, so "job_1" does not match
 * "job_12". */
static char *needle_for(const char *id)
{
    size_t n = strlen(id) + 3;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "\"%s\"", id);
    return s;
}

static bool scan_for(char **paths, size_t n_paths, const char *id, collect *c, scan_stats *stats,
                     scan_cursor **cursors, size_t *n_cursors)
{
    char *needle = needle_for(id);
    if (!needle)
        return false;
    bool ok = scan_paths(paths, n_paths, needle, on_line, c, stats, cursors, n_cursors);
    free(needle);
    return ok;
}

int main(int argc, char **argv)
{
    bool json = false, follow = false;
    int width = 0, i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--follow"))
            follow = true;
        else if (!strcmp(argv[i], "--width") && i + 1 < argc)
            width = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else
            return usage(stderr);
    }
    if (argc - i < 2)
        return usage(stderr);
    const char *id = argv[i++];
    /* An id is what the services accept as one: nothing else can be in a line's id fields. */
    if (!o11y_trace_id_valid(id, strlen(id))) {
        fprintf(stderr, "o11y-trace: not a trace or job id: 1-128 of [A-Za-z0-9._:-]\n");
        return 2;
    }
    char **paths = argv + i;
    size_t n_paths = (size_t)(argc - i);
    bool terminal = isatty(STDOUT_FILENO);
    if (!width) {
        struct winsize ws;
        width =
            terminal && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 120;
    }

    span_set set = {0};
    collect c = {.set = &set};
    scan_stats stats = {0};
    scan_cursor *cursors = NULL;
    size_t n_cursors = 0;
    int rc = 2;
    c.ids = malloc(sizeof *c.ids);
    if (!c.ids || !(c.ids[0] = strdup(id)))
        goto done;
    c.n_ids = 1;
    bool ok = scan_for(paths, n_paths, id, &c, &stats, follow ? &cursors : NULL, &n_cursors);
    /* A job id: the traces its lines belong to hold the rest (the POST's lines before the job
     * had its id). Scanned again, once per trace. */
    size_t first_trace = c.n_ids;
    spans_trace_ids(&set, &c.ids, &c.n_ids);
    for (size_t t = first_trace; ok && t < c.n_ids; t++) {
        scan_stats more = {0};
        ok = scan_for(paths, n_paths, c.ids[t], &c, &more, NULL, NULL);
        stats.bytes += more.bytes;
    }
    if (!ok)
        goto done;
    if (follow && !interrupted) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        c.live = true;
        c.ended = spans_job_ended(&set);
        while (!interrupted && !c.ended) {
            struct timespec nap = {0, 200 * 1000000L};
            nanosleep(&nap, NULL);
            /* What was appended is little: every new line is looked at (the empty needle),
             * so one pass serves every id. */
            scan_follow(cursors, n_cursors, "", on_line, &c);
        }
    }
    spans_finish(&set);
    rc = set.n ? 0 : 1;
    if (json)
        spans_print_json(&set, stdout);
    else if (set.n)
        spans_print_tree(&set, stdout, terminal, width);
    if (!set.n)
        fprintf(stderr, "o11y-trace: no line has trace or job id %s (%llu bytes in %llu files)\n",
                id, (unsigned long long)stats.bytes, (unsigned long long)stats.files);
    if (set.unparsable || stats.long_lines)
        fprintf(stderr, "o11y-trace: skipped %zu lines that are not JSON, %llu over 1 MiB\n",
                set.unparsable, (unsigned long long)stats.long_lines);
done:
    spans_free(&set);
    for (size_t t = 0; t < c.n_ids; t++)
        free(c.ids[t]);
    free(c.ids);
    for (size_t k = 0; k < n_cursors; k++)
        free(cursors[k].path);
    free(cursors);
    return rc;
}
