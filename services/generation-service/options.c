/* options.c — see options.h. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum kind { TEXT, NUMBER, FLAG_HELP, FLAG_VERSION } kind;

/* One flag: --name, its environment variable, its default, and where it goes. */
typedef struct flag {
    const char *name;
    const char *env;
    const char *fallback; /* the default, as text; NULL: unset */
    kind kind;
    size_t at;                   /* offsetof(options, field) */
    unsigned long long min, max; /* NUMBER */
    const char *arg;             /* the argument's name in --help */
    const char *help;
} flag;

#define T(name, env, def, field, arg, help)                                                        \
    {                                                                                              \
        name, env, def, TEXT, offsetof(options, field), 0, 0, arg, help                            \
    }
#define N(name, env, def, field, lo, hi, help)                                                     \
    {                                                                                              \
        name, env, def, NUMBER, offsetof(options, field), lo, hi, "N", help                        \
    }

static const flag flags[] = {
    N("port", "PORT", "8001", port, 0, 65535, "listen port (0: any free one)"),
    T("bind", "BIND_ADDRESS", "127.0.0.1", bind, "ADDR", "listen address"),
    T("db", "DB_PATH", "var/generation.db", db, "PATH", "the SQLite database"),
    T("log-file", "LOG_FILE", NULL, log_file, "PATH",
      "append log lines to PATH, reopened on SIGHUP (default: standard output)"),
    T("log-level", "LOG_LEVEL", "info", log_level, "LEVEL", "debug, info, warn or error"),
    T("log-format", "LOG_FORMAT", "auto", log_format, "F",
      "json, pretty, or auto: pretty on a terminal, else json"),
    T("service-name", "SERVICE_NAME", "generation-service", service_name, "S",
      "the name in X-Service and log lines"),
    N("max-body", "MAX_BODY_BYTES", "1048576", max_body, 1, 1ull << 34, "request body limit"),
    N("db-max-bytes", "DB_MAX_BYTES", "0", db_max_bytes, 0, 1ull << 50,
      "cap on the database's size, idempotency table included; 0: none"),
    N("threads", "THREADS", "0", threads, 0, 256, "server threads; 0: one per CPU"),
    T("redis", "REDIS_ADDR", NULL, redis, "HOST:PORT",
      "the Redis server: its health is checked; it holds the idempotency keys with "
      "--idempotency redis"),
    T("redis-url", "REDIS_URL", NULL, redis_url, "URL",
      "the same as redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]: AUTH and SELECT"),
    T("idempotency", "IDEMPOTENCY", "memory", idempotency, "S",
      "memory, sqlite (a table in --db) or redis"),
    N("idempotency-ttl-s", "IDEMPOTENCY_TTL_S", "3600", idem_ttl_s, 1, 30 * 86400,
      "how long answers are kept"),
    N("idempotency-lease-s", "IDEMPOTENCY_LEASE_S", "60", idem_lease_s, 1, 86400,
      "how long a key stays locked"),
    N("workers", "WORKERS", "2", workers, 1, 64, "generation workers"),
    N("queue", "QUEUE", "64", queue, 1, 100000, "generations waiting at most; more: 503"),
    N("step-ms", "STEP_MS", "400", step_ms, 1, 600000, "the built-in generator's time per step"),
    N("heartbeat-ms", "HEARTBEAT_MS", "15000", heartbeat_ms, 1, 3600000, "SSE comment heartbeat"),
    N("max-prompt", "MAX_PROMPT", "4000", max_prompt, 1, 1000000, "prompt limit in characters"),
    N("jobs-kept", "JOBS_KEPT", "1000", jobs_kept, 1, 1000000,
      "finished generations kept in memory for late subscribers"),
    N("max-connections", "MAX_CONNECTIONS", "4096", max_connections, 1, 1000000,
      "open connections at most; more are refused at once"),
    N("max-connections-per-client", "MAX_CONNECTIONS_PER_CLIENT", "1024", max_per_client, 1,
      1000000, "open connections from one address at most"),
    N("request-head-timeout-s", "REQUEST_HEAD_TIMEOUT_S", "10", head_timeout_s, 1, 3600,
      "a request's line and headers must arrive within this"),
    T("rate-limit-generations", "RATE_LIMIT_GENERATIONS", "30/60", rate_limit_generations, "Q/W",
      "POST /generations per client: Q per W seconds; 0: off"),
    T("rate-limit-all", "RATE_LIMIT_ALL", "0", rate_limit_all, "Q/W",
      "every route per client but /health*, /metrics* and preflights; 0: off"),
    T("rate-limit-store", "RATE_LIMIT_STORE", "memory", rate_limit_store, "S",
      "memory, or redis (shared by instances; --redis or --redis-url)"),
    T("trusted-proxies", "TRUSTED_PROXIES", NULL, trusted_proxies, "CIDR,...",
      "proxies whose X-Forwarded-For names the client"),
    T("server", "SERVER", "mhd", server, "mhd|h2o",
      "the HTTP server library: libmicrohttpd, or h2o (HTTP/2: h2c, or TLS with --tls-cert)"),
    T("tls-cert", "TLS_CERT", NULL, tls_cert, "PEM", "certificate chain (with --server h2o)"),
    T("tls-key", "TLS_KEY", NULL, tls_key, "PEM", "its private key (with --server h2o)"),
    T("console-dir", "CONSOLE_DIR", GS_DEFAULT_CONSOLE_DIR, console_dir, "DIR",
      "the web console's files, served at /console (default: the one make built)"),
    T("cors-origins", "CORS_ORIGINS", NULL, cors_origins, "ORIGIN,...",
      "browsers' origins allowed to call (https://app.example.com,...), or *; default: CORS off"),
    T("client-logs", "CLIENT_LOGS", "on", client_logs, "on|off",
      "POST /client-logs: the frontend kit's log records into this log"),
    T("rate-limit-client-logs", "RATE_LIMIT_CLIENT_LOGS", "10/1", rate_limit_client_logs, "Q/W",
      "POST /client-logs per client; 0: off"),
    T("llm-url", "LLM_URL", NULL, llm_url, "URL",
      "an OpenAI-compatible backend (http://host:port/v1); default: the built-in generator"),
    T("llm-model", "LLM_MODEL", "gpt-4o-mini", llm_model, "M", "the model to ask for"),
    T("llm-key-env", "LLM_KEY_ENV", "OPENAI_API_KEY", llm_key_env, "VAR",
      "the environment variable holding its API key (never logged)"),
    N("health-interval-ms", "HEALTH_INTERVAL_MS", "5000", health_interval_ms, 1, 86400000,
      "between dependency checks"),
    N("health-timeout-ms", "HEALTH_TIMEOUT_MS", "800", health_timeout_ms, 1, 600000, "per check"),
    N("shutdown-delay-ms", "SHUTDOWN_DELAY_MS", "0", shutdown_delay_ms, 0, 600000,
      "after SIGTERM, serve this long with readiness 503"),
    {"version", NULL, NULL, FLAG_VERSION, 0, 0, 0, NULL, "print the version"},
    {"help", NULL, NULL, FLAG_HELP, 0, 0, 0, NULL, "print this"},
};
enum { N_FLAGS = sizeof flags / sizeof flags[0] };

