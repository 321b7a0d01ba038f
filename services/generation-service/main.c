/* main.c — generation-service: flags and environment, then one o11y service served over
 * libmicrohttpd until SIGINT/SIGTERM. */
#include "console.h"
#include "errors.h"
#include "generations.h"
#include "jobs.h"
#include "options.h"
#include "routes.h"
#include "store.h"

#include <o11y/client.h>
#ifdef GS_HAVE_H2O
#include <o11y/h2o.h>
#endif
#include <o11y/curl.h>
#include <o11y/o11y.h>
#include <o11y/redis.h>
#include <o11y/sqlite.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* CONTRACT section 5: database (critical); redis and llm (optional) when configured. */
static o11y_status register_checks(o11y_service *svc, const options *o, gs_store *store)
{
    o11y_health *h = o11y_service_health(svc);
    o11y_health_check_opts c = {.name = "database",
                                .critical = true,
                                .timeout_ms = (unsigned)o->health_timeout_ms,
                                .interval_ms = (unsigned)o->health_interval_ms};
    /* The store's own check: it also knows when the file it opened was removed or replaced. */
    o11y_status st = o11y_health_add_custom(h, &c, gs_store_health, store);
    if (st == O11Y_OK && o->redis_target.host) {
        c.name = "redis";
        c.critical = strcmp(o->idempotency, "redis") == 0; /* critical when it holds the keys */
        st = o11y_health_add_redis_target(h, &c, &o->redis_target);
    }
    if (st == O11Y_OK && o->llm_url) {
        char models[1100];
        snprintf(models, sizeof models, "%s/models", o->llm_url);
        c.name = "llm";
        c.critical = false;
        st = o11y_health_add_http(h, &c, models);
        if (st != O11Y_OK)
            fprintf(stderr, "generation-service: --llm-url takes an http(s) URL\n");
    }
    return st;
}

/* Rate limits (the contract's section 8): POST /generations per client by default, every route
 * per client when asked; in memory, or in Redis shared by the instances. */
static o11y_status open_ratelimit(o11y_service *svc, const options *o, o11y_ratelimit_store **out)
{
    *out = NULL;
    bool logs = strcmp(o->client_logs, "on") == 0 && o->rl_logs_q;
    if (!o->rl_generations_q && !o->rl_all_q && !logs)
        return O11Y_OK;
    o11y_status st = strcmp(o->rate_limit_store, "redis") == 0
                         ? o11y_ratelimit_store_redis(&o->redis_target, out)
                         : o11y_ratelimit_store_memory(NULL, out);
    o11y_ratelimit_config rc = {.store = *out, .trusted_proxies = o->trusted_proxies};
    if (st == O11Y_OK)
        st = o11y_service_ratelimit(svc, &rc);
    if (st != O11Y_OK) {
        if (o->trusted_proxies)
            fprintf(stderr, "generation-service: --trusted-proxies takes CIDRs, e.g. "
                            "10.0.0.0/8,::1/128\n");
        return st;
    }
    if (o->rl_generations_q) {
        o11y_ratelimit_policy p = {.name = "generations",
                                   .quota = o->rl_generations_q,
                                   .window_s = o->rl_generations_w,
                                   .route = "/generations",
                                   .methods = O11Y_POST};
        st = o11y_service_ratelimit_policy(svc, &p);
    }
    if (st == O11Y_OK && o->rl_all_q) {
        o11y_ratelimit_policy p = {.name = "all", .quota = o->rl_all_q, .window_s = o->rl_all_w};
        st = o11y_service_ratelimit_policy(svc, &p);
    }
    if (st == O11Y_OK && logs) { /* CONTRACT section 10: the intake is limited per client */
        o11y_ratelimit_policy p = {.name = "client-logs",
                                   .quota = o->rl_logs_q,
                                   .window_s = o->rl_logs_w,
                                   .route = "/client-logs",
                                   .methods = O11Y_POST};
        st = o11y_service_ratelimit_policy(svc, &p);
    }
    return st;
}

/* CONTRACT section 4 on every POST, PUT and PATCH, in the store chosen by --idempotency. */
static o11y_status open_idempotency(o11y_service *svc, const options *o, o11y_idem_store **out)
{
    o11y_status st;
    if (strcmp(o->idempotency, "sqlite") == 0) {
        st = o11y_idem_store_sqlite_capped(o->db, (int64_t)o->db_max_bytes, out);
    } else if (strcmp(o->idempotency, "redis") == 0) {
        st = o11y_idem_store_redis_target(&o->redis_target, out);
    } else {
        st = o11y_idem_store_memory(NULL, out);
    }
    if (st != O11Y_OK)
        return st;
    o11y_idem_config c = {
        .store = *out, .ttl_s = (unsigned)o->idem_ttl_s, .lease_s = (unsigned)o->idem_lease_s};
    return o11y_service_idempotency(svc, &c);
}

