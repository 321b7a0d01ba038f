/* llm.c — the OpenAI-compatible backend: POST {base}/chat/completions with "stream": true, read
 * the server-sent "data:" lines as they come, report progress, stop on cancel. The call is a
 * span of its own under the job's: it carries the trace headers (X-Trace-Id, a traceparent
 * naming the call's span, X-Job-Id, X-Project-Id) and writes one http_client_request line. */
#include "llm.h"

#include <curl/curl.h>
#include <jansson.h>
#include <o11y/log.h>
#include <o11y/trace.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXPECTED_CHARS = 2000, LINE_MAX_BYTES = 1 << 20 };

typedef struct stream_state {
    const gs_llm_hooks *hooks;
    char *line; /* the partial line being received */
    size_t line_len, line_cap;
    char *out;
    size_t out_len;
    int64_t tokens;
    int reported;
    bool done, bad;
} stream_state;

static void append_content(stream_state *s, const char *text)
{
    size_t n = strlen(text);
    char *p = realloc(s->out, s->out_len + n + 1);
    if (!p) {
        s->bad = true;
        return;
    }
    memcpy(p + s->out_len, text, n + 1);
    s->out = p;
    s->out_len += n;
    int pct = (int)(s->out_len * 100 / EXPECTED_CHARS);
    if (pct > 95)
        pct = 95; /* 100 belongs to the end of the stream */
    if (pct >= s->reported + 10 && s->hooks->progress) {
        s->reported = pct;
        s->hooks->progress(s->hooks->ctx, pct, "streaming");
    }
}

/* One "data: {...}" line of the stream. */
static void handle_line(stream_state *s, const char *line)
{
    if (strncmp(line, "data:", 5) != 0)
        return; /* comments, event names, blank separators */
    line += 5;
    while (*line == ' ')
        line++;
    if (strcmp(line, "[DONE]") == 0) {
        s->done = true;
        return;
    }
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!j) {
        s->bad = true;
        return;
    }
    json_t *delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
    const char *content = json_string_value(json_object_get(delta, "content"));
    if (content)
        append_content(s, content);
    json_t *total = json_object_get(json_object_get(j, "usage"), "total_tokens");
    if (json_is_integer(total))
        s->tokens = json_integer_value(total);
    json_decref(j);
}

static size_t on_data(char *data, size_t size, size_t n, void *ctx)
{
    stream_state *s = ctx;
    size_t len = size * n;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (s->line_len && s->line[s->line_len - 1] == '\r')
                s->line_len--;
            if (s->line)
                s->line[s->line_len] = '\0';
            handle_line(s, s->line ? s->line : "");
            s->line_len = 0;
            continue;
        }
        if (s->line_len + 2 > LINE_MAX_BYTES)
            return 0; /* a runaway line: abort the transfer */
        if (s->line_len + 2 > s->line_cap) {
            size_t cap = s->line_cap ? s->line_cap * 2 : 256;
            char *p = realloc(s->line, cap);
            if (!p)
                return 0;
            s->line = p;
            s->line_cap = cap;
        }
        s->line[s->line_len++] = data[i];
    }
    return len;
}

static int on_progress(void *ctx, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    const gs_llm_hooks *h = ((stream_state *)ctx)->hooks;
    return h->cancelled && h->cancelled(h->ctx) ? 1 : 0; /* non-zero aborts the transfer */
}

/* The outgoing call's trace headers, from its span, and the POST's tracestate and baggage as
 * they came (normalized: nothing the grammars do not allow); curl copies each line. */