#undef T
#undef N

void gs_options_usage(FILE *out)
{
    fputs("usage: generation-service [options]   (each also from its environment variable)\n", out);
    for (size_t i = 0; i < N_FLAGS; i++) {
        const flag *f = &flags[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        fprintf(out, "  %-34s %s", left, f->help);
        if (f->env)
            fprintf(out, " (%s%s%s)", f->env, f->fallback ? "; default " : "",
                    f->fallback ? f->fallback : "");
        fputc('\n', out);
    }
}

static bool parse_number(const char *s, unsigned long long min, unsigned long long max,
                         unsigned long long *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Sets flag f from text s (a default, the environment or argv); false after saying why. */
static bool set(const flag *f, const char *s, options *o)
{
    char *base = (char *)o;
    if (f->kind == TEXT) {
        memcpy(base + f->at, &s, sizeof s);
        return true;
    }
    unsigned long long v;
    if (!parse_number(s, f->min, f->max, &v)) {
        fprintf(stderr, "generation-service: --%s takes a whole number from %llu to %llu\n",
                f->name, f->min, f->max);
        return false;
    }
    memcpy(base + f->at, &v, sizeof v);
    return true;
}

static bool split_host_port(const char *s, char *host, size_t host_len, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    unsigned long long p = 0;
    if (!colon || (size_t)(colon - s) >= host_len || colon == s ||
        !parse_number(colon + 1, 1, 65535, &p))
        return false;
    snprintf(host, host_len, "%.*s", (int)(colon - s), s);
    *port = (uint16_t)p;
    return true;
}

/* The choices and the combinations the table cannot say. */
static int check(options *o)
{
    if (o->redis_url) {
        /* Never echo the URL: it may carry a password. */
        if (strlen(o->redis_url) + 4 > sizeof o->redis_buf ||
            o11y_redis_parse_url(o->redis_url, o->redis_buf, sizeof o->redis_buf,
                                 &o->redis_target) != O11Y_OK) {
            fprintf(stderr,
                    "generation-service: --redis-url takes "
                    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]%s\n",
                    strncmp(o->redis_url, "rediss://", 9) == 0
                        ? " (rediss:// needs a hiredis built with TLS, which this one is not)"
                        : "");
            return 2;
        }
    } else if (o->redis) {
        uint16_t port;
        if (!split_host_port(o->redis, o->redis_buf, sizeof o->redis_buf, &port)) {
            fprintf(stderr, "generation-service: --redis takes HOST:PORT\n");
            return 2;
        }
        o->redis_target = (o11y_redis_target){.host = o->redis_buf, .port = port};
    }
    if (strcmp(o->idempotency, "memory") && strcmp(o->idempotency, "sqlite") &&
        strcmp(o->idempotency, "redis")) {
        fprintf(stderr, "generation-service: --idempotency takes memory, sqlite or redis\n");
        return 2;
    }
    if (strcmp(o->idempotency, "redis") == 0 && !o->redis_target.host) {
        fprintf(stderr, "generation-service: --idempotency redis needs --redis or --redis-url\n");
        return 2;
    }
    if (o11y_ratelimit_parse(o->rate_limit_generations, &o->rl_generations_q,
                             &o->rl_generations_w) != O11Y_OK) {
        fprintf(stderr, "generation-service: --rate-limit-generations takes Q/W (a quota per "
                        "window in seconds, e.g. 30/60) or 0\n");
        return 2;
    }
    if (o11y_ratelimit_parse(o->rate_limit_all, &o->rl_all_q, &o->rl_all_w) != O11Y_OK) {
        fprintf(stderr, "generation-service: --rate-limit-all takes Q/W (e.g. 600/60) or 0\n");
        return 2;
    }
    if (o11y_ratelimit_parse(o->rate_limit_client_logs, &o->rl_logs_q, &o->rl_logs_w) != O11Y_OK) {
        fprintf(stderr,
                "generation-service: --rate-limit-client-logs takes Q/W (e.g. 10/1) or 0\n");
        return 2;
    }
    if (strcmp(o->server, "mhd") && strcmp(o->server, "h2o")) {
        fprintf(stderr, "generation-service: --server takes mhd or h2o\n");
        return 2;
    }
    if ((o->tls_cert || o->tls_key) && (!o->tls_cert || !o->tls_key || strcmp(o->server, "h2o"))) {
        fprintf(stderr, "generation-service: --tls-cert and --tls-key go together, with "
                        "--server h2o\n");
        return 2;
    }
    if (strcmp(o->client_logs, "on") && strcmp(o->client_logs, "off")) {
        fprintf(stderr, "generation-service: --client-logs takes on or off\n");
        return 2;
    }
    if (strcmp(o->rate_limit_store, "memory") && strcmp(o->rate_limit_store, "redis")) {
        fprintf(stderr, "generation-service: --rate-limit-store takes memory or redis\n");
        return 2;
    }
    if (strcmp(o->rate_limit_store, "redis") == 0 && !o->redis_target.host) {
        fprintf(stderr, "generation-service: --rate-limit-store redis needs --redis or "
                        "--redis-url\n");
        return 2;
    }
    return -1;
}

int gs_options_parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < N_FLAGS; i++) {
        const flag *f = &flags[i];
        if (f->kind != TEXT && f->kind != NUMBER)
            continue;
        const char *env = f->env ? getenv(f->env) : NULL;
        const char *v = env && *env ? env : f->fallback;
        if (v && !set(f, v, o))
            return 2;
    }
    struct option longopts[N_FLAGS + 1];
    for (size_t i = 0; i < N_FLAGS; i++)
        longopts[i] = (struct option){
            flags[i].name,
            flags[i].kind == TEXT || flags[i].kind == NUMBER ? required_argument : no_argument,
            NULL, (int)i};
    longopts[N_FLAGS] = (struct option){NULL, 0, NULL, 0};
    int c;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c < 0 || c >= N_FLAGS) {
            gs_options_usage(stderr);
            return 2;
        }
        const flag *f = &flags[c];
        if (f->kind == FLAG_HELP) {
            gs_options_usage(stdout);
            return 0;
        }
        if (f->kind == FLAG_VERSION) {
            puts("generation-service " GS_VERSION " (o11y " O11Y_VERSION_STRING ")");
            return 0;
        }
        if (!set(f, optarg, o))
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "generation-service: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return check(o);
}
