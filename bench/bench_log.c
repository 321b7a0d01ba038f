/* bench_log — the cost of one access line on the caller's thread (format + enqueue), next to a
 * plain snprintf of the same line, and the writer thread's lines per second into a file.
 * Figures only; nothing here asserts a time. */
#include "core/internal.h"
#include "log/log_internal.h"
#include "o11y/log.h"
#include "o11y/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 1000 };

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char path[] = "/projects/proj_0193f0a27c1e7d3a9b1c2f4e5d6a7b8c/episodes";
static const char route[] = "/projects/{projectId}/episodes";

/* What the pipeline writes per request (http/pipeline.c, o11y__pipeline_done): 12 fields in all
 * (timestamp, level, service, trace_id, project_id, message, event, method, route, path, status,
 * bytes, duration_ms). */
__attribute__((noinline)) void bench_access_line(o11y_logger *lg, int i)
{
    o11y__line l;
    static const char head[] = ",\"message\":\"request completed\",\"event\":\"http_request\"";
    if (!o11y__line_begin_json(&l, lg, O11Y_LOG_INFO, head, sizeof head - 1))
        return;
    o11y__buf *b = &l.b;
    l.meta_mark = b->len;
    l.meta_open = true;
    o11y__buf_lit(b, ",\"metadata\":{\"method\":\"");
    o11y__buf_cstr(b, "POST");
    o11y__buf_lit(b, "\",\"route\":\"");
    o11y__buf_append(b, route, sizeof route - 1);
    o11y__buf_lit(b, "\",\"path\":");
    o11y__json_str(b, path, sizeof path - 1, 1024);
    o11y__buf_lit(b, ",\"status\":");
    o11y__json_u64(b, 201);
    o11y__buf_lit(b, ",\"bytes\":");
    o11y__json_u64(b, (uint64_t)(200 + (i & 63)));
    o11y__line_end(&l, 0.412 + (i & 7));
}

__attribute__((noinline)) void bench_snprintf_line(char *buf, size_t cap, const o11y_trace_ctx *t,
                                                   int i)
{
    char ts[64];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
    snprintf(buf, cap,
             "{\"timestamp\":\"%s\",\"level\":\"%s\",\"service\":\"%s\",\"trace_id\":\"%s\","
             "\"project_id\":\"%s\",\"message\":\"%s\",\"event\":\"%s\",\"metadata\":{"
             "\"method\":\"%s\",\"route\":\"%s\",\"path\":\"%s\",\"status\":%d,\"bytes\":%d},"
             "\"duration_ms\":%.3f}\n",
             ts, "INFO", "generation-service", t->trace_id, t->project_id, "request completed",
             "http_request", "POST", route, path, 201, 200 + (i & 63), 0.412 + (i & 7));
}

static double median_ns(double *samples, int n)
{
    qsort(samples, (size_t)n, sizeof *samples, cmp_double);
    return samples[n / 2];
}

/* One round: a first pass maps the queue's pages; the second is timed from its first enqueue
 * until the writer has written its last line. Returns millions of lines per second. */
static double writer_rate(o11y_log_config *cfg, int n, bool dev_null)
{
    char file[] = "/tmp/o11y-bench-XXXXXX";
    int fd = mkstemp(file);
    if (fd < 0)
        return 0;
    close(fd);
    cfg->file_path = dev_null ? "/dev/null" : file;
    cfg->queue_bytes = 512u << 20; /* holds every line: the writer is measured, not the queue */
    o11y_logger *lg;
    if (o11y_logger_create(cfg, &lg) != O11Y_OK)
        return 0;
    for (int i = 0; i < n; i++)
        bench_access_line(lg, i);
    (void)o11y_logger_flush(lg, 60000);
    o11y_log_stats before, after;
    o11y_logger_stats(lg, &before);
    int64_t t0 = now_ns();
    for (int i = 0; i < n; i++)
        bench_access_line(lg, i);
    (void)o11y_logger_flush(lg, 60000);
    int64_t t1 = now_ns();
    o11y_logger_stats(lg, &after);
    o11y_logger_destroy(lg);
    unlink(file);
    return (double)(after.lines_written - before.lines_written) / ((double)(t1 - t0) / 1e9) / 1e6;
}

int main(int argc, char **argv)
{
    int lines = argc > 1 ? atoi(argv[1]) : 1000000;
    bool callgrind = argc > 2 && strcmp(argv[2], "--callgrind") == 0;
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    cfg.service_name = "generation-service";
    cfg.file_path = "/dev/null";
    cfg.queue_bytes = 4u << 20; /* the default: stays in cache */
    o11y_logger *lg;
    if (o11y_logger_create(&cfg, &lg) != O11Y_OK)
        return 1;
    o11y_trace_ctx ctx;
    o11y_trace_ctx_new(&ctx);
    if (o11y_trace_ctx_set_project_id(&ctx, "proj_0193f0a27c1e7d3a9b1c2f4e5d6a7b8c", 37))
        return 1;
    o11y_trace_set_current(&ctx);

    if (callgrind) { /* instruction counts come from valgrind, not from this process */
        for (int i = 0; i < lines; i++)
            bench_access_line(lg, i);
        o11y_logger_destroy(lg);
        return 0;
    }

    int batches = lines / BATCH;
    double *ours = malloc(sizeof(double) * (size_t)batches);
    double *plain = malloc(sizeof(double) * (size_t)batches);
    static char buf[4096];
    /* Interleave the two so both see the same machine state. */
    for (int b = 0; b < batches; b++) {
        int64_t t0 = now_ns();
        for (int i = 0; i < BATCH; i++)
            bench_access_line(lg, b * BATCH + i);
        int64_t t1 = now_ns();
        for (int i = 0; i < BATCH; i++)
            bench_snprintf_line(buf, sizeof buf, &ctx, b * BATCH + i);
        int64_t t2 = now_ns();
        ours[b] = (double)(t1 - t0) / BATCH;
        plain[b] = (double)(t2 - t1) / BATCH;
        if ((b & 3) == 3)
            (void)o11y_logger_flush(lg, 10000); /* keep the queue from filling */
    }
    o11y_log_stats st;
    o11y_logger_stats(lg, &st);
    printf("log line (12 fields), caller's thread: o11y format+enqueue median %.0f ns,"
           " snprintf of the same line %.0f ns (ratio %.2f); dropped %llu\n",
           median_ns(ours, batches), median_ns(plain, batches),
           median_ns(ours, batches) / median_ns(plain, batches),
           (unsigned long long)st.lines_dropped);
    o11y_logger_destroy(lg);

    /* The writer: lines per second into a real file, three rounds, each on a fresh file. */
    double rates[3];
    for (int round = 0; round < 3; round++)
        rates[round] = writer_rate(&cfg, lines / 2, false);
    printf("writer into a file on the /tmp disk: %.2f, %.2f, %.2f M lines/s (median %.2f)\n",
           rates[0], rates[1], rates[2], median_ns(rates, 3));
    printf("writer into /dev/null (its own ceiling, no disk): %.2f M lines/s\n",
           writer_rate(&cfg, lines / 2, true));
    free(ours);
    free(plain);
    return 0;
}
