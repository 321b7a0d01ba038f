/* main.c — generation-service: flags and environment, then one o11y service served over
 * libmicrohttpd until SIGINT/SIGTERM. */
#include "generations.h"
#include "jobs.h"
#include "routes.h"
#include "store.h"

#include <o11y/o11y.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GS_VERSION "0.1.0"

typedef struct options {
    const char *bind;
    const char *db;
    const char *log_file;
    const char *log_level;
    const char *service_name;
    const char *redis;   /* host:port, or NULL */
    const char *idempotency; /* memory, sqlite or redis */
    const char *llm_url; /* an OpenAI-compatible base URL (…/v1), or NULL: built-in generator */
    const char *llm_model;
    const char *llm_key_env;
    unsigned long long port, max_body, db_max_bytes, threads;
    unsigned long long health_interval_ms, health_timeout_ms, shutdown_delay_ms;
    unsigned long long idem_ttl_s, idem_lease_s;
    unsigned long long workers, queue, step_ms, heartbeat_ms, max_prompt;
} options;

static void usage(FILE *out)
{
    fputs("usage: generation-service [options]\n"
          "  --port N           listen port (PORT; default 8001)\n"
          "  --bind ADDR        listen address (BIND_ADDRESS; default 127.0.0.1)\n"
          "  --db PATH          SQLite database (DB_PATH; default var/generation.db)\n"
          "  --log-file PATH    append log lines to PATH, reopened on SIGHUP (LOG_FILE;"
          " default stdout)\n"
          "  --log-level LEVEL  debug, info, warn, error (LOG_LEVEL; default info)\n"
          "  --service-name S   name in X-Service and log lines (SERVICE_NAME;"
          " default generation-service)\n"
          "  --max-body BYTES   request body limit (MAX_BODY_BYTES; default 1048576)\n"
          "  --db-max-bytes N   cap on the database size, 0 for none (DB_MAX_BYTES)\n"
          "  --threads N        server threads, 0 for one per CPU (THREADS)\n"
          "  --redis HOST:PORT  the Redis server: its health is checked; it holds the\n"
          "                     idempotency keys with --idempotency redis (REDIS_ADDR)\n"
          "  --redis-url redis://HOST:PORT  the same, as a URL (REDIS_URL)\n"
          "  --idempotency S    memory, sqlite (the --db file) or redis (IDEMPOTENCY; memory)\n"
          "  --idempotency-ttl-s N    how long responses are kept (IDEMPOTENCY_TTL_S; 3600)\n"
          "  --idempotency-lease-s N  how long a key stays locked (IDEMPOTENCY_LEASE_S; 60)\n"
          "  --workers N        generation workers (WORKERS; 2)\n"
          "  --queue N          generations waiting at most (QUEUE; 64); more: 503\n"
          "  --step-ms N        the built-in generator's time per step (STEP_MS; 400)\n"
          "  --heartbeat-ms N   SSE comment heartbeat (HEARTBEAT_MS; 15000)\n"
          "  --max-prompt N     prompt length limit in characters (MAX_PROMPT; 4000)\n"
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

static int parse_options(int argc, char **argv, options *o)
{
    const char *port = env_or("PORT", "8001"), *max_body = env_or("MAX_BODY_BYTES", "1048576"),
               *db_max = env_or("DB_MAX_BYTES", "0"), *threads = env_or("THREADS", "0"),
               *interval = env_or("HEALTH_INTERVAL_MS", "5000"),
               *timeout = env_or("HEALTH_TIMEOUT_MS", "800"),
               *delay = env_or("SHUTDOWN_DELAY_MS", "0"),
               *idem_ttl = env_or("IDEMPOTENCY_TTL_S", "3600"),
               *idem_lease = env_or("IDEMPOTENCY_LEASE_S", "60"),
               *workers = env_or("WORKERS", "2"), *queue = env_or("QUEUE", "64"),
               *step = env_or("STEP_MS", "400"), *heartbeat = env_or("HEARTBEAT_MS", "15000"),
               *max_prompt = env_or("MAX_PROMPT", "4000");
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
    o->service_name = env_or("SERVICE_NAME", "generation-service");
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},       {"bind", required_argument, NULL, 'b'},
        {"db", required_argument, NULL, 'd'},         {"log-file", required_argument, NULL, 'l'},
        {"log-level", required_argument, NULL, 'L'},  {"service-name", required_argument, NULL, 's'},
        {"max-body", required_argument, NULL, 'm'},   {"db-max-bytes", required_argument, NULL, 'D'},
        {"threads", required_argument, NULL, 't'},    {"version", no_argument, NULL, 'V'},
        {"redis", required_argument, NULL, 'r'},      {"llm-url", required_argument, NULL, 'u'},
        {"redis-url", required_argument, NULL, 'R'},  {"idempotency", required_argument, NULL, 'I'},
        {"idempotency-ttl-s", required_argument, NULL, 'X'},
        {"idempotency-lease-s", required_argument, NULL, 'Y'},
        {"workers", required_argument, NULL, 'w'},   {"queue", required_argument, NULL, 'q'},
        {"step-ms", required_argument, NULL, 'e'},   {"heartbeat-ms", required_argument, NULL, 'H'},
        {"max-prompt", required_argument, NULL, 'P'},
        {"llm-model", required_argument, NULL, 'M'}, {"llm-key-env", required_argument, NULL, 'K'},
        {"health-interval-ms", required_argument, NULL, 'i'},
        {"health-timeout-ms", required_argument, NULL, 'T'},
        {"shutdown-delay-ms", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': port = optarg; break;
        case 'b': o->bind = optarg; break;
        case 'd': o->db = optarg; break;
        case 'l': o->log_file = optarg; break;
        case 'L': o->log_level = optarg; break;
        case 's': o->service_name = optarg; break;
        case 'm': max_body = optarg; break;
        case 'D': db_max = optarg; break;
        case 't': threads = optarg; break;
        case 'r': o->redis = optarg; break;
        case 'R': redis_url = optarg; break;
        case 'I': o->idempotency = optarg; break;
        case 'X': idem_ttl = optarg; break;
        case 'Y': idem_lease = optarg; break;
        case 'w': workers = optarg; break;
        case 'q': queue = optarg; break;
        case 'e': step = optarg; break;
        case 'H': heartbeat = optarg; break;
        case 'P': max_prompt = optarg; break;
        case 'M': o->llm_model = optarg; break;
        case 'K': o->llm_key_env = optarg; break;
        case 'u': o->llm_url = optarg; break;
        case 'i': interval = optarg; break;
        case 'T': timeout = optarg; break;
        case 'S': delay = optarg; break;
        case 'V': puts("generation-service " GS_VERSION " (o11y " O11Y_VERSION_STRING ")"); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (redis_url) {
        if (strncmp(redis_url, "redis://", 8) != 0) {
            fprintf(stderr, "generation-service: --redis-url takes redis://HOST:PORT\n");
            return 2;
        }
        o->redis = redis_url + 8;
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
    if (!parse_u64(port, 65535, &o->port) || !parse_u64(max_body, 1ull << 34, &o->max_body) ||
        o->max_body == 0 || !parse_u64(db_max, 1ull << 50, &o->db_max_bytes) ||
        !parse_u64(threads, 256, &o->threads) ||
        !parse_u64(interval, 86400000, &o->health_interval_ms) || o->health_interval_ms == 0 ||
        !parse_u64(timeout, 600000, &o->health_timeout_ms) || o->health_timeout_ms == 0 ||
        !parse_u64(delay, 600000, &o->shutdown_delay_ms) ||
        !parse_u64(idem_ttl, 30 * 86400, &o->idem_ttl_s) || o->idem_ttl_s == 0 ||
        !parse_u64(idem_lease, 86400, &o->idem_lease_s) || o->idem_lease_s == 0 ||
        !parse_u64(workers, 64, &o->workers) || o->workers == 0 ||
        !parse_u64(queue, 100000, &o->queue) || o->queue == 0 ||
        !parse_u64(step, 600000, &o->step_ms) || o->step_ms == 0 ||
        !parse_u64(heartbeat, 3600000, &o->heartbeat_ms) || o->heartbeat_ms == 0 ||
        !parse_u64(max_prompt, 1000000, &o->max_prompt) || o->max_prompt == 0) {
        fprintf(stderr, "generation-service: numeric options take decimal numbers in range\n");
        return 2;
    }
    return -1;
}

/* HOST:PORT into host and port; false when it is not of that form. */
static bool split_host_port(const char *s, char *host, size_t host_len, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    unsigned long long p = 0;
    if (!colon || (size_t)(colon - s) >= host_len || colon == s || !parse_u64(colon + 1, 65535, &p) ||
        p == 0)
        return false;
    snprintf(host, host_len, "%.*s", (int)(colon - s), s);
    *port = (uint16_t)p;
    return true;
}

/* CONTRACT section 5: database (critical); redis and llm (optional) when configured. */
static o11y_status register_checks(o11y_service *svc, const options *o)
{
    o11y_health *h = o11y_service_health(svc);
    o11y_health_check_opts c = {.name = "database", .critical = true,
                                .timeout_ms = (unsigned)o->health_timeout_ms,
                                .interval_ms = (unsigned)o->health_interval_ms};
    o11y_status st = o11y_health_add_sqlite(h, &c, o->db);
    if (st == O11Y_OK && o->redis) {
        char host[256];
        uint16_t port;
        if (!split_host_port(o->redis, host, sizeof host, &port)) {
            fprintf(stderr, "generation-service: --redis takes HOST:PORT\n");
            return O11Y_EINVAL;
        }
        c.name = "redis";
        c.critical = strcmp(o->idempotency, "redis") == 0; /* critical when it holds the keys */
        st = o11y_health_add_redis(h, &c, host, port);
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
        st = o11y_idem_store_sqlite(o->db, out);
    } else if (strcmp(o->idempotency, "redis") == 0) {
        char host[256];
        uint16_t port;
        st = split_host_port(o->redis, host, sizeof host, &port)
                 ? o11y_idem_store_redis(host, port, out)
                 : O11Y_EINVAL;
    } else {
        st = o11y_idem_store_memory(NULL, out);
    }
    if (st != O11Y_OK)
        return st;
    o11y_idem_config c = {.store = *out, .ttl_s = (unsigned)o->idem_ttl_s,
                          .lease_s = (unsigned)o->idem_lease_s};
    return o11y_service_idempotency(svc, &c);
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0)
        return rc;

    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    cfg.service_name = o.service_name;
    cfg.version = GS_VERSION;
    cfg.max_body_bytes = o.max_body;
    cfg.log.file_path = o.log_file;
    if (o11y_log_level_parse(o.log_level, &cfg.log.min_level) != O11Y_OK) {
        fprintf(stderr, "generation-service: unknown log level '%s'\n", o.log_level);
        return 2;
    }
    o11y_service *svc;
    o11y_status st = o11y_service_create(&cfg, &svc);
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
    gs_llm llm = {.base_url = o.llm_url, .model = o.llm_model,
                  .api_key = getenv(o.llm_key_env), .timeout_ms = 120000};
    gs_jobs_config jc = {.workers = (unsigned)o.workers, .queue_cap = (unsigned)o.queue,
                         .step_ms = (unsigned)o.step_ms, .heartbeat_ms = (unsigned)o.heartbeat_ms,
                         .llm = o.llm_url ? &llm : NULL};
    gs_app app = {.store = store, .jobs = gs_jobs_start(store, &jc),
                  .max_prompt_chars = (size_t)o.max_prompt,
                  .default_model = o.llm_url ? o.llm_model : "builtin-scriptwriter"};
    st = app.jobs ? gs_routes_register(svc, store) : O11Y_ENOMEM;
    if (st == O11Y_OK)
        st = gs_generation_routes(svc, &app);
    if (st == O11Y_OK)
        st = register_checks(svc, &o);
    if (st == O11Y_OK)
        st = open_idempotency(svc, &o, &idem);
    if (st == O11Y_OK) {
        o11y_mhd_config mc;
        o11y_mhd_config_init(&mc);
        mc.bind_address = o.bind;
        mc.port = (uint16_t)o.port;
        mc.threads = (unsigned)o.threads;
        mc.shutdown_delay_ms = (unsigned)o.shutdown_delay_ms;
        st = o11y_mhd_run(svc, &mc);
        if (st != O11Y_OK)
            o11y_log_error("cannot start the server", O11Y_STR("bind", o.bind),
                           O11Y_INT("port", (int64_t)o.port), O11Y_STR("error", o11y_strerror(st)));
    }
    gs_jobs_stop(app.jobs); /* after the server: no request can reach a job any more */
    gs_store_close(store);
    o11y_service_destroy(svc); /* flushes every queued log line */
    o11y_idem_store_destroy(idem);
    if (st != O11Y_OK)
        fprintf(stderr, "generation-service: %s\n", o11y_strerror(st));
    return st == O11Y_OK ? 0 : 1;
}
