/* genctl — generation-service from the command line, on the client kit (o11y/client.h): every
 * call carries one trace (printed with every failure), creates are idempotent across a Ctrl-C
 * (keys kept in a file until the service has answered), errors map to exit codes by class. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <o11y/client.h>
#include <o11y/log.h>
#include <o11y/trace.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Exit codes, by what a script would do about them. */
enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,      /* the generation ended failed or cancelled */
    EXIT_USAGE = 2,       /* genctl was called wrong */
    EXIT_NOT_FOUND = 3,   /* 404: the thing named does not exist */
    EXIT_REJECTED = 4,    /* another 4xx: fix the request */
    EXIT_UNAVAILABLE = 5, /* 5xx or 429 after the retries: try later */
    EXIT_NETWORK = 6,     /* no answer: the service is not reachable */
    EXIT_LOCAL = 7,       /* a local problem: the key file, memory */
};

typedef struct genctl {
    o11y_client *client;
    o11y_client_keys *keys;
    o11y_trace_ctx trace; /* the command's span: every call is a child of it */
    bool json;
    const char *idempotency_key; /* --idempotency-key: used instead of a managed one */
    const char *url;
} genctl;

static const char usage_text[] =
    "usage: genctl [options] COMMAND ...\n"
    "commands:\n"
    "  project create NAME\n"
    "  project get PROJECT\n"
    "  episode create --project P --number N --title T [--content-file F]\n"
    "  episode list --project P [--limit N] [--after NUMBER] [--content]\n"
    "  episode get --project P --episode E\n"
    "  episode update --project P --episode E [--number N] [--title T] [--content-file F]\n"
    "  episode delete --project P --episode E\n"
    "  generate --project P --episode E --prompt TEXT [--model M] [--no-follow]\n"
    "  follow GENERATION      follow a generation until it ends\n"
    "  cancel GENERATION\n"
    "  health\n"
    "options:\n"
    "  --url URL              the service (GENCTL_URL; default http://127.0.0.1:8001)\n"
    "  --json                 one JSON document on stdout, with the call's traceId\n"
    "  --idempotency-key K    the key of a create (default: one kept per command in the key\n"
    "                         file until the service answers, so a rerun after Ctrl-C does not\n"
    "                         create twice)\n"
    "  --keys-file PATH       (GENCTL_KEYS_FILE; default $XDG_STATE_HOME/genctl/keys)\n"
    "  --log-file PATH        genctl's own log lines, JSON (GENCTL_LOG_FILE; default: none)\n"
    "  --timeout-ms N         a call's deadline with its retries (default 30000)\n"
    "exit codes: 0 ok, 1 generation failed or cancelled, 2 usage, 3 not found, 4 rejected\n"
    "(another 4xx), 5 service unavailable (5xx, 429), 6 no answer, 7 local error\n";

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "genctl: %s\n", why);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

static int exit_for(const o11y_client_response *r)
{
    int s = r->error.status;
    if (s == 0)
        return EXIT_NETWORK;
    if (s == 404)
        return EXIT_NOT_FOUND;
    if (s == 429 || s >= 500)
        return EXIT_UNAVAILABLE;
    return EXIT_REJECTED;
}

/* Prints the outcome of a call: the body (or --json document) on success, the typed error on
 * stderr (and in the --json document) otherwise, always with the trace id. */
