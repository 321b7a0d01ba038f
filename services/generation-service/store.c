/* store.c — SQLite storage: one connection per server thread (WAL lets readers run beside the
 * writer), prepared statements kept per connection, every write in a transaction. */
#include "store.h"

#include <o11y/trace.h>

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    BUSY_TIMEOUT_MS = 2000,
    MAX_CONNECTIONS = 256,
};

enum stmt_id {
    S_PROJECT_INSERT,
    S_PROJECT_GET,
    S_EPISODE_INSERT,
    S_EPISODE_LIST,
    S_EPISODE_COUNT,
    S_EPISODE_GET,
    S_EPISODE_UPDATE,
    S_EPISODE_DELETE,
    S_STATS,
    S_EPISODE_PROJECT,
    S_GEN_INSERT,
    S_GEN_SAVE,
    S_GEN_GET,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    N_STMTS
};

static const char *const stmt_sql[N_STMTS] = {
    [S_PROJECT_INSERT] = "INSERT INTO projects(id, name, created_at) VALUES (?1, ?2, ?3)",
    [S_PROJECT_GET] = "SELECT id, name, created_at FROM projects WHERE id = ?1",
    [S_EPISODE_INSERT] = "INSERT INTO episodes(id, project_id, number, title, content, created_at,"
                         " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    [S_EPISODE_LIST] = "SELECT id, project_id, number, title, CASE WHEN ?4 THEN content END,"
                       " created_at, updated_at, length(CAST(content AS BLOB))"
                       " FROM episodes WHERE project_id = ?1 AND number > ?2"
                       " ORDER BY number LIMIT ?3",
    [S_EPISODE_COUNT] = "SELECT count(*) FROM episodes WHERE project_id = ?1",
    [S_EPISODE_GET] = "SELECT id, project_id, number, title, content, created_at, updated_at"
                      " FROM episodes WHERE project_id = ?1 AND id = ?2",
    [S_EPISODE_UPDATE] = "UPDATE episodes SET number = coalesce(?3, number),"
                         " title = coalesce(?4, title),"
                         " content = CASE WHEN ?6 THEN ?5 ELSE content END, updated_at = ?7"
                         " WHERE project_id = ?1 AND id = ?2",
    [S_EPISODE_DELETE] = "DELETE FROM episodes WHERE project_id = ?1 AND id = ?2"
                         " RETURNING number",
    [S_STATS] = "SELECT substr(created_at, 1, 10) AS day, project_id, count(*) FROM episodes"
                " WHERE created_at >= date('now', ?1) GROUP BY day, project_id"
                " ORDER BY day, project_id",
    [S_EPISODE_PROJECT] = "SELECT project_id FROM episodes WHERE id = ?1",
    [S_GEN_INSERT] = "INSERT INTO generations(id, job_id, project_id, episode_id, model, prompt,"
                     " status, progress, current_step, created_at, updated_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    [S_GEN_SAVE] = "UPDATE generations SET status = ?2, progress = ?3, current_step = ?4,"
                   " output = ?5, total_tokens = ?6, error_code = ?7, error_message = ?8,"
                   " updated_at = ?9 WHERE id = ?1",
    [S_GEN_GET] = "SELECT id, job_id, project_id, episode_id, status, progress, current_step,"
                  " output, total_tokens, error_code, error_message, model, created_at,"
                  " updated_at FROM generations WHERE id = ?1",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS projects ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS episodes ("
    "  id TEXT PRIMARY KEY,"
    "  project_id TEXT NOT NULL REFERENCES projects(id),"
    "  number INTEGER NOT NULL, title TEXT NOT NULL, content TEXT,"
    "  created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
    "  UNIQUE (project_id, number));"
    "CREATE TABLE IF NOT EXISTS generations ("
    "  id TEXT PRIMARY KEY, job_id TEXT NOT NULL, project_id TEXT NOT NULL,"
    "  episode_id TEXT NOT NULL, model TEXT NOT NULL, prompt TEXT NOT NULL,"
    "  status TEXT NOT NULL, progress INTEGER NOT NULL, current_step TEXT NOT NULL,"
    "  output TEXT, total_tokens INTEGER, error_code TEXT, error_message TEXT,"
    "  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);";

typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[N_STMTS];
    char last_error[256];
} conn;

struct gs_store {
    char *path;
    int64_t max_bytes;
    dev_t dev; /* the database file we opened: a write goes nowhere else */
    ino_t ino;
    pthread_key_t key;
    pthread_mutex_t lock; /* guards conns */
    conn *conns[MAX_CONNECTIONS];
    size_t n_conns;
};

/*=== MARK: connections ===*/

static void conn_close(conn *c)
{
    for (int i = 0; i < N_STMTS; i++)
        sqlite3_finalize(c->stmts[i]);
    sqlite3_close(c->db);
    free(c);
}

static int apply_pragmas(sqlite3 *db, int64_t max_bytes)
{
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(db, 1); /* tells a UNIQUE failure from a foreign-key one */
    int rc = sqlite3_exec(db,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          " PRAGMA foreign_keys=ON;",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK && max_bytes > 0) {
        char sql[96];
        /* The page size is 4096 by default; the cap is in pages and applies per connection. */
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld",
                 (long long)(max_bytes / 4096 > 0 ? max_bytes / 4096 : 1));
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    return rc;
}

static conn *conn_open(gs_store *st, char *err, size_t err_len)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    /* No CREATE: the store made the file at open; a connection opened later must find that one,
     * never make a new empty database where the old one was removed. */
    int rc = sqlite3_open_v2(st->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = apply_pragmas(c->db, st->max_bytes);
    for (int i = 0; rc == SQLITE_OK && i < N_STMTS; i++)
        rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->stmts[i],
                                NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "%s", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        conn_close(c);
        return NULL;
    }
    return c;
}

