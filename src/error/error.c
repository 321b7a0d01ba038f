/* error/error.c — the catalog, content negotiation and the two renderings of an error. */
#include "o11y/error.h"

#include "core/internal.h"
#include "error/error_internal.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

enum { MAX_REGISTERED = 256, MAX_CODE_LEN = 64 };

O11Y_ERROR_CATALOG(O11Y_ERROR_DEFINE)

static const o11y_error_def *const builtin[] = {
#define O11Y_X(code, status, retryable, message) &o11y_err_##code,
    O11Y_ERROR_CATALOG(O11Y_X)
#undef O11Y_X
};

/* Registered codes are append-only: a reader sees entries [0, n_registered) fully written,
 * because the count is published with release after the entry is filled in. */
static o11y_error_def registered[MAX_REGISTERED];
static atomic_size_t n_registered;
static pthread_mutex_t register_lock = PTHREAD_MUTEX_INITIALIZER;

/*=== MARK: catalog ===*/

const o11y_error_def *o11y_error_lookup(const char *code)
{
    if (!code)
        return NULL;
    for (size_t i = 0; i < O11Y_ARRAY_LEN(builtin); i++)
        if (strcmp(builtin[i]->code, code) == 0)
            return builtin[i];
    size_t n = atomic_load_explicit(&n_registered, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(registered[i].code, code) == 0)
            return &registered[i];
    return NULL;
}

static bool code_valid(const char *code)
{
    size_t len = strlen(code);
    if (len == 0 || len > MAX_CODE_LEN || code[0] == '_' || code[len - 1] == '_')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = code[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
        if (c == '_' && code[i + 1] == '_')
            return false;
    }
    return code[0] >= 'A' && code[0] <= 'Z';
}

static bool same_def(const o11y_error_def *a, const o11y_error_def *b)
{
    return a->status == b->status && a->retryable == b->retryable &&
           strcmp(a->message, b->message) == 0;
}

o11y_status o11y_error_register(const o11y_error_def *def)
{
    if (!def || !def->code || !def->message || !code_valid(def->code) || def->status < 400 ||
        def->status > 599)
        return O11Y_EINVAL;
    pthread_mutex_lock(&register_lock);
    o11y_status st = O11Y_OK;
    const o11y_error_def *existing = o11y_error_lookup(def->code);
    if (existing) {
        st = same_def(existing, def) ? O11Y_OK : O11Y_ECONFLICT;
        goto out;
    }
    size_t n = atomic_load_explicit(&n_registered, memory_order_relaxed);
    if (n == MAX_REGISTERED) {
        st = O11Y_ELIMIT;
        goto out;
    }
    char *code = o11y__strdup(def->code);
    char *message = o11y__strdup(def->message);
    if (!code || !message) {
        o11y__free(code);
        o11y__free(message);
        st = O11Y_ENOMEM;
        goto out;
    }
    /* Kept for the life of the process: readers hold pointers without a lock. */
    registered[n] = (o11y_error_def){code, def->status, def->retryable, message};
    atomic_store_explicit(&n_registered, n + 1, memory_order_release);
out:
    pthread_mutex_unlock(&register_lock);
    return st;
}

