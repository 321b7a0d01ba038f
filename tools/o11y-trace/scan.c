/* scan.c — the fast path of o11y-trace. A file is read in 4 MiB blocks; memmem finds the needle
 * (the id, in quotes) in the block, and only the line around each hit is looked at, so a
 * gigabyte in which a trace holds a hundred lines costs a hundred JSON parses, not millions.
 * gzip files are read through zlib's gzread, which gives the same blocks. */
#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

enum { BLOCK = 4 << 20, LINE_LIMIT = 1 << 20 };

typedef struct reader {
    int fd;
    gzFile gz;
} reader;

static ssize_t read_some(reader *r, char *buf, size_t n)
{
    if (r->gz) {
        int got = gzread(r->gz, buf, (unsigned)n);
        return got;
    }
    for (;;) {
        ssize_t got = read(r->fd, buf, n);
        if (got >= 0 || errno != EINTR)
            return got;
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Hands out the lines of buf[0, len) that hold the needle; returns how many bytes were whole
 * lines (the rest is a partial line to keep for the next block). */
static size_t scan_block(const char *buf, size_t len, const char *needle, size_t needle_len,
                         scan_line_fn fn, void *ctx, scan_stats *stats)
{
    const char *end = buf + len;
    const char *last_nl = memrchr(buf, '\n', len);
    if (!last_nl)
        return 0;
    const char *whole_end = last_nl + 1;
    const char *p = buf;
    while (p < whole_end) {
        const char *hit = memmem(p, (size_t)(whole_end - p), needle, needle_len);
        if (!hit)
            break;
        const char *start = hit;
        while (start > buf && start[-1] != '\n')
            start--;
        const char *nl = memchr(hit, '\n', (size_t)(end - hit));
        if ((size_t)(nl - start) > LINE_LIMIT)
            stats->long_lines++; /* a line this long is no log line of ours */
        else
            fn(start, (size_t)(nl - start), ctx);
        p = nl + 1;
    }
    return (size_t)(whole_end - buf);
}

/* Scans one stream from where it stands; returns the bytes consumed as whole lines, or -1. */
static int64_t scan_stream(reader *r, const char *needle, scan_line_fn fn, void *ctx,
                           scan_stats *stats)
{
    size_t needle_len = strlen(needle);
    char *buf = malloc(BLOCK + 1);
    if (!buf)
        return -1;
    size_t have = 0;
    bool skipping = false; /* inside a line over the limit: drop bytes up to its end */
    int64_t consumed = 0;
    for (;;) {
        ssize_t got = read_some(r, buf + have, BLOCK - have);
        if (got < 0) {
            free(buf);
            return -1;
        }
        if (got == 0) {
            int zerr = Z_OK;
            if (r->gz)
                gzerror(r->gz, &zerr);
            if (zerr != Z_OK) { /* damaged or cut short (Z_BUF_ERROR) */
                free(buf);
                return -1;
            }
            break;
        }
        stats->bytes += (uint64_t)got;
        have += (size_t)got;
        size_t from = 0;
        if (skipping) {
            const char *nl = memchr(buf, '\n', have);
            if (!nl) {
                consumed += (int64_t)have;
                have = 0;
                continue;
            }
            from = (size_t)(nl - buf) + 1;
            skipping = false;
        }
        size_t used =
            from + scan_block(buf + from, have - from, needle, needle_len, fn, ctx, stats);
        consumed += (int64_t)used;
        memmove(buf, buf + used, have - used);
        have -= used;
        if (have > LINE_LIMIT) { /* the start of a line over the limit: skip to its end */
            stats->long_lines++;
            consumed += (int64_t)have;
            have = 0;
            skipping = true;
        }
    }
    free(buf);
    return consumed;
}

static bool scan_file(const char *path, const char *needle, scan_line_fn fn, void *ctx,
                      scan_stats *stats, scan_cursor **cursors, size_t *n_cursors)
{
    reader r = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    if (r.fd < 0) {
        fprintf(stderr, "o11y-trace: %s: %s\n", path, strerror(errno));
        return false;
    }
    bool gz = ends_with(path, ".gz");
    if (gz && !(r.gz = gzdopen(r.fd, "rb"))) {
        close(r.fd);
        fprintf(stderr, "o11y-trace: %s: cannot read as gzip\n", path);
        return false;
    }
    if (gz)
        gzbuffer(r.gz, 1 << 20);
    else
        posix_fadvise(r.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    stats->files++;
    int64_t consumed = scan_stream(&r, needle, fn, ctx, stats);
    if (r.gz)
        gzclose(r.gz); /* closes the descriptor too */
    else
        close(r.fd);
    if (consumed < 0) {
        fprintf(stderr, "o11y-trace: %s: read failed%s\n", path, gz ? " (a damaged gzip?)" : "");
        return false;
    }
    if (cursors && !gz) {
        scan_cursor *grown = realloc(*cursors, (*n_cursors + 1) * sizeof **cursors);
        char *copy = strdup(path);
        if (!grown || !copy) {
            free(copy);
            if (grown)
                *cursors = grown;
            return false;
        }
        *cursors = grown;
        grown[(*n_cursors)++] = (scan_cursor){copy, (uint64_t)consumed};
    }
    return true;
}

/* Rotation order (logrotate's names): service.log.2.gz, service.log.1, service.log: oldest
 * first, so lines of one millisecond are read in the order they were written. */
static void rotation(const char *name, size_t *base_len, long *generation)
{
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".gz") == 0)
        n -= 3;
    size_t digits = 0;
    while (digits < n && name[n - 1 - digits] >= '0' && name[n - 1 - digits] <= '9')
        digits++;
    *generation = -1; /* the live file: newest */
    if (digits && digits < 9 && digits < n && name[n - 1 - digits] == '.') {
        *generation = strtol(name + n - digits, NULL, 10);
        n -= digits + 1;
    }
    *base_len = n;
}

static int by_name(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t xn, yn;
    long xg, yg;
    rotation(x, &xn, &xg);
    rotation(y, &yn, &yg);
    int c = memcmp(x, y, xn < yn ? xn : yn);
    if (c || xn != yn)
        return c ? c : (xn < yn ? -1 : 1);
    if (xg != yg)
        return xg > yg ? -1 : 1; /* a higher generation is older */
    return strcmp(x, y);
}

static bool scan_path(const char *path, const char *needle, scan_line_fn fn, void *ctx,
                      scan_stats *stats, scan_cursor **cursors, size_t *n_cursors, int depth)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "o11y-trace: %s: %s\n", path, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode))
        return scan_file(path, needle, fn, ctx, stats, cursors, n_cursors);
    if (depth > 8)
        return true;
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "o11y-trace: %s: %s\n", path, strerror(errno));
        return false;
    }
    char **names = NULL;
    size_t n = 0;
    bool ok = true;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ., .., hidden files */
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown) {
            ok = false;
            break;
        }
        names = grown;
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) {
            ok = false;
            break;
        }
        snprintf(names[n++], len, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat sub;
        if (ok && stat(names[i], &sub) == 0 && (S_ISREG(sub.st_mode) || S_ISDIR(sub.st_mode)))
            ok = scan_path(names[i], needle, fn, ctx, stats, cursors, n_cursors, depth + 1) && ok;
        free(names[i]);
    }
    free(names);
    return ok;
}

bool scan_paths(char **paths, size_t n_paths, const char *needle, scan_line_fn fn, void *ctx,
                scan_stats *stats, scan_cursor **cursors, size_t *n_cursors)
{
    bool ok = true;
    for (size_t i = 0; i < n_paths; i++)
        ok = scan_path(paths[i], needle, fn, ctx, stats, cursors, n_cursors, 0) && ok;
    return ok;
}

void scan_follow(scan_cursor *cursors, size_t n, const char *needle, scan_line_fn fn, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        reader r = {.fd = open(cursors[i].path, O_RDONLY | O_CLOEXEC)};
        if (r.fd < 0)
            continue; /* rotated away for now */
        struct stat st;
        if (fstat(r.fd, &st) == 0 && (uint64_t)st.st_size < cursors[i].offset)
            cursors[i].offset = 0; /* truncated or replaced: from its start */
        if (lseek(r.fd, (off_t)cursors[i].offset, SEEK_SET) >= 0) {
            scan_stats ignored = {0};
            int64_t used = scan_stream(&r, needle, fn, ctx, &ignored);
            if (used > 0)
                cursors[i].offset += (uint64_t)used;
        }
        close(r.fd);
    }
}