/* SQLite maps the WAL index (-shm) of a new connection; when a file of the database cannot be
 * written (chattr +i, a read-only remount), that mapping has been seen to end in SIGBUS inside
 * SQLite instead of an error. The files are checked first, so the answer is an error. */
bool gs_db_files_writable(const char *path, char *err, size_t err_len)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char file[4200];
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        if (access(file, W_OK) != 0 && errno != ENOENT) {
            snprintf(err, err_len, "database file%s is not writable (errno %d)", suffixes[i],
                     errno);
            return false;
        }
    }
    return true;
}

/* The calling thread's connection, opened on first use. */
static conn *thread_conn(gs_store *st)
{
    conn *c = pthread_getspecific(st->key);
    if (c)
        return c;
    char err[256];
    if (!gs_db_files_writable(st->path, err, sizeof err))
        return NULL;
    c = conn_open(st, err, sizeof err);
    if (!c)
        return NULL;
    pthread_mutex_lock(&st->lock);
    bool room = st->n_conns < MAX_CONNECTIONS;
    if (room)
        st->conns[st->n_conns++] = c;
    pthread_mutex_unlock(&st->lock);
    if (!room) {
        conn_close(c);
        return NULL;
    }
    pthread_setspecific(st->key, c);
    return c;
}

gs_store *gs_store_open(const char *path, int64_t max_bytes, char *err, size_t err_len)
{
    gs_store *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    st->max_bytes = max_bytes;
    pthread_mutex_init(&st->lock, NULL);
    pthread_key_create(&st->key, NULL);
    if (!gs_db_files_writable(path, err, err_len)) {
        gs_store_close(st);
        return NULL;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK)
        rc = apply_pragmas(db, 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, schema, NULL, NULL, NULL);
    /* A job that was queued or running when the process ended will never finish: say so rather
     * than leave it "running" forever. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          "UPDATE generations SET status = 'failed', error_code = 'INTERRUPTED',"
                          " error_message = 'The service stopped before the generation finished',"
                          " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                          " WHERE status IN ('queued', 'running')",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        gs_store_close(st);
        return NULL;
    }
    sqlite3_close(db);
    struct stat opened;
    if (stat(path, &opened) != 0) {
        snprintf(err, err_len, "%s: cannot stat the database file", path);
        gs_store_close(st);
        return NULL;
    }
    st->dev = opened.st_dev;
    st->ino = opened.st_ino;
    return st;
}

void gs_store_close(gs_store *st)
{
    if (!st)
        return;
    char ignored[128];
    bool writable = gs_db_files_writable(st->path, ignored, sizeof ignored);
    for (size_t i = 0; i < st->n_conns; i++) {
        /* The checkpoint on close writes the WAL index: skip it when that would fault. */
        if (!writable && st->conns[i]->db)
            sqlite3_db_config(st->conns[i]->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        conn_close(st->conns[i]);
    }
    pthread_key_delete(st->key);
    pthread_mutex_destroy(&st->lock);
    free(st->path);
    free(st);
}