void o11y_error_foreach(void (*fn)(const o11y_error_def *def, void *ctx), void *ctx)
{
    for (size_t i = 0; i < O11Y_ARRAY_LEN(builtin); i++)
        fn(builtin[i], ctx);
    size_t n = atomic_load_explicit(&n_registered, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        fn(&registered[i], ctx);
}

/*=== MARK: content negotiation (RFC 9110 section 12.5.1) ===*/

/* Parses one q parameter value ("0", "0.5", "1.000"); returns thousandths, or -1. */
static int parse_qvalue(const char *s, size_t len)
{
    if (len == 0 || len > 5 || (s[0] != '0' && s[0] != '1'))
        return -1;
    int q = (s[0] - '0') * 1000;
    if (len == 1)
        return q;
    if (s[1] != '.')
        return -1;
    int scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

static bool token_eq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

static size_t trim(const char **s, size_t len)
{
    while (len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        len--;
    }
    while (len && ((*s)[len - 1] == ' ' || (*s)[len - 1] == '\t'))
        len--;
    return len;
}

int o11y_accept_quality(const char *accept, size_t len, const char *type, bool exact_only)
{
    if (!type)
        return -1;
    if (!accept)
        return exact_only ? -1 : 1000; /* no Accept: anything is acceptable */
    const char *slash = strchr(type, '/');
    size_t major_len = slash ? (size_t)(slash - type) : strlen(type);
    /* The most specific range that matches decides: type/subtype > type/asterisk > asterisk. */
    int best_q = -1, best_spec = -1;
    const char *end = accept + len;
    for (const char *p = accept; p < end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        const char *semi = memchr(p, ';', (size_t)(item_end - p));
        const char *range = p;
        size_t range_len = trim(&range, (size_t)((semi ? semi : item_end) - p));
        int q = 1000;
        for (const char *param = semi; param && param < item_end;) {
            const char *next = memchr(param + 1, ';', (size_t)(item_end - param - 1));
            const char *name = param + 1;
            size_t plen = trim(&name, (size_t)((next ? next : item_end) - name));
            if (plen >= 2 && (name[0] == 'q' || name[0] == 'Q') && name[1] == '=') {
                int v = parse_qvalue(name + 2, plen - 2);
                q = v < 0 ? 0 : v;
            }
            param = next;
        }
        int spec = -1;
        if (token_eq(range, range_len, type))
            spec = 2;
        else if (!exact_only && range_len == major_len + 2 &&
                 strncasecmp(range, type, major_len + 1) == 0 && range[major_len + 1] == '*')
            spec = 1;
        else if (!exact_only && token_eq(range, range_len, "*/*"))
            spec = 0;
        if (spec > best_spec || (spec == best_spec && spec >= 0 && q > best_q)) {
            best_spec = spec;
            best_q = q;
        }
        p = comma ? comma + 1 : end;
    }
    return best_spec < 0 ? -1 : best_q;
}

o11y_error_format o11y_error_negotiate(const char *accept, size_t len)
{
    if (!accept)
        return O11Y_ERROR_ENVELOPE;
    /* Problem details only when asked for by name, and at least as much as JSON. */
    int q_problem = o11y_accept_quality(accept, len, "application/problem+json", true);
    int q_json = o11y_accept_quality(accept, len, "application/json", false);
    return q_problem > 0 && q_problem >= q_json ? O11Y_ERROR_PROBLEM : O11Y_ERROR_ENVELOPE;
}

/*=== MARK: rendering ===*/

/* RFC 9110 section 15 reason phrases: with type about:blank, RFC 9457 section 4.2.1 makes the
 * title the status phrase; adapters send them on HTTP/1 status lines. */
const char *o11y_http_status_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 423:
        return "Locked";
    case 424:
        return "Failed Dependency";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return status < 300   ? "OK"
               : status < 400 ? "Redirection"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

void o11y__error_render(o11y__buf *b, const o11y_error_info *info, o11y_error_format format,
                        int *status_out)
{
    const o11y_error_def *def = o11y_error_lookup(info->code);
    if (!def)
        def = o11y_error_lookup("INTERNAL_ERROR");
    bool server_error = def->status >= 500;
    const char *message = (!server_error && info->message) ? info->message : def->message;
    bool details = !server_error && info->details_json && info->details_len > 1;
    char ts[O11Y__RFC3339_LEN];
    o11y__rfc3339_ms(info->timestamp_ns ? info->timestamp_ns : o11y__now_real_ns(), ts);
    size_t msg_len = strlen(message);

    if (format == O11Y_ERROR_PROBLEM) {
        o11y__buf_lit(b, "{\"type\":");
        if (info->problem_base) {
            o11y__buf_putc(b, '"');
            o11y__json_str_body(b, info->problem_base, strlen(info->problem_base), SIZE_MAX);
            o11y__json_str_body(b, def->code, strlen(def->code), SIZE_MAX);
            o11y__buf_putc(b, '"');
        } else {
            o11y__buf_lit(b, "\"about:blank\"");
        }
        const char *title =
            info->problem_base ? def->message : o11y_http_status_phrase(def->status);
        o11y__buf_lit(b, ",\"title\":");
        o11y__json_str(b, title, strlen(title), SIZE_MAX);
        o11y__buf_lit(b, ",\"status\":");
        o11y__json_i64(b, def->status);
        o11y__buf_lit(b, ",\"detail\":");
        o11y__json_str(b, message, msg_len, SIZE_MAX);
        o11y__buf_lit(b, ",\"code\":");
    } else {
        o11y__buf_lit(b, "{\"success\":false,\"error\":{\"code\":");
    }
    o11y__json_str(b, def->code, strlen(def->code), SIZE_MAX);
    if (format != O11Y_ERROR_PROBLEM) {
        o11y__buf_lit(b, ",\"message\":");
        o11y__json_str(b, message, msg_len, SIZE_MAX);
    }
    if (details) {
        o11y__buf_lit(b, ",\"details\":");
        o11y__buf_append(b, info->details_json, info->details_len);
    }
    o11y__buf_lit(b, ",\"traceId\":");
    o11y__json_str(b, info->trace_id.ptr ? info->trace_id.ptr : "", info->trace_id.len, SIZE_MAX);
    o11y__buf_lit(b, ",\"timestamp\":\"");
    o11y__buf_append(b, ts, sizeof ts);
    o11y__buf_putc(b, '"');
    if (format != O11Y_ERROR_PROBLEM)
        o11y__buf_putc(b, '}');
    o11y__buf_putc(b, '}');
    if (status_out)
        *status_out = def->status;
}

char *o11y_error_render(const o11y_error_info *info, o11y_error_format format, size_t *len,
                        int *status)
{
    if (!info || !len)
        return NULL;
    o11y__buf b;
    o11y__buf_init(&b, SIZE_MAX / 2);
    o11y__error_render(&b, info, format, status);
    return o11y__buf_take(&b, len);
}

void o11y_free(void *p)
{
    o11y__free(p);
}
