/* http/conn_guard.c — the connection guard of o11y/adapter.h: limits and deadlines the server
 * libraries lack. libmicrohttpd 0.9.75 has an idle timeout but no deadline for a request head or
 * a body's progress (a client sending a byte every few seconds holds a connection forever), and
 * past its connection limit it stops accepting, which leaves new clients hanging in the listen
 * backlog; h2o 2.2 has no per-client limit and its request timeout restarts with every byte.
 *
 * Deadlines are atomics written by the connection's thread and read by the reaper; the
 * connection list and the per-address counts are under one mutex, taken once per connection
 * (open, close) and by the reaper's scan, never per request. */
#include "core/internal.h"
#include "o11y/adapter.h"
#include "o11y/log.h"
#include "o11y/metrics.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ADDR_BUCKETS = 4096, REAP_EVERY_MS = 200 };
static const int64_t LOG_EVERY_NS = 10 * 1000000000LL;

struct o11y_guarded_conn {
    o11y_guarded_conn *next, *prev;
    const o11y_conn_guard_config *cfg;
    int fd;
    uint8_t addr[16];
    uint8_t addr_len;
    _Atomic int64_t deadline_ns;   /* INT64_MAX: none */
    _Atomic int64_t body_start_ns; /* 0 while in a head; the reaper reads it to say which */
    uint64_t body_bytes;
    atomic_bool reaped;
};

typedef struct addr_count {
    struct addr_count *next;
    uint8_t addr[16];
    uint8_t addr_len;
    unsigned n;
} addr_count;

/* A log line at most every 10 s for a kind of event, with how many were left out. */
typedef struct throttle {
    _Atomic int64_t last_ns;
    atomic_ulong left_out;
} throttle;

struct o11y_conn_guard {
    o11y_conn_guard_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    pthread_t reaper;
    o11y_guarded_conn *conns;
    unsigned open;
    addr_count *by_addr[ADDR_BUCKETS];
    o11y_logger *logger;
    o11y_series *refused_per_client, *refused_global, *timeout_head, *timeout_body,
        *server_messages;
    throttle log_refused, log_timeout, log_message;
};

/*=== MARK: addresses ===*/

static uint8_t addr_bytes(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa && sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) { /* one client, one count, on a dual-stack socket */
            memcpy(out, a->s6_addr + 12, 4);
            return 4;
        }
        memcpy(out, a->s6_addr, 16);
        return 16;
    }
    return 0;
}

static addr_count **addr_slot(o11y_conn_guard *g, const uint8_t *addr, uint8_t len)
{
    uint64_t h = o11y__fnv1a(O11Y__FNV_BASIS, addr, len);
    addr_count **p = &g->by_addr[(h ^ (h >> 32)) & (ADDR_BUCKETS - 1)];
    while (*p && ((*p)->addr_len != len || memcmp((*p)->addr, addr, len) != 0))
        p = &(*p)->next;
    return p;
}

/*=== MARK: throttled log lines ===*/

static bool throttle_pass(throttle *t, unsigned long *left_out)
{
    int64_t now = o11y__now_mono_ns(), last = atomic_load(&t->last_ns);
    if (last && now - last < LOG_EVERY_NS) {
        atomic_fetch_add(&t->left_out, 1);
        return false;
    }
    if (!atomic_compare_exchange_strong(&t->last_ns, &last, now)) {
        atomic_fetch_add(&t->left_out, 1);
        return false;
    }
    *left_out = atomic_exchange(&t->left_out, 0);
    return true;
}

static void count(o11y_series *s)
{
    if (s)
        o11y_counter_inc(s);
}

/*=== MARK: accept, begin, end ===*/

