/* harness.c — see harness.h. */
#include "harness.h"

#include <dirent.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Whether pid holds the socket listening on port: with tests running in parallel, the free port
 * one test picked may be bound by another test's service first, and a connection succeeding
 * would then reach the wrong service. /proc/net/tcp names the listening socket's inode, and
 * /proc/PID/fd shows whether the process holds it. */
static bool listens(pid_t pid, int port)
{
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    unsigned long inode = 0;
    for (size_t t = 0; t < 2 && !inode; t++) {
        FILE *f = fopen(tables[t], "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char local[128];
            unsigned state;
            unsigned long ino;
            if (sscanf(line, " %*d: %127s %*s %x %*s %*s %*s %*s %*s %lu", local, &state, &ino) !=
                3)
                continue;
            const char *colon = strrchr(local, ':');
            if (colon && state == 0x0A && strtol(colon + 1, NULL, 16) == port) {
                inode = ino;
                break;
            }
        }
        if (f)
            fclose(f);
    }
    if (!inode)
        return false;
    char dir[64], want[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *d = opendir(dir);
    struct dirent *e;
    bool mine = false;
    while (d && !mine && (e = readdir(d))) {
        char path[320], target[64];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            mine = strcmp(target, want) == 0;
        }
    }
    if (d)
        closedir(d);
    return mine;
}

int gs_start(gs_proc *p, const char *const *extra)
{
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "/tmp/gs-test-XXXXXX");
    if (!mkdtemp(p->dir))
        return -1;
    snprintf(p->db, sizeof p->db, "%s/gs.db", p->dir);
    snprintf(p->log, sizeof p->log, "%s/gs.log", p->dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        p->port = harness_free_port();
        char port[16];
        snprintf(port, sizeof port, "%d", p->port);
        /* GS_WRAPPER runs the service under a tool, e.g. "valgrind --leak-check=full". */
        static char wrapper[512];
        const char *argv[48];
        int n = 0;
        const char *w = getenv("GS_WRAPPER");
        if (w && *w) {
            snprintf(wrapper, sizeof wrapper, "%s", w);
            for (char *tok = strtok(wrapper, " "); tok && n < 16; tok = strtok(NULL, " "))
                argv[n++] = tok;
        }
        const char *base[] = {GS_BINARY, "--port", port, "--db", p->db, "--log-file", p->log};
        for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
            argv[n++] = base[i];
        /* GS_SERVER picks the server library, so one test binary checks both adapters. */
        const char *server = getenv("GS_SERVER");
        if (server && *server) {
            argv[n++] = "--server";
            argv[n++] = server;
        }
        for (int i = 0; extra && extra[i] && n < 46; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        p->pid = fork();
        if (p->pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
            execvp(argv[0], (char *const *)argv);
            _exit(127);
        }
        for (int i = 0; i < 2000; i++) { /* up to 20 s (valgrind starts slowly) */
            int fd = raw_connect(p->port);
            if (fd >= 0) {
                close(fd);
                /* under a wrapper (valgrind) the listener is the wrapper's process: the same pid */
                if (listens(p->pid, p->port))
                    return 0;
            }
            int status;
            if (waitpid(p->pid, &status, WNOHANG) == p->pid)
                break; /* exited: the port was taken meanwhile, try another */
            usleep(10000);
        }
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    return -1;
}

int gs_wait_exit(gs_proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    for (int i = 0; i < timeout_ms / 10; i++) {
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(10000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    return -1;
}

int gs_stop(gs_proc *p)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    return gs_wait_exit(p, 15000);
}

void gs_cleanup(gs_proc *p)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", p->dir);
}

bool gs_alive(const gs_proc *p)
{
    if (p->pid <= 0 || kill(p->pid, 0) != 0)
        return false;
    http_resp r;
    if (http(p, "GET", "/projects/alive-check", NULL, NULL, 0, &r) != 0)
        return false;
    bool ok = r.status == 404;
    http_resp_free(&r);
    return ok;
}

/*=== MARK: libcurl ===*/

typedef struct grow {
    char *p;
    size_t len;
} grow;

static size_t collect(char *data, size_t size, size_t n, void *userp)
{
    grow *g = userp;
    size_t add = size * n;
    char *np = realloc(g->p, g->len + add + 1);
    if (!np)
        return 0;
    memcpy(np + g->len, data, add);
    g->p = np;
    g->len += add;
    g->p[g->len] = '\0';
    return add;
}

int http(const gs_proc *p, const char *method, const char *path, const char *const *headers,
         const char *body, size_t body_len, http_resp *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[16384];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", p->port, path);
    grow b = {0}, h = {0};
    struct curl_slist *hl = NULL;
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    out->body = b.p ? b.p : calloc(1, 1);
    out->body_len = b.len;
    out->headers = h.p ? h.p : calloc(1, 1);
    if (out->body_len) {
        json_error_t err;
        out->json = json_loadb(out->body, out->body_len, 0, &err);
    }
    return rc == CURLE_OK ? 0 : -1;
}

const char *resp_header(const http_resp *r, const char *name, char *buf, size_t len)
{
    /* The last header block wins (after a 100 Continue there are two). */
    const char *block = r->headers, *next;
    while ((next = strstr(block, "\r\nHTTP/")) != NULL)
        block = next + 2;
    size_t nlen = strlen(name);
    for (const char *line = block; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = (size_t)(eol - v);
            if (vlen >= len)
                vlen = len - 1;
            memcpy(buf, v, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        line = eol + 2;
    }
    return NULL;
}

const char *resp_code(const http_resp *r)
{
    return json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
}

void http_resp_free(http_resp *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/*=== MARK: raw sockets ===*/

char *raw_read(int fd, int timeout_ms, size_t *out_len)
{
    grow g = {0};
    char buf[16384];
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        collect(buf, 1, (size_t)n, &g);
    }
    if (!g.p)
        g.p = calloc(1, 1);
    if (out_len)
        *out_len = g.len;
    return g.p;
}

char *raw_exchange(int port, const char *req, size_t len, int timeout_ms, size_t *out_len)
{
    int fd = raw_connect(port);
    if (fd < 0)
        return NULL;
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, req + done, len - done, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    char *resp = raw_read(fd, timeout_ms, out_len);
    close(fd);
    return resp;
}

/*=== MARK: the log ===*/

char *read_log_raw(const gs_proc *p, size_t *len)
{
    FILE *f = fopen(p->log, "rb");
    grow g = {0};
    char buf[65536];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        collect(buf, 1, n, &g);
    if (f)
        fclose(f);
    if (!g.p)
        g.p = calloc(1, 1);
    if (len)
        *len = g.len;
    return g.p;
}

json_t *read_log(const gs_proc *p)
{
    size_t len;
    char *raw = read_log_raw(p, &len);
    json_t *lines = json_array();
    char *line = raw;
    while (line < raw + len) {
        char *eol = memchr(line, '\n', (size_t)(raw + len - line));
        if (!eol)
            break; /* a line still being written */
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)(eol - line), JSON_REJECT_DUPLICATES, &err);
        if (!j || !json_is_object(j))
            fail_msg("log line is not a JSON object: %.*s", (int)(eol - line), line);
        json_array_append_new(lines, j);
        line = eol + 1;
    }
    free(raw);
    return lines;
}