static struct curl_slist *trace_headers(struct curl_slist *h, const o11y_trace_ctx *span,
                                        const char *tracestate, const char *baggage)
{
    char line[O11Y_TRACE_ID_MAX + 32];
    snprintf(line, sizeof line, "X-Trace-Id: %s", span->trace_id);
    h = h ? curl_slist_append(h, line) : NULL;
    char tp[O11Y_TRACEPARENT_LEN + 1];
    o11y_trace_format_traceparent(span, tp);
    snprintf(line, sizeof line, "traceparent: %s", tp);
    h = h ? curl_slist_append(h, line) : NULL;
    if (span->job_id_len) {
        snprintf(line, sizeof line, "X-Job-Id: %s", span->job_id);
        h = h ? curl_slist_append(h, line) : NULL;
    }
    if (span->project_id_len) {
        snprintf(line, sizeof line, "X-Project-Id: %s", span->project_id);
        h = h ? curl_slist_append(h, line) : NULL;
    }
    char carried[O11Y_TRACE_CARRIED_MAX + 16];
    if (tracestate && *tracestate) {
        snprintf(carried, sizeof carried, "tracestate: %s", tracestate);
        h = h ? curl_slist_append(h, carried) : NULL;
    }
    if (baggage && *baggage) {
        snprintf(carried, sizeof carried, "baggage: %s", baggage);
        h = h ? curl_slist_append(h, carried) : NULL;
    }
    return h;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

gs_llm_result gs_llm_generate(const gs_llm *llm, const char *model, const char *prompt,
                              const char *tracestate, const char *baggage,
                              const gs_llm_hooks *hooks, char **output, int64_t *tokens, char *code,
                              size_t code_len, char *message, size_t message_len)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/chat/completions", llm->base_url);
    json_t *req = json_pack("{s:s,s:b,s:[{s:s,s:s},{s:s,s:s}]}", "model",
                            model ? model : llm->model, "stream", 1, "messages", "role", "system",
                            "content", "You write episode scripts for a podcast series.", "role",
                            "user", "content", prompt);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    stream_state s = {.hooks = hooks};
    /* The call's span: a child of the job's (the POST's), or a trace of its own. */
    o11y_trace_ctx span;
    o11y_trace_ctx *job_ctx = o11y_trace_current();
    if (job_ctx)
        o11y_trace_ctx_child(job_ctx, &span);
    else
        o11y_trace_ctx_new(&span);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = headers ? curl_slist_append(headers, "Accept: text/event-stream") : NULL;
    headers = trace_headers(headers, &span, tracestate, baggage);
    char auth[600];
    if (llm->api_key && *llm->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", llm->api_key);
        headers = curl_slist_append(headers, auth);
    }
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    long status = 0;
    if (curl && body && headers) {
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &s);
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)llm->timeout_ms);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        double started = now_ms();
        rc = curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        /* One line for the call, in its span. The URL is the operator's, but may hold
         * credentials: only its host is written. */
        char *host = NULL;
        curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &host);
        CURLU *u = curl_url();
        char *h = NULL;
        if (u && host && curl_url_set(u, CURLUPART_URL, host, 0) == CURLUE_OK)
            curl_url_get(u, CURLUPART_HOST, &h, 0);
        o11y_trace_set_current(&span);
        o11y_log_va(
            NULL, rc == CURLE_OK && status >= 200 && status <= 299 ? O11Y_LOG_INFO : O11Y_LOG_WARN,
            "http_client_request", "backend call completed", O11Y_STR("method", "POST"),
            O11Y_STR("host", h ? h : ""), O11Y_STR("route", "/chat/completions"),
            O11Y_INT("status", status),
            O11Y_STR("outcome", rc == CURLE_OK                    ? "response"
                                : rc == CURLE_OPERATION_TIMEDOUT  ? "timeout"
                                : rc == CURLE_ABORTED_BY_CALLBACK ? "cancelled"
                                                                  : "network_error"),
            O11Y_DURATION_MS(now_ms() - started), O11Y__END);
        o11y_trace_set_current(job_ctx);
        curl_free(h);
        curl_url_cleanup(u);
    }
    memset(auth, 0, sizeof auth);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    free(body);
    free(s.line);
    if (hooks->cancelled && hooks->cancelled(hooks->ctx)) {
        free(s.out);
        return GS_LLM_CANCELLED;
    }
    snprintf(code, code_len, "LLM_UNAVAILABLE");
    if (rc != CURLE_OK) {
        snprintf(message, message_len, "The generator backend could not be reached (%s)",
                 rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection failed");
    } else if (status < 200 || status > 299) {
        snprintf(message, message_len, "The generator backend answered HTTP %ld", status);
    } else if (s.bad || !s.done) {
        snprintf(message, message_len, "The generator backend's stream ended unexpectedly");
    } else {
        *output = s.out ? s.out : strdup("");
        *tokens = s.tokens ? s.tokens : (int64_t)(s.out_len + 3) / 4;
        return GS_LLM_DONE;
    }
    free(s.out);
    return GS_LLM_FAILED;
}
