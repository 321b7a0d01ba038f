/* main.c — generation-service: flags and environment, then one o11y service served over
 * libmicrohttpd until SIGINT/SIGTERM. */
#include "errors.h"
#include "generations.h"
#include "jobs.h"
#include "routes.h"
#include "store.h"

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

#define GS_VERSION "0.1.0"

typedef struct options {
    const char *bind;
    const char *db;
    const char *log_file;
    const char *log_level;
    const char *log_format;
    const char *service_name;
    const char *redis;              /* host:port, or NULL */
    o11y_redis_target redis_target; /* from --redis or --redis-url; host NULL: none */
    char redis_buf[1100];           /* the target's strings */
    const char *idempotency;        /* memory, sqlite or redis */
    const char *llm_url; /* an OpenAI-compatible base URL (…/v1), or NULL: built-in generator */
    const char *llm_model;
    const char *llm_key_env;
    unsigned long long port, max_body, db_max_bytes, threads;
    unsigned long long health_interval_ms, health_timeout_ms, shutdown_delay_ms;
    unsigned long long idem_ttl_s, idem_lease_s;
    unsigned long long workers, queue, step_ms, heartbeat_ms, max_prompt, jobs_kept;
    unsigned long long max_connections, max_per_client, head_timeout_s;
} options;

static void usage(FILE *out)
{
    fputs(
        "usage: generation-service [options]\n"
        "  --port N           listen port (PORT; default 8001)\n"
        "  --bind ADDR        listen address (BIND_ADDRESS; default 127.0.0.1)\n"
        "  --db PATH          SQLite database (DB_PATH; default var/generation.db)\n"
        "  --log-file PATH    append log lines to PATH, reopened on SIGHUP (LOG_FILE;"
        " default stdout)\n"
        "  --log-level LEVEL  debug, info, warn, error (LOG_LEVEL; default info)\n"
        "  --log-format F     json, pretty or auto: pretty on a terminal, else json\n"
        "                     (LOG_FORMAT; default auto)\n"
        "  --service-name S   name in X-Service and log lines (SERVICE_NAME;"
        " default generation-service)\n"
        "  --max-body BYTES   request body limit (MAX_BODY_BYTES; default 1048576)\n"
        "  --db-max-bytes N   cap on the database size, 0 for none (DB_MAX_BYTES)\n"
        "  --threads N        server threads, 0 for one per CPU (THREADS)\n"
        "  --redis HOST:PORT  the Redis server: its health is checked; it holds the\n"
        "                     idempotency keys with --idempotency redis (REDIS_ADDR)\n"
        "  --redis-url redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]  the same, as a URL, with\n"
        "                     credentials (AUTH) and a database (SELECT) (REDIS_URL)\n"
        "  --idempotency S    memory, sqlite (the --db file) or redis (IDEMPOTENCY; memory)\n"
        "  --idempotency-ttl-s N    how long responses are kept (IDEMPOTENCY_TTL_S; 3600)\n"
        "  --idempotency-lease-s N  how long a key stays locked (IDEMPOTENCY_LEASE_S; 60)\n"
        "  --workers N        generation workers (WORKERS; 2)\n"
        "  --queue N          generations waiting at most (QUEUE; 64); more: 503\n"
        "  --step-ms N        the built-in generator's time per step (STEP_MS; 400)\n"
        "  --heartbeat-ms N   SSE comment heartbeat (HEARTBEAT_MS; 15000)\n"
        "  --max-prompt N     prompt length limit in characters (MAX_PROMPT; 4000)\n"
        "  --max-connections N        open connections at most; more are refused at once\n"
        "                             (MAX_CONNECTIONS; 4096)\n"
        "  --max-connections-per-client N  from one address (MAX_CONNECTIONS_PER_CLIENT; 1024)\n"
        "  --request-head-timeout-s N  a request's line and headers must arrive within this\n"
        "                             (REQUEST_HEAD_TIMEOUT_S; 10)\n"
        "  --jobs-kept N      finished generations kept in memory for late subscribers\n"
        "                     (JOBS_KEPT; 1000); older ones are served from the database\n"
        "  --llm-url URL      an OpenAI-compatible backend, e.g. http://host:port/v1: generations\n"
        "                     stream from its chat completions; its /models is a health check\n"
        "                     (LLM_URL; default: the built-in generator)\n"
        "  --llm-model M      the model to ask for (LLM_MODEL; gpt-4o-mini)\n"
        "  --llm-key-env VAR  the environment variable holding its API key, never logged\n"
        "                     (LLM_KEY_ENV; OPENAI_API_KEY)\n"
        "  --health-interval-ms N   between dependency checks (HEALTH_INTERVAL_MS; 5000)\n"
        "  --health-timeout-ms N    per check (HEALTH_TIMEOUT_MS; 800)\n"
        "  --shutdown-delay-ms N    serve with readiness 503 this long after SIGTERM\n"
        "                           (SHUTDOWN_DELAY_MS; 0)\n"
        "  --version, --help\n",
        out);
}