bool o11y_conn_guard_admit(o11y_conn_guard *g, const struct sockaddr *peer)
{
    uint8_t addr[16];
    uint8_t len = addr_bytes(peer, addr);
    pthread_mutex_lock(&g->lock);
    bool global = g->open >= g->cfg.max_connections;
    addr_count *a = len ? *addr_slot(g, addr, len) : NULL;
    bool per_client = a && a->n >= g->cfg.max_per_client;
    pthread_mutex_unlock(&g->lock);
    if (!global && !per_client)
        return true;
    count(per_client ? g->refused_per_client : g->refused_global);
    unsigned long left_out;
    if (throttle_pass(&g->log_refused, &left_out))
        o11y_log_va(g->logger, O11Y_LOG_WARN, "connection_refused", "connection refused",
                    O11Y_STR("reason", per_client ? "per_client_limit" : "connection_limit"),
                    O11Y_INT("limit", per_client ? g->cfg.max_per_client : g->cfg.max_connections),
                    O11Y_INT("left_out", left_out), O11Y__END);
    return false;
}

o11y_guarded_conn *o11y_conn_guard_begin(o11y_conn_guard *g, int fd, const struct sockaddr *peer)
{
    o11y_guarded_conn *c = o11y__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->cfg = &g->cfg;
    c->addr_len = addr_bytes(peer, c->addr);
    atomic_init(&c->deadline_ns, o11y__now_mono_ns() + (int64_t)g->cfg.head_timeout_s * 1000000000);
    pthread_mutex_lock(&g->lock);
    if (c->addr_len) {
        addr_count **p = addr_slot(g, c->addr, c->addr_len);
        if (!*p && (*p = o11y__calloc(1, sizeof **p))) {
            memcpy((*p)->addr, c->addr, c->addr_len);
            (*p)->addr_len = c->addr_len;
        }
        if (*p)
            (*p)->n++;
        else
            c->addr_len = 0; /* out of memory: not counted, so never uncounted */
    }
    c->next = g->conns;
    if (c->next)
        c->next->prev = c;
    g->conns = c;
    g->open++;
    pthread_mutex_unlock(&g->lock);
    return c;
}

