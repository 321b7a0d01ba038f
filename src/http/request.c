/* http/request.c — what a handler reads (the request) and fills (the response). */
#include "http/http_internal.h"

#include "o11y/error.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

enum { ARENA_MAX = 64 * 1024 };

/*=== MARK: exchanges ===*/

/* Finished exchanges wait here for the next request on the same thread. */
enum { CACHE_MAX = 64 };
static _Thread_local struct {
    o11y__exchange *head;
    size_t n;
    bool registered;
} cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drop(void *unused)
{
    (void)unused;
    while (cache.head) {
        o11y__exchange *ex = cache.head;
        cache.head = ex->next_free;
        o11y__free(ex);
    }
    cache.n = 0;
}

static void cache_key_create(void)
{
    pthread_key_create(&cache_key, cache_drop);
}

o11y__exchange *o11y__exchange_new(o11y_service *svc, const char *uri, size_t uri_len)
{
    o11y__exchange *ex = cache.head;
    if (ex) {
        cache.head = ex->next_free;
        cache.n--;
    } else if (!(ex = o11y__malloc(sizeof *ex))) {
        return NULL;
    }
    memset(ex, 0, offsetof(o11y__exchange, uri_inline));
    char *copy = uri_len < sizeof ex->uri_inline ? ex->uri_inline : o11y__malloc(uri_len + 1);
    if (!copy) {
        o11y__free(ex);
        return NULL;
    }
    memcpy(copy, uri, uri_len);
    copy[uri_len] = '\0';
    ex->req.uri = copy;
    ex->req.svc = svc;
    ex->res.body_room = ex->body_inline;
    ex->std.content_length = -1;
    ex->req.start_ns = o11y__now_mono_ns();
    const char *q = memchr(uri, '?', uri_len);
    ex->req.path_len = q ? (size_t)(q - uri) : uri_len;
    if (q) {
        ex->req.query = ex->req.uri + ex->req.path_len + 1;
        ex->req.query_len = uri_len - ex->req.path_len - 1;
    }
    o11y__arena_init(&ex->req.arena, ex->arena_inline, sizeof ex->arena_inline, ARENA_MAX);
    o11y__buf_init(&ex->req.body, svc->max_body);
    o11y__buf_init_inline(&ex->res.headers, ex->headers_inline, sizeof ex->headers_inline,
                          16 * 1024);
    return ex;
}

void o11y__exchange_free(o11y__exchange *ex)
{
    if (!ex)
        return;
    if (ex->req.uri != ex->uri_inline)
        o11y__free(ex->req.uri);
    o11y__arena_release(&ex->req.arena);
    o11y__buf_release(&ex->req.body);
    json_decref(ex->req.json);
    o11y__res_body_free(&ex->res);
    o11y__free(ex->res.error_message);
    json_decref(ex->res.error_details);
    json_decref(ex->res.field_errors);
    o11y__buf_release(&ex->res.headers);
    if (ex->res.stream) { /* never reached a connection */
        o11y__stream_finish(ex->res.stream, O11Y_STREAM_SERVER_STOPPING);
        ex->res.stream = NULL;
    }
    if (cache.n == CACHE_MAX) {
        o11y__free(ex);
        return;
    }
    if (!cache.registered) { /* so the cache is freed when this thread exits */
        pthread_once(&cache_once, cache_key_create);
        pthread_setspecific(cache_key, &cache);
        cache.registered = true;
    }
    ex->next_free = cache.head;
    cache.head = ex;
    cache.n++;
}

/*=== MARK: decoding ===*/

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one byte of src at *i (advancing it); -1 on a bad escape. */
static int decode_at(const char *src, size_t len, size_t *i, bool plus_is_space)
{
    char c = src[*i];
    if (c == '%') {
        if (len - *i < 3 || hexval(src[*i + 1]) < 0 || hexval(src[*i + 2]) < 0)
            return -1;
        int v = hexval(src[*i + 1]) * 16 + hexval(src[*i + 2]);
        *i += 3;
        return v;
    }
    (*i)++;
    return c == '+' && plus_is_space ? ' ' : (unsigned char)c;
}

bool o11y__percent_decode(o11y__arena *arena, const char *src, size_t len, bool plus_is_space,
                          o11y_str *out)
{
    char *dst = o11y__arena_alloc(arena, len + 1); /* decoding never lengthens */
    if (!dst)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int c = decode_at(src, len, &i, plus_is_space);
        if (c <= 0)
            return false; /* a bad escape or an encoded NUL */
        dst[n++] = (char)c;
    }
    if (!o11y__utf8_valid(dst, n))
        return false;
    dst[n] = '\0';
    out->ptr = dst;
    out->len = n;
    return true;
}