static int report(const genctl *g, o11y_status st, const o11y_client_response *r, json_t *data)
{
    if (st == O11Y_OK) {
        if (g->json) {
            json_t *doc = json_pack("{s:b,s:s,s:i,s:O}", "ok", 1, "traceId", r->trace_id, "status",
                                    r->status, "data", data ? data : json_null());
            json_dumpf(doc, stdout, JSON_COMPACT);
            fputc('\n', stdout);
            json_decref(doc);
        } else if (data) {
            json_dumpf(data, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
        }
        return EXIT_OK;
    }
    if (st != O11Y_EBACKEND) {
        fprintf(stderr, "genctl: %s (trace %s)\n", o11y_strerror(st), g->trace.trace_id);
        return EXIT_LOCAL;
    }
    const o11y_client_error *e = &r->error;
    if (g->json) {
        json_t *details = e->details ? json_loads(e->details, 0, NULL) : NULL;
        json_t *doc = json_pack("{s:b,s:s,s:i,s:{s:i,s:s,s:s?,s:s,s:b,s:s?,s:o?}}", "ok", 0,
                                "traceId", e->trace_id, "status", e->status, "error", "status",
                                e->status, "code", e->code, "message", e->message, "userMessage",
                                e->user_message, "retryable", e->retryable, "timestamp",
                                e->timestamp[0] ? e->timestamp : NULL, "details", details);
        json_dumpf(doc, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(doc);
    }
    fprintf(stderr, "genctl: %s\n  %s", e->user_message, e->code);
    if (e->message)
        fprintf(stderr, ": %s", e->message);
    if (e->status)
        fprintf(stderr, " (HTTP %d)", e->status);
    fprintf(stderr, "\n  trace %s\n", e->trace_id);
    return exit_for(r);
}

/* A call; its body parsed into *data (NULL when not JSON). */
static o11y_status call(genctl *g, const char *method, const char *path, json_t *body,
                        const char *key, o11y_client_response *r, json_t **data)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    o11y_client_request rq = {
        .method = method, .path = path, .body = text, .idempotency_key = key, .trace = &g->trace};
    o11y_status st = o11y_client_call(g->client, &rq, r);
    free(text);
    *data = st == O11Y_OK && r->body && r->body_len ? json_loads(r->body, 0, NULL) : NULL;
    return st;
}

/* A 64-bit FNV-1a of the text, for naming an operation by what it sends. */
static unsigned long long fnv1a(const char *s)
{
    unsigned long long h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* A create: the same command (URL, route, body) reuses its key until the service has answered
 * in a way that spends it (CONTRACT section 11), so a rerun after a Ctrl-C is a replay. */
static int create(genctl *g, const char *path, json_t *body, json_t **data, o11y_client_response *r)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    size_t n = strlen(g->url) + strlen(path) + (text ? strlen(text) : 0) + 8;
    char *what = malloc(n);
    if (!text || !what) {
        free(text);
        free(what);
        return -1;
    }
    snprintf(what, n, "%s POST %s %s", g->url, path, text);
    char op[O11Y_CLIENT_OPERATION_MAX + 1];
    snprintf(op, sizeof op, "POST %.100s %016llx", path, fnv1a(what));
    free(what);
    free(text);
    o11y_status st;
    if (g->idempotency_key) {
        st = call(g, "POST", path, body, g->idempotency_key, r, data);
    } else {
        text = json_dumps(body, JSON_COMPACT);
        o11y_client_request rq = {.method = "POST", .path = path, .body = text, .trace = &g->trace};
        st = o11y_client_call_idempotent(g->client, g->keys, op, &rq, r);
        free(text);
        *data = st == O11Y_OK && r->body && r->body_len ? json_loads(r->body, 0, NULL) : NULL;
    }
    return (int)st;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *p = malloc(cap);
    while (p) {
        size_t n = fread(p + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (len + 1 == cap) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                p = NULL;
                break;
            }
            p = q;
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!p || bad) {
        free(p);
        return NULL;
    }
    p[len] = '\0';
    return p;
}

static bool parse_number(const char *s, long long min, long long max, long long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Path segments come from the command line: only the ids' characters may pass. */
static bool id_ok(const char *s)
{
    return s && *s && strlen(s) <= 128 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
               strlen(s);
}

/*=== commands ===*/

static int cmd_project(genctl *g, int argc, char **argv)
{
    if (argc < 2)
        return usage("project: create NAME or get PROJECT");
    o11y_client_response r;
    json_t *data = NULL;
    o11y_status st;
    if (strcmp(argv[0], "create") == 0 && argc == 2) {
        json_t *body = json_pack("{s:s}", "name", argv[1]);
        st = (o11y_status)create(g, "/projects", body, &data, &r);
        json_decref(body);
    } else if (strcmp(argv[0], "get") == 0 && argc == 2) {
        if (!id_ok(argv[1]))
            return usage("project get: not a project id");
        char path[200];
        snprintf(path, sizeof path, "/projects/%s", argv[1]);
        st = call(g, "GET", path, NULL, NULL, &r, &data);
    } else {
        return usage("project: create NAME or get PROJECT");
    }
    int rc = report(g, st, &r, data);
    json_decref(data);
    o11y_client_response_clear(&r);
    return rc;
}

static int cmd_episode(genctl *g, int argc, char **argv)
{
    if (argc < 1)
        return usage("episode: create, list, get, update or delete");
    const char *verb = argv[0];
    const char *project = NULL, *episode = NULL, *title = NULL, *content_file = NULL;
    const char *number = NULL, *limit = NULL, *after = NULL;
    bool with_content = false;
    static const struct option opts[] = {{"project", required_argument, 0, 'p'},
                                         {"episode", required_argument, 0, 'e'},
                                         {"number", required_argument, 0, 'n'},
                                         {"title", required_argument, 0, 't'},
                                         {"content-file", required_argument, 0, 'f'},
                                         {"limit", required_argument, 0, 'l'},
                                         {"after", required_argument, 0, 'a'},
                                         {"content", no_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    optind = 0; /* glibc: start over (argv[0] is the verb) */
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            project = optarg;
            break;
        case 'e':
            episode = optarg;
            break;
        case 'n':
            number = optarg;
            break;
        case 't':
            title = optarg;
            break;
        case 'f':
            content_file = optarg;
            break;
        case 'l':
            limit = optarg;
            break;
        case 'a':
            after = optarg;
            break;
        case 'c':
            with_content = true;
            break;
        default:
            return usage(NULL);
        }
    }
    if (optind != argc)
        return usage("episode: unexpected argument");
    if (!id_ok(project))
        return usage("episode: --project takes a project id");
    bool needs_episode =
        strcmp(verb, "get") == 0 || strcmp(verb, "update") == 0 || strcmp(verb, "delete") == 0;
    if (needs_episode && !id_ok(episode))
        return usage("episode: --episode takes an episode id");
    long long num = 0;
    if (number && !parse_number(number, 1, 100000, &num))
        return usage("episode: --number takes a whole number from 1");
    char *content = NULL;
    if (content_file && !(content = read_file(content_file))) {
        fprintf(stderr, "genctl: cannot read %s: %s\n", content_file, strerror(errno));
        return EXIT_LOCAL;
    }
    char path[400];
    o11y_client_response r;
    json_t *data = NULL, *body = NULL;
    o11y_status st;
    if (strcmp(verb, "create") == 0) {
        if (!number || !title) {
            free(content);
            return usage("episode create: --number and --title are required");
        }
        body = json_pack("{s:I,s:s}", "number", (json_int_t)num, "title", title);
        if (content)
            json_object_set_new(body, "content", json_string(content));
        snprintf(path, sizeof path, "/projects/%s/episodes", project);
        st = (o11y_status)create(g, path, body, &data, &r);
    } else if (strcmp(verb, "list") == 0) {
        long long lim = 50, aft = 0;
        if ((limit && !parse_number(limit, 1, 200, &lim)) ||
            (after && !parse_number(after, 0, 100000, &aft))) {
            free(content);
            return usage("episode list: --limit 1-200, --after an episode number");
        }
        snprintf(path, sizeof path, "/projects/%s/episodes?limit=%lld&after=%lld%s", project, lim,
                 aft, with_content ? "&include=content" : "");
        st = call(g, "GET", path, NULL, NULL, &r, &data);
    } else if (strcmp(verb, "get") == 0 || strcmp(verb, "delete") == 0) {
        snprintf(path, sizeof path, "/projects/%s/episodes/%s", project, episode);
        st = call(g, strcmp(verb, "get") == 0 ? "GET" : "DELETE", path, NULL, NULL, &r, &data);
    } else if (strcmp(verb, "update") == 0) {
        body = json_object();
        if (number)
            json_object_set_new(body, "number", json_integer(num));
        if (title)
            json_object_set_new(body, "title", json_string(title));
        if (content)
            json_object_set_new(body, "content", json_string(content));
        if (json_object_size(body) == 0) {
            json_decref(body);
            return usage("episode update: give --number, --title or --content-file");
        }
        snprintf(path, sizeof path, "/projects/%s/episodes/%s", project, episode);
        st = call(g, "PATCH", path, body, NULL, &r, &data);
    } else {
        free(content);
        return usage("episode: create, list, get, update or delete");
    }
    free(content);
    json_decref(body);
    int rc = report(g, st, &r, data);
    json_decref(data);
    o11y_client_response_clear(&r);
    return rc;
}

/* Following a generation: a bar on a terminal, a line per event otherwise. */
typedef struct follow_state {
    bool bar, json;
    char final[32];
    json_t *events; /* --json: every event, in order */
    int last_pct;
} follow_state;

static int on_event(const o11y_sse_event *ev, void *ctx)
{
    follow_state *f = ctx;
    json_t *data = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (f->json) {
        json_array_append_new(f->events,
                              json_pack("{s:s,s:s,s:o*}", "id", ev->id, "event", ev->event, "data",
                                        data ? json_incref(data) : NULL));
    } else if (strcmp(ev->event, "progress") == 0) {
        int pct = (int)json_integer_value(json_object_get(data, "percentage"));
        const char *step = json_string_value(json_object_get(data, "step"));
        if (pct < 0)
            pct = 0;
        if (pct > 100)
            pct = 100;
        if (f->bar) {
            char bar[31];
            int filled = pct * 30 / 100;
            for (int i = 0; i < 30; i++)
                bar[i] = i < filled ? '#' : '.';
            bar[30] = '\0';
            /* step comes from the service: only its printable ASCII reaches the terminal */
            char clean[40];
            size_t n = 0;
            for (const char *p = step ? step : ""; *p && n < sizeof clean - 1; p++)
                clean[n++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
            clean[n] = '\0';
            printf("\r[%s] %3d%% %-20s", bar, pct, clean);
            fflush(stdout);
        } else {
            printf("progress %d%%%s%s\n", pct, step ? " " : "", step ? step : "");
        }
        f->last_pct = pct;
    } else if (!f->bar) {
        printf("%s\n", ev->event);
    }
    if (strcmp(ev->event, "completed") == 0 || strcmp(ev->event, "failed") == 0 ||
        strcmp(ev->event, "cancelled") == 0)
        snprintf(f->final, sizeof f->final, "%s", ev->event);
    json_decref(data);
    fflush(stdout);
    return 0;
}

static int follow(genctl *g, const char *id)
{
    char path[200];
    snprintf(path, sizeof path, "/generations/%s/events", id);
    follow_state f = {.bar = !g->json && isatty(STDOUT_FILENO), .json = g->json};
    f.events = json_array();
    o11y_sse_opts so = {.on_event = on_event, .ctx = &f};
    o11y_client_request rq = {.path = path, .trace = &g->trace};
    o11y_client_response r;
    o11y_status st = o11y_client_sse(g->client, &rq, &so, &r);
    if (f.bar)
        printf("\n");
    if (st != O11Y_OK) {
        json_decref(f.events);
        int rc = report(g, st, &r, NULL);
        o11y_client_response_clear(&r);
        return rc;
    }
    o11y_client_response_clear(&r);
    /* the generation as stored: its output, or its error */
    snprintf(path, sizeof path, "/generations/%s", id);
    json_t *gen = NULL;
    st = call(g, "GET", path, NULL, NULL, &r, &gen);
    if (st != O11Y_OK) {
        json_decref(f.events);
        int rc = report(g, st, &r, NULL);
        o11y_client_response_clear(&r);
        return rc;
    }
    bool completed = strcmp(f.final, "completed") == 0;
    if (g->json) {
        json_t *doc = json_pack("{s:b,s:s,s:{s:O,s:O}}", "ok", completed, "traceId",
                                g->trace.trace_id, "data", "generation", gen, "events", f.events);
        json_dumpf(doc, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(doc);
    } else if (completed) {
        const char *out = json_string_value(json_object_get(gen, "output"));
        printf("%s\n", out ? out : "");
    } else {
        json_t *err = json_object_get(gen, "error");
        fprintf(stderr, "genctl: the generation %s: %s\n  %s\n  trace %s\n",
                f.final[0] ? f.final : "ended",
                json_string_value(json_object_get(err, "message"))
                    ? json_string_value(json_object_get(err, "message"))
                    : "no reason given",
                json_string_value(json_object_get(err, "code"))
                    ? json_string_value(json_object_get(err, "code"))
                    : f.final,
                g->trace.trace_id);
    }
    json_decref(gen);
    json_decref(f.events);
    o11y_client_response_clear(&r);
    return completed ? EXIT_OK : EXIT_FAILED;
}

static int cmd_generate(genctl *g, int argc, char **argv)
{
    const char *project = NULL, *episode = NULL, *prompt = NULL, *model = NULL;
    bool no_follow = false;
    static const struct option opts[] = {
        {"project", required_argument, 0, 'p'}, {"episode", required_argument, 0, 'e'},
        {"prompt", required_argument, 0, 'P'},  {"model", required_argument, 0, 'm'},
        {"no-follow", no_argument, 0, 'n'},     {0, 0, 0, 0}};
    optind = 0; /* glibc: start over; argv[-1] is the command's name */
    int ch;
    while ((ch = getopt_long(argc + 1, argv - 1, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            project = optarg;
            break;
        case 'e':
            episode = optarg;
            break;
        case 'P':
            prompt = optarg;
            break;
        case 'm':
            model = optarg;
            break;
        case 'n':
            no_follow = true;
            break;
        default:
            return usage(NULL);
        }
    }
    if (optind != argc + 1 || !project || !episode || !prompt)
        return usage("generate: --project, --episode and --prompt are required");
    json_t *body =
        json_pack("{s:s,s:s,s:s}", "projectId", project, "episodeId", episode, "prompt", prompt);
    if (model)
        json_object_set_new(body, "model", json_string(model));
    o11y_client_response r;
    json_t *data = NULL;
    o11y_status st = (o11y_status)create(g, "/generations", body, &data, &r);
    json_decref(body);
    const char *id = json_string_value(json_object_get(data, "id"));
    const char *job = json_string_value(json_object_get(data, "jobId"));
    if (st != O11Y_OK || !id || !id_ok(id) || no_follow) {
        int rc = report(g, st, &r, data);
        json_decref(data);
        o11y_client_response_clear(&r);
        return rc;
    }
    /* From here on the job is known: the stream and genctl's lines carry its id. */
    if (job && o11y_trace_ctx_set_job_id(&g->trace, job, strlen(job)) != O11Y_OK)
        fprintf(stderr, "genctl: the job id is not usable as a header\n");
    if (!g->json)
        fprintf(stderr, "generation %s (job %s, trace %s)\n", id, job ? job : "?",
                g->trace.trace_id);
    char gen_id[160];
    snprintf(gen_id, sizeof gen_id, "%s", id);
    json_decref(data);
    o11y_client_response_clear(&r);
    return follow(g, gen_id);
}

static int cmd_cancel(genctl *g, int argc, char **argv)
{
    if (argc != 1 || !id_ok(argv[0]))
        return usage("cancel GENERATION");
    char path[200];
    snprintf(path, sizeof path, "/generations/%s", argv[0]);
    const char *method = "DELETE";
    o11y_client_response r;
    json_t *data = NULL;
    o11y_status st = call(g, method, path, NULL, NULL, &r, &data);
    int rc = report(g, st, &r, data);
    json_decref(data);
    o11y_client_response_clear(&r);
    return rc;
}

/* /health answers 503 with its own document (not an error envelope) when unhealthy. */
static int cmd_health(genctl *g)
{
    o11y_client_request rq = {.method = "GET", .path = "/health", .trace = &g->trace};
    o11y_client_response r;
    o11y_status st = o11y_client_call(g->client, &rq, &r);
    json_t *doc = r.body ? json_loads(r.body, 0, NULL) : NULL;
    const char *status = json_string_value(json_object_get(doc, "status"));
    if (!status) {
        json_decref(doc);
        int rc = report(g, st, &r, NULL);
        o11y_client_response_clear(&r);
        return rc;
    }
    if (g->json) {
        json_t *out = json_pack("{s:b,s:s,s:i,s:O}", "ok", st == O11Y_OK, "traceId", r.trace_id,
                                "status", r.status, "data", doc);
        json_dumpf(out, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(out);
    } else {
        printf("%s  %s\n", json_string_value(json_object_get(doc, "service")), status);
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(doc, "dependencies"), i, d)
        {
            printf("  %-12s %-10s %4lld ms%s\n", json_string_value(json_object_get(d, "name")),
                   json_string_value(json_object_get(d, "status")),
                   (long long)json_integer_value(json_object_get(d, "responseTime")),
                   json_is_true(json_object_get(d, "critical")) ? "  critical" : "");
        }
    }
    json_decref(doc);
    o11y_client_response_clear(&r);
    return st == O11Y_OK ? EXIT_OK : EXIT_UNAVAILABLE;
}

/*=== set-up ===*/

/* $GENCTL_KEYS_FILE, else $XDG_STATE_HOME/genctl/keys, else ~/.local/state/genctl/keys (made
 * 0700); NULL: keys in memory only. */
static const char *default_keys_file(char *buf, size_t len)
{
    const char *env = getenv("GENCTL_KEYS_FILE");
    if (env && *env)
        return env;
    const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char dir[3000];
    if (state && *state)
        snprintf(dir, sizeof dir, "%s", state);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.local/state", home);
    else
        return NULL;
    char sub[3100];
    snprintf(sub, sizeof sub, "%s/genctl", dir);
    if (home && !(state && *state)) {
        char local[3000];
        snprintf(local, sizeof local, "%s/.local", home);
        mkdir(local, 0700);
    }
    mkdir(dir, 0700);
    mkdir(sub, 0700);
    snprintf(buf, len, "%s/keys", sub);
    return buf;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    genctl g = {.url = getenv("GENCTL_URL")};
    if (!g.url || !*g.url)
        g.url = "http://127.0.0.1:8001";
    const char *keys_file = NULL, *log_file = getenv("GENCTL_LOG_FILE");
    long long timeout = 30000;
    static const struct option opts[] = {{"url", required_argument, 0, 'u'},
                                         {"json", no_argument, 0, 'j'},
                                         {"idempotency-key", required_argument, 0, 'k'},
                                         {"keys-file", required_argument, 0, 'K'},
                                         {"log-file", required_argument, 0, 'L'},
                                         {"timeout-ms", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            g.url = optarg;
            break;
        case 'j':
            g.json = true;
            break;
        case 'k':
            g.idempotency_key = optarg;
            break;
        case 'K':
            keys_file = optarg;
            break;
        case 'L':
            log_file = optarg;
            break;
        case 't':
            if (!parse_number(optarg, 1, 3600000, &timeout))
                return usage("--timeout-ms takes milliseconds");
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        default:
            return usage(NULL);
        }
    }
    if (optind >= argc)
        return usage("no command");
    if (g.idempotency_key) {
        size_t n = strlen(g.idempotency_key);
        bool ok = n >= 1 && n <= O11Y_CLIENT_KEY_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = g.idempotency_key[i] > 0x20 && g.idempotency_key[i] < 0x7f;
        if (!ok)
            return usage("--idempotency-key takes 1-255 printable characters without spaces");
    }
    o11y_logger *lg = NULL;
    if (log_file) {
        o11y_log_config lc;
        o11y_log_config_init(&lc);
        lc.service_name = "genctl";
        lc.file_path = log_file;
        lc.format = O11Y_LOG_FORMAT_JSON;
        if (o11y_logger_create(&lc, &lg) != O11Y_OK) {
            fprintf(stderr, "genctl: cannot open the log file %s\n", log_file);
            return EXIT_LOCAL;
        }
        o11y_logger_set_default(lg);
    }
    o11y_client_config cc;
    o11y_client_config_init(&cc);
    cc.base_url = g.url;
    cc.service_name = "genctl";
    cc.deadline_ms = (unsigned)timeout;
    cc.attempt_timeout_ms = (unsigned)timeout;
    if (o11y_client_create(&cc, &g.client) != O11Y_OK) {
        o11y_logger_destroy(lg);
        return usage("--url takes http(s)://host[:port][/prefix], without a query");
    }
    char keys_buf[3200];
    if (!keys_file)
        keys_file = default_keys_file(keys_buf, sizeof keys_buf);
    if (o11y_client_keys_open(keys_file, &g.keys) != O11Y_OK) {
        fprintf(stderr, "genctl: cannot use the key file %s\n", keys_file ? keys_file : "");
        o11y_client_destroy(g.client);
        o11y_logger_destroy(lg);
        return EXIT_LOCAL;
    }
    /* The command is the trace's root span; each call is a child of it. */
    o11y_trace_ctx_new(&g.trace);
    o11y_trace_set_current(&g.trace);
    const char *cmd = argv[optind];
    char what[64];
    snprintf(what, sizeof what, "genctl %s", cmd);
    o11y_log_va(NULL, O11Y_LOG_INFO, NULL, what, O11Y_STR("command", cmd), O11Y__END);
    double started = now_ms();
    int sub_argc = argc - optind - 1;
    char **sub = argv + optind + 1;
    int rc;
    if (strcmp(cmd, "project") == 0)
        rc = cmd_project(&g, sub_argc, sub);
    else if (strcmp(cmd, "episode") == 0)
        rc = cmd_episode(&g, sub_argc, sub);
    else if (strcmp(cmd, "generate") == 0)
        rc = cmd_generate(&g, sub_argc, sub);
    else if (strcmp(cmd, "follow") == 0)
        rc = sub_argc == 1 && id_ok(sub[0]) ? follow(&g, sub[0]) : usage("follow GENERATION");
    else if (strcmp(cmd, "cancel") == 0)
        rc = cmd_cancel(&g, sub_argc, sub);
    else if (strcmp(cmd, "health") == 0)
        rc = sub_argc == 0 ? cmd_health(&g) : usage("health takes no arguments");
    else
        rc = usage("unknown command");
    o11y_log_va(NULL, rc == EXIT_OK ? O11Y_LOG_INFO : O11Y_LOG_WARN, "genctl_finished",
                "command finished", O11Y_STR("command", cmd), O11Y_INT("exit_code", rc),
                O11Y_DURATION_MS(now_ms() - started), O11Y__END);
    o11y_trace_set_current(NULL);
    o11y_client_keys_close(g.keys);
    o11y_client_destroy(g.client);
    if (lg) {
        o11y_logger_set_default(NULL);
        (void)o11y_logger_flush(lg, 2000);
        o11y_logger_destroy(lg);
    }
    return rc;
}
