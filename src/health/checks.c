/* health/checks.c — the built-in checks. Each one keeps to its timeout by itself (libcurl's
 * timeouts, a non-blocking connect, SQLite's progress handler, hiredis' timeouts); the error
 * text is chosen here, never copied from a URL, a request or errno. */
#include "health/health_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_error(char *error, size_t len, const char *msg)
{
    snprintf(error, len, "%s", msg);
}

/*=== MARK: HTTP ===*/

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p, (void)ctx;
    return size * n;
}

static o11y_health_status run_http(o11y__check *c, char *error, size_t len)
{
    CURL *curl = curl_easy_init();
    if (!curl) {
        set_error(error, len, "out of memory");
        return O11Y_HEALTH_UNHEALTHY;
    }
    curl_easy_setopt(curl, CURLOPT_URL, c->target);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "o11y-health/" O11Y_VERSION_STRING);
    CURLcode rc = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(curl);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        set_error(error, len, "timeout");
        return O11Y_HEALTH_UNHEALTHY;
    }
    if (rc != CURLE_OK) {
        /* curl's message for its code, never the URL (which may hold credentials). */
        snprintf(error, len, "request failed: %s", curl_easy_strerror(rc));
        return O11Y_HEALTH_UNHEALTHY;
    }
    if (code < 200 || code > 299) {
        snprintf(error, len, "HTTP %ld", code);
        return O11Y_HEALTH_UNHEALTHY;
    }
    return O11Y_HEALTH_HEALTHY;
}

/*=== MARK: TCP ===*/

static o11y_health_status run_tcp_to(const char *host, uint16_t port, unsigned timeout_ms,
                                     char *error, size_t len)
{
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0 || !res) {
        set_error(error, len, "cannot resolve host");
        return O11Y_HEALTH_UNHEALTHY;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    o11y_health_status st = O11Y_HEALTH_UNHEALTHY;
    if (fd < 0) {
        set_error(error, len, "no socket");
    } else if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        st = O11Y_HEALTH_HEALTHY;
    } else if (errno != EINPROGRESS) {
        set_error(error, len, errno == ECONNREFUSED ? "connection refused" : "connect failed");
    } else {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        int n = poll(&p, 1, (int)timeout_ms);
        if (n == 0)
            set_error(error, len, "timeout");
        else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)
            set_error(error, len, soerr == ECONNREFUSED ? "connection refused" : "connect failed");
        else
            st = O11Y_HEALTH_HEALTHY;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return st;
}

/*=== MARK: SQLite ===*/

typedef struct deadline {
    int64_t at_ns;
} deadline;

static int past_deadline(void *arg)
{
    return o11y__now_mono_ns() > ((deadline *)arg)->at_ns; /* non-zero interrupts the query */
}

static o11y_health_status run_sqlite(o11y__check *c, char *error, size_t len)
{
    /* A WAL index (-shm) that exists but cannot be written (chattr +i, a read-only remount) has
     * been seen to make SQLite's new connection die with SIGBUS on its mapping: say unhealthy
     * instead of opening it. */
    char shm[4200];
    snprintf(shm, sizeof shm, "%s-shm", c->target);
    if (access(shm, W_OK) != 0 && errno != ENOENT) {
        set_error(error, len, "database unavailable: its WAL index is not writable");
        return O11Y_HEALTH_UNHEALTHY;
    }
    sqlite3 *db = NULL;
    deadline d = {o11y__now_mono_ns() + (int64_t)c->timeout_ms * 1000000};
    int rc = sqlite3_open_v2(c->target, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
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
        set_error(error, len, "timeout");
    else
        snprintf(error, len, "database unavailable: %s", sqlite3_errstr(rc));
    return O11Y_HEALTH_UNHEALTHY;
}

/*=== MARK: Redis ===*/

static o11y_health_status run_redis(o11y__check *c, char *error, size_t len)
{
    struct timeval tv = {(time_t)(c->timeout_ms / 1000), (suseconds_t)(c->timeout_ms % 1000) * 1000};
    redisContext *r = redisConnectWithTimeout(c->target, c->port, tv);
    o11y_health_status st = O11Y_HEALTH_UNHEALTHY;
    if (!r) {
        set_error(error, len, "out of memory");
        return st;
    }
    if (!r->err)
        redisSetTimeout(r, tv);
    redisReply *reply = r->err ? NULL : redisCommand(r, "PING");
    if (reply && reply->type == REDIS_REPLY_STATUS && reply->str && strcmp(reply->str, "PONG") == 0)
        st = O11Y_HEALTH_HEALTHY;
    else if (reply)
        set_error(error, len, "unexpected reply to PING");
    else if (r->err == REDIS_ERR_IO && (errno == EAGAIN || errno == ETIMEDOUT || errno == EINPROGRESS))
        set_error(error, len, "timeout");
    else if (r->err == REDIS_ERR_IO && errno == ECONNREFUSED)
        set_error(error, len, "connection refused");
    else
        set_error(error, len, r->err == REDIS_ERR_EOF ? "connection closed" : "connection failed");
    if (reply)
        freeReplyObject(reply);
    redisFree(r);
    return st;
}

/*=== MARK: custom ===*/

static o11y_health_status run_custom(o11y__check *c, char *error, size_t len)
{
    char message[O11Y__CHECK_ERROR_LEN] = {0};
    o11y_health_status st = c->fn(c->ctx, message, sizeof message - 1);
    message[sizeof message - 1] = '\0'; /* whatever the callback did with the buffer */
    if ((unsigned)st > O11Y_HEALTH_UNHEALTHY) {
        set_error(error, len, "the check returned an invalid status");
        return O11Y_HEALTH_UNHEALTHY;
    }
    if (st != O11Y_HEALTH_HEALTHY)
        set_error(error, len, message[0] ? message : o11y_health_status_name(st));
    return st;
}

o11y_health_status o11y__check_run(o11y__check *c, char *error, size_t len)
{
    error[0] = '\0';
    switch (c->kind) {
    case CHECK_HTTP: return run_http(c, error, len);
    case CHECK_TCP: return run_tcp_to(c->target, c->port, c->timeout_ms, error, len);
    case CHECK_SQLITE: return run_sqlite(c, error, len);
    case CHECK_REDIS: return run_redis(c, error, len);
    case CHECK_CUSTOM: return run_custom(c, error, len);
    }
    set_error(error, len, "unknown check");
    return O11Y_HEALTH_UNHEALTHY;
}