/* Compares a raw (escaped) query key with name without allocating. */
static bool key_equals(const char *raw, size_t len, const char *name, size_t name_len)
{
    size_t i = 0, j = 0;
    while (i < len) {
        int c = decode_at(raw, len, &i, true);
        if (c < 0 || j == name_len || (char)c != name[j++])
            return false;
    }
    return j == name_len;
}

/*=== MARK: the request ===*/

o11y_method o11y_req_method(const o11y_request *req)
{
    return req->method;
}

o11y_str o11y_req_path(const o11y_request *req)
{
    return (o11y_str){req->uri, req->path_len};
}

const char *o11y_req_route(const o11y_request *req)
{
    return req->route ? req->route->template : "unmatched";
}

o11y_str o11y_req_param(const o11y_request *req, const char *name)
{
    if (req->route && name) {
        for (size_t i = 0; i < req->route->n_params; i++)
            if (strcmp(req->route->param_names[i], name) == 0)
                return req->params[i];
    }
    return (o11y_str){NULL, 0};
}

bool o11y_req_query(o11y_request *req, const char *name, o11y_str *out)
{
    if (!req->query || !name || !out)
        return false;
    size_t name_len = strlen(name);
    const char *p = req->query, *end = req->query + req->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *item_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(item_end - p));
        const char *key_end = eq ? eq : item_end;
        if (key_equals(p, (size_t)(key_end - p), name, name_len)) {
            if (!eq) {
                *out = (o11y_str){"", 0};
                return true;
            }
            return o11y__percent_decode(&req->arena, eq + 1, (size_t)(item_end - eq - 1), true,
                                        out);
        }
        p = amp ? amp + 1 : end;
    }
    return false;
}

o11y_str o11y_req_header(const o11y_request *req, const char *name)
{
    if (!req->get_header || !name)
        return (o11y_str){NULL, 0};
    if (req->joined[O11Y__LIST_TRACESTATE].ptr && strcasecmp(name, "tracestate") == 0)
        return req->joined[O11Y__LIST_TRACESTATE];
    if (req->joined[O11Y__LIST_BAGGAGE].ptr && strcasecmp(name, "baggage") == 0)
        return req->joined[O11Y__LIST_BAGGAGE];
    return req->get_header(req->header_ctx, name);
}

o11y_str o11y_req_body(const o11y_request *req)
{
    return (o11y_str){req->body.ptr ? req->body.ptr : "", req->body.len};
}

o11y_trace_ctx *o11y_req_trace(o11y_request *req)
{
    return &req->trace;
}

void o11y__req_set_peer(o11y_request *req, const void *sa)
{
    const struct sockaddr *addr = sa;
    if (addr && addr->sa_family == AF_INET) {
        memcpy(req->peer, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        req->peer_len = 4;
    } else if (addr && addr->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) { /* one client, one identity, on a dual-stack socket */
            memcpy(req->peer, a->s6_addr + 12, 4);
            req->peer_len = 4;
        } else {
            memcpy(req->peer, a->s6_addr, 16);
            req->peer_len = 16;
        }
    }
}

bool o11y_req_peer_address(const o11y_request *req, char *buf, size_t len)
{
    if (!buf || !len)
        return false;
    buf[0] = '\0';
    if (!req || !req->peer_len)
        return false;
    int family = req->peer_len == 4 ? AF_INET : AF_INET6;
    if (!inet_ntop(family, req->peer, buf, (socklen_t)(len > 65535 ? 65535 : len))) {
        buf[0] = '\0';
        return false;
    }
    return true;
}

static const char *json_reason(enum json_error_code code)
{
    switch (code) {
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_null_character:
        return "a \\u0000 escape is not allowed";
    case json_error_duplicate_key:
        return "duplicate key in an object";
    case json_error_stack_overflow:
        return "nested too deeply";
    case json_error_numeric_overflow:
        return "a number is out of range";
    case json_error_premature_end_of_input:
        return "unexpected end of input";
    case json_error_end_of_input_expected:
        return "unexpected data after the JSON value";
    case json_error_wrong_type:
        return "the body must be a JSON object";
    case json_error_invalid_syntax:
        return "invalid syntax";
    default:
        return "malformed JSON";
    }
}

