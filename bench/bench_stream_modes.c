/* bench_stream_modes: how many waiting event streams libmicrohttpd holds, and what each costs,
 * in the two shapes a streaming response can take:
 *   suspend  - the adapter's shape: a small thread pool; a reader with nothing to send suspends
 *              its connection, and a publish resumes every waiting one;
 *   blocking - one thread per connection; the reader waits on a condition variable.
 * Bare libmicrohttpd in both (no o11y), so the figures are the shapes' own. For each mode it
 * opens N streams from this process, reads their headers, publishes events and times until
 * every stream has all of them; then reports resident memory and threads per stream.
 * Usage: bench_stream_modes [N] (default 1000). */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { EVENT_LEN = 64, EVENTS = 20 };

typedef struct waiter {
    struct MHD_Connection *conn;
    struct waiter *next;
} waiter;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t published = PTHREAD_COND_INITIALIZER;
static int n_events;
static bool blocking_mode;
static waiter *sleeping; /* suspend mode: connections waiting for the next event */

typedef struct stream {
    int next;
    struct MHD_Connection *conn;
} stream;

static void fill(char *buf, int n)
{
    for (int i = 0; i < n; i++) {
        memset(buf + (size_t)i * EVENT_LEN, 'x', EVENT_LEN - 1);
        buf[(size_t)i * EVENT_LEN + EVENT_LEN - 1] = '\n';
    }
}

static ssize_t read_events(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream *s = cls;
    pthread_mutex_lock(&lock);
    if (blocking_mode) {
        while (s->next >= n_events && s->next < EVENTS)
            pthread_cond_wait(&published, &lock);
    }
    if (s->next >= EVENTS) {
        pthread_mutex_unlock(&lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    int ready = (n_events < EVENTS ? n_events : EVENTS) - s->next;
    if ((size_t)ready * EVENT_LEN > max)
        ready = (int)(max / EVENT_LEN);
    if (ready == 0) { /* suspend mode: sleep until the next publish */
        waiter *w = malloc(sizeof *w);
        w->conn = s->conn;
        w->next = sleeping;
        sleeping = w;
        MHD_suspend_connection(s->conn);
        pthread_mutex_unlock(&lock);
        return 0;
    }
    s->next += ready;
    pthread_mutex_unlock(&lock);
    fill(buf, ready);
    return (ssize_t)ready * EVENT_LEN;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **req_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)data, (void)data_size;
    if (!*req_cls) {
        *req_cls = conn; /* headers first; answer on the second call */
        return MHD_YES;
    }
    stream *s = calloc(1, sizeof *s);
    s->conn = conn;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_events, s, free);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static void publish(int upto)
{
    pthread_mutex_lock(&lock);
    n_events = upto;
    waiter *w = sleeping;
    sleeping = NULL;
    pthread_cond_broadcast(&published);
    pthread_mutex_unlock(&lock);
    while (w) {
        waiter *next = w->next;
        MHD_resume_connection(w->conn);
        free(w);
        w = next;
    }
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Reads from every client until each has `want` body bytes; false on a timeout. */
static bool drain(struct pollfd *p, long *body, bool *in_body, int n, long want, double limit)
{
    char buf[8192];
    double end = now_s() + limit;
    int done = 0;
    for (int i = 0; i < n; i++)
        if (body[i] >= want)
            done++;
    while (done < n && now_s() < end) {
        if (poll(p, (nfds_t)n, 100) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            ssize_t got = recv(p[i].fd, buf, sizeof buf, 0);
            if (got <= 0)
                continue;
            long start = 0;
            if (!in_body[i]) { /* headers come in the first read on loopback */
                char *eoh = memmem(buf, (size_t)got, "\r\n\r\n", 4);
                if (!eoh)
                    continue;
                in_body[i] = true;
                start = eoh + 4 - buf;
                if (want == 0)
                    done++;
            }
            bool was_done = body[i] >= want;
            body[i] += got - start;
            if (!was_done && body[i] >= want && want > 0)
                done++;
        }
    }
    return done == n;
}

static int run(bool blocking, int n)
{
    blocking_mode = blocking;
    n_events = 0;
    long rss0 = status_kb("VmRSS:"), vm0 = status_kb("VmSize:"), threads0 = status_kb("Threads:");
    unsigned flags =
        blocking ? MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                       MHD_USE_POLL /* select would stop at fd 1024 */
                 : MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    struct MHD_Daemon *d =
        blocking
            ? MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_CONNECTION_LIMIT,
                               (unsigned)n + 16, MHD_OPTION_THREAD_STACK_SIZE, (size_t)0,
                               MHD_OPTION_END)
            : MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                               2u, MHD_OPTION_CONNECTION_LIMIT, (unsigned)n + 16, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "cannot start the server\n");
        return 1;
    }
    int port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    long *body = calloc((size_t)n, sizeof *body);
    bool *in_body = calloc((size_t)n, sizeof *in_body);
    int opened = 0;
    for (; opened < n; opened++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            if (fd >= 0)
                close(fd);
            break;
        }
        static const char req[] = "GET /events HTTP/1.0\r\n\r\n";
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
            close(fd);
            break;
        }
        p[opened] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    bool up = drain(p, body, in_body, opened, 0, 20);
    usleep(500 * 1000); /* let the last connections settle before sampling */
    long rss1 = status_kb("VmRSS:"), vm1 = status_kb("VmSize:"), threads1 = status_kb("Threads:");
    double t0 = now_s();
    bool all = up;
    for (int e = 1; e <= EVENTS && all; e++) {
        publish(e);
        all = drain(p, body, in_body, opened, (long)e * EVENT_LEN, 20);
    }
    double secs = now_s() - t0;
    printf("%-9s %5d streams open%s: per stream %.1f KB resident, %.0f KB virtual, %.2f threads "
           "(%ld threads in all); %s%.0f events/s delivered\n",
           blocking ? "blocking" : "suspend", opened, up ? "" : " (not all answered)",
           (double)(rss1 - rss0) / opened, (double)(vm1 - vm0) / opened,
           (double)(threads1 - threads0) / opened, threads1, all ? "" : "NOT ALL DELIVERED, ",
           (double)opened * EVENTS / secs);
    publish(EVENTS + 1); /* ends every stream */
    for (int i = 0; i < opened; i++)
        close(p[i].fd);
    MHD_stop_daemon(d);
    free(p);
    free(body);
    free(in_body);
    return all ? 0 : 1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    printf("waiting event streams, bare libmicrohttpd, %d events of %d bytes each:\n", EVENTS,
           EVENT_LEN);
    int rc = run(false, n);
    rc |= run(true, n);
    return rc;
}
