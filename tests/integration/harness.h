/* harness.h — runs the real generation-service on a free loopback port and talks HTTP to it
 * with libcurl and with raw sockets. */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct gs_proc {
    pid_t pid;
    int port;
    char dir[64];
    char db[128];
    char log[128];
} gs_proc;

/* Starts the service with --port, --db and --log-file in a fresh temporary folder, plus the
 * NULL-terminated extra arguments; waits until it accepts connections. 0 on success. */
int gs_start(gs_proc *p, const char *const *extra_args);
/* SIGTERM, then waits; returns the exit status (-1 when killed by a signal or stuck). */
int gs_stop(gs_proc *p);
/* Waits for the process to exit (SIGKILL after timeout_ms); returns its exit status or -1. */
int gs_wait_exit(gs_proc *p, int timeout_ms);
/* Removes the temporary folder. */
void gs_cleanup(gs_proc *p);
/* True while the process is alive and answers GET /projects/x. */
bool gs_alive(const gs_proc *p);

typedef struct http_resp {
    long status;
    char *body;
    size_t body_len;
    char *headers; /* the raw header block */
    json_t *json;  /* the parsed body when it is JSON, else NULL */
} http_resp;

/* One request over a new connection. headers: NULL-terminated "Name: value" lines. body may be
 * NULL. Returns 0 when a response arrived. */
int http(const gs_proc *p, const char *method, const char *path, const char *const *headers,
         const char *body, size_t body_len, http_resp *out);
/* A response header's value (first occurrence, case-insensitive) copied into buf, or NULL. */
const char *resp_header(const http_resp *r, const char *name, char *buf, size_t len);
void http_resp_free(http_resp *r);
/* The error code of an envelope, or NULL. */
const char *resp_code(const http_resp *r);

/* Raw socket helpers: connect to the service, send bytes, read what comes back until the peer
 * closes or timeout_ms passes without data. Returns a malloc'd NUL-terminated buffer. */
int raw_connect(int port);
char *raw_exchange(int port, const char *req, size_t len, int timeout_ms, size_t *out_len);
char *raw_read(int fd, int timeout_ms, size_t *out_len);

/* A loopback port nothing listens on (bound, read and released: a small race is possible). */
int harness_free_port(void);
/* Starts redis-server on port (no persistence) and waits until it accepts; its pid, or -1. */
pid_t redis_start(int port);
/* The same, with more redis-server arguments (NULL-terminated), e.g. --requirepass. */
pid_t redis_start_with(int port, const char *const *extra);
/* Kills it (SIGKILL) and reaps it. */
void redis_stop(pid_t pid);

/* Every line of the service's log file, each parsed (the test fails on a non-JSON line). */
json_t *read_log(const gs_proc *p);
/* The log file's raw bytes (NUL-terminated, malloc'd). */
char *read_log_raw(const gs_proc *p, size_t *len);
/* Log lines whose "event" is event (new reference). */
json_t *log_events(json_t *lines, const char *event);

/* Convenience: creates a project, returns its id (static buffer per call site is the caller's). */
void create_project(const gs_proc *p, char id[64]);
/* Creates episode `number` (title "t") in the project; returns its id. */
void create_episode(const gs_proc *p, const char *project, int number, char id[64]);
/* POST /generations {projectId, episodeId, prompt} with Content-Type and up to 6 more header
 * lines (NULL-terminated, or NULL); returns as http(). */
int post_generation(const gs_proc *p, const char *project, const char *episode, const char *prompt,
                    const char *const *extra_headers, http_resp *out);
/* A number field of /proc/PID/status ("Threads:", "VmRSS:"); -1 if unreadable. */
long proc_status(pid_t pid, const char *field);

/* Runs argv (NULL-terminated) to completion, its stdout and stderr kept in files in dir and
 * returned in *out and *err (malloc'd, NUL-terminated; "" when empty); returns its exit
 * status, or -1 when it could not run or died of a signal. */
int run_program(const char *const *argv, const char *dir, char **out, char **err);
/* A whole file (NUL-terminated, malloc'd), or NULL. */
char *slurp(const char *path, size_t *len);

/* Polls the log (up to 5 s) until at least n lines carry event and, when trace_id is not NULL,
 * that trace id; returns them (new reference). */
json_t *log_wait(const gs_proc *p, const char *event, const char *trace_id, size_t n);
#endif