/* A number too large for the parser (beyond 64 bits, or beyond a double) in well-formed JSON
 * is an out-of-range value, not malformed JSON: name its member when it is one. The parser
 * stops just past the number, so the member's name is the string before the colon before it. */
static bool overflow_field(o11y_request *req, const json_error_t *err, o11y_response *res)
{
    const char *body = req->body.ptr;
    size_t i = (size_t)err->position <= req->body.len ? (size_t)err->position : req->body.len;
    while (i && strchr("0123456789+-.eE", body[i - 1]))
        i--;
    while (i && strchr(" \t\r\n", body[i - 1]))
        i--;
    if (!i || body[i - 1] != ':')
        return false;
    i--;
    while (i && strchr(" \t\r\n", body[i - 1]))
        i--;
    if (!i || body[i - 1] != '"')
        return false;
    size_t end = --i;
    while (i && body[i - 1] != '"' && body[i - 1] != '\\' && end - i < 128)
        i--;
    if (!i || body[i - 1] != '"' || i == end)
        return false; /* an escaped or very long name: report the body as malformed */
    char field[130];
    snprintf(field, sizeof field, "%.*s", (int)(end - i), body + i);
    json_t *details =
        json_pack("{s:[{s:s,s:s}]}", "fields", "field", field, "problem", "is out of range");
    if (!details)
        return false;
    o11y_res_fail(res, &o11y_err_VALIDATION_FAILED, details, "Request validation failed");
    return true;
}

struct json_t *o11y_req_json(o11y_request *req, o11y_response *res)
{
    if (req->json)
        return req->json;
    json_error_t err;
    const char *body = req->body.ptr ? req->body.ptr : "";
    json_t *j = json_loadb(body, req->body.len, JSON_REJECT_DUPLICATES, &err);
    enum json_error_code code = j ? json_error_unknown : json_error_code(&err);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
        code = json_error_wrong_type;
        err.position = 0;
        err.line = err.column = 1;
    }
    if (!j && code == json_error_numeric_overflow && overflow_field(req, &err, res))
        return NULL;
    if (!j) {
        /* The parser's own text can quote the input; the details carry only positions and a
         * fixed reason, never request bytes. */
        json_t *details = json_pack("{s:I,s:I,s:I,s:s}", "position", (json_int_t)err.position,
                                    "line", (json_int_t)err.line, "column", (json_int_t)err.column,
                                    "reason", json_reason(code));
        o11y_res_fail(res, &o11y_err_VALIDATION_FAILED, details,
                      "The request body is not a valid JSON "
                      "object: %s",
                      json_reason(code));
        return NULL;
    }
    req->json = j;
    return j;
}

/*=== MARK: the response ===*/

static bool token_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c))
            return false;
    }
    return true;
}

