/* bench_sse — Server-Sent Events fan-out of generation-service: events delivered per second to
 * 1, 100 and 1,000 subscribers (each replays a finished generation's five events), and the
 * memory an open event stream costs the service (resident set before and after 1,000 idle
 * streams). Figures only. */
#include "../tests/integration/harness.h"

#include <curl/curl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *generation(const gs_proc *p, const char *project, const char *episode)
{
    char body[256];
    int n =
        snprintf(body, sizeof body, "{\"projectId\":\"%s\",\"episodeId\":\"%s\",\"prompt\":\"x\"}",
                 project, episode);
    const char *const ct[] = {"Content-Type: application/json", NULL};
    http_resp r;
    if (http(p, "POST", "/generations", ct, body, (size_t)n, &r) != 0 || r.status != 202)
        return NULL;
    char *id = strdup(json_string_value(json_object_get(r.json, "id")));
    http_resp_free(&r);
    return id;
}

/* Opens n streams of generation id; with `drain`, reads each to its end and returns the events
 * delivered per second; without, leaves them open in fds. */
static double fan_out(const gs_proc *p, const char *id, int n, int *fds, bool drain)
{
    char req[256];
    int len =
        snprintf(req, sizeof req,
                 "GET /generations/%s/events HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n", id);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        fds[i] = raw_connect(p->port);
        if (fds[i] < 0 || send(fds[i], req, (size_t)len, MSG_NOSIGNAL) != len)
            return -1;
    }
    if (!drain)
        return 0;
    long events = 0;
    int open = n;
    struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
    char buf[8192];
    while (open > 0 && now_s() - t0 < 60) {
        for (int i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pfd, (nfds_t)n, 100) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (fds[i] < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t k = recv(fds[i], buf, sizeof buf - 1, 0);
            if (k <= 0) {
                close(fds[i]);
                fds[i] = -1;
                open--;
                continue;
            }
            buf[k] = '\0';
            for (char *q = buf; (q = strstr(q, "\nevent: ")) != NULL; q++)
                events++;
        }
    }
    free(pfd);
    return (double)events / (now_s() - t0);
}

int main(void)
{
    struct rlimit rl = {4096, 4096};
    setrlimit(RLIMIT_NOFILE, &rl);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    gs_proc svc;
    const char *const args[] = {"--step-ms", "5", "--log-level", "warn", NULL};
    if (gs_start(&svc, args) != 0)
        return 1;
    char project[64], episode[64];
    create_project(&svc, project);
    create_episode(&svc, project, 1, episode);
    char *done = generation(&svc, project, episode);
    usleep(300000); /* five 5 ms steps: finished */
    static int fds[1000];
    static const int sizes[] = {1, 100, 1000};
    printf("SSE fan-out (each subscriber replays a finished generation's 5 events):\n");
    for (size_t i = 0; i < 3; i++)
        printf("  %4d subscribers: %9.0f events/s\n", sizes[i],
               fan_out(&svc, done, sizes[i], fds, true));
    gs_stop(&svc);
    gs_cleanup(&svc);

    /* Memory: 1,000 streams open on a generation that runs for a while. */
    const char *const slow[] = {"--step-ms", "20000", "--log-level", "warn", NULL};
    if (gs_start(&svc, slow) != 0)
        return 1;
    create_project(&svc, project);
    create_episode(&svc, project, 1, episode);
    char *running = generation(&svc, project, episode);
    usleep(200000);
    long before = proc_status(svc.pid, "VmRSS:");
    fan_out(&svc, running, 1000, fds, false);
    usleep(500000);
    long after = proc_status(svc.pid, "VmRSS:");
    printf("memory per open stream: %.1f KB (resident set %ld KB -> %ld KB for 1,000 streams)\n",
           (double)(after - before) / 1000.0, before, after);
    for (int i = 0; i < 1000; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    kill(svc.pid, SIGKILL);
    gs_wait_exit(&svc, 5000);
    gs_cleanup(&svc);
    free(done);
    free(running);
    curl_global_cleanup();
    return 0;
}
