/* backends/sqlite/check.c — the SQLite health check (libo11y-sqlite): a query on the database,
 * read-only, interrupted at its deadline by SQLite's progress handler. */
#include "o11y/sqlite.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct sqlite_check {
    unsigned timeout_ms;
    char path[];
} sqlite_check;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct deadline {
    int64_t at_ns;
} deadline;

static int past_deadline(void *arg)
{
    return now_ns() > ((deadline *)arg)->at_ns; /* non-zero interrupts the query */
}

static o11y_health_status run_sqlite(void *ctx, char *error, size_t len)
{
    sqlite_check *c = ctx;
    /* A WAL index (-shm) that exists but cannot be written (chattr +i, a read-only remount) has
     * been seen to make SQLite's new connection die with SIGBUS on its mapping: say unhealthy
     * instead of opening it. */
    char shm[4200];
    snprintf(shm, sizeof shm, "%s-shm", c->path);
    if (access(shm, W_OK) != 0 && errno != ENOENT) {
        snprintf(error, len, "database unavailable: its WAL index is not writable");
        return O11Y_HEALTH_UNHEALTHY;
    }
    sqlite3 *db = NULL;
    deadline d = {now_ns() + (int64_t)c->timeout_ms * 1000000};
    int rc = sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, (int)c->timeout_ms);
        sqlite3_progress_handler(db, 100, past_deadline, &d);
        rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    }
    sqlite3_close(db);
    if (rc == SQLITE_OK)
        return O11Y_HEALTH_HEALTHY;
    /* sqlite3_errstr is the code's generic text: no path, no SQL. */
    if (rc == SQLITE_INTERRUPT || rc == SQLITE_BUSY)
        snprintf(error, len, "timeout");
    else
        snprintf(error, len, "database unavailable: %s", sqlite3_errstr(rc));
    return O11Y_HEALTH_UNHEALTHY;
}

o11y_status o11y_health_add_sqlite(o11y_health *h, const o11y_health_check_opts *opts,
                                   const char *path)
{
    if (!h || !opts || !path)
        return O11Y_EINVAL;
    size_t len = strlen(path);
    if (len > 4096)
        return O11Y_EINVAL;
    sqlite_check *c = malloc(sizeof *c + len + 1);
    if (!c)
        return O11Y_ENOMEM;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : O11Y_HEALTH_DEFAULT_TIMEOUT_MS;
    memcpy(c->path, path, len + 1);
    o11y_status st = o11y_health_add_custom_owned(h, opts, run_sqlite, c, free);
    if (st != O11Y_OK)
        free(c);
    return st;
}
