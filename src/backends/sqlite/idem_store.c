/* backends/sqlite/idem_store.c — the SQLite idempotency store (libo11y-sqlite): one row per
 * key, durable across restarts (WAL). One connection under a mutex: each operation is one short
 * transaction. Built on the public store interface only (o11y/idempotency.h). */
#include "o11y/sqlite.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PURGE_EVERY = 64, PURGE_BATCH = 100, BUSY_MS = 1000 };

enum stmt { S_GET, S_LOCK, S_COMPLETE, S_RELEASE, S_PURGE, S_BEGIN, S_COMMIT, S_ROLLBACK, N_STMT };

static const char *const sql[N_STMT] = {
    [S_GET] = "SELECT fp, completed, expires_ms, response FROM o11y_idempotency WHERE key = ?1",
    [S_LOCK] = "INSERT OR REPLACE INTO o11y_idempotency(key, fp, completed, token, expires_ms,"
               " response) VALUES (?1, ?2, 0, ?3, ?4, NULL)",
    [S_COMPLETE] = "UPDATE o11y_idempotency SET completed = 1, response = ?3, expires_ms = ?4"
                   " WHERE key = ?1 AND token = ?2 AND completed = 0",
    [S_RELEASE] = "DELETE FROM o11y_idempotency WHERE key = ?1 AND token = ?2 AND completed = 0",
    [S_PURGE] = "DELETE FROM o11y_idempotency WHERE rowid IN (SELECT rowid FROM"
                " o11y_idempotency WHERE expires_ms <= ?1 LIMIT 100)",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

typedef struct sql_store {
    o11y_idem_store *store; /* for its error slot */
    pthread_mutex_t lock;
    char shm_path[4200]; /* the WAL index: checked before each transaction */
    sqlite3 *db;
    sqlite3_stmt *st[N_STMT];
    unsigned ops_since_purge;
} sql_store;

static sqlite3_stmt *prep(sql_store *q, enum stmt i)
{
    sqlite3_reset(q->st[i]);
    sqlite3_clear_bindings(q->st[i]);
    return q->st[i];
}

static int step_done(sql_store *q, enum stmt i)
{
    int rc = sqlite3_step(q->st[i]);
    sqlite3_reset(q->st[i]);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void fail(sql_store *q, int rc)
{
    o11y_idem_store_set_error(q->store, "sqlite: %s (%d)", sqlite3_errmsg(q->db), rc);
}

/* Drops up to a hundred expired rows now and then, never the whole table at once. */
static void purge(sql_store *q, int64_t now)
{
    if (++q->ops_since_purge < PURGE_EVERY)
        return;
    q->ops_since_purge = 0;
    sqlite3_bind_int64(prep(q, S_PURGE), 1, now);
    step_done(q, S_PURGE);
}

/* Every transaction writes to the mapped WAL index; once that file cannot be written (chattr
 * +i, a read-only remount) the next page fault is SIGBUS, not an error, so it is checked
 * first. */
static bool wal_index_writable(sql_store *q)
{
    if (access(q->shm_path, W_OK) == 0 || errno == ENOENT)
        return true;
    o11y_idem_store_set_error(q->store, "sqlite: the WAL index is not writable");
    return false;
}

static o11y_idem_result sql_begin(void *impl, const o11y_idem_key *k,
                                  const uint8_t fp[O11Y_IDEM_FP_BYTES], int64_t now,
                                  int64_t lease_ms, uint64_t *token, char **blob, size_t *blob_len)
{
    sql_store *q = impl;
    o11y_idem_result r = O11Y_IDEM_STORE_ERROR;
    if (!wal_index_writable(q))
        return r;
    pthread_mutex_lock(&q->lock);
    int rc = step_done(q, S_BEGIN);
    if (rc != SQLITE_OK) {
        fail(q, rc);
        pthread_mutex_unlock(&q->lock);
        return r;
    }
    sqlite3_stmt *g = prep(q, S_GET);
    sqlite3_bind_text(g, 1, k->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(g);
    bool live = rc == SQLITE_ROW && sqlite3_column_int64(g, 2) > now;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fail(q, rc);
    } else if (live && (sqlite3_column_bytes(g, 0) != O11Y_IDEM_FP_BYTES ||
                        memcmp(sqlite3_column_blob(g, 0), fp, O11Y_IDEM_FP_BYTES) != 0)) {
        r = O11Y_IDEM_REUSED;
    } else if (live && !sqlite3_column_int(g, 1)) {
        r = O11Y_IDEM_IN_USE;
    } else if (live) {
        size_t n = (size_t)sqlite3_column_bytes(g, 3);
        *blob = malloc(n ? n : 1);
        if (*blob) {
            memcpy(*blob, sqlite3_column_blob(g, 3), n);
            *blob_len = n;
            r = O11Y_IDEM_REPLAY;
        }
    } else { /* absent, or its TTL or lease has passed: ours now */
        sqlite3_reset(g);
        sqlite3_stmt *l = prep(q, S_LOCK);
        *token = o11y_idem_token();
        sqlite3_bind_text(l, 1, k->id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(l, 2, fp, O11Y_IDEM_FP_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(l, 3, (sqlite3_int64)*token);
        sqlite3_bind_int64(l, 4, now + lease_ms);
        rc = step_done(q, S_LOCK);
        if (rc == SQLITE_OK)
            r = O11Y_IDEM_NEW;
        else
            fail(q, rc);
    }
    sqlite3_reset(g);
    if (r == O11Y_IDEM_NEW)
        purge(q, now);
    rc = step_done(q, r == O11Y_IDEM_STORE_ERROR ? S_ROLLBACK : S_COMMIT);
    if (rc != SQLITE_OK && r != O11Y_IDEM_STORE_ERROR) {
        fail(q, rc);
        step_done(q, S_ROLLBACK);
        if (r == O11Y_IDEM_REPLAY)
            free(*blob);
        r = O11Y_IDEM_STORE_ERROR;
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

static o11y_idem_stored sql_complete(void *impl, const o11y_idem_key *k, uint64_t token,
                                     const uint8_t fp[O11Y_IDEM_FP_BYTES], const char *blob,
                                     size_t blob_len, int64_t now, int64_t expires_ms)
{
    (void)fp, (void)now;
    sql_store *q = impl;
    if (!wal_index_writable(q))
        return O11Y_IDEM_NOT_STORED;
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *c = prep(q, S_COMPLETE);
    sqlite3_bind_text(c, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(c, 2, (sqlite3_int64)token);
    sqlite3_bind_blob(c, 3, blob, (int)blob_len, SQLITE_STATIC);
    sqlite3_bind_int64(c, 4, expires_ms);
    int rc = step_done(q, S_COMPLETE);
    o11y_idem_stored result = O11Y_IDEM_STORED;
    if ((rc & 0xff) == SQLITE_FULL && blob_len > O11Y_IDEM_STATUS_BYTES) {
        /* The database is at its cap: keep the status alone (idem_internal.h), which the
         * key's row already has room for, so the key stays completed. */
        fail(q, rc);
        sqlite3_bind_blob(c, 3, blob, O11Y_IDEM_STATUS_BYTES, SQLITE_STATIC);
        rc = step_done(q, S_COMPLETE);
        result = O11Y_IDEM_STATUS_ONLY;
    }
    if (rc != SQLITE_OK || sqlite3_changes(q->db) != 1)
        result = O11Y_IDEM_NOT_STORED;
    if (rc != SQLITE_OK)
        fail(q, rc);
    pthread_mutex_unlock(&q->lock);
    return result;
}

static void sql_release(void *impl, const o11y_idem_key *k, uint64_t token)
{
    sql_store *q = impl;
    if (!wal_index_writable(q))
        return; /* the lease frees the key */
    pthread_mutex_lock(&q->lock);
    sqlite3_stmt *d = prep(q, S_RELEASE);
    sqlite3_bind_text(d, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(d, 2, (sqlite3_int64)token);
    int rc = step_done(q, S_RELEASE);
    if (rc != SQLITE_OK)
        fail(q, rc);
    pthread_mutex_unlock(&q->lock);
}

static void sql_destroy(void *impl)
{
    sql_store *q = impl;
    for (int i = 0; i < N_STMT; i++)
        sqlite3_finalize(q->st[i]);
    if (q->db && q->shm_path[0] && access(q->shm_path, W_OK) != 0 && errno != ENOENT)
        sqlite3_db_config(q->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL); /* see above */
    sqlite3_close(q->db);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static const o11y_idem_store_ops sql_ops = {sql_begin, sql_complete, sql_release, sql_destroy};

o11y_status o11y_idem_store_sqlite(const char *path, o11y_idem_store **out)
{
    return o11y_idem_store_sqlite_capped(path, 0, out);
}

o11y_status o11y_idem_store_sqlite_capped(const char *path, int64_t max_bytes,
                                          o11y_idem_store **out)
{
    if (!path || !out || max_bytes < 0)
        return O11Y_EINVAL;
    *out = NULL;
    sql_store *q = calloc(1, sizeof *q);
    if (!q)
        return O11Y_ENOMEM;
    pthread_mutex_init(&q->lock, NULL);
    snprintf(q->shm_path, sizeof q->shm_path, "%s-shm", path);
    int rc = sqlite3_open_v2(
        path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(q->db, BUSY_MS);
        rc = sqlite3_exec(q->db,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          "CREATE TABLE IF NOT EXISTS o11y_idempotency ("
                          " key TEXT PRIMARY KEY, fp BLOB NOT NULL, completed INTEGER NOT NULL,"
                          " token INTEGER NOT NULL, expires_ms INTEGER NOT NULL, response BLOB);"
                          "CREATE INDEX IF NOT EXISTS o11y_idempotency_expiry"
                          " ON o11y_idempotency(expires_ms);",
                          NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK && max_bytes > 0) {
        /* The cap is per connection and in pages: this one obeys the service's cap too. */
        sqlite3_int64 pages = max_bytes / 4096 > 0 ? max_bytes / 4096 : 1;
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA max_page_count=%lld", (long long)pages);
        rc = sqlite3_exec(q->db, pragma, NULL, NULL, NULL);
    }
    for (int i = 0; rc == SQLITE_OK && i < N_STMT; i++)
        rc = sqlite3_prepare_v3(q->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
    if (rc != SQLITE_OK) {
        sql_destroy(q);
        return O11Y_EBACKEND;
    }
    o11y_status st = o11y_idem_store_create(&sql_ops, q, out);
    if (st != O11Y_OK) {
        sql_destroy(q);
        return st;
    }
    q->store = *out;
    return O11Y_OK;
}
