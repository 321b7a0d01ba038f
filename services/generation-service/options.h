/* options.h — generation-service's command line and environment: every flag described once,
 * in options.c's table (name, environment variable, default, bounds, help), from which parsing,
 * the environment fallbacks and --help all come. */
#ifndef GS_OPTIONS_H
#define GS_OPTIONS_H

#include <o11y/redis.h>

#include <stdio.h>

#define GS_VERSION "0.1.0"

typedef struct options {
    const char *bind;
    const char *db;
    const char *log_file; /* NULL: standard output */
    const char *log_level;
    const char *log_format;
    const char *service_name;
    const char *redis;              /* --redis HOST:PORT, or NULL */
    const char *redis_url;          /* --redis-url, or NULL */
    o11y_redis_target redis_target; /* from either; host NULL: none */
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
    const char *rate_limit_generations, *rate_limit_all;             /* "Q/W" or "0" */
    unsigned rl_generations_q, rl_generations_w, rl_all_q, rl_all_w; /* parsed; q 0: off */
    const char *rate_limit_store;                                    /* memory or redis */
    const char *trusted_proxies;                                     /* CIDRs, or NULL */
    const char *cors_origins;           /* comma-separated origins or "*", NULL: CORS off */
    const char *console_dir;            /* the built web console, served at /console */
    const char *server;                 /* mhd or h2o */
    const char *tls_cert, *tls_key;     /* PEM files (h2o: HTTP/2 by ALPN) */
    const char *client_logs;            /* on or off: the frontend log intake */
    const char *rate_limit_client_logs; /* "Q/W" or "0" */
    unsigned rl_logs_q, rl_logs_w;
} options;

/* Fills o from the defaults, then the environment, then argv. Returns -1 to go on, or the exit
 * status to end with (0 after --help or --version, 2 after an error, said on stderr naming the
 * flag; a value that may hold a secret is never echoed). */
int gs_options_parse(int argc, char **argv, options *o);
/* The --help text, generated from the table. */
void gs_options_usage(FILE *out);

#endif
