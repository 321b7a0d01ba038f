/* scan.h — reading log files at disk speed: plain or gzip, files or directories, each line that
 * holds a needle handed to a callback. */
#ifndef OTRACE_SCAN_H
#define OTRACE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called with each complete line (no newline) that contains the needle. */
typedef void (*scan_line_fn)(const char *line, size_t len, void *ctx);

typedef struct scan_stats {
    uint64_t bytes, files, long_lines; /* long_lines: over the line limit, skipped */
} scan_stats;

/* Where a followed file has been read to. */
typedef struct scan_cursor {
    char *path;
    uint64_t offset; /* of the first byte not yet handed out (the start of a partial line) */
} scan_cursor;

/* Scans every path (a file, a .gz file, or a directory, walked in name order) for needle.
 * Returns false and says why on stderr when a path cannot be read. When cursors is not NULL,
 * the plain files scanned are appended to it (*n_cursors grows) for scan_follow. */
bool scan_paths(char **paths, size_t n_paths, const char *needle, scan_line_fn fn, void *ctx,
                scan_stats *stats, scan_cursor **cursors, size_t *n_cursors);

/* Reads what was appended to each cursor's file since, handing complete lines to fn. A file
 * that shrank (rotated, truncated) is read again from its start. */
void scan_follow(scan_cursor *cursors, size_t n, const char *needle, scan_line_fn fn, void *ctx);

#endif