const char *gs_store_last_error(gs_store *st)
{
    conn *c = pthread_getspecific(st->key);
    return c ? c->last_error : "no connection";
}

/*=== MARK: helpers ===*/

static gs_result classify(conn *c, int rc)
{
    snprintf(c->last_error, sizeof c->last_error, "%s (%d)", sqlite3_errmsg(c->db), rc);
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE)
            return GS_CONFLICT;
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            return GS_NOT_FOUND;
        return GS_ERROR;
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
        return GS_UNAVAILABLE;
    default:
        return GS_ERROR;
    }
}

static sqlite3_stmt *stmt(conn *c, enum stmt_id id)
{
    sqlite3_stmt *s = c->stmts[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static void now_text(char out[64])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* Without accounts an id is what grants access to a resource (CONTRACT section 7): 128 bits
 * from the kernel's CSPRNG, not the fast generator behind trace ids. getrandom on a pool that
 * is initialised (any running system) does not block and returns the full 16 bytes. */
void gs_new_id(const char *prefix, char *out, size_t len)
{
    uint8_t bytes[16];
    size_t got = 0;
    while (got < sizeof bytes) {
        ssize_t r = getrandom(bytes + got, sizeof bytes - got, 0);
        if (r > 0)
            got += (size_t)r;
        else if (errno != EINTR)
            abort(); /* no kernel randomness: never hand out a guessable id */
    }
    static const char hex[] = "0123456789abcdef";
    size_t n = (size_t)snprintf(out, len, "%s", prefix);
    for (size_t i = 0; i < sizeof bytes && n + 2 < len; i++) {
        out[n++] = hex[bytes[i] >> 4];
        out[n++] = hex[bytes[i] & 15];
    }
    out[n] = '\0';
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

static json_t *project_json(sqlite3_stmt *s)
{
    return json_pack("{s:s,s:s,s:s}", "id", col_text(s, 0), "name", col_text(s, 1), "createdAt",
                     col_text(s, 2));
}

static json_t *episode_json(sqlite3_stmt *s)
{
    json_t *content =
        sqlite3_column_type(s, 4) == SQLITE_NULL ? json_null() : json_string(col_text(s, 4));
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:s,s:s}", "id", col_text(s, 0), "projectId",
                     col_text(s, 1), "number", (json_int_t)sqlite3_column_int64(s, 2), "title",
                     col_text(s, 3), "content", content, "createdAt", col_text(s, 5), "updatedAt",
                     col_text(s, 6));
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static gs_result project_exists(conn *c, const char *id)
{
    sqlite3_stmt *s = stmt(c, S_PROJECT_GET);
    bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    gs_result r = rc == SQLITE_ROW ? GS_OK : rc == SQLITE_DONE ? GS_NOT_FOUND : classify(c, rc);
    sqlite3_reset(s);
    return r;
}

static int exec_stmt(conn *c, enum stmt_id id)
{
    sqlite3_stmt *s = stmt(c, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The connection for a write, once the database file is known to be the one opened: a file
 * unlinked underneath us (its folder removed) would take writes that vanish at the next
 * start, so they are refused (503) instead of answered 201. */
static conn *usable_conn(gs_store *st);

static conn *write_conn(gs_store *st)
{
    conn *c = usable_conn(st);
    if (!c)
        return NULL;
    if (!gs_store_file_intact(st)) {
        snprintf(c->last_error, sizeof c->last_error, "the database file is gone");
        return NULL;
    }
    return c;
}

/* The connection for any statement. Every transaction, reads included, writes to the mapped
 * WAL index; once that file cannot be written the next page fault is SIGBUS, so it is checked
 * first (one access(2), about a microsecond). A file made read-only between the check and the
 * statement can still fault: README, Known limits. */
static conn *usable_conn(gs_store *st)
{
    conn *c = thread_conn(st);
    if (!c)
        return NULL;
    if (!gs_db_files_writable(st->path, c->last_error, sizeof c->last_error))
        return NULL;
    return c;
}

o11y_health_status gs_store_health(void *ctx, char *message, size_t len)
{
    gs_store *st = ctx;
    if (!gs_store_file_intact(st)) {
        snprintf(message, len, "the database file is gone");
        return O11Y_HEALTH_UNHEALTHY;
    }
    char why[128];
    if (!gs_db_files_writable(st->path, why, sizeof why)) {
        snprintf(message, len, "%s", why);
        return O11Y_HEALTH_UNHEALTHY;
    }
    conn *c = thread_conn(st);
    int rc = c ? sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL)
               : SQLITE_CANTOPEN;
    if (rc == SQLITE_OK)
        return O11Y_HEALTH_HEALTHY;
    /* The code's generic text: no path, no SQL. */
    snprintf(message, len, "database unavailable: %s", sqlite3_errstr(rc));
    return O11Y_HEALTH_UNHEALTHY;
}

bool gs_store_file_intact(gs_store *st)
{
    struct stat now;
    return stat(st->path, &now) == 0 && now.st_nlink > 0 && now.st_dev == st->dev &&
           now.st_ino == st->ino;
}

/*=== MARK: projects ===*/

gs_result gs_project_create(gs_store *st, const char *name, json_t **out)
{
    conn *c = write_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    char id[48], now[64];
    gs_new_id("proj_", id, sizeof id);
    now_text(now);
    sqlite3_stmt *s = stmt(c, S_PROJECT_INSERT);
    bind_text(s, 1, id);
    bind_text(s, 2, name);
    bind_text(s, 3, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return classify(c, rc);
    *out = json_pack("{s:s,s:s,s:s}", "id", id, "name", name, "createdAt", now);
    return *out ? GS_OK : GS_ERROR;
}

gs_result gs_project_get(gs_store *st, const char *id, json_t **out)
{
    conn *c = usable_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    sqlite3_stmt *s = stmt(c, S_PROJECT_GET);
    bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    gs_result r = GS_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        *out = project_json(s);
        r = *out ? GS_OK : GS_ERROR;
    } else if (rc != SQLITE_DONE) {
        r = classify(c, rc);
    }
    sqlite3_reset(s);
    return r;
}

/*=== MARK: episodes ===*/

gs_result gs_episode_create(gs_store *st, const char *project_id, int64_t number, const char *title,
                            const char *content, json_t **out)
{
    conn *c = write_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    char id[48], now[64];
    gs_new_id("ep_", id, sizeof id);
    now_text(now);
    /* The foreign key makes a missing project fail the insert; no separate read is needed. */
    sqlite3_stmt *s = stmt(c, S_EPISODE_INSERT);
    bind_text(s, 1, id);
    bind_text(s, 2, project_id);
    sqlite3_bind_int64(s, 3, number);
    bind_text(s, 4, title);
    bind_text(s, 5, content);
    bind_text(s, 6, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return classify(c, rc);
    *out =
        json_pack("{s:s,s:s,s:I,s:s,s:o,s:s,s:s}", "id", id, "projectId", project_id, "number",
                  (json_int_t)number, "title", title, "content",
                  content ? json_string(content) : json_null(), "createdAt", now, "updatedAt", now);
    return *out ? GS_OK : GS_ERROR;
}

gs_result gs_episode_list(gs_store *st, const char *project_id, const gs_episode_page *page,
                          json_t **items, int64_t *total, int64_t *next)
{
    conn *c = usable_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    gs_result r = project_exists(c, project_id);
    if (r != GS_OK)
        return r;
    sqlite3_stmt *s = stmt(c, S_EPISODE_COUNT);
    bind_text(s, 1, project_id);
    int rc = sqlite3_step(s);
    *total = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return classify(c, rc);
    json_t *list = json_array();
    s = stmt(c, S_EPISODE_LIST);
    bind_text(s, 1, project_id);
    sqlite3_bind_int64(s, 2, page->after);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)page->limit + 1); /* one more: are there more? */
    sqlite3_bind_int(s, 4, page->with_content);
    *next = -1;
    size_t bytes = 0, n = 0;
    int64_t last = page->after;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == page->limit) {
            *next = last;
            break;
        }
        json_t *e = episode_json(s);
        if (!page->with_content) {
            json_object_del(e, "content");
            json_object_set_new(e, "contentLength",
                                json_integer((json_int_t)sqlite3_column_int64(s, 7)));
        }
        /* The item as it will be written, escapes included: a page never passes max_bytes,
         * but holds at least one item. */
        size_t len = json_dumpb(e, NULL, 0, JSON_COMPACT) + 1;
        if (n && bytes + len > page->max_bytes) {
            json_decref(e);
            *next = last;
            break;
        }
        json_array_append_new(list, e);
        bytes += len;
        last = sqlite3_column_int64(s, 2);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        json_decref(list);
        return classify(c, rc);
    }
    *items = list;
    return GS_OK;
}

