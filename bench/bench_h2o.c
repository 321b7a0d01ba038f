/* bench_h2o — the same GET handler served by h2o bare and through o11y's h2o adapter, so the
 * middleware's cost on h2o can be measured side by side (scripts/bench.sh drives it with wrk
 * and callgrind), as bench_server does for libmicrohttpd.
 *   bench_h2o bare    PORT
 *   bench_h2o wrapped PORT LOGFILE   (access logging on, to LOGFILE)
 *   bench_h2o quiet   PORT LOGFILE   (wrapped, access logging off)
 * One event loop, the handler on it (handler_threads 0): h2o's own shape. */
#define H2O_USE_LIBUV 0
#define H2O_USE_EPOLL 1
#include "bench_wrapped.h"
#include <o11y/h2o.h>

#include <arpa/inet.h>
#include <h2o.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int bare(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")))
        return -1;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    req->res.content_length = sizeof body - 1;
    h2o_send_inline(req, body, sizeof body - 1);
    return 0;
}

static h2o_accept_ctx_t accept_ctx;

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock)
        h2o_accept(&accept_ctx, sock);
}

static int run_bare(uint16_t port)
{
    h2o_globalconf_t config;
    h2o_config_init(&config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = bare;
    h2o_evloop_t *loop = h2o_evloop_create();
    h2o_context_t ctx;
    h2o_context_init(&ctx, loop, &config);
    accept_ctx = (h2o_accept_ctx_t){.ctx = &ctx, .hosts = config.hosts};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, SOMAXCONN) != 0)
        return 1;
    h2o_socket_t *listener = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(listener, on_accept);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stop)
        h2o_evloop_run(loop, 100);
    return 0;
}

static int run_wrapped(uint16_t port, const char *log, bool access_log)
{
    o11y_service *svc = bench_service(log, access_log);
    if (!svc)
        return 1;
    o11y_h2o_config hc;
    o11y_h2o_config_init(&hc);
    hc.port = port;
    hc.threads = 1;
    o11y_status st = o11y_h2o_run(svc, &hc);
    o11y_service_destroy(svc);
    return st == O11Y_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "bare") != 0 && argc < 4)) {
        fprintf(stderr, "usage: bench_h2o bare|wrapped|quiet PORT [LOGFILE]\n");
        return 2;
    }
    uint16_t port = (uint16_t)strtoul(argv[2], NULL, 10);
    if (strcmp(argv[1], "bare") == 0)
        return run_bare(port);
    return run_wrapped(port, argv[3], strcmp(argv[1], "quiet") != 0);
}
