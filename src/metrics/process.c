/* metrics/process.c — the standard process_* metrics, read from /proc at each scrape. */
#include "metrics/api.h"
#include "metrics/metrics_internal.h"
#include "o11y/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct proc_stat {
    double utime, stime, start_ticks, vsize, rss_pages, threads;
} proc_stat;

/* Fields of /proc/self/stat after the command name (which may hold spaces and parentheses). */
static bool read_stat(proc_stat *ps)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    /* state(3) ... utime(14) stime(15) ... num_threads(20) ... starttime(22) vsize(23) rss(24) */
    unsigned long long v[24] = {0};
    int field = 3;
    char *tok = p + 2;
    while (field <= 24 && *tok) {
        char *end;
        v[field - 1] = strtoull(tok, &end, 10);
        if (end == tok) /* the state letter */
            end = tok + 1;
        tok = end;
        while (*tok == ' ')
            tok++;
        field++;
    }
    ps->utime = (double)v[13];
    ps->stime = (double)v[14];
    ps->threads = (double)v[19];
    ps->start_ticks = (double)v[21];
    ps->vsize = (double)v[22];
    ps->rss_pages = (double)v[23];
    return true;
}

static double cpu_seconds(void *ctx)
{
    (void)ctx;
    proc_stat ps;
    return read_stat(&ps) ? (ps.utime + ps.stime) / (double)sysconf(_SC_CLK_TCK) : 0;
}

static double resident_bytes(void *ctx)
{
    (void)ctx;
    proc_stat ps;
    return read_stat(&ps) ? ps.rss_pages * (double)sysconf(_SC_PAGESIZE) : 0;
}

static double virtual_bytes(void *ctx)
{
    (void)ctx;
    proc_stat ps;
    return read_stat(&ps) ? ps.vsize : 0;
}

static double threads(void *ctx)
{
    (void)ctx;
    proc_stat ps;
    return read_stat(&ps) ? ps.threads : 0;
}

static double open_fds(void *ctx)
{
    (void)ctx;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the descriptor opendir itself holds */
}

static double max_fds(void *ctx)
{
    (void)ctx;
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : 0;
}

static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    double t = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0)
            t = strtod(line + 6, NULL);
    if (f)
        fclose(f);
    return t;
}

static double start_time(void *ctx)
{
    (void)ctx;
    proc_stat ps;
    return read_stat(&ps) ? boot_time() + ps.start_ticks / (double)sysconf(_SC_CLK_TCK) : 0;
}

o11y_status o11y__metrics_register_process(o11y_metrics *m)
{
    static const struct {
        const char *name, *help;
        o11y_metric_type type;
        o11y_metric_value_fn fn;
    } defs[] = {
        {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
         O11Y_COUNTER, cpu_seconds},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", O11Y_GAUGE,
         resident_bytes},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", O11Y_GAUGE,
         virtual_bytes},
        {"process_open_fds", "Number of open file descriptors.", O11Y_GAUGE, open_fds},
        {"process_max_fds", "Maximum number of open file descriptors.", O11Y_GAUGE, max_fds},
        {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
         O11Y_GAUGE, start_time},
        {"process_threads", "Number of OS threads in the process.", O11Y_GAUGE, threads},
    };
    for (size_t i = 0; i < O11Y_ARRAY_LEN(defs); i++) {
        o11y_status st =
            o11y_metric_register_fn(m, defs[i].name, defs[i].help, defs[i].type, defs[i].fn, NULL);
        if (st != O11Y_OK && st != O11Y_ECONFLICT)
            return st;
    }
    return O11Y_OK;
}