static gs_result episode_get(conn *c, const char *project_id, const char *episode_id, json_t **out,
                             bool *project_missing)
{
    sqlite3_stmt *s = stmt(c, S_EPISODE_GET);
    bind_text(s, 1, project_id);
    bind_text(s, 2, episode_id);
    int rc = sqlite3_step(s);
    gs_result r;
    if (rc == SQLITE_ROW) {
        *out = episode_json(s);
        r = *out ? GS_OK : GS_ERROR;
    } else {
        r = rc == SQLITE_DONE ? GS_NOT_FOUND : classify(c, rc);
    }
    sqlite3_reset(s);
    if (r == GS_NOT_FOUND)
        *project_missing = project_exists(c, project_id) == GS_NOT_FOUND;
    return r;
}

gs_result gs_episode_get(gs_store *st, const char *project_id, const char *episode_id, json_t **out,
                         bool *project_missing)
{
    conn *c = usable_conn(st);
    *project_missing = false;
    if (!c)
        return GS_UNAVAILABLE;
    return episode_get(c, project_id, episode_id, out, project_missing);
}

gs_result gs_episode_update(gs_store *st, const char *project_id, const char *episode_id,
                            const gs_episode_patch *p, json_t **out, bool *project_missing)
{
    conn *c = write_conn(st);
    *project_missing = false;
    if (!c)
        return GS_UNAVAILABLE;
    char now[64];
    now_text(now);
    int rc = exec_stmt(c, S_BEGIN);
    if (rc != SQLITE_OK)
        return classify(c, rc);
    sqlite3_stmt *s = stmt(c, S_EPISODE_UPDATE);
    bind_text(s, 1, project_id);
    bind_text(s, 2, episode_id);
    if (p->has_number)
        sqlite3_bind_int64(s, 3, p->number);
    bind_text(s, 4, p->has_title ? p->title : NULL);
    bind_text(s, 5, p->has_content ? p->content : NULL);
    sqlite3_bind_int(s, 6, p->has_content);
    bind_text(s, 7, now);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    gs_result r = rc == SQLITE_DONE ? GS_OK : classify(c, rc);
    if (r == GS_OK && sqlite3_changes(c->db) == 0)
        r = GS_NOT_FOUND;
    if (r == GS_OK)
        r = episode_get(c, project_id, episode_id, out, project_missing);
    if (r == GS_OK) {
        rc = exec_stmt(c, S_COMMIT);
        if (rc != SQLITE_OK) {
            json_decref(*out);
            *out = NULL;
            r = classify(c, rc);
        }
    }
    if (r != GS_OK) {
        exec_stmt(c, S_ROLLBACK);
        if (r == GS_NOT_FOUND)
            *project_missing = project_exists(c, project_id) == GS_NOT_FOUND;
    }
    return r;
}

