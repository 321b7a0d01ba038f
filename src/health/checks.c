/* health/checks.c — the core's checks: TCP (a non-blocking connect within the timeout) and
 * custom callbacks. HTTP, SQLite and Redis checks live in the optional libraries (src/backends/),
 * built on o11y_health_add_custom_owned. Error text is chosen here, never copied from a request
 * or errno. */
#include "health/health_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_error(char *error, size_t len, const char *msg)
{
    snprintf(error, len, "%s", msg);
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
    case CHECK_TCP:
        return run_tcp_to(c->target, c->port, c->timeout_ms, error, len);
    case CHECK_CUSTOM:
        return run_custom(c, error, len);
    }
    set_error(error, len, "unknown check");
    return O11Y_HEALTH_UNHEALTHY;
}