void o11y_conn_guard_end(o11y_conn_guard *g, o11y_guarded_conn *c)
{
    if (!c)
        return;
    /* Unlinked under the lock before the server closes the socket: the reaper never shuts
     * down a descriptor number that has been reused. */
    pthread_mutex_lock(&g->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g->open--;
    if (c->addr_len) {
        addr_count **p = addr_slot(g, c->addr, c->addr_len);
        if (*p && --(*p)->n == 0) {
            addr_count *a = *p;
            *p = a->next;
            o11y__free(a);
        }
    }
    pthread_mutex_unlock(&g->lock);
    o11y__free(c);
}

/*=== MARK: phases ===*/

static int64_t seconds_ns(unsigned s)
{
    return (int64_t)s * 1000000000;
}

void o11y_conn_guard_body(o11y_guarded_conn *c)
{
    if (!c)
        return;
    atomic_store_explicit(&c->body_start_ns, o11y__now_mono_ns(), memory_order_relaxed);
    c->body_bytes = 0;
    o11y_conn_guard_received(c, 0);
}

void o11y_conn_guard_received(o11y_guarded_conn *c, size_t n)
{
    if (!c)
        return;
    c->body_bytes += n;
    /* A minimum average rate after a base allowance: a trickle falls behind, a slow but real
     * upload stays ahead. */
    int64_t earned = (int64_t)(c->body_bytes * 1000000000ull / c->cfg->body_min_bytes_per_s);
    int64_t start = atomic_load_explicit(&c->body_start_ns, memory_order_relaxed);
    atomic_store(&c->deadline_ns, start + seconds_ns(c->cfg->body_timeout_s) + earned);
}

void o11y_conn_guard_answering(o11y_guarded_conn *c)
{
    if (c)
        atomic_store(&c->deadline_ns, INT64_MAX);
}

void o11y_conn_guard_idle(o11y_guarded_conn *c)
{
    if (!c)
        return;
    atomic_store_explicit(&c->body_start_ns, 0, memory_order_relaxed);
    atomic_store(&c->deadline_ns, o11y__now_mono_ns() + seconds_ns(c->cfg->idle_timeout_s));
}

bool o11y_conn_guard_timed_out(const o11y_guarded_conn *c)
{
    return c && atomic_load(&c->reaped);
}

/*=== MARK: the reaper ===*/

/* Past its deadline, a connection's socket is shut down: the server sees the end of its input
 * at once and closes it in its own thread, as for a client that went away. */
static void reap(o11y_conn_guard *g, int64_t now)
{
    unsigned heads = 0, bodies = 0;
    for (o11y_guarded_conn *c = g->conns; c; c = c->next) {
        if (atomic_load_explicit(&c->deadline_ns, memory_order_relaxed) > now ||
            atomic_load(&c->reaped))
            continue;
        atomic_store(&c->reaped, true);
        shutdown(c->fd, SHUT_RDWR);
        if (atomic_load_explicit(&c->body_start_ns, memory_order_relaxed))
            bodies++;
        else
            heads++;
    }
    for (unsigned i = 0; i < heads; i++)
        count(g->timeout_head);
    for (unsigned i = 0; i < bodies; i++)
        count(g->timeout_body);
    unsigned long left_out;
    if ((heads || bodies) && throttle_pass(&g->log_timeout, &left_out))
        o11y_log_va(g->logger, O11Y_LOG_WARN, "connection_timed_out",
                    "connections closed past their deadline", O11Y_INT("head", heads),
                    O11Y_INT("body", bodies), O11Y_INT("left_out", left_out), O11Y__END);
}

static void *reaper_main(void *arg)
{
    o11y_conn_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += REAP_EVERY_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->wake, &g->lock, &until);
        if (!g->stopping)
            reap(g, o11y__now_mono_ns());
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

void o11y_conn_guard_server_message(o11y_conn_guard *g, const char *msg, size_t len)
{
    count(g->server_messages);
    unsigned long left_out;
    if (throttle_pass(&g->log_message, &left_out))
        o11y_log_va(g->logger, O11Y_LOG_WARN, "http_server_message", "server library message",
                    O11Y_STRN("detail", msg, len), O11Y_INT("left_out", left_out), O11Y__END);
}

/*=== MARK: lifecycle ===*/

static o11y_series *series(o11y_metrics *m, const char *name, const char *help, const char *label,
                           const char *value)
{
    if (!m)
        return NULL;
    const char *labels[] = {label};
    o11y_metric_opts o = {.name = name,
                          .help = help,
                          .type = O11Y_COUNTER,
                          .label_names = labels,
                          .n_labels = label ? 1 : 0};
    o11y_metric *f = NULL;
    if (o11y_metric_register_or_get(m, &o, &f) != O11Y_OK)
        return NULL;
    o11y_series *s = NULL;
    const char *values[] = {value};
    if (f && o11y_metric_series(f, label ? values : NULL, &s) != O11Y_OK)
        s = NULL;
    return s;
}

o11y_conn_guard *o11y_conn_guard_start(const o11y_conn_guard_config *cfg, o11y_metrics *metrics,
                                       o11y_logger *logger)
{
    o11y_conn_guard *g = o11y__calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->cfg = *cfg;
    if (!g->cfg.body_min_bytes_per_s)
        g->cfg.body_min_bytes_per_s = 1;
    g->logger = logger;
    static const char refused[] = "http_server_connections_refused_total";
    static const char refused_help[] = "Connections refused at accept, by reason";
    static const char timed_out[] = "http_server_connections_timed_out_total";
    static const char timed_out_help[] =
        "Connections closed for missing the request head or body deadline, by phase";
    g->refused_per_client = series(metrics, refused, refused_help, "reason", "per_client_limit");
    g->refused_global = series(metrics, refused, refused_help, "reason", "connection_limit");
    g->timeout_head = series(metrics, timed_out, timed_out_help, "phase", "head");
    g->timeout_body = series(metrics, timed_out, timed_out_help, "phase", "body");
    g->server_messages = series(metrics, "http_server_library_messages_total",
                                "Messages of the HTTP server library (aborted connections and the "
                                "like), logged at most once in 10 s",
                                NULL, NULL);
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&g->reaper, NULL, reaper_main, g) != 0) {
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->lock);
        o11y__free(g);
        return NULL;
    }
    return g;
}

void o11y_conn_guard_stop(o11y_conn_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stopping = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->reaper, NULL);
    for (size_t i = 0; i < ADDR_BUCKETS; i++) {
        while (g->by_addr[i]) {
            addr_count *a = g->by_addr[i];
            g->by_addr[i] = a->next;
            o11y__free(a);
        }
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    o11y__free(g);
}