gs_result gs_episode_delete(gs_store *st, const char *project_id, const char *episode_id,
                            int64_t *number, bool *project_missing)
{
    conn *c = write_conn(st);
    *project_missing = false;
    if (!c)
        return GS_UNAVAILABLE;
    sqlite3_stmt *s = stmt(c, S_EPISODE_DELETE);
    bind_text(s, 1, project_id);
    bind_text(s, 2, episode_id);
    int rc = sqlite3_step(s);
    gs_result r;
    if (rc == SQLITE_ROW) {
        *number = sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
        r = rc == SQLITE_DONE ? GS_OK : classify(c, rc);
    } else {
        r = rc == SQLITE_DONE ? GS_NOT_FOUND : classify(c, rc);
    }
    sqlite3_reset(s);
    if (r == GS_NOT_FOUND)
        *project_missing = project_exists(c, project_id) == GS_NOT_FOUND;
    return r;
}

/*=== MARK: statistics ===*/

/* Adds n to the entry of arr whose key member equals value, or appends one. */
static void tally(json_t *arr, const char *key, const char *value, json_int_t n)
{
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, key)), value) == 0) {
            json_t *c = json_object_get(o, "count");
            json_integer_set(c, json_integer_value(c) + n);
            return;
        }
    }
    json_array_append_new(arr, json_pack("{s:s,s:I}", key, value, "count", n));
}