static bool parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* HOST:PORT into host and port; false when it is not of that form. */
static bool split_host_port(const char *s, char *host, size_t host_len, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    unsigned long long p = 0;
    if (!colon || (size_t)(colon - s) >= host_len || colon == s ||
        !parse_u64(colon + 1, 65535, &p) || p == 0)
        return false;
    snprintf(host, host_len, "%.*s", (int)(colon - s), s);
    *port = (uint16_t)p;
    return true;
}

static int parse_options(int argc, char **argv, options *o)
{
    const char *port = env_or("PORT", "8001"), *max_body = env_or("MAX_BODY_BYTES", "1048576"),
               *db_max = env_or("DB_MAX_BYTES", "0"), *threads = env_or("THREADS", "0"),
               *interval = env_or("HEALTH_INTERVAL_MS", "5000"),
               *timeout = env_or("HEALTH_TIMEOUT_MS", "800"),
               *delay = env_or("SHUTDOWN_DELAY_MS", "0"),
               *idem_ttl = env_or("IDEMPOTENCY_TTL_S", "3600"),
               *idem_lease = env_or("IDEMPOTENCY_LEASE_S", "60"), *workers = env_or("WORKERS", "2"),
               *queue = env_or("QUEUE", "64"), *step = env_or("STEP_MS", "400"),
               *heartbeat = env_or("HEARTBEAT_MS", "15000"),
               *max_prompt = env_or("MAX_PROMPT", "4000"), *jobs_kept = env_or("JOBS_KEPT", "1000"),
               *max_conns = env_or("MAX_CONNECTIONS", "4096"),
               *max_per_client = env_or("MAX_CONNECTIONS_PER_CLIENT", "1024"),
               *head_timeout = env_or("REQUEST_HEAD_TIMEOUT_S", "10");
    o->redis = env_or("REDIS_ADDR", NULL);
    o->idempotency = env_or("IDEMPOTENCY", "memory");
    const char *redis_url = env_or("REDIS_URL", NULL);
    o->llm_url = env_or("LLM_URL", NULL);
    o->llm_model = env_or("LLM_MODEL", "gpt-4o-mini");
    o->llm_key_env = env_or("LLM_KEY_ENV", "OPENAI_API_KEY");
    o->bind = env_or("BIND_ADDRESS", "127.0.0.1");
    o->db = env_or("DB_PATH", "var/generation.db");
    o->log_file = env_or("LOG_FILE", NULL);
    o->log_level = env_or("LOG_LEVEL", "info");
    o->log_format = env_or("LOG_FORMAT", "auto");
    o->service_name = env_or("SERVICE_NAME", "generation-service");
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"db", required_argument, NULL, 'd'},
        {"log-file", required_argument, NULL, 'l'},
        {"log-level", required_argument, NULL, 'L'},
        {"service-name", required_argument, NULL, 's'},
        {"max-body", required_argument, NULL, 'm'},
        {"db-max-bytes", required_argument, NULL, 'D'},
        {"threads", required_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"redis", required_argument, NULL, 'r'},
        {"llm-url", required_argument, NULL, 'u'},
        {"redis-url", required_argument, NULL, 'R'},
        {"idempotency", required_argument, NULL, 'I'},
        {"idempotency-ttl-s", required_argument, NULL, 'X'},
        {"idempotency-lease-s", required_argument, NULL, 'Y'},
        {"workers", required_argument, NULL, 'w'},
        {"queue", required_argument, NULL, 'q'},
        {"step-ms", required_argument, NULL, 'e'},
        {"heartbeat-ms", required_argument, NULL, 'H'},
        {"max-prompt", required_argument, NULL, 'P'},
        {"jobs-kept", required_argument, NULL, 'J'},
        {"log-format", required_argument, NULL, 'F'},
        {"max-connections", required_argument, NULL, 'C'},
        {"max-connections-per-client", required_argument, NULL, 'c'},
        {"request-head-timeout-s", required_argument, NULL, 'E'},
        {"llm-model", required_argument, NULL, 'M'},
        {"llm-key-env", required_argument, NULL, 'K'},
        {"health-interval-ms", required_argument, NULL, 'i'},
        {"health-timeout-ms", required_argument, NULL, 'T'},
        {"shutdown-delay-ms", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            port = optarg;
            break;
        case 'b':
            o->bind = optarg;
            break;
        case 'd':
            o->db = optarg;
            break;
        case 'l':
            o->log_file = optarg;
            break;
        case 'L':
            o->log_level = optarg;
            break;
        case 's':
            o->service_name = optarg;
            break;
        case 'm':
            max_body = optarg;
            break;
        case 'D':
            db_max = optarg;
            break;
        case 't':
            threads = optarg;
            break;
        case 'r':
            o->redis = optarg;
            break;
        case 'R':
            redis_url = optarg;
            break;
        case 'I':
            o->idempotency = optarg;
            break;
        case 'X':
            idem_ttl = optarg;
            break;
        case 'Y':
            idem_lease = optarg;
            break;
        case 'w':
            workers = optarg;
            break;
        case 'q':
            queue = optarg;
            break;
        case 'e':
            step = optarg;
            break;
        case 'H':
            heartbeat = optarg;
            break;
        case 'P':
            max_prompt = optarg;
            break;
        case 'J':
            jobs_kept = optarg;
            break;
        case 'F':
            o->log_format = optarg;
            break;
        case 'C':
            max_conns = optarg;
            break;
        case 'c':
            max_per_client = optarg;
            break;
        case 'E':
            head_timeout = optarg;
            break;
        case 'M':
            o->llm_model = optarg;
            break;
        case 'K':
            o->llm_key_env = optarg;
            break;
        case 'u':
            o->llm_url = optarg;
            break;
        case 'i':
            interval = optarg;
            break;
        case 'T':
            timeout = optarg;
            break;
        case 'S':
            delay = optarg;
            break;
        case 'V':
            puts("generation-service " GS_VERSION " (o11y " O11Y_VERSION_STRING ")");
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (redis_url) {
        /* Never echo the URL: it may carry a password. */
        if (strlen(redis_url) + 4 > sizeof o->redis_buf ||
            o11y_redis_parse_url(redis_url, o->redis_buf, sizeof o->redis_buf, &o->redis_target) !=
                O11Y_OK) {
            fprintf(stderr,
                    "generation-service: --redis-url takes "
                    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]%s\n",
                    strncmp(redis_url, "rediss://", 9) == 0
                        ? " (rediss:// needs a hiredis built with TLS, which this one is not)"
                        : "");
            return 2;
        }
        o->redis = "url";
    } else if (o->redis) {
        char *host = o->redis_buf;
        uint16_t redis_port;
        if (!split_host_port(o->redis, host, sizeof o->redis_buf, &redis_port)) {
            fprintf(stderr, "generation-service: --redis takes HOST:PORT\n");
            return 2;
        }
        o->redis_target = (o11y_redis_target){.host = host, .port = redis_port};
    }
    if (strcmp(o->idempotency, "memory") && strcmp(o->idempotency, "sqlite") &&
        strcmp(o->idempotency, "redis")) {
        fprintf(stderr, "generation-service: --idempotency takes memory, sqlite or redis\n");
        return 2;
    }
    if (strcmp(o->idempotency, "redis") == 0 && !o->redis) {
        fprintf(stderr, "generation-service: --idempotency redis needs --redis or --redis-url\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "generation-service: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    /* Each numeric option with its bounds, so an error names the option it is about. */
    const struct {
        const char *flag, *value;
        unsigned long long min, max, *out;
    } numbers[] = {
        {"--port", port, 0, 65535, &o->port},
        {"--max-body", max_body, 1, 1ull << 34, &o->max_body},
        {"--db-max-bytes", db_max, 0, 1ull << 50, &o->db_max_bytes},
        {"--threads", threads, 0, 256, &o->threads},
        {"--health-interval-ms", interval, 1, 86400000, &o->health_interval_ms},
        {"--health-timeout-ms", timeout, 1, 600000, &o->health_timeout_ms},
        {"--shutdown-delay-ms", delay, 0, 600000, &o->shutdown_delay_ms},
        {"--idempotency-ttl-s", idem_ttl, 1, 30 * 86400, &o->idem_ttl_s},
        {"--idempotency-lease-s", idem_lease, 1, 86400, &o->idem_lease_s},
        {"--workers", workers, 1, 64, &o->workers},
        {"--queue", queue, 1, 100000, &o->queue},
        {"--step-ms", step, 1, 600000, &o->step_ms},
        {"--heartbeat-ms", heartbeat, 1, 3600000, &o->heartbeat_ms},
        {"--max-prompt", max_prompt, 1, 1000000, &o->max_prompt},
        {"--jobs-kept", jobs_kept, 1, 1000000, &o->jobs_kept},
        {"--max-connections", max_conns, 1, 1000000, &o->max_connections},
        {"--max-connections-per-client", max_per_client, 1, 1000000, &o->max_per_client},
        {"--request-head-timeout-s", head_timeout, 1, 3600, &o->head_timeout_s},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        if (!parse_u64(numbers[i].value, numbers[i].max, numbers[i].out) ||
            *numbers[i].out < numbers[i].min) {
            fprintf(stderr, "generation-service: %s takes a whole number from %llu to %llu\n",
                    numbers[i].flag, numbers[i].min, numbers[i].max);
            return 2;
        }
    }
    return -1;
}

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
    options o = {0};
    int rc = parse_options(argc, argv, &o);
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
    gs_llm llm = {.base_url = o.llm_url,
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
        st = o11y_mhd_run(svc, &mc);
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
    gs_jobs_stop(app.jobs);    /* after the server: no request can reach a job any more */
    o11y_service_destroy(svc); /* stops the health checks (one uses the store); flushes the log */
    gs_store_close(store);
    o11y_idem_store_destroy(idem);
    if (st != O11Y_OK)
        fprintf(stderr, "generation-service: %s\n", o11y_strerror(st));
    return st == O11Y_OK && rc <= 0 ? 0 : 1;
}