/* The system's words for an errno (strerror is not thread-safe; this runs before any thread
 * of ours, but keeps to the rule). */
static const char *errno_text(int e)
{
    static char buf[128];
    return strerror_r(e, buf, sizeof buf);
}

/* Why the listener could not start, in the system's words (the server library only says it
 * failed): the same bind, tried here, gives the errno. */
static const char *listen_failure(const char *bind_address, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (inet_pton(AF_INET, bind_address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, bind_address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof *in6;
    } else {
        return "not an IPv4 or IPv6 address";
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno_text(errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const char *why = bind(fd, (struct sockaddr *)&ss, len) == 0 && listen(fd, 1) == 0
                          ? "the HTTP server could not start"
                          : errno_text(errno);
    close(fd);
    return why;
}

/* Each connection is a descriptor: the soft limit (often 1024) is raised toward the hard one
 * so that max_connections, not EMFILE, decides when a client is refused. */
static void raise_fd_limit(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        o11y_log_warn("cannot raise the open file limit", O11Y_INT("wanted", (int64_t)want));
}

int main(int argc, char **argv)
{
    options o;
    int rc = gs_options_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;

    if (o.log_file) { /* named here, with the system's reason, rather than as an I/O error */
        int fd = open(o.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "generation-service: --log-file: cannot open '%s': %s\n", o.log_file,
                    errno_text(errno));
            return 1;
        }
        close(fd);
    }
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = o.service_name;
    cfg.version = GS_VERSION;
    cfg.max_body_bytes = o.max_body;
    cfg.log.file_path = o.log_file;
    if (o11y_log_level_parse(o.log_level, &cfg.log.min_level) != O11Y_OK) {
        fprintf(stderr, "generation-service: --log-level takes debug, info, warn or error\n");
        return 2;
    }
    if (o11y_log_format_parse(o.log_format, &cfg.log.format) != O11Y_OK) {
        fprintf(stderr, "generation-service: --log-format takes json, pretty or auto\n");
        return 2;
    }
    o11y_service *svc;
    o11y_status st = gs_errors_register();
    if (st == O11Y_OK)
        st = o11y_service_create(&cfg, &svc);
    if (st != O11Y_OK) {
        fprintf(stderr, "generation-service: cannot set up observability: %s\n", o11y_strerror(st));
        return 1;
    }
    char err[512];
    gs_store *store = gs_store_open(o.db, (int64_t)o.db_max_bytes, err, sizeof err);
    if (!store) {
        o11y_log_error("cannot open the database", O11Y_STR("path", o.db), O11Y_STR("error", err));
        o11y_service_destroy(svc);
        fprintf(stderr, "generation-service: cannot open the database: %s\n", err);
        return 1;
    }
    o11y_idem_store *idem = NULL;
    o11y_client *llm_client = NULL;
    if (o.llm_url) {
        o11y_client_config cc;
        o11y_client_config_init(&cc);
        cc.base_url = o.llm_url;
        cc.service_name = o11y_service_name(svc);
        cc.metrics = o11y_service_metrics(svc);
        if (o11y_client_create(&cc, &llm_client) != O11Y_OK) {
            fprintf(stderr, "generation-service: --llm-url takes an http(s) URL without a query\n");
            o11y_service_destroy(svc);
            gs_store_close(store);
            return 2;
        }
    }
    gs_llm llm = {.client = llm_client,
                  .base_url = o.llm_url,
                  .model = o.llm_model,
                  .api_key = getenv(o.llm_key_env),
                  .timeout_ms = 120000};
    gs_jobs_config jc = {.workers = (unsigned)o.workers,
                         .queue_cap = (unsigned)o.queue,
                         .step_ms = (unsigned)o.step_ms,
                         .heartbeat_ms = (unsigned)o.heartbeat_ms,
                         .jobs_kept = (unsigned)o.jobs_kept,
                         .llm = o.llm_url ? &llm : NULL};
    gs_app app = {.store = store,
                  .jobs = gs_jobs_start(store, &jc),
                  .max_prompt_chars = (size_t)o.max_prompt,
                  .default_model = o.llm_url ? o.llm_model : "builtin-scriptwriter"};
    st = app.jobs ? gs_routes_register(svc, store) : O11Y_ENOMEM;
    if (st == O11Y_OK)
        st = gs_generation_routes(svc, &app);
    if (st == O11Y_OK)
        st = register_checks(svc, &o, store);
    if (st == O11Y_OK && strcmp(o.client_logs, "on") == 0)
        st = o11y_service_client_logs(svc, NULL);
    gs_console *console = NULL;
    if (st == O11Y_OK && o.console_dir && *o.console_dir) {
        char why[512] = "";
        st = gs_console_register(svc, o.console_dir, &console, why, sizeof why);
        if (st != O11Y_OK)
            fprintf(stderr, "generation-service: --console-dir: %s\n", why);
        else if (console)
            o11y_log_info("web console served at /console", O11Y_STR("dir", o.console_dir),
                          O11Y_INT("files", (int64_t)gs_console_files(console)));
        else
            o11y_log_info("no web console: the directory holds no index.html",
                          O11Y_STR("dir", o.console_dir));
    }
    if (st == O11Y_OK && o.cors_origins) {
        o11y_cors_config cc = {.origins = o.cors_origins};
        st = o11y_service_cors(svc, &cc);
        if (st == O11Y_EINVAL)
            fprintf(stderr, "generation-service: --cors-origins takes origins such as "
                            "https://app.example.com,http://localhost:5173, or *\n");
    }
    o11y_ratelimit_store *limits = NULL;
    if (st == O11Y_OK)
        st = open_ratelimit(svc, &o, &limits);
    if (st == O11Y_OK)
        st = open_idempotency(svc, &o, &idem);
    if (st == O11Y_OK) {
        o11y_mhd_config mc;
        o11y_mhd_config_init(&mc);
        mc.bind_address = o.bind;
        mc.port = (uint16_t)o.port;
        mc.threads = (unsigned)o.threads;
        mc.shutdown_delay_ms = (unsigned)o.shutdown_delay_ms;
        mc.max_connections = (unsigned)o.max_connections;
        mc.max_connections_per_client = (unsigned)o.max_per_client;
        mc.request_head_timeout_s = (unsigned)o.head_timeout_s;
        raise_fd_limit((rlim_t)o.max_connections * 2 + 256);
        if (strcmp(o.server, "h2o") == 0) {
#ifdef GS_HAVE_H2O
            o11y_h2o_config hc;
            o11y_h2o_config_init(&hc);
            hc.bind_address = o.bind;
            hc.port = (uint16_t)o.port;
            hc.threads = (unsigned)o.threads;
            hc.shutdown_delay_ms = (unsigned)o.shutdown_delay_ms;
            hc.tls_cert_file = o.tls_cert;
            hc.tls_key_file = o.tls_key;
            hc.max_connections = mc.max_connections;
            hc.max_connections_per_client = mc.max_connections_per_client;
            hc.request_head_timeout_s = mc.request_head_timeout_s;
            /* the store's calls wait on SQLite's locks: not on an event loop */
            hc.handler_threads = (size_t)(o.threads ? o.threads : 2) * 4;
            st = o11y_h2o_run(svc, &hc);
#else
            fprintf(stderr, "generation-service: built without h2o (libh2o-evloop-dev)\n");
            st = O11Y_EINVAL;
#endif
        } else {
            st = o11y_mhd_run(svc, &mc);
        }
        if (st != O11Y_OK) {
            const char *why =
                st == O11Y_EIO ? listen_failure(o.bind, (uint16_t)o.port) : o11y_strerror(st);
            o11y_log_error("cannot start the server", O11Y_STR("bind", o.bind),
                           O11Y_INT("port", (int64_t)o.port), O11Y_STR("error", why));
            fprintf(stderr, "generation-service: cannot listen on %s port %llu: %s\n", o.bind,
                    o.port, why);
            st = O11Y_OK, rc = 1; /* said above */
        }
    }
    gs_jobs_stop(app.jobs); /* after the server: no request can reach a job any more */
    o11y_client_destroy(llm_client);
    gs_console_free(console);
    o11y_service_destroy(svc); /* stops the health checks (one uses the store); flushes the log */
    gs_store_close(store);
    o11y_idem_store_destroy(idem);
    o11y_ratelimit_store_destroy(limits);
    if (st != O11Y_OK)
        fprintf(stderr, "generation-service: %s\n", o11y_strerror(st));
    return st == O11Y_OK && rc <= 0 ? 0 : 1;
}