gs_result gs_episode_stats(gs_store *st, int days, json_t **out)
{
    conn *c = usable_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    char modifier[32];
    snprintf(modifier, sizeof modifier, "-%d days", days - 1);
    sqlite3_stmt *s = stmt(c, S_STATS);
    bind_text(s, 1, modifier);
    json_t *by_day = json_array(), *by_project = json_array(), *both = json_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *day = col_text(s, 0), *project = col_text(s, 1);
        json_int_t n = (json_int_t)sqlite3_column_int64(s, 2);
        json_array_append_new(
            both, json_pack("{s:s,s:s,s:I}", "date", day, "projectId", project, "count", n));
        tally(by_day, "date", day, n);
        tally(by_project, "projectId", project, n);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        json_decref(by_day);
        json_decref(by_project);
        json_decref(both);
        return classify(c, rc);
    }
    char from[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t start = ts.tv_sec - (time_t)(days - 1) * 86400;
    struct tm tm;
    gmtime_r(&start, &tm);
    snprintf(from, sizeof from, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    *out = json_pack("{s:i,s:s,s:o,s:o,s:o}", "days", days, "from", from, "byDay", by_day,
                     "byProject", by_project, "byDayAndProject", both);
    return *out ? GS_OK : GS_ERROR;
}

/*=== MARK: generations ===*/

gs_result gs_episode_project(gs_store *st, const char *episode_id, char *project_of, size_t len)
{
    conn *c = usable_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    sqlite3_stmt *s = stmt(c, S_EPISODE_PROJECT);
    bind_text(s, 1, episode_id);
    int rc = sqlite3_step(s);
    gs_result r = rc == SQLITE_ROW ? GS_OK : rc == SQLITE_DONE ? GS_NOT_FOUND : classify(c, rc);
    if (r == GS_OK)
        snprintf(project_of, len, "%s", col_text(s, 0));
    sqlite3_reset(s);
    return r;
}

gs_result gs_generation_insert(gs_store *st, const gs_generation *g)
{
    conn *c = write_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    char now[64];
    now_text(now);
    sqlite3_stmt *s = stmt(c, S_GEN_INSERT);
    bind_text(s, 1, g->id);
    bind_text(s, 2, g->job_id);
    bind_text(s, 3, g->project_id);
    bind_text(s, 4, g->episode_id);
    bind_text(s, 5, g->model);
    bind_text(s, 6, g->prompt);
    bind_text(s, 7, g->status);
    sqlite3_bind_int(s, 8, g->progress);
    bind_text(s, 9, g->step);
    bind_text(s, 10, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? GS_OK : classify(c, rc);
}

gs_result gs_generation_save(gs_store *st, const gs_generation *g)
{
    conn *c = write_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    char now[64];
    now_text(now);
    sqlite3_stmt *s = stmt(c, S_GEN_SAVE);
    bind_text(s, 1, g->id);
    bind_text(s, 2, g->status);
    sqlite3_bind_int(s, 3, g->progress);
    bind_text(s, 4, g->step);
    bind_text(s, 5, g->output);
    sqlite3_bind_int64(s, 6, g->total_tokens);
    bind_text(s, 7, g->error_code[0] ? g->error_code : NULL);
    bind_text(s, 8, g->error_message[0] ? g->error_message : NULL);
    bind_text(s, 9, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? GS_OK : classify(c, rc);
}

gs_result gs_generation_get(gs_store *st, const char *id, json_t **out)
{
    conn *c = usable_conn(st);
    if (!c)
        return GS_UNAVAILABLE;
    sqlite3_stmt *s = stmt(c, S_GEN_GET);
    bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    gs_result r = rc == SQLITE_ROW ? GS_OK : rc == SQLITE_DONE ? GS_NOT_FOUND : classify(c, rc);
    if (r == GS_OK) {
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s}", "id", col_text(s, 0), "jobId",
            col_text(s, 1), "projectId", col_text(s, 2), "episodeId", col_text(s, 3), "status",
            col_text(s, 4), "progress", sqlite3_column_int(s, 5), "currentStep", col_text(s, 6),
            "model", col_text(s, 11), "createdAt", col_text(s, 12), "updatedAt", col_text(s, 13));
        if (o && sqlite3_column_type(s, 7) != SQLITE_NULL)
            json_object_set_new(o, "output", json_string(col_text(s, 7)));
        if (o && sqlite3_column_type(s, 8) != SQLITE_NULL)
            json_object_set_new(o, "totalTokens", json_integer(sqlite3_column_int64(s, 8)));
        if (o && sqlite3_column_type(s, 9) != SQLITE_NULL)
            json_object_set_new(
                o, "error",
                json_pack("{s:s,s:s}", "code", col_text(s, 9), "message", col_text(s, 10)));
        *out = o;
        r = o ? GS_OK : GS_ERROR;
    }
    sqlite3_reset(s);
    return r;
}
