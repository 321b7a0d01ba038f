/* store.h — generation-service's SQLite storage of projects and episodes. */
#ifndef GS_STORE_H
#define GS_STORE_H

#include <jansson.h>
#include <o11y/health.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gs_store gs_store;

/* A new id: prefix then 32 hex digits of 128 bits from the kernel's CSPRNG ("proj_9f3c..."),
 * cut to fit len. */
void gs_new_id(const char *prefix, char *out, size_t len);

typedef enum gs_result {
    GS_OK = 0,
    GS_NOT_FOUND,   /* the project (or the episode in it) does not exist */
    GS_CONFLICT,    /* the episode number is used in the project */
    GS_UNAVAILABLE, /* the database cannot take the write or read: full, read-only, locked */
    GS_ERROR,       /* anything else (a bug) */
} gs_result;

/* Opens (creating) the database in WAL mode. max_bytes > 0 caps its size (a full database
 * answers GS_UNAVAILABLE). On failure writes a reason into err and returns NULL. */
gs_store *gs_store_open(const char *path, int64_t max_bytes, char *err, size_t err_len);
/* Closes every connection. No thread may use the store during or after the call. */
void gs_store_close(gs_store *st);
/* The SQLite message of the calling thread's last failure (for logs only, never responses). */
const char *gs_store_last_error(gs_store *st);

/* Each returns the resource as a new JSON object in *out on GS_OK. */
gs_result gs_project_create(gs_store *st, const char *name, json_t **out);
gs_result gs_project_get(gs_store *st, const char *id, json_t **out);

gs_result gs_episode_create(gs_store *st, const char *project_id, int64_t number, const char *title,
                            const char *content, json_t **out);
/* One page of a project's episodes (CONTRACT section 7). */
typedef struct gs_episode_page {
    int64_t after;     /* numbers after this one (the cursor); 0: from the start */
    unsigned limit;    /* at most this many items */
    bool with_content; /* content itself, else contentLength (its UTF-8 bytes) */
    size_t max_bytes;  /* the page ends early once its contents would pass this */
} gs_episode_page;

/* GS_NOT_FOUND when the project does not exist; items ordered by number. *total counts every
 * episode of the project; *next is the cursor of the next page, or -1 when this is the last. */
gs_result gs_episode_list(gs_store *st, const char *project_id, const gs_episode_page *page,
                          json_t **items, int64_t *total, int64_t *next);
/* *project_missing tells which of the two was not found. */
gs_result gs_episode_get(gs_store *st, const char *project_id, const char *episode_id, json_t **out,
                         bool *project_missing);

typedef struct gs_episode_patch {
    bool has_number, has_title, has_content;
    int64_t number;
    const char *title;
    const char *content;
} gs_episode_patch;
gs_result gs_episode_update(gs_store *st, const char *project_id, const char *episode_id,
                            const gs_episode_patch *patch, json_t **out, bool *project_missing);
/* *number gets the deleted episode's number. */
gs_result gs_episode_delete(gs_store *st, const char *project_id, const char *episode_id,
                            int64_t *number, bool *project_missing);

/* A generation as stored (CONTRACT section 7). */
typedef struct gs_generation {
    char id[48], job_id[48];
    char project_id[160], episode_id[160];
    char model[64];
    char status[16]; /* queued, running, completed, failed, cancelled */
    int progress;    /* 0-100 */
    char step[32];
    char *prompt; /* owned by whoever filled the struct */
    char *output;
    int64_t total_tokens;
    char error_code[48];
    char error_message[200];
} gs_generation;

/* Where an episode lives: GS_OK and *project_of filled, or GS_NOT_FOUND. */
gs_result gs_episode_project(gs_store *st, const char *episode_id, char *project_of, size_t len);
gs_result gs_generation_insert(gs_store *st, const gs_generation *g);
/* Writes status, progress, step, output, tokens and error of g. */
gs_result gs_generation_save(gs_store *st, const gs_generation *g);
gs_result gs_generation_get(gs_store *st, const char *id, json_t **out);

/* Episodes created per day and per project over the last `days` days (today included):
 * *out = {"days","from","byDay":[{"date","count"}],"byProject":[{"projectId","count"}],
 * "byDayAndProject":[{"date","projectId","count"}]}. */
gs_result gs_episode_stats(gs_store *st, int days, json_t **out);

/* The health check of the database (an o11y_health_fn; ctx is the store): the file is the one
 * opened, its files writable, and a query answers. */
o11y_health_status gs_store_health(void *ctx, char *message, size_t len);
/* True while the file at the store's path is the database it opened (not removed or replaced). */
bool gs_store_file_intact(gs_store *st);
/* False, with a reason in err, when a file of the database at path (the file, -wal, -shm)
 * exists but cannot be written. */
bool gs_db_files_writable(const char *path, char *err, size_t err_len);

#endif