/* strlen of a header-safe string, SIZE_MAX when it holds a control character: one pass. */
static size_t header_safe_len(const char *s)
{
    const char *p = s;
    for (; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return SIZE_MAX;
    return (size_t)(p - s);
}

static bool pipeline_owns(const char *name)
{
    static const char *const owned[] = {"X-Trace-Id",        "X-Job-Id",   "X-Project-Id",
                                        "X-Processing-Time", "X-Service",  "Content-Type",
                                        "Content-Length",    "Connection", "Transfer-Encoding"};
    for (size_t i = 0; i < O11Y_ARRAY_LEN(owned); i++)
        if (strcasecmp(owned[i], name) == 0)
            return true;
    return false;
}

o11y_status o11y_res_header(o11y_response *res, const char *name, const char *value)
{
    if (!res || !name || !value || !token_valid(name) || pipeline_owns(name))
        return O11Y_EINVAL;
    if (header_safe_len(value) == SIZE_MAX)
        return O11Y_EINVAL;
    if (res->n_headers == O11Y__MAX_RES_HEADERS)
        return O11Y_ELIMIT;
    return o11y__res_header_put(res, name, strlen(name), value, strlen(value)) ? O11Y_OK
                                                                               : O11Y_ELIMIT;
}

static void clear_body(o11y_response *res)
{
    o11y__res_body_free(res);
    res->body_len = 0;
    res->error = NULL;
    o11y__free(res->error_message);
    res->error_message = NULL;
    json_decref(res->error_details);
    res->error_details = NULL;
}

o11y_status o11y_res_body(o11y_response *res, int status, const char *content_type,
                          const void *body, size_t len)
{
    if (!res || status < 100 || status > 599 || (len && !body))
        return O11Y_EINVAL;
    static const char json_type[] = "application/json";
    size_t ct_len = sizeof json_type - 1;
    if (!content_type)
        content_type = json_type; /* known safe: not scanned */
    else if ((ct_len = header_safe_len(content_type)) >= sizeof res->content_type)
        return O11Y_EINVAL; /* too long, or not header-safe */
    if (res->body_room && len <= O11Y__BODY_INLINE) {
        if (len) /* memmove: the new body may be the old one */
            memmove(res->body_room, body, len);
        clear_body(res); /* frees a body of before, never the room */
        res->body = res->body_room;
    } else {
        char *copy = o11y__malloc(len);
        if (!copy)
            return O11Y_ENOMEM;
        if (len)
            memcpy(copy, body, len);
        clear_body(res);
        res->body = copy;
    }
    res->body_len = len;
    res->status = status;
    res->answered = true;
    memcpy(res->content_type, content_type, ct_len + 1);
    return O11Y_OK;
}

char *o11y__json_dump(const struct json_t *j, size_t *len)
{
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
    char *text = n ? o11y__malloc(n + 1) : NULL;
    if (!text || json_dumpb(j, text, n, JSON_COMPACT) != n) {
        o11y__free(text);
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
}

void o11y__res_body_owned(o11y_response *res, int status, const char *content_type, char *body,
                          size_t len)
{
    clear_body(res);
    res->body = body;
    res->body_len = len;
    res->status = status;
    res->answered = true;
    snprintf(res->content_type, sizeof res->content_type, "%s", content_type);
}

o11y_status o11y_res_json(o11y_response *res, int status, struct json_t *body)
{
    if (!res || !body) {
        json_decref(body);
        return O11Y_EINVAL;
    }
    size_t len = 0;
    char *text = o11y__json_dump(body, &len);
    json_decref(body);
    if (!text)
        return O11Y_ENOMEM;
    clear_body(res);
    res->body = text;
    res->body_len = len;
    res->status = status;
    res->answered = true;
    memcpy(res->content_type, "application/json", sizeof "application/json");
    return O11Y_OK;
}

void o11y_res_empty(o11y_response *res, int status)
{
    if (!res)
        return;
    clear_body(res);
    res->status = status;
    res->answered = true;
    res->content_type[0] = '\0';
}

static void res_fail_va(o11y_response *res, const o11y_error_def *def, struct json_t *details,
                        const char *fmt, va_list ap) O11Y_PRINTF(4, 0);

static void res_fail_va(o11y_response *res, const o11y_error_def *def, struct json_t *details,
                        const char *fmt, va_list ap)
{
    if (!def)
        def = &o11y_err_INTERNAL_ERROR;
    clear_body(res);
    res->error = def;
    res->status = def->status;
    res->answered = true;
    if (details && !json_is_object(details)) {
        json_decref(details);
        details = NULL;
    }
    res->error_details = details;
    if (fmt) {
        char msg[1024];
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        if (n >= 0)
            res->error_message = o11y__strdup(msg);
    }
}

void o11y_res_fail(o11y_response *res, const o11y_error_def *def, struct json_t *details,
                   const char *fmt, ...)
{
    if (!res) {
        json_decref(details);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    res_fail_va(res, def, details, fmt, ap);
    va_end(ap);
}

void o11y_res_error(o11y_response *res, const char *code, struct json_t *details, const char *fmt,
                    ...)
{
    if (!res) {
        json_decref(details);
        return;
    }
    const o11y_error_def *def = o11y_error_lookup(code);
    if (!def) /* a typo or a code never registered: visible at once, never silent */
        o11y_log_va(NULL, O11Y_LOG_ERROR, "unknown_error_code",
                    "unknown error code answered as 500",
                    O11Y_STRN("code", code ? code : "", code ? strnlen(code, 64) : 0), O11Y__END);
    va_list ap;
    va_start(ap, fmt);
    res_fail_va(res, def, details, fmt, ap);
    va_end(ap);
}

void o11y_res_field_error(o11y_response *res, const char *field, const char *problem)
{
    if (!res || !field || !problem)
        return;
    if (!res->field_errors && !(res->field_errors = json_array()))
        return;
    if (json_array_size(res->field_errors) >= O11Y__MAX_FIELD_ERRORS) {
        res->field_errors_left_out++; /* counted, not listed: the answer stays small */
        return;
    }
    json_array_append_new(res->field_errors,
                          json_pack("{s:s,s:s}", "field", field, "problem", problem));
}

bool o11y_res_has_field_errors(const o11y_response *res)
{
    return res && res->field_errors && json_array_size(res->field_errors) > 0;
}