json_t *log_events(json_t *lines, const char *event)
{
    json_t *out = json_array();
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        const char *e = json_string_value(json_object_get(l, "event"));
        if (e && strcmp(e, event) == 0)
            json_array_append(out, l);
    }
    return out;
}

void create_project(const gs_proc *p, char id[64])
{
    static const char *const h[] = {"Content-Type: application/json", NULL};
    http_resp r;
    assert_int_equal(http(p, "POST", "/projects", h, "{\"name\":\"Show\"}", 15, &r), 0);
    assert_int_equal(r.status, 201);
    const char *s = json_string_value(json_object_get(r.json, "id"));
    assert_non_null(s);
    snprintf(id, 64, "%s", s);
    http_resp_free(&r);
}

void create_episode(const gs_proc *p, const char *project, int number, char id[64])
{
    static const char *const h[] = {"Content-Type: application/json", NULL};
    char path[128], body[64];
    snprintf(path, sizeof path, "/projects/%s/episodes", project);
    int n = snprintf(body, sizeof body, "{\"number\":%d,\"title\":\"t\"}", number);
    http_resp r;
    assert_int_equal(http(p, "POST", path, h, body, (size_t)n, &r), 0);
    assert_int_equal(r.status, 201);
    const char *s = json_string_value(json_object_get(r.json, "id"));
    assert_non_null(s);
    snprintf(id, 64, "%s", s);
    http_resp_free(&r);
}

long proc_status(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            v = atol(line + n);
    if (f)
        fclose(f);
    return v;
}

json_t *log_wait(const gs_proc *p, const char *event, const char *trace_id, size_t n)
{
    json_t *found = NULL;
    for (int i = 0; i < 500; i++) {
        json_t *lines = read_log(p);
        json_t *ev = log_events(lines, event);
        json_decref(lines);
        found = json_array();
        size_t k;
        json_t *l;
        json_array_foreach(ev, k, l)
        {
            const char *t = json_string_value(json_object_get(l, "trace_id"));
            if (!trace_id || (t && strcmp(t, trace_id) == 0))
                json_array_append(found, l);
        }
        json_decref(ev);
        if (json_array_size(found) >= n)
            return found;
        json_decref(found);
        found = NULL;
        usleep(10000);
    }
    return json_array();
}

/*=== MARK: redis-server ===*/

pid_t redis_start(int port)
{
    return redis_start_with(port, NULL);
}

pid_t redis_start_with(int port, const char *const *extra)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *argv[40] = {"redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no"};
    int n = 9;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        int fd = raw_connect(port);
        if (fd >= 0) {
            close(fd);
            return pid;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

void redis_stop(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int run_program(const char *const *argv, const char *dir, char **out, char **err)
{
    char out_path[256], err_path[256];
    snprintf(out_path, sizeof out_path, "%s/run.out", dir);
    snprintf(err_path, sizeof err_path, "%s/run.err", dir);
    *out = *err = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out_fd < 0 || err_fd < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    *out = slurp(out_path, NULL);
    *err = slurp(err_path, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}

int post_generation(const gs_proc *p, const char *project, const char *episode, const char *prompt,
                    const char *const *extra_headers, http_resp *out)
{
    size_t cap = strlen(project) + strlen(episode) + strlen(prompt) + 64;
    char *body = malloc(cap);
    if (!body)
        return -1;
    int n = snprintf(body, cap, "{\"projectId\":\"%s\",\"episodeId\":\"%s\",\"prompt\":\"%s\"}",
                     project, episode, prompt);
    const char *headers[8] = {"Content-Type: application/json"};
    for (size_t i = 0; extra_headers && extra_headers[i] && i < 6; i++)
        headers[i + 1] = extra_headers[i];
    int rc = http(p, "POST", "/generations", headers, body, (size_t)n, out);
    free(body);
    return rc;
}
