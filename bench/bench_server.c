/* bench_server — the same GET handler served by libmicrohttpd bare and wrapped by o11y, so the
 * middleware's cost can be measured side by side (scripts/bench.sh drives it with wrk and
 * callgrind).
 *   bench_server bare    PORT THREADS
 *   bench_server wrapped PORT THREADS LOGFILE   (access logging on, to LOGFILE)
 *   bench_server quiet   PORT THREADS LOGFILE   (wrapped, access logging off) */
#include "bench_wrapped.h"

#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum MHD_Result bare(void *cls, struct MHD_Connection *c, const char *url,
                            const char *method, const char *version, const char *upload,
                            size_t *upload_size, void **req_cls)
{
    (void)cls, (void)url, (void)version, (void)upload, (void)upload_size;
    static int first_call_marker;
    if (strcmp(method, "GET") != 0)
        return MHD_NO;
    /* The usual libmicrohttpd idiom: answer on the second call. Answering on the first makes
     * MHD close the connection after the response, which would not be a fair baseline. */
    if (!*req_cls) {
        *req_cls = &first_call_marker;
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static int run_bare(unsigned port, unsigned threads)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO,
                         (uint16_t)port, NULL, NULL, bare, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                         threads, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!d)
        return 1;
    int sig;
    sigwait(&sigs, &sig);
    MHD_stop_daemon(d);
    return 0;
}

static int run_wrapped(unsigned port, unsigned threads, const char *log, bool access_log)
{
    o11y_service *svc = bench_service(log, access_log);
    if (!svc)
        return 1;
    /* /health reads cached results: two checks that are always up (a TCP port of our own). */
    o11y_health_check_opts o = {.name = "self", .critical = true, .interval_ms = 1000};
    if (o11y_health_add_tcp(o11y_service_health(svc), &o, "127.0.0.1", (uint16_t)port) != O11Y_OK)
        return 1;
    o11y_mhd_config mc;
    o11y_mhd_config_init(&mc);
    mc.port = (uint16_t)port;
    mc.threads = threads;
    o11y_status st = o11y_mhd_run(svc, &mc);
    o11y_service_destroy(svc);
    return st == O11Y_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "bare") != 0 && argc < 5)) {
        fprintf(stderr, "usage: bench_server bare|wrapped|quiet PORT THREADS [LOGFILE]\n");
        return 2;
    }
    unsigned port = (unsigned)strtoul(argv[2], NULL, 10);
    unsigned threads = (unsigned)strtoul(argv[3], NULL, 10);
    if (strcmp(argv[1], "bare") == 0)
        return run_bare(port, threads);
    return run_wrapped(port, threads, argv[4], strcmp(argv[1], "quiet") != 0);
}
